//! The machinery behind a [`Client`](super::Client): one connection, its three
//! tasks and the state they share. The same on every transport: the
//! [`transport`](super::transport) gives it a stream of received frames and
//! a sink for frames to send.
//!
//! ```text
//!  Client::call ──register id + deadline──> pending (BTreeMap id -> reply)
//!       │                                        ▲          │ earliest deadline
//!       └──frame─> outgoing (mpsc) ──> writer ──>│ sink     ▼
//!                                                │       watchdog ──> close(Timeout)
//!  frames ─frame──> reader ──response by id──────┘
//!                     ├──notification──> events (mpsc) ──> application
//!                     └──kicked──> userdata_save (reply goes to events as KickSave)
//! ```
//!
//! Everything that ends the connection goes through [`Connection::close`],
//! which runs once: it records why, fails every pending call, drops the token
//! and the event sender, and cancels the tasks: the writer closes its sink
//! (bounded by [`CLOSE_GRACE`]) and both drop their halves of the socket.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Map, Value, json};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use portcullis_protocol::{ErrorCode, method, notification};

use super::transport::{FrameSink, FrameStream};
use super::{ClientConfig, ClientError, ClientEvent, IncomingRequest, LoginResult, Notification, SaveResult};

/// How long the writer may take, once the connection is closed, to end the
/// stream politely (flush, TLS `close_notify`, WebSocket Close frame) before
/// it drops the socket anyway.
pub(crate) const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// The data sent by the automatic `userdata_save` on `kicked` (docs/protocol.md §6–§7).
#[derive(Clone, Default)]
pub(crate) enum SaveSource {
    /// Nothing to save: a kick sends no save.
    #[default]
    None,
    /// This value, set by `Client::set_save_data`.
    Data(Value),
    /// Whatever this callback returns at the moment of the kick.
    Provider(Arc<dyn Fn() -> Value + Send + Sync>),
}

/// Why the connection closed; decides what pending calls fail with.
#[derive(Debug, Clone)]
pub(crate) enum CloseCause {
    /// The application closed it, or dropped its last `Client`.
    Local,
    /// A request waited longer than `rpc_timeout` (docs/protocol.md §7).
    Timeout,
    /// The server closed it (end of stream, or a reset).
    Eof,
    /// Reading or writing failed.
    Io(std::io::ErrorKind, String),
    /// The server sent a frame that is not JSON-RPC 2.0 (or not a text frame).
    Protocol(String),
}

impl CloseCause {
    /// The error a call pending at the close fails with.
    fn error(&self, reason: Option<String>) -> ClientError {
        match self {
            Self::Local | Self::Eof => ClientError::Closed { reason },
            Self::Timeout => ClientError::Timeout,
            Self::Io(kind, message) => ClientError::Io(std::io::Error::new(*kind, message.clone())),
            Self::Protocol(message) => ClientError::Protocol(message.clone()),
        }
    }

    /// A read or write error: a peer that closed or reset counts as [`CloseCause::Eof`].
    pub(crate) fn from_io(error: std::io::Error) -> Self {
        if peer_closed(&error) {
            Self::Eof
        } else if error.kind() == std::io::ErrorKind::InvalidData {
            Self::Protocol(format!("server sent invalid UTF-8: {error}"))
        } else {
            Self::Io(error.kind(), error.to_string())
        }
    }
}

/// Whether an I/O error only says that the server closed or reset the connection.
fn peer_closed(error: &std::io::Error) -> bool {
    use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset, UnexpectedEof};
    matches!(error.kind(), BrokenPipe | ConnectionAborted | ConnectionReset | UnexpectedEof)
}

/// Where the response to one request goes.
enum Reply {
    /// To the `Client` call awaiting it.
    Call(oneshot::Sender<Result<Value, ClientError>>),
    /// To the event stream as [`ClientEvent::KickSave`].
    KickSave,
}

/// A request sent and not yet answered.
struct Pending {
    /// When the request times out: sent time + `rpc_timeout`.
    deadline: Instant,
    /// Who gets the response.
    reply: Reply,
}

