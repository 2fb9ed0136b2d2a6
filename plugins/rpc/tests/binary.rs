//! Binary messages (docs/protocol.md §1.1), through the in-memory transport:
//! answered `-32600`, counted as protocol errors, the connection stays.
#![allow(clippy::unwrap_used)]

use bevy_app::App;
use portcullis_net::{NetPlugin, TestClient};
use portcullis_rpc::{RpcConfig, RpcPlugin};

const BINARY_REFUSED: &str =
    r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"binary messages are not supported"}}"#;

fn app(max_protocol_errors: u32) -> App {
    let mut app = App::new();
    app.add_plugins((
        bevy_time::TimePlugin,
        NetPlugin::memory(),
        RpcPlugin { config: RpcConfig { max_protocol_errors, ..RpcConfig::default() } },
    ));
    app.update();
    app
}

/// If this failed, a browser client sending a Blob by mistake would get no
/// answer, or be cut off at once.
#[test]
fn a_binary_message_is_answered_and_the_connection_stays() {
    let mut app = app(16);
    let mut client = TestClient::connect(&mut app);
    app.update();
    client.send_binary();
    client.send_line(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#);
    app.update();
    let lines = client.recv_lines();
    assert_eq!(lines[0], BINARY_REFUSED);
    assert!(lines[1].contains(r#""id":1"#) && lines[1].contains("server_time_ms"), "{lines:?}");
    assert!(!client.is_closed());
}

/// Binary messages count toward `max_protocol_errors` like invalid JSON.
#[test]
fn binary_messages_count_as_protocol_errors() {
    let mut app = app(2);
    let mut client = TestClient::connect(&mut app);
    app.update();
    client.send_binary();
    client.send_line("not json");
    app.update();
    let lines = client.recv_lines();
    assert_eq!(lines[0], BINARY_REFUSED);
    assert!(lines[1].contains("-32700"), "{lines:?}");
    assert_eq!(lines[2], r#"{"jsonrpc":"2.0","method":"disconnected","params":{"reason":"protocol_error"}}"#);
    assert!(client.is_closed());
}
