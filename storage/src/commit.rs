//! The commit protocol.
//!
//! Read-write transaction:
//! 1. Register with group commit (`Wal::enter_commit`), so a `Group`
//!    leader knows a committer is coming.
//! 2. Take the commit mutex. Every tree change happens under it, so
//!    commit order = log order = apply order, and SMOs are serialised with
//!    the writes that cause them (recovery relies on this).
//! 3. Refuse if the Db is poisoned.
//! 4. Validate the read set and scanned ranges by re-reading them
//!    (`occ::validate`); on a mismatch, release and report a conflict.
//! 5. Append ONE `Commit` record with the final value of every key written.
//!    Its LSN is the transaction's commit version.
//! 6. Apply each write through its tree with `at_lsn(lsn)`, storing
//!    `lsn ‖ value`. A failure here (the record is logged, the tree is not
//!    changed) poisons the Db: only recovery can reconcile the two.
//! 7. Release the mutex, then wait for durability as the mode says, outside
//!    the mutex so that concurrent committers batch into one `fdatasync`.
//!
//! Read-only transaction: validate under the mutex (skipped for a single
//! point read, which is atomic by itself), then, unless `NoSync`, wait
//! until the log is durable up to the newest version read, so nothing is
//! returned that a crash could still take back.

use crate::db::{CommitState, DbInner};
use crate::error::{DbError, TxError};
use crate::sync::lock;
use crate::tx::TxBufs;
use crate::wal::{Durability, Lsn, Record, Write};
use rime_btree::BTree;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

pub(crate) enum Outcome {
    Committed,
    Conflict,
}

/// Backoff before re-running a conflicted transaction: 2^attempt µs,
/// capped at 1 ms, so hot-key contention spreads out instead of
/// re-colliding in lockstep.
const BACKOFF_CAP: Duration = Duration::from_millis(1);

pub(crate) fn backoff(attempt: u32) {
    let d = Duration::from_micros(1u64 << attempt.min(10)).min(BACKOFF_CAP);
    if attempt <= 2 {
        std::thread::yield_now();
    } else {
        std::thread::sleep(d);
    }
}

pub(crate) fn commit(db: &DbInner, b: &mut TxBufs) -> Result<Outcome, TxError> {
    if b.writes.is_empty() {
        return commit_read_only(db, b);
    }
    // Step 1.
    let ticket = db.wal.enter_commit();
    let lsn = {
        // Step 2.
        let mut state = lock(&db.commit);
        // Step 3.
        db.check_poison()?;
        // Step 4.
        if !crate::occ::validate(db, b)? {
            return Ok(Outcome::Conflict);
        }
        // Steps 5 and 6 (a write set too large for one record is refused
        // here, before anything is logged).
        let (writes, trees) = b.final_writes(db)?;
        check_commit_size(&writes)?;
        let lsn = log_and_apply(db, &mut state, &writes, &trees)?;
        db.counters.commits.fetch_add(1, Ordering::Relaxed);
        lsn
    };
    // Step 7.
    ticket.wait(lsn).map_err(|e| {
        db.poison(&e);
        TxError::from(e)
    })?;
    Ok(Outcome::Committed)
}

fn commit_read_only(db: &DbInner, b: &mut TxBufs) -> Result<Outcome, TxError> {
    if b.reads.len() + b.scans.len() > 1 || !b.scans.is_empty() {
        let _state = lock(&db.commit);
        if !crate::occ::validate(db, b)? {
            return Ok(Outcome::Conflict);
        }
    }
    if db.wal.durability() != Durability::NoSync
        && b.max_version >= db.wal.durable_lsn().0
        && b.max_version > 0
    {
        db.wal.wait_durable(Lsn(b.max_version))?;
    }
    db.counters.read_only.fetch_add(1, Ordering::Relaxed);
    Ok(Outcome::Committed)
}

/// Refuses a write set whose `Commit` record would exceed the log's limit.
pub(crate) fn check_commit_size(writes: &[Write<'_>]) -> Result<(), TxError> {
    use crate::wal::record::{MAX_COMMIT_BYTES, MAX_PAYLOAD_LEN, commit_payload_len};
    let payload = commit_payload_len(writes);
    if payload > MAX_PAYLOAD_LEN {
        return Err(TxError::CommitTooLarge {
            bytes: payload - (MAX_PAYLOAD_LEN - MAX_COMMIT_BYTES),
            max: MAX_COMMIT_BYTES,
        });
    }
    Ok(())
}

/// Steps 5-6: append one `Commit` record for `writes` (final values, one
/// per key; `trees[i]` is the tree of `writes[i]`) and apply it. The caller
/// holds the commit mutex (`state`).
pub(crate) fn log_and_apply(
    db: &DbInner,
    state: &mut CommitState,
    writes: &[Write<'_>],
    trees: &[Arc<BTree>],
) -> Result<Lsn, DbError> {
    let lsn = db
        .wal
        .append(&Record::Commit(writes))
        .inspect_err(|e| db.poison(e))?;
    for (i, w) in writes.iter().enumerate() {
        let tree = trees.get(i).unwrap_or(&trees[0]);
        apply_one(tree, lsn, w.key, w.value, &mut state.stored).inspect_err(|e| db.poison(e))?;
    }
    Ok(lsn)
}

/// Applies one logged write: `lsn ‖ value`, or removal. Used by commit and
/// by recovery's redo.
pub(crate) fn apply_one(
    tree: &BTree,
    lsn: Lsn,
    key: &[u8],
    value: Option<&[u8]>,
    stored: &mut Vec<u8>,
) -> Result<(), DbError> {
    let w = tree.at_lsn(lsn.0);
    match value {
        Some(v) => {
            stored.clear();
            stored.extend_from_slice(&lsn.0.to_le_bytes());
            stored.extend_from_slice(v);
            w.upsert(key, stored)?;
        }
        None => {
            w.remove(key)?;
        }
    }
    Ok(())
}
