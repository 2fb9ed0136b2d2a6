//! Methods on raw JSON, registered while the app runs, and JSON-RPC
//! responses received from trusted connections: the two pieces a gateway
//! needs to relay calls to another process (docs/protocol.md §8) while each
//! relayed method goes through exactly the dispatcher path of a built-in one
//! (rate limit, envelope, method, gates, ordering, batches).

use std::sync::Arc;

use bevy_ecs::prelude::*;
use portcullis_protocol::{RequestId, RpcError};
use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

use crate::registry::{Access, Call, Outcome, Reply, ReplyTo, RpcMethods};

/// One call of a raw method: who called, and `params` as an object.
#[derive(Debug)]
pub struct RawRequest {
    /// Where the answer goes (answer later with [`Rpc::respond`](crate::Rpc::respond)
    /// or [`Rpc::respond_raw`](crate::Rpc::respond_raw) after [`Reply::Later`]).
    pub reply_to: ReplyTo,
    /// `params` parsed (missing or `null`: empty); numbers keep their digits.
    pub params: serde_json::Map<String, Value>,
    /// `params` exactly as written (`None` when missing or `null`).
    pub params_raw: Option<Box<RawValue>>,
}

/// A raw method handler: runs at once when its request is dispatched, with
/// the world; answers with a [`Reply`] of JSON text (`Reply::Ok(raw)` is sent
/// as the `result` verbatim).
pub type RawHandler = Arc<dyn Fn(&mut World, RawRequest) -> Reply<Box<RawValue>> + Send + Sync>;

impl RpcMethods {
    /// Whether a method of that name is registered.
    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Registers (or replaces) the method `name` with a raw handler, at any
    /// time: a request dispatched from the next frame on finds it. It is
    /// dispatched exactly like a method of
    /// [`add_rpc_method`](crate::RpcAppExt::add_rpc_method): the rate limit,
    /// envelope and [`RpcGates`](crate::RpcGates) come first (docs/protocol.md
    /// §3), then the params rules of §2 (a name repeated at the top level of
    /// `params` is `-32602` naming it; `params` that is not an object or
    /// `null` is `-32602` with field `params`), then `handler`.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use bevy_ecs::prelude::*;
    /// use portcullis_rpc::{Access, RawRequest, Reply, RpcMethods};
    /// use serde_json::value::RawValue;
    ///
    /// fn add_echo(mut methods: ResMut<RpcMethods>) {
    ///     methods.insert_raw("echo", Access::Public, Arc::new(|_world: &mut World, req: RawRequest| {
    ///         let text = req.params_raw.map_or_else(|| "{}".to_owned(), |raw| raw.get().to_owned());
    ///         RawValue::from_string(text).map_or(Reply::Handled, Reply::Ok)
    ///     }));
    /// }
    /// ```
    pub fn insert_raw(&mut self, name: impl Into<String>, access: Access, handler: RawHandler) {
        let invoke = Arc::new(move |world: &mut World, call: Call| {
            if let Some(field) = call.duplicate_param {
                return Outcome::Reply(Err(RpcError::invalid_params(&field)));
            }
            let (params, params_raw) = match call.params {
                Value::Null => (serde_json::Map::new(), None),
                Value::Object(map) => (map, call.params_raw),
                _ => return Outcome::Reply(Err(RpcError::invalid_params("params"))),
            };
            match handler(world, RawRequest { reply_to: call.reply_to, params, params_raw }) {
                Reply::Ok(raw) => Outcome::Reply(Ok(raw.get().to_owned())),
                Reply::Err(error) => Outcome::Reply(Err(error)),
                Reply::Later => Outcome::Later,
                Reply::Handled => Outcome::Handled,
            }
        });
        self.insert(name.into(), access, invoke, false);
    }
}

/// Marks a connection whose JSON-RPC *responses* the dispatcher takes
/// (instead of answering them `-32600`): each goes into [`RpcResponses`].
/// Inserted by a layer above on a connection it trusts to answer requests
/// that the server sent it (a backend service, docs/protocol.md §8).
#[derive(Component, Debug, Default, Clone, Copy)]
pub struct AcceptsResponses;

/// What a response carries: `Ok(result)` or `Err(error object)`, both as written.
pub type RawAnswer = Result<Box<RawValue>, Box<RawValue>>;

