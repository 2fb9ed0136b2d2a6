//! Wakes the server's frame loop when input arrives (docs/architecture.md, "Frames and ticks").

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use bevy_ecs::resource::Resource;

/// A cheap, cloneable handle that the network and store threads call after
/// they push into a channel the ECS drains, and that the event-driven runner
/// sleeps on.
///
/// Inserted as a resource by [`RunnerPlugin`](crate::RunnerPlugin) and
/// [`SignalPlugin`](crate::SignalPlugin) (or by whichever plugin needs it
/// first, with `get_resource_or_init`, so every plugin shares one); runners
/// read it with `world.resource::<FrameWaker>().clone()`. Waking is
/// idempotent: many wakes before the next frame cost one lock.
///
/// # Examples
///
/// ```
/// use std::time::{Duration, Instant};
/// use portcullis_runtime::FrameWaker;
///
/// let waker = FrameWaker::default();
/// let remote = waker.clone();
/// std::thread::spawn(move || remote.wake());
/// assert!(waker.wait_until(Instant::now() + Duration::from_secs(10)));
/// ```
#[derive(Resource, Clone, Default, Debug)]
pub struct FrameWaker {
    inner: Arc<Inner>,
}

#[derive(Default, Debug)]
struct Inner {
    pending: AtomicBool,
    lock: Mutex<()>,
    cond: Condvar,
}

impl FrameWaker {
    /// Asks for a frame as soon as possible.
    pub fn wake(&self) {
        if !self.inner.pending.swap(true, Ordering::AcqRel) {
            // Take the lock so a runner between its check and its wait sees the flag.
            let _guard = self.inner.lock.lock().unwrap_or_else(|p| p.into_inner());
            self.inner.cond.notify_all();
        }
    }

    /// Blocks until woken or until `deadline`, whichever comes first; returns
    /// whether a wake was pending. Clears the pending flag.
    pub fn wait_until(&self, deadline: Instant) -> bool {
        let mut guard = self.inner.lock.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if self.inner.pending.swap(false, Ordering::AcqRel) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            guard = match self.inner.cond.wait_timeout(guard, deadline - now) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        }
    }

    /// Clears a pending wake without waiting (the runner calls it right before a frame).
    pub fn clear(&self) -> bool {
        self.inner.pending.swap(false, Ordering::AcqRel)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn wake_before_wait_returns_at_once() {
        let w = FrameWaker::default();
        w.wake();
        assert!(w.wait_until(Instant::now() + Duration::from_secs(10)));
        assert!(!w.wait_until(Instant::now()));
    }

    #[test]
    fn wake_from_other_thread() {
        let w = FrameWaker::default();
        let w2 = w.clone();
        let t = std::thread::spawn(move || w2.wake());
        assert!(w.wait_until(Instant::now() + Duration::from_secs(10)));
        t.join().expect("thread");
    }
}
