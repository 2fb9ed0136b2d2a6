//! portcullis_net: the bridge between tokio sockets and Bevy ECS entities.
//!
//! ```text
//!  tokio threads                        ECS (one frame)
//!  accept ──Connected──┐
//!  read line ──Frame───┼─ crossbeam ─▶ NetSystems::Receive: spawn / feed Inbox / despawn
//!  EOF / closed ───────┘                 ... other plugins pop Inbox, send replies ...
//!  write line ◀── bounded queue per connection ── Connection::send / close
//! ```
//!
//! Each client is an entity with a [`Connection`] (id, peer, outbound queue)
//! and an [`Inbox`] (frames not yet handled). Frames are split by
//! [`FrameCodec`] and judged by the per-connection rate limiter on arrival.
//! Unsent output is bounded in messages and bytes; over half of the byte
//! bound the reader pauses (docs/protocol.md §6, "Output"). Before a deadline
//! fires, [`Connection::confirm_input_drained`] has the reader read what is
//! waiting in the socket ([`InputDrained`], docs/protocol.md §6, "Deadlines").
//! [`TestClient`] is an in-memory transport through the same systems, for
//! tests without sockets.
//!
//! Listeners ([`NetPlugin`], bound in `Startup`): TCP lines
//! (docs/protocol.md §1) and WebSocket text messages with a few fixed HTTP
//! pages on the same port (§1.1, `ws.rs`, `http.rs`), either inside TLS
//! (§1.2). Every transport hands the ECS the same events, and each
//! connection's [`Transport`] says which one carries it; nothing above this
//! crate needs to know. What is said to a connection refused before it
//! becomes an entity comes from the layers above ([`Goodbyes`]).
#![forbid(unsafe_code)]

mod bridge;
mod codec;
mod connection;
mod goodbye;
mod http;
mod listener;
mod outq;
mod startup;
mod stream;
mod testing;
mod ws;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use bevy_app::prelude::*;
use bevy_ecs::prelude::*;
use portcullis_runtime::FrameWaker;
use tokio_util::sync::CancellationToken;

pub use bridge::*;
pub use codec::*;
pub use connection::*;
pub use goodbye::*;
pub use http::HttpPage;
pub use startup::{ListenFailed, Listening};
pub use testing::*;
/// The TLS server configuration type of [`NetPlugin::tls`] (rustls, through tokio-rustls).
pub use tokio_rustls::rustls::ServerConfig as TlsServerConfig;

/// Where in the frame the network plugin works: `Receive` and `Closing` in
/// `PreUpdate`, `Send` in `PostUpdate`, so systems in `Update` see this
/// frame's input and what they send leaves in the same frame. Put anything
/// that reads inboxes after `Receive` in `PreUpdate`.
#[derive(SystemSet, Debug, Clone, PartialEq, Eq, Hash)]
pub enum NetSystems {
    /// Drain the transport channel into `Connection` entities and inboxes.
    Receive,
    /// Report connections whose close began ([`ConnectionClosing`]). In
    /// `PreUpdate` after `Receive`; the layers above order it among their systems.
    Closing,
    /// In `PostUpdate`: after everything that answers input and before the
    /// frame ends (the layer above closes finished connections here).
    Send,
}

/// Limits of the network layer, inserted as a resource by [`NetPlugin`] (read-only).
#[derive(Resource, Debug, Clone)]
pub struct NetConfig {
    /// Connections open at once, every listener together; one more gets the
    /// [`Goodbyes::server_full`] goodbye (docs/protocol.md §6).
    pub max_connections: usize,
    /// Largest frame in bytes, before the `\n` (docs/protocol.md §1).
    pub max_frame_bytes: usize,
    /// Messages queued for one connection before it is closed as a slow reader
    /// (docs/protocol.md §6, "Output").
    pub outbound_queue: usize,
    /// Bytes of unsent output (each message with its `\n`) for one connection
    /// before it is closed as a slow reader; while more than half of it is
    /// unsent, no more frames are read from that connection
    /// (docs/protocol.md §6, "Output"; `--outbound-queue-bytes`, default 1 MiB).
    pub outbound_queue_bytes: usize,
    /// Rate-limit refill, frames per second per connection (docs/protocol.md §6).
    pub rate_limit: f64,
    /// Rate-limit bucket size; also the refusals per second that close a connection.
    pub rate_burst: u32,
    /// Frames one connection may have waiting (behind a request that waits
    /// on the store); one more is refused and closes the connection like a
    /// rate-limit flood. Bounds memory when the rate limit is raised.
    pub max_queued_frames: usize,
    /// The TLS handshake and a WebSocket port's HTTP request head must be
    /// done within this after the accept, or the socket is closed without a
    /// word (docs/protocol.md §1.2); the server app sets it to the login timeout.
    pub handshake_timeout: std::time::Duration,
}

impl Default for NetConfig {
    fn default() -> Self {
        Self {
            max_connections: 10_000,
            max_frame_bytes: 131_072,
            outbound_queue: 256,
            outbound_queue_bytes: 1 << 20,
            rate_limit: 50.0,
            rate_burst: 100,
            max_queued_frames: 1024,
            handshake_timeout: std::time::Duration::from_secs(5),
        }
    }
}

