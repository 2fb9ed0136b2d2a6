//! End-to-end tests of issue 6 (hardening) against the real `portcullis`
//! binary over real TCP sockets: hostile clients — floods, garbage, huge and
//! unfinished frames, clients that never read, password guessing — each get
//! the answer docs/protocol.md documents (§1 frames, §6 rate limit, login
//! throttling), and the server keeps serving everyone else meanwhile.
//!
//! Every test starts its own server process on a fresh temporary database;
//! every wait is bounded.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{Closed, Conn, Server, WAIT, error_code, median, start_fresh};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio::time::{MissedTickBehavior, interval, timeout};

/// Serializes the tests that measure latency or load the CPU, so that they
/// do not disturb each other's timings on a two-core machine.
static TIMING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const FRAME_TOO_LARGE: &str = r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"frame too large"}}"#;

/// `RATE_LIMITED` (docs/protocol.md §3).
const RATE_LIMITED: i64 = 1007;
/// `INVALID_CREDENTIALS` (docs/protocol.md §3).
const INVALID_CREDENTIALS: i64 = 1002;
/// `PARSE_ERROR` (docs/protocol.md §3).
const PARSE_ERROR: i64 = -32700;

/// "Within a tick or two" of the default 30 Hz tick.
const TWO_TICKS: Duration = Duration::from_millis(70);

/// Longer than any single ping may take while another client floods the
/// server at wire speed on a shared two-core machine; a stalled server takes
/// seconds.
const STALL: Duration = Duration::from_millis(250);

/// A ping request line with numeric `id`, with its `\n`.
fn ping_line(id: u64) -> String {
    format!("{{\"jsonrpc\":\"2.0\",\"id\":{id},\"method\":\"ping\"}}\n")
}

/// Asserts that `message` is a successful ping answer to `id`.
fn assert_ping_result(message: &Value, id: &Value) {
    assert_eq!(message["id"], *id, "answer to id {id}: {message}");
    assert!(message.get("error").is_none(), "ping {id} failed: {message}");
    assert!(message["result"]["server_time_ms"].is_u64(), "ping result {message}");
}

/// Asserts that `message` is exactly a `-32700` answer with `"id": null`
/// (docs/protocol.md §1, §2: `-32700` always carries `null`).
fn assert_parse_error(message: &Value) {
    assert_eq!(error_code(message), PARSE_ERROR, "expected -32700: {message}");
    assert!(message.get("id").is_some_and(Value::is_null), "-32700 carries \"id\": null: {message}");
    assert!(message["error"]["message"].is_string(), "error message is a string: {message}");
    assert!(message.get("result").is_none(), "{message}");
}

/// The resident set size of process `pid` in KiB (`VmRSS` of /proc/PID/status).
fn rss_kib(pid: u32) -> u64 {
    try_rss_kib(pid).unwrap_or_else(|| panic!("no VmRSS for process {pid}"))
}

