//! [`ClientConfig`]: the knobs of one client connection.

use std::time::Duration;

/// How a [`Client`](super::Client) connects and how long it waits.
///
/// Passed to [`Client::connect_with`](super::Client::connect_with) and read once
/// there. Build it from [`Default`] and override fields:
///
/// ```
/// use std::time::Duration;
/// use portcullis_client::ClientConfig;
///
/// let config = ClientConfig { rpc_timeout: Duration::from_millis(500), ..Default::default() };
/// assert_eq!(config.max_line_bytes, 16 * 1024 * 1024);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// How long a request may wait for its response (default 10 s,
    /// docs/protocol.md §7). When any request, including the automatic save sent
    /// on `kicked`, has waited this long, the client closes the connection and
    /// fails every pending call with [`ClientError::Timeout`](super::ClientError::Timeout).
    /// Also bounds how long [`Client::disconnect`](super::Client::disconnect)
    /// waits for the server to close after its `{}` answer. Keep it above the
    /// server's kick-save deadline (`save_deadline_ms`, default 5 s): a `login`
    /// that takes over another session is answered only after that session's
    /// kick ends (docs/protocol.md §6).
    pub rpc_timeout: Duration,
    /// How long [`Client::connect`](super::Client::connect) may take to open
    /// the TCP connection (default 10 s); past it, connecting fails with
    /// [`ClientError::Timeout`](super::ClientError::Timeout).
    pub connect_timeout: Duration,
    /// The longest line, in bytes without the `\n`, accepted from the server
    /// (default 16 MiB). A longer line closes the connection with
    /// [`ClientError::Protocol`](super::ClientError::Protocol). The server's
    /// own frame limit (docs/protocol.md §1, `max_frame_bytes`) applies to what the
    /// client sends and is not checked here.
    pub max_line_bytes: usize,
}

impl ClientConfig {
    /// The default [`ClientConfig::rpc_timeout`]: 10 s (docs/protocol.md §7).
    pub const DEFAULT_RPC_TIMEOUT: Duration = Duration::from_secs(10);
    /// The default [`ClientConfig::connect_timeout`]: 10 s.
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
    /// The default [`ClientConfig::max_line_bytes`]: 16 MiB.
    pub const DEFAULT_MAX_LINE_BYTES: usize = 16 * 1024 * 1024;
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            rpc_timeout: Self::DEFAULT_RPC_TIMEOUT,
            connect_timeout: Self::DEFAULT_CONNECT_TIMEOUT,
            max_line_bytes: Self::DEFAULT_MAX_LINE_BYTES,
        }
    }
}
