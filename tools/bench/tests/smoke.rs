//! Smoke test of `portcullis-bench`: every workload runs for about a second
//! with two connections through the real binaries, exits 0 by itself and
//! prints one JSON report; `save` reports no lost acknowledged save. Speed is
//! not asserted. If this fails, `cargo run --release -p portcullis_bench --
//! <workload>` (and BENCHMARKS.md) is broken for users.
//!
//! The bench starts the `portcullis` binary it finds next to its own
//! (`target/<profile>/`): `cargo test --workspace` builds both before any
//! test runs. Run alone (`cargo test -p portcullis_bench`), build the server
//! first with `cargo build -p portcullis`.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Longest a one-second bench may take, server start-up and checks included.
const LIMIT: Duration = Duration::from_secs(180);

/// Checks that the `portcullis` binary is next to `portcullis-bench`, where
/// the bench looks for it by default (no `--server-bin` here, so that the
/// default is what is tested).
fn assert_server_built() {
    let bench = Path::new(env!("CARGO_BIN_EXE_portcullis-bench"));
    let server = bench.with_file_name(format!("portcullis{}", std::env::consts::EXE_SUFFIX));
    assert!(
        server.is_file(),
        "{} is missing: `cargo test --workspace` builds it, or run `cargo build -p portcullis` first",
        server.display()
    );
}

/// Runs `portcullis-bench <args>` with the smoke-test sizes and returns its JSON report.
fn bench(args: &[&str]) -> Value {
    assert_server_built();
    let mut child = Command::new(env!("CARGO_BIN_EXE_portcullis-bench"))
        .args(args)
        .args(["--duration", "1s", "--warmup", "200ms", "--connections", "2", "--metrics-every", "500ms", "--json"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the portcullis-bench binary starts"); // a test: a missing binary is the failure to report
    let mut stdout = child.stdout.take().expect("stdout is piped"); // piped just above
    let mut stderr = child.stderr.take().expect("stderr is piped"); // piped just above
    let out = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let err = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let deadline = Instant::now() + LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for the bench") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("bench {args:?} did not finish within {LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = out.join().expect("the stdout reader ends with the process");
    let err = err.join().expect("the stderr reader ends with the process");
    assert!(status.success(), "bench {args:?} exited with {status}; stderr:\n{err}\nstdout:\n{out}");
    let report: Value =
        serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("bench {args:?}: not JSON ({e}):\n{out}"));
    assert_eq!(report["workload"], Value::from(args[0]), "{report}");
    report
}

#[test]
fn echo_limit_runs() {
    let report = bench(&["echo-limit"]);
    assert!(report["results"]["echo_limit"]["requests"].as_u64().is_some_and(|n| n > 0), "{report}");
}

#[test]
fn ping_runs_and_compares_with_echo_limit() {
    let report = bench(&["ping", "--compare-echo", "--in-flight", "2"]);
    assert!(report["results"]["portcullis"]["requests"].as_u64().is_some_and(|n| n > 0), "{report}");
    assert!(report["results"]["ratio_requests_per_sec"].as_f64().is_some(), "{report}");
    // The load generator's CPU is reported beside the server's, for both servers.
    for server in ["portcullis", "echo_limit"] {
        assert!(report["results"][server]["client_cpu_cores"].as_f64().is_some(), "{server}: {report}");
        assert!(report["results"][server]["server_cpu_cores"].as_f64().is_some(), "{server}: {report}");
    }
}

#[test]
fn save_loses_no_acknowledged_save() {
    let report = bench(&["save"]);
    let results = &report["results"];
    assert_eq!(results["lost_acknowledged_saves"], Value::from(0), "{report}");
    for run in ["group_commit", "one_transaction_per_save"] {
        assert!(results[run]["acked_total"].as_u64().is_some_and(|n| n > 0), "{run}: {report}");
        assert_eq!(results[run]["lost_acknowledged_saves"], Value::from(0), "{run}: {report}");
        assert_eq!(results[run]["mismatched_accounts"], Value::from(0), "{run}: {report}");
        assert_eq!(results[run]["checked_after_crash"], Value::from(true), "{run}: {report}");
    }
}

#[test]
fn login_runs() {
    let report = bench(&["login"]);
    assert!(report["results"]["argon2_hash_us"].as_u64().is_some_and(|n| n > 0), "{report}");
    assert!(report["results"]["logins"].as_u64().is_some(), "{report}");
}

#[test]
fn hold_runs() {
    let report = bench(&["hold", "--compare-echo", "--settle", "200ms"]);
    assert_eq!(report["results"]["portcullis"]["held"], Value::from(2), "{report}");
    assert!(report["results"]["portcullis"]["server_rss_after_bytes"].as_u64().is_some(), "{report}");
}

/// `--ws`: the same ping load over WebSocket on the same server, and idle
/// connections held over WebSocket (issue 15's figures).
#[test]
fn ping_and_hold_run_over_websocket() {
    let report = bench(&["ping", "--ws", "--in-flight", "2"]);
    assert!(report["results"]["websocket"]["requests"].as_u64().is_some_and(|n| n > 0), "{report}");
    assert_eq!(report["results"]["websocket"]["errors"], Value::from(0), "{report}");
    let report = bench(&["hold", "--ws", "--settle", "200ms"]);
    assert_eq!(report["results"]["portcullis"]["held"], Value::from(2), "{report}");
}

#[test]
fn forward_runs() {
    let report = bench(&["forward"]);
    assert!(report["results"]["forwarded"]["requests"].as_u64().is_some_and(|n| n > 0), "{report}");
    assert_eq!(report["results"]["forwarded"]["errors"], Value::from(0), "{report}");
    assert!(report["results"]["hop_latency_p50_us"].as_u64().is_some(), "{report}");
}
