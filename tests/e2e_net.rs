//! End-to-end tests of issue 2 (network and JSON-RPC foundation) against the
//! real `portcullis` binary over real TCP sockets: framing (docs/protocol.md §1),
//! id echo (§2), `max_connections` (§6), slow readers, the event-driven
//! runner's latency, and SIGTERM (docs/cli.md).
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{Conn, Server, WAIT, median, start_fresh};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio::time::timeout;

/// Serializes the tests that measure latency or load the CPU, so that they
/// do not disturb each other's timings on a two-core machine.
static TIMING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const FRAME_TOO_LARGE: &str = r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"frame too large"}}"#;
const DISCONNECTED_PROTOCOL_ERROR: &str =
    r#"{"jsonrpc":"2.0","method":"disconnected","params":{"reason":"protocol_error"}}"#;

/// One tick at the default 30 Hz.
const TICK: Duration = Duration::from_micros(33_333);

fn now_ms() -> u64 {
    u64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis()).unwrap()
}

/// A ping request line (without `\n`) padded with a `params.pad` string so
/// that it is exactly `len` bytes long.
fn padded_ping(id: i64, len: usize) -> String {
    let base = json!({"jsonrpc": "2.0", "id": id, "method": "ping", "params": {"pad": ""}}).to_string();
    assert!(len >= base.len(), "{len} is shorter than a ping");
    let line = json!({"jsonrpc": "2.0", "id": id, "method": "ping", "params": {"pad": "x".repeat(len - base.len())}})
        .to_string();
    assert_eq!(line.len(), len);
    line
}

/// Asserts that `message` is a ping result for `id` with a plausible server time.
fn assert_ping_result(message: &Value, id: &Value) {
    assert_eq!(message["id"], *id, "id echoed unchanged: {message}");
    assert!(message.get("error").is_none(), "ping failed: {message}");
    let server_ms = message["result"]["server_time_ms"].as_u64().unwrap_or_else(|| panic!("{message}"));
    assert!(server_ms.abs_diff(now_ms()) < 60_000, "server_time_ms {server_ms} is not Unix time in ms");
    assert_eq!(message.as_object().unwrap().len(), 3, "only jsonrpc, id, result: {message}");
}

/// Asserts that a fresh connection to `server` is served (it still accepts).
async fn assert_serves_new_connection(server: &Server) {
    let mut conn = server.connect().await;
    let rtt = conn.ping_rtt().await;
    assert!(rtt < WAIT);
}

