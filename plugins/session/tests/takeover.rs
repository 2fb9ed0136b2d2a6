//! System-level ECS tests of the duplicate-login takeover (docs/protocol.md §6,
//! "Duplicate login, step by step", and its edge cases), driven frame by
//! frame with a manual clock: no sockets, no sleeps. Every wait is bounded
//! by the harness.
//!
//! Each connection's messages are recorded in arrival order, so the tests
//! check the exact order the protocol promises: the new client sees
//! `login_pending` then its login result; the old client sees `kicked`, its
//! save result, `disconnected`, then the close.
#![allow(clippy::unwrap_used)]
#![allow(clippy::needless_update)] // `..SessionConfig::default()` stays: fields added later keep their defaults

mod ecs_support;

use std::time::Duration;

use ecs_support::*;
use portcullis_session::SessionConfig;
use portcullis_testkit::{TestServer, error_code};
use serde_json::json;

fn account_id(server: &TestServer, peer: &Peer) -> i64 {
    server.session(&peer.client).and_then(|s| s.account()).map(|a| a.id).expect("logged in")
}

/// The whole duplicate login with a save, message by message on both
/// connections. If this fails, a player logging in on a second device either
/// loses the progress the first device saved when it was kicked, or one of the
/// two clients sees the takeover in an order the protocol does not allow
/// (e.g. a token before the old device is gone, or a close before its save
/// was confirmed).
#[test]
fn duplicate_login_hands_the_final_save_to_the_new_client() {
    let kick = Duration::from_secs(5);
    let mut server = server_with(kick_after(kick));
    let (mut a, token_a, mut b, login_b) = start_takeover(&mut server);
    let id = account_id(&server, &a);

    // Steps 2-3: B is told to wait, A is kicked; nobody is answered yet.
    server.step(5);
    assert_eq!(b.transcript(), vec![login_pending()]);
    assert_eq!(a.transcript(), vec![kicked("duplicate_login", kick)]);
    assert_eq!(b.state(&server), "waiting_takeover");
    assert_eq!(a.state(&server), "kicking");
    assert!(!a.closed() && !b.closed());

    // Step 4: A saves; the save is committed and answered.
    let save_a = a.send("userdata_save", json!({"token": token_a, "data": {"gold": 2}}));
    let saved = a.wait_response(&mut server, save_a);
    assert_eq!(saved["result"]["version"], 2, "{saved}");
    // Step 5: disconnected, close.
    a.wait_closed(&mut server);
    assert_eq!(a.transcript(), vec![kicked("duplicate_login", kick), ok(save_a), disconnected("duplicate_login")]);

    // Step 6: B gets a new token.
    let reply = b.wait_response(&mut server, login_b);
    let token_b = reply["result"]["token"].as_str().unwrap().to_owned();
    assert_eq!(reply["result"]["account"], "netease1");
    assert!(is_token(&token_b), "{token_b}");
    assert_ne!(token_b, token_a);
    assert_eq!(b.transcript(), vec![login_pending(), ok(login_b)]);
    assert_eq!(b.state(&server), "logged_in");

    // A's token is dead; the account's only session is B's.
    let b_entity = server.entity(&b.client);
    assert_eq!(index(&server).entity_of_token(&token_a), None);
    assert_eq!(index(&server).entity_of_token(&token_b), b_entity);
    assert_eq!(index(&server).entity_of_account(id), b_entity);
    assert_eq!(index(&server).sessions(), 1);
    let mut c = Peer::connect(&mut server);
    let stale = c.request(&mut server, "login", json!({"token": token_a}));
    assert_eq!(error_code(&stale), Some(1003), "{stale}");

    // B's first load sees A's final save, with the same version and time.
    let loaded = b.request(&mut server, "userdata_load", json!({"token": token_b}));
    assert_eq!(loaded["result"]["data"], json!({"gold": 2}), "{loaded}");
    assert_eq!(loaded["result"]["version"], 2);
    assert_eq!(loaded["result"]["saved_at"], saved["result"]["saved_at"]);
}

/// Account names are compared case-insensitively everywhere (docs/protocol.md §4),
/// so a login spelled differently still replaces the session. If this fails,
/// one account can be logged in twice at once by changing the case of its name.
#[test]
fn duplicate_login_with_other_spelling_replaces_the_session() {
    let kick = Duration::from_secs(5);
    let mut server = server_with(kick_after(kick));
    let mut a = Peer::connect(&mut server);
    let token_a = a.login(&mut server, "netease1");
    a.forget();
    let mut b = Peer::connect(&mut server);
    let login_b = b.send("login", json!({"account": "NetEase1", "password": "123"}));
    a.wait(&mut server, |m| m["method"] == "kicked");
    assert_eq!(b.transcript(), vec![login_pending()]);

    let save_a = a.send("userdata_save", json!({"token": token_a, "data": {"gold": 3}}));
    a.wait_closed(&mut server);
    assert_eq!(a.transcript(), vec![kicked("duplicate_login", kick), ok(save_a), disconnected("duplicate_login")]);
    let reply = b.wait_response(&mut server, login_b);
    assert_eq!(reply["result"]["account"], "netease1", "{reply}");
    assert_eq!(index(&server).sessions(), 1);
}

