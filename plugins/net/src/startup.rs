//! Binding the listeners at startup, and telling the app how it went.

use std::net::SocketAddr;
use std::sync::Arc;

use bevy_app::AppExit;
use bevy_ecs::prelude::*;

use crate::connection::Transport;
use crate::goodbye::Goodbyes;
use crate::listener::{self, ListenerKind, ListenerSettings};
use crate::{LISTEN_BACKLOG, NetBridge, NetConfig, NetControl};

/// What [`NetPlugin`](crate::NetPlugin) asked to listen on; taken by
/// [`start_listeners`] in `Startup`.
#[derive(Resource, Clone)]
pub(crate) struct ListenPlan {
    pub(crate) tcp: Option<SocketAddr>,
    pub(crate) ws: Option<SocketAddr>,
    pub(crate) tls: Option<Arc<crate::TlsServerConfig>>,
    pub(crate) pages: Arc<Vec<crate::HttpPage>>,
    pub(crate) io_threads: usize,
}

/// Triggered once per listener after every listener is bound, in `Startup`:
/// TCP first. `addr` is the real address (the port the system picked when
/// asked for port 0); `kind` is the transport its connections get.
///
/// `portcullis serve` prints its `listening on` lines from an observer of
/// this event (docs/cli.md).
#[derive(Event, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listening {
    /// The bound address.
    pub addr: SocketAddr,
    /// The transport of the connections it accepts.
    pub kind: Transport,
}

/// A listener could not start: inserted as a resource and triggered as an
/// event in `Startup`, after which the app exits with `AppExit::error()`. No
/// listener is left running and no [`Listening`] is triggered.
#[derive(Event, Resource, Debug, Clone)]
pub struct ListenFailed {
    /// The address asked for.
    pub addr: SocketAddr,
    /// The transport of the listener that failed.
    pub kind: Transport,
    /// What the OS said.
    pub error: Arc<std::io::Error>,
}

impl std::fmt::Display for ListenFailed {
    /// `cannot listen on ADDR: ERROR`, the message `portcullis serve` prints.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cannot listen on {}: {}", self.addr, self.error)
    }
}