/// If this failed, a client's `ping` would not come back, or would come back
/// with its id changed (numbers rewritten as floats, strings altered), so the
/// client could not match responses to requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_round_trip_echoes_numeric_and_string_ids() {
    let (_dir, server) = start_fresh(&[]);
    let mut conn = server.connect().await;
    let ids = [
        ("1", json!(1)),
        ("0", json!(0)),
        ("-7", json!(-7)),
        ("9223372036854775807", json!(i64::MAX)),
        ("-9223372036854775808", json!(i64::MIN)),
        (r#""abc""#, json!("abc")),
        (r#""""#, json!("")),
        (r#""42""#, json!("42")),
    ];
    for (raw_id, id) in ids {
        conn.send_raw(format!(r#"{{"jsonrpc":"2.0","id":{raw_id},"method":"ping"}}"#).as_bytes()).await;
        conn.send_raw(b"\n").await;
        let line = conn.recv_line().await;
        assert!(line.contains(&format!(r#""id":{raw_id}"#)), "id {raw_id} echoed byte for byte: {line}");
        let message: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(message["jsonrpc"], "2.0");
        assert_ping_result(&message, &id);
    }
    // Params given as an empty object are the same as none.
    conn.send(&json!({"jsonrpc": "2.0", "id": "p", "method": "ping", "params": {}})).await;
    let message = conn.recv().await;
    assert_ping_result(&message, &json!("p"));
}

/// If this failed, a client that pipelines requests (several lines in one
/// TCP segment) would lose all but the first answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_requests_in_one_write_are_both_answered() {
    let (_dir, server) = start_fresh(&[]);
    let mut conn = server.connect().await;
    conn.send_raw(
        b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}\n{\"jsonrpc\":\"2.0\",\"id\":\"two\",\"method\":\"ping\"}\n",
    )
    .await;
    let first = conn.recv().await;
    let second = conn.recv().await;
    let mut seen = BTreeSet::new();
    for message in [&first, &second] {
        let id = message["id"].clone();
        assert!(id == json!(1) || id == json!("two"), "unexpected response {message}");
        assert_ping_result(message, &id);
        seen.insert(id.to_string());
    }
    assert_eq!(seen.len(), 2, "both requests answered once each: {first} / {second}");
    conn.expect_silence(Duration::from_millis(100)).await;
}

/// If this failed, a request that the network delivers in several pieces
/// (slow links, large messages) would be dropped or answered as garbage.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_split_across_writes_is_answered() {
    let (_dir, server) = start_fresh(&[]);
    let mut conn = server.connect().await;
    let pieces: [&[u8]; 4] = [b"{\"jsonrpc\":\"2.", b"0\",\"id\":77,\"met", b"hod\":\"ping\"}", b"\n"];
    for (i, piece) in pieces.iter().enumerate() {
        conn.send_raw(piece).await;
        if i + 1 < pieces.len() {
            // Nothing may be answered before the frame is complete; the pause
            // also makes each piece its own TCP segment.
            conn.expect_silence(Duration::from_millis(30)).await;
        }
    }
    let message = conn.recv().await;
    assert_ping_result(&message, &json!(77));
}

/// If this failed, `printf '...' | nc -q1 HOST PORT` (README try-it) would
/// print nothing: a client that sends its requests and then shuts down its
/// sending side must still get every answer before the server closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_closed_client_still_gets_its_answers() {
    let (_dir, server) = start_fresh(&[]);
    let mut stream = timeout(WAIT, TcpStream::connect(server.addr)).await.unwrap().unwrap();
    stream
        .write_all(
            b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}\n{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"ping\"}\n",
        )
        .await
        .unwrap();
    stream.shutdown().await.unwrap();
    let mut conn = Conn::new(stream);
    let mut ids = BTreeSet::new();
    for _ in 0..2 {
        let message = conn.recv().await;
        assert_ping_result(&message, &message["id"].clone());
        ids.insert(message["id"].to_string());
    }
    assert_eq!(ids, BTreeSet::from(["1".to_owned(), "2".to_owned()]));
    conn.expect_eof().await;
}

/// If this failed, a stray empty line or a garbled message would be answered
/// wrongly or cost the client its connection (docs/protocol.md §1).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blank_lines_are_ignored_and_invalid_json_keeps_the_connection() {
    let (_dir, server) = start_fresh(&[]);
    let mut conn = server.connect().await;
    conn.send_raw(b"\n \t\r\n\r\n").await;
    conn.expect_silence(Duration::from_millis(100)).await;
    conn.send_raw(b"{not json\n").await;
    let message = conn.recv().await;
    assert_eq!(message["id"], Value::Null, "{message}");
    assert_eq!(message["error"]["code"], -32700, "{message}");
    conn.send_raw(b"{\"jsonrpc\":\"2.0\",\"id\":5,\"method\":\"no_such_method\"}\n").await;
    let message = conn.recv().await;
    assert_eq!((message["id"].clone(), message["error"]["code"].clone()), (json!(5), json!(-32601)), "{message}");
    let message = conn.call("ping", json!({})).await;
    assert_ping_result(&message, &message["id"].clone());
}

/// If this failed, a client sending a line over `--max-frame-bytes` would
/// not get the documented error and close (or the server would stop
/// accepting other players afterwards).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_line_gets_frame_too_large_then_protocol_error_and_eof() {
    let (_dir, server) = start_fresh(&["--max-frame-bytes", "1024"]);
    let mut conn = server.connect().await;
    let line = format!("{}\n", padded_ping(1, 2000));
    conn.send_raw(line.as_bytes()).await;
    conn.expect_line(FRAME_TOO_LARGE).await;
    conn.expect_line(DISCONNECTED_PROTOCOL_ERROR).await;
    conn.expect_eof().await;
    assert_serves_new_connection(&server).await;
    assert_serves_new_connection(&server).await;
}

/// If this failed, a client (or attacker) streaming bytes with no newline
/// would make the server buffer without bound instead of being cut off at
/// `--max-frame-bytes` with the documented error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_frame_without_newline_is_rejected_at_once() {
    let (_dir, server) = start_fresh(&["--max-frame-bytes", "1024"]);
    let mut conn = server.connect().await;
    let frame = padded_ping(1, 1025);
    conn.send_raw(frame.as_bytes()).await;
    conn.expect_line(FRAME_TOO_LARGE).await;
    conn.expect_line(DISCONNECTED_PROTOCOL_ERROR).await;
    conn.expect_eof().await;
    assert_serves_new_connection(&server).await;
}

/// If this failed, a message of exactly `--max-frame-bytes` bytes (which the
/// spec allows) would be refused, or a partial frame at the limit would be
/// cut off before its newline arrived.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frame_of_exactly_max_bytes_is_served() {
    let (_dir, server) = start_fresh(&["--max-frame-bytes", "1024"]);
    let mut conn = server.connect().await;
    conn.send_raw(format!("{}\n", padded_ping(1, 1024)).as_bytes()).await;
    assert_ping_result(&conn.recv().await, &json!(1));
    // 1023 bytes + "\r\n": the frame with its `\r` is 1024 bytes, allowed.
    conn.send_raw(format!("{}\r\n", padded_ping(2, 1023)).as_bytes()).await;
    assert_ping_result(&conn.recv().await, &json!(2));
    // 1024 bytes without the newline yet: the limit is not passed.
    conn.send_raw(padded_ping(3, 1024).as_bytes()).await;
    conn.expect_silence(Duration::from_millis(100)).await;
    conn.send_raw(b"\n").await;
    assert_ping_result(&conn.recv().await, &json!(3));
}

