//! Frame metrics: how long each frame of the `Main` schedule takes, how many
//! frames run per second, and how many connections and sessions are open,
//! logged as percentiles every [`FrameMetricsPlugin::log_every`].
//!
//! ```text
//!  Main: FrameStart ─ First ─ PreUpdate ─ RunFixedMainLoop ─ Update ─ ... ─ Last ─ FrameEnd
//!           │ Instant::now()                                                        │ duration → window
//!           └───────────────────────────────────────────────────────────────────────┘
//!  every log_every: info!(target: "portcullis::metrics", fps, frame_p50_us, frame_p99_us,
//!                         frame_max_us, connections, sessions, "frame metrics")
//! ```
//!
//! The two schedules wrap every other schedule of `Main`, so a frame's
//! duration covers all its systems (network input, RPC dispatch, sessions,
//! fixed ticks, output). `portcullis-bench` (tools/bench) reads these log lines from the
//! server's stderr.

use std::time::{Duration, Instant};

use bevy_app::{App, MainScheduleOrder, Plugin};
use bevy_ecs::intern::Interned;
use bevy_ecs::prelude::*;
use bevy_ecs::schedule::ScheduleLabel;
use portcullis_net::ConnectionIndex;
use portcullis_session::SessionIndex;

/// The `tracing` target of the metrics log line.
pub const METRICS_TARGET: &str = "portcullis::metrics";

/// The message of the metrics log line.
pub const METRICS_MESSAGE: &str = "frame metrics";

/// Measures every frame and logs [`FrameStats`] every `log_every`.
///
/// Added to the `serve` app by [`build_server_app`](crate::app::build_server_app)
/// (`--metrics-every`). Inserts the [`FrameMetrics`] resource and the
/// [`FrameStart`] and [`FrameEnd`] schedules, first and last in `Main`.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use bevy_app::App;
/// use portcullis::metrics::{FrameMetrics, FrameMetricsPlugin};
///
/// let mut app = App::new();
/// app.add_plugins(FrameMetricsPlugin { log_every: Duration::from_secs(10) });
/// app.update();
/// assert_eq!(app.world().resource::<FrameMetrics>().frames_in_window(), 1);
/// ```
#[derive(Debug, Clone)]
pub struct FrameMetricsPlugin {
    /// How often the percentiles are logged (and the window restarted).
    pub log_every: Duration,
}

impl Default for FrameMetricsPlugin {
    fn default() -> Self {
        Self { log_every: Duration::from_secs(10) }
    }
}

impl FrameMetricsPlugin {
    /// Logs every `log_every`.
    pub fn every(log_every: Duration) -> Self {
        Self { log_every }
    }
}

/// Runs first in `Main`: records when the frame started.
#[derive(ScheduleLabel, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FrameStart;

/// Runs last in `Main`: records the frame's duration and logs when a window is over.
#[derive(ScheduleLabel, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FrameEnd;

impl Plugin for FrameMetricsPlugin {
    fn build(&self, app: &mut App) {
        app.insert_resource(FrameMetrics::new(self.log_every))
            .add_systems(FrameStart, start_frame)
            .add_systems(FrameEnd, end_frame);
        place_first_and_last(app);
    }

    fn finish(&self, app: &mut App) {
        // Plugins added after this one may have put schedules around ours.
        place_first_and_last(app);
    }
}

/// Puts [`FrameStart`] first and [`FrameEnd`] last in [`MainScheduleOrder`].
fn place_first_and_last(app: &mut App) {
    let world = app.world_mut();
    let mut order = world.get_resource_or_insert_with(MainScheduleOrder::default);
    let start: Interned<dyn ScheduleLabel> = FrameStart.intern();
    let end: Interned<dyn ScheduleLabel> = FrameEnd.intern();
    order.labels.retain(|label| *label != start && *label != end);
    order.labels.insert(0, start);
    order.labels.push(end);
}

/// Frame durations of the current window and the last [`FrameStats`].
/// Inserted by [`FrameMetricsPlugin`]; written only by its systems.
#[derive(Resource, Debug)]
pub struct FrameMetrics {
    /// Window length.
    log_every: Duration,
    /// When the current window started.
    window_start: Instant,
    /// When the running frame started (set in [`FrameStart`]).
    frame_start: Option<Instant>,
    /// Durations of the window's frames, in microseconds.
    durations_us: Vec<u64>,
    /// The statistics of the last finished window.
    last: Option<FrameStats>,
}

impl FrameMetrics {
    /// An empty window of length `log_every`, starting now.
    pub fn new(log_every: Duration) -> Self {
        Self {
            log_every,
            window_start: Instant::now(),
            frame_start: None,
            durations_us: Vec::with_capacity(1024),
            last: None,
        }
    }

    /// Frames measured in the current window so far.
    pub fn frames_in_window(&self) -> usize {
        self.durations_us.len()
    }

    /// The statistics of the last finished window (what was logged last).
    pub fn last(&self) -> Option<&FrameStats> {
        self.last.as_ref()
    }

    /// Records one frame's duration.
    pub fn record(&mut self, duration: Duration) {
        self.durations_us.push(u64::try_from(duration.as_micros()).unwrap_or(u64::MAX));
    }

