//! The group methods (docs/groups.md): `group_create`, `group_join`,
//! `group_leave`, `group_send`. Each is registered with
//! `add_rpc_method(.., Access::LoggedIn, ..)`, so the session gate has
//! already checked the session and its token when a handler runs.

use bevy_ecs::prelude::*;
use portcullis_protocol::notification;
use portcullis_rpc::{Empty, ErrorCode, Request, Rpc, RpcError};
use portcullis_session::Session;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

use crate::GroupsConfig;
use crate::error::GroupError;
use crate::groups::{Groups, Member};

/// Longest group id, in bytes (ids are ASCII).
pub const MAX_GROUP_ID_BYTES: usize = 64;
/// Longest group key, in bytes (keys are ASCII).
pub const MAX_KEY_BYTES: usize = 64;

/// Whether `id` is a valid group id: 1 to [`MAX_GROUP_ID_BYTES`] characters
/// from `A-Z a-z 0-9 _ - .` (case-sensitive).
///
/// # Examples
///
/// ```
/// use portcullis_groups::is_valid_group_id;
///
/// assert!(is_valid_group_id("team-red_2"));
/// assert!(!is_valid_group_id(""));
/// assert!(!is_valid_group_id("with space"));
/// ```
pub fn is_valid_group_id(id: &str) -> bool {
    (1..=MAX_GROUP_ID_BYTES).contains(&id.len())
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// Whether `key` is a valid group key: 1 to [`MAX_KEY_BYTES`] printable
/// ASCII characters other than space (`!` to `~`).
///
/// # Examples
///
/// ```
/// use portcullis_groups::is_valid_key;
///
/// assert!(is_valid_key("s3cr3t!"));
/// assert!(!is_valid_key("two words"));
/// ```
pub fn is_valid_key(key: &str) -> bool {
    (1..=MAX_KEY_BYTES).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_graphic())
}

/// Params of `group_create`: `{"token":S,"group"?:S,"key"?:S}`. A missing
/// (or `null`) `group` or `key` is chosen by the server.
#[derive(Deserialize)]
pub struct CreateParams {
    /// The id to create; the server assigns one when absent.
    pub group: Option<String>,
    /// The key joiners must give; the server assigns one when absent.
    pub key: Option<String>,
}

impl std::fmt::Debug for CreateParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreateParams").field("group", &self.group).finish_non_exhaustive()
    }
}

/// Result of `group_create`: `{"group":S,"key":S}`.
#[derive(Debug, Clone, Serialize)]
pub struct CreateResult {
    /// The group id (the one asked for, or the server's: `g` + 16 hex digits).
    pub group: String,
    /// The key (the one given, or the server's: 32 lowercase hex digits).
    pub key: String,
}

/// Params of `group_join`: `{"token":S,"group":S,"key":S}`.
#[derive(Deserialize)]
pub struct JoinParams {
    /// The group to join.
    pub group: String,
    /// Its key.
    pub key: String,
}

impl std::fmt::Debug for JoinParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinParams").field("group", &self.group).finish_non_exhaustive()
    }
}

/// Result of `group_join`: `{"group":S,"members":[S,...]}`.
#[derive(Debug, Clone, Serialize)]
pub struct JoinResult {
    /// The group id.
    pub group: String,
    /// Account names of every member, the caller included, in join order.
    pub members: Vec<String>,
}

/// Params of `group_leave`: `{"token":S,"group":S}`.
#[derive(Debug, Deserialize)]
pub struct LeaveParams {
    /// The group to leave.
    pub group: String,
}

/// Params of `group_send`: `{"token":S,"group":S,"message":ANY}`.
#[derive(Debug, Deserialize)]
pub struct SendParams {
    /// The group to send to.
    pub group: String,
    /// Any JSON value but `null`, at most
    /// [`GroupsConfig::max_message_bytes`] as compact JSON.
    pub message: Value,
}

/// Result of `group_send`: `{"delivered":N}`.
#[derive(Debug, Clone, Serialize)]
pub struct SendResult {
    /// How many other members the `group_message` was queued for (members
    /// whose connection is already closing are not counted).
    pub delivered: usize,
}

/// Params of the `group_message` notification:
/// `{"group":S,"from":ACCOUNT,"message":ANY}`.
#[derive(Debug, Serialize)]
pub struct GroupMessage<'a> {
    /// The group id.
    pub group: &'a str,
    /// The sender's account name.
    pub from: &'a str,
    /// The message as the sender gave it (re-serialized compactly).
    pub message: &'a RawValue,
}

/// The calling session as a group member.
fn caller(sessions: &Query<&Session>, entity: Entity) -> Result<Member, RpcError> {
    let account = sessions.get(entity).ok().and_then(Session::account).ok_or(ErrorCode::NotLoggedIn)?;
    Ok(Member { entity, account: account.clone() })
}

fn check_id(id: &str) -> Result<(), RpcError> {
    if is_valid_group_id(id) { Ok(()) } else { Err(RpcError::invalid_params("group")) }
}

fn check_key(key: &str) -> Result<(), RpcError> {
    if is_valid_key(key) { Ok(()) } else { Err(RpcError::invalid_params("key")) }
}

/// A fresh server-chosen group id: `g` + 16 lowercase hex digits, not in use.
fn fresh_id(groups: &Groups) -> String {
    loop {
        let id = format!("g{:016x}", rand::random::<u64>());
        if !groups.contains(&id) {
            return id;
        }
    }
}

