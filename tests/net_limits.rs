//! System-level ECS tests of the network limits of docs/protocol.md §6 ("Rate",
//! "Output") on the in-memory transport and a manual clock that starts at
//! zero, as a freshly started process's `Time<Real>` does. Every wait is bounded.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use bevy_time::{Real, Time};
use portcullis::net::NetConfig;
use portcullis::session::testing::{TestConfig, TestServer, error_code};
use serde_json::{Value, json};

/// Steps frames (clock still) until the server closed `client`; returns every
/// message it received, in order.
fn messages_until_closed(server: &mut TestServer, client: &mut portcullis::session::testing::JsonClient) -> Vec<Value> {
    let mut got = Vec::new();
    let closed = server.step_until(|_| {
        got.extend(client.take_all());
        client.is_closed()
    });
    got.extend(client.take_all());
    assert!(closed, "the connection was not closed; received {} messages", got.len());
    got
}

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
    let got = messages_until_closed(&mut server, &mut client);
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
