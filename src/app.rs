//! Assembling the `serve` app: configuration, plugins, and a server on its own thread.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bevy_app::prelude::*;
use portcullis_net::{ConnectionIndex, NetConfig, NetControl, NetPlugin};
use portcullis_rpc::{RpcConfig, RpcPlugin};
use portcullis_runtime::{
    FrameMetricsAppExt, FrameMetricsPlugin, FrameWaker, RunnerConfig, RunnerPlugin, SignalPlugin, Signals,
};
use portcullis_session::{SessionConfig, SessionIndex, SessionPlugin};
use portcullis_store::{Store, StoreConfig};

use crate::ServerPlugins;

/// Every setting of `portcullis serve` (docs/cli.md), with its defaults
/// (`From<&ServeArgs>` in [`crate::cli`] fills it from the command line).
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// TCP listener address; port 0 picks a free port.
    pub listen: SocketAddr,
    /// Runner: tick rate and frame-rate cap.
    pub runner: RunnerConfig,
    /// Network limits.
    pub net: NetConfig,
    /// JSON-RPC limits.
    pub rpc: RpcConfig,
    /// Session timers and limits.
    pub session: SessionConfig,
    /// Storage.
    pub store: StoreConfig,
    /// How often frame metrics are logged (`--metrics-every`, [`FrameMetricsPlugin`]).
    pub metrics_every: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 7777)),
            runner: RunnerConfig::default(),
            net: NetConfig::default(),
            rpc: RpcConfig::default(),
            session: SessionConfig::default(),
            store: StoreConfig::new("portcullis.db"),
            metrics_every: Duration::from_secs(10),
        }
    }
}

impl ServerConfig {
    /// The defaults with a database file at `db` and the listener on a free
    /// loopback port: what in-process servers of tests and `scenario` use.
    pub fn ephemeral(db: impl Into<PathBuf>) -> Self {
        Self { listen: SocketAddr::from(([127, 0, 0, 1], 0)), store: StoreConfig::new(db), ..Self::default() }
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
    /// The database could not be opened.
    #[error("cannot open the database {path:?}: {source}")]
    Store {
        /// The database file.
        path: PathBuf,
        /// What failed.
        source: portcullis_store::StoreError,
    },
}

/// Builds the `serve` app: binds the listener and opens the store first (so
/// errors are reported, not panicked), then adds [`ServerPlugins`] with
/// `config`'s settings (the runner at `config.runner`, signal handling
/// without a process handler: the caller installs it with
/// [`Signals::install_process_handler`] once per process) and
/// [`FrameMetricsPlugin`] with the `connections` and `sessions` gauges.
/// Returns the app, the bound address and its [`Signals`].
pub fn build_server_app(config: &ServerConfig) -> Result<(App, SocketAddr, Signals), ServeError> {
    let waker = FrameWaker::default();
    let net = NetPlugin::bind(config.listen)
        .map_err(|source| ServeError::Bind { addr: config.listen, source })?
        .with_config(config.net.clone());
    let notify_waker = waker.clone();
    let store = Store::open(config.store.clone(), Some(Arc::new(move || notify_waker.wake())))
        .map_err(|source| ServeError::Store { path: config.store.path.clone(), source })?;
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
                .set(SessionPlugin::with_store(config.session.clone(), store)),
        )
        .add_plugins(FrameMetricsPlugin::every(config.metrics_every))
        .add_frame_gauge("connections", |world| {
            world.get_resource::<ConnectionIndex>().map_or(0, |index| index.len() as u64)
        })
        .add_frame_gauge("sessions", |world| {
            world.get_resource::<SessionIndex>().map_or(0, |index| index.sessions() as u64)
        });
    let addr = app.world().resource::<NetControl>().local_addr().unwrap_or(config.listen);
    Ok((app, addr, signals))
}

/// A server running in this process on its own thread (for `scenario` and tests).
pub struct ServerHandle {
    addr: SocketAddr,
    signals: Signals,
    thread: Option<std::thread::JoinHandle<AppExit>>,
}

impl ServerHandle {
    /// Builds the app on a new thread and runs it; returns once it listens.
    pub fn spawn(config: ServerConfig) -> Result<Self, ServeError> {
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("portcullis-server".into())
            .spawn(move || match build_server_app(&config) {
                Ok((app, addr, signals)) => {
                    let _ = tx.send(Ok((addr, signals)));
                    let mut app = app;
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
