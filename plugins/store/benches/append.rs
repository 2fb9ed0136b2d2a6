//! User data appends per second through the real [`Store`] (its SQLite
//! thread, channels and replies) on a temporary database file, with group
//! commit and with one transaction per save, with `synchronous=NORMAL` and
//! `synchronous=FULL`.
//!
//! Each iteration submits a burst of saves spread over 64 accounts, then
//! waits for every reply (a save is replied to only after its commit).
//!
//! The group `append_store_thread_cpu` measures the same group-commit
//! bursts in CPU time of the SQLite thread (Linux `schedstat`) instead of
//! wall time: its throughput is what that thread sustains on a core of its
//! own, and, unlike wall time, it hardly moves when other processes load
//! the machine.
//!
//! ```text
//! cargo bench -p portcullis_store --bench append -- --warm-up-time 1 --measurement-time 5
//! ```

use std::time::Duration;

use criterion::{Criterion, Throughput};
use portcullis_store::{Database, Store, StoreConfig, StoreOk, StoreRequest};

/// Accounts the saves are spread over.
const ACCOUNTS: usize = 64;
/// A typical small save.
const DATA: &str = r#"{"name":"wydx","bullet":20,"exp":23,"pos":[12.5,-3.25,7.0]}"#;
/// Longest wait for one reply before the benchmark fails.
const REPLY_TIMEOUT: Duration = Duration::from_secs(60);

/// One benchmark case.
struct Case {
    /// Name in criterion's report.
    name: &'static str,
    /// [`StoreConfig::group_commit`].
    group_commit: bool,
    /// [`StoreConfig::synchronous_full`].
    synchronous_full: bool,
    /// Saves per iteration.
    burst: usize,
}

const CASES: [Case; 4] = [
    Case { name: "group_commit", group_commit: true, synchronous_full: false, burst: 16_384 },
    Case { name: "one_tx_per_save", group_commit: false, synchronous_full: false, burst: 4_096 },
    Case { name: "group_commit_sync_full", group_commit: true, synchronous_full: true, burst: 16_384 },
    Case { name: "one_tx_per_save_sync_full", group_commit: false, synchronous_full: true, burst: 256 },
];

/// A store on a fresh file in `dir` with [`ACCOUNTS`] accounts; returns it
/// and the account ids.
fn open_store(dir: &tempfile::TempDir, case: &Case) -> (Store, Vec<i64>) {
    let config = StoreConfig {
        demo_accounts: false,
        group_commit: case.group_commit,
        synchronous_full: case.synchronous_full,
        ..StoreConfig::new(dir.path().join(format!("{}.db", case.name))).fast_hashing()
    };
    let db = Database::open(&config).expect("create database");
    let ids =
        (0..ACCOUNTS).map(|i| db.add_account(&format!("bench{i:04}"), "benchpass").expect("add account").id).collect();
    drop(db);
    (Store::open(config, None).expect("open store"), ids)
}

/// Submits `burst` saves and waits for all their replies.
fn append_burst(store: &Store, ids: &[i64], burst: usize) {
    for (i, account_id) in ids.iter().cycle().take(burst).enumerate() {
        let request = StoreRequest::SaveUserdata { account_id: *account_id, data: DATA.to_owned() };
        store.submit(i as u64, request).expect("queue has room");
    }
    for _ in 0..burst {
        let reply = store.replies().recv_timeout(REPLY_TIMEOUT).expect("reply in time");
        assert!(matches!(reply.result, Ok(StoreOk::Saved(_))), "save failed: {reply:?}");
    }
}

/// CPU time used so far by the store's SQLite thread (named
/// `portcullis-store`, which Linux shortens to 15 bytes); `None` where
/// `/proc` cannot tell.
fn store_thread_cpu() -> Option<Duration> {
    let tasks = std::fs::read_dir("/proc/self/task").ok()?;
    tasks.flatten().find_map(|task| {
        let task = task.path();
        let name = std::fs::read_to_string(task.join("comm")).ok()?;
        if name.trim_end() != "portcullis-stor" {
            return None;
        }
        let schedstat = std::fs::read_to_string(task.join("schedstat")).ok()?;
        let nanos = schedstat.split_whitespace().next()?.parse().ok()?;
        Some(Duration::from_nanos(nanos))
    })
}

/// The benchmark group `append_store_thread_cpu`.
fn append_store_thread_cpu(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let case = &CASES[0];
    let (store, ids) = open_store(&dir, case);
    // After one burst the thread has surely started and named itself.
    append_burst(&store, &ids, case.burst);
    if store_thread_cpu().is_none() {
        store.close().expect("close store");
        return;
    }
    let mut group = c.benchmark_group("append_store_thread_cpu");
    group.sample_size(10);
    group.throughput(Throughput::Elements(case.burst as u64));
    group.bench_function(case.name, |b| {
        b.iter_custom(|iters| {
            let before = store_thread_cpu().unwrap_or_default();
            for _ in 0..iters {
                append_burst(&store, &ids, case.burst);
            }
            store_thread_cpu().unwrap_or_default().saturating_sub(before)
        });
    });
    group.finish();
    store.close().expect("close store");
}

/// The benchmark group `append`.
fn append(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut group = c.benchmark_group("append");
    group.sample_size(10);
    for case in &CASES {
        let (store, ids) = open_store(&dir, case);
        group.throughput(Throughput::Elements(case.burst as u64));
        group.bench_function(case.name, |b| {
            b.iter(|| append_burst(&store, &ids, case.burst));
        });
        store.close().expect("close store");
    }
    group.finish();
}

/// What `criterion_group!`/`criterion_main!` would generate (written out
/// because the generated function has no doc comment).
fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    append(&mut criterion);
    append_store_thread_cpu(&mut criterion);
    criterion.final_summary();
}
