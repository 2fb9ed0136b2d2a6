//! The components of the connection entity (the design card) and the
//! indexes that find sessions.
//!
//! | component | on the entity | inserted, replaced, removed by |
//! |---|---|---|
//! | [`Session`] | every connection | the transitions in `machine.rs` |
//! | [`Token`] | only while logged in or kicking | the transitions in `machine.rs` |
//! | [`LoginDeadline`] | only while awaiting login | the transitions in `machine.rs` |
//! | [`PendingRpc`] | while a request waits on the store | the transitions in `machine.rs` |
//!
//! All four are immutable (`#[component(immutable)]`): no query hands out
//! `&mut`, so game code reads them (`Query<&Session, With<Token>>`,
//! `Changed<Session>`, `On<Insert<Token>>`) and cannot make them disagree.
//! [`SessionTimers`] is the mutable bookkeeping of the timers beside them.

use std::collections::HashMap;
use std::time::Duration;

use bevy_ecs::prelude::*;
use portcullis_rpc::{DisconnectReason, ReplyTo};
pub use portcullis_store::Account;

use crate::token::Token;

/// The session of one connection: its state in the life cycle of
/// docs/protocol.md §6. Inserted on every connection entity when it connects,
/// replaced at every change of state, only by the transitions in
/// `machine.rs` (it is immutable: game code reads it, `Changed<Session>`
/// sees each transition).
///
/// The state carries the data that only it has and that is not a component
/// of its own: the live token is the [`Token`] component and the login
/// deadline the [`LoginDeadline`] component.
#[derive(Component, Debug, Clone, PartialEq)]
#[component(immutable)]
pub struct Session {
    pub(crate) state: SessionState,
}

/// The life-cycle states of docs/protocol.md §6.
#[derive(Debug, Clone, PartialEq)]
pub enum SessionState {
    /// Connected, not logged in; closed with `login_timeout` at its
    /// [`LoginDeadline`]. A password check may be in flight.
    AwaitingLogin,
    /// A valid login for `account` waits for the account's other session to
    /// go (duplicate login, docs/protocol.md §6 steps 2–6). No deadline applies.
    WaitingTakeover {
        /// The account being taken over.
        account: Account,
        /// The `login` request to answer with the token.
        login: ReplyTo,
    },
    /// Logged in; the entity has its live [`Token`].
    LoggedIn {
        /// The account.
        account: Account,
    },
    /// Being kicked: told `kicked`, waiting for its final save until
    /// `deadline`; the entity still has its [`Token`] (its save needs it).
    Kicking {
        /// The account.
        account: Account,
        /// Why it is kicked; also the reason of its `disconnected`.
        reason: DisconnectReason,
        /// When the kick ends without a save (`Time<Real>` elapsed).
        deadline: Duration,
    },
    /// The server closed the connection; waiting for the transport to confirm.
    Closed,
}

impl Session {
    /// The current state.
    pub fn state(&self) -> &SessionState {
        &self.state
    }

    /// The account, while logged in or kicking.
    pub fn account(&self) -> Option<&Account> {
        match &self.state {
            SessionState::LoggedIn { account } | SessionState::Kicking { account, .. } => Some(account),
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

    /// A short name of the state for logs and tests: `awaiting_login`,
    /// `waiting_takeover`, `logged_in`, `kicking` or `closed`.
    pub fn state_name(&self) -> &'static str {
        match self.state {
            SessionState::AwaitingLogin => "awaiting_login",
            SessionState::WaitingTakeover { .. } => "waiting_takeover",
            SessionState::LoggedIn { .. } => "logged_in",
            SessionState::Kicking { .. } => "kicking",
            SessionState::Closed => "closed",
        }
    }
}

/// When a connection that has not logged in is closed with `login_timeout`
/// (`Time<Real>` elapsed, docs/protocol.md §6). On the entity only while its
/// [`Session`] awaits login; inserted at connect and at `logout`, removed at
/// login and close (and by [`SessionCtx::lift_login_deadline`](crate::SessionCtx::lift_login_deadline)
/// for a connection exempt from the deadline, e.g. a backend service), only
/// by the transitions in `machine.rs`.
#[derive(Component, Debug, Clone, Copy, PartialEq, Eq)]
#[component(immutable)]
pub struct LoginDeadline(pub Duration);

/// The requests of this connection waiting on the store (a password hash, a
/// save, a load, ...), as their store tags; what each one was is kept by the
/// feature that submitted it (see [`StoreOp`](crate::StoreOp)). On the entity
/// only while at least one waits; inserted, replaced and removed only by the
/// transitions in `machine.rs` (a submit adds a tag, the store's reply takes it).
#[derive(Component, Debug, Clone, PartialEq)]
#[component(immutable)]
pub struct PendingRpc {
    pub(crate) tags: Vec<u64>,
}

impl PendingRpc {
    /// Number of requests waiting.
    pub fn len(&self) -> usize {
        self.tags.len()
    }

