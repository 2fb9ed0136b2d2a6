//! End-to-end tests of the WebSocket transport and TLS (docs/protocol.md §1.1,
//! §1.2; docs/cli.md `--ws-listen`, `--tls-cert`, `--tls-key`, `portcullis
//! cert`) against the real binary, with tokio-tungstenite and tokio-rustls as
//! the clients.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Server, WAIT, cert_pair, start_fresh};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_rustls::rustls;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

const FRAME_TOO_LARGE: &str = r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"frame too large"}}"#;
const BINARY_REFUSED: &str =
    r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"binary messages are not supported"}}"#;

/// Any client byte stream: plain TCP or TLS.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}
type Stream = Box<dyn Io>;

/// The `ws://` or `wss://` address of the server's second stdout line.
fn ws_addr(server: &Server, scheme: &str) -> SocketAddr {
    let line = server.next_stdout_line(Duration::from_secs(20)).expect("a second `listening on` line");
    let prefix = format!("listening on {scheme}://");
    let addr = line.strip_prefix(&prefix).unwrap_or_else(|| panic!("expected {prefix}IP:PORT, got {line:?}"));
    let addr: SocketAddr = addr.parse().unwrap_or_else(|e| panic!("{line:?}: {e}"));
    assert_eq!(addr.ip().to_string(), "127.0.0.1");
    assert_ne!(addr.port(), 0);
    addr
}