/// [`rss_kib`], or `None` once the process is gone (or a zombie).
fn try_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Samples the RSS of `pid` every 5 ms until `stop` (or the process is
/// gone); returns the peak in KiB.
fn spawn_rss_sampler(pid: u32, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<u64> {
    tokio::spawn(async move {
        let mut peak = 0;
        let mut every = interval(Duration::from_millis(5));
        while !stop.load(Ordering::Acquire) {
            every.tick().await;
            match try_rss_kib(pid) {
                Some(rss) => peak = peak.max(rss),
                None => break,
            }
        }
        peak
    })
}

/// Connects to `server` from the loopback address `local_ip` (e.g.
/// `127.0.0.2`: Linux routes all of 127/8 to `lo`, so a server listening on
/// 127.0.0.1 sees the connection coming from another address).
async fn connect_from(server: &Server, local_ip: &str) -> Conn {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{local_ip}:0").parse().unwrap()).unwrap();
    let stream = timeout(WAIT, socket.connect(server.addr)).await.expect("connect in time").expect("connect");
    assert_eq!(stream.local_addr().unwrap().ip().to_string(), local_ip);
    Conn::new(stream)
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

/// A client pinging `server` on its own connection until `stop`, one ping
/// every `period` (each waits for its answer); returns the round trips.
/// Panics when a ping is not answered within [`WAIT`].
fn spawn_prober(server: &Server, period: Duration, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<Vec<Duration>> {
    let addr = server.addr;
    tokio::spawn(async move {
        let stream = timeout(WAIT, TcpStream::connect(addr)).await.expect("connect in time").expect("connect");
        let mut probe = Conn::new(stream);
        let mut pace = interval(period);
        pace.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut rtts = Vec::new();
        while !stop.load(Ordering::Acquire) {
            pace.tick().await;
            rtts.push(probe.ping_rtt().await);
        }
        rtts
    })
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e4).round() / 10.0
}

// ---------------------------------------------------------------------------
// Rate limit (docs/protocol.md §6, "Rate")
// ---------------------------------------------------------------------------

/// If this failed, one client flooding requests would either get them all
/// executed (no rate limit), lose answers or get some twice, never be cut
/// off, or slow every other player down while the server chews on it.
///
/// 1,000 pings in one write with `--rate-limit 10 --rate-burst 20`: the 20
/// tokens of the full bucket answer the first 20 pings; every later ping
/// finds the bucket empty and gets `RATE_LIMITED` (a token refills only
/// every 100 ms); the 21st refusal within a second is "more than
/// `rate_burst`", so it gets its `RATE_LIMITED` and then
/// `disconnected {"reason":"rate_limited"}` and EOF. Each request before the
/// close is answered exactly once, in order; none after it. Meanwhile
/// another client's pings answer within a tick or two.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_flood_gets_the_burst_then_rate_limited_then_disconnected_while_others_are_served() {
    let _timing = TIMING.lock().await;
    let (_dir, server) = start_fresh(&["--rate-limit", "10", "--rate-burst", "20"]);
    let mut probe = server.connect().await;
    for _ in 0..3 {
        probe.ping_rtt().await;
    }
    let mut flooder = server.connect().await;
    let flood: String = (1..=1000).map(ping_line).collect();

    let started = Instant::now();
    flooder.send_raw(flood.as_bytes()).await;
    // The other client pings back to back while the flood is handled (15
    // pings stay within its own bucket of 20).
    let probing = tokio::spawn(async move {
        let mut rtts = Vec::new();
        for _ in 0..15 {
            rtts.push(probe.ping_rtt().await);
        }
        (rtts, probe)
    });

    let mut answers: Vec<Value> = Vec::new();
    loop {
        let message = flooder.recv().await;
        if message.get("method").is_some() {
            assert_eq!(
                message,
                json!({"jsonrpc": "2.0", "method": "disconnected", "params": {"reason": "rate_limited"}}),
                "the only notification is the rate_limited goodbye (after {} answers)",
                answers.len()
            );
            break;
        }
        assert!(answers.len() < 1000, "more answers than requests");
        answers.push(message);
    }
    let flood_time = started.elapsed();
    flooder.expect_eof().await;
    let (rtts, mut probe) = timeout(Duration::from_secs(10), probing).await.expect("probe finishes").unwrap();

    // Every request before the close answered exactly once, in order.
    for (i, answer) in answers.iter().enumerate() {
        assert_eq!(answer["id"], json!(i + 1), "answers in request order, each once: answer #{i} is {answer}");
    }
    // The full bucket: the first 20 executed.
    for answer in answers.iter().take(20) {
        assert_ping_result(answer, &answer["id"]);
    }
    let refused: Vec<&Value> = answers.iter().filter(|a| a.get("error").is_some()).collect();
    for answer in &refused {
        assert_eq!(error_code(answer), RATE_LIMITED, "a refused request gets RATE_LIMITED: {answer}");
    }
    // Only a token refilled during the flood (one per 100 ms) can admit a
    // request after the 20th; on loopback the flood takes a few ms.
    let extra_results = answers.len() - 20 - refused.len();
    let refills = (flood_time.as_secs_f64() * 10.0).ceil() as usize;
    assert!(
        extra_results <= refills,
        "{extra_results} requests after the burst were executed in {flood_time:?} at 10 tokens/s"
    );
    assert_eq!(refused.len(), 21, "the close comes with the 21st refusal within a second (more than rate_burst 20)");
    assert_eq!(error_code(answers.last().unwrap()), RATE_LIMITED, "the frame that crossed the line gets RATE_LIMITED");

    let max = rtts.iter().max().copied().unwrap();
    eprintln!(
        "flood: {} answers ({} results, {} RATE_LIMITED) in {:.1} ms; other client's pings meanwhile: max {:.1} ms, p50 {:.1} ms",
        answers.len(),
        answers.len() - refused.len(),
        refused.len(),
        ms(flood_time),
        ms(max),
        ms(median(&rtts))
    );
    assert!(max < TWO_TICKS, "another client's ping took {max:?} during the flood (all: {rtts:?})");
    // The other client is still served afterwards.
    assert_ping_result(&probe.call("ping", json!({})).await, &json!(19));
}

/// If this failed, an honest client that keeps under `--rate-limit` (here 8
/// requests/s against 10/s, with a bucket of only 2) would still be refused:
/// the bucket would refill too slowly, or not at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_pacing_itself_under_the_limit_is_never_refused() {
    let (_dir, server) = start_fresh(&["--rate-limit", "10", "--rate-burst", "2"]);
    let mut conn = server.connect().await;
    let mut pace = interval(Duration::from_millis(125));
    pace.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let started = Instant::now();
    let mut answered = 0;
    while started.elapsed() < Duration::from_secs(2) {
        pace.tick().await;
        let id = conn.request("ping", json!({})).await;
        let answer = conn.response(id).await;
        assert_ping_result(&answer, &json!(id));
        answered += 1;
    }
    assert!(answered >= 15, "only {answered} pings in 2 s");
    conn.expect_silence(Duration::from_millis(50)).await;
}

// ---------------------------------------------------------------------------
// Garbage frames (docs/protocol.md §1)
// ---------------------------------------------------------------------------

/// If this failed, a frame with bytes that are not UTF-8 (a broken client,
/// a binary probe) would crash or close the connection, be answered with an
/// id (`-32700` always carries `null`), or leave the connection unusable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_utf8_frames_get_parse_error_with_null_id_and_the_connection_stays() {
    let (_dir, server) = start_fresh(&[]);
    let mut conn = server.connect().await;
    let frames: [&[u8]; 5] = [
        b"\xff\xfe\xfd\n",
        // A valid request but for one byte inside a string: still -32700, id null.
        b"{\"jsonrpc\":\"2.0\",\"id\":5,\"method\":\"ping\",\"params\":{\"x\":\"\xff\"}}\n",
        // An overlong encoding of '/', a UTF-16 surrogate, a truncated sequence.
        b"{\"jsonrpc\":\"2.0\",\"id\":6,\"method\":\"\xc0\xaf\"}\n",
        b"{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"\xed\xa0\x80\"}\r\n",
        b"\"\xe2\x82\"\n",
    ];
    for frame in frames {
        conn.send_raw(frame).await;
        let answer = conn.recv().await;
        assert_parse_error(&answer);
    }
    // Still usable, and nothing else was answered.
    assert_ping_result(&conn.call("ping", json!({})).await, &json!(1));
    conn.expect_silence(Duration::from_millis(50)).await;
}