/// The network plugin: the listeners (unless built with
/// [`NetPlugin::memory`]) and the systems that turn their traffic into
/// entities.
///
/// `build` only inserts resources and systems; the listeners are bound in
/// `Startup` (the first `app.update()`). Once every listener is bound,
/// [`Listening`] is triggered for each, in order, and
/// [`NetControl::local_addr`] has the real address. A bind that fails is
/// logged as an error, kept as the [`ListenFailed`] resource (and triggered as
/// that event), and ends the app with `AppExit::error()`; nothing panics.
///
/// # Examples
///
/// ```no_run
/// use bevy_app::App;
/// use bevy_ecs::observer::On;
/// use portcullis_net::{Listening, NetPlugin};
///
/// let mut app = App::new();
/// app.add_plugins((bevy_time::TimePlugin, NetPlugin::tcp("127.0.0.1:0".parse().unwrap())))
///     .add_observer(|listening: On<Listening>| println!("listening on {}", listening.addr));
/// app.update(); // binds
/// ```
pub struct NetPlugin {
    /// Limits, copied into the [`NetConfig`] resource.
    pub config: NetConfig,
    /// Address of the TCP listener (lines, docs/protocol.md §1); port 0 picks
    /// a free port. `None`: no TCP listener.
    pub listen: Option<SocketAddr>,
    /// Address of the WebSocket listener (docs/protocol.md §1.1); `None`: none.
    pub ws_listen: Option<SocketAddr>,
    /// TLS on every listener (docs/protocol.md §1.2); `None`: plain text.
    pub tls: Option<Arc<TlsServerConfig>>,
    /// Pages served to plain HTTP `GET`s on the WebSocket port (any other
    /// path is `404`, docs/protocol.md §1.1).
    pub http_pages: Vec<HttpPage>,
    /// Threads of the tokio runtime (0 = automatic: one fewer than the
    /// cores, at least one; the hidden variable `PORTCULLIS_IO_THREADS`
    /// overrides the automatic count).
    pub io_threads: usize,
}

impl Default for NetPlugin {
    fn default() -> Self {
        Self {
            config: NetConfig::default(),
            listen: Some(SocketAddr::from(([127, 0, 0, 1], 7777))),
            ws_listen: None,
            tls: None,
            http_pages: Vec::new(),
            io_threads: 0,
        }
    }
}

impl NetPlugin {
    /// Only the in-memory transport ([`TestClient`]): no socket, no threads.
    pub fn memory() -> Self {
        Self { listen: None, ..Default::default() }
    }

    /// A TCP listener on `addr`, bound at startup.
    pub fn tcp(addr: SocketAddr) -> Self {
        Self { listen: Some(addr), ..Default::default() }
    }

    /// Replaces the limits.
    pub fn with_config(mut self, config: NetConfig) -> Self {
        self.config = config;
        self
    }
}

/// The listen backlog asked for; the kernel caps it at `net.core.somaxconn`
/// (4,096 by default on Linux). docs/cli.md asks for at least 1,024, so that
/// a reconnect storm is not throttled by the kernel's SYN retries.
pub const LISTEN_BACKLOG: i32 = 4096;

/// Control of the listeners, inserted as a resource by [`NetPlugin`].
#[derive(Resource)]
pub struct NetControl {
    pub(crate) local_addr: Option<SocketAddr>,
    pub(crate) ws_local_addr: Option<SocketAddr>,
    pub(crate) stop_accepting: CancellationToken,
    pub(crate) open: Arc<AtomicUsize>,
    pub(crate) runtime: Option<tokio::runtime::Runtime>,
}

impl NetControl {
    /// The address the TCP listener is bound to (the real port when asked
    /// for port 0); `None` before `Startup` or without a TCP listener.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local_addr
    }

    /// The address the WebSocket listener is bound to; `None` before
    /// `Startup` or without one.
    pub fn ws_local_addr(&self) -> Option<SocketAddr> {
        self.ws_local_addr
    }

    /// Closes the listeners: new connections are refused (graceful shutdown, docs/protocol.md §6).
    pub fn stop_accepting(&self) {
        self.stop_accepting.cancel();
    }

    /// Open socket connections, as counted by the accept loops.
    pub fn open_tcp_connections(&self) -> usize {
        self.open.load(std::sync::atomic::Ordering::Acquire)
    }
}

impl Drop for NetControl {
    fn drop(&mut self) {
        self.stop_accepting.cancel();
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

impl Plugin for NetPlugin {
    fn build(&self, app: &mut App) {
        let waker = app.world().get_resource::<FrameWaker>().cloned().unwrap_or_default();
        let bridge = NetBridge::new(waker.clone());
        let control = NetControl {
            local_addr: None,
            ws_local_addr: None,
            stop_accepting: CancellationToken::new(),
            open: Arc::new(AtomicUsize::new(0)),
            runtime: None,
        };
        let plan = startup::ListenPlan {
            tcp: self.listen,
            ws: self.ws_listen,
            tls: self.tls.clone(),
            pages: Arc::new(self.http_pages.clone()),
            io_threads: self.io_threads,
        };

        app.insert_resource(waker)
            .insert_resource(bridge)
            .insert_resource(self.config.clone())
            .insert_resource(control)
            .insert_resource(plan)
            .init_resource::<Goodbyes>()
            .init_resource::<ConnectionIndex>()
            .init_resource::<ReadyInboxes>()
            .add_message::<ConnectionClosing>()
            .add_message::<InputDrained>()
            .add_systems(Startup, startup::start_listeners)
            .configure_sets(PreUpdate, (NetSystems::Receive, NetSystems::Closing).chain())
            .configure_sets(PostUpdate, NetSystems::Send)
            .add_systems(PreUpdate, receive_net_events.in_set(NetSystems::Receive))
            .add_systems(PreUpdate, announce_closing_connections.in_set(NetSystems::Closing));
    }
}
