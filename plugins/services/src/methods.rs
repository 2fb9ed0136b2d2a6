//! The methods of docs/protocol.md §8 that services call: `service_register`,
//! `service_notify`, `service_kick`.

use bevy_ecs::prelude::*;
use portcullis_accounts::{AccountsConfig, LoginThrottle};
use portcullis_net::{ConnectionId, ConnectionIndex, Inbox, SendStatus};
use portcullis_protocol::{
    Delivered, ErrorCode, KickResult, RpcError, ServiceNotifyParams, ServiceRegisterParams, ServiceRegisterResult,
    ServiceTarget, notification, service,
};
use portcullis_rpc::{AcceptsResponses, Access, Reply, Request, Rpc, RpcMethods};
use portcullis_session::{DisconnectReason, Session, SessionCtx, SessionIndex, SessionState};

use crate::config::{ServiceKey, ServicesConfig};
use crate::forward::forwarder;
use crate::routes::{NotSent, ServiceConnection, Services};

/// Whether `name` may be a service method's name: `^[a-z][a-z0-9_.]{0,63}$`
/// and not starting with `service_` (docs/protocol.md §8).
pub fn is_valid_service_method(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && name.len() <= 64
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '.')
        && !name.starts_with(service::RESERVED_PREFIX)
}

/// `service_register {"key":S,"name":S,"methods":[{"name":S,"auth":B},...]}`
/// → `{"name":S,"methods":[S,...]}` (docs/protocol.md §8). Own errors, in
/// order: ALREADY_LOGGED_IN on a logged-in connection (LOGIN_IN_PROGRESS
/// while its login waits for a takeover); RATE_LIMITED while
/// the peer's address is throttled (docs/protocol.md §6); INVALID_CREDENTIALS
/// for a wrong key, which counts for login throttling like a failed password
/// login; `-32602` with field `methods` for a name that breaks the rule, names
/// a method the server itself has, or starts with `service_`.
///
/// The connection becomes a service: no login deadline, no rate limit (the
/// idle timeout stays), and its JSON-RPC responses are read as answers.
/// Calls that waited for one of its methods are sent at once. A service may
/// register again to add methods.
#[allow(clippy::too_many_arguments)]
pub fn service_register(
    In(req): In<Request<ServiceRegisterParams>>,
    mut ctx: SessionCtx,
    key: Res<ServiceKey>,
    config: Res<ServicesConfig>,
    throttle: Option<ResMut<LoginThrottle>>,
    accounts: Option<Res<AccountsConfig>>,
    mut services: ResMut<Services>,
    mut methods: ResMut<RpcMethods>,
    mut entities: Query<(Option<&mut ServiceConnection>, &mut Inbox)>,
) -> Reply<ServiceRegisterResult> {
    let entity = req.entity();
    let ServiceRegisterParams { key: given, name, methods: wanted } = req.params;
    match ctx.session(entity).map(Session::state) {
        Some(SessionState::AwaitingLogin) => {}
        // A login of this connection waits for a takeover (docs/protocol.md §6).
        Some(SessionState::WaitingTakeover { .. }) => return Reply::Err(RpcError::new(ErrorCode::LoginInProgress)),
        _ => return Reply::Err(RpcError::new(ErrorCode::AlreadyLoggedIn)),
    }
    let Some(peer) = ctx.connection(entity).map(|c| c.peer().ip()) else {
        return Reply::Err(RpcError::new(ErrorCode::InternalError));
    };
    let now = ctx.now();
    let accounts = accounts.map(|a| a.clone()).unwrap_or_default();
    let mut throttle = throttle;
    if let Some(throttle) = throttle.as_mut()
        && throttle.is_blocked(peer, now, accounts.login_fail_limit, accounts.login_fail_window)
    {
        return Reply::Err(RpcError::new(ErrorCode::RateLimited));
    }
    if !key.matches(&given) {
        bevy_log::warn!(peer = %peer, service = %name, "service_register with a wrong key");
        if let Some(throttle) = throttle.as_mut() {
            throttle.record_failure(peer, now);
        }
        return Reply::Err(RpcError::new(ErrorCode::InvalidCredentials));
    }
    let mut names: Vec<String> = Vec::with_capacity(wanted.len());
    for method in &wanted {
        let builtin = methods.contains(&method.name) && !services.is_service_method(&method.name);
        if !is_valid_service_method(&method.name) || builtin {
            return Reply::Err(RpcError::invalid_params("methods"));
        }
    }
    let Ok((current, mut inbox)) = entities.get_mut(entity) else {
        return Reply::Err(RpcError::new(ErrorCode::InternalError));
    };
    inbox.exempt_from_rate_limit();
    ctx.lift_login_deadline(entity);
    for method in wanted {
        let access = if method.auth { Access::LoggedIn } else { Access::Public };
        let route = services.routes.entry(method.name.clone()).or_default();
        if !methods.contains(&method.name) || route.auth != method.auth {
            route.auth = method.auth;
            methods.insert_raw(method.name.clone(), access, forwarder(method.name.clone()));
        }
        if !route.services.contains(&entity) {
            route.services.push(entity);
        }
        if !names.contains(&method.name) {
            names.push(method.name);
        }
    }
    let all = match current {
        Some(mut existing) => {
            for n in &names {
                if !existing.methods.contains(n) {
                    existing.methods.push(n.clone());
                }
            }
            existing.methods.clone()
        }
        None => {
            ctx.commands()
                .entity(entity)
                .insert((ServiceConnection { name: name.clone(), methods: names.clone() }, AcceptsResponses));
            names.clone()
        }
    };
    bevy_log::info!(conn = ?entity, service = %name, methods = ?all, "service registered");
    // Calls that waited for these methods go now, in arrival order.
    let deadline = now + config.call_timeout;
    for method in &names {
        for call in services.take_waiting(method) {
            let reply_to = call.reply_to.clone();
            let sent = services.send(call, |e| ctx.connection(e), config.max_in_flight, deadline);
            if let Err(not_sent) = sent {
                let code = match not_sent {
                    NotSent::Busy => ErrorCode::ServerBusy,
                    NotSent::NoService(_) => ErrorCode::ServiceUnavailable,
                };
                ctx.rpc().respond::<()>(&reply_to, Err(RpcError::new(code)));
            }
        }
    }
    Reply::Ok(ServiceRegisterResult { name, methods: names })
}