/// If this failed, 100,000 nested `[` (100 KB, under the frame limit) would
/// overflow the server's stack while parsing (a crash for everyone) instead
/// of being refused by serde_json's depth limit with `-32700`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_thousand_open_brackets_get_parse_error_and_the_connection_stays() {
    let (_dir, server) = start_fresh(&[]);
    let mut conn = server.connect().await;
    let mut frame = "[".repeat(100_000);
    frame.push('\n');
    conn.send_raw(frame.as_bytes()).await;
    assert_parse_error(&conn.recv().await);
    // The same depth as objects inside a valid-looking request.
    let mut frame = String::from(r#"{"jsonrpc":"2.0","id":9,"method":"ping","params":"#);
    frame.push_str(&r#"{"a":"#.repeat(20_000));
    frame.push('\n');
    conn.send_raw(frame.as_bytes()).await;
    assert_parse_error(&conn.recv().await);
    assert_ping_result(&conn.call("ping", json!({})).await, &json!(1));
    // Other connections are unaffected.
    let mut other = server.connect().await;
    other.ping_rtt().await;
}

/// If this failed, a client streaming megabytes without a newline would make
/// the server buffer them all (memory growth with every such client) instead
/// of cutting it off at `--max-frame-bytes` (default 128 KiB) with
/// `frame too large`, `disconnected {protocol_error}` and EOF.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_megabytes_without_newline_is_frame_too_large_without_buffering() {
    let _timing = TIMING.lock().await;
    let (_dir, server) = start_fresh(&[]);
    let mut other = server.connect().await;
    other.ping_rtt().await;
    let pid = server.pid();
    let baseline = rss_kib(pid);

    // Sample the server's RSS until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = spawn_rss_sampler(pid, Arc::clone(&stop));

    let stream = timeout(WAIT, TcpStream::connect(server.addr)).await.expect("connect in time").expect("connect");
    let (mut rd, mut wr) = stream.into_split();
    // 10 MB of one frame that never ends, written in 64 KiB pieces; the
    // server stops reading at the limit, so a write may fail once it closes.
    let writer = tokio::spawn(async move {
        let mut chunk = br#"{"jsonrpc":"2.0","id":1,"method":"ping","params":{"pad":""#.to_vec();
        chunk.resize(64 * 1024, b'x');
        let mut written = 0usize;
        while written < 10 * 1024 * 1024 {
            match timeout(Duration::from_secs(10), wr.write_all(&chunk)).await {
                Ok(Ok(())) => written += chunk.len(),
                Ok(Err(_)) => break,
                Err(_) => panic!("the server neither read nor closed for 10 s ({written} bytes written)"),
            }
            chunk.fill(b'x');
        }
        (written, wr)
    });

    // The exact answer, the goodbye, then EOF.
    let mut received = Vec::new();
    let end = timeout(Duration::from_secs(10), rd.read_to_end(&mut received)).await.expect("closed within 10 s");
    let text = String::from_utf8_lossy(&received).into_owned();
    match end {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => eprintln!("note: reset after {text:?}"),
        Err(e) => panic!("read error {e} after {text:?}"),
    }
    let expected = format!(
        "{FRAME_TOO_LARGE}\n{}\n",
        r#"{"jsonrpc":"2.0","method":"disconnected","params":{"reason":"protocol_error"}}"#
    );
    assert_eq!(text, expected, "frame too large, disconnected protocol_error, then EOF");
    let (written, _wr) = timeout(Duration::from_secs(20), writer).await.expect("writer ends").unwrap();

    // The server keeps serving the others.
    other.ping_rtt().await;
    let mut fresh = server.connect().await;
    fresh.ping_rtt().await;

    stop.store(true, Ordering::Release);
    let peak = sampler.await.unwrap();
    let growth_kib = peak.saturating_sub(baseline);
    eprintln!("10 MB without newline: {written} bytes written; server RSS {baseline} KiB -> peak {peak} KiB");
    assert!(
        growth_kib < 8 * 1024,
        "the server's RSS grew by {growth_kib} KiB while a client sent 10 MB without a newline: it buffered the frame"
    );
}

