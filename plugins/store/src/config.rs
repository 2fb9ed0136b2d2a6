//! [`StoreConfig`]: where the database lives and how hard the store works.

use std::path::PathBuf;

use argon2::Params;

use crate::StoreError;

/// How to open the store: given to [`Store::open`](crate::Store::open) and
/// [`Database::open`](crate::Database::open).
///
/// The server app fills it from its command line (`--db`,
/// `--argon2-memory-kib`, ...); tests use [`StoreConfig::in_memory`] and
/// [`StoreConfig::fast_hashing`].
///
/// # Examples
///
/// ```
/// use portcullis_store::StoreConfig;
///
/// let config = StoreConfig::new("game.db");
/// assert!(!config.demo_accounts, "a library creates no account by itself");
/// assert_eq!(config.argon2_memory_kib, 19456);
/// let serve = StoreConfig::new("game.db").with_demo_accounts();
/// assert!(serve.demo_accounts);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    /// The SQLite file; created (with its schema) if missing. `":memory:"`
    /// is a private in-memory database that lives as long as the store.
    pub path: PathBuf,
    /// A database without the schema gets the demo accounts
    /// [`DEMO_ACCOUNTS`](crate::DEMO_ACCOUNTS) with password
    /// [`DEMO_PASSWORD`](crate::DEMO_PASSWORD). A database that already has
    /// the schema is never changed by this. Off by default: a library
    /// creates no account by itself; `portcullis serve` turns it on unless
    /// `--no-demo-accounts` (docs/cli.md), see [`with_demo_accounts`](Self::with_demo_accounts).
    pub demo_accounts: bool,
    /// argon2id memory cost in KiB for new password hashes (verification uses
    /// the cost stored in each hash).
    pub argon2_memory_kib: u32,
    /// argon2id time cost (iterations) for new password hashes.
    pub argon2_iterations: u32,
    /// Bound of the request queue; when it is full,
    /// [`Store::submit`](crate::Store::submit) returns
    /// [`SubmitError::Full`](crate::SubmitError::Full). At least 1.
    pub queue_capacity: usize,
    /// Number of threads that hash and verify passwords. At least 1.
    pub hash_threads: usize,
    /// `true`: every request found waiting is committed in one transaction.
    /// `false`: one transaction per write (only useful to measure the
    /// difference).
    pub group_commit: bool,
    /// `false`: `PRAGMA synchronous=NORMAL` (commits survive a crash of the
    /// process). `true`: `synchronous=FULL` (commits also survive a power
    /// cut, at the price of an `fsync` per commit).
    pub synchronous_full: bool,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            path: PathBuf::from("portcullis.db"),
            demo_accounts: false,
            argon2_memory_kib: Params::DEFAULT_M_COST,
            argon2_iterations: Params::DEFAULT_T_COST,
            queue_capacity: 65_536,
            hash_threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            group_commit: true,
            synchronous_full: false,
        }
    }
}

impl StoreConfig {
    /// The defaults with the database at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into(), ..Self::default() }
    }

    /// The defaults with a private in-memory SQLite database (for tests).
    /// Its content is gone when the store is closed.
    pub fn in_memory() -> Self {
        Self::new(":memory:")
    }

    /// With the demo accounts (`netease1`..`netease3`, password `123`) in a
    /// new database, as `portcullis serve` makes by default and tests use.
    pub fn with_demo_accounts(mut self) -> Self {
        self.demo_accounts = true;
        self
    }

    /// The cheapest argon2id cost allowed (8 KiB, one iteration), so that
    /// tests do not spend their time hashing. Never for production.
    pub fn fast_hashing(mut self) -> Self {
        self.argon2_memory_kib = Params::MIN_M_COST;
        self.argon2_iterations = Params::MIN_T_COST;
        self
    }

    /// The argon2id parameters for new hashes, checked.
    pub(crate) fn argon2_params(&self) -> Result<Params, StoreError> {
        Params::new(self.argon2_memory_kib, self.argon2_iterations, 1, None)
            .map_err(|e| StoreError::InvalidConfig(format!("argon2 cost: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_command_line() {
        let config = StoreConfig::default();
        assert_eq!(config.path, PathBuf::from("portcullis.db"));
        assert!(!config.demo_accounts, "serve turns them on, the library does not");
        assert_eq!(config.argon2_memory_kib, 19456);
        assert_eq!(config.argon2_iterations, 2);
        assert_eq!(config.queue_capacity, 65_536);
        assert!(config.hash_threads >= 1);
        assert!(config.group_commit);
        assert!(!config.synchronous_full);
    }

    #[test]
    fn fast_hashing_is_the_minimum_argon2_accepts() {
        let config = StoreConfig::in_memory().fast_hashing();
        assert_eq!((config.argon2_memory_kib, config.argon2_iterations), (8, 1));
        assert!(config.argon2_params().is_ok());
    }

    #[test]
    fn too_little_memory_is_a_config_error() {
        let config = StoreConfig { argon2_memory_kib: 1, ..StoreConfig::in_memory() };
        assert!(matches!(config.argon2_params(), Err(StoreError::InvalidConfig(_))));
    }
}
