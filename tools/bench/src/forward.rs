//! `forward`: the ping load through a backend service (docs/services.md)
//! against the built-in `ping`, on one server in one run: an echo service
//! (`bench_echo`, written with `portcullis_client::Service`, in this
//! process) answers every forwarded call at once, so the difference is the
//! cost of the hop (client → server → service → server → client).
//!
//! ```text
//!  portcullis serve --service-key K ◀── echo service (this process, 1 connection)
//!      ▲  N × P: ping, then bench_echo (forwarded), then both again at 1 × 1
//!      └── load generator
//! ```

use std::io::Write;
use std::time::Duration;

use serde_json::{Value, json};

use super::child::ChildServer;
use super::ping::{PingRun, Plan, method_load};
use super::report::{Report, Table, Target, micros, ratio, thousands};
use super::{BenchArgs, BenchError};
use portcullis_client::protocol::RpcError;
use portcullis_client::{Call, Service};

const KEY: &str = "bench-service-key";
const METHOD: &str = "bench_echo";

/// `bench forward`.
pub fn run(args: &BenchArgs, rt: &tokio::runtime::Runtime, progress: &mut dyn Write) -> Result<Report, BenchError> {
    let plan = Plan::from_args(args);
    let single = Plan { connections: 1, in_flight: 1, ..plan };
    let dir = tempfile::tempdir().map_err(BenchError::io("cannot create a temporary directory"))?;
    let mut options = super::serve_options(args, dir.path().join("bench.db"));
    options.login_timeout = Some(Duration::from_secs(3600));
    options.extra.extend(["--service-key".to_owned(), KEY.to_owned()]);
    let child = ChildServer::serve(&options)?;
    let addr = child.addr();
    let service = rt.block_on(async {
        Service::builder("bench-echo")
            .method(METHOD, false, |call: Call<Value>| async move { Ok::<Value, RpcError>(call.params) })
            .connect(addr, KEY)
            .await
            .map_err(BenchError::client("registering the echo service"))
    })?;
    let service_task = rt.spawn(service.run());
    let mut runs = Vec::new();
    for (shape, method) in [(plan, "ping"), (plan, METHOD), (single, "ping"), (single, METHOD)] {
        let _ = writeln!(progress, "bench: {method}, {} × {} in flight", shape.connections, shape.in_flight);
        runs.push(rt.block_on(method_load(addr, Some(&child), shape, args.metrics_every, method))?);
    }
    service_task.abort();
    child.stop()?;
    let mut notes = vec![
        super::RATE_LIMIT_NOTE.to_owned(),
        "the echo service runs in the load generator's process, on its runtime".to_owned(),
        "forwarded calls on one connection are answered in order, so at most one of them per connection is at \
         the service at a time (docs/protocol.md §8): P in flight per connection queue up in the server"
            .to_owned(),
        super::SHARED_CORES_NOTE.to_owned(),
    ];
    for run in &runs {
        if let Some(error) = &run.first_error {
            notes.push(format!("first error: {error}"));
        }
    }
    Ok(report(args, plan, &runs, notes))
}

fn report(args: &BenchArgs, plan: Plan, runs: &[PingRun], notes: Vec<String>) -> Report {
    let title = format!(
        "{} × {} in flight and 1 × 1, {} measured after {} warmup each",
        plan.connections,
        plan.in_flight,
        humantime::format_duration(plan.duration),
        humantime::format_duration(plan.warmup)
    );
    let header = ["load", "ping (built-in)", "bench_echo (forwarded)", "ratio"];
    let mut table = Table::new(title, &header);
    let (ping, fwd, ping1, fwd1) = (&runs[0], &runs[1], &runs[2], &runs[3]);
    let shape = format!("{}×{}", plan.connections, plan.in_flight);
    let mut row = |name: String, a: f64, b: f64, show: &dyn Fn(f64) -> String| {
        table.row(vec![name, show(a), show(b), ratio(b, a)]);
    };
    let us = |v: f64| micros(v as u64);
    row(format!("{shape} requests/s"), ping.requests_per_sec(), fwd.requests_per_sec(), &thousands);
    row(format!("{shape} latency p50"), ping.latency.p50_us as f64, fwd.latency.p50_us as f64, &us);
    row(format!("{shape} latency p99"), ping.latency.p99_us as f64, fwd.latency.p99_us as f64, &us);
    row("1×1 requests/s".into(), ping1.requests_per_sec(), fwd1.requests_per_sec(), &thousands);
    row("1×1 latency p50".into(), ping1.latency.p50_us as f64, fwd1.latency.p50_us as f64, &us);
    row("1×1 latency p99".into(), ping1.latency.p99_us as f64, fwd1.latency.p99_us as f64, &us);
    if let (Some(a), Some(b)) = (ping.cpu.server_us_per(ping.requests), fwd.cpu.server_us_per(fwd.requests)) {
        row(format!("{shape} server CPU per request"), a, b, &|v| format!("{v:.2} µs"));
    }
    row("errors".into(), (ping.errors + ping1.errors) as f64, (fwd.errors + fwd1.errors) as f64, &thousands);
    let hop_us = fwd1.latency.p50_us.saturating_sub(ping1.latency.p50_us);
    let targets = vec![Target::new("latency one hop adds (1×1 p50, forwarded − ping)", micros(hop_us), None)];
    let results = json!({
        "ping": ping.to_json(plan.connections),
        "forwarded": fwd.to_json(plan.connections),
        "ping_1x1": ping1.to_json(1),
        "forwarded_1x1": fwd1.to_json(1),
        "hop_latency_p50_us": hop_us,
    });
    super::workload_report(args, results, table, targets, notes)
}