/// The old client never saves: it is closed exactly at the deadline, not a
/// millisecond before, and the new client then gets its token and the newest
/// earlier save. If this fails, a kicked player is cut off before the time
/// the server promised in `kicked`, or a new login hangs past the deadline.
#[test]
fn old_client_that_never_saves_is_closed_exactly_at_the_deadline() {
    let kick = Duration::from_millis(2_500);
    let mut server = server_with(kick_after(kick));
    let (mut a, _token_a, mut b, login_b) = start_takeover(&mut server);

    server.advance(kick - MS);
    assert_eq!(a.transcript(), vec![kicked("duplicate_login", kick)]);
    assert!(!a.closed(), "closed before the deadline");
    assert_eq!(a.state(&server), "kicking");
    assert_eq!(b.transcript(), vec![login_pending()]);
    assert_eq!(b.state(&server), "waiting_takeover");

    server.advance(MS);
    assert_eq!(a.transcript(), vec![kicked("duplicate_login", kick), disconnected("duplicate_login")]);
    assert!(a.closed(), "not closed at the deadline");
    assert!(b.response(login_b).is_some(), "the new login was not answered at the deadline");
    let reply = b.wait_response(&mut server, login_b);
    let token_b = reply["result"]["token"].as_str().unwrap().to_owned();
    assert_eq!(b.transcript(), vec![login_pending(), ok(login_b)]);

    let loaded = b.request(&mut server, "userdata_load", json!({"token": token_b}));
    assert_eq!(loaded["result"]["data"], json!({"gold": 1}), "{loaded}");
    assert_eq!(loaded["result"]["version"], 1);
}

/// The old client closes its socket while being kicked: the new login
/// completes at once (docs/protocol.md §6, "If A closes first"). If this fails, a
/// player whose old device dropped off waits the whole kick timeout to log in.
#[test]
fn old_client_closing_first_completes_the_new_login_at_once() {
    let kick = Duration::from_secs(60);
    let mut server = server_with(kick_after(kick));
    let (mut a, token_a, mut b, login_b) = start_takeover(&mut server);
    let id = account_id(&server, &a);

    a.client.disconnect();
    server.update();
    let reply = b.response(login_b).expect("the new login was not answered at once");
    let token_b = reply["result"]["token"].as_str().unwrap().to_owned();
    assert_ne!(token_b, token_a);
    assert_eq!(b.transcript(), vec![login_pending(), ok(login_b)]);
    assert_eq!(index(&server).entity_of_token(&token_a), None);
    assert_eq!(index(&server).entity_of_account(id), server.entity(&b.client));

    let loaded = b.request(&mut server, "userdata_load", json!({"token": token_b}));
    assert_eq!(loaded["result"]["data"], json!({"gold": 1}), "{loaded}");
}

/// The new client closes while it waits, then the old client saves: the old
/// client is still closed, and no session is left for the account. If this
/// fails, a kicked player stays connected after the device that kicked it
/// gave up, or the account stays locked by a session nobody holds.
#[test]
fn new_client_closing_while_waiting_still_closes_the_old_one_on_its_save() {
    let kick = Duration::from_secs(60);
    let mut server = server_with(kick_after(kick));
    let (mut a, token_a, mut b, _login_b) = start_takeover(&mut server);
    let id = account_id(&server, &a);

    b.client.disconnect();
    server.step(3);
    assert_eq!(a.state(&server), "kicking");
    assert!(!a.closed());

    let save_a = a.send("userdata_save", json!({"token": token_a, "data": {"gold": 2}}));
    a.wait_closed(&mut server);
    assert_eq!(a.transcript(), vec![kicked("duplicate_login", kick), ok(save_a), disconnected("duplicate_login")]);
    server.step(3);
    assert_eq!(index(&server).entity_of_account(id), None);
    assert_eq!(index(&server).entity_of_token(&token_a), None);
    assert_eq!(index(&server).sessions(), 0);

    // The account is free: a new login is not a takeover and sees the save.
    let mut d = Peer::connect(&mut server);
    let token_d = d.login(&mut server, "netease1");
    let loaded = d.request(&mut server, "userdata_load", json!({"token": token_d}));
    assert_eq!(loaded["result"]["data"], json!({"gold": 2}), "{loaded}");
    assert!(!d.transcript().contains(&login_pending()));
}

