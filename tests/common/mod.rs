//! Shared helpers for the end-to-end tests: start the real `portcullis`
//! binary on a free loopback port with a temporary database, and talk to it
//! over real TCP sockets one line at a time (docs/protocol.md §1).
//!
//! Every wait is bounded ([`WAIT`] unless a test says otherwise), so a hang
//! fails the test instead of freezing it.
#![allow(dead_code, clippy::unwrap_used)]

pub mod browser;

use std::io::{BufRead, BufReader as StdBufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::time::timeout;

/// The longest an ordinary wait may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(5);

/// The flags every test server gets: loopback, port 0, cheap argon2.
const BASE_ARGS: &[&str] =
    &["serve", "--listen", "127.0.0.1:0", "--argon2-memory-kib", "8", "--argon2-iterations", "1", "--log", "info"];

/// A running `portcullis serve` child process.
pub struct Server {
    child: Child,
    /// The address from its `listening on` line.
    pub addr: SocketAddr,
    stderr: Arc<Mutex<Vec<String>>>,
    exited: Option<ExitStatus>,
    /// The stdout lines after the first, as they come.
    stdout: mpsc::Receiver<String>,
}

impl Server {
    /// Starts the binary on `db` with the base flags plus `extra`, and waits
    /// for its `listening on 127.0.0.1:PORT` line (docs/cli.md).
    pub fn start(db: &Path, extra: &[&str]) -> Server {
        Self::start_with_env(db, extra, &[])
    }

    /// [`Server::start`] with `PORTCULLIS_*` variables set for the child
    /// (every other `PORTCULLIS_*` variable of the test's environment removed).
    pub fn start_with_env(db: &Path, extra: &[&str], env: &[(&str, &str)]) -> Server {
        let mut command = Command::new(env!("CARGO_BIN_EXE_portcullis"));
        command.args(BASE_ARGS).arg("--db").arg(db).args(extra);
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("PORTCULLIS_") {
                command.env_remove(key);
            }
        }
        command.envs(env.iter().copied());
        command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = command.spawn().expect("spawn the portcullis binary");

        let stderr = Arc::new(Mutex::new(Vec::new()));
        let mut err_pipe = StdBufReader::new(child.stderr.take().unwrap());
        let sink = Arc::clone(&stderr);
        std::thread::spawn(move || {
            let mut line = String::new();
            while err_pipe.read_line(&mut line).unwrap_or(0) > 0 {
                sink.lock().unwrap().push(std::mem::take(&mut line));
            }
        });

        let mut out_pipe = StdBufReader::new(child.stdout.take().unwrap());
        let (first_tx, first_rx) = mpsc::channel();
        std::thread::spawn(move || {
            // Every line goes to the test, and the pipe is drained to its end
            // so the child never blocks on a full pipe.
            let mut line = String::new();
            while out_pipe.read_line(&mut line).unwrap_or(0) > 0 {
                let _ = first_tx.send(std::mem::take(&mut line));
            }
            let mut rest = Vec::new();
            let _ = out_pipe.read_to_end(&mut rest);
        });

        // Until the first line is read, `stdout` is an empty channel; then the lines' one.
        let (_, no_lines) = mpsc::channel();
        let placeholder = SocketAddr::from(([0, 0, 0, 0], 0));
        let mut server = Server { child, addr: placeholder, stderr, exited: None, stdout: no_lines };
        let line = match first_rx.recv_timeout(Duration::from_secs(20)) {
            Ok(line) => line,
            Err(e) => panic!("no `listening on` line within 20 s ({e}); stderr:\n{}", server.stderr_text()),
        };
        let addr = line
            .strip_suffix('\n')
            .and_then(|l| l.strip_prefix("listening on "))
            .and_then(|a| a.parse::<SocketAddr>().ok())
            .unwrap_or_else(|| panic!("bad first stdout line {line:?}; stderr:\n{}", server.stderr_text()));
        assert_eq!(addr.ip().to_string(), "127.0.0.1", "listening line {line:?}");
        assert_ne!(addr.port(), 0, "listening line must carry the real port: {line:?}");
        server.addr = addr;
        server.stdout = first_rx;
        server
    }

    /// The next stdout line after the first (without its `\n`), waiting up
    /// to `limit`; `None` if none came.
    pub fn next_stdout_line(&self, limit: Duration) -> Option<String> {
        self.stdout.recv_timeout(limit).ok().map(|l| l.trim_end_matches('\n').to_owned())
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the child wrote to stderr so far.
    pub fn stderr_text(&self) -> String {
        self.stderr.lock().unwrap().concat()
    }

    /// Opens a new TCP connection to the server.
    pub async fn connect(&self) -> Conn {
        let stream = timeout(WAIT, TcpStream::connect(self.addr)).await.expect("connect in time").expect("connect");
        Conn::new(stream)
    }

    /// SIGKILL (`kill -9`), then reaps the child.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let status = self.child.wait().expect("reap the killed child");
        self.exited = Some(status);
    }

    /// Sends SIGTERM to the child.
    pub fn terminate(&self) {
        let status = Command::new("kill").args(["-TERM", &self.pid().to_string()]).status().expect("run `kill -TERM`");
        assert!(status.success(), "kill -TERM failed: {status}");
    }

    /// Waits up to `limit` for the child to exit and returns its status.
    pub async fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                self.exited = Some(status);
                return status;
            }
            if Instant::now() >= deadline {
                panic!("the server did not exit within {limit:?}; stderr:\n{}", self.stderr_text());
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.exited.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            let text = self.stderr_text();
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(60)..];
            eprintln!("--- server {} stderr (last {} lines) ---\n{}", self.addr, tail.len(), tail.join("\n"));
        }
    }
}