// ---------------------------------------------------------------------------
// Clients that never read, and clients that stall mid-frame
// ---------------------------------------------------------------------------

/// If this failed, a client that pipelines a huge number of requests and
/// never reads their answers would make the server hold its output without
/// bound (memory) or block on it, stalling everyone; it must be closed (its
/// outbound queue overflows: closed at once, docs/protocol.md §5) while other
/// clients are served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_that_never_reads_is_closed_and_others_are_served() {
    let _timing = TIMING.lock().await;
    // The rate limit raised out of the way: only the output bound may act.
    let (_dir, server) = start_fresh(&["--rate-limit", "1000000", "--rate-burst", "1000000"]);
    let pid = server.pid();
    let baseline = rss_kib(pid);
    let mut stream = connect_small_rcvbuf(&server).await;

    // 100,000 pings with 64-byte string ids: ~11 MB of requests, ~13 MB of
    // answers, far beyond the socket buffers plus a 256-message queue.
    let mut flood = Vec::with_capacity(11 << 20);
    for n in 0..100_000u32 {
        flood.extend_from_slice(format!("{{\"jsonrpc\":\"2.0\",\"id\":\"{n:064}\",\"method\":\"ping\"}}\n").as_bytes());
    }
    let (sent_tx, mut sent_rx) = watch::channel(0usize);
    let writer = tokio::spawn(async move {
        let mut sent = 0usize;
        let result = loop {
            if sent == flood.len() {
                break Ok(());
            }
            let piece = &flood[sent..(sent + 64 * 1024).min(flood.len())];
            match timeout(Duration::from_secs(10), stream.write_all(piece)).await {
                Ok(Ok(())) => {
                    sent += piece.len();
                    sent_tx.send_replace(sent);
                }
                Ok(Err(e)) => break Err(e.kind()),
                Err(_) => panic!("the server stopped reading the flood for 10 s without closing ({sent} bytes in)"),
            }
        };
        (result, sent, stream)
    });

    // Other clients are served while the flood goes on.
    timeout(Duration::from_secs(10), sent_rx.wait_for(|n| *n >= 1 << 20)).await.expect("1 MB in").unwrap();
    let mut probe = server.connect().await;
    let mut rtts = Vec::new();
    for _ in 0..10 {
        rtts.push(probe.ping_rtt().await);
    }

    let (result, sent, mut stream) = timeout(Duration::from_secs(30), writer).await.expect("writer ends").unwrap();
    // Whatever was delivered before the close, then EOF or a reset.
    let (bytes, closed) = common::drain_until_closed(&mut stream, Duration::from_secs(20)).await;
    let text = String::from_utf8_lossy(&bytes);
    let answers = text.matches('\n').count();
    let peak = rss_kib(pid);
    eprintln!(
        "never-reading client: writing ended {result:?} after {sent} bytes; read {answers} answers then {closed:?}; \
         probe pings max {:.1} ms p50 {:.1} ms; server RSS {baseline} -> {peak} KiB; goodbye seen: {}",
        ms(rtts.iter().max().copied().unwrap()),
        ms(median(&rtts)),
        text.contains("\"disconnected\"")
    );
    assert!(closed.is_some(), "the client that never reads was never closed ({answers} answers read)");
    assert!(answers < 100_000, "every request was answered: the client was not cut off");
    // Two bounds may end it, whichever is reached first: its outbound queue
    // (`--outbound-queue`, 256) overflows — closed at once without a goodbye
    // (docs/protocol.md §5) — or, when the server falls behind reading its
    // requests, more than `max_queued_frames` (1024) of them wait unhandled —
    // the frame over the bound gets RATE_LIMITED, then `rate_limited`.
    if let Some(at) = text.find("\"disconnected\"") {
        let tail: Vec<&str> = text.lines().rev().take(2).collect();
        assert_eq!(
            tail[0], r#"{"jsonrpc":"2.0","method":"disconnected","params":{"reason":"rate_limited"}}"#,
            "the only goodbye is `rate_limited`, last (at byte {at})"
        );
        let refused: Value = serde_json::from_str(tail[1]).unwrap();
        assert_eq!(error_code(&refused), RATE_LIMITED, "the frame over the bound gets RATE_LIMITED: {refused}");
    }
    assert!(median(&rtts) < TWO_TICKS, "other clients' pings were slow during the flood: {rtts:?}");
    // Still serving.
    probe.ping_rtt().await;
    let mut fresh = server.connect().await;
    fresh.ping_rtt().await;
}

