//! The hasher threads: argon2id verification and hashing away from the
//! SQLite thread, so that a login storm never stalls saves.
//!
//! The SQLite thread sends a [`HashJob`] after the batch that read what the
//! job needs has committed. Logins are answered from here directly, except
//! those whose stored hash has other argon2 parameters than the configured
//! ones: they, register and change-password go back to the SQLite thread as
//! [`Hashed`] to be written (the re-hash, the account, the new hash).
//!
//! Every password check costs at least one hash computation with the
//! configured parameters, like the check of an unknown account against the
//! dummy hash, so that timing does not tell which names exist
//! (docs/protocol.md §4).

use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};
use tracing::{debug, warn};

use crate::password::{PasswordHasher, WorkArea};
use crate::store::Notify;
use crate::{Account, StoreFailure, StoreOk, StoreReply};

/// Nice value of the hasher threads. During a login storm every core runs a
/// hash; at the default priority a frame that wakes behind one can wait
/// for it (worst-window frame p99 1.7–2.6 ms before, 0.3–0.4 ms after,
/// BENCHMARKS.md). Logins/s is unchanged: hashing still gets every cycle the
/// other threads leave.
const HASHER_NICE: i32 = 19;

/// Lowers the calling thread's priority to [`HASHER_NICE`] (Linux: nice is
/// per thread). Best effort: a failure only costs frame-time jitter.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    if let Err(e) = rustix::process::setpriority_process(Some(rustix::thread::gettid()), HASHER_NICE) {
        debug!(error = %e, "could not lower the hasher thread's priority");
    }
}

/// Password work for a hasher thread.
pub(crate) enum HashJob {
    /// A login: check `password` against the account's hash (or the dummy
    /// hash when the account does not exist) and reply. The hash has the
    /// configured parameters.
    Verify {
        /// The request's tag.
        tag: u64,
        /// The account and its PHC string; `None` for an unknown name.
        found: Option<(Account, String)>,
        /// The password to check.
        password: String,
    },
    /// A login against a hash with other argon2 parameters than the
    /// configured ones: check `password`; if it is right, hash it with the
    /// configured parameters and hand the new hash back to the SQLite thread
    /// (which stores it and answers); if it is wrong, spend one
    /// configured-cost verification too, then answer through the SQLite
    /// thread.
    Rehash {
        /// The request's tag.
        tag: u64,
        /// The account.
        account: Account,
        /// Its PHC string, with other parameters.
        phc: String,
        /// The password to check.
        password: String,
    },
    /// A registration: hash the password, then back to the SQLite thread.
    Register {
        /// The request's tag.
        tag: u64,
        /// Account name to insert.
        account: String,
        /// The password to hash.
        password: String,
    },
    /// A password change: check the old password against `current_hash`,
    /// hash the new one, then back to the SQLite thread.
    ChangePassword {
        /// The request's tag.
        tag: u64,
        /// The account.
        account_id: i64,
        /// Its PHC string when read; `None` for an unknown account.
        current_hash: Option<String>,
        /// Must match `current_hash`.
        old_password: String,
        /// Replaces it.
        new_password: String,
    },
}

impl HashJob {
    /// Whether the job answers through the SQLite thread (which then waits
    /// for it before it may stop).
    pub(crate) fn returns_to_worker(&self) -> bool {
        !matches!(self, Self::Verify { .. })
    }
}

/// Finished password work that the SQLite thread must write or answer.
pub(crate) enum Hashed {
    /// Insert this account.
    Register {
        /// The request's tag.
        tag: u64,
        /// Account name.
        account: String,
        /// PHC string of its password.
        password_hash: String,
    },
    /// A successful login whose hash had other parameters: swap the
    /// account's hash from `expected_hash` to `new_hash` (unless it changed
    /// meanwhile), then answer with the account.
    Rehashed {
        /// The request's tag.
        tag: u64,
        /// The account that logged in.
        account: Account,
        /// The hash the password was checked against.
        expected_hash: String,
        /// The same password hashed with the configured parameters; `None`
        /// if hashing failed (the old hash is kept, the login still succeeds).
        new_hash: Option<String>,
    },
    /// Swap the account's hash from `expected_hash` to `new_hash`. If the
    /// hash changed meanwhile, the change starts over (hence the passwords).
    ChangePassword {
        /// The request's tag.
        tag: u64,
        /// The account.
        account_id: i64,
        /// The hash the old password was checked against.
        expected_hash: String,
        /// The new password's hash.
        new_hash: String,
        /// Kept to start over.
        old_password: String,
        /// Kept to start over.
        new_password: String,
    },
    /// Answer the request with this failure.
    Failed {
        /// The request's tag.
        tag: u64,
        /// Wrong old password, or a hashing failure.
        failure: StoreFailure,
    },
}

impl Hashed {
    /// The request's tag.
    pub(crate) fn tag(&self) -> u64 {
        match self {
            Self::Register { tag, .. }
            | Self::Rehashed { tag, .. }
            | Self::ChangePassword { tag, .. }
            | Self::Failed { tag, .. } => *tag,
        }
    }
}

/// What every hasher thread shares.
pub(crate) struct Hashers {
    /// Hashes with the configured cost.
    pub(crate) hasher: PasswordHasher,
    /// A hash with the configured cost that no account has: unknown accounts
    /// are verified against it so that they take as long as known ones.
    pub(crate) dummy_hash: String,
    /// Login replies go straight to the caller.
    pub(crate) replies: Sender<StoreReply>,
    /// Register and change-password results go back to the SQLite thread.
    pub(crate) hashed: Sender<Hashed>,
    /// Wakes the caller after a reply.
    pub(crate) notify: Option<Notify>,
}

