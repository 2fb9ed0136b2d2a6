//! The reference client (`portcullis_client`) against small fake servers:
//! framing, id matching, the RPC timeout, token fallback, kick auto-save and
//! close handling of docs/protocol.md §2, §5–§7.
//!
//! Every wait is bounded by [`WAIT`], so a hang fails the test instead of
//! stalling it; nothing sleeps to let things happen.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use portcullis_client::{Client, ClientConfig, ClientError, ClientEvent, Notification};
use portcullis_protocol::ErrorCode;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::time::timeout;

/// The longest any single wait may take before the test fails.
const WAIT: Duration = Duration::from_secs(5);

/// A 64-hex-character token, as the server issues them (docs/protocol.md §4).
fn token(fill: char) -> String {
    std::iter::repeat_n(fill, 64).collect()
}

/// A listener on 127.0.0.1 standing in for the server.
struct FakeServer {
    listener: TcpListener,
    addr: SocketAddr,
}

impl FakeServer {
    async fn bind() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        Self { listener, addr }
    }

    /// Connects a client with `config` and accepts its connection.
    async fn connect(&self, config: ClientConfig) -> (Client, FakeConn) {
        let (client, accepted) = tokio::join!(Client::connect_with(self.addr, config), self.listener.accept());
        let client = client.expect("client connects");
        let (stream, _) = accepted.expect("accept");
        (client, FakeConn::new(stream))
    }

    /// Whether another connection arrives within `wait`.
    async fn sees_connection_within(&self, wait: Duration) -> bool {
        timeout(wait, self.listener.accept()).await.is_ok()
    }
}

/// The server side of one accepted connection.
struct FakeConn {
    lines: Lines<BufReader<OwnedReadHalf>>,
    write: OwnedWriteHalf,
}

impl FakeConn {
    fn new(stream: TcpStream) -> Self {
        let (read, write) = stream.into_split();
        Self { lines: BufReader::new(read).lines(), write }
    }

    /// The next line the client sent, raw.
    async fn recv_line(&mut self) -> String {
        timeout(WAIT, self.lines.next_line())
            .await
            .expect("client sends a line in time")
            .expect("read")
            .expect("client did not close")
    }

    /// The next message the client sent, checked to be a JSON-RPC 2.0 object.
    async fn recv(&mut self) -> Value {
        let line = self.recv_line().await;
        let message: Value = serde_json::from_str(&line).expect("client sends JSON");
        assert_eq!(message["jsonrpc"], "2.0", "{line}");
        message
    }

    /// The next message, checked to be a request for `method`.
    async fn recv_request(&mut self, method: &str) -> Value {
        let request = self.recv().await;
        assert_eq!(request["method"], method, "{request}");
        assert!(request["id"].is_u64(), "integer id: {request}");
        request
    }

    async fn send(&mut self, message: Value) {
        let line = format!("{message}\n");
        self.write.write_all(line.as_bytes()).await.expect("write");
    }

    async fn reply(&mut self, request: &Value, result: Value) {
        self.send(json!({"jsonrpc": "2.0", "id": request["id"], "result": result})).await;
    }

    async fn reply_error(&mut self, request: &Value, code: i64, message: &str) {
        let error = json!({"code": code, "message": message});
        self.send(json!({"jsonrpc": "2.0", "id": request["id"], "error": error})).await;
    }

    /// Waits until the client closes its end.
    async fn expect_eof(&mut self) {
        let next = timeout(WAIT, self.lines.next_line()).await.expect("client closes in time");
        assert!(matches!(next, Ok(None)), "expected EOF, got {next:?}");
    }

    /// Answers the next `login` with a token for `account`.
    async fn accept_login(&mut self, account: &str, token: &str) {
        let request = self.recv_request("login").await;
        self.reply(&request, json!({"account": account, "token": token})).await;
    }
}

/// The next event, which must come in time.
async fn next_event(events: &mut UnboundedReceiver<ClientEvent>) -> ClientEvent {
    timeout(WAIT, events.recv()).await.expect("event in time").expect("event stream open")
}

