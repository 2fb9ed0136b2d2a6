//! Latency percentiles and the summary of the server's frame-metrics windows.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use portcullis::runtime::nearest_rank;

/// Latencies of one run, in microseconds; every sample is kept, so the
/// percentiles are exact.
#[derive(Debug, Clone, Default)]
pub struct Latencies {
    /// One entry per measured request.
    us: Vec<u64>,
}

impl Latencies {
    /// Records one latency.
    pub fn record(&mut self, latency: Duration) {
        self.us.push(u64::try_from(latency.as_micros()).unwrap_or(u64::MAX));
    }

    /// Adds `other`'s samples.
    pub fn merge(&mut self, mut other: Latencies) {
        self.us.append(&mut other.us);
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.us.len()
    }

    /// Whether there is no sample.
    pub fn is_empty(&self) -> bool {
        self.us.is_empty()
    }

    /// Percentiles of the samples.
    pub fn summary(mut self) -> LatencySummary {
        self.us.sort_unstable();
        let count = self.us.len();
        let mean_us = if count == 0 { 0.0 } else { self.us.iter().sum::<u64>() as f64 / count as f64 };
        LatencySummary {
            count,
            mean_us,
            p50_us: nearest_rank(&self.us, 0.50),
            p99_us: nearest_rank(&self.us, 0.99),
            p999_us: nearest_rank(&self.us, 0.999),
            max_us: self.us.last().copied().unwrap_or(0),
        }
    }
}

/// Percentiles of a [`Latencies`] (nearest rank), in microseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LatencySummary {
    /// Number of samples.
    pub count: usize,
    /// Mean.
    pub mean_us: f64,
    /// Median.
    pub p50_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// 99.9th percentile.
    pub p999_us: u64,
    /// Largest.
    pub max_us: u64,
}

impl LatencySummary {
    /// As a JSON object.
    pub fn to_json(&self) -> Value {
        json!({
            "count": self.count,
            "mean_us": round1(self.mean_us),
            "p50_us": self.p50_us,
            "p99_us": self.p99_us,
            "p999_us": self.p999_us,
            "max_us": self.max_us,
        })
    }
}

/// One `frame metrics` log line of the server, with when the bench read it.
#[derive(Debug, Clone, PartialEq)]
pub struct FrameSample {
    /// When the line arrived (the end of its window).
    pub at: Instant,
    /// Frames per second.
    pub fps: f64,
    /// Median frame duration, µs.
    pub frame_p50_us: u64,
    /// 99th percentile frame duration, µs.
    pub frame_p99_us: u64,
    /// Longest frame, µs.
    pub frame_max_us: u64,
    /// Open connections.
    pub connections: u64,
    /// Sessions.
    pub sessions: u64,
}

impl FrameSample {
    /// Parses a log line of the server's frame metrics (`portcullis_runtime::FrameMetricsPlugin`:
    /// `... portcullis::metrics: frame metrics connections=3 sessions=2 fps=30.0 frame_p50_us=12 ...`);
    /// `None` for any other line.
    pub fn parse(line: &str, at: Instant) -> Option<Self> {
        let start = line.find(portcullis::runtime::METRICS_MESSAGE)?;
        if !line[..start].contains(portcullis::runtime::METRICS_TARGET) {
            return None;
        }
        let mut sample =
            Self { at, fps: f64::NAN, frame_p50_us: 0, frame_p99_us: 0, frame_max_us: 0, connections: 0, sessions: 0 };
        for field in line[start..].split_whitespace() {
            let Some((key, value)) = field.split_once('=') else { continue };
            match key {
                "fps" => sample.fps = value.parse().ok()?,
                "frame_p50_us" => sample.frame_p50_us = value.parse().ok()?,
                "frame_p99_us" => sample.frame_p99_us = value.parse().ok()?,
                "frame_max_us" => sample.frame_max_us = value.parse().ok()?,
                "connections" => sample.connections = value.parse().ok()?,
                "sessions" => sample.sessions = value.parse().ok()?,
                _ => {}
            }
        }
        (!sample.fps.is_nan()).then_some(sample)
    }
}

/// The frame-metrics windows that fell inside a measured phase.
#[derive(Debug, Clone, PartialEq)]
pub struct FrameSummary {
    /// Windows summarised.
    pub windows: usize,
    /// Mean frames per second.
    pub fps_mean: f64,
    /// Median of the windows' median frame time, µs.
    pub p50_us: u64,
    /// Median of the windows' 99th percentiles, µs.
    pub p99_median_us: u64,
    /// The worst window's 99th percentile, µs.
    pub p99_worst_us: u64,
    /// Longest frame of all windows, µs.
    pub max_us: u64,
    /// Most connections seen at a window's end.
    pub connections: u64,
    /// Most sessions seen at a window's end.
    pub sessions: u64,
}

