//! The Rust service API (docs/services.md, docs/protocol.md §8): a backend
//! process that registers methods with the server's shared key, answers the
//! clients' calls the server forwards to it, hears session events, and
//! notifies or kicks clients.
//!
//! ```no_run
//! use portcullis_client::{Call, ClientError, Service, protocol::RpcError};
//! use serde::Deserialize;
//! use serde_json::{Value, json};
//!
//! #[derive(Deserialize)]
//! struct Add { a: i64, b: i64 }
//!
//! # async fn run() -> Result<(), ClientError> {
//! let service = Service::builder("adder")
//!     .method("math_add", false, |call: Call<Add>| async move {
//!         Ok::<Value, RpcError>(json!({ "sum": call.params.a + call.params.b }))
//!     })
//!     .on_session(|event, _handle| println!("{event:?}"))
//!     .connect("127.0.0.1:7777", "the-service-key")
//!     .await?;
//! service.run().await // until the connection closes
//! # }
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use portcullis_protocol::{
    CallerSession, Delivered, ErrorCode, KickResult, RequestId, RpcError, ServiceMethod, ServiceRegisterParams,
    ServiceRegisterResult, SessionEnded, SessionStarted, error_line, result_line, service,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::sync::mpsc::UnboundedReceiver;

use crate::connection::parse;
use crate::{Client, ClientConfig, ClientError, ClientEvent, IncomingRequest, IntoEndpoint};

/// One forwarded client call, as a typed handler receives it.
#[derive(Debug, Clone)]
pub struct Call<P> {
    /// The client's params (without `token` for an **auth** method).
    pub params: P,
    /// Who called: the client's connection id and account (`None` when not logged in).
    pub session: CallerSession,
    /// To notify or kick clients from inside the handler.
    pub handle: ServiceHandle,
}

/// A session event every service hears (docs/protocol.md §8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEvent {
    /// `session_started`: a login succeeded.
    Started(SessionStarted),
    /// `session_ended`: that session ended (the reason is a §5 reason, `logout` or `client_closed`).
    Ended(SessionEnded),
}

type BoxedFuture = Pin<Box<dyn Future<Output = Result<Value, RpcError>> + Send>>;
type Handler = Arc<dyn Fn(Value, CallerSession, ServiceHandle) -> BoxedFuture + Send + Sync>;
type EventHandler = Arc<dyn Fn(SessionEvent, ServiceHandle) + Send + Sync>;

/// Calls from a service to the server: `service_notify` and `service_kick`.
/// Cheap to clone.
#[derive(Debug, Clone)]
pub struct ServiceHandle {
    client: Client,
}

impl ServiceHandle {
    /// Sends notification `method` with `params` to the session of `account`;
    /// whether it was delivered (`false`: no such session).
    ///
    /// # Errors
    /// [`ClientError::Rpc`] with `-32602` for `login_pending`, `kicked` or
    /// `disconnected`; any error of [`Client::call`].
    pub async fn notify_account(&self, account: &str, method: &str, params: Value) -> Result<bool, ClientError> {
        self.notify(json!({"account": account, "method": method, "params": params})).await
    }

    /// Sends notification `method` with `params` to the client connection `conn`.
    ///
    /// # Errors
    /// As [`ServiceHandle::notify_account`].
    pub async fn notify_conn(&self, conn: u64, method: &str, params: Value) -> Result<bool, ClientError> {
        self.notify(json!({"conn": conn, "method": method, "params": params})).await
    }

    async fn notify(&self, params: Value) -> Result<bool, ClientError> {
        let result = self.client.call(service::SERVICE_NOTIFY, params).await?;
        Ok(parse::<Delivered>(service::SERVICE_NOTIFY, result)?.delivered)
    }

    /// Kicks the session of `account` with reason `admin`, save first
    /// (docs/protocol.md §6); whether there was such a session.
    ///
    /// # Errors
    /// Any error of [`Client::call`].
    pub async fn kick_account(&self, account: &str) -> Result<bool, ClientError> {
        self.kick(json!({ "account": account })).await
    }

    /// Kicks the session on client connection `conn` (as [`ServiceHandle::kick_account`]).
    ///
    /// # Errors
    /// Any error of [`Client::call`].
    pub async fn kick_conn(&self, conn: u64) -> Result<bool, ClientError> {
        self.kick(json!({ "conn": conn })).await
    }

