//! Every atomic, lock and wait of the buffer manager's concurrency protocol
//! comes from here, so that `RUSTFLAGS="--cfg loom"` swaps them for loom's
//! model-checked versions (see `tests/loom.rs`).

#[cfg(loom)]
pub(crate) use loom::{
    hint::spin_loop,
    sync::atomic::{AtomicBool, AtomicU64, Ordering, fence},
    sync::{Condvar, Mutex, MutexGuard},
    thread::yield_now,
};

#[cfg(not(loom))]
pub(crate) use std::{
    hint::spin_loop,
    sync::atomic::{AtomicBool, AtomicU64, Ordering, fence},
    sync::{Condvar, Mutex, MutexGuard},
    thread::yield_now,
};

/// Spins that a waiter does before it starts yielding the core: long enough
/// to ride out a writer's critical section on a B-tree node (a few hundred
/// nanoseconds), short enough not to burn a time slice on a long wait.
const SPINS_BEFORE_YIELD: u32 = 64;

/// Back-off for a thread that found a latch taken: spin briefly, then yield.
#[derive(Default)]
pub(crate) struct Backoff {
    rounds: u32,
}

impl Backoff {
    /// One step of waiting. Past the spins, a thread with transfers of its
    /// own in flight reaps them before it yields (`crate::loader::blocked`):
    /// the latch's holder may be waiting for one of them.
    pub(crate) fn snooze(&mut self) {
        if self.rounds < SPINS_BEFORE_YIELD {
            spin_loop();
        } else {
            #[cfg(not(loom))]
            crate::loader::blocked::reap_while_blocked();
            yield_now();
        }
        self.rounds = self.rounds.saturating_add(1);
    }
}
