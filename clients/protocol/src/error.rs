//! JSON-RPC error codes and the error value a method returns (docs/protocol.md §3).

use serde_json::Value;

/// Every error code of docs/protocol.md §3.
///
/// Clients branch on the code only; [`ErrorCode::message`] is the short
/// English sentence the server puts in `error.message`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// -32700: the frame is not valid JSON / UTF-8 (answered with `"id": null`).
    ParseError,
    /// -32600: not a JSON-RPC 2.0 request object, a bad `id`, a frame too large or a batch.
    InvalidRequest,
    /// -32601: no method of that name is registered.
    MethodNotFound,
    /// -32602: a parameter is missing or has the wrong type or size; `data.field` names it.
    InvalidParams,
    /// -32603: the server failed (storage error, ...); the request had no effect.
    InternalError,
    /// 1001: the method needs a logged-in session and this connection has none.
    NotLoggedIn,
    /// 1002: unknown account or wrong password (the same answer for both).
    InvalidCredentials,
    /// 1003: the token is not the live token of this connection's session.
    TokenInvalid,
    /// 1004: the account has no saved user data yet.
    NoUserdata,
    /// 1005: this connection is logged in as another account.
    AlreadyLoggedIn,
    /// 1006: this session is being kicked (docs/protocol.md §6 lists what it may still do).
    SessionClosing,
    /// 1007: too many requests on this connection; the request was not executed.
    RateLimited,
    /// 1008: a login for this account (or on this connection) is already waiting.
    LoginInProgress,
    /// 1009: `register` with a taken account name.
    AccountExists,
    /// 1010: account name or password breaks the rules of `register`.
    InvalidAccount,
    /// 1011: the server is shutting down, or its storage queue is full (also:
    /// every backend service of the method is full, docs/protocol.md §8).
    ServerBusy,
    /// 1012: the method belongs to a backend service and no service for it
    /// answered in time (docs/protocol.md §8).
    ServiceUnavailable,
    /// A code this version does not know (seen by clients talking to newer servers,
    /// or used by game methods for their own errors).
    Other(i64),
}

impl ErrorCode {
    /// The numeric code sent on the wire.
    pub const fn code(self) -> i64 {
        match self {
            Self::ParseError => -32700,
            Self::InvalidRequest => -32600,
            Self::MethodNotFound => -32601,
            Self::InvalidParams => -32602,
            Self::InternalError => -32603,
            Self::NotLoggedIn => 1001,
            Self::InvalidCredentials => 1002,
            Self::TokenInvalid => 1003,
            Self::NoUserdata => 1004,
            Self::AlreadyLoggedIn => 1005,
            Self::SessionClosing => 1006,
            Self::RateLimited => 1007,
            Self::LoginInProgress => 1008,
            Self::AccountExists => 1009,
            Self::InvalidAccount => 1010,
            Self::ServerBusy => 1011,
            Self::ServiceUnavailable => 1012,
            Self::Other(code) => code,
        }
    }

    /// The code for a number read off the wire; unknown numbers become [`ErrorCode::Other`].
    pub const fn from_code(code: i64) -> Self {
        match code {
            -32700 => Self::ParseError,
            -32600 => Self::InvalidRequest,
            -32601 => Self::MethodNotFound,
            -32602 => Self::InvalidParams,
            -32603 => Self::InternalError,
            1001 => Self::NotLoggedIn,
            1002 => Self::InvalidCredentials,
            1003 => Self::TokenInvalid,
            1004 => Self::NoUserdata,
            1005 => Self::AlreadyLoggedIn,
            1006 => Self::SessionClosing,
            1007 => Self::RateLimited,
            1008 => Self::LoginInProgress,
            1009 => Self::AccountExists,
            1010 => Self::InvalidAccount,
            1011 => Self::ServerBusy,
            1012 => Self::ServiceUnavailable,
            other => Self::Other(other),
        }
    }

