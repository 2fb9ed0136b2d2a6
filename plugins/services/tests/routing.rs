//! The routing rules of the gateway (docs/protocol.md §8), on the in-memory
//! transport with a clock moved by hand: each test plays the service's part
//! by hand on a second connection.

use std::time::Duration;

use portcullis_services::{ServiceConnection, ServicesConfig, ServicesPlugin};
use portcullis_testkit::{JsonClient, TestConfig, TestServer, error_code};
use serde_json::{Value, json};

const KEY: &str = "test-key";

fn server_with(config: ServicesConfig, test: TestConfig) -> TestServer {
    let mut server = TestServer::with_config(test);
    server.app.add_plugins(ServicesPlugin::new(config));
    server
}

fn server() -> TestServer {
    server_with(ServicesConfig::with_key(KEY), TestConfig::default())
}

/// Connects a service and registers `methods` (`(name, auth)`).
fn service(server: &mut TestServer, name: &str, methods: &[(&str, bool)]) -> JsonClient {
    let mut conn = server.connect();
    let methods: Vec<Value> = methods.iter().map(|(m, auth)| json!({"name": m, "auth": auth})).collect();
    let reply = server.request(&mut conn, "service_register", json!({"key": KEY, "name": name, "methods": methods}));
    assert!(reply.get("result").is_some(), "register failed: {reply}");
    conn
}

/// Steps until `service` receives a forwarded request of `method`; returns it.
fn forwarded(server: &mut TestServer, service: &mut JsonClient, method: &str) -> Value {
    let method = method.to_owned();
    server.wait_message(service, move |m| m["method"] == method.as_str())
}

fn answer(service: &mut JsonClient, request: &Value, result: Value) {
    service.send_line(&json!({"jsonrpc": "2.0", "id": request["id"], "result": result}).to_string());
}

/// A forwarded **auth** call reaches the service without the token and with
/// the caller's session; the answer goes back under the client's own id.
#[test]
fn auth_call_is_forwarded_without_token() {
    let mut server = server();
    let mut svc = service(&mut server, "scores", &[("score_add", true)]);
    let mut client = server.connect();
    let token = server.login(&mut client, "netease1", "123");
    let conn_id = client.raw.id().0;
    let id = client.send_request("score_add", json!({"token": token, "points": 18446744073709551617u128}));
    let req = forwarded(&mut server, &mut svc, "score_add");
    assert_eq!(req["params"]["params"], json!({"points": 18446744073709551617u128}));
    assert_eq!(req["params"]["session"], json!({"conn": conn_id, "account": "netease1"}));
    answer(&mut svc, &req, json!({"total": 5}));
    let reply = server.wait_response(&mut client, id);
    assert_eq!(reply, json!({"jsonrpc": "2.0", "id": id, "result": {"total": 5}}));
}

