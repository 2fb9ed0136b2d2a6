//! The session method of docs/protocol.md §4 that is not a feature's:
//! `logout`. Registered with `add_rpc_method`, the API games use too.
//! (Logging in and saving are methods of the feature crates above this one.)

use bevy_ecs::prelude::*;
use portcullis_rpc::{Empty, ErrorCode, NoParams, Reply, Request, RpcError};

use crate::machine::SessionCtx;

/// Params of methods that take only the token (checked by the gate).
pub type TokenParams = NoParams;

/// `logout` **auth** (docs/protocol.md §4): ends the session; the connection stays
/// open. While kicking it is answered, then the kick ends (§6).
pub fn logout(In(req): In<Request<TokenParams>>, mut ctx: SessionCtx) -> Reply<Empty> {
    let entity = req.entity();
    match ctx.session(entity).map(|s| s.is_kicking()) {
        Some(true) => {
            ctx.rpc.respond(&req.reply_to, Ok(Empty {}));
            ctx.end_kick(entity);
            Reply::Handled
        }
        Some(false) => {
            ctx.log_out(entity);
            Reply::Ok(Empty {})
        }
        None => Reply::Err(RpcError::new(ErrorCode::InternalError)),
    }
}
