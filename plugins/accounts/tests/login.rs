//! System-level ECS tests of accounts and sessions (issue 3, docs/protocol.md §3,
//! §4, §6): `login` (password and token), tokens, `logout`, `register`,
//! `change_password`, the auth rules of **auth** methods, login throttling,
//! `LOGIN_IN_PROGRESS`, and the login deadline on a manual clock.
//!
//! Every test drives a [`TestServer`] frame by frame through the in-memory
//! transport on an in-memory SQLite store with the demo accounts: no socket,
//! no sleep, and every wait is bounded by the harness.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::Duration;

use portcullis_session::SessionConfig;
use portcullis_session::SessionIndex;
use portcullis_testkit::{JsonClient, TestConfig, TestServer, error_code};
use serde_json::{Value, json};

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// `disconnected {"reason": reason}` as a parsed message.
fn disconnected(reason: &str) -> Value {
    json!({"jsonrpc": "2.0", "method": "disconnected", "params": {"reason": reason}})
}

/// A server whose login deadline and idle timer are out of the way.
fn patient_server() -> TestServer {
    TestServer::with_config(TestConfig {
        session: SessionConfig {
            login_timeout: Duration::from_secs(3600),
            idle_timeout: Duration::from_secs(3600),
            ..SessionConfig::default()
        },
        ..TestConfig::default()
    })
}

/// A server whose login deadline is `timeout` (idle timer out of the way).
fn server_with_login_timeout(timeout: Duration) -> TestServer {
    TestServer::with_config(TestConfig {
        session: SessionConfig {
            login_timeout: timeout,
            idle_timeout: Duration::from_secs(3600),
            ..SessionConfig::default()
        },
        ..TestConfig::default()
    })
}

/// Asserts that `reply` is an error with `code`.
#[track_caller]
fn assert_error(reply: &Value, code: i64) {
    assert_eq!(error_code(reply), Some(code), "expected error {code}, got {reply}");
    assert!(reply.get("result").is_none(), "an error must not carry a result: {reply}");
}

/// Asserts a `-32602` naming `field` in `data.field`.
#[track_caller]
fn assert_invalid_params(reply: &Value, field: &str) {
    assert_eq!(error_code(reply), Some(-32602), "expected -32602 for field {field}, got {reply}");
    assert_eq!(reply["error"]["data"], json!({ "field": field }), "{reply}");
}

/// Asserts an empty-object result (`{}`).
#[track_caller]
fn assert_empty_result(reply: &Value) {
    assert_eq!(reply.get("result"), Some(&json!({})), "expected result {{}}, got {reply}");
}

/// Asserts a login result for `account` and returns its token.
#[track_caller]
fn assert_login_result(reply: &Value, account: &str) -> String {
    let result = reply["result"].as_object().unwrap_or_else(|| panic!("login failed: {reply}"));
    assert_eq!(result.len(), 2, "a login result is exactly {{account, token}}: {reply}");
    assert_eq!(result["account"], account, "{reply}");
    let token = result["token"].as_str().unwrap_or_else(|| panic!("no token: {reply}")).to_owned();
    assert!(is_token(&token), "not 64 lowercase hex characters: {token:?}");
    token
}

/// Whether `s` has the token format of docs/protocol.md §4.
fn is_token(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Logs in with a password and returns the whole response.
fn login(server: &mut TestServer, client: &mut JsonClient, account: &str, password: &str) -> Value {
    server.request(client, "login", json!({ "account": account, "password": password }))
}

/// The state name of `client`'s session.
fn state(server: &TestServer, client: &JsonClient) -> Option<&'static str> {
    server.session(client).map(|s| s.state_name())
}

/// Asserts that the connection is open and nothing was sent to it, after one
/// more frame.
#[track_caller]
fn assert_open_and_silent(server: &mut TestServer, client: &mut JsonClient) {
    server.update();
    let got = client.take_all();
    assert!(got.is_empty(), "unexpected messages: {got:?}");
    assert!(!client.is_closed(), "the connection was closed");
    assert!(server.entity(client).is_some(), "the connection entity is gone");
}

/// Asserts that `client` is told `disconnected {login_timeout}`, closed, and
/// its entity despawned after the next frames.
#[track_caller]
fn assert_login_timeout_close(server: &mut TestServer, client: &mut JsonClient) {
    let got = server.messages_until_closed(client);
    assert_eq!(got, vec![disconnected("login_timeout")]);
    server.step(2);
    assert!(server.entity(client).is_none(), "the connection entity still exists after the close");
}

// ---------------------------------------------------------------------------
// Login deadline (§6)
// ---------------------------------------------------------------------------

/// With the default `login_timeout` of 10 s, a connection that never logs in
/// is still open at 9.999 s and gets `disconnected {login_timeout}` and the
/// close exactly at 10 s — a client must have its full 10 s, and no more.
#[test]
fn login_deadline_fires_exactly_at_default_10s_and_not_1ms_before() {
    let mut server = TestServer::with_config(TestConfig {
        session: SessionConfig { idle_timeout: Duration::from_secs(3600), ..SessionConfig::default() },
        ..TestConfig::default()
    });
    let mut client = server.connect();
    server.advance(Duration::from_millis(9_999));
    assert_open_and_silent(&mut server, &mut client);
    assert_eq!(state(&server, &client), Some("awaiting_login"));
    server.advance(Duration::from_millis(1));
    assert_login_timeout_close(&mut server, &mut client);
}

/// A configured `login_timeout` (2.5 s here) is honoured to the millisecond,
/// also when time moves in many small steps.
#[test]
fn login_deadline_honours_the_configured_timeout() {
    let mut server = server_with_login_timeout(Duration::from_millis(2_500));
    let mut client = server.connect();
    for _ in 0..24 {
        server.advance(Duration::from_millis(100));
    }
    server.advance(Duration::from_millis(99)); // 2.499 s
    assert_open_and_silent(&mut server, &mut client);
    server.advance(Duration::from_millis(1)); // 2.5 s
    assert_login_timeout_close(&mut server, &mut client);
}

