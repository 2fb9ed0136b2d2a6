//! Blocking helpers for tests of code that uses the store (this crate's own
//! tests use them too). Never call them from a system: they wait.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::pg::off_runtime;
use crate::{Store, StoreError, StoreFailure, StoreOk, StoreReply, StoreRequest};

/// Tags used by [`call`]: the top half of the range, so they do not collide
/// with a test's own small tags.
static NEXT_TAG: AtomicU64 = AtomicU64::new(1 << 63);

/// Submits `request` and waits up to `timeout` for its reply.
///
/// Replies to other requests that arrive meanwhile are dropped, so use it
/// only when nothing else is waiting for the store.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use portcullis_store::{Store, StoreConfig, StoreOk, StoreRequest, testing};
///
/// let store = Store::open(StoreConfig::in_memory().fast_hashing(), None)?;
/// let load = StoreRequest::LoadUserdata { account_id: 1 };
/// assert_eq!(
///     testing::call(&store, load, Duration::from_secs(10))?,
///     Ok(StoreOk::Userdata(None))
/// );
/// # Ok::<(), portcullis_store::StoreError>(())
/// ```
pub fn call(
    store: &Store,
    request: StoreRequest,
    timeout: Duration,
) -> Result<Result<StoreOk, StoreFailure>, StoreError> {
    let tag = NEXT_TAG.fetch_add(1, Ordering::Relaxed);
    store.submit(tag, request)?;
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match store.replies().recv_timeout(left) {
            Ok(reply) if reply.tag == tag => return Ok(reply.result),
            Ok(_) => {}
            Err(_) => return Err(StoreError::Timeout),
        }
    }
}

/// Waits up to `timeout` (in all) for `count` replies, in the order they
/// arrive.
pub fn collect(store: &Store, count: usize, timeout: Duration) -> Result<Vec<StoreReply>, StoreError> {
    let deadline = Instant::now() + timeout;
    let mut replies = Vec::with_capacity(count);
    while replies.len() < count {
        let left = deadline.saturating_duration_since(Instant::now());
        match store.replies().recv_timeout(left) {
            Ok(reply) => replies.push(reply),
            Err(_) => return Err(StoreError::Timeout),
        }
    }
    Ok(replies)
}

/// The longest a [`Gate`] holds a thread.
const MAX_HOLD: Duration = Duration::from_secs(30);

/// A `notify` callback that can hold the store's threads: while it is
/// closed, every thread that calls it waits inside it. Lets a test pile up
/// requests so that they land in one batch, or fill the queue. A thread is
/// never held longer than 30 s, so a failing test does not hang.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use portcullis_store::{Store, StoreConfig, StoreRequest, testing::{self, Gate}};
///
/// let gate = Gate::closed();
/// let store = Store::open(StoreConfig::in_memory().fast_hashing(), Some(gate.notify()))?;
/// store.submit(0, StoreRequest::LoadUserdata { account_id: 1 })?;
/// assert!(gate.wait_until_held(Duration::from_secs(10)));
/// // The SQLite thread is now waiting in `notify`: these two run in one batch.
/// store.submit(1, StoreRequest::SaveUserdata { account_id: 1, data: "{}".into() })?;
/// store.submit(2, StoreRequest::LoadUserdata { account_id: 1 })?;
/// gate.open();
/// assert_eq!(testing::collect(&store, 3, Duration::from_secs(10))?.len(), 3);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Gate {
    /// Gets a message each time a thread starts waiting in `notify`.
    held: crossbeam_channel::Receiver<()>,
    /// Dropped by [`open`](Self::open), which releases every waiting thread.
    release: std::sync::Mutex<Option<crossbeam_channel::Sender<()>>>,
    /// The callback's ends of the two channels.
    parts: (crossbeam_channel::Sender<()>, crossbeam_channel::Receiver<()>),
}

impl Gate {
    /// A closed gate: `notify` holds every caller until [`open`](Self::open).
    pub fn closed() -> Self {
        let (held_tx, held_rx) = crossbeam_channel::unbounded();
        let (release_tx, release_rx) = crossbeam_channel::bounded(0);
        Self { held: held_rx, release: std::sync::Mutex::new(Some(release_tx)), parts: (held_tx, release_rx) }
    }

    /// The callback to give to [`Store::open`].
    pub fn notify(&self) -> crate::Notify {
        let (held, release) = self.parts.clone();
        std::sync::Arc::new(move || {
            let _ = held.send(());
            // Returns when the gate opens (its sender is dropped), or after
            // a while so that a failed test cannot hang in `Store`'s drop.
            let _ = release.recv_timeout(MAX_HOLD);
        })
    }

    /// Waits up to `timeout` until a thread is held in `notify`; `false` if
    /// none came.
    pub fn wait_until_held(&self, timeout: Duration) -> bool {
        self.held.recv_timeout(timeout).is_ok()
    }

