//! `hold`: N logged-in idle connections (up to 10,000). Reports the
//! server's RSS per held connection and its frame time at rest; with
//! `--compare-echo`, the echo-limit server's RSS per connection too.
//!
//! ```text
//!  raise RLIMIT_NOFILE ─ start serve ─ register N ─ RSS before ─ log in N ─ settle ─┬─ at rest ─┬─ RSS after
//!                                                                       frame metrics windows inside
//!  RSS per connection = (RSS after − RSS before) ÷ N
//! ```

use std::io::Write;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::child::{ChildServer, ServeOptions};
use super::load;
use super::procfs::{self, Pid};
use super::report::{Report, Table, Target, bytes, micros, thousands};
use super::stats::{FrameSummary, round1};
use super::{BenchArgs, BenchError};

/// File descriptors kept free besides the connections.
const SPARE_FDS: u64 = 1024;

/// Raises this process's soft RLIMIT_NOFILE (inherited by the servers it
/// starts) so that `connections` sockets fit; returns the limit obtained.
///
/// # Errors
/// [`BenchError::FileLimit`] when the hard limit is too low.
pub fn raise_file_limit(connections: usize) -> Result<u64, BenchError> {
    let needed = connections as u64 + SPARE_FDS;
    let got = rlimit::increase_nofile_limit(needed).map_err(BenchError::io("cannot raise RLIMIT_NOFILE"))?;
    if got < connections as u64 + 64 {
        return Err(BenchError::FileLimit { got, needed, connections });
    }
    Ok(got)
}

/// What holding N connections measured on one server.
#[derive(Debug, Clone)]
struct HoldRun {
    held: usize,
    setup: Duration,
    rss_before: Option<u64>,
    rss_after: Option<u64>,
    client_rss_per_connection: f64,
    frames: Option<FrameSummary>,
}

impl HoldRun {
    fn rss_per_connection(&self) -> Option<f64> {
        match (self.rss_before, self.rss_after) {
            (Some(a), Some(b)) => Some((b as f64 - a as f64) / self.held.max(1) as f64),
            _ => None,
        }
    }

    fn to_json(&self) -> Value {
        json!({
            "held": self.held,
            "setup_secs": round1(self.setup.as_secs_f64()),
            "server_rss_before_bytes": self.rss_before,
            "server_rss_after_bytes": self.rss_after,
            "server_rss_per_connection_bytes": self.rss_per_connection().map(f64::round),
            "client_rss_per_connection_bytes": self.client_rss_per_connection.round(),
            "frames_at_rest": self.frames.as_ref().map(FrameSummary::to_json),
        })
    }
}

/// Holds `names.len()` logged-in connections (or, for the echo server,
/// `count` connections that sent one request) for the rest period.
fn hold_on(
    args: &BenchArgs,
    rt: &tokio::runtime::Runtime,
    addr: std::net::SocketAddr,
    server: Option<&ChildServer>,
    count: usize,
    names: Option<&[String]>,
) -> Result<HoldRun, BenchError> {
    std::thread::sleep(Duration::from_millis(500));
    let rss_before = server.and_then(|s| s.rss_bytes().ok());
    let client_rss_before = procfs::rss_bytes(Pid::This).unwrap_or(0);
    let t0 = Instant::now();
    let limit = Duration::from_secs(300);
    let clients = rt.block_on(load::bounded("connecting and logging in", limit, async {
        match names {
            Some(names) => match server.and_then(ChildServer::ws_addr).filter(|_| args.ws) {
                Some(ws) => load::login_many_at(&format!("ws://{ws}/"), names).await,
                None => load::login_many(addr, names).await,
            },
            None => {
                let clients = load::connect_many(addr, count).await?;
                load::for_each(clients.len(), load::SETUP_CONCURRENCY, |i| {
                    let client = clients[i].clone();
                    async move { client.call("ping", json!({})).await.map(drop).map_err(BenchError::client("ping")) }
                })
                .await?;
                Ok(clients)
            }
        }
    }))?;
    let setup = t0.elapsed();
    std::thread::sleep(args.settle);
    let rest_start = Instant::now();
    std::thread::sleep(args.duration);
    let rest_end = Instant::now();
    let rss_after = server.and_then(|s| s.rss_bytes().ok());
    let client_rss_after = procfs::rss_bytes(Pid::This).unwrap_or(0);
    let frames = server.and_then(|s| {
        s.wait_frame_sample_after(rest_end, args.metrics_every + Duration::from_millis(500));
        s.frame_summary(rest_start, rest_end, args.metrics_every)
    });
    let closed = clients.iter().filter(|c| c.is_closed()).count();
    if closed > 0 {
        return Err(BenchError::Other(format!("{closed} of {count} held connections were closed while at rest")));
    }
    for client in &clients {
        client.close();
    }
    drop(clients);
    Ok(HoldRun {
        held: count,
        setup,
        rss_before,
        rss_after,
        client_rss_per_connection: (client_rss_after as f64 - client_rss_before as f64) / count.max(1) as f64,
        frames,
    })
}

