//! The event-driven runner (docs/architecture.md, "Frames and ticks").
//!
//! A frame runs when input arrives (the network or store threads wake the
//! [`FrameWaker`]) or when the next fixed tick is due, whichever is first,
//! and at most `max_frame_hz` times a second so a flood is handled in
//! batches. Idle, the app runs exactly `tick_hz` frames a second.

use std::time::{Duration, Instant};

use bevy_app::{App, AppExit, PluginsState};
use portcullis_net::FrameWaker;

/// Frames that may run back to back before the `max_frame_hz` cap applies.
const FRAME_BURST: f64 = 4.0;

/// Settings of [`run_event_driven`].
#[derive(Debug, Clone, Copy)]
pub struct RunnerConfig {
    /// Fixed simulation ticks per second (`--tick-hz`); also the idle frame rate.
    pub tick_hz: f64,
    /// Frames per second at most (`--max-frame-hz`).
    pub max_frame_hz: f64,
}

impl Default for RunnerConfig {
    fn default() -> Self {
        Self { tick_hz: 30.0, max_frame_hz: 1000.0 }
    }
}

impl RunnerConfig {
    /// Installs this runner on `app` (`App::set_runner`).
    pub fn install(self, app: &mut App) {
        app.set_runner(move |app| run_event_driven(app, self));
    }
}

/// Finishes the app's plugins the way `App::run` does before its first update.
pub fn finish_plugins(app: &mut App) {
    while app.plugins_state() == PluginsState::Adding {
        std::thread::yield_now();
    }
    app.finish();
    app.cleanup();
}

/// Runs `app` until it writes an `AppExit`: sleeps until woken or until the
/// next tick, then runs one frame.
pub fn run_event_driven(mut app: App, config: RunnerConfig) -> AppExit {
    finish_plugins(&mut app);
    let waker = app.world().get_resource::<FrameWaker>().cloned().unwrap_or_default();
    let tick = Duration::from_secs_f64(1.0 / config.tick_hz.max(0.001));
    let min_frame = Duration::from_secs_f64(1.0 / config.max_frame_hz.max(0.001));
    let mut next_tick = Instant::now();
    let mut budget = FrameBudget::new(min_frame, Instant::now());
    loop {
        waker.wait_until(next_tick);
        budget.refill(Instant::now());
        let wait = budget.wait();
        if !wait.is_zero() {
            std::thread::sleep(wait);
            // Refill from the clock again rather than assuming the sleep was
            // exact: an oversleep stays as credit, so a steady load runs at
            // `max_frame_hz` on average, not a little below it.
            budget.refill(Instant::now());
        }
        budget.take();
        let now = Instant::now();
        if now >= next_tick {
            next_tick += tick;
            if next_tick <= now {
                next_tick = now + tick; // fell behind: do not try to catch up in a burst
            }
        }
        app.update();
        if let Some(exit) = app.should_exit() {
            return exit;
        }
    }
}

/// The frame cap as a token bucket (a few frames of burst), not a fixed gap:
/// a request after a quiet spell never waits for the cap, while a flood is
/// still batched at `max_frame_hz` frames a second on average.
#[derive(Debug)]
struct FrameBudget {
    /// Frames that may start now; at most [`FRAME_BURST`].
    tokens: f64,
    refilled: Instant,
    min_frame: Duration,
}

impl FrameBudget {
    fn new(min_frame: Duration, now: Instant) -> Self {
        Self { tokens: FRAME_BURST, refilled: now, min_frame }
    }

    /// Adds the tokens earned since the last refill.
    fn refill(&mut self, now: Instant) {
        let earned = now.saturating_duration_since(self.refilled).as_secs_f64() / self.min_frame.as_secs_f64();
        self.tokens = (self.tokens + earned).min(FRAME_BURST);
        self.refilled = now;
    }

    /// How long until a frame may start (zero when a token is there).
    fn wait(&self) -> Duration {
        if self.tokens >= 1.0 { Duration::ZERO } else { self.min_frame.mul_f64(1.0 - self.tokens) }
    }

    /// Spends the token of the frame about to run.
    fn take(&mut self) {
        self.tokens -= 1.0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `frames` frames back to back under the cap, each sleep overshooting
    /// by `oversleep`, and returns the simulated time they took.
    fn flood(frames: u32, oversleep: Duration) -> Duration {
        let start = Instant::now();
        let mut now = start;
        let mut budget = FrameBudget::new(Duration::from_millis(1), now);
        for _ in 0..frames {
            budget.refill(now);
            let wait = budget.wait();
            if !wait.is_zero() {
                now += wait + oversleep;
                budget.refill(now);
            }
            budget.take();
        }
        now - start
    }

    #[test]
    fn a_burst_runs_without_waiting() {
        assert_eq!(flood(FRAME_BURST as u32, Duration::from_micros(80)), Duration::ZERO);
    }

    #[test]
    fn a_flood_runs_at_the_cap_on_average_even_when_sleeps_overshoot() {
        // 1,000 frames at 1,000 Hz with a 4-frame burst: 996 ms. Without the
        // credit for oversleeping, 80 µs per sleep would add ~80 ms.
        let took = flood(1000, Duration::from_micros(80));
        assert!(took <= Duration::from_millis(997), "took {took:?}");
        assert!(took >= Duration::from_millis(995), "took {took:?}");
    }
}
