//! Cheap per-thread statistics.
//!
//! Each thread counts into its own cache-line-aligned block of relaxed
//! atomics (no sharing, so an increment costs what a plain add costs); the
//! blocks are registered with the pool, and [`crate::BufferManager::stats`]
//! sums them. Blocks outlive their threads so no count is ever lost.

use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// A snapshot of the counters, summed over threads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Latch requests that found the page resident.
    pub hits: u64,
    /// Latch requests that had to read the page from disk (or wait for it).
    pub misses: u64,
    /// Of the misses: those whose thread slept for the read (a blocking
    /// latch or optimistic section, with its own read or another's), not
    /// handed to a [`crate::Loader`].
    pub blocking_misses: u64,
    /// Frames evicted.
    pub evictions: u64,
    /// Frames written back to disk.
    pub write_backs: u64,
    /// Optimistic reads restarted (validation failures and faults).
    pub restarts: u64,
    /// Of the restarts: reads cut short by the SIGSEGV guard.
    pub faults: u64,
    /// Frames loaded by a [`crate::Loader`]'s own reads: misses that did
    /// not block a thread.
    pub prefetched: u64,
}

#[derive(Clone, Copy)]
pub(crate) enum Counter {
    Hit,
    Miss,
    BlockingMiss,
    Eviction,
    WriteBack,
    Restart,
    Fault,
    Prefetched,
}

const COUNTERS: usize = 8;

#[repr(align(64))]
#[derive(Default)]
pub(crate) struct ThreadStats([AtomicU64; COUNTERS]);

#[derive(Default)]
pub(crate) struct StatsRegistry {
    threads: Mutex<Vec<Arc<ThreadStats>>>,
}

thread_local! {
    /// This thread's blocks, one per pool it has touched (by pool id).
    static MINE: RefCell<Vec<(u64, Arc<ThreadStats>)>> = const { RefCell::new(Vec::new()) };
    /// The block used last, for the common case of one pool per thread.
    /// The pointer stays valid while `MINE` holds the block's `Arc`; pool
    /// ids are never reused, so a stale id never matches.
    static LAST: Cell<(u64, *const ThreadStats)> = const { Cell::new((0, std::ptr::null())) };
}

impl ThreadStats {
    /// Only the owning thread writes its block, so an increment needs no
    /// read-modify-write instruction: a relaxed load and store suffice, and
    /// readers summing the blocks see some recent value.
    fn bump(&self, counter: Counter, n: u64) {
        let c = &self.0[counter as usize];
        c.store(c.load(Ordering::Relaxed) + n, Ordering::Relaxed);
    }
}

impl StatsRegistry {
    #[inline]
    pub(crate) fn add(&self, pool_id: u64, counter: Counter, n: u64) {
        let (last_id, last) = LAST.with(Cell::get);
        if last_id == pool_id {
            // SAFETY: see LAST: the block is kept alive by this thread's MINE.
            unsafe { &*last }.bump(counter, n);
            return;
        }
        MINE.with(|mine| {
            let mut mine = mine.borrow_mut();
            let block = match mine.iter().find(|(id, _)| *id == pool_id) {
                Some((_, block)) => Arc::as_ptr(block),
                None => {
                    let block = Arc::new(ThreadStats::default());
                    self.threads
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(block.clone());
                    let ptr = Arc::as_ptr(&block);
                    mine.push((pool_id, block));
                    ptr
                }
            };
            LAST.with(|l| l.set((pool_id, block)));
            // SAFETY: MINE holds the Arc.
            unsafe { &*block }.bump(counter, n);
        });
    }

    pub(crate) fn snapshot(&self) -> Stats {
        let mut sum = [0u64; COUNTERS];
        for t in self
            .threads
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            for (s, c) in sum.iter_mut().zip(t.0.iter()) {
                *s += c.load(Ordering::Relaxed);
            }
        }
        let [
            hits,
            misses,
            blocking_misses,
            evictions,
            write_backs,
            restarts,
            faults,
            prefetched,
        ] = sum;
        Stats {
            hits,
            misses,
            blocking_misses,
            evictions,
            write_backs,
            restarts,
            faults,
            prefetched,
        }
    }

    /// Drops this thread's entry for a pool that is going away.
    pub(crate) fn forget_thread_entry(pool_id: u64) {
        let _ = LAST.try_with(|l| l.set((0, std::ptr::null())));
        let _ = MINE.try_with(|mine| mine.borrow_mut().retain(|(id, _)| *id != pool_id));
    }
}
