//! End to end: the real `portcullis` binary runs `portcullis scenario`
//! (docs/cli.md) against its own in-process server and, with `--connect`, against
//! a separately started `portcullis serve`; `--takeover` likewise, checking
//! from the output that what the new client loads is the old client's
//! automatic save (docs/protocol.md §6). Over WebSocket too: a small
//! in-test bridge (tokio-tungstenite) turns `ws://` text messages into the
//! server's lines and back, so the client's WebSocket transport and
//! `--connect-second` meet the real server before it speaks WebSocket itself.
//!
//! Every wait is bounded; child processes are killed when dropped, so a hang
//! fails the test instead of stalling it. The bounds are generous: the tests
//! run in parallel, on debug builds, on slow machines.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

/// The binary under test.
const BIN: &str = env!("CARGO_BIN_EXE_portcullis");
/// The longest one `portcullis scenario` run may take.
const RUN_TIMEOUT: Duration = Duration::from_secs(180);
/// The longest `portcullis serve` may take to print its `listening on` line.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(60);
/// How long to wait for a finished child's output to be read.
const OUTPUT_TIMEOUT: Duration = Duration::from_secs(30);

/// A child process, killed and reaped when dropped.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Reads all of `source` on a thread; the text arrives on the receiver.
fn read_all(mut source: impl Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = source.read_to_end(&mut bytes);
        let _ = tx.send(String::from_utf8_lossy(&bytes).into_owned());
    });
    rx
}

/// What a finished `portcullis` run printed.
struct Run {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Run {
    /// Everything the run printed, for assertion messages.
    fn dump(&self) -> String {
        format!("status: {}\n--- stdout ---\n{}--- stderr ---\n{}", self.status, self.stdout, self.stderr)
    }

    /// Asserts exit status 0.
    fn assert_success(&self) {
        assert!(self.status.success(), "portcullis scenario failed\n{}", self.dump());
    }

    /// The numbers of the step (or check) lines ending in `ok`, and of those ending in `FAIL`.
    fn verdicts(&self) -> (Vec<usize>, Vec<usize>) {
        let mut ok = Vec::new();
        let mut failed = Vec::new();
        for line in self.stdout.lines() {
            let mut words = line.split_whitespace();
            let Some(number) = words.next().and_then(|word| word.parse::<usize>().ok()) else { continue };
            match words.next_back() {
                Some("ok") => ok.push(number),
                Some("FAIL") => failed.push(number),
                _ => {}
            }
        }
        (ok, failed)
    }

    /// Asserts the 13 step lines, numbered 1 to 13 in order, all `ok`.
    fn assert_13_steps_ok(&self) {
        let (ok, failed) = self.verdicts();
        assert!(failed.is_empty(), "steps {failed:?} failed\n{}", self.dump());
        assert_eq!(ok, (1..=13).collect::<Vec<_>>(), "expected 13 ok step lines\n{}", self.dump());
        assert!(self.stdout.lines().any(|line| line == "13/13 steps ok"), "no summary\n{}", self.dump());
    }

    /// The JSON at the end of the only line that starts with `prefix`.
    fn json_after(&self, prefix: &str) -> Value {
        let lines: Vec<&str> = self.stdout.lines().filter(|line| line.starts_with(prefix)).collect();
        assert_eq!(lines.len(), 1, "expected one line starting with {prefix:?}\n{}", self.dump());
        let json = lines[0].strip_prefix(prefix).unwrap_or_default().trim();
        serde_json::from_str(json).unwrap_or_else(|e| panic!("no JSON after {prefix:?} ({e})\n{}", self.dump()))
    }

    /// The index of the only line that starts with `prefix`.
    fn line_index(&self, prefix: &str) -> usize {
        let found: Vec<usize> =
            self.stdout.lines().enumerate().filter(|(_, line)| line.starts_with(prefix)).map(|(i, _)| i).collect();
        assert_eq!(found.len(), 1, "expected one line starting with {prefix:?}\n{}", self.dump());
        found[0]
    }

