//! [`Backend`]: the SQL of one database engine, as the store's worker thread
//! uses it. The worker (`worker.rs`) owns the batching, the order of
//! requests, the hasher hand-offs and the replies; a backend only runs
//! statements on its one connection. SQLite (`sqlite.rs`) and PostgreSQL
//! (`pg.rs`) implement it.

use crate::{Account, ClaimOutcome, SavedVersion, Userdata};

/// Text of a failed statement, for logs and [`StoreFailure::Internal`](crate::StoreFailure::Internal).
pub(crate) type SqlError = String;

/// One database engine behind the worker thread. Every method runs on the
/// worker thread; none may be called from the ECS.
pub(crate) trait Backend: Send + 'static {
    /// Starts the batch's transaction; `writes` says whether a request of
    /// the batch may write (SQLite then takes the write lock up front).
    fn begin(&mut self, writes: bool) -> Result<(), SqlError>;
    /// Whether the engine abandoned the running transaction on its own
    /// (SQLite: disk full, I/O error; PostgreSQL: any failed statement), so
    /// nothing of the batch will be written.
    fn abandoned(&mut self) -> bool;
    /// Commits the batch's transaction.
    fn commit(&mut self) -> Result<(), SqlError>;
    /// Rolls the running transaction back, if there is one.
    fn rollback(&mut self);
    /// After a successful commit (caches learn what is now committed).
    fn committed(&mut self);
    /// After a failed batch (caches forget what they learnt in it).
    fn failed(&mut self);
    /// The account called `name` (any ASCII case) and its PHC string.
    fn find_account(&mut self, name: &str) -> Result<Option<(Account, String)>, SqlError>;
    /// Whether an account called `name` (any ASCII case) exists.
    fn account_exists(&mut self, name: &str) -> Result<bool, SqlError>;
    /// Inserts an account; `None` when the name (any ASCII case) is taken.
    fn insert_account(
        &mut self,
        name: &str,
        password_hash: &str,
        created_at_ms: i64,
    ) -> Result<Option<Account>, SqlError>;
    /// The PHC string of account `id`, `None` if there is no such account.
    fn password_hash_of(&mut self, id: i64) -> Result<Option<String>, SqlError>;
    /// Replaces the PHC string of account `id` only if it is still
    /// `expected` (compare-and-swap); whether it was replaced.
    fn swap_password_hash(&mut self, id: i64, expected: &str, new: &str) -> Result<bool, SqlError>;
    /// Appends the next version of an account's user data, at the later of
    /// `now_ms` and the previous version's time.
    fn save(&mut self, id: i64, data: &str, now_ms: i64) -> Result<SavedVersion, SqlError>;
    /// Appends several saves (in this order, maybe of the same account) in
    /// the running transaction: one result per save, as [`save`](Self::save)
    /// would give them one by one. `Err` fails them all. The default runs
    /// them one by one and stops once the transaction is
    /// [`abandoned`](Self::abandoned) (nothing may run outside it).
    fn save_many(
        &mut self,
        saves: &[(i64, &str)],
        now_ms: i64,
    ) -> Result<Vec<Result<SavedVersion, SqlError>>, SqlError> {
        let mut results = Vec::with_capacity(saves.len());
        for (id, data) in saves {
            if self.abandoned() {
                results.push(Err("transaction rolled back by the database".to_owned()));
                continue;
            }
            results.push(self.save(*id, data, now_ms));
        }
        Ok(results)
    }
    /// The newest version of account `id`, with its data.
    fn latest_userdata(&mut self, id: i64) -> Result<Option<Userdata>, SqlError>;
    /// Claims account `id` for this node in the session directory (its own
    /// transaction, run after the batch committed). A backend without a
    /// shared directory grants every claim.
    fn claim(&mut self, id: i64) -> Result<ClaimOutcome, SqlError>;
    /// Gives up this node's claim (or its wish to take over) of account
    /// `id` (its own transaction, after the batch committed).
    fn release(&mut self, id: i64) -> Result<(), SqlError>;
    /// Closes the connection at the end of the worker thread.
    fn close(self) -> Result<(), crate::StoreError>;
}