/// The next event, which must be a notification.
async fn next_notification(events: &mut UnboundedReceiver<ClientEvent>) -> Notification {
    match next_event(events).await {
        ClientEvent::Notification(notification) => notification,
        other => panic!("expected a notification, got {other:?}"),
    }
}

/// Waits until the event stream ends (the connection closed).
async fn expect_events_end(events: &mut UnboundedReceiver<ClientEvent>) {
    let next = timeout(WAIT, events.recv()).await.expect("stream ends in time");
    assert!(next.is_none(), "expected the end of the event stream, got {next:?}");
}

/// Connects and logs in with `token`.
async fn logged_in(server: &FakeServer, token: &str) -> (Client, FakeConn) {
    let (client, mut conn) = server.connect(ClientConfig::default()).await;
    let (login, ()) = tokio::join!(client.login("player01", "secret"), conn.accept_login("player01", token));
    assert_eq!(login.expect("login").token, token);
    (client, conn)
}

/// If this fails, a load generator with several calls in flight on one
/// connection gets answers crossed between its calls.
#[tokio::test]
async fn responses_are_matched_by_id_in_any_order() {
    let server = FakeServer::bind().await;
    let (client, mut conn) = server.connect(ClientConfig::default()).await;

    let fake = async {
        let mut requests = Vec::new();
        for _ in 0..3 {
            requests.push(conn.recv_request("echo").await);
        }
        let ids: Vec<u64> = requests.iter().filter_map(|r| r["id"].as_u64()).collect();
        let mut distinct = ids.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), 3, "distinct ids: {ids:?}");
        for request in requests.iter().rev() {
            conn.reply(request, json!({"n": request["params"]["n"]})).await;
        }
    };
    let calls = async {
        tokio::join!(
            client.call("echo", json!({"n": 0})),
            client.call("echo", json!({"n": 1})),
            client.call("echo", json!({"n": 2})),
        )
    };
    let ((a, b, c), ()) = timeout(WAIT, async { tokio::join!(calls, fake) }).await.expect("in time");
    assert_eq!(a.expect("call 0"), json!({"n": 0}));
    assert_eq!(b.expect("call 1"), json!({"n": 1}));
    assert_eq!(c.expect("call 2"), json!({"n": 2}));
}

/// If this fails, a client talking to a hung server waits forever instead of
/// giving up after `rpc_timeout` (docs/protocol.md §7).
#[tokio::test]
async fn rpc_timeout_closes_the_connection_and_fails_every_pending_call() {
    let server = FakeServer::bind().await;
    let config = ClientConfig { rpc_timeout: Duration::from_millis(200), ..Default::default() };
    let (client, mut conn) = server.connect(config).await;

    let fake = async {
        conn.recv_request("ping").await;
        conn.recv_request("slow").await;
        // Never answers; the client must close.
        conn.expect_eof().await;
    };
    let ((ping, slow), ()) = timeout(WAIT, async {
        tokio::join!(async { tokio::join!(client.ping(), client.call("slow", json!({}))) }, fake)
    })
    .await
    .expect("in time");
    assert!(matches!(ping, Err(ClientError::Timeout)), "{ping:?}");
    assert!(matches!(slow, Err(ClientError::Timeout)), "{slow:?}");
    assert!(client.is_closed());
    let later = client.ping().await;
    assert!(matches!(later, Err(ClientError::Closed { reason: None })), "{later:?}");
    timeout(WAIT, client.closed()).await.expect("closed resolves");
}

