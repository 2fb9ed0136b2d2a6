//! portcullis_testkit: a test harness for system-level tests of Portcullis
//! and of games built on it: an `App` with the network, JSON-RPC, session,
//! accounts and user-data plugins, the in-memory transport, an in-memory
//! store with cheap hashing and the demo accounts, and a clock that only
//! moves when told to. Only tests depend on it (the plugin crates as a
//! dev-dependency; games through the facade, `portcullis::testing`).
//!
//! ```text
//!  TestServer: App = TimePlugin + NetPlugin::memory() + RpcPlugin + SessionPlugin + AccountsPlugin + UserDataPlugin
//!      connect() ──▶ JsonClient (TestClient: in-memory lines)      update() / advance(d): one frame, Time<Real> moved by hand
//! ```
//!
//! # Examples
//!
//! ```
//! use portcullis_testkit::TestServer;
//! use serde_json::json;
//!
//! let mut server = TestServer::new();
//! let mut client = server.connect();
//! let reply = server.request(&mut client, "login", json!({"account": "netease1", "password": "123"}));
//! assert_eq!(reply["result"]["account"], "netease1");
//! ```

#![forbid(unsafe_code)]

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bevy_app::{App, PluginsState};
use bevy_ecs::prelude::*;
use bevy_time::{TimePlugin, TimeUpdateStrategy};
use portcullis_accounts::{AccountsConfig, AccountsPlugin};
use portcullis_net::{NetConfig, NetPlugin, TestClient};
use portcullis_rpc::{RpcConfig, RpcPlugin};
use portcullis_session::{Session, SessionConfig, SessionPlugin};
use portcullis_store::StoreConfig;
use portcullis_userdata::{UserDataConfig, UserDataPlugin};
use serde_json::{Value, json};

/// How long [`TestServer::request`] and friends step frames while waiting
/// for the store thread before they give up (so a hang fails the test).
pub const WAIT_LIMIT: Duration = Duration::from_secs(10);

/// An `App` with `TimePlugin`, `NetPlugin::memory()`, `RpcPlugin`,
/// `SessionPlugin`, `AccountsPlugin` and `UserDataPlugin` on an in-memory
/// database with the demo accounts (`netease1`..`netease3`, password `123`), driven by
/// hand: [`update`](Self::update) runs one frame without moving the clock,
/// [`advance`](Self::advance) moves `Time<Real>` and runs one frame.
pub struct TestServer {
    /// The app; add game plugins and systems to it before the first frame.
    pub app: App,
    started: bool,
}

impl Default for TestServer {
    fn default() -> Self {
        Self::new()
    }
}

/// Settings of a [`TestServer`].
#[derive(Debug, Clone)]
pub struct TestConfig {
    /// Network limits.
    pub net: NetConfig,
    /// JSON-RPC limits.
    pub rpc: RpcConfig,
    /// Session timers.
    pub session: SessionConfig,
    /// Login throttling.
    pub accounts: AccountsConfig,
    /// User-data limits and the mirror.
    pub userdata: UserDataConfig,
    /// The store (in memory with cheap hashing and the demo accounts by default).
    pub store: StoreConfig,
}

impl Default for TestConfig {
    fn default() -> Self {
        Self {
            net: NetConfig::default(),
            rpc: RpcConfig::default(),
            session: SessionConfig::default(),
            accounts: AccountsConfig::default(),
            userdata: UserDataConfig::default(),
            store: StoreConfig { hash_threads: 1, demo_accounts: true, ..StoreConfig::in_memory().fast_hashing() },
        }
    }
}

impl TestServer {
    /// A server with the default limits.
    pub fn new() -> Self {
        Self::with_config(TestConfig::default())
    }

    /// A server with these settings.
    pub fn with_config(config: TestConfig) -> Self {
        let _ = bevy_log::tracing_subscriber::fmt().with_test_writer().try_init();
        let mut app = App::new();
        app.add_plugins(TimePlugin)
            .insert_resource(TimeUpdateStrategy::ManualDuration(Duration::ZERO))
            .add_plugins(NetPlugin::memory().with_config(config.net))
            .add_plugins(RpcPlugin { config: config.rpc })
            .add_plugins(SessionPlugin::new(config.session, config.store))
            .add_plugins(AccountsPlugin { config: config.accounts })
            .add_plugins(UserDataPlugin { config: config.userdata });
        Self { app, started: false }
    }