/// `bench hold`.
pub fn run(args: &BenchArgs, rt: &tokio::runtime::Runtime, progress: &mut dyn Write) -> Result<Report, BenchError> {
    let count = args.connections();
    let limit = raise_file_limit(count)?;
    let names = load::account_names(count);
    let mut notes = vec![format!("RLIMIT_NOFILE raised to {limit} (the started servers inherit it)")];

    let server = match args.connect {
        Some(addr) => {
            notes.push(format!("against the running server at {addr}: no server RSS or frame figures"));
            let _ = writeln!(progress, "bench: registering {count} accounts");
            rt.block_on(load::bounded("registering", Duration::from_secs(600), load::register_accounts(addr, &names)))?;
            let _ = writeln!(progress, "bench: holding {count} logged-in connections");
            hold_on(args, rt, addr, None, count, Some(&names))?
        }
        None => {
            let dir = tempfile::tempdir().map_err(BenchError::io("cannot create a temporary directory"))?;
            let mut options = ServeOptions {
                fast_hashing: true,
                idle_timeout: Some(Duration::from_secs(3600)),
                max_connections: Some(count.max(10_000) + 1000),
                ..super::serve_options(args, dir.path().join("bench.db"))
            };
            if args.ws {
                options.extra.extend(["--ws-listen".to_owned(), "127.0.0.1:0".to_owned()]);
                notes.push("--ws: the held connections are WebSocket connections (ws://)".to_owned());
            }
            let child = ChildServer::serve(&options)?;
            notes.push(super::FAST_HASH_NOTE.to_owned());
            notes.push(
                "server started with --idle-timeout 1h (held connections stay idle) and --max-connections above N"
                    .to_owned(),
            );
            let _ = writeln!(progress, "bench: registering {count} accounts");
            let addr = child.addr();
            rt.block_on(load::bounded("registering", Duration::from_secs(600), load::register_accounts(addr, &names)))?;
            let _ = writeln!(progress, "bench: holding {count} logged-in connections");
            let run = hold_on(args, rt, addr, Some(&child), count, Some(&names))?;
            child.stop()?;
            run
        }
    };
    let echo = if args.compare_echo {
        let _ = writeln!(progress, "bench: holding {count} connections on the echo-limit server");
        let child = ChildServer::echo()?;
        let run = hold_on(args, rt, child.addr(), Some(&child), count, None)?;
        child.stop()?;
        Some(run)
    } else {
        None
    };
    notes.push(
        "RSS per connection = (server RSS after the logins and the rest period − RSS before connecting) ÷ N; \
         the echo server's connections each sent one request"
            .to_owned(),
    );
    notes.push(super::SHARED_CORES_NOTE.to_owned());

    let title = format!(
        "{count} idle connections, {} at rest after {} settling",
        humantime::format_duration(args.duration),
        humantime::format_duration(args.settle)
    );
    let mut header = vec!["hold", if args.ws { "portcullis (logged in, ws)" } else { "portcullis (logged in)" }];
    if echo.is_some() {
        header.push("echo-limit");
    }
    let mut table = Table::new(title, &header);
    let cell = |v: Option<String>| v.unwrap_or_else(|| "-".to_owned());
    let runs: Vec<&HoldRun> = std::iter::once(&server).chain(echo.as_ref()).collect();
    let mut row = |name: &str, f: &dyn Fn(&HoldRun) -> Option<String>| {
        let mut cells = vec![name.to_owned()];
        cells.extend(runs.iter().map(|r| cell(f(r))));
        table.row(cells);
    };
    row("connections held", &|r| Some(thousands(r.held as f64)));
    row("setup (connect + login)", &|r| Some(format!("{:.1} s", r.setup.as_secs_f64())));
    row("server RSS before", &|r| r.rss_before.map(|b| bytes(b as f64)));
    row("server RSS held", &|r| r.rss_after.map(|b| bytes(b as f64)));
    row("server RSS per connection", &|r| r.rss_per_connection().map(bytes));
    row("load generator RSS per connection", &|r| Some(bytes(r.client_rss_per_connection)));
    row("frames/s at rest", &|r| r.frames.as_ref().map(|f| format!("{:.1}", f.fps_mean)));
    row("frame p50 at rest", &|r| r.frames.as_ref().map(|f| micros(f.p50_us)));
    row("frame p99 (median / worst window)", &|r| {
        r.frames.as_ref().map(|f| format!("{} / {}", micros(f.p99_median_us), micros(f.p99_worst_us)))
    });
    row("frame max at rest", &|r| r.frames.as_ref().map(|f| micros(f.max_us)));
    row("sessions seen by the server", &|r| r.frames.as_ref().map(|f| thousands(f.sessions as f64)));

    let mut targets = Vec::new();
    if let Some(f) = &server.frames {
        targets.push(Target::new(
            format!("hold {count}: frame p99 ≤ 1 ms at rest"),
            format!("{} (worst window)", micros(f.p99_worst_us)),
            Some(f.p99_worst_us <= 1000),
        ));
    }
    if let Some(per) = server.rss_per_connection() {
        let echo_per = echo.as_ref().and_then(HoldRun::rss_per_connection);
        let measured = match echo_per {
            Some(e) => format!("{} (echo-limit {})", bytes(per), bytes(e)),
            None => bytes(per),
        };
        // Issue 16: 8 KiB per TCP connection; issue 15: 16 KiB per WebSocket connection.
        let (limit, kind) = if args.ws { (16.0, "WebSocket") } else { (8.0, "held") };
        targets.push(Target::new(
            format!("hold {count}: server RSS per {kind} connection ≤ {limit} KiB"),
            measured,
            Some(per <= limit * 1024.0),
        ));
    }
    let results = json!({
        "portcullis": server.to_json(),
        "echo_limit": echo.as_ref().map(HoldRun::to_json),
        "file_limit": limit,
    });
    Ok(super::workload_report(args, results, table, targets, notes))
}
