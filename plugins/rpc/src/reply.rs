//! Sending answers and notifications from any system.

use bevy_ecs::prelude::*;
use bevy_ecs::system::SystemParam;
use portcullis_net::{Connection, Goodbye, ReadyInboxes, SendStatus};
use portcullis_runtime::FrameWaker;
use serde::Serialize;
use serde_json::json;

use crate::batch::{Batch, Filled};
use crate::registry::ReplyTo;
use portcullis_protocol::{
    DisconnectReason, ErrorCode, RpcError, error_line, notification, notification_line, raw_error_line, result_line,
};

/// JSON-RPC bookkeeping of one connection. Inserted on every connection
/// entity by `RpcPlugin`; changed only by the dispatcher and [`Rpc`].
#[derive(Component, Debug, Default)]
pub struct RpcState {
    /// `-32700` / `-32600` answers so far (docs/protocol.md §1).
    pub protocol_errors: u32,
    /// Tickets of requests answered [`Reply::Later`](crate::Reply::Later)
    /// that still hold the connection's later frames.
    pub(crate) held: Vec<u64>,
    /// Batches not answered yet, oldest first; only the last may still
    /// have members to run (docs/protocol.md §2).
    pub(crate) batches: Vec<Batch>,
    /// Requests not answered yet and their method (counted when answered).
    pub(crate) awaiting: Vec<(u64, crate::MethodKey)>,
}

impl RpcState {
    /// Forgets the request `ticket`; its method if it was awaiting an answer.
    pub(crate) fn answered(&mut self, ticket: u64) -> Option<crate::MethodKey> {
        let pos = self.awaiting.iter().position(|(t, _)| *t == ticket)?;
        Some(self.awaiting.swap_remove(pos).1)
    }

    /// Requests of this connection that wait for their answer (0 when every
    /// request was answered, however many came before).
    pub fn awaiting_answers(&self) -> usize {
        self.awaiting.len()
    }

    /// Whether an unanswered request holds the connection's later frames.
    pub fn is_held(&self) -> bool {
        !self.held.is_empty()
    }

    /// Whether a batch of this connection waits for members to run or for answers.
    pub fn has_batches(&self) -> bool {
        !self.batches.is_empty()
    }

    /// The batch whose members are still running, if any.
    pub(crate) fn executing_batch(&mut self) -> Option<&mut Batch> {
        self.batches.last_mut().filter(|b| b.is_executing())
    }

    /// The array of the last batch, once every member ran and was answered.
    pub(crate) fn take_finished_batch(&mut self) -> Option<String> {
        if self.batches.last().is_some_and(Batch::is_finished) {
            return self.batches.pop().and_then(Batch::into_line);
        }
        None
    }

    /// Puts an answer into its batch entry, if `ticket` is a batch member's.
    pub(crate) fn fill_entry(&mut self, ticket: u64, line: String) -> Filled {
        let mut line = line;
        for index in 0..self.batches.len() {
            match self.batches[index].fill(ticket, line) {
                Ok(()) if self.batches[index].is_finished() => {
                    return Filled::Completed(self.batches.remove(index).into_line());
                }
                Ok(()) => return Filled::Kept,
                Err(back) => line = back,
            }
        }
        Filled::NotInBatch(line)
    }

    /// Forgets the entry reserved for `ticket` (its member is never answered).
    pub(crate) fn cancel_entry(&mut self, ticket: u64) {
        if let Some(batch) = self.batches.last_mut() {
            batch.cancel_entry(ticket);
        }
    }

    /// Ends every batch: the arrays of their entries so far (sent before a
    /// `disconnected`, docs/protocol.md §2).
    pub(crate) fn take_batch_lines(&mut self) -> Vec<String> {
        self.batches.drain(..).filter_map(Batch::into_line).collect()
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
    counters: Option<ResMut<'w, crate::RequestCounters>>,
}

impl Rpc<'_, '_> {
    /// Answers a request that returned [`Reply::Later`](crate::Reply::Later)
    /// and releases its hold. Nothing is sent for a notification or a closed
    /// connection.
    /// A batch member's answer goes into its batch's array, which is sent
    /// once every member is answered (docs/protocol.md §2).
    pub fn respond<R: Serialize>(&mut self, to: &ReplyTo, result: Result<R, RpcError>) {
        let answer = answer_line_and_error(to, result).map(|(line, error)| (line, error.map(|e| e.code.code())));
        self.respond_line(to, answer);
    }

