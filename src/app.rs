//! Assembling the server app: configuration, plugins, runner and signals.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use bevy_app::prelude::*;
use bevy_ecs::prelude::*;
use bevy_time::{Fixed, Time, TimePlugin};
use portcullis_accounts::{AccountsConfig, AccountsPlugin};
use portcullis_net::{FrameWaker, HttpPage, ListenFailed, Listening, NetConfig, NetPlugin, Transport};
use portcullis_rpc::{RpcConfig, RpcPlugin};
use portcullis_session::{RequestShutdown, SessionConfig, SessionPlugin};
use portcullis_store::{Store, StoreConfig};
use portcullis_userdata::{UserDataConfig, UserDataPlugin};

use crate::ServerPlugins;
use crate::metrics::FrameMetricsPlugin;
use crate::runner::RunnerConfig;

/// Every setting of `portcullis serve` (docs/cli.md), with its defaults.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// TCP listener address; port 0 picks a free port.
    pub listen: SocketAddr,
    /// WebSocket listener address (`--ws-listen`); `None`: no WebSocket listener.
    pub ws_listen: Option<SocketAddr>,
    /// PEM certificate chain and key (`--tls-cert`, `--tls-key`): TLS on every listener.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Runner: tick rate and frame-rate cap.
    pub runner: RunnerConfig,
    /// Network limits.
    pub net: NetConfig,
    /// JSON-RPC limits.
    pub rpc: RpcConfig,
    /// Session timers.
    pub session: SessionConfig,
    /// Login throttling.
    pub accounts: AccountsConfig,
    /// User-data limits.
    pub userdata: UserDataConfig,
    /// Storage (with the demo accounts by default, as `serve` without
    /// `--no-demo-accounts`, docs/cli.md).
    pub store: StoreConfig,
    /// How often frame metrics are logged (`--metrics-every`, [`FrameMetricsPlugin`]).
    pub metrics_every: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 7777)),
            ws_listen: None,
            tls: None,
            runner: RunnerConfig::default(),
            net: NetConfig::default(),
            rpc: RpcConfig::default(),
            session: SessionConfig::default(),
            accounts: AccountsConfig::default(),
            userdata: UserDataConfig::default(),
            store: StoreConfig { demo_accounts: true, ..StoreConfig::new("portcullis.db") },
            metrics_every: Duration::from_secs(10),
        }
    }
}

impl ServerConfig {
    /// The defaults with a database file at `db` and the listener on a free
    /// loopback port: what in-process servers of tests and `scenario` use.
    pub fn ephemeral(db: impl Into<PathBuf>) -> Self {
        let store = StoreConfig { demo_accounts: true, ..StoreConfig::new(db) };
        Self { listen: SocketAddr::from(([127, 0, 0, 1], 0)), store, ..Self::default() }
    }
}

impl From<&crate::cli::ServeArgs> for ServerConfig {
    fn from(args: &crate::cli::ServeArgs) -> Self {
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
                ..StoreConfig::new(&args.db)
            },
            metrics_every: args.metrics_every,
        }
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The TLS certificate or key could not be used.
    #[error("cannot use the TLS certificate and key: {0}")]
    Tls(#[from] crate::cert::CertError),
    /// The database could not be opened.
    #[error("cannot open the database {path:?}: {source}")]
    Store {
        /// The database file.
        path: PathBuf,
        /// What failed.
        source: portcullis_store::StoreError,
    },
}

/// Counts SIGINT/SIGTERM (or [`Signals::raise`] calls): the first asks for a
/// graceful shutdown, the second exits at once. Inserted by [`build_server_app`].
#[derive(Resource, Clone, Default)]
pub struct Signals {
    count: Arc<AtomicU32>,
    waker: FrameWaker,
}

impl Signals {
    /// Records one signal and wakes the frame loop. Safe to call from a signal-handler thread.
    pub fn raise(&self) {
        self.count.fetch_add(1, Ordering::AcqRel);
        self.waker.wake();
    }

    /// Routes the process's SIGINT and SIGTERM here (once per process).
    pub fn install_process_handler(&self) -> Result<(), ctrlc::Error> {
        let signals = self.clone();
        ctrlc::set_handler(move || signals.raise())
    }
}

impl Signals {
    /// Signals that wake `waker`'s frame loop when raised.
    pub fn new(waker: FrameWaker) -> Self {
        Self { count: Arc::default(), waker }
    }
}

/// Graceful shutdown on SIGINT/SIGTERM for any app built on
/// [`ServerPlugins`]: the first signal starts the save-first shutdown of
/// docs/protocol.md §6 (the app exits 0 when it is done), a second one exits at
/// once. Inserts [`Signals`]; `install_process_handler: true` routes the
/// process's signals to it (do that once per process).
///
/// # Examples
///
/// ```no_run
/// use bevy_app::App;
/// use portcullis::app::SignalPlugin;
///
/// let mut app = App::new();
/// app.add_plugins(SignalPlugin { install_process_handler: true });
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct SignalPlugin {
    /// Route SIGINT/SIGTERM of this process to the app.
    pub install_process_handler: bool,
}

impl Plugin for SignalPlugin {
    fn build(&self, app: &mut App) {
        let waker = app.world_mut().get_resource_or_init::<FrameWaker>().clone();
        let signals = app.world().get_resource::<Signals>().cloned().unwrap_or_else(|| Signals::new(waker));
        if self.install_process_handler
            && let Err(e) = signals.install_process_handler()
        {
            bevy_log::error!(error = %e, "cannot install the signal handler");
        }
        app.insert_resource(signals).add_systems(First, watch_signals);
    }
}

