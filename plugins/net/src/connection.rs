//! The `Connection` entity: its identity, its outbound queue and its inbox.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bevy_ecs::prelude::*;
use bytes::Bytes;
use crossbeam_channel::Sender;
use tokio_util::sync::CancellationToken;

/// A connection's id, unique for the life of the process (never reused).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionId(pub u64);

impl std::fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// What the ECS asks a connection's writer to do, in order.
#[derive(Debug)]
pub enum Outgoing {
    /// Write one message; a line transport appends the `\n`, a message
    /// transport (WebSocket) sends it as one text message.
    Line(String),
    /// Flush everything queued before, then close the connection.
    Close {
        /// The text a transport that carries one sends with its close (the
        /// reason of a WebSocket Close frame); `None` for none.
        reason: Option<String>,
    },
}

/// Which transport carries a connection: readable on every connection entity
/// (as a component and through [`Connection::transport`]), for logs and the
/// admin view. Nothing above the network layer needs to branch on it.
#[derive(Component, Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[component(immutable)]
#[non_exhaustive]
pub enum Transport {
    /// Lines over a TCP socket (docs/protocol.md §1).
    Tcp {
        /// Inside TLS (docs/protocol.md §1.2).
        tls: bool,
    },
    /// Text messages over a WebSocket (docs/protocol.md §1.1).
    WebSocket {
        /// Inside TLS (`wss://`, docs/protocol.md §1.2).
        tls: bool,
    },
    /// The in-memory transport of [`crate::TestClient`].
    Memory,
}

impl Transport {
    /// Whether the transport is encrypted with TLS.
    pub fn is_tls(self) -> bool {
        matches!(self, Self::Tcp { tls: true } | Self::WebSocket { tls: true })
    }

    /// A short name: `tcp`, `tls`, `ws`, `wss` or `memory`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tcp { tls: false } => "tcp",
            Self::Tcp { tls: true } => "tls",
            Self::WebSocket { tls: false } => "ws",
            Self::WebSocket { tls: true } => "wss",
            Self::Memory => "memory",
        }
    }
}

impl std::fmt::Display for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The transport's end of a connection, as the ECS side reaches it. Each
/// transport implements it: the socket transports (TCP, TLS, WebSocket) with
/// a queue into their writer task ([`TaskOutbound`]), the in-memory transport
/// with a queue the [`crate::TestClient`] reads. None of these calls blocks.
pub(crate) trait Outbound: Send + Sync + std::fmt::Debug + 'static {
    /// Queues one item for the writer; `false` when the queue is full (a
    /// queue whose reader is gone accepts, its end is on its way).
    fn push(&self, item: Outgoing) -> bool;
    /// Ends the connection at once, dropping whatever is still queued.
    fn abort(&self);
    /// Asks the reader to report [`crate::InputDrained`] once the input that
    /// is waiting now has been read ([`DrainStatus::Pending`]), or answers
    /// [`DrainStatus::Drained`] when every frame reached the ECS already.
    fn request_drain(&self, shared: &SharedState) -> DrainStatus;
}

/// The [`Outbound`] of the socket transports: a bounded queue into the
/// connection's writer task and a token that aborts the connection's task.
#[derive(Debug)]
pub(crate) struct TaskOutbound {
    pub(crate) tx: crate::outq::OutSender,
    pub(crate) abort: CancellationToken,
}

impl Outbound for TaskOutbound {
    fn push(&self, item: Outgoing) -> bool {
        match self.tx.try_send(item) {
            Ok(()) => true,
            // A closed queue means the writer is gone: the Closed event is on its way.
            Err(crate::outq::TrySendError::Closed) => true,
            Err(crate::outq::TrySendError::Full) => false,
        }
    }

    fn abort(&self) {
        self.abort.cancel();
    }

    fn request_drain(&self, shared: &SharedState) -> DrainStatus {
        shared.request_drain();
        DrainStatus::Pending
    }
}

/// Everything a transport hands the ECS about a new connection.
#[derive(Debug)]
pub(crate) struct Link {
    pub(crate) transport: Transport,
    pub(crate) shared: Arc<SharedState>,
    pub(crate) outbound: Box<dyn Outbound>,
    /// From the accept until the connection could carry messages.
    pub(crate) handshake: Duration,
}

