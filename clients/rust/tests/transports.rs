//! The reference client over every transport of docs/protocol.md §1: plain
//! TCP lines, lines inside TLS (§1.2), `ws://` and `wss://` (§1.1), against
//! small in-test servers (tokio-rustls, tokio-tungstenite, a self-signed
//! certificate from rcgen) that speak a few lines of the protocol.
//!
//! Every wait is bounded by [`WAIT`], so a hang fails the test instead of
//! stalling it; nothing sleeps to let things happen.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use portcullis_client::{Client, ClientConfig, ClientError, ClientEvent, Endpoint, Transport};
use portcullis_protocol::ErrorCode;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader, Lines, ReadHalf, WriteHalf};
use tokio::net::TcpListener;
use tokio::time::timeout;
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

/// The longest any single wait may take before the test fails.
const WAIT: Duration = Duration::from_secs(5);

/// Every transport, for the tests that must hold on each.
const ALL: [Transport; 4] = [Transport::Tcp, Transport::Tls, Transport::Ws, Transport::Wss];

/// A 64-hex-character token, as the server issues them (docs/protocol.md §4).
fn token(fill: char) -> String {
    std::iter::repeat_n(fill, 64).collect()
}

/// A byte stream the fake server can speak over (TCP, or TLS over TCP).
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// A self-signed certificate for `localhost` and `127.0.0.1`, as
/// `portcullis cert` writes one: the server's pair, and its certificate as
/// the client's CA file.
struct Pki {
    /// Holds the CA file.
    _dir: tempfile::TempDir,
    /// The certificate in PEM, for [`ClientConfig::ca_file`].
    ca_file: PathBuf,
    /// The server side of TLS.
    acceptor: TlsAcceptor,
}

impl Pki {
    fn new() -> Self {
        let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
        let certified = rcgen::generate_simple_self_signed(names).expect("self-signed certificate");
        let dir = tempfile::tempdir().expect("temporary directory");
        let ca_file = dir.path().join("cert.pem");
        std::fs::write(&ca_file, certified.cert.pem()).expect("write cert.pem");
        let cert = CertificateDer::from(certified.cert.der().to_vec());
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(certified.signing_key.serialize_der()));
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_no_client_auth()
            .with_single_cert(vec![cert], key)
            .expect("server certificate");
        Self { _dir: dir, ca_file, acceptor: TlsAcceptor::from(Arc::new(config)) }
    }

    /// A client configuration trusting this certificate.
    fn client_config(&self) -> ClientConfig {
        ClientConfig { ca_file: Some(self.ca_file.clone()), ..ClientConfig::default() }
    }
}

/// A listener on 127.0.0.1 standing in for the server, speaking `transport`.
struct FakeServer {
    listener: TcpListener,
    addr: SocketAddr,
    transport: Transport,
    /// The TLS side for `tls` and `wss`.
    tls: Option<TlsAcceptor>,
}

impl FakeServer {
    async fn bind(transport: Transport, pki: &Pki) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let tls = transport.is_tls().then(|| pki.acceptor.clone());
        Self { listener, addr, transport, tls }
    }

    /// The address a client connects to: `127.0.0.1:PORT`, `tls://…`,
    /// `ws://…/game`, and `wss://localhost:PORT/game` (a DNS name checked
    /// against the certificate).
    fn url(&self) -> String {
        let port = self.addr.port();
        match self.transport {
            Transport::Tcp => format!("127.0.0.1:{port}"),
            Transport::Tls => format!("tls://127.0.0.1:{port}"),
            Transport::Ws => format!("ws://127.0.0.1:{port}/game"),
            _ => format!("wss://localhost:{port}/game"),
        }
    }

    /// Accepts one connection: TCP, then TLS and the WebSocket upgrade as the
    /// transport has them.
    async fn accept(&self) -> Wire {
        let (tcp, _) = self.listener.accept().await.expect("accept");
        let stream: Box<dyn Io> = match &self.tls {
            Some(acceptor) => Box::new(acceptor.accept(tcp).await.expect("TLS handshake")),
            None => Box::new(tcp),
        };
        if self.transport.is_websocket() {
            Wire::Ws(Box::new(tokio_tungstenite::accept_async(stream).await.expect("WebSocket upgrade")))
        } else {
            let (read, write) = tokio::io::split(stream);
            Wire::Lines { lines: BufReader::new(read).lines(), write }
        }
    }

    /// Connects a client with `config` and accepts its connection.
    async fn connect(&self, config: ClientConfig) -> (Client, Wire) {
        let url = self.url();
        let (client, wire) =
            timeout(WAIT, async { tokio::join!(Client::connect_with(url.as_str(), config), self.accept()) })
                .await
                .expect("connects in time");
        (client.unwrap_or_else(|error| panic!("client connects to {url}: {error}")), wire)
    }

    /// Whether another connection arrives within `wait`.
    async fn sees_connection_within(&self, wait: Duration) -> bool {
        timeout(wait, self.listener.accept()).await.is_ok()
    }
}

