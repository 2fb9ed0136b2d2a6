//! The lean load generator: raw NDJSON lines over one TCP stream per
//! connection, pipelined, answers matched to requests by `id`. No
//! per-request future, channel or `serde_json` value: one task per
//! connection writes preformatted request bytes and scans the answers for
//! their `id`, so the generator costs far less per request than either
//! server it loads (its CPU is printed beside theirs).
//!
//! ```text
//!  one task per connection:
//!    write depth requests ─┐
//!    loop { read what the socket has ─ for each complete answer line: match its id,
//!           record its latency, format the next request } ─ one write for all of them
//! ```
//!
//! Requests are numbered from 1 on each connection; the send time of id `n`
//! lives in slot `n mod cap` of a small ring (`cap` ≥ 4 × depth), so an answer
//! whose slot holds another id is counted as unmatched instead of timed.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use memchr::memmem;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::BenchError;
use super::stats::Latencies;

/// How long one read may wait for an answer before the connection counts as stuck.
const READ_LIMIT: Duration = Duration::from_secs(10);

/// One connection of the lean generator: the stream and its unread bytes.
#[derive(Debug)]
pub struct LineConn {
    stream: TcpStream,
    rbuf: Vec<u8>,
    next_id: u64,
    /// `Some` over WebSocket: the frames read but not yet decoded into `rbuf`.
    ws: Option<WsFrames>,
}

/// The WebSocket side of a [`LineConn`] (docs/protocol.md §1.1): each line
/// goes out as one masked text message, each text message comes in as one
/// line. The masking key is zero, so a payload is sent as it is (a valid
/// key: the server unmasks with it, and the bench pays no XOR).
#[derive(Debug, Default)]
struct WsFrames {
    /// Bytes read off the socket, not yet a complete frame.
    wire: Vec<u8>,
    /// Frames being written.
    out: Vec<u8>,
}

/// Appends one masked text frame per non-empty line of `lines` to `out`.
fn frame_lines(lines: &[u8], out: &mut Vec<u8>) {
    for line in lines.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        out.push(0x81);
        match line.len() {
            n @ 0..=125 => out.push(0x80 | n as u8),
            n @ 126..=65535 => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(0x80 | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&[0, 0, 0, 0]);
        out.extend_from_slice(line);
    }
}

/// Moves every complete server frame at the front of `wire` into `lines`
/// (a text message and its `\n`); returns the bytes of `wire` used.
///
/// # Errors
/// A Close frame or a frame the bench does not expect.
fn unframe(wire: &[u8], lines: &mut Vec<u8>) -> Result<usize, BenchError> {
    let mut at = 0;
    loop {
        let rest = &wire[at..];
        if rest.len() < 2 {
            return Ok(at);
        }
        let (fin, opcode, masked, len7) = (rest[0] & 0x80 != 0, rest[0] & 0x0f, rest[1] & 0x80 != 0, rest[1] & 0x7f);
        let (len, head) = match len7 {
            126 if rest.len() >= 4 => (u16::from_be_bytes([rest[2], rest[3]]) as usize, 4),
            127 if rest.len() >= 10 => {
                let mut n = [0u8; 8];
                n.copy_from_slice(&rest[2..10]);
                (usize::try_from(u64::from_be_bytes(n)).unwrap_or(usize::MAX), 10)
            }
            126 | 127 => return Ok(at),
            n => (n as usize, 2),
        };
        let head: usize = head + if masked { 4 } else { 0 };
        if rest.len() < head.saturating_add(len) {
            return Ok(at);
        }
        let payload = &rest[head..head + len];
        match opcode {
            0 | 1 => {
                lines.extend_from_slice(payload);
                if fin {
                    lines.push(b'\n');
                }
            }
            8 => return Err(BenchError::Other("the server closed the WebSocket".to_owned())),
            9 | 10 => {}
            other => return Err(BenchError::Other(format!("unexpected WebSocket opcode {other}"))),
        }
        at += head + len;
    }
}

