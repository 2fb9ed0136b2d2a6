//! End-to-end tests of docs/protocol.md §6 ("Deadlines", "Output") and of the
//! listen backlog of docs/cli.md against the real `portcullis` binary. Some
//! pause the server with SIGSTOP / SIGCONT to simulate a stalled process.
//! Every wait is bounded.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{Server, WAIT, start_fresh};
use tokio::net::TcpStream;
use tokio::time::timeout;

/// Serializes the tests that pause the server or measure it, so that they do
/// not disturb each other's timings on a two-core machine.
static TIMING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Sends `signal` (`STOP`, `CONT`) to the server process.
fn signal(server: &Server, signal: &str) {
    let status = std::process::Command::new("kill")
        .args([&format!("-{signal}"), &server.pid().to_string()])
        .status()
        .expect("run `kill`");
    assert!(status.success(), "kill -{signal} failed: {status}");
}

/// Stops the server process until dropped (SIGSTOP, then SIGCONT on drop,
/// also when the test fails).
struct Paused<'a>(&'a Server);

impl<'a> Paused<'a> {
    fn new(server: &'a Server) -> Self {
        signal(server, "STOP");
        Paused(server)
    }
}

impl Drop for Paused<'_> {
    fn drop(&mut self) {
        signal(self.0, "CONT");
    }
}

/// 1,000 connections opened at once while the server process is stopped all
/// complete their handshake within 700 ms: the kernel queues them in the
/// listener's accept queue, which holds the listen backlog (docs/cli.md: at
/// least 1,024). If this fails, the backlog is the old default 128: the
/// SYNs beyond it are dropped and retried after one second, so a reconnect
/// storm after a stall is throttled by the kernel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_backlog_holds_a_thousand_connections_while_the_server_is_stopped() {
    let _timing = TIMING.lock().await;
    let (_dir, server) = start_fresh(&[]);
    let addr = server.addr;
    let (opened, elapsed) = {
        let _paused = Paused::new(&server);
        let start = Instant::now();
        let tasks: Vec<_> = (0..1000)
            .map(|_| tokio::spawn(async move { timeout(Duration::from_millis(700), TcpStream::connect(addr)).await }))
            .collect();
        let mut opened = Vec::new();
        for task in tasks {
            if let Ok(Ok(stream)) = task.await.unwrap() {
                opened.push(stream);
            }
        }
        (opened, start.elapsed())
    };
    assert_eq!(opened.len(), 1000, "connections that completed within 700 ms ({elapsed:?} in all)");
    drop(opened);
    // The resumed server serves a new connection.
    let mut conn = server.connect().await;
    assert!(conn.ping_rtt().await < WAIT);
}

/// The server's resident set size in KiB (`VmRSS` of /proc/PID/status).
fn rss_kib(server: &Server) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.pid())).expect("read /proc/PID/status");
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS line");
    line.split_whitespace().nth(1).and_then(|v| v.parse().ok()).expect("VmRSS value")
}

/// How many file descriptors the server has open (its sockets among them).
fn open_fds(server: &Server) -> usize {
    std::fs::read_dir(format!("/proc/{}/fd", server.pid())).expect("read /proc/PID/fd").count()
}

