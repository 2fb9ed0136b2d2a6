//! A hash made with other argon2 parameters than the configured ones is
//! re-hashed at the next successful login, and checking a password against
//! such a hash costs at least as much as an unknown account
//! (docs/protocol.md §4). If these fail, raising the argon2 cost never
//! protects existing accounts, or the time of a failed login tells an
//! attacker which account names exist.

use std::path::Path;
use std::time::{Duration, Instant};

use portcullis_store::{Database, Store, StoreConfig, StoreFailure, StoreOk, StoreRequest, testing};
use rusqlite::Connection;

const WAIT: Duration = Duration::from_secs(60);

fn config(path: &Path, memory_kib: u32, iterations: u32) -> StoreConfig {
    StoreConfig {
        argon2_memory_kib: memory_kib,
        argon2_iterations: iterations,
        hash_threads: 1,
        demo_accounts: false,
        ..StoreConfig::new(path)
    }
}

fn verify(store: &Store, account: &str, password: &str) -> Result<StoreOk, StoreFailure> {
    let request = StoreRequest::VerifyPassword { account: account.into(), password: password.into() };
    testing::call(store, request, WAIT).expect("reply in time")
}

/// The PHC string stored for `name`, read straight from the file.
fn stored_hash(path: &Path, name: &str) -> String {
    let conn = Connection::open(path).expect("open raw");
    conn.query_row("SELECT password_hash FROM accounts WHERE name = ?1", [name], |row| row.get(0))
        .expect("account exists")
}

/// Creates `name` with `password` in a new database hashed with m=`memory_kib`, t=1.
fn create_with_weak_hash(path: &Path, memory_kib: u32, name: &str, password: &str) {
    let db = Database::open(&config(path, memory_kib, 1)).expect("create");
    db.add_account(name, password).expect("add account");
    drop(db);
    let phc = stored_hash(path, name);
    assert!(phc.starts_with(&format!("$argon2id$v=19$m={memory_kib},t=1,p=1$")), "{phc}");
}

/// A successful login after the cost was raised stores a hash with the new
/// cost, and the password still works with it.
#[test]
fn successful_login_rehashes_with_the_configured_parameters() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("rehash.db");
    create_with_weak_hash(&path, 64, "Oldhash01", "secret-pw");
    let old = stored_hash(&path, "Oldhash01");

    let store = Store::open(config(&path, 256, 2), None).expect("reopen with a higher cost");
    // A wrong password changes nothing.
    assert_eq!(verify(&store, "oldhash01", "wrong-pw"), Err(StoreFailure::InvalidCredentials));
    assert_eq!(stored_hash(&path, "Oldhash01"), old);
    // The right one logs in and re-hashes (committed before the reply).
    let Ok(StoreOk::Account(account)) = verify(&store, "oldhash01", "secret-pw") else {
        panic!("login with the old hash failed");
    };
    assert_eq!(account.name, "Oldhash01");
    let new = stored_hash(&path, "Oldhash01");
    assert!(new.starts_with("$argon2id$v=19$m=256,t=2,p=1$"), "{new}");
    // A second login verifies against the new hash and leaves it alone.
    assert!(matches!(verify(&store, "OLDHASH01", "secret-pw"), Ok(StoreOk::Account(_))));
    assert_eq!(stored_hash(&path, "Oldhash01"), new);
    assert_eq!(verify(&store, "oldhash01", "wrong-pw"), Err(StoreFailure::InvalidCredentials));
    store.close().expect("close");

    let db = Database::open(&config(&path, 256, 2)).expect("reopen");
    assert!(db.verify_password("oldhash01", "secret-pw").expect("verify").is_some());
    assert!(db.verify_password("oldhash01", "secret-pw!").expect("verify").is_none());
}

/// A hash that already has the configured cost is not rewritten at login.
#[test]
fn hash_with_the_configured_parameters_is_kept() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("keep.db");
    create_with_weak_hash(&path, 64, "Samehash01", "secret-pw");
    let old = stored_hash(&path, "Samehash01");
    let store = Store::open(config(&path, 64, 1), None).expect("reopen with the same cost");
    assert!(matches!(verify(&store, "Samehash01", "secret-pw"), Ok(StoreOk::Account(_))));
    store.close().expect("close");
    assert_eq!(stored_hash(&path, "Samehash01"), old);
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// A wrong password against a cheap old hash takes at least about as long as
/// an unknown account (checked against a dummy hash with the configured cost).
#[test]
fn wrong_password_on_an_old_hash_costs_as_much_as_an_unknown_account() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("timing.db");
    // The old hash is 64 times cheaper than the configured cost (m, t).
    create_with_weak_hash(&path, 256, "Timing0001", "secret-pw");
    let store = Store::open(config(&path, 8192, 2), None).expect("reopen with a higher cost");
    let time = |account: &str| {
        let started = Instant::now();
        assert_eq!(verify(&store, account, "wrong-pw"), Err(StoreFailure::InvalidCredentials));
        started.elapsed()
    };
    // Warm up (the hasher thread's work area grows to the configured cost).
    time("nobody0001");
    // Alternate, so that a change in machine load hits both sides alike.
    let (mut known, mut unknown) = (Vec::new(), Vec::new());
    for _ in 0..7 {
        known.push(time("Timing0001"));
        unknown.push(time("nobody0001"));
    }
    let (known, unknown) = (median(known), median(unknown));
    // Generous: before the fix the known account took about 1/64 of the time.
    assert!(known * 10 >= unknown * 8, "wrong password {known:?}, unknown account {unknown:?}");
}
