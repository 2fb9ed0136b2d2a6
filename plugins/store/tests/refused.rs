//! A file that opening refuses (not SQLite, another program's tables, a
//! newer schema version) is left byte for byte as it was, and a database
//! file the store creates is readable by its owner only (docs/protocol.md
//! §4). If these fail, pointing the server at the wrong file damages it, or
//! other local users can read the password hashes.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use portcullis_store::{Database, SCHEMA_VERSION, Store, StoreConfig, StoreError, StoreOk, StoreRequest, testing};
use rusqlite::Connection;

fn config(path: &Path) -> StoreConfig {
    StoreConfig::new(path).fast_hashing().with_demo_accounts()
}

/// `path` with `suffix` appended (`-wal`, `-shm`, `-journal`).
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Opens `path` (with both APIs) and checks that it is refused and that the
/// file and its directory are exactly as before.
fn assert_refused_untouched(path: &Path, refused: impl Fn(&StoreError) -> bool) {
    let before = std::fs::read(path).expect("read file");
    let mode_before = std::fs::metadata(path).expect("stat").permissions().mode();
    let err = Database::open(&config(path)).expect_err("Database::open must refuse");
    assert!(refused(&err), "{err}");
    let err = Store::open(config(path), None).expect_err("Store::open must refuse");
    assert!(refused(&err), "{err}");
    assert!(std::fs::read(path).expect("read file") == before, "the refused file was changed");
    assert_eq!(std::fs::metadata(path).expect("stat").permissions().mode(), mode_before);
    for suffix in ["-wal", "-shm", "-journal"] {
        assert!(!sibling(path, suffix).exists(), "{suffix} file left behind");
    }
}

/// Another program's database with a schema version, in rollback-journal
/// mode: refused before its journal mode is switched to WAL.
#[test]
fn foreign_database_with_a_version_is_refused_untouched() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("foreign.db");
    {
        let conn = Connection::open(&path).expect("open raw");
        conn.execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1); PRAGMA user_version = 3;")
            .expect("foreign schema");
    }
    assert_refused_untouched(&path, |e| matches!(e, StoreError::NotPortcullis { .. }));
}

/// Another program's tables without a schema version: not "a SQLite file
/// with no tables at all", so refused, not given Portcullis's tables.
#[test]
fn foreign_tables_without_a_version_are_refused_untouched() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("notes.db");
    {
        let conn = Connection::open(&path).expect("open raw");
        conn.execute_batch("CREATE TABLE notes (body TEXT); INSERT INTO notes VALUES ('keep me');")
            .expect("foreign table");
    }
    assert_refused_untouched(&path, |e| matches!(e, StoreError::NotPortcullis { .. }));
}

/// A foreign database in WAL mode is refused too, and its WAL files are
/// gone again afterwards.
#[test]
fn foreign_wal_database_is_refused_untouched() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("foreign-wal.db");
    {
        let conn = Connection::open(&path).expect("open raw");
        conn.execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE t (x); PRAGMA user_version = 7;")
            .expect("foreign schema");
    }
    assert_refused_untouched(&path, |e| matches!(e, StoreError::NotPortcullis { .. }));
}

/// A Portcullis database from a newer version (here switched back to a
/// rollback journal) is refused before anything is changed.
#[test]
fn newer_schema_is_refused_untouched() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("newer.db");
    drop(Database::open(&config(&path)).expect("create"));
    {
        let conn = Connection::open(&path).expect("open raw");
        let _mode: String =
            conn.pragma_update_and_check(None, "journal_mode", "DELETE", |row| row.get(0)).expect("rollback journal");
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1).expect("bump version");
    }
    assert_refused_untouched(&path, |e| matches!(e, StoreError::SchemaTooNew { .. }));
}

/// A file that is not SQLite at all.
#[test]
fn non_sqlite_file_is_refused_untouched() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("garbage.db");
    let garbage: Vec<u8> = (0..8192_u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    std::fs::write(&path, &garbage).expect("write garbage");
    assert_refused_untouched(&path, |e| matches!(e, StoreError::Sqlite(_)));
    let text = dir.path().join("notes.txt");
    std::fs::write(&text, b"these are not the tables you are looking for\n").expect("write text");
    assert_refused_untouched(&text, |e| matches!(e, StoreError::Sqlite(_)));
}

fn assert_owner_only(path: &Path) {
    let mode = std::fs::metadata(path).expect("stat").permissions().mode();
    assert_eq!(mode & 0o077, 0, "{} has mode {mode:o}", path.display());
}

/// A new database file, and the WAL files next to it while the store runs,
/// are readable by the owner only, whatever the umask.
#[test]
fn new_database_file_is_owner_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("new.db");
    let store = Store::open(config(&path), None).expect("open");
    assert_owner_only(&path);
    let save = StoreRequest::SaveUserdata { account_id: 1, data: "{}".into() };
    let reply = testing::call(&store, save, std::time::Duration::from_secs(10)).expect("reply");
    assert!(matches!(reply, Ok(StoreOk::Saved(_))), "{reply:?}");
    for suffix in ["-wal", "-shm"] {
        let file = sibling(&path, suffix);
        assert!(file.exists(), "{suffix} exists while the store runs");
        assert_owner_only(&file);
    }
    store.close().expect("close");
    assert_owner_only(&path);

    let cli = dir.path().join("cli.db");
    drop(Database::open(&config(&cli)).expect("open"));
    assert_owner_only(&cli);
}

/// A file that exists already keeps the mode its owner gave it.
#[test]
fn existing_file_keeps_its_mode() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("touched.db");
    std::fs::write(&path, b"").expect("touch");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).expect("chmod");
    drop(Database::open(&config(&path)).expect("open"));
    assert_eq!(std::fs::metadata(&path).expect("stat").permissions().mode() & 0o777, 0o640);
}