/// The client a `service_notify` or `service_kick` names: by account (a
/// logged-in session) or by connection id. `-32602` with field `account`
/// when neither is given.
fn target(
    target: &ServiceTarget,
    index: &SessionIndex,
    connections: &ConnectionIndex,
) -> Result<Option<Entity>, RpcError> {
    match (&target.account, target.conn) {
        (Some(account), _) => Ok(index.entity_of_account_name(account)),
        (None, Some(conn)) => Ok(connections.get(ConnectionId(conn))),
        (None, None) => Err(RpcError::invalid_params("account")),
    }
}

/// `service_notify {"account":A or "conn":N,"method":M,"params":OBJECT}` →
/// `{"delivered":B}` (docs/protocol.md §8): sends notification `M` to that
/// client. `M` may not be `login_pending`, `kicked` or `disconnected`
/// (`-32602`, field `method`); a service connection is never a target.
pub fn service_notify(
    In(req): In<Request<ServiceNotifyParams>>,
    rpc: Rpc,
    index: Res<SessionIndex>,
    connections: Res<ConnectionIndex>,
    service_connections: Query<(), With<ServiceConnection>>,
) -> Result<Delivered, RpcError> {
    let ServiceNotifyParams { account, conn, method, params } = req.params;
    let who = ServiceTarget { account, conn };
    if [notification::LOGIN_PENDING, notification::KICKED, notification::DISCONNECTED].contains(&method.as_str()) {
        return Err(RpcError::invalid_params("method"));
    }
    let params = serde_json::Value::Object(params.unwrap_or_default());
    let Some(entity) = target(&who, &index, &connections)?.filter(|e| !service_connections.contains(*e)) else {
        return Ok(Delivered { delivered: false });
    };
    let delivered = rpc.notify(entity, &method, &params) == SendStatus::Queued;
    Ok(Delivered { delivered })
}

/// `service_kick {"account":A or "conn":N}` → `{"kicked":B}` (docs/protocol.md
/// §8): kicks that logged-in session with reason `admin`, save first (§6);
/// `false` when there is no such session.
pub fn service_kick(
    In(req): In<Request<ServiceTarget>>,
    mut ctx: SessionCtx,
    connections: Res<ConnectionIndex>,
) -> Result<KickResult, RpcError> {
    let Some(entity) = target(&req.params, ctx.index(), &connections)? else {
        return Ok(KickResult { kicked: false });
    };
    if !ctx.session(entity).is_some_and(|s| s.is_logged_in()) {
        return Ok(KickResult { kicked: false });
    }
    ctx.kick(entity, DisconnectReason::Admin);
    Ok(KickResult { kicked: true })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_names() {
        for ok in ["a", "leaderboard_top", "shop.buy", "a1", &"a".repeat(64)] {
            assert!(is_valid_service_method(ok), "{ok}");
        }
        for bad in ["", "A", "1a", "_a", "a-b", "a b", "service_x", "é", &"a".repeat(65)] {
            assert!(!is_valid_service_method(bad), "{bad}");
        }
    }
}