/// A fresh server-chosen key: 128 random bits as 32 lowercase hex digits.
fn fresh_key() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// `group_create` **auth**: creates a group with the caller as its only
/// member. Errors, in order: `-32602` (`group`, `key`), GROUP_EXISTS,
/// TOO_MANY_GROUPS, MEMBERSHIP_LIMIT.
pub fn group_create(
    In(req): In<Request<CreateParams>>,
    sessions: Query<&Session>,
    mut groups: ResMut<Groups>,
    config: Res<GroupsConfig>,
) -> Result<CreateResult, RpcError> {
    let CreateParams { group, key } = req.params;
    if let Some(id) = &group {
        check_id(id)?;
    }
    if let Some(key) = &key {
        check_key(key)?;
    }
    let member = caller(&sessions, req.reply_to.entity)?;
    if group.as_deref().is_some_and(|id| groups.contains(id)) {
        return Err(GroupError::Exists.into());
    }
    if groups.len() >= config.max_groups {
        return Err(GroupError::TooManyGroups.into());
    }
    if groups.membership_count(member.entity) >= config.max_memberships {
        return Err(GroupError::MembershipLimit.into());
    }
    let id = group.unwrap_or_else(|| fresh_id(&groups));
    let key = key.unwrap_or_else(fresh_key);
    let account = member.account.name.clone();
    groups.create(id.clone(), key.clone(), member)?;
    bevy_log::info!(group = %id, account = %account, "group created");
    Ok(CreateResult { group: id, key })
}

/// `group_join` **auth**: joins a group with its key; joining a group the
/// session is already in changes nothing and succeeds. Errors, in order:
/// `-32602` (`group`, `key`), GROUP_NOT_FOUND, WRONG_KEY, GROUP_FULL,
/// MEMBERSHIP_LIMIT.
pub fn group_join(
    In(req): In<Request<JoinParams>>,
    sessions: Query<&Session>,
    mut groups: ResMut<Groups>,
    config: Res<GroupsConfig>,
) -> Result<JoinResult, RpcError> {
    let JoinParams { group: id, key } = req.params;
    check_id(&id)?;
    check_key(&key)?;
    let member = caller(&sessions, req.reply_to.entity)?;
    let group = groups.get(&id).ok_or(GroupError::NotFound)?;
    if !group.key_matches(&key) {
        bevy_log::debug!(group = %id, account = %member.account.name, "group join with a wrong key");
        return Err(GroupError::WrongKey.into());
    }
    if !group.contains(member.entity) {
        if group.len() >= config.max_members {
            return Err(GroupError::Full.into());
        }
        if groups.membership_count(member.entity) >= config.max_memberships {
            return Err(GroupError::MembershipLimit.into());
        }
        let account = member.account.name.clone();
        groups.add_member(&id, member)?;
        bevy_log::info!(group = %id, account = %account, "group joined");
    }
    let members = groups.get(&id).map(|g| g.account_names()).unwrap_or_default();
    Ok(JoinResult { group: id, members })
}

/// `group_leave` **auth**: leaves a group; the group is removed when it was
/// the last member. Errors, in order: `-32602` (`group`), GROUP_NOT_FOUND,
/// NOT_A_MEMBER.
pub fn group_leave(In(req): In<Request<LeaveParams>>, mut groups: ResMut<Groups>) -> Result<Empty, RpcError> {
    let id = req.params.group;
    check_id(&id)?;
    let removed = groups.remove_member(&id, req.reply_to.entity)?;
    bevy_log::info!(group = %id, conn = ?req.reply_to.entity, removed, "group left");
    Ok(Empty {})
}

/// `group_send` **auth**: sends `group_message {"group","from","message"}`
/// to every other member (never to the sender). Errors, in order: `-32602`
/// (`group`; `message` when `null` or larger than
/// [`GroupsConfig::max_message_bytes`]), GROUP_NOT_FOUND, NOT_A_MEMBER.
pub fn group_send(
    In(req): In<Request<SendParams>>,
    sessions: Query<&Session>,
    groups: Res<Groups>,
    config: Res<GroupsConfig>,
    rpc: Rpc,
) -> Result<SendResult, RpcError> {
    let SendParams { group: id, message } = req.params;
    check_id(&id)?;
    if message.is_null() {
        return Err(RpcError::invalid_params("message"));
    }
    let compact = RawValue::from_string(message.to_string()).map_err(|_| RpcError::invalid_params("message"))?;
    if compact.get().len() > config.max_message_bytes {
        return Err(RpcError::invalid_params("message"));
    }
    let sender = caller(&sessions, req.reply_to.entity)?;
    let group = groups.get(&id).ok_or(GroupError::NotFound)?;
    if !group.contains(sender.entity) {
        return Err(GroupError::NotAMember.into());
    }
    let others: Vec<Entity> = group.entities().filter(|e| *e != sender.entity).collect();
    let delivered = others.iter().filter(|e| rpc.connection(**e).is_some_and(|c| !c.is_closing())).count();
    let params = GroupMessage { group: &id, from: &sender.account.name, message: &compact };
    rpc.notify_many(others, notification::GROUP_MESSAGE, &params);
    bevy_log::debug!(group = %id, account = %sender.account.name, delivered, "group message sent");
    Ok(SendResult { delivered })
}