/// Twenty clients each save a ~60 KB object, then send 250 `userdata_load`s
/// in one write and never read (rate limit and message queue raised so that
/// only the byte limit applies). Each is closed as a slow reader once its
/// unsent output passes `--outbound-queue-bytes` (1 MiB), so the server's
/// resident memory grows by far less than the 20 × 250 × 60 KB = 300 MB the
/// answers would take, and another client is still served. If this fails,
/// the outbound queue is bounded in messages only (docs/protocol.md §6, "Output").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_do_not_read_big_answers_cannot_grow_the_server_memory() {
    let _timing = TIMING.lock().await;
    let (_dir, server) =
        start_fresh(&["--rate-limit", "1000000", "--rate-burst", "1000000", "--outbound-queue", "100000"]);
    let blob = "x".repeat(60_000);
    let mut hogs = Vec::new();
    for i in 0..20 {
        let mut conn = server.connect().await;
        let account = format!("hog{i:03}abc");
        conn.call_ok("register", serde_json::json!({"account": account, "password": "secret1"})).await;
        let token = conn.login(&account, "secret1").await;
        let (version, _) = conn.save(&token, serde_json::json!({"blob": blob})).await;
        assert_eq!(version, 1);
        hogs.push((conn, token));
    }
    let mut other = server.connect().await;
    other.ping_rtt().await;
    let before = rss_kib(&server);
    let fds_before = open_fds(&server);

    for (conn, token) in &mut hogs {
        let load =
            serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "userdata_load", "params": {"token": token}});
        let burst = format!("{load}\n").repeat(250);
        conn.send_raw(burst.as_bytes()).await;
    }
    let rtt = other.ping_rtt().await;
    assert!(rtt < WAIT, "another client's ping took {rtt:?}");

    // Until the server closed every hog as a slow reader (its socket count
    // drops by 20; at most 20 s), note the peak.
    let mut peak = rss_kib(&server);
    let give_up = Instant::now() + Duration::from_secs(20);
    let all_closed = loop {
        peak = peak.max(rss_kib(&server));
        if open_fds(&server) + 20 <= fds_before {
            break true;
        }
        if Instant::now() >= give_up {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    peak = peak.max(rss_kib(&server));
    let growth_mib = peak.saturating_sub(before) / 1024;
    eprintln!("RSS before {} MiB, peak {} MiB, growth {growth_mib} MiB", before / 1024, peak / 1024);
    assert!(growth_mib < 80, "the server's RSS grew by {growth_mib} MiB (before {} MiB)", before / 1024);
    assert!(all_closed, "not every client that does not read was closed as a slow reader");
    let rtt = other.ping_rtt().await;
    assert!(rtt < WAIT, "another client's ping took {rtt:?}");
}

/// A ping request padded with a ~60 KB `params.pad` string: a frame that
/// takes the server's reader about 15 reads of 4 KiB.
fn big_ping(id: i64) -> String {
    let ping = serde_json::json!({"jsonrpc": "2.0", "id": id, "method": "ping", "params": {"pad": "x".repeat(60_000)}});
    format!("{ping}\n")
}

/// Pings on `conn` every 200 ms until `stop` is set; once `paused` is set it
/// also sends two big pings ([`big_ping`]), so that after a stall the server
/// needs many reads to get the first waiting frame of this connection.
/// Returns every line that was not a ping result (a `kicked`, a
/// `disconnected`, ...) and the number of ping results.
async fn keep_pinging(mut conn: common::Conn, paused: Arc<AtomicBool>, stop: Arc<AtomicBool>) -> (Vec<String>, usize) {
    let mut other = Vec::new();
    let mut pongs = 0;
    let mut sent_big = false;
    while !stop.load(Ordering::Acquire) {
        if paused.load(Ordering::Acquire) && !sent_big {
            sent_big = true;
            conn.send_raw(big_ping(-1).repeat(2).as_bytes()).await;
        }
        conn.request("ping", serde_json::json!({})).await;
        let next = Instant::now() + Duration::from_millis(200);
        while let Some(left) = next.checked_duration_since(Instant::now()) {
            match conn.next_line_within(left).await {
                None => break,
                Some(Ok(line)) if line.contains("server_time_ms") => pongs += 1,
                Some(Ok(line)) => other.push(line),
                Some(Err(closed)) => {
                    other.push(format!("closed: {closed:?}"));
                    return (other, pongs);
                }
            }
        }
    }
    (other, pongs)
}

/// With `--idle-timeout 2s`, sessions that ping every 200 ms while the
/// server process is stopped for 4 s are not closed as idle when it resumes:
/// their pings were waiting in the socket buffers when the idle deadlines
/// passed, so they count as before them (docs/protocol.md §6, "Deadlines").
/// If this fails, the server judged the deadlines before reading the
/// waiting input, and kicked every session at once after the stall.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_that_kept_pinging_survive_a_stall_past_the_idle_timeout() {
    let _timing = TIMING.lock().await;
    let (_dir, server) = start_fresh(&["--idle-timeout", "2s", "--login-timeout", "60s"]);
    let (paused, stop) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
    let mut tasks = Vec::new();
    for account in ["netease1", "netease2", "netease3"].into_iter().chain([""; 13]) {
        let mut conn = server.connect().await;
        if !account.is_empty() {
            conn.login(account, "123").await;
        }
        tasks.push(tokio::spawn(keep_pinging(conn, Arc::clone(&paused), Arc::clone(&stop))));
    }
    tokio::time::sleep(Duration::from_millis(600)).await; // a few pings before the stall
    {
        let _paused = Paused::new(&server);
        paused.store(true, Ordering::Release);
        tokio::time::sleep(Duration::from_secs(4)).await; // the stall itself
    }
    tokio::time::sleep(Duration::from_millis(1000)).await; // pings after it
    stop.store(true, Ordering::Release);
    for (i, task) in tasks.into_iter().enumerate() {
        let (other, pongs) = timeout(WAIT, task).await.expect("pinger ends in time").unwrap();
        assert!(other.is_empty(), "session {i} got {other:?} (and {pongs} ping results)");
        assert!(pongs >= 8, "session {i}: only {pongs} ping results");
    }
}

