//! Frame metrics: how long each frame of the `Main` schedule takes, how many
//! frames run per second, and the gauges other plugins register (the
//! facade registers open connections and sessions), logged as percentiles
//! every [`FrameMetricsPlugin::log_every`].
//!
//! ```text
//!  Main: FrameStart ─ First ─ PreUpdate ─ RunFixedMainLoop ─ Update ─ ... ─ Last ─ FrameEnd
//!           │ Instant::now()                                                        │ duration → window
//!           └───────────────────────────────────────────────────────────────────────┘
//!  every log_every: info!(target: "portcullis::metrics", fps, frame_p50_us, frame_p99_us,
//!                         frame_max_us, "frame metrics NAME=VALUE ...")   one NAME=VALUE per gauge
//! ```
//!
//! The two schedules wrap every other schedule of `Main`, so a frame's
//! duration covers all its systems (network input, RPC dispatch, sessions,
//! fixed ticks, output). `portcullis-bench` (tools/bench) reads these log lines from the
//! server's stderr: the message and every field are `NAME=VALUE` words.

use std::time::{Duration, Instant};

use bevy_app::{App, MainScheduleOrder, Plugin};
use bevy_ecs::intern::Interned;
use bevy_ecs::prelude::*;
use bevy_ecs::schedule::ScheduleLabel;

/// The `tracing` target of the metrics log line.
pub const METRICS_TARGET: &str = "portcullis::metrics";

/// The message of the metrics log line.
pub const METRICS_MESSAGE: &str = "frame metrics";

/// Measures every frame and logs [`FrameStats`] every `log_every`.
///
/// Added to the `serve` app by `portcullis::app::build_server_app`
/// (`--metrics-every`). Inserts the [`FrameMetrics`] and [`FrameGauges`]
/// resources and the [`FrameStart`] and [`FrameEnd`] schedules, first and
/// last in `Main`. Register what else to log with
/// [`FrameMetricsAppExt::add_frame_gauge`].
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use bevy_app::App;
/// use portcullis_runtime::{FrameMetrics, FrameMetricsPlugin};
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
            .init_resource::<FrameGauges>()
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

/// Frame durations of the current window (a fixed histogram, no list of
/// frames) and the last [`FrameStats`]. Inserted by [`FrameMetricsPlugin`];
/// written only by its systems. Every frame is also recorded in the
/// `portcullis_frame_seconds` histogram of the `metrics` facade (seconds;
/// docs/operations.md), a no-op unless a recorder was installed before the
/// plugin was built.
#[derive(Resource, Debug)]
pub struct FrameMetrics {
    /// Window length.
    log_every: Duration,
    /// When the current window started.
    window_start: Instant,
    /// When the running frame started (set in [`FrameStart`]).
    frame_start: Option<Instant>,
    /// Durations of the window's frames.
    window: FrameHistogram,
    /// The statistics of the last finished window.
    last: Option<FrameStats>,
    /// `portcullis_frame_seconds`, taken once.
    exported: metrics::Histogram,
}

impl FrameMetrics {
    /// An empty window of length `log_every`, starting now.
    pub fn new(log_every: Duration) -> Self {
        Self {
            log_every,
            window_start: Instant::now(),
            frame_start: None,
            window: FrameHistogram::default(),
            last: None,
            exported: metrics::histogram!("portcullis_frame_seconds"),
        }
    }

    /// Frames measured in the current window so far.
    pub fn frames_in_window(&self) -> usize {
        usize::try_from(self.window.count).unwrap_or(usize::MAX)
    }

    /// The statistics of the last finished window (what was logged last).
    pub fn last(&self) -> Option<&FrameStats> {
        self.last.as_ref()
    }

    /// Records one frame's duration: no allocation, no lock.
    pub fn record(&mut self, duration: Duration) {
        self.window.record(u64::try_from(duration.as_micros()).unwrap_or(u64::MAX));
        self.exported.record(duration.as_secs_f64());
    }

    /// Closes the window at `now`: its statistics (with the `gauges` read
    /// now), and a new empty window from `now`.
    pub fn close_window(&mut self, now: Instant, gauges: Vec<(&'static str, u64)>) -> FrameStats {
        let elapsed = now.saturating_duration_since(self.window_start);
        let stats = self.window.stats(elapsed, gauges);
        self.window.clear();
        self.window_start = now;
        self.last = Some(stats.clone());
        stats
    }

    /// Whether the window that started at `window_start` is over at `now`.
    fn window_over(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.window_start) >= self.log_every
    }
}

/// Frame durations in microseconds as a log-linear histogram: exact below
/// 32 µs, then 16 buckets per power of two (a percentile is at most 1/16
/// above the true value, and never above the longest frame). Fixed size:
/// recording a frame costs one index computation and one add.
#[derive(Debug, Clone)]
pub struct FrameHistogram {
    buckets: Box<[u64; HISTOGRAM_BUCKETS]>,
    count: u64,
    max: u64,
}