impl FrameSummary {
    /// Summarises the windows of `samples` that lie within `from..=to`
    /// (a window of length `every` ends when its line arrives); when none lies
    /// wholly inside (a phase shorter than a window), those that overlap it.
    /// `None` when no window touches the phase.
    pub fn of_phase(samples: &[FrameSample], from: Instant, to: Instant, every: Duration) -> Option<Self> {
        // A window's line arrives within a frame (≤ 1/tick_hz) of its end.
        let slack = Duration::from_millis(60);
        let inside: Vec<&FrameSample> =
            samples.iter().filter(|s| s.at + slack >= from + every && s.at <= to + slack).collect();
        let chosen = if inside.is_empty() {
            samples.iter().filter(|s| s.at > from && s.at < to + every).collect()
        } else {
            inside
        };
        Self::of(&chosen)
    }

    /// Summarises `samples`; `None` when empty.
    pub fn of(samples: &[&FrameSample]) -> Option<Self> {
        if samples.is_empty() {
            return None;
        }
        let median = |mut values: Vec<u64>| {
            values.sort_unstable();
            nearest_rank(&values, 0.5)
        };
        Some(Self {
            windows: samples.len(),
            fps_mean: samples.iter().map(|s| s.fps).sum::<f64>() / samples.len() as f64,
            p50_us: median(samples.iter().map(|s| s.frame_p50_us).collect()),
            p99_median_us: median(samples.iter().map(|s| s.frame_p99_us).collect()),
            p99_worst_us: samples.iter().map(|s| s.frame_p99_us).max().unwrap_or(0),
            max_us: samples.iter().map(|s| s.frame_max_us).max().unwrap_or(0),
            connections: samples.iter().map(|s| s.connections).max().unwrap_or(0),
            sessions: samples.iter().map(|s| s.sessions).max().unwrap_or(0),
        })
    }

    /// As a JSON object.
    pub fn to_json(&self) -> Value {
        json!({
            "windows": self.windows,
            "fps_mean": round1(self.fps_mean),
            "frame_p50_us": self.p50_us,
            "frame_p99_median_us": self.p99_median_us,
            "frame_p99_worst_us": self.p99_worst_us,
            "frame_max_us": self.max_us,
            "connections": self.connections,
            "sessions": self.sessions,
        })
    }
}

/// `x` rounded to one decimal, for reports.
pub fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// `x` rounded to three decimals, for reports.
pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_percentiles() {
        let mut lat = Latencies::default();
        for us in 1..=1000 {
            lat.record(Duration::from_micros(us));
        }
        let s = lat.summary();
        assert_eq!((s.count, s.p50_us, s.p99_us, s.p999_us, s.max_us), (1000, 500, 990, 999, 1000));
    }

    #[test]
    fn a_metrics_line_parses() {
        let line = "2026-01-01T00:00:00.000000Z  INFO portcullis::metrics: frame metrics fps=30.0 \
                    frame_p50_us=12 frame_p99_us=40 frame_max_us=55 connections=3 sessions=2";
        let now = Instant::now();
        let s = FrameSample::parse(line, now);
        assert_eq!(
            s,
            Some(FrameSample {
                at: now,
                fps: 30.0,
                frame_p50_us: 12,
                frame_p99_us: 40,
                frame_max_us: 55,
                connections: 3,
                sessions: 2
            })
        );
        assert_eq!(FrameSample::parse("INFO portcullis_session: logged in", now), None);
    }

    #[test]
    fn windows_inside_a_phase_are_chosen() {
        let t0 = Instant::now();
        let every = Duration::from_secs(1);
        let at = |secs: u64, p99: u64| FrameSample {
            at: t0 + Duration::from_secs(secs),
            fps: 30.0,
            frame_p50_us: 10,
            frame_p99_us: p99,
            frame_max_us: p99,
            connections: 0,
            sessions: 0,
        };
        let samples = [at(1, 900), at(2, 20), at(3, 30), at(4, 40), at(5, 800)];
        let s = FrameSummary::of_phase(&samples, t0 + Duration::from_secs(1), t0 + Duration::from_secs(4), every);
        let s = s.map(|s| (s.windows, s.p99_worst_us, s.p99_median_us));
        assert_eq!(s, Some((3, 40, 30)));
    }
}
