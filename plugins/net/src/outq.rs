//! A connection's outbound queue: the ECS side pushes without blocking, the
//! connection's task takes everything queued at once.
//!
//! In place of a tokio `mpsc` channel, which allocates a block of slots and
//! cache-padded counters for every connection up front: here an idle
//! connection's queue holds no allocation at all (an empty `VecDeque`), the
//! writer takes all that was queued with one lock, and the writer is woken
//! only by the push that found the queue empty.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

use crate::connection::Outgoing;

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    /// Woken by the push that finds the queue empty, and when the sender goes.
    ready: Notify,
    capacity: usize,
}

#[derive(Debug, Default)]
struct State {
    queue: VecDeque<Outgoing>,
    sender_gone: bool,
    receiver_gone: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Why [`OutSender::try_send`] did not queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TrySendError {
    /// `capacity` items wait already.
    Full,
    /// The receiver is gone (the connection's task ended).
    Closed,
}

/// The ECS end: never blocks (one uncontended lock per push).
#[derive(Debug)]
pub(crate) struct OutSender {
    shared: Arc<Shared>,
}

/// The connection task's end.
#[derive(Debug)]
pub(crate) struct OutReceiver {
    shared: Arc<Shared>,
    /// What was taken from the queue and not yet handed out.
    local: VecDeque<Outgoing>,
}

/// A queue that holds at most `capacity` items not yet taken by the receiver.
pub(crate) fn channel(capacity: usize) -> (OutSender, OutReceiver) {
    let shared =
        Arc::new(Shared { state: Mutex::new(State::default()), ready: Notify::new(), capacity: capacity.max(1) });
    (OutSender { shared: Arc::clone(&shared) }, OutReceiver { shared, local: VecDeque::new() })
}

impl OutSender {
    /// Queues `item` unless the queue is full or the receiver is gone.
    pub(crate) fn try_send(&self, item: Outgoing) -> Result<(), TrySendError> {
        let was_empty = {
            let mut state = self.shared.lock();
            if state.receiver_gone {
                return Err(TrySendError::Closed);
            }
            if state.queue.len() >= self.shared.capacity {
                return Err(TrySendError::Full);
            }
            state.queue.push_back(item);
            state.queue.len() == 1
        };
        if was_empty {
            self.shared.ready.notify_one();
        }
        Ok(())
    }
}

impl Drop for OutSender {
    fn drop(&mut self) {
        self.shared.lock().sender_gone = true;
        self.shared.ready.notify_one();
    }
}

impl OutReceiver {
    /// The next item; `None` once the sender is gone and everything queued was taken.
    pub(crate) async fn recv(&mut self) -> Option<Outgoing> {
        loop {
            if let Some(item) = self.try_recv() {
                return Some(item);
            }
            if self.shared.lock().sender_gone && self.refill() == 0 {
                return None;
            }
            self.shared.ready.notified().await;
        }
    }

    /// The next item if one is queued, without waiting.
    pub(crate) fn try_recv(&mut self) -> Option<Outgoing> {
        if self.local.is_empty() {
            self.refill();
        }
        let item = self.local.pop_front();
        if self.local.is_empty() && self.local.capacity() > 0 {
            // Nothing kept while idle: the next batch brings its own.
            self.local = VecDeque::new();
        }
        item
    }

    /// Takes everything queued; how many items that was.
    fn refill(&mut self) -> usize {
        let taken = std::mem::take(&mut self.shared.lock().queue);
        let n = taken.len();
        if self.local.is_empty() {
            self.local = taken;
        } else {
            self.local.extend(taken);
        }
        n
    }
}

impl Drop for OutReceiver {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.receiver_gone = true;
        state.queue = VecDeque::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(s: &str) -> Outgoing {
        Outgoing::Line(s.to_owned())
    }

    fn text(item: Option<Outgoing>) -> Option<String> {
        match item {
            Some(Outgoing::Line(s)) => Some(s),
            Some(Outgoing::Close { .. }) => Some("<close>".to_owned()),
            None => None,
        }
    }

    #[test]
    fn bounded_ordered_and_closed() {
        let (tx, mut rx) = channel(2);
        assert_eq!(tx.try_send(line("a")), Ok(()));
        assert_eq!(tx.try_send(line("b")), Ok(()));
        assert_eq!(tx.try_send(line("c")), Err(TrySendError::Full));
        assert_eq!(text(rx.try_recv()).as_deref(), Some("a"));
        // Taken by the receiver: room again.
        assert_eq!(tx.try_send(line("c")), Ok(()));
        assert_eq!(text(rx.try_recv()).as_deref(), Some("b"));
        assert_eq!(text(rx.try_recv()).as_deref(), Some("c"));
        assert!(rx.try_recv().is_none());
        drop(rx);
        assert_eq!(tx.try_send(line("d")), Err(TrySendError::Closed));
    }

    #[tokio::test]
    async fn recv_waits_for_a_push_and_ends_when_the_sender_goes() {
        let (tx, mut rx) = channel(8);
        let pusher = std::thread::spawn(move || {
            tx.try_send(line("x")).expect("room");
            tx.try_send(Outgoing::Close { reason: None }).expect("room");
        });
        let got = tokio::time::timeout(std::time::Duration::from_secs(10), async {
            (text(rx.recv().await), text(rx.recv().await), text(rx.recv().await))
        })
        .await
        .expect("answered in time");
        pusher.join().expect("pusher");
        assert_eq!(got, (Some("x".to_owned()), Some("<close>".to_owned()), None));
    }
}
