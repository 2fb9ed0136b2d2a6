//! [`Database`]: synchronous access for the operator command line, and every
//! SQL statement of the store (the worker thread runs the same functions).

use std::sync::Mutex;

use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::password::PasswordHasher;
use crate::time::now_ms;
use crate::{
    Account, SavedVersion, StoreConfig, StoreError, Userdata, pg, schema, validate_new_account, validate_new_password,
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
    engine: Engine,
    /// Hashes new passwords with the configured cost.
    hasher: PasswordHasher,
}

/// The connection of a [`Database`].
enum Engine {
    /// An SQLite file.
    Sqlite(Connection),
    /// The PostgreSQL database of a cluster (docs/cluster.md).
    Postgres(Mutex<postgres::Client>),
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.engine {
            Engine::Sqlite(conn) => f.debug_struct("Database").field("path", &conn.path()).finish_non_exhaustive(),
            Engine::Postgres(_) => f.debug_struct("Database").field("engine", &"postgres").finish_non_exhaustive(),
        }
    }
}

impl Database {
    /// Opens (creating and migrating as needed) the database of `config`:
    /// an SQLite file, or PostgreSQL when [`StoreConfig::is_postgres`].
    pub fn open(config: &StoreConfig) -> Result<Self, StoreError> {
        let hasher = PasswordHasher::new(config.argon2_params()?);
        let engine = match config.postgres_url() {
            Some(url) => {
                let client = pg::off_runtime(|| -> Result<_, StoreError> {
                    let mut client = pg::connect(url, "portcullis-account")?;
                    pg::migrate(&mut client, config, &hasher)?;
                    Ok(client)
                })?;
                Engine::Postgres(Mutex::new(client))
            }
            None => Engine::Sqlite(schema::open_connection(config, &hasher)?),
        };
        Ok(Self { engine, hasher })
    }

    /// Creates an account after checking the registration rules.
    ///
    /// Errors: [`StoreError::Rule`], [`StoreError::AccountExists`] (names are
    /// unique ignoring ASCII case).
    pub fn add_account(&self, name: &str, password: &str) -> Result<Account, StoreError> {
        validate_new_account(name, password)?;
        let exists = || StoreError::AccountExists(name.to_owned());
        match &self.engine {
            Engine::Sqlite(conn) => {
                if account_exists(conn, name)? {
                    return Err(exists());
                }
                let hash = self.hasher.hash(password).map_err(StoreError::Hashing)?;
                insert_account(conn, name, &hash, now_ms())
                    .map_err(|e| if is_unique_violation(&e) { exists() } else { e.into() })
            }
            Engine::Postgres(client) => {
                let hash = self.hasher.hash(password).map_err(StoreError::Hashing)?;
                let row = lock(client).query_opt(
                    "INSERT INTO accounts (name, password_hash, created_at_ms) VALUES ($1::text, $2::text, $3::bigint)
                     ON CONFLICT DO NOTHING RETURNING id",
                    &[&name, &hash, &now_ms()],
                )?;
                let row = row.ok_or_else(exists)?;
                Ok(Account { id: row.get(0), name: name.to_owned() })
            }
        }
    }

    /// Every account, oldest first, with a summary of its user data.
    pub fn list_accounts(&self) -> Result<Vec<AccountSummary>, StoreError> {
        const LIST: &str = "SELECT a.id, a.name, a.created_at_ms, COUNT(u.version), MAX(u.version)
             FROM accounts a LEFT JOIN userdata u ON u.account_id = a.id
             GROUP BY a.id ORDER BY a.id";
        match &self.engine {
            Engine::Sqlite(conn) => {
                let mut stmt = conn.prepare(LIST)?;
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
            Engine::Postgres(client) => Ok(lock(client)
                .query(LIST, &[])?
                .into_iter()
                .map(|row| AccountSummary {
                    id: row.get(0),
                    name: row.get(1),
                    created_at_ms: row.get(2),
                    versions: u64::try_from(row.get::<_, i64>(3)).unwrap_or(0),
                    latest_version: row.get::<_, Option<i64>>(4).map(|v| u64::try_from(v).unwrap_or(0)),
                })
                .collect()),
        }
    }

    /// Replaces the password of the account `name` (any ASCII case) after
    /// checking the password rule.
    ///
    /// Errors: [`StoreError::Rule`], [`StoreError::UnknownAccount`].
    pub fn set_password(&self, name: &str, password: &str) -> Result<(), StoreError> {
        validate_new_password(password)?;
        let hash = self.hasher.hash(password).map_err(StoreError::Hashing)?;
        let changed = match &self.engine {
            Engine::Sqlite(conn) => {
                conn.execute("UPDATE accounts SET password_hash = ?2 WHERE name = ?1", params![name, hash])? as u64
            }
            Engine::Postgres(client) => lock(client).execute(
                "UPDATE accounts SET password_hash = $2::text WHERE lower(name) = lower($1::text)",
                &[&name, &hash],
            )?,
        };
        if changed == 0 {
            return Err(StoreError::UnknownAccount(name.to_owned()));
        }
        Ok(())
    }

    /// Checks a password: `Some(account)` when `name` exists and `password`
    /// is right, `None` otherwise.
    pub fn verify_password(&self, name: &str, password: &str) -> Result<Option<Account>, StoreError> {
        let found = match &self.engine {
            Engine::Sqlite(conn) => find_account(conn, name)?,
            Engine::Postgres(client) => lock(client)
                .query_opt(
                    "SELECT id, name, password_hash FROM accounts WHERE lower(name) = lower($1::text)",
                    &[&name],
                )?
                .map(|r| (Account { id: r.get(0), name: r.get(1) }, r.get(2))),
        };
        let Some((account, phc)) = found else {
            return Ok(None);
        };
        let ok = PasswordHasher::verify(&phc, password).map_err(StoreError::Hashing)?;
        Ok(ok.then_some(account))
    }

    /// The newest user data of an account, `None` when it has none.
    pub fn load_userdata(&self, account_id: i64) -> Result<Option<Userdata>, StoreError> {
        match &self.engine {
            Engine::Sqlite(conn) => Ok(latest_userdata(conn, account_id)?),
            Engine::Postgres(client) => Ok(lock(client)
                .query_opt(
                    "SELECT data, version, saved_at_ms FROM userdata WHERE account_id = $1::bigint
                     ORDER BY version DESC LIMIT 1",
                    &[&account_id],
                )?
                .map(|r| Userdata {
                    data: r.get(0),
                    version: u64::try_from(r.get::<_, i64>(1)).unwrap_or(0),
                    saved_at_ms: r.get(2),
                })),
        }
    }

    /// The SQLite connection and hasher, for the store's threads.
    pub(crate) fn into_parts(self) -> Result<(Connection, PasswordHasher), StoreError> {
        match self.engine {
            Engine::Sqlite(conn) => Ok((conn, self.hasher)),
            Engine::Postgres(_) => Err(StoreError::Unsupported("not an SQLite database")),
        }
    }
}

/// Locks the PostgreSQL client of a [`Database`] (a panic while it was held cannot leave it inconsistent).
fn lock(client: &Mutex<postgres::Client>) -> std::sync::MutexGuard<'_, postgres::Client> {
    client.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
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
