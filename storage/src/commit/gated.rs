//! A read-only transaction whose scans keep losing validation runs again
//! holding the gates of the trees it scanned (`Db::transaction` and the
//! calls built on it).
//!
//! Optimistic validation has no bound on attempts that a reader can win:
//! a full-range scan under a few busy writers sees some key of its range
//! change on nearly every attempt, and after [`MAX_TX_ATTEMPTS`] it gave up
//! with `Conflict` (the bank test's auditor did, once in ~1,000 runs on a
//! loaded machine, under six transfer threads). So, once
//! [`GATED_AFTER`] attempts in a row have failed, each of them read-only
//! with scans:
//!
//! 1. Take the gates of the trees the last attempt scanned in phase `B`,
//!    in ascending order, before the attempt starts ([`ScanGates`]). From
//!    here no writer of those trees applies anything: writers hold `A`,
//!    which excludes `B`. (A waiting `B` holds back newcomers of `A`, so
//!    the reader is not starved of the gates either.)
//! 2. Run the closure. Its scans of those trees see a state no commit
//!    changes before step 3.
//! 3. If the attempt wrote nothing and scanned only trees whose gates it
//!    holds, validate holding them (its point reads of other trees may
//!    still have moved: then it conflicts as before). Otherwise release
//!    the gates and commit as any transaction, taking its own locks.
//! 4. Release the gates, then wait for durability as a read-only
//!    transaction does.
//!
//! *Why it stays serializable*: every scan of a gated tree reads that
//! tree's keys while no writer of it can apply, and validation (still run)
//! checks the rest, so the transaction serializes at any instant of the
//! hold, as a validated one does at its validation.
//!
//! *Lock order* (`inner.rs`): the gates are level 4 and are taken while
//! holding nothing; the closure then takes page latches (level 7) and the
//! log's state (a write-back's write-ahead rule), both later in the order.
//! What it must not do is start another transaction: that one's commit or
//! validation would wait for a gate this thread holds (a newcomer of `B`
//! is held back while a writer waits). The closure's contract forbids it
//! anyway (no side effects outside its `Tx`); while the gates are held a
//! nested commit on this thread is refused with [`TxError::Nested`]
//! instead of waiting for ever. Not checked: `Db::drop_tree` of a gated
//! tree from inside the closure, which would wait for the gate in `X`.
//!
//! Only trusted closures run so: the faaslet runtime drives its attempts
//! itself (`OwnedTx`), so a guest never holds a gate.

use crate::error::TxError;
use crate::inner::DbInner;
use crate::locks::{Gates, Phase};
use crate::tx::ScanRec;
use std::cell::Cell;

#[cfg(doc)]
use crate::MAX_TX_ATTEMPTS;

/// Failed read-only attempts with scans, in a row, after which the next
/// attempt holds its trees' gates. Two: a conflict or two is the normal
/// price of optimism and costs the writers nothing; a third in a row says
/// the reader is losing to the writers, and holding them back for one
/// attempt costs less than the attempts it would go on losing.
pub(crate) const GATED_AFTER: u32 = 2;

thread_local! {
    /// Whether this thread runs a closure holding [`ScanGates`].
    static HOLDING: Cell<bool> = const { Cell::new(false) };
}

/// Refuses a commit or validation on a thread that is running a closure
/// holding gates: it could wait for ever for a gate that thread holds.
pub(crate) fn refuse_nested() -> Result<(), TxError> {
    if HOLDING.with(Cell::get) {
        Err(TxError::Nested)
    } else {
        Ok(())
    }
}

/// Step 1's gates, held in phase `B` until dropped.
pub(crate) struct ScanGates<'a> {
    gates: &'a Gates,
    /// Ascending, once each.
    held: Vec<u32>,
}

impl<'a> ScanGates<'a> {
    /// Takes the gates of the trees of `scans` (the failed attempt's);
    /// `None` if it scanned nothing.
    pub fn acquire(db: &'a DbInner, scans: &[ScanRec]) -> Option<Self> {
        let mut held: Vec<u32> = scans.iter().map(|s| Gates::of_tree(s.tree.0)).collect();
        if held.is_empty() {
            return None;
        }
        held.sort_unstable();
        held.dedup();
        let gates = db.gates();
        for &g in &held {
            gates.lock_tree(g, Phase::B);
        }
        Some(ScanGates { gates, held })
    }

    /// Whether every tree of `scans` has its gate held (step 3).
    pub fn covers(&self, scans: &[ScanRec]) -> bool {
        scans
            .iter()
            .all(|s| self.held.binary_search(&Gates::of_tree(s.tree.0)).is_ok())
    }

    /// Step 2: runs the closure `f` with nested commits refused.
    pub fn run<T>(&self, f: impl FnOnce() -> T) -> T {
        struct Reset;
        impl Drop for Reset {
            fn drop(&mut self) {
                HOLDING.with(|h| h.set(false));
            }
        }
        HOLDING.with(|h| h.set(true));
        let _reset = Reset;
        f()
    }
}

impl Drop for ScanGates<'_> {
    fn drop(&mut self) {
        for &g in self.held.iter().rev() {
            self.gates.unlock_tree(g, Phase::B);
        }
    }
}
