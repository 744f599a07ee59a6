//! Sleeping while another thread loads a page, and learning how its load
//! ended ([`LoadFailures`]).
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
use crate::error::PageError;
use crate::loader::blocked::{BLOCKED_REAP_INTERVAL, reap_while_blocked};
use crate::meta::PageMeta;
use crate::sync::{Condvar, Mutex, MutexGuard};
use std::collections::HashMap;

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
        self.wait_while(pid, || meta.is_loading());
    }

    /// Sleeps while `busy()` holds; whoever makes it false calls
    /// [`LoadWaits::notify`] for `pid` afterwards (the same protocol as a
    /// load's LOADING flag, for a loader's write-back's WRITING flag).
    ///
    /// A thread with transfers of its own in flight reaps them before each
    /// sleep, outside the slot's mutex (a completion it reaps may notify
    /// this very slot), and sleeps briefly (`crate::loader::blocked`).
    pub fn wait_while(&self, pid: PageId, busy: impl Fn() -> bool) {
        let (lock, cv) = self.slot(pid);
        loop {
            let reaping = reap_while_blocked();
            let held = lock.lock().unwrap_or_else(|p| p.into_inner());
            if !busy() {
                return;
            }
            if reaping {
                drop(cv.wait_timeout(held, BLOCKED_REAP_INTERVAL));
            } else {
                drop(cv.wait(held).unwrap_or_else(|p| p.into_inner()));
            }
        }
    }

    /// Ends `meta`'s load and wakes its waiters. Call with the latch still
    /// held, before unlocking, or after: waiters re-check the state word.
    pub fn finish(&self, pid: PageId, meta: &PageMeta) {
        meta.set_loading(false);
        self.notify(pid);
    }

    /// Wakes the threads waiting on `pid`'s slot, after the flag they wait
    /// on was cleared.
    pub fn notify(&self, pid: PageId) {
        let (lock, cv) = self.slot(pid);
        drop(lock.lock().unwrap_or_else(|p| p.into_inner()));
        cv.notify_all();
    }
}

/// Failed loads waiting to be learned by their waiters.
///
/// A load runs under the frame's exclusive latch, taken from EVICTED at
/// some version `v` (the latch keeps the version: the frame reads LOCKED
/// at `v` with LOADING set for the whole load), so `v` names the load.
/// Every waiter notes `v` when it starts waiting. A load that fails
/// records its error here under `(pid, v)` and sets the frame's failed
/// flag *before* it clears LOADING; a waiter that sees LOADING clear checks
/// the flag and, if set, looks up `(pid, v)`: the error is that read's, and
/// every waiter of the read gets it. The frame itself is EVICTED again (at
/// `v + 1`), so the next access starts a new read: a failure is never
/// permanent.
///
/// The records of a frame go when its next load succeeds (which clears the
/// flag), or all records when [`MAX_RECORDED_FAILURES`] are kept. A waiter
/// that looks only after either finds none and reports success; its
/// operation then runs again and finds the frame resident, or evicted and
/// reads it itself.
pub struct LoadFailures {
    records: Mutex<Records>,
}

#[derive(Default)]
struct Records {
    by_pid: HashMap<PageId, Vec<(u64, PageError)>>,
    /// Records kept, all frames together.
    len: usize,
}

/// Failed loads remembered at once: plenty for the waiters of reads that
/// fail at the same time, and a bound on memory when a disk dies.
pub const MAX_RECORDED_FAILURES: usize = 1024;

impl LoadFailures {
    pub fn new() -> Self {
        LoadFailures {
            records: Mutex::new(Records::default()),
        }
    }

    fn records(&self) -> MutexGuard<'_, Records> {
        self.records.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The load of `pid` that this thread runs (latched from EVICTED)
    /// failed with `error`: record it for its waiters. Call before the
    /// load ends (`LoadWaits::finish`).
    pub fn record(&self, pid: PageId, meta: &PageMeta, error: &PageError) {
        let version = meta.state.load().version();
        {
            let mut r = self.records();
            if r.len >= MAX_RECORDED_FAILURES {
                *r = Records::default();
            }
            r.by_pid
                .entry(pid)
                .or_default()
                .push((version, error.duplicate()));
            r.len += 1;
        }
        meta.set_failed(true);
    }

    /// The load of `pid` that this thread runs succeeded: failures of
    /// earlier loads are no longer news. Call before the load ends.
    pub fn forget(&self, pid: PageId, meta: &PageMeta) {
        if meta.set_failed(false) {
            let mut r = self.records();
            if let Some(gone) = r.by_pid.remove(&pid) {
                r.len -= gone.len();
            }
        }
    }

    /// How the load of `pid` that a waiter saw at `version` (LOCKED, with
    /// LOADING set) ended, once LOADING is clear.
    pub fn outcome(&self, pid: PageId, meta: &PageMeta, version: u64) -> Result<(), PageError> {
        if !meta.has_failed() {
            return Ok(());
        }
        let r = self.records();
        let failed = r
            .by_pid
            .get(&pid)
            .and_then(|f| f.iter().find(|(v, _)| *v == version));
        match failed {
            Some((_, e)) => Err(e.duplicate()),
            None => Ok(()),
        }
    }
}