const EXACT: u64 = 32;
const SUB_BITS: u32 = 4;
const HISTOGRAM_BUCKETS: usize = EXACT as usize + (64 - 5) * (1 << SUB_BITS);

impl Default for FrameHistogram {
    fn default() -> Self {
        Self { buckets: Box::new([0; HISTOGRAM_BUCKETS]), count: 0, max: 0 }
    }
}

impl FrameHistogram {
    fn index(us: u64) -> usize {
        if us < EXACT {
            return us as usize;
        }
        let exp = 63 - us.leading_zeros(); // >= 5
        let sub = (us >> (exp - SUB_BITS)) & ((1 << SUB_BITS) - 1);
        EXACT as usize + (exp as usize - 5) * (1 << SUB_BITS) + sub as usize
    }

    /// The largest value of bucket `index`.
    fn upper(index: usize) -> u64 {
        if index < EXACT as usize {
            return index as u64;
        }
        let rel = index - EXACT as usize;
        let exp = (rel >> SUB_BITS) as u32 + 5;
        let sub = (rel & ((1 << SUB_BITS) - 1)) as u64;
        let width = 1u64 << (exp - SUB_BITS);
        ((1u64 << SUB_BITS) + sub).saturating_mul(width).saturating_add(width - 1)
    }

    /// Adds one duration, µs.
    pub fn record(&mut self, us: u64) {
        self.buckets[Self::index(us)] += 1;
        self.count += 1;
        self.max = self.max.max(us);
    }

    /// Durations recorded.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The nearest-rank percentile `p` (0..=1), µs, as the upper bound of
    /// its bucket (never above the longest duration); 0 when empty.
    pub fn percentile(&self, p: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let rank = ((p * self.count as f64).ceil() as u64).clamp(1, self.count);
        let mut seen = 0;
        for (index, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Self::upper(index).min(self.max);
            }
        }
        self.max
    }

    /// Forgets every duration.
    pub fn clear(&mut self) {
        self.buckets.fill(0);
        self.count = 0;
        self.max = 0;
    }

    /// The window's figures over `elapsed`.
    pub fn stats(&self, elapsed: Duration, gauges: Vec<(&'static str, u64)>) -> FrameStats {
        let secs = elapsed.as_secs_f64();
        let frames = usize::try_from(self.count).unwrap_or(usize::MAX);
        FrameStats {
            fps: if secs > 0.0 { self.count as f64 / secs } else { 0.0 },
            frames,
            frame_p50_us: self.percentile(0.50),
            frame_p99_us: self.percentile(0.99),
            frame_max_us: self.max,
            gauges,
        }
    }
}

