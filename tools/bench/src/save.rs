//! `save`: N logged-in connections, each saving in a loop and awaiting each
//! acknowledgement; then every account is loaded and compared with its last
//! acknowledged save. Run against a server with group commit (the default)
//! and against one with a transaction per save (`serve --no-group-commit`).
//!
//! ```text
//!  register N ─ log in N ─ warmup ─┬─ measured phase ─┬─ close ─ kill -9 ─ restart on the same db ─ load N
//!  N tasks: loop { save {"seq":k,"pad":..}; await ack (version v) }      lost = Σ (acked v − loaded v)
//! ```
//!
//! When the bench started the server, it checks the saves after a crash
//! (SIGKILL) and a restart: an acknowledged save must survive a crash of the
//! server process (docs/protocol.md §4).

use std::io::Write;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::child::{ChildServer, ServeOptions};
use super::lean::{self, Answer, Lane, LineConn};
use super::load::{self, CpuUse};
use super::report::{Report, Table, Target, micros, ratio, thousands};
use super::stats::{FrameSummary, Latencies, LatencySummary, round1, round3};
use super::{BenchArgs, BenchError};
use portcullis_client::ClientError;
use portcullis_client::ErrorCode;

/// The last acknowledged save of one account.
#[derive(Debug, Clone, Copy, Default)]
struct Acked {
    /// The `seq` member of the saved object.
    seq: u64,
    /// The version the server acknowledged.
    version: u64,
}

/// What one save load measured.
#[derive(Debug, Clone)]
pub struct SaveRun {
    /// Saves acknowledged inside the measured phase.
    pub saves: u64,
    /// Saves acknowledged over the whole run (warmup included).
    pub acked_total: u64,
    /// Saves that failed.
    pub errors: u64,
    /// CPU over the measured phase.
    pub cpu: CpuUse,
    /// Latency of the saves acknowledged inside the measured phase.
    pub latency: LatencySummary,
    /// Acknowledged saves that a later load did not return.
    pub lost: u64,
    /// Accounts whose newest version holds other data than the last acknowledged save.
    pub mismatched: u64,
    /// Whether the check ran after a SIGKILL and restart of the server.
    pub checked_after_crash: bool,
    /// Server frame metrics over the measured phase.
    pub frames: Option<FrameSummary>,
}

impl SaveRun {
    /// Acknowledged saves per second over the measured phase.
    pub fn saves_per_sec(&self) -> f64 {
        self.saves as f64 / self.cpu.wall.as_secs_f64().max(1e-9)
    }

    fn to_json(&self) -> Value {
        json!({
            "saves": self.saves,
            "saves_per_sec": round1(self.saves_per_sec()),
            "acked_total": self.acked_total,
            "errors": self.errors,
            "latency": self.latency.to_json(),
            "measured_secs": self.cpu.wall.as_secs_f64(),
            "server_cpu_cores": self.cpu.server_cores().map(round3),
            "server_cpu_us_per_save": self.cpu.server_us_per(self.saves).map(round3),
            "client_cpu_cores": round3(self.cpu.client_cores()),
            "lost_acknowledged_saves": self.lost,
            "mismatched_accounts": self.mismatched,
            "checked_after_crash": self.checked_after_crash,
            "frames": self.frames.as_ref().map(FrameSummary::to_json),
        })
    }
}

/// The shape of a save load.
#[derive(Debug, Clone, Copy)]
struct Plan {
    connections: usize,
    in_flight: usize,
    warmup: Duration,
    duration: Duration,
    payload_bytes: usize,
    metrics_every: Duration,
}

/// What the load itself returns, before the check.
struct Loaded {
    saves: u64,
    errors: u64,
    cpu: CpuUse,
    latencies: Latencies,
    acked: Vec<Acked>,
    frames: Option<FrameSummary>,
}

