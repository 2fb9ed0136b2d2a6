//! The WebSocket transport (docs/protocol.md §1.1): the HTTP request head,
//! fixed pages for plain `GET`s, the upgrade, then one frame per text message.
//! tungstenite reassembles fragments, bounds the whole message and frame
//! size, and answers Ping with Pong.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use crate::bridge::{NetBridge, NetEvent};
use crate::codec::is_blank;
use crate::connection::{CloseCause, ConnectionId, Link, Outgoing, SharedState};
use crate::goodbye::Goodbye;
use crate::http::{self, Head, HttpPage};
use crate::listener::{LINGER, ListenerSettings, WriteEnd, drive, open_link};

/// tungstenite's limits for a listener whose frames are at most
/// `max_frame_bytes`: one more byte for the trailing `\n` a message may
/// carry; small buffers, so that an idle connection holds little memory.
fn config(max_frame_bytes: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(16 * 1024)
        .max_message_size(Some(max_frame_bytes.saturating_add(1)))
        .max_frame_size(Some(max_frame_bytes.saturating_add(1)))
}

/// Reads the request head before `deadline`: a plain request is answered and
/// closed (`None`), an upgrade is accepted and becomes a WebSocket.
async fn upgrade<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    pages: &[HttpPage],
    deadline: Instant,
    max_frame_bytes: usize,
) -> Option<WebSocketStream<S>> {
    let head = tokio::time::timeout_at(deadline, http::read_head(&mut stream)).await.ok()??;
    match head {
        Head::Plain { method, path } => {
            let _ = tokio::time::timeout(LINGER, http::answer_plain(&mut stream, pages, &method, &path)).await;
            None
        }
        Head::Upgrade { key, rest } => {
            tokio::time::timeout_at(deadline, http::accept_upgrade(&mut stream, &key)).await.ok()?.ok()?;
            Some(WebSocketStream::from_partially_read(stream, rest, Role::Server, Some(config(max_frame_bytes))).await)
        }
    }
}

/// Serves one WebSocket connection; `None` when it never became one (a
/// plain HTTP request, a head that did not arrive in time).
pub(crate) async fn serve<S: AsyncRead + AsyncWrite + Unpin + Send>(
    stream: S,
    id: ConnectionId,
    peer: SocketAddr,
    bridge: &NetBridge,
    settings: &ListenerSettings,
    pages: &Arc<Vec<HttpPage>>,
    deadline: Instant,
) -> Option<CloseCause> {
    let ws = upgrade(stream, pages, deadline, settings.max_frame_bytes).await?;
    let transport = settings.transport();
    let (mut rx, abort, shared) = open_link(id, peer, bridge, settings, deadline, |shared, outbound, handshake| Link {
        transport,
        shared,
        outbound,
        handshake,
    });
    let (mut sink, mut source) = ws.split();
    let oversize = AtomicBool::new(false);
    let (cause, graceful) = {
        let reader =
            std::pin::pin!(read_messages(&mut source, id, bridge, settings.max_frame_bytes, &shared, &oversize));
        let writer = std::pin::pin!(write_messages(&mut sink, &mut rx, &shared, &oversize));
        drive(reader, writer, id, bridge, &abort, &shared).await
    };
    if graceful {
        linger(&mut source).await;
    }
    Some(cause)
}

/// A refused connection on a WebSocket port: a plain request is still
/// answered; an upgrade hears the goodbye as a text message, then a Close
/// frame (1000, the goodbye's reason).
pub(crate) async fn refuse<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    pages: &[HttpPage],
    deadline: Instant,
    goodbye: Option<Goodbye>,
) {
    let Some(mut ws) = upgrade(stream, pages, deadline, 1024).await else { return };
    let reason = match goodbye {
        Some(goodbye) => {
            if ws.feed(Message::text(goodbye.message)).await.is_err() {
                return;
            }
            goodbye.reason
        }
        None => String::new(),
    };
    let frame = CloseFrame { code: CloseCode::Normal, reason: reason.into() };
    if ws.send(Message::Close(Some(frame))).await.is_ok() {
        let _ = tokio::time::timeout(LINGER, async { while let Some(Ok(_)) = ws.next().await {} }).await;
    }
}

type Source<S> = SplitStream<WebSocketStream<S>>;
type Sink<S> = SplitSink<WebSocketStream<S>, Message>;

