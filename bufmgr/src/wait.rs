//! Sleeping while another thread loads a page.
//!
//! A thread that misses a page another thread is already reading from disk
//! must not burn a core for the ~100 µs of the read. Loads set the page's
//! LOADING flag; waiters sleep on one of a fixed table of condition
//! variables, chosen by page id (collisions only cause spurious wake-ups).
//!
//! The protocol, and why no wake-up is lost:
//!   waiter: lock slot; while LOADING is set: wait (releases the lock)
//!   loader: clear LOADING; lock slot; notify_all
//! The waiter tests the flag with the slot's mutex held. If it saw the flag
//! set, the loader's lock-then-notify comes after the waiter is asleep (or
//! about to re-check after a spurious wake-up); if the loader cleared it
//! first, the waiter sees it clear and never sleeps.

use crate::PageId;
use crate::meta::PageMeta;
use crate::sync::{Condvar, Mutex};

/// Wait slots: enough that two unrelated loads rarely share one with
/// 2 cores and dozens of threads, small enough to be a few cache lines.
pub const WAIT_SLOTS: usize = 64;

pub struct LoadWaits {
    slots: Vec<(Mutex<()>, Condvar)>,
}

impl LoadWaits {
    pub fn new() -> Self {
        Self::with_slots(WAIT_SLOTS)
    }

    /// A table of `n` slots (the loom models use one, to keep the state
    /// space small; correctness does not depend on the count).
    pub fn with_slots(n: usize) -> Self {
        LoadWaits {
            slots: (0..n.max(1))
                .map(|_| (Mutex::new(()), Condvar::new()))
                .collect(),
        }
    }

    fn slot(&self, pid: PageId) -> &(Mutex<()>, Condvar) {
        &self.slots[(pid % self.slots.len() as u64) as usize]
    }

    /// Sleeps until `meta`'s load is over (returns at once if none is running).
    pub fn wait(&self, pid: PageId, meta: &PageMeta) {
        let (lock, cv) = self.slot(pid);
        let mut held = lock.lock().unwrap_or_else(|p| p.into_inner());
        while meta.is_loading() {
            held = cv.wait(held).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Ends `meta`'s load and wakes its waiters. Call with the latch still
    /// held, before unlocking, or after: waiters re-check the state word.
    pub fn finish(&self, pid: PageId, meta: &PageMeta) {
        meta.set_loading(false);
        let (lock, cv) = self.slot(pid);
        drop(lock.lock().unwrap_or_else(|p| p.into_inner()));
        cv.notify_all();
    }
}
