//! The JSON-RPC 2.0 lines the server writes (docs/protocol.md §2): a result,
//! an error, a notification. Exact bytes: tests compare whole lines.

use serde::Serialize;
use serde_json::Value;

use crate::error::RpcError;
use crate::id::RequestId;

/// `{"jsonrpc":"2.0","id":ID,"result":RESULT}` with `result` serialized
/// straight into the line: the same bytes as [`result_line`] of its JSON
/// text, in one pass and one allocation.
///
/// # Errors
/// When `result` does not serialize (a map with non-string keys, a failing
/// `Serialize` impl).
pub fn result_line_of<R: Serialize + ?Sized>(id: &RequestId, result: &R) -> Result<String, serde_json::Error> {
    // Room for the envelope and a small result (a `ping`'s line is ~75
    // bytes), so that most lines are written without growing.
    let mut line = Vec::with_capacity(128);
    line.extend_from_slice(br#"{"jsonrpc":"2.0","id":"#);
    serde_json::to_writer(&mut line, id)?;
    line.extend_from_slice(br#","result":"#);
    serde_json::to_writer(&mut line, result)?;
    line.push(b'}');
    // serde_json writes UTF-8 only.
    String::from_utf8(line).map_err(|e| serde::ser::Error::custom(e.to_string()))
}

/// `{"jsonrpc":"2.0","id":ID,"result":RESULT}` where `result_json` is JSON text.
pub fn result_line(id: &RequestId, result_json: &str) -> String {
    answer_line(id, "result", result_json)
}

/// `{"jsonrpc":"2.0","id":ID,"KEY":JSON}`, `json` written as it is.
fn answer_line(id: &RequestId, key: &str, json: &str) -> String {
    let id = id.to_json();
    let mut line = String::with_capacity(29 + key.len() + id.len() + json.len());
    line.push_str(r#"{"jsonrpc":"2.0","id":"#);
    line.push_str(&id);
    line.push_str(",\"");
    line.push_str(key);
    line.push_str("\":");
    line.push_str(json);
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

/// `{"jsonrpc":"2.0","id":ID,"error":ERROR}` where `error_json` is the JSON
/// text of an error object, written as it is (an error relayed unchanged,
/// docs/protocol.md §8).
pub fn raw_error_line(id: &RequestId, error_json: &str) -> String {
    answer_line(id, "error", error_json)
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
    use crate::ErrorCode;
    use serde_json::json;

    #[test]
    fn result_line_of_matches_result_line() {
        for id in [RequestId::Null, RequestId::Number(-7), RequestId::String("a\"b".into())] {
            let result = json!({"server_time_ms": 5, "x": [1, "y"]});
            let text = serde_json::to_string(&result).expect("serializes");
            assert_eq!(result_line_of(&id, &result).expect("serializes"), result_line(&id, &text));
        }
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
