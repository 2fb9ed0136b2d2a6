//! The session state machine of docs/protocol.md §6: every state change of a
//! [`Session`] happens in this file, one method per transition, and only
//! this file inserts, replaces or removes the card components ([`Session`],
//! [`Token`], [`LoginDeadline`], [`PendingRpc`]).
//!
//! A transition writes the entity's whole card at once ([`SessionCtx`]'s
//! `write`): into [`StagedCards`], which every later transition and the
//! gate read first, and as a command that inserts and removes the
//! components. So a transition sees the ones before it in the same system,
//! and the components never disagree once commands are applied.
//!
//! ```text
//!  AwaitingLogin ──login ok──────────────────────────────▶ LoggedIn
//!        │  ▲   └─login ok, account held elsewhere─▶ WaitingTakeover ──old session gone──▶ LoggedIn
//!        │  └──────────logout─────────────────────────────── LoggedIn
//!        │                                                      │ kick (duplicate_login, idle_timeout,
//!        │                                                      ▼       server_shutdown, admin)
//!        │                                                   Kicking ──save ok / logout / deadline──▶ Closed
//!        └──login deadline, idle, shutdown, disconnect──────────────────────────────────────────────▶ Closed
//! ```

use std::time::Duration;

use bevy_ecs::prelude::*;
use bevy_ecs::system::SystemParam;
use bevy_time::{Real, Time};
use portcullis_net::Connection;
use portcullis_protocol::{LoginResult, SessionEndReason, notification};
use portcullis_rpc::{DisconnectReason, ErrorCode, ReplyTo, Rpc, RpcError};
use portcullis_store::{Account, ClaimOutcome, StoreFailure, StoreOk, StoreRequest, SubmitError};
use serde_json::json;

use crate::SessionConfig;
use crate::directory::{ClaimWait, Directory};
use crate::events::{Kicked, LoggedIn, LoggedOut};
use crate::limits::{DeadlineQueue, next_check};
use crate::shutdown::ShutdownState;
use crate::state::{
    Card, CardRef, LoginDeadline, PendingRpc, Session, SessionIndex, SessionState, SessionTimers, StagedCards,
    apply_card,
};
use crate::store::{PendingTags, StoreHandle, StoreOp, StoreReplied, store_error};
use crate::token::Token;

/// The four card components of a connection, read-only (they are immutable).
pub(crate) type CardData =
    (&'static Session, Option<&'static Token>, Option<&'static LoginDeadline>, Option<&'static PendingRpc>);

/// Everything a transition touches. A system parameter, so request
/// handlers, timers and observers all run the same transitions — session's
/// own and those of the features above it (login, saves, a game's own):
/// they read the card through it ([`session`](Self::session),
/// [`token`](Self::token)), answer through [`rpc`](Self::rpc), hand requests to
/// the store with [`submit`](Self::submit) and take the answers with
/// [`take_store_replies`](Self::take_store_replies), and call the public
/// transitions ([`complete_login`](Self::complete_login),
/// [`log_out`](Self::log_out), [`kick`](Self::kick), [`end_kick`](Self::end_kick)).
#[derive(SystemParam)]
pub struct SessionCtx<'w, 's> {
    pub(crate) cards: Query<'w, 's, CardData>,
    pub(crate) sessions: Query<'w, 's, (Entity, &'static mut SessionTimers, &'static Connection)>,
    pub(crate) staged: ResMut<'w, StagedCards>,
    pub(crate) rpc: Rpc<'w, 's>,
    pub(crate) index: ResMut<'w, SessionIndex>,
    pub(crate) pending: ResMut<'w, PendingTags>,
    pub(crate) store: ResMut<'w, StoreHandle>,
    pub(crate) config: Res<'w, SessionConfig>,
    pub(crate) time: Res<'w, Time<Real>>,
    pub(crate) shutdown: ResMut<'w, ShutdownState>,
    pub(crate) deadlines: ResMut<'w, DeadlineQueue>,
    pub(crate) directory: ResMut<'w, Directory>,
    pub(crate) commands: Commands<'w, 's>,
}

