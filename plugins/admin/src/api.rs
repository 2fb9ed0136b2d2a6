//! The JSON shapes of the admin API (docs/cli.md "Admin"), shared by the
//! server and `portcullis admin`.

use serde::{Deserialize, Serialize};

/// One entry of `GET /api/sessions`: one per connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInfo {
    /// The connection id.
    pub conn: u64,
    /// The account, while logged in, kicking or waiting to take it over; else `null`.
    pub account: Option<String>,
    /// `awaiting_login`, `waiting_takeover`, `logged_in`, `kicking` (or
    /// `service`, for a backend service's connection).
    pub state: String,
    /// `tcp` or `ws`.
    pub transport: String,
    /// The peer address, `IP:PORT`.
    pub peer: String,
    /// Milliseconds since the connection was accepted.
    pub connected_ms: u64,
}

/// The body of `POST /api/kick`: exactly one of the two.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KickRequest {
    /// Kick the session of this account (any case).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// Kick this connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conn: Option<u64>,
}

/// The answer of `POST /api/kick`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KickResult {
    /// Whether there was such a session (it is being kicked now).
    pub kicked: bool,
}

/// The body of `POST /api/broadcast`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BroadcastRequest {
    /// The notification's method; not `login_pending`, `kicked` or `disconnected`.
    pub method: String,
    /// Its params: a JSON object.
    pub params: serde_json::Map<String, serde_json::Value>,
}

/// The answer of `POST /api/broadcast`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BroadcastResult {
    /// Logged-in sessions the notification was queued for.
    pub delivered: u64,
}

/// Notifications a broadcast may not send: they belong to the session life
/// cycle (docs/protocol.md §5), and a client acting on a fake one would be
/// misled.
pub const RESERVED_NOTIFICATIONS: [&str; 3] = [
    portcullis_protocol::notification::LOGIN_PENDING,
    portcullis_protocol::notification::KICKED,
    portcullis_protocol::notification::DISCONNECTED,
];

/// The body of every `4xx` answer of the API: `{"error":S}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    /// What was wrong, for a person.
    pub error: String,
}
