//! [`BenchError`]: why a bench could not run to its end.

use std::net::SocketAddr;
use std::time::Duration;

use portcullis_client::ClientError;

/// Why `portcullis-bench` stopped without a report.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BenchError {
    /// `--connect` named an address off this machine.
    #[error("--connect {0}: the bench only targets loopback addresses (127.0.0.0/8, ::1)")]
    NotLoopback(SocketAddr),
    /// Starting, reading or stopping a child process, or reading `/proc`, failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A child server did not print `listening on ADDR` in time, or exited.
    #[error("{what} did not start: {detail}")]
    ChildStart {
        /// Which server.
        what: String,
        /// What happened, with the end of its stderr.
        detail: String,
    },
    /// A client call failed where the bench cannot go on.
    #[error("{what}: {source}")]
    Client {
        /// What was being done.
        what: String,
        /// The client's error.
        source: ClientError,
    },
    /// A phase did not finish within its time bound.
    #[error("{what} did not finish within {limit:?}")]
    Timeout {
        /// The phase.
        what: String,
        /// Its bound.
        limit: Duration,
    },
    /// Not enough file descriptors for the connections asked for.
    #[error("the open-file limit is {got}, {needed} are needed for {connections} connections")]
    FileLimit {
        /// The limit obtained.
        got: u64,
        /// The limit needed.
        needed: u64,
        /// Connections asked for.
        connections: usize,
    },
    /// Anything else (a hashing failure, a task that panicked).
    #[error("{0}")]
    Other(String),
}

impl BenchError {
    /// An [`BenchError::Io`] with a description of what was being done.
    pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let what = what.into();
        move |source| Self::Io { what, source }
    }

    /// A [`BenchError::Client`] with a description of what was being done.
    pub fn client(what: impl Into<String>) -> impl FnOnce(ClientError) -> Self {
        let what = what.into();
        move |source| Self::Client { what, source }
    }
}
