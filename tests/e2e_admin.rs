//! End-to-end tests of the admin listener (docs/cli.md "Admin",
//! docs/operations.md) against the real binary: every path, status code and
//! auth rule, each metric moving when its event happens, `portcullis admin`,
//! the log flags, and the operator console in headless Chromium.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream as StdTcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::browser::Browser;
use common::{Conn, Server, WAIT, start_fresh};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message;

const TOKEN: &str = "s3cret-token";

/// A server with an admin listener on a free loopback port and [`TOKEN`];
/// returns the admin address (the last stdout line).
fn admin_server(extra: &[&str]) -> (tempfile::TempDir, Server, SocketAddr) {
    let mut args = vec!["--admin-listen", "127.0.0.1:0", "--admin-token", TOKEN];
    args.extend_from_slice(extra);
    let (dir, server) = start_fresh(&args);
    let admin = admin_addr(&server);
    (dir, server, admin)
}

fn admin_addr(server: &Server) -> SocketAddr {
    let line = server.next_stdout_line(WAIT).expect("a `listening on http://` line");
    line.strip_prefix("listening on http://").and_then(|a| a.parse().ok()).unwrap_or_else(|| panic!("line {line:?}"))
}

/// One HTTP/1.1 exchange (`Connection: close`): status, headers (lower-case names), body.
struct Http {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Http {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

fn http(addr: SocketAddr, method: &str, path: &str, token: Option<&str>, body: Option<&str>) -> Http {
    let mut stream = StdTcpStream::connect(addr).expect("connect to the admin listener");
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(token) = token {
        request.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    let body = body.unwrap_or("");
    if !body.is_empty() || method == "POST" {
        request.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n", body.len()));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).unwrap();
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let n = stream.read(&mut buf).expect("read the answer");
        raw.extend_from_slice(&buf[..n]);
        if n == 0 || complete(&raw) {
            break;
        }
    }
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no HTTP head in {text:?}"));
    let mut lines = head.lines();
    let status = lines.next().and_then(|l| l.split(' ').nth(1)).and_then(|s| s.parse().ok()).unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let chunked = headers.iter().any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked { dechunk(rest) } else { rest.to_owned() };
    Http { status, headers, body }
}

/// Whether `raw` holds a whole answer with a `Content-Length` (servers that keep the connection open).
fn complete(raw: &[u8]) -> bool {
    let text = String::from_utf8_lossy(raw);
    let Some((head, body)) = text.split_once("\r\n\r\n") else { return false };
    head.lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(n, _)| n.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse::<usize>().ok())
        .is_some_and(|len| body.len() >= len)
}

fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&after[..n]);
        rest = &after[n + 2..];
    }
    out
}

fn get(addr: SocketAddr, path: &str) -> Http {
    http(addr, "GET", path, Some(TOKEN), None)
}

fn post(addr: SocketAddr, path: &str, body: &str) -> Http {
    http(addr, "POST", path, Some(TOKEN), Some(body))
}

/// The value of the series `name{labels}` in a Prometheus text page (0 when absent).
fn metric(page: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    for line in page.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else { continue };
        let (series_name, series_labels) = match series.split_once('{') {
            Some((n, l)) => (n, l.trim_end_matches('}')),
            None => (series, ""),
        };
        if series_name == name && labels.iter().all(|(k, v)| series_labels.contains(&format!("{k}=\"{v}\""))) {
            return value.parse().unwrap_or(0.0);
        }
    }
    0.0
}

fn scrape(addr: SocketAddr) -> String {
    let answer = get(addr, "/metrics");
    assert_eq!(answer.status, 200, "{}", answer.body);
    answer.body
}

