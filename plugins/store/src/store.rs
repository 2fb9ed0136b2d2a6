//! [`Store`]: the handle the game server holds; starts and stops the store's
//! threads and carries requests and replies across channels.

use std::sync::Arc;
use std::thread::{self, JoinHandle};

use crossbeam_channel::{Receiver, Sender, TrySendError, bounded, unbounded};
use tracing::{info, warn};

use crate::backend::Backend;
use crate::checkpoint::{BACKSTOP_PAGES, Checkpointer};
use crate::hasher::{self, Hashers};
use crate::password::PasswordHasher;
use crate::pg::{self, Directory, PgBackend};
use crate::sqlite::SqliteBackend;
use crate::worker::{Job, Worker, WorkerLinks};
use crate::{Database, StoreConfig, StoreError, StoreEvent, StoreReply, StoreRequest, SubmitError};

/// Called from the store's threads after they push replies, so that an
/// event-driven frame loop can wake up. Must be quick and must not block.
pub type Notify = Arc<dyn Fn() + Send + Sync>;

/// A password that no account can have: the dummy hash is made from it.
const DUMMY_PASSWORD: &str = "portcullis dummy password for unknown accounts";

/// The running store: an SQLite thread and a pool of password hasher
/// threads, reached only through channels.
///
/// The session plugin keeps it in a resource. It is `Send + Sync`; every
/// method but [`close`](Self::close) takes `&self`, and none of them blocks
/// except `close` (and `Drop`, which does the same).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use portcullis_store::{Store, StoreConfig, StoreOk, StoreRequest};
///
/// let store = Store::open(StoreConfig::in_memory().fast_hashing().with_demo_accounts(), None)?;
/// store
///     .submit(1, StoreRequest::VerifyPassword {
///         account: "NETEASE1".into(),
///         password: "123".into(),
///     })
///     .expect("the queue has room");
/// let reply = store.replies().recv_timeout(Duration::from_secs(10))?;
/// let Ok(StoreOk::Account(account)) = reply.result else { panic!("{reply:?}") };
/// assert_eq!(account.name, "netease1");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Store {
    /// Where `submit` puts requests; `None` once closing began.
    requests: Option<Sender<Job>>,
    /// Where the store's threads put replies.
    replies: Receiver<StoreReply>,
    /// The SQLite thread; `None` once joined.
    worker: Option<JoinHandle<Result<(), StoreError>>>,
    /// The hasher threads; empty once joined.
    hashers: Vec<JoinHandle<()>>,
    /// What the session directory of a cluster tells this node.
    events: Receiver<StoreEvent>,
    /// The directory thread (PostgreSQL only); `None` once stopped.
    directory: Option<Directory>,
    /// Whether the sessions are shared with other nodes (PostgreSQL).
    shared: bool,
}

impl Store {
    /// Opens, creates or migrates the database (on the calling thread, so
    /// errors come back here), then starts the SQLite thread and
    /// [`StoreConfig::hash_threads`] hasher threads.
    ///
    /// `notify` is called from the store's threads after each batch of
    /// replies is pushed.
    pub fn open(config: StoreConfig, notify: Option<Notify>) -> Result<Self, StoreError> {
        let (event_tx, event_rx) = unbounded();
        if let Some(url) = config.postgres_url() {
            let url = url.to_owned();
            let hasher = PasswordHasher::new(config.argon2_params()?);
            // Off the calling thread, which may run tokio tasks (the client cannot).
            let (backend, directory) = pg::off_runtime(|| -> Result<_, StoreError> {
                let mut client = pg::connect(&url, "portcullis-store")?;
                pg::migrate(&mut client, &config, &hasher)?;
                let backend = PgBackend::new(&url, client, config.node_name.clone())?;
                let directory = Directory::start(&config, &url, event_tx, notify.clone())?;
                Ok((backend, directory))
            })?;
            let mut store = Self::start(&config, notify, hasher, backend, event_rx)?;
            store.directory = Some(directory);
            store.shared = true;
            info!(node = %config.node_name, lease = ?config.node_lease, "joined the cluster");
            return Ok(store);
        }
        drop(event_tx);
        let (conn, hasher) = Database::open(&config)?.into_parts()?;
        let checkpointer = Checkpointer::start(&config.path)?;
        if checkpointer.is_some() {
            conn.pragma_update(None, "wal_autocheckpoint", BACKSTOP_PAGES)?;
        }
        Self::start(&config, notify, hasher, SqliteBackend::new(conn, checkpointer), event_rx)
    }

