//! portcullis_groups: session groups, built only on the public API of
//! `portcullis_rpc` and `portcullis_session` (docs/groups.md).
//!
//! A logged-in session creates a group (id and key chosen by the client or
//! by the server), other sessions join it with the key, and any member
//! broadcasts a JSON message to the other members as the `group_message`
//! notification. A session leaves its groups when it logs out, when its
//! kick ends, or when its connection closes; a group with no member left is
//! gone.
//!
//! ```text
//!  RpcSystems::Dispatch ── session gate (1001 / -32602 token / 1003 / 1006) ── methods.rs
//!      group_create / group_join / group_leave ──▶ Groups (resource)
//!      group_send ── Groups: the other members ──▶ Rpc::notify_many("group_message")
//!  observers: LoggedOut, ConnectionClosed ──▶ Groups: drop the session everywhere
//! ```
//!
//! # Examples
//!
//! ```
//! use portcullis_groups::GroupsPlugin;
//! use portcullis_testkit::TestServer;
//! use serde_json::json;
//!
//! let mut server = TestServer::new();
//! server.app.add_plugins(GroupsPlugin::default());
//! let mut alice = server.connect();
//! let token = server.login(&mut alice, "netease1", "123");
//! let reply = server.request(&mut alice, "group_create", json!({"token": token, "group": "lobby"}));
//! assert_eq!(reply["result"]["group"], "lobby");
//! assert_eq!(reply["result"]["key"].as_str().map(str::len), Some(32));
//! ```
#![forbid(unsafe_code)]

mod error;
mod groups;
mod methods;

use bevy_app::prelude::*;
use bevy_ecs::prelude::*;
use portcullis_net::ConnectionClosed;
use portcullis_protocol::method;
use portcullis_rpc::{Access, RpcAppExt};
use portcullis_session::LoggedOut;

pub use error::*;
pub use groups::*;
pub use methods::*;

/// Limits of session groups. Inserted as a resource by [`GroupsPlugin`];
/// read-only.
#[derive(Resource, Debug, Clone)]
pub struct GroupsConfig {
    /// Groups on the server at once; one more `group_create` is
    /// TOO_MANY_GROUPS (2006). Default 10,000.
    pub max_groups: usize,
    /// Members of one group; one more `group_join` is GROUP_FULL (2005).
    /// Default 64.
    pub max_members: usize,
    /// Groups one session may be in at once; one more create or join is
    /// MEMBERSHIP_LIMIT (2007). Default 16.
    pub max_memberships: usize,
    /// Largest `message` of `group_send`, in bytes of compact JSON; a larger
    /// one is `-32602` with field `message`. Default 8,192.
    pub max_message_bytes: usize,
}

impl Default for GroupsConfig {
    fn default() -> Self {
        Self { max_groups: 10_000, max_members: 64, max_memberships: 16, max_message_bytes: 8_192 }
    }
}

/// The session-groups plugin: inserts [`Groups`] and [`GroupsConfig`],
/// registers `group_create`, `group_join`, `group_leave` and `group_send`
/// (all [`Access::LoggedIn`]), and drops a session from its groups on
/// `LoggedOut` and `ConnectionClosed`. Needs `NetPlugin`, `RpcPlugin` and
/// `SessionPlugin`; add it after them (`portcullis::ServerPlugins` does).
///
/// # Examples
///
/// ```
/// use bevy_app::App;
/// use portcullis_groups::{GroupsConfig, GroupsPlugin};
///
/// let mut app = App::new();
/// // ... TimePlugin, NetPlugin, RpcPlugin, SessionPlugin first ...
/// app.add_plugins(GroupsPlugin { config: GroupsConfig { max_members: 8, ..Default::default() } });
/// ```
#[derive(Debug, Clone, Default)]
pub struct GroupsPlugin {
    /// Limits, copied into the [`GroupsConfig`] resource.
    pub config: GroupsConfig,
}

impl Plugin for GroupsPlugin {
    fn build(&self, app: &mut App) {
        app.insert_resource(self.config.clone())
            .init_resource::<Groups>()
            .add_observer(|out: On<LoggedOut>, mut groups: ResMut<Groups>| leave_all(&mut groups, out.entity))
            .add_observer(|closed: On<ConnectionClosed>, mut groups: ResMut<Groups>| {
                leave_all(&mut groups, closed.entity);
            })
            .add_rpc_method(method::GROUP_CREATE, Access::LoggedIn, group_create)
            .add_rpc_method(method::GROUP_JOIN, Access::LoggedIn, group_join)
            .add_rpc_method(method::GROUP_LEAVE, Access::LoggedIn, group_leave)
            .add_rpc_method(method::GROUP_SEND, Access::LoggedIn, group_send);
    }
}

/// Drops the session on `entity` from every group it is in.
fn leave_all(groups: &mut Groups, entity: Entity) {
    for id in groups.remove_everywhere(entity) {
        bevy_log::debug!(group = %id, conn = ?entity, "session left group (session ended)");
    }
}
