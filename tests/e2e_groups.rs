//! Session groups end to end: a real server (`ServerHandle`, the same
//! `ServerPlugins` as `portcullis serve`) on a loopback port, two reference
//! clients over TCP. Every wait is bounded by [`WAIT`], so a hang fails the
//! test instead of stalling it.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use bevy_app::AppExit;
use portcullis::app::{ServerConfig, ServerHandle};
use portcullis_client::{Client, ClientEvent, Notification};
use serde_json::{Value, json};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::time::timeout;

/// The longest any single wait may take before the test fails.
const WAIT: Duration = Duration::from_secs(10);

/// A server on a free port with a fresh database in `dir`, cheap hashing.
fn start_server(dir: &tempfile::TempDir) -> ServerHandle {
    let mut config = ServerConfig::ephemeral(dir.path().join("groups.db"));
    config.store.argon2_memory_kib = 8;
    config.store.argon2_iterations = 1;
    ServerHandle::spawn(config).unwrap()
}

/// Calls `method` with the client's token added to `params`.
async fn call(client: &Client, method: &str, mut params: Value) -> Value {
    params["token"] = json!(client.token().unwrap());
    timeout(WAIT, client.call(method, params)).await.expect("no answer in time").unwrap()
}

/// Waits for the next notification named `method`, skipping others.
async fn next_notification(events: &mut UnboundedReceiver<ClientEvent>, method: &str) -> Notification {
    loop {
        let event = timeout(WAIT, events.recv()).await.expect("no notification in time").expect("connection closed");
        if let ClientEvent::Notification(n) = event
            && n.method == method
        {
            return n;
        }
    }
}

/// A user would see: two players on one server who cannot chat through a
/// group (over real sockets, with the plugins `portcullis serve` uses).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clients_exchange_a_group_message() {
    let dir = tempfile::tempdir().unwrap();
    let server = tokio::task::spawn_blocking(move || (start_server(&dir), dir)).await.unwrap();
    let addr = server.0.addr();

    let alice = timeout(WAIT, Client::connect(addr)).await.unwrap().unwrap();
    let bob = timeout(WAIT, Client::connect(addr)).await.unwrap().unwrap();
    let mut alice_events = alice.events().unwrap();
    let mut bob_events = bob.events().unwrap();
    timeout(WAIT, alice.login("netease1", "123")).await.unwrap().unwrap();
    timeout(WAIT, bob.login("netease2", "123")).await.unwrap().unwrap();

    let created = call(&alice, "group_create", json!({})).await;
    let group = created["group"].as_str().unwrap().to_owned();
    let key = created["key"].as_str().unwrap().to_owned();

    let wrong = timeout(
        WAIT,
        bob.call("group_join", json!({"token": bob.token().unwrap(), "group": group, "key": "not-the-key"})),
    )
    .await
    .unwrap();
    assert_eq!(wrong.unwrap_err().code().map(|c| c.code()), Some(2002));

    let joined = call(&bob, "group_join", json!({"group": group, "key": key})).await;
    assert_eq!(joined["members"], json!(["netease1", "netease2"]));

    let message = json!({"text": "meet at the gate", "x": 3, "y": -4});
    let sent = call(&alice, "group_send", json!({"group": group, "message": message})).await;
    assert_eq!(sent, json!({"delivered": 1}));
    let got = next_notification(&mut bob_events, "group_message").await;
    assert_eq!(got.params, json!({"group": group, "from": "netease1", "message": message}));

    let reply = call(&bob, "group_send", json!({"group": group, "message": "on my way"})).await;
    assert_eq!(reply["delivered"], 1);
    let got = next_notification(&mut alice_events, "group_message").await;
    assert_eq!((got.params["from"].as_str(), got.params["message"].as_str()), (Some("netease2"), Some("on my way")));

    // Bob closes: alice's group keeps only her.
    bob.close();
    timeout(WAIT, bob.closed()).await.unwrap();
    let mut delivered = Value::Null;
    for _ in 0..100 {
        delivered = call(&alice, "group_send", json!({"group": group, "message": 1})).await["delivered"].clone();
        if delivered == json!(0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(delivered, json!(0), "bob's membership is dropped when his connection closes");

    alice.close();
    let (handle, _dir) = server;
    let exit = tokio::task::spawn_blocking(move || handle.shutdown(WAIT)).await.unwrap();
    assert!(exit.as_ref().is_some_and(AppExit::is_success), "the server shuts down cleanly: {exit:?}");
}
