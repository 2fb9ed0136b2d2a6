//! The store's worker thread (SQLite or PostgreSQL, through [`Backend`]):
//! takes requests in order, runs them in group-committed batches and answers
//! each one only after its batch is committed. Session directory requests
//! (claims, releases) run after the batch, each in its own transaction.
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

use std::time::Instant;

use crossbeam_channel::{Receiver, Sender, select};
use tracing::{debug, error, info, warn};

use crate::backend::{Backend, SqlError};
use crate::hasher::{HashJob, Hashed};
use crate::password::PasswordHasher;
use crate::store::Notify;
use crate::time::now_ms;
use crate::{StoreError, StoreFailure, StoreOk, StoreReply, StoreRequest};

/// Most messages run in one transaction.
pub(crate) const MAX_BATCH: usize = 4096;

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

    /// Whether it is a session directory request, which runs in its own
    /// transaction after the batch committed (one row lock at a time, so
    /// nodes cannot deadlock on each other's claims).
    fn is_directory(&self) -> bool {
        matches!(self, Self::Request(Job { request: StoreRequest::Claim { .. } | StoreRequest::Release { .. }, .. }))
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
    /// The configured argon2 parameters, to tell which stored hashes must
    /// be re-hashed (it only parses PHC strings here; hashing stays on the
    /// hasher threads).
    pub(crate) hasher: PasswordHasher,
}

