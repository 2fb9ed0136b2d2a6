//! Line framing (docs/protocol.md §1): one message per `\n`-terminated line, a
//! trailing `\r` stripped, and a hard bound on the bytes of one frame.

use bytes::{Bytes, BytesMut};
use tokio_util::codec::Decoder;

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
/// The same rules as tokio-util's `AnyDelimiterCodec` with `\n` as the only
/// delimiter, with the `\n` found by `memchr` (a word at a time) instead of
/// a byte-by-byte scan: it works on bytes, not `String`s, so invalid UTF-8
/// reaches the layer above (which answers it) instead of ending the stream.
/// The limit counts a trailing `\r`, which is stripped from the frame.
/// Bytes of an unfinished frame at end of stream are dropped: a frame is
/// only complete with its `\n`.
#[derive(Debug)]
pub struct FrameCodec {
    max_frame_bytes: usize,
    /// Bytes at the start of the buffer already known to hold no `\n`.
    scanned: usize,
}

impl FrameCodec {
    /// A decoder accepting frames of up to `max_frame_bytes` bytes (before the `\n`).
    pub fn new(max_frame_bytes: usize) -> Self {
        Self { max_frame_bytes, scanned: 0 }
    }
}

impl Decoder for FrameCodec {
    type Item = Bytes;
    type Error = FrameError;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, FrameError> {
        // Only the first `max + 1` bytes can hold the end of a frame that fits.
        let read_to = self.max_frame_bytes.saturating_add(1).min(buf.len());
        let from = self.scanned.min(read_to);
        match memchr::memchr(b'\n', &buf[from..read_to]) {
            Some(offset) => {
                self.scanned = 0;
                let mut frame = buf.split_to(from + offset + 1);
                frame.truncate(frame.len() - 1);
                if frame.last() == Some(&b'\r') {
                    frame.truncate(frame.len() - 1);
                }
                Ok(Some(frame.freeze()))
            }
            None if buf.len() > self.max_frame_bytes => Err(FrameError::TooLarge),
            None => {
                self.scanned = read_to;
                Ok(None)
            }
        }
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, FrameError> {
        let frame = self.decode(buf)?;
        if frame.is_none() {
            buf.clear();
            self.scanned = 0;
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
    fn a_frame_split_across_reads_is_found_once_complete() {
        let mut c = FrameCodec::new(10);
        let mut buf = BytesMut::from(&b"abc"[..]);
        assert!(c.decode(&mut buf).expect("no error").is_none());
        buf.extend_from_slice(b"de\r\nf");
        assert_eq!(c.decode(&mut buf).expect("no error"), Some(Bytes::from_static(b"abcde")));
        assert!(c.decode(&mut buf).expect("no error").is_none());
        buf.extend_from_slice(b"\n");
        assert_eq!(c.decode(&mut buf).expect("no error"), Some(Bytes::from_static(b"f")));
    }

    #[test]
    fn blank_frames() {
        assert!(is_blank(b""));
        assert!(is_blank(b" \t\r "));
        assert!(!is_blank(b" x "));
    }
}
