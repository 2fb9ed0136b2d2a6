//! What the client hands back: typed results of docs/protocol.md §4 methods,
//! server notifications (§5) and the [`ClientEvent`] stream.

use serde::Deserialize;
use serde_json::{Map, Value};

use super::ClientError;

/// The result of a successful `login` (docs/protocol.md §4): `{"account":S,"token":S}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct LoginResult {
    /// The account name as spelled at registration (names compare
    /// case-insensitively, docs/protocol.md §4).
    pub account: String,
    /// The session token: 64 lowercase hex characters, valid while this
    /// connection lives and the session is not logged out.
    pub token: String,
}

/// The result of a successful `userdata_save` (docs/protocol.md §4):
/// `{"version":N,"saved_at":S}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SaveResult {
    /// The new version number: 1, 2, 3, ... per account.
    pub version: u64,
    /// The commit time, exactly `YYYY-MM-DDTHH:MM:SS.mmmZ` (UTC).
    pub saved_at: String,
}

/// The result of a successful `userdata_load` (docs/protocol.md §4):
/// `{"data":OBJECT,"version":N,"saved_at":S}`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct LoadResult {
    /// The newest saved data of the account (a JSON object).
    pub data: Value,
    /// Its version, as returned by the `userdata_save` that stored it.
    pub version: u64,
    /// Its commit time, as returned by that `userdata_save`.
    pub saved_at: String,
}

/// A JSON-RPC notification from the server: a message with `method` and no
/// `id` (docs/protocol.md §2, §5), e.g. `kicked`, `disconnected`, `login_pending`
/// or a game's own notifications.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    /// The notification's `method`, e.g. `"kicked"`.
    pub method: String,
    /// Its `params`; a missing or `null` `params` is given as `{}` (docs/protocol.md §2).
    pub params: Value,
}

impl Notification {
    /// `params.reason` when it is a string: the reason of `kicked`,
    /// `disconnected` and `login_pending` (docs/protocol.md §5), e.g. `"duplicate_login"`.
    pub fn reason(&self) -> Option<&str> {
        self.params.get("reason").and_then(Value::as_str)
    }

    /// Reads `params` off a message object that has a string `method` and no `id`.
    pub(crate) fn new(method: String, params: Option<Value>) -> Self {
        let params = match params {
            None | Some(Value::Null) => Value::Object(Map::new()),
            Some(params) => params,
        };
        Self { method, params }
    }
}

/// What the client reports to the application, in arrival order, through the
/// receiver of [`Client::events`](super::Client::events).
#[derive(Debug)]
#[non_exhaustive]
pub enum ClientEvent {
    /// A server notification (docs/protocol.md §5), `kicked` and `disconnected`
    /// included. A `kicked` notification is reported once the automatic save
    /// it triggers is queued, so whatever the application sends after seeing
    /// it reaches the server after that save.
    Notification(Notification),
    /// The outcome of the `userdata_save` the client sent by itself when it
    /// was `kicked` (docs/protocol.md §6–§7): the save's result, or why it failed
    /// (e.g. [`ClientError::Timeout`], or `Closed` when the deadline passed
    /// first). Only reported when a save was sent, i.e. the client held a
    /// token and had save data.
    KickSave(Result<SaveResult, ClientError>),
    /// A response whose `id` is `null` or matches no call of this client,
    /// given whole (`{"jsonrpc":"2.0","id":null,"error":{...}}`), e.g. the
    /// `-32700` answer to a malformed line sent with
    /// [`Client::send_raw_line`](super::Client::send_raw_line) (docs/protocol.md §1).
    Unmatched(Value),
}

impl ClientEvent {
    /// The notification, if this event is one.
    pub fn notification(&self) -> Option<&Notification> {
        match self {
            Self::Notification(notification) => Some(notification),
            _ => None,
        }
    }
}
