//! The TCP side: a tokio runtime on its own threads, an accept loop and one
//! handler task per connection (a reader and a writer), in the manner of
//! mini-redis.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::codec::Decoder;
use tokio_util::sync::CancellationToken;

use crate::bridge::{NetBridge, NetEvent};
use crate::codec::{FrameCodec, FrameError, is_blank};
use crate::connection::{CloseCause, ConnectionId, Link, Outgoing, SharedState, TaskOutbound, Transport};
use crate::goodbye::{Goodbye, Goodbyes};
use crate::http::HttpPage;
use crate::outq::OutReceiver;
use crate::stream::read_stream_frames;
use crate::ws;
use tokio_rustls::TlsAcceptor;

/// How long a closed connection's unread input is drained after our last
/// write, so the client receives that write instead of a reset.
pub(crate) const LINGER: Duration = Duration::from_secs(2);

#[derive(Clone)]
pub(crate) struct ListenerSettings {
    pub max_connections: usize,
    pub max_frame_bytes: usize,
    pub outbound_queue: usize,
    pub outbound_queue_bytes: usize,
    /// What a refused connection is told before it is closed.
    pub goodbyes: Arc<Goodbyes>,
    /// Lines, or WebSocket messages (with the HTTP pages of its port).
    pub kind: ListenerKind,
    /// TLS on this listener (docs/protocol.md §1.2).
    pub tls: Option<TlsAcceptor>,
    /// The TLS handshake and the HTTP request head must be done within this.
    pub handshake_timeout: Duration,
}

/// What a listener speaks once a connection is accepted.
#[derive(Clone)]
pub(crate) enum ListenerKind {
    /// One message per line (docs/protocol.md §1).
    Lines,
    /// HTTP, upgraded to WebSocket (docs/protocol.md §1.1).
    WebSocket(Arc<Vec<HttpPage>>),
}

impl ListenerSettings {
    pub(crate) fn transport(&self) -> Transport {
        let tls = self.tls.is_some();
        match self.kind {
            ListenerKind::Lines => Transport::Tcp { tls },
            ListenerKind::WebSocket(_) => Transport::WebSocket { tls },
        }
    }
}

