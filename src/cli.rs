//! The command line (docs/cli.md): clap derive, every `serve` flag also read from
//! `PORTCULLIS_<FLAG>`, durations in humantime syntax.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::builder::BoolishValueParser;
use clap::{ArgAction, Args, Parser, Subcommand};
use portcullis_accounts::AccountsConfig;
use portcullis_net::NetConfig;
use portcullis_rpc::RpcConfig;
use portcullis_runtime::RunnerConfig;
use portcullis_session::SessionConfig;
use portcullis_store::StoreConfig;
use portcullis_userdata::UserDataConfig;

use crate::app::ServerConfig;
use portcullis_services::ServicesConfig;

/// Portcullis: a headless game server (JSON-RPC over TCP, SQLite accounts,
/// one session per account).
#[derive(Debug, Parser)]
#[command(name = "portcullis", version, about, args_conflicts_with_subcommands = true)]
pub struct Cli {
    /// What to do; `serve` when omitted.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Flags of `serve`, accepted without the subcommand too.
    #[command(flatten)]
    pub serve: ServeArgs,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (the default).
    Serve(Box<ServeArgs>),
    /// Run the reference client's 13-step check (docs/cli.md).
    Scenario(ScenarioArgs),
    /// Manage accounts in the database without a running server.
    Account(AccountArgs),
    /// Write a self-signed TLS certificate and key for development (docs/cli.md).
    Cert(CertArgs),
    /// Talk to a running server's admin listener (docs/cli.md, docs/operations.md).
    Admin(AdminArgs),
}

/// Flags of `portcullis admin` (docs/cli.md).
#[derive(Debug, Clone, Args)]
pub struct AdminArgs {
    /// The server's admin listener: HOST:PORT or http://HOST:PORT.
    #[arg(long, value_name = "ADDR")]
    pub admin: String,
    /// The server's --admin-token.
    #[arg(long, env = "PORTCULLIS_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// What to do.
    #[command(subcommand)]
    pub action: AdminAction,
}

/// What `portcullis admin` does.
#[derive(Debug, Clone, Subcommand)]
pub enum AdminAction {
    /// List the connections as a table.
    Who,
    /// Kick an account's session (reason `admin`; it may save first).
    Kick {
        /// The account.
        account: String,
    },
    /// Send a notification to every logged-in session.
    Broadcast {
        /// The notification's method.
        method: String,
        /// Its params: a JSON object.
        json: String,
    },
    /// Shut the server down gracefully, as SIGTERM does.
    Shutdown,
}

/// The formats of `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Flags of `portcullis cert` (docs/cli.md).
#[derive(Debug, Clone, Args)]
pub struct CertArgs {
    /// Directory to write `cert.pem` and `key.pem` into (created if missing).
    #[arg(long)]
    pub out: PathBuf,
    /// A further host name or IP address the certificate is valid for
    /// (besides localhost, 127.0.0.1 and ::1); repeatable.
    #[arg(long = "host")]
    pub hosts: Vec<String>,
}

fn parse_duration(s: &str) -> Result<Duration, humantime::DurationError> {
    humantime::parse_duration(s)
}

fn parse_positive_duration(s: &str) -> Result<Duration, String> {
    match humantime::parse_duration(s) {
        Ok(d) if !d.is_zero() => Ok(d),
        Ok(_) => Err("must be more than zero".to_owned()),
        Err(e) => Err(e.to_string()),
    }
}