/// A hasher thread: runs jobs until the SQLite thread drops its sender and
/// the queue is empty.
pub(crate) fn run(shared: &Arc<Hashers>, jobs: &Receiver<HashJob>) {
    lower_priority();
    let mut area = WorkArea::default();
    while let Ok(job) = jobs.recv() {
        match job {
            HashJob::Verify { tag, found, password } => {
                let result = shared.verify_login(found, &password, &mut area);
                // Fails only when the Store is gone, and then nobody listens.
                let _ = shared.replies.send(StoreReply { tag, result });
                if let Some(notify) = &shared.notify {
                    notify();
                }
            }
            HashJob::Rehash { tag, account, phc, password } => {
                let hashed = shared.verify_and_rehash(tag, account, phc, &password, &mut area);
                shared.hand_back(hashed);
            }
            HashJob::Register { tag, account, password } => {
                let hashed = match shared.hasher.hash_in(&password, &mut area) {
                    Ok(password_hash) => Hashed::Register { tag, account, password_hash },
                    Err(e) => {
                        warn!(error = %e, "hashing a new password failed");
                        Hashed::Failed { tag, failure: StoreFailure::Internal(format!("password hashing: {e}")) }
                    }
                };
                shared.hand_back(hashed);
            }
            HashJob::ChangePassword { tag, account_id, current_hash, old_password, new_password } => {
                let hashed =
                    shared.change_password(tag, account_id, current_hash, old_password, new_password, &mut area);
                shared.hand_back(hashed);
            }
        }
    }
}

impl Hashers {
    /// Checks a login; an unknown account costs the same as a wrong password.
    fn verify_login(
        &self,
        found: Option<(Account, String)>,
        password: &str,
        area: &mut WorkArea,
    ) -> Result<StoreOk, StoreFailure> {
        let Some((account, phc)) = found else {
            self.verify_dummy(password, area);
            return Err(StoreFailure::InvalidCredentials);
        };
        match PasswordHasher::verify_in(&phc, password, area) {
            Ok(true) => Ok(StoreOk::Account(account)),
            Ok(false) => Err(StoreFailure::InvalidCredentials),
            Err(e) => {
                warn!(account_id = account.id, error = %e, "stored password hash is unusable");
                Err(StoreFailure::Internal(format!("stored password hash: {e}")))
            }
        }
    }

    /// Checks a login against a hash with other parameters than the
    /// configured ones. Either way it also computes one hash with the
    /// configured parameters: the re-hash when the password is right, a
    /// dummy verification when it is wrong, so a wrong password costs at
    /// least what an unknown account does.
    fn verify_and_rehash(
        &self,
        tag: u64,
        account: Account,
        phc: String,
        password: &str,
        area: &mut WorkArea,
    ) -> Hashed {
        let failed = |failure| Hashed::Failed { tag, failure };
        match PasswordHasher::verify_in(&phc, password, area) {
            Ok(true) => {
                let new_hash = match self.hasher.hash_in(password, area) {
                    Ok(new_hash) => Some(new_hash),
                    Err(e) => {
                        warn!(account_id = account.id, error = %e, "re-hashing a password failed; keeping the old hash");
                        None
                    }
                };
                Hashed::Rehashed { tag, account, expected_hash: phc, new_hash }
            }
            Ok(false) => {
                self.verify_dummy(password, area);
                failed(StoreFailure::InvalidCredentials)
            }
            Err(e) => {
                warn!(account_id = account.id, error = %e, "stored password hash is unusable");
                failed(StoreFailure::Internal(format!("stored password hash: {e}")))
            }
        }
    }

    /// Spends the time of one verification and forgets the result.
    fn verify_dummy(&self, password: &str, area: &mut WorkArea) {
        let _ = std::hint::black_box(PasswordHasher::verify_in(&self.dummy_hash, password, area));
    }

    /// Checks the old password and hashes the new one.
    fn change_password(
        &self,
        tag: u64,
        account_id: i64,
        current_hash: Option<String>,
        old_password: String,
        new_password: String,
        area: &mut WorkArea,
    ) -> Hashed {
        let failed = |failure| Hashed::Failed { tag, failure };
        let Some(expected_hash) = current_hash else {
            self.verify_dummy(&old_password, area);
            return failed(StoreFailure::InvalidCredentials);
        };
        match PasswordHasher::verify_in(&expected_hash, &old_password, area) {
            Ok(true) => {}
            Ok(false) => {
                // Like a login: a cheap old hash costs a configured-cost
                // verification on top.
                if self.hasher.needs_rehash(&expected_hash) {
                    self.verify_dummy(&old_password, area);
                }
                return failed(StoreFailure::InvalidCredentials);
            }
            Err(e) => {
                warn!(account_id, error = %e, "stored password hash is unusable");
                return failed(StoreFailure::Internal(format!("stored password hash: {e}")));
            }
        }
        match self.hasher.hash_in(&new_password, area) {
            Ok(new_hash) => {
                Hashed::ChangePassword { tag, account_id, expected_hash, new_hash, old_password, new_password }
            }
            Err(e) => {
                warn!(account_id, error = %e, "hashing a new password failed");
                failed(StoreFailure::Internal(format!("password hashing: {e}")))
            }
        }
    }

    /// Sends finished work back to the SQLite thread.
    fn hand_back(&self, hashed: Hashed) {
        let tag = hashed.tag();
        if self.hashed.send(hashed).is_err() {
            // The SQLite thread waits for every job it handed out before it
            // stops, so this happens only if it died.
            debug!(tag, "store worker gone; dropping hashed result");
        }
    }
}