/// If this fails, a client whose token was refused cannot log in again, or
/// logs in without trying its token first (docs/protocol.md §7).
#[tokio::test]
async fn login_falls_back_to_the_password_when_the_token_is_refused() {
    let server = FakeServer::bind().await;
    let old = token('a');
    let new = token('b');
    let (client, mut conn) = logged_in(&server, &old).await;
    assert_eq!(client.token(), Some(old.clone()));

    let fake = async {
        let by_token = conn.recv_request("login").await;
        assert_eq!(by_token["params"], json!({"token": old}));
        conn.reply_error(&by_token, 1003, "token invalid").await;
        let by_password = conn.recv_request("login").await;
        assert_eq!(by_password["params"], json!({"account": "player01", "password": "secret"}));
        conn.reply(&by_password, json!({"account": "Player01", "token": new})).await;
    };
    let (login, ()) =
        timeout(WAIT, async { tokio::join!(client.login("player01", "secret"), fake) }).await.expect("in time");
    let login = login.expect("login");
    assert_eq!(login.account, "Player01");
    assert_eq!(login.token, new);
    assert_eq!(client.token(), Some(new.clone()));

    // The new token is used by the next login, which the server accepts.
    let fake = async {
        let by_token = conn.recv_request("login").await;
        assert_eq!(by_token["params"], json!({"token": new}));
        conn.reply(&by_token, json!({"account": "Player01", "token": new})).await;
    };
    let (login, ()) =
        timeout(WAIT, async { tokio::join!(client.login("PLAYER01", "secret"), fake) }).await.expect("in time");
    assert_eq!(login.expect("token login").token, new);
}

/// If this fails, a client closed by the server (here: `server_full`) hides
/// why, keeps a dead token, or silently reconnects (docs/protocol.md §5, §7).
#[tokio::test]
async fn server_close_is_final_with_its_reason() {
    let server = FakeServer::bind().await;
    let (client, mut conn) = logged_in(&server, &token('c')).await;
    let mut events = client.events().expect("events taken once");
    assert!(client.events().is_none());

    let fake = async move {
        conn.recv_request("ping").await;
        conn.send(json!({"jsonrpc": "2.0", "method": "disconnected", "params": {"reason": "server_full"}})).await;
        drop(conn);
    };
    let (ping, ()) = timeout(WAIT, async { tokio::join!(client.ping(), fake) }).await.expect("in time");
    match ping {
        Err(ClientError::Closed { reason }) => assert_eq!(reason.as_deref(), Some("server_full")),
        other => panic!("expected Closed, got {other:?}"),
    }
    timeout(WAIT, client.closed()).await.expect("closed resolves");
    assert!(client.is_closed());
    assert_eq!(client.token(), None);
    assert_eq!(client.disconnect_reason().as_deref(), Some("server_full"));
    let later = client.ping().await.expect_err("closed");
    assert_eq!(later.close_reason(), Some("server_full"));

    let disconnected = next_notification(&mut events).await;
    assert_eq!(disconnected.method, "disconnected");
    assert_eq!(disconnected.reason(), Some("server_full"));
    expect_events_end(&mut events).await;

    assert!(!server.sees_connection_within(Duration::from_millis(300)).await, "reconnected");
}

/// If this fails, a player kicked by a login elsewhere loses the progress
/// made since the last save (docs/protocol.md §6 step 4).
#[tokio::test]
async fn kicked_client_saves_its_data_at_once() {
    let server = FakeServer::bind().await;
    let live = token('d');
    let (client, mut conn) = logged_in(&server, &live).await;
    let mut events = client.events().expect("events");
    client.set_save_data(json!({"level": 3, "items": ["sword"]}));

    conn.send(json!({"jsonrpc": "2.0", "method": "kicked",
        "params": {"reason": "duplicate_login", "save_deadline_ms": 5000}}))
        .await;
    let save = conn.recv_request("userdata_save").await;
    assert_eq!(save["params"], json!({"token": live, "data": {"level": 3, "items": ["sword"]}}));

    let kicked = next_notification(&mut events).await;
    assert_eq!(kicked.method, "kicked");
    assert_eq!(kicked.reason(), Some("duplicate_login"));
    assert_eq!(kicked.params["save_deadline_ms"], 5000);

    conn.reply(&save, json!({"version": 7, "saved_at": "2025-01-02T03:04:05.678Z"})).await;
    match next_event(&mut events).await {
        ClientEvent::KickSave(Ok(saved)) => {
            assert_eq!(saved.version, 7);
            assert_eq!(saved.saved_at, "2025-01-02T03:04:05.678Z");
        }
        other => panic!("expected the save's outcome, got {other:?}"),
    }

    conn.send(json!({"jsonrpc": "2.0", "method": "disconnected",
        "params": {"reason": "duplicate_login"}}))
        .await;
    drop(conn);
    assert_eq!(next_notification(&mut events).await.reason(), Some("duplicate_login"));
    expect_events_end(&mut events).await;
    assert_eq!(client.token(), None);
}