/// The logged-in session as this client knows it.
struct Session {
    /// The account the token was issued for, as the server spelled it.
    account: String,
    /// The live token (docs/protocol.md §4).
    token: String,
}

/// State behind the connection's lock. Never held across an `.await` or
/// while calling application code.
struct State {
    /// The id of the next request; ids are 1, 2, 3, ...
    next_id: u64,
    /// Requests in flight by id. Ids and deadlines grow together, so the
    /// first entry has the earliest deadline.
    pending: BTreeMap<u64, Pending>,
    /// The held token, dropped when the connection closes (docs/protocol.md §7).
    session: Option<Session>,
    /// What to save when kicked.
    save: SaveSource,
    /// Sender of the event stream; `None` once closed, so the stream ends.
    events: Option<mpsc::UnboundedSender<ClientEvent>>,
    /// Receiver of the event stream until the application takes it.
    events_rx: Option<mpsc::UnboundedReceiver<ClientEvent>>,
    /// `reason` of the server's `disconnected` notification.
    disconnect_reason: Option<String>,
    /// Why the connection closed; `None` while it is open.
    closed: Option<CloseCause>,
}

/// One client connection: the state its tasks and `Client` handles share.
pub(crate) struct Connection {
    /// The configuration given at connect.
    pub(crate) config: ClientConfig,
    /// Mutable state (see [`State`]).
    state: Mutex<State>,
    /// Frames for the writer task, in send order.
    outgoing: mpsc::UnboundedSender<String>,
    /// Cancelled by [`Connection::close`]; stops the tasks.
    cancel: CancellationToken,
    /// The three tasks, so `closed()` can wait until the socket is dropped.
    tracker: TaskTracker,
    /// Wakes the watchdog when a request arrives in an empty pending map.
    watchdog: Notify,
}

/// Closes the connection when a task ends, even by a panic in application
/// code (the save provider), so a dead task never leaves calls hanging.
struct CloseOnDrop(Arc<Connection>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.close(CloseCause::Local);
    }
}

