//! System-level ECS tests of the kick rules (docs/protocol.md §6: what a session
//! being kicked may still do), the kick API for game code (`Kick`), and the
//! idle timeout, driven frame by frame with a manual clock: no sockets, no
//! sleeps. Every wait is bounded by the harness.
//!
//! Each connection's messages are recorded in arrival order, so the tests
//! check the exact order of answers and notifications a client sees.
#![allow(clippy::unwrap_used)]
#![allow(clippy::needless_update)] // `..SessionConfig::default()` stays: fields added later keep their defaults

mod ecs_support;

use std::time::Duration;

use ecs_support::*;
use portcullis_rpc::DisconnectReason;
use portcullis_session::{Kick, SessionConfig};
use portcullis_testkit::{TestConfig, TestServer, error_code};
use portcullis_userdata::UserDataConfig;
use serde_json::{Value, json};

/// The data B loads once its login went through.
fn load_after_takeover(server: &mut TestServer, b: &mut Peer, login_b: u64) -> Value {
    let reply = b.wait_response(server, login_b);
    let token_b = reply["result"]["token"].as_str().unwrap_or_else(|| panic!("login failed: {reply}")).to_owned();
    b.request(server, "userdata_load", json!({"token": token_b}))
}

fn trigger_kick(server: &mut TestServer, peer: &Peer, reason: DisconnectReason) {
    let entity = server.entity(&peer.client).expect("connection entity");
    server.app.world_mut().trigger(Kick { entity, reason });
}

// ---------------------------------------------------------------------------
// What a kicked session may do (docs/protocol.md §6)
// ---------------------------------------------------------------------------

/// While kicking, every method other than `userdata_save`, `logout`, `ping`
/// and `disconnect` gets SESSION_CLOSING, an unknown method still gets
/// -32601, `ping` is answered, and none of this ends the kick; the save then
/// does. If this fails, a kicked client can keep playing (loading data,
/// changing its password, logging in again) instead of saving, or its
/// keep-alive fails while it saves.
#[test]
fn kicked_session_may_only_save_logout_ping_or_disconnect() {
    let kick = Duration::from_secs(60);
    let mut server = server_with(kick_after(kick));
    let (mut a, token_a, mut b, login_b) = start_takeover(&mut server);

    let load = a.request(&mut server, "userdata_load", json!({"token": token_a}))["id"].as_u64().unwrap();
    let change = a.request(
        &mut server,
        "change_password",
        json!({"token": token_a, "old_password": "123", "new_password": "newpass1"}),
    )["id"]
        .as_u64()
        .unwrap();
    let register = a.request(&mut server, "register", json!({"account": "newplayer1", "password": "secret1"}))["id"]
        .as_u64()
        .unwrap();
    let login =
        a.request(&mut server, "login", json!({"account": "netease1", "password": "123"}))["id"].as_u64().unwrap();
    let token_login = a.request(&mut server, "login", json!({"token": token_a}))["id"].as_u64().unwrap();
    let unknown = a.request(&mut server, "no_such_method", json!({}))["id"].as_u64().unwrap();
    let ping = a.request(&mut server, "ping", json!({}));
    assert!(ping["result"]["server_time_ms"].as_u64().is_some(), "{ping}");
    let ping = ping["id"].as_u64().unwrap();
    assert_eq!(
        a.transcript(),
        vec![
            kicked("duplicate_login", kick),
            err(load, 1006),
            err(change, 1006),
            err(register, 1006),
            err(login, 1006),
            err(token_login, 1006),
            err(unknown, -32601),
            ok(ping),
        ]
    );
    assert_eq!(a.state(&server), "kicking");
    assert!(!a.closed());
    assert_eq!(b.transcript(), vec![login_pending()]);

    let save = a.send("userdata_save", json!({"token": token_a, "data": {"gold": 2}}));
    a.wait_closed(&mut server);
    assert_eq!(a.transcript()[7..], [ok(ping), ok(save), disconnected("duplicate_login")]);
    // The refused change_password did not happen: the old password still works.
    let loaded = load_after_takeover(&mut server, &mut b, login_b);
    assert_eq!(loaded["result"]["data"], json!({"gold": 2}), "{loaded}");
    let mut c = Peer::connect(&mut server);
    let check = c.request(&mut server, "login", json!({"account": "netease1", "password": "newpass1"}));
    assert_eq!(error_code(&check), Some(1002), "{check}");
}