/// If this failed, a client that sends half a request and stalls (a
/// slowloris) would stop the server serving others, get the half request
/// executed, or stay connected for ever by trickling more bytes of the
/// unfinished frame (those are not activity, docs/protocol.md §1): with
/// `--idle-timeout 500ms` it is closed with `disconnected {idle_timeout}`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_frame_stall_is_never_executed_and_closed_at_the_idle_timeout() {
    let _timing = TIMING.lock().await;
    let (_dir, server) = start_fresh(&["--idle-timeout", "500ms", "--login-timeout", "30s"]);
    let stop = Arc::new(AtomicBool::new(false));
    // Another client pings every 100 ms throughout (its pings keep it from idling).
    let prober = spawn_prober(&server, Duration::from_millis(100), Arc::clone(&stop));

    let connected = Instant::now();
    let mut staller = server.connect().await;
    staller.send_raw(br#"{"jsonrpc":"2.0","id":1,"method":"ping""#).await;
    // Trickle one more byte of the same unfinished frame every 50 ms until
    // something arrives: if these bytes counted as activity, the idle timer
    // would never fire and this would time out.
    let first = loop {
        if connected.elapsed() > Duration::from_secs(3) {
            panic!("the stalled connection was not closed within 3 s (idle timeout 500 ms)");
        }
        match staller.next_line_within(Duration::from_millis(50)).await {
            Some(Ok(line)) => break line,
            Some(Err(closed)) => panic!("closed ({closed:?}) without a `disconnected` message"),
            None => staller.send_raw(b" ").await,
        }
    };
    let closed_after = connected.elapsed();
    assert_eq!(
        first, r#"{"jsonrpc":"2.0","method":"disconnected","params":{"reason":"idle_timeout"}}"#,
        "the half frame is never answered; the first and only line is the idle goodbye"
    );
    staller.expect_eof().await;
    // The server reads its clock once per frame, so it may see the connect a
    // little early; 50 ms covers that on a loaded machine.
    assert!(closed_after >= Duration::from_millis(450), "closed after {closed_after:?}, before the idle timeout");
    assert!(
        closed_after < Duration::from_millis(1500),
        "closed only after {closed_after:?}: trickled bytes kept it alive"
    );

    stop.store(true, Ordering::Release);
    let rtts = timeout(Duration::from_secs(10), prober).await.expect("prober ends").unwrap();
    let max = rtts.iter().max().copied().unwrap();
    eprintln!(
        "half frame: closed after {:.1} ms; the other client's {} pings max {:.1} ms",
        ms(closed_after),
        rtts.len(),
        ms(max)
    );
    assert!(rtts.len() >= 5, "the other client was served only {} times meanwhile", rtts.len());
    assert!(max < TWO_TICKS, "the other client's ping took {max:?} while one stalled mid-frame");
}

