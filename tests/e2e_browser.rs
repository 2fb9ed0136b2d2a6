//! The demo page in a real browser: headless Chromium loads it from a running
//! `portcullis serve --ws-listen`, runs the 13-step scenario and the takeover
//! story against the server that served it, and must end with the exact texts
//! `13/13 steps ok` and `7/7 checks ok` (docs/protocol.md §1.1, §1.2;
//! README "Try it").
//!
//! A user would see, if this failed: the page a game developer opens first
//! does not work in their browser. A screenshot of the finished page is kept
//! in `target/tmp/browser/` as an artifact.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::browser::Browser;
use common::{Server, cert_pair, start_fresh};

/// The longest both stories may take in the page.
const STORIES: Duration = Duration::from_secs(60);

/// The `listening on SCHEME://IP:PORT` line after the TCP one.
fn ws_line(server: &Server, scheme: &str) -> String {
    let line = server.next_stdout_line(Duration::from_secs(20)).expect("a second `listening on` line");
    let prefix = format!("listening on {scheme}://");
    line.strip_prefix(&prefix).unwrap_or_else(|| panic!("expected {prefix}IP:PORT, got {line:?}")).to_owned()
}

/// Opens `url?run=scenario,takeover`, waits for both stories to finish, keeps a
/// screenshot named `shot`, and checks both summaries.
async fn run_demo(url: &str, flags: &[&str], shot: &str) {
    let Some(mut browser) = Browser::open(&format!("{url}?run=scenario,takeover"), flags).await else { return };
    let describe = "JSON.stringify({scenario: document.body.dataset.scenario, takeover: document.body.dataset.takeover, \
                    steps: [...document.querySelectorAll('#scenario-table tr')].map(r => r.innerText), \
                    a: document.getElementById('scenario-summary')?.textContent, \
                    b: document.getElementById('takeover-summary')?.textContent})";
    browser.wait_for("document.body.dataset.takeover === 'done'", STORIES, describe).await;
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("browser").join(shot);
    browser.screenshot(&path).await;
    let scenario = browser.eval("document.getElementById('scenario-summary').textContent").await;
    let takeover = browser.eval("document.getElementById('takeover-summary').textContent").await;
    let rows = browser.eval("document.querySelectorAll('#scenario-table tbody tr').length").await;
    assert_eq!(scenario, "13/13 steps ok", "scenario summary; screenshot at {}", path.display());
    assert_eq!(takeover, "7/7 checks ok", "takeover summary; screenshot at {}", path.display());
    assert_eq!(rows, 13, "one line per step");
}

/// `http://…/` on the WebSocket port: both stories pass over `ws://`.
#[tokio::test]
async fn demo_page_runs_both_stories_over_ws() {
    let (_dir, server) = start_fresh(&["--ws-listen", "127.0.0.1:0"]);
    let addr = ws_line(&server, "ws");
    run_demo(&format!("http://{addr}/"), &[], "demo-ws.png").await;
}

/// `https://…/` with a `portcullis cert` pair: the page connects back over
/// `wss://` and both stories pass.
#[tokio::test]
async fn demo_page_runs_both_stories_over_wss() {
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = cert_pair(certs.path(), &[]);
    let (_dir, server) = start_fresh(&[
        "--ws-listen",
        "127.0.0.1:0",
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ]);
    let addr = ws_line(&server, "wss");
    run_demo(&format!("https://{addr}/"), &["--ignore-certificate-errors"], "demo-wss.png").await;
}
