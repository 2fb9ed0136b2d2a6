//! `change_password` goes through `StoreRequest::ChangePassword`. If these
//! fail, a player cannot change a password, or a wrong old password changes it.

use std::time::Duration;

use portcullis_store::testing::TestBackend;
use portcullis_store::{Store, StoreFailure, StoreOk, StoreRequest, testing};

const WAIT: Duration = Duration::from_secs(10);

fn store(backend: &TestBackend) -> Store {
    Store::open(backend.config().fast_hashing().with_demo_accounts(), None).expect("open")
}

fn login(store: &Store, account: &str, password: &str) -> Result<StoreOk, StoreFailure> {
    let request = StoreRequest::VerifyPassword { account: account.into(), password: password.into() };
    testing::call(store, request, WAIT).expect("reply in time")
}

fn account_id(store: &Store, account: &str, password: &str) -> i64 {
    match login(store, account, password) {
        Ok(StoreOk::Account(account)) => account.id,
        other => panic!("login failed: {other:?}"),
    }
}

fn change(store: &Store, account_id: i64, old: &str, new: &str) -> Result<StoreOk, StoreFailure> {
    let request = StoreRequest::ChangePassword { account_id, old_password: old.into(), new_password: new.into() };
    testing::call(store, request, WAIT).expect("reply in time")
}

/// A wrong old password changes nothing.
#[test]
fn wrong_old_password_is_invalid_credentials() {
    for backend in TestBackend::all("wrong_old_password_is_invalid_credentials") {
        let store = store(&backend);
        let id = account_id(&store, "netease1", "123");
        assert_eq!(change(&store, id, "1234", "newpass1"), Err(StoreFailure::InvalidCredentials));
        assert!(login(&store, "netease1", "123").is_ok());
        assert!(login(&store, "netease1", "newpass1").is_err());
    }
}

/// The right old password switches to the new one.
#[test]
fn right_old_password_switches_passwords() {
    for backend in TestBackend::all("right_old_password_switches_passwords") {
        let store = store(&backend);
        let id = account_id(&store, "netease2", "123");
        assert_eq!(change(&store, id, "123", "newpass1"), Ok(StoreOk::Done));
        assert_eq!(login(&store, "netease2", "123"), Err(StoreFailure::InvalidCredentials));
        assert!(login(&store, "netease2", "newpass1").is_ok());
        // Other accounts are untouched.
        assert!(login(&store, "netease1", "123").is_ok());
    }
}

/// An account id that does not exist is `InvalidCredentials`, not a crash.
#[test]
fn unknown_account_id_is_invalid_credentials() {
    for backend in TestBackend::all("unknown_account_id_is_invalid_credentials") {
        let store = store(&backend);
        assert_eq!(change(&store, 9999, "123", "newpass1"), Err(StoreFailure::InvalidCredentials));
    }
}

/// Two changes with the same old password racing: the first wins, the second
/// is checked against the new hash and fails.
#[test]
fn racing_changes_do_not_both_win() {
    for backend in TestBackend::all("racing_changes_do_not_both_win") {
        let store = store(&backend);
        let id = account_id(&store, "netease3", "123");
        for (tag, new) in [(1, "first-new"), (2, "second-new")] {
            store
                .submit(
                    tag,
                    StoreRequest::ChangePassword {
                        account_id: id,
                        old_password: "123".into(),
                        new_password: new.into(),
                    },
                )
                .expect("submit");
        }
        let replies = testing::collect(&store, 2, WAIT).expect("both answered");
        let ok = replies.iter().filter(|r| r.result == Ok(StoreOk::Done)).count();
        let refused = replies.iter().filter(|r| r.result == Err(StoreFailure::InvalidCredentials)).count();
        assert_eq!((ok, refused), (1, 1), "{replies:?}");
        let winner = replies
            .iter()
            .find(|r| r.result.is_ok())
            .map(|r| if r.tag == 1 { "first-new" } else { "second-new" })
            .expect("a winner");
        assert!(login(&store, "netease3", winner).is_ok());
        assert!(login(&store, "netease3", "123").is_err());
    }
}
