//! `Store::close` at server shutdown. If these fail, saves submitted just
//! before shutdown are lost or never answered.

use std::collections::HashSet;
use std::time::Duration;

use portcullis_store::{Database, Store, StoreConfig, StoreOk, StoreRequest};

/// Everything queued before `close` is committed and answered before it returns,
/// including registrations still being hashed.
#[test]
fn close_answers_everything_queued() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = StoreConfig::new(dir.path().join("close.db")).fast_hashing().with_demo_accounts();
    let store = Store::open(config.clone(), None).expect("open");
    let replies = store.replies().clone();
    let saves = 2_000_u64;
    for tag in 0..saves {
        store
            .submit(tag, StoreRequest::SaveUserdata { account_id: 1, data: format!(r#"{{"n":{tag}}}"#) })
            .expect("submit");
    }
    store
        .submit(saves, StoreRequest::Register { account: "LastMinute1".into(), password: "secret".into() })
        .expect("submit");
    store
        .submit(saves + 1, StoreRequest::VerifyPassword { account: "netease2".into(), password: "123".into() })
        .expect("submit");
    store
        .submit(
            saves + 2,
            StoreRequest::ChangePassword { account_id: 3, old_password: "123".into(), new_password: "changed1".into() },
        )
        .expect("submit");
    store.close().expect("close");
    // The last connection closed cleanly: the WAL was folded into the file.
    assert!(!dir.path().join("close.db-wal").exists());

    let answered: Vec<_> = replies.try_iter().collect();
    let tags: HashSet<u64> = answered.iter().map(|r| r.tag).collect();
    assert_eq!(answered.len() as u64, saves + 3);
    assert_eq!(tags.len() as u64, saves + 3);
    assert!(answered.iter().all(|r| r.result.is_ok()), "{answered:?}");

    let db = Database::open(&config).expect("reopen");
    let data = db.load_userdata(1).expect("load").expect("saved");
    assert_eq!(data.version, saves);
    assert!(db.verify_password("lastminute1", "secret").expect("verify").is_some());
    assert!(db.verify_password("netease3", "changed1").expect("verify").is_some());
}

/// Dropping the store without `close` also finishes the queued work.
#[test]
fn drop_finishes_queued_work() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = StoreConfig::new(dir.path().join("drop.db")).fast_hashing().with_demo_accounts();
    let store = Store::open(config.clone(), None).expect("open");
    let replies = store.replies().clone();
    store.submit(1, StoreRequest::SaveUserdata { account_id: 2, data: "{}".into() }).expect("submit");
    drop(store);
    let reply = replies.recv_timeout(Duration::from_secs(1)).expect("answered");
    assert!(matches!(reply.result, Ok(StoreOk::Saved(_))));
    let db = Database::open(&config).expect("reopen");
    assert!(db.load_userdata(2).expect("load").is_some());
}