// ---------------------------------------------------------------------------
// Login throttling (docs/protocol.md §6)
// ---------------------------------------------------------------------------

/// If this failed, an attacker could guess passwords at full speed, or the
/// throttle would lock out the wrong people: with the defaults (5 failures
/// in 5 minutes), the 6th password login from 127.0.0.1 gets `RATE_LIMITED`
/// even with the right password and on a fresh connection, while a client
/// from 127.0.0.2 still logs in and a token login from 127.0.0.1 still works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixth_failed_login_from_one_address_is_rate_limited_but_not_other_addresses_or_tokens() {
    let (_dir, server) = start_fresh(&[]);
    let mut keeper = connect_from(&server, "127.0.0.1").await;
    let keeper_token = keeper.login("netease2", "123").await;

    let mut attacker = connect_from(&server, "127.0.0.1").await;
    for attempt in 1..=5 {
        let code = attacker.call_err("login", json!({"account": "netease1", "password": "guess"})).await;
        assert_eq!(code, INVALID_CREDENTIALS, "failed attempt {attempt}");
    }
    let code = attacker.call_err("login", json!({"account": "netease1", "password": "123"})).await;
    assert_eq!(code, RATE_LIMITED, "the 6th password login from the address, right password");
    let code = attacker.call_err("login", json!({"account": "netease1", "password": "guess"})).await;
    assert_eq!(code, RATE_LIMITED, "and the 7th");
    // The connection is not closed for it, and other methods still work.
    attacker.ping_rtt().await;

    // Any connection from that address, any account.
    let mut same_address = connect_from(&server, "127.0.0.1").await;
    let code = same_address.call_err("login", json!({"account": "netease3", "password": "123"})).await;
    assert_eq!(code, RATE_LIMITED, "a new connection from the throttled address");

    // Token logins are not throttled.
    let result = keeper.call_ok("login", json!({"token": keeper_token})).await;
    assert_eq!(result, json!({"account": "netease2", "token": keeper_token}));

    // Another address is not affected, for the very account under attack.
    let mut elsewhere = connect_from(&server, "127.0.0.2").await;
    let token = elsewhere.login("netease1", "123").await;
    assert_ne!(token, keeper_token);
    // The session from 127.0.0.2 is live: netease1 has no user data yet (NO_USERDATA, not NOT_LOGGED_IN).
    assert_eq!(elsewhere.call_err("userdata_load", json!({"token": token})).await, 1004);
}

/// Pings `probe` every 50 ms, `count` times, each answer awaited at most
/// 1 s; returns the round trips, or the first one that timed out as `Err`.
async fn probe_pings(probe: &mut Conn, count: usize) -> Result<Vec<Duration>, String> {
    let mut pace = interval(Duration::from_millis(50));
    pace.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut rtts = Vec::new();
    for _ in 0..count {
        pace.tick().await;
        let start = Instant::now();
        let id = probe.request("ping", json!({})).await;
        match probe.next_line_within(Duration::from_secs(1)).await {
            Some(Ok(line)) => {
                let answer: Value = serde_json::from_str(&line).unwrap();
                assert_ping_result(&answer, &json!(id));
                rtts.push(start.elapsed());
            }
            Some(Err(closed)) => panic!("the probe was closed ({closed:?})"),
            None => return Err(format!("ping #{} not answered within 1 s (earlier: {rtts:?})", rtts.len() + 1)),
        }
    }
    Ok(rtts)
}