/// The server side of one accepted connection, whatever the transport.
enum Wire {
    /// NDJSON lines (docs/protocol.md §1), over TCP or TLS.
    Lines { lines: Lines<BufReader<ReadHalf<Box<dyn Io>>>>, write: WriteHalf<Box<dyn Io>> },
    /// WebSocket text messages (docs/protocol.md §1.1), over TCP or TLS.
    Ws(Box<WebSocketStream<Box<dyn Io>>>),
}

impl Wire {
    /// The next frame the client sent; `None` when it closed (for WebSocket:
    /// a Close frame or the end of the stream).
    async fn recv_frame(&mut self) -> Option<String> {
        match self {
            Self::Lines { lines, .. } => {
                timeout(WAIT, lines.next_line()).await.expect("client sends or closes in time").ok().flatten()
            }
            Self::Ws(ws) => loop {
                match timeout(WAIT, ws.next()).await.expect("client sends or closes in time") {
                    Some(Ok(Message::Text(text))) => return Some(text.as_str().to_owned()),
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                    Some(Ok(other)) if !other.is_close() => panic!("client sent {other:?}"),
                    _ => return None,
                }
            },
        }
    }

    /// The next message the client sent, a JSON-RPC 2.0 object.
    async fn recv(&mut self) -> Value {
        let frame = self.recv_frame().await.expect("client did not close");
        let message: Value = serde_json::from_str(&frame).expect("client sends JSON");
        assert_eq!(message["jsonrpc"], "2.0", "{frame}");
        message
    }

    /// The next message, checked to be a request for `method`.
    async fn recv_request(&mut self, method: &str) -> Value {
        let request = self.recv().await;
        assert_eq!(request["method"], method, "{request}");
        assert!(request["id"].is_u64(), "integer id: {request}");
        request
    }

    /// Sends one frame as is (a line gets its `\n`).
    async fn send_frame(&mut self, frame: String) {
        match self {
            Self::Lines { write, .. } => {
                write.write_all(format!("{frame}\n").as_bytes()).await.expect("write");
                write.flush().await.expect("flush");
            }
            Self::Ws(ws) => ws.send(Message::text(frame)).await.expect("send"),
        }
    }

    async fn send(&mut self, message: Value) {
        self.send_frame(message.to_string()).await;
    }

    async fn reply(&mut self, request: &Value, result: Value) {
        self.send(json!({"jsonrpc": "2.0", "id": request["id"], "result": result})).await;
    }

    async fn reply_error(&mut self, request: &Value, code: i64, message: &str) {
        let error = json!({"code": code, "message": message});
        self.send(json!({"jsonrpc": "2.0", "id": request["id"], "error": error})).await;
    }

    /// `disconnected {"reason":reason}`, then the close of §1.1: a Close
    /// frame (1000, reason text) on WebSocket, the end of the stream on lines.
    async fn disconnect(mut self, reason: &str) {
        self.send(json!({"jsonrpc": "2.0", "method": "disconnected", "params": {"reason": reason}})).await;
        match self {
            Self::Lines { mut write, .. } => write.shutdown().await.expect("shutdown"),
            Self::Ws(mut ws) => {
                let frame = tokio_tungstenite::tungstenite::protocol::CloseFrame {
                    code: CloseCode::Normal,
                    reason: reason.into(),
                };
                WebSocketStream::close(&mut ws, Some(frame)).await.expect("close");
                // The client answers the Close frame, then the stream ends.
                while let Ok(Some(Ok(_))) = timeout(WAIT, ws.next()).await {}
            }
        }
    }

