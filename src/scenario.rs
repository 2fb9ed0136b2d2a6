//! `portcullis scenario` (docs/cli.md): the reference client ([`portcullis_client`])
//! walks through the 13 steps of the mission on one account and prints one
//! line per step; `--takeover` plays the duplicate-login story of
//! docs/protocol.md §6 with two clients instead.
//!
//! ```text
//!  run_cli ─> run ─┬─ target: in-process server (temporary database) or --connect ADDR
//!                  │          (HOST:PORT, tls://, ws://, wss://; the second connection
//!                  │          at --connect-second ADDR when given; TLS roots from --ca)
//!                  ├─ register a fresh random account (both modes, so "no user data yet" holds)
//!                  ├─ steps::run      13 steps, one line each     (default)
//!                  └─ takeover::run   A kicked by B, checks       (--takeover)
//! ```
//!
//! Every input is a named constant below. Output goes to the writer given to
//! [`run`] (the binary passes stdout); nothing here prints by itself.

mod report;
mod steps;
mod takeover;

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use portcullis_rpc::ErrorCode;
use rand::distr::{Alphanumeric, SampleString};
use serde_json::{Map, Value, json};
use tokio::sync::mpsc::UnboundedReceiver;

use crate::app::{ServeError, ServerConfig, ServerHandle};
use crate::cli::ScenarioArgs;
use portcullis_client::{
    Client, ClientConfig, ClientError, ClientEvent, Endpoint, LoadResult, LoginResult, SaveResult,
};

use report::Report;

// ---------------------------------------------------------------------------
// Inputs of the scenarios.
// ---------------------------------------------------------------------------

/// The scenario account's name starts with this; [`ACCOUNT_RANDOM_CHARS`]
/// random letters and digits follow (the `register` rule is 6 to 16 ASCII
/// letters or digits, docs/protocol.md §4).
pub const ACCOUNT_PREFIX: &str = "sc";
/// How many random letters and digits follow [`ACCOUNT_PREFIX`].
pub const ACCOUNT_RANDOM_CHARS: usize = 10;
/// The password the fresh account is registered with (6 to 64 characters).
pub const PASSWORD: &str = "portcullis-1";
/// A password that is not [`PASSWORD`] (step 3).
pub const WRONG_PASSWORD: &str = "wrong-password";
/// The object saved in step 7 and loaded back in step 12 (and the takeover's
/// first save).
pub const SAVED_OBJECT: &str = r#"{"name":"wydx","bullet":20,"exp":23}"#;
/// The takeover's "final" object: what client A holds as its kick save data,
/// saved automatically when B's login kicks A, and loaded by B.
pub const TAKEOVER_FINAL_OBJECT: &str = r#"{"name":"wydx","bullet":7,"exp":58}"#;
/// How many fresh names `register` may try when a name is taken.
pub const REGISTER_ATTEMPTS: usize = 5;
/// The client's RPC timeout (docs/protocol.md §7). Above the server's default kick
/// save deadline (5 s): B's takeover login is answered only after A's kick.
pub const RPC_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest the takeover may take from B's login to A's close and B's answer.
pub const TAKEOVER_TIMEOUT: Duration = Duration::from_secs(30);
/// argon2id memory cost (KiB) of the in-process server: low, to keep it fast.
pub const IN_PROCESS_ARGON2_MEMORY_KIB: u32 = 8 * 1024;
/// argon2id time cost of the in-process server.
pub const IN_PROCESS_ARGON2_ITERATIONS: u32 = 1;
/// How long the in-process server may take to shut down at the end.
pub const SERVER_STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// [`SAVED_OBJECT`] as JSON.
pub fn saved_object() -> Value {
    // A constant; the unit test `constants_are_json_objects` parses it.
    serde_json::from_str(SAVED_OBJECT).expect("SAVED_OBJECT is valid JSON")
}

/// [`TAKEOVER_FINAL_OBJECT`] as JSON.
pub fn takeover_final_object() -> Value {
    // A constant; the unit test `constants_are_json_objects` parses it.
    serde_json::from_str(TAKEOVER_FINAL_OBJECT).expect("TAKEOVER_FINAL_OBJECT is valid JSON")
}

/// A fresh account name: [`ACCOUNT_PREFIX`] and [`ACCOUNT_RANDOM_CHARS`]
/// random ASCII letters and digits.
pub fn fresh_account_name() -> String {
    format!("{ACCOUNT_PREFIX}{}", Alphanumeric.sample_string(&mut rand::rng(), ACCOUNT_RANDOM_CHARS))
}