/// State shared by a connection's ECS side and its transport: the unsent
/// output in bytes (docs/protocol.md §6, "Output") and the input-drain
/// handshake of the deadlines (docs/protocol.md §6, "Deadlines").
#[derive(Debug)]
pub(crate) struct SharedState {
    /// Bytes of output (each line with its `\n`) given to [`Connection::send`]
    /// and not yet written to the socket (or, in memory, not yet read by the
    /// [`crate::TestClient`]).
    unsent: AtomicUsize,
    /// `outbound_queue_bytes`: more unsent bytes than this close the connection.
    max_unsent: usize,
    /// Woken when `unsent` falls to half of `max_unsent` or below.
    pub(crate) writable: tokio::sync::Notify,
    /// The ECS asked the reader to confirm its input is drained.
    drain_requested: AtomicBool,
    /// Woken when `drain_requested` is set.
    pub(crate) drain: tokio::sync::Notify,
}

impl SharedState {
    pub(crate) fn new(max_unsent: usize) -> Arc<Self> {
        Arc::new(Self {
            unsent: AtomicUsize::new(0),
            max_unsent,
            writable: tokio::sync::Notify::new(),
            drain_requested: AtomicBool::new(false),
            drain: tokio::sync::Notify::new(),
        })
    }

    /// Unsent output in bytes.
    pub(crate) fn unsent(&self) -> usize {
        self.unsent.load(Ordering::Acquire)
    }

    /// Whether the unsent output is over half of `outbound_queue_bytes`: the
    /// transport reads no more frames (docs/protocol.md §6, "Output").
    pub(crate) fn over_half(&self) -> bool {
        self.unsent() > self.max_unsent / 2
    }

    /// Counts `n` bytes as written out; wakes a reader waiting on backpressure.
    pub(crate) fn sent(&self, n: usize) {
        let before = self.unsent.fetch_sub(n, Ordering::AcqRel);
        if before.saturating_sub(n) <= self.max_unsent / 2 {
            self.writable.notify_one();
        }
    }

    /// Takes the pending drain request, if any.
    pub(crate) fn take_drain_request(&self) -> bool {
        self.drain_requested.swap(false, Ordering::AcqRel)
    }

    pub(crate) fn request_drain(&self) {
        self.drain_requested.store(true, Ordering::Release);
        self.drain.notify_one();
    }

    /// Puts back a drain request that the reader took but could not answer
    /// (reading ended first; the connection task answers it).
    pub(crate) fn request_drain_again(&self) {
        self.drain_requested.store(true, Ordering::Release);
    }

    /// Backpressure of every reader (docs/protocol.md §6, "Output"): while
    /// the unsent output is over half, waits until the writer catches up or a
    /// drain is requested, answering a drain request at once (the reader does
    /// not read now). Returns whether it waited; the reader then looks again.
    pub(crate) async fn wait_while_over_half(&self, id: crate::ConnectionId, bridge: &crate::NetBridge) -> bool {
        if !self.over_half() {
            return false;
        }
        if self.take_drain_request() {
            bridge.send(crate::NetEvent::Drained { id });
        }
        tokio::select! {
            biased;
            () = self.writable.notified() => {}
            () = self.drain.notified() => {}
        }
        true
    }
}

/// The answer of [`Connection::confirm_input_drained`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DrainStatus {
    /// Every frame that was waiting has reached the ECS already.
    Drained,
    /// The transport reads what is waiting and then reports an
    /// [`InputDrained`](crate::InputDrained) message for this connection.
    Pending,
}

/// One client connection. Spawned by `NetPlugin`'s receive system when a
/// client connects, despawned when the transport reports it closed (after a
/// [`ConnectionClosed`](crate::ConnectionClosed) trigger).
///
/// Any system may send with [`Connection::send`] or close with
/// [`Connection::close`]: both only push into the connection's bounded queue
/// and never block. A connection whose queue is full is closed at once
/// without a goodbye (a slow reader, docs/protocol.md §6, "Output"), and so
/// is one whose unsent output would pass `outbound_queue_bytes`.
#[derive(Component, Debug)]
pub struct Connection {
    id: ConnectionId,
    peer: SocketAddr,
    transport: Transport,
    handshake: Duration,
    shared: Arc<SharedState>,
    outbound: Box<dyn Outbound>,
    closing: AtomicBool,
    /// The reason text of the close, when [`Connection::close_with_reason`] began it.
    close_reason: std::sync::OnceLock<String>,
    /// Tells the ECS once when the close begins ([`crate::ConnectionClosing`]).
    closing_feed: Sender<ConnectionId>,
}