/// The deadline counts from the connect, not from the last request: pings and
/// failed logins do not buy a client more time to log in.
#[test]
fn login_deadline_is_not_postponed_by_activity_or_failed_logins() {
    let mut server = server_with_login_timeout(Duration::from_secs(10));
    let mut client = server.connect();
    server.advance(Duration::from_secs(9));
    let reply = server.request(&mut client, "ping", json!({}));
    assert!(reply["result"]["server_time_ms"].is_u64(), "{reply}");
    let reply = login(&mut server, &mut client, "netease1", "wrong");
    assert_error(&reply, 1002);
    server.advance(Duration::from_millis(999));
    assert_open_and_silent(&mut server, &mut client);
    server.advance(Duration::from_millis(1));
    assert_login_timeout_close(&mut server, &mut client);
}

/// Each connection has its own deadline, counted from its own connect: one
/// opened at 5 s is closed at 15 s, not with the one opened at 0 s.
#[test]
fn login_deadline_counts_from_each_connections_own_connect() {
    let mut server = server_with_login_timeout(Duration::from_secs(10));
    let mut first = server.connect();
    server.advance(Duration::from_secs(5));
    let mut second = server.connect();
    server.advance(Duration::from_secs(5)); // 10 s
    assert_login_timeout_close(&mut server, &mut first);
    assert_open_and_silent(&mut server, &mut second);
    server.advance(Duration::from_millis(4_999)); // 14.999 s
    assert_open_and_silent(&mut server, &mut second);
    server.advance(Duration::from_millis(1)); // 15 s
    assert_login_timeout_close(&mut server, &mut second);
}

/// A logged-in connection is never closed by the login deadline, however
/// long it stays.
#[test]
fn login_deadline_never_closes_a_logged_in_connection() {
    let mut server = server_with_login_timeout(Duration::from_secs(2));
    let mut client = server.connect();
    let token = server.login(&mut client, "netease1", "123");
    for _ in 0..100 {
        server.advance(Duration::from_secs(1));
    }
    assert_open_and_silent(&mut server, &mut client);
    assert_eq!(state(&server, &client), Some("logged_in"));
    let reply = server.request(&mut client, "userdata_load", json!({ "token": token }));
    assert_error(&reply, 1004);
}

/// A login that completes 1 ms before the deadline keeps the connection: the
/// deadline does not fire afterwards.
#[test]
fn login_just_before_the_deadline_keeps_the_connection() {
    let mut server = server_with_login_timeout(Duration::from_secs(10));
    let mut client = server.connect();
    server.advance(Duration::from_millis(9_999));
    server.login(&mut client, "netease1", "123");
    server.advance(Duration::from_millis(1));
    server.advance(Duration::from_secs(30));
    assert_open_and_silent(&mut server, &mut client);
    assert_eq!(state(&server, &client), Some("logged_in"));
}

/// `logout` gives the connection a fresh login deadline counted from the
/// logout (not from the connect): logged out at 7 s with a 10 s timeout, it is
/// open at 16.999 s and closed with `login_timeout` at 17 s.
#[test]
fn logout_restarts_the_login_deadline() {
    let mut server = server_with_login_timeout(Duration::from_secs(10));
    let mut client = server.connect();
    let token = server.login(&mut client, "netease1", "123");
    server.advance(Duration::from_secs(7));
    let reply = server.request(&mut client, "logout", json!({ "token": token }));
    assert_empty_result(&reply);
    assert_eq!(state(&server, &client), Some("awaiting_login"));
    server.advance(Duration::from_millis(9_999)); // 16.999 s
    assert_open_and_silent(&mut server, &mut client);
    server.advance(Duration::from_millis(1)); // 17 s
    assert_login_timeout_close(&mut server, &mut client);
}

/// After logout and a new login the deadline is off again.
#[test]
fn login_after_logout_cancels_the_restarted_deadline() {
    let mut server = server_with_login_timeout(Duration::from_secs(10));
    let mut client = server.connect();
    let token = server.login(&mut client, "netease1", "123");
    let reply = server.request(&mut client, "logout", json!({ "token": token }));
    assert_empty_result(&reply);
    server.advance(Duration::from_secs(5));
    server.login(&mut client, "netease2", "123");
    server.advance(Duration::from_secs(5));
    server.advance(Duration::from_secs(60));
    assert_open_and_silent(&mut server, &mut client);
    assert_eq!(state(&server, &client), Some("logged_in"));
}

// ---------------------------------------------------------------------------
// Password login (§4)
// ---------------------------------------------------------------------------

/// A password login answers exactly `{"account", "token"}` with the account
/// as spelled at registration (whatever case the client typed) and a token of
/// 64 lowercase hex characters; each login on a new connection gets a new
/// token.
#[test]
fn password_login_returns_registration_spelling_and_a_64_hex_token() {
    let mut server = TestServer::new();
    let mut a = server.connect();
    let token_a = assert_login_result(&login(&mut server, &mut a, "NETEASE1", "123"), "netease1");
    assert_eq!(state(&server, &a), Some("logged_in"));
    assert_eq!(server.session(&a).unwrap().account().unwrap().name, "netease1");
    let mut b = server.connect();
    let token_b = assert_login_result(&login(&mut server, &mut b, "NetEase2", "123"), "netease2");
    assert_ne!(token_a, token_b);
}

/// An unknown account and a wrong password must be indistinguishable (same
/// code, message and data), so an attacker cannot probe account names; and
/// neither logs the connection in.
#[test]
fn unknown_account_and_wrong_password_get_the_same_invalid_credentials() {
    let mut server = TestServer::new();
    let mut client = server.connect();
    let wrong_password = login(&mut server, &mut client, "netease1", "1234");
    let unknown_account = login(&mut server, &mut client, "nobody99", "123");
    assert_error(&wrong_password, 1002);
    assert_error(&unknown_account, 1002);
    assert_eq!(wrong_password["error"], unknown_account["error"]);
    let empty_password = login(&mut server, &mut client, "netease1", "");
    assert_error(&empty_password, 1002);
    assert_eq!(state(&server, &client), Some("awaiting_login"));
}

