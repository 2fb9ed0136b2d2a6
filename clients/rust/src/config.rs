//! [`ClientConfig`]: the knobs of one client connection.

use std::path::PathBuf;
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
    /// the connection (default 10 s): TCP, the TLS handshake and the WebSocket
    /// upgrade together; past it, connecting fails with
    /// [`ClientError::Timeout`](super::ClientError::Timeout).
    pub connect_timeout: Duration,
    /// The longest line, in bytes without the `\n`, accepted from the server
    /// (default 16 MiB); on WebSocket, the longest text message (one
    /// trailing `\n` more is allowed, docs/protocol.md §1.1). A longer one closes
    /// the connection with [`ClientError::Protocol`](super::ClientError::Protocol). The server's
    /// own frame limit (docs/protocol.md §1, `max_frame_bytes`) applies to what the
    /// client sends and is not checked here.
    pub max_line_bytes: usize,
    /// A PEM file of CA certificates for `tls://` and `wss://`
    /// (docs/protocol.md §1.2): when set, the server's certificate must chain to
    /// one of these, and the system's roots are not used (e.g. the
    /// `cert.pem` of `portcullis cert`, docs/cli.md). `None` (the default)
    /// trusts the operating system's root certificates. Read at each
    /// connect; a file that cannot be read or holds no certificate fails the
    /// connect with [`ClientError::Tls`](super::ClientError::Tls). Unused by
    /// plain TCP and `ws://`.
    pub ca_file: Option<PathBuf>,
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
            ca_file: None,
        }
    }
}