/// A temporary directory holding `p.db`, plus a server started on it.
pub fn start_fresh(extra: &[&str]) -> (tempfile::TempDir, Server) {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("p.db"), extra);
    (dir, server)
}

/// Reads everything a closing connection still delivers, for at most
/// `limit`: the bytes, and how it ended (`None`: still open at the limit).
pub async fn drain_until_closed(stream: &mut TcpStream, limit: Duration) -> (Vec<u8>, Option<Closed>) {
    let mut bytes = Vec::new();
    let deadline = std::time::Instant::now() + limit;
    let closed = loop {
        let mut buf = vec![0u8; 65_536];
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match tokio::time::timeout(left, tokio::io::AsyncReadExt::read(stream, &mut buf)).await {
            Err(_) => break None,
            Ok(Ok(0)) => break Some(Closed::Eof),
            Ok(Ok(n)) => bytes.extend_from_slice(&buf[..n]),
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => break Some(Closed::Reset),
            Ok(Err(e)) => panic!("read error {e}"),
        }
    };
    (bytes, closed)
}

/// How a read ended when no line came.
#[derive(Debug)]
pub enum Closed {
    /// Orderly end of stream.
    Eof,
    /// The peer reset the connection.
    Reset,
}

/// One line-level client connection (raw bytes, no reference client).
pub struct Conn {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    partial: Vec<u8>,
    next_id: i64,
}

impl Conn {
    /// Wraps a connected stream.
    pub fn new(stream: TcpStream) -> Conn {
        stream.set_nodelay(true).expect("nodelay");
        let (read, write) = stream.into_split();
        Conn { reader: BufReader::new(read), writer: write, partial: Vec::new(), next_id: 1 }
    }

    /// Writes raw bytes in one `write_all`.
    pub async fn send_raw(&mut self, bytes: &[u8]) {
        timeout(WAIT, self.writer.write_all(bytes)).await.expect("write in time").expect("write");
    }

    /// Writes one message as a compact JSON line.
    pub async fn send(&mut self, message: &Value) {
        let line = format!("{message}\n");
        self.send_raw(line.as_bytes()).await;
    }

    /// The next line (without its `\n`), or how the stream ended, or `None`
    /// when nothing complete arrived within `limit`. Cancel-safe: a partial
    /// line is kept for the next call.
    pub async fn next_line_within(&mut self, limit: Duration) -> Option<Result<String, Closed>> {
        let read = timeout(limit, self.reader.read_until(b'\n', &mut self.partial)).await;
        match read {
            Err(_) => None,
            Ok(Ok(0)) => {
                assert!(
                    self.partial.is_empty(),
                    "stream ended inside a line: {:?}",
                    String::from_utf8_lossy(&self.partial)
                );
                Some(Err(Closed::Eof))
            }
            Ok(Ok(_)) => {
                let mut bytes = std::mem::take(&mut self.partial);
                if bytes.last() != Some(&b'\n') {
                    panic!("stream ended inside a line: {:?}", String::from_utf8_lossy(&bytes));
                }
                bytes.pop();
                Some(Ok(String::from_utf8(bytes).expect("server sends UTF-8")))
            }
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => Some(Err(Closed::Reset)),
            Ok(Err(e)) => panic!("read error: {e}"),
        }
    }