/// What happened to a message given to [`Connection::send`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendStatus {
    /// Queued for the writer.
    Queued,
    /// The connection is already closing; the message was dropped.
    Closing,
    /// The queue was full: the connection is being closed as a slow reader.
    Overflow,
}

impl Connection {
    pub(crate) fn new(id: ConnectionId, peer: SocketAddr, link: Link, closing_feed: Sender<ConnectionId>) -> Self {
        let Link { transport, shared, outbound, handshake } = link;
        Self {
            id,
            peer,
            transport,
            handshake,
            shared,
            outbound,
            closing: AtomicBool::new(false),
            close_reason: std::sync::OnceLock::new(),
            closing_feed,
        }
    }

    /// The connection's process-unique id (the `conn` field of log lines).
    pub fn id(&self) -> ConnectionId {
        self.id
    }

    /// The peer's address (for the in-memory transport, the address the test chose).
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// The transport carrying this connection.
    pub fn transport(&self) -> Transport {
        self.transport
    }

    /// How long the transport's handshake took before the connection could
    /// carry messages (TLS, the WebSocket upgrade; zero for plain TCP and the
    /// in-memory transport). It counts against the login deadline
    /// (docs/protocol.md §1.2).
    pub fn handshake_time(&self) -> Duration {
        self.handshake
    }

    /// Whether a close was asked for (by [`close`](Self::close), [`abort`](Self::abort)
    /// or an overflow). A closing connection accepts no more messages.
    pub fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }

    /// Queues one message (without its `\n`). Never blocks. A connection
    /// whose unsent output would then exceed `outbound_queue` messages or
    /// `outbound_queue_bytes` bytes (the line plus its `\n` count) is closed at
    /// once as a slow reader, without a goodbye (docs/protocol.md §6, "Output").
    pub fn send(&self, line: String) -> SendStatus {
        if self.is_closing() {
            return SendStatus::Closing;
        }
        let shared = &self.shared;
        let len = line.len() + 1;
        let unsent = shared.unsent.fetch_add(len, Ordering::AcqRel) + len;
        if unsent > shared.max_unsent {
            shared.unsent.fetch_sub(len, Ordering::AcqRel);
            bevy_log::debug!(conn = %self.id, reason = "outbound_bytes_full", unsent, "closing slow reader");
            self.abort();
            return SendStatus::Overflow;
        }
        if self.push(Outgoing::Line(line)) {
            SendStatus::Queued
        } else {
            shared.unsent.fetch_sub(len, Ordering::AcqRel);
            bevy_log::debug!(conn = %self.id, reason = "outbound_queue_full", "closing slow reader");
            self.abort();
            SendStatus::Overflow
        }
    }

    /// Bytes of output queued with [`send`](Self::send) and not yet written to
    /// the socket (in memory: not yet read by the [`crate::TestClient`]).
    pub fn unsent_bytes(&self) -> usize {
        self.shared.unsent()
    }

    /// Asks the transport to confirm that the input already waiting for this
    /// connection (in the kernel's socket buffer) has been read, so that a
    /// deadline is judged only after it (docs/protocol.md §6, "Deadlines").
    /// Never blocks. A socket reader reads what is pending and then reports
    /// [`InputDrained`](crate::InputDrained) ([`DrainStatus::Pending`]); a
    /// reader that no longer reads (end of stream, backpressure, a frame too
    /// large) reports at once. The in-memory transport hands every frame to the
    /// ECS when the test sends it, so it answers [`DrainStatus::Drained`] here;
    /// so does a closing connection.
    pub fn confirm_input_drained(&self) -> DrainStatus {
        if self.is_closing() {
            return DrainStatus::Drained;
        }
        self.outbound.request_drain(&self.shared)
    }

    /// Closes gracefully: everything queued before is written first. Idempotent.
    pub fn close(&self) {
        self.close_inner(None);
    }

    /// Like [`close`](Self::close), with the text that a transport carrying
    /// one sends with its close: a WebSocket Close frame (status 1000) has
    /// it as its reason (docs/protocol.md §1.1); a TCP connection ignores it.
    pub fn close_with_reason(&self, reason: &str) {
        self.close_inner(Some(reason.to_owned()));
    }

    /// The reason text given to [`close_with_reason`](Self::close_with_reason)
    /// when that call began the close (`None` for any other close: the
    /// client's, a plain [`close`](Self::close), an abort). Layers above read
    /// it back as their own reason (e.g. why a session ended).
    pub fn close_reason(&self) -> Option<&str> {
        self.close_reason.get().map(String::as_str)
    }

    fn close_inner(&self, reason: Option<String>) {
        if self.is_closing() {
            return;
        }
        if let Some(reason) = &reason {
            let _ = self.close_reason.set(reason.clone());
        }
        if !self.begin_closing() {
            return;
        }
        if !self.outbound.push(Outgoing::Close { reason }) {
            self.outbound.abort();
        }
    }

    /// Closes at once, dropping whatever is still queued. Idempotent.
    pub fn abort(&self) {
        self.begin_closing();
        self.outbound.abort();
    }

    /// Sets the closing flag; the first time, reports the close to the ECS
    /// and returns true.
    fn begin_closing(&self) -> bool {
        if self.closing.swap(true, Ordering::AcqRel) {
            return false;
        }
        let _ = self.closing_feed.send(self.id);
        true
    }

    fn push(&self, item: Outgoing) -> bool {
        self.outbound.push(item)
    }
}

