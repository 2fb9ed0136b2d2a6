//! Opening a database: the schema and the demo accounts appear exactly when
//! the file has no Portcullis schema yet. If these fail, a fresh server has
//! no demo accounts, or a restart resurrects accounts an operator deleted.

use std::path::Path;

use portcullis_store::{DEMO_ACCOUNTS, DEMO_PASSWORD, Database, SCHEMA_VERSION, StoreConfig, StoreError};
use rusqlite::Connection;

fn config(path: &Path) -> StoreConfig {
    StoreConfig::new(path).fast_hashing().with_demo_accounts()
}

fn names(db: &Database) -> Vec<String> {
    db.list_accounts().expect("list accounts").into_iter().map(|a| a.name).collect()
}

fn assert_demo_accounts(path: &Path) {
    let db = Database::open(&config(path)).expect("open");
    assert_eq!(names(&db), DEMO_ACCOUNTS);
    for name in DEMO_ACCOUNTS {
        let account = db.verify_password(name, DEMO_PASSWORD).expect("verify").expect("demo password works");
        assert_eq!(account.name, name);
    }
}

/// A server started on a path that does not exist creates it with demo accounts.
#[test]
fn missing_file_gets_schema_and_demo_accounts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("new.db");
    assert_demo_accounts(&path);
    assert!(path.exists());
}

/// An empty file (e.g. made by `touch`) is a database without the schema.
#[test]
fn empty_file_gets_schema_and_demo_accounts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("empty.db");
    std::fs::write(&path, b"").expect("create empty file");
    assert_demo_accounts(&path);
}

/// An SQLite file with no tables at all (here: its only table was dropped)
/// is a database without the schema. One with another program's tables is
/// refused instead (tests/refused.rs).
#[test]
fn sqlite_file_without_tables_gets_schema_and_demo_accounts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("blank.db");
    {
        let conn = Connection::open(&path).expect("open raw");
        conn.execute_batch("CREATE TABLE scratch (x); DROP TABLE scratch;").expect("table created and dropped");
    }
    assert!(std::fs::metadata(&path).expect("stat").len() > 0, "a real SQLite file");
    assert_demo_accounts(&path);
    let conn = Connection::open(&path).expect("open raw");
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0)).expect("user_version");
    assert_eq!(version, SCHEMA_VERSION);
}

/// Reopening never adds the demo accounts again, even if they were deleted.
#[test]
fn reopening_does_not_change_an_existing_database() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("existing.db");
    drop(Database::open(&config(&path)).expect("create"));
    {
        let conn = Connection::open(&path).expect("open raw");
        conn.execute("DELETE FROM accounts WHERE name = 'netease2'", []).expect("delete a demo account");
    }
    let db = Database::open(&config(&path)).expect("reopen");
    assert_eq!(names(&db), ["netease1", "netease3"]);
    drop(db);
    let db = Database::open(&config(&path)).expect("reopen again");
    assert_eq!(names(&db), ["netease1", "netease3"]);
}

/// `--no-demo-accounts`: a new database has no accounts at all.
#[test]
fn demo_accounts_can_be_turned_off() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("nodemo.db");
    let config = StoreConfig { demo_accounts: false, ..config(&path) };
    let db = Database::open(&config).expect("open");
    assert!(names(&db).is_empty());
    drop(db);
    // Turning them on later does not add them: the schema exists.
    let db = Database::open(&StoreConfig { demo_accounts: true, ..config }).expect("reopen");
    assert!(names(&db).is_empty());
}

/// The file is in WAL mode (crash safety and readers next to the writer).
#[test]
fn database_uses_wal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("wal.db");
    let _db = Database::open(&config(&path)).expect("open");
    let conn = Connection::open(&path).expect("open raw");
    let mode: String = conn.pragma_query_value(None, "journal_mode", |r| r.get(0)).expect("journal_mode");
    assert_eq!(mode, "wal");
}

/// Another program's database that has a schema version is refused, not altered.
#[test]
fn foreign_database_with_a_schema_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("foreign.db");
    {
        let conn = Connection::open(&path).expect("open raw");
        conn.execute_batch("CREATE TABLE t (x); PRAGMA user_version = 3;").expect("foreign schema");
    }
    let err = Database::open(&config(&path)).expect_err("must refuse");
    assert!(matches!(err, StoreError::NotPortcullis { .. }), "{err}");
}

/// A database from a newer Portcullis is refused rather than misread.
#[test]
fn newer_schema_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("newer.db");
    drop(Database::open(&config(&path)).expect("create"));
    {
        let conn = Connection::open(&path).expect("open raw");
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1).expect("bump version");
    }
    let err = Database::open(&config(&path)).expect_err("must refuse");
    assert!(matches!(err, StoreError::SchemaTooNew { .. }), "{err}");
}

/// Passwords are stored as argon2id PHC strings, never in clear.
#[test]
fn passwords_are_argon2id_phc_strings() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("phc.db");
    let db = Database::open(&config(&path)).expect("open");
    db.add_account("Player42", "plaintext-secret").expect("add");
    drop(db);
    let conn = Connection::open(&path).expect("open raw");
    let mut stmt = conn.prepare("SELECT password_hash FROM accounts").expect("prepare");
    let hashes: Vec<String> = stmt.query_map([], |r| r.get(0)).expect("query").collect::<Result<_, _>>().expect("rows");
    assert_eq!(hashes.len(), 4);
    for hash in hashes {
        assert!(hash.starts_with("$argon2id$v=19$m=8,t=1,p=1$"), "{hash}");
        assert!(!hash.contains("plaintext-secret"));
    }
}