    /// Like [`respond`](Self::respond), with the answer as JSON text sent as
    /// it is: `Ok(result)` or `Err(error object)` (an answer relayed
    /// unchanged from a backend service, docs/protocol.md §8). The text must
    /// be valid JSON (e.g. a `RawValue` read off the wire).
    pub fn respond_raw(&mut self, to: &ReplyTo, answer: Result<&str, &str>) {
        let answer = to.id.as_ref().map(|id| match answer {
            Ok(result) => (result_line(id, result), None),
            Err(error) => (raw_error_line(id, error), Some(raw_error_code(error))),
        });
        self.respond_line(to, answer);
    }

    /// Sends `answer` (its line and, for an error, its numeric code, for
    /// `portcullis_requests_total`) and releases the hold of `to`.
    fn respond_line(&mut self, to: &ReplyTo, answer: Option<(String, Option<i64>)>) {
        if let Some((line, error)) = answer
            && let Ok((conn, state)) = self.connections.get_mut(to.entity)
        {
            let filled = match state {
                Some(mut state) => {
                    if let Some(key) = state.answered(to.ticket)
                        && let Some(counters) = self.counters.as_mut()
                    {
                        counters.count_error_code(key, error);
                    }
                    state.fill_entry(to.ticket, line)
                }
                None => Filled::NotInBatch(line),
            };
            let completed = matches!(filled, Filled::Completed(_));
            if let Some(line) = filled.line() {
                conn.send(line);
            }
            if completed {
                // A half-closed client waiting for this batch can now be closed.
                self.ready.mark(to.entity);
            }
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
    /// A batch in progress ends first: the array of its entries so far goes
    /// out before `disconnected` (§2).
    pub fn disconnect(&mut self, entity: Entity, reason: DisconnectReason) {
        let Ok((conn, state)) = self.connections.get_mut(entity) else { return };
        let batches = state.map(|mut s| s.take_batch_lines()).unwrap_or_default();
        close_with_goodbye(conn, batches, reason);
    }

    /// The connection behind an entity.
    pub fn connection(&self, entity: Entity) -> Option<&Connection> {
        self.connections.get(entity).ok().map(|(c, _)| c)
    }
}

/// The line answering `to`, if it is a request, and the error it carries.
fn answer_line_and_error<R: Serialize>(
    to: &ReplyTo,
    result: Result<R, RpcError>,
) -> Option<(String, Option<RpcError>)> {
    let id = to.id.as_ref()?;
    Some(match result.and_then(|r| serde_json::to_string(&r).map_err(|_| RpcError::new(ErrorCode::InternalError))) {
        Ok(json) => (result_line(id, &json), None),
        Err(error) => (error_line(id, &error), Some(error)),
    })
}

/// The `code` of an error object written as JSON text (0 when it has none).
fn raw_error_code(error: &str) -> i64 {
    #[derive(serde::Deserialize)]
    struct Code {
        code: Option<i64>,
    }
    serde_json::from_str::<Code>(error).ok().and_then(|c| c.code).unwrap_or(0)
}

/// Sends `lines` (the arrays of batches cut short), then `disconnected
/// {reason}`, and closes.
pub(crate) fn close_with_goodbye(conn: &Connection, lines: Vec<String>, reason: DisconnectReason) {
    for line in lines {
        conn.send(line);
    }
    send_disconnect(conn, reason);
}

/// Sends `disconnected {reason}` and closes; a WebSocket's Close frame
/// carries the reason text too (docs/protocol.md §1.1, §5).
pub fn send_disconnect(conn: &Connection, reason: DisconnectReason) {
    bevy_log::debug!(conn = %conn.id(), reason = %reason, "disconnecting");
    crate::count_disconnect(reason);
    conn.send(disconnected_line(reason));
    conn.close_with_reason(reason.as_str());
}

/// The `disconnected {"reason":R}` notification (docs/protocol.md §5).
pub fn disconnected_line(reason: DisconnectReason) -> String {
    notification_line(notification::DISCONNECTED, &json!({ "reason": reason })).unwrap_or_else(|_| {
        // A reason always serializes; spelled out for completeness.
        format!(r#"{{"jsonrpc":"2.0","method":"{}","params":{{"reason":"{reason}"}}}}"#, notification::DISCONNECTED)
    })
}

/// The goodbye the network layer sends by itself for `reason` (a refused
/// connection, docs/protocol.md §6): `disconnected {reason}`, then the close
/// with the reason text. Layers put these into
/// [`Goodbyes`](portcullis_net::Goodbyes) for the situations they own.
pub fn goodbye(reason: DisconnectReason) -> Goodbye {
    Goodbye { message: disconnected_line(reason), reason: reason.as_str().to_owned() }
}
