//! `ping` and `echo-limit`: N connections × P `ping` requests in flight for
//! a fixed time, against `portcullis serve` and against the echo-limit
//! server, with the same load generator.
//!
//! ```text
//!  connect N ─ one ping each (RSS per connection) ─ warmup ─┬─ measured phase ─┬─ close
//!                                                   CPU snapshot       CPU snapshot
//!  N×P tasks: loop { t0; call("ping"); t1 } — a request counts when it ends inside the phase
//! ```

use std::io::Write;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::child::{ChildServer, ServeOptions};
use super::lean::{self, Lane, LaneOutcome, LineConn, MethodLane};
use super::load::{self, CpuUse};
use super::report::{Report, Table, Target, bytes, micros, ratio, thousands};
use super::stats::{FrameSummary, LatencySummary, round1};
use super::{BenchArgs, BenchError, Workload};

/// The shape of a ping load.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// Connections.
    pub connections: usize,
    /// Requests in flight per connection.
    pub in_flight: usize,
    /// Load before the measured phase.
    pub warmup: Duration,
    /// The measured phase.
    pub duration: Duration,
}

impl Plan {
    /// The shape `--connections`, `--in-flight`, `--warmup` and `--duration` ask for.
    pub fn from_args(args: &BenchArgs) -> Self {
        Self {
            connections: args.connections(),
            in_flight: args.in_flight(),
            warmup: args.warmup,
            duration: args.duration,
        }
    }
}

/// What one ping load measured against one server.
#[derive(Debug, Clone)]
pub struct PingRun {
    /// Requests answered inside the measured phase.
    pub requests: u64,
    /// Requests that failed (any error but `RATE_LIMITED`).
    pub errors: u64,
    /// Requests refused with `RATE_LIMITED`.
    pub rate_limited: u64,
    /// CPU over the measured phase.
    pub cpu: CpuUse,
    /// Latency of the requests answered inside the measured phase.
    pub latency: LatencySummary,
    /// Server RSS before the connections were opened.
    pub rss_before: Option<u64>,
    /// Server RSS with the connections open, after one request each.
    pub rss_connected: Option<u64>,
    /// Server frame metrics over the measured phase.
    pub frames: Option<FrameSummary>,
    /// The first error a request got, if any.
    pub first_error: Option<String>,
}

impl PingRun {
    /// Requests per second over the measured phase.
    pub fn requests_per_sec(&self) -> f64 {
        self.requests as f64 / self.cpu.wall.as_secs_f64().max(1e-9)
    }

    /// Server RSS per open connection, bytes.
    pub fn rss_per_connection(&self, connections: usize) -> Option<f64> {
        match (self.rss_before, self.rss_connected) {
            (Some(a), Some(b)) => Some((b as f64 - a as f64) / connections.max(1) as f64),
            _ => None,
        }
    }

    /// As a JSON object.
    pub fn to_json(&self, connections: usize) -> Value {
        json!({
            "requests": self.requests,
            "requests_per_sec": round1(self.requests_per_sec()),
            "errors": self.errors,
            "rate_limited": self.rate_limited,
            "latency": self.latency.to_json(),
            "measured_secs": self.cpu.wall.as_secs_f64(),
            "server_cpu_cores": self.cpu.server_cores().map(round1_3),
            "server_cpu_us_per_request": self.cpu.server_us_per(self.requests).map(round1_3),
            "client_cpu_cores": round1_3(self.cpu.client_cores()),
            "server_rss_before_bytes": self.rss_before,
            "server_rss_connected_bytes": self.rss_connected,
            "server_rss_per_connection_bytes": self.rss_per_connection(connections).map(f64::round),
            "frames": self.frames.as_ref().map(FrameSummary::to_json),
            "first_error": self.first_error,
        })
    }
}

fn round1_3(x: f64) -> f64 {
    super::stats::round3(x)
}

/// Runs the ping load of `plan` against `addr` with the lean generator
/// ([`crate::lean`]); `server` is the child process behind it when the bench
/// started it.
pub async fn ping_load(
    addr: SocketAddr,
    server: Option<&ChildServer>,
    plan: Plan,
    metrics_every: Duration,
) -> Result<PingRun, BenchError> {
    method_load(addr, server, plan, metrics_every, "ping").await
}

/// [`ping_load`] calling `method` (with `{}`) instead of `ping`.
pub async fn method_load(
    addr: SocketAddr,
    server: Option<&ChildServer>,
    plan: Plan,
    metrics_every: Duration,
    method: &'static str,
) -> Result<PingRun, BenchError> {
    load_over(addr, server, plan, metrics_every, method, false).await
}

