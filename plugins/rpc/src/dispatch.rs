//! The dispatcher: pops frames from connection inboxes in arrival order and
//! runs the registered methods (docs/protocol.md §2–3).

use bevy_ecs::prelude::*;
use portcullis_net::{Admission, Connection, FrameWaker, Inbox, InboxItem, ReadyInboxes};

use crate::RpcConfig;
use crate::envelope::{Envelope, RequestId, error_line, parse_frame, result_line};
use crate::error::{ErrorCode, RpcError};
use crate::reason::DisconnectReason;
use crate::registry::{Call, GateInput, Outcome, ReplyTo, RpcGates, RpcMethods};
use crate::reply::{RpcState, send_disconnect};

/// Monotonic ticket source for dispatched requests.
#[derive(Resource, Default)]
pub(crate) struct Tickets(u64);

/// Dispatches the waiting frames of every connection marked in
/// [`ReadyInboxes`] that is neither closing nor held by an unanswered
/// request, in arrival order per connection. Only marked connections are
/// visited, so idle connections cost nothing. Runs in [`crate::RpcSet::Dispatch`].
pub fn dispatch_frames(world: &mut World) {
    let ready = world.resource_mut::<ReadyInboxes>().take_pending();
    if ready.is_empty() {
        return;
    }
    let methods = world.resource::<RpcMethods>().clone();
    let gates = world.resource::<RpcGates>().clone();
    let config = world.resource::<RpcConfig>().clone();
    for &entity in &ready {
        while let Ok(mut entity_ref) = world.get_entity_mut(entity) {
            if entity_ref.get::<Connection>().is_none_or(Connection::is_closing)
                || entity_ref.get::<RpcState>().is_some_and(RpcState::is_held)
            {
                break;
            }
            let Some(item) = entity_ref.get_mut::<Inbox>().and_then(|mut inbox| inbox.items.pop_front()) else {
                break;
            };
            match item {
                InboxItem::TooLarge => {
                    let line = error_line(
                        &RequestId::Null,
                        &RpcError::with_message(ErrorCode::InvalidRequest, "frame too large"),
                    );
                    if let Some(conn) = world.get::<Connection>(entity) {
                        conn.send(line);
                        send_disconnect(conn, DisconnectReason::ProtocolError);
                    }
                }
                InboxItem::Frame { bytes, admission: Admission::Admitted } => {
                    handle_frame(world, entity, &bytes, &methods, &gates, &config);
                }
                InboxItem::Frame { bytes, admission } => {
                    // Not executed (docs/protocol.md §6): a request gets RATE_LIMITED, the rest is dropped.
                    if let Ok(Envelope { id: Some(id), .. }) = parse_frame(&bytes) {
                        send(world, entity, error_line(&id, &RpcError::new(ErrorCode::RateLimited)));
                    }
                    if admission == Admission::RefusedClose
                        && let Some(conn) = world.get::<Connection>(entity)
                    {
                        send_disconnect(conn, DisconnectReason::RateLimited);
                    }
                }
            }
        }
    }
    world.resource_mut::<ReadyInboxes>().extend_visited(ready);
}

fn send(world: &World, entity: Entity, line: String) {
    if let Some(conn) = world.get::<Connection>(entity) {
        conn.send(line);
    }
}

fn handle_frame(
    world: &mut World,
    entity: Entity,
    bytes: &[u8],
    methods: &RpcMethods,
    gates: &RpcGates,
    config: &RpcConfig,
) {
    let envelope = match parse_frame(bytes) {
        Ok(envelope) => envelope,
        Err(invalid) => {
            send(world, entity, error_line(&invalid.id, &invalid.error));
            let errors = world.get_mut::<RpcState>(entity).map(|mut s| {
                s.protocol_errors += 1;
                s.protocol_errors
            });
            if errors.is_some_and(|n| n >= config.max_protocol_errors)
                && let Some(conn) = world.get::<Connection>(entity)
            {
                send_disconnect(conn, DisconnectReason::ProtocolError);
            }
            return;
        }
    };
    let Envelope { id, method, params } = envelope;
    let Some(entry) = methods.get(&method) else {
        if let Some(id) = &id {
            send(world, entity, error_line(id, &RpcError::new(ErrorCode::MethodNotFound)));
        }
        return;
    };
    let input = GateInput { entity, method: &method, access: entry.access, params: &params, is_request: id.is_some() };
    for gate in &gates.0 {
        if let Err(error) = gate(world, &input) {
            if let Some(id) = &id {
                send(world, entity, error_line(id, &error));
            }
            return;
        }
    }
    let ticket = {
        let mut tickets = world.resource_mut::<Tickets>();
        tickets.0 += 1;
        tickets.0
    };
    let reply_to = ReplyTo { entity, id, ticket };
    let outcome = (entry.invoke)(world, Call { reply_to: reply_to.clone(), params });
    match outcome {
        Outcome::Reply(result) => {
            if let Some(id) = &reply_to.id {
                let line = match result {
                    Ok(json) => result_line(id, &json),
                    Err(error) => error_line(id, &error),
                };
                send(world, entity, line);
            }
        }
        Outcome::Later => {
            if let Some(mut state) = world.get_mut::<RpcState>(entity) {
                state.held.push(ticket);
            }
        }
        Outcome::Handled => {}
    }
}

/// Wakes the frame loop when connections were marked ready after this
/// frame's dispatch (a hold was released late in the frame), so their frames
/// do not wait for the next tick.
pub fn wake_for_waiting_frames(ready: Res<ReadyInboxes>, waker: Option<Res<FrameWaker>>) {
    if ready.has_pending()
        && let Some(waker) = waker
    {
        waker.wake();
    }
}

/// Closes connections whose client stopped sending (end of stream) once every
/// frame they sent has been handled and no answer is outstanding, so a client
/// that writes its requests and half-closes still gets every answer. Looks
/// only at the connections the dispatcher visited this frame (an end of
/// stream and a released hold both mark a connection ready). Runs in
/// [`NetSet::Send`](portcullis_net::NetSet::Send).
pub fn close_finished_connections(
    mut ready: ResMut<ReadyInboxes>,
    query: Query<(&Connection, &Inbox, Option<&RpcState>)>,
) {
    for entity in ready.take_visited() {
        let Ok((conn, inbox, state)) = query.get(entity) else { continue };
        if inbox.eof && inbox.items.is_empty() && !conn.is_closing() && !state.is_some_and(RpcState::is_held) {
            conn.close();
        }
    }
}