/// A save that fails (`data` not an object, or too large) is answered -32602
/// and does not end the kick: the client may save again before the deadline,
/// and that save is the one the new client loads. If this fails, a kicked
/// client with a bad first save attempt is thrown out and its progress lost.
#[test]
fn failed_save_while_kicking_does_not_end_the_kick() {
    let kick = Duration::from_secs(5);
    let mut server = TestServer::with_config(TestConfig {
        session: SessionConfig { kick_save_timeout: kick, ..SessionConfig::default() },
        userdata: UserDataConfig { max_userdata_bytes: 64, ..UserDataConfig::default() },
        ..TestConfig::default()
    });
    let (mut a, token_a, mut b, login_b) = start_takeover(&mut server);

    let not_object = a.request(&mut server, "userdata_save", json!({"token": token_a, "data": 5}));
    assert_eq!(not_object["error"]["data"], json!({"field": "data"}), "{not_object}");
    let big = "x".repeat(100);
    let too_big = a.request(&mut server, "userdata_save", json!({"token": token_a, "data": {"pad": big}}));
    assert_eq!(too_big["error"]["data"], json!({"field": "data"}), "{too_big}");
    let no_data = a.request(&mut server, "userdata_save", json!({"token": token_a}));
    let (not_object, too_big, no_data) =
        (not_object["id"].as_u64().unwrap(), too_big["id"].as_u64().unwrap(), no_data["id"].as_u64().unwrap());
    server.advance(kick - MS);
    assert_eq!(a.state(&server), "kicking");
    assert!(!a.closed());
    assert_eq!(b.transcript(), vec![login_pending()]);

    let save = a.send("userdata_save", json!({"token": token_a, "data": {"gold": 2}}));
    a.wait_closed(&mut server);
    assert_eq!(
        a.transcript(),
        vec![
            kicked("duplicate_login", kick),
            err(not_object, -32602),
            err(too_big, -32602),
            err(no_data, -32602),
            ok(save),
            disconnected("duplicate_login"),
        ]
    );
    let loaded = load_after_takeover(&mut server, &mut b, login_b);
    assert_eq!(loaded["result"]["data"], json!({"gold": 2}), "{loaded}");
    assert_eq!(loaded["result"]["version"], 2);
}

/// `logout` while kicking is answered `{}`, then `disconnected` with the
/// kick's reason, then the close; the new client's login goes on at once and
/// sees the earlier save. If this fails, a client that logs out when kicked
/// hangs or gets the wrong goodbye, and the newcomer keeps waiting.
#[test]
fn logout_while_kicking_ends_the_kick_with_its_reason() {
    let kick = Duration::from_secs(60);
    let mut server = server_with(kick_after(kick));
    let (mut a, token_a, mut b, login_b) = start_takeover(&mut server);

    let logout = a.send("logout", json!({"token": token_a}));
    a.wait_closed(&mut server);
    assert_eq!(a.transcript(), vec![kicked("duplicate_login", kick), ok(logout), disconnected("duplicate_login")]);
    let loaded = load_after_takeover(&mut server, &mut b, login_b);
    assert_eq!(loaded["result"]["data"], json!({"gold": 1}), "{loaded}");
    assert_eq!(b.transcript()[..2], [login_pending(), ok(login_b)]);
    assert_eq!(index(&server).entity_of_token(&token_a), None);
}