/// [`method_load`] over TCP lines, or over WebSocket (`ws`: `addr` is the
/// WebSocket listener).
pub async fn load_over(
    addr: SocketAddr,
    server: Option<&ChildServer>,
    plan: Plan,
    metrics_every: Duration,
    method: &'static str,
    ws: bool,
) -> Result<PingRun, BenchError> {
    let setup_limit = Duration::from_secs(120);
    let rss_before = server.and_then(|s| s.rss_bytes().ok());
    let conns = load::bounded(
        "connecting and the first ping of every connection",
        setup_limit,
        load::for_each(plan.connections, load::SETUP_CONCURRENCY, |_| async move {
            let mut conn = if ws { LineConn::connect_ws(addr).await? } else { LineConn::connect(addr).await? };
            let id = conn.take_id();
            let mut line = Vec::new();
            MethodLane::new(method).request(id, &mut line);
            let answer = conn.call(id, &line).await?;
            match lean::classify(&answer) {
                lean::Answer::Ok => Ok(conn),
                _ => Err(BenchError::Other(format!("first ping: {}", String::from_utf8_lossy(&answer)))),
            }
        }),
    )
    .await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let rss_connected = server.and_then(|s| s.rss_bytes().ok());

    let start = Instant::now() + plan.warmup;
    let end = start + plan.duration;
    let depth = plan.in_flight;
    let tasks: Vec<_> = conns
        .into_iter()
        .map(|mut conn| {
            tokio::spawn(async move {
                let outcome = conn.drive(&mut MethodLane::new(method), depth, start, end).await;
                conn.close().await;
                outcome
            })
        })
        .collect();
    let sampler = load::sample_cpu(server, start, end);
    let joined = async {
        let mut outcome = LaneOutcome::default();
        for task in tasks {
            let part = task.await.map_err(|e| BenchError::Other(format!("a load task failed: {e}")))?;
            outcome.merge(part);
        }
        Ok(outcome)
    };
    let limit = plan.warmup + plan.duration + Duration::from_secs(30);
    let (cpu, outcome) = tokio::join!(sampler, load::bounded("the ping load", limit, joined));
    let outcome = outcome?;
    let frames = server.and_then(|s| {
        s.wait_frame_sample_after(end, metrics_every + Duration::from_millis(500));
        s.frame_summary(start, end, metrics_every)
    });
    Ok(PingRun {
        requests: outcome.requests,
        errors: outcome.errors + outcome.unmatched,
        rate_limited: outcome.rate_limited,
        cpu,
        latency: outcome.latencies.summary(),
        rss_before,
        rss_connected,
        frames,
        first_error: outcome.first_error,
    })
}

/// `bench ping` and `bench echo-limit`.
pub fn run(args: &BenchArgs, rt: &tokio::runtime::Runtime, progress: &mut dyn Write) -> Result<Report, BenchError> {
    let plan = Plan::from_args(args);
    let want_echo = args.workload == Workload::EchoLimit || args.compare_echo;
    let want_server = args.workload == Workload::Ping;
    let mut notes = Vec::new();
    let mut ws_run: Option<PingRun> = None;

    let echo = if want_echo {
        let _ = writeln!(progress, "bench: echo-limit server, {} × {} in flight", plan.connections, plan.in_flight);
        let child = ChildServer::echo()?;
        let run = rt.block_on(ping_load(child.addr(), Some(&child), plan, args.metrics_every))?;
        child.stop()?;
        Some(run)
    } else {
        None
    };
    let server = if want_server {
        let _ = writeln!(progress, "bench: portcullis serve, {} × {} in flight", plan.connections, plan.in_flight);
        Some(match args.connect {
            Some(addr) => {
                notes.push(format!(
                    "against the running server at {addr}: no server CPU, RSS or frame figures; the ping \
                     connections do not log in, so its --login-timeout (default 10 s) must exceed warmup + duration"
                ));
                rt.block_on(ping_load(addr, None, plan, args.metrics_every))?
            }
            None => {
                let dir = tempfile::tempdir().map_err(BenchError::io("cannot create a temporary directory"))?;
                // The ping connections never log in: the login timeout must not close them.
                let mut options = ServeOptions {
                    login_timeout: Some(Duration::from_secs(3600)),
                    ..super::serve_options(args, dir.path().join("bench.db"))
                };
                if args.ws {
                    options.extra.extend(["--ws-listen".to_owned(), "127.0.0.1:0".to_owned()]);
                }
                let child = ChildServer::serve(&options)?;
                notes.push(super::RATE_LIMIT_NOTE.to_owned());
                notes.push("server started with --login-timeout 1h: the ping connections do not log in".to_owned());
                let run = rt.block_on(ping_load(child.addr(), Some(&child), plan, args.metrics_every))?;
                if let Some(ws_addr) = child.ws_addr() {
                    let _ = writeln!(progress, "bench: the same load over WebSocket, same server");
                    ws_run =
                        Some(rt.block_on(load_over(ws_addr, Some(&child), plan, args.metrics_every, "ping", true))?);
                }
                child.stop()?;
                run
            }
        })
    } else {
        None
    };
    for (name, run) in [("portcullis", &server), ("echo-limit", &echo)] {
        if let Some(error) = run.as_ref().and_then(|r| r.first_error.as_ref()) {
            notes.push(format!("first error against {name}: {error}"));
        }
    }
    notes.push(super::SHARED_CORES_NOTE.to_owned());
    let mut report = report(args, plan, server.as_ref(), echo.as_ref(), notes);
    if let (Some(tcp), Some(ws)) = (&server, &ws_run) {
        ws_against_tcp(&mut report, plan, tcp, ws);
    }
    Ok(report)
}

