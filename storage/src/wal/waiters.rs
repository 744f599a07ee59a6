//! Durability waiters that are not threads: callbacks (an async task's
//! waker, typically) that the log calls once it is durable up to their
//! record, or with the error that ended it. Kept in the `Wal`'s state, so
//! registering and publishing a durable LSN never race.

use super::rounds::{Ring, Rounds};
use crate::error::WalError;

/// Called once: `Ok` when the record is durable, else why it never will be.
/// It runs on whichever thread completed the sync (the log's flusher, or a
/// committer that led the flush), outside every lock: keep it short (wake
/// a task, send on a channel).
pub type DurableCallback = Box<dyn FnOnce(Result<(), WalError>) + Send>;

/// Registered callbacks with the LSN each waits for.
#[derive(Default)]
pub(super) struct Waiters {
    list: Vec<(u64, DurableCallback)>,
    /// The largest LSN in `list` (0 when empty): what the flusher syncs to.
    target: u64,
}

impl Waiters {
    pub fn push(&mut self, lsn: u64, f: DurableCallback) {
        self.target = self.target.max(lsn);
        self.list.push((lsn, f));
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The LSN every waiter is satisfied by (see `target`).
    pub fn target(&self) -> u64 {
        self.target
    }

    /// Removes the waiters whose record lies below `durable`.
    pub fn take_ready(&mut self, durable: u64) -> Vec<DurableCallback> {
        let mut ready = Vec::new();
        let mut i = 0;
        while i < self.list.len() {
            if self.list[i].0 < durable {
                ready.push(self.list.swap_remove(i).1);
            } else {
                i += 1;
            }
        }
        if self.list.is_empty() {
            self.target = 0;
        }
        ready
    }

    /// Removes every waiter, with the LSN each waited for.
    pub fn take_all(&mut self) -> Vec<(u64, DurableCallback)> {
        self.target = 0;
        std::mem::take(&mut self.list)
    }
}

/// Calls each of `ready` with `Ok`.
pub(super) fn call_ok(ready: Vec<DurableCallback>) {
    for f in ready {
        f(Ok(()));
    }
}

/// What a published sync round still owes: waking its sleepers and calling
/// its callbacks. Owed after the state mutex is released; a flusher with
/// the next batch to write pays it only once that batch's write and sync
/// are submitted (`BlockFile::write_and_sync_meanwhile`), so the next sync
/// does not wait behind the wake-ups. Dropping it pays it.
pub(super) struct Owed<'a> {
    rounds: &'a Rounds,
    ring: Option<Ring>,
    ready: Vec<DurableCallback>,
}

impl<'a> Owed<'a> {
    /// Nothing owed.
    pub fn nothing(rounds: &'a Rounds) -> Self {
        Owed {
            rounds,
            ring: None,
            ready: Vec::new(),
        }
    }

    /// A round ended: its sleepers to wake and its callbacks to call.
    pub fn round(rounds: &'a Rounds, ring: Ring, ready: Vec<DurableCallback>) -> Self {
        Owed {
            rounds,
            ring: Some(ring),
            ready,
        }
    }

    /// Whether it calls callbacks, which must not run under the state
    /// mutex (waking sleepers may).
    pub fn calls_back(&self) -> bool {
        !self.ready.is_empty()
    }

    /// Whether anything is owed.
    pub fn is_nothing(&self) -> bool {
        self.ring.is_none() && self.ready.is_empty()
    }

    /// Pays it now.
    pub fn pay(self) {}
}

impl Drop for Owed<'_> {
    fn drop(&mut self) {
        if let Some(ring) = self.ring.take() {
            self.rounds.ring(ring);
        }
        call_ok(std::mem::take(&mut self.ready));
    }
}
