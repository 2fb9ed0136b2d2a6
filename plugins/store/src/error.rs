//! [`StoreError`]: what can go wrong when opening, closing or using the
//! store synchronously.

use crate::{AccountRuleError, SubmitError};

/// Errors of [`Store::open`](crate::Store::open),
/// [`Store::close`](crate::Store::close) and [`Database`](crate::Database).
///
/// Requests submitted to a running store never produce this: they are
/// answered with a [`StoreFailure`](crate::StoreFailure).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// SQLite reported an error (cannot open the file, disk full, locked, ...).
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// PostgreSQL reported an error (cannot connect, refused, ...).
    #[error("PostgreSQL error: {0}")]
    Postgres(#[from] postgres::Error),
    /// The operation is not available on this database engine.
    #[error("{0}")]
    Unsupported(&'static str),
    /// The configuration cannot be used (for example an argon2 cost below
    /// the minimum).
    #[error("invalid store configuration: {0}")]
    InvalidConfig(String),
    /// The database was written by a newer Portcullis whose schema this
    /// version does not know.
    #[error("database schema version {found} is newer than the supported version {supported}")]
    SchemaTooNew {
        /// The schema version of the database.
        found: i64,
        /// The newest schema version this code knows.
        supported: i64,
    },
    /// The file is an SQLite database of another program: it has a schema
    /// version or tables, but not Portcullis's `PRAGMA application_id`.
    #[error("not a Portcullis database (application_id {application_id:#x})")]
    NotPortcullis {
        /// `PRAGMA application_id` of the file.
        application_id: i32,
    },
    /// The missing database file could not be created.
    #[error("cannot create the database file {path:?}: {source}")]
    CreateFile {
        /// The database file.
        path: std::path::PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// Hashing a password failed.
    #[error("password hashing failed: {0}")]
    Hashing(argon2::password_hash::Error),
    /// The account name or password breaks the registration rules.
    #[error(transparent)]
    Rule(#[from] AccountRuleError),
    /// An account with this name (compared case-insensitively) exists.
    #[error("account {0:?} already exists")]
    AccountExists(String),
    /// No account has this name.
    #[error("no account named {0:?}")]
    UnknownAccount(String),
    /// A store thread could not be started.
    #[error("cannot start store thread: {0}")]
    Spawn(#[source] std::io::Error),
    /// A store thread panicked; requests it held may be unanswered.
    #[error("store thread {0} panicked")]
    ThreadPanicked(&'static str),
    /// [`testing::call`](crate::testing::call) could not submit its request.
    #[error("cannot submit: {0}")]
    Submit(#[from] SubmitError),
    /// [`testing::call`](crate::testing::call) got no reply in time.
    #[error("no reply from the store in time")]
    Timeout,
}