    /// The next raw line within `limit`; panics on timeout or close.
    pub async fn recv_line_within(&mut self, limit: Duration) -> String {
        match self.next_line_within(limit).await {
            Some(Ok(line)) => line,
            Some(Err(closed)) => panic!("expected a line, the connection closed ({closed:?})"),
            None => panic!("no line from the server within {limit:?}"),
        }
    }

    /// The next raw line within [`WAIT`].
    pub async fn recv_line(&mut self) -> String {
        self.recv_line_within(WAIT).await
    }

    /// The next message within [`WAIT`], checked to be a JSON-RPC 2.0 object.
    pub async fn recv(&mut self) -> Value {
        self.recv_within(WAIT).await
    }

    /// The next message within `limit`: a JSON-RPC 2.0 object, or a batch
    /// reply (an array of them).
    pub async fn recv_within(&mut self, limit: Duration) -> Value {
        let line = self.recv_line_within(limit).await;
        let message: Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("server sent invalid JSON ({e}): {line:?}"));
        let objects = match &message {
            Value::Array(entries) => entries.iter().collect(),
            other => vec![other],
        };
        for object in objects {
            assert_eq!(object["jsonrpc"], "2.0", "not JSON-RPC 2.0: {line}");
        }
        message
    }

    /// Asserts that the next line is exactly `expected`.
    pub async fn expect_line(&mut self, expected: &str) {
        let line = self.recv_line().await;
        assert_eq!(line, expected, "exact line from the server");
    }

    /// Asserts that the next message is the notification `method` with `params`.
    pub async fn expect_notification(&mut self, method: &str, params: Value) {
        let message = self.recv().await;
        assert_eq!(message, json!({"jsonrpc": "2.0", "method": method, "params": params}), "notification");
    }

    /// Asserts the exact `disconnected {"reason":REASON}` line (docs/protocol.md §5).
    pub async fn expect_disconnected(&mut self, reason: &str) {
        let expected = format!(r#"{{"jsonrpc":"2.0","method":"disconnected","params":{{"reason":"{reason}"}}}}"#);
        self.expect_line(&expected).await;
    }

    /// Asserts that the server closes the connection (no further line) within [`WAIT`].
    pub async fn expect_eof(&mut self) {
        self.expect_eof_within(WAIT).await;
    }

    /// Asserts that the server closes the connection within `limit`.
    pub async fn expect_eof_within(&mut self, limit: Duration) {
        match self.next_line_within(limit).await {
            Some(Err(Closed::Eof)) => {}
            Some(Err(Closed::Reset)) => eprintln!("note: connection reset instead of an orderly EOF"),
            Some(Ok(line)) => panic!("expected EOF, got a line: {line}"),
            None => panic!("expected EOF within {limit:?}, the connection stayed open"),
        }
    }

    /// Asserts that no line arrives within `limit` (and the connection stays open).
    pub async fn expect_silence(&mut self, limit: Duration) {
        if let Some(next) = self.next_line_within(limit).await {
            panic!("expected nothing within {limit:?}, got {next:?}");
        }
    }

    /// Sends a request with a fresh numeric id; returns the id.
    pub async fn request(&mut self, method: &str, params: Value) -> i64 {
        let id = self.next_id;
        self.next_id += 1;
        self.send(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})).await;
        id
    }

    /// The next message, which must be the response to `id`.
    pub async fn response(&mut self, id: i64) -> Value {
        let message = self.recv().await;
        assert_eq!(message["id"], json!(id), "expected the response to id {id}, got {message}");
        message
    }

    /// Sends a request and returns its response (which must be the next message).
    pub async fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.request(method, params).await;
        self.response(id).await
    }

    /// Calls and returns `result`; panics on an error response.
    pub async fn call_ok(&mut self, method: &str, params: Value) -> Value {
        let response = self.call(method, params).await;
        assert!(response.get("error").is_none(), "{method} failed: {response}");
        response.get("result").cloned().unwrap_or_else(|| panic!("{method}: no result in {response}"))
    }

    /// Calls and returns the error code; panics on success.
    pub async fn call_err(&mut self, method: &str, params: Value) -> i64 {
        let response = self.call(method, params).await;
        error_code(&response)
    }

    /// Password login; returns the token (checked to be 64 lowercase hex).
    pub async fn login(&mut self, account: &str, password: &str) -> String {
        let result = self.call_ok("login", json!({"account": account, "password": password})).await;
        token_of(&result)
    }

    /// `userdata_save` of `data`; returns `(version, saved_at)`.
    pub async fn save(&mut self, token: &str, data: Value) -> (u64, String) {
        let result = self.call_ok("userdata_save", json!({"token": token, "data": data})).await;
        save_result(&result)
    }

    /// `userdata_load`; returns the whole result.
    pub async fn load(&mut self, token: &str) -> Value {
        self.call_ok("userdata_load", json!({"token": token})).await
    }

    /// One ping round trip with a fresh id; returns its duration.
    pub async fn ping_rtt(&mut self) -> Duration {
        let start = Instant::now();
        let result = self.call_ok("ping", json!({})).await;
        let elapsed = start.elapsed();
        assert!(result["server_time_ms"].is_u64(), "ping result {result}");
        elapsed
    }
}