    /// The symbolic name used in docs/protocol.md §3 (`NOT_LOGGED_IN`, `PARSE_ERROR`, ...).
    pub const fn name(self) -> &'static str {
        match self {
            Self::ParseError => "PARSE_ERROR",
            Self::InvalidRequest => "INVALID_REQUEST",
            Self::MethodNotFound => "METHOD_NOT_FOUND",
            Self::InvalidParams => "INVALID_PARAMS",
            Self::InternalError => "INTERNAL_ERROR",
            Self::NotLoggedIn => "NOT_LOGGED_IN",
            Self::InvalidCredentials => "INVALID_CREDENTIALS",
            Self::TokenInvalid => "TOKEN_INVALID",
            Self::NoUserdata => "NO_USERDATA",
            Self::AlreadyLoggedIn => "ALREADY_LOGGED_IN",
            Self::SessionClosing => "SESSION_CLOSING",
            Self::RateLimited => "RATE_LIMITED",
            Self::LoginInProgress => "LOGIN_IN_PROGRESS",
            Self::AccountExists => "ACCOUNT_EXISTS",
            Self::InvalidAccount => "INVALID_ACCOUNT",
            Self::ServerBusy => "SERVER_BUSY",
            Self::ServiceUnavailable => "SERVICE_UNAVAILABLE",
            Self::Other(_) => "OTHER",
        }
    }

    /// The default human-readable `message` for this code.
    pub const fn message(self) -> &'static str {
        match self {
            Self::ParseError => "parse error",
            Self::InvalidRequest => "invalid request",
            Self::MethodNotFound => "method not found",
            Self::InvalidParams => "invalid params",
            Self::InternalError => "internal error",
            Self::NotLoggedIn => "not logged in",
            Self::InvalidCredentials => "invalid account or password",
            Self::TokenInvalid => "token invalid",
            Self::NoUserdata => "no user data saved yet",
            Self::AlreadyLoggedIn => "already logged in as another account",
            Self::SessionClosing => "session is closing",
            Self::RateLimited => "rate limited",
            Self::LoginInProgress => "login already in progress",
            Self::AccountExists => "account exists",
            Self::InvalidAccount => "invalid account name or password",
            Self::ServerBusy => "server busy",
            Self::ServiceUnavailable => "service unavailable",
            Self::Other(_) => "error",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.name(), self.code())
    }
}

/// An error answer to one request: `{"code":C,"message":S,"data":D}`.
///
/// Server methods return it and the server writes it as the `error` member
/// of the response; clients read it back with [`ErrorCode::from_code`].
#[derive(Debug, Clone, PartialEq)]
pub struct RpcError {
    /// The code (docs/protocol.md §3).
    pub code: ErrorCode,
    /// A short English sentence; clients must not branch on it.
    pub message: String,
    /// Optional structured detail, e.g. `{"field":"token"}` for -32602.
    pub data: Option<Value>,
}

impl RpcError {
    /// An error with the code's default message and no `data`.
    pub fn new(code: ErrorCode) -> Self {
        Self { code, message: code.message().to_owned(), data: None }
    }

    /// An error with a custom message.
    pub fn with_message(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), data: None }
    }

    /// -32602 naming the first bad field: `"data":{"field":NAME}` (docs/protocol.md §2).
    pub fn invalid_params(field: &str) -> Self {
        Self {
            code: ErrorCode::InvalidParams,
            message: format!("invalid params: {field}"),
            data: Some(serde_json::json!({ "field": field })),
        }
    }
}

impl From<ErrorCode> for RpcError {
    fn from(code: ErrorCode) -> Self {
        Self::new(code)
    }
}

impl std::fmt::Display for RpcError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for RpcError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip() {
        for code in [-32700, -32600, -32601, -32602, -32603, 1001, 1005, 1011, 1012, 4242] {
            assert_eq!(ErrorCode::from_code(code).code(), code);
        }
        assert_eq!(ErrorCode::from_code(1007), ErrorCode::RateLimited);
    }
}
