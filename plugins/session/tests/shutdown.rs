//! System-level ECS tests of the graceful shutdown (docs/protocol.md §6, last
//! item "Shutdown"): unauthenticated connections are closed at once,
//! logged-in sessions are kicked with `server_shutdown` and may save, a
//! running kick keeps its reason and deadline, a waiting login gets
//! SERVER_BUSY, and once every connection is closed the app exits with
//! `AppExit::Success` with every acknowledged save in the store. Driven
//! frame by frame with a manual clock; every wait is bounded by the harness.
#![allow(clippy::unwrap_used)]

mod ecs_support;

use std::path::Path;
use std::time::Duration;

use bevy_app::AppExit;
use ecs_support::*;
use portcullis_runtime::RequestShutdown;
use portcullis_session::SessionConfig;
use portcullis_store::StoreConfig;
use portcullis_testkit::{TestConfig, TestServer, error_code};
use serde_json::json;

/// A server on a SQLite file, so a second server can read what the first stored.
fn server_on_file(path: &Path, session: SessionConfig) -> TestServer {
    let store = StoreConfig { hash_threads: 1, ..StoreConfig::new(path).fast_hashing().with_demo_accounts() };
    TestServer::with_config(TestConfig { session, store, ..TestConfig::default() })
}

fn shut_down(server: &mut TestServer) {
    server.app.world_mut().trigger(RequestShutdown);
}

/// Steps frames (clock still) until the app asked to exit; returns how it exits.
fn wait_exit(server: &mut TestServer) -> AppExit {
    let ok = server.step_until(|s| s.app.should_exit().is_some());
    assert!(ok, "the app did not exit");
    server.app.should_exit().unwrap()
}

/// Connections that are not logged in get `disconnected
/// {"reason":"server_shutdown"}` and are closed at once; then the app exits
/// with success. If this fails,
/// a stopping server leaves anonymous clients hanging, or never exits.
#[test]
fn shutdown_closes_unauthenticated_connections_at_once_and_exits() {
    let mut server = server_with(SessionConfig::default());
    let mut c = Peer::connect(&mut server);
    let mut d = Peer::connect(&mut server);
    let ping = d.request(&mut server, "ping", json!({}))["id"].as_u64().unwrap();

    shut_down(&mut server);
    server.update();
    assert_eq!(c.transcript(), vec![disconnected("server_shutdown")]);
    assert_eq!(d.transcript(), vec![ok(ping), disconnected("server_shutdown")]);
    assert!(c.closed() && d.closed());
    assert_eq!(wait_exit(&mut server), AppExit::Success);
}

/// A connection accepted in the same instant as the shutdown (here: opened
/// while a logged-in session still holds the server up) gets `disconnected
/// {"reason":"server_shutdown"}` and is closed at once; the server keeps
/// running until the kicked session is done. If this fails, a client
/// connecting to a stopping server hangs, or the server crashes.
#[test]
fn connection_opened_during_shutdown_is_told_server_shutdown() {
    let kick = Duration::from_secs(5);
    let mut server = server_with(kick_after(kick));
    let mut a = Peer::connect(&mut server);
    let token_a = a.login(&mut server, "netease1");
    a.forget();
    shut_down(&mut server);
    server.update();

    let mut late = Peer::connect(&mut server);
    server.update();
    assert_eq!(late.transcript(), vec![disconnected("server_shutdown")]);
    assert!(late.closed());
    assert_eq!(server.app.should_exit(), None);

    let save = a.send("userdata_save", json!({"token": token_a, "data": {"gold": 1}}));
    a.wait_closed(&mut server);
    assert_eq!(a.transcript(), vec![kicked("server_shutdown", kick), ok(save), disconnected("server_shutdown")]);
    assert_eq!(wait_exit(&mut server), AppExit::Success);
}

/// With no connection at all, a shutdown exits at once with success. If this
/// fails, an empty server does not stop on SIGTERM.
#[test]
fn shutdown_without_connections_exits_at_once() {
    let mut server = server_with(SessionConfig::default());
    server.update();
    assert_eq!(server.app.should_exit(), None);
    shut_down(&mut server);
    server.update();
    assert_eq!(server.app.should_exit(), Some(AppExit::Success));
}

