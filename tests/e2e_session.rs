//! End-to-end tests of issue 4 (single login, kick/save, timers, graceful
//! shutdown) against the real `portcullis` binary over real sockets:
//! docs/protocol.md §5 and §6.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::{Conn, Server, error_code, start_fresh, token_of};
use serde_json::{Value, json};

const INVALID_CREDENTIALS: i64 = 1002;
const LOGIN_IN_PROGRESS: i64 = 1008;

fn kicked(reason: &str, save_deadline_ms: u64) -> Value {
    json!({"reason": reason, "save_deadline_ms": save_deadline_ms})
}

/// A connection logged in as `account` (password `123`) that saved `data`
/// as version `version`: returns the connection, its token and `saved_at`.
async fn logged_in_with_save(server: &Server, account: &str, data: Value, version: u64) -> (Conn, String, String) {
    let mut conn = server.connect().await;
    let token = conn.login(account, "123").await;
    let (saved_version, saved_at) = conn.save(&token, data).await;
    assert_eq!(saved_version, version);
    (conn, token, saved_at)
}

/// Sends B's password login for an account held elsewhere and checks that
/// `login_pending {"reason":"replacing_session"}` comes first; returns the
/// login's request id.
async fn start_takeover(b: &mut Conn, account: &str) -> i64 {
    let id = b.request("login", json!({"account": account, "password": "123"})).await;
    b.expect_notification("login_pending", json!({"reason": "replacing_session"})).await;
    id
}

/// If this failed, a player who logs in on a second device would lose the
/// progress the first device saved when it was kicked, or the two devices
/// would not get the documented messages in the documented order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_login_with_save_hands_the_final_save_to_the_new_client() {
    let (_dir, server) = start_fresh(&["--kick-save-timeout", "2s"]);
    let (mut a, a_token, _) = logged_in_with_save(&server, "netease1", json!({"v": 1}), 1).await;

    let mut b = server.connect().await;
    let b_login = start_takeover(&mut b, "netease1").await;
    a.expect_notification("kicked", kicked("duplicate_login", 2000)).await;
    // B's login waits for A to be gone.
    b.expect_silence(Duration::from_millis(200)).await;

    let final_data = json!({"v": 2, "note": "saved while kicked"});
    let save_sent = Instant::now();
    let (version, saved_at) = a.save(&a_token, final_data.clone()).await;
    assert_eq!(version, 2);
    a.expect_disconnected("duplicate_login").await;
    a.expect_eof().await;

    let response = b.response(b_login).await;
    let waited = save_sent.elapsed();
    let login = response.get("result").unwrap_or_else(|| panic!("B's login failed: {response}"));
    assert_eq!(login["account"], "netease1");
    let b_token = token_of(login);
    assert_ne!(b_token, a_token, "B gets a new token");
    assert!(waited < Duration::from_millis(1500), "the save ends the kick at once, not at the deadline: {waited:?}");
    assert_eq!(b.load(&b_token).await, json!({"data": final_data, "version": 2, "saved_at": saved_at}));
}

/// If this failed, a kicked device that never answers would block the new
/// login forever (or past the configured deadline), or the new device would
/// not see the last earlier save.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_login_without_save_completes_at_the_deadline() {
    let (_dir, server) = start_fresh(&["--kick-save-timeout", "300ms"]);
    let (mut a, _a_token, saved_at) = logged_in_with_save(&server, "netease1", json!({"v": 1}), 1).await;

    let mut b = server.connect().await;
    let login_sent = Instant::now();
    let b_login = start_takeover(&mut b, "netease1").await;
    a.expect_notification("kicked", kicked("duplicate_login", 300)).await;
    let kicked_at = Instant::now();
    // A ignores the kick.
    a.expect_disconnected("duplicate_login").await;
    let a_closed_after = kicked_at.elapsed();
    a.expect_eof().await;
    assert!(a_closed_after >= Duration::from_millis(250), "A closed {a_closed_after:?} after `kicked`, before 300 ms");

    let response = b.response(b_login).await;
    let waited = login_sent.elapsed();
    let b_token = token_of(response.get("result").unwrap_or_else(|| panic!("B's login failed: {response}")));
    assert!(waited >= Duration::from_millis(300), "B's token came {waited:?} after its login, before the deadline");
    assert!(waited < Duration::from_secs(2), "B's token came {waited:?} after its login, long after the deadline");
    assert_eq!(b.load(&b_token).await, json!({"data": {"v": 1}, "version": 1, "saved_at": saved_at}));
}

