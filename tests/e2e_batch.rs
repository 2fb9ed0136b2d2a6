//! End-to-end tests of JSON-RPC batches (docs/protocol.md §2) against the
//! real `portcullis` binary over TCP: one test per rule of the batch list.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{Conn, error_code, start_fresh};
use serde_json::{Value, json};

fn ping(id: i64) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": "ping"})
}

#[track_caller]
fn entries(message: &Value) -> &Vec<Value> {
    message.as_array().unwrap_or_else(|| panic!("expected one array, got {message}"))
}

#[track_caller]
fn assert_ping(entry: &Value, id: i64) {
    assert_eq!(entry["id"], id, "{entry}");
    assert!(entry["result"]["server_time_ms"].is_u64(), "{entry}");
}

/// Sends `frame` then a sync ping; returns what came before the ping's answer.
async fn before_sync(conn: &mut Conn, frame: &str) -> Vec<Value> {
    conn.send_raw(format!("{frame}\n{}\n", json!({"jsonrpc":"2.0","id":"sync","method":"ping"})).as_bytes()).await;
    let mut got = Vec::new();
    loop {
        let message = conn.recv().await;
        if message["id"] == "sync" {
            return got;
        }
        got.push(message);
    }
}

/// If this failed, a client sending `[]` would get an array (or nothing)
/// instead of the single `-32600` the JSON-RPC spec asks for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_batch_gets_one_error_object() {
    let (_dir, server) = start_fresh(&[]);
    let mut conn = server.connect().await;
    let got = before_sync(&mut conn, "[]").await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(error_code(&got[0]), -32600, "{}", got[0]);
    assert_eq!(got[0]["id"], Value::Null);
}

/// If this failed, `--max-batch` would not bound the work of one frame:
/// an oversized batch must get one `batch too large` and run nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_over_max_batch_runs_nothing() {
    let (_dir, server) = start_fresh(&["--max-batch", "2"]);
    let mut conn = server.connect().await;
    let batch = json!([ping(1), {"jsonrpc": "2.0", "method": "disconnect"}, ping(3)]);
    let got = before_sync(&mut conn, &batch.to_string()).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(error_code(&got[0]), -32600);
    assert_eq!(got[0]["error"]["message"], "batch too large");
    assert_eq!(got[0]["id"], Value::Null);
}

/// If this failed, a batch could dodge the rate limit (one token for many
/// requests), or answers would lose their order or include notifications.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_cost_a_token_each_and_answers_keep_member_order() {
    let (_dir, server) = start_fresh(&["--rate-limit", "0", "--rate-burst", "4"]);
    let mut conn = server.connect().await;
    let batch = json!([ping(5), {"jsonrpc": "2.0", "method": "ping"}, ping(3), ping(9), ping(1)]);
    conn.send_raw(format!("{batch}\n").as_bytes()).await;
    let reply = conn.recv().await;
    let got = entries(&reply);
    assert_eq!(got.len(), 4, "the notification adds no entry: {got:?}");
    assert_ping(&got[0], 5);
    assert_ping(&got[1], 3);
    assert_ping(&got[2], 9);
    assert_eq!(error_code(&got[3]), 1007, "the fifth member had no token left: {}", got[3]);
    assert_eq!(got[3]["id"], 1);
}

/// If this failed, a batch of notifications would get a reply the client
/// cannot match, or an invalid member would not be answered in place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notification_batch_gets_nothing_and_invalid_members_get_null_entries() {
    let (_dir, server) = start_fresh(&[]);
    let mut conn = server.connect().await;
    let notes = json!([{"jsonrpc": "2.0", "method": "ping"}, {"jsonrpc": "2.0", "method": "nope"}]);
    assert_eq!(before_sync(&mut conn, &notes.to_string()).await, Vec::<Value>::new());
    let got = before_sync(&mut conn, r#"[1,{"jsonrpc":"2.0","id":2,"method":"ping"},{"id":3}]"#).await;
    assert_eq!(got.len(), 1, "{got:?}");
    let got = entries(&got[0]);
    assert_eq!(got.len(), 3, "{got:?}");
    assert_eq!((error_code(&got[0]), &got[0]["id"]), (-32600, &Value::Null));
    assert_ping(&got[1], 2);
    assert_eq!(error_code(&got[2]), -32600);
}

