//! System-level ECS tests of the network limits of docs/protocol.md §6 ("Rate",
//! "Output") on the in-memory transport and a manual clock that starts at
//! zero, as a freshly started process's `Time<Real>` does. Every wait is bounded.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use bevy_time::{Real, Time};
use portcullis_net::NetConfig;
use portcullis_testkit::{TestConfig, TestServer, error_code};
use serde_json::{Value, json};

/// A 200-ping flood in the very first frames of the server (clock at zero)
/// with rate 1/s and burst 20: 20 results, 21 `RATE_LIMITED` (the 21st
/// refusal within the last second crosses "more than `rate_burst`"), then
/// `disconnected {"reason":"rate_limited"}` and the close. If this fails,
/// refusals made at t = 0 fell out of a window computed as `now - 1 s`
/// saturated at zero, and a flood right after start is never closed.
#[test]
fn rate_limit_close_works_while_the_clock_is_below_one_second() {
    let mut server = TestServer::with_config(TestConfig {
        net: NetConfig { rate_limit: 1.0, rate_burst: 20, ..NetConfig::default() },
        ..TestConfig::default()
    });
    let mut client = server.connect();
    assert_eq!(server.world().resource::<Time<Real>>().elapsed(), Duration::ZERO, "the clock must start at zero");
    for _ in 0..200 {
        client.send_request("ping", json!({}));
    }
    let got = server.messages_until_closed(&mut client);
    assert_eq!(server.world().resource::<Time<Real>>().elapsed(), Duration::ZERO);

    let results = got.iter().filter(|m| m.get("result").is_some()).count();
    let refused: Vec<&Value> = got.iter().filter(|m| error_code(m) == Some(1007)).collect();
    assert_eq!(results, 20, "the burst is served");
    assert_eq!(refused.len(), 21, "the close comes with the 21st refusal within a second");
    assert_eq!(refused.last().unwrap()["id"], json!(41), "the refusal that crossed the line is answered");
    assert_eq!(
        got.last().unwrap(),
        &json!({"jsonrpc": "2.0", "method": "disconnected", "params": {"reason": "rate_limited"}}),
        "{got:?}"
    );
    assert_eq!(got.len(), 42, "nothing after the frame that crossed the line: {got:?}");
}

/// Saves `data` for a freshly logged-in netease1 and returns the token.
fn login_and_save(server: &mut TestServer, client: &mut portcullis_testkit::JsonClient, data: &Value) -> String {
    let token = server.login(client, "netease1", "123");
    let saved = server.request(client, "userdata_save", json!({"token": token, "data": data}));
    assert_eq!(saved["result"]["version"], 1, "{saved}");
    token
}

/// A ~20 KB object, so that each `userdata_load` answer is over 20,000 bytes.
fn big_object() -> Value {
    json!({"blob": "x".repeat(20_000)})
}

/// A client that sends `userdata_load`s and reads nothing is closed as a slow
/// reader, without `disconnected`, once its unread output would pass
/// `outbound_queue_bytes` (100,000 here), long before `outbound_queue`
/// messages (256) are queued. If this fails, the queue is bounded in
/// messages only and one client can pin 256 big answers in the server's memory.
#[test]
fn unread_output_over_outbound_queue_bytes_closes_the_connection() {
    let mut server = TestServer::with_config(TestConfig {
        net: NetConfig { outbound_queue_bytes: 100_000, ..NetConfig::default() },
        ..TestConfig::default()
    });
    let mut client = server.connect();
    let token = login_and_save(&mut server, &mut client, &big_object());
    let entity = server.entity(&client).unwrap();
    let unsent = |server: &TestServer| server.world().get::<portcullis_net::Connection>(entity).unwrap().unsent_bytes();
    let loads_answered = |got: &[Value]| got.iter().filter(|m| m["result"]["data"].is_object()).count();

    // Backpressure: three unread answers (about 60 KB) are over half of the
    // limit, so the server reads no further frame from this client...
    for _ in 0..3 {
        client.send_request("userdata_load", json!({"token": token}));
    }
    assert!(server.step_until(|s| unsent(s) > 60_000), "the three answers did not come");
    client.send_request("userdata_load", json!({"token": token}));
    server.step(5);
    assert_eq!(client.raw.held_frames(), 1, "the server read a frame while over half of the byte limit");
    assert!(unsent(&server) < 80_000, "the fourth load was served while over half: {}", unsent(&server));
    // ...until the client reads (the in-memory client reads all three at
    // once): under half again, the held frame is read and answered.
    assert!(client.raw.recv_line().is_some());
    assert!(server.step_until(|s| client.raw.held_frames() == 0 && unsent(s) > 0), "the held load was not served");
    assert_eq!(loads_answered(&client.take_all()), 3, "the client read four answers in all");
    assert_eq!(unsent(&server), 0);
    assert!(!client.raw.is_closed());

    // The byte limit: ten loads read at once (the client was under half when it
    // sent them) produce answers that pass 100,000 unsent bytes at the fifth.
    for _ in 0..10 {
        client.send_request("userdata_load", json!({"token": token}));
    }
    // (Reading would lower the unsent output: look at the server side only.)
    let closed = server.step_until(|s| {
        s.world().get::<portcullis_net::Connection>(entity).is_none_or(portcullis_net::Connection::is_closing)
    });
    assert!(closed, "not closed although its unsent output passed outbound_queue_bytes");
    server.step(2);
    let rest = client.take_all();
    assert!(client.raw.is_closed(), "the transport was not closed");
    assert_eq!(loads_answered(&rest), 4, "the answer that passed the limit is not sent");
    assert!(rest.iter().all(|m| m["method"] != "disconnected"), "a slow reader is closed without a goodbye: {rest:?}");
    server.step(2);
    assert!(server.entity(&client).is_none(), "the entity outlived the close");
}
