//! The request id of docs/protocol.md §2.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A request id: a string, a number without fraction or exponent in the
/// signed 64-bit range, or `null` (docs/protocol.md §2). Echoed unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(untagged)]
pub enum RequestId {
    /// `"id": null` (still a request, answered with `"id": null`).
    Null,
    /// An integer id.
    Number(i64),
    /// A string id.
    String(String),
}

impl<'de> Deserialize<'de> for RequestId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        Self::from_value(&value).ok_or_else(|| serde::de::Error::custom("invalid JSON-RPC id"))
    }
}

impl RequestId {
    /// Reads an `id` member; `None` when it is not a valid id. A number is
    /// valid only as written without fraction or exponent (`1`, `-0`), not
    /// `1.0`, `1e3` or one beyond the signed 64-bit range (docs/protocol.md §2).
    pub fn from_value(value: &Value) -> Option<Self> {
        match value {
            Value::Null => Some(Self::Null),
            Value::String(s) => Some(Self::String(s.clone())),
            Value::Number(n) => {
                // Numbers keep the digits as written (serde_json `arbitrary_precision`).
                let text = n.to_string();
                let digits = text.strip_prefix('-').unwrap_or(&text);
                let integer = !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit());
                if integer { text.parse().ok().map(Self::Number) } else { None }
            }
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
