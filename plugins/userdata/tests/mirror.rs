//! Server-side user data (`UserData`, `WriteUserData`): what game code sees
//! and how it coexists with client saves.
#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};

use bevy_ecs::prelude::*;
use portcullis_testkit::{TestConfig, TestServer};
use portcullis_userdata::{UserData, UserDataConfig, UserDataWriteFailed, WriteFailure, WriteUserData};
use serde_json::{Map, Value, json};

fn server() -> TestServer {
    TestServer::with_config(TestConfig {
        userdata: UserDataConfig { mirror_userdata: true, ..Default::default() },
        ..Default::default()
    })
}

fn object(v: Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap()
}

fn mirror(server: &TestServer, entity: Entity) -> Option<UserData> {
    server.world().get::<UserData>(entity).cloned()
}

/// A game reading a player's data at login would see nothing, or stale data.
#[test]
fn userdata_is_loaded_at_login_and_follows_client_saves() {
    let mut server = server();
    let mut client = server.connect();
    let token = server.login(&mut client, "netease1", "123");
    let entity = server.entity(&client).unwrap();
    assert!(server.step_until(|s| mirror(s, entity).is_some_and(|m| m.loaded)));
    assert_eq!(mirror(&server, entity).unwrap().data, None);

    let saved = server.request(&mut client, "userdata_save", json!({"token": token, "data": {"gold": 5}}));
    assert_eq!(saved["result"]["version"], 1);
    let m = mirror(&server, entity).unwrap();
    assert_eq!((m.version, m.data), (1, Some(object(json!({"gold": 5})))));
    assert_eq!(m.saved_at.as_deref(), saved["result"]["saved_at"].as_str());
}

/// Server-side changes must reach the store, the client and the mirror; a
/// stale write must be refused instead of overwriting newer data.
#[test]
fn server_writes_are_saved_announced_and_checked_against_the_version() {
    let mut server = server();
    let failures = Arc::new(Mutex::new(Vec::new()));
    let seen = failures.clone();
    server.app.add_observer(move |failed: On<UserDataWriteFailed>| seen.lock().unwrap().push(failed.reason.clone()));
    let mut client = server.connect();
    let token = server.login(&mut client, "netease2", "123");
    let entity = server.entity(&client).unwrap();
    server.request(&mut client, "userdata_save", json!({"token": token, "data": {"gold": 5}}));

    server.app.world_mut().trigger(WriteUserData { entity, data: object(json!({"gold": 15})), base_version: 1 });
    let changed = server.wait_message(&mut client, |m| m["method"] == "userdata_changed");
    assert_eq!(changed["params"]["version"], 2);
    assert_eq!(mirror(&server, entity).unwrap().data, Some(object(json!({"gold": 15}))));
    let loaded = server.request(&mut client, "userdata_load", json!({"token": token}));
    assert_eq!(loaded["result"]["data"], json!({"gold": 15}));
    assert_eq!(loaded["result"]["version"], 2);

    // Based on version 1, which is no longer the newest: refused.
    server.app.world_mut().trigger(WriteUserData { entity, data: object(json!({"gold": 0})), base_version: 1 });
    server.update();
    assert_eq!(*failures.lock().unwrap(), vec![WriteFailure::Conflict { current: 2 }]);
    let loaded = server.request(&mut client, "userdata_load", json!({"token": token}));
    assert_eq!(loaded["result"]["data"], json!({"gold": 15}));
}

/// After logout the data must not linger on the connection for the next account.
#[test]
fn userdata_leaves_with_the_session() {
    let mut server = server();
    let mut client = server.connect();
    let token = server.login(&mut client, "netease3", "123");
    let entity = server.entity(&client).unwrap();
    assert!(server.step_until(|s| mirror(s, entity).is_some_and(|m| m.loaded)));
    server.request(&mut client, "logout", json!({"token": token}));
    server.update();
    assert!(mirror(&server, entity).is_none());
}