/// Accepts until `stop` is cancelled, then drops the listener (new
/// connections are refused by the OS).
pub(crate) async fn accept_loop(
    listener: TcpListener,
    settings: ListenerSettings,
    bridge: NetBridge,
    stop: CancellationToken,
    open: Arc<AtomicUsize>,
) {
    // One id sequence for every listener (ids key the connection index).
    let next_id: Arc<AtomicU64> = Arc::clone(&bridge.next_socket_id);
    // One shared copy for every connection task: each task then holds a
    // pointer instead of its own bridge and settings (BENCHMARKS.md, hold).
    let context = Arc::new((bridge.clone(), settings.clone()));
    loop {
        let accepted = tokio::select! {
            biased;
            () = stop.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                bevy_log::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        if stop.is_cancelled() {
            tokio::spawn(refuse(stream, settings.clone(), settings.goodbyes.server_shutdown.clone()));
            break;
        }
        if open.load(Ordering::Acquire) >= settings.max_connections {
            bevy_log::debug!(peer = %peer, reason = "server_full", "refused connection");
            tokio::spawn(refuse(stream, settings.clone(), settings.goodbyes.server_full.clone()));
            continue;
        }
        // Counted from the accept: a handshake in progress holds a place too,
        // which bounds the memory that stalled handshakes can take.
        open.fetch_add(1, Ordering::AcqRel);
        let (context, open) = (Arc::clone(&context), open.clone());
        let id = ConnectionId(next_id.fetch_add(1, Ordering::Relaxed));
        tokio::spawn(async move {
            let (bridge, settings) = &*context;
            let cause = serve(stream, id, peer, bridge, settings).await;
            open.fetch_sub(1, Ordering::AcqRel);
            if let Some(cause) = cause {
                bridge.send(NetEvent::Closed { id, cause });
            }
        });
    }
    // Connections the OS already queued would be reset when the listener is
    // dropped: accept them and tell them the shutdown goodbye (docs/protocol.md §6).
    // The socket is asked directly (non-blocking) until its queue is empty:
    // tokio's own `accept` may not know yet that a connection is waiting.
    if let Ok(queue) = listener.into_std() {
        while let Ok((stream, _)) = queue.accept() {
            if let Ok(stream) = stream.set_nonblocking(true).and_then(|()| TcpStream::from_std(stream)) {
                tokio::spawn(refuse(stream, settings.clone(), settings.goodbyes.server_shutdown.clone()));
            }
        }
    }
    bevy_log::info!("listener closed");
}

/// Tells a refused connection its goodbye (if there is one) and closes:
/// a line, or for a WebSocket a text message and a Close frame, after the
/// TLS and WebSocket handshakes (bounded by `handshake_timeout`).
async fn refuse(stream: TcpStream, settings: ListenerSettings, goodbye: Option<Goodbye>) {
    if let Some(goodbye) = &goodbye {
        // docs/operations.md: `portcullis_disconnects_total{reason}` counts refusals too (not a hot path).
        metrics::counter!("portcullis_disconnects_total", "reason" => goodbye.reason.clone()).increment(1);
    }
    let deadline = tokio::time::Instant::now() + settings.handshake_timeout;
    match (&settings.kind, settings.tls.clone()) {
        (ListenerKind::Lines, None) => {
            let (mut rd, mut wr) = stream.into_split();
            if write_goodbye_line(&mut wr, goodbye.as_ref()).await {
                linger(&mut rd).await;
            }
        }
        (ListenerKind::Lines, Some(acceptor)) => {
            let Ok(Ok(tls)) = tokio::time::timeout_at(deadline, acceptor.accept(stream)).await else { return };
            let (mut rd, mut wr) = tokio::io::split(tls);
            if write_goodbye_line(&mut wr, goodbye.as_ref()).await {
                linger(&mut rd).await;
            }
        }
        (ListenerKind::WebSocket(pages), None) => ws::refuse(stream, pages, deadline, goodbye).await,
        (ListenerKind::WebSocket(pages), Some(acceptor)) => {
            let Ok(Ok(tls)) = tokio::time::timeout_at(deadline, acceptor.accept(stream)).await else { return };
            ws::refuse(tls, pages, deadline, goodbye).await;
        }
    }
}

/// Writes the goodbye as one line and shuts the writing side; whether it went out.
async fn write_goodbye_line<W: AsyncWrite + Unpin>(wr: &mut W, goodbye: Option<&Goodbye>) -> bool {
    let mut bytes = Vec::new();
    if let Some(goodbye) = goodbye {
        bytes.extend_from_slice(goodbye.message.as_bytes());
        bytes.push(b'\n');
    }
    if wr.write_all(&bytes).await.is_err() {
        return false;
    }
    let _ = wr.shutdown().await;
    true
}

/// Serves one accepted socket: the TLS handshake if this listener has TLS
/// (closed without a word if it fails or does not finish within
/// `handshake_timeout`, docs/protocol.md §1.2), then lines or HTTP/WebSocket.
/// `None` when it never became a connection (no entity was spawned).
async fn serve(
    stream: TcpStream,
    id: ConnectionId,
    peer: SocketAddr,
    bridge: &NetBridge,
    settings: &ListenerSettings,
) -> Option<CloseCause> {
    let deadline = tokio::time::Instant::now() + settings.handshake_timeout;
    match (&settings.kind, settings.tls.clone()) {
        (ListenerKind::Lines, None) => Some(handle_connection(stream, id, peer, bridge, settings, deadline).await),
        // Boxed: a task's future is as large as its largest state, so the
        // TLS and WebSocket states (a TLS session, a WebSocket stream) would
        // otherwise be paid by every plain TCP connection too.
        (ListenerKind::Lines, Some(acceptor)) => {
            Box::pin(serve_tls_lines(stream, id, peer, bridge, settings, acceptor, deadline)).await
        }
        (ListenerKind::WebSocket(pages), None) => {
            Box::pin(ws::serve(stream, id, peer, bridge, settings, pages, deadline)).await
        }
        (ListenerKind::WebSocket(pages), Some(acceptor)) => {
            Box::pin(async move {
                let tls = tokio::time::timeout_at(deadline, acceptor.accept(stream)).await.ok()?.ok()?;
                ws::serve(tls, id, peer, bridge, settings, pages, deadline).await
            })
            .await
        }
    }
}

/// Lines inside TLS (docs/protocol.md §1.2): the handshake, then the same
/// reader and writer as plain TCP on the TLS stream.
async fn serve_tls_lines(
    stream: TcpStream,
    id: ConnectionId,
    peer: SocketAddr,
    bridge: &NetBridge,
    settings: &ListenerSettings,
    acceptor: TlsAcceptor,
    deadline: tokio::time::Instant,
) -> Option<CloseCause> {
    let tls = match tokio::time::timeout_at(deadline, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            bevy_log::debug!(peer = %peer, reason = "tls_handshake", error = %e, "closed before a connection");
            return None;
        }
        Err(_) => {
            bevy_log::debug!(peer = %peer, reason = "tls_handshake_timeout", "closed before a connection");
            return None;
        }
    };
    let (mut rd, mut wr) = tokio::io::split(tls);
    let transport = settings.transport();
    let link = |shared, outbound, handshake| Link { transport, shared, outbound, handshake };
    let (mut rx, abort, shared) = open_link(id, peer, bridge, settings, deadline, link);
    let (cause, graceful) = {
        let reader = std::pin::pin!(read_stream_frames(&mut rd, id, bridge, settings.max_frame_bytes, &shared));
        let writer = std::pin::pin!(write_lines(&mut wr, &mut rx, &shared));
        drive(reader, writer, id, bridge, &abort, &shared).await
    };
    if graceful {
        linger(&mut rd).await;
    }
    Some(cause)
}

