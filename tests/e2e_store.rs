//! End-to-end tests of issue 3 (SQLite accounts and user data) against the
//! real `portcullis` binary with a temporary database: the save/load history
//! (docs/protocol.md §4), durability across a restart and across `kill -9`, demo
//! accounts, `register`, and tokens never reaching the database.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{Server, error_code, start_fresh, token_of};
use serde_json::{Value, json};

const NOT_LOGGED_IN: i64 = 1001;
const INVALID_CREDENTIALS: i64 = 1002;
const TOKEN_INVALID: i64 = 1003;
const NO_USERDATA: i64 = 1004;
const ACCOUNT_EXISTS: i64 = 1009;

/// Asserts that a `userdata_load` result is exactly `data` at `version`,
/// saved at `saved_at`.
fn assert_loaded(result: &Value, data: &Value, version: u64, saved_at: &str) {
    assert_eq!(result, &json!({"data": data, "version": version, "saved_at": saved_at}), "userdata_load result");
}

/// If this failed, a player's saves would come back out of order, with the
/// wrong version numbers, or with timestamps that are not the documented
/// UTC millisecond format, and the game would restore the wrong progress.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn save_load_history_returns_the_newest_version() {
    let (_dir, server) = start_fresh(&[]);
    let mut conn = server.connect().await;
    assert_eq!(conn.call_err("userdata_load", json!({"token": "0".repeat(64)})).await, NOT_LOGGED_IN);
    let login = conn.call_ok("login", json!({"account": "netease1", "password": "123"})).await;
    assert_eq!(login["account"], "netease1");
    let token = token_of(&login);
    assert_eq!(conn.call_err("userdata_load", json!({"token": token})).await, NO_USERDATA);

    let mut last_at = String::new();
    for n in 1..=6u64 {
        let data = json!({"name": "wydx", "bullet": 20 + n, "exp": 23, "n": n});
        let (version, saved_at) = conn.save(&token, data.clone()).await;
        assert_eq!(version, n, "versions count 1, 2, 3, ... per account");
        assert!(saved_at >= last_at, "saved_at goes forward: {last_at} then {saved_at}");
        last_at = saved_at.clone();
        let loaded = conn.load(&token).await;
        assert_loaded(&loaded, &data, n, &saved_at);
    }

    // Pipelined: a load sent right after a save sees that save (§2, order).
    let data = json!({"n": 7, "nested": {"list": [1, 2, 3], "s": "ü\"\\"}});
    let save_id = conn.request("userdata_save", json!({"token": token, "data": data})).await;
    let load_id = conn.request("userdata_load", json!({"token": token})).await;
    let mut save = None;
    let mut load = None;
    for _ in 0..2 {
        let message = conn.recv().await;
        if message["id"] == json!(save_id) {
            save = Some(message["result"].clone());
        } else if message["id"] == json!(load_id) {
            load = Some(message["result"].clone());
        } else {
            panic!("unexpected {message}");
        }
    }
    let (version, saved_at) = common::save_result(&save.unwrap());
    assert_eq!(version, 7);
    assert_loaded(&load.unwrap(), &data, 7, &saved_at);
}

/// If this failed, players would lose their progress whenever the operator
/// restarts the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_survives_a_server_restart() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("p.db");
    let mut server = Server::start(&db, &[]);
    let mut conn = server.connect().await;
    let token = conn.login("netease2", "123").await;
    conn.save(&token, json!({"level": 1})).await;
    let data = json!({"level": 2, "items": ["sword", "shield"]});
    let (version, saved_at) = conn.save(&token, data.clone()).await;
    assert_eq!(version, 2);
    drop(conn);
    server.terminate();
    let status = server.wait_exit(Duration::from_secs(10)).await;
    assert_eq!(status.code(), Some(0), "SIGTERM exit status");

    let server = Server::start(&db, &[]);
    let mut conn = server.connect().await;
    let token = conn.login("netease2", "123").await;
    assert_loaded(&conn.load(&token).await, &data, 2, &saved_at);
    let (version, _) = conn.save(&token, json!({"level": 3})).await;
    assert_eq!(version, 3, "the history continues after a restart");
}