/// `login` params: a missing, `null` or non-string `account`/`password` is
/// `-32602` naming that field; `params` of the wrong type names `params`;
/// `"token": null` counts as missing, so the password login goes ahead.
#[test]
fn login_params_of_the_wrong_type_name_the_field() {
    let mut server = TestServer::new();
    let mut client = server.connect();
    let cases = [
        (json!({"password": "123"}), "account"),
        (json!({"account": null, "password": "123"}), "account"),
        (json!({"account": 5, "password": "123"}), "account"),
        (json!({"account": ["netease1"], "password": "123"}), "account"),
        (json!({"account": "netease1"}), "password"),
        (json!({"account": "netease1", "password": null}), "password"),
        (json!({"account": "netease1", "password": 123}), "password"),
        (json!({"token": 5}), "token"),
        (json!({"token": {"t": 1}}), "token"),
        (json!([]), "params"),
        (json!(["netease1", "123"]), "params"),
        (json!("netease1"), "params"),
    ];
    for (params, field) in cases {
        let reply = server.request(&mut client, "login", params.clone());
        assert_invalid_params(&reply, field);
    }
    let reply = server.request(&mut client, "login", json!({}));
    assert_eq!(error_code(&reply), Some(-32602), "{reply}");
    let reply = server.request(&mut client, "login", json!(null));
    assert_eq!(error_code(&reply), Some(-32602), "{reply}");
    assert_eq!(state(&server, &client), Some("awaiting_login"));
    let reply = server.request(
        &mut client,
        "login",
        json!({"token": null, "account": "netease1", "password": "123", "extra": [1]}),
    );
    assert_login_result(&reply, "netease1");
}

// ---------------------------------------------------------------------------
// Tokens (§4)
// ---------------------------------------------------------------------------

/// A token login with this connection's live token returns that same token
/// and account (a client that logs in "with the token when it has one" keeps
/// working), and changes nothing.
#[test]
fn token_login_with_own_token_returns_it() {
    let mut server = TestServer::new();
    let mut client = server.connect();
    let token = server.login(&mut client, "NetEase1", "123");
    let reply = server.request(&mut client, "login", json!({ "token": token }));
    assert_eq!(assert_login_result(&reply, "netease1"), token);
    assert_eq!(state(&server, &client), Some("logged_in"));
    assert_eq!(server.world().resource::<SessionIndex>().entity_of_token(&token), server.entity(&client));
}

/// When `token` is present, `login` is a token login and `account`/`password`
/// are ignored (§4): with its own token a client gets its own session back
/// even if it also sends another account's name or junk; with a token that is
/// not live, a correct password does not rescue it.
#[test]
fn token_login_ignores_account_and_password() {
    let mut server = TestServer::new();
    let mut a = server.connect();
    let token = server.login(&mut a, "netease1", "123");
    let reply = server.request(&mut a, "login", json!({"token": token, "account": "netease2", "password": "bad"}));
    assert_eq!(assert_login_result(&reply, "netease1"), token);

    let mut b = server.connect();
    let reply =
        server.request(&mut b, "login", json!({"token": "f".repeat(64), "account": "netease2", "password": "123"}));
    assert_error(&reply, 1003);
    assert_eq!(state(&server, &b), Some("awaiting_login"));

    // "Other fields are ignored" includes their types.
    let reply = server.request(&mut a, "login", json!({"token": token, "account": 5, "password": false}));
    assert_eq!(assert_login_result(&reply, "netease1"), token, "{reply}");
}

/// A token is bound to its connection: another connection's live token is
/// `TOKEN_INVALID` for a token login (logged in or not) and for auth methods
/// of a logged-in connection; on a connection that is not logged in, auth
/// methods are `NOT_LOGGED_IN` whatever the token.
#[test]
fn token_from_another_connection_is_token_invalid() {
    let mut server = TestServer::new();
    let mut a = server.connect();
    let token_a = server.login(&mut a, "netease1", "123");
    let mut b = server.connect();
    let token_b = server.login(&mut b, "netease2", "123");
    let mut c = server.connect();

    // Token login with A's token, from a logged-in B and a fresh C.
    assert_error(&server.request(&mut b, "login", json!({ "token": token_a })), 1003);
    assert_error(&server.request(&mut c, "login", json!({ "token": token_a })), 1003);
    assert_eq!(state(&server, &c), Some("awaiting_login"));
    assert_eq!(server.session(&b).unwrap().account().unwrap().name, "netease2");

    // Auth methods on B with A's token.
    assert_error(&server.request(&mut b, "userdata_load", json!({ "token": token_a })), 1003);
    assert_error(&server.request(&mut b, "userdata_save", json!({"token": token_a, "data": {}})), 1003);
    assert_error(
        &server.request(
            &mut b,
            "change_password",
            json!({"token": token_a, "old_password": "123", "new_password": "abcdef"}),
        ),
        1003,
    );
    assert_error(&server.request(&mut b, "logout", json!({ "token": token_a })), 1003);
    assert_eq!(state(&server, &b), Some("logged_in"), "a refused logout logged B out");
    // On C (not logged in): NOT_LOGGED_IN.
    assert_error(&server.request(&mut c, "userdata_load", json!({ "token": token_a })), 1001);
    assert_error(&server.request(&mut c, "logout", json!({ "token": token_a })), 1001);

    // Nothing was disturbed: A and B still work with their own tokens.
    assert_error(&server.request(&mut a, "userdata_load", json!({ "token": token_a })), 1004);
    assert_error(&server.request(&mut b, "userdata_load", json!({ "token": token_b })), 1004);
    // A's password was not changed by B's attempt.
    let mut d = server.connect();
    assert_error(&login(&mut server, &mut d, "netease1", "abcdef"), 1002);
}

