//! Populating the huge-page prefix ahead of allocation.
//!
//! A page allocated above the high-water mark is memory the process has
//! never touched. Zeroing it ([`BufferManager::alloc`] step 4) takes the
//! kernel's page fault, and in the huge-page prefix the first touch of
//! each 2 MiB faults in and zeroes all of it. The allocating thread is
//! usually splitting a node: it holds the node's and its parent's latches
//! and the allocator's lock while it waits. On this project's VMs the
//! first touch of memory the hypervisor has not backed yet runs at about
//! 0.5 GB/s, some 4 ms a huge page; `clear_page_erms` was 8% of YCSB D
//! through the Db at 2 threads (`docs/bufmgr.md`).
//!
//! While the prefix is active ([`crate::huge`]), one thread per pool keeps
//! the memory just above the high-water mark populated
//! (`MADV_POPULATE_WRITE`), so that allocations find it faulted in:
//!
//! 1. **Asking.** An allocation that raises the high-water mark to within
//!    half the lead ([`ahead`]) of what is populated asks the thread for
//!    more ([`asks`]; one atomic load otherwise).
//! 2. **Populating.** The thread populates whole huge pages above the
//!    high-water mark's own huge page (that one its allocator faults in),
//!    one at a time, until it is [`ahead`] bytes ahead. It rechecks the
//!    prefix and its stop flag between two.
//! 3. **Stopping** for good when the prefix ends (the first eviction: the
//!    pool is short of memory, and pages nobody asked for would be taken
//!    from those in use), when it reaches the prefix's end, when the
//!    kernel refuses the advice (before Linux 5.14), or when the pool is
//!    dropped ([`Prefault::stop`], joined by the pool's drop).
//!
//! Populating writes no byte: a present page stays as it is and a missing
//! one reads zeros as before, so a range allocations reach meanwhile is
//! unharmed. The populated pages above the high-water mark are not counted
//! in the budget, but they lie inside the prefix, which is no larger than
//! the budget. A pool that has allocated little since it opened gets as
//! little ahead ([`ahead`]): a test's pool of a few pages costs one huge
//! page more, not [`AHEAD_BYTES`].
//!
//! [`BufferManager::alloc`]: crate::BufferManager::alloc

use crate::huge::HUGE_PAGE_BYTES;
use crate::manager::Inner;
use crate::{PAGE_SIZE, PageId};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};

/// How far above the high-water mark the thread populates, at most: eight
/// huge pages. A YCSB D run through the Db allocates ~80 MB/s at 2
/// threads; populating 16 MiB takes ~35 ms at the VM's first-touch rate.
pub(crate) const AHEAD_BYTES: usize = 8 * HUGE_PAGE_BYTES;

const _: () = assert!(AHEAD_BYTES.is_multiple_of(HUGE_PAGE_BYTES));

/// The lead the thread keeps: what the pool has allocated since it opened,
/// at least one huge page and at most [`AHEAD_BYTES`].
pub(crate) fn ahead(grown_bytes: usize) -> usize {
    grown_bytes.clamp(HUGE_PAGE_BYTES, AHEAD_BYTES)
}

/// Step 1's test: whether an allocation that raised the high-water mark
/// to `frontier_bytes` asks for more, the pool having opened at
/// `opened_at` and being populated to `populated_to`. Once what is
/// populated above the mark is under half the lead: the thread then works
/// in rounds of at least a huge page, and a small pool, whose lead is one
/// huge page, does not ask at every allocation.
pub(crate) fn asks(frontier_bytes: usize, opened_at: usize, populated_to: usize) -> bool {
    let lead = ahead(frontier_bytes.saturating_sub(opened_at));
    frontier_bytes + lead / 2 > populated_to
}

/// `bytes` rounded up to whole huge pages.
fn huge_ceil(bytes: usize) -> usize {
    bytes.div_ceil(HUGE_PAGE_BYTES) * HUGE_PAGE_BYTES
}

/// The state the allocating threads and the populating thread share.
///
/// Lock order: `asked` is a leaf lock; no other lock is held with it, and
/// an allocation takes it only after the allocator's lock is released.
pub(crate) struct Prefault {
    /// Whether a thread runs (step 3 clears it for good).
    running: AtomicBool,
    /// Where the next round starts, in bytes from the pool's start: below
    /// it everything is populated or was at or below the high-water mark's
    /// huge page at open. Step 1 compares with it.
    populated_to: AtomicUsize,
    /// The high-water mark at open, in bytes ([`ahead`]'s base).
    opened_at: usize,
    /// Where the prefix ends: nothing at or above it is populated.
    limit: usize,
    /// An allocation asked for more since the thread last looked (step 1).
    asked: Mutex<bool>,
    wake: Condvar,
    stop: AtomicBool,
}

impl Prefault {
    /// For a pool whose high-water mark is `frontier` and whose huge
    /// prefix is `prefix_bytes` long (0: none, and no thread).
    pub(crate) fn new(frontier: PageId, prefix_bytes: usize) -> Prefault {
        let opened_at = frontier as usize * PAGE_SIZE;
        let start = huge_ceil(opened_at);
        Prefault {
            running: AtomicBool::new(false),
            populated_to: AtomicUsize::new(start),
            opened_at,
            limit: prefix_bytes,
            asked: Mutex::new(false),
            wake: Condvar::new(),
            stop: AtomicBool::new(false),
        }
    }

    /// Whether a thread is worth starting: the prefix reaches above the
    /// high-water mark's huge page.
    pub(crate) fn worth_starting(&self) -> bool {
        self.populated_to.load(Ordering::Relaxed) < self.limit
    }

