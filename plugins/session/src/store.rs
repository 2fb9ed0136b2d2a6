//! The bridge to the storage thread: the store handle, the requests waiting
//! on it, and the system that applies its replies.

use std::collections::HashMap;

use bevy_ecs::prelude::*;
use portcullis_protocol::{LoadResult, RegisterResult, SaveResult, notification};
use portcullis_rpc::{ErrorCode, ReplyTo, RpcError};
use portcullis_store::{Store, StoreFailure, StoreOk, StoreReply, format_saved_at};
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};

use crate::machine::SessionCtx;
use crate::userdata::{ChangeSource, UserData, UserDataChanged, UserDataWriteFailed, WriteFailure};

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

/// What a request waiting on the store was.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum PendingOp {
    Login {
        peer: std::net::IpAddr,
    },
    Register,
    /// `change_password`; a wrong old password counts against `peer` for
    /// login throttling (docs/protocol.md §4).
    ChangePassword {
        peer: std::net::IpAddr,
    },
    /// A client's `userdata_save`; `mirror` keeps the data for [`UserData`] when mirroring.
    Save {
        mirror: Option<Box<Map<String, Value>>>,
    },
    Load,
    /// The load of [`UserData`] right after login (no client request behind it).
    Preload,
    /// A [`WriteUserData`](crate::WriteUserData) from game code.
    ServerWrite {
        data: Box<Map<String, Value>>,
    },
}

/// Routes store replies: store tag → the entity whose [`PendingRpc`] holds
/// the request. A request of a connection that closed while it waited moves
/// here whole (its reply is still applied: a failed password counts for
/// throttling, a save finishes). Inserted by `SessionPlugin`; kept by the
/// transitions in `machine.rs`.
///
/// Each connection has at most one client request waiting: it holds the
/// connection's later frames (requests apply in arrival order,
/// docs/protocol.md §2).
///
/// [`PendingRpc`]: crate::PendingRpc
#[derive(Resource, Default, Debug)]
pub struct PendingTags {
    next_tag: u64,
    pub(crate) by_tag: HashMap<u64, Entity>,
    pub(crate) orphans: HashMap<u64, (ReplyTo, PendingOp)>,
}

impl PendingTags {
    pub(crate) fn next_tag(&mut self) -> u64 {
        self.next_tag += 1;
        self.next_tag
    }

    /// Number of requests waiting on the store.
    pub fn len(&self) -> usize {
        self.by_tag.len() + self.orphans.len()
    }

    /// Whether no request waits on the store.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The entity whose [`PendingRpc`](crate::PendingRpc) holds the request with this tag.
    pub fn entity_of_tag(&self, tag: u64) -> Option<Entity> {
        self.by_tag.get(&tag).copied()
    }
}

fn internal(reason: &str) -> RpcError {
    bevy_log::warn!(reason, "storage failure");
    RpcError::new(ErrorCode::InternalError)
}

/// Applies every finished store reply: answers its request and runs the
/// transition it completes. Runs in `SessionSystems::Store`.
pub fn apply_store_replies(mut ctx: SessionCtx) {
    let replies: Vec<StoreReply> = match ctx.store.get() {
        Some(store) => store.replies().try_iter().collect(),
        None => return,
    };
    for reply in replies {
        let Some((reply_to, op)) = ctx.take_pending(reply.tag) else { continue };
        apply_reply(&mut ctx, &reply_to, op, reply.result);
    }
}