/// `logout` kills the token: afterwards it is `TOKEN_INVALID` for a token
/// login, a new password login gets a different token, and the old token is
/// `TOKEN_INVALID` for auth methods of the new session.
#[test]
fn token_dies_on_logout() {
    let mut server = TestServer::new();
    let mut client = server.connect();
    let old = server.login(&mut client, "netease1", "123");
    assert_empty_result(&server.request(&mut client, "logout", json!({ "token": old })));
    assert!(server.world().resource::<SessionIndex>().entity_of_token(&old).is_none());
    assert_error(&server.request(&mut client, "login", json!({ "token": old })), 1003);
    let new = server.login(&mut client, "netease1", "123");
    assert_ne!(new, old);
    assert_error(&server.request(&mut client, "userdata_load", json!({ "token": old })), 1003);
    assert_error(&server.request(&mut client, "login", json!({ "token": old })), 1003);
    assert_error(&server.request(&mut client, "userdata_load", json!({ "token": new })), 1004);
}

/// A token dies with its connection: a token login with the token of a
/// connection that closed is `TOKEN_INVALID`.
#[test]
fn token_dies_when_its_connection_closes() {
    let mut server = TestServer::new();
    let mut a = server.connect();
    let token = server.login(&mut a, "netease1", "123");
    a.disconnect();
    server.step(2);
    assert!(server.entity(&a).is_none());
    assert!(server.world().resource::<SessionIndex>().entity_of_token(&token).is_none());
    let mut b = server.connect();
    assert_error(&server.request(&mut b, "login", json!({ "token": token })), 1003);
    assert_eq!(state(&server, &b), Some("awaiting_login"));
}

// ---------------------------------------------------------------------------
// Re-login and ALREADY_LOGGED_IN (§4)
// ---------------------------------------------------------------------------

/// A password login as the account the connection already holds (in any
/// case) checks the password and returns the current token, keeping the
/// session — a client re-sending its login does not lose its token.
#[test]
fn password_relogin_as_same_account_returns_the_current_token() {
    let mut server = TestServer::new();
    let mut client = server.connect();
    let token = server.login(&mut client, "netease1", "123");
    let reply = login(&mut server, &mut client, "netease1", "123");
    assert_eq!(assert_login_result(&reply, "netease1"), token);
    let reply = login(&mut server, &mut client, "NETEASE1", "123");
    assert_eq!(assert_login_result(&reply, "netease1"), token);
    assert_error(&server.request(&mut client, "userdata_load", json!({ "token": token })), 1004);
    assert_eq!(server.world().resource::<SessionIndex>().sessions(), 1);
}

/// A password re-login as the same account with a wrong password is
/// `INVALID_CREDENTIALS` and leaves the session exactly as it was: still
/// logged in, same account, same live token.
#[test]
fn wrong_password_relogin_leaves_the_session_as_it_was() {
    let mut server = TestServer::new();
    let mut client = server.connect();
    let token = server.login(&mut client, "netease1", "123");
    assert_error(&login(&mut server, &mut client, "netease1", "nope"), 1002);
    assert_error(&login(&mut server, &mut client, "NetEase1", "nope"), 1002);
    assert_eq!(state(&server, &client), Some("logged_in"));
    assert_eq!(server.session(&client).unwrap().account().unwrap().name, "netease1");
    assert_eq!(server.world().resource::<SessionIndex>().entity_of_token(&token), server.entity(&client));
    assert_error(&server.request(&mut client, "userdata_load", json!({ "token": token })), 1004);
    let reply = server.request(&mut client, "login", json!({ "token": token }));
    assert_eq!(assert_login_result(&reply, "netease1"), token);
}

/// A password login as another account on a logged-in connection is
/// `ALREADY_LOGGED_IN` without checking the password: right or wrong password,
/// unknown account — and those attempts do not count as failed logins for
/// the throttle (more than `login_fail_limit` of them leave the address
/// unthrottled).
#[test]
fn login_as_another_account_is_already_logged_in_without_password_check() {
    let mut server = TestServer::new();
    let mut client = server.connect();
    let token = server.login(&mut client, "netease1", "123");
    assert_error(&login(&mut server, &mut client, "netease2", "123"), 1005);
    for _ in 0..7 {
        assert_error(&login(&mut server, &mut client, "netease2", "wrong"), 1005);
    }
    assert_error(&login(&mut server, &mut client, "nobody99", "wrong"), 1005);
    assert_eq!(server.session(&client).unwrap().account().unwrap().name, "netease1");
    assert_error(&server.request(&mut client, "userdata_load", json!({ "token": token })), 1004);
    // Same address, another connection: not throttled.
    let mut other = server.connect();
    assert_login_result(&login(&mut server, &mut other, "netease2", "123"), "netease2");
}

// ---------------------------------------------------------------------------
// Login throttling (§6) and LOGIN_IN_PROGRESS (§6)
// ---------------------------------------------------------------------------

/// After `login_fail_limit` (5) failed password logins from one address,
/// further password logins from that address — right password or not, any
/// connection, IPv4-mapped IPv6 included — get `RATE_LIMITED` until the
/// oldest failure leaves `login_fail_window` (5 min); other addresses and
/// token logins are unaffected.
#[test]
fn failed_password_logins_throttle_the_address() {
    let mut server = patient_server();
    let home: SocketAddr = "127.0.0.1:40001".parse().unwrap();
    let mut keeper = server.connect_from(home);
    let keeper_token = server.login(&mut keeper, "netease2", "123");
    let mut attacker = server.connect_from(home);
    for _ in 0..5 {
        assert_error(&login(&mut server, &mut attacker, "netease1", "guess"), 1002);
    }
    assert_error(&login(&mut server, &mut attacker, "netease1", "123"), 1007);
    assert_error(&login(&mut server, &mut attacker, "netease1", "guess"), 1007);
    let mut same_ip = server.connect_from("127.0.0.1:40002".parse().unwrap());
    assert_error(&login(&mut server, &mut same_ip, "netease3", "123"), 1007);
    let mut mapped = server.connect_from("[::ffff:127.0.0.1]:40003".parse().unwrap());
    assert_error(&login(&mut server, &mut mapped, "netease3", "123"), 1007);
    // Token logins are not throttled.
    let reply = server.request(&mut keeper, "login", json!({ "token": keeper_token }));
    assert_eq!(assert_login_result(&reply, "netease2"), keeper_token);
    // Another address is not affected.
    let mut elsewhere = server.connect_from("10.0.0.2:40000".parse().unwrap());
    assert_login_result(&login(&mut server, &mut elsewhere, "netease3", "123"), "netease3");
    // 1 ms before the oldest failure leaves the window: still throttled.
    server.advance(Duration::from_millis(299_999));
    assert_error(&login(&mut server, &mut attacker, "netease1", "123"), 1007);
    server.advance(Duration::from_millis(1));
    assert_login_result(&login(&mut server, &mut attacker, "netease1", "123"), "netease1");
}