/// If this failed, a player whose old device had already gone (app closed,
/// network dropped) would wait the whole save deadline to log in again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_login_completes_at_once_when_the_old_client_closes() {
    let (_dir, server) = start_fresh(&["--kick-save-timeout", "5s"]);
    let (mut a, _a_token, saved_at) = logged_in_with_save(&server, "netease1", json!({"v": 1}), 1).await;

    let mut b = server.connect().await;
    let b_login = start_takeover(&mut b, "netease1").await;
    a.expect_notification("kicked", kicked("duplicate_login", 5000)).await;
    drop(a);
    let closed_at = Instant::now();

    let response = b.response(b_login).await;
    let waited = closed_at.elapsed();
    let b_token = token_of(response.get("result").unwrap_or_else(|| panic!("B's login failed: {response}")));
    assert!(waited < Duration::from_secs(1), "B waited {waited:?} after A closed (deadline 5 s): not at once");
    assert_eq!(b.load(&b_token).await, json!({"data": {"v": 1}, "version": 1, "saved_at": saved_at}));
}

/// If this failed, three devices racing for one account could end with two
/// sessions, or a login could be silently dropped, instead of the clear
/// `LOGIN_IN_PROGRESS` answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn third_login_during_a_takeover_gets_login_in_progress() {
    let (_dir, server) = start_fresh(&["--kick-save-timeout", "5s"]);
    let (mut a, _a_token, _) = logged_in_with_save(&server, "netease1", json!({"v": 1}), 1).await;
    let mut b = server.connect().await;
    let b_login = start_takeover(&mut b, "netease1").await;
    a.expect_notification("kicked", kicked("duplicate_login", 5000)).await;

    let mut c = server.connect().await;
    // Credentials are checked first (§4): a wrong password is just wrong.
    let response = c.call("login", json!({"account": "netease1", "password": "nope"})).await;
    assert_eq!(error_code(&response), INVALID_CREDENTIALS, "{response}");
    let response = c.call("login", json!({"account": "NETEASE1", "password": "123"})).await;
    assert_eq!(error_code(&response), LOGIN_IN_PROGRESS, "third login during the takeover: {response}");
    // A second login on the waiting connection too.
    let again = b.request("login", json!({"account": "netease1", "password": "123"})).await;
    let response = b.response(again).await;
    assert_eq!(error_code(&response), LOGIN_IN_PROGRESS, "second login on the waiting connection: {response}");
    // C is still served as a not-logged-in connection.
    c.ping_rtt().await;

    // The takeover still completes for B.
    drop(a);
    let response = b.response(b_login).await;
    token_of(response.get("result").unwrap_or_else(|| panic!("B's login failed: {response}")));
}

/// If this failed, a player who walked away would hold the account (and a
/// server slot) forever, or be cut off without the chance to save.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_logged_in_client_is_kicked_then_disconnected() {
    let (_dir, server) = start_fresh(&["--idle-timeout", "300ms", "--kick-save-timeout", "200ms"]);
    let mut conn = server.connect().await;
    let login_sent = Instant::now();
    conn.login("netease1", "123").await;
    conn.expect_notification("kicked", kicked("idle_timeout", 200)).await;
    let idle_for = login_sent.elapsed();
    let kicked_at = Instant::now();
    assert!(idle_for >= Duration::from_millis(300), "kicked after {idle_for:?} idle, before --idle-timeout 300ms");
    conn.expect_disconnected("idle_timeout").await;
    let closed_after = kicked_at.elapsed();
    conn.expect_eof().await;
    assert!(closed_after >= Duration::from_millis(150), "closed {closed_after:?} after `kicked`, before 200 ms");
}