/// Logged-in sessions are kicked with `server_shutdown` (once, even if the
/// shutdown is asked for twice), may save, get their save answered, then
/// `disconnected {"reason":"server_shutdown"}` and the close; the app exits
/// with success only after every connection closed, and a restarted server
/// on the same database returns those saves. If this fails, players lose the
/// progress saved while the server stopped, or the server exits before they
/// could save.
#[test]
fn shutdown_kicks_sessions_waits_for_their_saves_and_keeps_them() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("shutdown.db");
    let kick = Duration::from_secs(5);
    let mut server = server_on_file(&db, kick_after(kick));
    let mut a = Peer::connect(&mut server);
    let token_a = a.login(&mut server, "netease1");
    let mut e = Peer::connect(&mut server);
    let token_e = e.login(&mut server, "netease2");
    let mut c = Peer::connect(&mut server);
    a.forget();
    e.forget();

    shut_down(&mut server);
    server.update();
    shut_down(&mut server);
    server.step(3);
    assert_eq!(c.transcript(), vec![disconnected("server_shutdown")]);
    assert!(c.closed());
    assert_eq!(a.transcript(), vec![kicked("server_shutdown", kick)]);
    assert_eq!(e.transcript(), vec![kicked("server_shutdown", kick)]);
    assert_eq!(a.state(&server), "kicking");
    assert_eq!(server.app.should_exit(), None, "exited before the sessions saved");

    let save_a = a.send("userdata_save", json!({"token": token_a, "data": {"gold": 7}}));
    let saved_a = a.wait_response(&mut server, save_a);
    a.wait_closed(&mut server);
    assert_eq!(a.transcript(), vec![kicked("server_shutdown", kick), ok(save_a), disconnected("server_shutdown")]);
    server.step(3);
    assert_eq!(server.app.should_exit(), None, "exited while a session was still kicking");
    assert!(!e.closed());

    let save_e = e.send("userdata_save", json!({"token": token_e, "data": {"gold": 8}}));
    let saved_e = e.wait_response(&mut server, save_e);
    e.wait_closed(&mut server);
    assert_eq!(e.transcript(), vec![kicked("server_shutdown", kick), ok(save_e), disconnected("server_shutdown")]);
    assert_eq!(wait_exit(&mut server), AppExit::Success);
    assert_eq!(index(&server).sessions(), 0);
    drop(server);

    let mut restarted = server_on_file(&db, kick_after(kick));
    for (account, saved, data) in [("netease1", saved_a, json!({"gold": 7})), ("netease2", saved_e, json!({"gold": 8}))]
    {
        let mut p = Peer::connect(&mut restarted);
        let token = p.login(&mut restarted, account);
        let loaded = p.request(&mut restarted, "userdata_load", json!({"token": token}));
        assert_eq!(loaded["result"]["data"], data, "{loaded}");
        assert_eq!(loaded["result"]["version"], saved["result"]["version"]);
        assert_eq!(loaded["result"]["saved_at"], saved["result"]["saved_at"]);
    }
}

/// A session kicked by the shutdown that never saves is closed exactly at
/// the deadline with `disconnected {"reason":"server_shutdown"}`; then the
/// app exits with success. If this fails, one silent client keeps a stopping
/// server alive, or is cut off before the announced deadline.
#[test]
fn shutdown_closes_unsaved_sessions_at_the_deadline_then_exits() {
    let kick = Duration::from_secs(5);
    let mut server = server_with(kick_after(kick));
    let mut a = Peer::connect(&mut server);
    a.login(&mut server, "netease1");
    a.forget();

    shut_down(&mut server);
    server.advance(kick - MS);
    assert_eq!(a.transcript(), vec![kicked("server_shutdown", kick)]);
    assert!(!a.closed());
    assert_eq!(server.app.should_exit(), None);
    server.advance(MS);
    assert_eq!(a.transcript(), vec![kicked("server_shutdown", kick), disconnected("server_shutdown")]);
    assert!(a.closed());
    assert_eq!(wait_exit(&mut server), AppExit::Success);
}