/// While a login waits for the account's old session to be kicked (duplicate
/// login): a third connection with the right password gets
/// `LOGIN_IN_PROGRESS` (with a wrong one `INVALID_CREDENTIALS`: credentials
/// first); another `login` on the waiting connection gets `LOGIN_IN_PROGRESS`
/// before its params are even looked at; once the old session saved and was
/// closed, the waiting login gets its token and sees that save.
#[test]
fn login_in_progress_while_a_takeover_waits() {
    let mut server = TestServer::new();
    let mut a = server.connect();
    let token_a = server.login(&mut a, "netease1", "123");
    let mut b = server.connect();
    let b_login = b.send_request("login", json!({"account": "NETEASE1", "password": "123"}));
    let pending = server.wait_message(&mut b, |m| m["method"] == "login_pending");
    assert_eq!(pending["params"], json!({"reason": "replacing_session"}));
    let kicked = server.wait_message(&mut a, |m| m["method"] == "kicked");
    assert_eq!(kicked["params"], json!({"reason": "duplicate_login", "save_deadline_ms": 5000}));

    let mut c = server.connect();
    assert_error(&login(&mut server, &mut c, "netease1", "123"), 1008);
    assert_error(&login(&mut server, &mut c, "netease1", "wrong"), 1002);
    assert_error(&server.request(&mut b, "login", json!({"account": "netease1", "password": "123"})), 1008);
    assert_error(&server.request(&mut b, "login", json!({"account": 5})), 1008);
    assert_error(&server.request(&mut b, "login", json!({ "token": token_a })), 1008);

    let save = server.request(&mut a, "userdata_save", json!({"token": token_a, "data": {"gold": 7}}));
    assert_eq!(save["result"]["version"], 1, "{save}");
    let rest = server.messages_until_closed(&mut a);
    assert_eq!(rest, vec![disconnected("duplicate_login")]);

    let reply = server.wait_response(&mut b, b_login);
    let token_b = assert_login_result(&reply, "netease1");
    assert_ne!(token_b, token_a);
    let load = server.request(&mut b, "userdata_load", json!({ "token": token_b }));
    assert_eq!(load["result"]["data"], json!({"gold": 7}), "{load}");
    assert_eq!(load["result"]["version"], 1);
}

// ---------------------------------------------------------------------------
// logout and the auth rules (§4)
// ---------------------------------------------------------------------------

/// `logout` answers `{}`, ends the session (the account is free, the token is
/// dead) and keeps the connection open in *awaiting login*.
#[test]
fn logout_answers_empty_and_returns_to_awaiting_login() {
    let mut server = TestServer::new();
    let mut client = server.connect();
    let token = server.login(&mut client, "netease1", "123");
    let reply = server.request(&mut client, "logout", json!({ "token": token }));
    assert_eq!(reply, json!({"jsonrpc": "2.0", "id": reply["id"], "result": {}}));
    assert_eq!(state(&server, &client), Some("awaiting_login"));
    assert!(!client.is_closed());
    assert_eq!(server.world().resource::<SessionIndex>().sessions(), 0);
    assert_error(&server.request(&mut client, "userdata_load", json!({ "token": token })), 1001);
    assert_error(&server.request(&mut client, "logout", json!({ "token": token })), 1001);
    // The account can be logged into from another connection without a takeover.
    let mut other = server.connect();
    assert_login_result(&login(&mut server, &mut other, "netease1", "123"), "netease1");
    assert!(other.take_all().is_empty());
}

/// The auth rules, in order (§3, §4), checked on `logout`: not logged in is
/// `NOT_LOGGED_IN` whatever the token or params; logged in, a missing, `null`
/// or non-string token is `-32602` naming `token` (an array `params` names
/// `params`); a string that is not the live token is `TOKEN_INVALID` and the
/// session stays.
#[test]
fn auth_rules_on_logout() {
    let mut server = TestServer::new();
    let mut client = server.connect();
    for params in [json!({}), json!(null), json!({"token": "x"}), json!({"token": 5}), json!([1])] {
        assert_error(&server.request(&mut client, "logout", params), 1001);
    }
    let token = server.login(&mut client, "netease1", "123");
    assert_invalid_params(&server.request(&mut client, "logout", json!({})), "token");
    assert_invalid_params(&server.request(&mut client, "logout", json!(null)), "token");
    assert_invalid_params(&server.request(&mut client, "logout", json!({"token": null})), "token");
    assert_invalid_params(&server.request(&mut client, "logout", json!({"token": 5})), "token");
    assert_invalid_params(&server.request(&mut client, "logout", json!({"token": [token]})), "token");
    assert_invalid_params(&server.request(&mut client, "logout", json!([token])), "params");
    assert_error(&server.request(&mut client, "logout", json!({"token": ""})), 1003);
    assert_error(&server.request(&mut client, "logout", json!({"token": token.to_uppercase()})), 1003);
    assert_error(&server.request(&mut client, "logout", json!({"token": "0".repeat(64)})), 1003);
    assert_eq!(state(&server, &client), Some("logged_in"));
    assert_empty_result(&server.request(&mut client, "logout", json!({"token": token, "extra": 1})));
}