/// Logs in to every account of `names` and saves in a loop until the phase
/// ends, with the lean generator ([`crate::lean`]).
async fn save_load(
    addr: SocketAddr,
    server: Option<&ChildServer>,
    plan: Plan,
    names: &[String],
) -> Result<Loaded, BenchError> {
    let setup_limit = Duration::from_secs(120);
    let conns = load::bounded(
        "logging in",
        setup_limit,
        load::for_each(names.len(), load::SETUP_CONCURRENCY, |i| {
            let name = names[i].clone();
            async move {
                let mut conn = LineConn::connect(addr).await?;
                let token = lean::login(&mut conn, &name, load::PASSWORD).await?;
                Ok((conn, token))
            }
        }),
    )
    .await?;
    let start = Instant::now() + plan.warmup;
    let end = start + plan.duration;
    let pad = "x".repeat(plan.payload_bytes);
    let depth = plan.in_flight;
    let tasks: Vec<_> = conns
        .into_iter()
        .enumerate()
        .map(|(i, (mut conn, token))| {
            let mut lane = SaveLane::new(&token, i, &pad);
            tokio::spawn(async move {
                let outcome = conn.drive(&mut lane, depth, start, end).await;
                conn.close().await;
                (outcome, lane.acked)
            })
        })
        .collect();
    let sampler = load::sample_cpu(server, start, end);
    let joined = async {
        let mut parts = Vec::with_capacity(tasks.len());
        for task in tasks {
            parts.push(task.await.map_err(|e| BenchError::Other(format!("a save task failed: {e}")))?);
        }
        Ok(parts)
    };
    let limit = plan.warmup + plan.duration + Duration::from_secs(30);
    let (cpu, parts) = tokio::join!(sampler, load::bounded("the save load", limit, joined));
    let parts = parts?;
    let frames = server.and_then(|s| {
        s.wait_frame_sample_after(end, plan.metrics_every + Duration::from_millis(500));
        s.frame_summary(start, end, plan.metrics_every)
    });
    let mut loaded = Loaded { saves: 0, errors: 0, cpu, latencies: Latencies::default(), acked: Vec::new(), frames };
    for (part, acked) in parts {
        loaded.saves += part.requests;
        loaded.errors += part.errors + part.unmatched + part.rate_limited;
        loaded.latencies.merge(part.latencies);
        loaded.acked.push(acked);
    }
    Ok(loaded)
}

/// One connection's saves: `{"seq":ID,"conn":i,"pad":"x…"}` under request
/// id `ID`, and the newest version acknowledged.
struct SaveLane {
    /// The request up to its id.
    head: Vec<u8>,
    /// From the id to `"seq":`.
    middle: Vec<u8>,
    /// After the seq.
    tail: Vec<u8>,
    acked: Acked,
}

impl SaveLane {
    fn new(token: &str, conn: usize, pad: &str) -> Self {
        Self {
            head: b"{\"jsonrpc\":\"2.0\",\"id\":".to_vec(),
            middle: format!(",\"method\":\"userdata_save\",\"params\":{{\"token\":\"{token}\",\"data\":{{\"seq\":")
                .into_bytes(),
            tail: format!(",\"conn\":{conn},\"pad\":\"{pad}\"}}}}}}\n").into_bytes(),
            acked: Acked::default(),
        }
    }
}

impl Lane for SaveLane {
    fn request(&mut self, id: u64, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.head);
        lean::push_u64(out, id);
        out.extend_from_slice(&self.middle);
        lean::push_u64(out, id);
        out.extend_from_slice(&self.tail);
    }

    fn answer(&mut self, id: u64, line: &[u8]) -> Answer {
        let answer = lean::classify(line);
        if answer == Answer::Ok
            && let Some(version) = lean::int_after(line, b"\"version\":")
            && version > self.acked.version
        {
            self.acked = Acked { seq: id, version };
        }
        answer
    }
}

