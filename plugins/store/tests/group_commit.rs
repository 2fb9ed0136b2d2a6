//! Group commit: requests queued together run in one transaction, in
//! submission order. If these fail, saves are lost, reordered, or one bad
//! request takes its whole batch down.

use std::collections::HashMap;
use std::time::Duration;

use portcullis_store::testing::TestBackend;
use portcullis_store::testing::{self, Gate};
use portcullis_store::{Store, StoreConfig, StoreFailure, StoreOk, StoreReply, StoreRequest, Userdata};

const WAIT: Duration = Duration::from_secs(30);

fn save(account_id: i64, n: usize) -> StoreRequest {
    StoreRequest::SaveUserdata { account_id, data: format!(r#"{{"n":{n}}}"#) }
}

fn by_tag(replies: Vec<StoreReply>) -> HashMap<u64, Result<StoreOk, StoreFailure>> {
    replies.into_iter().map(|r| (r.tag, r.result)).collect()
}

/// Holds the SQLite thread, so that everything submitted next is one batch.
fn held_store(config: StoreConfig) -> (Gate, Store) {
    let gate = Gate::closed();
    let store = Store::open(config, Some(gate.notify())).expect("open");
    store.submit(u64::MAX, StoreRequest::LoadUserdata { account_id: 1 }).expect("submit");
    assert!(gate.wait_until_held(WAIT), "worker never notified");
    (gate, store)
}

/// Thousands of saves submitted at once are all acknowledged, each account
/// counting 1, 2, 3, ... in submission order.
#[test]
fn many_saves_get_consecutive_versions() {
    for backend in TestBackend::all("many_saves_get_consecutive_versions") {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = match backend {
            TestBackend::Sqlite => StoreConfig::new(dir.path().join("many.db")),
            TestBackend::Postgres(_) => backend.config(),
        };
        let store = Store::open(config.fast_hashing().with_demo_accounts(), None).expect("open");
        let accounts = [1_i64, 2, 3];
        let total = 9_000;
        for i in 0..total {
            let account = accounts[i % accounts.len()];
            store.submit(i as u64, save(account, i)).expect("submit");
        }
        let replies = by_tag(testing::collect(&store, total, WAIT).expect("all answered"));
        let mut last_saved_at = HashMap::new();
        for i in 0..total {
            let Some(Ok(StoreOk::Saved(saved))) = replies.get(&(i as u64)) else {
                panic!("save {i}: {:?}", replies.get(&(i as u64)));
            };
            assert_eq!(saved.version, (i / accounts.len() + 1) as u64, "save {i}");
            let account = accounts[i % accounts.len()];
            let previous = last_saved_at.insert(account, saved.saved_at_ms).unwrap_or(0);
            assert!(saved.saved_at_ms >= previous);
        }
        for account in accounts {
            let reply = testing::call(&store, StoreRequest::LoadUserdata { account_id: account }, WAIT).expect("reply");
            let Ok(StoreOk::Userdata(Some(Userdata { version, .. }))) = reply else {
                panic!("{reply:?}");
            };
            assert_eq!(version, (total / accounts.len()) as u64);
        }
    }
}

/// A load queued right after a save in the same batch sees that save.
#[test]
fn load_in_the_same_batch_sees_the_save() {
    for backend in TestBackend::all("load_in_the_same_batch_sees_the_save") {
        let (gate, store) = held_store(backend.config().fast_hashing().with_demo_accounts());
        store.submit(1, save(1, 1)).expect("submit");
        store.submit(2, StoreRequest::LoadUserdata { account_id: 1 }).expect("submit");
        store.submit(3, save(1, 2)).expect("submit");
        store.submit(4, StoreRequest::LoadUserdata { account_id: 1 }).expect("submit");
        store.submit(5, StoreRequest::LoadUserdata { account_id: 2 }).expect("submit");
        gate.open();
        let replies = by_tag(testing::collect(&store, 6, WAIT).expect("all answered"));
        let saved = |tag| match replies.get(&tag) {
            Some(Ok(StoreOk::Saved(saved))) => *saved,
            other => panic!("{tag}: {other:?}"),
        };
        let loaded = |tag| match replies.get(&tag) {
            Some(Ok(StoreOk::Userdata(found))) => found.clone(),
            other => panic!("{tag}: {other:?}"),
        };
        let first = loaded(2).expect("first save visible");
        assert_eq!(first.data, r#"{"n":1}"#);
        assert_eq!((first.version, first.saved_at_ms), (1, saved(1).saved_at_ms));
        let second = loaded(4).expect("second save visible");
        assert_eq!((second.version, second.saved_at_ms), (2, saved(3).saved_at_ms));
        assert_eq!(loaded(5), None);
    }
}

/// A request whose statement fails gets `Internal`; the rest of its batch
/// still commits.
#[test]
fn a_failing_request_does_not_poison_its_batch() {
    for backend in TestBackend::all("a_failing_request_does_not_poison_its_batch") {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = match backend {
            TestBackend::Sqlite => StoreConfig::new(dir.path().join("poison.db")),
            TestBackend::Postgres(_) => backend.config(),
        };
        let config = config.fast_hashing().with_demo_accounts();
        let (gate, store) = held_store(config.clone());
        store.submit(1, save(1, 1)).expect("submit");
        store.submit(2, save(999_999, 0)).expect("submit"); // no such account
        store.submit(3, save(1, 2)).expect("submit");
        gate.open();
        let replies = by_tag(testing::collect(&store, 4, WAIT).expect("all answered"));
        assert!(matches!(replies[&1], Ok(StoreOk::Saved(s)) if s.version == 1), "{replies:?}");
        assert!(matches!(replies[&2], Err(StoreFailure::Internal(_))), "{replies:?}");
        assert!(matches!(replies[&3], Ok(StoreOk::Saved(s)) if s.version == 2), "{replies:?}");
        store.close().expect("close");

        let store = Store::open(config, None).expect("reopen");
        let reply = testing::call(&store, StoreRequest::LoadUserdata { account_id: 1 }, WAIT).expect("reply");
        assert!(
            matches!(reply, Ok(StoreOk::Userdata(Some(ref u))) if u.version == 2 && u.data == r#"{"n":2}"#),
            "{reply:?}"
        );
    }
}

/// A database locked by someone else: the batch fails with `Internal` and
/// has no effect, and the store keeps working once the lock is gone.
#[test]
fn locked_database_fails_the_batch_and_the_store_recovers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("locked.db");
    let store = Store::open(StoreConfig::new(&path).fast_hashing().with_demo_accounts(), None).expect("open");
    let blocker = rusqlite::Connection::open(&path).expect("second connection");
    blocker.execute_batch("BEGIN IMMEDIATE").expect("take the write lock");

    store.submit(1, save(1, 1)).expect("submit");
    // The store waits for its busy timeout (5 s), then gives up.
    let reply = store.replies().recv_timeout(WAIT).expect("answered");
    assert_eq!(reply.tag, 1);
    assert!(matches!(reply.result, Err(StoreFailure::Internal(_))), "{reply:?}");

    blocker.execute_batch("ROLLBACK").expect("release the lock");
    let reply = testing::call(&store, save(1, 2), WAIT).expect("reply");
    assert!(matches!(reply, Ok(StoreOk::Saved(s)) if s.version == 1), "{reply:?}");
}

/// Without group commit every write is its own transaction; the results
/// are the same.
#[test]
fn without_group_commit_results_are_the_same() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = StoreConfig {
        group_commit: false,
        ..StoreConfig::new(dir.path().join("single.db")).fast_hashing().with_demo_accounts()
    };
    let store = Store::open(config, None).expect("open");
    for i in 0..200 {
        store.submit(i, save(1 + (i % 2) as i64, i as usize)).expect("submit");
    }
    store.submit(200, StoreRequest::LoadUserdata { account_id: 2 }).expect("submit");
    let replies = by_tag(testing::collect(&store, 201, WAIT).expect("all answered"));
    for i in 0..200_u64 {
        assert!(matches!(replies[&i], Ok(StoreOk::Saved(s)) if s.version == i / 2 + 1), "{i}: {:?}", replies[&i]);
    }
    assert!(matches!(replies[&200], Ok(StoreOk::Userdata(Some(ref u))) if u.version == 100), "{:?}", replies[&200]);
}
