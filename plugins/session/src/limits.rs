//! Timers of docs/protocol.md §6: the login deadline, the idle timer and the
//! kick-save deadline. (Login throttling per peer address belongs to the
//! login feature above this crate.)

use std::collections::BTreeSet;
use std::time::Duration;

use bevy_ecs::prelude::*;
use portcullis_net::{ConnectionClosing, DrainStatus, Inbox, InputDrained};
use portcullis_rpc::DisconnectReason;

use crate::machine::{SessionCtx, card_of};
use crate::state::{CardRef, SessionState, SessionTimers};

/// The sessions' next deadline checks, in time order, so that the timers
/// cost nothing per idle session per frame: [`check_deadlines`] pops only
/// what is due. Inserted by `SessionPlugin`.
///
/// Each session has at most one entry, at or before its earliest deadline
/// (login, kick-save or idle). An entry is a hint: when it comes due the
/// session's deadlines are worked out again from its state and last
/// activity, and it fires or is queued again at its real time. Activity
/// therefore never touches the queue; a transition that brings a deadline
/// forward (a kick, a logout) moves the entry.
#[derive(Resource, Default, Debug)]
pub struct DeadlineQueue {
    due: BTreeSet<(Duration, Entity)>,
}

impl DeadlineQueue {
    /// Number of sessions with a queued check.
    pub fn len(&self) -> usize {
        self.due.len()
    }

    /// Whether no check is queued.
    pub fn is_empty(&self) -> bool {
        self.due.is_empty()
    }

    /// The earliest queued check (`Time<Real>` elapsed), if any.
    pub fn next(&self) -> Option<Duration> {
        self.due.first().map(|(at, _)| *at)
    }

    /// Moves `entity`'s entry to `at` (`None`: no entry) and records it in
    /// `timers.next_check`, which names the entry to remove next time.
    pub(crate) fn requeue(&mut self, entity: Entity, session: &mut SessionTimers, at: Option<Duration>) {
        if session.next_check == at {
            return;
        }
        if let Some(old) = session.next_check {
            self.due.remove(&(old, entity));
        }
        if let Some(at) = at {
            self.due.insert((at, entity));
        }
        session.next_check = at;
    }

    fn pop_due(&mut self, now: Duration) -> Option<(Duration, Entity)> {
        if self.due.first().is_some_and(|(at, _)| *at <= now) { self.due.pop_first() } else { None }
    }

    pub(crate) fn clear(&mut self) {
        self.due.clear();
    }
}

/// What a session's deadlines say at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Check {
    /// A deadline has passed.
    Due(Due),
    /// Nothing is due before this time.
    At(Duration),
    /// No deadline applies in this state.
    Never,
}

/// Which deadline fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Due {
    LoginTimeout,
    KickDeadline,
    Idle,
}

/// The deadlines of docs/protocol.md §6 for one session at `now`; `last_activity`
/// is its last frame (`Duration::ZERO` gives a lower bound of the idle
/// deadline when the inbox is not at hand).
pub(crate) fn evaluate(
    card: CardRef<'_>,
    timers: &SessionTimers,
    last_activity: Duration,
    idle_timeout: Duration,
    now: Duration,
) -> Check {
    let idle_at = last_activity.max(timers.idle_base).checked_add(idle_timeout);
    let idle_due = idle_at.is_some_and(|t| now >= t);
    let earliest = |a: Duration, b: Option<Duration>| Check::At(b.map_or(a, |b| a.min(b)));
    let login_deadline = card.deadline.map(|d| d.0);
    match &card.session.state {
        // Not logged in within login_timeout → disconnected login_timeout.
        SessionState::AwaitingLogin if login_deadline.is_some_and(|d| now >= d) => Check::Due(Due::LoginTimeout),
        // Idle: a logged-in session is kicked, any other connection closed.
        SessionState::AwaitingLogin | SessionState::LoggedIn { .. } if idle_due => Check::Due(Due::Idle),
        SessionState::AwaitingLogin => match login_deadline {
            Some(deadline) => earliest(deadline, idle_at),
            None => idle_at.map_or(Check::Never, Check::At),
        },
        SessionState::LoggedIn { .. } => idle_at.map_or(Check::Never, Check::At),
        // A save already on its way to the store is waited for; its answer
        // re-queues the session.
        SessionState::Kicking { .. } if timers.saves_in_flight > 0 => Check::Never,
        // The kicked session did not save in time → closed without a save.
        SessionState::Kicking { deadline, .. } if now >= *deadline => Check::Due(Due::KickDeadline),
        SessionState::Kicking { deadline, .. } => Check::At(*deadline),
        SessionState::WaitingTakeover { .. } | SessionState::Closed => Check::Never,
    }
}

/// When a session must next be checked: `now` if a deadline has passed,
/// else its earliest deadline; `None` in a state without deadlines.
pub(crate) fn next_check(
    card: CardRef<'_>,
    timers: &SessionTimers,
    last_activity: Duration,
    idle_timeout: Duration,
    now: Duration,
) -> Option<Duration> {
    match evaluate(card, timers, last_activity, idle_timeout, now) {
        Check::Due(_) => Some(now),
        Check::At(at) => Some(at),
        Check::Never => None,
    }
}

