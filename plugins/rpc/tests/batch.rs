//! System-level ECS tests of JSON-RPC batches (docs/protocol.md §2, "batch"):
//! one test per rule, on the in-memory transport and a manual clock.
//!
//! A batch is a frame whose JSON is an array. Each member is handled as if
//! it had arrived alone, in order, and costs its own rate token; the
//! answers come back as one array in member order.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use bevy_ecs::prelude::*;
use portcullis_net::NetConfig;
use portcullis_rpc::{Access, Request, RpcAppExt, RpcConfig, RpcError};
use portcullis_session::SessionConfig;
use portcullis_testkit::{JsonClient, TestConfig, TestServer, error_code};
use serde_json::{Value, json};

fn server_with(rpc: RpcConfig, net: NetConfig) -> TestServer {
    TestServer::with_config(TestConfig {
        rpc,
        net,
        session: SessionConfig {
            login_timeout: Duration::from_secs(3600),
            idle_timeout: Duration::from_secs(3600),
            ..SessionConfig::default()
        },
        ..TestConfig::default()
    })
}

fn server() -> TestServer {
    server_with(RpcConfig::default(), NetConfig::default())
}

fn ping(id: i64) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "ping"})
}

/// Sends `batch` as one frame and steps until a message arrives that is
/// not a notification, or the connection closes; returns every message
/// received, in order.
fn send_batch(server: &mut TestServer, client: &mut JsonClient, batch: &Value) -> Vec<Value> {
    client.send_line(&batch.to_string());
    let mut got: Vec<Value> = Vec::new();
    let ok = server.step_until(|_| {
        let closed = client.is_closed();
        got.extend(client.take_all());
        closed || got.iter().any(|m| m.get("method").is_none())
    });
    assert!(ok, "no answer to the batch; received {got:?}");
    got
}

#[track_caller]
fn array(message: &Value) -> &Vec<Value> {
    message.as_array().unwrap_or_else(|| panic!("expected a batch reply (an array), got {message}"))
}

#[track_caller]
fn assert_ping(entry: &Value, id: i64) {
    assert_eq!(entry["id"], json!(id), "{entry}");
    assert!(entry["result"]["server_time_ms"].is_u64(), "{entry}");
}

#[track_caller]
fn assert_error(entry: &Value, code: i64, id: &Value) {
    assert_eq!(error_code(entry), Some(code), "{entry}");
    assert_eq!(&entry["id"], id, "{entry}");
}

/// An empty batch gets one `-32600` with `"id": null`, not inside an array.
#[test]
fn empty_batch_is_one_invalid_request() {
    let mut server = server();
    let mut client = server.connect();
    client.send_line("[]");
    let got = server.messages_before_sync(&mut client);
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].is_object(), "not inside an array: {}", got[0]);
    assert_error(&got[0], -32600, &Value::Null);
}

/// More than `max_batch` members get one `-32600 batch too large`, and
/// nothing of the batch runs (here: its `disconnect` does not close).
#[test]
fn batch_over_max_batch_runs_nothing() {
    let mut server = server_with(RpcConfig { max_batch: 2, ..RpcConfig::default() }, NetConfig::default());
    let mut client = server.connect();
    client.send_line(&json!([ping(1), {"jsonrpc": "2.0", "method": "disconnect"}, ping(3)]).to_string());
    let got = server.messages_before_sync(&mut client);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_error(&got[0], -32600, &Value::Null);
    assert_eq!(got[0]["error"]["message"], "batch too large");
    assert!(!client.is_closed(), "a member of a refused batch ran");
    // At the limit it runs.
    let got = send_batch(&mut server, &mut client, &json!([ping(1), ping(2)]));
    assert_eq!(array(&got[0]).len(), 2);
}

/// Answers come back as one array in member order; notification members
/// add no entry; a batch of notifications only gets no reply at all.
#[test]
fn answers_are_one_array_in_member_order_without_notifications() {
    let mut server = server();
    let mut client = server.connect();
    let batch = json!([
        ping(3),
        {"jsonrpc": "2.0", "method": "ping"},
        {"jsonrpc": "2.0", "id": "b", "method": "no_such_method"},
        ping(1),
    ]);
    let got = send_batch(&mut server, &mut client, &batch);
    assert_eq!(got.len(), 1, "{got:?}");
    let entries = array(&got[0]);
    assert_eq!(entries.len(), 3, "{entries:?}");
    assert_ping(&entries[0], 3);
    assert_error(&entries[1], -32601, &json!("b"));
    assert_ping(&entries[2], 1);

    client.send_line(&json!([{"jsonrpc": "2.0", "method": "ping"}, {"jsonrpc": "2.0", "method": "ping"}]).to_string());
    assert_eq!(server.messages_before_sync(&mut client), Vec::<Value>::new());
}