/// Flags of `portcullis serve` (docs/cli.md table).
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// TCP listener (NDJSON JSON-RPC). Port 0 picks a free port.
    #[arg(long, env = "PORTCULLIS_LISTEN", default_value = "127.0.0.1:7777")]
    pub listen: SocketAddr,
    /// WebSocket listener (docs/protocol.md §1.1), off unless given. Port 0 picks a free port.
    #[arg(long, env = "PORTCULLIS_WS_LISTEN")]
    pub ws_listen: Option<SocketAddr>,
    /// PEM certificate chain: every listener requires TLS (needs --tls-key).
    #[arg(long, env = "PORTCULLIS_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert (needs --tls-cert).
    #[arg(long, env = "PORTCULLIS_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// SQLite database file, created with its schema if missing; or a
    /// PostgreSQL URL (`postgres://…`, `postgresql://…`) for a cluster (docs/cluster.md).
    #[arg(long, env = "PORTCULLIS_DB", default_value = "portcullis.db")]
    pub db: PathBuf,
    /// This node's name in a cluster (PostgreSQL store only); default: host name and pid.
    #[arg(long, env = "PORTCULLIS_NODE_NAME", value_parser = node_name)]
    pub node_name: Option<String>,
    /// How long the sessions of a node that stopped answering stay claimed (cluster only).
    #[arg(long, env = "PORTCULLIS_NODE_LEASE", default_value = "10s", value_parser = parse_positive_duration)]
    pub node_lease: Duration,
    /// Fixed simulation tick rate (FixedUpdate); also the idle frame rate.
    #[arg(long, env = "PORTCULLIS_TICK_HZ", default_value_t = 30.0, value_parser = positive_f64)]
    pub tick_hz: f64,
    /// Frames run when input arrives, at most this often; 0 = no cap (a frame
    /// starts as soon as input is there and the previous frame is done).
    #[arg(long, env = "PORTCULLIS_MAX_FRAME_HZ", default_value_t = 0.0, value_parser = non_negative_f64)]
    pub max_frame_hz: f64,
    /// A connection must log in within this.
    #[arg(long, env = "PORTCULLIS_LOGIN_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub login_timeout: Duration,
    /// How long a kicked session may take to save.
    #[arg(long, env = "PORTCULLIS_KICK_SAVE_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub kick_save_timeout: Duration,
    /// A connection with no message for this long is closed.
    #[arg(long, env = "PORTCULLIS_IDLE_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub idle_timeout: Duration,
    /// Requests per second per connection (token bucket refill).
    #[arg(long, env = "PORTCULLIS_RATE_LIMIT", default_value_t = 50.0, value_parser = non_negative_f64)]
    pub rate_limit: f64,
    /// Token bucket size.
    #[arg(long, env = "PORTCULLIS_RATE_BURST", default_value_t = 100)]
    pub rate_burst: u32,
    /// More connections are answered `server_full` and closed.
    #[arg(long, env = "PORTCULLIS_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: usize,
    /// Largest accepted frame in bytes (docs/protocol.md §1).
    #[arg(long, env = "PORTCULLIS_MAX_FRAME_BYTES", default_value_t = 131_072, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_frame_bytes: u64,
    /// Largest `data` of `userdata_save` in bytes (docs/protocol.md §4).
    #[arg(long, env = "PORTCULLIS_MAX_USERDATA_BYTES", default_value_t = 65_536)]
    pub max_userdata_bytes: usize,
    /// Protocol errors before a close (docs/protocol.md §1).
    #[arg(long, env = "PORTCULLIS_MAX_PROTOCOL_ERRORS", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_protocol_errors: u32,
    /// Messages queued for one connection before it is closed as too slow.
    #[arg(long, env = "PORTCULLIS_OUTBOUND_QUEUE", default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..))]
    pub outbound_queue: u64,
    /// Bytes of unsent output for one connection before it is closed as too
    /// slow; over half of it, the server stops reading that connection (docs/protocol.md §6).
    #[arg(long, env = "PORTCULLIS_OUTBOUND_QUEUE_BYTES", default_value_t = 1_048_576, value_parser = clap::value_parser!(u64).range(1..))]
    pub outbound_queue_bytes: u64,
    /// Failed password logins per peer address within the window before RATE_LIMITED.
    #[arg(long, env = "PORTCULLIS_LOGIN_FAIL_LIMIT", default_value_t = 5)]
    pub login_fail_limit: u32,
    /// The window of the login throttle.
    #[arg(long, env = "PORTCULLIS_LOGIN_FAIL_WINDOW", default_value = "5m", value_parser = parse_duration)]
    pub login_fail_window: Duration,
    /// argon2id memory cost (KiB) for new password hashes.
    #[arg(long, env = "PORTCULLIS_ARGON2_MEMORY_KIB", default_value_t = 19_456)]
    pub argon2_memory_kib: u32,
    /// argon2id time cost for new password hashes.
    #[arg(long, env = "PORTCULLIS_ARGON2_ITERATIONS", default_value_t = 2)]
    pub argon2_iterations: u32,
    /// Most members of one JSON-RPC batch (docs/protocol.md §2).
    #[arg(long, env = "PORTCULLIS_MAX_BATCH", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_batch: u32,
    /// Shared secret of backend services (docs/protocol.md §8); without it services cannot register.
    #[arg(long, env = "PORTCULLIS_SERVICE_KEY", hide_env_values = true)]
    pub service_key: Option<String>,
    /// A forwarded request not answered by its service within this gets SERVICE_UNAVAILABLE.
    #[arg(long, env = "PORTCULLIS_SERVICE_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub service_timeout: Duration,
    /// A request for a method whose services are all gone waits this long for one to register it again.
    #[arg(long, env = "PORTCULLIS_SERVICE_WAIT", default_value = "5s", value_parser = parse_duration)]
    pub service_wait: Duration,
    /// Do not create netease1..3 in a new database.
    #[arg(long, env = "PORTCULLIS_NO_DEMO_ACCOUNTS", action = ArgAction::SetTrue, value_parser = switch())]
    pub no_demo_accounts: bool,
    /// Log filter (RUST_LOG syntax) [default: RUST_LOG, else info]; an invalid filter is an error.
    #[arg(long, env = "PORTCULLIS_LOG")]
    pub log: Option<String>,
    /// Log line format on stderr: text, or json (one object per line).
    #[arg(long, env = "PORTCULLIS_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// HTTP admin listener: health checks, Prometheus metrics, admin API, operator console (off unless given).
    #[arg(long, env = "PORTCULLIS_ADMIN_LISTEN")]
    pub admin_listen: Option<SocketAddr>,
    /// Bearer token the admin API, console and /metrics require; needed for a non-loopback --admin-listen.
    #[arg(long, env = "PORTCULLIS_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// How often frame metrics (fps, frame-time percentiles, connections, sessions) are logged at info.
    #[arg(long, env = "PORTCULLIS_METRICS_EVERY", default_value = "10s", value_parser = parse_positive_duration)]
    pub metrics_every: Duration,
    /// One transaction per write instead of group commit (only to measure what group commit buys).
    #[arg(long, env = "PORTCULLIS_NO_GROUP_COMMIT", action = ArgAction::SetTrue, value_parser = switch(), hide = true)]
    pub no_group_commit: bool,
    /// `PRAGMA synchronous=FULL`: an fsync per commit (to measure what group commit buys then).
    #[arg(long, env = "PORTCULLIS_SYNCHRONOUS_FULL", action = ArgAction::SetTrue, value_parser = switch(), hide = true)]
    pub synchronous_full: bool,
    /// Shut down gracefully when standard input reaches end of file (used by
    /// `portcullis-bench`, so that a server it started never outlives it).
    #[arg(long, env = "PORTCULLIS_STOP_ON_STDIN_EOF", action = ArgAction::SetTrue, value_parser = switch(), hide = true)]
    pub stop_on_stdin_eof: bool,
}