    /// Closes the window at `now`: its statistics (with `connections` and
    /// `sessions`), and a new empty window from `now`.
    pub fn close_window(&mut self, now: Instant, connections: usize, sessions: usize) -> FrameStats {
        let elapsed = now.saturating_duration_since(self.window_start);
        let stats = FrameStats::from_durations(&mut self.durations_us, elapsed, connections, sessions);
        self.durations_us.clear();
        self.window_start = now;
        self.last = Some(stats.clone());
        stats
    }

    /// Whether the window that started at `window_start` is over at `now`.
    fn window_over(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.window_start) >= self.log_every
    }
}

/// One window's figures, as logged.
#[derive(Debug, Clone, PartialEq)]
pub struct FrameStats {
    /// Frames per second over the window.
    pub fps: f64,
    /// Frames in the window.
    pub frames: usize,
    /// Median frame duration, µs.
    pub frame_p50_us: u64,
    /// 99th percentile frame duration, µs (nearest rank).
    pub frame_p99_us: u64,
    /// Longest frame, µs.
    pub frame_max_us: u64,
    /// Open connections at the end of the window.
    pub connections: usize,
    /// Sessions (logged in or kicking) at the end of the window.
    pub sessions: usize,
}

impl FrameStats {
    /// Percentiles of `durations_us` (sorted in place) over a window of `elapsed`.
    pub fn from_durations(durations_us: &mut [u64], elapsed: Duration, connections: usize, sessions: usize) -> Self {
        durations_us.sort_unstable();
        let secs = elapsed.as_secs_f64();
        let fps = if secs > 0.0 { durations_us.len() as f64 / secs } else { 0.0 };
        Self {
            fps,
            frames: durations_us.len(),
            frame_p50_us: nearest_rank(durations_us, 0.50),
            frame_p99_us: nearest_rank(durations_us, 0.99),
            frame_max_us: durations_us.last().copied().unwrap_or(0),
            connections,
            sessions,
        }
    }
}

/// The nearest-rank percentile `p` (0..=1) of sorted `values`; 0 when empty.
pub fn nearest_rank(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// [`FrameStart`]: remembers when the frame started.
fn start_frame(mut metrics: ResMut<FrameMetrics>) {
    metrics.frame_start = Some(Instant::now());
}

/// [`FrameEnd`]: records the frame's duration; logs and restarts the window when it is over.
fn end_frame(
    mut metrics: ResMut<FrameMetrics>,
    connections: Option<Res<ConnectionIndex>>,
    sessions: Option<Res<SessionIndex>>,
) {
    let now = Instant::now();
    if let Some(start) = metrics.frame_start.take() {
        metrics.record(now.saturating_duration_since(start));
    }
    if !metrics.window_over(now) {
        return;
    }
    let connections = connections.map_or(0, |index| index.len());
    let sessions = sessions.map_or(0, |index| index.sessions());
    let stats = metrics.close_window(now, connections, sessions);
    bevy_log::info!(
        target: "portcullis::metrics",
        fps = format_args!("{:.1}", stats.fps),
        frame_p50_us = stats.frame_p50_us,
        frame_p99_us = stats.frame_p99_us,
        frame_max_us = stats.frame_max_us,
        connections = stats.connections,
        sessions = stats.sessions,
        "frame metrics"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let mut durations: Vec<u64> = (1..=100).rev().collect();
        let stats = FrameStats::from_durations(&mut durations, Duration::from_secs(2), 3, 2);
        assert_eq!((stats.frame_p50_us, stats.frame_p99_us, stats.frame_max_us), (50, 99, 100));
        assert_eq!(stats.frames, 100);
        assert!((stats.fps - 50.0).abs() < 1e-9);
        assert_eq!((stats.connections, stats.sessions), (3, 2));
    }

    #[test]
    fn an_empty_window_is_all_zero() {
        let stats = FrameStats::from_durations(&mut [], Duration::ZERO, 0, 0);
        assert_eq!((stats.fps, stats.frame_p50_us, stats.frame_p99_us, stats.frame_max_us), (0.0, 0, 0, 0));
    }

    #[test]
    fn the_schedules_wrap_main() {
        let mut app = App::new();
        app.add_plugins(FrameMetricsPlugin::every(Duration::from_secs(3600)));
        app.finish();
        let order = app.world().resource::<MainScheduleOrder>();
        assert_eq!(order.labels.first().copied(), Some(FrameStart.intern()));
        assert_eq!(order.labels.last().copied(), Some(FrameEnd.intern()));
        app.update();
        app.update();
        assert_eq!(app.world().resource::<FrameMetrics>().frames_in_window(), 2);
    }

    #[test]
    fn a_window_closes_after_log_every() {
        let mut app = App::new();
        app.add_plugins(FrameMetricsPlugin::every(Duration::ZERO));
        app.update();
        let metrics = app.world().resource::<FrameMetrics>();
        assert_eq!(metrics.frames_in_window(), 0);
        assert_eq!(metrics.last().map(|stats| stats.frames), Some(1));
    }
}