// ---------------------------------------------------------------------------
// Entry points.
// ---------------------------------------------------------------------------

/// Why a scenario could not run at all (a failed step is not an error: it is
/// reported as `FAIL` and makes [`run`] return `Ok(false)`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScenarioError {
    /// The temporary database directory could not be created.
    #[error("cannot create a temporary directory for the database: {0}")]
    TempDir(std::io::Error),
    /// The in-process server did not start.
    #[error("cannot start the in-process server: {0}")]
    Server(#[from] ServeError),
    /// The tokio runtime could not be built.
    #[error("cannot start the tokio runtime: {0}")]
    Runtime(std::io::Error),
    /// The server could not be reached.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// The address tried.
        addr: String,
        /// What failed.
        source: ClientError,
    },
    /// The fresh account could not be registered.
    #[error("cannot register a fresh account: {0}")]
    Register(ClientError),
    /// Writing the output failed.
    #[error("cannot write the output: {0}")]
    Output(#[from] std::io::Error),
}

/// `portcullis scenario`: runs [`run`] with stdout as the output. Exit status
/// 0 when every step (or takeover check) is `ok`, 1 when one is `FAIL`; a
/// scenario that cannot run at all prints `error: ...` on stderr and exits 2.
pub fn run_cli(args: &ScenarioArgs) -> ExitCode {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match run(args, &mut out) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            let _ = out.flush();
            let _ = writeln!(std::io::stderr(), "error: {error}");
            ExitCode::from(2)
        }
    }
}

/// Runs the scenario `args` asks for (the 13 steps, or the takeover with
/// `args.takeover`) against an in-process server, or the server at
/// `args.connect` (any transport; the second connection at
/// `args.connect_second` when given, TLS roots from `args.ca`), writing its
/// lines to `out`. Returns whether every step or
/// check passed.
///
/// # Errors
/// [`ScenarioError`] when the scenario cannot run: the server does not start
/// or cannot be reached, no account can be registered, or `out` fails.
pub fn run(args: &ScenarioArgs, out: &mut dyn Write) -> Result<bool, ScenarioError> {
    // A mistyped address fails before any server starts or any line prints.
    for addr in [args.connect.as_deref(), args.connect_second.as_deref()].into_iter().flatten() {
        addr.parse::<Endpoint>().map_err(|source| ScenarioError::Connect { addr: addr.to_owned(), source })?;
    }
    let mut target = Target::start(args.connect.as_deref())?;
    target.dial.second = args.connect_second.clone().unwrap_or_else(|| target.dial.first.clone());
    target.dial.config.ca_file = args.ca.clone();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(ScenarioError::Runtime)?;
    let mut report = Report::new(out, args.verbose);
    let name = if args.takeover { "portcullis scenario --takeover" } else { "portcullis scenario" };
    report.line(&format!("{name}: {}", target.describe()))?;
    let passed = runtime.block_on(async {
        let account = register_fresh_account(&target.dial, &mut report).await?;
        if args.takeover {
            takeover::run(&target.dial, &account, &mut report).await
        } else {
            steps::run(&target.dial, &account, &mut report).await
        }
    })?;
    // Ends the clients' tasks before the server goes.
    drop(runtime);
    let in_process = target.in_process.is_some();
    let stopping = std::time::Instant::now();
    if !target.stop() {
        report.line(&format!("note: the in-process server did not stop within {SERVER_STOP_TIMEOUT:?}"))?;
    } else if in_process {
        report.trace(&format!("(in-process server stopped in {} ms)", stopping.elapsed().as_millis()));
        report.flush_trace()?;
    }
    Ok(passed)
}

/// Where the scenario's connections go, and how they connect.
pub(crate) struct Dial {
    /// The address of the first connection (and of the `register` one):
    /// any form `Client::connect` takes (HOST:PORT, tls://, ws://, wss://).
    pub(crate) first: String,
    /// The address of the second connection: steps 8-13, or client B of
    /// the takeover; the same as `first` unless `--connect-second` is given.
    pub(crate) second: String,
    /// The client configuration of every connection ([`RPC_TIMEOUT`], the `--ca` file).
    pub(crate) config: ClientConfig,
}

/// The server the scenario talks to.
struct Target {
    /// Its addresses and the client configuration.
    dial: Dial,
    /// The in-process server and its database directory (dropped after the server).
    in_process: Option<(ServerHandle, tempfile::TempDir)>,
}