/// If this failed, a save the server had confirmed to the player could be
/// lost when the server process crashes (`kill -9`, OOM killer).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_save_survives_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("p.db");
    let mut server = Server::start(&db, &[]);
    let mut conn = server.connect().await;
    let token = conn.login("netease1", "123").await;
    // A burst of pipelined saves (group commit), every one acknowledged,
    // then the process is killed at once.
    let mut ids = Vec::new();
    for n in 1..=20 {
        ids.push(conn.request("userdata_save", json!({"token": token, "data": {"n": n}})).await);
    }
    let mut last = (0, String::new());
    for _ in 0..20 {
        let message = conn.recv().await;
        assert!(ids.contains(&message["id"].as_i64().unwrap()), "unexpected {message}");
        let (version, saved_at) = common::save_result(&message["result"]);
        if version > last.0 {
            last = (version, saved_at);
        }
    }
    assert_eq!(last.0, 20);
    server.kill();

    let server = Server::start(&db, &[]);
    let mut conn = server.connect().await;
    let token = conn.login("netease1", "123").await;
    assert_loaded(&conn.load(&token).await, &json!({"n": 20}), 20, &last.1);
}

/// If this failed, a production server started with `--no-demo-accounts`
/// would still let anyone in as `netease1` with password `123`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_demo_accounts_rejects_netease1() {
    let (_dir, server) = start_fresh(&["--no-demo-accounts"]);
    let mut conn = server.connect().await;
    for account in ["netease1", "netease2", "netease3"] {
        let response = conn.call("login", json!({"account": account, "password": "123"})).await;
        assert_eq!(error_code(&response), INVALID_CREDENTIALS, "{account}: {response}");
    }
}

/// If this failed, `PORTCULLIS_NO_DEMO_ACCOUNTS=1` (or `=0`) in a service
/// file would stop the server from starting (exit 2) instead of switching
/// the demo accounts off (or on): a switch given as a variable takes
/// `true`, `false`, `1` or `0` (docs/cli.md).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_demo_accounts_variable_takes_true_false_1_0() {
    for (value, demo) in [("1", false), ("0", true), ("true", false), ("false", true)] {
        let dir = tempfile::tempdir().expect("tempdir");
        let server = Server::start_with_env(&dir.path().join("p.db"), &[], &[("PORTCULLIS_NO_DEMO_ACCOUNTS", value)]);
        let mut conn = server.connect().await;
        let response = conn.call("login", json!({"account": "netease1", "password": "123"})).await;
        if demo {
            token_of(&response["result"]);
        } else {
            assert_eq!(error_code(&response), INVALID_CREDENTIALS, "PORTCULLIS_NO_DEMO_ACCOUNTS={value}: {response}");
        }
    }
}

/// If this failed, the demo accounts promised for a new database
/// (docs/protocol.md §4) would be missing, and the try-it instructions would fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fresh_database_has_the_demo_accounts() {
    let (_dir, server) = start_fresh(&[]);
    for account in ["netease1", "netease2", "NETEASE3"] {
        let mut conn = server.connect().await;
        let login = conn.call_ok("login", json!({"account": account, "password": "123"})).await;
        assert_eq!(login["account"], account.to_ascii_lowercase(), "spelling given at registration");
        token_of(&login);
        let response = conn.call("login", json!({"account": account, "password": "1234"})).await;
        assert_eq!(error_code(&response), INVALID_CREDENTIALS, "a wrong password on the same account: {response}");
    }
}

/// If this failed, a new player could not create an account and log in with
/// it, or two players could claim the same name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_then_login_with_the_new_account() {
    let (_dir, server) = start_fresh(&["--no-demo-accounts"]);
    let mut conn = server.connect().await;
    let result = conn.call_ok("register", json!({"account": "Player01", "password": "secret1"})).await;
    assert_eq!(result, json!({"account": "Player01"}));
    let response = conn.call("register", json!({"account": "pLAYER01", "password": "secret2"})).await;
    assert_eq!(error_code(&response), ACCOUNT_EXISTS, "names are case-insensitive: {response}");
    // Registration does not log in.
    assert_eq!(conn.call_err("userdata_load", json!({"token": "0".repeat(64)})).await, NOT_LOGGED_IN);
    let response = conn.call("login", json!({"account": "player01", "password": "secret2"})).await;
    assert_eq!(error_code(&response), INVALID_CREDENTIALS, "{response}");

    let login = conn.call_ok("login", json!({"account": "player01", "password": "secret1"})).await;
    assert_eq!(login["account"], "Player01", "login returns the spelling given at registration");
    let token = token_of(&login);
    let (version, saved_at) = conn.save(&token, json!({"hello": "world"})).await;
    assert_eq!(version, 1);
    assert_loaded(&conn.load(&token).await, &json!({"hello": "world"}), 1, &saved_at);
}