/// What the generator makes of one answer line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// A result.
    Ok,
    /// An error `RATE_LIMITED` (1007).
    RateLimited,
    /// Any other error.
    Error,
}

/// What a workload sends on one connection and how it reads the results.
pub trait Lane {
    /// Appends request `id` (a whole line, with its `\n`) to `out`.
    fn request(&mut self, id: u64, out: &mut Vec<u8>);
    /// Looks at the answer line of request `id` (without its `\n`).
    fn answer(&mut self, id: u64, line: &[u8]) -> Answer {
        let _ = id;
        classify(line)
    }
}

/// Whether `line` is a result, a rate-limit refusal or another error.
pub fn classify(line: &[u8]) -> Answer {
    if memmem::find(line, b"\"error\":").is_none() {
        Answer::Ok
    } else if memmem::find(line, b"\"code\":1007").is_some() {
        Answer::RateLimited
    } else {
        Answer::Error
    }
}

/// The integer after the first `"KEY":` in `line` (`key` given with its quotes
/// and colon, e.g. `"\"id\":"`).
pub fn int_after(line: &[u8], key: &[u8]) -> Option<u64> {
    let at = memmem::find(line, key)? + key.len();
    let digits = &line[at..];
    let len = digits.iter().take_while(|b| b.is_ascii_digit()).count();
    if len == 0 {
        return None;
    }
    std::str::from_utf8(&digits[..len]).ok()?.parse().ok()
}

/// The string after the first `"KEY":"` in `line` (no escapes expected).
pub fn str_after<'a>(line: &'a [u8], key: &[u8]) -> Option<&'a str> {
    let at = memmem::find(line, key)? + key.len();
    let rest = line.get(at..)?;
    let rest = rest.strip_prefix(b"\"")?;
    let end = memchr::memchr(b'"', rest)?;
    std::str::from_utf8(&rest[..end]).ok()
}

/// Appends the decimal digits of `n` to `out`.
pub fn push_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// What one connection counted over a run.
#[derive(Debug, Default)]
pub struct LaneOutcome {
    /// Results that arrived inside the measured phase.
    pub requests: u64,
    /// Errors (other than rate limiting) over the whole run.
    pub errors: u64,
    /// `RATE_LIMITED` refusals inside the measured phase.
    pub rate_limited: u64,
    /// Answers whose id was not in flight.
    pub unmatched: u64,
    /// Latencies of the results counted in `requests`.
    pub latencies: Latencies,
    /// The first error line, or why the connection ended early.
    pub first_error: Option<String>,
}

impl LaneOutcome {
    /// Adds `other`'s counts.
    pub fn merge(&mut self, other: LaneOutcome) {
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        self.requests += other.requests;
        self.errors += other.errors;
        self.rate_limited += other.rate_limited;
        self.unmatched += other.unmatched;
        self.latencies.merge(other.latencies);
    }
}

impl LineConn {
    /// Connects (with `TCP_NODELAY`, as the servers set it).
    ///
    /// # Errors
    /// [`BenchError::Io`] when the connection fails.
    pub async fn connect(addr: SocketAddr) -> Result<Self, BenchError> {
        let stream = TcpStream::connect(addr).await.map_err(BenchError::io("cannot connect"))?;
        let _ = stream.set_nodelay(true);
        Ok(Self { stream, rbuf: Vec::new(), next_id: 1, ws: None })
    }

