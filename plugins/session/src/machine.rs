//! The session state machine of docs/protocol.md §6: every state change of a
//! [`Session`] happens in this file, one method per transition.
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
use portcullis_protocol::{LoginResult, notification};
use portcullis_rpc::{DisconnectReason, ErrorCode, ReplyTo, Rpc, RpcError};
use portcullis_store::{Account, StoreRequest, SubmitError};
use serde_json::json;

use crate::SessionConfig;
use crate::events::{Kicked, LoggedIn, LoggedOut};
use crate::limits::{DeadlineQueue, LoginThrottle, next_check};
use crate::shutdown::ShutdownState;
use crate::state::{Session, SessionIndex, SessionState};
use crate::store::{PendingOp, PendingStore, StoreHandle};
use crate::token::Token;
use crate::userdata::UserData;

/// Everything a transition touches. A system parameter, so request
/// handlers, timers and observers all run the same transitions.
#[derive(SystemParam)]
pub struct SessionCtx<'w, 's> {
    pub(crate) sessions: Query<'w, 's, (Entity, &'static mut Session, &'static Connection)>,
    pub(crate) rpc: Rpc<'w, 's>,
    pub(crate) index: ResMut<'w, SessionIndex>,
    pub(crate) pending: ResMut<'w, PendingStore>,
    pub(crate) store: ResMut<'w, StoreHandle>,
    pub(crate) config: Res<'w, SessionConfig>,
    pub(crate) time: Res<'w, Time<Real>>,
    pub(crate) shutdown: ResMut<'w, ShutdownState>,
    pub(crate) throttle: ResMut<'w, LoginThrottle>,
    pub(crate) deadlines: ResMut<'w, DeadlineQueue>,
    pub(crate) userdata: Query<'w, 's, &'static mut UserData>,
    pub(crate) commands: Commands<'w, 's>,
}

impl SessionCtx<'_, '_> {
    /// Now, on the real clock that every deadline uses.
    pub(crate) fn now(&self) -> Duration {
        self.time.elapsed()
    }

    pub(crate) fn session(&self, entity: Entity) -> Option<&Session> {
        self.sessions.get(entity).ok().map(|(_, s, _)| s)
    }

