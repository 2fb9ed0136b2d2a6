//! portcullis_admin: the operator's side of a server (docs/operations.md,
//! docs/cli.md "Admin"): an HTTP/1.1 listener with health checks, Prometheus
//! metrics, a small JSON admin API and the operator console page.
//!
//! ```text
//!  admin thread (tokio, hyper)                        ECS (one frame)
//!  GET /healthz, /readyz ── answered from AdminState (atomics), never waits on a frame
//!  GET /metrics, /api/* ──AdminCall──crossbeam + FrameWaker──▶ Update: answer_admin_calls
//!                          ◀──────────── oneshot ───────────── gauges set / sessions listed /
//!                                                              Kick{admin} / notification / RequestShutdown
//!  GET / ── the console page (console.html, embedded)
//! ```
//!
//! Counters are recorded where their events happen, through the `metrics`
//! facade (rpc: requests and disconnects; accounts: logins; userdata: saves;
//! runtime: frame time; store: commits), and this crate installs the
//! process's Prometheus recorder ([`install_recorder`]) before any of them
//! registers a handle. Kicks and the connection gauges are counted here.
//! A kick goes through the session layer's public [`Kick`](portcullis_session::Kick) event (save
//! first, docs/protocol.md §6) and a broadcast through the notification API
//! of [`Rpc`], as a game's own code would.
#![forbid(unsafe_code)]

mod api;
mod calls;
mod http;
mod recorder;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use bevy_app::prelude::*;
use bevy_ecs::prelude::*;

pub use api::*;
pub use calls::ConnectedAt;
pub use recorder::*;

/// The admin plugin: binds `listen` in `PostStartup` (after the game
/// listeners, so its `listening on http://` line comes last, docs/cli.md),
/// serves it on its own thread, and answers the admin API from the ECS.
/// Needs the session stack (`portcullis::ServerPlugins`).
///
/// `token`: the bearer token every path but `/healthz` and `/readyz`
/// requires (compared in constant time). Without one, only a loopback
/// `listen` makes sense: [`check_exposure`] is the rule `serve` applies.
#[derive(Clone)]
pub struct AdminPlugin {
    /// Address of the admin listener; port 0 picks a free port.
    pub listen: SocketAddr,
    /// The bearer token; `None`: no authentication (loopback only).
    pub token: Option<String>,
}

impl std::fmt::Debug for AdminPlugin {
    /// Never shows the token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminPlugin")
            .field("listen", &self.listen)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// Triggered in `PostStartup` once the admin listener is bound, with the
/// real address (`serve` prints `listening on http://ADDR` from it).
#[derive(Event, Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdminListening {
    /// The bound address.
    pub addr: SocketAddr,
}

/// The admin listener could not be bound: kept as a resource and triggered
/// as an event, after which the app exits with `AppExit::error()`.
#[derive(Event, Resource, Debug, Clone)]
pub struct AdminListenFailed {
    /// The address asked for.
    pub addr: SocketAddr,
    /// What the OS said.
    pub error: Arc<std::io::Error>,
}

impl std::fmt::Display for AdminListenFailed {
    /// `cannot listen on ADDR: ERROR`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cannot listen on {}: {}", self.addr, self.error)
    }
}

/// Why an admin configuration is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AdminConfigError {
    /// A non-loopback admin address without a token (docs/cli.md, `--admin-token`).
    #[error(
        "--admin-listen {0} is not a loopback address: set --admin-token (or PORTCULLIS_ADMIN_TOKEN) to expose the admin listener"
    )]
    ExposedWithoutToken(SocketAddr),
    /// An empty token would let anyone in.
    #[error("--admin-token must not be empty")]
    EmptyToken,
}

/// The rule of docs/cli.md: without a token, the admin listener must be on a
/// loopback address (`127.0.0.0/8` or `::1`). An empty token is refused too.
pub fn check_exposure(listen: SocketAddr, token: Option<&str>) -> Result<(), AdminConfigError> {
    match token {
        Some("") => Err(AdminConfigError::EmptyToken),
        Some(_) => Ok(()),
        None if listen.ip().is_loopback() => Ok(()),
        None => Err(AdminConfigError::ExposedWithoutToken(listen)),
    }
}

/// Readiness as `/readyz` reports it, shared with the admin thread.
#[derive(Resource, Clone)]
pub struct AdminState(pub(crate) Arc<AtomicU8>);

impl Default for AdminState {
    fn default() -> Self {
        Self(Arc::new(AtomicU8::new(STARTING)))
    }
}

/// Values of [`AdminState`].
pub(crate) const STARTING: u8 = 0;
pub(crate) const READY: u8 = 1;
pub(crate) const DRAINING: u8 = 2;

impl AdminState {
    /// Whether `/readyz` answers `200`: every listener bound, the store open, no shutdown.
    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::Acquire) == READY
    }
}

/// Where in the frame admin calls are answered: `Update`.
#[derive(SystemSet, Debug, Clone, PartialEq, Eq, Hash)]
pub enum AdminSystems {
    /// Answer the calls that arrived from the admin thread.
    Answer,
}

impl Plugin for AdminPlugin {
    fn build(&self, app: &mut App) {
        install_recorder();
        portcullis_rpc::register_disconnect_counters();
        let (tx, rx) = crossbeam_channel::unbounded();
        app.insert_resource(calls::AdminInbox { rx, tx: Some(tx) })
            .insert_resource(calls::AdminListen { addr: self.listen, token: self.token.clone() })
            .init_resource::<AdminState>()
            .init_resource::<calls::KickCounters>()
            .init_resource::<calls::CloseCounters>()
            .add_systems(PostStartup, calls::start_admin_listener)
            .add_systems(Update, calls::answer_admin_calls.in_set(AdminSystems::Answer))
            .add_observer(calls::stamp_connected_at)
            .add_observer(calls::count_closed)
            .add_observer(|kicked: On<portcullis_session::Kicked>, counters: Res<calls::KickCounters>| {
                counters.count(kicked.reason);
            })
            .add_observer(|_: On<portcullis_runtime::RequestShutdown>, state: Res<AdminState>| {
                state.0.store(DRAINING, Ordering::Release);
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// docs/cli.md: without a token only a loopback admin address is accepted.
    #[test]
    fn exposure_needs_a_token_off_loopback() {
        let loopback: SocketAddr = "127.0.0.1:9100".parse().unwrap_or_else(|_| unreachable!());
        let loopback6: SocketAddr = "[::1]:9100".parse().unwrap_or_else(|_| unreachable!());
        let public: SocketAddr = "0.0.0.0:9100".parse().unwrap_or_else(|_| unreachable!());
        assert_eq!(check_exposure(loopback, None), Ok(()));
        assert_eq!(check_exposure(loopback6, None), Ok(()));
        assert_eq!(check_exposure(public, None), Err(AdminConfigError::ExposedWithoutToken(public)));
        assert_eq!(check_exposure(public, Some("t")), Ok(()));
        assert_eq!(check_exposure(loopback, Some("")), Err(AdminConfigError::EmptyToken));
        let message = AdminConfigError::ExposedWithoutToken(public).to_string();
        assert!(message.contains("--admin-token") && message.contains("loopback"), "{message}");
    }
}