/// The card of `entity`: staged by a transition of this frame, else its components.
pub(crate) fn card_of<'a>(
    staged: &'a StagedCards,
    cards: &'a Query<'_, '_, CardData>,
    entity: Entity,
) -> Option<CardRef<'a>> {
    if let Some((_, card)) = staged.cards.get(&entity) {
        return Some(card.as_ref());
    }
    let (session, token, deadline, pending) = cards.get(entity).ok()?;
    Some(CardRef { session, token, deadline, pending })
}

impl<'w, 's> SessionCtx<'w, 's> {
    /// Now, on the real clock that every deadline uses (`Time<Real>` elapsed).
    pub fn now(&self) -> Duration {
        self.time.elapsed()
    }

    /// The replies and notifications of the RPC layer, to answer requests.
    pub fn rpc(&mut self) -> &mut Rpc<'w, 's> {
        &mut self.rpc
    }

    /// Commands, to trigger events or change other components (never the card's).
    pub fn commands(&mut self) -> &mut Commands<'w, 's> {
        &mut self.commands
    }

    /// The connection of a session's entity (its peer address, id, ...).
    pub fn connection(&self, entity: Entity) -> Option<&Connection> {
        self.sessions.get(entity).ok().map(|(_, _, conn)| conn)
    }

    /// The indexes of sessions (by account, token, ...), to find a session.
    pub fn index(&self) -> &SessionIndex {
        &self.index
    }

    /// The live token of `entity` as the transitions see it (only while logged in or kicking).
    pub fn token(&self, entity: Entity) -> Option<&Token> {
        self.card(entity).and_then(|c| c.token)
    }

    /// Saves of `entity` waiting on the store (requests whose op
    /// [`is_save`](StoreOp::is_save)).
    pub fn saves_in_flight(&self, entity: Entity) -> u32 {
        self.sessions.get(entity).map_or(0, |(_, timers, _)| timers.saves_in_flight)
    }

