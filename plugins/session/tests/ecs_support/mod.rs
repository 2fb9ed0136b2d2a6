//! Helpers shared by the system-level tests of the kick, takeover and
//! shutdown rules: a client that records every message in arrival order, and
//! the expected messages in the summarized form the order checks compare.
#![allow(dead_code, clippy::unwrap_used)]

use portcullis_session::{SessionConfig, SessionIndex};
use portcullis_testkit::{JsonClient, TestConfig, TestServer, error_code};
use serde_json::{Value, json};
use std::time::Duration;

pub const MS: Duration = Duration::from_millis(1);

/// A client and every message it received so far, in arrival order.
pub struct Peer {
    pub client: JsonClient,
    pub seen: Vec<Value>,
}

impl Peer {
    pub fn connect(server: &mut TestServer) -> Self {
        Self { client: server.connect(), seen: Vec::new() }
    }

    pub fn send(&mut self, method: &str, params: Value) -> u64 {
        self.client.send_request(method, params)
    }

    pub fn pull(&mut self) {
        let new = self.client.take_all();
        self.seen.extend(new);
    }

    /// Forgets what was received so far (after the setup of a test).
    pub fn forget(&mut self) {
        self.pull();
        self.seen.clear();
    }

    /// What was received so far, summarized (see [`summary`]).
    pub fn transcript(&mut self) -> Vec<Value> {
        self.pull();
        self.seen.iter().map(summary).collect()
    }

    pub fn response(&mut self, id: u64) -> Option<Value> {
        self.pull();
        self.seen.iter().find(|m| is_response(m, id)).cloned()
    }

    pub fn closed(&mut self) -> bool {
        self.pull();
        self.client.is_closed()
    }

    /// Steps frames (clock still) until a message matching `pred` was received.
    pub fn wait(&mut self, server: &mut TestServer, pred: impl Fn(&Value) -> bool) -> Value {
        let ok = server.step_until(|_| {
            self.pull();
            self.seen.iter().any(&pred)
        });
        assert!(ok, "expected message did not arrive; received: {:?}", self.seen);
        self.seen.iter().find(|m| pred(m)).cloned().unwrap()
    }

    pub fn wait_response(&mut self, server: &mut TestServer, id: u64) -> Value {
        self.wait(server, |m| is_response(m, id))
    }

    pub fn request(&mut self, server: &mut TestServer, method: &str, params: Value) -> Value {
        let id = self.send(method, params);
        self.wait_response(server, id)
    }

    /// Steps frames (clock still) until the server closed this connection.
    pub fn wait_closed(&mut self, server: &mut TestServer) {
        let ok = server.step_until(|_| self.closed());
        assert!(ok, "connection was not closed; received: {:?}", self.seen);
    }

    pub fn login(&mut self, server: &mut TestServer, account: &str) -> String {
        let reply = self.request(server, "login", json!({"account": account, "password": "123"}));
        reply["result"]["token"].as_str().map(str::to_owned).unwrap_or_else(|| panic!("login failed: {reply}"))
    }

    pub fn save(&mut self, server: &mut TestServer, token: &str, data: Value) -> Value {
        self.request(server, "userdata_save", json!({"token": token, "data": data}))
    }

    pub fn state(&self, server: &TestServer) -> &'static str {
        server.session(&self.client).map_or("gone", |s| s.state_name())
    }
}

pub fn is_response(m: &Value, id: u64) -> bool {
    m["id"] == json!(id) && (m.get("result").is_some() || m.get("error").is_some())
}

/// A message reduced to what the order checks compare: a notification is
/// `{"method","params"}`, a response `{"id","ok":true}` or `{"id","error":code}`.
pub fn summary(m: &Value) -> Value {
    if let Some(method) = m.get("method") {
        if m.get("id").is_none() && m["jsonrpc"] == "2.0" {
            return json!({"method": method, "params": m["params"]});
        }
    } else if m.get("result").is_some() {
        return json!({"id": m["id"], "ok": true});
    } else if let Some(code) = error_code(m) {
        return json!({"id": m["id"], "error": code});
    }
    json!({"unexpected": m})
}

pub fn ok(id: u64) -> Value {
    json!({"id": id, "ok": true})
}

pub fn err(id: u64, code: i64) -> Value {
    json!({"id": id, "error": code})
}

pub fn login_pending() -> Value {
    json!({"method": "login_pending", "params": {"reason": "replacing_session"}})
}

pub fn kicked(reason: &str, deadline: Duration) -> Value {
    json!({"method": "kicked", "params": {"reason": reason, "save_deadline_ms": deadline.as_millis() as u64}})
}

pub fn disconnected(reason: &str) -> Value {
    json!({"method": "disconnected", "params": {"reason": reason}})
}

pub fn server_with(session: SessionConfig) -> TestServer {
    TestServer::with_config(TestConfig { session, ..TestConfig::default() })
}

pub fn kick_after(kick_save_timeout: Duration) -> SessionConfig {
    SessionConfig { kick_save_timeout, ..SessionConfig::default() }
}

pub fn index(server: &TestServer) -> &SessionIndex {
    server.world().resource::<SessionIndex>()
}

pub fn is_token(token: &str) -> bool {
    token.len() == 64 && token.bytes().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c))
}

/// Logs A in as netease1, saves `{"gold":1}` (version 1), then has B send a
/// password login for netease1 and waits until A is kicked. Returns
/// (A, A's token, B, B's login request id).
pub fn start_takeover(server: &mut TestServer) -> (Peer, String, Peer, u64) {
    let mut a = Peer::connect(server);
    let token_a = a.login(server, "netease1");
    let saved = a.save(server, &token_a, json!({"gold": 1}));
    assert_eq!(saved["result"]["version"], 1, "{saved}");
    a.forget();
    let mut b = Peer::connect(server);
    let login_b = b.send("login", json!({"account": "netease1", "password": "123"}));
    a.wait(server, |m| m["method"] == "kicked");
    (a, token_a, b, login_b)
}