/// Why a connection ended, as reported by its transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseCause {
    /// The client closed (or reset) the connection first.
    Peer,
    /// The server closed it gracefully ([`Connection::close`]).
    Server,
    /// The server closed it at once: a slow reader, or [`Connection::abort`].
    Aborted,
    /// The transport failed.
    Error,
}

impl std::fmt::Display for CloseCause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Peer => "peer",
            Self::Server => "server",
            Self::Aborted => "aborted",
            Self::Error => "error",
        })
    }
}

/// How the rate limiter judged a frame on arrival (docs/protocol.md §6, "Rate").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// A token was taken: execute the frame.
    Admitted,
    /// No token: a request gets `RATE_LIMITED`, anything else is dropped.
    Refused,
    /// No token, and more than `rate_burst` frames were refused within the
    /// last second: answer as `Refused`, then close with `rate_limited`.
    RefusedClose,
}

/// One entry of a connection's inbox, in arrival order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InboxItem {
    /// A non-blank frame (without its `\n` / `\r\n`) and its admission.
    Frame {
        /// The frame's bytes, not yet checked for UTF-8.
        bytes: Bytes,
        /// What the rate limiter decided on arrival.
        admission: Admission,
    },
    /// A frame passed `max_frame_bytes`; nothing more will be read (docs/protocol.md §1).
    TooLarge,
    /// A message of a kind that carries no frame (a binary WebSocket
    /// message, docs/protocol.md §1.1); it took no rate token.
    Binary,
}

/// Frames received on a connection and not yet handled, plus activity
/// bookkeeping. Inserted with [`Connection`] by the receive system, which
/// pushes to it; the layer above pops from it. Blank frames are never
/// queued, they only count as activity.
#[derive(Component, Debug, Default)]
pub struct Inbox {
    /// Items in arrival order.
    pub items: VecDeque<InboxItem>,
    /// `Time<Real>::elapsed()` when the last frame of any kind (even blank or
    /// invalid) arrived, or when the connection opened (docs/protocol.md §6, "Idle").
    pub last_activity: Duration,
    /// The client closed its sending side; once every frame it sent has been
    /// handled the layer above closes the connection (without a goodbye).
    pub eof: bool,
    pub(crate) bucket: RateBucket,
}

impl Inbox {
    /// Takes one rate token for a unit of input that arrived inside a frame
    /// already admitted, at `now` (`Time<Real>` elapsed): a layer above that
    /// finds several messages in one frame charges each after the first
    /// (docs/protocol.md §2). Same rules as a frame's admission on arrival.
    pub fn admit(&mut self, now: Duration, config: &crate::NetConfig) -> Admission {
        self.bucket.admit(now, config.rate_limit, config.rate_burst)
    }

    /// Takes this connection out of the rate limit (docs/protocol.md §6,
    /// "Rate"): from now on every frame is [`Admission::Admitted`]. For a
    /// connection a layer above trusts, e.g. a backend service
    /// (docs/protocol.md §8: "no rate limit"); the queue and output limits
    /// still apply. There is no way back.
    pub fn exempt_from_rate_limit(&mut self) {
        self.bucket.exempt = true;
    }

    /// Whether [`exempt_from_rate_limit`](Self::exempt_from_rate_limit) was called.
    pub fn is_rate_limited(&self) -> bool {
        !self.bucket.exempt
    }
}

/// How far back refusals count toward the rate-limit close (docs/protocol.md §6, "Rate").
const REFUSAL_WINDOW: Duration = Duration::from_secs(1);

