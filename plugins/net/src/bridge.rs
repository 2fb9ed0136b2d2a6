//! The channel between the transports and the ECS, and the systems that turn
//! its events into `Connection` entities.

use std::net::SocketAddr;

use bevy_ecs::prelude::*;
use bevy_time::{Real, Time};
use bytes::Bytes;
use crossbeam_channel::{Receiver, Sender};
use portcullis_runtime::FrameWaker;

use crate::NetConfig;
use crate::codec::is_blank;
use crate::connection::{CloseCause, Connection, ConnectionId, Inbox, InboxItem, Link, RateBucket};

/// What a transport tells the ECS. Sent through one `crossbeam_channel`.
#[derive(Debug)]
pub enum NetEvent {
    /// A client connected.
    #[allow(private_interfaces)]
    Connected {
        /// The new connection's id.
        id: ConnectionId,
        /// The peer's address.
        peer: SocketAddr,
        /// The transport's end of the connection.
        link: Link,
    },
    /// One frame (the bytes before `\n`, a trailing `\r` stripped).
    Frame {
        /// The connection.
        id: ConnectionId,
        /// The frame.
        bytes: Bytes,
    },
    /// Several frames of one read, in arrival order (as many [`NetEvent::Frame`]s).
    Frames {
        /// The connection.
        id: ConnectionId,
        /// The frames.
        frames: Vec<Bytes>,
    },
    /// A binary WebSocket message: it carries no frame (docs/protocol.md §1.1).
    Binary {
        /// The connection.
        id: ConnectionId,
    },
    /// A frame passed `max_frame_bytes`; the transport stopped reading.
    TooLarge {
        /// The connection.
        id: ConnectionId,
    },
    /// The client closed its sending side (or the read failed).
    Eof {
        /// The connection.
        id: ConnectionId,
    },
    /// The reader read every byte that was waiting in the socket when
    /// [`Connection::confirm_input_drained`] asked (or it no longer reads);
    /// the frames it read came before this event. Reported as [`InputDrained`].
    Drained {
        /// The connection.
        id: ConnectionId,
    },
    /// The connection is gone; the entity is despawned.
    Closed {
        /// The connection.
        id: ConnectionId,
        /// Why it ended.
        cause: CloseCause,
    },
}

/// The ECS end of the transport channel, plus a sender for new transports
/// (the TCP listener and [`crate::TestClient`] both use it). Inserted by `NetPlugin`.
#[derive(Resource, Clone)]
pub struct NetBridge {
    pub(crate) tx: Sender<NetEvent>,
    pub(crate) rx: Receiver<NetEvent>,
    pub(crate) waker: FrameWaker,
    pub(crate) next_memory_id: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// Ids of socket connections, shared by every listener so that a TCP
    /// and a WebSocket connection never get the same id.
    pub(crate) next_socket_id: std::sync::Arc<std::sync::atomic::AtomicU64>,
    /// Ids of connections whose close began, from [`Connection`] (ECS thread only).
    closing_tx: Sender<ConnectionId>,
    closing_rx: Receiver<ConnectionId>,
}

impl NetBridge {
    pub(crate) fn new(waker: FrameWaker) -> Self {
        let (tx, rx) = crossbeam_channel::unbounded();
        let (closing_tx, closing_rx) = crossbeam_channel::unbounded();
        Self {
            tx,
            rx,
            closing_tx,
            closing_rx,
            waker,
            // In-memory ids count down from the top so they never meet TCP ids.
            next_memory_id: std::sync::Arc::new(std::sync::atomic::AtomicU64::new(u64::MAX)),
            next_socket_id: std::sync::Arc::new(std::sync::atomic::AtomicU64::new(1)),
        }
    }

    /// Pushes an event and wakes the frame loop.
    pub(crate) fn send(&self, event: NetEvent) {
        let _ = self.tx.send(event);
        self.waker.wake();
    }
}

/// Maps connection ids to their entities. Kept by the receive system;
/// read-only for everyone else.
#[derive(Resource, Default, Debug)]
pub struct ConnectionIndex {
    /// foldhash with a fixed seed: the keys are the server's own ids.
    map: bevy_platform::collections::HashMap<ConnectionId, Entity>,
}

