//! portcullis_services: backend services, the gateway of docs/protocol.md §8,
//! built only on the public API of `portcullis_rpc` and `portcullis_session`
//! (and the login throttle of `portcullis_accounts`), the way the groups
//! crate is.
//!
//! A service is a process that connects like a client and sends
//! `service_register` with the shared key (`--service-key`). Its methods
//! are then registered in the server's method registry as raw methods
//! ([`RpcMethods::insert_raw`](portcullis_rpc::RpcMethods::insert_raw)), so a
//! client's call of one passes exactly the checks, ordering and batch rules
//! of a built-in method; the forwarder sends it to one of the method's
//! services, round-robin, and relays the answer under the client's own id.
//!
//! ```text
//!  client ──request──▶ RpcSystems::Dispatch: rate limit, envelope, method, session gate (auth)
//!                         └─ forwarder (raw method): token removed ──▶ pick a service (round-robin,
//!                            not full) ──{"id":SID,"method":M,"params":{"params":P,"session":..}}──▶ service
//!                            no service right now: the call waits up to --service-wait
//!  service ──response──▶ RpcResponses (AcceptsResponses) ──▶ ServicesSystems::Route ──▶ client (its id)
//!  ServicesSystems::Timers: --service-timeout and --service-wait expire ──▶ SERVICE_UNAVAILABLE
//!  observers: LoggedIn / LoggedOut ──▶ session_started / session_ended to every service;
//!             ConnectionClosed of a service ──▶ its calls in flight get SERVICE_UNAVAILABLE
//! ```
//!
//! # Examples
//!
//! ```
//! use portcullis_services::{ServicesConfig, ServicesPlugin};
//! use portcullis_testkit::TestServer;
//! use serde_json::json;
//!
//! let mut server = TestServer::new();
//! server.app.add_plugins(ServicesPlugin::new(ServicesConfig::with_key("s3cret")));
//! let mut service = server.connect();
//! let reply = server.request(
//!     &mut service,
//!     "service_register",
//!     json!({"key": "s3cret", "name": "echo", "methods": [{"name": "echo", "auth": false}]}),
//! );
//! assert_eq!(reply["result"], json!({"name": "echo", "methods": ["echo"]}));
//! ```
#![forbid(unsafe_code)]

mod config;
mod forward;
mod methods;
mod routes;

use std::sync::Arc;

use bevy_app::prelude::*;
use bevy_ecs::prelude::*;
use portcullis_protocol::service;
use portcullis_rpc::{Access, RpcAppExt, RpcGates, RpcSystems};
use portcullis_session::SessionSystems;

pub use config::*;
pub use forward::*;
pub use methods::*;
pub use routes::*;

/// Where the gateway works in the frame: in `PreUpdate`, after the
/// dispatcher (which reads the services' responses) and before the session
/// timers.
#[derive(SystemSet, Debug, Clone, PartialEq, Eq, Hash)]
pub enum ServicesSystems {
    /// Relay the services' responses to their clients.
    Route,
    /// Expire calls past `--service-timeout` or `--service-wait`.
    Timers,
}

/// The gateway plugin (docs/protocol.md §8). With no key in its config it
/// adds nothing at all: `service_register`, `service_notify` and
/// `service_kick` are then unknown methods (`-32601`). Needs `NetPlugin`,
/// `RpcPlugin`, `SessionPlugin` and (for the login throttle) `AccountsPlugin`;
/// add it after them (`portcullis::ServerPlugins` does).
#[derive(Debug, Clone, Default)]
pub struct ServicesPlugin {
    /// Key, timeouts and limits, copied into the [`ServicesConfig`] resource.
    pub config: ServicesConfig,
}

impl ServicesPlugin {
    /// A plugin with this configuration.
    pub fn new(config: ServicesConfig) -> Self {
        Self { config }
    }
}

impl Plugin for ServicesPlugin {
    fn build(&self, app: &mut App) {
        if self.config.key.is_none() {
            return;
        }
        app.insert_resource(self.config.clone())
            .insert_resource(ServiceKey::new(self.config.key.as_deref().unwrap_or_default()))
            .init_resource::<Services>()
            .configure_sets(
                PreUpdate,
                (ServicesSystems::Route, ServicesSystems::Timers)
                    .chain()
                    .after(RpcSystems::Dispatch)
                    .before(SessionSystems::Timers),
            )
            .add_systems(PreUpdate, route_service_responses.in_set(ServicesSystems::Route))
            .add_systems(PreUpdate, expire_service_calls.in_set(ServicesSystems::Timers))
            .add_observer(announce_session_started)
            .add_observer(announce_session_ended)
            .add_observer(service_closed)
            .add_rpc_method(service::SERVICE_REGISTER, Access::Public, service_register)
            .add_rpc_method(service::SERVICE_NOTIFY, Access::Public, service_notify)
            .add_rpc_method(service::SERVICE_KICK, Access::Public, service_kick);
        // First of the gates: which methods a connection may call at all is
        // the "method exists" check of docs/protocol.md §3, before any session state.
        app.world_mut().get_resource_or_init::<RpcGates>().0.insert(0, Arc::new(services_gate));
    }
}
