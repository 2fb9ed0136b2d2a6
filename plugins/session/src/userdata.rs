//! Server-side access to an online account's user data (for game code).
//!
//! With [`SessionConfig::mirror_userdata`](crate::SessionConfig) on, every
//! session gets a [`UserData`] component holding the newest saved version
//! of its account's data, loaded right after login and kept current by every
//! save. Game systems read it like any component, and change it with a
//! [`WriteUserData`] trigger, which goes through the same store path as a
//! client's `userdata_save` (a new version, acknowledged after the commit).
//!
//! **Who wins.** Neither side silently overwrites the other:
//! - a server-side write names the version it was based on; it is refused
//!   with [`WriteFailure::Conflict`] when that is no longer the newest
//!   version or when a client save is on its way to the store — re-read
//!   [`UserData`] and apply the change again;
//! - a client's `userdata_save` is always applied (docs/protocol.md §4); after a
//!   server-side write commits, the client is sent a `userdata_changed`
//!   notification (`{"version":N,"saved_at":S}`) so it reloads before its
//!   next save;
//! - every change is announced to game code by [`UserDataChanged`], which
//!   says whether the client or the server made it.
//!
//! # Examples
//!
//! ```
//! use bevy_ecs::prelude::*;
//! use portcullis_session::{UserData, WriteUserData};
//!
//! /// Gives every online player 10 more gold, based on what they have now.
//! fn grant_gold(players: Query<(Entity, &UserData)>, mut commands: Commands) {
//!     for (entity, userdata) in &players {
//!         let Some(mut data) = userdata.data.clone() else { continue };
//!         let gold = data.get("gold").and_then(|g| g.as_i64()).unwrap_or(0);
//!         data.insert("gold".into(), (gold + 10).into());
//!         commands.trigger(WriteUserData { entity, data, base_version: userdata.version });
//!     }
//! }
//! ```

use bevy_ecs::prelude::*;
use serde_json::{Map, Value};

/// The newest saved user data of a logged-in session's account. Inserted by
/// `SessionPlugin` at login when `mirror_userdata` is on (first with
/// `loaded: false`), updated after every committed save, removed when the
/// session ends. Read-only for game code: change it with [`WriteUserData`].
#[derive(Component, Debug, Clone, Default, PartialEq)]
pub struct UserData {
    /// The data; `None` when the account has never saved.
    pub data: Option<Map<String, Value>>,
    /// Its version (0 when there is none yet).
    pub version: u64,
    /// Its commit time (`YYYY-MM-DDTHH:MM:SS.mmmZ`), when there is a version.
    pub saved_at: Option<String>,
    /// Whether the load at login has finished.
    pub loaded: bool,
}

/// Who made a change of [`UserData`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeSource {
    /// Loaded from the store at login.
    Load,
    /// The client's `userdata_save`.
    Client,
    /// A [`WriteUserData`] from game code.
    Server,
}

/// Triggered on a session's entity after its [`UserData`] changed.
#[derive(EntityEvent, Debug, Clone)]
pub struct UserDataChanged {
    /// The connection's entity.
    pub entity: Entity,
    /// The new version.
    pub version: u64,
    /// Who changed it.
    pub source: ChangeSource,
}

/// Asks to save `data` as the account's next version, if the newest version
/// is still `base_version` (see the module docs for the rule).
#[derive(EntityEvent, Debug, Clone)]
pub struct WriteUserData {
    /// The session's entity.
    pub entity: Entity,
    /// The new data.
    pub data: Map<String, Value>,
    /// The version the change was based on ([`UserData::version`]).
    pub base_version: u64,
}

/// Why a [`WriteUserData`] was not saved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteFailure {
    /// The entity has no logged-in session with loaded [`UserData`].
    NotLoggedIn,
    /// A newer version exists or a client save is in flight; `current` is
    /// the newest version the server knows.
    Conflict {
        /// The newest committed version.
        current: u64,
    },
    /// The data is over `max_userdata_bytes`.
    TooLarge,
    /// The store refused or failed; nothing was saved.
    Storage,
}

/// Triggered on a session's entity when a [`WriteUserData`] failed.
#[derive(EntityEvent, Debug, Clone)]
pub struct UserDataWriteFailed {
    /// The session's entity.
    pub entity: Entity,
    /// Why.
    pub reason: WriteFailure,
}

/// Runs a [`WriteUserData`]: checks the rule of the module docs, then hands
/// the save to the store like a client save.
pub(crate) fn on_write_userdata(write: On<WriteUserData>, mut ctx: crate::machine::SessionCtx) {
    let entity = write.entity;
    let failure = |ctx: &mut crate::machine::SessionCtx, reason| {
        ctx.commands.trigger(UserDataWriteFailed { entity, reason });
    };
    let saves_in_flight = ctx.sessions.get(entity).map_or(0, |(_, timers, _)| timers.saves_in_flight);
    let Some(account_id) = ctx.session(entity).and_then(|s| s.account()).map(|a| a.id) else {
        return failure(&mut ctx, WriteFailure::NotLoggedIn);
    };
    let current = match ctx.userdata.get(entity) {
        Ok(mirror) if mirror.loaded => mirror.version,
        _ => return failure(&mut ctx, WriteFailure::NotLoggedIn),
    };
    if current != write.base_version || saves_in_flight > 0 {
        return failure(&mut ctx, WriteFailure::Conflict { current });
    }
    let Ok(text) = serde_json::to_string(&write.data) else { return failure(&mut ctx, WriteFailure::Storage) };
    if text.len() > ctx.config.max_userdata_bytes {
        return failure(&mut ctx, WriteFailure::TooLarge);
    }
    let internal = portcullis_rpc::ReplyTo { entity, id: None, ticket: 0 };
    let op = crate::store::PendingOp::ServerWrite { data: Box::new(write.data.clone()) };
    let request = portcullis_store::StoreRequest::SaveUserdata { account_id, data: text };
    if ctx.submit(&internal, op, request).is_err() {
        failure(&mut ctx, WriteFailure::Storage);
    }
}