/// If this failed, a `\r\n`-terminated line whose `\r` pushes it over the
/// limit would be accepted, although docs/protocol.md §1 counts the `\r`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crlf_counts_toward_the_frame_size() {
    let (_dir, server) = start_fresh(&["--max-frame-bytes", "1024"]);
    let mut conn = server.connect().await;
    conn.send_raw(format!("{}\r\n", padded_ping(1, 1024)).as_bytes()).await;
    conn.expect_line(FRAME_TOO_LARGE).await;
    conn.expect_line(DISCONNECTED_PROTOCOL_ERROR).await;
    conn.expect_eof().await;
}

/// If this failed, a server at `--max-connections` would accept (or hang)
/// extra players instead of telling them `server_full` and closing, or would
/// stay "full" after a player left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_over_max_connections_gets_server_full() {
    let (_dir, server) = start_fresh(&["--max-connections", "2"]);
    let mut first = server.connect().await;
    let mut second = server.connect().await;
    // Both are served, so both are registered as open.
    first.ping_rtt().await;
    second.ping_rtt().await;

    let mut third = server.connect().await;
    third.expect_disconnected("server_full").await;
    third.expect_eof().await;

    // The two open ones are unaffected.
    first.ping_rtt().await;
    second.ping_rtt().await;

    // After one leaves, a newcomer gets in (the close may take a frame to be
    // noticed, so a `server_full` is retried for a bounded time).
    drop(first);
    let deadline = Instant::now() + WAIT;
    loop {
        let mut next = server.connect().await;
        next.send(&json!({"jsonrpc": "2.0", "id": 1, "method": "ping"})).await;
        let message = next.recv().await;
        if message["method"] == "disconnected" {
            assert_eq!(message["params"]["reason"], "server_full");
            assert!(Instant::now() < deadline, "still server_full long after a connection closed");
            continue;
        }
        assert_ping_result(&message, &json!(1));
        break;
    }
}

/// A TCP connection with a tiny receive buffer, so that the server's socket
/// send buffer fills quickly when the client does not read.
async fn connect_small_rcvbuf(server: &Server) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = timeout(WAIT, socket.connect(server.addr)).await.expect("connect in time").expect("connect");
    stream.set_nodelay(true).unwrap();
    stream
}

/// A ping whose string id is `id_len` bytes, so that every answer is that
/// big.
fn big_ping(id_len: usize) -> Vec<u8> {
    let id = "y".repeat(id_len);
    let mut line = json!({"jsonrpc": "2.0", "id": id, "method": "ping"}).to_string().into_bytes();
    line.push(b'\n');
    line
}

/// How a slow reader's writing ended.
#[derive(Debug, PartialEq)]
enum FloodEnd {
    /// A write failed: the server closed the connection.
    Closed,
    /// A write did not complete within 2 s: the server stopped reading.
    Stalled,
    /// The request cap was reached.
    Cap,
    /// Asked to stop.
    Stopped,
}