    /// Whether none waits (never true on an entity: the component is removed then).
    pub fn is_empty(&self) -> bool {
        self.tags.is_empty()
    }

    /// The store tags of the waiting requests, oldest first.
    pub fn tags(&self) -> impl Iterator<Item = u64> + '_ {
        self.tags.iter().copied()
    }
}

/// The timer bookkeeping of a connection, beside its card components.
/// Inserted with [`Session`]; kept by `machine.rs` and `limits.rs`;
/// read-only for everyone else.
#[derive(Component, Debug, Clone, Default)]
pub struct SessionTimers {
    /// The idle timer counts from the later of this and the last frame
    /// (it restarts when a takeover login is answered, docs/protocol.md §6).
    pub(crate) idle_base: Duration,
    /// Saves of this session waiting on the store (ops whose
    /// [`is_save`](crate::StoreOp::is_save) is true).
    pub(crate) saves_in_flight: u32,
    /// Saves sent before the kick and still waiting on the store: their
    /// answers do not end the kick, only a save sent in reply to `kicked` does.
    pub(crate) saves_before_kick: u32,
    /// This session's entry in the `DeadlineQueue`: no deadline of the
    /// session falls before it.
    pub(crate) next_check: Option<Duration>,
    /// A deadline came due and the transport was asked to read the input
    /// already waiting before it is judged (docs/protocol.md §6, "Deadlines").
    pub(crate) awaiting_drain: bool,
}

impl SessionTimers {
    /// Saves of this session waiting on the store (client saves and server-side writes).
    pub fn saves_in_flight(&self) -> u32 {
        self.saves_in_flight
    }
}

/// The four card components of one entity, owned: what a transition writes.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Card {
    pub(crate) session: Session,
    pub(crate) token: Option<Token>,
    pub(crate) deadline: Option<LoginDeadline>,
    pub(crate) pending: Option<PendingRpc>,
}

/// The card components of one entity, borrowed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CardRef<'a> {
    pub(crate) session: &'a Session,
    pub(crate) token: Option<&'a Token>,
    pub(crate) deadline: Option<&'a LoginDeadline>,
    pub(crate) pending: Option<&'a PendingRpc>,
}

impl CardRef<'_> {
    /// Whether this is the same card as `card`.
    pub(crate) fn is(self, card: &Card) -> bool {
        self.session == &card.session
            && self.token == card.token.as_ref()
            && self.deadline == card.deadline.as_ref()
            && self.pending == card.pending.as_ref()
    }

    pub(crate) fn to_owned(self) -> Card {
        Card {
            session: self.session.clone(),
            token: self.token.cloned(),
            deadline: self.deadline.copied(),
            pending: self.pending.cloned(),
        }
    }
}

impl Card {
    pub(crate) fn as_ref(&self) -> CardRef<'_> {
        CardRef {
            session: &self.session,
            token: self.token.as_ref(),
            deadline: self.deadline.as_ref(),
            pending: self.pending.as_ref(),
        }
    }
}

/// The generation of the last card [`apply_card`] wrote to this entity.
#[derive(Component, Debug)]
pub(crate) struct AppliedCard(u64);

/// Cards written by a transition whose commands have not been applied yet:
/// the transitions read through it, so a transition sees the one before it
/// in the same system (and the gate sees a transition of the same frame).
/// Each entry leaves when its command writes the components. Kept by
/// `machine.rs`.
#[derive(Resource, Default, Debug)]
pub struct StagedCards {
    pub(crate) next_generation: u64,
    pub(crate) cards: HashMap<Entity, (u64, Card)>,
}

impl StagedCards {
    /// Number of cards written but not yet applied to their entities (0 between frames).
    pub fn len(&self) -> usize {
        self.cards.len()
    }

    /// Whether every written card has been applied.
    pub fn is_empty(&self) -> bool {
        self.cards.is_empty()
    }
}

