//! An acknowledged save survives `kill -9` of the server process
//! (docs/protocol.md §4). If this fails, players lose progress the server told
//! them was saved.
//!
//! The test runs its own executable again as a child that saves as fast as
//! it can and records every acknowledged version, kills it with SIGKILL
//! mid-stream, then checks the database holds at least the newest
//! acknowledged version.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use portcullis_store::{Database, Store, StoreConfig, StoreOk, StoreRequest};

/// Set in the child: the database path.
const CHILD_DB: &str = "PORTCULLIS_STORE_CRASH_CHILD_DB";
/// Set in the child: the file of acknowledged versions.
const CHILD_ACKS: &str = "PORTCULLIS_STORE_CRASH_CHILD_ACKS";
/// The account the child saves to (netease1).
const ACCOUNT: i64 = 1;

fn acked_versions(path: &Path) -> Vec<u64> {
    std::fs::read_to_string(path).unwrap_or_default().lines().filter_map(|line| line.parse().ok()).collect()
}

/// Kill -9 in the middle of a stream of saves loses none that were acknowledged.
#[test]
fn acknowledged_saves_survive_kill_9() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("crash.db");
    let acks = dir.path().join("acks.txt");
    let mut child = Command::new(std::env::current_exe().expect("test executable"))
        .args(["crash_child", "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_DB, &db)
        .env(CHILD_ACKS, &acks)
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn child");

    let deadline = Instant::now() + Duration::from_secs(60);
    while acked_versions(&acks).len() < 2_000 {
        assert!(Instant::now() < deadline, "child acknowledged too few saves");
        assert!(child.try_wait().expect("child status").is_none(), "child exited");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("reap child");

    let newest_acked = acked_versions(&acks).into_iter().max().expect("acks");
    let database =
        Database::open(&StoreConfig::new(&db).fast_hashing().with_demo_accounts()).expect("open after crash");
    let stored = database.load_userdata(ACCOUNT).expect("load").expect("data after crash");
    assert!(
        stored.version >= newest_acked,
        "acknowledged version {newest_acked} lost; database has {}",
        stored.version
    );
}

/// The child half of `acknowledged_saves_survive_kill_9`; does nothing
/// when run on its own.
#[test]
fn crash_child() {
    let (Some(db), Some(acks)) = (std::env::var_os(CHILD_DB), std::env::var_os(CHILD_ACKS)) else {
        return;
    };
    let store = Store::open(StoreConfig::new(db).fast_hashing().with_demo_accounts(), None).expect("open");
    let mut acks = std::fs::File::create(acks).expect("ack file");
    let submit = |tag: u64| {
        let request = StoreRequest::SaveUserdata { account_id: ACCOUNT, data: format!(r#"{{"n":{tag}}}"#) };
        store.submit(tag, request).expect("submit");
    };
    let mut next_tag = 0;
    for _ in 0..256 {
        submit(next_tag);
        next_tag += 1;
    }
    // Runs until the parent kills it (or gives up after a minute).
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let reply = store.replies().recv_timeout(Duration::from_secs(10)).expect("reply");
        let Ok(StoreOk::Saved(saved)) = reply.result else {
            panic!("save failed: {reply:?}");
        };
        // Written straight to the file (no buffer): it survives the kill.
        writeln!(acks, "{}", saved.version).expect("record ack");
        submit(next_tag);
        next_tag += 1;
    }
}
