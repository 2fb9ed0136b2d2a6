//! portcullis_protocol: the wire types of docs/protocol.md, written once for
//! the server and every client.
//!
//! No Bevy and no tokio: a game client and the server crates name the same
//! [`RequestId`], [`ErrorCode`], [`DisconnectReason`], method names
//! ([`method`], [`notification`]) and the params and results of the
//! built-in methods ([`LoginResult`], [`SaveResult`], ...). The line
//! builders ([`result_line`], [`error_line`], [`notification_line`]) write
//! the exact bytes the server sends.
//!
//! # Examples
//!
//! ```
//! use portcullis_protocol::{ErrorCode, LoginResult, RequestId, method, result_line};
//!
//! let result = LoginResult { account: "netease1".into(), token: "ab".into() };
//! let line = result_line(&RequestId::Number(1), &serde_json::to_string(&result).unwrap());
//! assert_eq!(line, r#"{"jsonrpc":"2.0","id":1,"result":{"account":"netease1","token":"ab"}}"#);
//! assert_eq!(method::LOGIN, "login");
//! assert_eq!(ErrorCode::from_code(1001), ErrorCode::NotLoggedIn);
//! ```
#![forbid(unsafe_code)]

mod error;
mod id;
mod line;
mod messages;
mod reason;
mod services;

pub use error::{ErrorCode, RpcError};
pub use id::RequestId;
pub use line::{error_line, notification_line, raw_error_line, result_line, result_line_of};
pub use messages::*;
pub use reason::DisconnectReason;
pub use services::*;

/// Names of the built-in methods (docs/protocol.md §4, docs/groups.md).
pub mod method {
    /// `login {"account":S,"password":S}` or `{"token":S}` → [`LoginResult`](crate::LoginResult).
    pub const LOGIN: &str = "login";
    /// `logout {"token":S}` **auth** → `{}`.
    pub const LOGOUT: &str = "logout";
    /// `userdata_save {"token":S,"data":OBJECT}` **auth** → [`SaveResult`](crate::SaveResult).
    pub const USERDATA_SAVE: &str = "userdata_save";
    /// `userdata_load {"token":S}` **auth** → [`LoadResult`](crate::LoadResult).
    pub const USERDATA_LOAD: &str = "userdata_load";
    /// `register {"account":S,"password":S}` → [`RegisterResult`](crate::RegisterResult).
    pub const REGISTER: &str = "register";
    /// `change_password {"token":S,"old_password":S,"new_password":S}` **auth** → `{}`.
    pub const CHANGE_PASSWORD: &str = "change_password";
    /// `ping {}` → [`PingResult`](crate::PingResult); the keep-alive of docs/protocol.md §6.
    pub const PING: &str = "ping";
    /// `disconnect {}` → `{}`, then `disconnected {"reason":"client_request"}` and a close.
    pub const DISCONNECT: &str = "disconnect";
    /// `group_create` **auth** (docs/groups.md).
    pub const GROUP_CREATE: &str = "group_create";
    /// `group_join` **auth** (docs/groups.md).
    pub const GROUP_JOIN: &str = "group_join";
    /// `group_leave` **auth** (docs/groups.md).
    pub const GROUP_LEAVE: &str = "group_leave";
    /// `group_send` **auth** (docs/groups.md).
    pub const GROUP_SEND: &str = "group_send";
}

/// Names of the notifications the server sends (docs/protocol.md §5, docs/groups.md).
pub mod notification {
    /// `login_pending {"reason":"replacing_session"}`: this login waits for
    /// the account's old session to end (docs/protocol.md §6).
    pub const LOGIN_PENDING: &str = "login_pending";
    /// The one `reason` of `login_pending`.
    pub const REPLACING_SESSION: &str = "replacing_session";
    /// `kicked {"reason":R,"save_deadline_ms":N}`: save now, the session ends.
    pub const KICKED: &str = "kicked";
    /// `disconnected {"reason":R}`: the last line before the server closes.
    pub const DISCONNECTED: &str = "disconnected";
    /// `userdata_changed {"saved_at":S,"version":N}`: server code wrote this account's data.
    pub const USERDATA_CHANGED: &str = "userdata_changed";
    /// `group_message`: a member of a group sent to it (docs/groups.md).
    pub const GROUP_MESSAGE: &str = "group_message";
}