/// Loads every account and compares with its last acknowledged save:
/// (lost acknowledged saves, accounts with other data).
async fn check(addr: SocketAddr, names: &[String], acked: &[Acked]) -> Result<(u64, u64), BenchError> {
    let clients = load::bounded("logging in to check", Duration::from_secs(120), load::login_many(addr, names)).await?;
    let mut lost = 0;
    let mut mismatched = 0;
    for (client, acked) in clients.iter().zip(acked) {
        match client.userdata_load().await {
            Ok(loaded) => {
                lost += acked.version.saturating_sub(loaded.version);
                let seq =
                    loaded.data_value().ok().and_then(|data| data.get("seq").and_then(Value::as_u64)).unwrap_or(0);
                if loaded.version == acked.version && seq != acked.seq {
                    mismatched += 1;
                }
            }
            Err(ClientError::Rpc { code: ErrorCode::NoUserdata, .. }) => lost += acked.version,
            Err(error) => return Err(BenchError::client("userdata_load")(error)),
        }
        client.close();
    }
    Ok((lost, mismatched))
}

/// One complete save run: a server (started or given), accounts, load, check.
fn save_run(
    args: &BenchArgs,
    rt: &tokio::runtime::Runtime,
    plan: Plan,
    group_commit: bool,
    progress: &mut dyn Write,
) -> Result<SaveRun, BenchError> {
    let names = load::account_names(plan.connections);
    let (loaded, lost, mismatched, crashed) = match args.connect {
        Some(addr) => {
            rt.block_on(load::bounded("registering", Duration::from_secs(300), load::register_accounts(addr, &names)))?;
            let loaded = rt.block_on(save_load(addr, None, plan, &names))?;
            let (lost, mismatched) = rt.block_on(check(addr, &names, &loaded.acked))?;
            (loaded, lost, mismatched, false)
        }
        None => {
            let dir = tempfile::tempdir().map_err(BenchError::io("cannot create a temporary directory"))?;
            let options = ServeOptions {
                fast_hashing: true,
                group_commit,
                ..super::serve_options(args, dir.path().join("bench.db"))
            };
            let child = ChildServer::serve(&options)?;
            let addr = child.addr();
            let _ = writeln!(progress, "bench: registering {} accounts", names.len());
            rt.block_on(load::bounded("registering", Duration::from_secs(300), load::register_accounts(addr, &names)))?;
            let _ = writeln!(
                progress,
                "bench: saving ({})",
                if group_commit { "group commit" } else { "one transaction per save" }
            );
            let loaded = rt.block_on(save_load(addr, Some(&child), plan, &names))?;
            let _ =
                writeln!(progress, "bench: kill -9 the server, restart it on the same database, load every account");
            child.crash()?;
            let child = ChildServer::serve(&options)?;
            let (lost, mismatched) = rt.block_on(check(child.addr(), &names, &loaded.acked))?;
            child.stop()?;
            (loaded, lost, mismatched, true)
        }
    };
    Ok(SaveRun {
        saves: loaded.saves,
        acked_total: loaded.acked.iter().map(|a| a.version).sum(),
        errors: loaded.errors,
        cpu: loaded.cpu,
        latency: loaded.latencies.summary(),
        lost,
        mismatched,
        checked_after_crash: crashed,
        frames: loaded.frames,
    })
}

