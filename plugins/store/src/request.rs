//! The messages between the caller and the store: [`StoreRequest`] in,
//! [`StoreReply`] out.

use std::fmt;

/// An account as the game sees it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Account {
    /// Row id; stable for the life of the account.
    pub id: i64,
    /// The spelling given at registration (lookups ignore ASCII case).
    pub name: String,
}

/// A request to the store, submitted with [`Store::submit`](crate::Store::submit).
///
/// Requests run in submission order: a [`LoadUserdata`](Self::LoadUserdata)
/// submitted after a [`SaveUserdata`](Self::SaveUserdata) of the same account
/// sees that save. Requests that need password hashing
/// ([`VerifyPassword`](Self::VerifyPassword), [`Register`](Self::Register),
/// [`ChangePassword`](Self::ChangePassword)) read and write the database in
/// that order too, but their replies may come after the replies of requests
/// submitted later.
///
/// `Debug` never shows passwords or user data.
#[derive(Clone, PartialEq, Eq)]
pub enum StoreRequest {
    /// Checks a password login. Replies [`StoreOk::Account`] or
    /// [`StoreFailure::InvalidCredentials`]; an unknown account and a wrong
    /// password look the same, in the reply and in its timing (an unknown
    /// account is verified against a dummy hash).
    VerifyPassword {
        /// Account name, any ASCII case.
        account: String,
        /// The password to check.
        password: String,
    },
    /// Creates an account. Replies [`StoreOk::Account`] or
    /// [`StoreFailure::AccountExists`] (names are unique ignoring ASCII case).
    /// The caller has already checked [`validate_new_account`](crate::validate_new_account).
    Register {
        /// Account name, stored in this spelling.
        account: String,
        /// Its password.
        password: String,
    },
    /// Replaces a password after checking the old one. Replies
    /// [`StoreOk::Done`] or [`StoreFailure::InvalidCredentials`] (old password
    /// wrong). The caller has already checked
    /// [`validate_new_password`](crate::validate_new_password).
    ChangePassword {
        /// The logged-in account.
        account_id: i64,
        /// Its current password.
        old_password: String,
        /// The password that replaces it.
        new_password: String,
    },
    /// Appends a version to the account's user data history. Replies
    /// [`StoreOk::Saved`] once the version is committed.
    SaveUserdata {
        /// The logged-in account.
        account_id: i64,
        /// Compact JSON text of an object (checked by the caller).
        data: String,
    },
    /// Reads the newest version of the account's user data. Replies
    /// [`StoreOk::Userdata`].
    LoadUserdata {
        /// The logged-in account.
        account_id: i64,
    },
    /// Claims the account for this node in the session directory of a
    /// cluster (docs/cluster.md). Replies [`StoreOk::Claim`]: claimed, held
    /// by another live node (which is asked to kick its session; wait for
    /// [`StoreEvent::Released`](crate::StoreEvent::Released) and claim
    /// again), or another node is already taking it over. Runs in its own
    /// transaction after the batch it arrived in. A store that is not
    /// [`shared`](crate::Store::is_shared) claims every account at once.
    Claim {
        /// The account that logs in.
        account_id: i64,
    },
    /// Gives up this node's claim of the account (its session ended), or
    /// its wish to take the account over (the waiting login went). A node
    /// waiting to take the account over gets it handed over. Replies
    /// [`StoreOk::Done`]; runs in its own transaction after the batch it
    /// arrived in, so the saves submitted before it are committed first.
    Release {
        /// The account whose session ended here.
        account_id: i64,
    },
}

impl StoreRequest {
    /// The request's name, for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::VerifyPassword { .. } => "verify_password",
            Self::Register { .. } => "register",
            Self::ChangePassword { .. } => "change_password",
            Self::SaveUserdata { .. } => "save_userdata",
            Self::LoadUserdata { .. } => "load_userdata",
            Self::Claim { .. } => "claim",
            Self::Release { .. } => "release",
        }
    }
}

impl fmt::Debug for StoreRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const REDACTED: &str = "<redacted>";
        match self {
            Self::VerifyPassword { account, .. } => {
                f.debug_struct("VerifyPassword").field("account", account).field("password", &REDACTED).finish()
            }
            Self::Register { account, .. } => {
                f.debug_struct("Register").field("account", account).field("password", &REDACTED).finish()
            }
            Self::ChangePassword { account_id, .. } => f
                .debug_struct("ChangePassword")
                .field("account_id", account_id)
                .field("old_password", &REDACTED)
                .field("new_password", &REDACTED)
                .finish(),
            Self::SaveUserdata { account_id, data } => {
                f.debug_struct("SaveUserdata").field("account_id", account_id).field("data_bytes", &data.len()).finish()
            }
            Self::LoadUserdata { account_id } => {
                f.debug_struct("LoadUserdata").field("account_id", account_id).finish()
            }
            Self::Claim { account_id } => f.debug_struct("Claim").field("account_id", account_id).finish(),
            Self::Release { account_id } => f.debug_struct("Release").field("account_id", account_id).finish(),
        }
    }
}

