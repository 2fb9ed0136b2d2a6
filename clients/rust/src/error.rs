//! [`ClientError`]: every way a client call can fail.

use portcullis_protocol::ErrorCode;
use serde_json::Value;

/// Why a [`Client`](super::Client) call failed.
///
/// Server answers keep their JSON-RPC code in [`ClientError::Rpc`]; branch on
/// [`ClientError::code`] (docs/protocol.md §3 says clients branch on the code only).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The server answered the request with a JSON-RPC error object
    /// `{"code":C,"message":S,"data":D}` (docs/protocol.md §2–§3).
    #[error("server error {code}: {message}")]
    Rpc {
        /// The error code; codes docs/protocol.md §3 does not list become [`ErrorCode::Other`].
        code: ErrorCode,
        /// The server's `message`, a short English sentence (do not branch on it).
        message: String,
        /// The server's `data` member when it sent one, e.g. `{"field":"token"}` for -32602.
        data: Option<Value>,
    },
    /// No response within [`ClientConfig::rpc_timeout`](super::ClientConfig::rpc_timeout)
    /// (docs/protocol.md §7). The client has closed the connection; every call that
    /// was pending then fails with `Timeout` too, and later calls with
    /// [`ClientError::Closed`]. Also returned when connecting takes longer than
    /// [`ClientConfig::connect_timeout`](super::ClientConfig::connect_timeout).
    #[error("no response within the RPC timeout")]
    Timeout,
    /// The connection is closed: the server closed it, or the client did
    /// ([`Client::close`](super::Client::close), a timeout, an error).
    #[error("connection closed{}", fmt_reason(.reason.as_deref()))]
    Closed {
        /// The `reason` of the server's `disconnected` notification (docs/protocol.md §5),
        /// e.g. `"server_full"`, when the server sent one before closing.
        reason: Option<String>,
    },
    /// Connecting (TCP), reading or writing the socket failed. A call pending when
    /// a read or write fails gets a copy of that error (same kind and text).
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// The address given to [`Client::connect`](super::Client::connect) is
    /// not one of the [`Endpoint`](super::Endpoint) forms (`HOST:PORT`,
    /// `tls://HOST:PORT`, `ws://…`, `wss://…`); the text says what is wrong,
    /// e.g. `unsupported scheme "http"`. Nothing was sent.
    #[error("bad address: {0}")]
    Address(String),
    /// TLS failed (docs/protocol.md §1.2): the CA file of
    /// [`ClientConfig::ca_file`](super::ClientConfig::ca_file) or the system's
    /// roots could not be loaded, or the handshake failed (a certificate that
    /// is not trusted or not valid for the host, a server that does not speak
    /// TLS on that port).
    #[error("TLS error: {0}")]
    Tls(String),
    /// The WebSocket upgrade failed (docs/protocol.md §1.1): the server answered
    /// the upgrade request with another HTTP status, or does not speak HTTP
    /// on that port.
    #[error("WebSocket error: {0}")]
    WebSocket(String),
    /// The server sent something that is not JSON-RPC 2.0 as docs/protocol.md §1–§2
    /// define it (not UTF-8 JSON, a line or message over
    /// [`ClientConfig::max_line_bytes`](super::ClientConfig::max_line_bytes),
    /// a binary WebSocket message,
    /// a response without `result`/`error`, a result of the wrong shape for a
    /// typed call, ...). An unparseable line closes the connection and fails
    /// the pending calls with this error; a badly shaped result only fails its
    /// own call.
    #[error("protocol error: {0}")]
    Protocol(String),
}

impl ClientError {
    /// The JSON-RPC error code of a [`ClientError::Rpc`]; `None` for every other variant.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Self::Rpc { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// The server's close reason of a [`ClientError::Closed`] (docs/protocol.md §5
    /// reasons such as `"duplicate_login"`); `None` for every other variant
    /// and when the server sent no `disconnected` notification.
    pub fn close_reason(&self) -> Option<&str> {
        match self {
            Self::Closed { reason } => reason.as_deref(),
            _ => None,
        }
    }
}

/// ` (reason)` or nothing, for the `Closed` message.
fn fmt_reason(reason: Option<&str>) -> String {
    reason.map(|reason| format!(" ({reason})")).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_and_code() {
        let closed = ClientError::Closed { reason: Some("server_full".into()) };
        assert_eq!(closed.to_string(), "connection closed (server_full)");
        assert_eq!(closed.close_reason(), Some("server_full"));
        assert_eq!(ClientError::Closed { reason: None }.to_string(), "connection closed");
        let rpc = ClientError::Rpc { code: ErrorCode::NotLoggedIn, message: "not logged in".into(), data: None };
        assert_eq!(rpc.code(), Some(ErrorCode::NotLoggedIn));
        assert_eq!(ClientError::Timeout.code(), None);
    }
}