impl Target {
    /// Starts an in-process server on a free loopback port with a fresh
    /// database, or just records `connect`.
    fn start(connect: Option<&str>) -> Result<Self, ScenarioError> {
        if let Some(addr) = connect {
            return Ok(Self { dial: Dial::new(addr.to_owned()), in_process: None });
        }
        let dir = tempfile::Builder::new().prefix("portcullis-scenario-").tempdir().map_err(ScenarioError::TempDir)?;
        let mut config = ServerConfig::ephemeral(dir.path().join("scenario.db"));
        config.store.argon2_memory_kib = IN_PROCESS_ARGON2_MEMORY_KIB;
        config.store.argon2_iterations = IN_PROCESS_ARGON2_ITERATIONS;
        let server = ServerHandle::spawn(config)?;
        Ok(Self { dial: Dial::new(server.addr().to_string()), in_process: Some((server, dir)) })
    }

    /// One line about the target.
    fn describe(&self) -> String {
        let first = &self.dial.first;
        let mut line = match &self.in_process {
            Some(_) => format!("in-process server on {first} (temporary database)"),
            None => format!("server at {first}"),
        };
        if self.dial.second != *first {
            line.push_str(&format!(", second connection at {}", self.dial.second));
        }
        line
    }

    /// Shuts the in-process server down; `false` when it did not stop in time.
    fn stop(self) -> bool {
        match self.in_process {
            Some((server, dir)) => {
                let stopped = server.shutdown(SERVER_STOP_TIMEOUT).is_some();
                drop(dir);
                stopped
            }
            None => true,
        }
    }
}

impl Dial {
    /// Both connections at `addr`, with [`RPC_TIMEOUT`] and the system's TLS roots.
    fn new(addr: String) -> Self {
        let config = ClientConfig { rpc_timeout: RPC_TIMEOUT, ..ClientConfig::default() };
        Self { second: addr.clone(), first: addr, config }
    }

    /// Connects a client to `addr` with the scenario's configuration.
    async fn connect(&self, addr: &str) -> Result<Client, ScenarioError> {
        Client::connect_with(addr, self.config.clone())
            .await
            .map_err(|source| ScenarioError::Connect { addr: addr.to_owned(), source })
    }
}

/// Registers a fresh random account with [`PASSWORD`] on a connection of its
/// own to the first address (a new name when one is taken) and prints it.
async fn register_fresh_account(dial: &Dial, report: &mut Report<'_>) -> Result<String, ScenarioError> {
    let client = dial.connect(&dial.first).await?;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let account = fresh_account_name();
        report.sent("register", &json!({"account": account, "password": PASSWORD}));
        let outcome = client.register(&account, PASSWORD).await;
        report.received(&outcome, |name| json!({ "account": name }));
        match outcome {
            Ok(_) => {
                report.line(&format!("account {account} registered, password {PASSWORD:?}"))?;
                report.flush_trace()?;
                client.close();
                return Ok(account);
            }
            Err(error) if error.code() == Some(ErrorCode::AccountExists) && attempt < REGISTER_ATTEMPTS => {}
            Err(error) => {
                report.flush_trace()?;
                return Err(ScenarioError::Register(error));
            }
        }
    }
}

/// One scenario connection: the client and its event stream.
struct Conn {
    /// The client.
    client: Client,
    /// Its notifications, automatic-save results and unmatched responses.
    events: UnboundedReceiver<ClientEvent>,
}

impl Conn {
    /// Connects to `addr` with `dial`'s configuration and takes the event stream.
    async fn open(dial: &Dial, addr: &str) -> Result<Self, ScenarioError> {
        let client = dial.connect(addr).await?;
        // A new client's event stream has not been taken yet.
        let events = client.events().expect("a new client's event stream is untaken");
        Ok(Self { client, events })
    }

    /// The params the client sends for an **auth** method (docs/protocol.md §4):
    /// `extra` plus the held token, if any. For the record only.
    fn auth_params(&self, extra: Value) -> Value {
        let mut params = match extra {
            Value::Object(map) => map,
            _ => Map::new(),
        };
        if let Some(token) = self.client.token() {
            params.insert("token".to_owned(), Value::from(token));
        }
        Value::Object(params)
    }

    /// Moves the events that have arrived into the report's trace.
    fn drain(&mut self, report: &mut Report<'_>) {
        while let Ok(event) = self.events.try_recv() {
            report.trace(&format!("<- {}", describe_event(&event)));
        }
    }
}

