//! [`OwnedTx`]: a transaction whose attempts the caller drives, for
//! callers that cannot run a transaction inside one closure call on one
//! stack: an async task that suspends between operations (a faaslet on
//! a fiber), holding its transaction across the suspensions.
//!
//! Life cycle:
//!
//! 1. **Begun** by [`crate::Db::begin`], with buffers from the Db's pool.
//! 2. **Running an attempt**: operations through [`OwnedTx::tx`] (reads
//!    that may wait) or [`OwnedTx::tx_nowait`] (reads that stop at a page
//!    not in memory: `crate::reads`).
//! 3. **Committing** ([`OwnedTx::commit`]): validation and commit as in
//!    `Db::transaction` (steps in `crate::commit`); a caller with reads of
//!    its own in flight first loads what [`OwnedTx::commit_misses`]
//!    names (`crate::reads`, step 4). A conflict empties the
//!    buffers: back to 2 for the next attempt, the caller deciding how many.
//!    Success hands out a [`Pending`] that completes once the log is
//!    durable through the commit; waiting on it needs no thread.
//! 4. **Dropped**: its buffers go back to the pool. Dropping it before a
//!    successful commit commits nothing.

use super::{Tx, TxBufs};
use crate::commit::{Outcome, commit};
use crate::error::TxError;
use crate::inner::DbInner;
use crate::pending::Pending;
use crate::reads::Miss;
use std::sync::Arc;

/// A transaction its caller drives attempt by attempt; see the module docs.
pub struct OwnedTx {
    db: Arc<DbInner>,
    /// `None` only while dropped.
    bufs: Option<Box<TxBufs>>,
}

/// What [`OwnedTx::commit`] did.
#[must_use]
pub enum Committed {
    /// Committed: logged, its writes visible; durable when this completes.
    Durable(Pending<()>),
    /// Validation failed: nothing was committed; the buffers are empty
    /// for the next attempt.
    Conflict,
}

impl OwnedTx {
    pub(crate) fn new(db: &Arc<DbInner>) -> OwnedTx {
        let mut bufs = db.take_tx_bufs();
        bufs.clear();
        OwnedTx {
            db: db.clone(),
            bufs: Some(bufs),
        }
    }

    fn parts(&mut self) -> (&DbInner, &mut TxBufs) {
        let bufs = self.bufs.get_or_insert_with(Box::default);
        (&self.db, bufs)
    }

    /// The running attempt, with reads that wait for the disk.
    pub fn tx(&mut self) -> Tx<'_> {
        let (db, b) = self.parts();
        Tx::new(db, b)
    }

    /// The running attempt, with operations (point reads, scans,
    /// `get_many`) that end with [`TxError::WouldWait`] instead of
    /// waiting for the disk, having recorded nothing.
    pub fn tx_nowait(&mut self) -> Tx<'_> {
        let (db, b) = self.parts();
        Tx::new_nowait(db, b)
    }

    /// The pages to load together with the page of the last
    /// [`TxError::WouldWait`] of a non-waiting scan (its read-ahead) or
    /// `get_many` (its other misses); not waited for by the operation,
    /// which runs again once its own page is in.
    pub fn read_ahead(&self) -> &[Miss] {
        self.bufs.as_ref().map_or(&[], |b| &b.read_ahead[..])
    }

    /// Whether committing the attempt latches tree pages, and so may wait
    /// for a page: it writes, or validates its reads against the trees
    /// (more than one read, or a scan: `crate::occ`). A transaction that
    /// read one key and wrote nothing commits without.
    ///
    /// A thread with reads of its own in flight may commit such an attempt
    /// only in the same step as an empty [`OwnedTx::commit_misses`]
    /// (`crate::reads`, step 4).
    pub fn commit_latches_pages(&self) -> bool {
        self.bufs
            .as_ref()
            .is_some_and(|b| !b.writes.is_empty() || !b.scans.is_empty() || b.reads.len() > 1)
    }

    /// The pages a commit of the attempt would latch that are not in
    /// memory now (into `out`, cleared first; one per page), found
    /// without waiting: for a caller with reads of its own in flight, who
    /// must not commit while the commit could wait for one of them
    /// (`crate::reads`, step 4). The protocol:
    ///
    /// 1. For every key written and (when the commit validates reads:
    ///    [`OwnedTx::commit_latches_pages`]) every key read, the
    ///    write-path probe of its tree (`BTree::write_probe_nowait`):
    ///    the first node on the path to its leaf not in memory.
    /// 2. For every range scanned, a non-waiting scan of the range as the
    ///    commit re-scans it: the first leaf not in memory and the leaves
    ///    a scan would read ahead with it.
    /// 3. The caller loads what step 1-2 found (all at once) and calls
    ///    again: the next level of a path may be missing too.
    /// 4. Empty: commit now, before this thread polls its reads again (no
    ///    read of its own can then start). The commit's latches meet
    ///    pages in memory, none of them this thread's reads in flight;
    ///    if another thread's eviction took one in between, the commit
    ///    reads it itself (a brief blocking miss, not a wait for this
    ///    thread's reads), or waits for another thread's read of it, which
    ///    that thread completes whatever it waits for (`crate::reads`,
    ///    step 5). The commit's merges skip a sibling not in
    ///    memory (`Writer::merge_in_memory_only`).
    ///
    /// A tree that no longer exists is skipped: the commit reports it.
    pub fn commit_misses(&mut self, out: &mut Vec<Miss>) -> Result<(), TxError> {
        out.clear();
        if !self.commit_latches_pages() {
            return Ok(());
        }
        let (db, b) = self.parts();
        b.commit_misses(db, out)
    }

    /// Validates and commits the attempt (step 3 of the module docs). An
    /// error (a failed log, a write set too large) commits nothing.
    pub fn commit(&mut self) -> Result<Committed, TxError> {
        let (db, b) = self.parts();
        // `Some(lsn to wait for)` if it committed, `None` on a conflict
        // (the group-commit ticket goes: a `Pending` registers later).
        let outcome = commit(db, b).map(|o| match o {
            Outcome::Committed(wait) => Some(wait.map(|w| w.lsn)),
            Outcome::Conflict => None,
        });
        let done = match outcome {
            Ok(Some(lsn)) => Ok(Committed::Durable(Pending::new(self.db.clone(), lsn, ()))),
            Ok(None) => {
                self.db.counters().conflicts.add(1);
                Ok(Committed::Conflict)
            }
            Err(e) => Err(e),
        };
        self.restart();
        done
    }

    /// Forgets the attempt's reads and writes: the next attempt starts
    /// empty.
    pub fn restart(&mut self) {
        if let Some(b) = self.bufs.as_mut() {
            b.clear();
        }
    }
}

impl Drop for OwnedTx {
    fn drop(&mut self) {
        if let Some(b) = self.bufs.take() {
            self.db.return_tx_bufs(b);
        }
    }
}
