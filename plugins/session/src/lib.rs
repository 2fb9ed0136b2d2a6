//! portcullis_session: the life cycle of a connection's session and the
//! kick/save state machine (docs/protocol.md §4 and §6): the design card's
//! components, tokens, the session gate, deadlines, `logout`, shutdown, and
//! the bridge to the store that the features above it use.
//!
//! ```text
//!  RpcSystems::Dispatch ── gate (1006/1011/1008/1001/1003) ── logout; the features' methods ──submit::<Op>──▶ store thread
//!  SessionSystems::Route  ◀── replies ── store.rs: each reply to the queue of the op type that asked
//!  SessionSystems::Store  ── the features' systems: take_store_replies::<Op>, answer, call a transition
//!  SessionSystems::Timers ── limits.rs: login deadline, kick deadline, idle ── machine.rs transitions
//!  observers: ConnectionOpened → Session + LoginDeadline; ConnectionClosed, Kick, RequestShutdown → machine.rs
//!  events out: LoggedIn, LoggedOut, Kicked (the features and games observe them)
//!  (all of it in PreUpdate; game systems in Update see the result, replies leave in PostUpdate)
//! ```
//!
//! A connection entity carries the design card's components: [`Session`]
//! (always: its state), [`Token`] (only while logged in or kicking),
//! [`LoginDeadline`] (only while awaiting login) and [`PendingRpc`] (while
//! a request waits on the store). They are immutable; every state change is
//! one method of [`SessionCtx`] in `machine.rs`, the only code that inserts,
//! replaces or removes them. Handlers, timers and observers only decide
//! which transition to call. `tests/card.rs` checks their invariants after
//! every frame of random event sequences (proptest).
//!
//! The features are crates above this one and use only its public API:
//! the login feature verifies a password and calls
//! [`SessionCtx::complete_login`] (which runs the takeover of §6); the save
//! feature submits saves whose op [`is_save`](StoreOp::is_save) (counted in
//! flight: a kick waits for them) and, when a save sent after `kicked` is
//! answered, ends the kick ([`SessionCtx::save_answered_while_kicking`],
//! [`SessionCtx::end_kick`]). Each submits its own [`StoreOp`] type and
//! applies its own replies: this crate names none of them.
//!
//! This crate's integration tests (`tests/`) log in and save through those
//! features, with the workspace's test harness crate and the feature crates
//! as dev-dependencies (see Cargo.toml): integration tests link the normal
//! library, as tokio's tests use tokio-test.
#![forbid(unsafe_code)]

mod directory;
mod events;
mod gate;
mod limits;
mod machine;
mod methods;
mod shutdown;
mod state;
mod store;
mod token;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bevy_app::prelude::*;
use bevy_ecs::prelude::*;
use portcullis_net::{ConnectionClosed, ConnectionOpened, NetSystems};
use portcullis_protocol::method;
use portcullis_rpc::{Access, RpcAppExt, RpcGates, RpcSystems};
use portcullis_runtime::{FrameWaker, ShutdownPlugin};
use portcullis_store::{Store, StoreConfig};

pub use directory::{Directory, apply_directory_events};
pub use events::*;
pub use gate::*;
pub use limits::*;
pub use machine::*;
pub use methods::*;
pub use portcullis_protocol::{DisconnectReason, LoginResult};
pub use shutdown::*;
pub use state::*;
pub use store::*;
pub use token::*;

/// Where in the frame sessions are worked on: in `PreUpdate`, after
/// [`RpcSystems::Dispatch`] (with [`NetSystems::Closing`] between the two),
/// so game systems in `Update` see the sessions as this frame left them.
#[derive(SystemSet, Debug, Clone, PartialEq, Eq, Hash)]
pub enum SessionSystems {
    /// Hand each store reply to the queue of the op type that asked for it
    /// ([`route_store_replies`]).
    Route,
    /// The features apply their store replies ([`SessionCtx::take_store_replies`]).
    /// Each feature's system applies its own replies in store order; the
    /// order between features is not fixed (their replies come from
    /// different threads anyway: hashing, the database), and a save still
    /// counts as in flight until its feature takes it, so a kick started by
    /// one feature's reply sees the other's saves correctly.
    Store,
    /// Deadlines and idle timers.
    Timers,
}

/// Timers and limits of sessions (docs/cli.md). Inserted as a resource by
/// [`SessionPlugin`]; read-only.
#[derive(Resource, Debug, Clone)]
pub struct SessionConfig {
    /// A connection must log in within this (`--login-timeout`).
    pub login_timeout: Duration,
    /// How long a kicked session may take to save (`--kick-save-timeout`).
    pub kick_save_timeout: Duration,
    /// A connection with no frame for this long is closed (`--idle-timeout`).
    pub idle_timeout: Duration,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            login_timeout: Duration::from_secs(10),
            kick_save_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(60),
        }
    }
}