    /// Connects to a WebSocket listener (`ws://addr/`) and upgrades; lines
    /// then travel as text messages (docs/protocol.md §1.1).
    ///
    /// # Errors
    /// [`BenchError`] when the connection or the upgrade fails.
    pub async fn connect_ws(addr: SocketAddr) -> Result<Self, BenchError> {
        let mut conn = Self::connect(addr).await?;
        let upgrade = format!(
            "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        conn.stream.write_all(upgrade.as_bytes()).await.map_err(BenchError::io("cannot send the upgrade"))?;
        let mut answer = Vec::new();
        let end = loop {
            if let Some(end) = memmem::find(&answer, b"\r\n\r\n") {
                break end + 4;
            }
            let read = tokio::time::timeout(READ_LIMIT, conn.stream.read_buf(&mut answer)).await;
            match read {
                Ok(Ok(n)) if n > 0 => {}
                _ => return Err(BenchError::Other("no WebSocket upgrade answer".to_owned())),
            }
        };
        if !answer.starts_with(b"HTTP/1.1 101") {
            let status = String::from_utf8_lossy(&answer[..end]).lines().next().unwrap_or_default().to_owned();
            return Err(BenchError::Other(format!("WebSocket upgrade refused: {status}")));
        }
        conn.ws = Some(WsFrames { wire: answer.split_off(end), out: Vec::new() });
        Ok(conn)
    }

    /// Writes `lines` (whole lines, each with its `\n`): as they are, or one
    /// text message each over WebSocket.
    async fn send(&mut self, lines: &[u8]) -> Result<(), BenchError> {
        match &mut self.ws {
            None => self.stream.write_all(lines).await,
            Some(ws) => {
                ws.out.clear();
                frame_lines(lines, &mut ws.out);
                self.stream.write_all(&ws.out).await
            }
        }
        .map_err(BenchError::io("cannot write requests"))
    }

    /// A fresh request id for this connection.
    pub fn take_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// Writes `line` (with its `\n`) and returns the answer line whose
    /// `id` is `id` (other lines, such as notifications, are skipped).
    ///
    /// # Errors
    /// [`BenchError`] when the socket fails, closes or stays silent for [`READ_LIMIT`].
    pub async fn call(&mut self, id: u64, line: &[u8]) -> Result<Vec<u8>, BenchError> {
        self.send(line).await?;
        loop {
            while let Some(end) = memchr::memchr(b'\n', &self.rbuf) {
                let answer: Vec<u8> = self.rbuf.drain(..=end).take(end).collect();
                if int_after(&answer, b"\"id\":") == Some(id) {
                    return Ok(answer);
                }
            }
            self.fill().await?;
        }
    }

    /// Reads once more into the buffer (over WebSocket: until at least one
    /// whole message is there).
    async fn fill(&mut self) -> Result<usize, BenchError> {
        if let Some(mut ws) = self.ws.take() {
            let result = self.fill_ws(&mut ws).await;
            self.ws = Some(ws);
            return result;
        }
        self.fill_raw().await
    }

    async fn fill_ws(&mut self, ws: &mut WsFrames) -> Result<usize, BenchError> {
        loop {
            let before = self.rbuf.len();
            let used = unframe(&ws.wire, &mut self.rbuf)?;
            ws.wire.drain(..used);
            if self.rbuf.len() > before {
                return Ok(self.rbuf.len() - before);
            }
            if ws.wire.capacity() - ws.wire.len() < 4096 {
                ws.wire.reserve(16 * 1024);
            }
            match tokio::time::timeout(READ_LIMIT, self.stream.read_buf(&mut ws.wire)).await {
                Err(_) => return Err(BenchError::Other(format!("no answer within {READ_LIMIT:?}"))),
                Ok(Err(e)) => return Err(BenchError::io("cannot read")(e)),
                Ok(Ok(0)) => return Err(BenchError::Other("the server closed the connection".to_owned())),
                Ok(Ok(_)) => {}
            }
        }
    }

    async fn fill_raw(&mut self) -> Result<usize, BenchError> {
        if self.rbuf.capacity() - self.rbuf.len() < 4096 {
            self.rbuf.reserve(16 * 1024);
        }
        match tokio::time::timeout(READ_LIMIT, self.stream.read_buf(&mut self.rbuf)).await {
            Err(_) => Err(BenchError::Other(format!("no answer within {READ_LIMIT:?}"))),
            Ok(Err(e)) => Err(BenchError::io("cannot read")(e)),
            Ok(Ok(0)) => Err(BenchError::Other("the server closed the connection".to_owned())),
            Ok(Ok(n)) => Ok(n),
        }
    }

    /// Keeps `depth` requests of `lane` in flight until `end`, then waits for
    /// the answers still in flight. A result counts when it arrives inside
    /// `start..=end`; its latency is from the write that carried its request
    /// to the read that carried its answer.
    pub async fn drive(&mut self, lane: &mut impl Lane, depth: usize, start: Instant, end: Instant) -> LaneOutcome {
        let mut out = LaneOutcome::default();
        if let Err(e) = self.drive_inner(lane, depth.max(1), start, end, &mut out).await {
            out.errors += 1;
            out.first_error.get_or_insert_with(|| e.to_string());
        }
        out
    }

    async fn drive_inner(
        &mut self,
        lane: &mut impl Lane,
        depth: usize,
        start: Instant,
        end: Instant,
        out: &mut LaneOutcome,
    ) -> Result<(), BenchError> {
        let cap = (depth * 4).next_power_of_two();
        let mask = cap as u64 - 1;
        let t0 = Instant::now();
        let mut slots: Vec<(u64, Instant)> = vec![(0, t0); cap];
        let mut wbuf = Vec::with_capacity(depth * 160);
        let mut in_flight = 0usize;
        for _ in 0..depth {
            let id = self.take_id();
            lane.request(id, &mut wbuf);
            slots[(id & mask) as usize] = (id, t0);
            in_flight += 1;
        }
        self.send(&wbuf).await?;
        wbuf.clear();
        while in_flight > 0 {
            self.fill().await?;
            let now = Instant::now();
            let counted = now >= start && now <= end;
            let mut consumed = 0;
            while let Some(nl) = memchr::memchr(b'\n', &self.rbuf[consumed..]) {
                let line = &self.rbuf[consumed..consumed + nl];
                consumed += nl + 1;
                let Some(id) = int_after(line, b"\"id\":") else { continue }; // a notification
                let slot = &mut slots[(id & mask) as usize];
                if slot.0 != id {
                    out.unmatched += 1;
                    continue;
                }
                slot.0 = 0;
                let sent = slot.1;
                in_flight -= 1;
                match lane.answer(id, line) {
                    Answer::Ok if counted => {
                        out.requests += 1;
                        out.latencies.record(now - sent);
                    }
                    Answer::Ok => {}
                    Answer::RateLimited => out.rate_limited += u64::from(counted),
                    Answer::Error => {
                        out.errors += 1;
                        if out.first_error.is_none() {
                            out.first_error = Some(String::from_utf8_lossy(line).into_owned());
                        }
                    }
                }
                if now < end {
                    let id = self.take_id();
                    lane.request(id, &mut wbuf);
                    slots[(id & mask) as usize] = (id, now);
                    in_flight += 1;
                }
            }
            self.rbuf.drain(..consumed);
            if !wbuf.is_empty() {
                self.send(&wbuf).await?;
                wbuf.clear();
            }
        }
        Ok(())
    }

    /// Closes the connection (the writing side first, then the socket).
    pub async fn close(mut self) {
        let _ = self.stream.shutdown().await;
    }
}

/// `ping` requests: `{"jsonrpc":"2.0","id":N,"method":"ping"}`.
#[derive(Debug, Default, Clone, Copy)]
pub struct PingLane;

impl Lane for PingLane {
    fn request(&mut self, id: u64, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"jsonrpc\":\"2.0\",\"id\":");
        push_u64(out, id);
        out.extend_from_slice(b",\"method\":\"ping\"}\n");
    }
}

