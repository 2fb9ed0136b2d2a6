//! The event-driven runner (DESIGN: "Frames and ticks"; docs/cli.md,
//! `--tick-hz` and `--max-frame-hz`).
//!
//! ```text
//!  loop {
//!      waker.wait_until(next_tick)      ◀── FrameWaker::wake() from the network / store threads
//!      [max_frame_hz > 0: wait for a token of the frame budget]
//!      app.update()                     one frame of Main; FixedUpdate when a tick is due
//!      AppExit written? → return it
//!  }
//! ```
//!
//! A frame runs when input arrives (the network or store threads wake the
//! [`FrameWaker`]) or when the next fixed tick is due, whichever is first.
//! With `max_frame_hz` 0 (the default) there is no cap: a frame starts as
//! soon as input is there and the previous frame is done, and input that
//! arrives while a frame runs is handled by the next one, so a flood is
//! batched by itself. With `max_frame_hz` N > 0 at most N frames start per
//! second on average (a token bucket with a burst of [`FRAME_BURST`]).
//! Idle, the app runs exactly `tick_hz` frames a second.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bevy_app::{App, AppExit, Plugin, PluginsState};
use bevy_ecs::resource::Resource;
use bevy_time::{Fixed, Time};

use crate::FrameWaker;

/// Frames that may run back to back before a `max_frame_hz` cap applies.
pub const FRAME_BURST: f64 = 4.0;

/// Settings of the event-driven runner ([`RunnerPlugin`], [`run_event_driven`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RunnerConfig {
    /// Fixed simulation ticks per second (`--tick-hz`, default 30): the rate
    /// of `FixedUpdate` and the idle frame rate.
    pub tick_hz: f64,
    /// Frames per second at most (`--max-frame-hz`); 0 (the default) means
    /// no cap: a frame starts as soon as input is there and the previous
    /// frame is done.
    pub max_frame_hz: f64,
}

impl Default for RunnerConfig {
    fn default() -> Self {
        Self { tick_hz: 30.0, max_frame_hz: 0.0 }
    }
}

/// Runs the app event-driven, like Bevy's `ScheduleRunnerPlugin` runs it on
/// a timer: `build` calls `App::set_runner` with [`run_event_driven`],
/// inserts `Time::<Fixed>::from_hz(tick_hz)` (the `FixedUpdate` rate), a
/// [`FrameWaker`] (unless one is there) and the [`RunnerStats`] resource.
///
/// `App::update` by hand (tests) does not use the runner; `App::run` does.
///
/// # Examples
///
/// ```
/// use bevy_app::prelude::*;
/// use bevy_ecs::prelude::*;
/// use portcullis_runtime::{RunnerPlugin, RunnerStats};
///
/// let mut app = App::new();
/// app.add_plugins((bevy_time::TimePlugin, RunnerPlugin { tick_hz: 100.0, max_frame_hz: 0.0 }))
///     .add_systems(Update, |mut frames: Local<u32>, mut exit: MessageWriter<AppExit>| {
///         *frames += 1;
///         if *frames == 3 {
///             exit.write(AppExit::Success);
///         }
///     });
/// let stats = app.world().resource::<RunnerStats>().clone();
/// assert_eq!(app.run(), AppExit::Success);
/// assert_eq!(stats.frames(), 3);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RunnerPlugin {
    /// Fixed ticks per second (see [`RunnerConfig::tick_hz`]).
    pub tick_hz: f64,
    /// Frame-rate cap, 0 = none (see [`RunnerConfig::max_frame_hz`]).
    pub max_frame_hz: f64,
}

impl Default for RunnerPlugin {
    fn default() -> Self {
        Self::from(RunnerConfig::default())
    }
}

impl From<RunnerConfig> for RunnerPlugin {
    fn from(config: RunnerConfig) -> Self {
        Self { tick_hz: config.tick_hz, max_frame_hz: config.max_frame_hz }
    }
}

impl RunnerPlugin {
    /// The runner's settings.
    pub fn config(&self) -> RunnerConfig {
        RunnerConfig { tick_hz: self.tick_hz, max_frame_hz: self.max_frame_hz }
    }
}

