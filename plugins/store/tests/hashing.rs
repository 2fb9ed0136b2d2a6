//! Password hashing runs on its own threads. If this fails, a burst of
//! logins (argon2 is slow on purpose) delays every player's saves.

use std::time::Duration;

use portcullis_store::testing::TestBackend;
use portcullis_store::{Store, StoreConfig, StoreOk, StoreRequest};

const WAIT: Duration = Duration::from_secs(60);

/// A save submitted behind a pile of logins is answered before they are.
#[test]
fn saves_overtake_a_login_storm() {
    for backend in TestBackend::all("saves_overtake_a_login_storm") {
        let config = StoreConfig {
            argon2_memory_kib: 1024,
            argon2_iterations: 2,
            hash_threads: 1,
            ..backend.config().with_demo_accounts()
        };
        let store = Store::open(config, None).expect("open");
        let logins = 40;
        for tag in 0..logins {
            let request = StoreRequest::VerifyPassword { account: "netease1".into(), password: "123".into() };
            store.submit(tag, request).expect("submit");
        }
        store.submit(1000, StoreRequest::SaveUserdata { account_id: 1, data: "{}".into() }).expect("submit");

        let mut order = Vec::new();
        for _ in 0..=logins {
            let reply = store.replies().recv_timeout(WAIT).expect("reply in time");
            assert!(matches!(reply.result, Ok(StoreOk::Account(_) | StoreOk::Saved(_))), "{reply:?}");
            order.push(reply.tag);
        }
        let save_position = order.iter().position(|tag| *tag == 1000).expect("save answered");
        assert!(save_position < order.len() / 2, "the save waited for the logins: {order:?}");
    }
}