/// If this fails, a game that computes its save data on demand saves stale
/// data when kicked, or a client with nothing to save sends a bogus save.
#[tokio::test]
async fn kick_save_uses_the_provider_or_sends_nothing() {
    let server = FakeServer::bind().await;
    let live = token('e');
    let (client, mut conn) = logged_in(&server, &live).await;
    let mut events = client.events().expect("events");
    let kicked = json!({"jsonrpc": "2.0", "method": "kicked",
        "params": {"reason": "admin", "save_deadline_ms": 5000}});

    client.set_save_provider(Arc::new(|| json!({"score": 42})));
    conn.send(kicked.clone()).await;
    let save = conn.recv_request("userdata_save").await;
    assert_eq!(save["params"], json!({"token": live, "data": {"score": 42}}));
    assert_eq!(next_notification(&mut events).await.method, "kicked");
    conn.reply_error(&save, -32602, "invalid params").await;
    match next_event(&mut events).await {
        ClientEvent::KickSave(Err(error)) => {
            assert_eq!(error.code(), Some(ErrorCode::InvalidParams))
        }
        other => panic!("expected the failed save, got {other:?}"),
    }

    // Nothing to save: the next line the server sees is the application's ping.
    client.clear_save_data();
    conn.send(kicked).await;
    assert_eq!(next_notification(&mut events).await.method, "kicked");
    let fake = async {
        let ping = conn.recv_request("ping").await;
        conn.reply(&ping, json!({"server_time_ms": 1_700_000_000_000_u64})).await;
    };
    let (time, ()) = timeout(WAIT, async { tokio::join!(client.ping(), fake) }).await.expect("in time");
    assert_eq!(time.expect("ping"), 1_700_000_000_000);
}

/// If this fails, applications cannot tell server errors apart by code
/// (docs/protocol.md §3), or auth methods send a token the client does not hold.
#[tokio::test]
async fn server_errors_keep_their_code() {
    let server = FakeServer::bind().await;
    let (client, mut conn) = server.connect(ClientConfig::default()).await;
    assert_eq!(client.token(), None);

    let fake = async {
        let load = conn.recv_request("userdata_load").await;
        assert_eq!(load["params"], json!({}), "no token held, none sent");
        conn.reply_error(&load, 1001, "not logged in").await;
        let save = conn.recv_request("userdata_save").await;
        assert_eq!(save["params"], json!({"data": []}));
        let error = json!({"code": -32602, "message": "invalid params", "data": {"field": "data"}});
        conn.send(json!({"jsonrpc": "2.0", "id": save["id"], "error": error})).await;
        let unknown = conn.recv_request("teleport").await;
        conn.reply_error(&unknown, 4242, "game error").await;
    };
    let calls = async {
        (
            client.userdata_load().await,
            client.userdata_save(json!([])).await,
            client.call("teleport", json!({"x": 1})).await,
        )
    };
    let ((load, save, game), ()) = timeout(WAIT, async { tokio::join!(calls, fake) }).await.expect("in time");
    match load {
        Err(ClientError::Rpc { code, message, data }) => {
            assert_eq!(code, ErrorCode::NotLoggedIn);
            assert_eq!(message, "not logged in");
            assert_eq!(data, None);
        }
        other => panic!("expected NOT_LOGGED_IN, got {other:?}"),
    }
    match save {
        Err(ClientError::Rpc { code: ErrorCode::InvalidParams, data, .. }) => {
            assert_eq!(data, Some(json!({"field": "data"})));
        }
        other => panic!("expected INVALID_PARAMS, got {other:?}"),
    }
    assert_eq!(game.expect_err("game error").code(), Some(ErrorCode::Other(4242)));
    assert!(!client.is_closed(), "errors do not close the connection");
}

