//! Blocking helpers for tests of code that uses the store (this crate's own
//! tests use them too). Never call them from a system: they wait.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::{Store, StoreError, StoreFailure, StoreOk, StoreReply, StoreRequest};

/// Tags used by [`call`]: the top half of the range, so they do not collide
/// with a test's own small tags.
static NEXT_TAG: AtomicU64 = AtomicU64::new(1 << 63);

/// Submits `request` and waits up to `timeout` for its reply.
///
/// Replies to other requests that arrive meanwhile are dropped, so use it
/// only when nothing else is waiting for the store.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use portcullis_store::{Store, StoreConfig, StoreOk, StoreRequest, testing};
///
/// let store = Store::open(StoreConfig::in_memory().fast_hashing(), None)?;
/// let load = StoreRequest::LoadUserdata { account_id: 1 };
/// assert_eq!(
///     testing::call(&store, load, Duration::from_secs(10))?,
///     Ok(StoreOk::Userdata(None))
/// );
/// # Ok::<(), portcullis_store::StoreError>(())
/// ```
pub fn call(
    store: &Store,
    request: StoreRequest,
    timeout: Duration,
) -> Result<Result<StoreOk, StoreFailure>, StoreError> {
    let tag = NEXT_TAG.fetch_add(1, Ordering::Relaxed);
    store.submit(tag, request)?;
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match store.replies().recv_timeout(left) {
            Ok(reply) if reply.tag == tag => return Ok(reply.result),
            Ok(_) => {}
            Err(_) => return Err(StoreError::Timeout),
        }
    }
}

/// Waits up to `timeout` (in all) for `count` replies, in the order they
/// arrive.
pub fn collect(store: &Store, count: usize, timeout: Duration) -> Result<Vec<StoreReply>, StoreError> {
    let deadline = Instant::now() + timeout;
    let mut replies = Vec::with_capacity(count);
    while replies.len() < count {
        let left = deadline.saturating_duration_since(Instant::now());
        match store.replies().recv_timeout(left) {
            Ok(reply) => replies.push(reply),
            Err(_) => return Err(StoreError::Timeout),
        }
    }
    Ok(replies)
}

/// The longest a [`Gate`] holds a thread.
const MAX_HOLD: Duration = Duration::from_secs(30);

/// A `notify` callback that can hold the store's threads: while it is
/// closed, every thread that calls it waits inside it. Lets a test pile up
/// requests so that they land in one batch, or fill the queue. A thread is
/// never held longer than 30 s, so a failing test does not hang.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use portcullis_store::{Store, StoreConfig, StoreRequest, testing::{self, Gate}};
///
/// let gate = Gate::closed();
/// let store = Store::open(StoreConfig::in_memory().fast_hashing(), Some(gate.notify()))?;
/// store.submit(0, StoreRequest::LoadUserdata { account_id: 1 })?;
/// assert!(gate.wait_until_held(Duration::from_secs(10)));
/// // The SQLite thread is now waiting in `notify`: these two run in one batch.
/// store.submit(1, StoreRequest::SaveUserdata { account_id: 1, data: "{}".into() })?;
/// store.submit(2, StoreRequest::LoadUserdata { account_id: 1 })?;
/// gate.open();
/// assert_eq!(testing::collect(&store, 3, Duration::from_secs(10))?.len(), 3);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Gate {
    /// Gets a message each time a thread starts waiting in `notify`.
    held: crossbeam_channel::Receiver<()>,
    /// Dropped by [`open`](Self::open), which releases every waiting thread.
    release: std::sync::Mutex<Option<crossbeam_channel::Sender<()>>>,
    /// The callback's ends of the two channels.
    parts: (crossbeam_channel::Sender<()>, crossbeam_channel::Receiver<()>),
}

impl Gate {
    /// A closed gate: `notify` holds every caller until [`open`](Self::open).
    pub fn closed() -> Self {
        let (held_tx, held_rx) = crossbeam_channel::unbounded();
        let (release_tx, release_rx) = crossbeam_channel::bounded(0);
        Self { held: held_rx, release: std::sync::Mutex::new(Some(release_tx)), parts: (held_tx, release_rx) }
    }

    /// The callback to give to [`Store::open`].
    pub fn notify(&self) -> crate::Notify {
        let (held, release) = self.parts.clone();
        std::sync::Arc::new(move || {
            let _ = held.send(());
            // Returns when the gate opens (its sender is dropped), or after
            // a while so that a failed test cannot hang in `Store`'s drop.
            let _ = release.recv_timeout(MAX_HOLD);
        })
    }

    /// Waits up to `timeout` until a thread is held in `notify`; `false` if
    /// none came.
    pub fn wait_until_held(&self, timeout: Duration) -> bool {
        self.held.recv_timeout(timeout).is_ok()
    }

    /// Opens the gate for good: held threads go on, `notify` no longer waits.
    pub fn open(&self) {
        self.release.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.open();
    }
}