/// The card of `entity` as the transitions see it: staged if a transition of
/// this system wrote it, else its components.
pub(crate) fn card_in_world(world: &World, entity: Entity) -> Option<CardRef<'_>> {
    if let Some((_, card)) = world.get_resource::<StagedCards>().and_then(|s| s.cards.get(&entity)) {
        return Some(card.as_ref());
    }
    let entity = world.get_entity(entity).ok()?;
    Some(CardRef {
        session: entity.get::<Session>()?,
        token: entity.get::<Token>(),
        deadline: entity.get::<LoginDeadline>(),
        pending: entity.get::<PendingRpc>(),
    })
}

/// Writes a staged card into the world (only the components that changed,
/// so `On<Insert<Token>>` fires once per login) and drops it from
/// [`StagedCards`] unless a later write replaced it.
///
/// Command queues of different systems are applied in schedule order, not in
/// the order the transitions ran, so a card can arrive after a newer one of
/// the same entity was applied; it is then dropped (the newer card was built
/// on it, through [`StagedCards`]), instead of undoing the newer transition.
pub(crate) fn apply_card(world: &mut World, entity: Entity, generation: u64, card: Card) {
    if let Some(mut staged) = world.get_resource_mut::<StagedCards>()
        && staged.cards.get(&entity).is_some_and(|(g, _)| *g == generation)
    {
        staged.cards.remove(&entity);
    }
    let Ok(mut e) = world.get_entity_mut(entity) else { return };
    if e.get::<AppliedCard>().is_some_and(|applied| applied.0 >= generation) {
        return;
    }
    e.insert(AppliedCard(generation));
    let Card { session, token, deadline, pending } = card;
    if e.get::<Session>() != Some(&session) {
        e.insert(session);
    }
    if e.get::<Token>() != token.as_ref() {
        match token {
            Some(token) => {
                e.insert(token);
            }
            None => {
                e.remove::<Token>();
            }
        }
    }
    if e.get::<LoginDeadline>() != deadline.as_ref() {
        match deadline {
            Some(deadline) => {
                e.insert(deadline);
            }
            None => {
                e.remove::<LoginDeadline>();
            }
        }
    }
    if e.get::<PendingRpc>() != pending.as_ref() {
        match pending {
            Some(pending) => {
                e.insert(pending);
            }
            None => {
                e.remove::<PendingRpc>();
            }
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

    /// Every indexed session: account id → entity.
    pub fn accounts(&self) -> impl Iterator<Item = (i64, Entity)> + '_ {
        self.by_account.iter().map(|(id, e)| (*id, *e))
    }

    /// Every live token → the entity holding it (as its [`Token`] component).
    pub fn tokens(&self) -> impl Iterator<Item = (&Token, Entity)> + '_ {
        self.by_token.iter().map(|(t, e)| (t, *e))
    }

    /// Account id → entity of a login waiting to take the account over.
    pub fn takeovers(&self) -> impl Iterator<Item = (i64, Entity)> + '_ {
        self.takeovers.iter().map(|(id, e)| (*id, *e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn card(state: SessionState) -> Card {
        Card { session: Session { state }, token: None, deadline: None, pending: None }
    }

    /// A card applied after a newer one of the same entity (their systems'
    /// command queues applied in another order than the transitions ran)
    /// leaves the newer card in place. If this failed, a kick that landed
    /// between a reply's routing and its apply would be undone: the session
    /// would read `logged_in` again after being told it is kicked.
    #[test]
    fn an_older_card_applied_late_does_not_undo_a_newer_one() {
        let mut world = World::new();
        world.init_resource::<StagedCards>();
        let entity = world.spawn(Session { state: SessionState::AwaitingLogin }).id();
        let account = Account { id: 1, name: "netease1".into() };
        let logged_in = card(SessionState::LoggedIn { account: account.clone() });
        let kicking =
            card(SessionState::Kicking { account, reason: DisconnectReason::Admin, deadline: Duration::from_secs(5) });
        apply_card(&mut world, entity, 2, kicking.clone());
        apply_card(&mut world, entity, 1, logged_in);
        assert_eq!(world.get::<Session>(entity), Some(&kicking.session));
        apply_card(&mut world, entity, 3, card(SessionState::Closed));
        assert_eq!(world.get::<Session>(entity).map(Session::state), Some(&SessionState::Closed));
    }
}
