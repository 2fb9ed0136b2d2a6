//! End to end: the real `portcullis` binary runs `portcullis scenario`
//! (docs/cli.md) against its own in-process server and, with `--connect`, against
//! a separately started `portcullis serve`; `--takeover` likewise, checking
//! from the output that what the new client loads is the old client's
//! automatic save (docs/protocol.md §6). Over every transport the server
//! speaks (docs/protocol.md §1.1, §1.2): `ws://`, `wss://` and TLS lines, and a
//! takeover of a TCP session by a WebSocket login.
//!
//! Every wait is bounded; child processes are killed when dropped, so a hang
//! fails the test instead of stalling it. The bounds are generous: the tests
//! run in parallel, on debug builds, on slow machines.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

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
    /// `ws://IP:PORT/` (or `wss://`) from its second `listening on` line,
    /// when started with `--ws-listen`.
    ws_url: Option<String>,
    /// Its log (stderr), for failure messages.
    log: Arc<Mutex<String>>,
    /// The process; dropped before the database directory.
    _child: KillOnDrop,
    /// The database directory.
    _dir: tempfile::TempDir,
}

impl Server {
    fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts with `extra` flags; with `--ws-listen` among them, also waits
    /// for the WebSocket `listening on` line.
    fn start_with(extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let db = dir.path().join("serve.db");
        let child = Command::new(BIN)
            .arg("serve")
            .args(["--listen", "127.0.0.1:0"])
            .arg("--db")
            .arg(&db)
            .args(["--argon2-memory-kib", "8", "--argon2-iterations", "1", "--log", "warn"])
            .args(extra)
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
        let lines = stdout_lines(child.0.stdout.take().expect("stdout is piped"));
        let line = match lines.recv_timeout(LISTEN_TIMEOUT) {
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
        let ws_url = extra.contains(&"--ws-listen").then(|| {
            let line = lines.recv_timeout(LISTEN_TIMEOUT).unwrap_or_else(|_| panic!("no ws line\n{}", read(&log)));
            let url = line.trim_end().strip_prefix("listening on ").unwrap_or_else(|| panic!("unexpected {line:?}"));
            assert!(url.starts_with("ws://") || url.starts_with("wss://"), "{line:?}");
            format!("{url}/")
        });
        Self { addr, ws_url, log, _child: child, _dir: dir }
    }

    /// The WebSocket URL; panics when started without `--ws-listen`.
    fn ws(&self) -> &str {
        self.ws_url.as_deref().expect("started with --ws-listen")
    }
}

/// The text of a shared log.
fn read(log: &Mutex<String>) -> String {
    log.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
}

/// Reads the lines of `stdout` on a thread, as they come.
fn stdout_lines(stdout: ChildStdout) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
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

#[test]
fn scenario_runs_over_websocket() {
    let server = Server::start_with(&["--ws-listen", "127.0.0.1:0"]);
    let run = run(&["scenario", "--connect", server.ws()]);
    assert!(run.status.success(), "{}\n--- server log ---\n{}", run.dump(), read(&server.log));
    run.assert_13_steps_ok();
    assert!(run.stdout.contains(&format!("server at {}", server.ws())), "{}", run.dump());
}

/// If this fails, a client cannot run the game's flow over TLS: the 13 steps
/// over `wss://` and over TLS lines (`tls://`), trusting a `portcullis cert`
/// pair given with `--ca`.
#[test]
fn scenario_runs_over_wss_and_tls_lines() {
    let certs = tempfile::tempdir().expect("temporary directory");
    let (cert, key) = common::cert_pair(certs.path(), &[]);
    let (cert, key) = (cert.to_str().expect("UTF-8 path"), key.to_str().expect("UTF-8 path"));
    let server = Server::start_with(&["--ws-listen", "127.0.0.1:0", "--tls-cert", cert, "--tls-key", key]);
    assert!(server.ws().starts_with("wss://"), "{}", server.ws());
    let wss = run(&["scenario", "--connect", server.ws(), "--ca", cert]);
    assert!(wss.status.success(), "{}\n--- server log ---\n{}", wss.dump(), read(&server.log));
    wss.assert_13_steps_ok();
    let tls_url = format!("tls://{}", server.addr);
    let tls = run(&["scenario", "--connect", &tls_url, "--ca", cert]);
    assert!(tls.status.success(), "{}\n--- server log ---\n{}", tls.dump(), read(&server.log));
    tls.assert_13_steps_ok();
    assert!(tls.stdout.contains(&format!("server at {tls_url}")), "{}", tls.dump());
}

/// If this fails, the takeover story depends on both clients using the same
/// transport: A logs in over TCP, B over WebSocket (issue 15).
#[test]
fn takeover_works_across_transports() {
    let server = Server::start_with(&["--ws-listen", "127.0.0.1:0"]);
    let run = run(&["scenario", "--takeover", "--connect", &server.addr, "--connect-second", server.ws()]);
    if !run.status.success() {
        panic!("{}\n--- server log ---\n{}", run.dump(), read(&server.log));
    }
    run.assert_takeover_ok();
    let first = run.stdout.lines().next().unwrap_or_default();
    let expected = format!("server at {}, second connection at {}", server.addr, server.ws());
    assert!(first.ends_with(&expected), "{}", run.dump());
}

/// If this fails, `--connect-second` is ignored by the 13 steps: the
/// reconnect of step 8 must go there.
#[test]
fn steps_reconnect_to_the_second_address() {
    let server = Server::start_with(&["--ws-listen", "127.0.0.1:0"]);
    let run = run(&["scenario", "--connect", &server.addr, "--connect-second", server.ws()]);
    assert!(run.status.success(), "{}\n--- server log ---\n{}", run.dump(), read(&server.log));
    run.assert_13_steps_ok();
    let step8 = run.stdout.lines().find(|line| line.starts_with(" 8 ") || line.starts_with("8 "));
    assert!(step8.is_some_and(|line| line.contains(&format!("connect {}", server.ws()))), "{}", run.dump());
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
