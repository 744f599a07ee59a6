//! Reads in flight for many transactions of one thread: the storage face
//! of the buffer manager's [`Loader`], for an executor that runs many
//! transactions as tasks on one thread and must not sleep on any one
//! task's miss.
//!
//! The protocol, as the executor sees it:
//!
//! 1. A task runs its operations through [`crate::OwnedTx::tx_nowait`]. An
//!    operation (a point read, a scan, `get_many`) that needs a page not
//!    in memory records nothing and fails with [`TxError::WouldWait`]
//!    naming the page ([`Miss`]); [`crate::OwnedTx::read_ahead`] names
//!    the pages worth loading with it.
//! 2. The executor hands the miss to its [`Reads`] ([`Reads::request`]):
//!    the read starts at the next poll, or joins one already running (two
//!    tasks missing one page share one read).
//! 3. [`Reads::poll`] submits every new read in one system call and
//!    reports the pages that arrived (or failed); the executor resumes
//!    their tasks, which run the operation again from the start.
//! 4. **The one rule**: a thread never waits on its own reads. Only this
//!    thread's poll completes them, so a latch wait on one would never
//!    end. A non-waiting operation (`tx_nowait`) is always safe. A commit
//!    that latches pages ([`crate::OwnedTx::commit_latches_pages`]) is
//!    safe in the same step as an empty [`crate::OwnedTx::commit_misses`]
//!    (which finds the pages it latches, without waiting: load them,
//!    and ask again). Anything else that may latch pages and wait (an
//!    operation of a waiting transaction, [`crate::OwnedTx::tx`]) runs
//!    only while [`Reads::in_flight`] is 0: poll until it is first.
//! 5. What the rule cannot see: another thread waiting for one of this
//!    thread's reads while this thread waits for that thread (a commit
//!    holding a gate and re-scanning into a page this thread is reading,
//!    while this thread's commit waits for the gate). Every blocking wait
//!    of this thread (latches, other threads' loads, key stripes, gates)
//!    therefore reaps its reads before it sleeps
//!    (`rime_bufmgr::reap_while_blocked`); the outcomes wait for the next
//!    [`Reads::poll`]. Nothing to do for the executor.

use crate::error::{DbError, TxError};
use crate::inner::DbInner;
use rime_bufmgr::{Loader, PageId};

/// A page an operation needs in memory before it can go on (see the
/// module docs). Cheap to copy; two misses of one page are equal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Miss {
    pid: PageId,
    pages: u32,
}

impl Miss {
    pub(crate) fn new(pid: PageId, pages: u32) -> Miss {
        Miss { pid, pages }
    }

    /// The page's number, as [`Reads::poll`] reports its arrival.
    pub fn page(&self) -> u64 {
        self.pid
    }
}

/// One thread's reads in flight (see the module docs). Not `Sync`: its
/// thread submits and reaps. Dropping it waits for its reads.
pub struct Reads {
    /// Holds the buffer manager (and so its file) while reads are in flight.
    loader: Loader<'static>,
}

impl Reads {
    pub(crate) fn new(db: &DbInner) -> Reads {
        Reads {
            loader: Loader::owned(db.bm()),
        }
    }

    /// Step 2: starts loading the page of `miss`.
    pub fn request(&mut self, miss: Miss) {
        self.loader.request(miss.pid, miss.pages);
    }

    /// Step 3: submits what is queued, reaps what completed and calls
    /// `on_done(page, outcome)` for every page that arrived or failed
    /// since the last poll. With `wait`, blocks until at least one page is
    /// reported (unless nothing is pending). Returns the number reported.
    pub fn poll(&mut self, wait: bool, mut on_done: impl FnMut(u64, Result<(), TxError>)) -> usize {
        self.loader.poll(wait, |pid, r| {
            on_done(
                pid,
                r.map_err(|e| TxError::Db(DbError::Tree(rime_btree::TreeError::from(e)))),
            )
        })
    }

    /// Reads and write-backs of this thread in flight: step 4's condition.
    pub fn in_flight(&self) -> usize {
        self.loader.reads() + self.loader.writes()
    }

    /// Everything not yet reported: reads in flight, pages other threads
    /// are loading that a request watches, outcomes not yet polled.
    pub fn pending(&self) -> usize {
        self.loader.pending()
    }

    /// Polls until [`Reads::in_flight`] is 0 (step 4), reporting every
    /// outcome to `on_done` as [`Reads::poll`] does.
    pub fn drain(&mut self, mut on_done: impl FnMut(u64, Result<(), TxError>)) {
        while self.in_flight() > 0 {
            self.poll(true, &mut on_done);
        }
    }
}