/// A `logout` that fails while kicking (wrong token: TOKEN_INVALID; no token:
/// -32602) does not end the kick; a save afterwards still does. If this
/// fails, anyone holding a stale token could end another player's kick
/// before that player saved.
#[test]
fn failed_logout_while_kicking_does_not_end_the_kick() {
    let kick = Duration::from_secs(60);
    let mut server = server_with(kick_after(kick));
    let (mut a, token_a, mut b, login_b) = start_takeover(&mut server);

    let wrong = a.send("logout", json!({"token": "0".repeat(64)}));
    a.wait_response(&mut server, wrong);
    let missing = a.send("logout", json!({}));
    a.wait_response(&mut server, missing);
    server.step(3);
    assert_eq!(a.state(&server), "kicking");
    assert!(!a.closed());
    assert_eq!(b.transcript(), vec![login_pending()]);

    let save = a.send("userdata_save", json!({"token": token_a, "data": {"gold": 2}}));
    a.wait_closed(&mut server);
    assert_eq!(
        a.transcript(),
        vec![
            kicked("duplicate_login", kick),
            err(wrong, 1003),
            err(missing, -32602),
            ok(save),
            disconnected("duplicate_login"),
        ]
    );
    let loaded = load_after_takeover(&mut server, &mut b, login_b);
    assert_eq!(loaded["result"]["data"], json!({"gold": 2}), "{loaded}");
}

/// `disconnect` while kicking is answered `{}`, then
/// `disconnected {"reason":"client_request"}`, then the close, without a
/// save; the new login then goes on. If this fails, a client that quits when
/// kicked gets the wrong goodbye, or the newcomer waits for the deadline.
#[test]
fn disconnect_while_kicking_closes_without_a_save() {
    let kick = Duration::from_secs(60);
    let mut server = server_with(kick_after(kick));
    let (mut a, _token_a, mut b, login_b) = start_takeover(&mut server);

    let bye = a.send("disconnect", json!({}));
    a.wait_closed(&mut server);
    assert_eq!(a.transcript(), vec![kicked("duplicate_login", kick), ok(bye), disconnected("client_request")]);
    let loaded = load_after_takeover(&mut server, &mut b, login_b);
    assert_eq!(loaded["result"]["data"], json!({"gold": 1}), "{loaded}");
    assert_eq!(loaded["result"]["version"], 1);
}

// ---------------------------------------------------------------------------
// Idle timeout (docs/protocol.md §6, "Timers and limits")
// ---------------------------------------------------------------------------

fn idle_config(idle_timeout: Duration, kick_save_timeout: Duration) -> SessionConfig {
    SessionConfig {
        idle_timeout,
        kick_save_timeout,
        login_timeout: Duration::from_secs(600),
        ..SessionConfig::default()
    }
}

/// A logged-in session with no frame for `idle_timeout` is kicked with
/// `idle_timeout` (not a millisecond early), and closed with
/// `disconnected {"reason":"idle_timeout"}` at the save deadline. If this
/// fails, idle players are cut off early, never, or without being asked to
/// save.
#[test]
fn idle_logged_in_session_is_kicked_then_closed_at_the_deadline() {
    let (idle, kick) = (Duration::from_secs(30), Duration::from_secs(5));
    let mut server = server_with(idle_config(idle, kick));
    let mut a = Peer::connect(&mut server);
    let token_a = a.login(&mut server, "netease1");
    a.forget();

    server.advance(idle - MS);
    assert_eq!(a.transcript(), Vec::<Value>::new());
    assert_eq!(a.state(&server), "logged_in");
    server.advance(MS);
    assert_eq!(a.transcript(), vec![kicked("idle_timeout", kick)]);
    assert_eq!(a.state(&server), "kicking");
    server.advance(kick - MS);
    assert!(!a.closed());
    server.advance(MS);
    assert_eq!(a.transcript(), vec![kicked("idle_timeout", kick), disconnected("idle_timeout")]);
    assert!(a.closed());
    server.step(2);
    assert_eq!(index(&server).sessions(), 0);
    assert_eq!(index(&server).entity_of_token(&token_a), None);
}

