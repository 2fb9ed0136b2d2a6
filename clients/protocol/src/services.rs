//! Wire types of backend services (docs/protocol.md §8): what a service
//! sends to register and to call the server, what the server forwards to it,
//! and the session events it receives.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::reason::DisconnectReason;

/// Method and notification names of docs/protocol.md §8.
pub mod service {
    /// `service_register {"key":S,"name":S,"methods":[{"name":S,"auth":B},...]}`
    /// → [`ServiceRegisterResult`](crate::ServiceRegisterResult).
    pub const SERVICE_REGISTER: &str = "service_register";
    /// `service_notify {"account":A or "conn":N,"method":M,"params":OBJECT}` → `{"delivered":B}`.
    pub const SERVICE_NOTIFY: &str = "service_notify";
    /// `service_kick {"account":A or "conn":N}` → `{"kicked":B}`.
    pub const SERVICE_KICK: &str = "service_kick";
    /// The prefix no service method may start with.
    pub const RESERVED_PREFIX: &str = "service_";
    /// Notification to every service: `{"conn":N,"account":A}` when a login succeeds.
    pub const SESSION_STARTED: &str = "session_started";
    /// Notification to every service: `{"conn":N,"account":A,"reason":R}` when that session ends.
    pub const SESSION_ENDED: &str = "session_ended";
}

/// One method a service registers: its name and whether it is **auth**
/// (docs/protocol.md §4: a live `token` is required and removed before forwarding).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceMethod {
    /// `^[a-z][a-z0-9_.]{0,63}$`, not a method of the server, not `service_*`.
    pub name: String,
    /// Whether the method needs a logged-in session (missing: `false`).
    #[serde(default)]
    pub auth: bool,
}

/// Params of `service_register`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceRegisterParams {
    /// The shared secret (`--service-key`).
    pub key: String,
    /// The service's name, for logs and the admin API.
    pub name: String,
    /// The methods it serves.
    pub methods: Vec<ServiceMethod>,
}

impl std::fmt::Debug for ServiceRegisterParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceRegisterParams")
            .field("name", &self.name)
            .field("methods", &self.methods)
            .finish_non_exhaustive()
    }
}

/// Result of `service_register`: `{"name":S,"methods":[S,...]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceRegisterResult {
    /// The service's name as registered.
    pub name: String,
    /// The method names it now serves.
    pub methods: Vec<String>,
}

/// The calling client of a forwarded request: `{"conn":N,"account":A}`
/// (`account` is `null` when the connection is not logged in).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallerSession {
    /// The client connection's id (the `conn` of `service_notify`, `service_kick`).
    pub conn: u64,
    /// The logged-in account, if any.
    pub account: Option<String>,
}

/// Params of a forwarded request as the service receives them:
/// `{"params":P,"session":{"conn":N,"account":A}}` (docs/protocol.md §8).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ForwardedParams {
    /// The client's params as sent (`{}` when missing; without `token` for an **auth** method).
    pub params: Box<RawValue>,
    /// Who called.
    pub session: CallerSession,
}

/// `session_started {"conn":N,"account":A}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionStarted {
    /// The connection's id.
    pub conn: u64,
    /// The account that logged in.
    pub account: String,
}

/// `session_ended {"conn":N,"account":A,"reason":R}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionEnded {
    /// The connection's id.
    pub conn: u64,
    /// The account whose session ended.
    pub account: String,
    /// A docs/protocol.md §5 reason, or `logout`, or `client_closed`
    /// ([`SessionEndReason::as_str`]).
    pub reason: String,
}

/// Why a session ended (the `reason` of `session_ended`, docs/protocol.md §8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SessionEndReason {
    /// The server closed the connection (a kick's reason, `client_request`, ...).
    Closed(DisconnectReason),
    /// The client called `logout`.
    Logout,
    /// The client closed its connection first (or the transport dropped it).
    ClientClosed,
}

impl SessionEndReason {
    /// The wire string: a §5 reason, `logout` or `client_closed`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Closed(reason) => reason.as_str(),
            Self::Logout => "logout",
            Self::ClientClosed => "client_closed",
        }
    }
}

impl std::fmt::Display for SessionEndReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for SessionEndReason {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// Who a `service_notify` or `service_kick` is for: `{"account":A}` or `{"conn":N}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceTarget {
    /// An account name (case-insensitive); wins when both are given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// A connection id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conn: Option<u64>,
}

/// Params of `service_notify` (the fields of [`ServiceTarget`] and the notification).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServiceNotifyParams {
    /// An account name (case-insensitive); wins when both are given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// A connection id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conn: Option<u64>,
    /// The notification's method (not `login_pending`, `kicked`, `disconnected`).
    pub method: String,
    /// The notification's params (an object; missing: `{}`).
    #[serde(default)]
    pub params: Option<serde_json::Map<String, serde_json::Value>>,
}

/// Result of `service_notify`: `{"delivered":B}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivered {
    /// Whether such a client was there and the notification was queued.
    pub delivered: bool,
}

/// Result of `service_kick`: `{"kicked":B}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KickResult {
    /// Whether such a session was there and its kick began (or was under way).
    pub kicked: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_round_trip_and_session_end_strings() {
        for reason in [
            DisconnectReason::DuplicateLogin,
            DisconnectReason::ServerShutdown,
            DisconnectReason::IdleTimeout,
            DisconnectReason::Admin,
            DisconnectReason::LoginTimeout,
            DisconnectReason::ProtocolError,
            DisconnectReason::RateLimited,
            DisconnectReason::ServerFull,
            DisconnectReason::ClientRequest,
        ] {
            assert_eq!(DisconnectReason::from_wire(reason.as_str()), Some(reason));
            assert_eq!(SessionEndReason::Closed(reason).as_str(), reason.as_str());
        }
        assert_eq!(DisconnectReason::from_wire("logout"), None);
        assert_eq!(SessionEndReason::Logout.as_str(), "logout");
        assert_eq!(SessionEndReason::ClientClosed.as_str(), "client_closed");
    }

    #[test]
    fn wire_shapes() {
        let m: ServiceMethod = serde_json::from_str(r#"{"name":"a"}"#).expect("auth may be left out");
        assert!(!m.auth);
        let n: ServiceNotifyParams = serde_json::from_str(r#"{"conn":42,"method":"m"}"#).expect("conn as a number");
        assert_eq!((n.conn, n.account, n.params), (Some(42), None, None));
        let s = serde_json::to_string(&CallerSession { conn: 1, account: None }).expect("json");
        assert_eq!(s, r#"{"conn":1,"account":null}"#);
    }
}
