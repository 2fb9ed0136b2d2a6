//! What only the PostgreSQL store has (docs/cluster.md): its versioned
//! schema on a shared server, and the session directory (claims, leases,
//! kick requests, releases). Each test creates a fresh database on the
//! server of `PORTCULLIS_TEST_POSTGRES` and is skipped (saying so) without it.
//! The request/reply semantics shared with SQLite are tested on both
//! backends in the other files.

use std::time::{Duration, Instant};

use portcullis_store::testing::{self, TestPostgres};
use portcullis_store::{
    ClaimOutcome, Database, SCHEMA_VERSION, Store, StoreConfig, StoreError, StoreEvent, StoreOk, StoreRequest,
};

const WAIT: Duration = Duration::from_secs(10);

fn config(db: &TestPostgres, node: &str) -> StoreConfig {
    StoreConfig { node_name: node.into(), ..StoreConfig::new(db.url()).fast_hashing().with_demo_accounts() }
}

fn claim(store: &Store, account_id: i64) -> ClaimOutcome {
    match testing::call(store, StoreRequest::Claim { account_id }, WAIT).expect("reply") {
        Ok(StoreOk::Claim(outcome)) => outcome,
        other => panic!("claim: {other:?}"),
    }
}

fn release(store: &Store, account_id: i64) {
    let reply = testing::call(store, StoreRequest::Release { account_id }, WAIT).expect("reply");
    assert_eq!(reply, Ok(StoreOk::Done));
}

/// Waits for an event other than `Retry`.
fn next_event(store: &Store) -> StoreEvent {
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match store.events().recv_timeout(left) {
            Ok(StoreEvent::Retry) => {}
            Ok(event) => return event,
            Err(e) => panic!("no directory event in time: {e}"),
        }
    }
}

/// If this failed, a new cluster database would start without accounts or
/// tables, a restart would add the demo accounts again, or a newer schema
/// would be written to by older code.
#[test]
fn schema_is_created_once_and_a_newer_one_is_refused() {
    let Some(db) = TestPostgres::create("schema_is_created_once_and_a_newer_one_is_refused") else { return };
    let names = |db: &Database| db.list_accounts().expect("list").into_iter().map(|a| a.name).collect::<Vec<_>>();
    {
        let opened = Database::open(&config(&db, "n1")).expect("open a fresh database");
        assert_eq!(names(&opened), ["netease1", "netease2", "netease3"]);
        opened.add_account("Operator7", "secret").expect("add");
        assert!(matches!(opened.add_account("OPERATOR7", "secret"), Err(StoreError::AccountExists(_))));
    }
    {
        let again = Database::open(&config(&db, "n1")).expect("open again");
        assert_eq!(names(&again), ["netease1", "netease2", "netease3", "Operator7"]);
        assert!(again.verify_password("operator7", "secret").expect("verify").is_some());
    }
    db.execute(&format!("UPDATE portcullis_schema SET version = {}", SCHEMA_VERSION + 1)).expect("bump");
    match Store::open(config(&db, "n1"), None) {
        Err(StoreError::SchemaTooNew { found, supported }) => {
            assert_eq!((found, supported), (SCHEMA_VERSION + 1, SCHEMA_VERSION));
        }
        other => panic!("a newer schema must be refused: {other:?}"),
    }
}

