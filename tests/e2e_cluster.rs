//! End-to-end tests of the cluster (docs/cluster.md, docs/cli.md "Cluster"):
//! two or three real `portcullis serve` nodes on loopback, one fresh
//! PostgreSQL database per test (from `PORTCULLIS_TEST_POSTGRES`; without it
//! every test here prints that it was skipped and passes).
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{Conn, Server, error_code, token_of};
use portcullis_store::testing::TestPostgres;
use serde_json::{Value, json};

const LOGIN_IN_PROGRESS: i64 = 1008;

/// A node on `db` named `name` with `extra` flags.
fn node(db: &TestPostgres, name: &str, extra: &[&str]) -> Server {
    let mut args = vec!["--node-name", name];
    args.extend_from_slice(extra);
    Server::start(Path::new(db.url()), &args)
}

fn kicked(reason: &str, save_deadline_ms: u64) -> Value {
    json!({"reason": reason, "save_deadline_ms": save_deadline_ms})
}

fn login_pending() -> Value {
    json!({"reason": "replacing_session"})
}

/// If this failed, a player moving from one node to another would lose the
/// progress saved when the first node kicked them, or the two clients would
/// not see docs/protocol.md §6's messages in its order across machines.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_node_takeover_saves_first_then_answers_the_new_login() {
    let Some(db) = TestPostgres::create("cross_node_takeover_saves_first_then_answers_the_new_login") else { return };
    let node_a = node(&db, "node-a", &["--kick-save-timeout", "3s"]);
    let node_b = node(&db, "node-b", &["--kick-save-timeout", "3s"]);

    let mut a = node_a.connect().await;
    let a_token = a.login("netease1", "123").await;
    assert_eq!(a.save(&a_token, json!({"v": 1})).await.0, 1);

    let mut b = node_b.connect().await;
    let b_login = b.request("login", json!({"account": "netease1", "password": "123"})).await;
    b.expect_notification("login_pending", login_pending()).await;
    a.expect_notification("kicked", kicked("duplicate_login", 3000)).await;
    // B's login waits for A's save.
    b.expect_silence(Duration::from_millis(300)).await;

    let final_data = json!({"v": 2, "note": "saved on node A while kicked"});
    let (version, saved_at) = a.save(&a_token, final_data.clone()).await;
    assert_eq!(version, 2);
    a.expect_disconnected("duplicate_login").await;
    a.expect_eof().await;
    let a_closed = Instant::now();

    let response = b.response(b_login).await;
    let login = response.get("result").unwrap_or_else(|| panic!("B's login failed: {response}"));
    assert_eq!(login["account"], "netease1");
    let b_token = token_of(login);
    assert_ne!(b_token, a_token);
    assert!(a_closed.elapsed() < Duration::from_secs(2), "B is answered once A is gone, not at a lease or deadline");
    // Node B reads what node A committed.
    assert_eq!(b.load(&b_token).await, json!({"data": final_data, "version": 2, "saved_at": saved_at}));
}

/// If this failed, a login for a player whose node crashed would hang for
/// ever, or succeed while the crashed node's claim is still leased.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_after_a_node_crash_waits_for_the_lease_then_succeeds() {
    let Some(db) = TestPostgres::create("a_login_after_a_node_crash_waits_for_the_lease_then_succeeds") else {
        return;
    };
    let lease = ["--node-lease", "4s"];
    let mut node_a = node(&db, "node-a", &lease);
    let node_b = node(&db, "node-b", &lease);

    let mut a = node_a.connect().await;
    let a_token = a.login("netease2", "123").await;
    a.save(&a_token, json!({"before": "crash"})).await;
    node_a.kill();
    let killed = Instant::now();

    let mut b = node_b.connect().await;
    let b_login = b.request("login", json!({"account": "netease2", "password": "123"})).await;
    b.expect_notification("login_pending", login_pending()).await;
    let response = b.recv_within(Duration::from_secs(15)).await;
    assert_eq!(response["id"], json!(b_login), "{response}");
    let waited = killed.elapsed();
    let b_token = token_of(response.get("result").unwrap_or_else(|| panic!("login failed: {response}")));
    // The lease was renewed at most a third of it before the kill.
    assert!(
        waited >= Duration::from_millis(2500),
        "the claim of the crashed node holds until its lease ends: {waited:?}"
    );
    assert_eq!(b.load(&b_token).await["data"], json!({"before": "crash"}));
}

/// If this failed, players of a node that was stopped cleanly (a deploy)
/// would wait for its lease before they could log in elsewhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_shutdown_releases_its_claims() {
    let Some(db) = TestPostgres::create("a_clean_shutdown_releases_its_claims") else { return };
    let lease = ["--node-lease", "60s", "--kick-save-timeout", "1s"];
    let mut node_a = node(&db, "node-a", &lease);
    let node_b = node(&db, "node-b", &lease);

    let mut a = node_a.connect().await;
    let a_token = a.login("netease3", "123").await;
    node_a.terminate();
    a.expect_notification("kicked", kicked("server_shutdown", 1000)).await;
    a.save(&a_token, json!({"saved": "at shutdown"})).await;
    a.expect_disconnected("server_shutdown").await;
    assert!(node_a.wait_exit(Duration::from_secs(10)).await.success());

    let mut b = node_b.connect().await;
    let started = Instant::now();
    let response = b.call("login", json!({"account": "netease3", "password": "123"})).await;
    let b_token = token_of(response.get("result").unwrap_or_else(|| panic!("login failed: {response}")));
    assert!(started.elapsed() < Duration::from_secs(5), "no wait for the 60 s lease");
    assert_eq!(b.load(&b_token).await["data"], json!({"saved": "at shutdown"}));
}