/// The worker thread's state.
pub(crate) struct Worker<B> {
    /// The database engine and its one connection.
    backend: B,
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
    /// The configured argon2 parameters; only
    /// [`needs_rehash`](PasswordHasher::needs_rehash) is called here.
    hasher: PasswordHasher,
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

impl<B: Backend> Worker<B> {
    /// A worker for an opened, migrated database.
    pub(crate) fn new(backend: B, links: WorkerLinks, group_commit: bool) -> Self {
        let WorkerLinks { requests, hashed, hash_jobs, replies, notify, hasher } = links;
        Self {
            backend,
            requests,
            hashed,
            hash_jobs,
            replies,
            notify,
            group_commit,
            hasher,
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
        self.backend.close()?;
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

    /// Group commit: the whole batch in one transaction; then the session
    /// directory requests of the batch, each in its own transaction, in
    /// their order (so a release follows the saves before it).
    fn run_batch(&mut self, batch: &mut Vec<Work>) {
        let started = Instant::now();
        let mut directory = Vec::new();
        if batch.iter().any(Work::is_directory) {
            let (dir, rest): (Vec<Work>, Vec<Work>) = batch.drain(..).partition(Work::is_directory);
            directory = dir;
            *batch = rest;
        }
        let size = batch.len();
        let mut outcomes = Vec::with_capacity(size + directory.len());
        if size > 0 {
            self.run_transaction(batch, &mut outcomes);
            debug!(batch = size, elapsed_us = started.elapsed().as_micros(), "store batch done");
        }
        for work in directory {
            let tag = work.tag();
            outcomes.push((tag, self.execute_directory(work)));
        }
        self.deliver(outcomes);
    }

    /// One transaction for `batch`, its outcomes appended to `outcomes`.
    /// Records `portcullis_store_commit_seconds` and `portcullis_store_batch_size`
    /// for a committed transaction.
    fn run_transaction(&mut self, batch: &mut Vec<Work>, outcomes: &mut Vec<(u64, Next)>) {
        let started = Instant::now();
        let size = batch.len();
        let writes = batch.iter().any(Work::writes);
        if let Err(e) = self.backend.begin(writes) {
            warn!(batch = size, error = %e, "cannot begin a transaction; failing the batch");
            let failure = StoreFailure::Internal(e);
            outcomes.extend(batch.drain(..).map(|work| (work.tag(), Next::Reply(Err(failure.clone())))));
            return;
        }

        let first = outcomes.len();
        let mut abandoned = None;
        let mut works = batch.drain(..).peekable();
        while let Some(work) = works.next() {
            let tag = work.tag();
            if abandoned.is_some() {
                outcomes.push((tag, Next::Reply(Err(StoreFailure::Internal(String::new())))));
                continue;
            }
            if is_save(&work) && works.peek().is_some_and(is_save) {
                // A run of saves in arrival order: one statement on PostgreSQL.
                let mut group = vec![work];
                while group.len() < MAX_SAVE_GROUP
                    && let Some(next) = works.next_if(is_save)
                {
                    group.push(next);
                }
                self.save_group(group, outcomes);
            } else {
                outcomes.push((tag, self.execute(work)));
            }
            if self.backend.abandoned() {
                // Nothing of this batch is written.
                abandoned = Some("transaction rolled back by the database".to_owned());
            }
        }
        drop(works);

        let failure = match abandoned {
            Some(reason) => Some(reason),
            None => self.backend.commit().err(),
        };
        match failure {
            None => {
                self.backend.committed();
                self.commit_seconds.record(started.elapsed().as_secs_f64());
                self.batch_size.record(size as f64);
            }
            Some(reason) => {
                self.backend.rollback();
                self.backend.failed();
                warn!(batch = size, reason = %reason, "store batch failed and was rolled back");
                let failure = StoreFailure::Internal(format!("commit failed: {reason}"));
                for (_, next) in &mut outcomes[first..] {
                    *next = Next::Reply(Err(failure.clone()));
                }
            }
        }
    }

    /// No group commit: every request in its own transaction, answered
    /// right after it.
    fn run_one_by_one(&mut self, batch: &mut Vec<Work>) {
        let mut sent = 0;
        for work in batch.drain(..) {
            let tag = work.tag();
            let next = if work.is_directory() {
                self.execute_directory(work)
            } else {
                let mut one = vec![work];
                let mut outcomes = Vec::with_capacity(1);
                self.run_transaction(&mut one, &mut outcomes);
                match outcomes.pop() {
                    Some((_, next)) => next,
                    None => Next::Reply(Err(StoreFailure::Internal("no outcome".into()))),
                }
            };
            sent += self.send(tag, next);
        }
        self.wake(sent);
    }

    /// Runs consecutive saves together ([`Backend::save_many`]), replies in
    /// their order.
    fn save_group(&mut self, group: Vec<Work>, outcomes: &mut Vec<(u64, Next)>) {
        let mut tags = Vec::with_capacity(group.len());
        let mut saves = Vec::with_capacity(group.len());
        for work in group {
            if let Work::Request(Job { tag, request: StoreRequest::SaveUserdata { account_id, data } }) = work {
                tags.push(tag);
                saves.push((account_id, data));
            }
        }
        let refs: Vec<(i64, &str)> = saves.iter().map(|(id, data)| (*id, data.as_str())).collect();
        match self.backend.save_many(&refs, now_ms()) {
            Ok(results) => {
                for ((tag, (account_id, _)), result) in tags.into_iter().zip(&saves).zip(results) {
                    let next = match result {
                        Ok(saved) => Next::Reply(Ok(StoreOk::Saved(saved))),
                        Err(e) => {
                            warn!(account_id, error = %e, "saving user data failed");
                            Next::Reply(Err(StoreFailure::Internal(e)))
                        }
                    };
                    outcomes.push((tag, next));
                }
            }
            Err(e) => {
                warn!(saves = tags.len(), error = %e, "saving user data failed");
                outcomes.extend(tags.into_iter().map(|tag| (tag, Next::Reply(Err(StoreFailure::Internal(e.clone()))))));
            }
        }
    }

    /// Runs a session directory request in its own transaction.
    fn execute_directory(&mut self, work: Work) -> Next {
        match work {
            Work::Request(Job { request: StoreRequest::Claim { account_id }, .. }) => {
                match self.backend.claim(account_id) {
                    Ok(outcome) => Next::Reply(Ok(StoreOk::Claim(outcome))),
                    Err(e) => internal("claim", &e),
                }
            }
            Work::Request(Job { request: StoreRequest::Release { account_id }, .. }) => {
                match self.backend.release(account_id) {
                    Ok(()) => Next::Reply(Ok(StoreOk::Done)),
                    Err(e) => internal("release", &e),
                }
            }
            _ => Next::Reply(Err(StoreFailure::Internal("not a directory request".into()))),
        }
    }

    /// Runs one message inside the current transaction.
    fn execute(&mut self, work: Work) -> Next {
        match work {
            Work::Request(Job { tag, request }) => {
                let kind = request.kind();
                match request {
                    StoreRequest::VerifyPassword { account, password } => match self.backend.find_account(&account) {
                        Ok(Some((account, phc))) if self.hasher.needs_rehash(&phc) => {
                            Next::Hash(HashJob::Rehash { tag, account, phc, password })
                        }
                        Ok(found) => Next::Hash(HashJob::Verify { tag, found, password }),
                        Err(e) => internal(kind, &e),
                    },
                    StoreRequest::Register { account, password } => match self.backend.account_exists(&account) {
                        Ok(true) => Next::Reply(Err(StoreFailure::AccountExists)),
                        Ok(false) => Next::Hash(HashJob::Register { tag, account, password }),
                        Err(e) => internal(kind, &e),
                    },
                    StoreRequest::ChangePassword { account_id, old_password, new_password } => {
                        self.start_change_password(tag, account_id, old_password, new_password)
                    }
                    StoreRequest::SaveUserdata { account_id, data } => {
                        match self.backend.save(account_id, &data, now_ms()) {
                            Ok(saved) => Next::Reply(Ok(StoreOk::Saved(saved))),
                            Err(e) => {
                                warn!(account_id, error = %e, "saving user data failed");
                                Next::Reply(Err(StoreFailure::Internal(e)))
                            }
                        }
                    }
                    StoreRequest::LoadUserdata { account_id } => match self.backend.latest_userdata(account_id) {
                        Ok(found) => Next::Reply(Ok(StoreOk::Userdata(found))),
                        Err(e) => internal(kind, &e),
                    },
                    StoreRequest::Claim { .. } | StoreRequest::Release { .. } => {
                        self.execute_directory(Work::Request(Job { tag, request }))
                    }
                }
            }
            Work::Hashed(Hashed::Register { account, password_hash, .. }) => {
                match self.backend.insert_account(&account, &password_hash, now_ms()) {
                    Ok(Some(account)) => {
                        info!(account_id = account.id, account = %account.name, "account registered");
                        Next::Reply(Ok(StoreOk::Account(account)))
                    }
                    Ok(None) => Next::Reply(Err(StoreFailure::AccountExists)),
                    Err(e) => internal("register", &e),
                }
            }
            Work::Hashed(Hashed::Rehashed { account, expected_hash, new_hash, .. }) => {
                if let Some(new_hash) = new_hash {
                    let account_id = account.id;
                    match self.backend.swap_password_hash(account_id, &expected_hash, &new_hash) {
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
            }) => match self.backend.swap_password_hash(account_id, &expected_hash, &new_hash) {
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
    fn start_change_password(&mut self, tag: u64, account_id: i64, old_password: String, new_password: String) -> Next {
        match self.backend.password_hash_of(account_id) {
            Ok(current_hash) => {
                Next::Hash(HashJob::ChangePassword { tag, account_id, current_hash, old_password, new_password })
            }
            Err(e) => internal("change_password", &e),
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

/// Most saves run together by [`Backend::save_many`].
const MAX_SAVE_GROUP: usize = 1024;

/// Whether `work` is a client save.
fn is_save(work: &Work) -> bool {
    matches!(work, Work::Request(Job { request: StoreRequest::SaveUserdata { .. }, .. }))
}

/// Logs a failed statement and turns it into a reply.
fn internal(kind: &'static str, error: &SqlError) -> Next {
    warn!(request = kind, error = %error, "store request failed");
    Next::Reply(Err(StoreFailure::Internal(error.clone())))
}
