//! `portcullis-bench`: a lean load generator ([`lean`]: raw pipelined lines
//! per connection, answers matched by id) and the benchmark workloads of
//! BENCHMARKS.md; the reference client sets up accounts and checks saves.
//! Loopback only, bounded in time and count.
//!
//! ```text
//!  portcullis-bench <workload>
//!     │ spawns (--server-bin, default:                    │ loads over 127.0.0.1 (lean lines)
//!     │   `portcullis` next to this executable)           │
//!     ├──> portcullis serve --listen 127.0.0.1:0 ... <────┤   /proc/PID: CPU time, RSS
//!     │       stderr: "frame metrics fps=.. frame_p99_us=.." (portcullis::metrics)
//!     └──> portcullis-bench echo-server  <────────────────┘   the echo-limit: the best case
//! ```
//!
//! Workloads ([`Workload`]): `echo-limit`, `ping`, `save`, `login`, `hold`,
//! `takeover`, `forward`. `--db postgres://…` runs them on the cluster store.
//! Each returns a [`Report`], printed as tables or, with `--json`, as one
//! JSON object. `--connect ADDR` loads a server that is already running
//! instead of starting one (server-side figures are then left out).
//!
//! # Examples
//!
//! ```text
//! cargo build --release -p portcullis    # the server under test
//! cargo run --release -p portcullis_bench -- ping --compare-echo
//! cargo run --release -p portcullis_bench -- ping --connections 1 --in-flight 1
//! cargo run --release -p portcullis_bench -- save --json
//! cargo run --release -p portcullis_bench -- hold --connections 10000 --compare-echo
//! ```

#![forbid(unsafe_code)]

mod args;
mod child;
pub mod echo;
mod error;
mod forward;
mod hold;
pub mod lean;
mod load;
mod login;
mod ping;
mod procfs;
mod report;
mod save;
mod stats;
mod takeover;

pub use args::{BenchArgs, EchoServerArgs, Workload};
pub use child::{ChildServer, ServeOptions, default_server_bin};
pub use error::BenchError;
pub use login::hash_time;
pub use report::{Report, Table, Target};
pub use stats::{FrameSample, FrameSummary, Latencies, LatencySummary};

use std::io::Write;
use std::process::ExitCode;

use serde_json::{Value, json};

/// Said in every report of a server the bench started.
const RATE_LIMIT_NOTE: &str =
    "server started with --rate-limit 1000000 --rate-burst 1000000: the rate limit is raised out of the way";

/// Said in the reports of workloads that register many accounts.
const FAST_HASH_NOTE: &str = "server started with --argon2-memory-kib 8 --argon2-iterations 1 so that \
                              registering the accounts is fast (logins here do not measure hashing)";

/// Said in every report.
const SHARED_CORES_NOTE: &str = "the load generator runs on the same machine and shares its cores with the server";

/// The number of cores this process may use.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// How to start `portcullis serve` for `args`: the `--server-bin`,
/// database `db`, its `--metrics-every` and `--serve-arg`s.
fn serve_options(args: &BenchArgs, db: std::path::PathBuf) -> ServeOptions {
    let server = args.server_bin.clone().unwrap_or_else(default_server_bin);
    let mut extra = args.serve_arg.clone();
    let db = match &args.db {
        Some(url) => {
            // One name for every restart of the bench's node, so a restart
            // after the crash check frees the claims its last process left.
            if !extra.iter().any(|a| a == "--node-name") {
                extra.extend(["--node-name".to_owned(), "bench-node".to_owned()]);
            }
            std::path::PathBuf::from(url)
        }
        None => db,
    };
    ServeOptions { extra, server, ..ServeOptions::new(db, args.metrics_every) }
}

/// The report of one run of `args`'s workload: its figures as JSON and as
/// one table, the targets checked, and how the run was done.
fn workload_report(args: &BenchArgs, results: Value, table: Table, targets: Vec<Target>, notes: Vec<String>) -> Report {
    Report {
        workload: args.workload.name().to_owned(),
        config: config_json(args),
        results,
        tables: vec![table],
        targets,
        notes,
    }
}

/// The settings of a run, for the JSON report.
fn config_json(args: &BenchArgs) -> Value {
    json!({
        "workload": args.workload.name(),
        "connections": args.connections(),
        "in_flight": args.in_flight(),
        "duration_secs": args.duration.as_secs_f64(),
        "warmup_secs": args.warmup.as_secs_f64(),
        "connect": args.connect.map(|a| a.to_string()),
        "compare_echo": args.compare_echo,
        "metrics_every_secs": args.metrics_every.as_secs_f64(),
        "client_threads": args.client_threads(),
        "cores": cores(),
        "serve_args": args.serve_arg,
        "db": args.db.as_ref().map(|_| "postgres").unwrap_or("sqlite"),
    })
}

/// Runs the bench of `args`, writing progress lines to `progress`.
///
/// # Errors
/// [`BenchError`] when a server cannot be started, a phase fails or does not
/// finish in time, or `--connect` is not a loopback address.
pub fn run(args: &BenchArgs, progress: &mut dyn Write) -> Result<Report, BenchError> {
    if let Some(addr) = args.connect
        && !addr.ip().is_loopback()
    {
        return Err(BenchError::NotLoopback(addr));
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.client_threads())
        .thread_name("bench-client")
        .enable_all()
        .build()
        .map_err(BenchError::io("cannot start the tokio runtime"))?;
    let load_before = procfs::load_average();
    let report = match args.workload {
        Workload::EchoLimit | Workload::Ping => ping::run(args, &rt, progress),
        Workload::Save => save::run(args, &rt, progress),
        Workload::Login => login::run(args, &rt, progress),
        Workload::Hold => hold::run(args, &rt, progress),
        Workload::Takeover => takeover::run(args, &rt, progress),
        Workload::Forward => forward::run(args, &rt, progress),
    };
    // Client tasks still closing their sockets must not hold the exit up.
    rt.shutdown_timeout(std::time::Duration::from_secs(5));
    let mut report = report?;
    if !args.serve_arg.is_empty() && args.connect.is_none() {
        report.notes.push(format!("server started with the extra arguments {}", args.serve_arg.join(" ")));
    }
    if let Some(load) = load_before {
        report.config["load_average_1m_before"] = json!(load);
        report.notes.push(format!(
            "machine load average before the run: {load:.2} (other processes running on the {} cores skew the figures)",
            cores()
        ));
    }
    Ok(report)
}

/// `portcullis-bench`: runs, then writes the report to `out` (tables, or
/// JSON with `--json`) and progress and errors to `err`. Exit status 0 when
/// the bench ran to its end and lost no acknowledged save.
pub fn run_cli(args: &BenchArgs, out: &mut dyn Write, err: &mut dyn Write) -> ExitCode {
    match run(args, err) {
        Ok(report) => {
            let written = if args.json { report.write_json(out) } else { report.write_human(out) };
            if let Err(e) = written.and_then(|()| out.flush()) {
                let _ = writeln!(err, "error: cannot write the report: {e}");
                return ExitCode::FAILURE;
            }
            let lost = report.results.get("lost_acknowledged_saves").and_then(Value::as_u64).unwrap_or(0);
            if lost > 0 {
                let _ = writeln!(err, "error: {lost} acknowledged saves were lost");
                return ExitCode::FAILURE;
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            let _ = writeln!(err, "error: {e}");
            ExitCode::FAILURE
        }
    }
}
