//! Assembling the `serve` app: configuration, plugins, and a server on its own thread.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bevy_app::prelude::*;
use bevy_ecs::prelude::*;
use portcullis_accounts::{AccountsConfig, AccountsPlugin};
use portcullis_net::{ConnectionIndex, HttpPage, ListenFailed, Listening, NetConfig, NetPlugin, Transport};
use portcullis_rpc::{RpcConfig, RpcPlugin};
use portcullis_runtime::{
    FrameMetricsAppExt, FrameMetricsPlugin, FrameWaker, RunnerConfig, RunnerPlugin, SignalPlugin, Signals,
};
use portcullis_services::{ServicesConfig, ServicesPlugin};
use portcullis_session::{SessionConfig, SessionIndex, SessionPlugin};
use portcullis_store::{Store, StoreConfig};
use portcullis_userdata::{UserDataConfig, UserDataPlugin};

use crate::ServerPlugins;

/// Every setting of `portcullis serve` (docs/cli.md), with its defaults
/// (`From<&ServeArgs>` in [`crate::cli`] fills it from the command line).
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
    /// Backend services (`--service-key`, `--service-timeout`, `--service-wait`; off without a key).
    pub services: ServicesConfig,
    /// How often frame metrics are logged (`--metrics-every`, [`FrameMetricsPlugin`]).
    pub metrics_every: Duration,
    /// The admin listener (`--admin-listen`, `--admin-token`); `None`: off,
    /// and no metrics are recorded.
    pub admin: Option<portcullis_admin::AdminPlugin>,
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
            services: ServicesConfig::defaults(),
            metrics_every: Duration::from_secs(10),
            admin: None,
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

/// Builds the `serve` app: opens the store first (so its errors are
/// reported, not panicked), then adds [`ServerPlugins`] with `config`'s
/// settings (the runner at `config.runner`, signal handling without a
/// process handler: the caller installs it with
/// [`Signals::install_process_handler`] once per process) and
/// [`FrameMetricsPlugin`] with the `connections` and `sessions` gauges, and
/// the admin listener when `config.admin` is set (its metrics recorder
/// installed first).
/// Returns the app and its [`Signals`]. The listeners are bound when the app
/// starts running (in `Startup`): observe [`Listening`] for each bound
/// address, and [`ListenFailed`] for a bind that failed (the app then exits
/// with `AppExit::error()`).
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
    if config.admin.is_some() {
        // Before anything registers a metric handle (the store thread takes its own when it starts).
        portcullis_admin::install_recorder();
    }
    let notify_waker = waker.clone();
    let store = Store::open(config.store.clone(), Some(Arc::new(move || notify_waker.wake())))
        .map_err(|source| ServeError::Store { path: PathBuf::from(config.store.location()), source })?;
    let signals = Signals::new(waker.clone());

    let mut app = App::new();
    app.insert_resource(waker)
        .insert_resource(signals.clone())
        .add_plugins(
            ServerPlugins
                .build()
                .set(RunnerPlugin::from(config.runner))
                .set(SignalPlugin { install_process_handler: false })
                .set(net)
                .set(RpcPlugin { config: config.rpc.clone() })
                .set(SessionPlugin::with_store(config.session.clone(), store))
                .set(AccountsPlugin { config: config.accounts.clone() })
                .set(UserDataPlugin { config: config.userdata.clone() })
                .set(ServicesPlugin::new(config.services.clone())),
        )
        .add_plugins(FrameMetricsPlugin::every(config.metrics_every))
        .add_frame_gauge("connections", |world| {
            world.get_resource::<ConnectionIndex>().map_or(0, |index| index.len() as u64)
        })
        .add_frame_gauge("sessions", |world| {
            world.get_resource::<SessionIndex>().map_or(0, |index| index.sessions() as u64)
        });
    if let Some(admin) = &config.admin {
        app.add_plugins(admin.clone());
    }
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
