//! portcullis_rpc: JSON-RPC 2.0 over Portcullis connections.
//!
//! Each frame a connection's [`Inbox`](portcullis_net::Inbox) holds is
//! parsed ([`parse_frame`]), checked in the order of docs/protocol.md §3 (rate
//! limit, envelope, method, then the [`RpcGates`] that layers above
//! install), and handed to the method registered under its name with
//! [`RpcAppExt::add_rpc_method`]. Handlers are ordinary Bevy systems; they
//! answer by returning a [`Reply`], or later through the [`Rpc`] system
//! parameter, which also sends notifications.
#![forbid(unsafe_code)]

mod batch;
mod builtins;
mod counters;
mod dispatch;
mod envelope;
mod json_text;
mod raw;
mod registry;
mod reply;

use bevy_app::prelude::*;
use bevy_ecs::prelude::*;
use portcullis_net::{ConnectionOpened, Goodbyes, NetSystems};
use portcullis_protocol::method;

pub use builtins::*;
pub use counters::*;
pub use dispatch::*;
pub use envelope::*;
pub use json_text::*;
/// The wire types this crate speaks, defined once in `portcullis_protocol`.
pub use portcullis_protocol::{
    DisconnectReason, Empty, ErrorCode, PingResult, RequestId, RpcError, error_line, notification_line, result_line,
};
pub use raw::*;
pub use registry::*;
pub use reply::*;

/// Where in the frame the dispatcher runs: in `PreUpdate`, after
/// [`NetSystems::Receive`], so game systems in `Update` see what this
/// frame's requests did; answers go out by [`NetSystems::Send`] in
/// `PostUpdate` of the same frame.
#[derive(SystemSet, Debug, Clone, PartialEq, Eq, Hash)]
pub enum RpcSystems {
    /// Parse frames and run method handlers.
    Dispatch,
}

/// JSON-RPC limits, inserted as a resource by [`RpcPlugin`] (read-only).
#[derive(Resource, Debug, Clone)]
pub struct RpcConfig {
    /// Protocol errors (`-32700`, `-32600` answers) before a close (docs/protocol.md §1).
    pub max_protocol_errors: u32,
    /// Most members of one batch; a longer batch gets one `-32600 batch too
    /// large` and nothing of it runs (docs/protocol.md §2, `--max-batch`).
    pub max_batch: usize,
}

impl Default for RpcConfig {
    fn default() -> Self {
        Self { max_protocol_errors: 16, max_batch: 64 }
    }
}

/// The JSON-RPC plugin: the registry, the dispatcher, the built-in
/// methods `ping` and `disconnect`, and the `server_full` goodbye of the
/// network layer ([`Goodbyes`], docs/protocol.md §6). Needs `NetPlugin`.
#[derive(Default)]
pub struct RpcPlugin {
    /// Limits, copied into the [`RpcConfig`] resource.
    pub config: RpcConfig,
}

impl Plugin for RpcPlugin {
    fn build(&self, app: &mut App) {
        app.world_mut().get_resource_or_init::<Goodbyes>().server_full = Some(goodbye(DisconnectReason::ServerFull));
        app.insert_resource(self.config.clone())
            .init_resource::<RpcMethods>()
            .init_resource::<RequestCounters>()
            .init_resource::<RpcGates>()
            .init_resource::<RpcResponses>()
            .init_resource::<dispatch::Tickets>()
            .init_resource::<portcullis_net::ReadyInboxes>()
            .configure_sets(PreUpdate, RpcSystems::Dispatch.after(NetSystems::Receive))
            .add_systems(PreUpdate, dispatch_frames.in_set(RpcSystems::Dispatch))
            .add_systems(PostUpdate, close_finished_connections.in_set(NetSystems::Send))
            .add_systems(PostUpdate, wake_for_waiting_frames.after(NetSystems::Send))
            .add_observer(|opened: On<ConnectionOpened>, mut commands: Commands| {
                commands.entity(opened.entity).try_insert(RpcState::default());
            })
            .add_rpc_method(method::DISCONNECT, Access::Public, disconnect);
        registry::add_plain_method(app, method::PING, Access::Public, ping);
    }
}