/// The bytes of every file of the database (`p.db`, `p.db-wal`, `p.db-shm`, ...).
fn database_bytes(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("p.db") {
            files.push((name, std::fs::read(entry.path()).unwrap()));
        }
    }
    assert!(files.iter().any(|(name, _)| name == "p.db"), "p.db exists");
    files
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn decode_hex(hex: &str) -> Vec<u8> {
    (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect()
}

/// Asserts that no database file holds any of `tokens`, as text (lower or
/// upper case) or as raw bytes.
fn assert_no_token_in_db(dir: &Path, tokens: &[String], when: &str) {
    for (name, bytes) in database_bytes(dir) {
        for token in tokens {
            for needle in [token.as_bytes().to_vec(), token.to_ascii_uppercase().into_bytes(), decode_hex(token)] {
                assert!(!contains(&bytes, &needle), "{when}: the token {token} is in {name}");
            }
        }
    }
}

/// If this failed, anyone who can read the database file (a backup, a
/// support dump) could steal live sessions: tokens must live only in memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_never_appears_in_the_database_files() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(&dir.path().join("p.db"), &[]);
    let mut tokens = Vec::new();
    let mut conn = server.connect().await;
    let token = conn.login("netease1", "123").await;
    tokens.push(token.clone());
    conn.save(&token, json!({"session": 1})).await;
    conn.load(&token).await;
    // Token login and a password change keep the token; both touch the db.
    let again = conn.call_ok("login", json!({"token": token})).await;
    assert_eq!(token_of(&again), token);
    conn.call_ok("change_password", json!({"token": token, "old_password": "123", "new_password": "secret99"})).await;
    conn.save(&token, json!({"session": 2})).await;
    conn.call_ok("logout", json!({"token": token})).await;
    let token = conn.login("netease1", "secret99").await;
    tokens.push(token.clone());
    conn.save(&token, json!({"session": 3})).await;
    assert_no_token_in_db(dir.path(), &tokens, "while the server runs");

    drop(conn);
    server.terminate();
    let status = server.wait_exit(Duration::from_secs(10)).await;
    assert_eq!(status.code(), Some(0));
    assert_no_token_in_db(dir.path(), &tokens, "after shutdown");
}

/// If this failed, a stolen or leftover token (from a closed connection or
/// after logout) could be used to take over a player's session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_dies_with_logout_and_with_its_connection() {
    let (_dir, server) = start_fresh(&[]);
    let mut first = server.connect().await;
    let token = first.login("netease1", "123").await;
    first.call_ok("logout", json!({"token": token})).await;
    assert_eq!(first.call_err("login", json!({"token": token})).await, TOKEN_INVALID, "token after logout");
    assert_eq!(first.call_err("userdata_load", json!({"token": token})).await, NOT_LOGGED_IN);

    let token = first.login("netease1", "123").await;
    first.call_ok("ping", json!({})).await;
    drop(first);
    let mut second = server.connect().await;
    // Scenario steps 8-11 (docs/cli.md): reconnect, old token refused, password works.
    assert_eq!(second.call_err("login", json!({"token": token})).await, TOKEN_INVALID, "token of a closed connection");
    assert_eq!(second.call_err("userdata_load", json!({"token": token})).await, NOT_LOGGED_IN);
    let fresh = second.login("netease1", "123").await;
    assert_ne!(fresh, token, "a new login issues a new token");
    let again = second.call_ok("login", json!({"token": fresh})).await;
    assert_eq!(token_of(&again), fresh, "a token login with the live token returns it");
}

/// If this failed, a logged-in player would be thrown out by the login
/// deadline, or a connection that logged out could stay forever without
/// logging in again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_deadline_spares_logged_in_connections_and_restarts_on_logout() {
    let (_dir, server) = start_fresh(&["--login-timeout", "300ms"]);
    let mut conn = server.connect().await;
    let token = conn.login("netease1", "123").await;
    // Well past the login deadline: still open and served.
    conn.expect_silence(Duration::from_millis(600)).await;
    conn.save(&token, json!({"still": "here"})).await;
    conn.call_ok("logout", json!({"token": token})).await;
    let logged_out = Instant::now();
    conn.expect_disconnected("login_timeout").await;
    let after = logged_out.elapsed();
    conn.expect_eof().await;
    assert!(after >= Duration::from_millis(280), "closed {after:?} after logout, before the fresh 300 ms deadline");
    assert!(after < Duration::from_secs(2), "closed {after:?} after logout, long after the fresh 300 ms deadline");
}