impl ConnectionIndex {
    /// The entity of a live connection.
    pub fn get(&self, id: ConnectionId) -> Option<Entity> {
        self.map.get(&id).copied()
    }

    /// Number of open connections (every transport).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether no connection is open.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// Connections whose inbox the layer above must look at, so that no system
/// has to walk every connection every frame (10,000 idle connections cost
/// nothing).
///
/// An entity is marked when its inbox goes from empty to non-empty, when its
/// client half-closes, and (by the layer above) when whatever held its frames
/// back is done. Invariant: a connection with waiting
/// frames that is neither closing nor held is marked. Duplicates are
/// allowed; visiting a connection with nothing to do is harmless.
/// Inserted by `NetPlugin`.
#[derive(Resource, Default, Debug)]
pub struct ReadyInboxes {
    pending: Vec<Entity>,
    visited: Vec<Entity>,
}

impl ReadyInboxes {
    /// Marks a connection to be looked at next.
    pub fn mark(&mut self, entity: Entity) {
        self.pending.push(entity);
    }

    /// Whether some connection waits to be looked at.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Takes the marked connections, in marking order.
    pub fn take_pending(&mut self) -> Vec<Entity> {
        std::mem::take(&mut self.pending)
    }

    /// Records connections the layer above looked at this frame, for the
    /// end-of-frame checks ([`take_visited`](Self::take_visited)).
    pub fn extend_visited(&mut self, entities: impl IntoIterator<Item = Entity>) {
        self.visited.extend(entities);
    }

    /// Takes the connections visited this frame.
    pub fn take_visited(&mut self) -> Vec<Entity> {
        std::mem::take(&mut self.visited)
    }
}

/// Written once for each connection whose close began (by
/// [`Connection::close`], [`Connection::abort`] or a full outbound queue),
/// in [`NetSystems::Closing`](crate::NetSystems::Closing), while the entity still
/// exists: its session can end at once instead of when the transport
/// finishes closing. Closes begun after that set are reported next frame.
#[derive(Message, Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionClosing {
    /// The connection's entity.
    pub entity: Entity,
}

/// Reports the connections whose close began since the last run as
/// [`ConnectionClosing`] messages. Runs in [`NetSystems::Closing`](crate::NetSystems::Closing).
pub fn announce_closing_connections(
    bridge: Res<NetBridge>,
    index: Res<ConnectionIndex>,
    mut closing: MessageWriter<ConnectionClosing>,
) {
    for id in bridge.closing_rx.try_iter() {
        if let Some(entity) = index.get(id) {
            closing.write(ConnectionClosing { entity });
        }
    }
}

/// Written in [`NetSystems::Receive`](crate::NetSystems::Receive) when a
/// connection's transport answered [`Connection::confirm_input_drained`]:
/// every frame that was waiting when it was asked is in the [`Inbox`] now
/// (and counted in [`Inbox::last_activity`]), so a deadline can be judged
/// (docs/protocol.md §6, "Deadlines").
#[derive(Message, Debug, Clone, Copy, PartialEq, Eq)]
pub struct InputDrained {
    /// The connection's entity.
    pub entity: Entity,
}

/// Triggered on a connection's entity right after it is spawned.
#[derive(EntityEvent, Debug, Clone)]
pub struct ConnectionOpened {
    /// The connection's entity.
    pub entity: Entity,
}

/// Triggered on a connection's entity when its transport closed, right before
/// the entity is despawned (its components are still readable in observers).
#[derive(EntityEvent, Debug, Clone)]
pub struct ConnectionClosed {
    /// The connection's entity.
    pub entity: Entity,
    /// Why it ended.
    pub cause: CloseCause,
}