    /// Starts the thread for `inner` (whose `prefault` is `self`). A
    /// thread that cannot be spawned only leaves allocations to fault
    /// their own pages.
    pub(crate) fn start(inner: &Arc<Inner>) -> Option<std::thread::JoinHandle<()>> {
        let p = &inner.prefault;
        if !p.worth_starting() {
            return None;
        }
        p.running.store(true, Ordering::Release);
        let for_thread = inner.clone();
        let spawned = std::thread::Builder::new()
            .name("rime-prefault".into())
            .spawn(move || for_thread.prefault.run(&for_thread));
        match spawned {
            Ok(handle) => Some(handle),
            Err(e) => {
                p.running.store(false, Ordering::Release);
                tracing::debug!(error = %e, "no pre-faulting thread");
                None
            }
        }
    }

    /// Step 1, by an allocation that raised the high-water mark to
    /// `frontier`, with no lock held.
    #[inline]
    pub(crate) fn frontier_moved(&self, frontier: PageId) {
        if !self.running.load(Ordering::Relaxed) {
            return;
        }
        let frontier_bytes = frontier as usize * PAGE_SIZE;
        let populated_to = self.populated_to.load(Ordering::Relaxed);
        if !asks(frontier_bytes, self.opened_at, populated_to) {
            return;
        }
        let mut asked = self.asked.lock().unwrap_or_else(|p| p.into_inner());
        if !*asked {
            *asked = true;
            self.wake.notify_one();
        }
    }

    /// Whether the thread runs (steps 1-2; for tests).
    pub(crate) fn is_running(&self) -> bool {
        self.running.load(Ordering::Acquire)
    }

    /// Bytes populated from the pool's start (for tests): where the next
    /// round starts.
    pub(crate) fn populated_bytes(&self) -> usize {
        self.populated_to.load(Ordering::Relaxed)
    }

    /// Step 3, by the pool's drop: the thread ends after the huge page in
    /// progress; the caller joins it.
    pub(crate) fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        let _asked = self.asked.lock().unwrap_or_else(|p| p.into_inner());
        self.wake.notify_one();
    }

    /// The thread: waits to be asked (step 1), populates (step 2), until
    /// step 3.
    fn run(&self, inner: &Inner) {
        loop {
            {
                let mut asked = self.asked.lock().unwrap_or_else(|p| p.into_inner());
                while !*asked && !self.stop.load(Ordering::Acquire) {
                    asked = self.wake.wait(asked).unwrap_or_else(|p| p.into_inner());
                }
                *asked = false;
            }
            if self.stop.load(Ordering::Acquire) || !self.populate(inner) {
                break;
            }
        }
        self.running.store(false, Ordering::Release);
    }

    /// Step 2: one round. False once the thread should stop (step 3).
    fn populate(&self, inner: &Inner) -> bool {
        loop {
            if self.stop.load(Ordering::Acquire) || !inner.huge.is_active() {
                return false;
            }
            let frontier = inner.allocated.load(Ordering::Acquire) as usize * PAGE_SIZE;
            let target =
                (frontier + ahead(frontier.saturating_sub(self.opened_at))).min(self.limit);
            // Above the high-water mark's huge page, which its allocator faults.
            let start = self
                .populated_to
                .load(Ordering::Relaxed)
                .max(huge_ceil(frontier));
            if start >= self.limit {
                return false;
            }
            if start >= target {
                return true;
            }
            if let Err(e) = inner.pool.populate(start, HUGE_PAGE_BYTES) {
                tracing::debug!(error = %e, "pre-faulting the pool stopped");
                return false;
            }
            self.populated_to
                .store(start + HUGE_PAGE_BYTES, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lead_grows_with_what_the_pool_allocated() {
        assert_eq!(ahead(0), HUGE_PAGE_BYTES);
        assert_eq!(ahead(3 * HUGE_PAGE_BYTES), 3 * HUGE_PAGE_BYTES);
        assert_eq!(ahead(1 << 40), AHEAD_BYTES);
    }

    /// Regression: a pool that had grown less than the fixed low-water
    /// mark (8 MiB) asked, and woke the thread, at every allocation.
    #[test]
    fn a_small_pool_asks_once_per_huge_page_not_per_allocation() {
        let huge = HUGE_PAGE_BYTES;
        // Opened empty, 1 MiB allocated, populated to 4 MiB (the thread's
        // first round: the 2 MiB above the mark's huge page).
        assert!(!asks(1 << 20, 0, 2 * huge));
        assert!(!asks(huge, 0, 2 * huge));
        // At 3 MiB the lead is 3 MiB: asks once under 1.5 MiB is ahead.
        assert!(asks(3 << 20, 0, 2 * huge));
        // A grown pool keeps 8 huge pages ahead and asks at half that.
        let grown = 64 * huge;
        assert!(!asks(grown, 0, grown + 5 * huge));
        assert!(asks(grown, 0, grown + 3 * huge));
    }

    #[test]
    fn a_prefix_within_the_frontiers_huge_page_starts_no_thread() {
        let pages_per_huge = (HUGE_PAGE_BYTES / PAGE_SIZE) as u64;
        assert!(!Prefault::new(1, 0).worth_starting());
        assert!(!Prefault::new(1, HUGE_PAGE_BYTES).worth_starting());
        assert!(Prefault::new(1, 2 * HUGE_PAGE_BYTES).worth_starting());
        assert!(!Prefault::new(pages_per_huge + 1, 2 * HUGE_PAGE_BYTES).worth_starting());
    }
}