/// `ping --ws`: the WebSocket run against the TCP run of the same server
/// (issue 15: WebSocket throughput ≥ 70 % of TCP's).
fn ws_against_tcp(report: &mut Report, plan: Plan, tcp: &PingRun, ws: &PingRun) {
    let title =
        format!("the same load over WebSocket against TCP, one server ({} × {})", plan.connections, plan.in_flight);
    let mut table = Table::new(title, &["ping load", "WebSocket", "TCP", "ratio"]);
    let mut row = |name: &str, a: Option<f64>, b: Option<f64>, show: &dyn Fn(f64) -> String| {
        let cell = |v: Option<f64>| v.map_or("-".to_owned(), show);
        let r = match (a, b) {
            (Some(a), Some(b)) => ratio(a, b),
            _ => "-".to_owned(),
        };
        table.row(vec![name.to_owned(), cell(a), cell(b), r]);
    };
    let us = |v: f64| micros(v as u64);
    row("requests/s", Some(ws.requests_per_sec()), Some(tcp.requests_per_sec()), &thousands);
    row("latency p50", Some(ws.latency.p50_us as f64), Some(tcp.latency.p50_us as f64), &us);
    row("latency p99", Some(ws.latency.p99_us as f64), Some(tcp.latency.p99_us as f64), &us);
    row("server CPU per request", ws.cpu.server_us_per(ws.requests), tcp.cpu.server_us_per(tcp.requests), &|v| {
        format!("{v:.2} µs")
    });
    row("load generator CPU (cores)", Some(ws.cpu.client_cores()), Some(tcp.cpu.client_cores()), &|v| {
        format!("{v:.2}")
    });
    row("server CPU (cores)", ws.cpu.server_cores(), tcp.cpu.server_cores(), &|v| format!("{v:.2}"));
    row("errors", Some(ws.errors as f64), Some(tcp.errors as f64), &thousands);
    report.tables.push(table);
    let share = ws.requests_per_sec() / tcp.requests_per_sec().max(1e-9);
    report.targets.push(Target::new(
        "ping over WebSocket ≥ 0.7 of TCP's requests/s (same server, same run)",
        format!("{share:.2}"),
        Some(share >= 0.7),
    ));
    if let Some(results) = report.results.as_object_mut() {
        results.insert("websocket".to_owned(), ws.to_json(plan.connections));
    }
}