/// If this failed, `ping` would not work as the keep-alive and active
/// players would be kicked for idling.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_keeps_a_session_from_idling_out() {
    let (_dir, server) = start_fresh(&["--idle-timeout", "400ms", "--kick-save-timeout", "200ms"]);
    let mut conn = server.connect().await;
    let token = conn.login("netease1", "123").await;
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(1000) {
        // Silence for 150 ms (well under the idle timeout), then a ping.
        conn.expect_silence(Duration::from_millis(150)).await;
        conn.ping_rtt().await;
    }
    conn.save(&token, json!({"still": "here"})).await;
}

/// If this failed, an idle connection that never logged in would not be
/// closed by the idle timer (§6: "an idle unauthenticated one is closed").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_unauthenticated_connection_is_closed() {
    let (_dir, server) = start_fresh(&["--idle-timeout", "300ms", "--login-timeout", "10s"]);
    let mut conn = server.connect().await;
    let connected = Instant::now();
    conn.expect_disconnected("idle_timeout").await;
    let after = connected.elapsed();
    conn.expect_eof().await;
    assert!(after >= Duration::from_millis(280), "closed after {after:?}, before --idle-timeout 300ms");
}

/// If this failed, connections that never log in (scanners, broken clients)
/// would hold server slots forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_connection_gets_login_timeout() {
    let (_dir, server) = start_fresh(&["--login-timeout", "300ms"]);
    let mut conn = server.connect().await;
    let connected = Instant::now();
    // Activity does not postpone the login deadline.
    conn.ping_rtt().await;
    conn.expect_disconnected("login_timeout").await;
    let after = connected.elapsed();
    conn.expect_eof().await;
    assert!(after >= Duration::from_millis(280), "closed after {after:?}, before --login-timeout 300ms");
    assert!(after < Duration::from_secs(2), "closed after {after:?}, long after --login-timeout 300ms");
}

/// If this failed, restarting the server (deploy, SIGTERM from systemd)
/// would lose the progress players save when told the server is going down,
/// or the server would not exit cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_kicks_a_logged_in_client_that_saves_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("p.db");
    let mut server = Server::start(&db, &["--kick-save-timeout", "2s"]);
    let (mut conn, token, _) = logged_in_with_save(&server, "netease1", json!({"v": 1}), 1).await;

    server.terminate();
    conn.expect_notification("kicked", kicked("server_shutdown", 2000)).await;
    let final_data = json!({"v": 2, "at": "shutdown"});
    let (version, saved_at) = conn.save(&token, final_data.clone()).await;
    assert_eq!(version, 2);
    conn.expect_disconnected("server_shutdown").await;
    conn.expect_eof().await;
    let status = server.wait_exit(Duration::from_secs(10)).await;
    assert_eq!(status.code(), Some(0), "exit status after SIGTERM: {status}");

    let server = Server::start(&db, &[]);
    let mut conn = server.connect().await;
    let token = conn.login("netease1", "123").await;
    assert_eq!(conn.load(&token).await, json!({"data": final_data, "version": 2, "saved_at": saved_at}));
}

/// If this failed, a shutdown would leave not-logged-in clients hanging, or
/// wait forever for a logged-in client that ignores its kick.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_unauthenticated_at_once_and_silent_sessions_at_the_deadline() {
    let (_dir, mut server) = start_fresh(&["--kick-save-timeout", "500ms"]);
    let mut anon = server.connect().await;
    anon.ping_rtt().await;
    let (mut silent, _token, _) = logged_in_with_save(&server, "netease2", json!({"v": 1}), 1).await;

    let signalled = Instant::now();
    server.terminate();
    anon.expect_disconnected("server_shutdown").await;
    let anon_after = signalled.elapsed();
    anon.expect_eof().await;
    assert!(anon_after < Duration::from_millis(400), "a not-logged-in connection closed after {anon_after:?}");

    silent.expect_notification("kicked", kicked("server_shutdown", 500)).await;
    silent.expect_disconnected("server_shutdown").await;
    let silent_after = signalled.elapsed();
    silent.expect_eof().await;
    assert!(silent_after >= Duration::from_millis(450), "the silent session closed after {silent_after:?}");
    let status = server.wait_exit(Duration::from_secs(10)).await;
    assert_eq!(status.code(), Some(0), "exit status after SIGTERM: {status}");
}

