//! The dispatcher: pops frames from connection inboxes in arrival order and
//! runs the registered methods (docs/protocol.md §2–3), one message at a
//! time or, for a batch, one member at a time.

use bevy_ecs::prelude::*;
use bevy_time::{Real, Time};
use portcullis_net::{Admission, Connection, Inbox, InboxItem, NetConfig, ReadyInboxes};
use portcullis_runtime::FrameWaker;

use crate::RpcConfig;
use crate::batch::Batch;
use crate::counters::{MethodKey, RequestCounters};
use portcullis_protocol::{DisconnectReason, ErrorCode, RequestId, RpcError, error_line, result_line};

use crate::envelope::{Envelope, Invalid, ParsedMessage, parse_message};
use crate::raw::{AcceptsResponses, IncomingResponse, RpcResponses, parse_responses};
use crate::registry::{Call, GateInput, Outcome, ReplyTo, RpcGates, RpcMethods};
use crate::reply::{RpcState, close_with_goodbye};

/// Monotonic ticket source for dispatched requests.
#[derive(Resource, Default)]
pub(crate) struct Tickets(u64);

/// What the dispatcher reads once per frame.
struct Context {
    methods: RpcMethods,
    gates: RpcGates,
    config: RpcConfig,
    net: NetConfig,
    now: std::time::Duration,
    /// The last ticket handed out ([`Tickets`], written back after the frame's dispatch).
    tickets: u64,
}

/// Where the answer to one message goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    /// Straight to the connection.
    Direct,
    /// Into the entries of the connection's executing batch.
    Batch,
}

/// Whether the connection goes on after one message.
enum Flow {
    Continue,
    /// The message closes the connection with this reason (a batch ends
    /// here: its entries so far are sent, then `disconnected`).
    Close(DisconnectReason),
}

/// Dispatches the waiting frames of every connection marked in
/// [`ReadyInboxes`] that is neither closing nor held by an unanswered
/// request, in arrival order per connection; a batch's members run before
/// the frames after it. Only marked connections are visited, so idle
/// connections cost nothing. Runs in [`crate::RpcSystems::Dispatch`].
pub fn dispatch_frames(world: &mut World) {
    let ready = world.resource_mut::<ReadyInboxes>().take_pending();
    if ready.is_empty() {
        return;
    }
    let mut ctx = Context {
        tickets: world.resource::<Tickets>().0,
        methods: world.resource::<RpcMethods>().clone(),
        gates: world.resource::<RpcGates>().clone(),
        config: world.resource::<RpcConfig>().clone(),
        net: world.resource::<NetConfig>().clone(),
        now: world.resource::<Time<Real>>().elapsed(),
    };
    for &entity in &ready {
        while let Ok(entity_ref) = world.get_entity(entity) {
            if entity_ref.get::<Connection>().is_none_or(Connection::is_closing)
                || entity_ref.get::<RpcState>().is_some_and(RpcState::is_held)
            {
                break;
            }
            if let Some(member) = next_batch_member(world, entity, &ctx) {
                let (parsed, admission) = member;
                let flow = handle_message(world, entity, parsed, admission, Target::Batch, &mut ctx);
                finish_step(world, entity, flow);
                continue;
            }
            let Some(item) = world.get_mut::<Inbox>(entity).and_then(|mut inbox| {
                let item = inbox.items.pop_front();
                if inbox.items.is_empty() && inbox.items.capacity() > 0 {
                    // An idle connection keeps no inbox storage (BENCHMARKS.md, hold).
                    inbox.items = std::collections::VecDeque::new();
                }
                item
            }) else {
                break;
            };
            match item {
                InboxItem::TooLarge => {
                    let error = RpcError::with_message(ErrorCode::InvalidRequest, "frame too large");
                    answer(world, entity, Target::Direct, &RequestId::Null, Err(&error));
                    close(world, entity, DisconnectReason::ProtocolError);
                }
                InboxItem::Binary => {
                    // docs/protocol.md §1.1: answered, counted as a protocol error; the connection stays.
                    let error = RpcError::with_message(ErrorCode::InvalidRequest, "binary messages are not supported");
                    let flow =
                        protocol_error(world, entity, Target::Direct, &Invalid { id: RequestId::Null, error }, &ctx);
                    finish_step(world, entity, flow);
                }
                InboxItem::Frame { bytes, admission } => {
                    if world.get::<AcceptsResponses>(entity).is_some()
                        && let Some(responses) = parse_responses(&bytes)
                    {
                        let mut queue = world.resource_mut::<RpcResponses>();
                        for (id, answer) in responses {
                            queue.push(IncomingResponse { entity, id, answer });
                        }
                        continue;
                    }
                    let flow = match parse_message(&bytes) {
                        ParsedMessage::Single(parsed) => {
                            handle_message(world, entity, parsed, admission, Target::Direct, &mut ctx)
                        }
                        ParsedMessage::Batch(members) => start_batch(world, entity, members, admission, &ctx),
                    };
                    finish_step(world, entity, flow);
                }
            }
        }
    }
    world.resource_mut::<Tickets>().0 = ctx.tickets;
    world.resource_mut::<ReadyInboxes>().extend_visited(ready);
}

