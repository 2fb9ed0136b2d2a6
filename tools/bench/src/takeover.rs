//! `takeover`: duplicate-login takeovers in a loop (docs/protocol.md §6;
//! across nodes: docs/cluster.md). Each round a new client logs in to the
//! account the previous round's client holds; the old client is kicked,
//! saves (the reference client saves on `kicked` at once) and is closed, then
//! the new login is answered.
//!
//! ```text
//!  SQLite: one server; both clients on it (a takeover inside one node)
//!  --db postgres://…: two servers on that database; the clients alternate between them (cross-node)
//!  round: connect to node (i % nodes); t0; login → token; t1; then time one userdata_save on it (s)
//!  takeover latency without the save ≈ (t1 − t0) − s, reported from the medians
//! ```

use std::io::Write;
use std::time::{Duration, Instant};

use serde_json::json;

use super::child::{ChildServer, ServeOptions};
use super::load;
use super::report::{Report, Table, Target, micros, thousands};
use super::stats::{Latencies, round1};
use super::{BenchArgs, BenchError};
use portcullis_client::Client;

/// The account every round takes over (a demo account of a new database).
const ACCOUNT: &str = "netease1";

/// What the rounds measured.
struct Rounds {
    takeovers: Latencies,
    saves: Latencies,
    errors: u64,
    rounds: u64,
}

/// Runs rounds against `addrs` until `end`.
async fn rounds(addrs: Vec<std::net::SocketAddr>, warmup_end: Instant, end: Instant) -> Result<Rounds, BenchError> {
    let mut out = Rounds { takeovers: Latencies::default(), saves: Latencies::default(), errors: 0, rounds: 0 };
    let mut holder: Option<Client> = None;
    let mut i = 0usize;
    while Instant::now() < end {
        let addr = addrs[i % addrs.len()];
        i += 1;
        let client = Client::connect_with(addr, load::client_config()).await.map_err(BenchError::client("connect"))?;
        client.set_save_data(json!({"round": i}));
        let t0 = Instant::now();
        let login = client.login(ACCOUNT, "123").await;
        let took = t0.elapsed();
        if login.is_err() {
            out.errors += 1;
            continue;
        }
        let s0 = Instant::now();
        let saved = client.userdata_save(json!({"round": i, "after": "login"})).await;
        let save_took = s0.elapsed();
        if saved.is_err() {
            out.errors += 1;
        }
        // The previous holder was kicked, saved and closed before this login was answered.
        if let Some(old) = holder.replace(client) {
            old.close();
            if Instant::now() >= warmup_end && i > 1 {
                out.takeovers.record(took);
                out.saves.record(save_took);
                out.rounds += 1;
            }
        }
    }
    Ok(out)
}

/// `bench takeover`.
pub fn run(args: &BenchArgs, rt: &tokio::runtime::Runtime, progress: &mut dyn Write) -> Result<Report, BenchError> {
    let mut notes = Vec::new();
    let dir = tempfile::tempdir().map_err(BenchError::io("cannot create a temporary directory"))?;
    let base = ServeOptions { fast_hashing: true, ..super::serve_options(args, dir.path().join("bench.db")) };
    let cluster = args.db.is_some();
    let mut children = Vec::new();
    if cluster {
        for name in ["bench-a", "bench-b"] {
            let mut options = base.clone();
            options.extra.retain(|a| a != "--node-name" && a != "bench-node");
            options.extra.extend(["--node-name".to_owned(), name.to_owned()]);
            children.push(ChildServer::serve(&options)?);
        }
        notes.push("two nodes on one PostgreSQL database; each round logs in on the other node (cross-node)".into());
    } else {
        children.push(ChildServer::serve(&base)?);
        notes.push("one SQLite node; each round's login replaces a session of the same node".into());
    }
    let addrs: Vec<_> = children.iter().map(ChildServer::addr).collect();
    let _ = writeln!(progress, "bench: takeovers on {} node(s)", addrs.len());
    let start = Instant::now();
    let warmup_end = start + args.warmup;
    let end = warmup_end + args.duration;
    let limit = args.warmup + args.duration + Duration::from_secs(60);
    let run = rt.block_on(load::bounded("the takeover rounds", limit, rounds(addrs, warmup_end, end)))?;
    for child in children {
        child.stop()?;
    }
    let takeovers = run.takeovers.summary();
    let saves = run.saves.summary();
    let without_save = takeovers.p50_us.saturating_sub(saves.p50_us);
    notes.push(format!(
        "login latency includes the kicked client's save; 'without the save' = login p50 − save p50 ({} − {}); {}",
        micros(takeovers.p50_us),
        micros(saves.p50_us),
        super::FAST_HASH_NOTE
    ));
    notes.push(super::RATE_LIMIT_NOTE.to_owned());
    notes.push(super::SHARED_CORES_NOTE.to_owned());
    let title = format!(
        "sequential takeovers of one account, {} measured after {} warmup",
        humantime::format_duration(args.duration),
        humantime::format_duration(args.warmup)
    );
    let mut table = Table::new(title, &["takeover", if cluster { "PostgreSQL, 2 nodes" } else { "SQLite, 1 node" }]);
    table.row(vec!["takeovers".into(), thousands(run.rounds as f64)]);
    table.row(vec!["login → token p50 (with the old client's save)".into(), micros(takeovers.p50_us)]);
    table.row(vec!["login → token p99".into(), micros(takeovers.p99_us)]);
    table.row(vec!["one save p50".into(), micros(saves.p50_us)]);
    table.row(vec!["takeover p50 without the save".into(), micros(without_save)]);
    table.row(vec!["errors".into(), thousands(run.errors as f64)]);
    let results = json!({
        "nodes": if cluster { 2 } else { 1 },
        "backend": if cluster { "postgres" } else { "sqlite" },
        "takeovers": run.rounds,
        "takeovers_per_sec": round1(run.rounds as f64 / args.duration.as_secs_f64().max(1e-9)),
        "login_latency": takeovers.to_json(),
        "save_latency": saves.to_json(),
        "takeover_without_save_p50_us": without_save,
        "errors": run.errors,
    });
    let targets = vec![Target::new("takeover: no errors", thousands(run.errors as f64), Some(run.errors == 0))];
    Ok(super::workload_report(args, results, table, targets, notes))
}