/// If this fails, logging out leaves a dead token in the client or the
/// server cannot tell whose session is meant (docs/protocol.md §4 `logout`).
#[tokio::test]
async fn logout_sends_the_held_token_and_forgets_it() {
    let server = FakeServer::bind().await;
    let live = token('f');
    let (client, mut conn) = logged_in(&server, &live).await;

    let fake = async {
        let logout = conn.recv_request("logout").await;
        assert_eq!(logout["params"], json!({"token": live}));
        conn.reply(&logout, json!({})).await;
    };
    let (logout, ()) = timeout(WAIT, async { tokio::join!(client.logout(), fake) }).await.expect("in time");
    logout.expect("logout");
    assert_eq!(client.token(), None);
    assert!(!client.is_closed());
}

/// If this fails, a test cannot observe the server's answer to malformed
/// input (docs/protocol.md §1), because the client drops or chokes on it.
#[tokio::test]
async fn answers_to_raw_lines_arrive_as_unmatched_events() {
    let server = FakeServer::bind().await;
    let (client, mut conn) = server.connect(ClientConfig::default()).await;
    let mut events = client.events().expect("events");

    client.send_raw_line("{oops").expect("queued");
    assert_eq!(conn.recv_line().await, "{oops");
    let parse_error = json!({"jsonrpc": "2.0", "id": null,
        "error": {"code": -32700, "message": "parse error"}});
    conn.send(parse_error.clone()).await;
    match next_event(&mut events).await {
        ClientEvent::Unmatched(message) => assert_eq!(message, parse_error),
        other => panic!("expected the unmatched answer, got {other:?}"),
    }

    client.notify("chat", json!({"text": "hi"})).expect("queued");
    assert_eq!(conn.recv().await, json!({"jsonrpc": "2.0", "method": "chat", "params": {"text": "hi"}}));
}

/// If this fails, a client that meets a broken server keeps using it instead
/// of failing its calls.
#[tokio::test]
async fn garbage_from_the_server_closes_with_a_protocol_error() {
    let server = FakeServer::bind().await;
    let (client, mut conn) = server.connect(ClientConfig::default()).await;

    let fake = async {
        conn.recv_request("ping").await;
        conn.write.write_all(b"this is not json\n").await.expect("write");
        conn.expect_eof().await;
    };
    let (ping, ()) = timeout(WAIT, async { tokio::join!(client.ping(), fake) }).await.expect("in time");
    assert!(matches!(ping, Err(ClientError::Protocol(_))), "{ping:?}");
    assert!(client.is_closed());
}

/// If this fails, `disconnect` returns before the server has closed, or
/// hides the server's reason (docs/protocol.md §4 `disconnect`).
#[tokio::test]
async fn disconnect_waits_for_the_server_to_close() {
    let server = FakeServer::bind().await;
    let (client, mut conn) = server.connect(ClientConfig::default()).await;

    let fake = async move {
        let request = conn.recv_request("disconnect").await;
        conn.reply(&request, json!({})).await;
        conn.send(json!({"jsonrpc": "2.0", "method": "disconnected",
            "params": {"reason": "client_request"}}))
            .await;
        drop(conn);
    };
    let (reason, ()) = timeout(WAIT, async { tokio::join!(client.disconnect(), fake) }).await.expect("in time");
    assert_eq!(reason.expect("disconnect").as_deref(), Some("client_request"));
    assert!(client.is_closed());
    assert!(!server.sees_connection_within(Duration::from_millis(100)).await, "reconnected");
}

/// If this fails, dropped clients leak open sockets on the server.
#[tokio::test]
async fn dropping_the_last_handle_closes_the_socket() {
    let server = FakeServer::bind().await;
    let (client, mut conn) = server.connect(ClientConfig::default()).await;
    let clone = client.clone();
    drop(client);
    let fake = async {
        let ping = conn.recv_request("ping").await;
        conn.reply(&ping, json!({"server_time_ms": 5})).await;
    };
    let (time, ()) = timeout(WAIT, async { tokio::join!(clone.ping(), fake) }).await.expect("in time");
    assert_eq!(time.expect("a clone keeps the connection"), 5);
    drop(clone);
    conn.expect_eof().await;
}
