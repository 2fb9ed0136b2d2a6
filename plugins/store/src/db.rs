//! [`Database`]: synchronous access for the operator command line, and every
//! SQL statement of the store (the worker thread runs the same functions).

use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::password::PasswordHasher;
use crate::time::now_ms;
use crate::{
    Account, SavedVersion, StoreConfig, StoreError, Userdata, schema, validate_new_account, validate_new_password,
};

/// One account as `portcullis account list` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountSummary {
    /// Row id.
    pub id: i64,
    /// The spelling given at registration.
    pub name: String,
    /// Creation time, Unix milliseconds.
    pub created_at_ms: i64,
    /// How many user data versions the account has saved.
    pub versions: u64,
    /// The newest version, `None` when it has saved nothing.
    pub latest_version: Option<u64>,
}

/// The database opened synchronously, for the `portcullis account`
/// subcommands (no server running). The server uses [`Store`](crate::Store).
///
/// Opening runs the same schema, migration and demo-account logic as
/// [`Store::open`](crate::Store::open).
///
/// # Examples
///
/// ```
/// use portcullis_store::{Database, StoreConfig};
///
/// let db = Database::open(&StoreConfig::in_memory().fast_hashing().with_demo_accounts())?;
/// db.add_account("Player42", "secret")?;
/// let names: Vec<String> = db.list_accounts()?.into_iter().map(|a| a.name).collect();
/// assert_eq!(names, ["netease1", "netease2", "netease3", "Player42"]);
/// # Ok::<(), portcullis_store::StoreError>(())
/// ```
pub struct Database {
    /// The open, migrated connection.
    conn: Connection,
    /// Hashes new passwords with the configured cost.
    hasher: PasswordHasher,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database").field("path", &self.conn.path()).finish_non_exhaustive()
    }
}

impl Database {
    /// Opens (creating and migrating as needed) the database of `config`.
    pub fn open(config: &StoreConfig) -> Result<Self, StoreError> {
        let hasher = PasswordHasher::new(config.argon2_params()?);
        let conn = schema::open_connection(config, &hasher)?;
        Ok(Self { conn, hasher })
    }

    /// Creates an account after checking the registration rules.
    ///
    /// Errors: [`StoreError::Rule`], [`StoreError::AccountExists`] (names are
    /// unique ignoring ASCII case).
    pub fn add_account(&self, name: &str, password: &str) -> Result<Account, StoreError> {
        validate_new_account(name, password)?;
        if account_exists(&self.conn, name)? {
            return Err(StoreError::AccountExists(name.to_owned()));
        }
        let hash = self.hasher.hash(password).map_err(StoreError::Hashing)?;
        insert_account(&self.conn, name, &hash, now_ms())
            .map_err(|e| if is_unique_violation(&e) { StoreError::AccountExists(name.to_owned()) } else { e.into() })
    }