/// One window's figures, as logged.
#[derive(Debug, Clone, PartialEq)]
pub struct FrameStats {
    /// Frames per second over the window.
    pub fps: f64,
    /// Frames in the window.
    pub frames: usize,
    /// Median frame duration, µs (within 1/16, [`FrameHistogram`]).
    pub frame_p50_us: u64,
    /// 99th percentile frame duration, µs (nearest rank, within 1/16).
    pub frame_p99_us: u64,
    /// Longest frame, µs.
    pub frame_max_us: u64,
    /// The registered gauges at the end of the window, in registration order.
    pub gauges: Vec<(&'static str, u64)>,
}

impl FrameStats {
    /// The value of the gauge `name`, if one was registered.
    pub fn gauge(&self, name: &str) -> Option<u64> {
        self.gauges.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
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

/// [`FrameEnd`]: records the frame's duration; reads the gauges, logs and
/// restarts the window when it is over. Exclusive, since gauges read the
/// whole world; it runs alone in its schedule anyway.
fn end_frame(world: &mut World) {
    let now = Instant::now();
    let mut metrics = world.resource_mut::<FrameMetrics>();
    if let Some(start) = metrics.frame_start.take() {
        metrics.record(now.saturating_duration_since(start));
    }
    if !metrics.window_over(now) {
        return;
    }
    let gauges = world.get_resource::<FrameGauges>().map_or_else(Vec::new, |gauges| gauges.read(world));
    let stats = world.resource_mut::<FrameMetrics>().close_window(now, gauges);
    let gauges: String = stats.gauges.iter().map(|(name, value)| format!(" {name}={value}")).collect();
    bevy_log::info!(
        target: "portcullis::metrics",
        fps = format_args!("{:.1}", stats.fps),
        frame_p50_us = stats.frame_p50_us,
        frame_p99_us = stats.frame_p99_us,
        frame_max_us = stats.frame_max_us,
        "frame metrics{gauges}"
    );
}

/// Reads one figure from the world for the metrics line (e.g. open connections).
pub type GaugeFn = fn(&World) -> u64;

/// The gauges logged with every metrics window, in registration order.
/// Inserted by [`FrameMetricsPlugin`]; filled by
/// [`FrameMetricsAppExt::add_frame_gauge`].
#[derive(Resource, Default)]
pub struct FrameGauges {
    gauges: Vec<(&'static str, GaugeFn)>,
}

impl FrameGauges {
    /// Adds (or replaces) the gauge `name`. `name` becomes a `NAME=VALUE`
    /// word of the log line: use lowercase letters and `_`.
    pub fn add(&mut self, name: &'static str, read: GaugeFn) {
        match self.gauges.iter_mut().find(|(n, _)| *n == name) {
            Some(entry) => entry.1 = read,
            None => self.gauges.push((name, read)),
        }
    }

    /// Every gauge's value now.
    pub fn read(&self, world: &World) -> Vec<(&'static str, u64)> {
        self.gauges.iter().map(|(name, read)| (*name, read(world))).collect()
    }
}

/// Registers frame gauges on an `App`.
pub trait FrameMetricsAppExt {
    /// Logs `read(world)` as `name=VALUE` with every metrics window (see
    /// [`FrameGauges::add`]). Works before or after [`FrameMetricsPlugin`]
    /// is added.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use bevy_app::App;
    /// use bevy_ecs::prelude::*;
    /// use portcullis_runtime::{FrameMetrics, FrameMetricsAppExt, FrameMetricsPlugin};
    ///
    /// #[derive(Component)]
    /// struct Player;
    ///
    /// let mut app = App::new();
    /// app.add_plugins(FrameMetricsPlugin::every(Duration::ZERO))
    ///     .add_frame_gauge("entities", |world| world.entities().len() as u64);
    /// app.update();
    /// let last = app.world().resource::<FrameMetrics>().last().unwrap();
    /// assert!(last.gauge("entities").is_some());
    /// ```
    fn add_frame_gauge(&mut self, name: &'static str, read: GaugeFn) -> &mut Self;
}

impl FrameMetricsAppExt for App {
    fn add_frame_gauge(&mut self, name: &'static str, read: GaugeFn) -> &mut Self {
        self.world_mut().get_resource_or_init::<FrameGauges>().add(name, read);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn histogram_of(values: impl IntoIterator<Item = u64>) -> FrameHistogram {
        let mut histogram = FrameHistogram::default();
        for v in values {
            histogram.record(v);
        }
        histogram
    }

    #[test]
    fn percentiles_use_the_nearest_rank_within_a_sixteenth() {
        let stats =
            histogram_of((1..=100).rev()).stats(Duration::from_secs(2), vec![("connections", 3), ("sessions", 2)]);
        assert!((50..=50 + 50 / 16).contains(&stats.frame_p50_us), "{}", stats.frame_p50_us);
        assert!((99..=100).contains(&stats.frame_p99_us), "{}", stats.frame_p99_us);
        assert_eq!(stats.frame_max_us, 100);
        assert_eq!(stats.frames, 100);
        assert!((stats.fps - 50.0).abs() < 1e-9);
        assert_eq!((stats.gauge("connections"), stats.gauge("sessions")), (Some(3), Some(2)));
        // Small values are exact.
        assert_eq!(histogram_of([3, 7, 9]).percentile(0.5), 7);
    }

    #[test]
    fn every_bucket_bound_is_within_a_sixteenth_of_its_values() {
        for us in [32, 33, 47, 100, 999, 1_000, 16_383, 1_000_000, 3_600_000_000, u64::MAX / 2] {
            let index = FrameHistogram::index(us);
            let upper = FrameHistogram::upper(index);
            assert!(upper >= us && upper - us <= us / 16, "{us} -> {upper}");
        }
        assert!(FrameHistogram::index(u64::MAX) < HISTOGRAM_BUCKETS);
    }

    #[test]
    fn an_empty_window_is_all_zero() {
        let stats = FrameHistogram::default().stats(Duration::ZERO, Vec::new());
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

    #[test]
    fn gauges_are_read_when_a_window_closes_in_registration_order() {
        #[derive(Resource)]
        struct Open(u64);
        let mut app = App::new();
        app.add_frame_gauge("open", |world| world.get_resource::<Open>().map_or(0, |open| open.0))
            .add_plugins(FrameMetricsPlugin::every(Duration::ZERO))
            .add_frame_gauge("always", |_| 7)
            .insert_resource(Open(3));
        app.update();
        let last = app.world().resource::<FrameMetrics>().last().cloned().expect("a window closed");
        assert_eq!(last.gauges, vec![("open", 3), ("always", 7)]);
    }
}