    /// Waits until the client closes its end.
    async fn expect_closed(&mut self) {
        assert_eq!(self.recv_frame().await, None, "expected the client to close");
    }
}

/// The next event, which must come in time.
async fn next_event(events: &mut tokio::sync::mpsc::UnboundedReceiver<ClientEvent>) -> ClientEvent {
    timeout(WAIT, events.recv()).await.expect("event in time").expect("event stream open")
}

/// If this fails, a transport changes what the client does: the same
/// story (password login, token fallback, ping, kick with its automatic save,
/// the server's close with its reason, no reconnect) must hold on TCP, TLS,
/// `ws://` and `wss://` alike (docs/protocol.md §1, §7).
#[tokio::test]
async fn the_client_story_is_the_same_on_every_transport() {
    let pki = Pki::new();
    for transport in ALL {
        let server = FakeServer::bind(transport, &pki).await;
        let (client, mut wire) = server.connect(pki.client_config()).await;
        let mut events = client.events().expect("events");

        // Password login, then a token login refused: the password again.
        let (login, ()) = tokio::join!(client.login("player01", "secret"), async {
            let request = wire.recv_request("login").await;
            assert_eq!(request["params"], json!({"account": "player01", "password": "secret"}), "{transport}");
            wire.reply(&request, json!({"account": "player01", "token": token('a')})).await;
        });
        assert_eq!(login.expect("login").token, token('a'), "{transport}");
        let (login, ()) = tokio::join!(client.login("player01", "secret"), async {
            let request = wire.recv_request("login").await;
            assert_eq!(request["params"], json!({"token": token('a')}), "{transport}: token first");
            wire.reply_error(&request, 1003, "token invalid").await;
            let request = wire.recv_request("login").await;
            assert_eq!(request["params"]["password"], "secret", "{transport}: then the password");
            wire.reply(&request, json!({"account": "player01", "token": token('b')})).await;
        });
        assert_eq!(login.expect("fallback login").token, token('b'), "{transport}");

        // Ping.
        let (time, ()) = tokio::join!(client.ping(), async {
            let request = wire.recv_request("ping").await;
            wire.reply(&request, json!({"server_time_ms": 1_700_000_000_000_u64})).await;
        });
        assert_eq!(time.expect("ping"), 1_700_000_000_000, "{transport}");

        // Kicked: the client saves its data at once, by itself.
        client.set_save_data(json!({"level": 3}));
        wire.send(json!({"jsonrpc": "2.0", "method": "kicked",
            "params": {"reason": "duplicate_login", "save_deadline_ms": 5000}}))
            .await;
        let save = wire.recv_request("userdata_save").await;
        assert_eq!(save["params"], json!({"token": token('b'), "data": {"level": 3}}), "{transport}");
        wire.reply(&save, json!({"version": 4, "saved_at": "2025-01-02T03:04:05.678Z"})).await;
        match next_event(&mut events).await {
            ClientEvent::Notification(n) => assert_eq!(n.method, "kicked", "{transport}"),
            other => panic!("{transport}: expected kicked, got {other:?}"),
        }
        match next_event(&mut events).await {
            ClientEvent::KickSave(Ok(saved)) => assert_eq!(saved.version, 4, "{transport}"),
            other => panic!("{transport}: expected the automatic save's result, got {other:?}"),
        }

        // The server closes: final, with its reason, and no reconnect.
        wire.disconnect("duplicate_login").await;
        timeout(WAIT, client.closed()).await.expect("client sees the close in time");
        assert_eq!(client.disconnect_reason().as_deref(), Some("duplicate_login"), "{transport}");
        let error = client.ping().await.expect_err("closed");
        assert_eq!(error.close_reason(), Some("duplicate_login"), "{transport}: {error}");
        assert_eq!(client.token(), None, "{transport}: the token goes with the connection");
        assert!(!server.sees_connection_within(Duration::from_millis(200)).await, "{transport}: reconnected");
    }
}

