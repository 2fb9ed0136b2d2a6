//! The SQLite thread: takes requests in order, runs them in group-committed
//! batches and answers each one only after its batch is on disk.
//!
//! One batch: block for one message, drain up to [`MAX_BATCH`] more without
//! blocking, `BEGIN IMMEDIATE`, run them in arrival order (a request sees the
//! writes of the requests before it), `COMMIT`, then send the replies, then
//! hand password work to the hasher threads, then call `notify` once.
//!
//! Every write is a single statement, and SQLite undoes a failed statement
//! without touching the rest of the transaction, so a failing request gets
//! [`StoreFailure::Internal`] and the others still commit (no savepoint is
//! needed). When SQLite instead abandons the whole transaction (disk full,
//! I/O error) or `COMMIT` fails, everything is rolled back and every request
//! of the batch gets [`StoreFailure::Internal`].

use std::collections::HashMap;
use std::mem;
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender, select};
use rusqlite::Connection;
use tracing::{debug, error, info, warn};

use crate::checkpoint::Checkpointer;
use crate::db;
use crate::hasher::{HashJob, Hashed};
use crate::password::PasswordHasher;
use crate::store::Notify;
use crate::time::now_ms;
use crate::{SavedVersion, StoreError, StoreFailure, StoreOk, StoreReply, StoreRequest};

/// Most messages run in one transaction.
pub(crate) const MAX_BATCH: usize = 4096;

/// The newest version of an account that has saved nothing.
const NO_VERSION: SavedVersion = SavedVersion { version: 0, saved_at_ms: i64::MIN };

/// A submitted request.
pub(crate) struct Job {
    /// Given back in the reply.
    pub(crate) tag: u64,
    /// What to do.
    pub(crate) request: StoreRequest,
}

/// One message for the SQLite thread.
enum Work {
    /// From the caller.
    Request(Job),
    /// From a hasher thread.
    Hashed(Hashed),
}

impl Work {
    /// The request's tag.
    fn tag(&self) -> u64 {
        match self {
            Self::Request(job) => job.tag,
            Self::Hashed(hashed) => hashed.tag(),
        }
    }

    /// Whether it may write (so the batch takes the write lock up front).
    fn writes(&self) -> bool {
        match self {
            Self::Request(job) => matches!(job.request, StoreRequest::SaveUserdata { .. }),
            Self::Hashed(hashed) => !matches!(hashed, Hashed::Failed { .. }),
        }
    }
}

/// What a request leads to once its batch is committed.
enum Next {
    /// Answer it.
    Reply(Result<StoreOk, StoreFailure>),
    /// Hand it to a hasher thread.
    Hash(HashJob),
}

/// What connects the SQLite thread to the other threads.
pub(crate) struct WorkerLinks {
    /// Requests from [`Store::submit`](crate::Store::submit).
    pub(crate) requests: Receiver<Job>,
    /// Finished password work.
    pub(crate) hashed: Receiver<Hashed>,
    /// Password work to do.
    pub(crate) hash_jobs: Sender<HashJob>,
    /// Answers to the caller.
    pub(crate) replies: Sender<StoreReply>,
    /// Wakes the caller after a batch of answers.
    pub(crate) notify: Option<Notify>,
    /// The checkpointer thread, if the database is a file.
    pub(crate) checkpointer: Option<Checkpointer>,
    /// The configured argon2 parameters, to tell which stored hashes must
    /// be re-hashed (it only parses PHC strings here; hashing stays on the
    /// hasher threads).
    pub(crate) hasher: PasswordHasher,
}

/// The SQLite thread's state.
pub(crate) struct Worker {
    /// The only connection the server uses.
    conn: Connection,
    /// Requests from [`Store::submit`](crate::Store::submit).
    requests: Receiver<Job>,
    /// Finished password work.
    hashed: Receiver<Hashed>,
    /// Password work to do.
    hash_jobs: Sender<HashJob>,
    /// Answers to the caller.
    replies: Sender<StoreReply>,
    /// Wakes the caller after a batch of answers.
    notify: Option<Notify>,
    /// One transaction per batch (`true`) or per request.
    group_commit: bool,
    /// Copies the WAL into the database file off this thread (file
    /// databases only).
    checkpointer: Option<Checkpointer>,
    /// The configured argon2 parameters; only
    /// [`needs_rehash`](PasswordHasher::needs_rehash) is called here.
    hasher: PasswordHasher,
    /// Newest committed version per account, so a save needs no `MAX()`
    /// query. Filled on first use; an account's entry is dropped when a save
    /// of it fails.
    latest: HashMap<i64, SavedVersion>,
    /// Newest version per account written by the running batch; merged into
    /// `latest` when the batch commits.
    pending: HashMap<i64, SavedVersion>,
    /// Jobs handed to hashers that come back as [`Hashed`].
    in_flight: usize,
    /// `false` once the request channel is closed and empty.
    requests_open: bool,
    /// `false` if every hasher thread is gone.
    hashers_alive: bool,
    /// `portcullis_store_commit_seconds` and `portcullis_store_batch_size`
    /// (docs/operations.md), through the `metrics` facade: handles taken
    /// once, when the worker starts.
    commit_seconds: metrics::Histogram,
    batch_size: metrics::Histogram,
}

