//! Headless Chromium for the browser-facing pages, driven over the Chrome
//! DevTools Protocol (CDP): open a page, evaluate JavaScript in it, wait for
//! a condition, click, and take a screenshot.
//!
//! Chromium is Debian's `chromium` package; `.ci/install-chromium` installs
//! it and `.ci/run` sets `PORTCULLIS_REQUIRE_BROWSER=1`, so CI fails when it
//! is missing. Elsewhere a test without Chromium prints that it was skipped.
#![allow(dead_code, clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use base64::Engine as _;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message;

/// The longest Chromium may take to start and open its first page.
const START: Duration = Duration::from_secs(60);
/// The longest one CDP command may take to answer.
const COMMAND: Duration = Duration::from_secs(30);

type Socket = tokio_tungstenite::WebSocketStream<TcpStream>;

/// One headless Chromium with one page, killed on drop.
pub struct Browser {
    child: Child,
    _profile: tempfile::TempDir,
    page: Socket,
    next_id: u64,
}

/// The Chromium binary, or `None` (after printing why the test is skipped)
/// when it is missing and `PORTCULLIS_REQUIRE_BROWSER` is not set.
pub fn chromium() -> Option<&'static str> {
    // Debian's `chromium` is a shell script that starts this binary; starting
    // it directly leaves no browser behind when the test kills its child.
    const REAL: &str = "/usr/lib/chromium/chromium";
    if std::path::Path::new(REAL).is_file() {
        return Some(REAL);
    }
    const BIN: &str = "chromium";
    let found = Command::new(BIN).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok();
    if found {
        return Some(BIN);
    }
    if std::env::var_os("PORTCULLIS_REQUIRE_BROWSER").is_some() {
        panic!("chromium is missing and PORTCULLIS_REQUIRE_BROWSER is set: run .ci/install-chromium");
    }
    eprintln!("skipped: no `chromium` on PATH (install it with .ci/install-chromium)");
    None
}

