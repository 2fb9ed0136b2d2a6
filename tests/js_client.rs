//! The JavaScript client's tests (clients/js/test, Node's built-in test
//! runner) run from `cargo test`, so CI runs them: the client against an
//! in-memory fake server, the demo page's script, and the client against this
//! build's `portcullis serve` (docs/protocol.md §1.1, §7; clients/js/README.md).
//!
//! A user would see, if this failed: the browser demo or a JavaScript game
//! client that cannot log in, loses its save on a kick, or hangs on a lost
//! answer. Skipped, with a message, when `node` is missing or has no WebSocket.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// The server binary the real-server tests start.
const BIN: &str = env!("CARGO_BIN_EXE_portcullis");
/// The longest the whole Node run may take.
const RUN_TIMEOUT: Duration = Duration::from_secs(300);
/// The longest `node --version` and the WebSocket probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(30);

/// What a finished child printed.
struct Output {
    /// Whether it exited with status 0.
    success: bool,
    /// Its stdout.
    stdout: String,
    /// Its stderr.
    stderr: String,
}

/// Runs `command` to the end, killing it after `timeout`; `None` when it
/// cannot be started or does not finish in time.
fn run(mut command: Command, timeout: Duration) -> Option<Output> {
    let mut child = command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().ok()?;
    let read = |mut source: Box<dyn Read + Send>| {
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = source.read_to_end(&mut bytes);
            let _ = tx.send(String::from_utf8_lossy(&bytes).into_owned());
        });
        rx
    };
    let stdout = read(Box::new(child.stdout.take()?));
    let stderr = read(Box::new(child.stderr.take()?));
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(50)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                let printed = stdout.recv_timeout(Duration::from_secs(5)).unwrap_or_default();
                panic!("{command:?} did not finish within {timeout:?}; it printed:\n{printed}");
            }
        }
    };
    let stdout = stdout.recv_timeout(Duration::from_secs(30)).unwrap_or_default();
    let stderr = stderr.recv_timeout(Duration::from_secs(30)).unwrap_or_default();
    Some(Output { success: status.success(), stdout, stderr })
}

/// The flags that give `node` a global `WebSocket` (none on Node >= 22,
/// `--experimental-websocket` on Node 20), or why it has none.
fn websocket_flags() -> Result<Vec<&'static str>, String> {
    let mut version = Command::new("node");
    version.arg("--version");
    let Some(version) = run(version, PROBE_TIMEOUT).filter(|output| output.success) else {
        return Err("`node` is not installed (Node >= 22, or 20 with --experimental-websocket)".to_owned());
    };
    for flags in [vec![], vec!["--experimental-websocket"]] {
        let mut probe = Command::new("node");
        probe.args(&flags).args(["-e", "process.stdout.write(typeof WebSocket)"]);
        if run(probe, PROBE_TIMEOUT).is_some_and(|output| output.success && output.stdout == "function") {
            return Ok(flags);
        }
    }
    Err(format!("node {} has no WebSocket, not even with --experimental-websocket", version.stdout.trim()))
}

/// The test files of clients/js/test, sorted.
fn test_files(dir: &Path) -> Vec<PathBuf> {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()));
    let mut files: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.to_string_lossy().ends_with(".test.js"))
        .collect();
    files.sort();
    files
}

/// Every test of clients/js/test passes with Node's test runner.
#[test]
fn javascript_client_tests_pass() {
    let flags = match websocket_flags() {
        Ok(flags) => flags,
        Err(reason) => {
            eprintln!("skipped: the JavaScript client's tests need Node: {reason}");
            return;
        }
    };
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("clients").join("js");
    let files = test_files(&dir.join("test"));
    assert!(!files.is_empty(), "no *.test.js files in {}", dir.join("test").display());
    let mut node = Command::new("node");
    node.current_dir(&dir).args(&flags).arg("--test").args(&files).env("PORTCULLIS_BIN", BIN);
    let output = run(node, RUN_TIMEOUT).expect("node starts");
    let dump = format!("--- stdout ---\n{}--- stderr ---\n{}", output.stdout, output.stderr);
    assert!(output.success, "the JavaScript client's tests failed\n{dump}");
    // What was skipped, and why (e.g. a server without its WebSocket listener yet).
    for line in output.stdout.lines().filter(|line| line.contains("# SKIP")) {
        eprintln!("{}", line.trim());
    }
    assert!(output.stdout.contains("# fail 0"), "no `# fail 0` in the summary\n{dump}");
}
