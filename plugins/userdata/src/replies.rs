//! The store replies of user-data requests: answered in store order, also
//! for a connection that closed while it waited (its save still committed).

use bevy_ecs::prelude::*;
use portcullis_protocol::{LoadResult, SaveResult, notification};
use portcullis_rpc::{ErrorCode, RpcError};
use portcullis_session::{SessionCtx, StoreOp, StoreReplied, internal_error, store_error};
use portcullis_store::{StoreOk, format_saved_at};
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};

use crate::mirror::{ChangeSource, UserData, UserDataChanged, UserDataWriteFailed, WriteFailure};

/// What a user-data request waiting on the store was (the op of
/// [`SessionCtx::submit`]).
#[derive(Debug, Clone, PartialEq)]
pub enum UserDataOp {
    /// A client's `userdata_save`; `mirror` keeps the data for [`UserData`] when mirroring.
    Save {
        /// The saved object, when mirroring.
        mirror: Option<Box<Map<String, Value>>>,
    },
    /// A client's `userdata_load`.
    Load,
    /// The load of [`UserData`] right after login (no client request behind it).
    Preload,
    /// A [`WriteUserData`](crate::WriteUserData) from game code.
    ServerWrite {
        /// The data written.
        data: Box<Map<String, Value>>,
    },
}

impl StoreOp for UserDataOp {
    /// Client saves and server-side writes are saves the kick waits for (docs/protocol.md §6).
    fn is_save(&self) -> bool {
        matches!(self, Self::Save { .. } | Self::ServerWrite { .. })
    }
}

/// Applies the store's answers to user-data requests: answers the client,
/// updates the [`UserData`] mirror, and — docs/protocol.md §6 — ends the kick
/// of a kicked session whose save, sent after `kicked`, was answered. Runs
/// in `SessionSystems::Store`.
pub fn apply_userdata_replies(
    mut ctx: SessionCtx,
    mut mirrors: Query<&mut UserData>,
    mut replies: Local<Vec<StoreReplied<UserDataOp>>>,
    saves: Local<SavesCounter>,
) {
    ctx.take_store_replies(&mut replies);
    for StoreReplied { reply_to, op, result } in replies.drain(..) {
        let entity = reply_to.entity;
        if matches!(result, Ok(StoreOk::Saved(_))) {
            saves.0.increment(1);
        }
        match (op, result) {
            (UserDataOp::Save { mirror }, result) => {
                // Whether this save ends a kick: it must be one sent after `kicked`.
                let kicking = ctx.save_answered_while_kicking(entity);
                match result {
                    Ok(StoreOk::Saved(saved)) => {
                        let saved_at = format_saved_at(saved.saved_at_ms);
                        if let Some(data) = mirror {
                            let update = (Some(*data), saved.version, Some(saved_at.clone()));
                            set_mirror(&mut ctx, &mut mirrors, entity, update, ChangeSource::Client);
                        }
                        ctx.rpc().respond(&reply_to, Ok(SaveResult { version: saved.version, saved_at }));
                        // docs/protocol.md §6: a kicked session's save, once answered, ends the kick.
                        if kicking {
                            ctx.end_kick(entity);
                        }
                    }
                    // A failed save does not end a kick (§6).
                    Ok(_) => ctx.rpc().respond::<()>(&reply_to, Err(internal_error("unexpected reply to save"))),
                    Err(failure) => ctx.rpc().respond::<()>(&reply_to, Err(store_error(&failure))),
                }
            }
            (UserDataOp::Preload, Ok(StoreOk::Userdata(stored))) => {
                let update = match stored {
                    Some(u) => match serde_json::from_str::<Map<String, Value>>(&u.data) {
                        Ok(map) => (Some(map), u.version, Some(format_saved_at(u.saved_at_ms))),
                        Err(_) => {
                            internal_error("stored user data is not a JSON object");
                            continue;
                        }
                    },
                    None => (None, 0, None),
                };
                set_mirror(&mut ctx, &mut mirrors, entity, update, ChangeSource::Load);
            }
            (UserDataOp::Preload, _) => {
                internal_error("user data could not be loaded at login");
            }
            (UserDataOp::ServerWrite { data }, result) => match result {
                Ok(StoreOk::Saved(saved)) => {
                    let saved_at = format_saved_at(saved.saved_at_ms);
                    ctx.rpc().notify(
                        entity,
                        notification::USERDATA_CHANGED,
                        &json!({"version": saved.version, "saved_at": saved_at}),
                    );
                    let update = (Some(*data), saved.version, Some(saved_at));
                    set_mirror(&mut ctx, &mut mirrors, entity, update, ChangeSource::Server);
                }
                _ => {
                    internal_error("server-side user data write failed");
                    ctx.commands().trigger(UserDataWriteFailed { entity, reason: WriteFailure::Storage });
                }
            },
            (UserDataOp::Load, Ok(StoreOk::Userdata(Some(stored)))) => {
                let (version, saved_at) = (stored.version, format_saved_at(stored.saved_at_ms));
                let answer = RawValue::from_string(stored.data)
                    .map(|data| LoadResult { data, version, saved_at })
                    .map_err(|_| internal_error("stored user data is not JSON"));
                ctx.rpc().respond(&reply_to, answer);
            }
            (UserDataOp::Load, Ok(StoreOk::Userdata(None))) => {
                ctx.rpc().respond::<()>(&reply_to, Err(RpcError::new(ErrorCode::NoUserdata)));
            }
            (UserDataOp::Load, Err(failure)) => ctx.rpc().respond::<()>(&reply_to, Err(store_error(&failure))),
            (UserDataOp::Load, Ok(_)) => {
                ctx.rpc().respond::<()>(&reply_to, Err(internal_error("unexpected store reply")));
            }
        }
    }
}

/// Updates the [`UserData`] mirror of a live session and announces it.
/// `update` is (data, version, saved_at).
fn set_mirror(
    ctx: &mut SessionCtx,
    mirrors: &mut Query<&mut UserData>,
    entity: Entity,
    (data, version, saved_at): (Option<Map<String, Value>>, u64, Option<String>),
    source: ChangeSource,
) {
    let Ok(mut mirror) = mirrors.get_mut(entity) else { return };
    if source != ChangeSource::Load && version < mirror.version {
        return; // an older commit finishing late never replaces a newer one
    }
    *mirror = UserData { data, version, saved_at, loaded: true };
    ctx.commands().trigger(UserDataChanged { entity, version, source });
}

/// `portcullis_userdata_saves_total` (docs/operations.md): user data versions
/// written, client saves and server-side writes alike. Registered once per
/// system, when it is first run.
pub struct SavesCounter(metrics::Counter);

impl Default for SavesCounter {
    fn default() -> Self {
        Self(metrics::counter!("portcullis_userdata_saves_total"))
    }
}