fn report(
    args: &BenchArgs,
    plan: Plan,
    server: Option<&PingRun>,
    echo: Option<&PingRun>,
    notes: Vec<String>,
) -> Report {
    let mut header = vec!["ping load"];
    if server.is_some() {
        header.push("portcullis");
    }
    if echo.is_some() {
        header.push("echo-limit");
    }
    let both = server.is_some() && echo.is_some();
    if both {
        header.push("ratio");
    }
    let title = format!(
        "{} connections × {} in flight, {} measured after {} warmup",
        plan.connections,
        plan.in_flight,
        humantime::format_duration(plan.duration),
        humantime::format_duration(plan.warmup)
    );
    let mut table = Table::new(title, &header);
    let runs: Vec<&PingRun> = server.into_iter().chain(echo).collect();
    let mut row = |name: &str, value: &dyn Fn(&PingRun) -> Option<f64>, show: &dyn Fn(f64) -> String| {
        let mut cells = vec![name.to_owned()];
        let values: Vec<Option<f64>> = runs.iter().map(|r| value(r)).collect();
        cells.extend(values.iter().map(|v| v.map_or("-".to_owned(), show)));
        if both {
            cells.push(match (values[0], values[1]) {
                (Some(a), Some(b)) => ratio(a, b),
                _ => "-".to_owned(),
            });
        }
        table.row(cells);
    };
    let us = |v: f64| micros(v as u64);
    row("requests/s", &|r| Some(r.requests_per_sec()), &thousands);
    row("latency p50", &|r| Some(r.latency.p50_us as f64), &us);
    row("latency p99", &|r| Some(r.latency.p99_us as f64), &us);
    row("latency p99.9", &|r| Some(r.latency.p999_us as f64), &us);
    row("latency max", &|r| Some(r.latency.max_us as f64), &us);
    row("server CPU (cores)", &|r| r.cpu.server_cores(), &|v| format!("{v:.2}"));
    row("server CPU per request", &|r| r.cpu.server_us_per(r.requests), &|v| format!("{v:.2} µs"));
    row("load generator CPU (cores)", &|r| Some(r.cpu.client_cores()), &|v| format!("{v:.2}"));
    row("server RSS per connection", &|r| r.rss_per_connection(plan.connections), &bytes);
    row("errors", &|r| Some(r.errors as f64), &thousands);
    row("rate limited", &|r| Some(r.rate_limited as f64), &thousands);
    if let Some(frames) = server.and_then(|s| s.frames.as_ref()) {
        let mut cells = vec!["server frames/s, frame p50 / p99 (worst window)".to_owned()];
        cells.push(format!("{:.0}, {} / {}", frames.fps_mean, micros(frames.p50_us), micros(frames.p99_worst_us)));
        while cells.len() < table.header.len() {
            cells.push(String::new());
        }
        table.row(cells);
    }

    let targets = ping_targets(plan, server, echo);
    let results = json!({
        "portcullis": server.map(|r| r.to_json(plan.connections)),
        "echo_limit": echo.map(|r| r.to_json(plan.connections)),
        "ratio_requests_per_sec": match (server, echo) {
            (Some(s), Some(e)) => Some(super::stats::round3(s.requests_per_sec() / e.requests_per_sec().max(1e-9))),
            _ => None,
        },
        "ratio_server_cpu_per_request": match (server, echo) {
            (Some(s), Some(e)) => match (s.cpu.server_us_per(s.requests), e.cpu.server_us_per(e.requests)) {
                (Some(a), Some(b)) => Some(super::stats::round3(a / b.max(1e-9))),
                _ => None,
            },
            _ => None,
        },
    });
    super::workload_report(args, results, table, targets, notes)
}

/// The targets of issue 16, each against the echo-limit of the same run:
/// 64×16 ≥ 0.6 of its requests/s with server CPU per request ≤ 2× its own,
/// 64×1 ≥ 0.5 of its requests/s, 1×1 latency p50 ≤ 2× its p50.
fn ping_targets(plan: Plan, server: Option<&PingRun>, echo: Option<&PingRun>) -> Vec<Target> {
    let mut targets = Vec::new();
    let (Some(s), Some(e)) = (server, echo) else { return targets };
    let share = s.requests_per_sec() / e.requests_per_sec().max(1e-9);
    let shape = (plan.connections, plan.in_flight);
    if shape == (64, 16) {
        targets.push(Target::new(
            "ping 64×16: requests/s ≥ 0.6 of echo-limit's",
            format!("{share:.2}"),
            Some(share >= 0.6),
        ));
        if let (Some(a), Some(b)) = (s.cpu.server_us_per(s.requests), e.cpu.server_us_per(e.requests)) {
            targets.push(Target::new(
                "ping 64×16: server CPU per request ≤ 2× echo-limit's",
                format!("{:.2}× ({a:.2} µs against {b:.2} µs)", a / b.max(1e-9)),
                Some(a <= 2.0 * b),
            ));
        }
    }
    if shape == (64, 1) {
        targets.push(Target::new(
            "ping 64×1: requests/s ≥ 0.5 of echo-limit's",
            format!("{share:.2}"),
            Some(share >= 0.5),
        ));
    }
    if shape == (1, 1) {
        let (a, b) = (s.latency.p50_us, e.latency.p50_us);
        targets.push(Target::new(
            "ping 1×1: latency p50 ≤ 2× echo-limit's",
            format!("{} against {} ({:.2}×)", micros(a), micros(b), a as f64 / (b as f64).max(1.0)),
            Some(a <= 2 * b.max(1)),
        ));
    }
    targets
}