/// A public method is forwarded for a client that is not logged in
/// (`account` null), params as sent, and `{}` when missing.
#[test]
fn public_call_without_login() {
    let mut server = server();
    let mut svc = service(&mut server, "echo", &[("echo", false)]);
    let mut client = server.connect();
    client.send_line(r#"{"jsonrpc":"2.0","id":"a","method":"echo"}"#);
    let req = forwarded(&mut server, &mut svc, "echo");
    assert_eq!(req["params"]["params"], json!({}));
    assert_eq!(req["params"]["session"]["account"], Value::Null);
    svc.send_line(&format!(r#"{{"jsonrpc":"2.0","id":{},"result":null}}"#, req["id"]));
    let reply = server.wait_message(&mut client, |m| m["id"] == "a");
    assert_eq!(reply, json!({"jsonrpc": "2.0", "id": "a", "result": null}));
}

/// A service's error reaches the client unchanged (code, message, data).
#[test]
fn errors_are_relayed_unchanged() {
    let mut server = server();
    let mut svc = service(&mut server, "shop", &[("shop_buy", false)]);
    let mut client = server.connect();
    let id = client.send_request("shop_buy", json!({"item": 3}));
    let req = forwarded(&mut server, &mut svc, "shop_buy");
    let error = json!({"code": 4001, "message": "out of stock", "data": {"item": 3}});
    svc.send_line(&json!({"jsonrpc": "2.0", "id": req["id"], "error": error}).to_string());
    let reply = server.wait_response(&mut client, id);
    assert_eq!(reply["error"], error);
}

/// The auth rule of §4 comes before forwarding: not logged in is 1001, a
/// wrong token 1003, and nothing reaches the service.
#[test]
fn auth_rules_come_first() {
    let mut server = server();
    let mut svc = service(&mut server, "scores", &[("score_add", true)]);
    let mut client = server.connect();
    let reply = server.request(&mut client, "score_add", json!({"token": "x"}));
    assert_eq!(error_code(&reply), Some(1001));
    server.login(&mut client, "netease1", "123");
    let reply = server.request(&mut client, "score_add", json!({}));
    assert_eq!(error_code(&reply), Some(-32602));
    let reply = server.request(&mut client, "score_add", json!({"token": "0".repeat(64)}));
    assert_eq!(error_code(&reply), Some(1003));
    let reply = server.request(&mut client, "score_add", json!([1]));
    assert_eq!(error_code(&reply), Some(-32602));
    assert!(svc.take_where(|m| m["method"] == "score_add").is_none());
}

/// Calls of one method alternate between its services.
#[test]
fn round_robin() {
    let mut server = server();
    let mut a = service(&mut server, "a", &[("work", false)]);
    let mut b = service(&mut server, "b", &[("work", false)]);
    let mut client = server.connect();
    for i in 0..4 {
        let id = client.send_request("work", json!({"i": i}));
        let (svc, other) = if i % 2 == 0 { (&mut a, &mut b) } else { (&mut b, &mut a) };
        let req = forwarded(&mut server, svc, "work");
        assert_eq!(req["params"]["params"]["i"], i);
        assert!(other.take_where(|m| m["method"] == "work").is_none());
        answer(svc, &req, json!(i));
        assert_eq!(server.wait_response(&mut client, id)["result"], i);
    }
}

/// When every service of the method has its calls in flight at the limit,
/// the next call is SERVER_BUSY.
#[test]
fn full_services_are_busy() {
    let config = ServicesConfig { max_in_flight: 1, ..ServicesConfig::with_key(KEY) };
    let mut server = server_with(config, TestConfig::default());
    let mut svc = service(&mut server, "slow", &[("slow", false)]);
    let mut first = server.connect();
    let mut second = server.connect();
    let id1 = first.send_request("slow", json!({}));
    let req = forwarded(&mut server, &mut svc, "slow");
    let reply = server.request(&mut second, "slow", json!({}));
    assert_eq!(error_code(&reply), Some(1011));
    answer(&mut svc, &req, json!("done"));
    assert_eq!(server.wait_response(&mut first, id1)["result"], "done");
}

/// A call its service does not answer within `--service-timeout` is
/// SERVICE_UNAVAILABLE; a late answer is dropped.
#[test]
fn service_timeout() {
    let config = ServicesConfig { call_timeout: Duration::from_secs(2), ..ServicesConfig::with_key(KEY) };
    let mut server = server_with(config, TestConfig::default());
    let mut svc = service(&mut server, "slow", &[("slow", false)]);
    let mut client = server.connect();
    let id = client.send_request("slow", json!({}));
    let req = forwarded(&mut server, &mut svc, "slow");
    server.advance(Duration::from_millis(1900));
    assert!(client.take_response(id).is_none());
    server.advance(Duration::from_millis(200));
    let reply = server.wait_response(&mut client, id);
    assert_eq!(error_code(&reply), Some(1012));
    answer(&mut svc, &req, json!("late"));
    let after = server.messages_before_sync(&mut client);
    assert!(after.is_empty(), "the late answer was dropped: {after:?}");
}

/// A service that closes with a call in flight: the call is
/// SERVICE_UNAVAILABLE and the client stays connected.
#[test]
fn service_closed_with_call_in_flight() {
    let mut server = server();
    let mut svc = service(&mut server, "s", &[("work", false)]);
    let mut client = server.connect();
    let id = client.send_request("work", json!({}));
    forwarded(&mut server, &mut svc, "work");
    svc.disconnect();
    let reply = server.wait_response(&mut client, id);
    assert_eq!(error_code(&reply), Some(1012));
    assert!(!client.is_closed());
    assert!(server.messages_before_sync(&mut client).is_empty());
}

/// With every service of a method gone, a call waits for one to register it
/// again (within `--service-wait`) and is then forwarded; after the wait it
/// is SERVICE_UNAVAILABLE. Ordering holds: the call holds the client's
/// later frames.
#[test]
fn waits_for_a_restarted_service() {
    let config = ServicesConfig { wait: Duration::from_secs(5), ..ServicesConfig::with_key(KEY) };
    let mut server = server_with(config, TestConfig::default());
    let mut old = service(&mut server, "s", &[("work", false)]);
    old.disconnect();
    server.step(3);
    let mut client = server.connect();
    let id = client.send_request("work", json!({"n": 1}));
    let ping = client.send_request("ping", json!({}));
    server.advance(Duration::from_secs(3));
    assert!(client.take_response(id).is_none() && client.take_response(ping).is_none(), "held while waiting");
    let mut new = service(&mut server, "s", &[("work", false)]);
    let req = forwarded(&mut server, &mut new, "work");
    assert_eq!(req["params"]["params"], json!({"n": 1}));
    answer(&mut new, &req, json!("ok"));
    assert_eq!(server.wait_response(&mut client, id)["result"], "ok");
    assert!(server.wait_response(&mut client, ping)["result"]["server_time_ms"].is_u64());
    // Gone again, and nobody comes back in time.
    new.disconnect();
    server.step(3);
    let id = client.send_request("work", json!({}));
    server.update(); // dispatched now: the wait starts here
    server.advance(Duration::from_millis(4900));
    assert!(client.take_response(id).is_none());
    server.advance(Duration::from_millis(200));
    assert_eq!(error_code(&server.wait_response(&mut client, id)), Some(1012));
}

/// A method no service ever registered is -32601; the service methods of §8
/// are -32601 on a client connection.
#[test]
fn unknown_methods() {
    let mut server = server();
    let mut client = server.connect();
    assert_eq!(error_code(&server.request(&mut client, "never_registered", json!({}))), Some(-32601));
    assert_eq!(error_code(&server.request(&mut client, "service_notify", json!({}))), Some(-32601));
    assert_eq!(error_code(&server.request(&mut client, "service_kick", json!({}))), Some(-32601));
}

/// A service may not shadow a method of the server, nor use `service_` or a
/// bad name: -32602 with field `methods`, and it is not a service then.
#[test]
fn shadowing_refused() {
    let mut server = server();
    let mut conn = server.connect();
    for bad in ["login", "ping", "userdata_save", "service_x", "Bad", "a-b"] {
        let reply = server.request(
            &mut conn,
            "service_register",
            json!({"key": KEY, "name": "evil", "methods": [{"name": bad, "auth": false}]}),
        );
        assert_eq!(error_code(&reply), Some(-32602), "{bad}: {reply}");
        assert_eq!(reply["error"]["data"]["field"], "methods");
    }
    let entity = server.entity(&conn).expect("open");
    assert!(server.world().get::<ServiceConnection>(entity).is_none());
}

/// A wrong key is INVALID_CREDENTIALS and counts for login throttling: after
/// `login_fail_limit` of them a password login from that address is RATE_LIMITED.
#[test]
fn wrong_key_counts_for_throttling() {
    let mut server = server();
    let mut conn = server.connect();
    for _ in 0..5 {
        let reply = server.request(&mut conn, "service_register", json!({"key": "wrong", "name": "x", "methods": []}));
        assert_eq!(error_code(&reply), Some(1002));
    }
    let mut client = server.connect();
    let reply = server.request(&mut client, "login", json!({"account": "netease1", "password": "123"}));
    assert_eq!(error_code(&reply), Some(1007));
}

/// Without a key there are no services: `service_register` is -32601.
#[test]
fn off_without_key() {
    let mut server = server_with(ServicesConfig::defaults(), TestConfig::default());
    let mut conn = server.connect();
    let reply = server.request(&mut conn, "service_register", json!({"key": "", "name": "x", "methods": []}));
    assert_eq!(error_code(&reply), Some(-32601));
}

/// A service connection has no login deadline and no rate limit, but the idle timeout applies.
#[test]
fn service_connection_limits() {
    let mut test = TestConfig::default();
    test.net.rate_burst = 5;
    test.session.login_timeout = Duration::from_secs(2);
    test.session.idle_timeout = Duration::from_secs(10);
    let mut server = server_with(ServicesConfig::with_key(KEY), test);
    let mut svc = service(&mut server, "s", &[("work", false)]);
    server.advance(Duration::from_secs(3));
    assert!(!svc.is_closed(), "no login deadline");
    for _ in 0..50 {
        svc.send_request("ping", json!({}));
    }
    let replies = server.messages_before_sync(&mut svc);
    assert_eq!(replies.len(), 50);
    assert!(replies.iter().all(|r| r["result"]["server_time_ms"].is_u64()), "no rate limit");
    // Other methods are not for services.
    assert_eq!(
        error_code(&server.request(&mut svc, "login", json!({"account": "netease1", "password": "123"}))),
        Some(-32601)
    );
    server.advance(Duration::from_secs(11));
    let goodbye = server.messages_until_closed(&mut svc);
    assert_eq!(goodbye.last().map(|m| m["params"]["reason"].clone()), Some(json!("idle_timeout")));
}

/// Services hear `session_started` and `session_ended` with the reason.
#[test]
fn session_events() {
    let mut server = server();
    let mut svc = service(&mut server, "s", &[]);
    let mut client = server.connect();
    let conn = client.raw.id().0;
    let token = server.login(&mut client, "netease1", "123");
    let started = server.wait_message(&mut svc, |m| m["method"] == "session_started");
    assert_eq!(started["params"], json!({"conn": conn, "account": "netease1"}));
    server.request(&mut client, "logout", json!({"token": token}));
    let ended = server.wait_message(&mut svc, |m| m["method"] == "session_ended");
    assert_eq!(ended["params"], json!({"conn": conn, "account": "netease1", "reason": "logout"}));
    server.login(&mut client, "netease1", "123");
    server.wait_message(&mut svc, |m| m["method"] == "session_started");
    client.disconnect();
    let ended = server.wait_message(&mut svc, |m| m["method"] == "session_ended");
    assert_eq!(ended["params"]["reason"], "client_closed");
    let mut other = server.connect();
    server.login(&mut other, "netease2", "123");
    server.wait_message(&mut svc, |m| m["method"] == "session_started");
    other.send_request("disconnect", json!({}));
    let ended = server.wait_message(&mut svc, |m| m["method"] == "session_ended");
    assert_eq!(ended["params"]["reason"], "client_request");
}

/// `service_notify` reaches the client by account or conn; the three
/// reserved notifications are refused; `service_kick` kicks save-first.
#[test]
fn notify_and_kick() {
    let mut server = server();
    let mut svc = service(&mut server, "s", &[]);
    let mut client = server.connect();
    let token = server.login(&mut client, "netease1", "123");
    let conn = client.raw.id().0;
    let reply = server.request(
        &mut svc,
        "service_notify",
        json!({"account": "NETEASE1", "method": "reward", "params": {"gold": 5}}),
    );
    assert_eq!(reply["result"], json!({"delivered": true}));
    let note = server.wait_message(&mut client, |m| m["method"] == "reward");
    assert_eq!(note, json!({"jsonrpc": "2.0", "method": "reward", "params": {"gold": 5}}));
    let reply = server.request(&mut svc, "service_notify", json!({"conn": conn, "method": "hi", "params": {}}));
    assert_eq!(reply["result"], json!({"delivered": true}));
    let reply = server.request(&mut svc, "service_notify", json!({"account": "nobody", "method": "hi", "params": {}}));
    assert_eq!(reply["result"], json!({"delivered": false}));
    let reply = server.request(&mut svc, "service_notify", json!({"conn": conn, "method": "kicked", "params": {}}));
    assert_eq!((error_code(&reply), reply["error"]["data"]["field"].clone()), (Some(-32602), json!("method")));
    let reply = server.request(&mut svc, "service_kick", json!({"account": "netease1"}));
    assert_eq!(reply["result"], json!({"kicked": true}));
    let kicked = server.wait_message(&mut client, |m| m["method"] == "kicked");
    assert_eq!(kicked["params"]["reason"], "admin");
    let id = client.send_request("userdata_save", json!({"token": token, "data": {"x": 1}}));
    assert!(server.wait_response(&mut client, id)["result"]["version"].is_u64(), "the save comes first");
    let rest = server.messages_until_closed(&mut client);
    assert_eq!(rest.last().map(|m| m["params"]["reason"].clone()), Some(json!("admin")));
    let ended = server.wait_message(&mut svc, |m| m["method"] == "session_ended");
    assert_eq!(ended["params"]["reason"], "admin");
    let reply = server.request(&mut svc, "service_kick", json!({"account": "netease1"}));
    assert_eq!(reply["result"], json!({"kicked": false}));
}

/// Forwarded calls in a batch: the array comes in member order once every
/// member is answered, and a kicked session gets 1006 for a service method.
#[test]
fn batches_and_kicking() {
    let mut server = server();
    let mut svc = service(&mut server, "s", &[("work", false)]);
    let mut client = server.connect();
    client.send_line(
        r#"[{"jsonrpc":"2.0","id":1,"method":"work","params":{"n":1}},{"jsonrpc":"2.0","id":2,"method":"ping"},{"jsonrpc":"2.0","id":3,"method":"nope"}]"#,
    );
    let req = forwarded(&mut server, &mut svc, "work");
    server.step(3);
    assert!(client.take_all().is_empty(), "the batch waits for its forwarded member");
    answer(&mut svc, &req, json!("one"));
    let batch = server.wait_message(&mut client, Value::is_array);
    let ids: Vec<Value> = batch.as_array().map(|a| a.iter().map(|m| m["id"].clone()).collect()).unwrap_or_default();
    assert_eq!(ids, vec![json!(1), json!(2), json!(3)]);
    assert_eq!(batch[0]["result"], "one");
    assert_eq!(batch[2]["error"]["code"], -32601);
    server.login(&mut client, "netease1", "123");
    let reply = server.request(&mut svc, "service_kick", json!({"account": "netease1"}));
    assert_eq!(reply["result"]["kicked"], true);
    assert_eq!(error_code(&server.request(&mut client, "work", json!({}))), Some(1006));
}

/// A client that leaves with a call in flight cancels nothing: the service's
/// answer is dropped, and the service is not disturbed.
#[test]
fn client_gone_answer_dropped() {
    let mut server = server();
    let mut svc = service(&mut server, "s", &[("work", false)]);
    let mut client = server.connect();
    client.send_request("work", json!({}));
    let req = forwarded(&mut server, &mut svc, "work");
    client.disconnect();
    server.step(3);
    answer(&mut svc, &req, json!("late"));
    let seen = server.messages_before_sync(&mut svc);
    assert!(seen.iter().all(|m| m.get("error").is_none()), "{seen:?}");
    assert!(!svc.is_closed());
}

/// A client notification is forwarded as a notification (no id) and gets
/// no answer; a service may answer several calls in one batch array.
#[test]
fn notifications_and_batched_answers() {
    let mut server = server();
    let mut svc = service(&mut server, "s", &[("work", false)]);
    let mut client = server.connect();
    client.send_notification("work", json!({"n": 0}));
    let note = forwarded(&mut server, &mut svc, "work");
    assert!(note.get("id").is_none(), "forwarded as a notification: {note}");
    assert_eq!(note["params"]["params"], json!({"n": 0}));
    let mut other = server.connect();
    let a = client.send_request("work", json!({"n": 1}));
    let b = other.send_request("work", json!({"n": 2}));
    let first = forwarded(&mut server, &mut svc, "work");
    let second = forwarded(&mut server, &mut svc, "work");
    svc.send_line(
        &json!([
            {"jsonrpc": "2.0", "id": second["id"], "result": "two"},
            {"jsonrpc": "2.0", "id": first["id"], "result": "one"},
        ])
        .to_string(),
    );
    assert_eq!(server.wait_response(&mut client, a)["result"], "one");
    assert_eq!(server.wait_response(&mut other, b)["result"], "two");
    assert!(server.messages_before_sync(&mut client).is_empty(), "no answer to the notification");
}

/// Registering while logged in is refused, and a service cannot log in.
#[test]
fn logged_in_connections_cannot_register() {
    let mut server = server();
    let mut client = server.connect();
    server.login(&mut client, "netease1", "123");
    let reply = server.request(&mut client, "service_register", json!({"key": KEY, "name": "x", "methods": []}));
    assert_eq!(error_code(&reply), Some(1005));
}
