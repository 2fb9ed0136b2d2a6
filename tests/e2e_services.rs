//! End-to-end tests of backend services (docs/protocol.md §8, docs/services.md)
//! against the real `portcullis` binary, with real service processes: the
//! Python example (`examples/services/dice.py`, run with `python3`) and
//! services written with `portcullis_client`'s service API in this process.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::{Conn, Server, error_code, start_fresh};
use portcullis_client::protocol::RpcError;
use portcullis_client::{Call, Service, SessionEvent};
use serde_json::{Value, json};

const KEY: &str = "e2e-service-key";

/// A running `dice.py`; killed (SIGKILL) when dropped.
struct PyService {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl PyService {
    /// Starts `dice.py` against `server` as `name` and waits for its `registered` line.
    fn start(server: &Server, name: &str) -> PyService {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/services/dice.py");
        let mut child = Command::new("python3")
            .args([script, "--connect", &server.addr.to_string(), "--key", KEY, "--name", name])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("run python3 examples/services/dice.py");
        let (tx, lines) = mpsc::channel();
        let out = BufReader::new(child.stdout.take().unwrap());
        std::thread::spawn(move || {
            for line in out.lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let service = PyService { child, lines };
        let first = service.line(Duration::from_secs(20));
        assert!(first.starts_with(&format!("registered {name} ")), "dice.py said {first:?}");
        service
    }

    fn line(&self, limit: Duration) -> String {
        self.lines.recv_timeout(limit).expect("a line from dice.py in time")
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for PyService {
    fn drop(&mut self) {
        self.kill();
    }
}

fn serve(extra: &[&str]) -> (tempfile::TempDir, Server) {
    let mut args = vec!["--service-key", KEY];
    args.extend_from_slice(extra);
    start_fresh(&args)
}

/// The response to `id`, skipping any other message before it.
async fn response(conn: &mut Conn, id: i64) -> Value {
    loop {
        let message = conn.recv().await;
        if message["id"] == json!(id) {
            return message;
        }
    }
}

/// An in-process service whose methods answer what they received.
async fn inspector(server: &Server) -> tokio::task::JoinHandle<()> {
    let service = Service::builder("inspector")
        .method("inspect_auth", true, |call: Call<Value>| async move {
            Ok::<Value, RpcError>(json!({"params": call.params, "session": call.session}))
        })
        .method("inspect_public", false, |call: Call<Value>| async move {
            Ok::<Value, RpcError>(json!({"params": call.params, "session": call.session}))
        })
        .connect(server.addr, KEY)
        .await
        .expect("register the inspector");
    tokio::spawn(async move {
        let _ = service.run().await;
    })
}

/// If this failed, a service method would not be callable like a built-in
/// one: a logged-in call would reach the service with the client's token, or
/// without the caller's session, or a public one would need a login.
#[tokio::test]
async fn forwarding_with_and_without_auth() {
    let (_dir, server) = serve(&[]);
    let _inspector = inspector(&server).await;
    let mut client = server.connect().await;
    let public = client.call_ok("inspect_public", json!({"x": [1, 2.50, "é"], "big": 18446744073709551617u128})).await;
    assert_eq!(public["params"], json!({"x": [1, 2.50, "é"], "big": 18446744073709551617u128}));
    assert_eq!(public["session"]["account"], Value::Null);
    assert_eq!(client.call_err("inspect_auth", json!({"token": "t"})).await, 1001);
    let token = client.login("netease1", "123").await;
    let auth = client.call_ok("inspect_auth", json!({"token": token, "level": 3})).await;
    assert_eq!(auth["params"], json!({"level": 3}), "the token is removed before forwarding");
    assert_eq!(auth["session"]["account"], "netease1");
    assert!(auth["session"]["conn"].is_u64());
    assert_eq!(client.call_err("inspect_auth", json!({"token": "0".repeat(64)})).await, 1003);
    // The Python service too: public and auth methods.
    let _dice = PyService::start(&server, "dice");
    let roll = client.call_ok("dice_roll", json!({"sides": 20})).await;
    assert!((1..=20).contains(&roll["roll"].as_i64().unwrap()), "{roll}");
    let stats = client.call_ok("dice_stats", json!({"token": token})).await;
    assert_eq!(stats, json!({"account": "netease1", "rolls": 1}));
}

/// If this failed, a service's own error (code, message, data) would reach
/// the client changed.
#[tokio::test]
async fn errors_relayed_unchanged() {
    let (_dir, server) = serve(&[]);
    let _dice = PyService::start(&server, "dice");
    let mut client = server.connect().await;
    let reply = client.call("dice_roll", json!({"sides": 1})).await;
    assert_eq!(
        reply["error"],
        json!({"code": 4000, "message": "sides must be an integer from 2 to 1000", "data": {"field": "sides"}})
    );
}

/// If this failed, one of several services of a method would get all the work.
#[tokio::test]
async fn round_robin_between_processes() {
    let (_dir, server) = serve(&[]);
    let _a = PyService::start(&server, "dice-a");
    let _b = PyService::start(&server, "dice-b");
    let mut client = server.connect().await;
    let mut names = Vec::new();
    for _ in 0..4 {
        names.push(client.call_ok("dice_whoami", json!({})).await["name"].as_str().unwrap().to_owned());
    }
    assert_eq!(names, ["dice-a", "dice-b", "dice-a", "dice-b"]);
}

/// If this failed, a service crash would hang its clients' calls or
/// disconnect the clients.
#[tokio::test]
async fn service_killed_with_calls_in_flight() {
    let (_dir, server) = serve(&["--service-wait", "200ms"]);
    let mut dice = PyService::start(&server, "dice");
    let mut first = server.connect().await;
    let mut second = server.connect().await;
    let id1 = first.request("echo", json!({"delay_ms": 5000})).await;
    let id2 = second.request("echo", json!({"delay_ms": 5000})).await;
    tokio::time::sleep(Duration::from_millis(300)).await; // both reach the service
    dice.kill();
    assert_eq!(error_code(&response(&mut first, id1).await), 1012);
    assert_eq!(error_code(&response(&mut second, id2).await), 1012);
    assert!(first.call_ok("ping", json!({})).await["server_time_ms"].is_u64(), "the client stays connected");
    // Nobody registers it again within --service-wait: SERVICE_UNAVAILABLE.
    assert_eq!(first.call_err("echo", json!({})).await, 1012);
}

/// If this failed, players would see errors while a service restarts: a
/// call sent in the gap would be lost instead of waiting for the new process.
#[tokio::test]
async fn restart_within_service_wait_loses_no_call() {
    let (_dir, server) = serve(&["--service-wait", "20s"]);
    let mut old = PyService::start(&server, "dice");
    let mut client = server.connect().await;
    let token = client.login("netease1", "123").await;
    client.call_ok("dice_roll", json!({"sides": 6})).await;
    old.kill();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let roll = client.request("dice_roll", json!({"sides": 6})).await;
    let notify_only = json!({"jsonrpc": "2.0", "method": "dice_roll", "params": {"sides": 6}});
    client.send(&notify_only).await;
    let stats = client.request("dice_stats", json!({"token": token})).await;
    let ping = client.request("ping", json!({})).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _new = PyService::start(&server, "dice");
    let roll = response(&mut client, roll).await;
    assert!(roll["result"]["roll"].is_i64(), "{roll}");
    let stats = response(&mut client, stats).await;
    // The new process counts the two rolls sent in the gap (the request and the notification).
    assert_eq!(stats["result"], json!({"account": "netease1", "rolls": 2}));
    assert!(response(&mut client, ping).await["result"]["server_time_ms"].is_u64(), "in order, after them");
}

/// If this failed, services could not keep per-player state: they would
/// miss logins or the end of sessions.
#[tokio::test]
async fn session_events() {
    let (_dir, server) = serve(&[]);
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let service = Service::builder("events")
        .on_session(move |event, _| {
            let _ = tx.send(event);
        })
        .connect(server.addr, KEY)
        .await
        .unwrap();
    let _task = tokio::spawn(service.run());
    let mut rx = rx;
    let mut next = async || tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.unwrap().unwrap();
    let mut client = server.connect().await;
    let token = client.login("netease2", "123").await;
    let SessionEvent::Started(started) = next().await else { panic!("expected session_started") };
    assert_eq!(started.account, "netease2");
    client.call_ok("logout", json!({"token": token})).await;
    let SessionEvent::Ended(ended) = next().await else { panic!("expected session_ended") };
    assert_eq!((ended.conn, ended.account.as_str(), ended.reason.as_str()), (started.conn, "netease2", "logout"));
    client.login("netease2", "123").await;
    next().await;
    drop(client);
    let SessionEvent::Ended(ended) = next().await else { panic!("expected session_ended") };
    assert_eq!(ended.reason, "client_closed");
}

/// If this failed, a service could not reach players: its notification
/// would not arrive, or its kick would not give the player a chance to save.
#[tokio::test]
async fn notify_and_kick() {
    let (_dir, server) = serve(&[]);
    let service = Service::builder("admin").connect(server.addr, KEY).await.unwrap();
    let handle = service.handle();
    let _task = tokio::spawn(service.run());
    let mut client = server.connect().await;
    let token = client.login("netease3", "123").await;
    assert!(handle.notify_account("netease3", "quest_done", json!({"quest": 7})).await.unwrap());
    client.expect_notification("quest_done", json!({"quest": 7})).await;
    assert!(!handle.notify_account("nobody", "x", json!({})).await.unwrap());
    let refused = handle.notify_account("netease3", "disconnected", json!({})).await.unwrap_err();
    assert_eq!(refused.code().map(|c| c.code()), Some(-32602));
    assert!(handle.kick_account("netease3").await.unwrap());
    let kicked = client.recv().await;
    assert_eq!(kicked["method"], "kicked");
    assert_eq!(kicked["params"]["reason"], "admin");
    client.save(&token, json!({"saved": "before the kick ended"})).await;
    client.expect_disconnected("admin").await;
    let mut again = server.connect().await;
    let token = again.login("netease3", "123").await;
    assert_eq!(again.load(&token).await["data"], json!({"saved": "before the kick ended"}));
}

/// If this failed, the service key could be guessed at full speed: a wrong
/// key must count like a wrong password.
#[tokio::test]
async fn wrong_key_counts_for_login_throttling() {
    let (_dir, server) = serve(&[]);
    let mut conn = server.connect().await;
    for _ in 0..5 {
        let code = conn.call_err("service_register", json!({"key": "guess", "name": "x", "methods": []})).await;
        assert_eq!(code, 1002);
    }
    let mut player = server.connect().await;
    assert_eq!(player.call_err("login", json!({"account": "netease1", "password": "123"})).await, 1007);
    assert_eq!(conn.call_err("service_register", json!({"key": KEY, "name": "x", "methods": []})).await, 1007);
}

/// If this failed, a service could take over `login` (or another built-in
/// method) and see every player's password.
#[tokio::test]
async fn shadowing_a_builtin_is_refused() {
    let (_dir, server) = serve(&[]);
    let mut conn = server.connect().await;
    for name in ["login", "userdata_save", "ping", "service_thing"] {
        let reply = conn
            .call("service_register", json!({"key": KEY, "name": "evil", "methods": [{"name": name, "auth": false}]}))
            .await;
        assert_eq!((error_code(&reply), reply["error"]["data"]["field"].clone()), (-32602, json!("methods")), "{name}");
    }
    let mut player = server.connect().await;
    player.login("netease1", "123").await;
}

/// If this failed, a server started without `--service-key` would accept services.
#[tokio::test]
async fn services_off_without_a_key() {
    let (_dir, server) = start_fresh(&[]);
    let mut conn = server.connect().await;
    assert_eq!(conn.call_err("service_register", json!({"key": "", "name": "x", "methods": []})).await, -32601);
    let refused = Service::builder("x").connect(server.addr, "").await.unwrap_err();
    assert_eq!(refused.code().map(|c| c.code()), Some(-32601));
}