/// Turns signals into the shutdown sequence (first) or an immediate exit (second).
fn watch_signals(
    signals: Res<Signals>,
    mut seen: Local<u32>,
    mut commands: Commands,
    mut exit: MessageWriter<AppExit>,
) {
    let count = signals.count.load(Ordering::Acquire);
    if count == *seen {
        return;
    }
    *seen = count;
    if count >= 2 {
        bevy_log::warn!("second signal: exiting at once");
        exit.write(AppExit::Success);
    } else {
        bevy_log::info!("signal: graceful shutdown");
        commands.trigger(RequestShutdown);
    }
}

/// Builds the `serve` app: opens the store first (so its errors are
/// reported, not panicked), then adds `TimePlugin`, [`ServerPlugins`],
/// [`FrameMetricsPlugin`] and the event-driven runner. Returns the app and
/// its [`Signals`]. The listener is bound when the app starts running (in
/// `Startup`): observe [`Listening`] for the bound address, and
/// [`ListenFailed`] for a bind that failed (the app then exits with
/// `AppExit::error()`).
pub fn build_server_app(config: &ServerConfig) -> Result<(App, Signals), ServeError> {
    let waker = FrameWaker::default();
    let tls = match &config.tls {
        Some((cert, key)) => Some(crate::cert::load_server_config(cert, key)?),
        None => None,
    };
    // The TLS handshake and the HTTP head count against the login deadline (docs/protocol.md §1.2).
    let net_config = NetConfig { handshake_timeout: config.session.login_timeout, ..config.net.clone() };
    let net = NetPlugin { ws_listen: config.ws_listen, tls, http_pages: demo_pages(), ..NetPlugin::tcp(config.listen) }
        .with_config(net_config);
    let notify_waker = waker.clone();
    let store = Store::open(config.store.clone(), Some(Arc::new(move || notify_waker.wake())))
        .map_err(|source| ServeError::Store { path: config.store.path.clone(), source })?;
    let signals = Signals::new(waker.clone());

    let mut app = App::new();
    app.insert_resource(waker)
        .insert_resource(signals.clone())
        .add_plugins(TimePlugin)
        .insert_resource(Time::<Fixed>::from_hz(config.runner.tick_hz))
        .add_plugins(
            ServerPlugins
                .build()
                .set(net)
                .set(RpcPlugin { config: config.rpc.clone() })
                .set(SessionPlugin::with_store(config.session.clone(), store))
                .set(AccountsPlugin { config: config.accounts.clone() })
                .set(UserDataPlugin { config: config.userdata.clone() }),
        )
        .add_plugins(SignalPlugin::default())
        .add_plugins(FrameMetricsPlugin::every(config.metrics_every));
    config.runner.install(&mut app);
    Ok((app, signals))
}

/// The pages of the WebSocket port (docs/protocol.md §1.1): the demo page at
/// `/` and the JavaScript client at `/portcullis.js`, embedded in the binary.
pub fn demo_pages() -> Vec<HttpPage> {
    vec![
        HttpPage::new("/", "text/html; charset=utf-8", include_str!("../clients/js/index.html")),
        HttpPage::new("/portcullis.js", "text/javascript; charset=utf-8", include_str!("../clients/js/portcullis.js")),
    ]
}

/// A server running in this process on its own thread (for `scenario` and tests).
pub struct ServerHandle {
    addr: SocketAddr,
    signals: Signals,
    thread: Option<std::thread::JoinHandle<AppExit>>,
}

impl ServerHandle {
    /// Builds the app on a new thread and runs it; returns once it listens
    /// (or with the error that stopped it).
    pub fn spawn(config: ServerConfig) -> Result<Self, ServeError> {
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("portcullis-server".into())
            .spawn(move || match build_server_app(&config) {
                Ok((mut app, signals)) => {
                    let (listening, failed) = (tx.clone(), tx);
                    app.add_observer(move |event: On<Listening>| {
                        if matches!(event.kind, Transport::Tcp { .. }) {
                            let _ = listening.send(Ok((event.addr, signals.clone())));
                        }
                    });
                    app.add_observer(move |event: On<ListenFailed>| {
                        let source = std::io::Error::new(event.error.kind(), event.error.to_string());
                        let _ = failed.send(Err(ServeError::Bind { addr: event.addr, source }));
                    });
                    app.run()
                }
                Err(e) => {
                    let _ = tx.send(Err(e));
                    AppExit::error()
                }
            })
            .map_err(|source| ServeError::Bind { addr: SocketAddr::from(([127, 0, 0, 1], 0)), source })?;
        match rx.recv() {
            Ok(Ok((addr, signals))) => Ok(Self { addr, signals, thread: Some(thread) }),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            Err(_) => Err(ServeError::Bind {
                addr: SocketAddr::from(([127, 0, 0, 1], 0)),
                source: std::io::Error::other("server thread died"),
            }),
        }
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Starts the graceful shutdown, as SIGTERM does.
    pub fn signal(&self) {
        self.signals.raise();
    }

    /// Shuts down gracefully and waits up to `timeout` for the server thread.
    pub fn shutdown(mut self, timeout: Duration) -> Option<AppExit> {
        self.signals.raise();
        self.join(timeout)
    }

    fn join(&mut self, timeout: Duration) -> Option<AppExit> {
        let thread = self.thread.take()?;
        let deadline = std::time::Instant::now() + timeout;
        while !thread.is_finished() {
            if std::time::Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        thread.join().ok()
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.signals.raise();
            self.signals.raise();
            let _ = self.join(Duration::from_secs(10));
        }
    }
}