/// If this failed, a player whose new device gave up waiting would leave the
/// old session half-kicked, or the account locked for the next login.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_client_closing_while_waiting_still_closes_the_old_session() {
    let (_dir, server) = start_fresh(&["--kick-save-timeout", "300ms"]);
    let (mut a, _a_token, saved_at) = logged_in_with_save(&server, "netease1", json!({"v": 1}), 1).await;
    let mut b = server.connect().await;
    start_takeover(&mut b, "netease1").await;
    a.expect_notification("kicked", kicked("duplicate_login", 300)).await;
    drop(b);
    a.expect_disconnected("duplicate_login").await;
    a.expect_eof().await;

    // Nobody holds the account now: a new login is answered at once.
    let mut c = server.connect().await;
    let response = c.call("login", json!({"account": "netease1", "password": "123"})).await;
    let c_token = token_of(response.get("result").unwrap_or_else(|| panic!("C's login failed: {response}")));
    assert_eq!(c.load(&c_token).await, json!({"data": {"v": 1}, "version": 1, "saved_at": saved_at}));
}

/// If this failed, a kicked client that logs out (instead of saving) would
/// keep the new device waiting for the whole save deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_while_kicked_ends_the_kick_at_once() {
    let (_dir, server) = start_fresh(&["--kick-save-timeout", "5s"]);
    let (mut a, a_token, saved_at) = logged_in_with_save(&server, "netease1", json!({"v": 1}), 1).await;
    let mut b = server.connect().await;
    let b_login = start_takeover(&mut b, "netease1").await;
    a.expect_notification("kicked", kicked("duplicate_login", 5000)).await;
    // A logout with a wrong token fails and does not end the kick.
    let response = a.call("logout", json!({"token": "f".repeat(64)})).await;
    assert_eq!(error_code(&response), 1003, "{response}");
    b.expect_silence(Duration::from_millis(100)).await;

    let logout_sent = Instant::now();
    assert_eq!(a.call_ok("logout", json!({"token": a_token})).await, json!({}));
    a.expect_disconnected("duplicate_login").await;
    a.expect_eof().await;
    let response = b.response(b_login).await;
    let waited = logout_sent.elapsed();
    let b_token = token_of(response.get("result").unwrap_or_else(|| panic!("B's login failed: {response}")));
    assert!(waited < Duration::from_secs(1), "B waited {waited:?} after A's logout (deadline 5 s)");
    assert_eq!(b.load(&b_token).await, json!({"data": {"v": 1}, "version": 1, "saved_at": saved_at}));
}

/// If this failed, a kicked client choosing to leave without saving
/// (`disconnect`) would not be closed with `client_request`, or would keep
/// the new device waiting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_while_kicked_closes_without_a_save() {
    let (_dir, server) = start_fresh(&["--kick-save-timeout", "5s"]);
    let (mut a, _a_token, saved_at) = logged_in_with_save(&server, "netease1", json!({"v": 1}), 1).await;
    let mut b = server.connect().await;
    let b_login = start_takeover(&mut b, "netease1").await;
    a.expect_notification("kicked", kicked("duplicate_login", 5000)).await;
    let sent = Instant::now();
    assert_eq!(a.call_ok("disconnect", json!({})).await, json!({}));
    a.expect_disconnected("client_request").await;
    // The server closed A; A's socket object stays open on this side (as a
    // slow or hung client's would), which must not hold up B.
    a.expect_eof().await;
    let response = b.response(b_login).await;
    let waited = sent.elapsed();
    let b_token = token_of(response.get("result").unwrap_or_else(|| panic!("B's login failed: {response}")));
    assert!(waited < Duration::from_secs(1), "B waited {waited:?} after A's disconnect (deadline 5 s)");
    assert_eq!(b.load(&b_token).await, json!({"data": {"v": 1}, "version": 1, "saved_at": saved_at}));
}