/// A TLS client trusting only the certificate in `cert`.
fn tls_connector(cert: &Path) -> tokio_rustls::TlsConnector {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for der in rustls_pki_types::CertificateDer::pem_file_iter(cert).unwrap() {
        roots.add(der.unwrap()).unwrap();
    }
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

async fn tcp(addr: SocketAddr) -> TcpStream {
    timeout(WAIT, TcpStream::connect(addr)).await.expect("connect in time").expect("connect")
}

async fn tls(addr: SocketAddr, cert: &Path) -> Stream {
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let stream = timeout(WAIT, tls_connector(cert).connect(name, tcp(addr).await)).await.unwrap().unwrap();
    Box::new(stream)
}

/// A WebSocket client; `next` is the next request id.
struct Ws {
    ws: WebSocketStream<Stream>,
    next: i64,
}

impl Ws {
    async fn open(stream: Stream, url: &str) -> Ws {
        let (ws, response) = timeout(WAIT, tokio_tungstenite::client_async(url, stream)).await.unwrap().unwrap();
        assert_eq!(response.status(), 101);
        Ws { ws, next: 1 }
    }

    async fn connect(addr: SocketAddr) -> Ws {
        Ws::open(Box::new(tcp(addr).await), &format!("ws://{addr}/any/path")).await
    }

    async fn send_text(&mut self, text: &str) {
        self.ws.send(Message::text(text)).await.unwrap();
    }

    /// The next message that is not a Pong (panics on a timeout).
    async fn recv(&mut self) -> Message {
        loop {
            let message = timeout(WAIT, self.ws.next()).await.expect("a message in time");
            match message {
                Some(Ok(Message::Pong(_))) => continue,
                Some(Ok(m)) => return m,
                other => panic!("expected a message, got {other:?}"),
            }
        }
    }

    async fn recv_text(&mut self) -> String {
        match self.recv().await {
            Message::Text(t) => t.as_str().to_owned(),
            other => panic!("expected a text message, got {other:?}"),
        }
    }

    async fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.next;
        self.next += 1;
        self.send_text(&json!({"jsonrpc":"2.0","id":id,"method":method,"params":params}).to_string()).await;
        let answer: Value = serde_json::from_str(&self.recv_text().await).unwrap();
        assert_eq!(answer["id"], json!(id), "{answer}");
        answer
    }

    async fn expect_close(&mut self, code: CloseCode, reason: &str) {
        match self.recv().await {
            Message::Close(Some(frame)) => {
                assert_eq!(frame.code, code);
                assert_eq!(frame.reason.as_str(), reason);
            }
            other => panic!("expected a Close frame, got {other:?}"),
        }
    }

    /// Writes raw frame bytes (client frames are masked; the key 0 leaves the payload as is).
    async fn send_raw_frame(&mut self, fin: bool, opcode: u8, payload: &[u8]) {
        let mut bytes = vec![(u8::from(fin) << 7) | opcode];
        match payload.len() {
            n if n < 126 => bytes.push(0x80 | n as u8),
            n if n <= 0xffff => {
                bytes.push(0x80 | 126);
                bytes.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                bytes.push(0x80 | 127);
                bytes.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        bytes.extend_from_slice(&[0, 0, 0, 0]);
        bytes.extend_from_slice(payload);
        let stream = self.ws.get_mut();
        stream.write_all(&bytes).await.unwrap();
        stream.flush().await.unwrap();
    }
}

fn ping_text(id: i64) -> String {
    json!({"jsonrpc":"2.0","id":id,"method":"ping"}).to_string()
}

fn assert_ping_answer(text: &str, id: i64) {
    let answer: Value = serde_json::from_str(text).unwrap();
    assert_eq!(answer["id"], json!(id), "{answer}");
    assert!(answer["result"]["server_time_ms"].is_u64(), "{answer}");
}

/// A client's raw HTTP request on the WebSocket port; the whole answer.
async fn http_get(addr: SocketAddr, path: &str) -> String {
    let mut stream = tcp(addr).await;
    stream.write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    timeout(WAIT, stream.read_to_end(&mut answer)).await.unwrap().unwrap();
    String::from_utf8(answer).unwrap()
}

/// The flow a game client runs, over WebSocket: login, save, load. If this
/// failed, no browser game could use the server.
#[tokio::test]
async fn login_save_load_over_websocket() {
    let (_dir, server) = start_fresh(&["--ws-listen", "127.0.0.1:0"]);
    let addr = ws_addr(&server, "ws");
    let mut ws = Ws::connect(addr).await;
    let login = ws.call("login", json!({"account":"netease1","password":"123"})).await;
    let token = login["result"]["token"].as_str().unwrap().to_owned();
    let saved = ws.call("userdata_save", json!({"token": token, "data": {"level": 7}})).await;
    assert_eq!(saved["result"]["version"], json!(1), "{saved}");
    let loaded = ws.call("userdata_load", json!({"token": token})).await;
    assert_eq!(loaded["result"]["data"], json!({"level": 7}), "{loaded}");
}

/// Fragments are one message; one trailing `\n` is allowed; a blank message
/// is not answered. If this failed, clients whose libraries fragment large
/// messages, or add a newline, would get errors.
#[tokio::test]
async fn fragments_are_reassembled_and_a_trailing_newline_is_ignored() {
    let (_dir, server) = start_fresh(&["--ws-listen", "127.0.0.1:0"]);
    let mut ws = Ws::connect(ws_addr(&server, "ws")).await;
    let text = ping_text(1);
    let (a, b) = text.as_bytes().split_at(10);
    ws.send_raw_frame(false, 0x1, a).await;
    ws.send_raw_frame(true, 0x0, b).await;
    assert_ping_answer(&ws.recv_text().await, 1);
    ws.send_text("   ").await;
    ws.send_text(&format!("{}\n", ping_text(2))).await;
    assert_ping_answer(&ws.recv_text().await, 2);
}

/// A message over `max_frame_bytes`, also one whose fragments are each
/// small, gets `frame too large`, `disconnected protocol_error`, Close 1009.
#[tokio::test]
async fn oversized_message_gets_frame_too_large_and_close_1009() {
    let (_dir, server) = start_fresh(&["--ws-listen", "127.0.0.1:0", "--max-frame-bytes", "1024"]);
    let addr = ws_addr(&server, "ws");
    for fragmented in [false, true] {
        let mut ws = Ws::connect(addr).await;
        let big = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"ping","params":{{"pad":"{}"}}}}"#, "x".repeat(1100));
        if fragmented {
            let (a, b) = big.as_bytes().split_at(600);
            ws.send_raw_frame(false, 0x1, a).await;
            ws.send_raw_frame(true, 0x0, b).await;
        } else {
            ws.send_text(&big).await;
        }
        assert_eq!(ws.recv_text().await, FRAME_TOO_LARGE, "fragmented: {fragmented}");
        let bye: Value = serde_json::from_str(&ws.recv_text().await).unwrap();
        assert_eq!(bye, json!({"jsonrpc":"2.0","method":"disconnected","params":{"reason":"protocol_error"}}));
        match ws.recv().await {
            Message::Close(Some(frame)) => assert_eq!(frame.code, CloseCode::Size),
            other => panic!("expected Close 1009, got {other:?}"),
        }
    }
}