    /// Asserts the takeover's checks and, from the printed messages, that B
    /// loads A's automatic save and that each side saw its messages in order.
    fn assert_takeover_ok(&self) {
        self.assert_success();
        let (ok, failed) = self.verdicts();
        assert!(failed.is_empty(), "checks {failed:?} failed\n{}", self.dump());
        assert_eq!(ok, (1..=7).collect::<Vec<_>>(), "expected 7 ok check lines\n{}", self.dump());

        // The old client's automatic save is what the new client loads.
        let kick_data = self.json_after("A    kick save data set to ");
        let auto_save = self.json_after("A <- automatic save result ");
        let load = self.json_after("B <- userdata_load result ");
        assert_eq!(load["data"], kick_data, "B loads A's kick save data\n{}", self.dump());
        assert_eq!(load["version"], auto_save["version"], "B loads the automatic save's version\n{}", self.dump());
        assert_eq!(load["saved_at"], auto_save["saved_at"], "B loads the automatic save\n{}", self.dump());
        assert_eq!(auto_save["version"], 2, "the automatic save follows A's first save\n{}", self.dump());

        // Each side's messages, in order.
        let pending = self.line_index("B <- login_pending ");
        let b_login = self.line_index("B <- login result ");
        assert!(pending < b_login, "B: login_pending before the login result\n{}", self.dump());
        let kicked = self.line_index("A <- kicked ");
        let saved = self.line_index("A <- automatic save result ");
        let disconnected = self.line_index("A <- disconnected ");
        assert!(kicked < saved && saved < disconnected, "A: kicked, save result, disconnected\n{}", self.dump());
        assert!(self.stdout.contains(r#"A <- kicked {"reason":"duplicate_login""#), "{}", self.dump());
        assert!(self.stdout.contains(r#"A <- disconnected {"reason":"duplicate_login"}"#), "{}", self.dump());
        assert!(self.stdout.lines().any(|line| line == "7/7 checks ok"), "no summary\n{}", self.dump());
    }
}

/// Runs `portcullis ARGS` to the end (at most [`RUN_TIMEOUT`]).
fn run(args: &[&str]) -> Run {
    let child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start portcullis");
    let mut child = KillOnDrop(child);
    let stdout = read_all(child.0.stdout.take().expect("stdout is piped"));
    let stderr = read_all(child.0.stderr.take().expect("stderr is piped"));
    let deadline = Instant::now() + RUN_TIMEOUT;
    let status = loop {
        if let Some(status) = child.0.try_wait().expect("wait for portcullis") {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.0.kill();
            break None;
        }
        thread::sleep(Duration::from_millis(20));
    };
    let stdout = stdout.recv_timeout(OUTPUT_TIMEOUT).unwrap_or_else(|_| "(stdout not read in time)\n".into());
    let stderr = stderr.recv_timeout(OUTPUT_TIMEOUT).unwrap_or_else(|_| "(stderr not read in time)\n".into());
    match status {
        Some(status) => Run { status, stdout, stderr },
        None => panic!(
            "portcullis {args:?} did not finish within {RUN_TIMEOUT:?}\n--- stdout ---\n{stdout}--- stderr ---\n{stderr}"
        ),
    }
}

/// A `portcullis serve` child on a free port with a fresh database and a
/// cheap password hash; killed when dropped.
struct Server {
    /// `IP:PORT` from its `listening on` line.
    addr: String,
    /// Its log (stderr), for failure messages.
    log: Arc<Mutex<String>>,
    /// The process; dropped before the database directory.
    _child: KillOnDrop,
    /// The database directory.
    _dir: tempfile::TempDir,
}

impl Server {
    fn start() -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let db = dir.path().join("serve.db");
        let child = Command::new(BIN)
            .arg("serve")
            .args(["--listen", "127.0.0.1:0"])
            .arg("--db")
            .arg(&db)
            .args(["--argon2-memory-kib", "8", "--argon2-iterations", "1", "--log", "warn"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start portcullis serve");
        let mut child = KillOnDrop(child);
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.0.stderr.take().expect("stderr is piped");
        let sink = Arc::clone(&log);
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut log = sink.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                log.push_str(&line);
                log.push('\n');
            }
        });
        let first_line = first_line(child.0.stdout.take().expect("stdout is piped"));
        let line = match first_line.recv_timeout(LISTEN_TIMEOUT) {
            Ok(line) => line,
            Err(_) => {
                let status = child.0.try_wait();
                panic!("no `listening on` line within {LISTEN_TIMEOUT:?} (status {status:?})\n{}", read(&log));
            }
        };
        let addr = line
            .trim_end()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}\n{}", read(&log)))
            .to_owned();
        Self { addr, log, _child: child, _dir: dir }
    }
}

/// The text of a shared log.
fn read(log: &Mutex<String>) -> String {
    log.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
}

/// Reads the first line of `stdout` on a thread (then keeps draining it).
fn first_line(stdout: ChildStdout) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        if let Some(Ok(line)) = lines.next() {
            let _ = tx.send(line);
        }
        for _ in lines.map_while(Result::ok) {}
    });
    rx
}