impl Worker {
    /// A worker for an opened, migrated connection.
    pub(crate) fn new(conn: Connection, links: WorkerLinks, group_commit: bool) -> Self {
        let WorkerLinks { requests, hashed, hash_jobs, replies, notify, checkpointer, hasher } = links;
        Self {
            conn,
            requests,
            hashed,
            hash_jobs,
            replies,
            notify,
            group_commit,
            checkpointer,
            hasher,
            latest: HashMap::new(),
            pending: HashMap::new(),
            in_flight: 0,
            requests_open: true,
            hashers_alive: true,
            commit_seconds: metrics::histogram!("portcullis_store_commit_seconds"),
            batch_size: metrics::histogram!("portcullis_store_batch_size"),
        }
    }

    /// Runs batches until the request channel is closed, every queued
    /// request is answered and no password work is out; then closes the
    /// connection.
    pub(crate) fn run(mut self) -> Result<(), StoreError> {
        debug!(group_commit = self.group_commit, "store worker started");
        let mut batch = Vec::with_capacity(MAX_BATCH);
        while let Some(first) = self.wait() {
            batch.push(first);
            self.fill(&mut batch);
            if self.group_commit {
                self.run_batch(&mut batch);
            } else {
                self.run_one_by_one(&mut batch);
            }
        }
        let Self { conn, checkpointer, .. } = self;
        // Stopped first, so that closing the last connection checkpoints
        // and removes the WAL.
        if let Some(checkpointer) = checkpointer {
            checkpointer.stop();
        }
        conn.close().map_err(|(_, e)| StoreError::from(e))?;
        info!("store worker stopped");
        Ok(())
    }

    /// Blocks for the next message; `None` when it is time to stop.
    fn wait(&mut self) -> Option<Work> {
        loop {
            match (self.requests_open, self.hashers_alive) {
                (true, true) => select! {
                    recv(self.requests) -> job => match job {
                        Ok(job) => return Some(Work::Request(job)),
                        Err(_) => self.requests_open = false,
                    },
                    recv(self.hashed) -> hashed => match hashed {
                        Ok(hashed) => return Some(self.returned(hashed)),
                        Err(_) => self.hashers_gone(),
                    },
                },
                (true, false) => match self.requests.recv() {
                    Ok(job) => return Some(Work::Request(job)),
                    Err(_) => self.requests_open = false,
                },
                (false, true) if self.in_flight > 0 => match self.hashed.recv() {
                    Ok(hashed) => return Some(self.returned(hashed)),
                    Err(_) => self.hashers_gone(),
                },
                _ => return None,
            }
        }
    }

    /// Adds what is already waiting to `batch`, without blocking.
    fn fill(&mut self, batch: &mut Vec<Work>) {
        while batch.len() < MAX_BATCH {
            let Ok(hashed) = self.hashed.try_recv() else {
                break;
            };
            batch.push(self.returned(hashed));
        }
        while batch.len() < MAX_BATCH {
            let Ok(job) = self.requests.try_recv() else {
                break;
            };
            batch.push(Work::Request(job));
        }
    }

    /// Counts a hasher's result in.
    fn returned(&mut self, hashed: Hashed) -> Work {
        self.in_flight = self.in_flight.saturating_sub(1);
        Work::Hashed(hashed)
    }

    /// Every hasher thread died: their pending work is lost.
    fn hashers_gone(&mut self) {
        error!(lost = self.in_flight, "all password hasher threads stopped; password requests will fail");
        self.hashers_alive = false;
        self.in_flight = 0;
    }