/// Reads messages until the peer closes, an error, or a message that is too
/// large; returns the event that ends reading. Same backpressure and drain
/// rules as the line readers (docs/protocol.md §6).
async fn read_messages<S: AsyncRead + AsyncWrite + Unpin>(
    source: &mut Source<S>,
    id: ConnectionId,
    bridge: &NetBridge,
    max_frame_bytes: usize,
    shared: &SharedState,
    oversize: &AtomicBool,
) -> NetEvent {
    loop {
        if shared.wait_while_over_half(id, bridge).await {
            continue;
        }
        if shared.take_drain_request() {
            // A zero timeout polls once: it takes only what is ready now.
            while !shared.over_half() {
                let Ok(item) = tokio::time::timeout(Duration::ZERO, source.next()).await else { break };
                if let Some(end) = on_message(item, id, bridge, max_frame_bytes, oversize) {
                    shared.request_drain_again();
                    return end;
                }
            }
            bridge.send(NetEvent::Drained { id });
            continue;
        }
        tokio::select! {
            biased;
            item = source.next() => {
                if let Some(end) = on_message(item, id, bridge, max_frame_bytes, oversize) {
                    return end;
                }
            }
            () = shared.drain.notified() => {}
        }
    }
}

/// Hands one message to the ECS; the event that ends reading, if it does.
fn on_message(
    item: Option<Result<Message, WsError>>,
    id: ConnectionId,
    bridge: &NetBridge,
    max_frame_bytes: usize,
    oversize: &AtomicBool,
) -> Option<NetEvent> {
    let event = match item {
        None | Some(Ok(Message::Close(_))) => return Some(NetEvent::Eof { id }),
        Some(Err(WsError::Capacity(_))) => {
            oversize.store(true, Ordering::Release);
            return Some(NetEvent::TooLarge { id });
        }
        Some(Err(_)) => return Some(NetEvent::Eof { id }),
        Some(Ok(Message::Text(text))) => {
            let mut bytes = Bytes::from(text);
            // One trailing `\n` is allowed and ignored (docs/protocol.md §1.1).
            if bytes.last() == Some(&b'\n') {
                bytes.truncate(bytes.len() - 1);
            }
            if bytes.len() > max_frame_bytes {
                oversize.store(true, Ordering::Release);
                return Some(NetEvent::TooLarge { id });
            }
            if is_blank(&bytes) {
                bytes = Bytes::new();
            }
            NetEvent::Frame { id, bytes }
        }
        Some(Ok(Message::Binary(_))) => NetEvent::Binary { id },
        // Activity without a rate token (a blank frame); tungstenite queues the Pong.
        Some(Ok(Message::Ping(_))) => NetEvent::Frame { id, bytes: Bytes::new() },
        Some(Ok(Message::Pong(_) | Message::Frame(_))) => return None,
    };
    bridge.send(event);
    None
}

/// Writes queued messages, each as one text message, flushing once per
/// batch; counts them out of the unsent output (each with one byte for the
/// `\n` it would have on a line transport, as [`Connection::send`](crate::Connection::send)
/// counts it). The close is a Close frame: 1009 after a message too large,
/// else 1000 with the close reason (docs/protocol.md §1.1).
async fn write_messages<S: AsyncRead + AsyncWrite + Unpin>(
    sink: &mut Sink<S>,
    rx: &mut crate::outq::OutReceiver,
    shared: &SharedState,
    oversize: &AtomicBool,
) -> WriteEnd {
    loop {
        let Some(first) = rx.recv().await else {
            let _ = sink.close().await;
            return WriteEnd::Dropped;
        };
        let mut close = None;
        let mut pending = 0;
        let mut next = Some(first);
        while let Some(item) = next.take() {
            match item {
                Outgoing::Line(line) => {
                    pending += line.len() + 1;
                    if sink.feed(Message::text(line)).await.is_err() {
                        return WriteEnd::Failed;
                    }
                }
                Outgoing::Close { reason } => {
                    close = Some(reason);
                    break;
                }
            }
            if pending < 64 * 1024 {
                next = rx.try_recv();
            }
        }
        if sink.flush().await.is_err() {
            return WriteEnd::Failed;
        }
        shared.sent(pending);
        if let Some(reason) = close {
            let frame = if oversize.load(Ordering::Acquire) {
                CloseFrame { code: CloseCode::Size, reason: "frame too large".into() }
            } else {
                CloseFrame { code: CloseCode::Normal, reason: reason.unwrap_or_default().into() }
            };
            let _ = sink.send(Message::Close(Some(frame))).await;
            return WriteEnd::Closed;
        }
    }
}

/// After our Close frame, waits a while for the peer's, so the peer reads
/// everything before the TCP connection ends.
async fn linger<S: AsyncRead + AsyncWrite + Unpin>(source: &mut Source<S>) {
    let _ = tokio::time::timeout(LINGER, async { while let Some(Ok(_)) = source.next().await {} }).await;
}