/// Requests on one connection apply in arrival order: a `logout` without
/// token sent right behind a `login` (without waiting for its answer) is
/// judged on a logged-in connection (`-32602 token`, not `NOT_LOGGED_IN`).
#[test]
fn login_and_following_request_apply_in_arrival_order() {
    let mut server = TestServer::new();
    let mut client = server.connect();
    let login_id = client.send_request("login", json!({"account": "netease1", "password": "123"}));
    let logout_id = client.send_request("logout", json!({}));
    let reply = server.wait_response(&mut client, login_id);
    assert_login_result(&reply, "netease1");
    let reply = server.wait_response(&mut client, logout_id);
    assert_invalid_params(&reply, "token");
}

// ---------------------------------------------------------------------------
// register (§4)
// ---------------------------------------------------------------------------

/// `register` creates the account and answers `{"account": NAME}` without
/// logging in; the new account can then log in in any case and is returned
/// with its registration spelling.
#[test]
fn register_creates_an_account_without_logging_in() {
    let mut server = TestServer::new();
    let mut client = server.connect();
    let reply = server.request(&mut client, "register", json!({"account": "NewPlayer01", "password": "s3cret"}));
    assert_eq!(reply.get("result"), Some(&json!({"account": "NewPlayer01"})), "{reply}");
    assert_eq!(state(&server, &client), Some("awaiting_login"));
    assert_error(&server.request(&mut client, "userdata_load", json!({"token": "x"})), 1001);
    assert_error(&login(&mut server, &mut client, "newplayer01", "S3CRET"), 1002);
    let token = assert_login_result(&login(&mut server, &mut client, "newplayer01", "s3cret"), "NewPlayer01");
    assert_empty_result(&server.request(&mut client, "logout", json!({ "token": token })));
    let mut other = server.connect();
    assert_login_result(&login(&mut server, &mut other, "NEWPLAYER01", "s3cret"), "NewPlayer01");
}

/// Account names must match `^[0-9A-Za-z]{6,16}$` and passwords be 6 to 64
/// Unicode characters; anything else is `INVALID_ACCOUNT` and creates nothing.
#[test]
fn register_rules_give_invalid_account() {
    let mut server = TestServer::new();
    let mut client = server.connect();
    let long_pw = "p".repeat(65);
    let bad = [
        ("abcde", "password"),
        ("abcdefghijklmnopq", "password"),
        ("abc_def", "password"),
        ("abc def", "password"),
        ("abcdéf", "password"),
        ("１２３４５６", "password"),
        ("abcdef!", "password"),
        ("", "password"),
        ("goodname1", "12345"),
        ("goodname1", "ééééé"),
        ("goodname1", ""),
        ("goodname1", long_pw.as_str()),
    ];
    for (account, password) in bad {
        let reply = server.request(&mut client, "register", json!({"account": account, "password": password}));
        assert_error(&reply, 1010);
    }
    assert_error(&login(&mut server, &mut client, "goodname1", "12345"), 1002);
    let ok = [
        ("abcdef", "123456".to_owned()),
        ("A1b2C3d4E5f6G7h8", "p".repeat(64)),
        ("unicodepw1", "éééééé".to_owned()),
        ("emojipw1", "😀😀😀😀😀😀".to_owned()),
        ("longunicode1", "é".repeat(64)),
    ];
    for (account, password) in ok {
        let reply = server.request(&mut client, "register", json!({"account": account, "password": password}));
        assert_eq!(reply.get("result"), Some(&json!({ "account": account })), "{account}: {reply}");
        let mut other = server.connect();
        assert_login_result(&login(&mut server, &mut other, account, &password), account);
    }
}

/// Account names are unique ignoring ASCII case: registering `NETEASE1` or a
/// new name in another case is `ACCOUNT_EXISTS`, and the original account's
/// password is unchanged.
#[test]
fn register_taken_name_in_any_case_is_account_exists() {
    let mut server = TestServer::new();
    let mut client = server.connect();
    assert_error(
        &server.request(&mut client, "register", json!({"account": "NETEASE1", "password": "another1"})),
        1009,
    );
    assert_error(
        &server.request(&mut client, "register", json!({"account": "netease1", "password": "another1"})),
        1009,
    );
    let reply = server.request(&mut client, "register", json!({"account": "CamelCase7", "password": "first1"}));
    assert_eq!(reply["result"]["account"], "CamelCase7", "{reply}");
    assert_error(
        &server.request(&mut client, "register", json!({"account": "camelcase7", "password": "second2"})),
        1009,
    );
    assert_login_result(&login(&mut server, &mut client, "CAMELCASE7", "first1"), "CamelCase7");
    let mut other = server.connect();
    assert_login_result(&login(&mut server, &mut other, "netease1", "123"), "netease1");
}

/// `register`'s order (§3, §4): params types, then `ALREADY_LOGGED_IN` on a
/// logged-in connection, then the rules (`INVALID_ACCOUNT`), then uniqueness
/// (`ACCOUNT_EXISTS`).
#[test]
fn register_error_order() {
    let mut server = TestServer::new();
    let mut client = server.connect();
    assert_invalid_params(&server.request(&mut client, "register", json!({"password": "abcdef"})), "account");
    assert_invalid_params(
        &server.request(&mut client, "register", json!({"account": 5, "password": "abcdef"})),
        "account",
    );
    assert_invalid_params(&server.request(&mut client, "register", json!({"account": "abcdefg"})), "password");
    assert_invalid_params(
        &server.request(&mut client, "register", json!({"account": "abcdefg", "password": null})),
        "password",
    );
    assert_invalid_params(&server.request(&mut client, "register", json!(["abcdefg", "abcdef"])), "params");
    // A taken name with a bad password: the rules come before uniqueness.
    assert_error(&server.request(&mut client, "register", json!({"account": "netease1", "password": "123"})), 1010);

    server.login(&mut client, "netease1", "123");
    assert_invalid_params(&server.request(&mut client, "register", json!({"account": "abcdefg"})), "password");
    assert_error(&server.request(&mut client, "register", json!({"account": "x", "password": "y"})), 1005);
    assert_error(&server.request(&mut client, "register", json!({"account": "netease2", "password": "abcdef"})), 1005);
    assert_error(&server.request(&mut client, "register", json!({"account": "brandnew1", "password": "abcdef"})), 1005);
    let mut other = server.connect();
    assert_error(&login(&mut server, &mut other, "brandnew1", "abcdef"), 1002);
}