    /// Group commit: the whole batch in one transaction.
    fn run_batch(&mut self, batch: &mut Vec<Work>) {
        let started = Instant::now();
        let size = batch.len();
        let begin = if batch.iter().any(Work::writes) { "BEGIN IMMEDIATE" } else { "BEGIN DEFERRED" };
        // A transaction left open by a failed ROLLBACK would fail every
        // batch from now on: try again to end it.
        if !self.conn.is_autocommit()
            && let Err(e) = self.conn.execute_batch("ROLLBACK")
        {
            warn!(error = %e, "rollback of a leftover transaction failed");
        }
        if let Err(e) = self.conn.execute_batch(begin) {
            warn!(batch = size, error = %e, "cannot begin a transaction; failing the batch");
            let failure = StoreFailure::Internal(e.to_string());
            let outcomes = batch.drain(..).map(|work| (work.tag(), Next::Reply(Err(failure.clone())))).collect();
            self.deliver(outcomes);
            return;
        }

        let mut pending = mem::take(&mut self.pending);
        let mut outcomes = Vec::with_capacity(size);
        let mut abandoned = None;
        for work in batch.drain(..) {
            let tag = work.tag();
            if abandoned.is_some() {
                outcomes.push((tag, Next::Reply(Err(StoreFailure::Internal(String::new())))));
                continue;
            }
            outcomes.push((tag, self.execute(work, &mut pending)));
            if self.conn.is_autocommit() {
                // SQLite rolled the transaction back on its own (disk full,
                // I/O error, ...): nothing of this batch is written.
                abandoned = Some("transaction rolled back by SQLite".to_owned());
            }
        }

        let failure = match abandoned {
            Some(reason) => Some(reason),
            None => self.conn.execute_batch("COMMIT").err().map(|e| e.to_string()),
        };
        match failure {
            None => {
                self.latest.extend(pending.drain());
                if let Some(checkpointer) = &self.checkpointer {
                    checkpointer.poke();
                }
                let elapsed = started.elapsed();
                self.commit_seconds.record(elapsed.as_secs_f64());
                self.batch_size.record(size as f64);
                debug!(batch = size, elapsed_us = elapsed.as_micros(), "store batch committed");
            }
            Some(reason) => {
                if !self.conn.is_autocommit()
                    && let Err(e) = self.conn.execute_batch("ROLLBACK")
                {
                    error!(error = %e, "rollback failed");
                }
                pending.clear();
                // Conservative: cached versions are read again from the
                // database when next needed.
                self.latest.clear();
                warn!(batch = size, reason = %reason, "store batch failed and was rolled back");
                let failure = StoreFailure::Internal(format!("commit failed: {reason}"));
                for (_, next) in &mut outcomes {
                    *next = Next::Reply(Err(failure.clone()));
                }
            }
        }
        self.pending = pending;
        self.deliver(outcomes);
    }

    /// No group commit: every request in its own (autocommit) transaction,
    /// answered right after it.
    fn run_one_by_one(&mut self, batch: &mut Vec<Work>) {
        let mut pending = mem::take(&mut self.pending);
        let mut sent = 0;
        for work in batch.drain(..) {
            let tag = work.tag();
            let started = Instant::now();
            let next = self.execute(work, &mut pending);
            self.commit_seconds.record(started.elapsed().as_secs_f64());
            self.batch_size.record(1.0);
            self.latest.extend(pending.drain());
            sent += self.send(tag, next);
        }
        self.pending = pending;
        if let Some(checkpointer) = &self.checkpointer {
            checkpointer.poke();
        }
        self.wake(sent);
    }

    /// Runs one message inside the current transaction.
    fn execute(&mut self, work: Work, pending: &mut HashMap<i64, SavedVersion>) -> Next {
        let conn = &self.conn;
        match work {
            Work::Request(Job { tag, request }) => {
                let kind = request.kind();
                match request {
                    StoreRequest::VerifyPassword { account, password } => match db::find_account(conn, &account) {
                        Ok(Some((account, phc))) if self.hasher.needs_rehash(&phc) => {
                            Next::Hash(HashJob::Rehash { tag, account, phc, password })
                        }
                        Ok(found) => Next::Hash(HashJob::Verify { tag, found, password }),
                        Err(e) => internal(kind, &e),
                    },
                    StoreRequest::Register { account, password } => match db::account_exists(conn, &account) {
                        Ok(true) => Next::Reply(Err(StoreFailure::AccountExists)),
                        Ok(false) => Next::Hash(HashJob::Register { tag, account, password }),
                        Err(e) => internal(kind, &e),
                    },
                    StoreRequest::ChangePassword { account_id, old_password, new_password } => {
                        self.start_change_password(tag, account_id, old_password, new_password)
                    }
                    StoreRequest::SaveUserdata { account_id, data } => self.save(account_id, &data, pending),
                    StoreRequest::LoadUserdata { account_id } => match db::latest_userdata(conn, account_id) {
                        Ok(found) => Next::Reply(Ok(StoreOk::Userdata(found))),
                        Err(e) => internal(kind, &e),
                    },
                }
            }
            Work::Hashed(Hashed::Register { account, password_hash, .. }) => {
                match db::insert_account(conn, &account, &password_hash, now_ms()) {
                    Ok(account) => {
                        info!(account_id = account.id, account = %account.name, "account registered");
                        Next::Reply(Ok(StoreOk::Account(account)))
                    }
                    Err(e) if db::is_unique_violation(&e) => Next::Reply(Err(StoreFailure::AccountExists)),
                    Err(e) => internal("register", &e),
                }
            }
            Work::Hashed(Hashed::Rehashed { account, expected_hash, new_hash, .. }) => {
                if let Some(new_hash) = new_hash {
                    let account_id = account.id;
                    match db::swap_password_hash(conn, account_id, &expected_hash, &new_hash) {
                        Ok(true) => info!(account_id, "password re-hashed with the configured argon2 parameters"),
                        // Changed meanwhile (a password change): the newer hash stays.
                        Ok(false) => debug!(account_id, "password hash changed meanwhile; not re-hashed"),
                        Err(e) => warn!(account_id, error = %e, "storing the re-hashed password failed"),
                    }
                }
                // The password was right whatever happened to the re-hash.
                Next::Reply(Ok(StoreOk::Account(account)))
            }
            Work::Hashed(Hashed::ChangePassword {
                tag,
                account_id,
                expected_hash,
                new_hash,
                old_password,
                new_password,
            }) => match db::swap_password_hash(conn, account_id, &expected_hash, &new_hash) {
                Ok(true) => {
                    info!(account_id, "password changed");
                    Next::Reply(Ok(StoreOk::Done))
                }
                // Changed by someone else since it was read: check again.
                Ok(false) => self.start_change_password(tag, account_id, old_password, new_password),
                Err(e) => internal("change_password", &e),
            },
            Work::Hashed(Hashed::Failed { failure, .. }) => Next::Reply(Err(failure)),
        }
    }

