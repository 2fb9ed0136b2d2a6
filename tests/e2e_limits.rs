//! End-to-end tests of docs/protocol.md §6 ("Deadlines", "Output") and of the
//! listen backlog of docs/cli.md against the real `portcullis` binary. Some
//! pause the server with SIGSTOP / SIGCONT to simulate a stalled process.
//! Every wait is bounded.
#![allow(clippy::unwrap_used)]

mod common;

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