/// The next member of the connection's executing batch and its admission:
/// the first member uses the frame's own token, each later one takes its own.
fn next_batch_member(
    world: &mut World,
    entity: Entity,
    ctx: &Context,
) -> Option<(Result<Envelope, Invalid>, Admission)> {
    let mut state = world.get_mut::<RpcState>(entity)?;
    let batch = state.executing_batch()?;
    let (member, first_admission) = batch.next_member()?;
    let admission = match first_admission {
        Some(admission) => admission,
        None => world.get_mut::<Inbox>(entity).map_or(Admission::Admitted, |mut inbox| inbox.admit(ctx.now, &ctx.net)),
    };
    Some((member, admission))
}

/// Starts a batch frame (docs/protocol.md §2): an empty one, or one over
/// `max_batch`, gets a single `-32600` and runs nothing.
fn start_batch(
    world: &mut World,
    entity: Entity,
    members: Vec<Result<Envelope, Invalid>>,
    admission: Admission,
    ctx: &Context,
) -> Flow {
    let refusal = match (members.is_empty(), members.len() > ctx.config.max_batch) {
        (true, _) => Some("empty batch"),
        (_, true) => Some("batch too large"),
        _ => None,
    };
    if let Some(message) = refusal {
        if admission != Admission::Admitted {
            return refused_close(admission);
        }
        let invalid =
            Invalid { id: RequestId::Null, error: RpcError::with_message(ErrorCode::InvalidRequest, message) };
        return protocol_error(world, entity, Target::Direct, &invalid, ctx);
    }
    if let Some(mut state) = world.get_mut::<RpcState>(entity) {
        state.batches.push(Batch::new(members, admission));
    }
    Flow::Continue
}

/// After one message: close if it asked to, else send a batch whose every
/// member is answered.
fn finish_step(world: &mut World, entity: Entity, flow: Flow) {
    match flow {
        Flow::Close(reason) => close(world, entity, reason),
        Flow::Continue => {
            let line = world.get_mut::<RpcState>(entity).and_then(|mut state| state.take_finished_batch());
            if let (Some(line), Some(conn)) = (line, world.get::<Connection>(entity)) {
                conn.send(line);
            }
        }
    }
}

/// Sends `disconnected` (after the entries of any batch so far) and closes.
fn close(world: &mut World, entity: Entity, reason: DisconnectReason) {
    let Ok(mut entity_mut) = world.get_entity_mut(entity) else { return };
    let batches = entity_mut.get_mut::<RpcState>().map(|mut state| state.take_batch_lines()).unwrap_or_default();
    if let Some(conn) = entity_mut.get::<Connection>() {
        close_with_goodbye(conn, batches, reason);
    }
}