/// A client that never reads: sends pings with `id_len`-byte ids on
/// `stream`, first `burst` at
/// once (at most the default `--rate-burst` 100), then 40 per second (under
/// the default `--rate-limit` 50/s, so the rate limiter never refuses or
/// closes it), until the server closes it, `cap` requests are sent, or
/// `stop`. Publishes the number of requests sent on `sent`.
async fn slow_reader(
    stream: &mut TcpStream,
    id_len: usize,
    burst: usize,
    cap: usize,
    stop: &AtomicBool,
    sent: &watch::Sender<usize>,
) -> FloodEnd {
    let line = big_ping(id_len);
    let mut pace = tokio::time::interval(Duration::from_millis(25));
    pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for n in 0..cap {
        if stop.load(Ordering::Relaxed) {
            return FloodEnd::Stopped;
        }
        if n >= burst {
            pace.tick().await;
        }
        match timeout(Duration::from_secs(2), stream.write_all(&line)).await {
            Ok(Ok(())) => sent.send_modify(|s| *s += 1),
            Ok(Err(_)) => return FloodEnd::Closed,
            Err(_) => return FloodEnd::Stalled,
        }
    }
    FloodEnd::Cap
}

/// If this failed, one player whose game client stopped reading (frozen,
/// on a dead link) would make every other player's requests lag: the server
/// would wait on that socket instead of serving the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_reader_does_not_delay_another_clients_ping() {
    let _timing = TIMING.lock().await;
    // Default limits, except a login deadline long enough not to close the
    // (never logged-in) probe while the test runs.
    let (_dir, server) = start_fresh(&["--login-timeout", "1m"]);
    let mut probe = server.connect().await;
    probe.ping_rtt().await;

    // Two clients that never read: 25 KB
    // answers at a steady 40/s each, with no burst, so that what is measured
    // is the effect of their unread output, not the CPU cost of parsing big
    // messages (a few percent of a core here).
    let stop = Arc::new(AtomicBool::new(false));
    let mut senders = Vec::new();
    let mut counters = Vec::new();
    for _ in 0..2 {
        let mut stream = connect_small_rcvbuf(&server).await;
        let (sent_tx, sent_rx) = watch::channel(0usize);
        counters.push(sent_rx);
        let stop = Arc::clone(&stop);
        senders.push(tokio::spawn(async move {
            let end = slow_reader(&mut stream, 25_000, 0, 1_000, &stop, &sent_tx).await;
            (end, stream)
        }));
    }
    // The server's socket send buffer toward a non-reading loopback client
    // tops out near 3 MB (`ss -tm`), i.e. ~120 answers of 25 KB. Measure once
    // each has asked for 160 answers (4 s): the server's writes to them are
    // blocked and ~40 answers wait in their queues (256), not yet full.
    for counter in &mut counters {
        timeout(Duration::from_secs(20), counter.wait_for(|n| *n >= 160))
            .await
            .expect("the slow readers send 160 requests in time")
            .unwrap();
    }
    let mut rtts = Vec::new();
    for _ in 0..30 {
        rtts.push(probe.ping_rtt().await);
    }
    let sent: Vec<usize> = counters.iter().map(|c| *c.borrow()).collect();
    let still_sending = senders.iter().filter(|s| !s.is_finished()).count();
    stop.store(true, Ordering::Relaxed);
    let mut ends = Vec::new();
    for sender in senders {
        let (end, stream) = timeout(Duration::from_secs(10), sender).await.expect("slow reader stops").unwrap();
        ends.push(end);
        drop(stream);
    }

    let p50 = median(&rtts);
    let max = rtts.iter().max().copied().unwrap();
    eprintln!(
        "slow-reader test: probe ping p50 = {:.3} ms, max = {:.3} ms, all = {:?} ms; \
         slow readers had sent {sent:?} requests for 25 KB answers, {still_sending} still sending at the end, ends = {ends:?}",
        p50.as_secs_f64() * 1e3,
        max.as_secs_f64() * 1e3,
        rtts.iter().map(|d| (d.as_secs_f64() * 1e4).round() / 10.0).collect::<Vec<_>>(),
    );
    assert!(p50 < TICK, "another client's ping p50 {p50:?} is not under one 30 Hz tick while clients do not read");
}