// ---------------------------------------------------------------------------
// change_password (§4)
// ---------------------------------------------------------------------------

/// `change_password` answers `{}`, keeps the session and its token, and from
/// then on only the new password logs in.
#[test]
fn change_password_keeps_the_session_and_swaps_the_password() {
    let mut server = TestServer::new();
    let mut client = server.connect();
    let token = server.login(&mut client, "netease1", "123");
    let reply = server.request(
        &mut client,
        "change_password",
        json!({"token": token, "old_password": "123", "new_password": "brand-new-pw"}),
    );
    assert_empty_result(&reply);
    assert_eq!(state(&server, &client), Some("logged_in"));
    assert_error(&server.request(&mut client, "userdata_load", json!({ "token": token })), 1004);
    let reply = server.request(&mut client, "login", json!({ "token": token }));
    assert_eq!(assert_login_result(&reply, "netease1"), token);

    assert_empty_result(&server.request(&mut client, "logout", json!({ "token": token })));
    let mut other = server.connect();
    assert_error(&login(&mut server, &mut other, "netease1", "123"), 1002);
    assert_login_result(&login(&mut server, &mut other, "netease1", "brand-new-pw"), "netease1");
}

/// A wrong old password is `INVALID_CREDENTIALS` and changes nothing: the old
/// password still logs in, the new one does not.
#[test]
fn change_password_with_wrong_old_password_is_invalid_credentials() {
    let mut server = TestServer::new();
    let mut client = server.connect();
    let token = server.login(&mut client, "netease1", "123");
    let reply = server.request(
        &mut client,
        "change_password",
        json!({"token": token, "old_password": "1234", "new_password": "abcdef"}),
    );
    assert_error(&reply, 1002);
    assert_eq!(state(&server, &client), Some("logged_in"));
    assert_empty_result(&server.request(&mut client, "logout", json!({ "token": token })));
    assert_error(&login(&mut server, &mut client, "netease1", "abcdef"), 1002);
    assert_login_result(&login(&mut server, &mut client, "netease1", "123"), "netease1");
}

/// The new password follows the `register` rule (6 to 64 Unicode characters)
/// and is checked before the old password: a bad new password is
/// `INVALID_ACCOUNT` even when the old one is wrong too.
#[test]
fn change_password_new_password_rule_comes_first() {
    let mut server = TestServer::new();
    let mut client = server.connect();
    let token = server.login(&mut client, "netease1", "123");
    let too_long = "a".repeat(65);
    for (old, new) in [("123", "12345"), ("123", "ééééé"), ("123", ""), ("123", too_long.as_str()), ("wrong", "1")]
    {
        let reply = server.request(
            &mut client,
            "change_password",
            json!({"token": token, "old_password": old, "new_password": new}),
        );
        assert_error(&reply, 1010);
    }
    // 6 two-byte characters are 6 characters: accepted.
    let reply = server.request(
        &mut client,
        "change_password",
        json!({"token": token, "old_password": "123", "new_password": "éééééé"}),
    );
    assert_empty_result(&reply);
    let sixty_four = "é".repeat(64);
    let reply = server.request(
        &mut client,
        "change_password",
        json!({"token": token, "old_password": "éééééé", "new_password": sixty_four}),
    );
    assert_empty_result(&reply);
    assert_empty_result(&server.request(&mut client, "logout", json!({ "token": token })));
    assert_login_result(&login(&mut server, &mut client, "netease1", &"é".repeat(64)), "netease1");
}

/// A hijacked session cannot brute-force its account's password through
/// `change_password`: each wrong `old_password` counts against the peer's
/// address like a failed password login, so after `login_fail_limit` (5)
/// of them `change_password` (and password logins from that address) get
/// `RATE_LIMITED`, even with the right old password, until the window
/// passes (docs/protocol.md §4).
#[test]
fn wrong_old_passwords_throttle_change_password() {
    let mut server = patient_server();
    let home: SocketAddr = "127.0.0.1:40001".parse().unwrap();
    let mut client = server.connect_from(home);
    let token = server.login(&mut client, "netease1", "123");
    let change = |old: &str| json!({"token": token, "old_password": old, "new_password": "abcdef"});
    for _ in 0..5 {
        assert_error(&server.request(&mut client, "change_password", change("guess")), 1002);
    }
    assert_error(&server.request(&mut client, "change_password", change("123")), 1007);
    let mut other = server.connect_from("127.0.0.1:40002".parse().unwrap());
    assert_error(&login(&mut server, &mut other, "netease2", "123"), 1007);
    assert_eq!(state(&server, &client), Some("logged_in"));
    server.advance(Duration::from_secs(300));
    assert_empty_result(&server.request(&mut client, "change_password", change("123")));
}

