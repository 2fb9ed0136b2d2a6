//! [`StoreConfig`]: where the database lives and how hard the store works.

use std::path::PathBuf;
use std::time::Duration;

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
    /// A `postgres://` or `postgresql://` URL (libpq syntax) selects the
    /// PostgreSQL store of a cluster instead (docs/cluster.md), see
    /// [`is_postgres`](Self::is_postgres).
    pub path: PathBuf,
    /// This node's name in the session directory of a cluster
    /// (`--node-name`; PostgreSQL only). Default: the host name and the
    /// process id, `host-1234`.
    pub node_name: String,
    /// How long the claims of a node that stopped heartbeating stay valid
    /// (`--node-lease`, default 10 s; PostgreSQL only). The node renews its
    /// lease every third of it.
    pub node_lease: Duration,
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
            node_name: default_node_name(),
            node_lease: Duration::from_secs(10),
        }
    }
}

/// The host name and the process id, `host-1234` (docs/cli.md `--node-name`).
pub fn default_node_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()))
        .unwrap_or_else(|| "node".to_owned());
    format!("{host}-{}", std::process::id())
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

    /// Whether [`path`](Self::path) is a PostgreSQL URL (`postgres://…` or
    /// `postgresql://…`, docs/cli.md `--db`).
    pub fn is_postgres(&self) -> bool {
        let text = self.path.as_os_str().as_encoded_bytes();
        text.starts_with(b"postgres://") || text.starts_with(b"postgresql://")
    }

    /// The database for logs: the file path, or the URL without its
    /// password (`postgres://user:***@host/db`).
    pub fn location(&self) -> String {
        let Some(url) = self.postgres_url() else { return self.path.display().to_string() };
        let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
        let (authority, tail) = rest.split_once('/').map_or((rest, None), |(a, t)| (a, Some(t)));
        let authority = match authority.rsplit_once('@') {
            Some((userinfo, host)) => match userinfo.split_once(':') {
                Some((user, _)) => format!("{user}:***@{host}"),
                None => format!("{userinfo}@{host}"),
            },
            None => authority.to_owned(),
        };
        // Query parameters may carry a password too.
        let tail = tail.map(|t| t.split_once('?').map_or(t, |(path, _)| path).to_owned());
        match tail {
            Some(tail) => format!("{scheme}://{authority}/{tail}"),
            None => format!("{scheme}://{authority}"),
        }
    }

    /// The PostgreSQL URL, when [`is_postgres`](Self::is_postgres).
    pub(crate) fn postgres_url(&self) -> Option<&str> {
        if self.is_postgres() { self.path.to_str() } else { None }
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
        assert_eq!(config.node_lease, Duration::from_secs(10));
        assert!(config.node_name.ends_with(&format!("-{}", std::process::id())), "{}", config.node_name);
    }

    #[test]
    fn postgres_urls_select_the_cluster_store() {
        assert!(StoreConfig::new("postgres://u@h/db").is_postgres());
        assert!(StoreConfig::new("postgresql://h:5432/db").is_postgres());
        assert!(!StoreConfig::new("postgres.db").is_postgres());
        assert!(!StoreConfig::in_memory().is_postgres());
        assert_eq!(StoreConfig::new("postgres://u:secret@h:5/db?password=x").location(), "postgres://u:***@h:5/db");
        assert_eq!(StoreConfig::new("game.db").location(), "game.db");
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
