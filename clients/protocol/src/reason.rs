//! Why the server closes a connection (docs/protocol.md §5, the `reason` of
//! `kicked` and `disconnected`).

use serde::{Serialize, Serializer};

/// The reasons of docs/protocol.md §5. `Display` and `Serialize` give the exact
/// wire strings (`duplicate_login`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DisconnectReason {
    /// Another connection logged in to the same account (a kick reason).
    DuplicateLogin,
    /// The server is shutting down (a kick reason for logged-in sessions).
    ServerShutdown,
    /// No message arrived for `idle_timeout` (a kick reason for logged-in sessions).
    IdleTimeout,
    /// Kicked by server code or an operator (a kick reason).
    Admin,
    /// The connection did not log in within `login_timeout`.
    LoginTimeout,
    /// Too many protocol errors, or a frame too large.
    ProtocolError,
    /// Too many frames refused by the rate limiter.
    RateLimited,
    /// `max_connections` were open.
    ServerFull,
    /// The client sent `disconnect`.
    ClientRequest,
}

impl DisconnectReason {
    /// Every reason, in the order of [`DisconnectReason::index`] (for tables
    /// indexed by reason, e.g. the server's counters per reason).
    pub const ALL: [Self; 9] = [
        Self::DuplicateLogin,
        Self::ServerShutdown,
        Self::IdleTimeout,
        Self::Admin,
        Self::LoginTimeout,
        Self::ProtocolError,
        Self::RateLimited,
        Self::ServerFull,
        Self::ClientRequest,
    ];

    /// The position of this reason in [`DisconnectReason::ALL`] (0..9).
    pub const fn index(self) -> usize {
        match self {
            Self::DuplicateLogin => 0,
            Self::ServerShutdown => 1,
            Self::IdleTimeout => 2,
            Self::Admin => 3,
            Self::LoginTimeout => 4,
            Self::ProtocolError => 5,
            Self::RateLimited => 6,
            Self::ServerFull => 7,
            Self::ClientRequest => 8,
        }
    }

    /// The wire string.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::DuplicateLogin => "duplicate_login",
            Self::ServerShutdown => "server_shutdown",
            Self::IdleTimeout => "idle_timeout",
            Self::Admin => "admin",
            Self::LoginTimeout => "login_timeout",
            Self::ProtocolError => "protocol_error",
            Self::RateLimited => "rate_limited",
            Self::ServerFull => "server_full",
            Self::ClientRequest => "client_request",
        }
    }

    /// The reason for its wire string (`None` for any other text).
    pub fn from_wire(text: &str) -> Option<Self> {
        Some(match text {
            "duplicate_login" => Self::DuplicateLogin,
            "server_shutdown" => Self::ServerShutdown,
            "idle_timeout" => Self::IdleTimeout,
            "admin" => Self::Admin,
            "login_timeout" => Self::LoginTimeout,
            "protocol_error" => Self::ProtocolError,
            "rate_limited" => Self::RateLimited,
            "server_full" => Self::ServerFull,
            "client_request" => Self::ClientRequest,
            _ => return None,
        })
    }
}

impl std::fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for DisconnectReason {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod index_tests {
    use super::DisconnectReason;

    #[test]
    fn all_lists_every_reason_at_its_index() {
        for (i, reason) in DisconnectReason::ALL.iter().enumerate() {
            assert_eq!(reason.index(), i, "{reason}");
        }
    }
}
