//! Forwarding: a client's call of a service method to a service, the
//! service's answer back to the client, and what happens when no service
//! answers (docs/protocol.md §8).

use std::sync::Arc;

use bevy_ecs::prelude::*;
use bevy_time::{Real, Time};
use portcullis_net::{Connection, ConnectionClosed};
use portcullis_protocol::{CallerSession, ErrorCode, RequestId, RpcError, SessionEnded, SessionStarted, service};
use portcullis_rpc::{RawHandler, RawRequest, Reply, Rpc, RpcResponses};
use portcullis_session::{LoggedIn, LoggedOut, Session};
use serde_json::value::RawValue;

use crate::config::ServicesConfig;
use crate::routes::{NotSent, ServiceCall, ServiceConnection, Services};

/// The raw method handler of the service method `method`: builds the
/// forwarded params (the `token` member removed for an **auth** method, §8)
/// and sends the call to a service; a request is answered later, when the
/// service answers (its connection's later frames wait, as for a built-in
/// method that waits on the store).
pub fn forwarder(method: String) -> RawHandler {
    Arc::new(move |world: &mut World, request: RawRequest| forward(world, &method, request))
}

fn forward(world: &mut World, method: &str, request: RawRequest) -> Reply<Box<RawValue>> {
    let RawRequest { reply_to, mut params, params_raw } = request;
    let Some(auth) = world.resource::<Services>().routes.get(method).map(|r| r.auth) else {
        return Reply::Err(RpcError::new(ErrorCode::MethodNotFound));
    };
    let params_text = if auth {
        params.remove("token");
        serde_json::to_string(&params).unwrap_or_else(|_| "{}".to_owned())
    } else {
        params_raw.map_or_else(|| "{}".to_owned(), |raw| raw.get().to_owned())
    };
    let session = CallerSession {
        conn: world.get::<Connection>(reply_to.entity).map_or(0, |c| c.id().0),
        account: world.get::<Session>(reply_to.entity).and_then(Session::account).map(|a| a.name.clone()),
    };
    let session_text = serde_json::to_string(&session).unwrap_or_else(|_| "null".to_owned());
    let call = ServiceCall {
        method: method.to_owned(),
        reply_to,
        params: format!(r#"{{"params":{params_text},"session":{session_text}}}"#),
    };
    let is_request = call.reply_to.id.is_some();
    let config = world.resource::<ServicesConfig>().clone();
    let now = world.resource::<Time<Real>>().elapsed();
    let sent = world.resource_scope(|world, mut services: Mut<Services>| {
        let sent = services.send(call, |e| world.get::<Connection>(e), config.max_in_flight, now + config.call_timeout);
        match sent {
            // No service right now: wait for one to register the method again (§8).
            Err(NotSent::NoService(call)) => {
                services.wait(call, now + config.wait);
                Ok(())
            }
            other => other,
        }
    });
    match sent {
        Ok(()) if is_request => Reply::Later,
        Ok(()) => Reply::Handled,
        Err(NotSent::Busy) => Reply::Err(RpcError::new(ErrorCode::ServerBusy)),
        Err(NotSent::NoService(_)) => Reply::Err(RpcError::new(ErrorCode::ServiceUnavailable)),
    }
}

/// Relays each service response read this frame to its client under the
/// client's own id, result or error unchanged (§8). A response to an unknown
/// or expired call, or from another service than the one asked, is dropped;
/// so is one whose client is gone. Runs in [`ServicesSystems::Route`](crate::ServicesSystems::Route).
pub fn route_service_responses(mut responses: ResMut<RpcResponses>, mut services: ResMut<Services>, mut rpc: Rpc) {
    if responses.is_empty() {
        return;
    }
    for response in responses.take() {
        let sid = match response.id {
            RequestId::Number(n) => u64::try_from(n).ok(),
            _ => None,
        };
        let Some(sid) = sid.filter(|sid| services.in_flight.get(sid).is_some_and(|c| c.service == response.entity))
        else {
            bevy_log::debug!(id = ?response.id, "service answered no call in flight (late or unknown): dropped");
            continue;
        };
        let Some(call) = services.finish(sid) else { continue };
        match &response.answer {
            Ok(result) => rpc.respond_raw(&call.reply_to, Ok(result.get())),
            Err(error) => rpc.respond_raw(&call.reply_to, Err(error.get())),
        }
    }
}

/// Answers `SERVICE_UNAVAILABLE` to the forwarded requests past
/// `--service-timeout` and to the calls that waited `--service-wait` for a
/// service in vain (a waiting notification is dropped). Pops only what is
/// due. Runs in [`ServicesSystems::Timers`](crate::ServicesSystems::Timers).
pub fn expire_service_calls(mut services: ResMut<Services>, mut rpc: Rpc, time: Res<Time<Real>>) {
    let now = time.elapsed();
    while let Some(&(at, sid)) = services.timeouts.first() {
        if at > now {
            break;
        }
        if let Some(call) = services.finish(sid) {
            bevy_log::warn!(sid, "service did not answer in time");
            rpc.respond::<()>(&call.reply_to, Err(RpcError::new(ErrorCode::ServiceUnavailable)));
        } else {
            services.timeouts.remove(&(at, sid));
        }
    }
    while let Some(&(at, id)) = services.waits.first() {
        if at > now {
            break;
        }
        services.waits.remove(&(at, id));
        let Some((call, _)) = services.waiting.remove(&id) else { continue };
        if let Some(route) = services.routes.get_mut(&call.method) {
            route.waiting.retain(|w| *w != id);
        }
        bevy_log::info!(method = %call.method, "no service registered the method again in time");
        rpc.respond::<()>(&call.reply_to, Err(RpcError::new(ErrorCode::ServiceUnavailable)));
    }
}

/// A service's connection closed: it leaves every method, and each request
/// it had in flight gets `SERVICE_UNAVAILABLE` (§8; it may or may not have
/// run). No client is disconnected.
pub fn service_closed(
    closed: On<ConnectionClosed>,
    services_of: Query<&ServiceConnection>,
    mut services: ResMut<Services>,
    mut rpc: Rpc,
) {
    let entity = closed.entity;
    let Ok(service) = services_of.get(entity) else { return };
    bevy_log::info!(service = %service.name, "service went away");
    for route in services.routes.values_mut() {
        if let Some(at) = route.services.iter().position(|e| *e == entity) {
            route.services.remove(at);
            if route.cursor > at {
                route.cursor -= 1;
            }
            if route.cursor >= route.services.len() {
                route.cursor = 0;
            }
        }
    }
    let lost: Vec<u64> =
        services.in_flight.iter().filter(|(_, call)| call.service == entity).map(|(sid, _)| *sid).collect();
    for sid in lost {
        if let Some(call) = services.finish(sid) {
            rpc.respond::<()>(&call.reply_to, Err(RpcError::new(ErrorCode::ServiceUnavailable)));
        }
    }
    services.load.remove(&entity);
}

/// `session_started {"conn":N,"account":A}` to every service when a login succeeds (§8).
pub fn announce_session_started(
    logged_in: On<LoggedIn>,
    connections: Query<&Connection>,
    service_connections: Query<Entity, With<ServiceConnection>>,
    mut services: ResMut<Services>,
    rpc: Rpc,
) {
    let Ok(conn) = connections.get(logged_in.entity) else { return };
    let event = SessionStarted { conn: conn.id().0, account: logged_in.account.name.clone() };
    services.sessions.insert(logged_in.entity, (event.conn, event.account.clone()));
    rpc.notify_many(service_connections.iter(), service::SESSION_STARTED, &event);
}

/// `session_ended {"conn":N,"account":A,"reason":R}` to every service when
/// that session ends (§8).
pub fn announce_session_ended(
    logged_out: On<LoggedOut>,
    service_connections: Query<Entity, With<ServiceConnection>>,
    mut services: ResMut<Services>,
    rpc: Rpc,
) {
    let Some((conn, account)) = services.sessions.remove(&logged_out.entity) else { return };
    let event = SessionEnded { conn, account, reason: logged_out.reason.as_str().to_owned() };
    rpc.notify_many(service_connections.iter(), service::SESSION_ENDED, &event);
}
