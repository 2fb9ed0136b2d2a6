//! System-level ECS tests of the JSON-RPC layer (issue 2, docs/protocol.md §1–§3):
//! framing limits, the envelope, id echo, params, notifications, batches,
//! blank lines, protocol-error closes, `ping`, `disconnect`, and which error
//! wins when a request breaks several rules.
//!
//! Every test drives a [`TestServer`] frame by frame through the in-memory
//! transport: no socket, no sleep, and every wait is bounded by the harness.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use portcullis_net::NetConfig;
use portcullis_rpc::{DisconnectReason, RpcConfig};
use portcullis_session::{Kick, SessionConfig, SessionIndex};
use portcullis_testkit::{JsonClient, TestConfig, TestServer, error_code};
use serde_json::{Value, json};

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// The exact line of docs/protocol.md §1 for an oversize frame.
const FRAME_TOO_LARGE: &str = r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"frame too large"}}"#;

/// `disconnected {"reason": reason}` as a parsed message.
fn disconnected(reason: &str) -> Value {
    json!({"jsonrpc": "2.0", "method": "disconnected", "params": {"reason": reason}})
}

/// A server whose protocol-error limit is out of the way, for tests that send
/// many invalid frames on one connection.
fn lenient_server() -> TestServer {
    TestServer::with_config(TestConfig {
        rpc: RpcConfig { max_protocol_errors: 10_000, ..RpcConfig::default() },
        ..TestConfig::default()
    })
}

/// Asserts that `reply` is an error with `code` and `id`.
#[track_caller]
fn assert_error(reply: &Value, code: i64, id: &Value) {
    assert_eq!(error_code(reply), Some(code), "expected error {code}, got {reply}");
    assert_eq!(reply.get("id"), Some(id), "wrong id echoed in {reply}");
    assert_eq!(reply["jsonrpc"], "2.0", "{reply}");
    assert!(reply["error"]["message"].is_string(), "error without message: {reply}");
    assert!(reply.get("result").is_none(), "an error must not carry a result: {reply}");
}

/// Asserts a `-32602` naming `field` in `data.field`.
#[track_caller]
fn assert_invalid_params(reply: &Value, field: &str) {
    assert_eq!(error_code(reply), Some(-32602), "expected -32602 for field {field}, got {reply}");
    assert_eq!(reply["error"]["data"], json!({ "field": field }), "{reply}");
}

/// Asserts a `ping` result with this id.
#[track_caller]
fn assert_ping_result(reply: &Value, id: &Value) {
    assert_eq!(reply.get("id"), Some(id), "wrong id echoed in {reply}");
    assert_eq!(reply["jsonrpc"], "2.0", "{reply}");
    assert!(reply.get("error").is_none(), "ping failed: {reply}");
    let object = reply.as_object().unwrap();
    assert_eq!(object.len(), 3, "a response has exactly jsonrpc, id and result: {reply}");
    let result = reply["result"].as_object().unwrap_or_else(|| panic!("no result object: {reply}"));
    assert_eq!(result.len(), 1, "{reply}");
    let server_ms = result["server_time_ms"].as_u64().unwrap_or_else(|| panic!("server_time_ms: {reply}"));
    let now_ms = u64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis()).unwrap();
    assert!(server_ms.abs_diff(now_ms) < 60_000, "server_time_ms {server_ms} is not Unix ms (now {now_ms})");
}

/// Asserts that the connection's entity is despawned within two frames.
#[track_caller]
fn assert_entity_gone_after_next_frames(server: &mut TestServer, client: &JsonClient) {
    server.step(2);
    assert!(server.entity(client).is_none(), "the connection entity still exists after the close");
}

