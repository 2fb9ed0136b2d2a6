//! Login throttling per peer address (docs/protocol.md §6, "Login throttling").

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::Duration;

use bevy_ecs::prelude::*;
use bevy_time::{Real, Time};

use crate::AccountsConfig;

/// Failed password logins per peer IP address (docs/protocol.md §6, "Login
/// throttling"). Inserted by `AccountsPlugin`.
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

/// Drops throttle entries whose failures all left the window (at most once
/// a second). Runs in `SessionSystems::Timers`.
pub fn prune_login_throttle(mut throttle: ResMut<LoginThrottle>, config: Res<AccountsConfig>, time: Res<Time<Real>>) {
    throttle.prune(time.elapsed(), config.login_fail_window);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const WINDOW: Duration = Duration::from_secs(300);

    /// Failures at clock zero (right after start) count for the whole window:
    /// "within the last `window`" is `now - t < window`, with no window start
    /// saturated at zero.
    #[test]
    fn throttle_counts_failures_made_at_clock_zero() {
        let peer = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let mut throttle = LoginThrottle::default();
        for _ in 0..5 {
            throttle.record_failure(peer, Duration::ZERO);
        }
        assert!(throttle.is_blocked(peer, Duration::ZERO, 5, WINDOW));
        throttle.prune(Duration::from_secs(1), WINDOW);
        assert!(throttle.is_blocked(peer, WINDOW - Duration::from_millis(1), 5, WINDOW));
        assert!(!throttle.is_blocked(peer, WINDOW, 5, WINDOW), "the failures leave the window after it");
    }
}
