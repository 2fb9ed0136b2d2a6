//! Portcullis: a headless game server built as Bevy ECS plugins.
//!
//! Clients speak JSON-RPC 2.0 over TCP, one message per line
//! (docs/protocol.md). Each connection is an entity; login, tokens, deadlines and
//! the single-session kick/save state machine are systems. Add
//! [`ServerPlugins`] to a Bevy app (with `bevy_time::TimePlugin`) to embed
//! the server in a game, register game methods with
//! [`prelude::RpcAppExt::add_rpc_method`], and test game logic with the
//! in-memory [`prelude::TestClient`].
#![forbid(unsafe_code)]

pub mod account;
pub mod app;
pub mod cert;
pub mod cli;
pub mod metrics;
pub mod runner;
pub mod scenario;

#[doc = include_str!("../docs/embedding.md")]
pub mod embedding {}

use bevy_app::{PluginGroup, PluginGroupBuilder};

pub use portcullis_accounts as accounts;
pub use portcullis_groups as groups;
pub use portcullis_net as net;
pub use portcullis_rpc as rpc;
pub use portcullis_session as session;
pub use portcullis_store as store;
/// The test harness for system-level tests of games (`TestServer`,
/// `JsonClient`): the `portcullis_testkit` crate.
pub use portcullis_testkit as testing;
pub use portcullis_userdata as userdata;

/// Every Portcullis plugin, in order: network, JSON-RPC, sessions, accounts
/// (login, register, change_password), user data (save, load, the mirror),
/// session groups (`portcullis_groups`, docs/groups.md). Like
/// Bevy's `MinimalPlugins`, configure members with `.set(...)`. Needs
/// `bevy_time::TimePlugin` (or `MinimalPlugins`) in the app too.
///
/// # Examples
///
/// ```no_run
/// use bevy_app::{App, PluginGroup};
/// use portcullis::prelude::*;
///
/// let mut app = App::new();
/// app.add_plugins(bevy_time::TimePlugin)
///     .add_plugins(ServerPlugins.set(NetPlugin::tcp("127.0.0.1:0".parse().unwrap())));
/// ```
pub struct ServerPlugins;

impl PluginGroup for ServerPlugins {
    fn build(self) -> PluginGroupBuilder {
        PluginGroupBuilder::start::<Self>()
            .add(portcullis_net::NetPlugin::default())
            .add(portcullis_rpc::RpcPlugin::default())
            .add(portcullis_session::SessionPlugin::default())
            .add(portcullis_accounts::AccountsPlugin::default())
            .add(portcullis_userdata::UserDataPlugin::default())
            .add(portcullis_groups::GroupsPlugin::default())
    }
}

/// The items a game needs, in one import.
pub mod prelude {
    pub use crate::ServerPlugins;
    pub use portcullis_accounts::{AccountsConfig, AccountsPlugin};
    pub use portcullis_groups::{Groups, GroupsConfig, GroupsPlugin};
    pub use portcullis_net::{Connection, ConnectionClosed, ConnectionOpened, NetPlugin, TestClient};
    pub use portcullis_rpc::{
        Access, DisconnectReason, Empty, ErrorCode, NoParams, Reply, ReplyTo, Request, Rpc, RpcAppExt, RpcError,
        RpcPlugin,
    };
    pub use portcullis_session::{
        Kick, Kicked, LoggedIn, LoggedOut, LoginDeadline, PendingRpc, RequestShutdown, Session, SessionConfig,
        SessionIndex, SessionPlugin, SessionState, Token,
    };
    pub use portcullis_store::StoreConfig;
    pub use portcullis_userdata::{
        UserData, UserDataChanged, UserDataConfig, UserDataPlugin, UserDataWriteFailed, WriteFailure, WriteUserData,
    };
}