/// Drains the transport channel: spawns, feeds and despawns connection
/// entities. Runs in [`crate::NetSystems::Receive`].
pub fn receive_net_events(world: &mut World) {
    let bridge = world.resource::<NetBridge>().clone();
    let config = world.resource::<NetConfig>().clone();
    let now = world.resource::<Time<Real>>().elapsed();
    // Only the events queued when the frame began: a client whose reader
    // pushes frames faster than this loop handles them must not keep the
    // frame (and every other client) waiting here for as long as it sends.
    // What arrives meanwhile is left for the next frame, which is woken below.
    let queued = bridge.rx.len();
    for event in bridge.rx.try_iter().take(queued) {
        match event {
            NetEvent::Connected { id, peer, link } => {
                let inbox = Inbox {
                    last_activity: now,
                    bucket: RateBucket::full(config.rate_burst, now),
                    ..Default::default()
                };
                let transport = link.transport;
                let conn = Connection::new(id, peer, link, bridge.closing_tx.clone());
                let entity = world.spawn((conn, transport, inbox)).id();
                world.resource_mut::<ConnectionIndex>().map.insert(id, entity);
                bevy_log::debug!(conn = %id, peer = %peer, transport = %transport, "connected");
                world.trigger(ConnectionOpened { entity });
                // Apply what observers queued (components of other plugins)
                // before any later event of this connection is handled.
                world.flush();
            }
            NetEvent::Frame { id, bytes } => {
                if let Some(entity) = world.resource::<ConnectionIndex>().get(id) {
                    frame_arrived(world, entity, bytes, now, &config);
                }
            }
            NetEvent::Frames { id, frames } => {
                if let Some(entity) = world.resource::<ConnectionIndex>().get(id) {
                    for bytes in frames {
                        frame_arrived(world, entity, bytes, now, &config);
                    }
                }
            }
            NetEvent::Binary { id } => {
                let Some(entity) = world.resource::<ConnectionIndex>().get(id) else { continue };
                if let Some(mut inbox) = world.get_mut::<Inbox>(entity) {
                    inbox.last_activity = now;
                    if inbox.eof {
                        continue;
                    }
                    let was_empty = inbox.items.is_empty();
                    inbox.items.push_back(InboxItem::Binary);
                    if was_empty {
                        world.resource_mut::<ReadyInboxes>().mark(entity);
                    }
                }
            }
            NetEvent::TooLarge { id } => {
                let Some(entity) = world.resource::<ConnectionIndex>().get(id) else { continue };
                if let Some(mut inbox) = world.get_mut::<Inbox>(entity) {
                    inbox.items.push_back(InboxItem::TooLarge);
                    world.resource_mut::<ReadyInboxes>().mark(entity);
                }
            }
            NetEvent::Eof { id } => {
                let Some(entity) = world.resource::<ConnectionIndex>().get(id) else { continue };
                if let Some(mut inbox) = world.get_mut::<Inbox>(entity)
                    && !inbox.eof
                {
                    inbox.eof = true;
                    world.resource_mut::<ReadyInboxes>().mark(entity);
                }
            }
            NetEvent::Drained { id } => {
                if let Some(entity) = world.resource::<ConnectionIndex>().get(id) {
                    world.write_message(InputDrained { entity });
                }
            }
            NetEvent::Closed { id, cause } => {
                let Some(entity) = world.resource_mut::<ConnectionIndex>().map.remove(&id) else { continue };
                bevy_log::debug!(conn = %id, cause = %cause, "closed");
                world.trigger(ConnectionClosed { entity, cause });
                world.despawn(entity);
            }
        }
    }
    if !bridge.rx.is_empty() {
        bridge.waker.wake();
    }
}

/// One frame of `entity` arrived at `now`: into its inbox with its admission
/// (rate limit, queue limit), marking the connection ready when the inbox was empty.
fn frame_arrived(world: &mut World, entity: Entity, bytes: Bytes, now: std::time::Duration, config: &NetConfig) {
    let Some(mut inbox) = world.get_mut::<Inbox>(entity) else { return };
    inbox.last_activity = now;
    if inbox.eof || is_blank(&bytes) {
        return;
    }
    let was_empty = inbox.items.is_empty();
    if matches!(inbox.items.back(), Some(InboxItem::Frame { admission: crate::Admission::RefusedClose, .. })) {
        return; // the connection is about to close; read no further
    }
    let admission = if inbox.items.len() >= config.max_queued_frames {
        crate::Admission::RefusedClose
    } else {
        inbox.bucket.admit(now, config.rate_limit, config.rate_burst)
    };
    if inbox.items.capacity() == 0 {
        // Room for a read's worth of frames at once, instead of growing 4, 8, 16.
        inbox.items.reserve(8);
    }
    inbox.items.push_back(InboxItem::Frame { bytes, admission });
    if was_empty {
        world.resource_mut::<ReadyInboxes>().mark(entity);
    }
}