/// A committed user data version, the answer to
/// [`StoreRequest::SaveUserdata`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SavedVersion {
    /// 1, 2, 3, ... per account.
    pub version: u64,
    /// Commit time, Unix milliseconds (see [`format_saved_at`](crate::format_saved_at)).
    pub saved_at_ms: i64,
}

/// The newest user data of an account, the answer to
/// [`StoreRequest::LoadUserdata`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Userdata {
    /// The JSON text exactly as saved.
    pub data: String,
    /// Its version, as the save returned it.
    pub version: u64,
    /// Its commit time, as the save returned it.
    pub saved_at_ms: i64,
}

/// A successful answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreOk {
    /// Answer to `VerifyPassword` and `Register`.
    Account(Account),
    /// Answer to `ChangePassword` and `Release`.
    Done,
    /// Answer to `Claim`.
    Claim(ClaimOutcome),
    /// Answer to `SaveUserdata`.
    Saved(SavedVersion),
    /// Answer to `LoadUserdata`; `None` when the account has no data yet.
    Userdata(Option<Userdata>),
}

/// What a [`StoreRequest::Claim`] found in the session directory
/// (docs/cluster.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimOutcome {
    /// The account is this node's now: log the session in.
    Claimed,
    /// Another live node holds the account; it was asked to kick its
    /// session (`duplicate_login`) and this node is recorded as the one
    /// taking over. Claim again when
    /// [`StoreEvent::Released`](crate::StoreEvent::Released) names the
    /// account, or at [`StoreEvent::Retry`](crate::StoreEvent::Retry)
    /// (the holder's lease may run out).
    Held,
    /// Another live node is already taking the account over
    /// (docs/protocol.md §6: `LOGIN_IN_PROGRESS`).
    InProgress,
}

/// Something the session directory of a cluster tells this node without
/// being asked (docs/cluster.md), read from
/// [`Store::events`](crate::Store::events). A store that is not
/// [`shared`](crate::Store::is_shared) sends none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreEvent {
    /// Another node wants the account's session on this node kicked with
    /// `duplicate_login`; release the claim when it is gone (at once if
    /// there is none).
    KickRequested {
        /// The account.
        account_id: i64,
    },
    /// A node released its claim of the account: a login waiting to take
    /// it over claims again.
    Released {
        /// The account.
        account_id: i64,
    },
    /// Time to claim again for every login still waiting (a lease may have
    /// run out, a notification may have been lost while the database was
    /// unreachable). Sent a few times per lease.
    Retry,
    /// This node could not renew its lease for two thirds of it (the
    /// database is unreachable): other nodes may soon take its accounts
    /// over, so its sessions should end now (docs/cluster.md, "Partition").
    /// Sent once per outage.
    LeaseLost,
}

/// A failed answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreFailure {
    /// Unknown account or wrong password (they are not told apart).
    #[error("invalid credentials")]
    InvalidCredentials,
    /// `Register` of a name that exists (ignoring ASCII case).
    #[error("account exists")]
    AccountExists,
    /// Storage failure (disk full, database locked, ...): the request had no
    /// effect. The text is for logs, not for clients.
    #[error("storage failure: {0}")]
    Internal(String),
}

/// The answer to one request, read from [`Store::replies`](crate::Store::replies).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreReply {
    /// The `tag` given to [`Store::submit`](crate::Store::submit).
    pub tag: u64,
    /// What happened.
    pub result: Result<StoreOk, StoreFailure>,
}

/// Why [`Store::submit`](crate::Store::submit) refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    /// The queue holds [`StoreConfig::queue_capacity`](crate::StoreConfig::queue_capacity)
    /// requests: the store is overloaded. Nothing was queued.
    #[error("store queue is full")]
    Full,
    /// The store's thread is gone. Nothing was queued.
    #[error("store is closed")]
    Closed,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_passwords_or_data() {
        let requests = [
            StoreRequest::VerifyPassword { account: "alice1".into(), password: "hunter2secret".into() },
            StoreRequest::Register { account: "alice1".into(), password: "hunter2secret".into() },
            StoreRequest::ChangePassword {
                account_id: 1,
                old_password: "hunter2secret".into(),
                new_password: "hunter3secret".into(),
            },
            StoreRequest::SaveUserdata { account_id: 1, data: r#"{"hunter2secret":1}"#.into() },
        ];
        for request in requests {
            let text = format!("{request:?}");
            assert!(!text.contains("hunter"), "{text}");
        }
        let text = format!("{:?}", StoreRequest::VerifyPassword { account: "alice1".into(), password: String::new() });
        assert!(text.contains("alice1"), "{text}");
    }
}
