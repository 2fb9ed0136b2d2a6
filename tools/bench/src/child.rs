//! The servers a bench measures, run as child processes: `portcullis serve`
//! (the `portcullis` binary, [`ServeOptions::server`]) and the echo-limit
//! server (this executable, `echo-server`). Reads their address from
//! stdout, their frame metrics from stderr, and their CPU time and RSS from
//! `/proc`.
//!
//! ```text
//!  bench ──spawn──> portcullis serve --listen 127.0.0.1:0 ... --stop-on-stdin-eof
//!    ▲  stdout: "listening on 127.0.0.1:PORT"     (first line, within START_TIMEOUT)
//!    ├─ stderr: "... portcullis::metrics: frame metrics fps=... frame_p99_us=..." → FrameSample
//!    └─ /proc/PID/stat, /proc/PID/status → CPU time, RSS
//! ```
//!
//! The child's stdin is a pipe that the bench never writes: when the bench
//! dies, the child sees end of file and stops.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::BenchError;
use super::procfs::{self, Pid};
use super::stats::{FrameSample, FrameSummary};

/// How long a child may take to print `listening on ...`.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a child may take to exit after SIGTERM before it is killed.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// Lines of the child's stderr kept for error messages.
const TAIL_LINES: usize = 20;

/// How to start `portcullis serve` for a bench.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The database file.
    pub db: PathBuf,
    /// `--argon2-memory-kib 8 --argon2-iterations 1` (fast registration).
    pub fast_hashing: bool,
    /// `false`: `--no-group-commit`.
    pub group_commit: bool,
    /// `--metrics-every`.
    pub metrics_every: Duration,
    /// `--idle-timeout` (hold keeps idle connections longer than the default 60 s).
    pub idle_timeout: Option<Duration>,
    /// `--login-timeout` (ping's connections never log in).
    pub login_timeout: Option<Duration>,
    /// `--max-connections`.
    pub max_connections: Option<usize>,
    /// More arguments, appended last (`--serve-arg`).
    pub extra: Vec<String>,
    /// The `portcullis` binary (`--server-bin`, default [`default_server_bin`]).
    pub server: PathBuf,
}

/// `portcullis` next to this executable: `target/<profile>/portcullis` when
/// both were built by cargo (also from `target/<profile>/deps/`, where test
/// binaries live). Just `portcullis` (looked up on `PATH`) when this
/// executable's location is unknown.
pub fn default_server_bin() -> PathBuf {
    let name = format!("portcullis{}", std::env::consts::EXE_SUFFIX);
    let Ok(exe) = std::env::current_exe() else { return PathBuf::from(name) };
    let mut dirs = exe.ancestors().skip(1).take(2);
    let here = dirs.next().map(|dir| dir.join(&name));
    let above = dirs.next().map(|dir| dir.join(&name));
    match (here, above) {
        (Some(here), _) if here.is_file() => here,
        (_, Some(above)) if above.is_file() => above,
        (Some(here), _) => here,
        _ => PathBuf::from(name),
    }
}

impl ServeOptions {
    /// The defaults of a bench's server: database `db`, default argon2 cost,
    /// group commit on, metrics every `metrics_every`.
    pub fn new(db: impl Into<PathBuf>, metrics_every: Duration) -> Self {
        Self {
            db: db.into(),
            fast_hashing: false,
            group_commit: true,
            metrics_every,
            idle_timeout: None,
            login_timeout: None,
            max_connections: None,
            extra: Vec::new(),
            server: default_server_bin(),
        }
    }