/// The outcome of one racing login: `Some(token)` if it was answered with one.
async fn racing_login(conn: &mut Conn, id: i64) -> Option<String> {
    loop {
        let message = conn.recv_within(Duration::from_secs(20)).await;
        if message.get("method") == Some(&json!("login_pending")) {
            continue;
        }
        assert_eq!(message["id"], json!(id), "{message}");
        return match message.get("result") {
            Some(result) => Some(token_of(result)),
            None => {
                assert_eq!(error_code(&message), LOGIN_IN_PROGRESS, "{message}");
                None
            }
        };
    }
}

/// Whether `token` is still a live session on `conn` (`userdata_load` is not
/// `NOT_LOGGED_IN`/`TOKEN_INVALID`; the connection may have been kicked and
/// closed, which counts as not live).
async fn still_logged_in(conn: &mut Conn, token: &str) -> bool {
    let id = conn.request("userdata_load", json!({"token": token})).await;
    loop {
        match conn.next_line_within(Duration::from_secs(10)).await {
            None | Some(Err(_)) => return false,
            Some(Ok(line)) => {
                let message: Value = serde_json::from_str(&line).unwrap();
                if message["id"] == json!(id) {
                    // NO_USERDATA (1004) means the session is live.
                    return message.get("result").is_some() || error_code(&message) == 1004;
                }
            }
        }
    }
}

/// If this failed, one account could end up logged in twice across nodes
/// (two players sharing one save), or nowhere after a burst of logins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_logins_on_three_nodes_end_in_exactly_one_session() {
    let Some(db) = TestPostgres::create("racing_logins_on_three_nodes_end_in_exactly_one_session") else { return };
    let flags = ["--kick-save-timeout", "500ms"];
    let nodes = [node(&db, "node-1", &flags), node(&db, "node-2", &flags), node(&db, "node-3", &flags)];
    let mut conns = Vec::new();
    for server in &nodes {
        conns.push(server.connect().await);
    }
    let mut ids = Vec::new();
    for conn in &mut conns {
        ids.push(conn.request("login", json!({"account": "netease1", "password": "123"})).await);
    }
    let mut tokens = Vec::new();
    for (conn, id) in conns.iter_mut().zip(&ids) {
        tokens.push(racing_login(conn, *id).await);
    }
    assert!(tokens.iter().any(Option::is_some), "some login must win: {tokens:?}");
    // Let the kicks of the losers run out (500 ms save deadline).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut live = 0;
    for (conn, token) in conns.iter_mut().zip(&tokens) {
        if let Some(token) = token
            && still_logged_in(conn, token).await
        {
            live += 1;
        }
    }
    assert_eq!(live, 1, "exactly one session of the account across the nodes ({tokens:?})");
}

/// If this failed, an account registered on one node would not exist for
/// the others (the nodes would not share one database).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_on_one_node_login_on_another() {
    let Some(db) = TestPostgres::create("register_on_one_node_login_on_another") else { return };
    let node_a = node(&db, "node-a", &[]);
    let node_b = node(&db, "node-b", &[]);
    let mut a = node_a.connect().await;
    a.call_ok("register", json!({"account": "Wanderer42", "password": "secret1"})).await;
    assert_eq!(
        error_code(&a.call("register", json!({"account": "WANDERER42", "password": "secret1"})).await),
        1009,
        "names are unique ignoring case across nodes"
    );
    let mut b = node_b.connect().await;
    let result = b.call_ok("login", json!({"account": "wanderer42", "password": "secret1"})).await;
    assert_eq!(result["account"], "Wanderer42");
}

/// If this failed, a third device logging in while a cross-node takeover
/// runs would start a second takeover (docs/protocol.md §6 answers it
/// LOGIN_IN_PROGRESS), on the waiting node or on any other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_third_login_during_a_cross_node_takeover_is_login_in_progress() {
    let Some(db) = TestPostgres::create("a_third_login_during_a_cross_node_takeover_is_login_in_progress") else {
        return;
    };
    let flags = ["--kick-save-timeout", "5s"];
    let (node_a, node_b, node_c) =
        (node(&db, "node-a", &flags), node(&db, "node-b", &flags), node(&db, "node-c", &flags));
    let mut a = node_a.connect().await;
    let a_token = a.login("netease2", "123").await;

    let mut b = node_b.connect().await;
    let b_login = b.request("login", json!({"account": "netease2", "password": "123"})).await;
    b.expect_notification("login_pending", login_pending()).await;
    a.expect_notification("kicked", kicked("duplicate_login", 5000)).await;

    let mut c = node_c.connect().await;
    assert_eq!(c.call_err("login", json!({"account": "netease2", "password": "123"})).await, LOGIN_IN_PROGRESS);
    let mut b2 = node_b.connect().await;
    assert_eq!(b2.call_err("login", json!({"account": "netease2", "password": "123"})).await, LOGIN_IN_PROGRESS);
    // B's own connection is served while it waits (docs/protocol.md §6).
    assert!(b.call_ok("ping", json!({})).await["server_time_ms"].is_u64());

    a.save(&a_token, json!({"last": "save"})).await;
    a.expect_disconnected("duplicate_login").await;
    let response = b.recv_within(Duration::from_secs(5)).await;
    assert_eq!(response["id"], json!(b_login), "{response}");
    let b_token = token_of(response.get("result").unwrap_or_else(|| panic!("{response}")));
    assert_eq!(b.load(&b_token).await["data"], json!({"last": "save"}));
}
