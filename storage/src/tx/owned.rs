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
//!    `Db::transaction` (steps in `crate::commit`). A conflict empties the
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

    /// The running attempt, with reads that return
    /// [`TxError::WouldWait`] instead of waiting for the disk (and scans
    /// [`TxError::WouldBlock`]).
    pub fn tx_nowait(&mut self) -> Tx<'_> {
        let (db, b) = self.parts();
        Tx::new_nowait(db, b)
    }

    /// Whether committing the attempt latches tree pages, and so may wait
    /// for a page: it writes, or validates its reads against the trees
    /// (more than one read, or a scan: `crate::occ`). A thread with reads
    /// of its own in flight must not commit it (`crate::reads`, step 4).
    /// A transaction that read one key and wrote nothing commits without.
    pub fn commit_latches_pages(&self) -> bool {
        self.bufs
            .as_ref()
            .is_some_and(|b| !b.writes.is_empty() || !b.scans.is_empty() || b.reads.len() > 1)
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
