//! The ECS side of the admin API: calls from the admin thread, answered in
//! `Update` with the same public APIs game code uses.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bevy_app::AppExit;
use bevy_ecs::prelude::*;
use bevy_time::{Real, Time};
use crossbeam_channel::{Receiver, Sender};
use metrics::{Counter, Gauge};
use portcullis_net::{
    CloseCause, Connection, ConnectionClosed, ConnectionId, ConnectionIndex, ConnectionOpened, ListenFailed,
    SendStatus, Transport,
};
use portcullis_protocol::DisconnectReason;
use portcullis_rpc::{Rpc, notification_line};
use portcullis_runtime::{FrameWaker, RequestShutdown};
use portcullis_services::ServiceConnection;
use portcullis_session::{Kick, Session, SessionIndex, SessionState, StoreHandle};

use crate::api::{BroadcastResult, KickRequest, KickResult, SessionInfo};
use crate::{AdminListenFailed, AdminListening, AdminState, READY};

/// When a connection was accepted (`Time<Real>` elapsed): put on every
/// connection entity by the admin plugin, read for `connected_ms`.
#[derive(Component, Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectedAt(pub Duration);

/// What the admin thread asks the ECS.
#[derive(Debug)]
pub(crate) enum AdminRequest {
    /// Set the gauges that are read from the world (before a scrape).
    Gauges,
    /// List the connections.
    Sessions,
    /// Kick a session with reason `admin`.
    Kick(KickRequest),
    /// Send a notification to every logged-in session.
    Broadcast { method: String, params: serde_json::Map<String, serde_json::Value> },
    /// Start the graceful shutdown.
    Shutdown,
}

/// The ECS's answer.
#[derive(Debug)]
pub(crate) enum AdminAnswer {
    Done,
    Sessions(Vec<SessionInfo>),
    Kick(KickResult),
    Broadcast(BroadcastResult),
}

/// One call: the request and where its answer goes.
pub(crate) struct AdminCall {
    pub(crate) request: AdminRequest,
    pub(crate) reply: tokio::sync::oneshot::Sender<AdminAnswer>,
}

/// The receiving end of the calls (and the sender, until the listener takes it).
#[derive(Resource)]
pub(crate) struct AdminInbox {
    pub(crate) rx: Receiver<AdminCall>,
    pub(crate) tx: Option<Sender<AdminCall>>,
}

/// The planned listener; taken when bound.
#[derive(Resource)]
pub(crate) struct AdminListen {
    pub(crate) addr: SocketAddr,
    pub(crate) token: Option<String>,
}

/// Stops the admin thread when the app is dropped.
#[derive(Resource)]
pub(crate) struct AdminThread {
    _stop: tokio::sync::watch::Sender<()>,
}

/// `portcullis_kicks_total{reason}`, one handle per reason.
#[derive(Resource)]
pub(crate) struct KickCounters(Vec<Counter>);

impl Default for KickCounters {
    fn default() -> Self {
        Self(
            DisconnectReason::ALL
                .iter()
                .map(|reason| metrics::counter!("portcullis_kicks_total", "reason" => reason.as_str()))
                .collect(),
        )
    }
}

impl KickCounters {
    pub(crate) fn count(&self, reason: DisconnectReason) {
        if let Some(counter) = self.0.get(reason.index()) {
            counter.increment(1);
        }
    }
}

/// `portcullis_disconnects_total` for the ends the server did not announce
/// with `disconnected` (those are counted by the rpc layer with their reason).
#[derive(Resource)]
pub(crate) struct CloseCounters {
    peer: Counter,
    error: Counter,
    aborted: Counter,
}

impl Default for CloseCounters {
    fn default() -> Self {
        let name = "portcullis_disconnects_total";
        Self {
            peer: metrics::counter!(name, "reason" => "peer_closed"),
            error: metrics::counter!(name, "reason" => "transport_error"),
            aborted: metrics::counter!(name, "reason" => "aborted"),
        }
    }
}

