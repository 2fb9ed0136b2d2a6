//! Portcullis: a headless game server built as Bevy ECS plugins.
//!
//! Clients speak JSON-RPC 2.0 over TCP, one message per line
//! (docs/protocol.md). Each connection is an entity; login, tokens, deadlines and
//! the single-session kick/save state machine are systems. Add
//! [`ServerPlugins`] to a Bevy app to embed the server in a game: it brings
//! the clock, the event-driven runner, `Time<Fixed>` at the tick rate and
//! signal handling along with the server plugins. Register game methods with
//! [`prelude::RpcAppExt::add_rpc_method`], and test game logic with the
//! in-memory [`prelude::TestClient`] or [`testing::TestServer`].
//!
//! # A minimal game
//!
//! ```
//! use bevy_app::prelude::*;
//! use bevy_ecs::prelude::*;
//! use portcullis::prelude::*;
//!
//! fn hello(In(_req): In<Request<NoParams>>) -> Result<String, RpcError> {
//!     Ok("hello".into())
//! }
//!
//! let db = tempfile::tempdir()?;
//! let store = StoreConfig::new(db.path().join("game.db")).fast_hashing(); // drop fast_hashing in production
//! let mut app = App::new();
//! app.add_plugins(ServerPlugins
//!         .set(NetPlugin::tcp("127.0.0.1:0".parse()?))
//!         .set(SessionPlugin::new(SessionConfig::default(), store))
//!         .set(SignalPlugin { install_process_handler: false })) // `app.run()` in main would keep it
//!     .add_rpc_method("hello", Access::Public, hello);
//! // A real game calls `app.run()` here: frames on input, FixedUpdate at 30 Hz, exit 0 on SIGTERM.
//! let mut client = TestClient::connect(&mut app);
//! client.send_line(r#"{"jsonrpc":"2.0","id":1,"method":"hello"}"#);
//! for _ in 0..3 {
//!     app.update();
//! }
//! assert_eq!(client.recv_line().as_deref(), Some(r#"{"jsonrpc":"2.0","id":1,"result":"hello"}"#));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Crates
//!
//! Each concept lives in its crate, re-exported here: [`runtime`] (runner,
//! waker, signals, shutdown phases, frame metrics), [`net`] (connections),
//! [`rpc`] (JSON-RPC), [`session`] (login and the kick/save machine),
//! [`store`] (SQLite), [`groups`], [`services`] (the gateway, docs/services.md). [`app`] assembles the `serve` app and
//! [`cli`] its command line (docs/cli.md).
#![forbid(unsafe_code)]

pub mod account;
pub mod admin_cli;
pub mod app;
pub mod cert;
pub mod cli;
pub mod scenario;

#[doc = include_str!("../docs/embedding.md")]
pub mod embedding {}

use bevy_app::{PluginGroup, PluginGroupBuilder};

pub use portcullis_accounts as accounts;
pub use portcullis_admin as admin;
pub use portcullis_groups as groups;
pub use portcullis_net as net;
pub use portcullis_rpc as rpc;
pub use portcullis_runtime as runtime;
pub use portcullis_services as services;
pub use portcullis_session as session;
pub use portcullis_store as store;
/// The test harness for system-level tests of games (`TestServer`,
/// `JsonClient`): the `portcullis_testkit` crate.
pub use portcullis_testkit as testing;
pub use portcullis_userdata as userdata;

/// Everything a game server needs, in order: the clock (`bevy_time`'s
/// `TimePlugin`), the event-driven runner with `Time<Fixed>` at its tick
/// rate ([`runtime::RunnerPlugin`], 30 Hz, no frame cap), the shutdown
/// phases and signal handling ([`runtime::ShutdownPlugin`],
/// [`runtime::SignalPlugin`]: SIGINT/SIGTERM drain and exit 0, a second
/// signal exits at once), then the network, JSON-RPC, sessions, accounts
/// (login, register, change_password), user data (save, load, the mirror)
/// session groups (docs/groups.md) and backend services (docs/services.md;
/// off until [`services::ServicesPlugin`] is set with a key).
///
/// Like Bevy's `DefaultPlugins`, configure members with `.set(...)` and
/// leave one out with `.disable::<...>()`:
/// `.set(RunnerPlugin { tick_hz: 10.0, max_frame_hz: 0.0 })`,
/// `.set(SignalPlugin { install_process_handler: false })` (in-process
/// servers of tests: there is one process handler), `.disable::<TimePlugin>()`
/// when the app adds `MinimalPlugins` itself.
///
/// The defaults listen on `127.0.0.1:7777` and open `portcullis.db`; set
/// `NetPlugin::tcp(addr)` and `SessionPlugin::new(config, store)` to choose.
/// See the crate docs for a complete game.
pub struct ServerPlugins;

impl PluginGroup for ServerPlugins {
    fn build(self) -> PluginGroupBuilder {
        PluginGroupBuilder::start::<Self>()
            .add(bevy_time::TimePlugin)
            .add(portcullis_runtime::RunnerPlugin::default())
            .add(portcullis_runtime::ShutdownPlugin)
            .add(portcullis_runtime::SignalPlugin::default())
            .add(portcullis_net::NetPlugin::default())
            .add(portcullis_rpc::RpcPlugin::default())
            .add(portcullis_session::SessionPlugin::default())
            .add(portcullis_accounts::AccountsPlugin::default())
            .add(portcullis_userdata::UserDataPlugin::default())
            .add(portcullis_groups::GroupsPlugin::default())
            .add(portcullis_services::ServicesPlugin::default())
    }
}

/// The items a game needs, in one import.
pub mod prelude {
    pub use crate::ServerPlugins;
    pub use bevy_time::TimePlugin;
    pub use portcullis_accounts::{AccountsConfig, AccountsPlugin};
    pub use portcullis_groups::{Groups, GroupsConfig, GroupsPlugin};
    pub use portcullis_net::{Connection, ConnectionClosed, ConnectionOpened, NetPlugin, TestClient};
    pub use portcullis_rpc::{
        Access, DisconnectReason, Empty, ErrorCode, NoParams, Reply, ReplyTo, Request, Rpc, RpcAppExt, RpcError,
        RpcPlugin,
    };
    pub use portcullis_runtime::{
        FrameWaker, RequestShutdown, RunnerPlugin, Shutdown, ShutdownPhase, ShutdownPlugin, SignalPlugin, Signals,
    };
    pub use portcullis_session::{
        Kick, Kicked, LoggedIn, LoggedOut, LoginDeadline, PendingRpc, Session, SessionConfig, SessionIndex,
        SessionPlugin, SessionState, Token,
    };
    pub use portcullis_store::StoreConfig;
    pub use portcullis_userdata::{
        UserData, UserDataChanged, UserDataConfig, UserDataPlugin, UserDataWriteFailed, WriteFailure, WriteUserData,
    };
}