fn refused_close(admission: Admission) -> Flow {
    if admission == Admission::RefusedClose { Flow::Close(DisconnectReason::RateLimited) } else { Flow::Continue }
}

/// Sends one answer (`Ok`: result JSON text) to `target`.
fn answer(world: &mut World, entity: Entity, target: Target, id: &RequestId, result: Result<&str, &RpcError>) {
    let line = match result {
        Ok(json) => result_line(id, json),
        Err(error) => error_line(id, error),
    };
    match target {
        Target::Direct => {
            if let Some(conn) = world.get::<Connection>(entity) {
                conn.send(line);
            }
        }
        Target::Batch => {
            if let Some(mut state) = world.get_mut::<RpcState>(entity)
                && let Some(batch) = state.batches.last_mut()
            {
                batch.push_entry(line);
            }
        }
    }
}

/// A `-32700` / `-32600` answer; the one that reaches `max_protocol_errors` closes.
fn protocol_error(world: &mut World, entity: Entity, target: Target, invalid: &Invalid, ctx: &Context) -> Flow {
    answer(world, entity, target, &invalid.id, Err(&invalid.error));
    let errors = world.get_mut::<RpcState>(entity).map(|mut s| {
        s.protocol_errors += 1;
        s.protocol_errors
    });
    if errors.is_some_and(|n| n >= ctx.config.max_protocol_errors) {
        Flow::Close(DisconnectReason::ProtocolError)
    } else {
        Flow::Continue
    }
}

/// Handles one message (a frame, or a member of a batch) as docs/protocol.md
/// §3 orders the checks: rate limit, envelope, method, gates, then the method.
fn handle_message(
    world: &mut World,
    entity: Entity,
    parsed: Result<Envelope, Invalid>,
    admission: Admission,
    target: Target,
    ctx: &mut Context,
) -> Flow {
    if admission != Admission::Admitted {
        // Not executed (docs/protocol.md §6): a request gets RATE_LIMITED, the rest is dropped.
        if let Ok(Envelope { id: Some(id), method, .. }) = &parsed {
            let error = RpcError::new(ErrorCode::RateLimited);
            count(world, ctx.methods.get(method).map_or(MethodKey::UNKNOWN, |m| m.key), Err(&error));
            answer(world, entity, target, id, Err(&error));
        }
        return refused_close(admission);
    }
    let envelope = match parsed {
        Ok(envelope) => envelope,
        Err(invalid) => return protocol_error(world, entity, target, &invalid, ctx),
    };
    let Envelope { id, method, params, params_raw, duplicate_param } = envelope;
    let Some(entry) = ctx.methods.get(&method) else {
        if let Some(id) = &id {
            let error = RpcError::new(ErrorCode::MethodNotFound);
            count(world, MethodKey::UNKNOWN, Err(&error));
            answer(world, entity, target, id, Err(&error));
        }
        return Flow::Continue;
    };
    let input = GateInput {
        entity,
        method: &method,
        access: entry.access,
        params: &params,
        is_request: id.is_some(),
        duplicate_param: duplicate_param.as_deref(),
    };
    for gate in &ctx.gates.0 {
        if let Err(error) = gate(world, &input) {
            if let Some(id) = &id {
                count(world, entry.key, Err(&error));
                answer(world, entity, target, id, Err(&error));
            }
            return Flow::Continue;
        }
    }
    ctx.tickets += 1;
    let ticket = ctx.tickets;
    // A batch member's answer may come from inside the handler or later
    // (`Rpc::respond`): its entry is reserved before the handler runs.
    if target == Target::Batch
        && id.is_some()
        && let Some(mut state) = world.get_mut::<RpcState>(entity)
        && let Some(batch) = state.batches.last_mut()
    {
        batch.reserve_entry(ticket);
    }
    // Counted when answered, here or later through `Rpc::respond`; a
    // synchronous method's answer is here, so it skips the awaiting list.
    let awaited = id.is_some() && !entry.synchronous;
    if awaited && let Some(mut state) = world.get_mut::<RpcState>(entity) {
        state.awaiting.push((ticket, entry.key));
    }
    let key = entry.key;
    let reply_to = ReplyTo { entity, id, ticket };
    let outcome = (entry.invoke)(world, Call { reply_to: reply_to.clone(), params, params_raw, duplicate_param });
    let settle = |world: &mut World, result: Result<(), &RpcError>| {
        if awaited {
            answered(world, entity, ticket, result);
        } else if reply_to.id.is_some() {
            count(world, key, result);
        }
    };
    match outcome {
        Outcome::Reply(result) => {
            settle(world, result.as_ref().map(|_| ()));
            if let Some(id) = &reply_to.id {
                let line = match &result {
                    Ok(json) => result_line(id, json),
                    Err(error) => error_line(id, error),
                };
                deliver(world, &reply_to, line);
            }
        }
        Outcome::Line(line) => {
            // A result already written into its line.
            settle(world, Ok(()));
            deliver(world, &reply_to, line);
        }
        Outcome::Later => {
            if let Some(mut state) = world.get_mut::<RpcState>(entity) {
                state.held.push(ticket);
            }
        }
        Outcome::Handled => {
            // Answered already, or deliberately never: no entry waits for it.
            if let Some(mut state) = world.get_mut::<RpcState>(entity) {
                state.cancel_entry(ticket);
                state.answered(ticket);
            }
        }
    }
    Flow::Continue
}