fn apply_reply(ctx: &mut SessionCtx, reply_to: &ReplyTo, op: PendingOp, result: Result<StoreOk, StoreFailure>) {
    let entity = reply_to.entity;
    match (op, result) {
        (PendingOp::Login { .. }, Ok(StoreOk::Account(account))) => ctx.password_login_verified(reply_to, account),
        (PendingOp::Login { peer }, Err(StoreFailure::InvalidCredentials)) => {
            let now = ctx.now();
            ctx.throttle.record_failure(peer, now);
            ctx.rpc.respond::<()>(reply_to, Err(RpcError::new(ErrorCode::InvalidCredentials)));
        }
        (PendingOp::Register, Ok(StoreOk::Account(account))) => {
            ctx.rpc.respond(reply_to, Ok(RegisterResult { account: account.name }));
        }
        (PendingOp::Register, Err(StoreFailure::AccountExists)) => {
            ctx.rpc.respond::<()>(reply_to, Err(RpcError::new(ErrorCode::AccountExists)));
        }
        (PendingOp::ChangePassword { .. }, Ok(StoreOk::Done)) => {
            ctx.rpc.respond(reply_to, Ok(portcullis_rpc::Empty {}));
        }
        (PendingOp::ChangePassword { peer }, Err(StoreFailure::InvalidCredentials)) => {
            let now = ctx.now();
            ctx.throttle.record_failure(peer, now);
            ctx.rpc.respond::<()>(reply_to, Err(RpcError::new(ErrorCode::InvalidCredentials)));
        }
        (PendingOp::Save { mirror }, result) => {
            // Whether this save ends a kick: it must be one sent after `kicked`.
            ctx.save_finished(entity);
            let kicking = ctx.save_answered_while_kicking(entity);
            match result {
                Ok(StoreOk::Saved(saved)) => {
                    let saved_at = format_saved_at(saved.saved_at_ms);
                    if let Some(data) = mirror {
                        set_mirror(
                            ctx,
                            entity,
                            Some(*data),
                            saved.version,
                            Some(saved_at.clone()),
                            ChangeSource::Client,
                        );
                    }
                    ctx.rpc.respond(reply_to, Ok(SaveResult { version: saved.version, saved_at }));
                    // docs/protocol.md §6: a kicked session's save, once answered, ends the kick.
                    if kicking {
                        ctx.end_kick(entity);
                    }
                }
                // A failed save does not end a kick (§6).
                Ok(_) => ctx.rpc.respond::<()>(reply_to, Err(internal("unexpected reply to save"))),
                Err(failure) => ctx.rpc.respond::<()>(reply_to, Err(failure_error(&failure))),
            }
        }
        (PendingOp::Preload, Ok(StoreOk::Userdata(stored))) => {
            let (data, version, saved_at) = match stored {
                Some(u) => match serde_json::from_str::<Map<String, Value>>(&u.data) {
                    Ok(map) => (Some(map), u.version, Some(format_saved_at(u.saved_at_ms))),
                    Err(_) => {
                        internal("stored user data is not a JSON object");
                        return;
                    }
                },
                None => (None, 0, None),
            };
            set_mirror(ctx, entity, data, version, saved_at, ChangeSource::Load);
        }
        (PendingOp::Preload, _) => {
            internal("user data could not be loaded at login");
        }
        (PendingOp::ServerWrite { data }, result) => {
            ctx.save_finished(entity);
            match result {
                Ok(StoreOk::Saved(saved)) => {
                    let saved_at = format_saved_at(saved.saved_at_ms);
                    ctx.rpc.notify(
                        entity,
                        notification::USERDATA_CHANGED,
                        &json!({"version": saved.version, "saved_at": saved_at}),
                    );
                    set_mirror(ctx, entity, Some(*data), saved.version, Some(saved_at), ChangeSource::Server);
                }
                _ => {
                    internal("server-side user data write failed");
                    ctx.commands.trigger(UserDataWriteFailed { entity, reason: WriteFailure::Storage });
                }
            }
        }
        (PendingOp::Load, Ok(StoreOk::Userdata(Some(stored)))) => {
            let (version, saved_at) = (stored.version, format_saved_at(stored.saved_at_ms));
            let answer = RawValue::from_string(stored.data)
                .map(|data| LoadResult { data, version, saved_at })
                .map_err(|_| internal("stored user data is not JSON"));
            ctx.rpc.respond(reply_to, answer);
        }
        (PendingOp::Load, Ok(StoreOk::Userdata(None))) => {
            ctx.rpc.respond::<()>(reply_to, Err(RpcError::new(ErrorCode::NoUserdata)));
        }
        (_, Err(failure)) => ctx.rpc.respond::<()>(reply_to, Err(failure_error(&failure))),
        (_, Ok(_)) => ctx.rpc.respond::<()>(reply_to, Err(internal("unexpected store reply"))),
    }
}

fn failure_error(failure: &StoreFailure) -> RpcError {
    match failure {
        StoreFailure::InvalidCredentials => RpcError::new(ErrorCode::InvalidCredentials),
        StoreFailure::AccountExists => RpcError::new(ErrorCode::AccountExists),
        StoreFailure::Internal(reason) => internal(reason),
    }
}

/// Updates the [`UserData`] mirror of a live session and announces it.
fn set_mirror(
    ctx: &mut SessionCtx,
    entity: Entity,
    data: Option<Map<String, Value>>,
    version: u64,
    saved_at: Option<String>,
    source: ChangeSource,
) {
    let Ok(mut mirror) = ctx.userdata.get_mut(entity) else { return };
    if source != ChangeSource::Load && version < mirror.version {
        return; // an older commit finishing late never replaces a newer one
    }
    *mirror = UserData { data, version, saved_at, loaded: true };
    ctx.commands.trigger(UserDataChanged { entity, version, source });
}
