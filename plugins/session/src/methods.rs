//! The session methods of docs/protocol.md §4: `login`, `logout`,
//! `userdata_save`, `userdata_load`, `register`, `change_password`. Each is
//! registered with `add_rpc_method`, the API games use too.

use bevy_ecs::prelude::*;
use portcullis_protocol::{ChangePasswordParams, LoginResult, RegisterParams, RegisterResult, SaveResult};
use portcullis_rpc::{CompactJson, Empty, ErrorCode, NoParams, Reply, Request, RpcError, compact_json};
use portcullis_store::{StoreRequest, validate_new_account, validate_new_password};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::machine::SessionCtx;
use crate::state::SessionState;
use crate::store::PendingOp;

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
pub fn login(In(req): In<Request<LoginParams>>, mut ctx: SessionCtx) -> Reply<LoginResult> {
    let entity = req.entity();
    let Ok((_, _, conn)) = ctx.sessions.get(entity) else { return err(ErrorCode::InternalError) };
    let peer = conn.peer().ip();
    let Some(card) = ctx.card(entity) else { return err(ErrorCode::InternalError) };
    let session = card.session;
    let LoginParams { token, account, password } = req.params;
    if let Some(token) = token {
        // A token login succeeds only with this connection's live token.
        return match (&session.state, card.token) {
            (SessionState::LoggedIn { account }, Some(live)) if live.as_str() == token => {
                Reply::Ok(LoginResult { account: account.name.clone(), token })
            }
            _ => err(ErrorCode::TokenInvalid),
        };
    }
    let Some(Value::String(account)) = account else { return Reply::Err(RpcError::invalid_params("account")) };
    let Some(Value::String(password)) = password else { return Reply::Err(RpcError::invalid_params("password")) };
    if let SessionState::LoggedIn { account: current, .. } = &session.state
        && !current.name.eq_ignore_ascii_case(&account)
    {
        return err(ErrorCode::AlreadyLoggedIn);
    }
    let now = ctx.now();
    let (limit, window) = (ctx.config.login_fail_limit, ctx.config.login_fail_window);
    if ctx.throttle.is_blocked(peer, now, limit, window) {
        return err(ErrorCode::RateLimited);
    }
    match ctx.submit(&req.reply_to, PendingOp::Login { peer }, StoreRequest::VerifyPassword { account, password }) {
        Ok(()) => Reply::Later,
        Err(e) => Reply::Err(e),
    }
}

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
        None => err(ErrorCode::InternalError),
    }
}

/// Params of `userdata_save`.
#[derive(Debug, Deserialize)]
pub struct SaveParams {
    /// The user data as written: a JSON object, stored with every number
    /// and string exactly as the client wrote it (docs/protocol.md §4).
    pub data: Box<RawValue>,
}

/// `userdata_save` **auth** (docs/protocol.md §4): appends a version; answered
/// after the commit. `data` over `max_userdata_bytes` (compact JSON) is -32602.
pub fn userdata_save(In(req): In<Request<SaveParams>>, mut ctx: SessionCtx) -> Reply<SaveResult> {
    let Some(account_id) = ctx.session(req.entity()).and_then(|s| s.account()).map(|a| a.id) else {
        return err(ErrorCode::NotLoggedIn);
    };
    if !req.params.data.get().starts_with('{') {
        return Reply::Err(RpcError::invalid_params("data"));
    }
    let CompactJson { text: data, serde_len } = compact_json(&req.params.data);
    if serde_len > ctx.config.max_userdata_bytes {
        return Reply::Err(RpcError::invalid_params("data"));
    }
    let mirror = match ctx.config.mirror_userdata {
        true => match serde_json::from_str::<Map<String, Value>>(&data) {
            Ok(map) => Some(Box::new(map)),
            Err(_) => return Reply::Err(RpcError::invalid_params("data")),
        },
        false => None,
    };
    match ctx.submit(&req.reply_to, PendingOp::Save { mirror }, StoreRequest::SaveUserdata { account_id, data }) {
        Ok(()) => Reply::Later,
        Err(e) => Reply::Err(e),
    }
}

/// `userdata_load` **auth** (docs/protocol.md §4): the newest version, or NO_USERDATA.
pub fn userdata_load(In(req): In<Request<TokenParams>>, mut ctx: SessionCtx) -> Reply<Empty> {
    let Some(account_id) = ctx.session(req.entity()).and_then(|s| s.account()).map(|a| a.id) else {
        return err(ErrorCode::NotLoggedIn);
    };
    match ctx.submit(&req.reply_to, PendingOp::Load, StoreRequest::LoadUserdata { account_id }) {
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
    match ctx.submit(&req.reply_to, PendingOp::Register, StoreRequest::Register { account, password }) {
        Ok(()) => Reply::Later,
        Err(e) => Reply::Err(e),
    }
}

/// `change_password` **auth** (docs/protocol.md §4): INVALID_ACCOUNT for a bad new
/// password, then RATE_LIMITED while the peer's address is throttled, then
/// INVALID_CREDENTIALS for a wrong old one (which counts for login
/// throttling, like a failed password login). Keeps the session.
pub fn change_password(In(req): In<Request<ChangePasswordParams>>, mut ctx: SessionCtx) -> Reply<Empty> {
    let entity = req.entity();
    let Ok((_, _, conn)) = ctx.sessions.get(entity) else { return err(ErrorCode::InternalError) };
    let Some(account_id) = ctx.session(entity).and_then(|s| s.account()).map(|a| a.id) else {
        return err(ErrorCode::NotLoggedIn);
    };
    let peer = conn.peer().ip();
    let ChangePasswordParams { old_password, new_password } = req.params;
    if validate_new_password(&new_password).is_err() {
        return err(ErrorCode::InvalidAccount);
    }
    let now = ctx.now();
    let (limit, window) = (ctx.config.login_fail_limit, ctx.config.login_fail_window);
    if ctx.throttle.is_blocked(peer, now, limit, window) {
        return err(ErrorCode::RateLimited);
    }
    let request = StoreRequest::ChangePassword { account_id, old_password, new_password };
    match ctx.submit(&req.reply_to, PendingOp::ChangePassword { peer }, request) {
        Ok(()) => Reply::Later,
        Err(e) => Reply::Err(e),
    }
}