/// The gauges read from the world at each scrape.
#[derive(Resource)]
pub(crate) struct WorldGauges {
    tcp: Gauge,
    ws: Gauge,
    states: Vec<(&'static str, Gauge)>,
    queue: Gauge,
}

/// The `state` labels of `portcullis_sessions` and `/api/sessions`.
pub const SESSION_STATES: [&str; 4] = ["awaiting_login", "waiting_takeover", "logged_in", "kicking"];

impl Default for WorldGauges {
    fn default() -> Self {
        Self {
            tcp: metrics::gauge!("portcullis_connections", "transport" => "tcp"),
            ws: metrics::gauge!("portcullis_connections", "transport" => "ws"),
            states: SESSION_STATES
                .iter()
                .map(|s| (*s, metrics::gauge!("portcullis_sessions", "state" => *s)))
                .collect(),
            queue: metrics::gauge!("portcullis_store_queue_depth"),
        }
    }
}

/// The `state` of a connection in the admin API; `None` for one that is
/// closed already (left out of the list). A backend service's connection
/// (`service` true: it has a [`ServiceConnection`], docs/services.md), or
/// one without a [`Session`], is `service`.
pub fn state_label(session: Option<&Session>, service: bool) -> Option<&'static str> {
    let Some(session) = session else { return Some("service") };
    if service && !matches!(session.state(), SessionState::Closed) {
        return Some("service");
    }
    match session.state() {
        SessionState::AwaitingLogin => Some("awaiting_login"),
        SessionState::WaitingTakeover { .. } => Some("waiting_takeover"),
        SessionState::LoggedIn { .. } => Some("logged_in"),
        SessionState::Kicking { .. } => Some("kicking"),
        SessionState::Closed => None,
    }
}

/// The account of a session for the admin API.
fn account_of(session: Option<&Session>) -> Option<String> {
    match session?.state() {
        SessionState::WaitingTakeover { account, .. }
        | SessionState::LoggedIn { account }
        | SessionState::Kicking { account, .. } => Some(account.name.clone()),
        _ => None,
    }
}

/// `tcp` or `ws` (TLS or not).
fn transport_label(transport: Transport) -> &'static str {
    match transport {
        Transport::WebSocket { .. } => "ws",
        _ => "tcp",
    }
}

/// Observer of [`ConnectionOpened`]: stamps [`ConnectedAt`].
pub(crate) fn stamp_connected_at(opened: On<ConnectionOpened>, time: Res<Time<Real>>, mut commands: Commands) {
    commands.entity(opened.entity).try_insert(ConnectedAt(time.elapsed()));
}

/// Observer of [`ConnectionClosed`]: counts the ends not announced by the server.
pub(crate) fn count_closed(closed: On<ConnectionClosed>, counters: Res<CloseCounters>) {
    match closed.cause {
        CloseCause::Peer => counters.peer.increment(1),
        CloseCause::Error => counters.error.increment(1),
        CloseCause::Aborted => counters.aborted.increment(1),
        CloseCause::Server => {}
    }
}

/// `PostStartup`: binds the admin listener (after the game listeners of
/// `Startup`), starts its thread, and reports [`AdminListening`]; marks the
/// server ready when the store is open too. Nothing is bound when a game
/// listener failed (the app is exiting).
pub(crate) fn start_admin_listener(world: &mut World) {
    if world.contains_resource::<ListenFailed>() {
        return;
    }
    let Some(plan) = world.remove_resource::<AdminListen>() else { return };
    let Some(tx) = world.get_resource_mut::<AdminInbox>().and_then(|mut inbox| inbox.tx.take()) else { return };
    let waker = world.get_resource::<FrameWaker>().cloned().unwrap_or_default();
    let state = world.get_resource_or_init::<AdminState>().clone();
    let listener = match std::net::TcpListener::bind(plan.addr).and_then(|l| {
        l.set_nonblocking(true)?;
        Ok((l.local_addr()?, l))
    }) {
        Ok(bound) => bound,
        Err(error) => {
            bevy_log::error!(addr = %plan.addr, error = %error, "cannot listen (admin)");
            let failed = AdminListenFailed { addr: plan.addr, error: Arc::new(error) };
            world.insert_resource(failed.clone());
            world.trigger(failed);
            world.write_message(AppExit::error());
            return;
        }
    };
    let (addr, std_listener) = listener;
    let (stop, stopped) = tokio::sync::watch::channel(());
    let shared = crate::http::Shared {
        token: plan.token,
        calls: tx,
        waker,
        state: state.clone(),
        metrics: crate::recorder_handle(),
    };
    let spawned = std::thread::Builder::new()
        .name("portcullis-admin".into())
        .spawn(move || crate::http::run(std_listener, shared, stopped));
    if let Err(error) = spawned {
        bevy_log::error!(error = %error, "cannot start the admin thread");
        world.write_message(AppExit::error());
        return;
    }
    world.insert_resource(AdminThread { _stop: stop });
    world.init_resource::<WorldGauges>();
    let store_open = world.get_resource::<StoreHandle>().is_some_and(|handle| handle.get().is_some());
    let draining = world.get_resource::<portcullis_runtime::Shutdown>().is_some_and(|s| s.is_requested());
    if store_open && !draining {
        state.0.store(READY, Ordering::Release);
    }
    bevy_log::info!(addr = %addr, "admin listening");
    world.trigger(AdminListening { addr });
}