/// The `serve` flags as the library's settings (docs/cli.md, one field per flag).
impl From<&ServeArgs> for ServerConfig {
    fn from(args: &ServeArgs) -> Self {
        Self {
            listen: args.listen,
            ws_listen: args.ws_listen,
            tls: args.tls_cert.clone().zip(args.tls_key.clone()),
            runner: RunnerConfig { tick_hz: args.tick_hz, max_frame_hz: args.max_frame_hz },
            net: NetConfig {
                max_connections: args.max_connections,
                max_frame_bytes: usize::try_from(args.max_frame_bytes).unwrap_or(usize::MAX),
                outbound_queue: usize::try_from(args.outbound_queue).unwrap_or(usize::MAX),
                outbound_queue_bytes: usize::try_from(args.outbound_queue_bytes).unwrap_or(usize::MAX),
                rate_limit: args.rate_limit,
                rate_burst: args.rate_burst,
                ..NetConfig::default()
            },
            rpc: RpcConfig { max_protocol_errors: args.max_protocol_errors, max_batch: args.max_batch as usize },
            session: SessionConfig {
                login_timeout: args.login_timeout,
                kick_save_timeout: args.kick_save_timeout,
                idle_timeout: args.idle_timeout,
            },
            accounts: AccountsConfig {
                login_fail_limit: args.login_fail_limit,
                login_fail_window: args.login_fail_window,
            },
            userdata: UserDataConfig { max_userdata_bytes: args.max_userdata_bytes, ..UserDataConfig::default() },
            store: StoreConfig {
                demo_accounts: !args.no_demo_accounts,
                argon2_memory_kib: args.argon2_memory_kib,
                argon2_iterations: args.argon2_iterations,
                group_commit: !args.no_group_commit,
                synchronous_full: args.synchronous_full,
                node_name: args.node_name.clone().unwrap_or_else(portcullis_store::default_node_name),
                node_lease: args.node_lease,
                ..StoreConfig::new(&args.db)
            },
            services: ServicesConfig {
                key: args.service_key.clone().filter(|k| !k.is_empty()),
                call_timeout: args.service_timeout,
                wait: args.service_wait,
                ..ServicesConfig::defaults()
            },
            metrics_every: args.metrics_every,
            admin: args
                .admin_listen
                .map(|listen| portcullis_admin::AdminPlugin { listen, token: args.admin_token.clone() }),
        }
    }
}

/// The value parser of every switch: given as a variable it takes `true`,
/// `false`, `1` or `0` (docs/cli.md; also `yes`/`no`, `on`/`off`).
fn switch() -> BoolishValueParser {
    BoolishValueParser::new()
}

/// A node name: 1 to 200 printable characters without spaces (it goes into
/// the directory's notifications, docs/cluster.md).
fn node_name(s: &str) -> Result<String, String> {
    if s.is_empty() || s.len() > 200 || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("`{s}` is not a node name (1 to 200 characters, no spaces)"));
    }
    Ok(s.to_owned())
}

