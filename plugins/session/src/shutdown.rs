//! Graceful shutdown (docs/protocol.md §6, "Shutdown"; docs/cli.md: exit status 0):
//! the session plugin's part of runtime's drain.
//!
//! ```text
//!  RequestShutdown ─▶ on_request_shutdown: hold "session", stop accepting, close anonymous
//!                     connections, kick every session with server_shutdown
//!  PreUpdate, SessionSystems::Timers ─▶ finish_shutdown: every connection gone (or grace over)
//!                     → close the store (commits what is queued), release "session"
//!  Last (runtime) ─▶ no hold left → AppExit::Success
//! ```

use std::time::Duration;

use bevy_ecs::prelude::*;
use portcullis_net::{ConnectionIndex, NetControl};
use portcullis_rpc::DisconnectReason;
use portcullis_runtime::{RequestShutdown, Shutdown};

use crate::machine::SessionCtx;
use crate::state::SessionState;

/// How long after the kick-save deadline the server still waits for
/// connections to finish closing before it exits anyway.
const CLOSE_GRACE: Duration = Duration::from_secs(3);

/// The name of the session plugin's hold on the exit ([`Shutdown::hold`]):
/// taken when the shutdown starts, released once every connection is gone
/// and the store is closed.
pub const SESSION_HOLD: &str = "session";

/// Whether the session plugin is shutting down (its part of runtime's
/// [`Shutdown`] drain). Inserted by `SessionPlugin`; set by the
/// [`RequestShutdown`] observer.
#[derive(Resource, Default, Debug)]
pub struct ShutdownState {
    started: Option<Duration>,
    finished: bool,
}

impl ShutdownState {
    /// Whether a shutdown was requested.
    pub fn is_active(&self) -> bool {
        self.started.is_some()
    }
}

/// Starts the shutdown: hold the exit ([`SESSION_HOLD`]), stop accepting,
/// close connections that are not logged in, kick every session with
/// `server_shutdown` (a session already kicking keeps its kick and deadline).
pub fn on_request_shutdown(
    _request: On<RequestShutdown>,
    mut ctx: SessionCtx,
    net: Option<Res<NetControl>>,
    mut drain: ResMut<Shutdown>,
) {
    if ctx.shutdown.is_active() {
        return;
    }
    drain.hold(SESSION_HOLD);
    let now = ctx.now();
    ctx.shutdown.started = Some(now);
    bevy_log::info!(sessions = ctx.index.sessions(), "shutting down: saving sessions");
    if let Some(net) = net {
        net.stop_accepting();
    }
    let entities: Vec<Entity> = ctx.sessions.iter().map(|(entity, _, _)| entity).collect();
    let entities: Vec<(Entity, bool)> = entities
        .into_iter()
        .filter_map(|entity| Some((entity, matches!(ctx.session(entity)?.state, SessionState::AwaitingLogin))))
        .collect();
    for (entity, awaiting_login) in entities {
        if awaiting_login {
            ctx.close_unauthenticated(entity, DisconnectReason::ServerShutdown);
        } else {
            ctx.kick(entity, DisconnectReason::ServerShutdown);
        }
    }
}

/// Ends the session plugin's part once every connection is gone (or the
/// grace time ran out): closes the store, which commits everything queued,
/// then releases [`SESSION_HOLD`] (runtime exits 0 when no hold is left).
pub fn finish_shutdown(mut ctx: SessionCtx, connections: Res<ConnectionIndex>, mut drain: ResMut<Shutdown>) {
    let Some(started) = ctx.shutdown.started else { return };
    if ctx.shutdown.finished {
        return;
    }
    let give_up = started + ctx.config.kick_save_timeout + CLOSE_GRACE;
    if !connections.is_empty() && ctx.now() < give_up {
        return;
    }
    ctx.shutdown.finished = true;
    if let Some(store) = ctx.store.take()
        && let Err(e) = store.close()
    {
        bevy_log::error!(error = %e, "closing the store failed");
    }
    bevy_log::info!(left_open = connections.len(), "shutdown complete");
    drain.release(SESSION_HOLD);
}