/// A `ping` line with a `pad` param, exactly `len` bytes long (before the `\n`).
fn ping_line_of_len(id: u64, len: usize) -> String {
    let head = format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"ping","params":{{"pad":""#);
    let tail = r#""}}"#;
    let pad = len.checked_sub(head.len() + tail.len()).expect("line too short for its envelope");
    let line = format!("{head}{}{tail}", "x".repeat(pad));
    assert_eq!(line.len(), len);
    line
}

/// A `ping` whose params nest arrays so that the whole message is `depth`
/// arrays/objects deep (the envelope object and `params` count as 2).
fn ping_nested(id: u64, depth: usize) -> String {
    let arrays = depth - 2;
    format!(
        r#"{{"jsonrpc":"2.0","id":{id},"method":"ping","params":{{"deep":{}{}}}}}"#,
        "[".repeat(arrays),
        "]".repeat(arrays)
    )
}

// ---------------------------------------------------------------------------
// ping and id echo (§2, §4)
// ---------------------------------------------------------------------------

/// A client that matches answers by numeric id would never see its `ping`
/// answered (or would mismatch it) if the id came back changed or the result
/// were not `{"server_time_ms": Unix ms}`.
#[test]
fn ping_answers_server_time_and_echoes_numeric_ids_unchanged() {
    let mut server = TestServer::new();
    let mut client = server.connect();
    for id in [json!(0), json!(1), json!(42), json!(-7), json!(i64::MAX), json!(i64::MIN)] {
        client.send_line(&json!({"jsonrpc": "2.0", "id": id, "method": "ping"}).to_string());
        let reply = server.wait_message(&mut client, |m| m.get("id") == Some(&id));
        assert_ping_result(&reply, &id);
    }
    // The harness's own numbered requests too.
    let reply = server.request(&mut client, "ping", json!({}));
    assert_ping_result(&reply, &json!(1));
}

/// A client using string ids (UUIDs, "42", even "") would lose its answers if
/// the server turned them into numbers or altered their text.
#[test]
fn ping_echoes_string_ids_unchanged() {
    let mut server = TestServer::new();
    let mut client = server.connect();
    for id in [json!("abc"), json!(""), json!("42"), json!("9223372036854775808"), json!("é \"quoted\" \\ ✓\n")] {
        client.send_line(&json!({"jsonrpc": "2.0", "id": id, "method": "ping"}).to_string());
        let reply = server.wait_message(&mut client, |m| m.get("id") == Some(&id));
        assert_ping_result(&reply, &id);
        assert!(reply["id"].is_string(), "a string id came back as another type: {reply}");
    }
}

/// A request with `"id": null` must still be answered (with `"id": null`);
/// otherwise such a client waits forever.
#[test]
fn null_id_request_is_answered_with_null_id() {
    let mut server = TestServer::new();
    let mut client = server.connect();
    client.send_line(r#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#);
    let got = server.messages_before_sync(&mut client);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_ping_result(&got[0], &Value::Null);
}

/// An id that is not a string, an integer in i64 range or null (`1.5`, `1.0`,
/// `1e3`, a huge number, an object, a boolean, an array) must be rejected as
/// `-32600` with `"id": null` — never executed, never echoed in another form.
#[test]
fn invalid_ids_are_invalid_request_with_null_id() {
    let mut server = lenient_server();
    let mut client = server.connect();
    for bad in [
        "1.5",
        "1.0",
        "1e3",
        "-1.0",
        "9223372036854775808",
        "-9223372036854775809",
        "18446744073709551616",
        "{}",
        r#"{"a":1}"#,
        "true",
        "false",
        "[1]",
    ] {
        client.send_line(&format!(r#"{{"jsonrpc":"2.0","id":{bad},"method":"ping"}}"#));
        let got = server.messages_before_sync(&mut client);
        assert_eq!(got.len(), 1, "id {bad}: expected exactly one answer, got {got:?}");
        assert_error(&got[0], -32600, &Value::Null);
    }
    assert!(!client.is_closed());
}

// ---------------------------------------------------------------------------
// Envelope errors (§1–§3)
// ---------------------------------------------------------------------------

/// A typo in a method name must give `-32601` with the request's id (so the
/// client can match it), and must not count as a protocol error that would
/// eventually drop the connection.
#[test]
fn unknown_method_is_method_not_found_with_id_and_not_a_protocol_error() {
    let mut server = TestServer::with_config(TestConfig {
        rpc: RpcConfig { max_protocol_errors: 1, ..RpcConfig::default() },
        ..TestConfig::default()
    });
    let mut client = server.connect();
    let reply = server.request(&mut client, "no_such_method", json!({}));
    assert_error(&reply, -32601, &json!(1));
    // Method names are case-sensitive.
    let reply = server.request(&mut client, "PING", json!({}));
    assert_error(&reply, -32601, &json!(2));
    client.send_line(r#"{"jsonrpc":"2.0","id":"s","method":"nope"}"#);
    let reply = server.wait_message(&mut client, |m| m["id"] == "s");
    assert_error(&reply, -32601, &json!("s"));
    // With max_protocol_errors = 1, a counted error would have closed the connection.
    let got = server.messages_before_sync(&mut client);
    assert!(got.is_empty(), "{got:?}");
    assert!(!client.is_closed());
}

/// Garbage on the line (a bad client, a `telnet` typo) must get `-32700` with
/// `"id": null` and leave the connection usable.
#[test]
fn invalid_json_is_parse_error_with_null_id_and_connection_stays() {
    let mut server = lenient_server();
    let mut client = server.connect();
    for bad in [
        "{not json",
        "hello",
        r#"{"jsonrpc":"2.0","id":5,"method":"ping""#,
        r#"{"jsonrpc":"2.0","id":6,"method":"ping"} trailing"#,
        r#"{"jsonrpc":"2.0","id":7,"method":"ping",}"#,
        "'single'",
    ] {
        client.send_line(bad);
        let got = server.messages_before_sync(&mut client);
        assert_eq!(got.len(), 1, "frame {bad:?}: expected one answer, got {got:?}");
        assert_error(&got[0], -32700, &Value::Null);
    }
    assert!(!client.is_closed());
    assert!(server.entity(&client).is_some());
}

/// Bytes that are not UTF-8 must get `-32700` with `"id": null`, not kill the
/// connection or the server.
#[test]
fn invalid_utf8_is_parse_error_and_connection_stays() {
    let mut server = lenient_server();
    let mut client = server.connect();
    client.raw.send_bytes(b"\xff\xfe\xfd\n");
    client.raw.send_bytes(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"\xc3\x28\"}\n");
    let got = server.messages_before_sync(&mut client);
    assert_eq!(got.len(), 2, "{got:?}");
    for reply in &got {
        assert_error(reply, -32700, &Value::Null);
    }
    assert!(!client.is_closed());
}

/// Deeply nested JSON must be served up to 100 levels, and refused with
/// `-32700` (not a crash or stack overflow) from 128 levels on.
#[test]
fn nesting_up_to_100_is_served_and_128_is_parse_error() {
    let mut server = TestServer::new();
    let mut client = server.connect();
    client.send_line(&ping_nested(100, 100));
    let got = server.messages_before_sync(&mut client);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_ping_result(&got[0], &json!(100));

    client.send_line(&ping_nested(128, 128));
    let got = server.messages_before_sync(&mut client);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_error(&got[0], -32700, &Value::Null);

    client.send_line(&"[".repeat(100_000));
    let got = server.messages_before_sync(&mut client);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_error(&got[0], -32700, &Value::Null);
    assert!(!client.is_closed());
}

/// A request without `"jsonrpc":"2.0"` (missing, `"1.0"`, the number 2.0), or
/// whose `method` is missing or not a string, is `-32600` carrying the
/// request's valid id so the client can match the failure.
#[test]
fn bad_envelope_is_invalid_request_echoing_the_valid_id() {
    let mut server = lenient_server();
    let mut client = server.connect();
    let cases = [
        (r#"{"id":1,"method":"ping"}"#, json!(1)),
        (r#"{"jsonrpc":"1.0","id":"a","method":"ping"}"#, json!("a")),
        (r#"{"jsonrpc":2.0,"id":3,"method":"ping"}"#, json!(3)),
        (r#"{"jsonrpc":null,"id":4,"method":"ping"}"#, json!(4)),
        (r#"{"jsonrpc":"2.0","id":5,"method":5}"#, json!(5)),
        (r#"{"jsonrpc":"2.0","id":6}"#, json!(6)),
        (r#"{"jsonrpc":"2.0","id":7,"method":null}"#, json!(7)),
        (r#"{"jsonrpc":"2.0","id":"x","method":["ping"]}"#, json!("x")),
        (r#"{"jsonrpc":"2.0","id":null,"method":1}"#, Value::Null),
    ];
    for (frame, id) in cases {
        client.send_line(frame);
        let got = server.messages_before_sync(&mut client);
        assert_eq!(got.len(), 1, "frame {frame}: expected one answer, got {got:?}");
        assert_error(&got[0], -32600, &id);
        assert!(got[0].get("result").is_none(), "frame {frame} was executed: {got:?}");
    }
}

/// Valid JSON that is not a request object (a number, a string, `null`, `{}`,
/// or a message without `id` whose `method` is not a string) is answered
/// `-32600` with `"id": null` — a message without id is only silent when it is
/// a valid notification.
#[test]
fn non_request_values_are_invalid_request_with_null_id() {
    let mut server = lenient_server();
    let mut client = server.connect();
    for frame in [
        "42",
        r#""ping""#,
        "null",
        "true",
        "{}",
        r#"{"jsonrpc":"2.0","method":5}"#,
        r#"{"jsonrpc":"2.0"}"#,
        r#"{"method":"ping"}"#,
        r#"{"jsonrpc":"1.0","method":"ping"}"#,
    ] {
        client.send_line(frame);
        let got = server.messages_before_sync(&mut client);
        assert_eq!(got.len(), 1, "frame {frame}: expected one answer, got {got:?}");
        assert_error(&got[0], -32600, &Value::Null);
    }
}

/// Lines ending in `\r\n` (Windows clients, `telnet`) must be served like `\n`,
/// and several frames in one write must all be answered.
#[test]
fn crlf_lines_and_several_frames_in_one_write_are_served() {
    let mut server = TestServer::new();
    let mut client = server.connect();
    client.raw.send_bytes(
        b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}\r\n{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"ping\"}\n",
    );
    let got = server.messages_before_sync(&mut client);
    assert_eq!(got.len(), 2, "{got:?}");
    let mut ids: Vec<i64> = got.iter().map(|m| m["id"].as_i64().unwrap()).collect();
    ids.sort_unstable();
    assert_eq!(ids, [1, 2]);
    for reply in &got {
        assert_ping_result(reply, &reply["id"]);
    }
}

// ---------------------------------------------------------------------------
// params (§2)
// ---------------------------------------------------------------------------

/// `params` missing, `null`, `{}` or with unknown extra fields must all work;
/// an array, string, number or boolean must be `-32602` with
/// `data.field = "params"` — clients rely on that field to report the mistake.
#[test]
fn params_must_be_an_object_missing_or_null() {
    let mut server = TestServer::new();
    let mut client = server.connect();
    for (n, params) in
        ["", r#","params":null"#, r#","params":{}"#, r#","params":{"extra":1,"more":[1,2]}"#].into_iter().enumerate()
    {
        client.send_line(&format!(r#"{{"jsonrpc":"2.0","id":{n}{params},"method":"ping"}}"#));
        let reply = server.wait_message(&mut client, |m| m["id"] == json!(n));
        assert_ping_result(&reply, &json!(n));
    }
    for (n, params) in [r#"[]"#, r#"[1,2]"#, r#""x""#, "5", "true"].into_iter().enumerate() {
        let id = 100 + n;
        client.send_line(&format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"ping","params":{params}}}"#));
        let reply = server.wait_message(&mut client, |m| m["id"] == json!(id));
        assert_invalid_params(&reply, "params");
        assert_eq!(reply["id"], json!(id));
    }
}

// ---------------------------------------------------------------------------
// Notifications (§2)
// ---------------------------------------------------------------------------

/// A notification must never be answered, not even with an error (unknown
/// method, bad params, not logged in, wrong password): a client that sends
/// fire-and-forget messages would otherwise receive responses it cannot
/// match.
#[test]
fn notifications_are_never_answered_even_with_errors() {
    let mut server = TestServer::new();
    let mut client = server.connect();
    client.send_notification("ping", json!({}));
    client.send_line(r#"{"jsonrpc":"2.0","method":"ping"}"#);
    client.send_notification("no_such_method", json!({}));
    client.send_line(r#"{"jsonrpc":"2.0","method":"ping","params":[1,2]}"#);
    client.send_notification("userdata_load", json!({"token": "x"}));
    client.send_notification("logout", json!({}));
    client.send_notification("login", json!({"account": "netease1", "password": "wrong"}));
    client.send_notification("login", json!({"account": 5}));
    client.send_notification("register", json!({"account": "ab", "password": "x"}));
    let got = server.messages_before_sync(&mut client);
    assert!(got.is_empty(), "notifications were answered: {got:?}");
    assert_eq!(server.session(&client).map(|s| s.state_name()), Some("awaiting_login"));
}

/// A notification is executed even though it gets no answer: a `login`
/// notification with the right password logs the connection in, and a
/// `logout` notification with the live token logs it out.
#[test]
fn notifications_are_executed() {
    let mut server = TestServer::new();
    let mut client = server.connect();
    client.send_notification("login", json!({"account": "netease1", "password": "123"}));
    let got = server.messages_before_sync(&mut client);
    assert!(got.is_empty(), "{got:?}");
    assert_eq!(server.session(&client).map(|s| s.state_name()), Some("logged_in"));
    // Logged in: a wrong token is now TOKEN_INVALID instead of NOT_LOGGED_IN.
    let reply = server.request(&mut client, "userdata_load", json!({"token": "0".repeat(64)}));
    assert_error(&reply, 1003, &json!(1));

    let token = server.login(&mut client, "netease1", "123");
    client.send_notification("logout", json!({ "token": token }));
    let got = server.messages_before_sync(&mut client);
    assert!(got.is_empty(), "{got:?}");
    assert_eq!(server.session(&client).map(|s| s.state_name()), Some("awaiting_login"));
}

/// `disconnect` sent as a notification is executed: the client gets
/// `disconnected {client_request}` and the close, but no `{}` answer.
#[test]
fn disconnect_notification_closes_without_an_answer() {
    let mut server = TestServer::new();
    let mut client = server.connect();
    client.send_notification("disconnect", json!({}));
    let got = server.messages_until_closed(&mut client);
    assert_eq!(got, vec![disconnected("client_request")]);
    assert_entity_gone_after_next_frames(&mut server, &client);
}

// ---------------------------------------------------------------------------
// Blank lines (§1)
// ---------------------------------------------------------------------------

/// Empty lines and lines of only spaces, tabs and `\r` (keep-alive newlines
/// from `nc`, a stray Enter) must be ignored: no answer, no protocol error
/// (with `max_protocol_errors = 1` one would close the connection) and no
/// rate-limit token (with a bucket of 2, the two pings after many blank lines
/// must both run).
#[test]
fn blank_lines_are_ignored_not_answered_not_counted() {
    let mut server = TestServer::with_config(TestConfig {
        rpc: RpcConfig { max_protocol_errors: 1, ..RpcConfig::default() },
        net: NetConfig { rate_burst: 2, ..NetConfig::default() },
        ..TestConfig::default()
    });
    let mut client = server.connect();
    client.raw.send_bytes(b"\n\r\n   \n\t\t\n \t\r\n\n\n\n\n\n\n\n");
    client.send_line("");
    client.send_line("    ");
    client.raw.send_bytes(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}\n\n\n");
    let reply = server.wait_message(&mut client, |m| m["id"] == 1);
    assert_ping_result(&reply, &json!(1));
    let got = server.messages_before_sync(&mut client);
    assert!(got.is_empty(), "blank lines were answered: {got:?}");
    assert!(!client.is_closed());
}

/// A client that only sends empty lines as keep-alive must not be closed for
/// idleness: a blank frame counts as activity for the idle timer (§1, §6).
#[test]
fn blank_lines_count_as_activity_for_the_idle_timer() {
    let mut server = TestServer::with_config(TestConfig {
        session: SessionConfig {
            idle_timeout: Duration::from_secs(10),
            login_timeout: Duration::from_secs(3600),
            ..SessionConfig::default()
        },
        ..TestConfig::default()
    });
    let mut client = server.connect();
    server.advance(Duration::from_secs(9));
    client.send_line("");
    server.update();
    server.advance(Duration::from_secs(9)); // 18 s after connect, 9 s after the blank line
    assert!(!client.is_closed(), "closed as idle although a blank line arrived 9 s ago");
    assert!(client.take_all().is_empty());
    server.advance(Duration::from_secs(1)); // 10 s after the blank line
    let got = server.messages_until_closed(&mut client);
    assert_eq!(got, vec![disconnected("idle_timeout")]);
}

// ---------------------------------------------------------------------------
// Protocol-error limit (§1)
// ---------------------------------------------------------------------------

/// With the default `max_protocol_errors` (16), 15 bad frames (mixed `-32700`
/// and `-32600`) are each answered and the connection stays; the 16th is
/// answered, then `disconnected {protocol_error}` is sent, the connection is
/// closed, and its entity is gone after the next frames. Valid requests and
/// `-32601` in between do not reset or add to the count.
#[test]
fn default_max_protocol_errors_answers_then_disconnects() {
    let mut server = TestServer::new();
    let mut client = server.connect();
    for n in 0..15 {
        if n % 2 == 0 {
            client.send_line("{oops");
        } else {
            client.send_line(r#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#);
        }
        if n % 5 == 0 {
            client.send_line(r#"{"jsonrpc":"2.0","id":"u","method":"unknown"}"#);
        }
        let got = server.messages_before_sync(&mut client);
        let expected_code = if n % 2 == 0 { -32700 } else { -32600 };
        assert_eq!(error_code(&got[0]), Some(expected_code), "frame {n}: {got:?}");
        assert!(!client.is_closed(), "closed after only {} protocol errors", n + 1);
    }
    client.send_line("{the 16th");
    let got = server.messages_until_closed(&mut client);
    assert_eq!(got.len(), 2, "{got:?}");
    assert_error(&got[0], -32700, &Value::Null);
    assert_eq!(got[1], disconnected("protocol_error"));
    assert_entity_gone_after_next_frames(&mut server, &client);
}

/// With `max_protocol_errors = 3`: the third error is answered, then
/// `disconnected {protocol_error}`, then the close; frames that were already
/// sent after it are not executed.
#[test]
fn configured_max_protocol_errors_closes_and_reads_no_further() {
    let mut server = TestServer::with_config(TestConfig {
        rpc: RpcConfig { max_protocol_errors: 3, ..RpcConfig::default() },
        ..TestConfig::default()
    });
    let mut client = server.connect();
    client.raw.send_bytes(
        b"true\n\
          {\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}\n\
          42\n\
          {\"id\":7,\"method\":\"ping\"}\n\
          {\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"ping\"}\n\
          {\"jsonrpc\":\"2.0\",\"method\":\"disconnect\"}\n",
    );
    let got = server.messages_until_closed(&mut client);
    assert_eq!(got.len(), 5, "{got:?}");
    assert_error(&got[0], -32600, &Value::Null);
    assert_ping_result(&got[1], &json!(1));
    assert_error(&got[2], -32600, &Value::Null);
    assert_error(&got[3], -32600, &json!(7));
    assert_eq!(got[4], disconnected("protocol_error"));
    assert_entity_gone_after_next_frames(&mut server, &client);
}

// ---------------------------------------------------------------------------
// disconnect (§4)
// ---------------------------------------------------------------------------

/// `disconnect` must answer `{}`, then send `disconnected {client_request}`,
/// then close — in that order — and the connection's entity must be gone
/// after the next frames.
#[test]
fn disconnect_answers_empty_then_disconnected_then_closes() {
    let mut server = TestServer::new();
    let mut client = server.connect();
    client.send_line(r#"{"jsonrpc":"2.0","id":"bye","method":"disconnect","params":{"ignored":true}}"#);
    let got = server.messages_until_closed(&mut client);
    assert_eq!(got, vec![json!({"jsonrpc": "2.0", "id": "bye", "result": {}}), disconnected("client_request")]);
    assert_entity_gone_after_next_frames(&mut server, &client);
}

/// `disconnect` on a logged-in connection ends the session too: the token is
/// dead (not in the index any more), so nobody can use it afterwards.
#[test]
fn disconnect_of_a_logged_in_connection_kills_its_token() {
    let mut server = TestServer::new();
    let mut client = server.connect();
    let token = server.login(&mut client, "netease1", "123");
    assert!(server.world().resource::<SessionIndex>().entity_of_token(&token).is_some());
    let id = client.send_request("disconnect", json!({}));
    let got = server.messages_until_closed(&mut client);
    assert_eq!(got, vec![json!({"jsonrpc": "2.0", "id": id, "result": {}}), disconnected("client_request")]);
    assert_entity_gone_after_next_frames(&mut server, &client);
    assert!(server.world().resource::<SessionIndex>().entity_of_token(&token).is_none(), "token still live");
    assert_eq!(server.world().resource::<SessionIndex>().sessions(), 0);
    // The account is free again: another connection logs in without a takeover.
    let mut other = server.connect();
    let reply = server.request(&mut other, "login", json!({"account": "netease1", "password": "123"}));
    assert!(reply["result"]["token"].is_string(), "{reply}");
    assert_ne!(reply["result"]["token"], json!(token));
}

// ---------------------------------------------------------------------------
// Frame size limit (§1)
// ---------------------------------------------------------------------------

/// A frame of exactly `max_frame_bytes` (default 131,072) is served; a client
/// sending large but legal messages must not be cut off.
#[test]
fn frame_of_exactly_default_max_frame_bytes_is_served() {
    let mut server = TestServer::new();
    let mut client = server.connect();
    client.send_line(&ping_line_of_len(1, 131_072));
    let got = server.messages_before_sync(&mut client);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_ping_result(&got[0], &json!(1));
}

/// One byte over the default `max_frame_bytes` (131,073 bytes) gets exactly
/// `{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"frame too large"}}`,
/// then `disconnected {protocol_error}`, then the close; the entity is gone
/// after the next frames.
#[test]
fn frame_one_byte_over_default_limit_is_frame_too_large_then_closed() {
    let mut server = TestServer::new();
    let mut client = server.connect();
    client.send_line(&ping_line_of_len(1, 131_073));
    server.step_until(|_| client.is_closed());
    assert!(client.is_closed(), "the oversize frame did not close the connection");
    let lines = client.raw.recv_lines();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[0], FRAME_TOO_LARGE);
    assert_eq!(lines[1], r#"{"jsonrpc":"2.0","method":"disconnected","params":{"reason":"protocol_error"}}"#);
    assert_entity_gone_after_next_frames(&mut server, &client);
}

/// With `max_frame_bytes = 64`: a 64-byte frame is served (also when its `\r`
/// brings it to 64), frames before an oversize one are answered, the oversize
/// one gets `frame too large` + `disconnected {protocol_error}` + close, and
/// nothing after it is executed.
#[test]
fn configured_frame_limit_is_inclusive_and_oversize_closes_after_earlier_answers() {
    let mut server = TestServer::with_config(TestConfig {
        net: NetConfig { max_frame_bytes: 64, ..NetConfig::default() },
        ..TestConfig::default()
    });
    let mut client = server.connect();
    client.send_line(&ping_line_of_len(1, 64));
    let mut crlf = ping_line_of_len(2, 63).into_bytes();
    crlf.extend_from_slice(b"\r\n");
    client.raw.send_bytes(&crlf);
    let mut write = ping_line_of_len(3, 60).into_bytes();
    write.push(b'\n');
    write.extend_from_slice(ping_line_of_len(4, 65).as_bytes());
    write.push(b'\n');
    write.extend_from_slice(ping_line_of_len(5, 60).as_bytes());
    write.push(b'\n');
    client.raw.send_bytes(&write);
    server.step_until(|_| client.is_closed());
    assert!(client.is_closed(), "the oversize frame did not close the connection");
    let lines = client.raw.recv_lines();
    assert_eq!(lines.len(), 5, "{lines:?}");
    for (line, id) in lines[..3].iter().zip([1, 2, 3]) {
        assert_ping_result(&serde_json::from_str(line).unwrap(), &json!(id));
    }
    assert_eq!(lines[3], FRAME_TOO_LARGE);
    assert_eq!(lines[4], r#"{"jsonrpc":"2.0","method":"disconnected","params":{"reason":"protocol_error"}}"#);
    assert_entity_gone_after_next_frames(&mut server, &client);
}

/// The `\r` of a `\r\n` ending counts toward the limit: 64 bytes + `\r` with a
/// limit of 64 is too large.
#[test]
fn carriage_return_counts_toward_the_frame_limit() {
    let mut server = TestServer::with_config(TestConfig {
        net: NetConfig { max_frame_bytes: 64, ..NetConfig::default() },
        ..TestConfig::default()
    });
    let mut client = server.connect();
    let mut frame = ping_line_of_len(1, 64).into_bytes();
    frame.extend_from_slice(b"\r\n");
    client.raw.send_bytes(&frame);
    server.step_until(|_| client.is_closed());
    assert!(client.is_closed());
    assert_eq!(client.raw.recv_lines(), vec![FRAME_TOO_LARGE.to_owned(), disconnected_line("protocol_error")]);
}

/// A client that streams bytes without ever sending a newline is answered
/// `frame too large` and closed as soon as it passes the limit — the server
/// never waits for a `\n` that may never come.
#[test]
fn oversize_frame_without_newline_is_refused_at_once() {
    let mut server = TestServer::with_config(TestConfig {
        net: NetConfig { max_frame_bytes: 64, ..NetConfig::default() },
        ..TestConfig::default()
    });
    let mut client = server.connect();
    client.raw.send_bytes(&[b'x'; 64]);
    server.step(3);
    assert!(!client.is_closed(), "64 bytes without newline are not over the limit yet");
    assert!(client.raw.recv_lines().is_empty());
    client.raw.send_bytes(b"x");
    server.step_until(|_| client.is_closed());
    assert!(client.is_closed(), "65 bytes without newline did not close the connection");
    assert_eq!(client.raw.recv_lines(), vec![FRAME_TOO_LARGE.to_owned(), disconnected_line("protocol_error")]);
    assert_entity_gone_after_next_frames(&mut server, &client);
}

/// The exact wire line of `disconnected {"reason": reason}`.
fn disconnected_line(reason: &str) -> String {
    format!(r#"{{"jsonrpc":"2.0","method":"disconnected","params":{{"reason":"{reason}"}}}}"#)
}

// ---------------------------------------------------------------------------
// Which error wins (§3)
// ---------------------------------------------------------------------------

/// Rate limit comes first: with the bucket empty, a request to an unknown
/// method or to an auth method gets `RATE_LIMITED` (not `-32601`/`1001`), and
/// an invalid frame is dropped (not answered `-32700`).
#[test]
fn rate_limit_wins_over_envelope_method_and_auth() {
    let mut server = TestServer::with_config(TestConfig {
        net: NetConfig { rate_burst: 3, ..NetConfig::default() },
        ..TestConfig::default()
    });
    let mut client = server.connect();
    for _ in 0..3 {
        client.send_request("ping", json!({}));
    }
    client.send_line(r#"{"jsonrpc":"2.0","id":"unknown","method":"no_such_method"}"#);
    client.send_line("{not json");
    client.send_line(r#"{"jsonrpc":"2.0","id":"auth","method":"userdata_load","params":[]}"#);
    let last = server.wait_message(&mut client, |m| m["id"] == "auth");
    assert_error(&last, 1007, &json!("auth"));
    let got = client.take_all();
    assert_eq!(got.len(), 4, "{got:?}");
    for (reply, id) in got[..3].iter().zip([1, 2, 3]) {
        assert_ping_result(reply, &json!(id));
    }
    assert_error(&got[3], 1007, &json!("unknown"));
    assert!(!client.is_closed());
}

/// Envelope before method, method before session state and auth: a bad
/// `jsonrpc` on an unknown method is `-32600`; an unknown method on a
/// connection that is not logged in is `-32601`, not `1001`; an auth method
/// with an array `params` on such a connection is `1001` (auth before
/// params types).
#[test]
fn envelope_beats_method_and_method_beats_session_and_auth() {
    let mut server = TestServer::new();
    let mut client = server.connect();
    client.send_line(r#"{"jsonrpc":"1.0","id":1,"method":"no_such_method"}"#);
    let reply = server.wait_message(&mut client, |m| m["id"] == 1);
    assert_error(&reply, -32600, &json!(1));
    client.send_line(r#"{"jsonrpc":"2.0","id":2,"method":"no_such_method","params":[]}"#);
    let reply = server.wait_message(&mut client, |m| m["id"] == 2);
    assert_error(&reply, -32601, &json!(2));
    client.send_line(r#"{"jsonrpc":"2.0","id":3,"method":"userdata_save","params":[1]}"#);
    let reply = server.wait_message(&mut client, |m| m["id"] == 3);
    assert_error(&reply, 1001, &json!(3));
}

/// While a session is being kicked, session state (1006) beats auth and
/// params for every method but `userdata_save`, `logout`, `ping` and
/// `disconnect`; an unknown method is still `-32601`; `disconnect` while
/// kicking answers `{}`, then `disconnected {client_request}`, then closes.
#[test]
fn session_closing_wins_over_auth_and_params_while_kicking() {
    let mut server = TestServer::new();
    let mut client = server.connect();
    let token = server.login(&mut client, "netease1", "123");
    let entity = server.entity(&client).unwrap();
    server.app.world_mut().trigger(Kick { entity, reason: DisconnectReason::Admin });
    let kicked = server.wait_message(&mut client, |m| m["method"] == "kicked");
    assert_eq!(kicked["params"], json!({"reason": "admin", "save_deadline_ms": 5000}));

    let reply = server.request(&mut client, "userdata_load", json!({ "token": token }));
    assert_error(&reply, 1006, &reply["id"].clone());
    let reply = server.request(&mut client, "userdata_load", json!({"token": "wrong"}));
    assert_error(&reply, 1006, &reply["id"].clone());
    let reply = server.request(&mut client, "change_password", json!([1]));
    assert_error(&reply, 1006, &reply["id"].clone());
    let reply = server.request(&mut client, "login", json!({"account": 5}));
    assert_error(&reply, 1006, &reply["id"].clone());
    let reply = server.request(&mut client, "register", json!({}));
    assert_error(&reply, 1006, &reply["id"].clone());
    let reply = server.request(&mut client, "no_such_method", json!({}));
    assert_error(&reply, -32601, &reply["id"].clone());
    let reply = server.request(&mut client, "ping", json!({}));
    assert_ping_result(&reply, &reply["id"].clone());

    let id = client.send_request("disconnect", json!({}));
    let got = server.messages_until_closed(&mut client);
    assert_eq!(got, vec![json!({"jsonrpc": "2.0", "id": id, "result": {}}), disconnected("client_request")]);
    assert_entity_gone_after_next_frames(&mut server, &client);
}

// ---------------------------------------------------------------------------
// More id and ordering rules (§1, §2)
// ---------------------------------------------------------------------------

/// `-0` is a number written without fraction or exponent, in the signed 64-bit
/// range: a valid id (§2). A client that numbers from `-0` (e.g. a JavaScript
/// client serializing `-0`) must get its `ping` answered, not `-32600`.
#[test]
fn negative_zero_id_is_a_valid_integer_id() {
    let mut server = TestServer::new();
    let mut client = server.connect();
    client.send_line(r#"{"jsonrpc":"2.0","id":-0,"method":"ping"}"#);
    let got = server.messages_before_sync(&mut client);
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].get("error").is_none(), "id -0 was refused: {}", got[0]);
    assert_eq!(got[0]["id"].as_f64(), Some(0.0), "{}", got[0]);
    assert!(got[0]["result"]["server_time_ms"].is_u64(), "{}", got[0]);
}

/// A request with `"id": null` is a request, not a notification: its errors
/// are answered too (with `"id": null`) — unknown method, auth error, params
/// error, and a failure that comes back from the store.
#[test]
fn null_id_requests_get_their_errors_answered() {
    let mut server = TestServer::new();
    let mut client = server.connect();
    let frames = [
        (r#"{"jsonrpc":"2.0","id":null,"method":"no_such_method"}"#, -32601),
        (r#"{"jsonrpc":"2.0","id":null,"method":"userdata_load","params":{"token":"x"}}"#, 1001),
        (r#"{"jsonrpc":"2.0","id":null,"method":"ping","params":[1]}"#, -32602),
        (r#"{"jsonrpc":"2.0","id":null,"method":"login","params":{"account":"netease1","password":"bad"}}"#, 1002),
    ];
    for (frame, code) in frames {
        client.send_line(frame);
        let got = server.messages_before_sync(&mut client);
        assert_eq!(got.len(), 1, "frame {frame}: expected one answer, got {got:?}");
        assert_error(&got[0], code, &Value::Null);
    }
}

/// Frames that arrived before an oversize frame are all answered first, even
/// one that waits on the store (a password `login`); then come
/// `frame too large`, `disconnected {protocol_error}` and the close.
#[test]
fn frames_before_an_oversize_frame_are_answered_first_even_when_waiting_on_the_store() {
    let mut server = TestServer::with_config(TestConfig {
        net: NetConfig { max_frame_bytes: 256, ..NetConfig::default() },
        ..TestConfig::default()
    });
    let mut client = server.connect();
    let mut write =
        br#"{"jsonrpc":"2.0","id":"login","method":"login","params":{"account":"netease1","password":"123"}}"#.to_vec();
    write.push(b'\n');
    write.extend_from_slice(&[b' '; 300]);
    write.push(b'\n');
    client.raw.send_bytes(&write);
    server.step_until(|_| client.is_closed());
    assert!(client.is_closed());
    let lines = client.raw.recv_lines();
    assert_eq!(lines.len(), 3, "{lines:?}");
    let login: Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(login["id"], "login");
    assert_eq!(login["result"]["account"], "netease1", "{login}");
    assert_eq!(lines[1], FRAME_TOO_LARGE);
    assert_eq!(lines[2], disconnected_line("protocol_error"));
    assert_entity_gone_after_next_frames(&mut server, &client);
}

/// A client that writes its requests and then closes its sending side (like
/// `nc -q1`) still gets every answer — including one that waits on the store —
/// before the server closes the connection.
#[test]
fn half_closed_client_gets_every_answer_before_the_close() {
    let mut server = TestServer::new();
    let mut client = server.connect();
    let login_id = client.send_request("login", json!({"account": "netease1", "password": "123"}));
    let ping_id = client.send_request("ping", json!({}));
    client.raw.shutdown_write();
    let got = server.messages_until_closed(&mut client);
    let answered: Vec<&Value> = got.iter().filter(|m| m.get("id").is_some()).collect();
    assert_eq!(answered.len(), 2, "{got:?}");
    assert_eq!(answered[0]["id"], login_id);
    assert_eq!(answered[0]["result"]["account"], "netease1", "{got:?}");
    assert_ping_result(answered[1], &json!(ping_id));
    assert_entity_gone_after_next_frames(&mut server, &client);
}

/// A client that writes before the server has even run a frame for its
/// connection (TCP: connect and send in one go) is served exactly like any
/// other: the protocol-error count, the auth check and the answers all apply
/// to frames that arrive together with the connection.
#[test]
fn frames_arriving_with_the_connection_are_handled_like_any_other() {
    let mut server = TestServer::with_config(TestConfig {
        rpc: RpcConfig { max_protocol_errors: 2, ..RpcConfig::default() },
        ..TestConfig::default()
    });
    server.update();
    let mut raw = portcullis_net::TestClient::connect(&mut server.app);
    raw.send_line(r#"{"jsonrpc":"2.0","id":1,"method":"logout","params":{"token":"x"}}"#);
    raw.send_line(r#"{"jsonrpc":"2.0","id":2,"method":"userdata_load"}"#);
    raw.send_line("{bad");
    raw.send_line(r#"{"jsonrpc":"2.0","id":3,"method":"ping"}"#);
    raw.send_line("{bad again");
    raw.send_line(r#"{"jsonrpc":"2.0","id":4,"method":"ping"}"#);
    server.step_until(|_| raw.is_closed());
    assert!(raw.is_closed(), "two protocol errors did not close the connection");
    let got: Vec<Value> = raw.recv_lines().iter().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(got.len(), 6, "{got:?}");
    assert_error(&got[0], 1001, &json!(1));
    assert_error(&got[1], 1001, &json!(2));
    assert_error(&got[2], -32700, &Value::Null);
    assert_ping_result(&got[3], &json!(3));
    assert_error(&got[4], -32700, &Value::Null);
    assert_eq!(got[5], disconnected("protocol_error"));
    server.step(2);
    assert!(raw.entity(&server.app).is_none(), "the connection entity still exists after the close");
}

/// A member name twice in the request object is `-32600` (with the id,
/// unless `id` itself repeats); twice at the top level of `params` it is
/// `-32602` naming it. If this failed, `{"token":"bad","token":"<live>"}`
/// would authenticate here while a proxy in front read the bad one
/// (docs/protocol.md §2).
#[test]
fn duplicate_member_names_are_refused() {
    let mut server = lenient_server();
    let mut client = server.connect();
    let token = server.login(&mut client, "netease1", "123");
    client.send_line(&format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"userdata_load","params":{{"token":"bad","token":"{token}"}}}}"#
    ));
    client.send_line(&format!(
        r#"{{"jsonrpc":"2.0","id":2,"method":"userdata_save","params":{{"token":"{token}","data":{{}},"data":{{"a":1}}}}}}"#
    ));
    client.send_line(r#"{"jsonrpc":"2.0","id":3,"method":"ping","method":"disconnect"}"#);
    client.send_line(r#"{"jsonrpc":"2.0","id":4,"id":5,"method":"ping"}"#);
    let got = server.messages_before_sync(&mut client);
    assert_eq!(got.len(), 4, "{got:?}");
    assert_invalid_params(&got[0], "token");
    assert_invalid_params(&got[1], "data");
    assert_error(&got[2], -32600, &json!(3));
    assert_error(&got[3], -32600, &Value::Null);
    assert!(!client.is_closed());
}

/// `"id": 1e400` is valid JSON but not a valid id: `-32600`, not `-32700`.
#[test]
fn huge_number_id_is_invalid_request() {
    let mut server = lenient_server();
    let mut client = server.connect();
    client.send_line(r#"{"jsonrpc":"2.0","id":1e400,"method":"ping"}"#);
    let got = server.messages_before_sync(&mut client);
    assert_eq!(got.len(), 1, "{got:?}");
    assert_error(&got[0], -32600, &Value::Null);
}

/// Every answered request leaves the connection's bookkeeping, whichever way
/// its answer was written (a result line built by the method, an error, a
/// batch). If this failed, a long-lived connection would grow with every
/// request it ever made, and its answers would stop counting in
/// `portcullis_requests_total`.
#[test]
fn answered_requests_leave_no_bookkeeping_behind() {
    let mut server = TestServer::new();
    let mut client = server.connect();
    for n in 0..50 {
        let reply = server.request(&mut client, "ping", json!({}));
        assert!(reply.get("result").is_some(), "ping {n}: {reply}");
        let reply = server.request(&mut client, "no_such_method", json!({}));
        assert_eq!(error_code(&reply), Some(-32601), "{reply}");
    }
    let entity = server.entity(&client).unwrap();
    let state = server.world().get::<portcullis_rpc::RpcState>(entity).unwrap();
    assert_eq!(state.awaiting_answers(), 0);
}