/// Binds a non-blocking TCP listener on `addr` with a backlog of [`LISTEN_BACKLOG`].
fn bind_listener(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    // std binds and listens with a backlog of 128; listen(2) again on the
    // listening socket only raises the backlog of its accept queue.
    let listener = std::net::TcpListener::bind(addr)?;
    rustix::net::listen(&listener, LISTEN_BACKLOG)?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// Binds the planned listeners and starts the tokio runtime that serves
/// them; reports [`Listening`] for each (TCP first) once all are bound, or
/// [`ListenFailed`] for the first that fails. Runs in `Startup`.
pub(crate) fn start_listeners(world: &mut World) {
    let Some(plan) = world.remove_resource::<ListenPlan>() else { return };
    let tls = plan.tls.is_some();
    let mut wanted = Vec::new();
    if let Some(addr) = plan.tcp {
        wanted.push((addr, Transport::Tcp { tls }));
    }
    if let Some(addr) = plan.ws {
        wanted.push((addr, Transport::WebSocket { tls }));
    }
    if wanted.is_empty() {
        return;
    }
    let mut bound = Vec::new();
    for &(addr, kind) in &wanted {
        match bind_listener(addr).and_then(|l| Ok((l.local_addr()?, l))) {
            Ok((local, listener)) => bound.push((local, kind, listener)),
            Err(error) => return fail(world, addr, kind, error),
        }
    }
    let runtime = match runtime(plan.io_threads) {
        Ok(runtime) => runtime,
        Err(error) => return fail(world, wanted[0].0, wanted[0].1, error),
    };
    let config = world.resource::<NetConfig>().clone();
    let goodbyes = Arc::new(world.resource::<Goodbyes>().clone());
    let acceptor = plan.tls.clone().map(tokio_rustls::TlsAcceptor::from);
    let bridge = world.resource::<NetBridge>().clone();
    let mut listening = Vec::new();
    for (local, kind, std_listener) in bound {
        let settings = ListenerSettings {
            max_connections: config.max_connections,
            max_frame_bytes: config.max_frame_bytes,
            outbound_queue: config.outbound_queue,
            outbound_queue_bytes: config.outbound_queue_bytes,
            goodbyes: Arc::clone(&goodbyes),
            kind: match kind {
                Transport::WebSocket { .. } => ListenerKind::WebSocket(Arc::clone(&plan.pages)),
                _ => ListenerKind::Lines,
            },
            tls: acceptor.clone(),
            handshake_timeout: config.handshake_timeout,
        };
        let listener = {
            let _guard = runtime.enter();
            match tokio::net::TcpListener::from_std(std_listener) {
                Ok(listener) => listener,
                Err(error) => return fail(world, local, kind, error),
            }
        };
        let control = world.resource::<NetControl>();
        let (stop, open) = (control.stop_accepting.clone(), control.open.clone());
        runtime.spawn(listener::accept_loop(listener, settings, bridge.clone(), stop, open));
        listening.push(Listening { addr: local, kind });
    }
    let mut control = world.resource_mut::<NetControl>();
    for l in &listening {
        match l.kind {
            Transport::WebSocket { .. } => control.ws_local_addr = Some(l.addr),
            _ => control.local_addr = Some(l.addr),
        }
    }
    control.runtime = Some(runtime);
    for l in listening {
        bevy_log::info!(addr = %l.addr, transport = %l.kind, "listening");
        world.trigger(l);
    }
}

/// The network threads of `io_threads` (0: automatic). Automatic is one
/// thread fewer than the cores (at least one): the ECS thread is busy on its
/// own core under load, and on a small machine a second network thread only
/// adds wake-ups and migrations between the two cores (BENCHMARKS.md, "where
/// the time goes"). The hidden variable `PORTCULLIS_IO_THREADS` overrides
/// the automatic count, for benchmarks.
pub(crate) fn io_thread_count(io_threads: usize) -> usize {
    if io_threads > 0 {
        return io_threads;
    }
    if let Some(n) = std::env::var("PORTCULLIS_IO_THREADS").ok().and_then(|v| v.parse::<usize>().ok())
        && n > 0
    {
        return n;
    }
    std::thread::available_parallelism().map_or(1, |n| usize::from(n).saturating_sub(1).max(1))
}

fn runtime(io_threads: usize) -> std::io::Result<tokio::runtime::Runtime> {
    let threads = io_thread_count(io_threads);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .thread_name("portcullis-net")
        .enable_all()
        .build()
}

/// Logs, keeps and triggers the failure, and ends the app with an error.
fn fail(world: &mut World, addr: SocketAddr, kind: Transport, error: std::io::Error) {
    bevy_log::error!(addr = %addr, transport = %kind, error = %error, "cannot listen");
    let failed = ListenFailed { addr, kind, error: Arc::new(error) };
    world.insert_resource(failed.clone());
    world.trigger(failed);
    world.write_message(AppExit::error());
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use bevy_app::App;

    use super::*;
    use crate::NetPlugin;

    fn app_on(addr: SocketAddr) -> (App, Arc<Mutex<Vec<Listening>>>) {
        let mut app = App::new();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&seen);
        app.add_plugins((bevy_time::TimePlugin, NetPlugin::tcp(addr))).add_observer(move |listening: On<Listening>| {
            sink.lock().unwrap_or_else(|p| p.into_inner()).push(*listening)
        });
        (app, seen)
    }

    /// Building binds nothing; the first update binds and reports the real
    /// port. If this failed, `portcullis serve --listen 127.0.0.1:0` could not
    /// tell a script where to connect.
    #[test]
    fn binds_at_startup_and_reports_the_real_address() {
        let (mut app, seen) = app_on(SocketAddr::from(([127, 0, 0, 1], 0)));
        assert_eq!(app.world().resource::<NetControl>().local_addr(), None, "nothing is bound in build");
        app.update();
        let addr = app.world().resource::<NetControl>().local_addr().expect("bound");
        assert_ne!(addr.port(), 0);
        let seen = seen.lock().unwrap_or_else(|p| p.into_inner()).clone();
        assert_eq!(seen, vec![Listening { addr, kind: Transport::Tcp { tls: false } }]);
        assert!(std::net::TcpStream::connect(addr).is_ok(), "the listener accepts");
        assert_eq!(app.should_exit(), None);
    }

    /// A port in use is an error the caller can print, and the app exits
    /// with an error status; nothing panics.
    #[test]
    fn a_port_in_use_is_reported_and_ends_the_app() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a port");
        let addr = taken.local_addr().expect("addr");
        let (mut app, seen) = app_on(addr);
        app.update();
        let failed = app.world().get_resource::<ListenFailed>().expect("the failure is kept");
        assert_eq!(failed.addr, addr);
        assert_eq!(failed.error.kind(), std::io::ErrorKind::AddrInUse);
        assert!(failed.to_string().starts_with(&format!("cannot listen on {addr}: ")), "{failed}");
        assert!(seen.lock().unwrap_or_else(|p| p.into_inner()).is_empty(), "no Listening after a failure");
        assert_eq!(app.should_exit(), Some(AppExit::error()));
    }
}
