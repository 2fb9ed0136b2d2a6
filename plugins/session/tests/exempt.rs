//! A connection lifted out of the login deadline (`SessionCtx::lift_login_deadline`,
//! for backend services, docs/protocol.md §8), and the reasons `LoggedOut` carries.
#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bevy_ecs::prelude::*;
use bevy_ecs::system::RunSystemOnce;
use portcullis_session::{LoggedOut, LoginDeadline, SessionConfig, SessionCtx};
use portcullis_testkit::{TestConfig, TestServer};
use serde_json::json;

/// If this failed, a backend service would be closed with `login_timeout`
/// (or never closed when idle).
#[test]
fn lifted_login_deadline_keeps_the_idle_timer() {
    let config = TestConfig {
        session: SessionConfig {
            login_timeout: Duration::from_secs(2),
            idle_timeout: Duration::from_secs(10),
            ..SessionConfig::default()
        },
        ..TestConfig::default()
    };
    let mut server = TestServer::with_config(config);
    let mut conn = server.connect();
    let entity = server.entity(&conn).unwrap();
    let lifted = server.app.world_mut().run_system_once(move |mut ctx: SessionCtx| ctx.lift_login_deadline(entity));
    assert!(lifted.unwrap());
    server.update();
    assert!(server.world().get::<LoginDeadline>(entity).is_none());
    server.advance(Duration::from_secs(5));
    assert!(!conn.is_closed(), "no login deadline");
    server.advance(Duration::from_secs(6));
    let goodbye = server.messages_until_closed(&mut conn);
    assert_eq!(goodbye.last().unwrap()["params"]["reason"], "idle_timeout");
}

/// `LoggedOut` says why the session ended: `logout`, the close reason the
/// server gave, or `client_closed`.
#[test]
fn logged_out_carries_the_reason() {
    let mut server = TestServer::new();
    let reasons = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&reasons);
    server.app.add_observer(move |out: On<LoggedOut>| seen.lock().unwrap().push(out.reason.as_str()));
    let mut a = server.connect();
    let token = server.login(&mut a, "netease1", "123");
    server.request(&mut a, "logout", json!({"token": token}));
    server.login(&mut a, "netease1", "123");
    a.send_request("disconnect", json!({}));
    server.messages_until_closed(&mut a);
    let mut b = server.connect();
    server.login(&mut b, "netease2", "123");
    b.disconnect();
    server.step(3);
    assert_eq!(*reasons.lock().unwrap(), ["logout", "client_request", "client_closed"]);
}