/// Opens the ECS side of a new connection: its outbound queue, abort token
/// and shared state, announced with `Connected`. `deadline` is the end of
/// its handshake time (`handshake_timeout` after the accept): the time
/// the handshake took is handed on with the link.
pub(crate) fn open_link(
    id: ConnectionId,
    peer: SocketAddr,
    bridge: &NetBridge,
    settings: &ListenerSettings,
    deadline: tokio::time::Instant,
    link: impl FnOnce(Arc<SharedState>, Box<dyn crate::connection::Outbound>, Duration) -> Link,
) -> (OutReceiver, CancellationToken, Arc<SharedState>) {
    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
    let handshake = settings.handshake_timeout.saturating_sub(left);
    let (tx, rx) = crate::outq::channel(settings.outbound_queue.max(1));
    let abort = CancellationToken::new();
    let shared = SharedState::new(settings.outbound_queue_bytes);
    let outbound = Box::new(TaskOutbound { tx, abort: abort.clone() });
    bridge.send(NetEvent::Connected { id, peer, link: link(Arc::clone(&shared), outbound, handshake) });
    (rx, abort, shared)
}

async fn handle_connection(
    stream: TcpStream,
    id: ConnectionId,
    peer: SocketAddr,
    bridge: &NetBridge,
    settings: &ListenerSettings,
    deadline: tokio::time::Instant,
) -> CloseCause {
    let link =
        |shared, outbound, handshake| Link { transport: Transport::Tcp { tls: false }, shared, outbound, handshake };
    let (mut rx, abort, shared) = open_link(id, peer, bridge, settings, deadline, link);
    let (mut rd, mut wr) = stream.into_split();
    let (cause, graceful) = {
        let reader = std::pin::pin!(read_frames(&rd, id, bridge, settings.max_frame_bytes, &shared));
        let writer = std::pin::pin!(write_lines(&mut wr, &mut rx, &shared));
        drive(reader, writer, id, bridge, &abort, &shared).await
    };
    if graceful {
        linger(&mut rd).await;
    }
    cause
}