/// The request `ticket` of `entity` is answered now: it leaves the
/// connection's awaiting list and counts with `result`'s code.
fn answered(world: &mut World, entity: Entity, ticket: u64, result: Result<(), &RpcError>) {
    let awaited = world.get_mut::<RpcState>(entity).and_then(|mut state| state.answered(ticket));
    if let Some(key) = awaited {
        count(world, key, result);
    }
}

/// Counts one answered request (`portcullis_requests_total`).
fn count(world: &mut World, key: MethodKey, result: Result<(), &RpcError>) {
    let Some(mut counters) = world.get_resource_mut::<RequestCounters>() else { return };
    if counters.knows(key) {
        counters.count(key, result);
        return;
    }
    // A method added while the server runs (RpcMethods::insert_raw): file its name once.
    let name = world.get_resource::<RpcMethods>().and_then(|m| m.name_of(key)).map(str::to_owned);
    if let Some(mut counters) = world.get_resource_mut::<RequestCounters>() {
        if let Some(name) = name {
            counters.name(key, &name);
        }
        counters.count(key, result);
    }
}

/// Sends an answer to `to`: into its batch entry when it has one, else straight out.
fn deliver(world: &mut World, to: &ReplyTo, line: String) {
    let Ok(mut entity_mut) = world.get_entity_mut(to.entity) else { return };
    let line = match entity_mut.get_mut::<RpcState>() {
        Some(mut state) => state.fill_entry(to.ticket, line).line(),
        None => Some(line),
    };
    if let (Some(line), Some(conn)) = (line, entity_mut.get::<Connection>()) {
        conn.send(line);
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
/// [`NetSystems::Send`](portcullis_net::NetSystems::Send).
pub fn close_finished_connections(
    mut ready: ResMut<ReadyInboxes>,
    query: Query<(&Connection, &Inbox, Option<&RpcState>)>,
) {
    for entity in ready.take_visited() {
        let Ok((conn, inbox, state)) = query.get(entity) else { continue };
        if inbox.eof
            && inbox.items.is_empty()
            && !conn.is_closing()
            && !state.is_some_and(|s| s.is_held() || s.has_batches())
        {
            // The client ended its stream: a close the client asked for.
            crate::count_peer_closed();
            conn.close();
        }
    }
}