impl Connection {
    /// Takes over an open connection, as its received frames and its sink,
    /// and spawns the reader, writer and watchdog tasks on the current tokio
    /// runtime.
    pub(crate) fn start(frames: FrameStream, sink: FrameSink, config: ClientConfig) -> Arc<Self> {
        let (outgoing, outgoing_rx) = mpsc::unbounded_channel();
        let (events, events_rx) = mpsc::unbounded_channel();
        let connection = Arc::new(Self {
            config,
            state: Mutex::new(State {
                next_id: 1,
                pending: BTreeMap::new(),
                session: None,
                save: SaveSource::None,
                events: Some(events),
                events_rx: Some(events_rx),
                disconnect_reason: None,
                closed: None,
            }),
            outgoing,
            cancel: CancellationToken::new(),
            tracker: TaskTracker::new(),
            watchdog: Notify::new(),
        });
        connection.tracker.spawn(Arc::clone(&connection).read_loop(frames));
        connection.tracker.spawn(Arc::clone(&connection).write_loop(outgoing_rx, sink));
        connection.tracker.spawn(Arc::clone(&connection).watchdog_loop());
        connection.tracker.close();
        connection
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sends a request and waits for its response (`result` or error).
    pub(crate) async fn call(&self, method: &str, params: Value) -> Result<Value, ClientError> {
        let (tx, rx) = oneshot::channel();
        self.start_request(method, params, Reply::Call(tx))?;
        match rx.await {
            Ok(outcome) => outcome,
            Err(_) => Err(self.closed_error()),
        }
    }

    /// Registers a request (id, deadline, reply) and queues its line.
    fn start_request(&self, method: &str, params: Value, reply: Reply) -> Result<(), ClientError> {
        let mut state = self.lock();
        self.start_request_locked(&mut state, method, params, reply)
    }

    /// [`Connection::start_request`] under a lock already held.
    fn start_request_locked(
        &self,
        state: &mut State,
        method: &str,
        params: Value,
        reply: Reply,
    ) -> Result<(), ClientError> {
        if state.closed.is_some() {
            return Err(ClientError::Closed { reason: state.disconnect_reason.clone() });
        }
        let id = state.next_id;
        state.next_id += 1;
        let line = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let was_idle = state.pending.is_empty();
        let deadline = Instant::now() + self.config.rpc_timeout;
        state.pending.insert(id, Pending { deadline, reply });
        if self.outgoing.send(line.to_string()).is_err() {
            state.pending.remove(&id);
            return Err(ClientError::Closed { reason: state.disconnect_reason.clone() });
        }
        if was_idle {
            self.watchdog.notify_one();
        }
        Ok(())
    }

    /// Queues one line as is (the writer adds the `\n`).
    pub(crate) fn send_line(&self, line: String) -> Result<(), ClientError> {
        let state = self.lock();
        if state.closed.is_some() || self.outgoing.send(line).is_err() {
            return Err(ClientError::Closed { reason: state.disconnect_reason.clone() });
        }
        Ok(())
    }

    /// The error for a call made after the close.
    pub(crate) fn closed_error(&self) -> ClientError {
        ClientError::Closed { reason: self.lock().disconnect_reason.clone() }
    }

    /// The held token.
    pub(crate) fn token(&self) -> Option<String> {
        self.lock().session.as_ref().map(|session| session.token.clone())
    }

    /// The held token if it was issued for `account` (compared
    /// case-insensitively, docs/protocol.md §4).
    pub(crate) fn token_for(&self, account: &str) -> Option<String> {
        let state = self.lock();
        let session = state.session.as_ref()?;
        session.account.eq_ignore_ascii_case(account).then(|| session.token.clone())
    }

    /// Holds the token of a successful login, unless the connection has closed.
    pub(crate) fn store_session(&self, login: &LoginResult) {
        let mut state = self.lock();
        if state.closed.is_none() {
            state.session = Some(Session { account: login.account.clone(), token: login.token.clone() });
        }
    }

    /// Drops the held token if it is still `token`.
    pub(crate) fn forget_token(&self, token: &str) {
        let mut state = self.lock();
        if state.session.as_ref().is_some_and(|session| session.token == token) {
            state.session = None;
        }
    }

    /// Sets what a kick saves.
    pub(crate) fn set_save(&self, save: SaveSource) {
        self.lock().save = save;
    }

    /// Takes the event receiver (once).
    pub(crate) fn take_events(&self) -> Option<mpsc::UnboundedReceiver<ClientEvent>> {
        self.lock().events_rx.take()
    }

    /// The `reason` of the server's `disconnected` notification, if one came.
    pub(crate) fn disconnect_reason(&self) -> Option<String> {
        self.lock().disconnect_reason.clone()
    }

    /// Whether the connection is closed (or closing).
    pub(crate) fn is_closed(&self) -> bool {
        self.lock().closed.is_some()
    }

    /// Resolves once the connection is closed and its tasks have dropped the socket.
    pub(crate) async fn closed(&self) {
        self.cancel.cancelled().await;
        self.tracker.wait().await;
    }

    /// Ends the connection (once; later calls do nothing): records `cause`,
    /// drops the token, fails every pending call and ends the event stream.
    pub(crate) fn close(&self, cause: CloseCause) {
        let (pending, events, reason) = {
            let mut state = self.lock();
            if state.closed.is_some() {
                return;
            }
            state.closed = Some(cause.clone());
            state.session = None;
            (std::mem::take(&mut state.pending), state.events.take(), state.disconnect_reason.clone())
        };
        for pending in pending.into_values() {
            let error = cause.error(reason.clone());
            match pending.reply {
                Reply::Call(tx) => {
                    let _ = tx.send(Err(error));
                }
                Reply::KickSave => {
                    if let Some(events) = &events {
                        let _ = events.send(ClientEvent::KickSave(Err(error)));
                    }
                }
            }
        }
        drop(events);
        self.cancel.cancel();
    }

    /// Hands an event to the application, if the stream is still open.
    fn emit(&self, event: ClientEvent) {
        emit_locked(&self.lock(), event);
    }

    /// Reads frames until the server closes, a frame is not JSON-RPC, or the
    /// connection is closed.
    async fn read_loop(self: Arc<Self>, mut frames: FrameStream) {
        let _guard = CloseOnDrop(Arc::clone(&self));
        loop {
            let frame = tokio::select! {
                biased;
                () = self.cancel.cancelled() => return,
                frame = frames.next() => frame,
            };
            let cause = match frame {
                Some(Ok(line)) => match self.handle_line(&line) {
                    Ok(()) => continue,
                    Err(message) => CloseCause::Protocol(message),
                },
                Some(Err(cause)) => cause,
                None => CloseCause::Eof,
            };
            self.close(cause);
            return;
        }
    }

    /// Writes queued frames, batching what is queued into one flush; once
    /// the connection is closed, closes the sink (at most [`CLOSE_GRACE`]).
    async fn write_loop(self: Arc<Self>, mut outgoing: mpsc::UnboundedReceiver<String>, mut sink: FrameSink) {
        let _guard = CloseOnDrop(Arc::clone(&self));
        let result = tokio::select! {
            () = self.cancel.cancelled() => Ok(()),
            result = pump(&mut outgoing, &mut sink) => result,
        };
        match result {
            // A peer that closed: the reader sees it too and closes with the
            // server's reason, or the watchdog times the calls out.
            Err(error) if peer_closed(&error) => self.cancel.cancelled().await,
            Err(error) => self.close(CloseCause::from_io(error)),
            Ok(()) => {
                self.cancel.cancelled().await;
                let _ = tokio::time::timeout(CLOSE_GRACE, sink.close()).await;
            }
        }
    }

    /// Closes the connection when the oldest pending request passes its deadline.
    async fn watchdog_loop(self: Arc<Self>) {
        let _guard = CloseOnDrop(Arc::clone(&self));
        loop {
            let next = self.lock().pending.first_key_value().map(|(_, pending)| pending.deadline);
            match next {
                Some(deadline) if deadline <= Instant::now() => {
                    self.close(CloseCause::Timeout);
                    return;
                }
                Some(deadline) => tokio::select! {
                    () = self.cancel.cancelled() => return,
                    () = tokio::time::sleep_until(deadline) => {}
                },
                None => tokio::select! {
                    () = self.cancel.cancelled() => return,
                    () = self.watchdog.notified() => {}
                },
            }
        }
    }

    /// Routes one frame (a line or a text message) from the server; `Err` (a
    /// description) when it is not JSON-RPC 2.0, which closes the connection.
    fn handle_line(&self, line: &str) -> Result<(), String> {
        if line.trim_matches([' ', '\t', '\r']).is_empty() {
            return Ok(());
        }
        let value: Value = serde_json::from_str(line)
            .map_err(|error| format!("server sent invalid JSON ({error}): {}", excerpt(line)))?;
        let Value::Object(mut message) = value else {
            return Err(format!("server sent a non-object: {}", excerpt(line)));
        };
        if message.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
            return Err(format!("server sent a message without \"jsonrpc\":\"2.0\": {}", excerpt(line)));
        }
        match (message.contains_key("id"), message.remove("method")) {
            (false, Some(Value::String(method))) => {
                self.handle_notification(Notification::new(method, message.remove("params")));
                Ok(())
            }
            (true, None) => self.handle_response(message, line),
            // A request from the server: only a backend service gets these (docs/protocol.md §8).
            (true, Some(Value::String(method))) => {
                let id = message.remove("id").unwrap_or(Value::Null);
                let params = Notification::new(String::new(), message.remove("params")).params;
                self.emit(ClientEvent::Request(IncomingRequest { id, method, params }));
                Ok(())
            }
            _ => Err(format!("server sent neither a response nor a notification: {}", excerpt(line))),
        }
    }

