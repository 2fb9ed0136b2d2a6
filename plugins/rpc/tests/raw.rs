//! Raw methods registered while the app runs, and responses read from
//! trusted connections (the pieces a gateway uses, docs/protocol.md §8),
//! through the in-memory transport.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use bevy_app::App;
use bevy_ecs::prelude::*;
use bevy_ecs::system::RunSystemOnce;
use portcullis_net::{NetPlugin, TestClient};
use portcullis_rpc::{AcceptsResponses, Access, RawRequest, Reply, ReplyTo, Rpc, RpcMethods, RpcPlugin, RpcResponses};
use serde_json::value::RawValue;

fn app() -> App {
    let mut app = App::new();
    app.add_plugins((bevy_time::TimePlugin, NetPlugin::memory(), RpcPlugin::default()));
    app.update();
    app
}

fn echo(_world: &mut World, req: RawRequest) -> Reply<Box<RawValue>> {
    let text = req.params_raw.map_or_else(|| "{}".to_owned(), |raw| raw.get().to_owned());
    Reply::Ok(RawValue::from_string(text).unwrap())
}

/// If this failed, a method added while the server runs would not answer,
/// or would not follow the params rules of docs/protocol.md §2.
#[test]
fn a_raw_method_added_at_run_time_is_dispatched_like_any() {
    let mut app = app();
    let mut client = TestClient::connect(&mut app);
    app.update();
    client.send_line(r#"{"jsonrpc":"2.0","id":1,"method":"echo"}"#);
    app.update();
    assert!(client.recv_lines()[0].contains("-32601"));
    app.world_mut().resource_mut::<RpcMethods>().insert_raw("echo", Access::Public, Arc::new(echo));
    client.send_line(r#"{"jsonrpc":"2.0","id":2,"method":"echo","params":{"n":1e400,"s":"\u00e9"}}"#);
    client.send_line(r#"{"jsonrpc":"2.0","id":3,"method":"echo"}"#);
    client.send_line(r#"{"jsonrpc":"2.0","id":4,"method":"echo","params":[1]}"#);
    client.send_line(r#"{"jsonrpc":"2.0","id":5,"method":"echo","params":{"a":1,"a":2}}"#);
    app.update();
    let lines = client.recv_lines();
    assert_eq!(lines[0], r#"{"jsonrpc":"2.0","id":2,"result":{"n":1e400,"s":"\u00e9"}}"#, "as written");
    assert_eq!(lines[1], r#"{"jsonrpc":"2.0","id":3,"result":{}}"#);
    assert!(lines[2].contains(r#""field":"params""#), "{}", lines[2]);
    assert!(lines[3].contains(r#""field":"a""#), "{}", lines[3]);
}

/// If this failed, a backend service's answers would be refused as invalid
/// requests, or any client could inject answers.
#[test]
fn responses_are_taken_only_from_marked_connections() {
    let mut app = app();
    let mut plain = TestClient::connect(&mut app);
    let mut trusted = TestClient::connect(&mut app);
    app.update();
    let entity = trusted.entity(&app).unwrap();
    app.world_mut().entity_mut(entity).insert(AcceptsResponses);
    plain.send_line(r#"{"jsonrpc":"2.0","id":7,"result":1}"#);
    trusted.send_line(r#"{"jsonrpc":"2.0","id":7,"result":{"x":1.50}}"#);
    trusted.send_line(r#"{"jsonrpc":"2.0","id":8,"error":{"code":4000,"message":"no"}}"#);
    trusted.send_line(r#"{"jsonrpc":"2.0","id":9,"method":"ping"}"#);
    app.update();
    assert!(plain.recv_lines()[0].contains("-32600"));
    let lines = trusted.recv_lines();
    assert_eq!(lines.len(), 1, "only the ping is answered: {lines:?}");
    let responses = app.world_mut().resource_mut::<RpcResponses>().take();
    assert_eq!(responses.len(), 2);
    assert_eq!(responses[0].answer.as_ref().map(|r| r.get()).ok(), Some(r#"{"x":1.50}"#));
    assert_eq!(responses[1].answer.as_ref().map_err(|e| e.get()).err(), Some(r#"{"code":4000,"message":"no"}"#));
}

/// `Rpc::respond_raw` sends the text as it is, under the request's id.
#[test]
fn respond_raw_sends_text_unchanged() {
    let mut app = app();
    let mut client = TestClient::connect(&mut app);
    app.update();
    let entity = client.entity(&app).unwrap();
    let to = ReplyTo { entity, id: Some(portcullis_rpc::RequestId::String("c".into())), ticket: 0 };
    app.world_mut()
        .run_system_once(move |mut rpc: Rpc| rpc.respond_raw(&to, Err(r#"{"code":7,"message":"m","data":[1]}"#)))
        .unwrap();
    app.update();
    assert_eq!(client.recv_lines(), [r#"{"jsonrpc":"2.0","id":"c","error":{"code":7,"message":"m","data":[1]}}"#]);
}
