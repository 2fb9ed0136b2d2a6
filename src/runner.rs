//! The event-driven runner (DESIGN.md, "Frames and ticks").
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
    // The frame cap is a token bucket (a few frames of burst), not a fixed
    // gap: a request answered with one frame never waits for the cap, while a
    // flood is still batched at `max_frame_hz` frames a second.
    let mut budget = FRAME_BURST;
    let mut refilled = Instant::now();
    loop {
        waker.wait_until(next_tick);
        let now = Instant::now();
        budget = (budget + now.duration_since(refilled).as_secs_f64() / min_frame.as_secs_f64()).min(FRAME_BURST);
        refilled = now;
        if budget < 1.0 {
            std::thread::sleep(min_frame.mul_f64(1.0 - budget));
            budget = 1.0;
            refilled = Instant::now();
        }
        budget -= 1.0;
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