/// Requests of any method with empty params:
/// `{"jsonrpc":"2.0","id":N,"method":M,"params":{}}` (`ping` without params,
/// as [`PingLane`]).
#[derive(Debug, Clone)]
pub struct MethodLane {
    /// Everything after the id, with the `\n`.
    tail: Vec<u8>,
}

impl MethodLane {
    /// Requests of `method`.
    pub fn new(method: &str) -> Self {
        let name = serde_json::to_string(method).unwrap_or_else(|_| "\"ping\"".to_owned());
        let params = if method == "ping" { "" } else { ",\"params\":{}" };
        Self { tail: format!(",\"method\":{name}{params}}}\n").into_bytes() }
    }
}

impl Lane for MethodLane {
    fn request(&mut self, id: u64, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"jsonrpc\":\"2.0\",\"id\":");
        push_u64(out, id);
        out.extend_from_slice(&self.tail);
    }
}

/// Logs in on `conn` with a password; returns the token.
///
/// # Errors
/// [`BenchError`] when the socket fails or the login is refused.
pub async fn login(conn: &mut LineConn, account: &str, password: &str) -> Result<String, BenchError> {
    let id = conn.take_id();
    let line = format!(
        "{{\"jsonrpc\":\"2.0\",\"id\":{id},\"method\":\"login\",\"params\":{}}}\n",
        serde_json::json!({"account": account, "password": password})
    );
    let answer = conn.call(id, line.as_bytes()).await?;
    match str_after(&answer, b"\"token\":") {
        Some(token) if classify(&answer) == Answer::Ok => Ok(token.to_owned()),
        _ => Err(BenchError::Other(format!("login {account}: {}", String::from_utf8_lossy(&answer)))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_ids_tokens_and_errors() {
        let ok = br#"{"jsonrpc":"2.0","id":42,"result":{"server_time_ms":1}}"#;
        assert_eq!(int_after(ok, b"\"id\":"), Some(42));
        assert_eq!(classify(ok), Answer::Ok);
        let limited = br#"{"jsonrpc":"2.0","id":7,"error":{"code":1007,"message":"x"}}"#;
        assert_eq!(classify(limited), Answer::RateLimited);
        let other = br#"{"jsonrpc":"2.0","id":7,"error":{"code":-32601,"message":"x"}}"#;
        assert_eq!(classify(other), Answer::Error);
        assert_eq!(int_after(br#"{"id":null}"#, b"\"id\":"), None);
        assert_eq!(str_after(br#"{"result":{"account":"a","token":"ab12"}}"#, b"\"token\":"), Some("ab12"));
    }

    #[test]
    fn websocket_frames_round_trip() {
        let mut out = Vec::new();
        frame_lines(b"{\"id\":1}\n{\"id\":2}\n", &mut out);
        assert_eq!(&out[..6], &[0x81, 0x80 | 8, 0, 0, 0, 0]);
        // The server's frames are not masked: strip the masks to make some.
        let server: Vec<u8> = [&[0x81u8, 8][..], b"{\"id\":1}", &[0x01, 3], b"{\"i", &[0x80, 5], b"d\":2}"].concat();
        let mut lines = Vec::new();
        assert_eq!(unframe(&server, &mut lines).ok(), Some(server.len()));
        assert_eq!(lines, b"{\"id\":1}\n{\"id\":2}\n");
        let mut partial = Vec::new();
        assert_eq!(unframe(&server[..12], &mut partial).ok(), Some(10));
        assert!(unframe(&[0x88, 0], &mut partial).is_err());
    }

    #[test]
    fn formats_ping_requests() {
        let mut out = Vec::new();
        PingLane.request(0, &mut out);
        PingLane.request(9_223_372_036_854_775_807, &mut out);
        assert_eq!(
            out,
            b"{\"jsonrpc\":\"2.0\",\"id\":0,\"method\":\"ping\"}\n{\"jsonrpc\":\"2.0\",\"id\":9223372036854775807,\"method\":\"ping\"}\n"
        );
        let (mut ping, mut echo) = (MethodLane::new("ping"), MethodLane::new("echo"));
        let (mut a, mut b) = (Vec::new(), Vec::new());
        ping.request(3, &mut a);
        PingLane.request(3, &mut b);
        assert_eq!(a, b);
        a.clear();
        echo.request(4, &mut a);
        assert_eq!(a, b"{\"jsonrpc\":\"2.0\",\"id\":4,\"method\":\"echo\",\"params\":{}}\n");
    }
}