    /// Routes a response to its call, or to the events when no call has its id.
    fn handle_response(&self, mut message: Map<String, Value>, line: &str) -> Result<(), String> {
        if message.contains_key("result") == message.contains_key("error") {
            return Err(format!("server sent a response without exactly one of result and error: {}", excerpt(line)));
        }
        let id = message.get("id").and_then(Value::as_u64);
        let pending = id.and_then(|id| self.lock().pending.remove(&id));
        let Some(pending) = pending else {
            self.emit(ClientEvent::Unmatched(Value::Object(message)));
            return Ok(());
        };
        let outcome = match message.remove("result") {
            Some(result) => Ok(result),
            None => Err(rpc_error(message.remove("error").unwrap_or(Value::Null))),
        };
        match pending.reply {
            Reply::Call(tx) => {
                let _ = tx.send(outcome);
            }
            Reply::KickSave => {
                let outcome = outcome.and_then(|result| parse::<SaveResult>(method::USERDATA_SAVE, result));
                self.emit(ClientEvent::KickSave(outcome));
            }
        }
        Ok(())
    }

    /// Records `disconnected`, answers `kicked` with the automatic save
    /// (docs/protocol.md §5–§7), and reports the notification.
    fn handle_notification(&self, notification: Notification) {
        match notification.method.as_str() {
            notification::KICKED => self.kick_save(notification),
            notification::DISCONNECTED => {
                let mut state = self.lock();
                state.disconnect_reason = notification.reason().map(str::to_owned);
                emit_locked(&state, ClientEvent::Notification(notification));
            }
            _ => self.emit(ClientEvent::Notification(notification)),
        }
    }