/// A kicked client's final `userdata_save` that waits in the socket while the
/// server is stopped across the 1 s kick-save deadline is committed and
/// acknowledged when the server resumes: A gets its version, then
/// `disconnected duplicate_login`; B gets its token and loads A's save
/// (docs/protocol.md §6, "Deadlines" and the duplicate-login steps). If this
/// fails, the kick deadline fired before the waiting save was read: A was
/// closed without an answer and its save lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn final_save_waiting_across_a_stall_past_the_kick_deadline_is_committed() {
    let _timing = TIMING.lock().await;
    let (_dir, server) = start_fresh(&["--kick-save-timeout", "1s"]);
    let mut a = server.connect().await;
    let token_a = a.login("netease1", "123").await;
    a.save(&token_a, serde_json::json!({"gold": 1})).await;

    let mut b = server.connect().await;
    let login_b = b.request("login", serde_json::json!({"account": "netease1", "password": "123"})).await;
    b.expect_notification("login_pending", serde_json::json!({"reason": "replacing_session"})).await;
    a.expect_notification("kicked", serde_json::json!({"reason": "duplicate_login", "save_deadline_ms": 1000})).await;

    // Other clients keep the server's readers busy when it resumes.
    let (paused, stop) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
    let mut pingers = Vec::new();
    for _ in 0..8 {
        pingers.push(tokio::spawn(keep_pinging(server.connect().await, Arc::clone(&paused), Arc::clone(&stop))));
    }
    // A big ping and a big final save (about 60 KB each) take the reader many reads.
    let data = serde_json::json!({"gold": 42, "pad": "x".repeat(60_000)});
    let save = {
        let _paused = Paused::new(&server);
        paused.store(true, Ordering::Release);
        a.send_raw(big_ping(100).as_bytes()).await;
        let save = a.request("userdata_save", serde_json::json!({"token": token_a, "data": data})).await;
        tokio::time::sleep(Duration::from_millis(1500)).await; // the stall passes the kick deadline
        save
    };
    let pong = a.recv().await;
    assert_eq!(pong["id"], 100, "{pong}");
    let answer = a.response(save).await;
    assert_eq!(answer["result"]["version"], 2, "the final save was not acknowledged: {answer}");
    a.expect_disconnected("duplicate_login").await;
    a.expect_eof().await;

    let login = b.response(login_b).await;
    let token_b = common::token_of(&login["result"]);
    let loaded = b.load(&token_b).await;
    assert_eq!(loaded["data"], data, "B did not load A's final save");
    stop.store(true, Ordering::Release);
    for task in pingers {
        let (other, _) = timeout(WAIT, task).await.expect("pinger ends in time").unwrap();
        assert!(other.is_empty(), "a pinger got {other:?}");
    }
}