/// An idle-kicked session may save; the save is answered, then
/// `disconnected {"reason":"idle_timeout"}`, and the save is kept. If this
/// fails, a player who went idle loses the progress the kick asked it to save.
#[test]
fn idle_kicked_session_saves_then_closes() {
    let (idle, kick) = (Duration::from_secs(30), Duration::from_secs(5));
    let mut server = server_with(idle_config(idle, kick));
    let mut a = Peer::connect(&mut server);
    let token_a = a.login(&mut server, "netease1");
    a.forget();

    server.advance(idle);
    a.wait(&mut server, |m| m["method"] == "kicked");
    let save = a.send("userdata_save", json!({"token": token_a, "data": {"gold": 9}}));
    a.wait_closed(&mut server);
    assert_eq!(a.transcript(), vec![kicked("idle_timeout", kick), ok(save), disconnected("idle_timeout")]);

    let mut c = Peer::connect(&mut server);
    let token_c = c.login(&mut server, "netease1");
    let loaded = c.request(&mut server, "userdata_load", json!({"token": token_c}));
    assert_eq!(loaded["result"]["data"], json!({"gold": 9}), "{loaded}");
    assert!(!c.transcript().contains(&login_pending()));
}

/// An idle connection that is not logged in (login_timeout longer than
/// idle_timeout) is closed at `idle_timeout` with
/// `disconnected {"reason":"idle_timeout"}` and no `kicked`. If this fails,
/// idle anonymous connections hold server slots too long, or are sent a kick
/// they cannot answer.
#[test]
fn idle_unauthenticated_connection_is_closed_without_a_kick() {
    let idle = Duration::from_secs(20);
    let mut server = server_with(idle_config(idle, Duration::from_secs(5)));
    let mut c = Peer::connect(&mut server);

    server.advance(idle - MS);
    assert!(!c.closed());
    assert_eq!(c.transcript(), Vec::<Value>::new());
    server.advance(MS);
    assert_eq!(c.transcript(), vec![disconnected("idle_timeout")]);
    assert!(c.closed());
}

/// A blank line (empty, or only spaces/tabs/`\r`) is not answered but counts
/// as activity and restarts the idle timer, for a logged-in session and for a
/// connection that is not logged in. If this fails, clients that send empty
/// keep-alive lines are kicked as idle.
#[test]
fn blank_lines_restart_the_idle_timer() {
    let (idle, kick) = (Duration::from_secs(20), Duration::from_secs(5));
    let mut server = server_with(idle_config(idle, kick));
    let mut a = Peer::connect(&mut server);
    a.login(&mut server, "netease1");
    a.forget();
    let mut c = Peer::connect(&mut server);

    server.advance(Duration::from_secs(15));
    a.client.send_line("");
    c.client.send_line(" \t\r");
    server.update();
    server.advance(idle - MS); // 19.999 s after the blank lines, 34.999 s after login
    assert_eq!(a.transcript(), Vec::<Value>::new());
    assert_eq!(a.state(&server), "logged_in");
    assert_eq!(c.transcript(), Vec::<Value>::new());
    assert!(!c.closed());
    server.advance(MS);
    assert_eq!(a.transcript(), vec![kicked("idle_timeout", kick)]);
    assert_eq!(c.transcript(), vec![disconnected("idle_timeout")]);
    assert!(c.closed());
}

