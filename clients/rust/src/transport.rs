//! The transports under the one client core: each opens a connection to an
//! [`Endpoint`] and hands [`Connection`](super::connection::Connection) a
//! stream of received frames and a sink of frames to send, so everything
//! above (ids, timeouts, tokens, the kick save) is the same on every transport.
//!
//! ```text
//!  tcp://   TcpStream ─────────────────────────────┬─ lines (LinesCodec, docs/protocol.md §1)
//!  tls://   TcpStream ─ TLS (tokio-rustls) ────────┘
//!  ws://    TcpStream ──────────────────────────┬─ WebSocket text messages (tokio-tungstenite, §1.1)
//!  wss://   TcpStream ─ TLS (tokio-rustls) ─────┘
//! ```
//!
//! TLS is done here once, with rustls and its aws-lc-rs provider, for both `tls://`
//! and `wss://`: the same roots (the system's, or [`ClientConfig::ca_file`])
//! and the same errors (docs/protocol.md §1.2).

use std::io;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, ready};

use futures_util::{Sink, SinkExt, Stream, StreamExt, future};
use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_util::codec::{FramedRead, FramedWrite, LinesCodec, LinesCodecError};

use super::connection::CloseCause;
use super::{ClientConfig, ClientError, Endpoint, Transport};

/// The frames the server sends, as text: lines without their `\n`, or
/// WebSocket text messages. An `Err` ends the connection with that cause;
/// the end of the stream is the server closing ([`CloseCause::Eof`]).
pub(crate) type FrameStream = Pin<Box<dyn Stream<Item = Result<String, CloseCause>> + Send>>;

/// Where the client's frames go, one JSON-RPC message each (the transport
/// adds the `\n` or makes it one text message). `close` ends the stream
/// politely: TLS `close_notify`, a WebSocket Close frame (status 1000).
pub(crate) type FrameSink = Pin<Box<dyn Sink<String, Error = io::Error> + Send>>;

/// Opens a connection to `endpoint` over its transport: TCP connect, the TLS
/// handshake for `tls://` and `wss://`, the WebSocket upgrade for `ws://`
/// and `wss://`. Not bounded in time here; the caller applies
/// [`ClientConfig::connect_timeout`] to the whole.
///
/// # Errors
/// [`ClientError::Io`] when the TCP connection fails; [`ClientError::Tls`]
/// when the trusted roots cannot be loaded or the TLS handshake fails;
/// [`ClientError::WebSocket`] when the upgrade is refused.
pub(crate) async fn open(endpoint: &Endpoint, config: &ClientConfig) -> Result<(FrameStream, FrameSink), ClientError> {
    // Roots before the socket: a bad CA file fails without touching the server.
    let tls = match endpoint.transport().is_tls() {
        true => Some(tls_connector(config).await?),
        false => None,
    };
    let tcp = TcpStream::connect((endpoint.host(), endpoint.port())).await?;
    tcp.set_nodelay(true)?;
    match (endpoint.transport(), tls) {
        (Transport::Tls, Some(tls)) => Ok(lines(tokio::io::split(tls_handshake(&tls, endpoint, tcp).await?), config)),
        (Transport::Wss, Some(tls)) => websocket(tls_handshake(&tls, endpoint, tcp).await?, endpoint, config).await,
        (Transport::Ws, _) => websocket(tcp, endpoint, config).await,
        _ => Ok(lines(tcp.into_split(), config)),
    }
}

/// Line framing (docs/protocol.md §1) over a read half and a write half.
fn lines<R, W>((read, write): (R, W), config: &ClientConfig) -> (FrameStream, FrameSink)
where
    R: AsyncRead + Send + 'static,
    W: AsyncWrite + Send + 'static,
{
    let max = config.max_line_bytes;
    let frames = FramedRead::new(read, LinesCodec::new_with_max_length(max)).map(move |frame| {
        frame.map_err(|error| match error {
            LinesCodecError::MaxLineLengthExceeded => {
                CloseCause::Protocol(format!("server sent a line over {max} bytes"))
            }
            LinesCodecError::Io(error) => CloseCause::from_io(error),
        })
    });
    let sink = SinkExt::<String>::sink_map_err(FramedWrite::new(write, LinesCodec::new()), |error| match error {
        LinesCodecError::Io(error) => error,
        LinesCodecError::MaxLineLengthExceeded => io::Error::other("line too long"),
    });
    (Box::pin(frames), Box::pin(sink))
}