/// `bench save`.
pub fn run(args: &BenchArgs, rt: &tokio::runtime::Runtime, progress: &mut dyn Write) -> Result<Report, BenchError> {
    let plan = Plan {
        connections: args.connections(),
        in_flight: args.in_flight(),
        warmup: args.warmup,
        duration: args.duration,
        payload_bytes: usize::try_from(args.payload_bytes).unwrap_or(64),
        metrics_every: args.metrics_every,
    };
    let grouped = save_run(args, rt, plan, true, progress)?;
    let single = if args.connect.is_none() && !args.no_group_commit_baseline {
        Some(save_run(args, rt, plan, false, progress)?)
    } else {
        None
    };
    let mut notes = Vec::new();
    match args.connect {
        Some(addr) => notes.push(format!(
            "against the running server at {addr}: no server CPU or frame figures, no crash check; \
             its rate limit and argon2 cost apply"
        )),
        None => {
            notes.push(super::RATE_LIMIT_NOTE.to_owned());
            notes.push(super::FAST_HASH_NOTE.to_owned());
            notes.push(
                "lost saves are counted after SIGKILL of the server and a restart on the same database".to_owned(),
            );
        }
    }
    notes.push(super::SHARED_CORES_NOTE.to_owned());

    let title = format!(
        "{} connections × {} in flight, {}-byte padding, {} measured after {} warmup",
        plan.connections,
        plan.in_flight,
        plan.payload_bytes,
        humantime::format_duration(plan.duration),
        humantime::format_duration(plan.warmup)
    );
    let mut header = vec!["save load", "group commit"];
    if single.is_some() {
        header.extend(["one transaction per save", "ratio"]);
    }
    let mut table = Table::new(title, &header);
    let runs: Vec<&SaveRun> = std::iter::once(&grouped).chain(single.as_ref()).collect();
    // `compare`: whether the ratio column means something for this row (not for counts).
    let mut row = |name: &str, compare: bool, value: &dyn Fn(&SaveRun) -> Option<f64>, show: &dyn Fn(f64) -> String| {
        let values: Vec<Option<f64>> = runs.iter().map(|r| value(r)).collect();
        let mut cells = vec![name.to_owned()];
        cells.extend(values.iter().map(|v| v.map_or("-".to_owned(), show)));
        if values.len() == 2 {
            cells.push(match (values[0], values[1]) {
                (Some(a), Some(b)) if compare => ratio(a, b),
                _ => String::new(),
            });
        }
        table.row(cells);
    };
    let us = |v: f64| micros(v as u64);
    row("acknowledged saves/s", true, &|r| Some(r.saves_per_sec()), &thousands);
    row("latency p50", true, &|r| Some(r.latency.p50_us as f64), &us);
    row("latency p99", true, &|r| Some(r.latency.p99_us as f64), &us);
    row("latency p99.9", true, &|r| Some(r.latency.p999_us as f64), &us);
    row("server CPU (cores)", true, &|r| r.cpu.server_cores(), &|v| format!("{v:.2}"));
    row("server CPU per save", true, &|r| r.cpu.server_us_per(r.saves), &|v| format!("{v:.1} µs"));
    row("load generator CPU (cores)", true, &|r| Some(r.cpu.client_cores()), &|v| format!("{v:.2}"));
    row("frame p99 (worst window)", true, &|r| r.frames.as_ref().map(|f| f.p99_worst_us as f64), &us);
    row("errors", false, &|r| Some(r.errors as f64), &thousands);
    row("acknowledged saves checked", false, &|r| Some(r.acked_total as f64), &thousands);
    row("lost acknowledged saves", false, &|r| Some(r.lost as f64), &thousands);
    row("accounts with other data", false, &|r| Some(r.mismatched as f64), &thousands);

    let mut targets = vec![Target::new(
        "save: 0 acknowledged saves lost",
        runs.iter().map(|r| r.lost.to_string()).collect::<Vec<_>>().join(" / "),
        Some(runs.iter().all(|r| r.lost == 0 && r.mismatched == 0)),
    )];
    if plan.connections == 64 && plan.in_flight == 1 {
        targets.push(Target::new(
            "save 64×1: ≥ 45,000 acknowledged saves/s",
            thousands(grouped.saves_per_sec()),
            Some(grouped.saves_per_sec() >= 45_000.0),
        ));
    }
    let results = json!({
        "group_commit": grouped.to_json(),
        "one_transaction_per_save": single.as_ref().map(SaveRun::to_json),
        "ratio_saves_per_sec": single.as_ref().map(|s| round3(grouped.saves_per_sec() / s.saves_per_sec().max(1e-9))),
        "lost_acknowledged_saves": runs.iter().map(|r| r.lost).sum::<u64>(),
    });
    Ok(super::workload_report(args, results, table, targets, notes))
}
