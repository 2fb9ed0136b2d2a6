//! Line framing (docs/protocol.md §1): one message per `\n`-terminated line, a
//! trailing `\r` stripped, and a hard bound on the bytes of one frame.

use bytes::{Bytes, BytesMut};
use tokio_util::codec::{AnyDelimiterCodec, AnyDelimiterCodecError, Decoder};

/// Why a frame could not be decoded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The frame passed `max_frame_bytes` (with or without a newline); the
    /// connection must be answered `frame too large` and closed.
    #[error("frame too large")]
    TooLarge,
    /// The socket failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

/// Splits a byte stream into frames of at most `max_frame_bytes` bytes.
///
/// Built on tokio-util's [`AnyDelimiterCodec`] with `\n` as the only
/// delimiter; it works on bytes, not `String`s, so invalid UTF-8 reaches the
/// layer above (which answers it) instead of ending the stream. The
/// limit counts a trailing `\r`, which is stripped from the frame. Bytes of an
/// unfinished frame at end of stream are dropped: a frame is only complete with
/// its `\n`.
#[derive(Debug)]
pub struct FrameCodec {
    inner: AnyDelimiterCodec,
}

impl FrameCodec {
    /// A decoder accepting frames of up to `max_frame_bytes` bytes (before the `\n`).
    pub fn new(max_frame_bytes: usize) -> Self {
        Self { inner: AnyDelimiterCodec::new_with_max_length(b"\n".to_vec(), Vec::new(), max_frame_bytes) }
    }
}

impl Decoder for FrameCodec {
    type Item = Bytes;
    type Error = FrameError;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, FrameError> {
        match self.inner.decode(buf) {
            Ok(Some(mut frame)) => {
                if frame.last() == Some(&b'\r') {
                    frame.truncate(frame.len() - 1);
                }
                Ok(Some(frame))
            }
            Ok(None) => Ok(None),
            Err(AnyDelimiterCodecError::MaxChunkLengthExceeded) => Err(FrameError::TooLarge),
            Err(AnyDelimiterCodecError::Io(e)) => Err(FrameError::Io(e)),
        }
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, FrameError> {
        let frame = self.decode(buf)?;
        if frame.is_none() {
            buf.clear();
        }
        Ok(frame)
    }
}

/// Whether a frame is blank: empty, or only spaces, tabs and `\r`
/// (docs/protocol.md §1: ignored, costs no rate token, counts as activity).
pub fn is_blank(frame: &[u8]) -> bool {
    frame.iter().all(|b| matches!(b, b' ' | b'\t' | b'\r'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(codec: &mut FrameCodec, input: &[u8]) -> Vec<Result<Bytes, String>> {
        let mut buf = BytesMut::from(input);
        let mut out = Vec::new();
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(f)) => out.push(Ok(f)),
                Ok(None) => break,
                Err(e) => {
                    out.push(Err(e.to_string()));
                    break;
                }
            }
        }
        out
    }

    #[test]
    fn splits_lines_and_strips_cr() {
        let mut c = FrameCodec::new(100);
        let frames = decode_all(&mut c, b"a\r\nbb\n\ncc");
        assert_eq!(frames, vec![Ok(Bytes::from_static(b"a")), Ok(Bytes::from_static(b"bb")), Ok(Bytes::new())]);
    }

    #[test]
    fn limit_is_inclusive_and_counts_cr() {
        let mut c = FrameCodec::new(4);
        assert_eq!(decode_all(&mut c, b"abcd\n"), vec![Ok(Bytes::from_static(b"abcd"))]);
        let mut c = FrameCodec::new(4);
        assert_eq!(decode_all(&mut c, b"abc\r\n"), vec![Ok(Bytes::from_static(b"abc"))]);
        let mut c = FrameCodec::new(4);
        assert_eq!(decode_all(&mut c, b"abcd\r\n"), vec![Err("frame too large".into())]);
    }

    #[test]
    fn too_large_without_newline_fails_as_soon_as_limit_passes() {
        let mut c = FrameCodec::new(4);
        assert!(decode_all(&mut c, b"abcd").is_empty());
        assert_eq!(decode_all(&mut c, b"abcde"), vec![Err("frame too large".into())]);
    }

    #[test]
    fn unfinished_frame_at_eof_is_dropped() {
        let mut c = FrameCodec::new(10);
        let mut buf = BytesMut::from(&b"abc"[..]);
        assert!(c.decode_eof(&mut buf).expect("no error").is_none());
        assert!(buf.is_empty());
    }

    #[test]
    fn blank_frames() {
        assert!(is_blank(b""));
        assert!(is_blank(b" \t\r "));
        assert!(!is_blank(b" x "));
    }
}