/// A member that is not a valid request object gets a `-32600` entry with
/// `"id": null` and counts as a protocol error: the one that reaches
/// `max_protocol_errors` ends the batch and closes.
#[test]
fn invalid_members_are_entries_and_count_as_protocol_errors() {
    let mut server = server_with(RpcConfig { max_protocol_errors: 3, ..RpcConfig::default() }, NetConfig::default());
    let mut client = server.connect();
    let batch = json!([1, ping(2), {"jsonrpc": "1.0", "id": 3, "method": "ping"}]);
    let got = send_batch(&mut server, &mut client, &batch);
    let entries = array(&got[0]);
    assert_eq!(entries.len(), 3, "{entries:?}");
    assert_error(&entries[0], -32600, &Value::Null);
    assert_ping(&entries[1], 2);
    assert_error(&entries[2], -32600, &json!(3));
    // The third protocol error, inside the next batch, closes: the entries
    // so far, then `disconnected`, and the member after it never runs.
    client.send_line(&json!([ping(4), "x", ping(5)]).to_string());
    let got = server.messages_until_closed(&mut client);
    assert_eq!(got.len(), 2, "{got:?}");
    let entries = array(&got[0]);
    assert_eq!(entries.len(), 2, "{entries:?}");
    assert_ping(&entries[0], 4);
    assert_error(&entries[1], -32600, &Value::Null);
    assert_eq!(got[1]["method"], "disconnected");
    assert_eq!(got[1]["params"], json!({"reason": "protocol_error"}));
}

/// Each member costs its own rate token: with 3 tokens and no refill, a
/// batch of 5 pings gets 3 results and 2 `RATE_LIMITED` entries.
#[test]
fn each_member_costs_its_own_rate_token() {
    let net = NetConfig { rate_limit: 0.0, rate_burst: 3, ..NetConfig::default() };
    let mut server = server_with(RpcConfig::default(), net);
    let mut client = server.connect();
    let got = send_batch(&mut server, &mut client, &json!([ping(1), ping(2), ping(3), ping(4), ping(5)]));
    let entries = array(&got[0]);
    assert_eq!(entries.len(), 5, "{entries:?}");
    for (i, entry) in entries.iter().enumerate() {
        if i < 3 {
            assert_ping(entry, i as i64 + 1);
        } else {
            assert_error(entry, 1007, &json!(i + 1));
        }
    }
}

/// The refusal that crosses the rate-limit close line ends the batch: the
/// entries so far (the crossing one included), then
/// `disconnected {"reason":"rate_limited"}`, then the close.
#[test]
fn rate_limit_close_inside_a_batch_sends_the_entries_so_far_first() {
    let net = NetConfig { rate_limit: 0.0, rate_burst: 2, ..NetConfig::default() };
    let mut server = server_with(RpcConfig::default(), net);
    let mut client = server.connect();
    let batch: Vec<Value> = (1..=8).map(ping).collect();
    client.send_line(&Value::Array(batch).to_string());
    let got = server.messages_until_closed(&mut client);
    assert_eq!(got.len(), 2, "{got:?}");
    let entries = array(&got[0]);
    // 2 admitted, then refusals 1 and 2 (within the burst), then the third
    // refusal crosses the line.
    assert_eq!(entries.len(), 5, "{entries:?}");
    assert_ping(&entries[1], 2);
    assert_error(&entries[4], 1007, &json!(5));
    assert_eq!(got[1]["params"], json!({"reason": "rate_limited"}));
}

/// A member that closes the connection (`disconnect`) ends the batch: the
/// members after it do not run, the array of the entries so far is sent,
/// then `disconnected`.
#[test]
fn disconnect_member_ends_the_batch() {
    let mut server = server();
    let mut client = server.connect();
    let batch = json!([ping(1), {"jsonrpc": "2.0", "id": 2, "method": "disconnect"}, ping(3)]);
    client.send_line(&batch.to_string());
    let got = server.messages_until_closed(&mut client);
    assert_eq!(got.len(), 2, "{got:?}");
    let entries = array(&got[0]);
    assert_eq!(entries.len(), 2, "{entries:?}");
    assert_ping(&entries[0], 1);
    assert_eq!(entries[1], json!({"jsonrpc": "2.0", "id": 2, "result": {}}));
    assert_eq!(got[1]["params"], json!({"reason": "client_request"}));
}

