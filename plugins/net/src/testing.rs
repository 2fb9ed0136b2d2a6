//! The in-memory transport: connections into a running `App` without a socket.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bevy_app::App;
use bevy_ecs::prelude::*;
use bytes::BytesMut;
use crossbeam_channel::{Receiver, Sender, TryRecvError};
use tokio_util::codec::Decoder;

use crate::NetConfig;
use crate::bridge::{ConnectionIndex, NetBridge, NetEvent};
use crate::codec::{FrameCodec, FrameError};
use crate::connection::{CloseCause, ConnectionId, DrainStatus, Link, Outbound, Outgoing, SharedState, Transport};

/// The [`Outbound`] of the in-memory transport: a bounded queue that the
/// [`TestClient`] reads, and the transport channel, on which it reports the
/// close itself (there is no writer task to do it).
#[derive(Debug)]
struct MemoryOutbound {
    id: ConnectionId,
    tx: Sender<Outgoing>,
    events: Sender<NetEvent>,
}

impl Outbound for MemoryOutbound {
    fn push(&self, item: Outgoing) -> bool {
        let close = matches!(item, Outgoing::Close { .. });
        if matches!(self.tx.try_send(item), Err(crossbeam_channel::TrySendError::Full(_))) {
            return false;
        }
        if close {
            let _ = self.events.send(NetEvent::Closed { id: self.id, cause: CloseCause::Server });
        }
        true
    }

    fn abort(&self) {
        let _ = self.events.send(NetEvent::Closed { id: self.id, cause: CloseCause::Aborted });
    }

    /// Every frame reached the ECS when the test sent it.
    fn request_drain(&self, _shared: &SharedState) -> DrainStatus {
        DrainStatus::Drained
    }
}

/// A client connected to an `App` through memory instead of a socket.
///
/// It goes through the same framing, limits and systems as a TCP client: the
/// bytes it sends are split into frames by the same decoder (so an oversize
/// line behaves as on TCP), and it reads exactly the lines the server wrote.
/// Nothing happens until the test runs `app.update()`; no thread, no sleep.
///
/// # Examples
///
/// ```
/// use bevy_app::App;
/// use portcullis_net::{NetPlugin, TestClient};
///
/// let mut app = App::new();
/// app.add_plugins((bevy_time::TimePlugin, NetPlugin::memory()));
/// let mut client = TestClient::connect(&mut app);
/// app.update(); // the connection entity is spawned
/// assert!(client.entity(&app).is_some());
/// client.disconnect();
/// app.update();
/// assert!(client.entity(&app).is_none());
/// ```
pub struct TestClient {
    id: ConnectionId,
    bridge: NetBridge,
    out: Receiver<Outgoing>,
    codec: FrameCodec,
    buf: BytesMut,
    lines: std::collections::VecDeque<String>,
    server_closed: bool,
    client_closed: bool,
    shared: Arc<SharedState>,
    /// Frames sent while the server had more than half of
    /// `outbound_queue_bytes` unsent to this client: like bytes left in a
    /// socket the server does not read, they reach it once the client read
    /// enough (docs/protocol.md §6, "Output").
    held: std::collections::VecDeque<NetEvent>,
}