    /// Starts the hasher threads and the worker thread on `backend`.
    fn start<B: Backend>(
        config: &StoreConfig,
        notify: Option<Notify>,
        hasher: PasswordHasher,
        backend: B,
        events: Receiver<StoreEvent>,
    ) -> Result<Self, StoreError> {
        let dummy_hash = hasher.hash(DUMMY_PASSWORD).map_err(StoreError::Hashing)?;
        let (request_tx, request_rx) = bounded(config.queue_capacity.max(1));
        let (reply_tx, reply_rx) = unbounded();
        let (job_tx, job_rx) = unbounded();
        let (hashed_tx, hashed_rx) = unbounded();

        let shared = Arc::new(Hashers {
            hasher: hasher.clone(),
            dummy_hash,
            replies: reply_tx.clone(),
            hashed: hashed_tx,
            notify: notify.clone(),
        });
        let mut hashers = Vec::with_capacity(config.hash_threads.max(1));
        for index in 0..config.hash_threads.max(1) {
            let shared = Arc::clone(&shared);
            let jobs = job_rx.clone();
            let spawned = thread::Builder::new()
                .name(format!("portcullis-hash-{index}"))
                .spawn(move || hasher::run(&shared, &jobs));
            match spawned {
                Ok(handle) => hashers.push(handle),
                Err(e) => {
                    drop(job_tx);
                    join_hashers(hashers);
                    // Dropping the backend stops its checkpointer.
                    drop(backend);
                    return Err(StoreError::Spawn(e));
                }
            }
        }
        drop(shared);

        let links = WorkerLinks {
            requests: request_rx,
            hashed: hashed_rx,
            hash_jobs: job_tx,
            replies: reply_tx,
            notify,
            hasher,
        };
        let worker = Worker::new(backend, links, config.group_commit);
        let worker = match thread::Builder::new().name("portcullis-store".into()).spawn(move || worker.run()) {
            Ok(handle) => handle,
            Err(e) => {
                // The closure is dropped with the worker: its job sender (so
                // the hashers stop) and its checkpointer (which then stops).
                join_hashers(hashers);
                return Err(StoreError::Spawn(e));
            }
        };
        info!(
            db = %config.location(),
            hash_threads = hashers.len(),
            group_commit = config.group_commit,
            synchronous_full = config.synchronous_full,
            "store opened"
        );
        Ok(Self {
            requests: Some(request_tx),
            replies: reply_rx,
            worker: Some(worker),
            hashers,
            events,
            directory: None,
            shared: false,
        })
    }

    /// Queues a request; never blocks. Its reply comes through
    /// [`replies`](Self::replies) with the same `tag` (opaque to the store).
    ///
    /// Errors: [`SubmitError::Full`] when
    /// [`StoreConfig::queue_capacity`] requests are waiting,
    /// [`SubmitError::Closed`] when the store's thread is gone.
    pub fn submit(&self, tag: u64, request: StoreRequest) -> Result<(), SubmitError> {
        let Some(requests) = &self.requests else {
            return Err(SubmitError::Closed);
        };
        requests.try_send(Job { tag, request }).map_err(|e| match e {
            TrySendError::Full(_) => SubmitError::Full,
            TrySendError::Disconnected(_) => SubmitError::Closed,
        })
    }

    /// The finished replies. Drain it without blocking (`try_iter`,
    /// `try_recv`). Clone it to read the replies that [`close`](Self::close)
    /// sends while it shuts down.
    pub fn replies(&self) -> &Receiver<StoreReply> {
        &self.replies
    }

    /// What the session directory tells this node without being asked
    /// (kick requests, released claims, retry ticks; docs/cluster.md).
    /// Drain it without blocking. Empty unless [`is_shared`](Self::is_shared).
    pub fn events(&self) -> &Receiver<StoreEvent> {
        &self.events
    }

    /// Whether the store's accounts and sessions are shared with other
    /// nodes (the PostgreSQL store of a cluster): then a login must
    /// [`Claim`](StoreRequest::Claim) its account and a session that ends
    /// must [`Release`](StoreRequest::Release) it. On SQLite the one node
    /// is the whole directory and claims are not needed.
    pub fn is_shared(&self) -> bool {
        self.shared
    }

    /// How many submitted requests wait for the SQLite thread.
    pub fn queued(&self) -> usize {
        self.requests.as_ref().map_or(0, Sender::len)
    }

    /// Stops accepting requests, runs and commits every queued one, answers
    /// them all (through a clone of [`replies`](Self::replies) taken before),
    /// and joins the threads. Blocking: for shutdown code only.
    pub fn close(mut self) -> Result<(), StoreError> {
        self.shutdown()
    }

    /// What `close` and `Drop` do.
    fn shutdown(&mut self) -> Result<(), StoreError> {
        // Dropping the last sender closes the queue; the worker drains it.
        self.requests = None;
        let mut result = Ok(());
        if let Some(worker) = self.worker.take() {
            result = worker.join().unwrap_or(Err(StoreError::ThreadPanicked("portcullis-store")));
        }
        // The worker dropped its job sender: the hashers finish and stop.
        if !join_hashers(std::mem::take(&mut self.hashers)) && result.is_ok() {
            result = Err(StoreError::ThreadPanicked("portcullis-hash"));
        }
        // After the worker: the releases it committed went first.
        if let Some(directory) = self.directory.take() {
            directory.stop();
        }
        if result.is_ok() {
            info!("store closed");
        }
        result
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        if (self.worker.is_some() || !self.hashers.is_empty() || self.directory.is_some())
            && let Err(e) = self.shutdown()
        {
            warn!(error = %e, "closing the store on drop failed");
        }
    }
}

/// Joins hasher threads; `false` if one of them panicked.
fn join_hashers(hashers: Vec<JoinHandle<()>>) -> bool {
    // Not `all`: every thread must be joined, even after a panicked one.
    let mut ok = true;
    for handle in hashers {
        ok &= handle.join().is_ok();
    }
    ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Store>();
    }
}