    /// Queues `userdata_save` with the save data and the held token (nothing
    /// without a token or without data), then reports `kicked`: whatever the
    /// application sends after seeing `kicked` goes out after the save.
    fn kick_save(&self, kicked: Notification) {
        let (token, save) = {
            let state = self.lock();
            let token = state.session.as_ref().map(|session| session.token.clone());
            (token, state.save.clone())
        };
        // The provider is application code: call it without the lock.
        let data = match (&token, save) {
            (None, _) | (_, SaveSource::None) => None,
            (Some(_), SaveSource::Data(data)) => Some(data),
            (Some(_), SaveSource::Provider(provider)) => Some(provider()),
        };
        let mut state = self.lock();
        if let (Some(token), Some(data)) = (token, data) {
            let params = json!({"token": token, "data": data});
            // Fails only when closed, and then there is no one to tell.
            let _ = self.start_request_locked(&mut state, method::USERDATA_SAVE, params, Reply::KickSave);
        }
        emit_locked(&state, ClientEvent::Notification(kicked));
    }
}

/// Hands an event to the application, if the stream is still open.
fn emit_locked(state: &State, event: ClientEvent) {
    if let Some(events) = &state.events {
        let _ = events.send(event);
    }
}

/// Writes every queued frame, feeding all that is queued before one flush.
async fn pump(outgoing: &mut mpsc::UnboundedReceiver<String>, sink: &mut FrameSink) -> Result<(), std::io::Error> {
    while let Some(line) = outgoing.recv().await {
        sink.feed(line).await?;
        while let Ok(line) = outgoing.try_recv() {
            sink.feed(line).await?;
        }
        sink.flush().await?;
    }
    Ok(())
}

/// A JSON-RPC error object as a [`ClientError::Rpc`], or
/// [`ClientError::Protocol`] when it lacks an integer `code` or a string `message`.
fn rpc_error(error: Value) -> ClientError {
    let code = error.get("code").and_then(Value::as_i64);
    let message = error.get("message").and_then(Value::as_str);
    match (code, message) {
        (Some(code), Some(message)) => ClientError::Rpc {
            code: ErrorCode::from_code(code),
            message: message.to_owned(),
            data: error.get("data").cloned(),
        },
        _ => ClientError::Protocol(format!("server sent a malformed error object: {error}")),
    }
}

/// Reads a method's result into its typed form; [`ClientError::Protocol`] when
/// the shape is wrong.
pub(crate) fn parse<T: serde::de::DeserializeOwned>(method: &str, result: Value) -> Result<T, ClientError> {
    serde_json::from_value(result).map_err(|error| ClientError::Protocol(format!("bad `{method}` result: {error}")))
}

/// The start of a line, for error messages.
fn excerpt(line: &str) -> &str {
    const MAX: usize = 200;
    if line.len() <= MAX {
        return line;
    }
    let mut end = MAX;
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    &line[..end]
}