/// Per-connection token bucket plus the window of recent refusals.
#[derive(Debug, Default)]
pub(crate) struct RateBucket {
    tokens: f64,
    last_refill: Duration,
    refusals: VecDeque<Duration>,
    /// Every frame is admitted ([`Inbox::exempt_from_rate_limit`]).
    exempt: bool,
}

impl RateBucket {
    pub(crate) fn full(burst: u32, now: Duration) -> Self {
        Self { tokens: f64::from(burst), last_refill: now, refusals: VecDeque::new(), exempt: false }
    }

    /// Takes a token for one non-blank frame arriving at `now`.
    pub(crate) fn admit(&mut self, now: Duration, rate: f64, burst: u32) -> Admission {
        if self.exempt {
            return Admission::Admitted;
        }
        let elapsed = now.saturating_sub(self.last_refill).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(f64::from(burst));
        self.last_refill = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Admission::Admitted;
        }
        // "Within the last second" (docs/protocol.md §6, "Rate") is `now - t < 1 s`.
        // Computing a window start as `now - 1 s` would saturate at zero while
        // the clock is below one second and wrongly drop refusals made at t = 0.
        while self.refusals.front().is_some_and(|t| now.saturating_sub(*t) >= REFUSAL_WINDOW) {
            self.refusals.pop_front();
        }
        self.refusals.push_back(now);
        if self.refusals.len() > burst as usize { Admission::RefusedClose } else { Admission::Refused }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An exempt bucket (a backend service's, docs/protocol.md §8) admits
    /// every frame, however fast, and never reaches the close line.
    #[test]
    fn exempt_bucket_admits_everything() {
        let t0 = Duration::from_secs(1);
        let mut b = RateBucket::full(2, t0);
        b.exempt = true;
        for _ in 0..1000 {
            assert_eq!(b.admit(t0, 1.0, 2), Admission::Admitted);
        }
    }

    #[test]
    fn bucket_starts_full_and_refills() {
        let t0 = Duration::from_secs(5);
        let mut b = RateBucket::full(3, t0);
        for _ in 0..3 {
            assert_eq!(b.admit(t0, 10.0, 3), Admission::Admitted);
        }
        assert_eq!(b.admit(t0, 10.0, 3), Admission::Refused);
        // 100 ms at 10/s refills one token.
        assert_eq!(b.admit(t0 + Duration::from_millis(100), 10.0, 3), Admission::Admitted);
        assert_eq!(b.admit(t0 + Duration::from_millis(100), 10.0, 3), Admission::Refused);
    }

    /// More than `burst` refusals within a second close, also at clock zero
    /// (the first frames of the process): the window is `now - t < 1 s`,
    /// not "after `now - 1 s` saturated at zero".
    #[test]
    fn more_than_burst_refusals_in_a_second_close() {
        for t0 in [Duration::ZERO, Duration::from_secs(1)] {
            let mut b = RateBucket::full(2, t0);
            assert_eq!(b.admit(t0, 0.0, 2), Admission::Admitted);
            assert_eq!(b.admit(t0, 0.0, 2), Admission::Admitted);
            assert_eq!(b.admit(t0, 0.0, 2), Admission::Refused);
            assert_eq!(b.admit(t0, 0.0, 2), Admission::Refused);
            assert_eq!(b.admit(t0, 0.0, 2), Admission::RefusedClose, "at {t0:?}");
        }
    }

    #[test]
    fn old_refusals_leave_the_window() {
        let t0 = Duration::from_secs(1);
        let mut b = RateBucket::full(1, t0);
        assert_eq!(b.admit(t0, 0.0, 1), Admission::Admitted);
        assert_eq!(b.admit(t0, 0.0, 1), Admission::Refused);
        assert_eq!(b.admit(t0 + Duration::from_secs(2), 0.0, 1), Admission::Refused);
    }

    /// A refusal leaves the window exactly one second later, also near zero.
    #[test]
    fn refusal_window_edges_near_clock_zero() {
        let mut b = RateBucket::full(0, Duration::ZERO);
        assert_eq!(b.admit(Duration::ZERO, 0.0, 1), Admission::Refused);
        assert_eq!(b.admit(Duration::from_millis(999), 0.0, 1), Admission::RefusedClose);
        let mut b = RateBucket::full(0, Duration::ZERO);
        assert_eq!(b.admit(Duration::ZERO, 0.0, 1), Admission::Refused);
        assert_eq!(b.admit(Duration::from_millis(1000), 0.0, 1), Admission::Refused);
    }
}