/// The WebSocket upgrade (RFC 6455) on `stream`, then one frame per text
/// message (docs/protocol.md §1.1). Pings are answered by tungstenite as it
/// reads; a Close frame or a binary message ends the connection.
async fn websocket<S>(
    stream: S,
    endpoint: &Endpoint,
    config: &ClientConfig,
) -> Result<(FrameStream, FrameSink), ClientError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let max = config.max_line_bytes;
    // One trailing `\n` is allowed on a message (docs/protocol.md §1.1).
    let limit = max.saturating_add(1);
    let ws_config = WebSocketConfig::default().max_message_size(Some(limit)).max_frame_size(Some(limit));
    let (socket, _response) =
        tokio_tungstenite::client_async_with_config(endpoint.websocket_url(), stream, Some(ws_config))
            .await
            .map_err(|error| upgrade_error(error, endpoint))?;
    let (sink, stream) = socket.split();
    let frames = stream.filter_map(move |message| {
        future::ready(match message {
            Ok(Message::Text(text)) => Some(Ok(text.as_str().to_owned())),
            Ok(Message::Binary(_)) => Some(Err(CloseCause::Protocol(
                "server sent a binary message (every server message is text, docs/protocol.md §1.1)".to_owned(),
            ))),
            Ok(Message::Close(_)) => Some(Err(CloseCause::Eof)),
            Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) => None,
            Err(error) => Some(Err(read_error(error, max))),
        })
    });
    Ok((Box::pin(frames), Box::pin(WsSink { inner: sink, close_sent: false })))
}

/// The WebSocket side of a [`FrameSink`]: each frame one text message; the
/// close sends a Close frame with status 1000 (RFC 6455 §7.4.1, "normal
/// closure") before it flushes.
struct WsSink<S> {
    /// The write half of the WebSocket.
    inner: futures_util::stream::SplitSink<tokio_tungstenite::WebSocketStream<S>, Message>,
    /// Whether the Close frame is queued.
    close_sent: bool,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Sink<String> for WsSink<S> {
    type Error = io::Error;

    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), io::Error>> {
        self.inner.poll_ready_unpin(cx).map_err(write_error)
    }

    fn start_send(mut self: Pin<&mut Self>, line: String) -> Result<(), io::Error> {
        self.inner.start_send_unpin(Message::text(line)).map_err(write_error)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), io::Error>> {
        self.inner.poll_flush_unpin(cx).map_err(write_error)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), io::Error>> {
        if !self.close_sent {
            ready!(self.inner.poll_ready_unpin(cx)).map_err(write_error)?;
            let frame = CloseFrame { code: CloseCode::Normal, reason: "".into() };
            self.inner.start_send_unpin(Message::Close(Some(frame))).map_err(write_error)?;
            self.close_sent = true;
        }
        self.inner.poll_close_unpin(cx).map_err(write_error)
    }
}

/// Why reading a WebSocket ended, as a [`CloseCause`].
fn read_error(error: tungstenite::Error, max: usize) -> CloseCause {
    use tungstenite::error::ProtocolError;
    match error {
        tungstenite::Error::ConnectionClosed
        | tungstenite::Error::AlreadyClosed
        | tungstenite::Error::Protocol(ProtocolError::ResetWithoutClosingHandshake) => CloseCause::Eof,
        tungstenite::Error::Io(error) => CloseCause::from_io(error),
        tungstenite::Error::Capacity(_) => CloseCause::Protocol(format!("server sent a message over {max} bytes")),
        tungstenite::Error::Utf8(error) => CloseCause::Protocol(format!("server sent invalid UTF-8: {error}")),
        other => CloseCause::Protocol(format!("WebSocket error: {other}")),
    }
}

/// A WebSocket write error as the I/O error the writer task handles (a
/// closed connection reads as a closed peer).
fn write_error(error: tungstenite::Error) -> io::Error {
    match error {
        tungstenite::Error::Io(error) => error,
        tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed => {
            io::Error::new(io::ErrorKind::BrokenPipe, "WebSocket closed")
        }
        other => io::Error::other(other.to_string()),
    }
}

/// A failed upgrade as a [`ClientError`].
fn upgrade_error(error: tungstenite::Error, endpoint: &Endpoint) -> ClientError {
    match error {
        tungstenite::Error::Io(error) if error.kind() == io::ErrorKind::UnexpectedEof => ClientError::WebSocket(
            format!("{endpoint} closed the connection during the WebSocket upgrade (is it a WebSocket port?)"),
        ),
        tungstenite::Error::Io(error) => ClientError::Io(error),
        tungstenite::Error::Http(response) => {
            ClientError::WebSocket(format!("{endpoint} refused the WebSocket upgrade with HTTP {}", response.status()))
        }
        other => ClientError::WebSocket(format!(
            "WebSocket upgrade with {endpoint} failed: {other} (is it a WebSocket port?)"
        )),
    }
}

