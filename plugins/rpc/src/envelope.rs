//! Parsing and validating one frame as a JSON-RPC 2.0 message (docs/protocol.md §1–2).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{ErrorCode, RpcError};

/// A request id: a string, a number without fraction or exponent in the
/// signed 64-bit range, or `null` (docs/protocol.md §2). Echoed unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RequestId {
    /// `"id": null` (still a request, answered with `"id": null`).
    Null,
    /// An integer id.
    Number(i64),
    /// A string id.
    String(String),
}

impl RequestId {
    /// Reads an `id` member; `None` when it is not a valid id.
    pub fn from_value(value: &Value) -> Option<Self> {
        match value {
            Value::Null => Some(Self::Null),
            Value::String(s) => Some(Self::String(s.clone())),
            Value::Number(n) => n.as_i64().filter(|_| !n.is_f64()).map(Self::Number),
            _ => None,
        }
    }

    /// The id as JSON text.
    pub fn to_json(&self) -> String {
        match self {
            Self::Null => "null".to_owned(),
            Self::Number(n) => n.to_string(),
            Self::String(_) => serde_json::to_string(self).unwrap_or_else(|_| "null".to_owned()),
        }
    }
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_json())
    }
}

/// A valid JSON-RPC request or notification.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    /// `Some` for a request (even `"id": null`), `None` for a notification.
    pub id: Option<RequestId>,
    /// The method name.
    pub method: String,
    /// `params` as sent: absent becomes `Value::Null`; its type is checked
    /// later, after the method and session checks (docs/protocol.md §3 order).
    pub params: Value,
}

/// A frame that is not a valid request: answered with this error and `id`,
/// and counted as a protocol error.
#[derive(Debug, Clone, PartialEq)]
pub struct Invalid {
    /// The id to answer with (`Null` when the frame had no valid id).
    pub id: RequestId,
    /// `-32700` or `-32600`.
    pub error: RpcError,
}

/// Parses one frame (docs/protocol.md §1–2):
/// - invalid UTF-8 or JSON, or nesting 128 deep or more: `-32700`, id `null`;
/// - a JSON array: `-32600 batch not supported`, id `null`;
/// - not an object, a bad `id`, `jsonrpc` not `"2.0"`, `method` not a string:
///   `-32600`, with the id when it was valid.
pub fn parse_frame(bytes: &[u8]) -> Result<Envelope, Invalid> {
    let value: Value = serde_json::from_slice(bytes).map_err(|_| Invalid {
        id: RequestId::Null,
        error: RpcError::with_message(ErrorCode::ParseError, "parse error"),
    })?;
    let mut object = match value {
        Value::Object(object) => object,
        Value::Array(_) => {
            return Err(Invalid {
                id: RequestId::Null,
                error: RpcError::with_message(ErrorCode::InvalidRequest, "batch not supported"),
            });
        }
        _ => return Err(invalid_request(RequestId::Null, "not a request object")),
    };
    let id = match object.get("id") {
        None => None,
        Some(raw) => match RequestId::from_value(raw) {
            Some(id) => Some(id),
            // serde_json reads `-0` as a float; written without fraction or
            // exponent it is still an integer id (docs/protocol.md §2).
            None if raw.as_f64() == Some(0.0) && id_written_as_integer_zero(bytes) => Some(RequestId::Number(0)),
            None => return Err(invalid_request(RequestId::Null, "invalid id")),
        },
    };
    let answer_id = id.clone().unwrap_or(RequestId::Null);
    if object.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err(invalid_request(answer_id, "jsonrpc must be \"2.0\""));
    }
    let method = match object.remove("method") {
        Some(Value::String(method)) => method,
        _ => return Err(invalid_request(answer_id, "method must be a string")),
    };
    let params = object.remove("params").unwrap_or(Value::Null);
    Ok(Envelope { id, method, params })
}

