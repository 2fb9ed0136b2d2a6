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
#![forbid(unsafe_code)]

mod bridge;
mod codec;
mod connection;
mod listener;
mod testing;

use std::net::SocketAddr;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};

use bevy_app::prelude::*;
use bevy_ecs::prelude::*;
use portcullis_runtime::FrameWaker;
use tokio_util::sync::CancellationToken;

pub use bridge::*;
pub use codec::*;
pub use connection::*;
pub use listener::{SERVER_FULL_LINE, SERVER_SHUTDOWN_LINE};
pub use testing::*;

/// Where in the frame the network plugin works: `Receive` and `Closing` in
/// `PreUpdate`, `Send` in `PostUpdate`, so systems in `Update` see this
/// frame's input and what they send leaves in the same frame. Put anything
/// that reads inboxes after `Receive` in `PreUpdate`.
#[derive(SystemSet, Debug, Clone, PartialEq, Eq, Hash)]
pub enum NetSystems {
    /// Drain the transport channel into `Connection` entities and inboxes.
    Receive,
    /// Report connections whose close began ([`ConnectionClosing`]). In
    /// `PreUpdate` after `Receive`; the layers above order it after their
    /// handling of the frames and before their timers.
    Closing,
    /// In `PostUpdate`: after everything that answers requests and before
    /// the frame ends (the layer above closes finished connections here).
    Send,
}

/// Limits of the network layer, inserted as a resource by [`NetPlugin`] (read-only).
#[derive(Resource, Debug, Clone)]
pub struct NetConfig {
    /// Connections open at once; one more gets `server_full` (docs/protocol.md §6).
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
        }
    }
}

/// The network plugin: a TCP listener (unless built with
/// [`NetPlugin::memory`]) and the systems that turn its traffic into entities.
///
/// # Examples
///
/// ```no_run
/// use bevy_app::App;
/// use portcullis_net::NetPlugin;
///
/// let plugin = NetPlugin::bind("127.0.0.1:0".parse().unwrap()).expect("bind");
/// let mut app = App::new();
/// app.add_plugins((bevy_time::TimePlugin, plugin));
/// ```
pub struct NetPlugin {
    /// Limits, copied into the [`NetConfig`] resource.
    pub config: NetConfig,
    /// Address to listen on; `None` serves only the in-memory transport.
    /// Binding happens in `build` and panics on failure; use
    /// [`NetPlugin::bind`] to handle the error yourself.
    pub listen: Option<SocketAddr>,
    /// Threads of the tokio runtime (0 = one per core).
    pub io_threads: usize,
    bound: Mutex<Option<std::net::TcpListener>>,
}

impl Default for NetPlugin {
    fn default() -> Self {
        Self {
            config: NetConfig::default(),
            listen: Some(SocketAddr::from(([127, 0, 0, 1], 7777))),
            io_threads: 0,
            bound: Mutex::new(None),
        }
    }
}

impl NetPlugin {
    /// Only the in-memory transport ([`TestClient`]): no socket, no threads.
    pub fn memory() -> Self {
        Self { listen: None, ..Default::default() }
    }

    /// Binds `addr` now, so the caller sees a bind error (and learns the port
    /// when `addr` has port 0, via [`NetControl::local_addr`] once built).
    pub fn bind(addr: SocketAddr) -> std::io::Result<Self> {
        let listener = bind_listener(addr)?;
        Ok(Self { listen: Some(addr), bound: Mutex::new(Some(listener)), ..Default::default() })
    }

    /// Replaces the limits.
    pub fn with_config(mut self, config: NetConfig) -> Self {
        self.config = config;
        self
    }

    fn take_listener(&self) -> Option<std::net::TcpListener> {
        let bound = self.bound.lock().unwrap_or_else(|p| p.into_inner()).take();
        bound.or_else(|| {
            let addr = self.listen?;
            let listener = bind_listener(addr).unwrap_or_else(|e| panic!("NetPlugin: cannot listen on {addr}: {e}"));
            Some(listener)
        })
    }
}

/// The listen backlog asked for; the kernel caps it at `net.core.somaxconn`
/// (4,096 by default on Linux). docs/cli.md asks for at least 1,024, so that
/// a reconnect storm is not throttled by the kernel's SYN retries.
pub const LISTEN_BACKLOG: i32 = 4096;

/// Binds a non-blocking TCP listener on `addr` with a backlog of [`LISTEN_BACKLOG`].
fn bind_listener(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    // std binds and listens with a backlog of 128; listen(2) again on the
    // listening socket only raises the backlog of its accept queue.
    let listener = std::net::TcpListener::bind(addr)?;
    rustix::net::listen(&listener, LISTEN_BACKLOG)?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// Control of the TCP side, inserted as a resource by [`NetPlugin`].
#[derive(Resource)]
pub struct NetControl {
    local_addr: Option<SocketAddr>,
    stop_accepting: CancellationToken,
    open: Arc<AtomicUsize>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl NetControl {
    /// The address the listener is bound to (the real port when asked for port 0).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local_addr
    }

    /// Closes the listener: new connections are refused (graceful shutdown, docs/protocol.md §6).
    pub fn stop_accepting(&self) {
        self.stop_accepting.cancel();
    }

    /// Open TCP connections, as counted by the accept loop.
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
        let stop_accepting = CancellationToken::new();
        let open = Arc::new(AtomicUsize::new(0));
        let mut control =
            NetControl { local_addr: None, stop_accepting: stop_accepting.clone(), open: open.clone(), runtime: None };

        if let Some(std_listener) = self.take_listener() {
            control.local_addr = std_listener.local_addr().ok();
            let threads = if self.io_threads == 0 {
                std::thread::available_parallelism().map_or(2, usize::from)
            } else {
                self.io_threads
            };
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(threads)
                .thread_name("portcullis-net")
                .enable_all()
                .build()
                .unwrap_or_else(|e| panic!("NetPlugin: cannot start the tokio runtime: {e}"));
            let settings = listener::ListenerSettings {
                max_connections: self.config.max_connections,
                max_frame_bytes: self.config.max_frame_bytes,
                outbound_queue: self.config.outbound_queue,
                outbound_queue_bytes: self.config.outbound_queue_bytes,
            };
            let listener = {
                let _guard = runtime.enter();
                tokio::net::TcpListener::from_std(std_listener)
                    .unwrap_or_else(|e| panic!("NetPlugin: cannot register the listener: {e}"))
            };
            runtime.spawn(listener::accept_loop(listener, settings, bridge.clone(), stop_accepting, open));
            control.runtime = Some(runtime);
            if let Some(addr) = control.local_addr {
                bevy_log::info!(addr = %addr, "listening");
            }
        }

        app.insert_resource(waker)
            .insert_resource(bridge)
            .insert_resource(self.config.clone())
            .insert_resource(control)
            .init_resource::<ConnectionIndex>()
            .init_resource::<ReadyInboxes>()
            .add_message::<ConnectionClosing>()
            .add_message::<InputDrained>()
            .configure_sets(PreUpdate, (NetSystems::Receive, NetSystems::Closing).chain())
            .configure_sets(PostUpdate, NetSystems::Send)
            .add_systems(PreUpdate, receive_net_events.in_set(NetSystems::Receive))
            .add_systems(PreUpdate, announce_closing_connections.in_set(NetSystems::Closing));
    }
}
