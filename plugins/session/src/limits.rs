//! Timers and limits of PROTOCOL.md §6: the login deadline, the idle timer,
//! the kick-save deadline, and login throttling per peer address.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::Duration;

use bevy_ecs::prelude::*;
use portcullis_net::Inbox;
use portcullis_rpc::DisconnectReason;

use crate::machine::SessionCtx;
use crate::state::SessionState;

/// Failed password logins per peer IP address (PROTOCOL.md §6, "Login
/// throttling"). Inserted by `SessionPlugin`.
#[derive(Resource, Default, Debug)]
pub struct LoginThrottle {
    failures: HashMap<IpAddr, VecDeque<Duration>>,
    last_prune: Duration,
}

impl LoginThrottle {
    /// Whether password logins from `peer` are refused at `now`: `limit`
    /// failures happened within the last `window`.
    pub fn is_blocked(&mut self, peer: IpAddr, now: Duration, limit: u32, window: Duration) -> bool {
        let peer = peer.to_canonical();
        let Some(times) = self.failures.get_mut(&peer) else { return false };
        while times.front().is_some_and(|t| *t + window <= now) {
            times.pop_front();
        }
        if times.is_empty() {
            self.failures.remove(&peer);
            return false;
        }
        times.len() >= limit as usize
    }

    /// Counts one `INVALID_CREDENTIALS` answer to a password login from `peer`.
    pub fn record_failure(&mut self, peer: IpAddr, now: Duration) {
        self.failures.entry(peer.to_canonical()).or_default().push_back(now);
    }

    /// Drops addresses whose failures all left the window (bounds memory);
    /// does the work at most once a second.
    pub fn prune(&mut self, now: Duration, window: Duration) {
        if now < self.last_prune + Duration::from_secs(1) {
            return;
        }
        self.last_prune = now;
        self.failures.retain(|_, times| times.back().is_some_and(|t| *t + window > now));
    }
}

/// Fires the deadlines of every session, each frame: login timeout, kick-save
/// deadline and idle timeout. Runs in `SessionSet::Timers`.
pub fn check_deadlines(mut ctx: SessionCtx, inboxes: Query<&Inbox>) {
    let now = ctx.now();
    let idle_timeout = ctx.config.idle_timeout;
    let mut due: Vec<(Entity, Due)> = Vec::new();
    for (entity, session, _) in ctx.sessions.iter() {
        let last_frame = inboxes.get(entity).map_or(Duration::ZERO, |i| i.last_activity);
        let idle = now.saturating_sub(last_frame.max(session.idle_base)) >= idle_timeout;
        match &session.state {
            // §6: not logged in within login_timeout → disconnected login_timeout.
            SessionState::AwaitingLogin { deadline } if now >= *deadline => due.push((entity, Due::LoginTimeout)),
            // §6: the kicked session did not save in time → closed without a save
            // (a save already on its way to the store is waited for).
            SessionState::Kicking { deadline, .. } if now >= *deadline && session.saves_in_flight == 0 => {
                due.push((entity, Due::KickDeadline));
            }
            // §6 idle: a logged-in session is kicked, any other connection closed.
            SessionState::LoggedIn { .. } | SessionState::AwaitingLogin { .. } if idle => due.push((entity, Due::Idle)),
            _ => {}
        }
    }
    for (entity, what) in due {
        match what {
            Due::LoginTimeout => ctx.close_unauthenticated(entity, DisconnectReason::LoginTimeout),
            Due::KickDeadline => ctx.end_kick(entity),
            Due::Idle => ctx.kick(entity, DisconnectReason::IdleTimeout),
        }
    }
    let window = ctx.config.login_fail_window;
    ctx.throttle.prune(now, window);
}

enum Due {
    LoginTimeout,
    KickDeadline,
    Idle,
}

/// Ends the session of every connection the server has started to close
/// (`disconnect`, a protocol error, a rate-limit flood, a slow reader), in the
/// same frame: its token dies and a takeover waiting on it goes on at once,
/// without waiting for the transport to finish closing (PROTOCOL.md §4
/// `disconnect`, §6 step 6). Runs in `SessionSet::Timers`.
pub fn end_sessions_of_closing_connections(mut ctx: SessionCtx) {
    let closing: Vec<Entity> = ctx
        .sessions
        .iter()
        .filter(|(_, session, conn)| !matches!(session.state, SessionState::Closed) && conn.is_closing())
        .map(|(entity, _, _)| entity)
        .collect();
    for entity in closing {
        ctx.connection_closed(entity);
    }
}