    /// The command-line arguments after the executable.
    pub fn args(&self) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec![
            "serve".into(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--db".into(),
            self.db.clone().into(),
            // Out of the way of throughput workloads (said in every report).
            "--rate-limit".into(),
            "1000000".into(),
            "--rate-burst".into(),
            "1000000".into(),
            "--log".into(),
            "info".into(),
            "--metrics-every".into(),
            humantime::format_duration(self.metrics_every).to_string().into(),
            "--stop-on-stdin-eof".into(),
        ];
        if self.fast_hashing {
            args.extend(["--argon2-memory-kib", "8", "--argon2-iterations", "1"].map(OsString::from));
        }
        if !self.group_commit {
            args.push("--no-group-commit".into());
        }
        if let Some(idle) = self.idle_timeout {
            args.push("--idle-timeout".into());
            args.push(humantime::format_duration(idle).to_string().into());
        }
        if let Some(login) = self.login_timeout {
            args.push("--login-timeout".into());
            args.push(humantime::format_duration(login).to_string().into());
        }
        if let Some(max) = self.max_connections {
            args.push("--max-connections".into());
            args.push(max.to_string().into());
        }
        args.extend(self.extra.iter().map(OsString::from));
        args
    }
}

/// A server process started by the bench. Killed on drop if still running.
#[derive(Debug)]
pub struct ChildServer {
    /// What it is, for messages ("portcullis serve", "echo-limit server").
    name: String,
    /// The process.
    child: Child,
    /// Held open so that the child sees end of file only when we are gone or stop it.
    stdin: Option<ChildStdin>,
    /// Where it listens.
    addr: SocketAddr,
    /// Its WebSocket listener, when started with `--ws-listen`.
    ws_addr: Option<SocketAddr>,
    /// Frame-metrics lines read from its stderr so far.
    samples: Arc<Mutex<Vec<FrameSample>>>,
    /// The last lines of its stderr.
    tail: Arc<Mutex<VecDeque<String>>>,
}

