//! The bridge to the storage thread: the store handle, the requests waiting
//! on it, and the routing of each reply to the feature that asked for it.
//!
//! A feature (login, saves, a game's own) submits a request with an op
//! type of its own ([`StoreOp`]) through [`SessionCtx::submit`]. The op waits
//! here, filed under its type; when the store answers,
//! [`route_store_replies`] (in `SessionSystems::Route`) moves it with the
//! reply into that type's queue, and the feature's own system (in
//! `SessionSystems::Store`) takes its queue with
//! [`SessionCtx::take_store_replies`]. Session never looks inside an op, so a
//! new feature that uses the store touches no other feature's crate.
//!
//! ```text
//!  feature: ctx.submit(reply_to, MyOp, request) ──▶ store thread
//!  SessionSystems::Route: route_store_replies ── tag → (entity, MyOp's queue)
//!  SessionSystems::Store: feature system: ctx.take_store_replies::<MyOp>(&mut buf) → answer, transition
//! ```
//!
//! Cost per request: one hash-map entry by tag and one in the op type's
//! map, no allocation of its own (queues keep their capacity).

use std::any::{Any, TypeId};
use std::collections::HashMap;

use bevy_ecs::prelude::*;
use portcullis_rpc::{ErrorCode, ReplyTo, RpcError};
use portcullis_store::{Store, StoreFailure, StoreOk};

use crate::machine::SessionCtx;

/// The running store. Inserted by `SessionPlugin`; taken and closed (every
/// queued write committed) at the end of a graceful shutdown.
#[derive(Resource, Default)]
pub struct StoreHandle(pub(crate) Option<Store>);

impl StoreHandle {
    /// The store, unless it was closed.
    pub fn get(&self) -> Option<&Store> {
        self.0.as_ref()
    }

    /// Takes the store out (to close it).
    pub fn take(&mut self) -> Option<Store> {
        self.0.take()
    }
}

/// What a feature remembers about one of its requests while the store works
/// on it (e.g. "a password login from this peer", "a client save"). Submitted with [`SessionCtx::submit`]; handed back with the
/// store's answer by [`SessionCtx::take_store_replies`] of the same type.
pub trait StoreOp: Send + Sync + 'static {
    /// Whether the kick/save machine counts this request as a save of its
    /// session while it waits (docs/protocol.md §6: a kicked session's save
    /// already on its way is waited for past the kick deadline), until the
    /// feature takes its answer with [`SessionCtx::take_store_replies`].
    fn is_save(&self) -> bool {
        false
    }
}

/// One answered request of op type `T`: who asked, what it was, and the
/// store's answer.
#[derive(Debug)]
pub struct StoreReplied<T> {
    /// The request to answer (its entity may be gone: the connection closed
    /// while it waited; the reply is still to be applied, e.g. a failed
    /// password still counts for throttling).
    pub reply_to: ReplyTo,
    /// The op as submitted.
    pub op: T,
    /// The store's answer.
    pub result: Result<StoreOk, StoreFailure>,
}

/// The waiting ops and answered replies of one op type.
trait Route: Any + Send + Sync {
    /// Moves the op with `tag` and its answer into the answered queue.
    fn deliver(&mut self, tag: u64, result: Result<StoreOk, StoreFailure>);
}

struct Routes<T> {
    waiting: HashMap<u64, (ReplyTo, T)>,
    replied: Vec<StoreReplied<T>>,
}

impl<T: StoreOp> Route for Routes<T> {
    fn deliver(&mut self, tag: u64, result: Result<StoreOk, StoreFailure>) {
        if let Some((reply_to, op)) = self.waiting.remove(&tag) {
            self.replied.push(StoreReplied { reply_to, op, result });
        }
    }
}

/// One request waiting on the store: the entity that asked and the route of its op type.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Waiting {
    pub(crate) entity: Entity,
    route: usize,
}

/// Routes store replies: store tag → the entity whose [`PendingRpc`] holds
/// the request and the op type whose feature applies the reply. A request
/// of a connection that closed while it waited stays here (its reply is
/// still applied: a failed password counts for throttling, a save
/// finishes). Inserted by `SessionPlugin`; kept by the transitions in
/// `machine.rs`.
///
/// Each connection has at most one client request waiting: it holds the
/// connection's later frames (requests apply in arrival order,
/// docs/protocol.md §2).
///
/// [`PendingRpc`]: crate::PendingRpc
#[derive(Resource, Default)]
pub struct PendingTags {
    next_tag: u64,
    pub(crate) by_tag: HashMap<u64, Waiting>,
    routes: Vec<Box<dyn Route>>,
    route_of: HashMap<TypeId, usize>,
}