/// Writes `chunk` again and again on `wr` until `stop`, `cap` bytes, a write
/// error (the server closed) or a write blocked for 10 s; returns the bytes
/// written.
fn spawn_flood(
    mut wr: tokio::net::tcp::OwnedWriteHalf,
    chunk: Vec<u8>,
    cap: usize,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<usize> {
    tokio::spawn(async move {
        let mut written = 0usize;
        while !stop.load(Ordering::Acquire) && written < cap {
            match timeout(Duration::from_secs(10), wr.write_all(&chunk)).await {
                Ok(Ok(())) => written += chunk.len(),
                Ok(Err(_)) | Err(_) => break,
            }
        }
        written
    })
}

/// If this failed, a client streaming nothing but empty lines (which are
/// ignored and cost no rate token, docs/protocol.md §1) as fast as it can would
/// freeze the server for everyone or grow its memory with every byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blank_line_flood_neither_stalls_others_nor_grows_memory() {
    let _timing = TIMING.lock().await;
    let (_dir, server) = start_fresh(&[]);
    let mut probe = server.connect().await;
    probe.ping_rtt().await;
    let pid = server.pid();
    let baseline = rss_kib(pid);
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = spawn_rss_sampler(pid, Arc::clone(&stop));

    let stream = timeout(WAIT, TcpStream::connect(server.addr)).await.expect("connect in time").expect("connect");
    let (mut rd, wr) = stream.into_split();
    let flood = spawn_flood(wr, vec![b'\n'; 64 * 1024], 64 << 20, Arc::clone(&stop));
    let probed = probe_pings(&mut probe, 40).await;
    stop.store(true, Ordering::Release);
    let written = timeout(Duration::from_secs(20), flood).await.expect("flood ends").unwrap();
    let peak = sampler.await.unwrap();
    eprintln!("blank-line flood: {written} bytes written; RSS {baseline} -> peak {peak} KiB; probe: {probed:?}");
    let rtts = probed.unwrap_or_else(|e| panic!("the server stalled during a flood of empty lines: {e}"));
    let max = rtts.iter().max().copied().unwrap();
    // A stall shows as seconds; the client flooding at wire speed, its
    // reader in the server and the frame loop share two cores, so single
    // pings may wait a few scheduler slices.
    assert!(median(&rtts) < TWO_TICKS, "other client's pings during a flood of empty lines: {rtts:?}");
    assert!(max < STALL, "another client's ping took {max:?} during a flood of empty lines ({rtts:?})");
    assert!(
        peak.saturating_sub(baseline) < 32 * 1024,
        "RSS grew from {baseline} to {peak} KiB for {written} bytes of empty lines"
    );
    // Empty lines are never answered (and the flooder was not closed for them).
    let mut buf = [0u8; 64];
    assert!(
        timeout(Duration::from_millis(50), rd.read(&mut buf)).await.is_err(),
        "something was sent to the client of empty lines"
    );
}

/// If this failed, a client streaming tiny requests at wire speed (here
/// notifications, which are never answered) would freeze the server for
/// everyone while it reads them, instead of being closed by the rate limit
/// (`disconnected {rate_limited}` once more than `rate_burst` frames were
/// refused within a second) in about one frame.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notification_flood_at_wire_speed_is_closed_rate_limited_without_stalling_others() {
    let _timing = TIMING.lock().await;
    let (_dir, server) = start_fresh(&[]);
    let mut probe = server.connect().await;
    probe.ping_rtt().await;
    let pid = server.pid();
    let baseline = rss_kib(pid);
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = spawn_rss_sampler(pid, Arc::clone(&stop));

    let stream = timeout(WAIT, TcpStream::connect(server.addr)).await.expect("connect in time").expect("connect");
    let (rd, wr) = stream.into_split();
    let line = b"{\"jsonrpc\":\"2.0\",\"method\":\"ping\"}\n";
    let chunk: Vec<u8> = line.iter().copied().cycle().take(line.len() * 2000).collect();
    let started = Instant::now();
    let flood = spawn_flood(wr, chunk, 256 << 20, Arc::clone(&stop));
    let probing = tokio::spawn(async move { (probe_pings(&mut probe, 20).await, probe) });

    // The flooder is told `rate_limited` and closed; notifications are never answered.
    let (text, end) = read_until_closed(rd, Duration::from_secs(10)).await;
    let closed_after = started.elapsed();
    stop.store(true, Ordering::Release);
    let written = timeout(Duration::from_secs(20), flood).await.expect("flood ends").unwrap();
    let (probed, mut probe) = timeout(Duration::from_secs(30), probing).await.expect("probe ends").unwrap();
    let peak = sampler.await.unwrap();
    eprintln!(
        "notification flood: {written} bytes written, closed after {:.1} ms ({end:?}); RSS {baseline} -> peak {peak} KiB; probe: {probed:?}",
        ms(closed_after)
    );
    assert_eq!(
        text, "{\"jsonrpc\":\"2.0\",\"method\":\"disconnected\",\"params\":{\"reason\":\"rate_limited\"}}\n",
        "only the goodbye, then EOF"
    );
    assert!(end.is_some(), "the flooder was not closed within 10 s");
    let rtts = probed.unwrap_or_else(|e| panic!("the server stalled during a notification flood: {e}"));
    let max = rtts.iter().max().copied().unwrap();
    // A stall shows as seconds; the client flooding at wire speed, its
    // reader in the server and the frame loop share two cores, so single
    // pings may wait a few scheduler slices.
    assert!(median(&rtts) < TWO_TICKS, "other client's pings during a notification flood: {rtts:?}");
    assert!(max < STALL, "another client's ping took {max:?} during a notification flood ({rtts:?})");
    assert!(peak.saturating_sub(baseline) < 32 * 1024, "RSS grew from {baseline} to {peak} KiB during the flood");
    probe.ping_rtt().await;
}

