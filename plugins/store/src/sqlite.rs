//! The SQLite [`Backend`]: the one connection of the worker thread, the
//! cache of each account's newest version, and the checkpointer poke after
//! each commit. A single node owns its file, so the session directory is
//! trivially local: every claim is granted without SQL.

use std::collections::HashMap;
use std::mem;

use rusqlite::Connection;
use tracing::{error, warn};

use crate::backend::{Backend, SqlError};
use crate::checkpoint::Checkpointer;
use crate::db;
use crate::{Account, ClaimOutcome, SavedVersion, StoreError, Userdata};

/// The newest version of an account that has saved nothing.
const NO_VERSION: SavedVersion = SavedVersion { version: 0, saved_at_ms: i64::MIN };

/// SQLite behind the worker.
pub(crate) struct SqliteBackend {
    /// The only connection the server uses.
    conn: Connection,
    /// Copies the WAL into the database file off this thread (file
    /// databases only).
    checkpointer: Option<Checkpointer>,
    /// Newest committed version per account, so a save needs no `MAX()`
    /// query. Filled on first use; an account's entry is dropped when a save
    /// of it fails.
    latest: HashMap<i64, SavedVersion>,
    /// Newest version per account written by the running batch; merged into
    /// `latest` when the batch commits.
    pending: HashMap<i64, SavedVersion>,
}

impl SqliteBackend {
    /// A backend on an opened, migrated connection.
    pub(crate) fn new(conn: Connection, checkpointer: Option<Checkpointer>) -> Self {
        Self { conn, checkpointer, latest: HashMap::new(), pending: HashMap::new() }
    }
}

/// A rusqlite error as text.
fn text(error: &rusqlite::Error) -> SqlError {
    error.to_string()
}

impl Backend for SqliteBackend {
    fn begin(&mut self, writes: bool) -> Result<(), SqlError> {
        // A transaction left open by a failed ROLLBACK would fail every
        // batch from now on: try again to end it.
        if !self.conn.is_autocommit()
            && let Err(e) = self.conn.execute_batch("ROLLBACK")
        {
            warn!(error = %e, "rollback of a leftover transaction failed");
        }
        self.pending.clear();
        let begin = if writes { "BEGIN IMMEDIATE" } else { "BEGIN DEFERRED" };
        self.conn.execute_batch(begin).map_err(|e| text(&e))
    }

    fn abandoned(&mut self) -> bool {
        // SQLite rolled the transaction back on its own (disk full, I/O error, ...).
        self.conn.is_autocommit()
    }

    fn commit(&mut self) -> Result<(), SqlError> {
        self.conn.execute_batch("COMMIT").map_err(|e| text(&e))
    }

    fn rollback(&mut self) {
        if !self.conn.is_autocommit()
            && let Err(e) = self.conn.execute_batch("ROLLBACK")
        {
            error!(error = %e, "rollback failed");
        }
    }

    fn committed(&mut self) {
        let pending = mem::take(&mut self.pending);
        self.latest.extend(pending);
        if let Some(checkpointer) = &self.checkpointer {
            checkpointer.poke();
        }
    }

    fn failed(&mut self) {
        self.pending.clear();
        // Conservative: cached versions are read again from the database
        // when next needed.
        self.latest.clear();
    }

    fn find_account(&mut self, name: &str) -> Result<Option<(Account, String)>, SqlError> {
        db::find_account(&self.conn, name).map_err(|e| text(&e))
    }

    fn account_exists(&mut self, name: &str) -> Result<bool, SqlError> {
        db::account_exists(&self.conn, name).map_err(|e| text(&e))
    }

    fn insert_account(
        &mut self,
        name: &str,
        password_hash: &str,
        created_at_ms: i64,
    ) -> Result<Option<Account>, SqlError> {
        match db::insert_account(&self.conn, name, password_hash, created_at_ms) {
            Ok(account) => Ok(Some(account)),
            Err(e) if db::is_unique_violation(&e) => Ok(None),
            Err(e) => Err(text(&e)),
        }
    }

    fn password_hash_of(&mut self, id: i64) -> Result<Option<String>, SqlError> {
        db::password_hash_of(&self.conn, id).map_err(|e| text(&e))
    }

    fn swap_password_hash(&mut self, id: i64, expected: &str, new: &str) -> Result<bool, SqlError> {
        db::swap_password_hash(&self.conn, id, expected, new).map_err(|e| text(&e))
    }

    fn save(&mut self, account_id: i64, data: &str, now_ms: i64) -> Result<SavedVersion, SqlError> {
        let known = self.pending.get(&account_id).or_else(|| self.latest.get(&account_id)).copied();
        let previous = match known {
            Some(previous) => previous,
            // Nothing of this account was written in this batch yet (it
            // would be in `pending`), so this is the committed state.
            None => {
                let previous = db::latest_version(&self.conn, account_id).map_err(|e| text(&e))?.unwrap_or(NO_VERSION);
                self.latest.insert(account_id, previous);
                previous
            }
        };
        let saved = SavedVersion {
            version: previous.version.saturating_add(1),
            // Never earlier than the previous version, even if the clock steps back.
            saved_at_ms: now_ms.max(previous.saved_at_ms),
        };
        match db::insert_userdata(&self.conn, account_id, saved, data) {
            Ok(()) => {
                self.pending.insert(account_id, saved);
                Ok(saved)
            }
            Err(e) => {
                self.latest.remove(&account_id);
                Err(text(&e))
            }
        }
    }

    fn latest_userdata(&mut self, id: i64) -> Result<Option<Userdata>, SqlError> {
        db::latest_userdata(&self.conn, id).map_err(|e| text(&e))
    }

    fn claim(&mut self, _id: i64) -> Result<ClaimOutcome, SqlError> {
        Ok(ClaimOutcome::Claimed)
    }

    fn release(&mut self, _id: i64) -> Result<(), SqlError> {
        Ok(())
    }

    fn close(self) -> Result<(), StoreError> {
        let Self { conn, checkpointer, .. } = self;
        // Stopped first, so that closing the last connection checkpoints
        // and removes the WAL.
        if let Some(checkpointer) = checkpointer {
            checkpointer.stop();
        }
        conn.close().map_err(|(_, e)| StoreError::from(e))
    }
}
