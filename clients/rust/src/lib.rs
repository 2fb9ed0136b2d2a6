//! portcullis_client: the reference client. Speaks docs/protocol.md on tokio over TCP, TLS and
//! WebSocket, and follows its §7 client rules the same way on each.
//!
//! ```text
//!  application ──Client::login/ping/call (&self, any task)──> request, id 1, 2, 3, ...
//!       ▲                                                        │ one frame each
//!       │ results matched by id                                  ▼
//!       ├──────────── reader task <──── server ──── writer task <┘
//!       │                 │          (transport: lines over TCP or TLS,
//!       │                 │           text messages over ws:// or wss://)
//!       └── events() <────┘ notifications (kicked, disconnected, ...),
//!                           outcome of the automatic save on `kicked`
//! ```
//!
//! - Transports ([`Endpoint`], docs/protocol.md §1): `HOST:PORT` is plain TCP,
//!   `tls://HOST:PORT` the same lines inside TLS (§1.2), `ws://HOST:PORT/` and
//!   `wss://HOST:PORT/` WebSocket (§1.1). TLS trusts the system's root
//!   certificates, or only those of [`ClientConfig::ca_file`] (e.g. the
//!   development pair `portcullis cert` writes, docs/cli.md). Everything below
//!   is the same on every transport.
//! - Framing: one JSON message per `\n`-terminated line (docs/protocol.md §1),
//!   or per WebSocket text message (§1.1; pings are answered, a binary
//!   message from the server closes the connection).
//! - Several calls may be in flight on one connection; responses are matched
//!   by `id` in whatever order they come (§2). [`Client`] is `Clone`: clones
//!   share the connection.
//! - RPC timeout (§7): when any request waits longer than
//!   [`ClientConfig::rpc_timeout`], the client closes the connection and
//!   every pending call fails with [`ClientError::Timeout`].
//! - Token (§7): kept only while the connection lives; [`Client::login`] uses
//!   it first and falls back to the password when it is refused.
//! - Kick (§5–§7): on `kicked` the client at once sends `userdata_save` with
//!   the data given to [`Client::set_save_data`] or
//!   [`Client::set_save_provider`].
//! - Backend services (docs/services.md): [`Service`] registers a process
//!   as a service with the server's key, answers the clients' calls the
//!   server forwards to it with typed handlers, hears `session_started` /
//!   `session_ended`, and notifies or kicks clients ([`ServiceHandle`]).
//! - It never reconnects. Dropping the last `Client` handle closes the
//!   connection (with a WebSocket Close frame, status 1000, on `ws://`/`wss://`).
//!
//! # Examples
//!
//! ```no_run
//! use portcullis_client::{Client, ClientError, ClientEvent};
//!
//! # async fn run() -> Result<(), ClientError> {
//! // or "tls://127.0.0.1:7777", "ws://127.0.0.1:7778/", "wss://play.example.com:7778/"
//! let client = Client::connect("127.0.0.1:7777").await?;
//! let mut events = client.events().expect("taken once");
//! client.login("netease1", "123").await?;
//! client.set_save_data(serde_json::json!({"level": 3}));
//! let version = client.userdata_save(serde_json::json!({"level": 3})).await?.version;
//! # let _ = version;
//! while let Some(event) = events.recv().await {
//!     if let ClientEvent::Notification(n) = event {
//!         if n.method == "kicked" {
//!             // the client already sent `userdata_save` with {"level": 3}
//!         }
//!     }
//! }
//! # Ok(())
//! # }
//! ```

#![forbid(unsafe_code)]

mod config;
mod connection;
mod endpoint;
mod error;
mod messages;
mod service;
mod transport;

pub use config::ClientConfig;
pub use endpoint::{Endpoint, IntoEndpoint, Transport};
pub use error::ClientError;
pub use messages::{ClientEvent, IncomingRequest, Notification};
/// The wire types, shared with the server: a game client needs no other crate.
pub use portcullis_protocol::{
    self as protocol, DisconnectReason, ErrorCode, LoadResult, LoginResult, PingResult, RegisterResult, SaveResult,
};
pub use service::{Call, Service, ServiceBuilder, ServiceHandle, SessionEvent};

use std::fmt;
use std::sync::Arc;

