//! Reading lines from any byte stream (a TLS stream): the same framing,
//! backpressure and drain handshake as the plain TCP reader, written on
//! `AsyncRead` instead of the socket's readiness.

use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::bridge::{NetBridge, NetEvent};
use crate::codec::FrameCodec;
use crate::connection::{ConnectionId, SharedState};
use crate::listener::push_frames;

/// Reads frames from `rd` until end of stream, an error or a frame that is
/// too large; returns the event that ends reading. While the unsent output is
/// over half of `outbound_queue_bytes` it reads nothing (docs/protocol.md §6,
/// "Output"). A drain request reads what is ready without waiting, then
/// answers (docs/protocol.md §6, "Deadlines").
pub(crate) async fn read_stream_frames<R: AsyncRead + Unpin>(
    rd: &mut R,
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
            // `timeout` polls the read once before it looks at the clock: a
            // zero timeout takes exactly what is ready now.
            while !shared.over_half() {
                buf.reserve(4096);
                match tokio::time::timeout(Duration::ZERO, rd.read_buf(&mut buf)).await {
                    Err(_) => break,
                    Ok(Ok(n)) if n > 0 => {
                        if let Some(end) = push_frames(id, bridge, &mut codec, &mut buf) {
                            shared.request_drain_again();
                            return end;
                        }
                    }
                    Ok(_) => {
                        shared.request_drain_again();
                        return NetEvent::Eof { id };
                    }
                }
            }
            bridge.send(NetEvent::Drained { id });
            continue;
        }
        buf.reserve(4096);
        tokio::select! {
            biased;
            read = rd.read_buf(&mut buf) => match read {
                Ok(n) if n > 0 => {
                    if let Some(end) = push_frames(id, bridge, &mut codec, &mut buf) {
                        return end;
                    }
                }
                _ => return NetEvent::Eof { id },
            },
            () = shared.drain.notified() => {}
        }
    }
}