    fn session_mut(&mut self, entity: Entity) -> Option<Mut<'_, Session>> {
        self.sessions.get_mut(entity).ok().map(|(_, s, _)| s)
    }

    /// Moves `entity`'s entry in the [`DeadlineQueue`] to its next deadline
    /// after its state changed (a login's idle deadline replaces its login
    /// deadline, so no sessions come due in a burst for nothing); a state
    /// without deadlines drops the entry.
    pub(crate) fn schedule(&mut self, entity: Entity) {
        let now = self.now();
        let idle_timeout = self.config.idle_timeout;
        let Ok((_, mut session, _)) = self.sessions.get_mut(entity) else { return };
        let at = next_check(&session, Duration::ZERO, idle_timeout, now);
        self.deadlines.requeue(entity, &mut session, at);
    }

    /// Re-queues every session (the timeouts changed).
    pub(crate) fn schedule_all(&mut self) {
        let now = self.now();
        let idle_timeout = self.config.idle_timeout;
        self.deadlines.clear();
        for (entity, mut session, _) in &mut self.sessions {
            session.next_check = None; // its entry went with the clear
            let at = next_check(&session, Duration::ZERO, idle_timeout, now);
            self.deadlines.requeue(entity, &mut session, at);
        }
    }

    /// A save of `entity` was answered by the store: one fewer in flight. A
    /// kick that waited for it past its deadline can now end.
    pub(crate) fn save_finished(&mut self, entity: Entity) {
        if let Ok((_, mut session, _)) = self.sessions.get_mut(entity) {
            session.saves_in_flight = session.saves_in_flight.saturating_sub(1);
        }
        self.schedule(entity);
    }

    /// Hands a request to the store on behalf of `reply_to`; the answer comes
    /// back through `store::apply_store_replies`. A full or closed queue is
    /// `SERVER_BUSY` (docs/protocol.md §3).
    pub(crate) fn submit(&mut self, reply_to: &ReplyTo, op: PendingOp, request: StoreRequest) -> Result<(), RpcError> {
        let Some(store) = self.store.get() else { return Err(RpcError::new(ErrorCode::ServerBusy)) };
        let tag = self.pending.next_tag();
        match store.submit(tag, request) {
            Ok(()) => {
                if matches!(op, PendingOp::Save { .. } | PendingOp::ServerWrite { .. })
                    && let Some(mut s) = self.session_mut(reply_to.entity)
                {
                    s.saves_in_flight += 1;
                }
                self.pending.insert(tag, reply_to.clone(), op);
                Ok(())
            }
            Err(SubmitError::Full | SubmitError::Closed) => Err(RpcError::new(ErrorCode::ServerBusy)),
        }
    }

    /// Transition: awaiting login (or waiting for a takeover) → logged in.
    /// Issues the token (docs/protocol.md §4) and indexes the session.
    pub(crate) fn log_in(&mut self, entity: Entity, account: Account) -> Option<LoginResult> {
        let now = self.now();
        let (_, mut session, conn) = self.sessions.get_mut(entity).ok()?;
        let token = Token::generate(&account.name, conn.id().0);
        bevy_log::info!(conn = %conn.id(), account = %account.name, "logged in");
        let result = LoginResult { account: account.name.clone(), token: token.as_str().to_owned() };
        session.state = SessionState::LoggedIn { account: account.clone(), token: token.clone() };
        session.idle_base = now;
        self.index.by_account.insert(account.id, entity);
        self.index.by_name.insert(account.name.to_ascii_lowercase(), entity);
        self.index.by_token.insert(token, entity);
        if self.config.mirror_userdata {
            self.commands.entity(entity).try_insert(UserData::default());
            let internal = ReplyTo { entity, id: None, ticket: 0 };
            let load = StoreRequest::LoadUserdata { account_id: account.id };
            if self.submit(&internal, PendingOp::Preload, load).is_err() {
                bevy_log::warn!(account = %account.name, "user data not loaded: store busy");
            }
        }
        self.schedule(entity);
        self.commands.trigger(LoggedIn { entity, account });
        Some(result)
    }

    /// A password login was verified by the store (docs/protocol.md §4 `login`, §6).
    pub(crate) fn password_login_verified(&mut self, reply_to: &ReplyTo, account: Account) {
        let entity = reply_to.entity;
        let Some(session) = self.session(entity) else { return };
        let answer: Result<LoginResult, RpcError> = match &session.state {
            // §4: a login as the account already held returns the current token.
            SessionState::LoggedIn { account: current, token } if current.id == account.id => {
                Ok(LoginResult { account: current.name.clone(), token: token.as_str().to_owned() })
            }
            SessionState::LoggedIn { .. } => Err(RpcError::new(ErrorCode::AlreadyLoggedIn)),
            SessionState::Kicking { .. } => Err(RpcError::new(ErrorCode::SessionClosing)),
            SessionState::WaitingTakeover { .. } => Err(RpcError::new(ErrorCode::LoginInProgress)),
            SessionState::Closed => return,
            // §6 shutdown: a login that arrives while shutting down gets SERVER_BUSY.
            SessionState::AwaitingLogin { .. } if self.shutdown.is_active() => {
                Err(RpcError::new(ErrorCode::ServerBusy))
            }
            // §6: a third login while a takeover of the account is under way.
            SessionState::AwaitingLogin { .. } if self.index.takeovers.contains_key(&account.id) => {
                Err(RpcError::new(ErrorCode::LoginInProgress))
            }
            SessionState::AwaitingLogin { .. } => match self.index.by_account.get(&account.id).copied() {
                Some(old) if old != entity => {
                    self.begin_takeover(reply_to, account, old);
                    return;
                }
                _ => self.log_in(entity, account).ok_or_else(|| RpcError::new(ErrorCode::InternalError)),
            },
        };
        self.rpc.respond(reply_to, answer);
    }

    /// Transition: awaiting login → waiting for takeover (§6 steps 2–3): tell
    /// the new client `login_pending`, kick the old session, and let the new
    /// connection's other requests through while its login waits.
    fn begin_takeover(&mut self, reply_to: &ReplyTo, account: Account, old: Entity) {
        let entity = reply_to.entity;
        bevy_log::info!(account = %account.name, "duplicate login: replacing session");
        self.rpc.notify(entity, notification::LOGIN_PENDING, &json!({ "reason": notification::REPLACING_SESSION }));
        self.index.takeovers.insert(account.id, entity);
        if let Some(mut session) = self.session_mut(entity) {
            session.state = SessionState::WaitingTakeover { account, login: reply_to.clone() };
        }
        self.schedule(entity);
        self.rpc.release(reply_to);
        self.kick(old, DisconnectReason::DuplicateLogin);
    }

    /// Transition: the account's old session is gone (§6 step 6): the waiting
    /// login gets its token, or `SERVER_BUSY` when the server is shutting down.
    fn continue_takeover(&mut self, account_id: i64) {
        let Some(waiting) = self.index.takeovers.remove(&account_id) else { return };
        let Some(mut session) = self.session_mut(waiting) else { return };
        let SessionState::WaitingTakeover { .. } = session.state else { return };
        let SessionState::WaitingTakeover { account, login } =
            std::mem::replace(&mut session.state, SessionState::AwaitingLogin { deadline: Duration::ZERO })
        else {
            return;
        };
        if self.shutdown.is_active() {
            self.rpc.respond::<()>(&login, Err(RpcError::new(ErrorCode::ServerBusy)));
            self.close_unauthenticated(waiting, DisconnectReason::ServerShutdown);
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
        let Some(mut session) = self.session_mut(entity) else { return };
        match std::mem::replace(&mut session.state, SessionState::Closed) {
            SessionState::LoggedIn { account, token } => {
                let saves_before_kick = session.saves_in_flight;
                session.state = SessionState::Kicking {
                    account: account.clone(),
                    token,
                    reason,
                    deadline: now + save_timeout,
                    saves_before_kick,
                };
                bevy_log::info!(account = %account.name, reason = %reason, "kicking session");
                let deadline_ms = u64::try_from(save_timeout.as_millis()).unwrap_or(u64::MAX);
                self.rpc.notify(
                    entity,
                    notification::KICKED,
                    &json!({ "reason": reason, "save_deadline_ms": deadline_ms }),
                );
                self.commands.trigger(Kicked { entity, reason });
            }
            kicking @ SessionState::Kicking { .. } => session.state = kicking,
            SessionState::Closed => {}
            SessionState::WaitingTakeover { account, login } => {
                // Not logged in: closed at once. §6 shutdown: its waiting login gets SERVER_BUSY first.
                if self.index.takeovers.get(&account.id) == Some(&entity) {
                    self.index.takeovers.remove(&account.id);
                }
                if reason == DisconnectReason::ServerShutdown {
                    self.rpc.respond::<()>(&login, Err(RpcError::new(ErrorCode::ServerBusy)));
                }
                self.rpc.disconnect(entity, reason);
            }
            SessionState::AwaitingLogin { .. } => self.rpc.disconnect(entity, reason),
        }
        self.schedule(entity);
    }

    /// Transition: kicking → closed (§6): after its save or logout was
    /// answered, or at its deadline. Sends `disconnected` with the kick's
    /// reason, closes, kills the token, and lets a waiting takeover go on.
    pub(crate) fn end_kick(&mut self, entity: Entity) {
        let Some(mut session) = self.session_mut(entity) else { return };
        let SessionState::Kicking { .. } = session.state else { return };
        let SessionState::Kicking { account, token, reason, .. } =
            std::mem::replace(&mut session.state, SessionState::Closed)
        else {
            return;
        };
        self.rpc.disconnect(entity, reason);
        self.schedule(entity);
        self.forget_session(entity, account, &token);
    }

    /// Transition: logged in → awaiting login (`logout`, §4): the token dies,
    /// the connection stays open with a fresh login deadline.
    pub(crate) fn log_out(&mut self, entity: Entity) {
        let deadline = self.now() + self.config.login_timeout;
        let Some(mut session) = self.session_mut(entity) else { return };
        let SessionState::LoggedIn { account, token } =
            std::mem::replace(&mut session.state, SessionState::AwaitingLogin { deadline })
        else {
            return;
        };
        bevy_log::info!(account = %account.name, "logged out");
        self.schedule(entity);
        self.forget_session(entity, account, &token);
    }

    /// Transition: any state → closed, for a connection that is not logged in
    /// (§6: login timeout, idle, shutdown): `disconnected {reason}`, close.
    pub(crate) fn close_unauthenticated(&mut self, entity: Entity, reason: DisconnectReason) {
        if let Some(mut session) = self.session_mut(entity) {
            session.state = SessionState::Closed;
        }
        self.schedule(entity);
        self.rpc.disconnect(entity, reason);
    }

    /// The transport closed the connection (client closed, slow reader, ...).
    /// A session dies with its token (§4); a takeover waiting on it goes on at
    /// once (§6 "if A closes first"); a waiting login is dropped (§6 "if B
    /// closes while it waits, A is still closed").
    pub(crate) fn connection_closed(&mut self, entity: Entity) {
        let Some(mut session) = self.session_mut(entity) else { return };
        let old = std::mem::replace(&mut session.state, SessionState::Closed);
        self.schedule(entity);
        match old {
            SessionState::LoggedIn { account, token } | SessionState::Kicking { account, token, .. } => {
                self.forget_session(entity, account, &token);
            }
            SessionState::WaitingTakeover { account, .. } => {
                if self.index.takeovers.get(&account.id) == Some(&entity) {
                    self.index.takeovers.remove(&account.id);
                }
            }
            SessionState::AwaitingLogin { .. } | SessionState::Closed => {}
        }
    }

    /// Removes a session from the indexes (its token is dead from here on)
    /// and continues a takeover of its account.
    fn forget_session(&mut self, entity: Entity, account: Account, token: &Token) {
        if self.index.by_account.get(&account.id) == Some(&entity) {
            self.index.by_account.remove(&account.id);
            self.index.by_name.remove(&account.name.to_ascii_lowercase());
        }
        self.index.by_token.remove(token.as_str());
        if self.config.mirror_userdata {
            self.commands.entity(entity).try_remove::<UserData>();
        }
        let account_id = account.id;
        self.commands.trigger(LoggedOut { entity, account });
        self.continue_takeover(account_id);
    }
}