/// The error code of an error response; panics when it is not one.
pub fn error_code(response: &Value) -> i64 {
    response["error"]["code"].as_i64().unwrap_or_else(|| panic!("expected an error response, got {response}"))
}

/// The token of a `login` result, checked to be 64 lowercase hex characters.
pub fn token_of(result: &Value) -> String {
    let token = result["token"].as_str().unwrap_or_else(|| panic!("no token in {result}")).to_owned();
    assert_eq!(token.len(), 64, "token length: {token}");
    assert!(token.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)), "lowercase hex: {token}");
    token
}

/// `(version, saved_at)` of a `userdata_save` result, `saved_at` checked.
pub fn save_result(result: &Value) -> (u64, String) {
    let version = result["version"].as_u64().unwrap_or_else(|| panic!("no version in {result}"));
    let saved_at = result["saved_at"].as_str().unwrap_or_else(|| panic!("no saved_at in {result}")).to_owned();
    assert_saved_at(&saved_at);
    (version, saved_at)
}

/// Asserts `YYYY-MM-DDTHH:MM:SS.mmmZ` (docs/protocol.md §4) and that it is the
/// current UTC time (within a minute); returns it as Unix milliseconds.
pub fn assert_saved_at(saved_at: &str) -> i64 {
    let b = saved_at.as_bytes();
    let shape_ok = b.len() == 24
        && b.iter().enumerate().all(|(i, &c)| match i {
            4 | 7 => c == b'-',
            10 => c == b'T',
            13 | 16 => c == b':',
            19 => c == b'.',
            23 => c == b'Z',
            _ => c.is_ascii_digit(),
        });
    assert!(
        shape_ok,
        "saved_at {saved_at:?} does not match ^\\d{{4}}-\\d{{2}}-\\d{{2}}T\\d{{2}}:\\d{{2}}:\\d{{2}}\\.\\d{{3}}Z$"
    );
    let num = |r: std::ops::Range<usize>| saved_at[r].parse::<i64>().unwrap();
    let (y, mo, d) = (num(0..4), num(5..7), num(8..10));
    let (h, mi, s, ms) = (num(11..13), num(14..16), num(17..19), num(20..23));
    assert!((1..=12).contains(&mo) && (1..=31).contains(&d) && h < 24 && mi < 60 && s < 61, "saved_at {saved_at}");
    let unix_ms = (days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + s) * 1000 + ms;
    let now_ms = i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis()).unwrap();
    assert!((unix_ms - now_ms).abs() < 60_000, "saved_at {saved_at} is not the current UTC time (now {now_ms} ms)");
    unix_ms
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The median of some durations.
pub fn median(samples: &[Duration]) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    sorted[sorted.len() / 2]
}

/// Writes a `portcullis cert` pair (docs/cli.md) into `dir/certs`, valid for
/// the default names and `hosts`; returns the paths of `cert.pem` and `key.pem`.
pub fn cert_pair(dir: &Path, hosts: &[&str]) -> (PathBuf, PathBuf) {
    let certs = dir.join("certs");
    let mut command = Command::new(env!("CARGO_BIN_EXE_portcullis"));
    command.args(["cert", "--out"]).arg(&certs);
    for host in hosts {
        command.args(["--host", host]);
    }
    let made = command.output().expect("run portcullis cert");
    assert!(made.status.success(), "portcullis cert: {}", String::from_utf8_lossy(&made.stderr));
    (certs.join("cert.pem"), certs.join("key.pem"))
}
