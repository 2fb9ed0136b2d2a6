//! The built-in methods of this crate, registered through the same API as
//! any game method (docs/protocol.md §4).

use std::time::{SystemTime, UNIX_EPOCH};

use bevy_ecs::prelude::*;
use portcullis_protocol::{DisconnectReason, Empty, PingResult, RpcError};

use crate::registry::{NoParams, Reply, Request};
use crate::reply::Rpc;

/// `ping` → `{"server_time_ms":N}`; the keep-alive of docs/protocol.md §6.
/// A plain function (no system parameters): the dispatcher calls it without
/// a system run.
pub fn ping(_req: Request<NoParams>) -> Result<PingResult, RpcError> {
    let server_time_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    Ok(PingResult { server_time_ms })
}

/// `disconnect` → `{}`, then `disconnected {"reason":"client_request"}`, then close.
pub fn disconnect(In(req): In<Request<NoParams>>, mut rpc: Rpc) -> Reply<Empty> {
    rpc.respond(&req.reply_to, Ok(Empty {}));
    rpc.disconnect(req.entity(), DisconnectReason::ClientRequest);
    Reply::Handled
}
