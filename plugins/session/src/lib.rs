//! portcullis_session: login, tokens, deadlines and the kick/save state
//! machine (docs/protocol.md §4 and §6).
//!
//! ```text
//!  RpcSystems::Dispatch ── gate (1006/1011/1008/1001/1003) ── methods.rs ──submit──▶ store thread
//!  SessionSystems::Store  ◀── replies ── store.rs: answer, run the transition it completes
//!  SessionSystems::Timers ── limits.rs: login deadline, kick deadline, idle ── machine.rs transitions
//!  observers: ConnectionOpened → Session + LoginDeadline; ConnectionClosed, Kick, RequestShutdown → machine.rs
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
#![forbid(unsafe_code)]

mod events;
mod gate;
mod limits;
mod machine;
mod methods;
mod shutdown;
mod state;
mod store;
pub mod testing;
mod token;
mod userdata;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bevy_app::prelude::*;
use bevy_ecs::prelude::*;
use portcullis_net::{ConnectionClosed, ConnectionOpened, NetSystems};
use portcullis_protocol::method;
use portcullis_rpc::{Access, RpcAppExt, RpcGates, RpcSystems};
use portcullis_runtime::{FrameWaker, ShutdownPlugin};
use portcullis_store::{Store, StoreConfig};

pub use events::*;
pub use gate::*;
pub use limits::*;
pub use machine::*;
pub use methods::*;
pub use portcullis_protocol::{
    ChangePasswordParams, DisconnectReason, LoadResult, LoginResult, RegisterParams, RegisterResult, SaveResult,
};
pub use shutdown::*;
pub use state::*;
pub use store::*;
pub use token::*;
pub use userdata::*;

/// Where in the frame sessions are worked on: in `PreUpdate`, after
/// [`RpcSystems::Dispatch`] (with [`NetSystems::Closing`] between the two),
/// so game systems in `Update` see the sessions as this frame left them.
#[derive(SystemSet, Debug, Clone, PartialEq, Eq, Hash)]
pub enum SessionSystems {
    /// Apply store replies.
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
    /// Largest `data` of `userdata_save`, compact JSON bytes (`--max-userdata-bytes`).
    pub max_userdata_bytes: usize,
    /// Failed password logins per peer address within the window (`--login-fail-limit`).
    pub login_fail_limit: u32,
    /// The window of the login throttle (`--login-fail-window`).
    pub login_fail_window: Duration,
    /// Keep each session's newest user data in a [`UserData`] component
    /// (loaded at login) for game code; off in the plain server.
    pub mirror_userdata: bool,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            login_timeout: Duration::from_secs(10),
            kick_save_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(60),
            max_userdata_bytes: 65_536,
            login_fail_limit: 5,
            login_fail_window: Duration::from_secs(300),
            mirror_userdata: false,
        }
    }
}

/// The session plugin: opens the store, registers the methods of
/// docs/protocol.md §4, installs the session gate, and runs the state machine.
/// Needs `NetPlugin` and `RpcPlugin` (add it after them).
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

    /// A plugin opening `store` when built (panics if it cannot be opened).
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
        let store = opened.unwrap_or_else(|| {
            let waker = app.world_mut().get_resource_or_init::<FrameWaker>().clone();
            Store::open(self.store.clone(), Some(Arc::new(move || waker.wake())))
                .unwrap_or_else(|e| panic!("SessionPlugin: cannot open the store {:?}: {e}", self.store.path))
        });
        app.insert_resource(self.config.clone())
            .insert_resource(StoreHandle(Some(store)))
            .init_resource::<SessionIndex>()
            .init_resource::<PendingTags>()
            .init_resource::<StagedCards>()
            .init_resource::<LoginThrottle>()
            .init_resource::<DeadlineQueue>()
            .init_resource::<ShutdownState>()
            .init_resource::<KickAllowList>()
            .configure_sets(
                PreUpdate,
                (SessionSystems::Store, NetSystems::Closing, SessionSystems::Timers)
                    .chain()
                    .after(RpcSystems::Dispatch),
            )
            .add_systems(PreUpdate, apply_store_replies.in_set(SessionSystems::Store))
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
            .add_observer(on_write_userdata)
            .add_rpc_method(method::LOGIN, Access::Public, login)
            .add_rpc_method(method::LOGOUT, Access::LoggedIn, logout)
            .add_rpc_method(method::USERDATA_SAVE, Access::LoggedIn, userdata_save)
            .add_rpc_method(method::USERDATA_LOAD, Access::LoggedIn, userdata_load)
            .add_rpc_method(method::REGISTER, Access::Public, register)
            .add_rpc_method(method::CHANGE_PASSWORD, Access::LoggedIn, change_password);
        app.world_mut().get_resource_or_init::<RpcGates>().0.push(Arc::new(session_gate));
    }
}

/// Gives every new connection its [`Session`] and [`LoginDeadline`] (the
/// transition in `machine.rs`); during a shutdown a new connection is told
/// `server_shutdown` and closed.
fn on_connection_opened(opened: On<ConnectionOpened>, mut ctx: SessionCtx) {
    ctx.open(opened.entity);
}