/// A binary message is answered -32600 and the connection stays; the
/// sixteenth protocol error closes it as on TCP.
#[tokio::test]
async fn binary_message_is_refused_and_counts_as_a_protocol_error() {
    let (_dir, server) = start_fresh(&["--ws-listen", "127.0.0.1:0", "--max-protocol-errors", "3"]);
    let mut ws = Ws::connect(ws_addr(&server, "ws")).await;
    ws.ws.send(Message::binary(vec![1u8, 2, 3])).await.unwrap();
    assert_eq!(ws.recv_text().await, BINARY_REFUSED);
    ws.send_text(&ping_text(1)).await;
    assert_ping_answer(&ws.recv_text().await, 1);
    ws.ws.send(Message::binary(vec![1u8])).await.unwrap();
    assert_eq!(ws.recv_text().await, BINARY_REFUSED);
    ws.ws.send(Message::binary(vec![1u8])).await.unwrap();
    assert_eq!(ws.recv_text().await, BINARY_REFUSED);
    let bye: Value = serde_json::from_str(&ws.recv_text().await).unwrap();
    assert_eq!(bye["params"]["reason"], json!("protocol_error"));
    ws.expect_close(CloseCode::Normal, "protocol_error").await;
}

/// Ping frames are answered with Pong and keep a connection from the idle
/// timeout; without them it is closed with `idle_timeout` and Close 1000.
#[tokio::test]
async fn ping_frames_count_as_activity() {
    let (_dir, server) =
        start_fresh(&["--ws-listen", "127.0.0.1:0", "--idle-timeout", "800ms", "--login-timeout", "1m"]);
    let mut ws = Ws::connect(ws_addr(&server, "ws")).await;
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(2000) {
        ws.ws.send(Message::Ping(b"hi".to_vec().into())).await.unwrap();
        match timeout(WAIT, ws.ws.next()).await.unwrap() {
            Some(Ok(Message::Pong(payload))) => assert_eq!(&payload[..], b"hi"),
            other => panic!("expected a Pong, got {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let bye: Value = serde_json::from_str(&ws.recv_text().await).unwrap();
    assert_eq!(bye["params"]["reason"], json!("idle_timeout"), "{bye}");
    assert!(start.elapsed() >= Duration::from_millis(2500), "closed while pinging: {:?}", start.elapsed());
    ws.expect_close(CloseCode::Normal, "idle_timeout").await;
}

/// `disconnect` ends with `disconnected client_request` and Close 1000 with that reason.
#[tokio::test]
async fn disconnect_sends_close_1000_with_the_reason() {
    let (_dir, server) = start_fresh(&["--ws-listen", "127.0.0.1:0"]);
    let mut ws = Ws::connect(ws_addr(&server, "ws")).await;
    let answer = ws.call("disconnect", json!({})).await;
    assert_eq!(answer["result"], json!({}));
    let bye: Value = serde_json::from_str(&ws.recv_text().await).unwrap();
    assert_eq!(bye["params"]["reason"], json!("client_request"));
    ws.expect_close(CloseCode::Normal, "client_request").await;
}

/// The WebSocket port serves the demo page and the JavaScript client to
/// plain GETs, and 404 for anything else.
#[tokio::test]
async fn http_pages_on_the_websocket_port() {
    let (_dir, server) = start_fresh(&["--ws-listen", "127.0.0.1:0"]);
    let addr = ws_addr(&server, "ws");
    let page = http_get(addr, "/").await;
    assert!(page.starts_with("HTTP/1.1 200 OK\r\n"), "{page}");
    assert!(page.contains("Content-Type: text/html"), "{page}");
    assert!(page.contains("<html"), "{page}");
    let js = http_get(addr, "/portcullis.js").await;
    assert!(js.starts_with("HTTP/1.1 200 OK\r\n"), "{js}");
    assert!(js.contains("Content-Type: text/javascript"), "{js}");
    assert!(js.contains("export"), "{js}");
    let missing = http_get(addr, "/nope").await;
    assert!(missing.starts_with("HTTP/1.1 404 Not Found\r\n"), "{missing}");
}

/// `max_connections` counts TCP and WebSocket together: with 2, one of each
/// fills the server, and a third on either transport hears `server_full`.
#[tokio::test]
async fn max_connections_counts_both_transports() {
    let (_dir, server) = start_fresh(&["--ws-listen", "127.0.0.1:0", "--max-connections", "2"]);
    let addr = ws_addr(&server, "ws");
    let mut line = server.connect().await;
    line.ping_rtt().await;
    let mut ws = Ws::connect(addr).await;
    ws.send_text(&ping_text(1)).await;
    assert_ping_answer(&ws.recv_text().await, 1);

    let mut third = Ws::connect(addr).await;
    let bye: Value = serde_json::from_str(&third.recv_text().await).unwrap();
    assert_eq!(bye, json!({"jsonrpc":"2.0","method":"disconnected","params":{"reason":"server_full"}}));
    third.expect_close(CloseCode::Normal, "server_full").await;
    let mut third_line = server.connect().await;
    third_line.expect_disconnected("server_full").await;
}

/// `portcullis cert` writes a pair (key 0600) valid for localhost; with it,
/// lines inside TLS and `wss://` both serve the login flow, a plain-text
/// client on the TLS port is closed without a word and changes nothing.
#[tokio::test]
async fn tls_on_both_listeners_with_a_portcullis_cert_pair() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = cert_pair(dir.path(), &["game.example"]);
    assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
    let server = Server::start(
        &dir.path().join("p.db"),
        &["--ws-listen", "127.0.0.1:0", "--tls-cert", cert.to_str().unwrap(), "--tls-key", key.to_str().unwrap()],
    );
    let wss = ws_addr(&server, "wss");

    // Plain text on the TLS line port: no answer, closed.
    let mut plain = tcp(server.addr).await;
    plain.write_all(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}\n").await.unwrap();
    let mut got = Vec::new();
    let _ = timeout(WAIT, plain.read_to_end(&mut got)).await.expect("closed in time");
    assert!(!String::from_utf8_lossy(&got).contains("jsonrpc"), "plain text got an answer: {got:?}");

    // Lines inside TLS.
    let stream = tls(server.addr, &cert).await;
    let (rd, mut wr) = tokio::io::split(stream);
    let mut rd = BufReader::new(rd);
    wr.write_all(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"login\",\"params\":{\"account\":\"netease1\",\"password\":\"123\"}}\n")
        .await
        .unwrap();
    let mut answer = String::new();
    timeout(WAIT, rd.read_line(&mut answer)).await.unwrap().unwrap();
    let answer: Value = serde_json::from_str(&answer).unwrap();
    assert!(answer["result"]["token"].is_string(), "{answer}");

    // wss://
    let mut ws = Ws::open(tls(wss, &cert).await, &format!("wss://localhost:{}/", wss.port())).await;
    let login = ws.call("login", json!({"account":"netease2","password":"123"})).await;
    assert!(login["result"]["token"].is_string(), "{login}");
}

/// A client that opens a TLS connection and never handshakes is closed at
/// the login timeout without a byte, and costs the others nothing.
#[tokio::test]
async fn stalled_tls_handshake_is_closed_at_the_login_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = cert_pair(dir.path(), &[]);
    let server = Server::start(
        &dir.path().join("p.db"),
        &["--login-timeout", "1s", "--tls-cert", cert.to_str().unwrap(), "--tls-key", key.to_str().unwrap()],
    );
    let start = Instant::now();
    let mut stalled = tcp(server.addr).await;
    let mut got = Vec::new();
    timeout(Duration::from_secs(5), stalled.read_to_end(&mut got)).await.expect("closed within 5 s").unwrap();
    let waited = start.elapsed();
    assert!(got.is_empty(), "a stalled handshake got bytes: {got:?}");
    assert!(waited >= Duration::from_millis(900), "closed before the login timeout: {waited:?}");
    // The server still serves TLS clients.
    let mut ok = tls(server.addr, &cert).await;
    ok.write_all(b"{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"ping\"}\n").await.unwrap();
    let mut line = String::new();
    timeout(WAIT, BufReader::new(ok).read_line(&mut line)).await.unwrap().unwrap();
    assert!(line.contains("\"id\":7"), "{line}");
}

/// `--tls-cert` without `--tls-key` is a usage error (exit 2).
#[test]
fn tls_cert_without_key_is_a_usage_error() {
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["serve", "--tls-cert", "cert.pem"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(2));
}

/// Time spent in the TLS handshake counts against the login deadline
/// (docs/protocol.md §1.2): a client that takes 1.2 s to start its handshake
/// with `--login-timeout 2s` is disconnected about 2 s after connecting,
/// not 2 s after the handshake.
#[tokio::test]
async fn tls_handshake_time_counts_against_the_login_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = cert_pair(dir.path(), &[]);
    let server = Server::start(
        &dir.path().join("p.db"),
        &["--login-timeout", "2s", "--tls-cert", cert.to_str().unwrap(), "--tls-key", key.to_str().unwrap()],
    );
    let start = Instant::now();
    let raw = tcp(server.addr).await;
    // The slow part of a slow handshake, on the client's side.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let stream = timeout(WAIT, tls_connector(&cert).connect(name, raw)).await.unwrap().unwrap();
    let mut line = String::new();
    timeout(WAIT, BufReader::new(stream).read_line(&mut line)).await.unwrap().unwrap();
    let elapsed = start.elapsed();
    assert!(line.contains("login_timeout"), "{line}");
    assert!(elapsed < Duration::from_millis(2900), "the deadline ignored the handshake: {elapsed:?}");
}