impl std::fmt::Debug for PendingTags {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingTags").field("waiting", &self.by_tag.len()).field("routes", &self.routes.len()).finish()
    }
}

impl PendingTags {
    pub(crate) fn next_tag(&mut self) -> u64 {
        self.next_tag += 1;
        self.next_tag
    }

    /// Number of requests waiting on the store.
    pub fn len(&self) -> usize {
        self.by_tag.len()
    }

    /// Whether no request waits on the store.
    pub fn is_empty(&self) -> bool {
        self.by_tag.is_empty()
    }

    /// The entity that asked the request with this tag (it may have closed since).
    pub fn entity_of_tag(&self, tag: u64) -> Option<Entity> {
        self.by_tag.get(&tag).map(|w| w.entity)
    }

    /// Files a submitted request: `tag` → `entity`, the op under its type.
    pub(crate) fn insert<T: StoreOp>(&mut self, tag: u64, reply_to: ReplyTo, op: T) {
        let entity = reply_to.entity;
        let route = *self.route_of.entry(TypeId::of::<T>()).or_insert_with(|| {
            self.routes.push(Box::new(Routes::<T> { waiting: HashMap::new(), replied: Vec::new() }));
            self.routes.len() - 1
        });
        let any: &mut dyn Any = &mut *self.routes[route];
        if let Some(routes) = any.downcast_mut::<Routes<T>>() {
            routes.waiting.insert(tag, (reply_to, op));
            self.by_tag.insert(tag, Waiting { entity, route });
        }
    }

    /// The store answered `tag`: its op moves with the answer into its type's queue.
    pub(crate) fn deliver(&mut self, tag: u64, result: Result<StoreOk, StoreFailure>) -> Option<Waiting> {
        let waiting = self.by_tag.remove(&tag)?;
        self.routes[waiting.route].deliver(tag, result);
        Some(waiting)
    }

    /// Moves the answered replies of op type `T` into `into` (keeping both
    /// buffers' capacity when `into` is empty).
    pub(crate) fn take_replied<T: StoreOp>(&mut self, into: &mut Vec<StoreReplied<T>>) {
        let Some(route) = self.route_of.get(&TypeId::of::<T>()).copied() else { return };
        let any: &mut dyn Any = &mut *self.routes[route];
        let Some(routes) = any.downcast_mut::<Routes<T>>() else { return };
        if into.is_empty() {
            std::mem::swap(into, &mut routes.replied);
        } else {
            into.append(&mut routes.replied);
        }
    }
}

/// A storage failure the client sees as INTERNAL_ERROR; `reason` is logged.
pub fn internal_error(reason: &str) -> RpcError {
    bevy_log::warn!(reason, "storage failure");
    RpcError::new(ErrorCode::InternalError)
}

/// The JSON-RPC error of a store failure (docs/protocol.md §3):
/// INVALID_CREDENTIALS, ACCOUNT_EXISTS, or INTERNAL_ERROR (logged).
pub fn store_error(failure: &StoreFailure) -> RpcError {
    match failure {
        StoreFailure::InvalidCredentials => RpcError::new(ErrorCode::InvalidCredentials),
        StoreFailure::AccountExists => RpcError::new(ErrorCode::AccountExists),
        StoreFailure::Internal(reason) => internal_error(reason),
    }
}

/// Hands every finished store reply to the queue of the op type that asked
/// for it, and takes the request off its connection's [`PendingRpc`]. The
/// features apply their queues in `SessionSystems::Store`. Runs in
/// `SessionSystems::Route`.
///
/// [`PendingRpc`]: crate::PendingRpc
pub fn route_store_replies(mut ctx: SessionCtx) {
    loop {
        let Some(store) = ctx.store.get() else { return };
        let Ok(reply) = store.replies().try_recv() else { return };
        if let Some(wait) = ctx.directory.claims.remove(&reply.tag) {
            ctx.claim_answered(wait, reply.result);
            continue;
        }
        ctx.reply_arrived(reply.tag, reply.result);
    }
}