impl ChildServer {
    /// Starts `exe args...` and waits (at most [`START_TIMEOUT`]) for its
    /// `listening on ADDR` line.
    pub fn spawn(name: &str, exe: &Path, args: &[OsString]) -> Result<Self, BenchError> {
        let mut child = Command::new(exe)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(BenchError::io(format!("cannot start {name} ({})", exe.display())))?;
        let stdin = child.stdin.take();
        let samples = Arc::new(Mutex::new(Vec::new()));
        let tail = Arc::new(Mutex::new(VecDeque::with_capacity(TAIL_LINES)));
        if let Some(stderr) = child.stderr.take() {
            let (samples, tail) = (Arc::clone(&samples), Arc::clone(&tail));
            std::thread::Builder::new()
                .name("bench-child-stderr".into())
                .spawn(move || read_stderr(stderr, &samples, &tail))
                .map_err(BenchError::io("cannot start a thread"))?;
        }
        let (tx, rx) = std::sync::mpsc::channel();
        if let Some(stdout) = child.stdout.take() {
            std::thread::Builder::new()
                .name("bench-child-stdout".into())
                .spawn(move || {
                    for line in BufReader::new(stdout).lines() {
                        let Ok(line) = line else { break };
                        // Later lines (none expected) are drained so the child never blocks.
                        let _ = tx.send(line);
                    }
                })
                .map_err(BenchError::io("cannot start a thread"))?;
        }
        let wants_ws = args.iter().any(|a| a == "--ws-listen");
        let mut server = Self {
            name: name.to_owned(),
            child,
            stdin,
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            ws_addr: None,
            samples,
            tail,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left.min(Duration::from_millis(100))) {
                Ok(line) => {
                    if let Some(addr) = line.strip_prefix("listening on ws://").and_then(|a| a.trim().parse().ok()) {
                        server.ws_addr = Some(addr);
                    } else if let Some(addr) = line.strip_prefix("listening on ").and_then(|a| a.trim().parse().ok()) {
                        server.addr = addr;
                    }
                    if server.addr.port() != 0 && (!wants_ws || server.ws_addr.is_some()) {
                        return Ok(server);
                    }
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    let status = server.child.wait().ok();
                    return Err(server.start_error(format!("it exited ({status:?})")));
                }
            }
            if Instant::now() >= deadline {
                return Err(server.start_error(format!("no `listening on` line within {START_TIMEOUT:?}")));
            }
        }
    }

    /// Starts `portcullis serve` (this executable) with `options`.
    pub fn serve(options: &ServeOptions) -> Result<Self, BenchError> {
        Self::spawn("portcullis serve", &options.server, &options.args())
    }

    /// Starts the echo-limit server (this executable, `echo-server`).
    pub fn echo() -> Result<Self, BenchError> {
        let exe = std::env::current_exe().map_err(BenchError::io("cannot find this executable"))?;
        let args = ["echo-server", "--listen", "127.0.0.1:0", "--stop-on-stdin-eof"].map(OsString::from);
        Self::spawn("echo-limit server", &exe, &args)
    }

    fn start_error(&self, detail: String) -> BenchError {
        BenchError::ChildStart { what: self.name.clone(), detail: format!("{detail}; stderr:\n{}", self.stderr_tail()) }
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its WebSocket listener (`ws://ADDR/`), when started with `--ws-listen`.
    pub fn ws_addr(&self) -> Option<SocketAddr> {
        self.ws_addr
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its CPU time so far (user + system, all threads).
    pub fn cpu_time(&self) -> Result<Duration, BenchError> {
        procfs::cpu_time(Pid::Id(self.pid()))
            .map_err(BenchError::io(format!("cannot read the CPU time of {}", self.name)))
    }

    /// Its resident memory now, in bytes.
    pub fn rss_bytes(&self) -> Result<u64, BenchError> {
        procfs::rss_bytes(Pid::Id(self.pid())).map_err(BenchError::io(format!("cannot read the RSS of {}", self.name)))
    }

    /// Every frame-metrics line read so far.
    pub fn frame_samples(&self) -> Vec<FrameSample> {
        self.samples.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// The frame-metrics windows of the phase `from..=to`.
    pub fn frame_summary(&self, from: Instant, to: Instant, every: Duration) -> Option<FrameSummary> {
        FrameSummary::of_phase(&self.frame_samples(), from, to, every)
    }

    /// Waits until a frame-metrics line arrives after `after` (at most `limit`).
    pub fn wait_frame_sample_after(&self, after: Instant, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if self.frame_samples().iter().any(|s| s.at > after) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// The last lines of its stderr.
    pub fn stderr_tail(&self) -> String {
        let tail = self.tail.lock().unwrap_or_else(PoisonError::into_inner);
        tail.iter().map(String::as_str).collect::<Vec<_>>().join("\n")
    }

    /// Graceful stop: SIGTERM (via `kill`), then SIGKILL after [`STOP_TIMEOUT`].
    pub fn stop(mut self) -> Result<ExitStatus, BenchError> {
        self.stdin.take();
        // Without a `kill` command, the closed stdin (--stop-on-stdin-eof) asks for the stop.
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return Ok(status),
                Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
                Ok(None) => {
                    let _ = self.child.kill();
                    return self.child.wait().map_err(BenchError::io(format!("cannot wait for {}", self.name)));
                }
                Err(e) => return Err(BenchError::io(format!("cannot wait for {}", self.name))(e)),
            }
        }
    }

    /// Crash: SIGKILL at once, and wait for the process to be gone.
    pub fn crash(mut self) -> Result<(), BenchError> {
        self.child.kill().map_err(BenchError::io(format!("cannot kill {}", self.name)))?;
        self.child.wait().map_err(BenchError::io(format!("cannot wait for {}", self.name)))?;
        Ok(())
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Reads the child's stderr to its end: frame-metrics lines become samples,
/// the last lines are kept for error messages.
fn read_stderr(stderr: std::process::ChildStderr, samples: &Mutex<Vec<FrameSample>>, tail: &Mutex<VecDeque<String>>) {
    for line in BufReader::new(stderr).lines() {
        let Ok(line) = line else { break };
        if let Some(sample) = FrameSample::parse(&line, Instant::now()) {
            samples.lock().unwrap_or_else(PoisonError::into_inner).push(sample);
        }
        let mut tail = tail.lock().unwrap_or_else(PoisonError::into_inner);
        if tail.len() == TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(line);
    }
}