    fn start(&mut self) {
        if !self.started {
            self.started = true;
            while self.app.plugins_state() == PluginsState::Adding {
                std::thread::yield_now();
            }
            self.app.finish();
            self.app.cleanup();
        }
    }

    /// Runs one frame; the clock does not move.
    pub fn update(&mut self) {
        self.start();
        self.app.insert_resource(TimeUpdateStrategy::ManualDuration(Duration::ZERO));
        self.app.update();
    }

    /// Runs `n` frames; the clock does not move.
    pub fn step(&mut self, n: usize) {
        for _ in 0..n {
            self.update();
        }
    }

    /// Moves `Time<Real>` forward by `by` and runs one frame.
    pub fn advance(&mut self, by: Duration) {
        self.start();
        self.app.insert_resource(TimeUpdateStrategy::ManualDuration(by));
        self.app.update();
        self.app.insert_resource(TimeUpdateStrategy::ManualDuration(Duration::ZERO));
    }

    /// Runs `n` fixed ticks: moves the clock by `n` × the `FixedUpdate`
    /// timestep (one frame per tick), so game simulation steps exactly `n` times.
    pub fn tick(&mut self, n: u32) {
        let step = self.app.world().resource::<bevy_time::Time<bevy_time::Fixed>>().timestep();
        for _ in 0..n {
            self.advance(step);
        }
    }

    /// Opens an in-memory connection and runs a frame so its entity exists.
    pub fn connect(&mut self) -> JsonClient {
        self.connect_from("127.0.0.1:40000".parse().unwrap_or(std::net::SocketAddr::from(([127, 0, 0, 1], 40000))))
    }

    /// Opens a connection that the server sees as coming from `peer`.
    pub fn connect_from(&mut self, peer: std::net::SocketAddr) -> JsonClient {
        self.start();
        let raw = TestClient::connect_from(&mut self.app, peer);
        self.update();
        JsonClient { raw, next_id: 1, inbox: VecDeque::new() }
    }

    /// Steps frames (clock still) until `done` holds, for at most [`WAIT_LIMIT`]
    /// of wall-clock time; returns whether it held. Use it to wait for the
    /// store thread.
    pub fn step_until(&mut self, mut done: impl FnMut(&mut Self) -> bool) -> bool {
        let give_up = Instant::now() + WAIT_LIMIT;
        loop {
            if done(self) {
                return true;
            }
            if Instant::now() >= give_up {
                return false;
            }
            self.update();
            std::thread::yield_now();
        }
    }

    /// Sends a request and steps until its response arrives; returns the
    /// whole response object. Notifications that arrive meanwhile stay in the
    /// client's inbox. Panics (failing the test) after [`WAIT_LIMIT`].
    pub fn request(&mut self, client: &mut JsonClient, method: &str, params: Value) -> Value {
        let id = client.send_request(method, params);
        self.wait_response(client, id)
    }

    /// Steps until the response with `id` arrives and returns it.
    pub fn wait_response(&mut self, client: &mut JsonClient, id: u64) -> Value {
        let mut found = None;
        let ok = self.step_until(|_| {
            found = client.take_response(id);
            found.is_some()
        });
        assert!(ok, "no response to request {id} within {WAIT_LIMIT:?}; received: {:?}", client.inbox);
        found.unwrap_or(Value::Null)
    }

    /// Steps until a message matching `pred` arrives at `client`; returns it.
    pub fn wait_message(&mut self, client: &mut JsonClient, pred: impl Fn(&Value) -> bool) -> Value {
        let mut found = None;
        let ok = self.step_until(|_| {
            found = client.take_where(&pred);
            found.is_some()
        });
        assert!(ok, "expected message did not arrive within {WAIT_LIMIT:?}; received: {:?}", client.inbox);
        found.unwrap_or(Value::Null)
    }

    /// Steps until the server closed `client`; returns every message it
    /// received up to the close, in order. Panics after [`WAIT_LIMIT`].
    pub fn messages_until_closed(&mut self, client: &mut JsonClient) -> Vec<Value> {
        let mut got = Vec::new();
        let ok = self.step_until(|_| {
            let closed = client.is_closed();
            got.extend(client.take_all());
            closed
        });
        assert!(ok, "the server did not close the connection; received {got:?}");
        got.extend(client.take_all());
        got
    }

