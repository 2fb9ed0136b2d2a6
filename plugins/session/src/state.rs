//! The session component and the indexes that find sessions.

use std::collections::HashMap;
use std::time::Duration;

use bevy_ecs::prelude::*;
use portcullis_rpc::{DisconnectReason, ReplyTo};
pub use portcullis_store::Account;

use crate::token::Token;

/// The session of one connection (docs/protocol.md §6). Inserted on every
/// connection entity by `SessionPlugin` when it connects; changed only by the
/// transitions in `machine.rs`.
///
/// Exactly one state at a time; each state carries the data that only it
/// has (a token only while logged in or kicking, a login deadline only while
/// awaiting login), so no combination of components can disagree.
#[derive(Component, Debug)]
pub struct Session {
    pub(crate) state: SessionState,
    /// The idle timer counts from the later of this and the last frame
    /// (it restarts when a takeover login is answered, docs/protocol.md §6).
    pub(crate) idle_base: Duration,
    /// `userdata_save` requests of this session waiting on the store.
    pub(crate) saves_in_flight: u32,
    /// This session's entry in the `DeadlineQueue`: no deadline of the
    /// session falls before it.
    pub(crate) next_check: Option<Duration>,
    /// A deadline came due and the transport was asked to read the input
    /// already waiting before it is judged (docs/protocol.md §6, "Deadlines").
    pub(crate) awaiting_drain: bool,
}

/// The life-cycle states of docs/protocol.md §6.
#[derive(Debug)]
pub enum SessionState {
    /// Connected, not logged in; closed with `login_timeout` at `deadline`
    /// (`Time<Real>` elapsed). A password check may be in flight.
    AwaitingLogin {
        /// When the login deadline fires.
        deadline: Duration,
    },
    /// A valid login for `account` waits for the account's other session to
    /// go (duplicate login, docs/protocol.md §6 steps 2–6). No deadline applies.
    WaitingTakeover {
        /// The account being taken over.
        account: Account,
        /// The `login` request to answer with the token.
        login: ReplyTo,
    },
    /// Logged in with a live token.
    LoggedIn {
        /// The account.
        account: Account,
        /// The live token.
        token: Token,
    },
    /// Being kicked: told `kicked`, waiting for its final save until `deadline`.
    Kicking {
        /// The account.
        account: Account,
        /// The still-live token (its save needs it).
        token: Token,
        /// Why it is kicked; also the reason of its `disconnected`.
        reason: DisconnectReason,
        /// When the kick ends without a save.
        deadline: Duration,
        /// Saves sent before the kick and still waiting on the store: their
        /// answers do not end the kick, only a save sent in reply to `kicked` does.
        saves_before_kick: u32,
    },
    /// The server closed the connection; waiting for the transport to confirm.
    Closed,
}

impl Session {
    pub(crate) fn new(login_deadline: Duration, now: Duration) -> Self {
        Self {
            state: SessionState::AwaitingLogin { deadline: login_deadline },
            idle_base: now,
            saves_in_flight: 0,
            next_check: None,
            awaiting_drain: false,
        }
    }

    /// The current state.
    pub fn state(&self) -> &SessionState {
        &self.state
    }

    /// The account, while logged in or kicking.
    pub fn account(&self) -> Option<&Account> {
        match &self.state {
            SessionState::LoggedIn { account, .. } | SessionState::Kicking { account, .. } => Some(account),
            _ => None,
        }
    }

    /// The live token, while logged in or kicking.
    pub fn token(&self) -> Option<&Token> {
        match &self.state {
            SessionState::LoggedIn { token, .. } | SessionState::Kicking { token, .. } => Some(token),
            _ => None,
        }
    }

    /// Whether the session is logged in (kicking counts: it still has its token).
    pub fn is_logged_in(&self) -> bool {
        self.account().is_some()
    }

    /// Whether the session is being kicked.
    pub fn is_kicking(&self) -> bool {
        matches!(self.state, SessionState::Kicking { .. })
    }

    /// A short name of the state for logs and tests.
    pub fn state_name(&self) -> &'static str {
        match self.state {
            SessionState::AwaitingLogin { .. } => "awaiting_login",
            SessionState::WaitingTakeover { .. } => "waiting_takeover",
            SessionState::LoggedIn { .. } => "logged_in",
            SessionState::Kicking { .. } => "kicking",
            SessionState::Closed => "closed",
        }
    }
}

/// Finds sessions: account id → entity of its session (logged in or
/// kicking), token → entity, account id → entity of a login waiting to take
/// the account over. Kept by the transitions in `machine.rs`; read-only for
/// everyone else.
#[derive(Resource, Default, Debug)]
pub struct SessionIndex {
    pub(crate) by_account: HashMap<i64, Entity>,
    /// Lower-cased account name → entity (names compare case-insensitively, docs/protocol.md §4).
    pub(crate) by_name: HashMap<String, Entity>,
    pub(crate) by_token: HashMap<Token, Entity>,
    pub(crate) takeovers: HashMap<i64, Entity>,
}

impl SessionIndex {
    /// The entity holding the session of an account id.
    pub fn entity_of_account(&self, account_id: i64) -> Option<Entity> {
        self.by_account.get(&account_id).copied()
    }

    /// The entity holding the session of an account, by name (any case).
    pub fn entity_of_account_name(&self, name: &str) -> Option<Entity> {
        self.by_name.get(&name.to_ascii_lowercase()).copied()
    }

    /// The entity whose live token this is.
    pub fn entity_of_token(&self, token: &str) -> Option<Entity> {
        self.by_token.get(token).copied()
    }

    /// Number of sessions (logged in or kicking).
    pub fn sessions(&self) -> usize {
        self.by_account.len()
    }

    /// Entities of every session (logged in or kicking).
    pub fn entities(&self) -> impl Iterator<Item = Entity> + '_ {
        self.by_account.values().copied()
    }
}