/// The new client closes while it waits and the old client never saves: the
/// old client is still closed at the deadline and no token is issued. If this
/// fails, the old session lingers forever once the newcomer left.
#[test]
fn new_client_closing_while_waiting_still_closes_the_old_one_at_the_deadline() {
    let kick = Duration::from_secs(5);
    let mut server = server_with(kick_after(kick));
    let (mut a, token_a, mut b, _login_b) = start_takeover(&mut server);
    let id = account_id(&server, &a);

    b.client.disconnect();
    server.advance(kick - MS);
    assert!(!a.closed());
    server.advance(MS);
    assert_eq!(a.transcript(), vec![kicked("duplicate_login", kick), disconnected("duplicate_login")]);
    assert!(a.closed());
    server.step(3);
    assert_eq!(index(&server).entity_of_account(id), None);
    assert_eq!(index(&server).entity_of_token(&token_a), None);
    assert_eq!(index(&server).sessions(), 0);
}

/// After the waiting client left, the next valid login for the account is a
/// takeover of its own: `login_pending`, then its token once the old session
/// (still kicking, with its first kick) is gone. If this fails, the account
/// is locked after a newcomer gave up, or the old session is kicked twice.
#[test]
fn login_after_the_waiting_client_left_takes_over_instead() {
    let kick = Duration::from_secs(60);
    let mut server = server_with(kick_after(kick));
    let (mut a, token_a, mut b, _login_b) = start_takeover(&mut server);
    b.client.disconnect();
    server.step(2);

    let mut c = Peer::connect(&mut server);
    let login_c = c.send("login", json!({"account": "netease1", "password": "123"}));
    c.wait(&mut server, |m| m["method"] == "login_pending");
    server.step(3);
    assert_eq!(c.transcript(), vec![login_pending()]);
    assert_eq!(a.transcript(), vec![kicked("duplicate_login", kick)]);

    let save_a = a.send("userdata_save", json!({"token": token_a, "data": {"gold": 2}}));
    a.wait_closed(&mut server);
    assert_eq!(a.transcript(), vec![kicked("duplicate_login", kick), ok(save_a), disconnected("duplicate_login")]);
    let reply = c.wait_response(&mut server, login_c);
    let token_c = reply["result"]["token"].as_str().unwrap().to_owned();
    let loaded = c.request(&mut server, "userdata_load", json!({"token": token_c}));
    assert_eq!(loaded["result"]["data"], json!({"gold": 2}), "{loaded}");
}

/// A third connection logging in to the account during the takeover gets
/// LOGIN_IN_PROGRESS with valid credentials and INVALID_CREDENTIALS with
/// wrong ones (credentials are checked first), and stays connected; the
/// takeover goes on for the first newcomer. If this fails, a third device
/// can steal the login from the second, or learns that a password is right
/// without knowing it.
#[test]
fn third_login_during_the_takeover_gets_login_in_progress() {
    let kick = Duration::from_secs(60);
    let mut server = server_with(kick_after(kick));
    let (mut a, token_a, mut b, login_b) = start_takeover(&mut server);

    let mut c = Peer::connect(&mut server);
    let good = c.send("login", json!({"account": "netease1", "password": "123"}));
    c.wait_response(&mut server, good);
    let bad = c.send("login", json!({"account": "netease1", "password": "wrong"}));
    c.wait_response(&mut server, bad);
    let token = c.send("login", json!({"token": token_a}));
    c.wait_response(&mut server, token);
    assert_eq!(c.transcript(), vec![err(good, 1008), err(bad, 1002), err(token, 1003)]);
    assert!(!c.closed());
    assert_eq!(c.state(&server), "awaiting_login");
    assert_eq!(a.transcript(), vec![kicked("duplicate_login", kick)], "the old session was kicked twice");
    assert_eq!(b.state(&server), "waiting_takeover");

    let save_a = a.send("userdata_save", json!({"token": token_a, "data": {"gold": 2}}));
    a.wait_closed(&mut server);
    assert_eq!(a.transcript(), vec![kicked("duplicate_login", kick), ok(save_a), disconnected("duplicate_login")]);
    b.wait_response(&mut server, login_b);
    assert_eq!(b.transcript(), vec![login_pending(), ok(login_b)]);
    assert_eq!(index(&server).entity_of_account(account_id(&server, &b)), server.entity(&b.client));
    assert_eq!(c.state(&server), "awaiting_login");
}