    /// Sends a `ping` with id `"sync"` and steps until it is answered;
    /// returns every message that came before that answer, so a test sees
    /// all that its earlier frames produced (nothing can arrive later
    /// unnoticed). Panics after [`WAIT_LIMIT`].
    pub fn messages_before_sync(&mut self, client: &mut JsonClient) -> Vec<Value> {
        client.send_line(r#"{"jsonrpc":"2.0","id":"sync","method":"ping"}"#);
        let mut got: Vec<Value> = Vec::new();
        let ok = self.step_until(|_| {
            got.extend(client.take_all());
            got.iter().any(|m| m["id"] == "sync")
        });
        assert!(ok, "the sync ping was not answered; received {got:?}");
        let at = got.iter().position(|m| m["id"] == "sync").unwrap_or(got.len());
        let rest = got.split_off(at);
        assert_eq!(rest.len(), 1, "messages after the sync answer: {rest:?}");
        assert!(rest[0]["result"]["server_time_ms"].is_u64(), "the sync ping failed: {}", rest[0]);
        got
    }

    /// Logs `client` in with a password and returns the token.
    pub fn login(&mut self, client: &mut JsonClient, account: &str, password: &str) -> String {
        let reply = self.request(client, "login", json!({ "account": account, "password": password }));
        reply["result"]["token"].as_str().map(str::to_owned).unwrap_or_else(|| panic!("login failed: {reply}"))
    }

    /// The session of a client's connection, while the entity exists.
    pub fn session(&self, client: &JsonClient) -> Option<&Session> {
        let entity = client.raw.entity(&self.app)?;
        self.app.world().get::<Session>(entity)
    }

    /// The entity of a client's connection, while it exists.
    pub fn entity(&self, client: &JsonClient) -> Option<Entity> {
        client.raw.entity(&self.app)
    }

    /// The world, for assertions.
    pub fn world(&self) -> &World {
        self.app.world()
    }
}

/// A [`TestClient`] that speaks JSON: numbered requests, parsed replies, and
/// an inbox of messages not yet taken.
pub struct JsonClient {
    /// The raw in-memory connection.
    pub raw: TestClient,
    next_id: u64,
    inbox: VecDeque<Value>,
}

impl JsonClient {
    /// Sends a request with the next numeric id; returns the id.
    pub fn send_request(&mut self, method: &str, params: Value) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.raw.send_line(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string());
        id
    }

    /// Sends a notification (no id).
    pub fn send_notification(&mut self, method: &str, params: Value) {
        self.raw.send_line(&json!({"jsonrpc": "2.0", "method": method, "params": params}).to_string());
    }

    /// Sends a raw line.
    pub fn send_line(&mut self, line: &str) {
        self.raw.send_line(line);
    }

    fn pull(&mut self) {
        for line in self.raw.recv_lines() {
            let value = serde_json::from_str(&line).unwrap_or(Value::String(line));
            self.inbox.push_back(value);
        }
    }

    /// Takes the response with this numeric id, if it arrived.
    pub fn take_response(&mut self, id: u64) -> Option<Value> {
        self.take_where(|m| m["id"] == json!(id) && (m.get("result").is_some() || m.get("error").is_some()))
    }

    /// Takes the first message matching `pred`.
    pub fn take_where(&mut self, pred: impl Fn(&Value) -> bool) -> Option<Value> {
        self.pull();
        let pos = self.inbox.iter().position(pred)?;
        self.inbox.remove(pos)
    }

    /// Takes every message received so far, in order.
    pub fn take_all(&mut self) -> Vec<Value> {
        self.pull();
        self.inbox.drain(..).collect()
    }

    /// Whether the server closed the connection.
    pub fn is_closed(&mut self) -> bool {
        self.raw.is_closed()
    }

    /// Closes the connection from the client side.
    pub fn disconnect(&mut self) {
        self.raw.disconnect();
    }
}

/// The error code of a response, if it is an error.
pub fn error_code(response: &Value) -> Option<i64> {
    response["error"]["code"].as_i64()
}