/// If this failed, a batch member that closes the connection would lose
/// the answers before it, or members after it would still run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_members_end_the_batch_after_its_entries() {
    let (_dir, server) = start_fresh(&["--max-protocol-errors", "2"]);
    // `disconnect`.
    let mut conn = server.connect().await;
    let batch = json!([ping(1), {"jsonrpc": "2.0", "id": 2, "method": "disconnect"}, ping(3)]);
    conn.send_raw(format!("{batch}\n").as_bytes()).await;
    let reply = conn.recv().await;
    let got = entries(&reply);
    assert_eq!(got.len(), 2, "{got:?}");
    assert_ping(&got[0], 1);
    assert_eq!(got[1], json!({"jsonrpc": "2.0", "id": 2, "result": {}}));
    conn.expect_disconnected("client_request").await;
    conn.expect_eof().await;
    // The protocol error that reaches the limit.
    let mut conn = server.connect().await;
    conn.send_raw(b"[1,{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"ping\"},\"x\",{\"jsonrpc\":\"2.0\",\"id\":4,\"method\":\"ping\"}]\n")
        .await;
    let reply = conn.recv().await;
    let got = entries(&reply);
    assert_eq!(got.len(), 3, "{got:?}");
    assert_ping(&got[1], 2);
    conn.expect_disconnected("protocol_error").await;
    conn.expect_eof().await;
}

/// If this failed, a rate-limit flood packed into one batch would never be
/// closed, or the client would not see the answers before the close.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_close_line_inside_a_batch() {
    let (_dir, server) = start_fresh(&["--rate-limit", "0", "--rate-burst", "2"]);
    let mut conn = server.connect().await;
    let batch = Value::Array((1..=10).map(ping).collect());
    conn.send_raw(format!("{batch}\n").as_bytes()).await;
    let reply = conn.recv().await;
    let got = entries(&reply);
    assert_eq!(got.len(), 5, "2 results, then refusals up to the one that crosses the line: {got:?}");
    assert_eq!(error_code(&got[4]), 1007);
    conn.expect_disconnected("rate_limited").await;
    conn.expect_eof().await;
}

/// If this failed, a batch mixing store requests would answer out of order
/// (a load missing the save before it), or a frame after the batch would
/// overtake it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_waiting_on_the_store_keep_the_order() {
    let (_dir, server) = start_fresh(&[]);
    let mut conn = server.connect().await;
    let token = conn.login("netease1", "123").await;
    let save = |id: i64, n: i64| json!({"jsonrpc":"2.0","id":id,"method":"userdata_save","params":{"token":token,"data":{"n":n}}});
    let load = |id: i64| json!({"jsonrpc":"2.0","id":id,"method":"userdata_load","params":{"token":token}});
    let batch = json!([save(1, 1), load(2), save(3, 2), load(4)]);
    conn.send_raw(format!("{batch}\n{}\n", load(5)).as_bytes()).await;
    let reply = conn.recv().await;
    let got = entries(&reply);
    assert_eq!(got.len(), 4, "{got:?}");
    assert_eq!(got[1]["result"]["data"], json!({"n": 1}));
    assert_eq!(got[3]["result"]["data"], json!({"n": 2}));
    let after = conn.recv().await;
    assert_eq!(after["id"], 5, "{after}");
    assert_eq!(after["result"]["version"], 2);
}

/// If this failed, `login_pending` would be hidden inside a batch reply,
/// or a batch waiting on a takeover would stall other clients.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn takeover_inside_a_batch_keeps_notifications_outside() {
    let (_dir, server) = start_fresh(&["--kick-save-timeout", "5s"]);
    let mut a = server.connect().await;
    let token_a = a.login("netease1", "123").await;
    let mut b = server.connect().await;
    let login = json!({"jsonrpc":"2.0","id":1,"method":"login","params":{"account":"netease1","password":"123"}});
    b.send_raw(format!("{}\n", json!([login, ping(2)])).as_bytes()).await;
    b.expect_notification("login_pending", json!({"reason": "replacing_session"})).await;
    a.expect_notification("kicked", json!({"reason": "duplicate_login", "save_deadline_ms": 5000})).await;
    // Another client is served while b's batch waits.
    let mut c = server.connect().await;
    c.call_ok("ping", json!({})).await;
    a.save(&token_a, json!({"from": "a"})).await;
    a.expect_disconnected("duplicate_login").await;
    let reply = b.recv_within(Duration::from_secs(5)).await;
    let got = entries(&reply);
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0]["result"]["account"], "netease1");
    assert_ping(&got[1], 2);
}