    /// The card of `entity` as the transitions see it.
    pub(crate) fn card(&self, entity: Entity) -> Option<CardRef<'_>> {
        card_of(&self.staged, &self.cards, entity)
    }

    /// The session of `entity` as the transitions see it (a transition
    /// earlier in this system already shows, before its commands apply).
    pub fn session(&self, entity: Entity) -> Option<&Session> {
        self.card(entity).map(|c| c.session)
    }

    /// Writes `entity`'s card: staged at once, applied to the components by a command.
    fn write(&mut self, entity: Entity, mut card: Card) {
        if card.pending.as_ref().is_some_and(PendingRpc::is_empty) {
            card.pending = None;
        }
        if self.card(entity).is_some_and(|current| current.is(&card)) {
            return;
        }
        self.staged.next_generation += 1;
        let generation = self.staged.next_generation;
        self.staged.cards.insert(entity, (generation, card.clone()));
        self.commands.queue(move |world: &mut World| apply_card(world, entity, generation, card));
    }

    /// Transition: a connection opened → awaiting login with a login deadline
    /// (or, during a shutdown, closed at once with `server_shutdown`).
    pub(crate) fn open(&mut self, entity: Entity) {
        let now = self.now();
        let mut timers = SessionTimers { idle_base: now, ..SessionTimers::default() };
        // The transport's handshake (TLS, WebSocket) counts against the login deadline (docs/protocol.md §1.2).
        let handshake = self.rpc.connection(entity).map_or(Duration::ZERO, Connection::handshake_time);
        let mut card = Card {
            session: Session { state: SessionState::AwaitingLogin },
            token: None,
            deadline: Some(LoginDeadline(now + self.config.login_timeout.saturating_sub(handshake))),
            pending: None,
        };
        if self.shutdown.is_active() {
            card.session.state = SessionState::Closed;
            card.deadline = None;
            self.rpc.disconnect(entity, DisconnectReason::ServerShutdown);
        } else {
            let at = next_check(card.as_ref(), &timers, now, self.config.idle_timeout, now);
            self.deadlines.requeue(entity, &mut timers, at);
        }
        self.commands.entity(entity).try_insert(timers);
        self.write(entity, card);
    }

    /// Moves `entity`'s entry in the [`DeadlineQueue`] to its next deadline
    /// after its state changed (a login's idle deadline replaces its login
    /// deadline, so no sessions come due in a burst for nothing); a state
    /// without deadlines drops the entry.
    pub(crate) fn schedule(&mut self, entity: Entity) {
        let now = self.now();
        let idle_timeout = self.config.idle_timeout;
        let Some(card) = card_of(&self.staged, &self.cards, entity) else { return };
        let Ok((_, mut timers, _)) = self.sessions.get_mut(entity) else { return };
        let at = next_check(card, &timers, Duration::ZERO, idle_timeout, now);
        self.deadlines.requeue(entity, &mut timers, at);
    }

    /// Re-queues every session (the timeouts changed).
    pub(crate) fn schedule_all(&mut self) {
        let now = self.now();
        let idle_timeout = self.config.idle_timeout;
        self.deadlines.clear();
        for (entity, mut timers, _) in &mut self.sessions {
            timers.next_check = None; // its entry went with the clear
            let Some(card) = card_of(&self.staged, &self.cards, entity) else { continue };
            let at = next_check(card, &timers, Duration::ZERO, idle_timeout, now);
            self.deadlines.requeue(entity, &mut timers, at);
        }
    }

    /// A save of `entity` was answered by the store and its feature took the
    /// answer: one fewer in flight. A kick that waited for it past its
    /// deadline can now end.
    pub(crate) fn save_finished(&mut self, entity: Entity) {
        if let Ok((_, mut timers, _)) = self.sessions.get_mut(entity) {
            timers.saves_in_flight = timers.saves_in_flight.saturating_sub(1);
        }
        self.schedule(entity);
    }

    /// A client save of `entity` was answered: whether the answer ends its
    /// kick (it is one sent after `kicked`, docs/protocol.md §6). Call it once
    /// per client save taken with [`take_store_replies`](Self::take_store_replies);
    /// when it says yes, answer the save, then call [`end_kick`](Self::end_kick).
    pub fn save_answered_while_kicking(&mut self, entity: Entity) -> bool {
        if !self.session(entity).is_some_and(Session::is_kicking) {
            return false;
        }
        let Ok((_, mut timers, _)) = self.sessions.get_mut(entity) else { return false };
        if timers.saves_before_kick > 0 {
            timers.saves_before_kick -= 1;
            return false;
        }
        true
    }

    /// Hands a request to the store on behalf of `reply_to` and adds it to
    /// the connection's [`PendingRpc`]; `op` is what the feature remembers of
    /// it. The answer comes back to the queue of `T` (routed in
    /// `SessionSystems::Route`; take it with
    /// [`take_store_replies`](Self::take_store_replies) in
    /// `SessionSystems::Store`), also when the connection closed meanwhile.
    /// An op that [`is_save`](StoreOp::is_save) counts as a save in flight.
    /// Errors: a full or closed queue is `SERVER_BUSY` (docs/protocol.md §3).
    pub fn submit<T: StoreOp>(&mut self, reply_to: &ReplyTo, op: T, request: StoreRequest) -> Result<(), RpcError> {
        let Some(store) = self.store.get() else { return Err(RpcError::new(ErrorCode::ServerBusy)) };
        let tag = self.pending.next_tag();
        match store.submit(tag, request) {
            Ok(()) => {
                let entity = reply_to.entity;
                if op.is_save()
                    && let Ok((_, mut timers, _)) = self.sessions.get_mut(entity)
                {
                    timers.saves_in_flight += 1;
                }
                self.pending.insert(tag, reply_to.clone(), op);
                if let Some(mut card) = self.card(entity).map(CardRef::to_owned) {
                    card.pending.get_or_insert_with(|| PendingRpc { tags: Vec::new() }).tags.push(tag);
                    self.write(entity, card);
                }
                Ok(())
            }
            Err(SubmitError::Full | SubmitError::Closed) => Err(RpcError::new(ErrorCode::ServerBusy)),
        }
    }

    /// Moves the answered requests of op type `T` into `into`, oldest first
    /// (pass an empty buffer kept in a `Local` and no reply allocates). The
    /// saves among them ([`StoreOp::is_save`]) stop counting as in flight
    /// now: the caller applies them in this system.
    pub fn take_store_replies<T: StoreOp>(&mut self, into: &mut Vec<StoreReplied<T>>) {
        let start = into.len();
        self.pending.take_replied(into);
        for replied in &into[start..] {
            if replied.op.is_save() {
                self.save_finished(replied.reply_to.entity);
            }
        }
    }

    /// The store answered the request with `tag`: its op goes to its
    /// feature's queue and the tag leaves its connection's [`PendingRpc`].
    pub(crate) fn reply_arrived(&mut self, tag: u64, result: Result<StoreOk, StoreFailure>) {
        let Some(waiting) = self.pending.deliver(tag, result) else { return };
        let entity = waiting.entity;
        let Some(mut card) = self.card(entity).map(CardRef::to_owned) else { return };
        let Some(pending) = card.pending.as_mut() else { return };
        let Some(at) = pending.tags.iter().position(|t| *t == tag) else { return };
        pending.tags.remove(at);
        self.write(entity, card);
    }

    /// Transition: awaiting login (or waiting for a takeover) → logged in.
    /// Issues the token (docs/protocol.md §4), inserts it as the [`Token`]
    /// component, removes the [`LoginDeadline`] and indexes the session.
    pub(crate) fn log_in(&mut self, entity: Entity, account: Account) -> Option<LoginResult> {
        let now = self.now();
        let mut card = self.card(entity)?.to_owned();
        let (_, mut timers, conn) = self.sessions.get_mut(entity).ok()?;
        let token = Token::generate(&account.name, conn.id().0);
        bevy_log::info!(conn = %conn.id(), account = %account.name, "logged in");
        timers.idle_base = now;
        let result = LoginResult { account: account.name.clone(), token: token.as_str().to_owned() };
        card.session.state = SessionState::LoggedIn { account: account.clone() };
        card.token = Some(token.clone());
        card.deadline = None;
        self.write(entity, card);
        self.index.by_account.insert(account.id, entity);
        self.index.by_name.insert(account.name.to_ascii_lowercase(), entity);
        self.index.by_token.insert(token, entity);
        self.schedule(entity);
        self.commands.trigger(LoggedIn { entity, account });
        Some(result)
    }

    /// Transition: a login's credentials were verified (docs/protocol.md §4
    /// `login`, §6). Answers `reply_to` with the token, or: the current token
    /// when already logged in as `account`; ALREADY_LOGGED_IN as another
    /// account; SESSION_CLOSING while kicked; LOGIN_IN_PROGRESS while this
    /// connection's or another login takes the account over; SERVER_BUSY during
    /// a shutdown. When another session holds the account, starts the takeover
    /// of §6 (`login_pending`, the old session kicked with `duplicate_login`)
    /// and answers when it ends.
    pub fn complete_login(&mut self, reply_to: &ReplyTo, account: Account) {
        let entity = reply_to.entity;
        let Some(card) = self.card(entity) else { return };
        let answer: Result<LoginResult, RpcError> = match (&card.session.state, card.token) {
            // §4: a login as the account already held returns the current token.
            (SessionState::LoggedIn { account: current }, Some(token)) if current.id == account.id => {
                Ok(LoginResult { account: current.name.clone(), token: token.as_str().to_owned() })
            }
            (SessionState::LoggedIn { .. }, _) => Err(RpcError::new(ErrorCode::AlreadyLoggedIn)),
            (SessionState::Kicking { .. }, _) => Err(RpcError::new(ErrorCode::SessionClosing)),
            (SessionState::WaitingTakeover { .. }, _) => Err(RpcError::new(ErrorCode::LoginInProgress)),
            (SessionState::Closed, _) => return,
            // §6 shutdown: a login that arrives while shutting down gets SERVER_BUSY.
            (SessionState::AwaitingLogin, _) if self.shutdown.is_active() => Err(RpcError::new(ErrorCode::ServerBusy)),
            // §6: a third login while a takeover of the account is under way.
            (SessionState::AwaitingLogin, _) if self.index.takeovers.contains_key(&account.id) => {
                Err(RpcError::new(ErrorCode::LoginInProgress))
            }
            (SessionState::AwaitingLogin, _) => match self.index.by_account.get(&account.id).copied() {
                Some(old) if old != entity => {
                    self.begin_takeover(reply_to, account, old);
                    return;
                }
                // A cluster: the account may be held by another node (docs/cluster.md).
                _ if self.shared() => {
                    self.index.takeovers.insert(account.id, entity);
                    if self.submit_claim(&account, reply_to) {
                        return;
                    }
                    self.index.takeovers.remove(&account.id);
                    Err(RpcError::new(ErrorCode::ServerBusy))
                }
                _ => self.log_in(entity, account).ok_or_else(|| RpcError::new(ErrorCode::InternalError)),
            },
        };
        self.rpc.respond(reply_to, answer);
    }

    /// Transition: awaiting login → waiting for takeover (§6 steps 2–3): tell
    /// the new client `login_pending`, kick the old session, and let the new
    /// connection's other requests through while its login waits. The
    /// [`LoginDeadline`] goes: no deadline applies while it waits.
    fn begin_takeover(&mut self, reply_to: &ReplyTo, account: Account, old: Entity) {
        let entity = reply_to.entity;
        bevy_log::info!(account = %account.name, "duplicate login: replacing session");
        self.rpc.notify(entity, notification::LOGIN_PENDING, &json!({ "reason": notification::REPLACING_SESSION }));
        self.index.takeovers.insert(account.id, entity);
        if let Some(mut card) = self.card(entity).map(CardRef::to_owned) {
            card.session.state = SessionState::WaitingTakeover { account, login: reply_to.clone() };
            card.deadline = None;
            self.write(entity, card);
        }
        self.schedule(entity);
        self.rpc.release(reply_to);
        self.kick(old, DisconnectReason::DuplicateLogin);
    }

    /// The store answered a login's claim (docs/cluster.md). Claimed: the
    /// login gets its token. Held by another node: awaiting login → waiting
    /// for takeover (`login_pending`; the other node was asked to kick).
    /// Another node already taking over: `LOGIN_IN_PROGRESS`. A claim whose
    /// login went meanwhile is released.
    pub(crate) fn claim_answered(&mut self, wait: ClaimWait, result: Result<StoreOk, StoreFailure>) {
        let ClaimWait { entity, account, login } = wait;
        self.directory.in_flight.remove(&account.id);
        let ours = self.index.takeovers.get(&account.id) == Some(&entity);
        let state = self.session(entity).map(|s| s.state.clone());
        let waiting = ours && matches!(state, Some(SessionState::WaitingTakeover { .. }));
        let awaiting = ours && matches!(state, Some(SessionState::AwaitingLogin));
        if !waiting && !awaiting {
            // The login went (closed, timed out, shut down) while the claim was on its way.
            if ours {
                self.index.takeovers.remove(&account.id);
            }
            self.directory.remote.remove(&account.id);
            if matches!(result, Ok(StoreOk::Claim(ClaimOutcome::Claimed | ClaimOutcome::Held)))
                && !self.index.by_account.contains_key(&account.id)
                && !self.index.takeovers.contains_key(&account.id)
            {
                self.release_claim(account.id);
            }
            return;
        }
        match result {
            Ok(StoreOk::Claim(ClaimOutcome::Claimed)) => {
                self.index.takeovers.remove(&account.id);
                self.directory.remote.remove(&account.id);
                if self.shutdown.is_active() {
                    self.rpc.respond::<()>(&login, Err(RpcError::new(ErrorCode::ServerBusy)));
                    self.close_unauthenticated(entity, DisconnectReason::ServerShutdown);
                    self.release_claim(account.id);
                    return;
                }
                let result = self.log_in(entity, account).ok_or_else(|| RpcError::new(ErrorCode::InternalError));
                self.rpc.respond(&login, result);
            }
            Ok(StoreOk::Claim(ClaimOutcome::Held)) => {
                if awaiting {
                    self.begin_remote_takeover(&login, account);
                }
            }
            other => {
                self.index.takeovers.remove(&account.id);
                let was_waiting = self.directory.remote.remove(&account.id);
                let error = match &other {
                    Ok(StoreOk::Claim(ClaimOutcome::InProgress)) => RpcError::new(ErrorCode::LoginInProgress),
                    Err(failure) => store_error(failure),
                    Ok(_) => RpcError::new(ErrorCode::InternalError),
                };
                self.rpc.respond::<()>(&login, Err(error));
                if waiting {
                    self.abandon_takeover(entity);
                }
                if was_waiting || other.is_err() {
                    self.release_claim(account.id);
                }
            }
        }
    }

    /// Transition: awaiting login → waiting for takeover of an account that
    /// another node holds (§6 step 2 across nodes): `login_pending`, no
    /// login deadline, the connection's other requests go on. That node was
    /// asked to kick its session by the claim itself.
    fn begin_remote_takeover(&mut self, login: &ReplyTo, account: Account) {
        let entity = login.entity;
        bevy_log::info!(account = %account.name, "duplicate login: replacing a session of another node");
        self.rpc.notify(entity, notification::LOGIN_PENDING, &json!({ "reason": notification::REPLACING_SESSION }));
        self.directory.remote.insert(account.id);
        if let Some(mut card) = self.card(entity).map(CardRef::to_owned) {
            card.session.state = SessionState::WaitingTakeover { account, login: login.clone() };
            card.deadline = None;
            self.write(entity, card);
        }
        self.schedule(entity);
        self.rpc.release(login);
    }

    /// Transition: waiting for takeover → awaiting login, with a fresh login
    /// deadline (the waiting login was answered with an error).
    fn abandon_takeover(&mut self, entity: Entity) {
        let deadline = self.now() + self.config.login_timeout;
        let Some(mut card) = self.card(entity).map(CardRef::to_owned) else { return };
        card.session.state = SessionState::AwaitingLogin;
        card.deadline = Some(LoginDeadline(deadline));
        self.write(entity, card);
        self.schedule(entity);
    }

    /// Transition: the account's old session is gone (§6 step 6): the waiting
    /// login gets its token, or `SERVER_BUSY` when the server is shutting down.
    fn continue_takeover(&mut self, account_id: i64) {
        // A login waiting on another node's claim goes on only when the claim is this node's.
        if self.directory.remote.contains(&account_id) || self.directory.in_flight.contains(&account_id) {
            return;
        }
        let Some(waiting) = self.index.takeovers.remove(&account_id) else { return };
        let Some(card) = self.card(waiting) else { return };
        let SessionState::WaitingTakeover { account, login } = card.session.state.clone() else { return };
        if self.shutdown.is_active() {
            self.rpc.respond::<()>(&login, Err(RpcError::new(ErrorCode::ServerBusy)));
            self.close_unauthenticated(waiting, DisconnectReason::ServerShutdown);
            if self.shared() {
                self.release_claim(account_id);
            }
            return;
        }
        let result = self.log_in(waiting, account).ok_or_else(|| RpcError::new(ErrorCode::InternalError));
        self.rpc.respond(&login, result);
    }

    /// Transition: logged in → kicking (§6). Sends `kicked` with the save
    /// deadline. A session already kicking keeps its kick and deadline; a
    /// connection that is not logged in is closed at once.
    pub fn kick(&mut self, entity: Entity, reason: DisconnectReason) {
        let now = self.now();
        let save_timeout = self.config.kick_save_timeout;
        let Some(mut card) = self.card(entity).map(CardRef::to_owned) else { return };
        match std::mem::replace(&mut card.session.state, SessionState::Closed) {
            SessionState::LoggedIn { account } => {
                if let Ok((_, mut timers, _)) = self.sessions.get_mut(entity) {
                    timers.saves_before_kick = timers.saves_in_flight;
                }
                card.session.state =
                    SessionState::Kicking { account: account.clone(), reason, deadline: now + save_timeout };
                self.write(entity, card);
                bevy_log::info!(account = %account.name, reason = %reason, "kicking session");
                let deadline_ms = u64::try_from(save_timeout.as_millis()).unwrap_or(u64::MAX);
                self.rpc.notify(
                    entity,
                    notification::KICKED,
                    &json!({ "reason": reason, "save_deadline_ms": deadline_ms }),
                );
                self.commands.trigger(Kicked { entity, reason });
            }
            SessionState::Kicking { .. } | SessionState::Closed => {}
            SessionState::WaitingTakeover { account, login } => {
                // Not logged in: closed at once. §6 shutdown: its waiting login gets SERVER_BUSY first.
                card.deadline = None;
                self.write(entity, card);
                if self.index.takeovers.get(&account.id) == Some(&entity) {
                    self.index.takeovers.remove(&account.id);
                    if self.directory.remote.remove(&account.id) {
                        self.release_claim(account.id);
                    }
                }
                if reason == DisconnectReason::ServerShutdown {
                    self.rpc.respond::<()>(&login, Err(RpcError::new(ErrorCode::ServerBusy)));
                }
                self.rpc.disconnect(entity, reason);
            }
            SessionState::AwaitingLogin => {
                card.deadline = None;
                self.write(entity, card);
                self.rpc.disconnect(entity, reason);
            }
        }
        self.schedule(entity);
    }

    /// Transition: kicking → closed (§6): after its save or logout was
    /// answered, or at its deadline. Sends `disconnected` with the kick's
    /// reason, closes, removes the [`Token`], and lets a waiting takeover go on.
    pub fn end_kick(&mut self, entity: Entity) {
        let Some(mut card) = self.card(entity).map(CardRef::to_owned) else { return };
        let SessionState::Kicking { account, reason, .. } =
            std::mem::replace(&mut card.session.state, SessionState::Closed)
        else {
            return;
        };
        let token = card.token.take();
        self.write(entity, card);
        self.rpc.disconnect(entity, reason);
        self.schedule(entity);
        self.forget_session(entity, account, token.as_ref(), SessionEndReason::Closed(reason));
    }

    /// Transition: awaiting login → awaiting login *without* a login deadline,
    /// for a connection that proved itself another way than `login` (a
    /// backend service registered with the shared key, docs/protocol.md §8:
    /// "no login deadline"). Its [`LoginDeadline`] goes; the idle timer still
    /// applies (§6). Returns whether the connection was awaiting login (in
    /// any other state nothing changes).
    pub fn lift_login_deadline(&mut self, entity: Entity) -> bool {
        let Some(mut card) = self.card(entity).map(CardRef::to_owned) else { return false };
        if !matches!(card.session.state, SessionState::AwaitingLogin) {
            return false;
        }
        card.deadline = None;
        self.write(entity, card);
        self.schedule(entity);
        true
    }

    /// Transition: logged in → awaiting login (`logout`, §4): the [`Token`]
    /// dies, the connection stays open with a fresh [`LoginDeadline`].
    pub fn log_out(&mut self, entity: Entity) {
        let deadline = self.now() + self.config.login_timeout;
        let Some(mut card) = self.card(entity).map(CardRef::to_owned) else { return };
        let SessionState::LoggedIn { account } =
            std::mem::replace(&mut card.session.state, SessionState::AwaitingLogin)
        else {
            return;
        };
        let token = card.token.take();
        card.deadline = Some(LoginDeadline(deadline));
        self.write(entity, card);
        bevy_log::info!(account = %account.name, "logged out");
        self.schedule(entity);
        self.forget_session(entity, account, token.as_ref(), SessionEndReason::Logout);
    }

    /// Transition: any state → closed, for a connection that is not logged in
    /// (§6: login timeout, idle, shutdown): `disconnected {reason}`, close.
    pub(crate) fn close_unauthenticated(&mut self, entity: Entity, reason: DisconnectReason) {
        let mut ended = None;
        if let Some(mut card) = self.card(entity).map(CardRef::to_owned) {
            let old = std::mem::replace(&mut card.session.state, SessionState::Closed);
            card.deadline = None;
            if let (SessionState::LoggedIn { account } | SessionState::Kicking { account, .. }, Some(token)) =
                (old, card.token.take())
            {
                ended = Some((account, token));
            }
            self.write(entity, card);
        }
        self.schedule(entity);
        self.rpc.disconnect(entity, reason);
        if let Some((account, token)) = ended {
            self.forget_session(entity, account, Some(&token), SessionEndReason::Closed(reason));
        }
    }

    /// The transport closed the connection (client closed, slow reader, ...).
    /// A session dies with its token (§4); a takeover waiting on it goes on at
    /// once (§6 "if A closes first"); a waiting login is dropped (§6 "if B
    /// closes while it waits, A is still closed"). Its [`PendingRpc`]
    /// leaves the entity; its requests stay in [`PendingTags`]: the replies
    /// still come and are applied.
    pub(crate) fn connection_closed(&mut self, entity: Entity) {
        let Some(mut card) = self.card(entity).map(CardRef::to_owned) else { return };
        let old = std::mem::replace(&mut card.session.state, SessionState::Closed);
        let token = card.token.take();
        card.deadline = None;
        // Its requests stay in PendingTags: their replies are still applied.
        card.pending = None;
        self.write(entity, card);
        self.schedule(entity);
        match old {
            SessionState::LoggedIn { account } | SessionState::Kicking { account, .. } => {
                // The reason the server gave its close, else the client closed first.
                let reason = self
                    .connection(entity)
                    .and_then(Connection::close_reason)
                    .and_then(DisconnectReason::from_wire)
                    .map_or(SessionEndReason::ClientClosed, SessionEndReason::Closed);
                self.forget_session(entity, account, token.as_ref(), reason);
            }
            SessionState::WaitingTakeover { account, .. } => {
                if self.index.takeovers.get(&account.id) == Some(&entity) {
                    self.index.takeovers.remove(&account.id);
                    // §6: "if B closes while it waits, A is still closed"; this node no longer wants it.
                    if self.directory.remote.remove(&account.id) {
                        self.release_claim(account.id);
                    }
                }
            }
            SessionState::AwaitingLogin | SessionState::Closed => {}
        }
    }

    /// Removes a session from the indexes (its token is dead from here on)
    /// and continues a takeover of its account.
    fn forget_session(&mut self, entity: Entity, account: Account, token: Option<&Token>, reason: SessionEndReason) {
        if self.index.by_account.get(&account.id) == Some(&entity) {
            self.index.by_account.remove(&account.id);
            self.index.by_name.remove(&account.name.to_ascii_lowercase());
        }
        if let Some(token) = token {
            self.index.by_token.remove(token.as_str());
        }
        let account_id = account.id;
        self.commands.trigger(LoggedOut { entity, account, reason });
        if self.shared() && !self.index.takeovers.contains_key(&account_id) {
            // No login of this node takes it over: the claim goes (to the node waiting for it, if any).
            self.release_claim(account_id);
        }
        self.continue_takeover(account_id);
    }
}
