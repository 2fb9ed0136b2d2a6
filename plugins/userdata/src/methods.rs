//! The user-data methods of docs/protocol.md §4: `userdata_save`,
//! `userdata_load`. Each is registered with `add_rpc_method`, the API games
//! use too.

use bevy_ecs::prelude::*;
use portcullis_protocol::SaveResult;
use portcullis_rpc::{CompactJson, Empty, ErrorCode, Reply, Request, RpcError, compact_json};
use portcullis_session::{SessionCtx, TokenParams};
use portcullis_store::StoreRequest;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::UserDataConfig;
use crate::replies::UserDataOp;

fn err<R>(code: ErrorCode) -> Reply<R> {
    Reply::Err(RpcError::new(code))
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
/// Counted as a save in flight of the session until answered (§6).
pub fn userdata_save(
    In(req): In<Request<SaveParams>>,
    mut ctx: SessionCtx,
    config: Res<UserDataConfig>,
) -> Reply<SaveResult> {
    let Some(account_id) = ctx.session(req.entity()).and_then(|s| s.account()).map(|a| a.id) else {
        return err(ErrorCode::NotLoggedIn);
    };
    if !req.params.data.get().starts_with('{') {
        return Reply::Err(RpcError::invalid_params("data"));
    }
    let CompactJson { text: data, serde_len } = compact_json(&req.params.data);
    if serde_len > config.max_userdata_bytes {
        return Reply::Err(RpcError::invalid_params("data"));
    }
    let mirror = match config.mirror_userdata {
        true => match serde_json::from_str::<Map<String, Value>>(&data) {
            Ok(map) => Some(Box::new(map)),
            Err(_) => return Reply::Err(RpcError::invalid_params("data")),
        },
        false => None,
    };
    match ctx.submit(&req.reply_to, UserDataOp::Save { mirror }, StoreRequest::SaveUserdata { account_id, data }) {
        Ok(()) => Reply::Later,
        Err(e) => Reply::Err(e),
    }
}

/// `userdata_load` **auth** (docs/protocol.md §4): the newest version, or NO_USERDATA.
pub fn userdata_load(In(req): In<Request<TokenParams>>, mut ctx: SessionCtx) -> Reply<Empty> {
    let Some(account_id) = ctx.session(req.entity()).and_then(|s| s.account()).map(|a| a.id) else {
        return err(ErrorCode::NotLoggedIn);
    };
    match ctx.submit(&req.reply_to, UserDataOp::Load, StoreRequest::LoadUserdata { account_id }) {
        Ok(()) => Reply::Later,
        Err(e) => Reply::Err(e),
    }
}