/// If this failed, a client that never reads its answers would stay
/// connected with its output piling up in the server (memory growth), or be
/// told `disconnected` although docs/protocol.md §5 says a slow reader is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_reader_is_closed_when_its_queue_fills() {
    let _timing = TIMING.lock().await;
    // A small queue so that it fills within the first burst.
    let (_dir, server) = start_fresh(&["--outbound-queue", "16"]);
    let mut slow = connect_small_rcvbuf(&server).await;
    let stop = AtomicBool::new(false);
    let (sent_tx, sent_rx) = watch::channel(0usize);
    // Up to 400 requests (~40 MB of answers, 10 s): far beyond any socket
    // buffer plus 16 queued messages.
    let end = slow_reader(&mut slow, 100_000, 100, 400, &stop, &sent_tx).await;
    let sent = *sent_rx.borrow();

    // Now read whatever was delivered; the server must have closed the
    // connection, so this ends in EOF (or a reset) well before `sent` answers.
    let (bytes, closed) = common::drain_until_closed(&mut slow, Duration::from_secs(20)).await;
    let text = String::from_utf8_lossy(&bytes);
    let answers = text.matches('\n').count();
    eprintln!("slow reader: writing ended {end:?} after {sent} requests; read {answers} answers, then {closed:?}");
    assert_eq!(end, FloodEnd::Closed, "the server did not close the slow reader while it kept sending");
    assert!(closed.is_some(), "the slow reader was never closed ({answers} answers read, {sent} sent)");
    assert!(answers < sent, "every one of {sent} requests was answered: the slow reader was not cut off");
    assert!(!text.contains("\"disconnected\""), "a slow reader must not be sent `disconnected` (docs/protocol.md §5)");
    // Other clients are still served.
    assert_serves_new_connection(&server).await;
}

/// If this failed, requests would wait for the next 30 Hz tick (or worse)
/// before being read: every round trip would cost tens of milliseconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_ping_round_trip_is_far_below_a_tick() {
    let _timing = TIMING.lock().await;
    let (_dir, server) = start_fresh(&[]);
    let mut conn = server.connect().await;
    for _ in 0..5 {
        conn.ping_rtt().await;
    }
    let mut rtts = Vec::new();
    for _ in 0..50 {
        rtts.push(conn.ping_rtt().await);
    }
    let p50 = median(&rtts);
    let mut sorted = rtts.clone();
    sorted.sort();
    eprintln!(
        "idle ping round trip over 50 pings: p50 = {:.3} ms, p90 = {:.3} ms, max = {:.3} ms",
        p50.as_secs_f64() * 1e3,
        sorted[45].as_secs_f64() * 1e3,
        sorted[49].as_secs_f64() * 1e3
    );
    assert!(p50 < Duration::from_millis(10), "idle ping p50 {p50:?} is not far below one tick ({TICK:?})");
}

/// If this failed, stopping the server with SIGTERM (systemd, Docker,
/// Ctrl-C) would hang or report a failure exit status.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_on_idle_server_exits_with_status_zero() {
    let (_dir, mut server) = start_fresh(&[]);
    {
        let mut conn: Conn = server.connect().await;
        conn.ping_rtt().await;
    }
    server.terminate();
    let status = server.wait_exit(Duration::from_secs(10)).await;
    assert_eq!(status.code(), Some(0), "exit status after SIGTERM: {status}");
}

/// `serve` on an address already in use prints no `listening on` line, says
/// `error: cannot listen on ADDR: ...` on stderr and exits 1 (docs/cli.md,
/// "Exit status"). If this failed, a script waiting for the line would hang
/// or a supervisor would read a crash (a panic exits 101) as a bad address.
#[test]
fn address_in_use_exits_one_with_a_clear_message() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["serve", "--listen", &addr, "--argon2-memory-kib", "8", "--argon2-iterations", "1", "--db"])
        .arg(dir.path().join("db.sqlite"))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "serve on a taken address did not exit within 20 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "exit status; stderr:\n{stderr}");
    assert_eq!(String::from_utf8_lossy(&output.stdout), "", "nothing on stdout");
    assert!(stderr.contains(&format!("error: cannot listen on {addr}: ")), "stderr:\n{stderr}");
    assert!(!stderr.contains("panicked"), "stderr:\n{stderr}");
}
