//! Life-cycle events of sessions, and the kick request game code can trigger.

use bevy_ecs::prelude::*;
use portcullis_protocol::SessionEndReason;
use portcullis_rpc::DisconnectReason;
use portcullis_store::Account;

/// Triggered on a connection's entity when it logs in (its token issued).
#[derive(EntityEvent, Debug, Clone)]
pub struct LoggedIn {
    /// The connection's entity.
    pub entity: Entity,
    /// The account.
    pub account: Account,
}

/// Triggered on a connection's entity when its session ends: by `logout`,
/// at the end of a kick, or because the connection closed.
#[derive(EntityEvent, Debug, Clone)]
pub struct LoggedOut {
    /// The connection's entity (it may be despawned right after).
    pub entity: Entity,
    /// The account.
    pub account: Account,
    /// Why: `logout`, the reason the server closed the connection with (a
    /// kick's reason, `client_request`, ...), or `client_closed` when the
    /// client (or its transport) closed first (docs/protocol.md §8, `session_ended`).
    pub reason: SessionEndReason,
}

/// Triggered on a connection's entity when the server starts to kick its
/// session (`kicked` sent, docs/protocol.md §6).
#[derive(EntityEvent, Debug, Clone)]
pub struct Kicked {
    /// The connection's entity.
    pub entity: Entity,
    /// Why.
    pub reason: DisconnectReason,
}

/// Asks the server to close a connection the way docs/protocol.md §6 says: a
/// logged-in session is kicked (told `kicked`, given `--kick-save-timeout`
/// to save, then sent `disconnected` and closed); a connection that is not
/// logged in gets `disconnected {reason}` and is closed at once. A session
/// already being kicked keeps its kick.
///
/// Trigger it from any system; the built-in timers and the duplicate-login
/// takeover use the same path.
///
/// # Examples
///
/// ```
/// use bevy_ecs::prelude::*;
/// use portcullis_session::{Kick, DisconnectReason};
///
/// fn kick_cheater(mut commands: Commands, cheater: Entity) {
///     commands.trigger(Kick { entity: cheater, reason: DisconnectReason::Admin });
/// }
/// ```
#[derive(EntityEvent, Debug, Clone)]
pub struct Kick {
    /// The connection's entity.
    pub entity: Entity,
    /// The reason (`admin` for game code and operators).
    pub reason: DisconnectReason,
}