/// If this failed, a kicked client could keep playing (load, change its
/// password, ...) past its kick, or a mistaken save would end the kick and
/// lose the client's chance to save properly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kicked_session_may_only_save_logout_ping_or_disconnect() {
    let (_dir, server) = start_fresh(&["--kick-save-timeout", "5s"]);
    let (mut a, a_token, _) = logged_in_with_save(&server, "netease1", json!({"v": 1}), 1).await;
    let mut b = server.connect().await;
    let b_login = start_takeover(&mut b, "netease1").await;
    a.expect_notification("kicked", kicked("duplicate_login", 5000)).await;

    let closing = [
        ("userdata_load", json!({"token": a_token})),
        ("change_password", json!({"token": a_token, "old_password": "123", "new_password": "secret99"})),
        ("login", json!({"token": a_token})),
        ("register", json!({"account": "someone1", "password": "secret1"})),
    ];
    for (method, params) in closing {
        let response = a.call(method, params).await;
        assert_eq!(error_code(&response), 1006, "{method} while kicking: {response}");
    }
    let response = a.call("no_such_method", json!({})).await;
    assert_eq!(error_code(&response), -32601, "unknown method while kicking: {response}");
    a.ping_rtt().await;
    // A failed save does not end the kick.
    let response = a.call("userdata_save", json!({"token": a_token, "data": [1, 2]})).await;
    assert_eq!(error_code(&response), -32602, "{response}");
    assert_eq!(response["error"]["data"], json!({"field": "data"}), "{response}");
    b.expect_silence(Duration::from_millis(100)).await;

    let (version, saved_at) = a.save(&a_token, json!({"v": 2})).await;
    assert_eq!(version, 2);
    a.expect_disconnected("duplicate_login").await;
    a.expect_eof().await;
    let response = b.response(b_login).await;
    let b_token = token_of(response.get("result").unwrap_or_else(|| panic!("B's login failed: {response}")));
    assert_eq!(b.load(&b_token).await, json!({"data": {"v": 2}, "version": 2, "saved_at": saved_at}));
}

/// If this failed, a shutdown in the middle of a takeover would hang the
/// waiting device, kick the old one a second time, or lose its final save.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_takeover_busies_the_waiting_login_and_keeps_the_kick() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("p.db");
    let mut server = Server::start(&db, &["--kick-save-timeout", "2s"]);
    let (mut a, a_token, _) = logged_in_with_save(&server, "netease1", json!({"v": 1}), 1).await;
    let mut b = server.connect().await;
    let b_login = start_takeover(&mut b, "netease1").await;
    a.expect_notification("kicked", kicked("duplicate_login", 2000)).await;

    server.terminate();
    // The waiting login gets SERVER_BUSY, then B (not logged in) is closed.
    let response = b.response(b_login).await;
    assert_eq!(error_code(&response), 1011, "B's waiting login during shutdown: {response}");
    b.expect_disconnected("server_shutdown").await;
    b.expect_eof().await;

    // A keeps its kick (no second `kicked`), saves, and is closed with the
    // kick's reason.
    let (version, saved_at) = a.save(&a_token, json!({"v": 2})).await;
    assert_eq!(version, 2);
    a.expect_disconnected("duplicate_login").await;
    a.expect_eof().await;
    let status = server.wait_exit(Duration::from_secs(10)).await;
    assert_eq!(status.code(), Some(0), "exit status after SIGTERM: {status}");

    let server = Server::start(&db, &[]);
    let mut conn = server.connect().await;
    let token = conn.login("netease1", "123").await;
    assert_eq!(conn.load(&token).await, json!({"data": {"v": 2}, "version": 2, "saved_at": saved_at}));
}

