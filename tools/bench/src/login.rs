//! `login`: L loops of connect + password login + disconnect at the default
//! argon2 cost, against cores ÷ (one argon2id hash, timed in this process
//! before the server starts), with the server's frame time while it runs.
//!
//! ```text
//!  time one argon2id hash ─ start serve ─ register L ─ warmup ─┬─ measured phase ─┬
//!  L tasks: loop { connect; t0; login; t1; disconnect }        frame metrics windows inside
//! ```

use std::io::Write;
use std::time::{Duration, Instant};

use argon2::{Algorithm, Argon2, Block, Params, Version};
use serde_json::json;

use super::child::ChildServer;
use super::load::{self, CpuUse};
use super::report::{Report, Table, Target, micros, thousands};
use super::stats::{FrameSummary, Latencies, LatencySummary, round1, round3};
use super::{BenchArgs, BenchError};
use portcullis::store::StoreConfig;
use portcullis_client::{Client, ClientError};

/// One argon2id hash as the bench times it (32-byte output, one lane), in a
/// work area allocated once: the hash alone, as the server's hasher threads
/// run it.
#[derive(Clone)]
struct BenchHash {
    argon2: Argon2<'static>,
    blocks: Vec<Block>,
}

impl BenchHash {
    fn new(memory_kib: u32, iterations: u32) -> Result<Self, BenchError> {
        let params = Params::new(memory_kib, iterations, 1, Some(32))
            .map_err(|e| BenchError::Other(format!("argon2 parameters: {e}")))?;
        let blocks = vec![Block::default(); params.block_count()];
        Ok(Self { argon2: Argon2::new(Algorithm::Argon2id, Version::V0x13, params), blocks })
    }

    fn run(&mut self) -> Result<(), BenchError> {
        let mut out = [0u8; 32];
        self.argon2
            .hash_password_into_with_memory(b"bench-password", b"portcullis-bench", &mut out, &mut self.blocks)
            .map_err(|e| BenchError::Other(format!("argon2: {e}")))
    }
}

/// The time of one argon2id hash at `memory_kib` and `iterations` (as
/// [`BenchHash`] runs it): the shortest of `runs` hashes after one warm-up
/// (other processes can only make a hash slower, so the shortest is its own
/// cost).
///
/// # Errors
/// [`BenchError::Other`] when argon2 refuses the parameters.
pub fn hash_time(memory_kib: u32, iterations: u32, runs: usize) -> Result<Duration, BenchError> {
    let mut hash = BenchHash::new(memory_kib, iterations)?;
    let mut times = Vec::with_capacity(runs);
    for i in 0..=runs {
        let t0 = Instant::now();
        hash.run()?;
        if i > 0 {
            times.push(t0.elapsed());
        }
    }
    Ok(times.into_iter().min().unwrap_or_default())
}

/// Hashes per second that `threads` threads hashing at once reach in this
/// process over about `duration` (argon2id as in [`hash_time`]): the ceiling
/// as the machine delivers it right now, other processes included.
///
/// # Errors
/// [`BenchError::Other`] when argon2 refuses the parameters.
pub fn parallel_hash_rate(
    memory_kib: u32,
    iterations: u32,
    threads: usize,
    duration: Duration,
) -> Result<f64, BenchError> {
    let hash = BenchHash::new(memory_kib, iterations)?;
    let start = Instant::now();
    let end = start + duration;
    let counts: Vec<Result<u64, BenchError>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads.max(1))
            .map(|_| {
                let mut hash = hash.clone();
                scope.spawn(move || {
                    let mut done = 0;
                    while Instant::now() < end {
                        hash.run()?;
                        done += 1;
                    }
                    Ok(done)
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().unwrap_or_else(|_| Err(BenchError::Other("a hash thread panicked".into()))))
            .collect()
    });
    let mut total = 0;
    for count in counts {
        total += count?;
    }
    Ok(total as f64 / start.elapsed().as_secs_f64().max(1e-9))
}

/// What the login loops measured.
#[derive(Debug, Clone)]
struct LoginRun {
    logins: u64,
    errors: u64,
    cpu: CpuUse,
    latency: LatencySummary,
    cycle: LatencySummary,
    frames: Option<FrameSummary>,
}

impl LoginRun {
    fn logins_per_sec(&self) -> f64 {
        self.logins as f64 / self.cpu.wall.as_secs_f64().max(1e-9)
    }
}

