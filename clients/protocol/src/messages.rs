//! Params and results of the built-in methods (docs/protocol.md §4), as
//! the client sends and the server answers them.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// `{}`, the result of methods that return nothing (`logout`,
/// `change_password`, `disconnect`), and the params of those that take none.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Empty {}

/// Params of a password `login`: `{"account":S,"password":S}`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PasswordLoginParams<'a> {
    /// Account name (case-insensitive).
    pub account: &'a str,
    /// Password.
    pub password: &'a str,
}

/// Params of a token `login`: `{"token":S}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenLoginParams<'a> {
    /// The live token of this connection's session.
    pub token: &'a str,
}

/// Result of `login`: `{"account":S,"token":S}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginResult {
    /// The account name as spelled at registration (names compare
    /// case-insensitively, docs/protocol.md §4).
    pub account: String,
    /// The session token: 64 lowercase hex characters, valid while this
    /// connection lives and the session is not logged out.
    pub token: String,
}

/// Params of `register`: `{"account":S,"password":S}`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterParams {
    /// `^[0-9A-Za-z]{6,16}$`.
    pub account: String,
    /// 6 to 64 characters.
    pub password: String,
}

/// Result of `register`: `{"account":S}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterResult {
    /// The account name as registered.
    pub account: String,
}

/// Params of `change_password` (besides the `token` of an **auth** method).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangePasswordParams {
    /// The current password.
    pub old_password: String,
    /// The new password (the `register` rule).
    pub new_password: String,
}

// Params that carry a password print without it.
impl std::fmt::Debug for PasswordLoginParams<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordLoginParams").field("account", &self.account).finish_non_exhaustive()
    }
}

impl std::fmt::Debug for RegisterParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegisterParams").field("account", &self.account).finish_non_exhaustive()
    }
}

impl std::fmt::Debug for ChangePasswordParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChangePasswordParams").finish_non_exhaustive()
    }
}

/// Result of `userdata_save`: `{"version":N,"saved_at":S}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SaveResult {
    /// The new version number: 1, 2, 3, ... per account.
    pub version: u64,
    /// The commit time, exactly `YYYY-MM-DDTHH:MM:SS.mmmZ` (UTC).
    pub saved_at: String,
}

/// Result of `userdata_load`: `{"data":OBJECT,"version":N,"saved_at":S}`.
///
/// `data` is kept as written, every number and string exactly as stored
/// (docs/protocol.md §4); [`LoadResult::data_value`] parses it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoadResult {
    /// The newest saved data of the account (a JSON object), as stored.
    pub data: Box<RawValue>,
    /// Its version, as returned by the `userdata_save` that stored it.
    pub version: u64,
    /// Its commit time, as returned by that `userdata_save`.
    pub saved_at: String,
}

impl LoadResult {
    /// `data` parsed as a JSON value (numbers keep their digits).
    ///
    /// # Errors
    /// When `data` is not valid JSON (it always is when read off the wire).
    pub fn data_value(&self) -> Result<serde_json::Value, serde_json::Error> {
        serde_json::from_str(self.data.get())
    }
}

/// Two results are equal when their `data` text, version and time are.
impl PartialEq for LoadResult {
    fn eq(&self, other: &Self) -> bool {
        self.data.get() == other.data.get() && self.version == other.version && self.saved_at == other.saved_at
    }
}

/// Result of `ping`: `{"server_time_ms":N}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PingResult {
    /// Server wall clock, Unix time in milliseconds.
    pub server_time_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_round_trip_exactly() {
        let text = r#"{"data":{"a":18446744073709551617,"b":0.10},"version":3,"saved_at":"2026-01-01T00:00:00.000Z"}"#;
        let load: LoadResult = serde_json::from_str(text).expect("parses");
        assert_eq!(serde_json::to_string(&load).expect("json"), text);
        let value: serde_json::Value = serde_json::from_str(text).expect("value");
        let from_value: LoadResult = serde_json::from_value(value).expect("from a value too");
        assert_eq!(from_value, load);
        assert_eq!(from_value.data_value().expect("json")["a"].to_string(), "18446744073709551617");
        let save = SaveResult { version: 1, saved_at: "t".into() };
        assert_eq!(serde_json::to_string(&save).expect("json"), r#"{"version":1,"saved_at":"t"}"#);
        assert_eq!(serde_json::to_string(&Empty {}).expect("json"), "{}");
        let login = PasswordLoginParams { account: "a", password: "p" };
        assert_eq!(serde_json::to_string(&login).expect("json"), r#"{"account":"a","password":"p"}"#);
    }
}