/// If this failed, a player who left with `disconnect` and then logs in on
/// another device would be treated as a duplicate login (a `login_pending`
/// and a wait) although the old session is already gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_after_the_old_client_disconnected_is_immediate() {
    let (_dir, server) = start_fresh(&["--kick-save-timeout", "5s"]);
    let (mut a, _a_token, saved_at) = logged_in_with_save(&server, "netease1", json!({"v": 1}), 1).await;
    assert_eq!(a.call_ok("disconnect", json!({})).await, json!({}));
    a.expect_disconnected("client_request").await;
    // A's socket object stays open on this side (as a slow client's would).
    a.expect_eof().await;

    let mut b = server.connect().await;
    let sent = Instant::now();
    let id = b.request("login", json!({"account": "netease1", "password": "123"})).await;
    let message = b.recv().await;
    let waited = sent.elapsed();
    assert_eq!(message["id"], json!(id), "the login is answered directly, without `login_pending`: {message}");
    let b_token = token_of(message.get("result").unwrap_or_else(|| panic!("B's login failed: {message}")));
    assert!(waited < Duration::from_secs(1), "B's login took {waited:?}");
    assert_eq!(b.load(&b_token).await, json!({"data": {"v": 1}, "version": 1, "saved_at": saved_at}));
}

/// If this failed, an empty line would not work as a keep-alive, or a client
/// dribbling bytes of a frame that never ends could stay connected forever
/// (docs/protocol.md §1: blank frames count as activity, unfinished ones do not).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blank_lines_keep_a_session_alive_but_unfinished_frames_do_not() {
    let (_dir, server) = start_fresh(&["--idle-timeout", "400ms", "--kick-save-timeout", "200ms"]);
    let mut conn = server.connect().await;
    conn.login("netease1", "123").await;
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(1000) {
        conn.expect_silence(Duration::from_millis(150)).await;
        conn.send_raw(b"\n").await;
    }
    // Now only bytes of a frame that never ends.
    conn.send_raw(b"{\"jsonrpc\":").await;
    let last_frame = Instant::now();
    let kicked_message = loop {
        if let Some(next) = conn.next_line_within(Duration::from_millis(100)).await {
            break next.unwrap_or_else(|closed| panic!("closed ({closed:?}) without `kicked`"));
        }
        assert!(last_frame.elapsed() < Duration::from_secs(3), "unfinished-frame bytes kept the session alive");
        conn.send_raw(b" ").await;
    };
    let idle_for = last_frame.elapsed();
    let message: Value = serde_json::from_str(&kicked_message).unwrap();
    assert_eq!(message, json!({"jsonrpc": "2.0", "method": "kicked", "params": kicked("idle_timeout", 200)}));
    assert!(idle_for >= Duration::from_millis(380), "kicked {idle_for:?} after the last frame");
}

/// If this failed, players could still connect to a server that is shutting
/// down, and be cut off moments later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_connections_during_shutdown_are_refused() {
    let (_dir, mut server) = start_fresh(&["--kick-save-timeout", "2s"]);
    let (mut a, a_token, _) = logged_in_with_save(&server, "netease1", json!({"v": 1}), 1).await;
    server.terminate();
    a.expect_notification("kicked", kicked("server_shutdown", 2000)).await;
    // The server is still running (waiting for A's save): the listener is closed.
    match tokio::time::timeout(common::WAIT, tokio::net::TcpStream::connect(server.addr)).await {
        Ok(Err(e)) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused, "{e}"),
        Ok(Ok(stream)) => {
            // Accepted in the same instant: told `server_shutdown` and closed.
            let mut late = Conn::new(stream);
            late.expect_disconnected("server_shutdown").await;
            late.expect_eof().await;
        }
        Err(_) => panic!("connect hung during shutdown"),
    }
    a.save(&a_token, json!({"v": 2})).await;
    a.expect_disconnected("server_shutdown").await;
    a.expect_eof().await;
    let status = server.wait_exit(Duration::from_secs(10)).await;
    assert_eq!(status.code(), Some(0), "exit status after SIGTERM: {status}");
}