/// Reads everything from `rd` until EOF or a reset, at most `limit`; returns
/// the text and how it ended (`None`: still open at the limit).
async fn read_until_closed(mut rd: tokio::net::tcp::OwnedReadHalf, limit: Duration) -> (String, Option<Closed>) {
    let deadline = Instant::now() + limit;
    let mut bytes = Vec::new();
    let end = loop {
        let mut buf = vec![0u8; 65_536];
        let left = deadline.saturating_duration_since(Instant::now());
        match timeout(left, rd.read(&mut buf)).await {
            Err(_) => break None,
            Ok(Ok(0)) => break Some(Closed::Eof),
            Ok(Ok(n)) => bytes.extend_from_slice(&buf[..n]),
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => break Some(Closed::Reset),
            Ok(Err(e)) => panic!("read error {e}"),
        }
    };
    (String::from_utf8_lossy(&bytes).into_owned(), end)
}

// ---------------------------------------------------------------------------
// Waiting frames (NetConfig::max_queued_frames), system level
// ---------------------------------------------------------------------------

/// If this failed, a client that sends thousands of requests behind one that
/// waits on the store (a password `login`, hashed on the store's threads),
/// with the rate limit raised out of the way, could make the server hold all
/// of them in memory: at most `max_queued_frames` (1024) frames may wait per
/// connection; the one over the bound gets `RATE_LIMITED` and the connection
/// is closed with `rate_limited`, after every earlier request was answered
/// in order. (In-memory transport, so that every frame is queued before the
/// first one is handled, deterministically.)
#[test]
fn frames_waiting_behind_a_store_request_are_bounded() {
    use portcullis::net::NetConfig;
    use portcullis::testing::{TestConfig, TestServer};

    let mut server = TestServer::with_config(TestConfig {
        net: NetConfig { rate_limit: 1e9, rate_burst: 1_000_000, outbound_queue: 8192, ..NetConfig::default() },
        ..TestConfig::default()
    });
    let max_queued = NetConfig::default().max_queued_frames;
    assert_eq!(max_queued, 1024);
    let mut client = server.connect();
    let mut write =
        String::from(r#"{"jsonrpc":"2.0","id":0,"method":"login","params":{"account":"netease1","password":"123"}}"#);
    write.push('\n');
    for id in 1..=5000 {
        write.push_str(&ping_line(id));
    }
    client.raw.send_bytes(write.as_bytes());
    let mut got = Vec::new();
    server.step_until(|_| {
        got.extend(client.take_all());
        client.is_closed()
    });
    got.extend(client.take_all());
    assert!(client.is_closed(), "the connection was not closed; {} messages", got.len());

    // The login, then pings 1..=1023 (1024 frames queued), then the 1025th
    // frame refused, then the goodbye; nothing after it.
    assert_eq!(got.len(), max_queued + 2, "first: {:?}, last: {:?}", got.first(), got.last());
    assert_eq!(got[0]["id"], 0);
    assert_eq!(got[0]["result"]["account"], "netease1", "{}", got[0]);
    for (i, answer) in got[1..max_queued].iter().enumerate() {
        assert_ping_result(answer, &json!(i + 1));
    }
    assert_eq!(got[max_queued]["id"], json!(max_queued));
    assert_eq!(error_code(&got[max_queued]), RATE_LIMITED, "{}", got[max_queued]);
    assert_eq!(
        got[max_queued + 1],
        json!({"jsonrpc": "2.0", "method": "disconnected", "params": {"reason": "rate_limited"}})
    );
}
