//! The request queue is bounded and `submit` never blocks. If this fails,
//! an overloaded store stalls the game server's frame loop.

use std::time::{Duration, Instant};

use portcullis_store::testing::TestBackend;
use portcullis_store::testing::{self, Gate};
use portcullis_store::{Store, StoreConfig, StoreRequest, SubmitError};

const WAIT: Duration = Duration::from_secs(10);

/// With a full queue, `submit` returns `Full` at once instead of waiting.
#[test]
fn full_queue_is_reported_not_waited_for() {
    for backend in TestBackend::all("full_queue_is_reported_not_waited_for") {
        let gate = Gate::closed();
        let config = StoreConfig { queue_capacity: 1, ..backend.config().fast_hashing().with_demo_accounts() };
        let store = Store::open(config, Some(gate.notify())).expect("open");
        store.submit(0, StoreRequest::LoadUserdata { account_id: 1 }).expect("first request");
        assert!(gate.wait_until_held(WAIT), "worker never notified");
        // The worker is held; the queue has room for exactly one request.
        store.submit(1, StoreRequest::LoadUserdata { account_id: 1 }).expect("fills the queue");
        assert_eq!(store.queued(), 1);
        let started = Instant::now();
        assert_eq!(store.submit(2, StoreRequest::LoadUserdata { account_id: 1 }), Err(SubmitError::Full));
        assert!(started.elapsed() < Duration::from_secs(1));

        gate.open();
        let tags: Vec<u64> = testing::collect(&store, 2, WAIT).expect("answered").into_iter().map(|r| r.tag).collect();
        assert_eq!(tags, [0, 1]);
        // Room again.
        store.submit(3, StoreRequest::LoadUserdata { account_id: 1 }).expect("queue drained");
    }
}