    /// Every account, oldest first, with a summary of its user data.
    pub fn list_accounts(&self) -> Result<Vec<AccountSummary>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT a.id, a.name, a.created_at_ms, COUNT(u.version), MAX(u.version)
             FROM accounts a LEFT JOIN userdata u ON u.account_id = a.id
             GROUP BY a.id ORDER BY a.id",
        )?;
        let rows = stmt.query_map([], |row| {
            Ok(AccountSummary {
                id: row.get(0)?,
                name: row.get(1)?,
                created_at_ms: row.get(2)?,
                versions: column_u64(row, 3)?,
                latest_version: row.get::<_, Option<i64>>(4)?.map(|_| column_u64(row, 4)).transpose()?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Replaces the password of the account `name` (any ASCII case) after
    /// checking the password rule.
    ///
    /// Errors: [`StoreError::Rule`], [`StoreError::UnknownAccount`].
    pub fn set_password(&self, name: &str, password: &str) -> Result<(), StoreError> {
        validate_new_password(password)?;
        let hash = self.hasher.hash(password).map_err(StoreError::Hashing)?;
        let changed =
            self.conn.execute("UPDATE accounts SET password_hash = ?2 WHERE name = ?1", params![name, hash])?;
        if changed == 0 {
            return Err(StoreError::UnknownAccount(name.to_owned()));
        }
        Ok(())
    }

    /// Checks a password: `Some(account)` when `name` exists and `password`
    /// is right, `None` otherwise.
    pub fn verify_password(&self, name: &str, password: &str) -> Result<Option<Account>, StoreError> {
        let Some((account, phc)) = find_account(&self.conn, name)? else {
            return Ok(None);
        };
        let ok = PasswordHasher::verify(&phc, password).map_err(StoreError::Hashing)?;
        Ok(ok.then_some(account))
    }

    /// The newest user data of an account, `None` when it has none.
    pub fn load_userdata(&self, account_id: i64) -> Result<Option<Userdata>, StoreError> {
        Ok(latest_userdata(&self.conn, account_id)?)
    }

    /// The connection and hasher, for the store's threads.
    pub(crate) fn into_parts(self) -> (Connection, PasswordHasher) {
        (self.conn, self.hasher)
    }
}

/// Whether `error` is a UNIQUE constraint violation (a taken account name).
pub(crate) fn is_unique_violation(error: &rusqlite::Error) -> bool {
    matches!(
        error,
        rusqlite::Error::SqliteFailure(e, _)
            if e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
    )
}

/// The account called `name` (any ASCII case) and its PHC string.
pub(crate) fn find_account(conn: &Connection, name: &str) -> rusqlite::Result<Option<(Account, String)>> {
    conn.prepare_cached("SELECT id, name, password_hash FROM accounts WHERE name = ?1")?
        .query_row([name], |row| Ok((Account { id: row.get(0)?, name: row.get(1)? }, row.get(2)?)))
        .optional()
}

/// Whether an account called `name` (any ASCII case) exists.
pub(crate) fn account_exists(conn: &Connection, name: &str) -> rusqlite::Result<bool> {
    conn.prepare_cached("SELECT 1 FROM accounts WHERE name = ?1")?.exists([name])
}

/// Inserts an account; fails with a UNIQUE violation if the name is taken.
pub(crate) fn insert_account(
    conn: &Connection,
    name: &str,
    password_hash: &str,
    created_at_ms: i64,
) -> rusqlite::Result<Account> {
    let id = conn
        .prepare_cached("INSERT INTO accounts (name, password_hash, created_at_ms) VALUES (?1, ?2, ?3)")?
        .insert(params![name, password_hash, created_at_ms])?;
    Ok(Account { id, name: name.to_owned() })
}

/// The PHC string of account `id`, `None` if there is no such account.
pub(crate) fn password_hash_of(conn: &Connection, id: i64) -> rusqlite::Result<Option<String>> {
    conn.prepare_cached("SELECT password_hash FROM accounts WHERE id = ?1")?
        .query_row([id], |row| row.get(0))
        .optional()
}

/// Replaces the PHC string of account `id` only if it is still `expected`
/// (compare-and-swap); returns whether it was replaced.
pub(crate) fn swap_password_hash(conn: &Connection, id: i64, expected: &str, new: &str) -> rusqlite::Result<bool> {
    let changed = conn
        .prepare_cached("UPDATE accounts SET password_hash = ?3 WHERE id = ?1 AND password_hash = ?2")?
        .execute(params![id, expected, new])?;
    Ok(changed == 1)
}

/// Converts a version for SQL (versions never come near `i64::MAX`).
fn sql_version(version: u64) -> rusqlite::Result<i64> {
    i64::try_from(version).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))
}

/// Reads a non-negative integer column (a version or a count).
fn column_u64(row: &Row<'_>, index: usize) -> rusqlite::Result<u64> {
    let value: i64 = row.get(index)?;
    u64::try_from(value)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(index, rusqlite::types::Type::Integer, Box::new(e)))
}

/// The newest version of account `id`, without its data.
pub(crate) fn latest_version(conn: &Connection, id: i64) -> rusqlite::Result<Option<SavedVersion>> {
    conn.prepare_cached(
        "SELECT version, saved_at_ms FROM userdata WHERE account_id = ?1
         ORDER BY version DESC LIMIT 1",
    )?
    .query_row([id], |row| Ok(SavedVersion { version: column_u64(row, 0)?, saved_at_ms: row.get(1)? }))
    .optional()
}

/// Appends a version (fails with a constraint error if it exists or the
/// account does not).
pub(crate) fn insert_userdata(conn: &Connection, id: i64, saved: SavedVersion, data: &str) -> rusqlite::Result<()> {
    conn.prepare_cached("INSERT INTO userdata (account_id, version, saved_at_ms, data) VALUES (?1, ?2, ?3, ?4)")?
        .execute(params![id, sql_version(saved.version)?, saved.saved_at_ms, data])?;
    Ok(())
}

/// The newest version of account `id`, with its data.
pub(crate) fn latest_userdata(conn: &Connection, id: i64) -> rusqlite::Result<Option<Userdata>> {
    conn.prepare_cached(
        "SELECT data, version, saved_at_ms FROM userdata WHERE account_id = ?1
         ORDER BY version DESC LIMIT 1",
    )?
    .query_row([id], |row| Ok(Userdata { data: row.get(0)?, version: column_u64(row, 1)?, saved_at_ms: row.get(2)? }))
    .optional()
}
