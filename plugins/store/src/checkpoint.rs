//! The checkpointer thread: copies committed pages from the WAL into the
//! database file on its own connection, so that the SQLite thread only
//! appends to the WAL.
//!
//! SQLite's automatic checkpoint runs inside the `COMMIT` that crosses the
//! threshold, on the committing thread, and costs it about a quarter of its
//! time under a stream of saves. A passive checkpoint from another
//! connection runs next to the writer without blocking it. The SQLite
//! thread pokes this thread after each commit; it checkpoints at most every
//! [`MIN_INTERVAL`]. The writer keeps an automatic checkpoint at
//! [`BACKSTOP_PAGES`] in case this thread falls far behind.

use std::path::Path;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError, bounded};
use rusqlite::Connection;
use tracing::{debug, warn};

use crate::StoreError;

/// Shortest time between two checkpoints.
const MIN_INTERVAL: Duration = Duration::from_millis(100);

/// The writer's own automatic checkpoint threshold (WAL pages) while a
/// checkpointer runs: about 256 MiB of WAL with 4 KiB pages.
pub(crate) const BACKSTOP_PAGES: u32 = 65_536;

/// Handle to the checkpointer thread, owned by the SQLite thread.
#[derive(Debug)]
pub(crate) struct Checkpointer {
    /// Pokes the thread; dropping it stops the thread.
    poke: Sender<()>,
    /// The thread.
    handle: JoinHandle<()>,
}

impl Checkpointer {
    /// Opens a second connection to `path` and starts the thread. `None`
    /// for an in-memory database, which has no WAL.
    pub(crate) fn start(path: &Path) -> Result<Option<Self>, StoreError> {
        if path.as_os_str().is_empty() || path == Path::new(":memory:") {
            return Ok(None);
        }
        let conn = Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(1))?;
        let (poke, pokes) = bounded(1);
        let handle = thread::Builder::new()
            .name("portcullis-checkpoint".into())
            .spawn(move || run(&conn, &pokes))
            .map_err(StoreError::Spawn)?;
        Ok(Some(Self { poke, handle }))
    }

    /// Asks for a checkpoint soon; never blocks.
    pub(crate) fn poke(&self) {
        match self.poke.try_send(()) {
            // Full: a checkpoint is already due.
            Ok(()) | Err(TrySendError::Full(())) => {}
            Err(TrySendError::Disconnected(())) => {
                debug!("checkpointer gone; SQLite's automatic checkpoint takes over");
            }
        }
    }

    /// Stops the thread after its current checkpoint.
    pub(crate) fn stop(self) {
        drop(self.poke);
        if self.handle.join().is_err() {
            warn!("checkpointer thread panicked");
        }
    }
}

/// The thread: one passive checkpoint per poke, at most one per
/// [`MIN_INTERVAL`]; returns when the SQLite thread drops its sender.
fn run(conn: &Connection, pokes: &Receiver<()>) {
    let mut due = pokes.recv().is_ok();
    while due {
        let started = Instant::now();
        match conn
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| Ok((row.get::<_, i64>(1)?, row.get::<_, i64>(2)?)))
        {
            Ok((wal_pages, copied)) => {
                debug!(wal_pages, copied, elapsed_us = started.elapsed().as_micros(), "wal checkpoint")
            }
            Err(e) => warn!(error = %e, "wal checkpoint failed"),
        }
        // Let pages gather; pokes meanwhile make the next round due at once.
        let until = started + MIN_INTERVAL;
        let mut poked = false;
        loop {
            match pokes.recv_deadline(until) {
                Ok(()) => poked = true,
                Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
        due = poked || pokes.recv().is_ok();
    }
}