/// Runs a connection's reader and writer until the writer ends or the
/// connection is aborted; reports the reader's end and answers drain
/// requests once it stopped. The cause, and whether the close was graceful
/// (the peer's unread input is then drained for a while).
///
/// The reader and writer are pinned by the caller (`std::pin::pin!`) and
/// borrowed here: taken by value, each would be stored twice in the
/// connection task's future, once as an argument and once pinned
/// (BENCHMARKS.md, memory per connection).
pub(crate) async fn drive(
    mut reader: std::pin::Pin<&mut impl std::future::Future<Output = NetEvent>>,
    mut writer: std::pin::Pin<&mut impl std::future::Future<Output = WriteEnd>>,
    id: ConnectionId,
    bridge: &NetBridge,
    abort: &CancellationToken,
    shared: &SharedState,
) -> (CloseCause, bool) {
    {
        let mut reading = true;
        loop {
            tokio::select! {
                biased;
                () = abort.cancelled() => break (CloseCause::Aborted, false),
                end = writer.as_mut() => break match end {
                    WriteEnd::Closed => (CloseCause::Server, true),
                    WriteEnd::Dropped => (CloseCause::Server, false),
                    WriteEnd::Failed => (CloseCause::Peer, false),
                },
                eof = reader.as_mut(), if reading => {
                    reading = false;
                    bridge.send(eof);
                    // A drain asked for while the reader was ending: nothing more will be read.
                    if shared.take_drain_request() {
                        bridge.send(NetEvent::Drained { id });
                    }
                }
                // The reader stopped: a drain request is answered at once.
                () = shared.drain.notified(), if !reading => {
                    if shared.take_drain_request() {
                        bridge.send(NetEvent::Drained { id });
                    }
                }
            }
        }
    }
}

/// What one read from the socket gave.
enum ReadStep {
    /// Bytes were read and their frames sent to the ECS.
    Read,
    /// Nothing to read after all.
    WouldBlock,
    /// Reading ends with this event.
    End(NetEvent),
}

/// Reads frames until end of stream, an error or a frame that is too large;
/// returns the event that ends reading. Holds no buffer while the client is
/// idle. While the connection's unsent output is over half of
/// `outbound_queue_bytes` it reads nothing (docs/protocol.md §6, "Output").
/// Answers the ECS's drain requests (docs/protocol.md §6, "Deadlines").
async fn read_frames(
    rd: &OwnedReadHalf,
    id: ConnectionId,
    bridge: &NetBridge,
    max_frame_bytes: usize,
    shared: &SharedState,
) -> NetEvent {
    let mut codec = FrameCodec::new(max_frame_bytes);
    let mut buf = BytesMut::new();
    loop {
        if shared.wait_while_over_half(id, bridge).await {
            continue;
        }
        if shared.take_drain_request() {
            if let Some(end) = drain_pending(rd, id, bridge, &mut codec, &mut buf, shared).await {
                // The event that ends reading goes first; the drain is then answered by the caller.
                shared.request_drain_again();
                return end;
            }
            bridge.send(NetEvent::Drained { id });
            continue;
        }
        tokio::select! {
            biased;
            ready = rd.readable() => {
                if ready.is_err() {
                    return NetEvent::Eof { id };
                }
            }
            () = shared.drain.notified() => continue,
        }
        match read_once(rd, id, bridge, &mut codec, &mut buf) {
            ReadStep::Read | ReadStep::WouldBlock => {}
            ReadStep::End(end) => return end,
        }
        // `readable()` and `try_read_buf` take no part in tokio's cooperative
        // budget: without a yield, a client that keeps the socket readable
        // (a flood) would keep this task in this loop for ever, so that its
        // writer (the `rate_limited` goodbye and the close) never ran and the
        // worker thread served no one else. One yield per read (at most a few
        // KiB) keeps every other connection on this worker within reach.
        tokio::task::yield_now().await;
    }
}

/// Reads what the kernel holds for this socket right now (`FIONREAD`), until
/// nothing is left, backpressure stops reading, or reading ends (returned).
async fn drain_pending(
    rd: &OwnedReadHalf,
    id: ConnectionId,
    bridge: &NetBridge,
    codec: &mut FrameCodec,
    buf: &mut BytesMut,
    shared: &SharedState,
) -> Option<NetEvent> {
    while !shared.over_half() {
        let pending: &TcpStream = rd.as_ref();
        match rustix::io::ioctl_fionread(pending) {
            Ok(n) if n > 0 => {}
            _ => break,
        }
        match read_once(rd, id, bridge, codec, buf) {
            ReadStep::Read => {}
            ReadStep::WouldBlock => break,
            ReadStep::End(end) => return Some(end),
        }
        tokio::task::yield_now().await;
    }
    None
}