    /// Reads the current hash so a hasher can check the old password.
    fn start_change_password(&self, tag: u64, account_id: i64, old_password: String, new_password: String) -> Next {
        match db::password_hash_of(&self.conn, account_id) {
            Ok(current_hash) => {
                Next::Hash(HashJob::ChangePassword { tag, account_id, current_hash, old_password, new_password })
            }
            Err(e) => internal("change_password", &e),
        }
    }

    /// Appends the next version of an account's user data.
    fn save(&mut self, account_id: i64, data: &str, pending: &mut HashMap<i64, SavedVersion>) -> Next {
        let known = pending.get(&account_id).or_else(|| self.latest.get(&account_id)).copied();
        let previous = match known {
            Some(previous) => previous,
            None => match db::latest_version(&self.conn, account_id) {
                // Nothing of this account was written in this batch yet (it
                // would be in `pending`), so this is the committed state.
                Ok(found) => {
                    let previous = found.unwrap_or(NO_VERSION);
                    self.latest.insert(account_id, previous);
                    previous
                }
                Err(e) => return internal("save_userdata", &e),
            },
        };
        let saved = SavedVersion {
            version: previous.version.saturating_add(1),
            // Never earlier than the previous version, even if the clock steps back.
            saved_at_ms: now_ms().max(previous.saved_at_ms),
        };
        match db::insert_userdata(&self.conn, account_id, saved, data) {
            Ok(()) => {
                pending.insert(account_id, saved);
                Next::Reply(Ok(StoreOk::Saved(saved)))
            }
            Err(e) => {
                self.latest.remove(&account_id);
                warn!(account_id, error = %e, "saving user data failed");
                Next::Reply(Err(StoreFailure::Internal(e.to_string())))
            }
        }
    }

    /// Sends the replies and password jobs of a finished batch, then wakes
    /// the caller once.
    fn deliver(&mut self, outcomes: Vec<(u64, Next)>) {
        let mut sent = 0;
        for (tag, next) in outcomes {
            sent += self.send(tag, next);
        }
        self.wake(sent);
    }

    /// Sends one reply or password job; returns how many replies were sent.
    fn send(&mut self, tag: u64, next: Next) -> usize {
        let result = match next {
            Next::Reply(result) => result,
            Next::Hash(job) => {
                let returns = job.returns_to_worker();
                match self.hash_jobs.send(job) {
                    Ok(()) => {
                        if returns {
                            self.in_flight += 1;
                        }
                        return 0;
                    }
                    Err(_) => Err(StoreFailure::Internal("password hashers stopped".into())),
                }
            }
        };
        // Fails only when the Store is gone, and then nobody listens.
        let _ = self.replies.send(StoreReply { tag, result });
        1
    }

    /// Calls `notify` if replies were sent.
    fn wake(&self, sent: usize) {
        if sent > 0
            && let Some(notify) = &self.notify
        {
            notify();
        }
    }
}

/// Logs a failed statement and turns it into a reply.
fn internal(kind: &'static str, error: &rusqlite::Error) -> Next {
    warn!(request = kind, error = %error, "store request failed");
    Next::Reply(Err(StoreFailure::Internal(error.to_string())))
}
