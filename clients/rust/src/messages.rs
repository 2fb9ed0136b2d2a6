//! What the client hands back besides the typed results of docs/protocol.md §4
//! (those are `portcullis_protocol`'s): server notifications (§5) and the
//! [`ClientEvent`] stream.

use portcullis_protocol::SaveResult;
use serde_json::{Map, Value};

use super::ClientError;

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
    /// A request from the server (a message with `method` and `id`): the
    /// forwarded client calls a backend service receives (docs/protocol.md
    /// §8). Answer it with [`Client::send_raw_line`](super::Client::send_raw_line),
    /// or let [`Service`](crate::Service) do it.
    Request(IncomingRequest),
}

/// A request the server sent to this connection (docs/protocol.md §8).
#[derive(Debug, Clone, PartialEq)]
pub struct IncomingRequest {
    /// Its `id`, to answer under.
    pub id: Value,
    /// The method.
    pub method: String,
    /// Its `params` (`{}` when missing).
    pub params: Value,
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
