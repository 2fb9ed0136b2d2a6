//! The little HTTP that a WebSocket port speaks (docs/protocol.md §1.1):
//! the request head, the upgrade, and fixed pages for plain `GET`s.

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Longest request head read (request line and headers); a longer one is
/// not answered.
pub(crate) const MAX_HEAD_BYTES: usize = 8192;

/// A fixed page served on the WebSocket port to a plain HTTP `GET` of its
/// path (docs/protocol.md §1.1); every other path is `404`. Given to
/// [`NetPlugin::http_pages`](crate::NetPlugin::http_pages) by the embedder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpPage {
    /// The path, with its leading `/` (a query string is ignored when matching).
    pub path: String,
    /// The `Content-Type` header, e.g. `text/html; charset=utf-8`.
    pub content_type: String,
    /// The body.
    pub body: Bytes,
}

impl HttpPage {
    /// A page at `path` with that content type and body.
    pub fn new(path: impl Into<String>, content_type: impl Into<String>, body: impl Into<Bytes>) -> Self {
        Self { path: path.into(), content_type: content_type.into(), body: body.into() }
    }
}

/// What a request head asked for.
pub(crate) enum Head {
    /// A WebSocket upgrade with this `Sec-WebSocket-Key`; `rest` are bytes
    /// read after the head.
    Upgrade { key: String, rest: Vec<u8> },
    /// A plain request.
    Plain { method: String, path: String },
}

/// Reads one request head (up to [`MAX_HEAD_BYTES`]); `None` when the peer
/// closed, sent too much or sent no HTTP.
pub(crate) async fn read_head<S: AsyncRead + Unpin>(stream: &mut S) -> Option<Head> {
    let mut buf = Vec::with_capacity(1024);
    loop {
        let mut chunk = [0u8; 1024];
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut request = httparse::Request::new(&mut headers);
        match request.parse(&buf) {
            Ok(httparse::Status::Complete(len)) => return Some(classify(&request, buf[len..].to_vec())),
            Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD_BYTES => {}
            _ => return None,
        }
    }
}

fn classify(request: &httparse::Request<'_, '_>, rest: Vec<u8>) -> Head {
    let header = |name: &str| {
        request
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .and_then(|h| std::str::from_utf8(h.value).ok())
    };
    let upgrade = header("upgrade").is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let connection_upgrade =
        header("connection").is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("upgrade")));
    let method = request.method.unwrap_or("").to_owned();
    if upgrade
        && connection_upgrade
        && method == "GET"
        && let Some(key) = header("sec-websocket-key")
    {
        return Head::Upgrade { key: key.trim().to_owned(), rest };
    }
    let path = request.path.unwrap_or("/").split('?').next().unwrap_or("/").to_owned();
    Head::Plain { method, path }
}

/// Writes the `101 Switching Protocols` answer to an upgrade.
pub(crate) async fn accept_upgrade<S: AsyncWrite + Unpin>(stream: &mut S, key: &str) -> std::io::Result<()> {
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    let response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
    );
    stream.write_all(response.as_bytes()).await?;
    stream.flush().await
}

/// Answers a plain request: the page of its path, `404` for any other path,
/// `405` for a method other than `GET`/`HEAD`; then closes.
pub(crate) async fn answer_plain<S: AsyncWrite + Unpin>(stream: &mut S, pages: &[HttpPage], method: &str, path: &str) {
    let page = pages.iter().find(|p| p.path == path);
    let (status, content_type, body): (&str, &str, &[u8]) = match (method, page) {
        ("GET" | "HEAD", Some(page)) => ("200 OK", &page.content_type, &page.body),
        ("GET" | "HEAD", None) => ("404 Not Found", "text/plain; charset=utf-8", b"not found\n"),
        _ => ("405 Method Not Allowed", "text/plain; charset=utf-8", b"method not allowed\n"),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nCache-Control: no-cache\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let mut bytes = head.into_bytes();
    if method != "HEAD" {
        bytes.extend_from_slice(body);
    }
    if stream.write_all(&bytes).await.is_ok() {
        let _ = stream.flush().await;
        let _ = stream.shutdown().await;
    }
}