#[test]
fn scenario_in_process_passes_all_13_steps() {
    let run = run(&["scenario"]);
    run.assert_success();
    run.assert_13_steps_ok();
    assert!(run.stdout.contains("in-process server on 127.0.0.1:"), "{}", run.dump());
}

#[test]
fn scenario_connect_passes_against_a_separate_server() {
    let server = Server::start();
    let run = run(&["scenario", "--connect", &server.addr]);
    assert!(run.status.success(), "{}\n--- server log ---\n{}", run.dump(), read(&server.log));
    run.assert_13_steps_ok();
    assert!(run.stdout.contains(&format!("server at {}", server.addr)), "{}", run.dump());
}

#[test]
fn verbose_scenario_shows_the_messages() {
    let run = run(&["scenario", "--verbose"]);
    run.assert_success();
    run.assert_13_steps_ok();
    assert!(run.stdout.contains(r#"      -> userdata_save {"data":{"#), "{}", run.dump());
    assert!(run.stdout.contains(r#"      -> register {"account":"sc"#), "{}", run.dump());
    assert!(run.stdout.contains(r#"<- error {"code":1001,"#), "{}", run.dump());
}

#[test]
fn takeover_in_process_new_client_loads_the_old_clients_automatic_save() {
    run(&["scenario", "--takeover"]).assert_takeover_ok();
}

#[test]
fn takeover_connect_passes_against_a_separate_server() {
    let server = Server::start();
    let run = run(&["scenario", "--takeover", "--connect", &server.addr]);
    if !run.status.success() {
        panic!("{}\n--- server log ---\n{}", run.dump(), read(&server.log));
    }
    run.assert_takeover_ok();
}

/// A WebSocket front for a line server (docs/protocol.md §1 and §1.1): each
/// text message from a client goes upstream as one line, each line from the
/// server comes back as one text message, and a close on either side closes
/// the other. Stops with its runtime when dropped.
struct WsBridge {
    /// `ws://127.0.0.1:PORT/`.
    url: String,
    /// Runs the bridge's tasks.
    _runtime: tokio::runtime::Runtime,
}

impl WsBridge {
    fn start(upstream: &str) -> Self {
        let runtime =
            tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).expect("bind");
        let url = format!("ws://{}/", listener.local_addr().expect("local addr"));
        let upstream = upstream.to_owned();
        runtime.spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                tokio::spawn(bridge(tcp, upstream.clone()));
            }
        });
        Self { url, _runtime: runtime }
    }
}

/// Carries one WebSocket connection to a new line connection to `upstream`.
async fn bridge(tcp: tokio::net::TcpStream, upstream: String) {
    let Ok(ws) = tokio_tungstenite::accept_async(tcp).await else { return };
    let Ok(server) = tokio::net::TcpStream::connect(&upstream).await else { return };
    let (mut to_client, mut from_client) = ws.split();
    let (read, mut to_server) = server.into_split();
    let mut from_server = tokio::io::BufReader::new(read).lines();
    let up = async {
        while let Some(Ok(message)) = from_client.next().await {
            if message.is_close() {
                break;
            }
            let line = match message {
                Message::Text(text) => format!("{}\n", text.as_str()),
                _ => continue,
            };
            if to_server.write_all(line.as_bytes()).await.is_err() {
                break;
            }
        }
        let _ = to_server.shutdown().await;
    };
    let down = async {
        while let Ok(Some(line)) = from_server.next_line().await {
            if to_client.send(Message::text(line)).await.is_err() {
                return;
            }
        }
        let _ = to_client.close().await;
    };
    tokio::join!(up, down);
}

#[test]
fn scenario_runs_over_websocket() {
    let server = Server::start();
    let bridge = WsBridge::start(&server.addr);
    let run = run(&["scenario", "--connect", &bridge.url]);
    assert!(run.status.success(), "{}\n--- server log ---\n{}", run.dump(), read(&server.log));
    run.assert_13_steps_ok();
    assert!(run.stdout.contains(&format!("server at {}", bridge.url)), "{}", run.dump());
}

/// If this fails, the takeover story depends on both clients using the same
/// transport: A logs in over TCP, B over WebSocket (issue 15).
#[test]
fn takeover_works_across_transports() {
    let server = Server::start();
    let bridge = WsBridge::start(&server.addr);
    let run = run(&["scenario", "--takeover", "--connect", &server.addr, "--connect-second", &bridge.url]);
    if !run.status.success() {
        panic!("{}\n--- server log ---\n{}", run.dump(), read(&server.log));
    }
    run.assert_takeover_ok();
    let first = run.stdout.lines().next().unwrap_or_default();
    let expected = format!("server at {}, second connection at {}", server.addr, bridge.url);
    assert!(first.ends_with(&expected), "{}", run.dump());
}

/// If this fails, `--connect-second` is ignored by the 13 steps: the
/// reconnect of step 8 must go there.
#[test]
fn steps_reconnect_to_the_second_address() {
    let server = Server::start();
    let bridge = WsBridge::start(&server.addr);
    let run = run(&["scenario", "--connect", &server.addr, "--connect-second", &bridge.url]);
    assert!(run.status.success(), "{}\n--- server log ---\n{}", run.dump(), read(&server.log));
    run.assert_13_steps_ok();
    let step8 = run.stdout.lines().find(|line| line.starts_with(" 8 ") || line.starts_with("8 "));
    assert!(step8.is_some_and(|line| line.contains(&format!("connect {}", bridge.url))), "{}", run.dump());
}

/// If this fails, a mistyped address or the wrong kind of port gives a
/// vague error, or none (docs/cli.md: exit status 2 when the scenario cannot run).
#[test]
fn bad_addresses_and_the_wrong_transport_are_clear_errors() {
    let run_http = run(&["scenario", "--connect", "http://127.0.0.1:7778/"]);
    assert_eq!(run_http.status.code(), Some(2), "{}", run_http.dump());
    assert!(run_http.stderr.contains(r#"unsupported scheme "http""#), "{}", run_http.dump());

    let no_connect = run(&["scenario", "--connect-second", "ws://127.0.0.1:7778/"]);
    assert_eq!(no_connect.status.code(), Some(2), "{}", no_connect.dump());
    assert!(no_connect.stderr.contains("--connect"), "{}", no_connect.dump());

    let server = Server::start();
    let tls = run(&["scenario", "--connect", &format!("tls://{}", server.addr)]);
    assert_eq!(tls.status.code(), Some(2), "{}", tls.dump());
    assert!(tls.stderr.contains("TLS") && tls.stderr.contains("is it a TLS port?"), "{}", tls.dump());

    let dir = tempfile::tempdir().expect("temporary directory");
    let missing = dir.path().join("missing.pem");
    let missing = missing.to_str().expect("UTF-8 path");
    let ca = run(&["scenario", "--connect", &format!("tls://{}", server.addr), "--ca", missing]);
    assert_eq!(ca.status.code(), Some(2), "{}", ca.dump());
    assert!(ca.stderr.contains("cannot read the CA file") && ca.stderr.contains("missing.pem"), "{}", ca.dump());
}