/// What the admin API reads of one connection: entity, connection, session
/// (none for a bare connection), when it connected, whether it is a service.
type ConnectionView =
    (Entity, &'static Connection, Option<&'static Session>, Option<&'static ConnectedAt>, Has<ServiceConnection>);

/// `Update`: answers every call that arrived. Listing and gauges walk the
/// connections (O(connections), once per call, not per frame).
#[allow(clippy::too_many_arguments)]
pub(crate) fn answer_admin_calls(
    inbox: Res<AdminInbox>,
    connections: Query<ConnectionView>,
    sessions: Res<SessionIndex>,
    index: Res<ConnectionIndex>,
    rpc: Rpc,
    store: Option<Res<StoreHandle>>,
    gauges: Option<Res<WorldGauges>>,
    time: Res<Time<Real>>,
    mut commands: Commands,
) {
    while let Ok(call) = inbox.rx.try_recv() {
        let answer = match call.request {
            AdminRequest::Gauges => {
                if let Some(gauges) = &gauges {
                    let (mut tcp, mut ws) = (0u64, 0u64);
                    let mut states = [0u64; SESSION_STATES.len()];
                    for (_, conn, session, _, service) in &connections {
                        match conn.transport() {
                            Transport::WebSocket { .. } => ws += 1,
                            _ => tcp += 1,
                        }
                        if let Some(label) = state_label(session, service)
                            && let Some(i) = SESSION_STATES.iter().position(|s| *s == label)
                        {
                            states[i] += 1;
                        }
                    }
                    gauges.tcp.set(tcp as f64);
                    gauges.ws.set(ws as f64);
                    for ((_, gauge), n) in gauges.states.iter().zip(states) {
                        gauge.set(n as f64);
                    }
                    let queued = store.as_ref().and_then(|s| s.get().map(|s| s.queued())).unwrap_or(0);
                    gauges.queue.set(queued as f64);
                }
                AdminAnswer::Done
            }
            AdminRequest::Sessions => {
                let now = time.elapsed();
                let mut list: Vec<SessionInfo> = connections
                    .iter()
                    .filter_map(|(_, conn, session, at, service)| {
                        let state = state_label(session, service)?;
                        Some(SessionInfo {
                            conn: conn.id().0,
                            account: account_of(session),
                            state: state.to_owned(),
                            transport: transport_label(conn.transport()).to_owned(),
                            peer: conn.peer().to_string(),
                            connected_ms: at.map_or(0, |at| {
                                u64::try_from(now.saturating_sub(at.0).as_millis()).unwrap_or(u64::MAX)
                            }),
                        })
                    })
                    .collect();
                list.sort_by_key(|s| s.conn);
                AdminAnswer::Sessions(list)
            }
            AdminRequest::Kick(request) => {
                let entity = match (&request.account, request.conn) {
                    (Some(account), _) => sessions.entity_of_account_name(account),
                    (None, Some(conn)) => index.get(ConnectionId(conn)),
                    (None, None) => None,
                };
                let live = entity.filter(|e| {
                    connections.get(*e).is_ok_and(|(_, conn, session, _, _)| {
                        !conn.is_closing() && session.is_none_or(|s| !matches!(s.state(), SessionState::Closed))
                    })
                });
                if let Some(entity) = live {
                    bevy_log::info!(conn = %entity, reason = "admin", "admin kick");
                    commands.trigger(Kick { entity, reason: DisconnectReason::Admin });
                }
                AdminAnswer::Kick(KickResult { kicked: live.is_some() })
            }
            AdminRequest::Broadcast { method, params } => {
                let mut delivered = 0;
                if let Ok(line) = notification_line(&method, &params) {
                    for (entity, _, session, _, _) in &connections {
                        if session.is_some_and(|s| matches!(s.state(), SessionState::LoggedIn { .. }))
                            && let Some(conn) = rpc.connection(entity)
                            && conn.send(line.clone()) == SendStatus::Queued
                        {
                            delivered += 1;
                        }
                    }
                }
                bevy_log::info!(method = %method, delivered, "admin broadcast");
                AdminAnswer::Broadcast(BroadcastResult { delivered })
            }
            AdminRequest::Shutdown => {
                bevy_log::info!("shutdown requested through the admin API");
                commands.trigger(RequestShutdown);
                AdminAnswer::Done
            }
        };
        let _ = call.reply.send(answer);
    }
}