impl Plugin for RunnerPlugin {
    fn build(&self, app: &mut App) {
        let config = self.config();
        app.world_mut().get_resource_or_init::<FrameWaker>();
        app.insert_resource(Time::<Fixed>::from_hz(config.tick_hz.max(0.001)))
            .init_resource::<RunnerStats>()
            .set_runner(move |app| run_event_driven(app, config));
    }
}

/// What the runner did, counted as it goes. Inserted by [`RunnerPlugin`]
/// (and by [`run_event_driven`] if missing); written only by the runner.
/// Clones share the counters, so a clone taken before `App::run` (which moves
/// the app) reads them from another thread.
#[derive(Resource, Clone, Default, Debug)]
pub struct RunnerStats {
    inner: Arc<StatsInner>,
}

#[derive(Default, Debug)]
struct StatsInner {
    frames: AtomicU64,
    capped: AtomicU64,
}

impl RunnerStats {
    /// Frames run so far.
    pub fn frames(&self) -> u64 {
        self.inner.frames.load(Ordering::Acquire)
    }

    /// Frames whose start the `max_frame_hz` cap delayed (always 0 without a cap).
    pub fn capped_frames(&self) -> u64 {
        self.inner.capped.load(Ordering::Acquire)
    }

    fn count_frame(&self, capped: bool) {
        self.inner.frames.fetch_add(1, Ordering::AcqRel);
        if capped {
            self.inner.capped.fetch_add(1, Ordering::AcqRel);
        }
    }
}

/// Finishes the app's plugins the way `App::run` does before its first
/// update (a no-op when they are finished already).
pub fn finish_plugins(app: &mut App) {
    if app.plugins_state() == PluginsState::Cleaned {
        return;
    }
    while app.plugins_state() == PluginsState::Adding {
        std::thread::yield_now();
    }
    app.finish();
    app.cleanup();
}

/// Runs `app` until it writes an `AppExit`: sleeps until the app's
/// [`FrameWaker`] is woken or the next tick is due, waits for the frame cap
/// when there is one, then runs one frame. Returns the exit.
pub fn run_event_driven(mut app: App, config: RunnerConfig) -> AppExit {
    finish_plugins(&mut app);
    let waker = app.world_mut().get_resource_or_init::<FrameWaker>().clone();
    let stats = app.world_mut().get_resource_or_init::<RunnerStats>().clone();
    let tick = Duration::from_secs_f64(1.0 / config.tick_hz.max(0.001));
    let mut budget = (config.max_frame_hz > 0.0)
        .then(|| FrameBudget::new(Duration::from_secs_f64(1.0 / config.max_frame_hz), Instant::now()));
    let mut next_tick = Instant::now();
    loop {
        waker.wait_until(next_tick);
        let capped = budget.as_mut().is_some_and(FrameBudget::wait_for_token);
        let now = Instant::now();
        if now >= next_tick {
            next_tick += tick;
            if next_tick <= now {
                next_tick = now + tick; // fell behind: do not try to catch up in a burst
            }
        }
        stats.count_frame(capped);
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

    /// Sleeps until a frame may start and spends its token; returns whether it had to wait.
    fn wait_for_token(&mut self) -> bool {
        self.refill(Instant::now());
        let wait = self.wait();
        if !wait.is_zero() {
            std::thread::sleep(wait);
            // Refill from the clock again rather than assuming the sleep was
            // exact: an oversleep stays as credit, so a steady load runs at
            // `max_frame_hz` on average, not a little below it.
            self.refill(Instant::now());
        }
        self.take();
        !wait.is_zero()
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

    #[test]
    fn the_default_has_no_frame_cap() {
        assert_eq!(RunnerConfig::default().max_frame_hz, 0.0);
        assert_eq!(RunnerPlugin::default().config(), RunnerConfig::default());
    }

    #[test]
    fn the_plugin_sets_the_fixed_tick_rate() {
        let mut app = App::new();
        app.add_plugins(RunnerPlugin { tick_hz: 10.0, max_frame_hz: 0.0 });
        assert_eq!(app.world().resource::<Time<Fixed>>().timestep(), Duration::from_millis(100));
        assert!(app.world().get_resource::<FrameWaker>().is_some());
    }
}
