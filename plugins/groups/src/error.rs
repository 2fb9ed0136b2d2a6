//! The errors of the group methods and their wire codes (docs/groups.md).

use portcullis_rpc::{ErrorCode, RpcError};

/// `GROUP_NOT_FOUND`: no group has this id.
pub const GROUP_NOT_FOUND: i64 = 2001;
/// `WRONG_KEY`: the group exists but the key does not match.
pub const WRONG_KEY: i64 = 2002;
/// `GROUP_EXISTS`: `group_create` with an id that is taken.
pub const GROUP_EXISTS: i64 = 2003;
/// `NOT_A_MEMBER`: the caller's session is not a member of the group.
pub const NOT_A_MEMBER: i64 = 2004;
/// `GROUP_FULL`: the group already has [`GroupsConfig::max_members`](crate::GroupsConfig::max_members) members.
pub const GROUP_FULL: i64 = 2005;
/// `TOO_MANY_GROUPS`: the server already holds [`GroupsConfig::max_groups`](crate::GroupsConfig::max_groups) groups.
pub const TOO_MANY_GROUPS: i64 = 2006;
/// `MEMBERSHIP_LIMIT`: the caller's session is already in
/// [`GroupsConfig::max_memberships`](crate::GroupsConfig::max_memberships) groups.
pub const MEMBERSHIP_LIMIT: i64 = 2007;

/// Why a group method refused a request (the method's own errors; bad
/// params are `-32602` and the session's errors come from the session gate).
///
/// Converts into the [`RpcError`] the client receives, with the code
/// [`ErrorCode::Other`] of the matching constant of this module.
///
/// # Examples
///
/// ```
/// use portcullis_groups::{GroupError, WRONG_KEY};
/// use portcullis_rpc::RpcError;
///
/// let error = RpcError::from(GroupError::WrongKey);
/// assert_eq!(error.code.code(), WRONG_KEY);
/// assert_eq!(GroupError::WrongKey.name(), "WRONG_KEY");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GroupError {
    /// 2001: no group has this id.
    #[error("group not found")]
    NotFound,
    /// 2002: the key does not match the group's key.
    #[error("wrong group key")]
    WrongKey,
    /// 2003: a group with this id already exists.
    #[error("group already exists")]
    Exists,
    /// 2004: the session is not a member of the group.
    #[error("not a member of the group")]
    NotAMember,
    /// 2005: the group is full.
    #[error("group is full")]
    Full,
    /// 2006: the server holds as many groups as it allows.
    #[error("too many groups on the server")]
    TooManyGroups,
    /// 2007: the session is in as many groups as it may be.
    #[error("session is in too many groups")]
    MembershipLimit,
}

impl GroupError {
    /// The numeric code sent on the wire (2001–2007).
    pub const fn code(self) -> i64 {
        match self {
            Self::NotFound => GROUP_NOT_FOUND,
            Self::WrongKey => WRONG_KEY,
            Self::Exists => GROUP_EXISTS,
            Self::NotAMember => NOT_A_MEMBER,
            Self::Full => GROUP_FULL,
            Self::TooManyGroups => TOO_MANY_GROUPS,
            Self::MembershipLimit => MEMBERSHIP_LIMIT,
        }
    }

    /// The symbolic name used in docs/groups.md (`GROUP_NOT_FOUND`, ...).
    pub const fn name(self) -> &'static str {
        match self {
            Self::NotFound => "GROUP_NOT_FOUND",
            Self::WrongKey => "WRONG_KEY",
            Self::Exists => "GROUP_EXISTS",
            Self::NotAMember => "NOT_A_MEMBER",
            Self::Full => "GROUP_FULL",
            Self::TooManyGroups => "TOO_MANY_GROUPS",
            Self::MembershipLimit => "MEMBERSHIP_LIMIT",
        }
    }
}

impl From<GroupError> for RpcError {
    fn from(error: GroupError) -> Self {
        RpcError::with_message(ErrorCode::Other(error.code()), error.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_distinct_and_in_the_2000s() {
        let all = [
            GroupError::NotFound,
            GroupError::WrongKey,
            GroupError::Exists,
            GroupError::NotAMember,
            GroupError::Full,
            GroupError::TooManyGroups,
            GroupError::MembershipLimit,
        ];
        for (i, e) in all.iter().enumerate() {
            assert_eq!(e.code(), 2001 + i as i64);
            assert_eq!(RpcError::from(*e).code, ErrorCode::Other(e.code()));
        }
    }
}
