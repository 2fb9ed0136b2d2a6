//! The flags of `portcullis-bench` and of the hidden `portcullis-bench echo-server`.

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, ValueEnum};

/// What `portcullis-bench` measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, ValueEnum)]
pub enum Workload {
    /// The ping load against a minimal tokio NDJSON JSON-RPC server: the best
    /// this machine does with this protocol.
    EchoLimit,
    /// N connections × P `ping` requests in flight: requests/s, latency, server CPU per request.
    Ping,
    /// N logged-in connections saving in a loop, each awaiting its ack; then
    /// every account is loaded to count lost acknowledged saves.
    Save,
    /// Connect + password login + disconnect in a loop: logins/s against
    /// cores ÷ one argon2 hash, and frame time while it runs.
    Login,
    /// N logged-in idle connections: server RSS per connection and frame time at rest.
    Hold,
    /// Duplicate-login takeovers in a loop: a new login replaces the session
    /// of the previous one (across two nodes with a PostgreSQL `--db`, on one
    /// node with SQLite): takeover latency without the kicked client's save.
    Takeover,
    /// The ping load through a backend service (an echo service in this
    /// process, docs/services.md) against the built-in `ping`, on one server.
    Forward,
}

impl Workload {
    /// The name on the command line (`echo-limit`, `ping`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Self::EchoLimit => "echo-limit",
            Self::Ping => "ping",
            Self::Save => "save",
            Self::Login => "login",
            Self::Hold => "hold",
            Self::Takeover => "takeover",
            Self::Forward => "forward",
        }
    }

    /// Connections when `--connections` is not given.
    pub fn default_connections(self) -> usize {
        match self {
            Self::EchoLimit | Self::Ping | Self::Save | Self::Forward => 64,
            Self::Login => 4,
            Self::Hold => 1000,
            Self::Takeover => 1,
        }
    }

    /// Requests in flight per connection when `--in-flight` is not given.
    pub fn default_in_flight(self) -> usize {
        match self {
            Self::EchoLimit | Self::Ping | Self::Forward => 16,
            Self::Save | Self::Login | Self::Hold | Self::Takeover => 1,
        }
    }
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| e.to_string())?;
    if d > Duration::from_secs(600) {
        return Err("at most 10m: a bench is bounded in time".to_owned());
    }
    Ok(d)
}

fn parse_positive_duration(s: &str) -> Result<Duration, String> {
    match parse_duration(s)? {
        d if d.is_zero() => Err("must be more than zero".to_owned()),
        d => Ok(d),
    }
}

/// Flags of `portcullis-bench <WORKLOAD>`.
///
/// By default the bench starts `portcullis serve` itself (this executable,
/// loopback, a fresh database in a temporary directory, the rate limit raised
/// out of the way) so that it can read the server's CPU time, RSS and frame
/// metrics; `--connect` targets a running server instead.
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// The workload.
    #[arg(value_enum)]
    pub workload: Workload,
    /// How long the measured phase lasts (per server measured).
    #[arg(long, default_value = "3s", value_parser = parse_positive_duration)]
    pub duration: Duration,
    /// Load before the measured phase starts (ping, echo-limit, save, login).
    #[arg(long, default_value = "500ms", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Connections (default: ping/echo-limit/save 64, login 4 loops, hold 1000).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub connections: Option<u64>,
    /// Requests in flight per connection (default: ping/echo-limit 16, save 1).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub in_flight: Option<u64>,
    /// Measure an already running server at this loopback address instead of
    /// starting one (server CPU, RSS and frame metrics are then not reported).
    #[arg(long)]
    pub connect: Option<SocketAddr>,
    /// ping, hold: measure the echo-limit server in the same run and report the ratios.
    #[arg(long)]
    pub compare_echo: bool,
    /// ping: also run the load over WebSocket on the same server, reported
    /// against TCP; hold: hold the connections over WebSocket.
    #[arg(long)]
    pub ws: bool,
    /// save: skip the second run against a server with one transaction per save.
    #[arg(long)]
    pub no_group_commit_baseline: bool,
    /// Frame-metrics window of the started server (`serve --metrics-every`).
    #[arg(long, default_value = "1s", value_parser = parse_positive_duration)]
    pub metrics_every: Duration,
    /// hold: how long to wait after the last login before measuring at rest.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub settle: Duration,
    /// save: bytes of padding in each saved object.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(0..=60_000))]
    pub payload_bytes: u64,
    /// Worker threads of the load generator's tokio runtime (default: the number of cores).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=64))]
    pub client_threads: Option<u64>,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
    /// One more argument for every `portcullis serve` the bench starts
    /// (repeat it; e.g. `--serve-arg=--max-frame-hz --serve-arg=5000`), for experiments.
    #[arg(long, allow_hyphen_values = true)]
    pub serve_arg: Vec<String>,
    /// The database of the servers the bench starts, instead of a fresh
    /// SQLite file: a PostgreSQL URL (`postgres://…`) of an empty database,
    /// for the cluster store (docs/cluster.md). Give a fresh one to each run.
    #[arg(long)]
    pub db: Option<String>,
    /// The `portcullis` binary to start as the server under test (default:
    /// `portcullis` next to this executable, as `cargo build` places them).
    #[arg(long)]
    pub server_bin: Option<std::path::PathBuf>,
}

impl BenchArgs {
    /// `--connections`, or the workload's default.
    pub fn connections(&self) -> usize {
        self.connections.map_or(self.workload.default_connections(), to_usize)
    }

    /// `--in-flight`, or the workload's default.
    pub fn in_flight(&self) -> usize {
        self.in_flight.map_or(self.workload.default_in_flight(), to_usize)
    }

    /// `--client-threads`, or the number of cores.
    pub fn client_threads(&self) -> usize {
        self.client_threads.map_or_else(super::cores, to_usize)
    }
}

fn to_usize(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// Flags of the hidden `portcullis-bench echo-server`.
#[derive(Debug, Clone, Args)]
pub struct EchoServerArgs {
    /// TCP listener; port 0 picks a free port. Loopback only.
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// tokio worker threads (default: the number of cores, as `serve` uses).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=64))]
    pub threads: Option<u64>,
    /// Exit when standard input reaches end of file (how `bench` makes sure
    /// its child never outlives it).
    #[arg(long)]
    pub stop_on_stdin_eof: bool,
}