/// One event of a client's stream as text: `method {params}` for a
/// notification, `automatic save result {...}` for the save sent on `kicked`.
fn describe_event(event: &ClientEvent) -> String {
    match event {
        ClientEvent::Notification(notification) => format!("{} {}", notification.method, notification.params),
        ClientEvent::KickSave(Ok(result)) => format!("automatic save result {}", save_json(result)),
        ClientEvent::KickSave(Err(error)) => format!("automatic save {}", error_json(error)),
        ClientEvent::Unmatched(message) => format!("unmatched response {message}"),
        other => format!("{other:?}"),
    }
}

/// A `login` result as its JSON (docs/protocol.md §4).
fn login_json(result: &LoginResult) -> Value {
    json!({"account": result.account, "token": result.token})
}

/// A `userdata_save` result as its JSON (docs/protocol.md §4).
fn save_json(result: &SaveResult) -> Value {
    json!({"version": result.version, "saved_at": result.saved_at})
}

/// A `userdata_load` result as its JSON (docs/protocol.md §4).
fn load_json(result: &LoadResult) -> Value {
    json!({"data": result.data_value().unwrap_or_default(), "version": result.version, "saved_at": result.saved_at})
}

/// A short form of a token for the step lines: its first 8 characters and `…`.
fn short_token(token: &str) -> String {
    match token.get(..8) {
        Some(start) if token.len() > 8 => format!("{start}…"),
        _ => token.to_owned(),
    }
}

/// Whether `token` looks like a token of docs/protocol.md §4: 64 lowercase hex characters.
fn is_token(token: &str) -> bool {
    token.len() == 64 && token.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// What a failed call got, for the `actual` column: the code's name for a
/// server error (`NOT_LOGGED_IN`), the error text otherwise.
fn describe_error(error: &ClientError) -> String {
    match error {
        ClientError::Rpc { code: ErrorCode::Other(code), .. } => format!("error {code}"),
        ClientError::Rpc { code, .. } => code.name().to_owned(),
        other => other.to_string(),
    }
}

/// The `actual` column of a call: `on_ok` of its result, or the error's name.
fn describe<T>(outcome: &Result<T, ClientError>, on_ok: impl FnOnce(&T) -> String) -> String {
    match outcome {
        Ok(result) => on_ok(result),
        Err(error) => describe_error(error),
    }
}

/// The JSON-RPC error object of a server error, for verbose output.
fn error_json(error: &ClientError) -> String {
    match error {
        ClientError::Rpc { code, message, data } => {
            let mut object = json!({"code": code.code(), "message": message});
            if let (Some(data), Some(map)) = (data, object.as_object_mut()) {
                map.insert("data".to_owned(), data.clone());
            }
            format!("error {object}")
        }
        other => format!("({other})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constants_are_json_objects() {
        assert!(saved_object().is_object());
        assert_eq!(saved_object(), json!({"name": "wydx", "bullet": 20, "exp": 23}));
        assert!(takeover_final_object().is_object());
        assert_ne!(saved_object(), takeover_final_object());
        assert_ne!(PASSWORD, WRONG_PASSWORD);
        assert!((6..=64).contains(&PASSWORD.chars().count()));
    }

    #[test]
    fn fresh_names_follow_the_register_rule() {
        let name = fresh_account_name();
        assert!((6..=16).contains(&name.len()), "{name}");
        assert!(name.bytes().all(|b| b.is_ascii_alphanumeric()), "{name}");
        assert_ne!(fresh_account_name(), name);
    }

    #[test]
    fn tokens() {
        let token = "0123456789abcdef".repeat(4);
        assert!(is_token(&token));
        assert!(!is_token(&token.to_uppercase()));
        assert!(!is_token("abc"));
        assert_eq!(short_token(&token), "01234567…");
        assert_eq!(short_token("abc"), "abc");
    }

    #[test]
    fn errors() {
        let error = ClientError::Rpc { code: ErrorCode::NotLoggedIn, message: "not logged in".into(), data: None };
        assert_eq!(describe_error(&error), "NOT_LOGGED_IN");
        assert_eq!(error_json(&error), r#"error {"code":1001,"message":"not logged in"}"#);
        let other = ClientError::Rpc { code: ErrorCode::Other(42), message: "x".into(), data: Some(json!(1)) };
        assert_eq!(describe_error(&other), "error 42");
        assert_eq!(error_json(&other), r#"error {"code":42,"data":1,"message":"x"}"#);
    }
}