/// How long a session whose transport was asked to drain its input waits for
/// the answer before it asks again (a safety net; the answer normally comes
/// within a frame or two).
const DRAIN_RETRY: Duration = Duration::from_secs(1);

/// Fires the deadlines that are due: login timeout, kick-save deadline and
/// idle timeout (docs/protocol.md §6). Pops only due entries of the
/// [`DeadlineQueue`]; a change of `SessionConfig` re-queues every session.
///
/// A due deadline is judged only after the input already waiting for the
/// connection has been read (docs/protocol.md §6, "Deadlines"): the
/// transport is asked with [`Connection::confirm_input_drained`]
/// (portcullis_net). The in-memory transport confirms at once and the
/// deadline fires in this frame; TCP answers with an [`InputDrained`]
/// message, and [`judge_drained_deadlines`] decides then. Runs in
/// `SessionSystems::Timers`.
///
/// [`Connection::confirm_input_drained`]: portcullis_net::Connection::confirm_input_drained
pub fn check_deadlines(mut ctx: SessionCtx, inboxes: Query<&Inbox>) {
    let now = ctx.now();
    let idle_timeout = ctx.config.idle_timeout;
    if ctx.config.is_changed() {
        ctx.schedule_all();
    }
    while let Some((at, entity)) = ctx.deadlines.pop_due(now) {
        let last_activity = inboxes.get(entity).map_or(Duration::ZERO, |i| i.last_activity);
        let Some(card) = card_of(&ctx.staged, &ctx.cards, entity) else { continue };
        let Ok((_, mut session, conn)) = ctx.sessions.get_mut(entity) else { continue };
        if session.next_check != Some(at) {
            continue; // not this session's entry (cannot happen; stay safe)
        }
        session.next_check = None;
        let due = match evaluate(card, &session, last_activity, idle_timeout, now) {
            Check::Due(due) => due,
            Check::At(later) => {
                ctx.deadlines.requeue(entity, &mut session, Some(later));
                continue;
            }
            Check::Never => continue,
        };
        if conn.confirm_input_drained() == DrainStatus::Pending {
            bevy_log::debug!(conn = %conn.id(), deadline = ?due, "deadline due: reading waiting input first");
            session.awaiting_drain = true;
            ctx.deadlines.requeue(entity, &mut session, Some(now + DRAIN_RETRY));
            continue;
        }
        session.awaiting_drain = false;
        fire(&mut ctx, entity, due);
    }
}

/// Judges again the deadlines of sessions whose transport has read the input
/// that was waiting when they came due ([`InputDrained`]): the frames read
/// meanwhile count as before the deadline (their activity, a final save
/// dispatched this frame), so a deadline fires only if it is still due
/// (docs/protocol.md §6, "Deadlines"). Runs in `SessionSystems::Timers`, after
/// the dispatcher, before [`check_deadlines`].
pub fn judge_drained_deadlines(mut ctx: SessionCtx, inboxes: Query<&Inbox>, mut drained: MessageReader<InputDrained>) {
    let now = ctx.now();
    let idle_timeout = ctx.config.idle_timeout;
    for InputDrained { entity } in drained.read().copied() {
        let last_activity = inboxes.get(entity).map_or(Duration::ZERO, |i| i.last_activity);
        let Some(card) = card_of(&ctx.staged, &ctx.cards, entity) else { continue };
        let Ok((_, mut session, _)) = ctx.sessions.get_mut(entity) else { continue };
        if !session.awaiting_drain {
            continue;
        }
        session.awaiting_drain = false;
        match evaluate(card, &session, last_activity, idle_timeout, now) {
            Check::Due(due) => fire(&mut ctx, entity, due),
            Check::At(later) => ctx.deadlines.requeue(entity, &mut session, Some(later)),
            Check::Never => ctx.deadlines.requeue(entity, &mut session, None),
        }
    }
}

/// Runs the transition of a deadline that is due.
fn fire(ctx: &mut SessionCtx, entity: Entity, due: Due) {
    match due {
        Due::LoginTimeout => ctx.close_unauthenticated(entity, DisconnectReason::LoginTimeout),
        Due::KickDeadline => ctx.end_kick(entity),
        Due::Idle => ctx.kick(entity, DisconnectReason::IdleTimeout),
    }
}

/// Ends the session of every connection the server has started to close
/// (`disconnect`, a protocol error, a rate-limit flood, a slow reader), in the
/// same frame when the close began before `NetSystems::Closing`: its token dies
/// and a takeover waiting on it goes on at once, without waiting for the
/// transport to finish closing (docs/protocol.md §4 `disconnect`, §6 step 6).
/// Reads [`ConnectionClosing`] messages, so idle connections cost nothing.
/// Runs in `SessionSystems::Timers`.
pub fn end_sessions_of_closing_connections(mut ctx: SessionCtx, mut closing: MessageReader<ConnectionClosing>) {
    for ConnectionClosing { entity } in closing.read().copied() {
        if ctx.session(entity).is_some_and(|s| !matches!(s.state, SessionState::Closed)) {
            ctx.connection_closed(entity);
        }
    }
}
