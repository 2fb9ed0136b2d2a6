//! portcullis_userdata: the user-data methods of docs/protocol.md §4 —
//! `userdata_save`, `userdata_load` — and the server-side mirror of a
//! session's data for game code ([`UserData`], [`WriteUserData`]), built on
//! the public API of `portcullis_session`.
//!
//! ```text
//!  RpcSystems::Dispatch ── session gate ── methods.rs: userdata_save / userdata_load
//!      ──SessionCtx::submit::<UserDataOp>──▶ store thread (saves: counted in flight by session)
//!  observers: LoggedIn → UserData + its load; LoggedOut → UserData removed; WriteUserData → a save
//!  SessionSystems::Store ── replies.rs: take_store_replies::<UserDataOp>
//!      save answered (no longer in flight); sent after `kicked`? ──▶ SessionCtx::end_kick (§6)
//!      the mirror updated ──▶ UserDataChanged / UserDataWriteFailed; `userdata_changed` to the client
//! ```
//!
//! The kick/save rule of docs/protocol.md §6 stays session's: a save counts
//! as in flight until this crate takes its answer, and this crate only asks
//! whether it was one sent after `kicked`
//! ([`save_answered_while_kicking`](portcullis_session::SessionCtx::save_answered_while_kicking)).
//! A save of a connection that closed while it waited still commits.
#![forbid(unsafe_code)]

mod methods;
mod mirror;
mod replies;

use bevy_app::prelude::*;
use bevy_ecs::prelude::*;
use portcullis_protocol::method;
use portcullis_rpc::{Access, RpcAppExt};
use portcullis_session::SessionSystems;

pub use methods::*;
pub use mirror::*;
pub use portcullis_protocol::{LoadResult, SaveResult};
pub use replies::*;

/// Limits and options of user data (docs/cli.md). Inserted as a resource by
/// [`UserDataPlugin`]; read-only.
#[derive(Resource, Debug, Clone)]
pub struct UserDataConfig {
    /// Largest `data` of `userdata_save`, compact JSON bytes (`--max-userdata-bytes`).
    pub max_userdata_bytes: usize,
    /// Keep each session's newest user data in a [`UserData`] component
    /// (loaded at login) for game code; off in the plain server.
    pub mirror_userdata: bool,
}

impl Default for UserDataConfig {
    fn default() -> Self {
        Self { max_userdata_bytes: 65_536, mirror_userdata: false }
    }
}

/// The user-data plugin: registers `userdata_save` and `userdata_load`
/// (docs/protocol.md §4), applies their store replies, and keeps the
/// [`UserData`] mirror when [`UserDataConfig::mirror_userdata`] is on. Needs
/// `SessionPlugin` (add it after it).
#[derive(Default)]
pub struct UserDataPlugin {
    /// Limits and options.
    pub config: UserDataConfig,
}

impl Plugin for UserDataPlugin {
    fn build(&self, app: &mut App) {
        app.insert_resource(self.config.clone())
            .add_systems(PreUpdate, apply_userdata_replies.in_set(SessionSystems::Store))
            .add_observer(on_logged_in)
            .add_observer(on_logged_out)
            .add_observer(on_write_userdata)
            .add_rpc_method(method::USERDATA_SAVE, Access::LoggedIn, userdata_save)
            .add_rpc_method(method::USERDATA_LOAD, Access::LoggedIn, userdata_load);
    }
}