impl Browser {
    /// Starts headless Chromium on `url` (extra Chromium flags in `flags`)
    /// and attaches to its page; `None` when Chromium is missing (see
    /// [`chromium`]).
    pub async fn open(url: &str, flags: &[&str]) -> Option<Browser> {
        let bin = chromium()?;
        let profile = tempfile::tempdir().unwrap();
        let mut child = Command::new(bin)
            .args(["--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-dev-shm-usage"])
            .args(["--remote-debugging-port=0", "--window-size=1280,1000"])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args(flags)
            .arg(url)
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start chromium");
        // Chromium prints `DevTools listening on ws://127.0.0.1:PORT/...` on stderr.
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.strip_prefix("DevTools listening on ws://") {
                    let _ = tx.send(rest.split('/').next().unwrap_or_default().to_owned());
                }
            }
        });
        let host = tokio::task::spawn_blocking(move || rx.recv_timeout(START)).await.unwrap();
        let host = host.unwrap_or_else(|_| panic!("chromium printed no DevTools address within {START:?}"));
        let page_url = timeout(START, page_socket_url(&host)).await.expect("chromium lists its page");
        let stream = TcpStream::connect(host.as_str()).await.expect("connect to chromium's DevTools port");
        let (page, _) = tokio_tungstenite::client_async(page_url.as_str(), stream).await.expect("attach to the page");
        Some(Browser { child, _profile: profile, page, next_id: 1 })
    }

    /// Sends one CDP command and returns its `result`; panics on a CDP error
    /// or when no answer comes within [`COMMAND`].
    pub async fn command(&mut self, method: &str, params: Value) -> Value {
        let answer = self.command_answer(method, params).await;
        assert!(answer.get("error").is_none(), "{method}: {answer}");
        answer["result"].clone()
    }

    /// Sends one CDP command and returns the whole answer (`result` or
    /// `error`); panics when no answer comes within [`COMMAND`].
    async fn command_answer(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let request = json!({"id": id, "method": method, "params": params}).to_string();
        self.page.send(Message::text(request)).await.unwrap();
        timeout(COMMAND, async {
            while let Some(message) = self.page.next().await {
                let Ok(Message::Text(text)) = message else { continue };
                let value: Value = serde_json::from_str(&text).unwrap();
                if value["id"] == json!(id) {
                    return value;
                }
            }
            panic!("chromium closed the page socket");
        })
        .await
        .unwrap_or_else(|_| panic!("no answer to {method} within {COMMAND:?}"))
    }

    /// Evaluates `expression` in the page (awaiting a promise) and returns its
    /// value; panics when it throws.
    /// A page that is still loading (its execution context replaced while
    /// the command ran) is asked again, for up to [`START`].
    pub async fn eval(&mut self, expression: &str) -> Value {
        let params = json!({"expression": expression, "awaitPromise": true, "returnByValue": true});
        let deadline = tokio::time::Instant::now() + START;
        let result = loop {
            let answer = self.command_answer("Runtime.evaluate", params.clone()).await;
            let replaced = answer["error"]["message"].as_str().is_some_and(|m| m.contains("context"));
            if replaced && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
            assert!(answer.get("error").is_none(), "Runtime.evaluate {expression}: {answer}");
            break answer["result"].clone();
        };
        assert!(result.get("exceptionDetails").is_none(), "{expression}: {result}");
        result["result"]["value"].clone()
    }

    /// Waits, inside the page, until `condition` (a JavaScript expression) is
    /// truthy, checking after every DOM change and every 100 ms; panics after
    /// `limit` with `describe` (another expression) evaluated for the message.
    pub async fn wait_for(&mut self, condition: &str, limit: Duration, describe: &str) {
        let script = format!(
            "new Promise((resolve) => {{
               const check = () => {{ try {{ return !!({condition}); }} catch (_) {{ return false; }} }};
               if (check()) return resolve(true);
               const done = () => {{ if (check()) {{ observer.disconnect(); clearInterval(timer); resolve(true); }} }};
               const observer = new MutationObserver(done);
               observer.observe(document, {{ subtree: true, childList: true, attributes: true, characterData: true }});
               const timer = setInterval(done, 100);
               setTimeout(() => {{ observer.disconnect(); clearInterval(timer); resolve(false); }}, {ms});
             }})",
            ms = limit.as_millis()
        );
        if self.eval(&script).await != json!(true) {
            let state = self.eval(describe).await;
            panic!("not true within {limit:?}: {condition}; the page shows: {state}");
        }
    }

    /// Clicks the first element matching the CSS `selector`; panics when
    /// there is none.
    pub async fn click(&mut self, selector: &str) {
        let selector = serde_json::to_string(selector).unwrap();
        let clicked = self.eval(&format!("(() => {{ const e = document.querySelector({selector}); if (!e) return false; e.click(); return true; }})()")).await;
        assert_eq!(clicked, json!(true), "no element matches {selector}");
    }

    /// Loads `url` in the page (waits for the navigation to start; use
    /// [`wait_for`](Self::wait_for) for what the page must show).
    pub async fn navigate(&mut self, url: &str) {
        self.command("Page.navigate", json!({"url": url})).await;
    }

    /// A real mouse click (pressed, released) in the middle of the first
    /// element matching the CSS `selector`, as a person would click it.
    pub async fn mouse_click(&mut self, selector: &str) {
        let quoted = serde_json::to_string(selector).unwrap();
        let at = self
            .eval(&format!(
                "(() => {{ const e = document.querySelector({quoted}); if (!e) return null; \
                 const r = e.getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; }})()"
            ))
            .await;
        let (Some(x), Some(y)) = (at[0].as_f64(), at[1].as_f64()) else { panic!("no element matches {selector}") };
        for kind in ["mousePressed", "mouseReleased"] {
            let event = json!({"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1});
            self.command("Input.dispatchMouseEvent", event).await;
        }
    }

    /// Writes a PNG screenshot of the page to `path` (directories created).
    pub async fn screenshot(&mut self, path: &Path) {
        let shot =
            self.command("Page.captureScreenshot", json!({"format": "png", "captureBeyondViewport": true})).await;
        let png = base64::engine::general_purpose::STANDARD.decode(shot["data"].as_str().unwrap()).unwrap();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).unwrap();
        }
        std::fs::write(path, png).unwrap();
    }
}

impl Drop for Browser {
    /// Kills the browser's whole process group (its renderer, GPU and
    /// utility processes too), then reaps it.
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).stderr(Stdio::null()).status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The DevTools WebSocket URL of the first page target at `host`
/// (`GET /json/list`), retried until the page is listed.
async fn page_socket_url(host: &str) -> String {
    loop {
        if let Some(url) = list_pages(host).await {
            return url;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One `GET /json/list`; the first page's `webSocketDebuggerUrl`, if any.
async fn list_pages(host: &str) -> Option<String> {
    let mut stream = TcpStream::connect(host).await.ok()?;
    let request = format!("GET /json/list HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    // Chromium keeps the connection open: read the headers, then Content-Length bytes.
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 4096];
    let (head_len, body_len) = loop {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        bytes.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&bytes);
        if let Some((head, _)) = text.split_once("\r\n\r\n") {
            let length = head.lines().find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("content-length").then(|| value.trim().parse::<usize>().ok())?
            })?;
            break (head.len() + 4, length);
        }
    };
    while bytes.len() < head_len + body_len {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        bytes.extend_from_slice(&chunk[..n]);
    }
    let json = std::str::from_utf8(&bytes[head_len..head_len + body_len]).ok()?;
    let targets: Value = serde_json::from_str(json).ok()?;
    targets.as_array()?.iter().find(|t| t["type"] == "page")?["webSocketDebuggerUrl"].as_str().map(str::to_owned)
}
