//! Sending answers and notifications from any system.

use bevy_ecs::prelude::*;
use bevy_ecs::system::SystemParam;
use portcullis_net::{Connection, FrameWaker, ReadyInboxes, SendStatus};
use serde::Serialize;
use serde_json::json;

use crate::envelope::{error_line, notification_line, result_line};
use crate::error::{ErrorCode, RpcError};
use crate::reason::DisconnectReason;
use crate::registry::ReplyTo;

/// JSON-RPC bookkeeping of one connection. Inserted on every connection
/// entity by `RpcPlugin`; changed only by the dispatcher and [`Rpc`].
#[derive(Component, Debug, Default)]
pub struct RpcState {
    /// `-32700` / `-32600` answers so far (docs/protocol.md §1).
    pub protocol_errors: u32,
    /// Tickets of requests answered [`Reply::Later`](crate::Reply::Later)
    /// that still hold the connection's later frames.
    pub(crate) held: Vec<u64>,
}

impl RpcState {
    /// Whether an unanswered request holds the connection's later frames.
    pub fn is_held(&self) -> bool {
        !self.held.is_empty()
    }
}

/// Sends answers, notifications and goodbyes. A system parameter usable by
/// any system; it never blocks (it only queues on the connection).
///
/// # Examples
///
/// ```
/// use bevy_ecs::prelude::*;
/// use portcullis_rpc::Rpc;
///
/// /// Tells every connection the server's tick count.
/// fn announce(mut rpc: Rpc, connections: Query<Entity, With<portcullis_net::Connection>>) {
///     rpc.notify_many(connections.iter(), "tick", &serde_json::json!({"n": 1}));
/// }
/// ```
#[derive(SystemParam)]
pub struct Rpc<'w, 's> {
    connections: Query<'w, 's, (&'static Connection, Option<&'static mut RpcState>)>,
    ready: ResMut<'w, ReadyInboxes>,
    waker: Option<Res<'w, FrameWaker>>,
}

impl Rpc<'_, '_> {
    /// Answers a request that returned [`Reply::Later`](crate::Reply::Later)
    /// and releases its hold. Nothing is sent for a notification or a closed
    /// connection.
    pub fn respond<R: Serialize>(&mut self, to: &ReplyTo, result: Result<R, RpcError>) {
        if let Some(line) = answer_line(to, result)
            && let Ok((conn, _)) = self.connections.get(to.entity)
        {
            conn.send(line);
        }
        self.release(to);
    }

    /// Lets the connection's later frames go before `to` is answered (the
    /// answer may still be sent with [`respond`](Self::respond)).
    pub fn release(&mut self, to: &ReplyTo) {
        let Ok((_, Some(mut state))) = self.connections.get_mut(to.entity) else { return };
        if let Some(pos) = state.held.iter().position(|t| *t == to.ticket) {
            state.held.swap_remove(pos);
            if state.held.is_empty() {
                // The frames that waited (or a pending end of stream) are handled next frame.
                self.ready.mark(to.entity);
                if let Some(waker) = &self.waker {
                    waker.wake();
                }
            }
        }
    }

    /// Sends a notification (`{"jsonrpc":"2.0","method":M,"params":P}`) to one connection.
    pub fn notify<P: Serialize + ?Sized>(&self, entity: Entity, method: &str, params: &P) -> SendStatus {
        let Ok((conn, _)) = self.connections.get(entity) else { return SendStatus::Closing };
        match notification_line(method, params) {
            Ok(line) => conn.send(line),
            Err(e) => {
                bevy_log::error!(method, error = %e, "notification did not serialize");
                SendStatus::Closing
            }
        }
    }

    /// Sends one notification to many connections (serialized once).
    pub fn notify_many<P: Serialize + ?Sized>(
        &self,
        entities: impl IntoIterator<Item = Entity>,
        method: &str,
        params: &P,
    ) {
        let Ok(line) = notification_line(method, params) else { return };
        for entity in entities {
            if let Ok((conn, _)) = self.connections.get(entity) {
                conn.send(line.clone());
            }
        }
    }

    /// Sends `disconnected {"reason":R}` and closes the connection (docs/protocol.md §5).
    pub fn disconnect(&self, entity: Entity, reason: DisconnectReason) {
        let Ok((conn, _)) = self.connections.get(entity) else { return };
        send_disconnect(conn, reason);
    }

    /// The connection behind an entity.
    pub fn connection(&self, entity: Entity) -> Option<&Connection> {
        self.connections.get(entity).ok().map(|(c, _)| c)
    }
}

/// The line answering `to`, if it is a request.
pub(crate) fn answer_line<R: Serialize>(to: &ReplyTo, result: Result<R, RpcError>) -> Option<String> {
    let id = to.id.as_ref()?;
    Some(match result.and_then(|r| serde_json::to_string(&r).map_err(|_| RpcError::new(ErrorCode::InternalError))) {
        Ok(json) => result_line(id, &json),
        Err(error) => error_line(id, &error),
    })
}

/// Sends `disconnected {reason}` and closes.
pub fn send_disconnect(conn: &Connection, reason: DisconnectReason) {
    bevy_log::debug!(conn = %conn.id(), reason = %reason, "disconnecting");
    if let Ok(line) = notification_line("disconnected", &json!({ "reason": reason })) {
        conn.send(line);
    }
    conn.close();
}