/// Whether a top-level-looking `"id": -0` appears in the frame (only asked
/// when the parsed id is a float zero, to tell `-0` from `0.0` or `-0e0`).
fn id_written_as_integer_zero(bytes: &[u8]) -> bool {
    let mut rest = bytes;
    while let Some(pos) = rest.windows(4).position(|w| w == b"\"id\"") {
        let after = &rest[pos + 4..];
        let after = after.trim_ascii_start();
        if let Some(value) = after.strip_prefix(b":") {
            let value = value.trim_ascii_start();
            let end = value.iter().position(|b| !matches!(b, b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9'));
            let token = &value[..end.unwrap_or(value.len())];
            if token == b"-0" || token == b"0" {
                return true;
            }
        }
        rest = &rest[pos + 4..];
    }
    false
}

fn invalid_request(id: RequestId, message: &str) -> Invalid {
    Invalid { id, error: RpcError::with_message(ErrorCode::InvalidRequest, message) }
}

/// `{"jsonrpc":"2.0","id":ID,"result":RESULT}` where `result_json` is JSON text.
pub fn result_line(id: &RequestId, result_json: &str) -> String {
    let id = id.to_json();
    let mut line = String::with_capacity(36 + id.len() + result_json.len());
    line.push_str(r#"{"jsonrpc":"2.0","id":"#);
    line.push_str(&id);
    line.push_str(r#","result":"#);
    line.push_str(result_json);
    line.push('}');
    line
}

/// `{"jsonrpc":"2.0","id":ID,"error":{"code":C,"message":S[,"data":D]}}`.
pub fn error_line(id: &RequestId, error: &RpcError) -> String {
    #[derive(Serialize)]
    struct Body<'a> {
        code: i64,
        message: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        data: Option<&'a Value>,
    }
    #[derive(Serialize)]
    struct Line<'a> {
        jsonrpc: &'static str,
        id: &'a RequestId,
        error: Body<'a>,
    }
    let line = Line {
        jsonrpc: "2.0",
        id,
        error: Body { code: error.code.code(), message: &error.message, data: error.data.as_ref() },
    };
    serde_json::to_string(&line).unwrap_or_else(|_| {
        format!(r#"{{"jsonrpc":"2.0","id":null,"error":{{"code":{},"message":"error"}}}}"#, error.code.code())
    })
}

/// `{"jsonrpc":"2.0","method":M,"params":P}`.
pub fn notification_line<P: Serialize + ?Sized>(method: &str, params: &P) -> Result<String, serde_json::Error> {
    #[derive(Serialize)]
    struct Line<'a, P: ?Sized> {
        jsonrpc: &'static str,
        method: &'a str,
        params: &'a P,
    }
    serde_json::to_string(&Line { jsonrpc: "2.0", method, params })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn code(bytes: &[u8]) -> (i64, RequestId) {
        let invalid = parse_frame(bytes).expect_err("should be invalid");
        (invalid.error.code.code(), invalid.id)
    }

    #[test]
    fn valid_request_and_notification() {
        let env = parse_frame(br#"{"jsonrpc":"2.0","id":7,"method":"ping"}"#).expect("valid");
        assert_eq!(env.id, Some(RequestId::Number(7)));
        assert_eq!(env.method, "ping");
        assert_eq!(env.params, Value::Null);
        let env = parse_frame(br#"{"jsonrpc":"2.0","method":"ping","params":{"a":1}}"#).expect("valid");
        assert_eq!(env.id, None);
        assert_eq!(env.params, json!({"a":1}));
        let env = parse_frame(br#"{"jsonrpc":"2.0","id":null,"method":"x"}"#).expect("valid");
        assert_eq!(env.id, Some(RequestId::Null));
        let env = parse_frame(br#"{"jsonrpc":"2.0","id":"abc","method":"x"}"#).expect("valid");
        assert_eq!(env.id, Some(RequestId::String("abc".into())));
    }

    #[test]
    fn parse_errors() {
        assert_eq!(code(b"{not json"), (-32700, RequestId::Null));
        assert_eq!(code(b"\xff\xfe"), (-32700, RequestId::Null));
        assert_eq!(code(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"\xff\"}"), (-32700, RequestId::Null));
        let deep = "[".repeat(100_000);
        assert_eq!(code(deep.as_bytes()), (-32700, RequestId::Null));
    }

    #[test]
    fn depth_100_is_served() {
        let mut params = String::from("1");
        for _ in 0..98 {
            params = format!("[{params}]");
        }
        let frame = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"x","params":{{"a":{params}}}}}"#);
        assert!(parse_frame(frame.as_bytes()).is_ok());
    }

    #[test]
    fn invalid_requests() {
        assert_eq!(code(b"[]"), (-32600, RequestId::Null));
        assert_eq!(parse_frame(b"[1]").expect_err("batch").error.message, "batch not supported");
        assert_eq!(code(b"42"), (-32600, RequestId::Null));
        assert_eq!(code(br#"{"id":1,"method":"ping"}"#), (-32600, RequestId::Number(1)));
        assert_eq!(code(br#"{"jsonrpc":"1.0","id":"a","method":"ping"}"#), (-32600, RequestId::String("a".into())));
        assert_eq!(code(br#"{"jsonrpc":"2.0","id":1,"method":5}"#), (-32600, RequestId::Number(1)));
        assert_eq!(code(br#"{"jsonrpc":"2.0","method":5}"#), (-32600, RequestId::Null));
        for bad in ["1.5", "1.0", "1e3", "9223372036854775808", "{}", "true", "[1]", "-1.0"] {
            let frame = format!(r#"{{"jsonrpc":"2.0","id":{bad},"method":"ping"}}"#);
            assert_eq!(code(frame.as_bytes()), (-32600, RequestId::Null), "id {bad}");
        }
        let env = parse_frame(br#"{"jsonrpc":"2.0","id":-0,"method":"p"}"#).expect("-0 is an integer");
        assert_eq!(env.id, Some(RequestId::Number(0)));
        assert_eq!(code(br#"{"jsonrpc":"2.0","id":-0.0,"method":"p"}"#), (-32600, RequestId::Null));
        let env = parse_frame(br#"{"jsonrpc":"2.0","id":-9223372036854775808,"method":"p"}"#).expect("i64 min");
        assert_eq!(env.id, Some(RequestId::Number(i64::MIN)));
    }

    #[test]
    fn lines_are_exact() {
        assert_eq!(result_line(&RequestId::Number(1), "{}"), r#"{"jsonrpc":"2.0","id":1,"result":{}}"#);
        assert_eq!(
            error_line(&RequestId::Null, &RpcError::with_message(ErrorCode::InvalidRequest, "frame too large")),
            r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"frame too large"}}"#
        );
        assert_eq!(
            error_line(&RequestId::String("x".into()), &RpcError::invalid_params("token")),
            r#"{"jsonrpc":"2.0","id":"x","error":{"code":-32602,"message":"invalid params: token","data":{"field":"token"}}}"#
        );
        assert_eq!(
            notification_line("disconnected", &json!({"reason":"server_full"})).expect("json"),
            r#"{"jsonrpc":"2.0","method":"disconnected","params":{"reason":"server_full"}}"#
        );
    }
}