    /// Opens the gate for good: held threads go on, `notify` no longer waits.
    pub fn open(&self) {
        self.release.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.open();
    }
}

/// The variable that names the PostgreSQL server of the tests
/// (`postgres://postgres@127.0.0.1:5432/postgres`); tests that need it are
/// skipped (and say so) when it is unset.
pub const POSTGRES_ENV: &str = "PORTCULLIS_TEST_POSTGRES";

/// A fresh PostgreSQL database for one test: `CREATE DATABASE
/// portcullis_test_<random>` on the server of [`POSTGRES_ENV`], dropped
/// (`WITH (FORCE)`) when this is dropped. Drop the stores using it first.
#[derive(Debug)]
pub struct TestPostgres {
    /// The server's URL as given.
    admin_url: String,
    /// The database's name.
    name: String,
    /// The URL of the fresh database.
    url: String,
}

impl TestPostgres {
    /// Creates the database; `None` (after printing that `test` is skipped)
    /// when [`POSTGRES_ENV`] is unset. Panics when the server cannot be
    /// reached or refuses: a test run that asked for PostgreSQL must not
    /// pass without it.
    pub fn create(test: &str) -> Option<Self> {
        let Ok(admin_url) = std::env::var(POSTGRES_ENV) else {
            // Straight to the stream, not `eprintln!`: the test harness would
            // capture that and hide it for a passing test.
            use std::io::Write as _;
            let _ = writeln!(std::io::stderr(), "skipped {test} on PostgreSQL: {POSTGRES_ENV} is not set");
            return None;
        };
        let name = format!("portcullis_test_{:016x}", rand::random::<u64>());
        off_runtime(|| {
            let mut client = postgres::Client::connect(&admin_url, postgres::NoTls)
                .unwrap_or_else(|e| panic!("{POSTGRES_ENV}={admin_url}: cannot connect: {e}"));
            client.batch_execute(&format!("CREATE DATABASE {name}")).unwrap_or_else(|e| panic!("CREATE DATABASE: {e}"));
        });
        let url = with_database(&admin_url, &name);
        Some(Self { admin_url, name, url })
    }

    /// The URL of the fresh database (for `--db` or [`StoreConfig::new`](crate::StoreConfig::new)).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Runs SQL on the fresh database (to look at or change what a test needs).
    pub fn execute(&self, sql: &str) -> Result<Vec<postgres::SimpleQueryMessage>, postgres::Error> {
        off_runtime(|| postgres::Client::connect(&self.url, postgres::NoTls)?.simple_query(sql))
    }
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        off_runtime(|| match postgres::Client::connect(&self.admin_url, postgres::NoTls) {
            Ok(mut client) => {
                if let Err(e) = client.batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name)) {
                    eprintln!("cannot drop the test database {}: {e}", self.name);
                }
            }
            Err(e) => eprintln!("cannot drop the test database {}: {e}", self.name),
        });
    }
}

/// `url` with its database replaced by `name`.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, None), |(b, q)| (b, Some(q)));
    let start = base.find("://").map_or(0, |i| i + 3);
    let base = match base[start..].find('/') {
        Some(slash) => &base[..start + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{base}/{name}?{query}"),
        None => format!("{base}/{name}"),
    }
}

/// The backends a store test runs on: SQLite in memory always, and a fresh
/// PostgreSQL database when [`POSTGRES_ENV`] is set (else the PostgreSQL run
/// is skipped with a message).
#[derive(Debug)]
pub enum TestBackend {
    /// A private in-memory SQLite database.
    Sqlite,
    /// A fresh PostgreSQL database, dropped with this value.
    Postgres(TestPostgres),
}

impl TestBackend {
    /// Every backend available to `test`.
    pub fn all(test: &str) -> Vec<Self> {
        let mut all = vec![Self::Sqlite];
        all.extend(TestPostgres::create(test).map(Self::Postgres));
        all
    }

    /// The store configuration of this backend (defaults otherwise).
    pub fn config(&self) -> crate::StoreConfig {
        match self {
            Self::Sqlite => crate::StoreConfig::in_memory(),
            Self::Postgres(db) => crate::StoreConfig::new(db.url()),
        }
    }

    /// `sqlite` or `postgres`, for assertion messages.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres(_) => "postgres",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn database_is_replaced_in_urls() {
        assert_eq!(with_database("postgres://u@h:5432/postgres", "t1"), "postgres://u@h:5432/t1");
        assert_eq!(with_database("postgres://u@h:5432", "t1"), "postgres://u@h:5432/t1");
        assert_eq!(with_database("postgresql://h/db?sslmode=disable", "t1"), "postgresql://h/t1?sslmode=disable");
    }
}