/// One non-blocking read; sends the frames it completes to the ECS.
fn read_once(
    rd: &OwnedReadHalf,
    id: ConnectionId,
    bridge: &NetBridge,
    codec: &mut FrameCodec,
    buf: &mut BytesMut,
) -> ReadStep {
    if buf.capacity() - buf.len() < 1024 {
        buf.reserve(4096);
    }
    match rd.try_read_buf(buf) {
        Ok(0) => return ReadStep::End(NetEvent::Eof { id }),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return ReadStep::WouldBlock,
        Err(_) => return ReadStep::End(NetEvent::Eof { id }),
    }
    match push_frames(id, bridge, codec, buf) {
        Some(end) => ReadStep::End(end),
        None => ReadStep::Read,
    }
}

/// Sends the frames complete in `buf` to the ECS and wakes it; the event
/// that ends reading if a frame is too large.
pub(crate) fn push_frames(
    id: ConnectionId,
    bridge: &NetBridge,
    codec: &mut FrameCodec,
    buf: &mut BytesMut,
) -> Option<NetEvent> {
    // Blank frames are only activity (docs/protocol.md §1): one event per
    // read stands for all of them, so a flood of empty lines costs the
    // ECS one event per read, not one per byte.
    let mut blank = false;
    // The frames of one read go to the ECS as one event: one channel send
    // and one connection lookup for all of them (BENCHMARKS.md).
    let mut frames = Vec::new();
    let end = loop {
        match codec.decode(buf) {
            Ok(Some(bytes)) if is_blank(&bytes) => blank = true,
            Ok(Some(bytes)) => frames.push(bytes),
            Ok(None) => break None,
            Err(FrameError::TooLarge) => break Some(NetEvent::TooLarge { id }),
            Err(FrameError::Io(_)) => break Some(NetEvent::Eof { id }),
        }
    };
    if blank {
        frames.push(Bytes::new());
    }
    match frames.len() {
        0 => {}
        1 => {
            let bytes = frames.swap_remove(0);
            let _ = bridge.tx.send(NetEvent::Frame { id, bytes });
        }
        _ => {
            let _ = bridge.tx.send(NetEvent::Frames { id, frames });
        }
    }
    bridge.waker.wake();
    if end.is_none() && buf.is_empty() {
        *buf = BytesMut::new(); // idle connections keep no read buffer
    }
    end
}

pub(crate) enum WriteEnd {
    /// `Outgoing::Close` was reached: everything before it is written out.
    Closed,
    /// The ECS side dropped the queue (the app is exiting).
    Dropped,
    /// The socket failed.
    Failed,
}

/// Writes queued lines, batching whatever is queued into one write. Counts
/// every byte written out of the connection's unsent output.
async fn write_lines<W: AsyncWrite + Unpin>(wr: &mut W, rx: &mut OutReceiver, shared: &SharedState) -> WriteEnd {
    let mut buf = Vec::new();
    loop {
        let Some(first) = rx.recv().await else {
            let _ = wr.shutdown().await;
            return WriteEnd::Dropped;
        };
        let mut close = false;
        let mut next = Some(first);
        while let Some(item) = next.take() {
            match item {
                Outgoing::Line(line) => {
                    buf.extend_from_slice(line.as_bytes());
                    buf.push(b'\n');
                }
                Outgoing::Close { .. } => {
                    close = true;
                    break;
                }
            }
            if buf.len() < 64 * 1024 {
                next = rx.try_recv();
            }
        }
        let mut written = 0;
        while written < buf.len() {
            match wr.write(&buf[written..]).await {
                Ok(0) | Err(_) => return WriteEnd::Failed,
                Ok(n) => {
                    written += n;
                    shared.sent(n);
                }
            }
        }
        // An idle connection keeps no write buffer; the next batch brings its own.
        buf = Vec::new();
        if close {
            let _ = wr.shutdown().await;
            return WriteEnd::Closed;
        }
    }
}