/// Ordering holds inside a batch and across frames: a member waiting on the
/// store holds the members after it, so a load after a save sees the save,
/// and a frame sent after the batch is answered after it.
#[test]
fn members_waiting_on_the_store_hold_the_members_after_them() {
    let mut server = server();
    let mut client = server.connect();
    let token = server.login(&mut client, "netease1", "123");
    let batch = json!([
        {"jsonrpc": "2.0", "id": 1, "method": "userdata_save", "params": {"token": token, "data": {"n": 1}}},
        {"jsonrpc": "2.0", "id": 2, "method": "userdata_load", "params": {"token": token}},
        {"jsonrpc": "2.0", "id": 3, "method": "userdata_save", "params": {"token": token, "data": {"n": 2}}},
        {"jsonrpc": "2.0", "id": 4, "method": "userdata_load", "params": {"token": token}},
    ]);
    client.send_line(&batch.to_string());
    client.send_line(
        &json!({"jsonrpc": "2.0", "id": 5, "method": "userdata_load", "params": {"token": token}}).to_string(),
    );
    let mut got: Vec<Value> = Vec::new();
    assert!(server.step_until(|_| {
        got.extend(client.take_all());
        got.len() >= 2
    }));
    assert_eq!(got.len(), 2, "{got:?}");
    let entries = array(&got[0]);
    assert_eq!(entries.len(), 4, "{entries:?}");
    assert_eq!(entries[0]["result"]["version"], 1);
    assert_eq!(entries[1]["result"]["data"], json!({"n": 1}));
    assert_eq!(entries[2]["result"]["version"], 2);
    assert_eq!(entries[3]["result"]["data"], json!({"n": 2}));
    assert_eq!(got[1]["id"], 5, "the later frame is answered after the batch: {got:?}");
    assert_eq!(got[1]["result"]["version"], 2);
}

/// Server notifications are never put inside a batch reply: a batch whose
/// `login` takes over another session gets `login_pending` on its own,
/// while the batch waits, and the array (login result and the other
/// members' answers) once the old session is gone.
#[test]
fn notifications_stay_outside_a_waiting_batch() {
    let mut server = server();
    let mut a = server.connect();
    let token_a = server.login(&mut a, "netease1", "123");
    let mut b = server.connect();
    let batch = json!([
        {"jsonrpc": "2.0", "id": 1, "method": "login", "params": {"account": "netease1", "password": "123"}},
        ping(2),
    ]);
    b.send_line(&batch.to_string());
    let pending = server.wait_message(&mut b, |m| m["method"] == "login_pending");
    assert_eq!(pending["params"], json!({"reason": "replacing_session"}));
    server.wait_message(&mut a, |m| m["method"] == "kicked");
    let save = server.request(&mut a, "userdata_save", json!({"token": token_a, "data": {"from": "a"}}));
    assert_eq!(save["result"]["version"], 1, "{save}");
    let reply = server.wait_message(&mut b, Value::is_array);
    let entries = array(&reply);
    assert_eq!(entries.len(), 2, "{entries:?}");
    assert_eq!(entries[0]["result"]["account"], "netease1", "{entries:?}");
    assert_ping(&entries[1], 2);
    assert!(b.take_all().iter().all(|m| !m.is_array()), "one array per batch");
}

/// A batch that waits (here on a takeover) does not hold up other
/// connections: another client's ping is answered meanwhile.
#[test]
fn a_waiting_batch_does_not_hold_up_other_connections() {
    let mut server = server();
    let mut a = server.connect();
    server.login(&mut a, "netease1", "123");
    let mut b = server.connect();
    b.send_line(
        &json!([{"jsonrpc": "2.0", "id": 1, "method": "login", "params": {"account": "netease1", "password": "123"}}])
            .to_string(),
    );
    server.wait_message(&mut b, |m| m["method"] == "login_pending");
    let mut c = server.connect();
    let reply = server.request(&mut c, "ping", json!({}));
    assert!(reply["result"]["server_time_ms"].is_u64(), "{reply}");
    assert!(b.take_all().iter().all(|m| !m.is_array()), "b's batch is still waiting");
}

#[derive(serde::Deserialize)]
struct AddParams {
    a: i64,
    b: i64,
}

fn add(In(req): In<Request<AddParams>>) -> Result<i64, RpcError> {
    Ok(req.params.a + req.params.b)
}

/// A game method registered with `add_rpc_method` works inside a batch
/// with no extra code, params errors included.
#[test]
fn game_methods_work_inside_batches() {
    let mut server = server();
    server.app.add_rpc_method("add", Access::Public, add);
    let mut client = server.connect();
    let batch = json!([
        {"jsonrpc": "2.0", "id": 1, "method": "add", "params": {"a": 2, "b": 3}},
        {"jsonrpc": "2.0", "id": 2, "method": "add", "params": {"a": 2}},
    ]);
    let got = send_batch(&mut server, &mut client, &batch);
    let entries = array(&got[0]);
    assert_eq!(entries[0], json!({"jsonrpc": "2.0", "id": 1, "result": 5}));
    assert_error(&entries[1], -32602, &json!(2));
    assert_eq!(entries[1]["error"]["data"], json!({"field": "b"}));
}