/// A shutdown during a takeover: the session already being kicked keeps its
/// kick (`duplicate_login`, same deadline, no second `kicked`), and the login
/// waiting for it gets SERVER_BUSY, then `disconnected
/// {"reason":"server_shutdown"}` and the close. If this fails, the waiting
/// client is told it logged in on a server that is going away, or the old
/// client gets two kicks with different deadlines.
#[test]
fn shutdown_keeps_a_running_kick_and_refuses_the_waiting_login() {
    let kick = Duration::from_secs(10);
    let mut server = server_with(kick_after(kick));
    let mut a = Peer::connect(&mut server);
    a.login(&mut server, "netease1");
    a.forget();
    let mut b = Peer::connect(&mut server);
    let login_b = b.send("login", json!({"account": "netease1", "password": "123"}));
    a.wait(&mut server, |m| m["method"] == "kicked");

    server.advance(Duration::from_secs(4));
    shut_down(&mut server);
    server.update();
    assert_eq!(b.transcript(), vec![login_pending(), err(login_b, 1011), disconnected("server_shutdown")]);
    assert!(b.closed());
    assert_eq!(a.transcript(), vec![kicked("duplicate_login", kick)]);

    server.advance(Duration::from_secs(6) - MS);
    assert!(!a.closed());
    assert_eq!(a.state(&server), "kicking");
    server.advance(MS);
    assert_eq!(a.transcript(), vec![kicked("duplicate_login", kick), disconnected("duplicate_login")]);
    assert!(a.closed());
    assert_eq!(wait_exit(&mut server), AppExit::Success);
    assert_eq!(index(&server).sessions(), 0);
}

/// A client that connects and closes again before the server ran a frame
/// (over TCP: a port probe or health check) must not disturb the server. Same
/// root cause as the connection opened during a shutdown: the connection is
/// opened and closed within one frame. If this fails, the server crashes.
#[test]
fn connection_opened_and_closed_in_one_frame_does_not_crash_the_server() {
    let mut server = server_with(SessionConfig::default());
    let mut a = Peer::connect(&mut server);
    a.login(&mut server, "netease1");
    let mut probe = portcullis_net::TestClient::connect(&mut server.app);
    probe.disconnect();
    server.update();
    server.update();
    let ping = a.request(&mut server, "ping", json!({}));
    assert!(ping["result"]["server_time_ms"].is_u64(), "{ping}");
}

/// A session kicked by the shutdown may log out: `{}`, then `disconnected
/// {"reason":"server_shutdown"}`, then the close and the exit. If this fails,
/// a client that logs out when told the server stops is left hanging.
#[test]
fn shutdown_logout_while_kicked_ends_the_kick() {
    let kick = Duration::from_secs(5);
    let mut server = server_with(kick_after(kick));
    let mut a = Peer::connect(&mut server);
    let token_a = a.login(&mut server, "netease1");
    a.forget();

    shut_down(&mut server);
    let logout = a.send("logout", json!({"token": token_a}));
    a.wait_closed(&mut server);
    assert_eq!(a.transcript(), vec![kicked("server_shutdown", kick), ok(logout), disconnected("server_shutdown")]);
    assert_eq!(wait_exit(&mut server), AppExit::Success);
}

/// During a shutdown, a session being kicked may still save, and `login` on
/// it is SESSION_CLOSING (1006 wins over 1011); its save is answered and
/// ends its kick. If this fails, a client trying to log in again while the
/// server stops gets an error the protocol does not list for that order.
#[test]
fn shutdown_login_on_a_kicked_session_is_session_closing() {
    let kick = Duration::from_secs(5);
    let mut server = server_with(kick_after(kick));
    let mut a = Peer::connect(&mut server);
    let token_a = a.login(&mut server, "netease1");
    a.forget();

    shut_down(&mut server);
    let login = a.request(&mut server, "login", json!({"account": "netease1", "password": "123"}));
    assert_eq!(error_code(&login), Some(1006), "{login}");
    let login = login["id"].as_u64().unwrap();
    let save = a.send("userdata_save", json!({"token": token_a, "data": {"gold": 1}}));
    a.wait_closed(&mut server);
    assert_eq!(
        a.transcript(),
        vec![kicked("server_shutdown", kick), err(login, 1006), ok(save), disconnected("server_shutdown")]
    );
    assert_eq!(wait_exit(&mut server), AppExit::Success);
}