/// An invalid frame (bad JSON, not a request object) is answered with an
/// error and also counts as activity. If this fails, the idle timer disagrees
/// with docs/protocol.md §6 ("even an empty line or an invalid one").
#[test]
fn invalid_frames_restart_the_idle_timer() {
    let (idle, kick) = (Duration::from_secs(20), Duration::from_secs(5));
    let mut server = server_with(idle_config(idle, kick));
    let mut a = Peer::connect(&mut server);
    a.login(&mut server, "netease1");
    a.forget();

    server.advance(Duration::from_secs(10));
    a.client.send_line("{not json");
    server.update();
    server.advance(Duration::from_secs(10));
    a.client.send_line(r#"{"jsonrpc":"2.0","id":1.5,"method":"ping"}"#);
    server.update();
    server.advance(idle - MS);
    let parse = json!({"id": null, "error": -32700});
    let invalid = json!({"id": null, "error": -32600});
    assert_eq!(a.transcript(), vec![parse.clone(), invalid.clone()]);
    assert_eq!(a.state(&server), "logged_in");
    server.advance(MS);
    assert_eq!(a.transcript(), vec![parse, invalid, kicked("idle_timeout", kick)]);
}

/// Bytes of an unfinished frame (no newline yet) are not activity: the idle
/// kick comes `idle_timeout` after the last complete frame. If this fails, a
/// client can hold a session forever by trickling bytes without ever sending
/// a message.
#[test]
fn unfinished_frame_is_not_activity() {
    let (idle, kick) = (Duration::from_secs(20), Duration::from_secs(5));
    let mut server = server_with(idle_config(idle, kick));
    let mut a = Peer::connect(&mut server);
    a.login(&mut server, "netease1");
    a.forget();
    let mut c = Peer::connect(&mut server);

    server.advance(Duration::from_secs(15));
    a.client.raw.send_bytes(br#"{"jsonrpc":"2.0","id":7,"#);
    c.client.raw.send_bytes(br#"{"jsonrpc""#);
    server.update();
    server.advance(Duration::from_secs(5) - MS);
    assert_eq!(a.transcript(), Vec::<Value>::new());
    assert!(!c.closed());
    server.advance(MS);
    assert_eq!(a.transcript(), vec![kicked("idle_timeout", kick)]);
    assert_eq!(c.transcript(), vec![disconnected("idle_timeout")]);
    assert!(c.closed());
}

/// `ping` is the keep-alive: a session pinging more often than
/// `idle_timeout` is never kicked. If this fails, clients following
/// docs/protocol.md §6 lose their session while active.
#[test]
fn ping_keeps_a_session_alive() {
    let (idle, kick) = (Duration::from_secs(20), Duration::from_secs(5));
    let mut server = server_with(idle_config(idle, kick));
    let mut a = Peer::connect(&mut server);
    a.login(&mut server, "netease1");
    a.forget();
    for _ in 0..5 {
        server.advance(idle - MS);
        a.request(&mut server, "ping", json!({}));
    }
    server.advance(idle - MS);
    assert_eq!(a.state(&server), "logged_in");
    assert!(a.transcript().iter().all(|m| m["ok"] == true), "{:?}", a.seen);
}

// ---------------------------------------------------------------------------
// The kick API for game code (`portcullis_session::Kick`)
// ---------------------------------------------------------------------------

/// Game code triggering `Kick { reason: Admin }` on a logged-in session gets
/// the same kick flow as a duplicate login: `kicked {"reason":"admin"}`, the
/// save answered, `disconnected {"reason":"admin"}`, close, token dead, the
/// save kept. If this fails, an admin kick loses the kicked player's
/// progress or never closes the session.
#[test]
fn kick_api_kicks_a_logged_in_session_with_admin() {
    let kick = Duration::from_secs(5);
    let mut server = server_with(kick_after(kick));
    let mut a = Peer::connect(&mut server);
    let token_a = a.login(&mut server, "netease1");
    a.forget();

    trigger_kick(&mut server, &a, DisconnectReason::Admin);
    server.update();
    assert_eq!(a.transcript(), vec![kicked("admin", kick)]);
    assert_eq!(a.state(&server), "kicking");
    let save = a.send("userdata_save", json!({"token": token_a, "data": {"gold": 4}}));
    a.wait_closed(&mut server);
    assert_eq!(a.transcript(), vec![kicked("admin", kick), ok(save), disconnected("admin")]);
    server.step(2);
    assert_eq!(index(&server).sessions(), 0);
    assert_eq!(index(&server).entity_of_token(&token_a), None);

    let mut c = Peer::connect(&mut server);
    let token_c = c.login(&mut server, "netease1");
    let loaded = c.request(&mut server, "userdata_load", json!({"token": token_c}));
    assert_eq!(loaded["result"]["data"], json!({"gold": 4}), "{loaded}");
}

/// An admin-kicked session that does not save is closed with
/// `disconnected {"reason":"admin"}` exactly at the deadline. If this fails,
/// an admin kick lets a player stay past the announced deadline.
#[test]
fn kick_api_closes_an_unsaved_session_at_the_deadline() {
    let kick = Duration::from_secs(5);
    let mut server = server_with(kick_after(kick));
    let mut a = Peer::connect(&mut server);
    a.login(&mut server, "netease1");
    a.forget();

    trigger_kick(&mut server, &a, DisconnectReason::Admin);
    server.advance(kick - MS);
    assert_eq!(a.transcript(), vec![kicked("admin", kick)]);
    assert!(!a.closed());
    server.advance(MS);
    assert_eq!(a.transcript(), vec![kicked("admin", kick), disconnected("admin")]);
    assert!(a.closed());
}

/// `Kick` on a connection that is not logged in sends
/// `disconnected {"reason":"admin"}` and closes at once, without `kicked`.
/// If this fails, game code cannot remove an anonymous connection, or sends
/// it a kick it cannot answer.
#[test]
fn kick_api_closes_an_unauthenticated_connection_at_once() {
    let mut server = server_with(kick_after(Duration::from_secs(5)));
    let mut c = Peer::connect(&mut server);

    trigger_kick(&mut server, &c, DisconnectReason::Admin);
    server.update();
    assert_eq!(c.transcript(), vec![disconnected("admin")]);
    assert!(c.closed());
    server.update();
    assert_eq!(server.entity(&c.client), None);
}

/// `Kick` on a session that is already being kicked keeps the first kick: no
/// second `kicked`, same reason, same deadline. If this fails, a session can
/// be kept alive by kicking it again, or gets two contradicting kicks.
#[test]
fn kick_api_keeps_a_running_kick() {
    let kick = Duration::from_secs(5);
    let mut server = server_with(kick_after(kick));
    let (mut a, _token_a, mut b, login_b) = start_takeover(&mut server);

    server.advance(Duration::from_secs(3));
    trigger_kick(&mut server, &a, DisconnectReason::Admin);
    server.advance(Duration::from_secs(2) - MS);
    assert_eq!(a.transcript(), vec![kicked("duplicate_login", kick)]);
    assert!(!a.closed());
    server.advance(MS);
    assert_eq!(a.transcript(), vec![kicked("duplicate_login", kick), disconnected("duplicate_login")]);
    assert!(a.closed());
    let loaded = load_after_takeover(&mut server, &mut b, login_b);
    assert_eq!(loaded["result"]["data"], json!({"gold": 1}), "{loaded}");
}

/// `Kick` on an entity whose connection is already gone (game code holding a
/// stale entity) does nothing and does not disturb the server. If this
/// fails, an admin tool kicking a player who just left crashes the server.
#[test]
fn kick_api_on_a_closed_connection_is_harmless() {
    let mut server = server_with(kick_after(Duration::from_secs(5)));
    let mut a = Peer::connect(&mut server);
    a.login(&mut server, "netease1");
    let gone = server.entity(&a.client).unwrap();
    a.client.disconnect();
    server.step(2);
    assert_eq!(server.entity(&a.client), None);

    server.app.world_mut().trigger(Kick { entity: gone, reason: DisconnectReason::Admin });
    server.step(2);
    let mut c = Peer::connect(&mut server);
    let token = c.login(&mut server, "netease1");
    assert!(is_token(&token));
    assert!(!c.transcript().contains(&login_pending()));
}