/// SIGTERM over WebSocket: a logged-in client hears `kicked
/// {server_shutdown}`, saves, gets its answer, then `disconnected` and Close
/// 1000 `server_shutdown`; the server exits 0. If this failed, a browser
/// player's last progress would be lost at every deploy.
#[tokio::test]
async fn shutdown_kicks_a_websocket_session_that_saves_and_closes_1000() {
    let (_dir, mut server) = start_fresh(&["--ws-listen", "127.0.0.1:0", "--kick-save-timeout", "5s"]);
    let mut ws = Ws::connect(ws_addr(&server, "ws")).await;
    let login = ws.call("login", json!({"account":"netease3","password":"123"})).await;
    let token = login["result"]["token"].as_str().unwrap().to_owned();
    server.terminate();
    let kicked: Value = serde_json::from_str(&ws.recv_text().await).unwrap();
    assert_eq!(kicked["method"], json!("kicked"), "{kicked}");
    assert_eq!(kicked["params"]["reason"], json!("server_shutdown"), "{kicked}");
    let saved = ws.call("userdata_save", json!({"token": token, "data": {"last": true}})).await;
    assert_eq!(saved["result"]["version"], json!(1), "{saved}");
    let bye: Value = serde_json::from_str(&ws.recv_text().await).unwrap();
    assert_eq!(bye["params"]["reason"], json!("server_shutdown"), "{bye}");
    ws.expect_close(CloseCode::Normal, "server_shutdown").await;
    let status = server.wait_exit(Duration::from_secs(10)).await;
    assert_eq!(status.code(), Some(0), "exit status after SIGTERM: {status}");
}