    async fn kick(&self, params: Value) -> Result<bool, ClientError> {
        let result = self.client.call(service::SERVICE_KICK, params).await?;
        Ok(parse::<KickResult>(service::SERVICE_KICK, result)?.kicked)
    }

    /// The underlying connection (e.g. to `ping` or `close`).
    pub fn client(&self) -> &Client {
        &self.client
    }
}

/// Builds a [`Service`]: its name, typed method handlers, a session-event
/// handler; [`ServiceBuilder::connect`] registers it.
pub struct ServiceBuilder {
    name: String,
    methods: Vec<(ServiceMethod, Handler)>,
    on_session: Option<EventHandler>,
    config: ClientConfig,
    keepalive: Duration,
}

impl std::fmt::Debug for ServiceBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let methods: Vec<&ServiceMethod> = self.methods.iter().map(|(m, _)| m).collect();
        f.debug_struct("ServiceBuilder").field("name", &self.name).field("methods", &methods).finish_non_exhaustive()
    }
}

impl ServiceBuilder {
    /// Adds the method `name` (`auth`: only logged-in clients may call it; the
    /// server checks their token and removes it). `handler` gets the params
    /// parsed as `P` (a mismatch is answered `-32602` without calling it)
    /// and answers with a result or an error, which the client receives
    /// unchanged. Handlers run concurrently, each on its own task.
    #[must_use]
    pub fn method<P, R, F, Fut>(mut self, name: &str, auth: bool, handler: F) -> Self
    where
        P: DeserializeOwned + Send + 'static,
        R: Serialize + Send + 'static,
        F: Fn(Call<P>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, RpcError>> + Send + 'static,
    {
        let handler = Arc::new(handler);
        let boxed: Handler = Arc::new(move |params: Value, session: CallerSession, handle: ServiceHandle| {
            let handler = Arc::clone(&handler);
            Box::pin(async move {
                let params: P = serde_json::from_value(params).map_err(|_| RpcError::invalid_params("params"))?;
                let result = handler(Call { params, session, handle }).await?;
                serde_json::to_value(result).map_err(|_| RpcError::new(ErrorCode::InternalError))
            })
        });
        self.methods.push((ServiceMethod { name: name.to_owned(), auth }, boxed));
        self
    }

    /// Calls `handler` for every `session_started` and `session_ended`.
    #[must_use]
    pub fn on_session(mut self, handler: impl Fn(SessionEvent, ServiceHandle) + Send + Sync + 'static) -> Self {
        self.on_session = Some(Arc::new(handler));
        self
    }

    /// The client settings of the service's connection (default: [`ClientConfig::default`]).
    #[must_use]
    pub fn config(mut self, config: ClientConfig) -> Self {
        self.config = config;
        self
    }

    /// How often the service pings the server so the idle timeout never
    /// closes it (default 15 s; keep it below the server's `--idle-timeout`).
    #[must_use]
    pub fn keepalive(mut self, every: Duration) -> Self {
        self.keepalive = every;
        self
    }

    /// Connects to `target` (any form of [`Client::connect`]) and registers
    /// with `key`; the service answers calls once [`Service::run`] runs.
    ///
    /// # Errors
    /// Any error of [`Client::connect_with`]; [`ClientError::Rpc`] when the
    /// registration is refused (`INVALID_CREDENTIALS` for a wrong key,
    /// `-32602` for a method name the server refuses, `-32601` when the
    /// server has services off).
    pub async fn connect(self, target: impl IntoEndpoint, key: &str) -> Result<Service, ClientError> {
        let client = Client::connect_with(target, self.config).await?;
        let events = client.events().ok_or(ClientError::Closed { reason: None })?;
        let params = ServiceRegisterParams {
            key: key.to_owned(),
            name: self.name,
            methods: self.methods.iter().map(|(m, _)| m.clone()).collect(),
        };
        let params = serde_json::to_value(params).map_err(|e| ClientError::Protocol(e.to_string()))?;
        let registered = client.call(service::SERVICE_REGISTER, params).await?;
        let registered = parse::<ServiceRegisterResult>(service::SERVICE_REGISTER, registered)?;
        Ok(Service {
            handle: ServiceHandle { client },
            events,
            methods: self.methods.into_iter().map(|(m, h)| (m.name, h)).collect(),
            on_session: self.on_session,
            keepalive: self.keepalive,
            registered,
        })
    }
}

/// A registered backend service (docs/protocol.md §8). [`Service::run`]
/// answers the forwarded calls until the connection closes.
pub struct Service {
    handle: ServiceHandle,
    events: UnboundedReceiver<ClientEvent>,
    methods: std::collections::HashMap<String, Handler>,
    on_session: Option<EventHandler>,
    keepalive: Duration,
    registered: ServiceRegisterResult,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service").field("registered", &self.registered).finish_non_exhaustive()
    }
}

