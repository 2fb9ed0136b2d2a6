//! Opening the SQLite file: connection settings, versioned migrations and the
//! demo accounts of a new database.
//!
//! The schema version is `PRAGMA user_version` (0 = no Portcullis schema
//! yet); `PRAGMA application_id` marks the file as Portcullis's. This needs
//! no migration table and no extra crate: the whole history is the
//! [`MIGRATIONS`] list, applied in one `BEGIN IMMEDIATE` transaction, so two
//! processes opening the same new file cannot both create it.

use std::fs::OpenOptions;
use std::io;
#[cfg(unix)]
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, TransactionBehavior, params};
use tracing::{debug, info};

use crate::password::PasswordHasher;
use crate::time::now_ms;
use crate::{StoreConfig, StoreError};

/// The demo accounts that a database without the schema gets (unless
/// [`StoreConfig::demo_accounts`] is off).
pub const DEMO_ACCOUNTS: [&str; 3] = ["netease1", "netease2", "netease3"];

/// The password of every demo account (exempt from the registration rules).
pub const DEMO_PASSWORD: &str = "123";

/// The schema version this code creates and understands.
pub const SCHEMA_VERSION: i64 = 1;

/// `PRAGMA application_id` of a Portcullis database ("PCLS").
const APPLICATION_ID: i32 = 0x5043_4C53;

/// How long a statement waits for another connection's lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Migration `n` (0-based) takes the schema from version `n` to `n + 1`.
const MIGRATIONS: [&str; SCHEMA_VERSION as usize] = [
    // 1: accounts and the append-only user data history. `userdata` is an
    // ordinary rowid table: every save appends at the table's end and only
    // the small (account_id, version) index is updated in the middle, which
    // measured about 10% faster for interleaved saves than WITHOUT ROWID.
    "CREATE TABLE accounts (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE COLLATE NOCASE,
        password_hash TEXT NOT NULL,
        created_at_ms INTEGER NOT NULL
    );
    CREATE TABLE userdata (
        account_id INTEGER NOT NULL REFERENCES accounts(id),
        version INTEGER NOT NULL,
        saved_at_ms INTEGER NOT NULL,
        data TEXT NOT NULL,
        PRIMARY KEY (account_id, version)
    );",
];

/// Opens `config.path`, checks that it is a database this code may use,
/// then sets the connection up (WAL, `synchronous`, `busy_timeout`, foreign
/// keys) and brings the schema to [`SCHEMA_VERSION`], adding the demo
/// accounts to a database that had no schema.
///
/// A missing file is created with mode 0600 first (it holds password
/// hashes; SQLite gives its `-wal` and `-shm` files the same mode). A file
/// that is refused (not SQLite, another program's tables, a newer schema
/// version) is only read, never written: nothing that persists is changed
/// before the check (docs/protocol.md §4).
pub(crate) fn open_connection(config: &StoreConfig, hasher: &PasswordHasher) -> Result<Connection, StoreError> {
    create_owner_only(&config.path)?;
    let mut conn = Connection::open(&config.path)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // Reads only: a refused file must be left as it was.
    check_schema(&conn)?;
    // An in-memory database answers "memory": nothing to enforce there.
    let _mode: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
    let synchronous = if config.synchronous_full { "FULL" } else { "NORMAL" };
    conn.pragma_update(None, "synchronous", synchronous)?;
    conn.pragma_update(None, "foreign_keys", true)?;
    migrate(&mut conn, config, hasher)?;
    Ok(conn)
}

/// Whether `path` names a file that [`Connection::open`] would create:
/// not the in-memory database (`":memory:"`, or `""` for a temporary one)
/// and not a `file:` URI (whose file name SQLite takes apart itself).
fn is_plain_file(path: &Path) -> bool {
    let text = path.as_os_str().as_encoded_bytes();
    !(text.is_empty() || text == b":memory:" || text.starts_with(b"file:"))
}

/// Creates `path` as an empty file with mode 0600 (before the umask, which
/// can only take bits away) unless it exists. An existing file keeps its
/// mode.
fn create_owner_only(path: &Path) -> Result<(), StoreError> {
    if !is_plain_file(path) {
        return Ok(());
    }
    // `create_new`: never truncates, and no race with another creator.
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    options.mode(0o600);
    match options.open(path) {
        Ok(_) => {
            debug!(path = %path.display(), "database file created with mode 0600");
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(source) => Err(StoreError::CreateFile { path: path.to_owned(), source }),
    }
}

/// Reads `PRAGMA user_version`.
fn schema_version(conn: &Connection) -> Result<i64, StoreError> {
    Ok(conn.pragma_query_value(None, "user_version", |row| row.get(0))?)
}

/// Fails unless the file is a database this code can use: a Portcullis
/// schema of at most [`SCHEMA_VERSION`], or no schema at all (no version
/// and nothing in `sqlite_master`). Only reads; a file that is not SQLite
/// fails here with SQLite's "file is not a database".
fn check_schema(conn: &Connection) -> Result<(), StoreError> {
    let version = schema_version(conn)?;
    let application_id: i32 = conn.pragma_query_value(None, "application_id", |row| row.get(0))?;
    if version == 0 {
        let objects: i64 = conn.query_row("SELECT COUNT(*) FROM sqlite_master", [], |row| row.get(0))?;
        // Portcullis sets its application_id and version in the transaction
        // that creates its tables: tables without them are someone else's.
        if objects == 0 {
            return Ok(());
        }
        return Err(StoreError::NotPortcullis { application_id });
    }
    if application_id != APPLICATION_ID {
        return Err(StoreError::NotPortcullis { application_id });
    }
    if !(0..=SCHEMA_VERSION).contains(&version) {
        return Err(StoreError::SchemaTooNew { found: version, supported: SCHEMA_VERSION });
    }
    Ok(())
}

/// Applies the missing migrations.
fn migrate(conn: &mut Connection, config: &StoreConfig, hasher: &PasswordHasher) -> Result<(), StoreError> {
    let before = schema_version(conn)?;
    if before == SCHEMA_VERSION {
        return Ok(());
    }
    // Hash outside the transaction: it is slow and needs no lock.
    let demo_hashes = if before == 0 && config.demo_accounts {
        DEMO_ACCOUNTS
            .iter()
            .map(|name| Ok((*name, hasher.hash(DEMO_PASSWORD).map_err(StoreError::Hashing)?)))
            .collect::<Result<Vec<_>, StoreError>>()?
    } else {
        Vec::new()
    };

    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    // Another process may have migrated while we were hashing.
    check_schema(&tx)?;
    let from = schema_version(&tx)?;
    let Ok(start) = usize::try_from(from) else {
        return Err(StoreError::SchemaTooNew { found: from, supported: SCHEMA_VERSION });
    };
    for migration in MIGRATIONS.iter().skip(start) {
        tx.execute_batch(migration)?;
    }
    let demo_added = if from == 0 { demo_hashes.len() } else { 0 };
    if from == 0 {
        tx.pragma_update(None, "application_id", APPLICATION_ID)?;
        let created_at_ms = now_ms();
        for (name, hash) in &demo_hashes {
            tx.execute(
                "INSERT INTO accounts (name, password_hash, created_at_ms) VALUES (?1, ?2, ?3)",
                params![name, hash, created_at_ms],
            )?;
        }
    }
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    tx.commit()?;
    info!(
        path = %config.path.display(),
        from,
        to = SCHEMA_VERSION,
        demo_accounts = demo_added,
        "database schema migrated"
    );
    Ok(())
}