/// While B waits, another `login` on B gets LOGIN_IN_PROGRESS (whatever its
/// credentials or token), and B's other requests (`register`, `ping`, ...) are served as for a connection that
/// is not logged in; B's login is answered last, with the token. If this
/// fails, a waiting client cannot ping, or a second login confuses which
/// request receives the token.
#[test]
fn waiting_connection_is_served_as_not_logged_in() {
    let kick = Duration::from_secs(60);
    let mut server = server_with(kick_after(kick));
    let (mut a, token_a, mut b, login_b) = start_takeover(&mut server);

    let again = b.send("login", json!({"account": "netease1", "password": "123"}));
    b.wait_response(&mut server, again);
    let wrong = b.send("login", json!({"account": "netease1", "password": "wrong"}));
    b.wait_response(&mut server, wrong);
    let other = b.send("login", json!({"account": "netease2", "password": "123"}));
    b.wait_response(&mut server, other);
    let by_token = b.send("login", json!({"token": token_a}));
    b.wait_response(&mut server, by_token);
    let register = b.send("register", json!({"account": "waitingb1", "password": "secret1"}));
    let registered = b.wait_response(&mut server, register);
    assert_eq!(registered["result"], json!({"account": "waitingb1"}), "{registered}");
    let ping = b.send("ping", json!({}));
    let pong = b.wait_response(&mut server, ping);
    assert!(pong["result"]["server_time_ms"].as_u64().is_some_and(|t| t > 0), "{pong}");
    let load = b.send("userdata_load", json!({"token": token_a}));
    b.wait_response(&mut server, load);
    let logout = b.send("logout", json!({"token": token_a}));
    b.wait_response(&mut server, logout);
    assert_eq!(
        b.transcript(),
        vec![
            login_pending(),
            err(again, 1008),
            err(wrong, 1008),
            err(other, 1008),
            err(by_token, 1008),
            ok(register),
            ok(ping),
            err(load, 1001),
            err(logout, 1001),
        ]
    );
    assert_eq!(b.state(&server), "waiting_takeover");
    assert_eq!(a.transcript(), vec![kicked("duplicate_login", kick)]);

    let save_a = a.send("userdata_save", json!({"token": token_a, "data": {"gold": 2}}));
    a.wait_closed(&mut server);
    assert_eq!(a.transcript(), vec![kicked("duplicate_login", kick), ok(save_a), disconnected("duplicate_login")]);
    let reply = b.wait_response(&mut server, login_b);
    assert_eq!(reply["result"]["account"], "netease1", "{reply}");
    assert_eq!(b.transcript().last(), Some(&ok(login_b)));
}

/// B's login deadline and idle timer do not run while it waits (here far past
/// both, with a long kick timeout), and B's idle timer starts afresh when its
/// login is answered. If this fails, a player logging in while the old device
/// takes its time to save is thrown out with `login_timeout`/`idle_timeout`,
/// or is kicked for idleness right after finally logging in.
#[test]
fn waiting_login_has_no_deadline_and_idle_restarts_when_answered() {
    let kick = Duration::from_secs(120);
    let idle = Duration::from_secs(20);
    let config = SessionConfig {
        kick_save_timeout: kick,
        login_timeout: Duration::from_secs(10),
        idle_timeout: idle,
        ..SessionConfig::default()
    };
    let mut server = server_with(config);
    let (mut a, token_a, mut b, login_b) = start_takeover(&mut server);

    server.advance(Duration::from_secs(15)); // past login_timeout
    assert!(!b.closed(), "closed while waiting: {:?}", b.transcript());
    assert_eq!(b.state(&server), "waiting_takeover");
    server.advance(Duration::from_secs(45)); // 60 s: far past idle_timeout and login_timeout
    assert!(!b.closed(), "closed while waiting: {:?}", b.transcript());
    assert_eq!(b.state(&server), "waiting_takeover");
    assert_eq!(b.transcript(), vec![login_pending()]);

    // A saves at t = 60 s; B's login is answered then.
    let save_a = a.send("userdata_save", json!({"token": token_a, "data": {"gold": 2}}));
    a.wait_closed(&mut server);
    assert_eq!(a.transcript(), vec![kicked("duplicate_login", kick), ok(save_a), disconnected("duplicate_login")]);
    b.wait_response(&mut server, login_b);
    assert_eq!(b.state(&server), "logged_in");

    // B's idle timer counts from the answer (t = 60 s), not from its last frame (t = 0).
    server.advance(idle - MS);
    assert_eq!(b.transcript(), vec![login_pending(), ok(login_b)]);
    assert_eq!(b.state(&server), "logged_in");
    server.advance(MS);
    assert_eq!(b.transcript(), vec![login_pending(), ok(login_b), kicked("idle_timeout", kick)]);
}
