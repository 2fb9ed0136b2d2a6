//! Who serves which method, the calls in flight and the calls waiting for a
//! service (docs/protocol.md §8).

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::time::Duration;

use bevy_ecs::prelude::*;
use portcullis_net::Connection;
use portcullis_protocol::{ErrorCode, RpcError, method, service};
use portcullis_rpc::{GateInput, ReplyTo};

/// Marks a backend service's connection (docs/protocol.md §8): inserted by
/// `service_register`, never removed (the connection stays a service until
/// it closes). The admin API lists such a connection with the state
/// `service`; game code can query `With<ServiceConnection>`.
#[derive(Component, Debug, Clone, PartialEq, Eq)]
pub struct ServiceConnection {
    /// The name the service registered with.
    pub name: String,
    /// The methods it serves, in registration order.
    pub methods: Vec<String>,
}

/// A client call ready to go to a service: the method and the JSON texts of
/// the forwarded params.
#[derive(Debug, Clone)]
pub struct ServiceCall {
    /// The method name.
    pub method: String,
    /// Where the answer goes (`id: None` for a notification).
    pub reply_to: ReplyTo,
    /// `{"params":P,"session":{"conn":N,"account":A}}` as JSON text.
    pub params: String,
}

/// One forwarded request waiting for its service's answer.
#[derive(Debug, Clone)]
pub(crate) struct InFlight {
    pub service: Entity,
    pub reply_to: ReplyTo,
    pub deadline: Duration,
}

/// One registered method.
#[derive(Debug, Default)]
pub(crate) struct Route {
    /// Whether it is **auth**.
    pub auth: bool,
    /// Its services, in registration order; the round-robin walks them.
    pub services: Vec<Entity>,
    /// Index of the service the next call tries first.
    pub cursor: usize,
    /// Calls waiting for a service (their wait ids), oldest first.
    pub waiting: VecDeque<u64>,
}

/// Why a call could not be sent now.
#[derive(Debug)]
pub(crate) enum NotSent {
    /// No live service has the method: the call may wait.
    NoService(ServiceCall),
    /// Every service of the method is full.
    Busy,
}

/// The gateway's state. Inserted by `ServicesPlugin`; changed by its
/// methods, systems and observers only.
#[derive(Resource, Debug, Default)]
pub struct Services {
    pub(crate) routes: HashMap<String, Route>,
    pub(crate) in_flight: HashMap<u64, InFlight>,
    /// `(deadline, service id)` of the calls in flight, earliest first.
    pub(crate) timeouts: BTreeSet<(Duration, u64)>,
    /// Calls waiting for a service, by wait id, with their deadline.
    pub(crate) waiting: HashMap<u64, (ServiceCall, Duration)>,
    pub(crate) waits: BTreeSet<(Duration, u64)>,
    /// Requests in flight per service.
    pub(crate) load: HashMap<Entity, usize>,
    /// Logged-in client sessions: entity → (connection id, account), for `session_ended`.
    pub(crate) sessions: HashMap<Entity, (u64, String)>,
    pub(crate) next_id: u64,
}

impl Services {
    /// Whether a service ever registered `method` since the server started.
    pub fn is_service_method(&self, method: &str) -> bool {
        self.routes.contains_key(method)
    }

    /// Services currently registered for `method`.
    pub fn services_of(&self, method: &str) -> &[Entity] {
        self.routes.get(method).map_or(&[], |r| r.services.as_slice())
    }

    /// Forwarded requests waiting for a service's answer.
    pub fn calls_in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Calls waiting for a service to register their method again.
    pub fn calls_waiting(&self) -> usize {
        self.waiting.len()
    }

    pub(crate) fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Sends `call` to the next service of its method that is open and not
    /// full (round-robin). A notification is sent to the next open one and
    /// is never busy.
    pub(crate) fn send<'a>(
        &mut self,
        call: ServiceCall,
        connection: impl Fn(Entity) -> Option<&'a Connection>,
        max_in_flight: usize,
        deadline: Duration,
    ) -> Result<(), NotSent> {
        let Some(route) = self.routes.get_mut(&call.method) else { return Err(NotSent::NoService(call)) };
        let count = route.services.len();
        let mut open = 0;
        for step in 0..count {
            let at = (route.cursor + step) % count;
            let entity = route.services[at];
            let Some(conn) = connection(entity).filter(|c| !c.is_closing()) else { continue };
            open += 1;
            let load = self.load.get(&entity).copied().unwrap_or(0);
            if call.reply_to.id.is_some() && load >= max_in_flight {
                continue;
            }
            route.cursor = (at + 1) % count;
            let method = serde_json::to_string(&call.method).unwrap_or_default();
            if call.reply_to.id.is_none() {
                conn.send(format!(r#"{{"jsonrpc":"2.0","method":{method},"params":{}}}"#, call.params));
                return Ok(());
            }
            self.next_id += 1;
            let sid = self.next_id;
            conn.send(format!(r#"{{"jsonrpc":"2.0","id":{sid},"method":{method},"params":{}}}"#, call.params));
            *self.load.entry(entity).or_default() += 1;
            self.timeouts.insert((deadline, sid));
            self.in_flight.insert(sid, InFlight { service: entity, reply_to: call.reply_to, deadline });
            return Ok(());
        }
        if open == 0 { Err(NotSent::NoService(call)) } else { Err(NotSent::Busy) }
    }

    /// Puts a call in the wait for a service of its method until `deadline`.
    pub(crate) fn wait(&mut self, call: ServiceCall, deadline: Duration) {
        let id = self.next_id();
        if let Some(route) = self.routes.get_mut(&call.method) {
            route.waiting.push_back(id);
        }
        self.waits.insert((deadline, id));
        self.waiting.insert(id, (call, deadline));
    }

    /// Takes the answered (or failed) request with service id `sid`.
    pub(crate) fn finish(&mut self, sid: u64) -> Option<InFlight> {
        let call = self.in_flight.remove(&sid)?;
        self.timeouts.remove(&(call.deadline, sid));
        if let Some(load) = self.load.get_mut(&call.service) {
            *load = load.saturating_sub(1);
        }
        Some(call)
    }

    /// Takes the waiting calls of `method`, oldest first.
    pub(crate) fn take_waiting(&mut self, method: &str) -> Vec<ServiceCall> {
        let Some(route) = self.routes.get_mut(method) else { return Vec::new() };
        let ids: Vec<u64> = route.waiting.drain(..).collect();
        let mut calls = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some((call, deadline)) = self.waiting.remove(&id) {
                self.waits.remove(&(deadline, id));
                calls.push(call);
            }
        }
        calls
    }
}

/// The methods a service connection may call (docs/protocol.md §8): its own
/// four and `service_register` (to add methods). Everything else is `-32601`
/// on a service connection, and `service_notify` / `service_kick` are
/// `-32601` on any other connection. Installed first of the `RpcGates`, since
/// this is the "method exists" check of docs/protocol.md §3.
pub fn services_gate(world: &mut World, input: &GateInput<'_>) -> Result<(), RpcError> {
    let is_service = world.get::<ServiceConnection>(input.entity).is_some();
    let allowed = if is_service {
        [method::PING, method::DISCONNECT, service::SERVICE_REGISTER, service::SERVICE_NOTIFY, service::SERVICE_KICK]
            .contains(&input.method)
    } else {
        ![service::SERVICE_NOTIFY, service::SERVICE_KICK].contains(&input.method)
    };
    if allowed { Ok(()) } else { Err(RpcError::new(ErrorCode::MethodNotFound)) }
}