/// If this fails, a request can hang forever on a transport other than TCP,
/// or the server is left with a half-open connection (docs/protocol.md §7).
#[tokio::test]
async fn rpc_timeout_closes_the_connection_on_every_transport() {
    let pki = Pki::new();
    for transport in ALL {
        let server = FakeServer::bind(transport, &pki).await;
        let config = ClientConfig { rpc_timeout: Duration::from_millis(200), ..pki.client_config() };
        let (client, mut wire) = server.connect(config).await;
        let (outcome, ()) = tokio::join!(client.ping(), async {
            wire.recv_request("ping").await;
            wire.expect_closed().await;
        });
        assert!(matches!(outcome, Err(ClientError::Timeout)), "{transport}: {outcome:?}");
        assert!(client.is_closed(), "{transport}");
    }
}

/// If this fails, a WebSocket server sees the client vanish without the
/// Close frame RFC 6455 asks for (docs/protocol.md §1.1: "a Close frame from
/// the client means the client closed first").
#[tokio::test]
async fn closing_a_websocket_client_sends_a_close_frame() {
    let pki = Pki::new();
    for transport in [Transport::Ws, Transport::Wss] {
        let server = FakeServer::bind(transport, &pki).await;
        let (client, wire) = server.connect(pki.client_config()).await;
        let Wire::Ws(mut ws) = wire else { unreachable!("a WebSocket server") };
        client.close();
        let message = timeout(WAIT, ws.next()).await.expect("in time");
        match message {
            Some(Ok(Message::Close(Some(frame)))) => assert_eq!(frame.code, CloseCode::Normal, "{transport}"),
            other => panic!("{transport}: expected a Close frame, got {other:?}"),
        }
        timeout(WAIT, client.closed()).await.expect("closed in time");
    }
}

/// If this fails, the client ignores WebSocket pings (and a server's idle
/// timer may count it dead) or chokes on the one trailing `\n` a message
/// may carry (docs/protocol.md §1.1).
#[tokio::test]
async fn websocket_pings_are_answered_and_a_trailing_newline_is_fine() {
    let pki = Pki::new();
    let server = FakeServer::bind(Transport::Ws, &pki).await;
    let (client, wire) = server.connect(ClientConfig::default()).await;
    let Wire::Ws(mut ws) = wire else { unreachable!("a WebSocket server") };
    ws.send(Message::Ping(b"are you there".to_vec().into())).await.expect("ping");
    let pong = timeout(WAIT, ws.next()).await.expect("pong in time");
    assert!(matches!(&pong, Some(Ok(Message::Pong(data))) if data.as_ref() == b"are you there"), "{pong:?}");

    let (time, ()) = tokio::join!(client.ping(), async {
        let request = loop {
            match timeout(WAIT, ws.next()).await.expect("request in time") {
                Some(Ok(Message::Text(text))) => break serde_json::from_str::<Value>(&text).expect("JSON"),
                other => assert!(matches!(other, Some(Ok(Message::Pong(_)))), "{other:?}"),
            }
        };
        let answer = json!({"jsonrpc": "2.0", "id": request["id"], "result": {"server_time_ms": 7}});
        ws.send(Message::text(format!("{answer}\n"))).await.expect("send");
    });
    assert_eq!(time.expect("ping"), 7);
}

