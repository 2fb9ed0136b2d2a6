//! The account methods of docs/protocol.md §4: `login`, `register`,
//! `change_password`. Each is registered with `add_rpc_method`, the API games
//! use too.

use bevy_ecs::prelude::*;
use portcullis_protocol::{ChangePasswordParams, LoginResult, RegisterParams, RegisterResult};
use portcullis_rpc::{Empty, ErrorCode, Reply, Request, RpcError};
use portcullis_session::{SessionCtx, SessionState};
use portcullis_store::{StoreRequest, validate_new_account, validate_new_password};
use serde::Deserialize;
use serde_json::Value;

use crate::replies::AccountOp;
use crate::throttle::LoginThrottle;
use crate::{AccountsConfig, LoginCounters};

/// Params of `login`: `{"account":S,"password":S}` or `{"token":S}`.
/// `account` and `password` are checked only for a password login: with a
/// `token` they are ignored whatever their type (docs/protocol.md §4).
#[derive(Deserialize)]
pub struct LoginParams {
    /// A token login when present (other fields are then ignored).
    pub token: Option<String>,
    /// Account name (case-insensitive).
    pub account: Option<Value>,
    /// Password.
    pub password: Option<Value>,
}

impl std::fmt::Debug for LoginParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginParams").field("account", &self.account).finish_non_exhaustive()
    }
}

fn err<R>(code: ErrorCode) -> Reply<R> {
    Reply::Err(RpcError::new(code))
}

/// `login` (docs/protocol.md §4). Own errors in order: ALREADY_LOGGED_IN,
/// TOKEN_INVALID, RATE_LIMITED (throttle), INVALID_CREDENTIALS, LOGIN_IN_PROGRESS.
/// A verified password goes on in [`SessionCtx::complete_login`].
pub fn login(
    In(req): In<Request<LoginParams>>,
    mut ctx: SessionCtx,
    mut throttle: ResMut<LoginThrottle>,
    config: Res<AccountsConfig>,
    counters: Res<LoginCounters>,
) -> Reply<LoginResult> {
    let entity = req.entity();
    let Some(peer) = ctx.connection(entity).map(|conn| conn.peer().ip()) else { return err(ErrorCode::InternalError) };
    let Some(session) = ctx.session(entity) else { return err(ErrorCode::InternalError) };
    let LoginParams { token, account, password } = req.params;
    if let Some(token) = token {
        // A token login succeeds only with this connection's live token.
        return match (session.state(), ctx.token(entity)) {
            (SessionState::LoggedIn { account }, Some(live)) if live.as_str() == token => {
                counters.ok.increment(1);
                Reply::Ok(LoginResult { account: account.name.clone(), token })
            }
            _ => {
                counters.token_invalid.increment(1);
                err(ErrorCode::TokenInvalid)
            }
        };
    }
    let Some(Value::String(account)) = account else { return Reply::Err(RpcError::invalid_params("account")) };
    let Some(Value::String(password)) = password else { return Reply::Err(RpcError::invalid_params("password")) };
    if let SessionState::LoggedIn { account: current, .. } = session.state()
        && !current.name.eq_ignore_ascii_case(&account)
    {
        return err(ErrorCode::AlreadyLoggedIn);
    }
    let now = ctx.now();
    if throttle.is_blocked(peer, now, config.login_fail_limit, config.login_fail_window) {
        counters.throttled.increment(1);
        return err(ErrorCode::RateLimited);
    }
    match ctx.submit(&req.reply_to, AccountOp::Login { peer }, StoreRequest::VerifyPassword { account, password }) {
        Ok(()) => Reply::Later,
        Err(e) => Reply::Err(e),
    }
}

/// `register` (docs/protocol.md §4): ALREADY_LOGGED_IN, then INVALID_ACCOUNT, then
/// ACCOUNT_EXISTS. Does not log in.
pub fn register(In(req): In<Request<RegisterParams>>, mut ctx: SessionCtx) -> Reply<RegisterResult> {
    if ctx.session(req.entity()).is_some_and(|s| s.is_logged_in()) {
        return err(ErrorCode::AlreadyLoggedIn);
    }
    let RegisterParams { account, password } = req.params;
    if validate_new_account(&account, &password).is_err() {
        return err(ErrorCode::InvalidAccount);
    }
    match ctx.submit(&req.reply_to, AccountOp::Register, StoreRequest::Register { account, password }) {
        Ok(()) => Reply::Later,
        Err(e) => Reply::Err(e),
    }
}

/// `change_password` **auth** (docs/protocol.md §4): INVALID_ACCOUNT for a bad new
/// password, then RATE_LIMITED while the peer's address is throttled, then
/// INVALID_CREDENTIALS for a wrong old one (which counts for login
/// throttling, like a failed password login). Keeps the session.
pub fn change_password(
    In(req): In<Request<ChangePasswordParams>>,
    mut ctx: SessionCtx,
    mut throttle: ResMut<LoginThrottle>,
    config: Res<AccountsConfig>,
) -> Reply<Empty> {
    let entity = req.entity();
    let Some(peer) = ctx.connection(entity).map(|conn| conn.peer().ip()) else { return err(ErrorCode::InternalError) };
    let Some(account_id) = ctx.session(entity).and_then(|s| s.account()).map(|a| a.id) else {
        return err(ErrorCode::NotLoggedIn);
    };
    let ChangePasswordParams { old_password, new_password } = req.params;
    if validate_new_password(&new_password).is_err() {
        return err(ErrorCode::InvalidAccount);
    }
    let now = ctx.now();
    if throttle.is_blocked(peer, now, config.login_fail_limit, config.login_fail_window) {
        return err(ErrorCode::RateLimited);
    }
    let request = StoreRequest::ChangePassword { account_id, old_password, new_password };
    match ctx.submit(&req.reply_to, AccountOp::ChangePassword { peer }, request) {
        Ok(()) => Reply::Later,
        Err(e) => Reply::Err(e),
    }
}
