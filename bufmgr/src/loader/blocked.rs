//! A thread that blocks keeps its loaders' I/O going.
//!
//! Only the thread that owns a [`Loader`](super::Loader) reaps its
//! completions, and every other thread that wants a frame the loader is
//! reading waits for that read. So if the owner blocks on something held
//! by a thread that waits for one of the owner's reads, neither moves: a
//! cycle through the ring, which no lock order shows. It happened: an
//! executor validating a commit held a tree's gate and waited for a page
//! another executor's loader was reading; that executor was waiting for
//! the gate.
//!
//! The rule that breaks every such cycle: **a thread with transfers in
//! flight never sleeps without reaping them.** Each blocking wait calls
//! [`reap_while_blocked`] before it sleeps and, while that returns true,
//! sleeps at most [`BLOCKED_REAP_INTERVAL`] at a time:
//!
//! - in this crate: a latch's back-off (`Backoff::snooze`), a wait for
//!   another thread's load or write-back (`LoadWaits::wait_while`), a
//!   reservation waiting for memory;
//! - above it, through the same function: the storage layer's key stripes
//!   and gates.
//!
//! Then a read in flight completes within about a device latency and an
//! interval, whatever its owner waits for; a wait for a frame always ends,
//! and a wait for a lock ends when its holder's waits do. (A wait for a
//! frame this thread itself is reading ends the same way, only later than
//! polling first would.)
//!
//! Reaping here is the same as a poll's steps 4–5 without the report:
//! frames are published (or rolled back) and their waiters woken, and
//! the outcomes wait in the loader for its next [`Loader::poll`](super::Loader::poll).
//!
//! Loaders that own their reference to the buffer manager
//! ([`Loader::owned`](super::Loader::owned), kept across many operations of
//! a thread) register here. A scoped loader ([`Loader::new`](super::Loader::new))
//! is polled to its end by the call that made it, which blocks on nothing
//! else meanwhile.

use super::Transfers;
use crate::manager::BufferManager;
use std::cell::RefCell;
use std::rc::{Rc, Weak};
use std::sync::{Arc, Weak as SharedWeak};
use std::time::Duration;

/// Longest sleep of a blocked thread that has transfers in flight before
/// it reaps them again: half a read on this project's disks (p50 ~100 µs),
/// so a frame a waiter needs is published at most that much after its
/// data arrived. (Linux's default timer slack adds up to 50 µs.)
pub const BLOCKED_REAP_INTERVAL: Duration = Duration::from_micros(50);

/// One owned loader of this thread.
struct Registered {
    io: Weak<RefCell<Transfers>>,
    bm: SharedWeak<BufferManager>,
}

thread_local! {
    /// This thread's owned loaders (dropped ones are pruned at the next
    /// registration).
    static OWNED: RefCell<Vec<Registered>> = const { RefCell::new(Vec::new()) };
}

/// Registers a new owned loader of this thread.
pub(super) fn register(io: &Rc<RefCell<Transfers>>, bm: &Arc<BufferManager>) {
    OWNED.with(|owned| {
        let mut owned = owned.borrow_mut();
        owned.retain(|r| r.io.strong_count() > 0);
        owned.push(Registered {
            io: Rc::downgrade(io),
            bm: Arc::downgrade(bm),
        });
    });
}

/// For a thread about to sleep in a blocking wait: submits what its owned
/// loaders have queued and completes what has arrived (see the module
/// docs). Returns whether transfers of theirs are still in flight: then
/// the caller must sleep at most [`BLOCKED_REAP_INTERVAL`] before calling
/// again. A loader whose own step is running on this thread (the wait is
/// inside it) is left to that step, which reaps in its own loops.
pub fn reap_while_blocked() -> bool {
    OWNED
        .try_with(|owned| {
            let Ok(owned) = owned.try_borrow() else {
                return false;
            };
            let mut in_flight = false;
            for r in owned.iter() {
                let Some(io) = r.io.upgrade() else { continue };
                let Ok(mut io) = io.try_borrow_mut() else {
                    continue;
                };
                if io.queued + io.in_flight == 0 {
                    continue;
                }
                let Some(bm) = r.bm.upgrade() else { continue };
                io.submit_and_reap(&bm.inner, false);
                in_flight |= io.queued + io.in_flight > 0;
            }
            in_flight
        })
        .unwrap_or(false)
}
