//! portcullis_runtime: how a Portcullis app runs, starts and stops. The
//! lowest plugin layer: it names no other Portcullis crate.
//!
//! ```text
//!  network / store threads ──FrameWaker::wake()──▶ RunnerPlugin's runner: one frame of Main per wake
//!                                                  or per tick (Time<Fixed> at tick_hz)
//!  SIGINT/SIGTERM ──Signals──▶ First: 1st → RequestShutdown, 2nd → AppExit at once
//!  RequestShutdown ──▶ Shutdown: Running → Draining ── plugins hold / release ──▶ Last: AppExit::Success
//!  FrameStart … FrameEnd ──▶ FrameMetrics: frame-time percentiles + registered gauges, logged
//! ```
//!
//! - [`waker.rs`](FrameWaker): the handle input threads wake the runner with.
//! - [`runner.rs`](RunnerPlugin): the event-driven runner (`--tick-hz`,
//!   `--max-frame-hz`, docs/cli.md), like Bevy's `ScheduleRunnerPlugin`.
//! - [`signals.rs`](SignalPlugin): SIGINT/SIGTERM to a graceful shutdown.
//! - [`shutdown.rs`](ShutdownPlugin): [`RequestShutdown`], the [`Shutdown`]
//!   phase and its holds (docs/protocol.md §6 "Shutdown").
//! - [`metrics.rs`](FrameMetricsPlugin): frame metrics (`--metrics-every`).
#![forbid(unsafe_code)]

mod metrics;
mod runner;
mod shutdown;
mod signals;
mod waker;

pub use metrics::*;
pub use runner::*;
pub use shutdown::*;
pub use signals::*;
pub use waker::*;