/// The session plugin: opens the store, registers `logout`
/// (docs/protocol.md §4), installs the session gate, and runs the state
/// machine. Needs `NetPlugin` and `RpcPlugin` (add it after them); login
/// and saves come from the feature plugins added after it.
pub struct SessionPlugin {
    /// Timers and limits.
    pub config: SessionConfig,
    /// How to open the store when none was given with [`SessionPlugin::with_store`].
    pub store: StoreConfig,
    opened: Mutex<Option<Store>>,
}

impl Default for SessionPlugin {
    fn default() -> Self {
        Self { config: SessionConfig::default(), store: StoreConfig::default(), opened: Mutex::new(None) }
    }
}

impl SessionPlugin {
    /// A plugin that uses an already opened store (so the caller handles open
    /// errors). Open it with a `notify` that wakes the app's [`FrameWaker`].
    pub fn with_store(config: SessionConfig, store: Store) -> Self {
        Self { config, store: StoreConfig::default(), opened: Mutex::new(Some(store)) }
    }

    /// A plugin opening `store` in `Startup`; a store that cannot be opened is
    /// logged and ends the app with `AppExit::error()` (no panic).
    pub fn new(config: SessionConfig, store: StoreConfig) -> Self {
        Self { config, store, opened: Mutex::new(None) }
    }
}

impl Plugin for SessionPlugin {
    fn build(&self, app: &mut App) {
        if !app.is_plugin_added::<ShutdownPlugin>() {
            app.add_plugins(ShutdownPlugin);
        }
        let opened = self.opened.lock().unwrap_or_else(|p| p.into_inner()).take();
        if opened.is_none() {
            // No database is opened while the plugin is built: the store opens
            // in `Startup`, and a failure ends the app with an error instead of a panic.
            let config = self.store.clone();
            app.world_mut().get_resource_or_init::<FrameWaker>();
            app.add_systems(
                Startup,
                move |mut handle: ResMut<StoreHandle>, waker: Res<FrameWaker>, mut exit: MessageWriter<AppExit>| {
                    let waker = waker.clone();
                    match Store::open(config.clone(), Some(Arc::new(move || waker.wake()))) {
                        Ok(store) => handle.0 = Some(store),
                        Err(e) => {
                            bevy_log::error!(db = %config.location(), error = %e, "cannot open the store");
                            exit.write(AppExit::error());
                        }
                    }
                },
            );
        }
        let store = opened;
        // A connection accepted during the shutdown hears why it is refused (docs/protocol.md §6).
        app.world_mut().get_resource_or_init::<portcullis_net::Goodbyes>().server_shutdown =
            Some(portcullis_rpc::goodbye(portcullis_protocol::DisconnectReason::ServerShutdown));
        app.insert_resource(self.config.clone())
            .insert_resource(StoreHandle(store))
            .init_resource::<SessionIndex>()
            .init_resource::<PendingTags>()
            .init_resource::<StagedCards>()
            .init_resource::<DeadlineQueue>()
            .init_resource::<ShutdownState>()
            .init_resource::<KickAllowList>()
            .init_resource::<Directory>()
            .configure_sets(
                PreUpdate,
                (SessionSystems::Route, SessionSystems::Store, NetSystems::Closing, SessionSystems::Timers)
                    .chain()
                    .after(RpcSystems::Dispatch),
            )
            .add_systems(PreUpdate, (route_store_replies, apply_directory_events).chain().in_set(SessionSystems::Route))
            .add_systems(
                PreUpdate,
                (end_sessions_of_closing_connections, judge_drained_deadlines, check_deadlines, finish_shutdown)
                    .chain()
                    .in_set(SessionSystems::Timers),
            )
            .add_observer(on_connection_opened)
            .add_observer(|closed: On<ConnectionClosed>, mut ctx: SessionCtx| ctx.connection_closed(closed.entity))
            .add_observer(|kick: On<Kick>, mut ctx: SessionCtx| ctx.kick(kick.entity, kick.reason))
            .add_observer(on_request_shutdown)
            .add_rpc_method(method::LOGOUT, Access::LoggedIn, logout);
        app.world_mut().get_resource_or_init::<RpcGates>().0.push(Arc::new(session_gate));
    }
}

/// Gives every new connection its [`Session`] and [`LoginDeadline`] (the
/// transition in `machine.rs`); during a shutdown a new connection is told
/// `server_shutdown` and closed.
fn on_connection_opened(opened: On<ConnectionOpened>, mut ctx: SessionCtx) {
    ctx.open(opened.entity);
}
