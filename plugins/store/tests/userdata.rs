//! `userdata_save` / `userdata_load` go through `SaveUserdata` /
//! `LoadUserdata`. If these fail, players lose progress or load another
//! version than the one the server acknowledged.

use std::time::Duration;

use portcullis_store::testing::TestBackend;
use portcullis_store::{Database, SavedVersion, Store, StoreConfig, StoreOk, StoreRequest, Userdata, testing};

const WAIT: Duration = Duration::from_secs(10);

fn save(store: &Store, account_id: i64, data: &str) -> SavedVersion {
    let request = StoreRequest::SaveUserdata { account_id, data: data.into() };
    match testing::call(store, request, WAIT).expect("reply in time") {
        Ok(StoreOk::Saved(saved)) => saved,
        other => panic!("save failed: {other:?}"),
    }
}

fn load(store: &Store, account_id: i64) -> Option<Userdata> {
    match testing::call(store, StoreRequest::LoadUserdata { account_id }, WAIT).expect("reply in time") {
        Ok(StoreOk::Userdata(found)) => found,
        other => panic!("load failed: {other:?}"),
    }
}

fn demo_ids(store: &Store) -> Vec<i64> {
    ["netease1", "netease2"]
        .iter()
        .map(|name| {
            let request = StoreRequest::VerifyPassword { account: (*name).into(), password: "123".into() };
            match testing::call(store, request, WAIT).expect("reply") {
                Ok(StoreOk::Account(account)) => account.id,
                other => panic!("{other:?}"),
            }
        })
        .collect()
}

/// An account that never saved has no data (`NO_USERDATA`).
#[test]
fn load_without_data_is_none() {
    for backend in TestBackend::all("load_without_data_is_none") {
        let store = Store::open(backend.config().fast_hashing().with_demo_accounts(), None).expect("open");
        assert_eq!(load(&store, 1), None);
        assert_eq!(load(&store, 12345), None);
    }
}

/// Versions count 1, 2, 3 per account, independently; a load returns the
/// newest with the version and saved_at its save returned.
#[test]
fn history_counts_per_account_and_load_returns_the_newest() {
    for backend in TestBackend::all("history_counts_per_account_and_load_returns_the_newest") {
        let store = Store::open(backend.config().fast_hashing().with_demo_accounts(), None).expect("open");
        let ids = demo_ids(&store);
        let (a, b) = (ids[0], ids[1]);
        let mut last = None;
        for n in 1..=5_u64 {
            let saved = save(&store, a, &format!(r#"{{"n":{n}}}"#));
            assert_eq!(saved.version, n);
            if let Some(SavedVersion { saved_at_ms, .. }) = last {
                assert!(saved.saved_at_ms >= saved_at_ms);
            }
            last = Some(saved);
            let loaded = load(&store, a).expect("data");
            assert_eq!(loaded.data, format!(r#"{{"n":{n}}}"#));
            assert_eq!((loaded.version, loaded.saved_at_ms), (saved.version, saved.saved_at_ms));
        }
        assert_eq!(load(&store, b), None);
        assert_eq!(save(&store, b, r#"{"b":true}"#).version, 1);
        assert_eq!(save(&store, a, "{}").version, 6);
    }
}

/// Data comes back byte for byte, whatever it contains.
#[test]
fn data_round_trips_exactly() {
    for backend in TestBackend::all("data_round_trips_exactly") {
        let store = Store::open(backend.config().fast_hashing().with_demo_accounts(), None).expect("open");
        let id = demo_ids(&store)[0];
        let big = format!(r#"{{"blob":"{}"}}"#, "é".repeat(60_000));
        for data in [
            r#"{"name":"wydx","bullet":20,"exp":23}"#,
            r#"{"emoji":"🎮","cjk":"玩家","nul":"\u0000","quote":"'\""}"#,
            "{}",
            big.as_str(),
        ] {
            let saved = save(&store, id, data);
            let loaded = load(&store, id).expect("data");
            assert_eq!(loaded.data, data);
            assert_eq!(loaded.version, saved.version);
        }
    }
}

/// Saved versions are on disk: close, open again, the history continues.
#[test]
fn data_survives_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = StoreConfig::new(dir.path().join("reopen.db")).fast_hashing().with_demo_accounts();
    let store = Store::open(config.clone(), None).expect("open");
    let id = demo_ids(&store)[0];
    save(&store, id, r#"{"n":1}"#);
    let second = save(&store, id, r#"{"n":2}"#);
    store.close().expect("close");

    let store = Store::open(config.clone(), None).expect("reopen");
    let loaded = load(&store, id).expect("data after reopen");
    assert_eq!(
        loaded,
        Userdata { data: r#"{"n":2}"#.into(), version: second.version, saved_at_ms: second.saved_at_ms }
    );
    assert_eq!(save(&store, id, r#"{"n":3}"#).version, 3);
    store.close().expect("close");

    let db = Database::open(&config).expect("database");
    assert_eq!(db.load_userdata(id).expect("load").map(|u| u.version), Some(3));
}

/// A save for an account id that does not exist fails without effect.
#[test]
fn save_for_unknown_account_is_internal() {
    for backend in TestBackend::all("save_for_unknown_account_is_internal") {
        let store = Store::open(backend.config().fast_hashing().with_demo_accounts(), None).expect("open");
        let request = StoreRequest::SaveUserdata { account_id: 424_242, data: "{}".into() };
        let reply = testing::call(&store, request, WAIT).expect("reply in time");
        assert!(matches!(reply, Err(portcullis_store::StoreFailure::Internal(_))), "{reply:?}");
        assert_eq!(load(&store, 424_242), None);
    }
}