impl Service {
    /// A builder for the service `name`.
    pub fn builder(name: &str) -> ServiceBuilder {
        ServiceBuilder {
            name: name.to_owned(),
            methods: Vec::new(),
            on_session: None,
            config: ClientConfig::default(),
            keepalive: Duration::from_secs(15),
        }
    }

    /// What the server registered: the name and the methods.
    pub fn registered(&self) -> &ServiceRegisterResult {
        &self.registered
    }

    /// To notify or kick clients, or to close the service.
    pub fn handle(&self) -> ServiceHandle {
        self.handle.clone()
    }

    /// Answers forwarded calls (each on its own task) and reports session
    /// events until the connection closes; pings every keepalive period.
    ///
    /// # Errors
    /// [`ClientError::Closed`] (with the server's `disconnected` reason, if
    /// any) when the connection ends.
    pub async fn run(mut self) -> Result<(), ClientError> {
        let mut ping = tokio::time::interval(self.keepalive);
        ping.tick().await;
        loop {
            tokio::select! {
                event = self.events.recv() => match event {
                    Some(ClientEvent::Request(request)) => self.serve(request),
                    Some(ClientEvent::Notification(n)) => self.notification(n.method.as_str(), n.params),
                    Some(_) => {}
                    None => break,
                },
                _ = ping.tick() => {
                    let client = self.handle.client.clone();
                    tokio::spawn(async move { let _ = client.ping().await; });
                }
            }
        }
        Err(ClientError::Closed { reason: self.handle.client.disconnect_reason() })
    }

    fn notification(&self, method: &str, params: Value) {
        let event = match method {
            service::SESSION_STARTED => serde_json::from_value(params).ok().map(SessionEvent::Started),
            service::SESSION_ENDED => serde_json::from_value(params).ok().map(SessionEvent::Ended),
            // A forwarded client notification: run the handler, send nothing back.
            other => {
                if let Some(handler) = self.methods.get(other) {
                    self.spawn_handler(Arc::clone(handler), None, params);
                }
                None
            }
        };
        if let (Some(event), Some(on_session)) = (event, &self.on_session) {
            on_session(event, self.handle.clone());
        }
    }

    fn serve(&self, request: IncomingRequest) {
        let Some(id) = RequestId::from_value(&request.id) else { return };
        match self.methods.get(&request.method) {
            Some(handler) => self.spawn_handler(Arc::clone(handler), Some(id), request.params),
            None => {
                let line = error_line(&id, &RpcError::new(ErrorCode::MethodNotFound));
                let _ = self.handle.client.send_raw_line(&line);
            }
        }
    }

    fn spawn_handler(&self, handler: Handler, id: Option<RequestId>, forwarded: Value) {
        let handle = self.handle.clone();
        tokio::spawn(async move {
            let (params, session) = split(forwarded);
            let outcome = handler(params, session, handle.clone()).await;
            let Some(id) = id else { return };
            let line = match outcome {
                Ok(result) => result_line(&id, &result.to_string()),
                Err(error) => error_line(&id, &error),
            };
            let _ = handle.client.send_raw_line(&line);
        });
    }
}

/// `{"params":P,"session":S}` → `(P, S)`.
fn split(forwarded: Value) -> (Value, CallerSession) {
    let Value::Object(mut map) = forwarded else {
        return (json!({}), CallerSession { conn: 0, account: None });
    };
    let params = map.remove("params").unwrap_or_else(|| json!({}));
    let session = map
        .remove("session")
        .and_then(|s| serde_json::from_value(s).ok())
        .unwrap_or(CallerSession { conn: 0, account: None });
    (params, session)
}