/// If this failed, two nodes could both hold one account's session, a
/// takeover would never reach the holding node, or a third login would
/// start a second takeover (docs/protocol.md §6 across nodes).
#[test]
fn claims_hand_an_account_from_node_to_node() {
    let Some(db) = TestPostgres::create("claims_hand_an_account_from_node_to_node") else { return };
    let a = Store::open(config(&db, "node-a"), None).expect("open a");
    let b = Store::open(config(&db, "node-b"), None).expect("open b");
    let c = Store::open(config(&db, "node-c"), None).expect("open c");
    assert!(a.is_shared() && b.is_shared());

    assert_eq!(claim(&a, 1), ClaimOutcome::Claimed);
    assert_eq!(claim(&a, 1), ClaimOutcome::Claimed, "the holder claims again freely");
    assert_eq!(claim(&b, 1), ClaimOutcome::Held);
    assert_eq!(next_event(&a), StoreEvent::KickRequested { account_id: 1 });
    assert_eq!(claim(&c, 1), ClaimOutcome::InProgress, "node B is already taking it over");
    assert_eq!(claim(&b, 1), ClaimOutcome::Held, "still held until A lets go");

    release(&a, 1);
    assert_eq!(next_event(&b), StoreEvent::Released { account_id: 1 });
    assert_eq!(claim(&c, 1), ClaimOutcome::InProgress, "handed to B, which has not logged in yet");
    assert_eq!(claim(&b, 1), ClaimOutcome::Claimed);
    assert_eq!(claim(&c, 1), ClaimOutcome::Held);

    // B's waiting login went: C may go on; A's stale release changes nothing.
    release(&a, 1);
    release(&c, 1);
    assert_eq!(claim(&a, 1), ClaimOutcome::Held, "B still holds it");
}

/// If this failed, the sessions of a crashed node would stay claimed for
/// ever, or a cleanly stopped node's players would wait for its lease.
#[test]
fn expired_leases_and_closed_stores_free_their_claims() {
    let Some(db) = TestPostgres::create("expired_leases_and_closed_stores_free_their_claims") else { return };
    let a = Store::open(config(&db, "node-a"), None).expect("open a");
    // A node that crashed: its lease ended a second ago.
    db.execute(
        "INSERT INTO nodes (name, lease_until) VALUES ('ghost', clock_timestamp() - interval '1 second');
         INSERT INTO claims (account_id, node) VALUES (2, 'ghost');",
    )
    .expect("a crashed node's claim");
    assert_eq!(claim(&a, 2), ClaimOutcome::Claimed);

    let b = Store::open(config(&db, "node-b"), None).expect("open b");
    assert_eq!(claim(&b, 3), ClaimOutcome::Claimed);
    b.close().expect("close b");
    assert_eq!(claim(&a, 3), ClaimOutcome::Claimed, "a closed store released its claims");
    let rows = db.execute("SELECT name FROM nodes ORDER BY name").expect("nodes");
    let nodes: Vec<String> = rows
        .iter()
        .filter_map(|m| match m {
            postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
            _ => None,
        })
        .collect();
    assert_eq!(nodes, ["ghost", "node-a"], "node-b left the directory");
}

/// If this failed, a database restart (or a failover) would leave every node
/// failing all requests until it is restarted itself.
#[test]
fn the_store_reconnects_after_its_connections_are_dropped() {
    let Some(db) = TestPostgres::create("the_store_reconnects_after_its_connections_are_dropped") else { return };
    let store = Store::open(config(&db, "node-a"), None).expect("open");
    assert_eq!(claim(&store, 1), ClaimOutcome::Claimed);
    // What a restart does to the server's connections.
    db.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .expect("terminate");
    let save = || StoreRequest::SaveUserdata { account_id: 1, data: r#"{"after":"restart"}"#.into() };
    let deadline = Instant::now() + WAIT;
    let saved = loop {
        // The first request after the drop may fail (INTERNAL_ERROR, no effect); later ones reconnect.
        match testing::call(&store, save(), WAIT).expect("reply") {
            Ok(StoreOk::Saved(saved)) => break saved,
            Err(failure) if Instant::now() < deadline => eprintln!("retrying after {failure}"),
            other => panic!("the store did not recover: {other:?}"),
        }
    };
    assert_eq!(saved.version, 1);
    // The directory thread reconnects too, and kick requests reach this node again.
    let other = Store::open(config(&db, "node-b"), None).expect("open b");
    let deadline = Instant::now() + WAIT;
    loop {
        assert_eq!(claim(&other, 1), ClaimOutcome::Held);
        match store.events().recv_timeout(Duration::from_millis(500)) {
            Ok(StoreEvent::KickRequested { account_id: 1 }) => break,
            _ if Instant::now() < deadline => {}
            other => panic!("no kick request after the reconnect: {other:?}"),
        }
    }
}