use portcullis_protocol::{ChangePasswordParams, PasswordLoginParams, RegisterParams, TokenLoginParams, method};
use serde_json::{Map, Value, json};
use tokio::sync::mpsc::UnboundedReceiver;

use connection::{CloseCause, Connection, SaveSource, parse};

/// A connection to a Portcullis server (docs/protocol.md), with typed calls for
/// every method of §4, over any transport of [`Endpoint`].
///
/// Cheap to clone; clones share one connection, and every method takes
/// `&self`, so many tasks may have calls in flight at once. The connection
/// closes when the server closes it, on an RPC timeout, on
/// [`Client::close`], or when the last clone is dropped. Must be created
/// inside a tokio runtime (it spawns its reader, writer and timeout tasks).
///
/// Every call fails with [`ClientError::Closed`] once the connection is closed.
#[derive(Clone)]
pub struct Client {
    /// Shared by clones; its drop (the last clone's) closes the connection.
    handle: Arc<Handle>,
}

/// Owner of the connection on the application side; the tasks hold the
/// [`Connection`] but not this, so dropping the last `Client` ends them.
struct Handle {
    /// The connection state and tasks.
    connection: Arc<Connection>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.connection.close(CloseCause::Local);
    }
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("closed", &self.is_closed())
            .field("logged_in", &self.token().is_some())
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Connects with [`ClientConfig::default`] to `target`: `"HOST:PORT"`
    /// (TCP), `"tls://HOST:PORT"`, `"ws://HOST:PORT/PATH"`,
    /// `"wss://HOST:PORT/PATH"` (the forms of [`Endpoint`]), an [`Endpoint`],
    /// or a `SocketAddr` (TCP).
    ///
    /// # Errors
    /// As [`Client::connect_with`].
    pub async fn connect(target: impl IntoEndpoint) -> Result<Self, ClientError> {
        Self::connect_with(target, ClientConfig::default()).await
    }

    /// Connects to `target` (as for [`Client::connect`]) with `config`:
    /// opens TCP, then does the TLS handshake for `tls://` and `wss://`
    /// (trusting [`ClientConfig::ca_file`] or the system roots) and the
    /// WebSocket upgrade for `ws://` and `wss://` (docs/protocol.md §1.1–§1.2).
    ///
    /// # Errors
    /// [`ClientError::Address`] when `target` does not parse (e.g. an
    /// `http://` URL); [`ClientError::Io`] when the TCP connection cannot be
    /// opened; [`ClientError::Tls`] when the CA file or the system roots cannot
    /// be loaded or the handshake fails (an untrusted certificate, a
    /// plain-text server); [`ClientError::WebSocket`] when the upgrade is
    /// refused; [`ClientError::Timeout`] when all of it takes longer than
    /// [`ClientConfig::connect_timeout`].
    pub async fn connect_with(target: impl IntoEndpoint, config: ClientConfig) -> Result<Self, ClientError> {
        let endpoint = target.into_endpoint()?;
        let (frames, sink) = tokio::time::timeout(config.connect_timeout, transport::open(&endpoint, &config))
            .await
            .map_err(|_| ClientError::Timeout)??;
        let connection = Connection::start(frames, sink, config);
        Ok(Self { handle: Arc::new(Handle { connection }) })
    }

    fn connection(&self) -> &Connection {
        &self.handle.connection
    }

    /// The configuration this client was connected with.
    pub fn config(&self) -> &ClientConfig {
        &self.connection().config
    }

    /// Logs in the §7 way: with the held token when this client holds one
    /// issued for `account` (compared case-insensitively), and with `account`
    /// and `password` otherwise or when the server refuses the token with
    /// `TOKEN_INVALID` (1003; the refused token is then dropped). Holds the
    /// returned token (docs/protocol.md §4 `login`).
    ///
    /// # Errors
    /// The password login's errors: [`ClientError::Rpc`] with
    /// `INVALID_CREDENTIALS`, `ALREADY_LOGGED_IN`, `RATE_LIMITED`,
    /// `LOGIN_IN_PROGRESS`, ... (§3–§4); a token login error other than
    /// `TOKEN_INVALID` is returned as is, without trying the password.
    /// Connection errors as for every call.
    pub async fn login(&self, account: &str, password: &str) -> Result<LoginResult, ClientError> {
        if let Some(token) = self.connection().token_for(account) {
            match self.login_with_token(&token).await {
                Err(error) if error.code() == Some(ErrorCode::TokenInvalid) => {
                    self.connection().forget_token(&token);
                }
                outcome => return outcome,
            }
        }
        self.login_with_password(account, password).await
    }

    /// Sends `login {"account":account,"password":password}` (docs/protocol.md §4)
    /// and holds the returned token.
    ///
    /// # Errors
    /// [`ClientError::Rpc`] with the server's code, e.g. `INVALID_CREDENTIALS`
    /// (1002) or `ALREADY_LOGGED_IN` (1005); connection errors as for every call.
    pub async fn login_with_password(&self, account: &str, password: &str) -> Result<LoginResult, ClientError> {
        self.login_call(to_params(&PasswordLoginParams { account, password })?).await
    }

    /// Sends `login {"token":token}` (docs/protocol.md §4), with any token (a test
    /// may pass a dead one on purpose), and holds the returned token.
    ///
    /// # Errors
    /// [`ClientError::Rpc`] with `TOKEN_INVALID` (1003) when `token` is not
    /// this connection's live token; connection errors as for every call.
    pub async fn login_with_token(&self, token: &str) -> Result<LoginResult, ClientError> {
        self.login_call(to_params(&TokenLoginParams { token })?).await
    }

    async fn login_call(&self, params: Value) -> Result<LoginResult, ClientError> {
        let login: LoginResult = parse(method::LOGIN, self.call(method::LOGIN, params).await?)?;
        self.connection().store_session(&login);
        Ok(login)
    }

    /// Sends `logout {"token":T}` with the held token (no `token` member when
    /// none is held) and drops the token once the server answers `{}`
    /// (docs/protocol.md §4, §6).
    ///
    /// # Errors
    /// [`ClientError::Rpc`] with `NOT_LOGGED_IN` (1001) or `TOKEN_INVALID`
    /// (1003); connection errors as for every call.
    pub async fn logout(&self) -> Result<(), ClientError> {
        let token = self.token();
        self.call(method::LOGOUT, auth_params(token.as_deref(), Map::new())).await?;
        if let Some(token) = token {
            self.connection().forget_token(&token);
        }
        Ok(())
    }

    /// Sends `userdata_save {"token":T,"data":data}` with the held token
    /// (docs/protocol.md §4). `data` should be a JSON object of at most
    /// `max_userdata_bytes` (default 65,536) compact bytes; it is sent as given,
    /// so the server's `-32602` can be observed.
    ///
    /// # Errors
    /// [`ClientError::Rpc`] with `NOT_LOGGED_IN` (1001), `TOKEN_INVALID` (1003)
    /// or `INVALID_PARAMS` (-32602, `data.field` = `"data"`); connection errors
    /// as for every call.
    pub async fn userdata_save(&self, data: Value) -> Result<SaveResult, ClientError> {
        let mut params = Map::new();
        params.insert("data".to_owned(), data);
        let result = self.call(method::USERDATA_SAVE, auth_params(self.token().as_deref(), params));
        parse(method::USERDATA_SAVE, result.await?)
    }

    /// Sends `userdata_load {"token":T}` with the held token and returns the
    /// newest saved version (docs/protocol.md §4).
    ///
    /// # Errors
    /// [`ClientError::Rpc`] with `NOT_LOGGED_IN` (1001), `TOKEN_INVALID`
    /// (1003) or `NO_USERDATA` (1004); connection errors as for every call.
    pub async fn userdata_load(&self) -> Result<LoadResult, ClientError> {
        let params = auth_params(self.token().as_deref(), Map::new());
        parse(method::USERDATA_LOAD, self.call(method::USERDATA_LOAD, params).await?)
    }

    /// Sends `register {"account":account,"password":password}` and returns
    /// the registered account name (docs/protocol.md §4). Does not log in.
    ///
    /// # Errors
    /// [`ClientError::Rpc`] with `ALREADY_LOGGED_IN` (1005), `INVALID_ACCOUNT`
    /// (1010) or `ACCOUNT_EXISTS` (1009); connection errors as for every call.
    pub async fn register(&self, account: &str, password: &str) -> Result<String, ClientError> {
        let params = RegisterParams { account: account.to_owned(), password: password.to_owned() };
        let result = self.call(method::REGISTER, to_params(&params)?).await?;
        match result.get("account").and_then(Value::as_str) {
            Some(account) => Ok(account.to_owned()),
            None => Err(ClientError::Protocol(format!("bad `register` result: {result}"))),
        }
    }

    /// Sends `change_password {"token":T,"old_password":old,"new_password":new}`
    /// with the held token (docs/protocol.md §4). The session and token stay.
    ///
    /// # Errors
    /// [`ClientError::Rpc`] with `NOT_LOGGED_IN` (1001), `TOKEN_INVALID`
    /// (1003), `INVALID_ACCOUNT` (1010, new password) or `INVALID_CREDENTIALS`
    /// (1002, old password); connection errors as for every call.
    pub async fn change_password(&self, old: &str, new: &str) -> Result<(), ClientError> {
        let params = ChangePasswordParams { old_password: old.to_owned(), new_password: new.to_owned() };
        let Value::Object(params) = to_params(&params)? else { return Err(not_an_object(method::CHANGE_PASSWORD)) };
        self.call(method::CHANGE_PASSWORD, auth_params(self.token().as_deref(), params)).await?;
        Ok(())
    }

    /// Sends `ping {}` and returns the server's `server_time_ms` (Unix time in
    /// milliseconds, docs/protocol.md §4). Also the keep-alive of §6.
    ///
    /// # Errors
    /// Connection errors as for every call; [`ClientError::Protocol`] when the
    /// result has no integer `server_time_ms`.
    pub async fn ping(&self) -> Result<u64, ClientError> {
        let result = self.call(method::PING, json!({})).await?;
        match result.get("server_time_ms").and_then(Value::as_u64) {
            Some(time) => Ok(time),
            None => Err(ClientError::Protocol(format!("bad `ping` result: {result}"))),
        }
    }

    /// Sends `disconnect {}`, waits for its `{}`, then waits (at most
    /// [`ClientConfig::rpc_timeout`]) for the server to close the connection
    /// (docs/protocol.md §4). Returns the `reason` of the server's `disconnected`
    /// notification (`"client_request"` from a conforming server). Never
    /// reconnects.
    ///
    /// # Errors
    /// [`ClientError::Timeout`] when the server does not close in time (the
    /// client then closes); errors of the `disconnect` call as for every call.
    pub async fn disconnect(&self) -> Result<Option<String>, ClientError> {
        self.call(method::DISCONNECT, json!({})).await?;
        match tokio::time::timeout(self.config().rpc_timeout, self.closed()).await {
            Ok(()) => Ok(self.disconnect_reason()),
            Err(_) => {
                self.close();
                Err(ClientError::Timeout)
            }
        }
    }

    /// Sends a request `{"jsonrpc":"2.0","id":N,"method":method,"params":params}`
    /// and returns its `result` (docs/protocol.md §2). For game methods and odd
    /// cases: `params` is sent as given (any JSON value) and no token is added.
    ///
    /// # Errors
    /// [`ClientError::Rpc`] with the server's error; [`ClientError::Timeout`]
    /// when no response comes within [`ClientConfig::rpc_timeout`] (or another
    /// call timed out first); [`ClientError::Closed`] when the connection is
    /// or becomes closed; [`ClientError::Io`] or [`ClientError::Protocol`]
    /// when reading failed or the server sent a line that is not JSON-RPC.
    pub async fn call(&self, method: &str, params: Value) -> Result<Value, ClientError> {
        self.connection().call(method, params).await
    }

    /// Sends a notification `{"jsonrpc":"2.0","method":method,"params":params}`
    /// (no `id`; the server never answers it, docs/protocol.md §2).
    ///
    /// # Errors
    /// [`ClientError::Closed`] when the connection is closed. Returns once the
    /// line is queued, not written.
    pub fn notify(&self, method: &str, params: Value) -> Result<(), ClientError> {
        let line = json!({"jsonrpc": "2.0", "method": method, "params": params});
        self.connection().send_line(line.to_string())
    }

    /// Sends `line` as one frame, as is (for tests of malformed input,
    /// docs/protocol.md §1): followed by `\n` on TCP and TLS, where a `\n`
    /// inside makes several frames; as one text message on WebSocket (§1.1). The server's answer,
    /// if any, arrives as [`ClientEvent::Unmatched`] unless its `id` is one of
    /// this client's pending calls.
    ///
    /// # Errors
    /// [`ClientError::Closed`] when the connection is closed. Returns once the
    /// line is queued, not written.
    pub fn send_raw_line(&self, line: &str) -> Result<(), ClientError> {
        self.connection().send_line(line.to_owned())
    }

    /// The token this client holds: set by a successful login, dropped by a
    /// successful [`Client::logout`], by a `TOKEN_INVALID` refusal in
    /// [`Client::login`], and when the connection closes (docs/protocol.md §7).
    pub fn token(&self) -> Option<String> {
        self.connection().token()
    }

    /// Sets the data the client saves by itself when `kicked` (docs/protocol.md
    /// §6–§7), replacing any earlier data or provider. Should be a JSON object.
    pub fn set_save_data(&self, data: Value) {
        self.connection().set_save(SaveSource::Data(data));
    }

    /// Sets a callback that gives the data to save when `kicked`, called on
    /// the client's reader task at the moment of the kick (keep it quick; it
    /// must not block). Replaces any earlier data or provider.
    pub fn set_save_provider(&self, provider: Arc<dyn Fn() -> Value + Send + Sync>) {
        self.connection().set_save(SaveSource::Provider(provider));
    }

    /// Forgets the save data or provider: a kick then sends no save.
    pub fn clear_save_data(&self) {
        self.connection().set_save(SaveSource::None);
    }

    /// Takes the stream of [`ClientEvent`]s: every server notification
    /// (docs/protocol.md §5), the outcome of the automatic save on `kicked`, and
    /// responses that match no call. Events are buffered from the connect on,
    /// so none is missed; the stream ends after the connection closes.
    /// `None` when already taken. Dropping the receiver discards later events
    /// (do so when you never read them, or they pile up in memory).
    pub fn events(&self) -> Option<UnboundedReceiver<ClientEvent>> {
        self.connection().take_events()
    }

    /// The `reason` of the server's `disconnected` notification (docs/protocol.md
    /// §5), once one has arrived, e.g. `"server_full"`.
    pub fn disconnect_reason(&self) -> Option<String> {
        self.connection().disconnect_reason()
    }

    /// Closes the connection from the client side without a `disconnect`
    /// call (the server sees the socket close, after a WebSocket Close frame
    /// on `ws://`/`wss://`). Pending calls fail with
    /// [`ClientError::Closed`]. Does nothing when already closed.
    pub fn close(&self) {
        self.connection().close(CloseCause::Local);
    }

    /// Whether the connection is closed (or closing): calls now fail with
    /// [`ClientError::Closed`].
    pub fn is_closed(&self) -> bool {
        self.connection().is_closed()
    }

    /// Resolves once the connection is closed and the socket is released.
    /// After a close from this side the client first ends the stream
    /// politely (TLS `close_notify`, a WebSocket Close frame), for at most
    /// about a second when the server has stopped reading.
    pub async fn closed(&self) {
        self.connection().closed().await;
    }
}

/// The params of an **auth** method (docs/protocol.md §4): `extra` plus `"token"`
/// when there is one (without, the server answers `NOT_LOGGED_IN`).
fn auth_params(token: Option<&str>, mut extra: Map<String, Value>) -> Value {
    if let Some(token) = token {
        extra.insert("token".to_owned(), Value::from(token));
    }
    Value::Object(extra)
}

/// Typed params as the JSON value [`Client::call`] sends (the same bytes:
/// serde_json writes object members in name order either way).
fn to_params<P: serde::Serialize>(params: &P) -> Result<Value, ClientError> {
    serde_json::to_value(params).map_err(|error| ClientError::Protocol(format!("params not serializable: {error}")))
}

/// The error for typed params that did not become a JSON object.
fn not_an_object(method: &str) -> ClientError {
    ClientError::Protocol(format!("`{method}` params are not an object"))
}
