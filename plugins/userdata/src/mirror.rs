//! Server-side access to an online account's user data (for game code).
//!
//! With [`UserDataConfig::mirror_userdata`](crate::UserDataConfig) on, every
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
//! use portcullis_userdata::{UserData, WriteUserData};
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
use portcullis_rpc::ReplyTo;
use portcullis_session::{LoggedIn, LoggedOut, SessionCtx};
use portcullis_store::StoreRequest;
use serde_json::{Map, Value};

use crate::UserDataConfig;
use crate::replies::UserDataOp;

/// The newest saved user data of a logged-in session's account. Inserted by
/// `UserDataPlugin` at login when `mirror_userdata` is on (first with
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

/// Gives a session that logged in its [`UserData`] (`loaded: false`) and
/// asks the store for the newest version, when mirroring is on.
pub(crate) fn on_logged_in(logged_in: On<LoggedIn>, config: Res<UserDataConfig>, mut ctx: SessionCtx) {
    if !config.mirror_userdata {
        return;
    }
    let entity = logged_in.entity;
    ctx.commands().entity(entity).try_insert(UserData::default());
    let internal = ReplyTo { entity, id: None, ticket: 0 };
    let load = StoreRequest::LoadUserdata { account_id: logged_in.account.id };
    if ctx.submit(&internal, UserDataOp::Preload, load).is_err() {
        bevy_log::warn!(account = %logged_in.account.name, "user data not loaded: store busy");
    }
}

/// Takes [`UserData`] off a session that ended, so it does not linger on
/// the connection for the next account.
pub(crate) fn on_logged_out(logged_out: On<LoggedOut>, config: Res<UserDataConfig>, mut commands: Commands) {
    if config.mirror_userdata {
        commands.entity(logged_out.entity).try_remove::<UserData>();
    }
}

/// Runs a [`WriteUserData`]: checks the rule of the module docs, then hands
/// the save to the store like a client save.
pub(crate) fn on_write_userdata(
    write: On<WriteUserData>,
    mut ctx: SessionCtx,
    mirrors: Query<&UserData>,
    config: Res<UserDataConfig>,
) {
    let entity = write.entity;
    let failure = |ctx: &mut SessionCtx, reason| {
        ctx.commands().trigger(UserDataWriteFailed { entity, reason });
    };
    let saves_in_flight = ctx.saves_in_flight(entity);
    let Some(account_id) = ctx.session(entity).and_then(|s| s.account()).map(|a| a.id) else {
        return failure(&mut ctx, WriteFailure::NotLoggedIn);
    };
    let current = match mirrors.get(entity) {
        Ok(mirror) if mirror.loaded => mirror.version,
        _ => return failure(&mut ctx, WriteFailure::NotLoggedIn),
    };
    if current != write.base_version || saves_in_flight > 0 {
        return failure(&mut ctx, WriteFailure::Conflict { current });
    }
    let Ok(text) = serde_json::to_string(&write.data) else { return failure(&mut ctx, WriteFailure::Storage) };
    if text.len() > config.max_userdata_bytes {
        return failure(&mut ctx, WriteFailure::TooLarge);
    }
    let internal = ReplyTo { entity, id: None, ticket: 0 };
    let op = UserDataOp::ServerWrite { data: Box::new(write.data.clone()) };
    let request = StoreRequest::SaveUserdata { account_id, data: text };
    if ctx.submit(&internal, op, request).is_err() {
        failure(&mut ctx, WriteFailure::Storage);
    }
}