/// A JSON-RPC response read from a connection with [`AcceptsResponses`].
#[derive(Debug)]
pub struct IncomingResponse {
    /// The connection it came from.
    pub entity: Entity,
    /// Its `id` (the id of the request the server sent).
    pub id: RequestId,
    /// `Ok(result)` or `Err(error object)`, both as written.
    pub answer: RawAnswer,
}

/// The responses read this frame, in arrival order. Inserted by `RpcPlugin`;
/// the dispatcher pushes, the layer that sent the requests drains it with
/// [`RpcResponses::take`] (after `RpcSystems::Dispatch`).
#[derive(Resource, Debug, Default)]
pub struct RpcResponses(Vec<IncomingResponse>);

impl RpcResponses {
    /// Takes every response read so far.
    pub fn take(&mut self) -> Vec<IncomingResponse> {
        std::mem::take(&mut self.0)
    }

    /// Whether none is waiting.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(crate) fn push(&mut self, response: IncomingResponse) {
        self.0.push(response);
    }
}

/// `result` or `error` as written, `null` included (serde's `Option` would read `null` as missing).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Box<RawValue>>, D::Error> {
    Box::<RawValue>::deserialize(d).map(Some)
}

#[derive(Deserialize)]
struct ResponseObject {
    jsonrpc: Option<Value>,
    id: Option<Value>,
    method: Option<serde::de::IgnoredAny>,
    #[serde(default, deserialize_with = "present")]
    result: Option<Box<RawValue>>,
    #[serde(default, deserialize_with = "present")]
    error: Option<Box<RawValue>>,
}

impl ResponseObject {
    fn into_response(self) -> Option<(RequestId, RawAnswer)> {
        if self.method.is_some() || self.jsonrpc.as_ref().and_then(Value::as_str) != Some("2.0") {
            return None;
        }
        let id = RequestId::from_value(&self.id?)?;
        match (self.result, self.error) {
            (Some(result), None) => Some((id, Ok(result))),
            (None, Some(error)) if error.get().trim_start().starts_with('{') => Some((id, Err(error))),
            _ => None,
        }
    }
}

/// Reads a frame as JSON-RPC responses: one response object, or an array
/// whose every member is one. A response has `"jsonrpc":"2.0"`, a valid `id`,
/// no `method`, and exactly one of `result` and `error` (an object). `None`
/// when the frame is anything else (a request, invalid JSON, ...): it is
/// then handled as any frame is.
pub fn parse_responses(bytes: &[u8]) -> Option<Vec<(RequestId, RawAnswer)>> {
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace())?;
    match first {
        b'{' => serde_json::from_slice::<ResponseObject>(bytes).ok()?.into_response().map(|r| vec![r]),
        b'[' => {
            let members: Vec<ResponseObject> = serde_json::from_slice(bytes).ok()?;
            if members.is_empty() {
                return None;
            }
            members.into_iter().map(ResponseObject::into_response).collect()
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_are_told_from_requests() {
        let one = parse_responses(br#"{"jsonrpc":"2.0","id":7,"result":{"a":1.50}}"#).expect("a response");
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].0, RequestId::Number(7));
        assert_eq!(one[0].1.as_ref().map(|r| r.get()).ok(), Some(r#"{"a":1.50}"#));
        let null = parse_responses(br#"{"jsonrpc":"2.0","id":"x","result":null}"#).expect("null result");
        assert_eq!(null[0].1.as_ref().map(|r| r.get()).ok(), Some("null"));
        let err = parse_responses(br#"{"jsonrpc":"2.0","id":1,"error":{"code":5,"message":"m"}}"#).expect("error");
        assert!(err[0].1.is_err());
        let batch = parse_responses(br#"[{"jsonrpc":"2.0","id":1,"result":1},{"jsonrpc":"2.0","id":2,"result":2}]"#);
        assert_eq!(batch.map(|b| b.len()), Some(2));
        for not in [
            &br#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#[..],
            br#"{"jsonrpc":"2.0","id":1,"result":1,"error":{}}"#,
            br#"{"jsonrpc":"2.0","id":1.5,"result":1}"#,
            br#"{"id":1,"result":1}"#,
            br#"{"jsonrpc":"2.0","id":1,"error":5}"#,
            br#"[]"#,
            br#"[{"jsonrpc":"2.0","id":1,"result":1},{"jsonrpc":"2.0","id":1,"method":"x"}]"#,
            b"not json",
        ] {
            assert!(parse_responses(not).is_none(), "{}", String::from_utf8_lossy(not));
        }
    }
}
