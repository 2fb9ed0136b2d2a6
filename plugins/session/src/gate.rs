//! The session gate: the session-state and auth checks that every method —
//! built-in or game — passes before its params are parsed (docs/protocol.md §3,
//! "which error wins": 1006 → 1011 → 1008 → 1001 → -32602 token → 1003).

use bevy_ecs::prelude::*;
use portcullis_protocol::method;
use portcullis_rpc::{Access, ErrorCode, GateInput, RpcError};
use serde_json::Value;

use crate::shutdown::ShutdownState;
use crate::state::{SessionState, card_in_world};

/// Methods a session being kicked may still call (docs/protocol.md §6).
pub const ALLOWED_WHILE_KICKING: [&str; 4] = [method::USERDATA_SAVE, method::LOGOUT, method::PING, method::DISCONNECT];

/// Methods a session being kicked may still call: docs/protocol.md §6's four, plus
/// any a game adds (e.g. a `group_leave`). Inserted by `SessionPlugin`.
#[derive(Resource, Debug, Clone)]
pub struct KickAllowList(pub Vec<String>);

impl Default for KickAllowList {
    fn default() -> Self {
        Self(ALLOWED_WHILE_KICKING.iter().map(|m| (*m).to_owned()).collect())
    }
}

/// The gate installed into `RpcGates` by `SessionPlugin`.
pub fn session_gate(world: &mut World, input: &GateInput<'_>) -> Result<(), RpcError> {
    let Some(card) = card_in_world(world, input.entity) else { return Ok(()) };
    let session = card.session;
    // 1006: a kicked session may only save, log out, ping or disconnect.
    if session.is_kicking()
        && !world.get_resource::<KickAllowList>().is_some_and(|allowed| allowed.0.iter().any(|m| m == input.method))
    {
        return Err(RpcError::new(ErrorCode::SessionClosing));
    }
    if input.method == method::LOGIN && !session.is_logged_in() {
        // 1011: no login completes while the server shuts down.
        if world.resource::<ShutdownState>().is_active() {
            return Err(RpcError::new(ErrorCode::ServerBusy));
        }
        // 1008: this connection's login already waits for a takeover.
        if matches!(session.state, SessionState::WaitingTakeover { .. }) {
            return Err(RpcError::new(ErrorCode::LoginInProgress));
        }
    }
    if input.access == Access::LoggedIn {
        let Some(live) = card.token.filter(|_| session.is_logged_in()) else {
            return Err(RpcError::new(ErrorCode::NotLoggedIn));
        };
        if input.duplicate_param == Some("token") {
            return Err(RpcError::invalid_params("token"));
        }
        match input.params {
            Value::Object(params) => match params.get("token") {
                Some(Value::String(token)) if token == live.as_str() => {}
                Some(Value::String(_)) => return Err(RpcError::new(ErrorCode::TokenInvalid)),
                _ => return Err(RpcError::invalid_params("token")),
            },
            Value::Null => return Err(RpcError::invalid_params("token")),
            _ => return Err(RpcError::invalid_params("params")),
        }
    }
    Ok(())
}