/// Waits until `f(scrape)` holds, scraping again every 20 ms, for at most [`WAIT`].
fn wait_metric(addr: SocketAddr, what: &str, f: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let page = scrape(addr);
        if f(&page) {
            return page;
        }
        assert!(Instant::now() < deadline, "metric never moved: {what}\n{page}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

async fn logged_in(server: &Server, account: &str) -> (Conn, String) {
    let mut conn = server.connect().await;
    let token = conn.login(account, "123").await;
    (conn, token)
}

#[tokio::test]
async fn health_checks_need_no_token_and_everything_else_does() {
    let (_dir, _server, admin) = admin_server(&[]);
    let health = http(admin, "GET", "/healthz", None, None);
    assert_eq!((health.status, health.body.as_str()), (200, "ok"));
    let ready = http(admin, "GET", "/readyz", None, None);
    assert_eq!((ready.status, ready.body.as_str()), (200, "ready"));

    let guarded = [
        ("GET", "/metrics"),
        ("GET", "/api/sessions"),
        ("POST", "/api/kick"),
        ("POST", "/api/broadcast"),
        ("POST", "/api/shutdown"),
        ("GET", "/"),
    ];
    for (method, path) in guarded {
        for token in [None, Some("wrong"), Some("s3cret-token-but-longer")] {
            let answer = http(admin, method, path, token, Some("{}"));
            assert_eq!(answer.status, 401, "{method} {path} with {token:?}");
            assert!(answer.json()["error"].is_string(), "{method} {path}: {}", answer.body);
        }
    }
    assert_eq!(get(admin, "/metrics").status, 200);
    assert_eq!(get(admin, "/api/sessions").status, 200);
    let page = get(admin, "/");
    assert_eq!(page.status, 200);
    assert!(page.header("content-type").is_some_and(|t| t.starts_with("text/html")));
    assert!(page.body.contains("<canvas"), "the console has its frame-time chart");
    // A browser opens the console with the token in the query.
    assert_eq!(http(admin, "GET", &format!("/?token={TOKEN}"), None, None).status, 200);
    assert_eq!(http(admin, "GET", "/?token=wrong", None, None).status, 401);
    // ... but the API does not take it there.
    assert_eq!(http(admin, "GET", &format!("/api/sessions?token={TOKEN}"), None, None).status, 401);
}

#[tokio::test]
async fn unknown_paths_are_404_and_bad_bodies_400() {
    let (_dir, _server, admin) = admin_server(&[]);
    assert_eq!(get(admin, "/nope").status, 404);
    assert_eq!(http(admin, "GET", "/nope", None, None).status, 404);
    assert_eq!(get(admin, "/api/kick").status, 405);
    for (path, body) in [
        ("/api/kick", "not json"),
        ("/api/kick", "{}"),
        ("/api/kick", r#"{"account":"a","conn":1}"#),
        ("/api/kick", r#"{"conn":"x"}"#),
        ("/api/broadcast", "{"),
        ("/api/broadcast", r#"{"method":"news"}"#),
        ("/api/broadcast", r#"{"method":"news","params":[1]}"#),
        ("/api/broadcast", r#"{"method":"kicked","params":{}}"#),
        ("/api/broadcast", r#"{"method":"disconnected","params":{}}"#),
        ("/api/broadcast", r#"{"method":"login_pending","params":{}}"#),
    ] {
        let answer = post(admin, path, body);
        assert_eq!(answer.status, 400, "{path} {body}: {}", answer.body);
        assert!(answer.json()["error"].is_string(), "{path} {body}: {}", answer.body);
    }
}

#[tokio::test]
async fn sessions_lists_every_connection_with_its_state_and_transport() {
    let (_dir, server) = start_fresh(&["--ws-listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"]);
    // docs/cli.md: the ws line, then the http line, last.
    let ws_line = server.next_stdout_line(WAIT).unwrap();
    let ws_addr: SocketAddr = ws_line.strip_prefix("listening on ws://").unwrap().parse().unwrap();
    let admin = admin_addr(&server);
    assert_eq!(server.next_stdout_line(Duration::from_millis(300)), None, "nothing after the http line");

    let (mut alice, _) = logged_in(&server, "netease1").await;
    let stranger = server.connect().await;
    let stream = tokio::net::TcpStream::connect(ws_addr).await.unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async(format!("ws://{ws_addr}/"), stream).await.unwrap();
    ws.send(Message::text(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#)).await.unwrap();
    let _pong = timeout(WAIT, ws.next()).await.unwrap();

    // Loopback without a token: no token needed.
    let list = http(admin, "GET", "/api/sessions", None, None);
    assert_eq!(list.status, 200);
    assert!(list.header("content-type").is_some_and(|t| t.starts_with("application/json")));
    let list = list.json();
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 3, "{list:?}");
    let by_state = |state: &str| {
        list.iter().find(|s| s["state"] == state).cloned().unwrap_or_else(|| panic!("{state} in {list:?}"))
    };
    let logged = by_state("logged_in");
    assert_eq!(logged["account"], "netease1");
    assert_eq!(logged["transport"], "tcp");
    assert!(logged["peer"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert!(logged["conn"].is_u64() && logged["connected_ms"].is_u64());
    let waiting: Vec<&Value> = list.iter().filter(|s| s["state"] == "awaiting_login").collect();
    assert_eq!(waiting.len(), 2);
    assert!(waiting.iter().all(|s| s["account"].is_null()));
    assert_eq!(waiting.iter().filter(|s| s["transport"] == "ws").count(), 1);
    for entry in list {
        let keys: Vec<&String> = entry.as_object().unwrap().keys().collect();
        assert_eq!(keys.len(), 6, "{entry}");
    }
    alice.call_ok("ping", json!({})).await;
    drop(stranger);
}

/// A registered backend service is listed as `"state":"service"` (docs/cli.md,
/// docs/services.md), not as a connection waiting to log in.
#[tokio::test]
async fn a_backend_service_is_listed_as_service() {
    let (_dir, server, admin) = admin_server(&["--service-key", "svc-key"]);
    let mut service = server.connect().await;
    let registered = service
        .call(
            "service_register",
            json!({"key": "svc-key", "name": "board", "methods": [{"name": "board.top", "auth": false}]}),
        )
        .await;
    assert!(registered.get("result").is_some(), "{registered}");
    let list = http(admin, "GET", "/api/sessions", Some(TOKEN), None).json();
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["state"], "service", "{list:?}");
    assert!(list[0]["account"].is_null(), "{list:?}");
}

#[tokio::test]
async fn kick_by_account_or_conn_says_admin_and_lets_the_session_save_first() {
    let (_dir, server, admin) = admin_server(&[]);
    let (mut alice, token) = logged_in(&server, "netease1").await;
    assert_eq!(post(admin, "/api/kick", r#"{"account":"nobody1"}"#).json(), json!({"kicked": false}));
    assert_eq!(post(admin, "/api/kick", r#"{"conn":999999}"#).json(), json!({"kicked": false}));

    let answer = post(admin, "/api/kick", r#"{"account":"NETEASE1"}"#);
    assert_eq!((answer.status, answer.json()), (200, json!({"kicked": true})));
    let kicked = alice.recv().await;
    assert_eq!(kicked["method"], "kicked");
    assert_eq!(kicked["params"]["reason"], "admin");
    // Save first (docs/protocol.md §6): the save is answered, then the goodbye.
    let (version, _) = alice.save(&token, json!({"level": 2})).await;
    assert_eq!(version, 1);
    alice.expect_disconnected("admin").await;

    // By connection id, as listed.
    let (_bob, _) = logged_in(&server, "netease2").await;
    let list = get(admin, "/api/sessions").json();
    let conn = list.as_array().unwrap().iter().find(|s| s["account"] == "netease2").unwrap()["conn"].as_u64().unwrap();
    assert_eq!(post(admin, "/api/kick", &format!(r#"{{"conn":{conn}}}"#)).json(), json!({"kicked": true}));
}

#[tokio::test]
async fn broadcast_reaches_every_logged_in_session_and_no_one_else() {
    let (_dir, server, admin) = admin_server(&[]);
    let (mut alice, _) = logged_in(&server, "netease1").await;
    let (mut bob, _) = logged_in(&server, "netease2").await;
    let mut stranger = server.connect().await;
    let answer = post(admin, "/api/broadcast", r#"{"method":"news","params":{"text":"maintenance at 3"}}"#);
    assert_eq!((answer.status, answer.json()), (200, json!({"delivered": 2})));
    let expected = json!({"jsonrpc": "2.0", "method": "news", "params": {"text": "maintenance at 3"}});
    assert_eq!(alice.recv().await, expected);
    assert_eq!(bob.recv().await, expected);
    stranger.expect_silence(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn shutdown_is_202_then_readyz_is_503_until_the_process_exits_0() {
    let (_dir, mut server, admin) = admin_server(&["--kick-save-timeout", "3s"]);
    // A session that does not save keeps the drain going for the kick's save timeout.
    let (mut alice, _) = logged_in(&server, "netease1").await;
    let answer = post(admin, "/api/shutdown", "");
    assert_eq!(answer.status, 202, "{}", answer.body);
    let kicked = alice.recv().await;
    assert_eq!(kicked["params"]["reason"], "server_shutdown");
    let ready = http(admin, "GET", "/readyz", None, None);
    assert_eq!(ready.status, 503, "{}", ready.body);
    assert_eq!(http(admin, "GET", "/healthz", None, None).status, 200, "alive while draining");
    let status = server.wait_exit(Duration::from_secs(15)).await;
    assert!(status.success(), "{status}");
}

#[tokio::test]
async fn each_metric_moves_when_its_event_happens() {
    let (_dir, server, admin) = admin_server(&["--login-fail-limit", "2"]);
    let page = scrape(admin);
    for name in [
        "portcullis_connections",
        "portcullis_sessions",
        "portcullis_logins_total",
        "portcullis_kicks_total",
        "portcullis_disconnects_total",
        "portcullis_userdata_saves_total",
        "portcullis_frame_seconds_bucket",
        "portcullis_store_queue_depth",
    ] {
        assert!(page.lines().any(|l| l.starts_with(name)), "{name} is exported before any event:\n{page}");
    }
    assert!(page.contains("# TYPE portcullis_frame_seconds histogram"), "{page}");
    // The first scrape may be answered inside the first frame, before that frame is measured.
    wait_metric(admin, "frames", |p| metric(p, "portcullis_frame_seconds_count", &[]) > 0.0);

    // A login: ok, the tcp connection and the logged-in session gauges.
    let (mut alice, token) = logged_in(&server, "netease1").await;
    let page = wait_metric(admin, "logins ok", |p| metric(p, "portcullis_logins_total", &[("result", "ok")]) == 1.0);
    assert_eq!(metric(&page, "portcullis_connections", &[("transport", "tcp")]), 1.0);
    assert_eq!(metric(&page, "portcullis_connections", &[("transport", "ws")]), 0.0);
    assert_eq!(metric(&page, "portcullis_sessions", &[("state", "logged_in")]), 1.0);
    assert_eq!(metric(&page, "portcullis_requests_total", &[("method", "login"), ("code", "ok")]), 1.0);

    // Requests by method and code; an unknown method is "unknown".
    alice.call_ok("ping", json!({})).await;
    assert_eq!(alice.call_err("no_such_method", json!({})).await, -32601);
    assert_eq!(alice.call_err("userdata_load", json!({"token": token})).await, 1004);
    let page = scrape(admin);
    assert_eq!(metric(&page, "portcullis_requests_total", &[("method", "ping"), ("code", "ok")]), 1.0);
    assert_eq!(metric(&page, "portcullis_requests_total", &[("method", "unknown"), ("code", "-32601")]), 1.0);
    assert_eq!(metric(&page, "portcullis_requests_total", &[("method", "userdata_load"), ("code", "1004")]), 1.0);
    assert!(!page.contains("no_such_method"), "no label per unknown name");

    // A save: the saves counter and the store's histograms.
    let before = scrape(admin);
    alice.save(&token, json!({"gold": 1})).await;
    let page = wait_metric(admin, "saves", |p| metric(p, "portcullis_userdata_saves_total", &[]) == 1.0);
    assert!(
        metric(&page, "portcullis_store_commit_seconds_count", &[])
            > metric(&before, "portcullis_store_commit_seconds_count", &[])
    );
    assert!(
        metric(&page, "portcullis_store_batch_size_count", &[])
            > metric(&before, "portcullis_store_batch_size_count", &[])
    );

    // Login failures: invalid credentials, token invalid, then throttled.
    let mut mallory = server.connect().await;
    assert_eq!(mallory.call_err("login", json!({"account": "netease2", "password": "wrong"})).await, 1002);
    assert_eq!(mallory.call_err("login", json!({"token": "0".repeat(64)})).await, 1003);
    assert_eq!(mallory.call_err("login", json!({"account": "netease2", "password": "wrong"})).await, 1002);
    assert_eq!(mallory.call_err("login", json!({"account": "netease2", "password": "wrong"})).await, 1007);
    let page = scrape(admin);
    assert_eq!(metric(&page, "portcullis_logins_total", &[("result", "invalid_credentials")]), 2.0);
    assert_eq!(metric(&page, "portcullis_logins_total", &[("result", "token_invalid")]), 1.0);
    assert_eq!(metric(&page, "portcullis_logins_total", &[("result", "throttled")]), 1.0);
    assert_eq!(metric(&page, "portcullis_sessions", &[("state", "awaiting_login")]), 1.0);

    // A kick: kicks{admin}, then disconnects{admin} when it ends.
    post(admin, "/api/kick", r#"{"account":"netease1"}"#);
    let _kicked = alice.recv().await;
    wait_metric(admin, "kicks admin", |p| metric(p, "portcullis_kicks_total", &[("reason", "admin")]) == 1.0);
    alice.call_ok("logout", json!({"token": token})).await;
    alice.expect_disconnected("admin").await;
    wait_metric(admin, "disconnects admin", |p| {
        metric(p, "portcullis_disconnects_total", &[("reason", "admin")]) == 1.0
    });

    // A client that just goes away.
    drop(mallory);
    wait_metric(admin, "peer closed", |p| {
        metric(p, "portcullis_disconnects_total", &[("reason", "peer_closed")]) >= 1.0
    });
    wait_metric(admin, "connections back to 0", |p| {
        metric(p, "portcullis_connections", &[("transport", "tcp")]) == 0.0
    });
}

#[tokio::test]
async fn a_refused_connection_counts_as_a_disconnect_with_its_reason() {
    let (_dir, server, admin) = admin_server(&["--max-connections", "1"]);
    let _first = server.connect().await;
    wait_metric(admin, "one connection", |p| metric(p, "portcullis_connections", &[("transport", "tcp")]) == 1.0);
    let mut second = server.connect().await;
    second.expect_disconnected("server_full").await;
    wait_metric(admin, "server_full", |p| {
        metric(p, "portcullis_disconnects_total", &[("reason", "server_full")]) == 1.0
    });
}

/// `serve`'s refusals: exit status 2 with a one-line reason.
#[test]
fn serve_refuses_an_exposed_admin_listener_without_a_token_and_a_bad_log_filter() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("p.db");
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_portcullis"));
        command.args(["serve", "--listen", "127.0.0.1:0", "--db"]).arg(&db).args(args);
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("PORTCULLIS_") || key == "RUST_LOG" {
                command.env_remove(key);
            }
        }
        command.envs(env.iter().copied()).stdin(Stdio::null());
        command.output().unwrap()
    };
    let exposed = run(&["--admin-listen", "0.0.0.0:0"], &[]);
    assert_eq!(exposed.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&exposed.stderr);
    assert!(stderr.contains("--admin-token") && stderr.contains("loopback"), "{stderr}");
    assert!(exposed.stdout.is_empty());

    for (args, env) in [
        (vec!["--log", "info,foo=notalevel"], vec![]),
        (vec![], vec![("PORTCULLIS_LOG", "=[")]),
        (vec![], vec![("RUST_LOG", "portcullis=loud")]),
    ] {
        let bad = run(&args, &env);
        assert_eq!(bad.status.code(), Some(2), "{args:?} {env:?}");
        let stderr = String::from_utf8_lossy(&bad.stderr);
        assert!(stderr.contains("invalid log filter"), "{stderr}");
    }
}

#[tokio::test]
async fn rust_log_is_used_without_log_and_json_logs_are_one_object_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_portcullis"));
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json", "--stop-on-stdin-eof", "--db"])
        .arg(dir.path().join("p.db"));
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("PORTCULLIS_") {
            command.env_remove(key);
        }
    }
    command.env("RUST_LOG", "debug").stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = command.spawn().unwrap();
    let mut first = String::new();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    std::io::BufRead::read_line(&mut stdout, &mut first).unwrap();
    assert!(first.starts_with("listening on "), "{first}");
    drop(child.stdin.take()); // graceful stop
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not one JSON object ({e}): {l}")))
        .collect();
    assert!(lines.iter().any(|l| l["level"] == "DEBUG"), "RUST_LOG=debug was used:\n{stderr}");
    assert!(lines.iter().all(|l| l["fields"].is_object() && l["timestamp"].is_string()));
}

fn admin_cli(admin: SocketAddr, token: Option<&str>, args: &[&str]) -> std::process::Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_portcullis"));
    command.args(["admin", "--admin", &admin.to_string()]);
    command.env_remove("PORTCULLIS_ADMIN_TOKEN");
    if let Some(token) = token {
        command.env("PORTCULLIS_ADMIN_TOKEN", token);
    }
    command.args(args).stdin(Stdio::null()).output().unwrap()
}

#[tokio::test]
async fn the_admin_subcommand_lists_kicks_broadcasts_and_shuts_down() {
    let (_dir, mut server, admin) = admin_server(&["--kick-save-timeout", "1s"]);
    let (mut alice, _) = logged_in(&server, "netease1").await;

    let who = admin_cli(admin, Some(TOKEN), &["who"]);
    assert!(who.status.success(), "{who:?}");
    let table = String::from_utf8_lossy(&who.stdout);
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("CONN") && lines[0].contains("ACCOUNT") && lines[0].contains("STATE"), "{table}");
    let row = lines.iter().find(|l| l.contains("netease1")).unwrap_or_else(|| panic!("{table}"));
    assert_eq!(row.find("logged_in"), lines[0].find("STATE"), "aligned:\n{table}");

    // The token from the flag works as well as from the variable; a wrong one is a one-line error.
    let flag = admin_cli(admin, None, &["--admin-token", TOKEN, "who"]);
    assert!(flag.status.success());
    let denied = admin_cli(admin, Some("nope"), &["who"]);
    assert!(!denied.status.success());
    let stderr = String::from_utf8_lossy(&denied.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("401"), "{stderr}");

    let news = admin_cli(admin, Some(TOKEN), &["broadcast", "news", r#"{"text":"hi"}"#]);
    assert!(news.status.success(), "{news:?}");
    assert!(String::from_utf8_lossy(&news.stdout).contains("delivered to 1 session"));
    assert_eq!(alice.recv().await, json!({"jsonrpc":"2.0","method":"news","params":{"text":"hi"}}));
    let not_object = admin_cli(admin, Some(TOKEN), &["broadcast", "news", "[1]"]);
    assert!(!not_object.status.success());

    let missing = admin_cli(admin, Some(TOKEN), &["kick", "nobody1"]);
    assert!(!missing.status.success());
    assert_eq!(String::from_utf8_lossy(&missing.stderr).lines().count(), 1);
    let kick = admin_cli(admin, Some(TOKEN), &["kick", "netease1"]);
    assert!(kick.status.success(), "{kick:?}");
    let kicked = alice.recv().await;
    assert_eq!(kicked["params"]["reason"], "admin");

    let stop = admin_cli(admin, Some(TOKEN), &["shutdown"]);
    assert!(stop.status.success(), "{stop:?}");
    assert!(server.wait_exit(Duration::from_secs(15)).await.success());
    let gone = admin_cli(admin, Some(TOKEN), &["who"]);
    assert!(!gone.status.success());
    assert!(String::from_utf8_lossy(&gone.stderr).contains("cannot reach"));
}

// ---- The console in headless Chromium (tests/common/browser.rs) ----

/// The longest the console may take to show what a step expects.
const PAGE_WAIT: Duration = Duration::from_secs(15);

#[tokio::test]
async fn the_console_lists_a_session_and_its_kick_button_kicks_it_in_chromium() {
    let (_dir, server, admin) = admin_server(&[]);
    let (mut alice, _) = logged_in(&server, "netease1").await;
    let Some(mut page) = Browser::open(&format!("http://{admin}/"), &[]).await else { return };
    let shows = "document.body.innerText";

    // Without the token the page itself is refused.
    page.wait_for(
        "document.readyState === 'complete' && document.body.innerText.includes('bearer token')",
        PAGE_WAIT,
        shows,
    )
    .await;

    page.navigate(&format!("http://{admin}/?token={TOKEN}")).await;
    let button = r#"button.kick[data-account="netease1"]"#;
    page.wait_for(&format!("!!document.querySelector({button:?})"), PAGE_WAIT, shows).await;
    page.wait_for("document.getElementById('c-sessions').textContent === '1'", PAGE_WAIT, shows).await;
    page.wait_for("document.getElementById('c-logins').textContent === '1'", PAGE_WAIT, shows).await;
    let out = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("browser").join("console.png");
    page.screenshot(&out).await;
    eprintln!("console screenshot: {}", out.display());

    // Kick, then confirm: two real clicks on the same button.
    page.mouse_click(button).await;
    page.wait_for(&format!("document.querySelector({button:?}).textContent === 'Confirm kick'"), PAGE_WAIT, shows)
        .await;
    page.mouse_click(button).await;
    let kicked = alice.recv().await;
    assert_eq!(kicked["method"], "kicked");
    assert_eq!(kicked["params"]["reason"], "admin");
    page.wait_for("document.getElementById('notice').textContent.startsWith('Kicked netease1')", PAGE_WAIT, shows)
        .await;
}