/// Drains and discards input for a short while after the server's last write.
async fn linger<R: tokio::io::AsyncRead + Unpin>(rd: &mut R) {
    use tokio::io::AsyncReadExt;
    // On the heap, and only while lingering: an array here would be part of
    // every connection task's future for its whole life.
    let mut scratch = vec![0u8; 4096];
    let _ = tokio::time::timeout(LINGER, async {
        while let Ok(n) = rd.read(&mut scratch).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(bridge: &NetBridge) -> Vec<String> {
        bridge
            .rx
            .try_iter()
            .map(|event| match event {
                NetEvent::Frame { bytes, .. } => format!("frame {:?}", String::from_utf8_lossy(&bytes)),
                NetEvent::Frames { frames, .. } => {
                    let texts: Vec<_> = frames.iter().map(|b| String::from_utf8_lossy(b).into_owned()).collect();
                    format!("frames {texts:?}")
                }
                other => format!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn the_frames_of_one_read_are_one_event_in_order() {
        let bridge = NetBridge::new(portcullis_runtime::FrameWaker::default());
        let mut codec = FrameCodec::new(64);
        let id = ConnectionId(1);
        let mut buf = BytesMut::from(&b"a\nb\r\n\nc\npartial"[..]);
        assert!(push_frames(id, &bridge, &mut codec, &mut buf).is_none());
        // The blank line is activity only: one empty frame after the others.
        assert_eq!(events(&bridge), [r#"frames ["a", "b", "c", ""]"#]);
        assert_eq!(&buf[..], b"partial", "an incomplete frame waits for the next read");

        buf.extend_from_slice(b"\n");
        assert!(push_frames(id, &bridge, &mut codec, &mut buf).is_none());
        assert_eq!(events(&bridge), [r#"frame "partial""#], "a single frame needs no list");
        assert_eq!(buf.capacity(), 0, "an idle connection keeps no read buffer");

        // Frames before one that is too large still arrive, before it.
        let mut buf = BytesMut::from(format!("x\ny\n{}", "z".repeat(100)).as_bytes());
        assert!(matches!(push_frames(id, &bridge, &mut codec, &mut buf), Some(NetEvent::TooLarge { .. })));
        assert_eq!(events(&bridge), [r#"frames ["x", "y"]"#]);
    }
}

#[cfg(test)]
mod task_size {
    use super::*;

    /// Every plain TCP connection is one task whose future is as large as
    /// its largest state; 10,000 idle connections pay it 10,000 times
    /// (BENCHMARKS.md, hold). Taken by value, `drive`'s reader and writer
    /// were stored twice and the future was 2,016 bytes (debug build); with
    /// its own bridge and settings instead of a shared pointer, 1,440.
    #[tokio::test]
    async fn a_connection_task_stays_small() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let _client = TcpStream::connect(listener.local_addr().expect("addr")).await.expect("connect");
        let (stream, peer) = listener.accept().await.expect("accept");
        let bridge = NetBridge::new(portcullis_runtime::FrameWaker::default());
        let settings = ListenerSettings {
            max_connections: 10,
            max_frame_bytes: 1024,
            outbound_queue: 16,
            outbound_queue_bytes: 1 << 20,
            goodbyes: Arc::new(Goodbyes::default()),
            kind: ListenerKind::Lines,
            tls: None,
            handshake_timeout: Duration::from_secs(1),
        };
        let id = ConnectionId(1);
        let (context, open) = (Arc::new((bridge, settings)), Arc::new(AtomicUsize::new(1)));
        // The same future as the task `accept_loop` spawns.
        let task = async move {
            let (bridge, settings) = &*context;
            let cause = serve(stream, id, peer, bridge, settings).await;
            open.fetch_sub(1, Ordering::AcqRel);
            if let Some(cause) = cause {
                bridge.send(NetEvent::Closed { id, cause });
            }
        };
        let size = std::mem::size_of_val(&task);
        assert!(size <= 1_400, "a connection task's future is {size} bytes");
    }
}