/// If this fails, a server message the protocol rules out (binary, or over
/// the client's size limit) is silently taken for something else
/// (docs/protocol.md §1.1: every server message is one text message).
#[tokio::test]
async fn binary_or_oversized_websocket_messages_close_with_a_protocol_error() {
    let pki = Pki::new();
    let server = FakeServer::bind(Transport::Wss, &pki).await;
    let (client, wire) = server.connect(pki.client_config()).await;
    let Wire::Ws(mut ws) = wire else { unreachable!("a WebSocket server") };
    let (outcome, ()) = tokio::join!(client.ping(), async {
        ws.send(Message::Binary(b"{}".to_vec().into())).await.expect("send");
    });
    match outcome {
        Err(ClientError::Protocol(message)) => assert!(message.contains("binary"), "{message}"),
        other => panic!("expected a protocol error, got {other:?}"),
    }

    let config = ClientConfig { max_line_bytes: 64, ..pki.client_config() };
    let (client, wire) = server.connect(config).await;
    let Wire::Ws(mut ws) = wire else { unreachable!("a WebSocket server") };
    let (outcome, ()) = tokio::join!(client.ping(), async {
        let note = json!({"jsonrpc": "2.0", "method": "news", "params": {"text": "x".repeat(100)}});
        ws.send(Message::text(note.to_string())).await.expect("send");
    });
    match outcome {
        Err(ClientError::Protocol(message)) => assert!(message.contains("over 64 bytes"), "{message}"),
        other => panic!("expected a protocol error, got {other:?}"),
    }
}

/// If this fails, a client trusts a certificate it was not told to trust,
/// or the failure does not say that TLS is what failed (docs/protocol.md §1.2).
#[tokio::test]
async fn an_untrusted_certificate_fails_the_connect_with_a_tls_error() {
    let pki = Pki::new();
    let other = Pki::new();
    // A TLS server that handshakes every connection with `pki`'s certificate.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let acceptor = pki.acceptor.clone();
    let server = tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.expect("accept");
            let acceptor = acceptor.clone();
            tokio::spawn(async move { acceptor.accept(tcp).await.map(drop) });
        }
    });
    for url in [format!("tls://127.0.0.1:{port}"), format!("wss://localhost:{port}/")] {
        // Trusting another CA; and trusting the system roots, which do not
        // hold a fresh self-signed certificate (or are absent: also a TLS error).
        for config in [other.client_config(), ClientConfig::default()] {
            let outcome = timeout(WAIT, Client::connect_with(url.as_str(), config)).await.expect("in time");
            match outcome {
                Err(ClientError::Tls(message)) => {
                    assert!(message.contains("certificate") || message.contains("root"), "{url}: {message}")
                }
                other => panic!("{url}: expected a TLS error, got {other:?}"),
            }
        }
    }
    // And the right CA works on the same server.
    let client = timeout(WAIT, Client::connect_with(format!("tls://localhost:{port}"), pki.client_config()))
        .await
        .expect("in time");
    assert!(client.is_ok(), "{client:?}");
    server.abort();
}

/// If this fails, a `tls://` or `ws://` address pointed at a port that
/// speaks something else hangs or fails with an error that does not say
/// what is wrong.
#[tokio::test]
async fn the_wrong_kind_of_port_fails_clearly() {
    let pki = Pki::new();
    // A plain-text NDJSON server: answers any first bytes with the -32700
    // line (docs/protocol.md §1) and closes.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let plain = async {
        for _ in 0..2 {
            let (mut tcp, _) = listener.accept().await.expect("accept");
            let mut buf = [0_u8; 512];
            let _ = tokio::io::AsyncReadExt::read(&mut tcp, &mut buf).await;
            let answer = r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"parse error"}}"#;
            let _ = tcp.write_all(format!("{answer}\n").as_bytes()).await;
            let _ = tcp.shutdown().await;
        }
    };
    let clients = async {
        let tls = Client::connect_with(format!("tls://127.0.0.1:{port}"), pki.client_config()).await;
        let ws = Client::connect(format!("ws://127.0.0.1:{port}/")).await;
        (tls, ws)
    };
    let ((tls, ws), ()) = timeout(WAIT, async { tokio::join!(clients, plain) }).await.expect("in time");
    assert!(matches!(&tls, Err(ClientError::Tls(m)) if m.contains("is it a TLS port?")), "{tls:?}");
    assert!(matches!(&ws, Err(ClientError::WebSocket(m)) if m.contains("is it a WebSocket port?")), "{ws:?}");

    // An HTTP server that refuses the upgrade.
    let refusing = async {
        let (mut tcp, _) = listener.accept().await.expect("accept");
        let mut buf = [0_u8; 1024];
        let _ = tokio::io::AsyncReadExt::read(&mut tcp, &mut buf).await;
        let _ = tcp.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n").await;
    };
    let (ws, ()) =
        timeout(WAIT, async { tokio::join!(Client::connect(format!("ws://127.0.0.1:{port}/nope")), refusing) })
            .await
            .expect("in time");
    match ws {
        Err(ClientError::WebSocket(message)) => assert!(message.contains("404"), "{message}"),
        other => panic!("expected a WebSocket error, got {other:?}"),
    }
}