impl TestClient {
    /// Opens a connection from `127.0.0.1:40000`. The entity appears on the next `app.update()`.
    pub fn connect(app: &mut App) -> Self {
        Self::connect_from(app, SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 40000))
    }

    /// Opens a connection that the server sees as coming from `peer`.
    pub fn connect_from(app: &mut App, peer: SocketAddr) -> Self {
        Self::connect_world(app.world_mut(), peer)
    }

    /// Like [`connect_from`](Self::connect_from), for code that only has the `World`.
    pub fn connect_world(world: &mut World, peer: SocketAddr) -> Self {
        let bridge = world.resource::<NetBridge>().clone();
        let config = world.resource::<NetConfig>().clone();
        let id = ConnectionId(bridge.next_memory_id.fetch_sub(1, Ordering::Relaxed));
        let (tx, out) = crossbeam_channel::bounded(config.outbound_queue.max(1));
        let shared = SharedState::new(config.outbound_queue_bytes);
        let outbound = Box::new(MemoryOutbound { id, tx, events: bridge.tx.clone() });
        let link =
            Link { transport: Transport::Memory, shared: Arc::clone(&shared), outbound, handshake: Duration::ZERO };
        bridge.send(NetEvent::Connected { id, peer, link });
        Self {
            id,
            bridge,
            out,
            codec: FrameCodec::new(config.max_frame_bytes),
            buf: BytesMut::new(),
            lines: Default::default(),
            server_closed: false,
            client_closed: false,
            shared,
            held: Default::default(),
        }
    }

    /// This connection's id.
    pub fn id(&self) -> ConnectionId {
        self.id
    }

    /// The connection's entity, once spawned and while it lives.
    pub fn entity(&self, app: &App) -> Option<Entity> {
        app.world().resource::<ConnectionIndex>().get(self.id)
    }

    /// Sends one line; the `\n` is added.
    pub fn send_line(&mut self, line: &str) {
        let mut bytes = Vec::with_capacity(line.len() + 1);
        bytes.extend_from_slice(line.as_bytes());
        bytes.push(b'\n');
        self.send_bytes(&bytes);
    }

    /// Sends raw bytes, split into frames exactly as a TCP stream would be.
    /// After a frame that is too large, nothing more is read (docs/protocol.md §1).
    pub fn send_bytes(&mut self, bytes: &[u8]) {
        if self.client_closed {
            return;
        }
        self.buf.extend_from_slice(bytes);
        loop {
            match self.codec.decode(&mut self.buf) {
                Ok(Some(frame)) => self.deliver(NetEvent::Frame { id: self.id, bytes: frame }),
                Ok(None) => break,
                Err(FrameError::TooLarge | FrameError::Io(_)) => {
                    self.deliver(NetEvent::TooLarge { id: self.id });
                    self.client_closed = true;
                    self.buf.clear();
                    break;
                }
            }
        }
    }

    /// Sends one binary message, as a WebSocket client can (docs/protocol.md
    /// §1.1): it reaches the inbox as [`InboxItem::Binary`](crate::InboxItem::Binary).
    pub fn send_binary(&mut self) {
        if !self.client_closed {
            self.deliver(NetEvent::Binary { id: self.id });
        }
    }

    /// Bytes the server wrote to this client that it has not read yet.
    pub fn unsent_bytes(&self) -> usize {
        self.shared.unsent()
    }

    /// Frames sent but not yet handed to the server, because the server
    /// reads nothing from a connection with more than half of
    /// `outbound_queue_bytes` unsent (docs/protocol.md §6, "Output").
    pub fn held_frames(&self) -> usize {
        self.held.len()
    }

    /// Hands an input event to the server, or holds it (in order) while the
    /// server does not read this connection.
    fn deliver(&mut self, event: NetEvent) {
        if self.held.is_empty() && !self.shared.over_half() {
            self.bridge.send(event);
        } else {
            self.held.push_back(event);
        }
    }

    /// Hands over held input once the server reads this connection again.
    fn release_held(&mut self) {
        while !self.held.is_empty() && !self.shared.over_half() {
            if let Some(event) = self.held.pop_front() {
                self.bridge.send(event);
            }
        }
    }

    /// The next line the server wrote, if any (without its `\n`).
    pub fn recv_line(&mut self) -> Option<String> {
        self.pull();
        self.lines.pop_front()
    }

    /// Every line the server wrote since the last read.
    pub fn recv_lines(&mut self) -> Vec<String> {
        self.pull();
        self.lines.drain(..).collect()
    }

    /// Whether the server closed this connection (its last lines may still be unread).
    pub fn is_closed(&mut self) -> bool {
        self.pull();
        self.server_closed
    }

    fn pull(&mut self) {
        while !self.server_closed {
            match self.out.try_recv() {
                Ok(Outgoing::Line(line)) => {
                    self.shared.sent(line.len() + 1);
                    self.lines.push_back(line);
                }
                Ok(Outgoing::Close { .. }) | Err(TryRecvError::Disconnected) => self.server_closed = true,
                Err(TryRecvError::Empty) => break,
            }
        }
        self.release_held();
    }

    /// Closes the connection from the client side, as a TCP client closing its socket.
    pub fn disconnect(&mut self) {
        self.held.clear(); // a closed socket's unread input is gone with it
        if !self.client_closed {
            self.client_closed = true;
            self.bridge.send(NetEvent::Eof { id: self.id });
        }
        self.bridge.send(NetEvent::Closed { id: self.id, cause: CloseCause::Peer });
    }

    /// Half-closes: the client sends no more, but still reads (like `nc -q1`).
    pub fn shutdown_write(&mut self) {
        if !self.client_closed {
            self.client_closed = true;
            self.deliver(NetEvent::Eof { id: self.id });
        }
    }
}

impl Drop for TestClient {
    fn drop(&mut self) {
        if !self.server_closed {
            self.bridge.send(NetEvent::Closed { id: self.id, cause: CloseCause::Peer });
        }
    }
}
