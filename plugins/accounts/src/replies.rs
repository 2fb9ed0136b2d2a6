//! The store replies of the account methods: each answered in store order,
//! also for a connection that closed while it waited.

use std::net::IpAddr;

use bevy_ecs::prelude::*;
use portcullis_protocol::RegisterResult;
use portcullis_rpc::{Empty, ErrorCode, RpcError};
use portcullis_session::{SessionCtx, StoreOp, StoreReplied, internal_error, store_error};
use portcullis_store::{StoreFailure, StoreOk};

use crate::throttle::LoginThrottle;

/// What an account request waiting on the store was (the op of
/// [`SessionCtx::submit`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountOp {
    /// A password `login` from `peer`.
    Login {
        /// The peer's address: a wrong password counts against it.
        peer: IpAddr,
    },
    /// `register`.
    Register,
    /// `change_password`; a wrong old password counts against `peer` for
    /// login throttling (docs/protocol.md §4).
    ChangePassword {
        /// The peer's address.
        peer: IpAddr,
    },
}

impl StoreOp for AccountOp {}

/// Applies the store's answers to account requests: a verified login goes
/// on in [`SessionCtx::complete_login`]; a wrong password is counted by the
/// [`LoginThrottle`] and answered INVALID_CREDENTIALS. Runs in
/// `SessionSystems::Store`.
pub fn apply_account_replies(
    mut ctx: SessionCtx,
    mut throttle: ResMut<LoginThrottle>,
    counters: Res<crate::LoginCounters>,
    mut replies: Local<Vec<StoreReplied<AccountOp>>>,
) {
    ctx.take_store_replies(&mut replies);
    for StoreReplied { reply_to, op, result } in replies.drain(..) {
        match (op, result) {
            (AccountOp::Login { .. }, Ok(StoreOk::Account(account))) => ctx.complete_login(&reply_to, account),
            (
                op @ (AccountOp::Login { .. } | AccountOp::ChangePassword { .. }),
                Err(StoreFailure::InvalidCredentials),
            ) => {
                let peer = match op {
                    AccountOp::Login { peer } => {
                        counters.invalid_credentials.increment(1);
                        peer
                    }
                    AccountOp::ChangePassword { peer } => peer,
                    AccountOp::Register => continue,
                };
                let now = ctx.now();
                throttle.record_failure(peer, now);
                ctx.rpc().respond::<()>(&reply_to, Err(RpcError::new(ErrorCode::InvalidCredentials)));
            }
            (AccountOp::Register, Ok(StoreOk::Account(account))) => {
                ctx.rpc().respond(&reply_to, Ok(RegisterResult { account: account.name }));
            }
            (AccountOp::ChangePassword { .. }, Ok(StoreOk::Done)) => {
                ctx.rpc().respond(&reply_to, Ok(Empty {}));
            }
            (_, Err(failure)) => ctx.rpc().respond::<()>(&reply_to, Err(store_error(&failure))),
            (_, Ok(_)) => ctx.rpc().respond::<()>(&reply_to, Err(internal_error("unexpected store reply"))),
        }
    }
}