/// What one login loop counted.
#[derive(Default)]
struct LoopOutcome {
    logins: u64,
    errors: u64,
    latencies: Latencies,
    cycles: Latencies,
}

/// connect + login + disconnect until `end`.
async fn login_loop(addr: std::net::SocketAddr, account: String, start: Instant, end: Instant) -> LoopOutcome {
    let mut out = LoopOutcome::default();
    loop {
        let tc = Instant::now();
        if tc >= end {
            return out;
        }
        let client = match Client::connect_with(addr, load::client_config()).await {
            Ok(client) => client,
            Err(_) => {
                out.errors += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let t0 = Instant::now();
        let result = client.login_with_password(&account, load::PASSWORD).await;
        let t1 = Instant::now();
        let disconnected = client.disconnect().await;
        let t2 = Instant::now();
        match result {
            Ok(_) if t1 >= start && t1 <= end => {
                out.logins += 1;
                out.latencies.record(t1 - t0);
                out.cycles.record(t2 - tc);
            }
            Ok(_) => {}
            Err(_) => out.errors += 1,
        }
        if let Err(error) = disconnected
            && !matches!(error, ClientError::Closed { .. })
        {
            out.errors += 1;
        }
    }
}

/// `bench login`.
pub fn run(args: &BenchArgs, rt: &tokio::runtime::Runtime, progress: &mut dyn Write) -> Result<Report, BenchError> {
    let defaults = StoreConfig::default();
    let (memory_kib, iterations) = (defaults.argon2_memory_kib, defaults.argon2_iterations);
    let _ = writeln!(progress, "bench: timing one argon2id hash (m={memory_kib} KiB, t={iterations}, p=1)");
    let hash = hash_time(memory_kib, iterations, 7)?;
    let cores = super::cores();
    let ceiling = cores as f64 / hash.as_secs_f64().max(1e-9);
    let _ = writeln!(progress, "bench: hashing on {cores} threads at once for 2 s");
    let parallel = parallel_hash_rate(memory_kib, iterations, cores, Duration::from_secs(2))?;
    let loops = args.connections();
    let names = load::account_names(loops);
    let mut notes = Vec::new();

    let run_on = |addr, server: Option<&ChildServer>| -> Result<LoginRun, BenchError> {
        rt.block_on(load::bounded("registering", Duration::from_secs(300), load::register_accounts(addr, &names)))?;
        let start = Instant::now() + args.warmup;
        let end = start + args.duration;
        let tasks: Vec<_> = names.iter().map(|name| rt.spawn(login_loop(addr, name.clone(), start, end))).collect();
        let sampler = load::sample_cpu(server, start, end);
        let joined = async {
            let mut total = LoopOutcome::default();
            for task in tasks {
                let part = task.await.map_err(|e| BenchError::Other(format!("a login task failed: {e}")))?;
                total.logins += part.logins;
                total.errors += part.errors;
                total.latencies.merge(part.latencies);
                total.cycles.merge(part.cycles);
            }
            Ok(total)
        };
        // A login loop ends within one cycle (≤ the 10 s RPC timeouts) of the end.
        let limit = args.warmup + args.duration + Duration::from_secs(60);
        let (cpu, total) =
            rt.block_on(async { tokio::join!(sampler, load::bounded("the login loops", limit, joined)) });
        let total = total?;
        let frames = server.and_then(|s| {
            s.wait_frame_sample_after(end, args.metrics_every + Duration::from_millis(500));
            s.frame_summary(start, end, args.metrics_every)
        });
        Ok(LoginRun {
            logins: total.logins,
            errors: total.errors,
            cpu,
            latency: total.latencies.summary(),
            cycle: total.cycles.summary(),
            frames,
        })
    };
    let _ = writeln!(progress, "bench: {loops} login loops");
    let run = match args.connect {
        Some(addr) => {
            notes.push(format!(
                "against the running server at {addr}: its argon2 cost applies (the ceiling assumes the default); \
                 no server CPU or frame figures"
            ));
            run_on(addr, None)?
        }
        None => {
            let dir = tempfile::tempdir().map_err(BenchError::io("cannot create a temporary directory"))?;
            let child = ChildServer::serve(&super::serve_options(args, dir.path().join("bench.db")))?;
            notes.push(format!(
                "server at the default argon2id cost (m={memory_kib} KiB, t={iterations}, p=1); {}",
                super::RATE_LIMIT_NOTE
            ));
            let run = run_on(child.addr(), Some(&child))?;
            child.stop()?;
            run
        }
    };
    notes.push(format!(
        "ceiling = cores ÷ one hash = {cores} ÷ {:.1} ms (timed in the bench process before the server started); \
         the hashes/s on {cores} threads were measured in the bench process too, right before the server started, \
         and include whatever else runs on the machine",
        hash.as_secs_f64() * 1000.0
    ));
    notes.push(super::SHARED_CORES_NOTE.to_owned());

    let title = format!(
        "{loops} loops of connect + login + disconnect, {} measured after {} warmup",
        humantime::format_duration(args.duration),
        humantime::format_duration(args.warmup)
    );
    let mut table = Table::new(title, &["login storm", "portcullis"]);
    let share = run.logins_per_sec() / ceiling;
    table.row(vec!["logins/s".into(), format!("{:.1}", run.logins_per_sec())]);
    table.row(vec!["ceiling: cores ÷ one argon2 hash".into(), format!("{ceiling:.1}")]);
    table.row(vec!["share of the ceiling".into(), format!("{:.1} %", share * 100.0)]);
    table.row(vec![format!("hashes/s on {cores} threads (in-process)"), format!("{parallel:.1}")]);
    table.row(vec!["share of that rate".into(), format!("{:.1} %", run.logins_per_sec() / parallel.max(1e-9) * 100.0)]);
    table.row(vec!["one argon2id hash (in-process)".into(), micros(u64::try_from(hash.as_micros()).unwrap_or(0))]);
    table.row(vec!["login latency p50".into(), micros(run.latency.p50_us)]);
    table.row(vec!["login latency p99".into(), micros(run.latency.p99_us)]);
    table.row(vec!["connect+login+disconnect p50".into(), micros(run.cycle.p50_us)]);
    table.row(vec!["server CPU (cores)".into(), run.cpu.server_cores().map_or("-".into(), |c| format!("{c:.2}"))]);
    table.row(vec!["load generator CPU (cores)".into(), format!("{:.2}", run.cpu.client_cores())]);
    table.row(vec!["errors".into(), thousands(run.errors as f64)]);
    if let Some(f) = &run.frames {
        table.row(vec!["frames/s while logging in".into(), format!("{:.0}", f.fps_mean)]);
        table.row(vec!["frame p50".into(), micros(f.p50_us)]);
        table.row(vec![
            "frame p99 (median / worst window)".into(),
            format!("{} / {}", micros(f.p99_median_us), micros(f.p99_worst_us)),
        ]);
        table.row(vec!["frame max".into(), micros(f.max_us)]);
    }
    let mut targets = vec![Target::new(
        "login: logins/s ≥ 90 % of cores ÷ one argon2 hash",
        format!("{:.1} %", share * 100.0),
        Some(share >= 0.9),
    )];
    targets.push(match &run.frames {
        Some(f) => Target::new(
            "login storm: frame p99 ≤ 2 ms",
            format!("{} (worst window)", micros(f.p99_worst_us)),
            Some(f.p99_worst_us <= 2000),
        ),
        None => Target::new("login storm: frame p99 ≤ 2 ms", "no frame metrics", None),
    });
    let results = json!({
        "logins": run.logins,
        "logins_per_sec": round1(run.logins_per_sec()),
        "errors": run.errors,
        "argon2_hash_us": u64::try_from(hash.as_micros()).unwrap_or(0),
        "argon2_memory_kib": memory_kib,
        "argon2_iterations": iterations,
        "cores": cores,
        "ceiling_logins_per_sec": round1(ceiling),
        "share_of_ceiling": round3(share),
        "parallel_hashes_per_sec": round1(parallel),
        "share_of_parallel_hash_rate": round3(run.logins_per_sec() / parallel.max(1e-9)),
        "latency": run.latency.to_json(),
        "cycle_latency": run.cycle.to_json(),
        "server_cpu_cores": run.cpu.server_cores().map(round3),
        "client_cpu_cores": round3(run.cpu.client_cores()),
        "frames": run.frames.as_ref().map(FrameSummary::to_json),
    });
    Ok(super::workload_report(args, results, table, targets, notes))
}