/// If this fails, a server that accepts TCP but never finishes the TLS
/// handshake leaves `connect` hanging past its timeout.
#[tokio::test]
async fn a_stalled_handshake_times_out() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let config = ClientConfig { connect_timeout: Duration::from_millis(200), ..ClientConfig::default() };
    for url in [format!("tls://127.0.0.1:{port}"), format!("ws://127.0.0.1:{port}/")] {
        let silent = async { listener.accept().await.expect("accept") };
        let (outcome, _held) =
            timeout(WAIT, async { tokio::join!(Client::connect_with(url.as_str(), config.clone()), silent) })
                .await
                .expect("in time");
        assert!(matches!(outcome, Err(ClientError::Timeout)), "{url}: {outcome:?}");
    }
}

/// If this fails, a typo'd address connects somewhere (or nowhere) instead
/// of saying what is wrong, or a CA file problem surfaces as something else.
#[tokio::test]
async fn bad_addresses_and_ca_files_fail_before_connecting() {
    let pki = Pki::new();
    let server = FakeServer::bind(Transport::Tls, &pki).await;
    let port = server.addr.port();
    for url in [format!("http://127.0.0.1:{port}/"), format!("wss:/127.0.0.1:{port}"), "127.0.0.1".to_owned()] {
        match Client::connect(url.as_str()).await {
            Err(ClientError::Address(message)) => assert!(message.contains("expected HOST:PORT"), "{message}"),
            other => panic!("{url}: expected an address error, got {other:?}"),
        }
    }
    let message = Client::connect(format!("http://127.0.0.1:{port}/")).await.expect_err("bad scheme").to_string();
    assert!(message.contains("unsupported scheme \"http\""), "{message}");

    let missing = ClientConfig { ca_file: Some(pki.ca_file.with_file_name("missing.pem")), ..ClientConfig::default() };
    match Client::connect_with(server.url(), missing).await {
        Err(ClientError::Tls(message)) => assert!(message.contains("missing.pem"), "{message}"),
        other => panic!("expected a TLS error, got {other:?}"),
    }
    let not_pem = pki.ca_file.with_file_name("not.pem");
    std::fs::write(&not_pem, "hello").expect("write");
    let config = ClientConfig { ca_file: Some(not_pem), ..ClientConfig::default() };
    match Client::connect_with(server.url(), config).await {
        Err(ClientError::Tls(message)) => assert!(message.contains("no certificate"), "{message}"),
        other => panic!("expected a TLS error, got {other:?}"),
    }
    assert!(!server.sees_connection_within(Duration::from_millis(100)).await, "nothing was sent");
}

/// If this fails, an [`Endpoint`] value and a socket address no longer
/// reach the same server as the text form.
#[tokio::test]
async fn endpoints_and_socket_addresses_connect_too() {
    let pki = Pki::new();
    let server = FakeServer::bind(Transport::Tcp, &pki).await;
    let endpoint: Endpoint = server.url().parse().expect("endpoint");
    let (client, _wire) = tokio::join!(Client::connect(&endpoint), server.accept());
    assert!(!client.expect("endpoint connects").is_closed());
    let (client, mut wire) = tokio::join!(Client::connect(server.addr), server.accept());
    let client = client.expect("socket address connects");
    let (outcome, ()) = tokio::join!(client.userdata_load(), async {
        let request = wire.recv_request("userdata_load").await;
        wire.reply_error(&request, 1001, "not logged in").await;
    });
    assert_eq!(outcome.expect_err("not logged in").code(), Some(ErrorCode::NotLoggedIn));
}