/// `change_password` is an auth method: `NOT_LOGGED_IN`, then `-32602 token`,
/// then `TOKEN_INVALID`, then its params types (`-32602` naming
/// `old_password` / `new_password`).
#[test]
fn change_password_auth_and_params() {
    let mut server = TestServer::new();
    let mut client = server.connect();
    let full = json!({"old_password": "123", "new_password": "abcdef"});
    assert_error(&server.request(&mut client, "change_password", full.clone()), 1001);
    let token = server.login(&mut client, "netease1", "123");
    assert_invalid_params(&server.request(&mut client, "change_password", full), "token");
    assert_error(
        &server.request(&mut client, "change_password", json!({"token": "abc", "old_password": 1, "new_password": 2})),
        1003,
    );
    assert_invalid_params(
        &server.request(&mut client, "change_password", json!({"token": token, "new_password": "abcdef"})),
        "old_password",
    );
    assert_invalid_params(
        &server.request(&mut client, "change_password", json!({"token": token, "old_password": "123"})),
        "new_password",
    );
    assert_invalid_params(
        &server.request(
            &mut client,
            "change_password",
            json!({"token": token, "old_password": "123", "new_password": 123_456}),
        ),
        "new_password",
    );
    assert_invalid_params(
        &server.request(
            &mut client,
            "change_password",
            json!({"token": token, "old_password": null, "new_password": "abcdef"}),
        ),
        "old_password",
    );
    // Nothing changed.
    assert_empty_result(&server.request(&mut client, "logout", json!({ "token": token })));
    assert_login_result(&login(&mut server, &mut client, "netease1", "123"), "netease1");
}

// ---------------------------------------------------------------------------
// Arrival order of account requests (§2)
// ---------------------------------------------------------------------------

/// Two password logins for two accounts sent back to back: the first logs
/// in, the second is judged on the logged-in connection (`ALREADY_LOGGED_IN`).
#[test]
fn back_to_back_logins_as_two_accounts_second_is_already_logged_in() {
    let mut server = TestServer::new();
    let mut client = server.connect();
    let first = client.send_request("login", json!({"account": "netease1", "password": "123"}));
    let second = client.send_request("login", json!({"account": "netease2", "password": "123"}));
    assert_login_result(&server.wait_response(&mut client, first), "netease1");
    assert_error(&server.wait_response(&mut client, second), 1005);
    assert_eq!(server.session(&client).unwrap().account().unwrap().name, "netease1");
}

/// A `login` sent right behind the `register` of that account (without
/// waiting) sees the new account.
#[test]
fn register_then_login_back_to_back_sees_the_new_account() {
    let mut server = TestServer::new();
    let mut client = server.connect();
    let register = client.send_request("register", json!({"account": "Speedy123", "password": "fast-pw"}));
    let login = client.send_request("login", json!({"account": "speedy123", "password": "fast-pw"}));
    assert_eq!(server.wait_response(&mut client, register)["result"], json!({"account": "Speedy123"}));
    assert_login_result(&server.wait_response(&mut client, login), "Speedy123");
}

/// A re-login sent right behind a `change_password` (without waiting) is
/// checked against the new password and returns the current token.
#[test]
fn change_password_then_relogin_back_to_back_uses_the_new_password() {
    let mut server = TestServer::new();
    let mut client = server.connect();
    let token = server.login(&mut client, "netease1", "123");
    let change = client
        .send_request("change_password", json!({"token": token, "old_password": "123", "new_password": "changed-pw"}));
    let old = client.send_request("login", json!({"account": "netease1", "password": "123"}));
    let new = client.send_request("login", json!({"account": "netease1", "password": "changed-pw"}));
    assert_empty_result(&server.wait_response(&mut client, change));
    assert_error(&server.wait_response(&mut client, old), 1002);
    assert_eq!(assert_login_result(&server.wait_response(&mut client, new), "netease1"), token);
}

/// Two connections registering the same name (in different cases) in the
/// same frame: exactly one gets the account, the other `ACCOUNT_EXISTS` (not
/// an internal error), and the winner's password is the one that works.
#[test]
fn concurrent_registrations_of_one_name_one_wins_the_other_is_account_exists() {
    let mut server = TestServer::new();
    let mut a = server.connect();
    let mut b = server.connect();
    let ra = a.send_request("register", json!({"account": "RaceName1", "password": "pw-of-a"}));
    let rb = b.send_request("register", json!({"account": "racename1", "password": "pw-of-b"}));
    let reply_a = server.wait_response(&mut a, ra);
    let reply_b = server.wait_response(&mut b, rb);
    let (winner, password, loser) = if reply_a.get("result").is_some() {
        ("RaceName1", "pw-of-a", &reply_b)
    } else {
        ("racename1", "pw-of-b", &reply_a)
    };
    assert_error(loser, 1009);
    let winner_reply = if reply_a.get("result").is_some() { &reply_a } else { &reply_b };
    assert_eq!(winner_reply["result"], json!({ "account": winner }));
    let mut c = server.connect();
    assert_login_result(&login(&mut server, &mut c, "RACENAME1", password), winner);
}

/// The throttle window slides: with failures at 0, 10, 20, 30 and 40 s, logins
/// are refused until 300 s (when the 0 s failure leaves the window); refused
/// (`RATE_LIMITED`) attempts do not count as failures; a new failure at 300 s
/// blocks again until the 10 s failure leaves at 310 s.
#[test]
fn login_throttle_window_slides_with_the_oldest_failure() {
    let mut server = patient_server();
    let mut client = server.connect();
    for _ in 0..5 {
        assert_error(&login(&mut server, &mut client, "netease1", "guess"), 1002);
        server.advance(Duration::from_secs(10));
    }
    // now = 50 s
    for _ in 0..3 {
        assert_error(&login(&mut server, &mut client, "netease1", "guess"), 1007);
    }
    server.advance(Duration::from_millis(249_999)); // 299.999 s
    assert_error(&login(&mut server, &mut client, "netease1", "123"), 1007);
    server.advance(Duration::from_millis(1)); // 300 s
    assert_error(&login(&mut server, &mut client, "netease1", "guess"), 1002);
    assert_error(&login(&mut server, &mut client, "netease1", "123"), 1007);
    server.advance(Duration::from_millis(9_999)); // 309.999 s
    assert_error(&login(&mut server, &mut client, "netease1", "123"), 1007);
    server.advance(Duration::from_millis(1)); // 310 s
    assert_login_result(&login(&mut server, &mut client, "netease1", "123"), "netease1");
}
