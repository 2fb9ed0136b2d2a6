//! `login` with a password goes through `StoreRequest::VerifyPassword`.
//! If these fail, players cannot log in, or an attacker can tell which
//! account names exist.

use std::time::Duration;

use portcullis_store::testing::TestBackend;
use portcullis_store::{Account, Store, StoreConfig, StoreFailure, StoreOk, StoreRequest, testing};

const WAIT: Duration = Duration::from_secs(10);

fn verify(store: &Store, account: &str, password: &str) -> Result<StoreOk, StoreFailure> {
    let request = StoreRequest::VerifyPassword { account: account.into(), password: password.into() };
    testing::call(store, request, WAIT).expect("reply in time")
}

fn store(backend: &TestBackend) -> Store {
    Store::open(backend.config().fast_hashing().with_demo_accounts(), None).expect("open")
}

/// The right password logs in and returns the registration spelling.
#[test]
fn right_password_returns_the_account() {
    for backend in TestBackend::all("right_password_returns_the_account") {
        let store = store(&backend);
        let Ok(StoreOk::Account(Account { id, name })) = verify(&store, "netease1", "123") else {
            panic!("demo login failed");
        };
        assert_eq!(name, "netease1");
        assert!(id > 0);
    }
}

/// Names compare case-insensitively; the reply has the stored spelling.
#[test]
fn name_lookup_ignores_ascii_case() {
    for backend in TestBackend::all("name_lookup_ignores_ascii_case") {
        let store = store(&backend);
        let reply = verify(&store, "NETEASE1", "123");
        assert!(matches!(reply, Ok(StoreOk::Account(ref a)) if a.name == "netease1"), "{reply:?}");
        let register = StoreRequest::Register { account: "MixedCase9".into(), password: "secret".into() };
        testing::call(&store, register, WAIT).expect("reply").expect("registered");
        let reply = verify(&store, "mixedcase9", "secret");
        assert!(matches!(reply, Ok(StoreOk::Account(ref a)) if a.name == "MixedCase9"), "{reply:?}");
    }
}

/// Wrong password and unknown account get the same answer.
#[test]
fn wrong_password_and_unknown_account_look_the_same() {
    for backend in TestBackend::all("wrong_password_and_unknown_account_look_the_same") {
        let store = store(&backend);
        assert_eq!(verify(&store, "netease1", "1234"), Err(StoreFailure::InvalidCredentials));
        assert_eq!(verify(&store, "netease1", ""), Err(StoreFailure::InvalidCredentials));
        assert_eq!(verify(&store, "nobody99", "123"), Err(StoreFailure::InvalidCredentials));
        assert_eq!(verify(&store, "", ""), Err(StoreFailure::InvalidCredentials));
    }
}

/// Any strings, however odd, get an answer and never kill the store.
#[test]
fn odd_input_is_answered() {
    for backend in TestBackend::all("odd_input_is_answered") {
        let store = store(&backend);
        let huge = "ß".repeat(1 << 20);
        for (account, password) in [
            ("netease1\0", "123"),
            ("名前名前名前", "パスワード"),
            (huge.as_str(), huge.as_str()),
            ("netease1' OR '1'='1", "x' OR '1'='1"),
        ] {
            assert_eq!(verify(&store, account, password), Err(StoreFailure::InvalidCredentials));
        }
        assert!(verify(&store, "netease1", "123").is_ok());
    }
}

/// An unknown account is checked against a dummy hash: it costs about as
/// much as a wrong password, so timing does not reveal which names exist.
#[test]
fn unknown_account_costs_a_hash_verification() {
    for backend in TestBackend::all("unknown_account_costs_a_hash_verification") {
        let config = StoreConfig {
            argon2_memory_kib: 4096,
            argon2_iterations: 3,
            hash_threads: 1,
            ..backend.config().with_demo_accounts()
        };
        let store = Store::open(config, None).expect("open");
        let register = StoreRequest::Register { account: "timing01".into(), password: "secret".into() };
        testing::call(&store, register, WAIT).expect("reply").expect("registered");
        let time = |account: &str| {
            let started = std::time::Instant::now();
            assert!(verify(&store, account, "wrong-password").is_err());
            started.elapsed()
        };
        // Alternate, so that a change in machine load hits both sides alike.
        let (mut known, mut unknown) = (Duration::ZERO, Duration::ZERO);
        for _ in 0..5 {
            known += time("timing01");
            unknown += time("nobody99");
        }
        // Generous bounds: this only catches a missing dummy verification
        // (which would make unknown accounts answer almost instantly).
        assert!(unknown * 3 > known, "known {known:?} unknown {unknown:?}");
        assert!(known * 3 > unknown, "known {known:?} unknown {unknown:?}");
    }
}