fn positive_f64(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!("`{s}` is not a positive number")),
    }
}

fn non_negative_f64(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(format!("`{s}` is not a non-negative number")),
    }
}

/// Flags of `portcullis scenario`.
#[derive(Debug, Clone, Args)]
pub struct ScenarioArgs {
    /// Run against a running server instead of an in-process one: HOST:PORT
    /// (TCP), tls://HOST:PORT, ws://HOST:PORT/ or wss://HOST:PORT/.
    #[arg(long, value_name = "ADDR")]
    pub connect: Option<String>,
    /// Open the second connection (steps 8-13, or client B of --takeover)
    /// here instead of at --connect: the same server over another
    /// transport, or another node of it.
    #[arg(long, value_name = "ADDR", requires = "connect")]
    pub connect_second: Option<String>,
    /// Trust only the CA certificates of this PEM file for tls:// and wss://
    /// (e.g. the cert.pem of `portcullis cert`) instead of the system's roots.
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// Run the duplicate-login (takeover) story instead of the 13 steps.
    #[arg(long)]
    pub takeover: bool,
    /// Print every message sent and received.
    #[arg(long, short)]
    pub verbose: bool,
}

/// `portcullis account ...`.
#[derive(Debug, Clone, Args)]
pub struct AccountArgs {
    /// SQLite database file.
    #[arg(long, env = "PORTCULLIS_DB", default_value = "portcullis.db", global = true)]
    pub db: PathBuf,
    /// What to do.
    #[command(subcommand)]
    pub action: AccountAction,
}

/// Account operations.
#[derive(Debug, Clone, Subcommand)]
pub enum AccountAction {
    /// Create an account (password from --password or the first line of stdin).
    Add {
        /// Account name (6-16 ASCII letters or digits).
        name: String,
        /// Password (6-64 characters); read from stdin when omitted.
        #[arg(long)]
        password: Option<String>,
    },
    /// List accounts.
    List,
    /// Set an account's password (from --password or the first line of stdin).
    Passwd {
        /// Account name.
        name: String,
        /// New password; read from stdin when omitted.
        #[arg(long)]
        password: Option<String>,
    },
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    /// Every switch of `serve`, present and future, takes `true`, `false`,
    /// `1` and `0` from its variable (docs/cli.md). clap reads a variable
    /// through the switch's value parser; this feeds the same parser the
    /// four values (as an explicit value, since the process environment is
    /// not the test's to change).
    #[test]
    fn every_switch_takes_true_false_1_0_from_its_variable() {
        let command = Cli::command();
        let serve = command.find_subcommand("serve").expect("serve").clone();
        let switches: Vec<clap::Arg> =
            serve.get_arguments().filter(|a| matches!(a.get_action(), ArgAction::SetTrue)).cloned().collect();
        assert!(switches.len() >= 4, "found {} switches", switches.len());
        for arg in switches {
            let env = arg.get_env().expect("every serve flag has a variable").to_string_lossy().into_owned();
            let long = arg.get_long().expect("a long flag").to_owned();
            let probe =
                clap::Command::new("probe").arg(arg.clone().action(ArgAction::Set).num_args(1).env(None::<&str>));
            for (value, expected) in [("true", true), ("false", false), ("1", true), ("0", false)] {
                let matches = probe.clone().try_get_matches_from(["probe", &format!("--{long}"), value]);
                let matches = matches.unwrap_or_else(|e| panic!("{env}={value}: {e}"));
                assert_eq!(matches.get_one::<bool>(arg.get_id().as_str()), Some(&expected), "{env}={value}");
            }
        }
    }

    /// The service flags reach the gateway's settings (docs/cli.md); an empty key is no key.
    #[test]
    fn service_flags() {
        let parse = |args: &[&str]| {
            let cli = Cli::try_parse_from(args).expect("parses");
            match cli.command {
                Some(Command::Serve(serve)) => ServerConfig::from(serve.as_ref()).services,
                _ => panic!("not serve"),
            }
        };
        let on =
            parse(&["portcullis", "serve", "--service-key", "k", "--service-timeout", "2s", "--service-wait", "1s"]);
        assert_eq!(on.key.as_deref(), Some("k"));
        assert_eq!((on.call_timeout, on.wait), (Duration::from_secs(2), Duration::from_secs(1)));
        let off = parse(&["portcullis", "serve"]);
        assert_eq!(off.key, None);
        assert_eq!((off.call_timeout, off.wait), (Duration::from_secs(10), Duration::from_secs(5)));
        assert_eq!(parse(&["portcullis", "serve", "--service-key", ""]).key, None);
    }
}