/// The TLS handshake on `tcp`, checking the certificate against the host.
async fn tls_handshake(
    connector: &TlsConnector,
    endpoint: &Endpoint,
    tcp: TcpStream,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, ClientError> {
    let name = ServerName::try_from(endpoint.host().to_owned())
        .map_err(|error| ClientError::Tls(format!("{:?} is not a valid TLS server name: {error}", endpoint.host())))?;
    connector.connect(name, tcp).await.map_err(|error| {
        let tls = error.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>());
        if matches!(tls, Some(rustls::Error::InvalidMessage(_))) {
            ClientError::Tls(format!("TLS handshake with {endpoint} failed: {error} (is it a TLS port?)"))
        } else if tls.is_some() || error.kind() == io::ErrorKind::InvalidData {
            ClientError::Tls(format!("TLS handshake with {endpoint} failed: {error}"))
        } else if matches!(error.kind(), io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset) {
            ClientError::Tls(format!("{endpoint} closed the connection during the TLS handshake (is it a TLS port?)"))
        } else {
            ClientError::Io(error)
        }
    })
}

/// The TLS client configuration: roots from [`ClientConfig::ca_file`] when
/// set, the system's otherwise (loaded once per process).
async fn tls_connector(config: &ClientConfig) -> Result<TlsConnector, ClientError> {
    static SYSTEM: OnceLock<Result<Arc<rustls::ClientConfig>, String>> = OnceLock::new();
    let tls = match &config.ca_file {
        Some(path) => {
            let path = path.clone();
            let roots = tokio::task::spawn_blocking(move || ca_file_roots(&path)).await.map_err(join_error)??;
            tls_config(roots)?
        }
        None => match SYSTEM.get() {
            Some(tls) => tls.clone().map_err(ClientError::Tls)?,
            None => {
                // Reading the system store blocks; two first connects may both
                // read it, and the first result is kept.
                let load = || system_roots().and_then(tls_config).map_err(tls_message);
                let tls = tokio::task::spawn_blocking(load).await.map_err(join_error)?;
                SYSTEM.get_or_init(|| tls).clone().map_err(ClientError::Tls)?
            }
        },
    };
    Ok(TlsConnector::from(tls))
}

/// TLS 1.2 and 1.3 with rustls' aws-lc-rs provider, named explicitly so that no
/// process-wide default provider is needed.
fn tls_config(roots: RootCertStore) -> Result<Arc<rustls::ClientConfig>, ClientError> {
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|error| ClientError::Tls(format!("TLS configuration: {error}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The certificates of a PEM file as roots.
fn ca_file_roots(path: &std::path::Path) -> Result<RootCertStore, ClientError> {
    let shown = path.display();
    let pem =
        std::fs::read(path).map_err(|error| ClientError::Tls(format!("cannot read the CA file {shown}: {error}")))?;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|error| ClientError::Tls(format!("the CA file {shown} is not valid PEM: {error}")))?;
        roots.add(cert).map_err(|error| ClientError::Tls(format!("a certificate in the CA file {shown}: {error}")))?;
    }
    if roots.is_empty() {
        return Err(ClientError::Tls(format!("the CA file {shown} has no certificate (expected PEM)")));
    }
    Ok(roots)
}

/// The operating system's trusted roots (rustls-native-certs).
fn system_roots() -> Result<RootCertStore, ClientError> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    let (_added, _unusable) = roots.add_parsable_certificates(found.certs);
    if roots.is_empty() {
        let why = found.errors.first().map(|error| format!(": {error}")).unwrap_or_default();
        return Err(ClientError::Tls(format!("no system root certificates found{why}; give a CA file")));
    }
    Ok(roots)
}

/// The text of a [`ClientError::Tls`] (for the cached system roots).
fn tls_message(error: ClientError) -> String {
    match error {
        ClientError::Tls(message) => message,
        other => other.to_string(),
    }
}

/// A blocking task that panicked or was cancelled.
fn join_error(error: tokio::task::JoinError) -> ClientError {
    ClientError::Tls(format!("loading the TLS roots failed: {error}"))
}
