//! The commit protocol. No lock is global to all commits: committers that
//! touch different keys run validation, append and apply side by side.
//! The argument (why this is serializable, and why the log is a history
//! recovery can replay) is in `docs/transactions.md`, "Commits without a
//! global lock"; the locks and their order are in `inner.rs`.
//!
//! Read-write transaction:
//! 1. Register with group commit (`Wal::enter_commit`), so a `Group`
//!    leader knows a committer is coming (a `NoSync` log counts nobody).
//! 2. Collect the final writes; refuse a write set too large for one log
//!    record (before anything is locked or logged). Plan the locks: the
//!    write set's key stripes, and a gate per tree written (`A`), scanned
//!    (`B`) or both (`X`) (`held.rs`).
//! 3. Take the apply gate (`A`), the tree gates, the key stripes, each in
//!    ascending order. From here until step 8 nobody else changes a key
//!    this transaction writes, nor (for a scanned tree) any key of it.
//! 4. Refuse if the Db is poisoned; conflict if a tree written was dropped
//!    meanwhile.
//! 5. Validate (`occ::validate`): every point read still has the version
//!    seen and its stripe was free and unchanged across the check; every
//!    scanned range re-scans to the same `(key, version)` sequence. On a
//!    mismatch, release and report a conflict.
//! 6. Append ONE `Commit` record with the final value of every key
//!    written. Its LSN is the transaction's commit version.
//! 7. Apply each write through its tree with `at_lsn(lsn)`, storing
//!    `lsn ‖ value`. A failure here (the record is logged, the tree is not
//!    changed) poisons the Db: only recovery can reconcile the two. So
//!    does a panic anywhere in steps 2–7.
//! 8. Release every lock, then wait for durability as the mode says, so
//!    that concurrent committers batch into one `fdatasync`.
//!
//! Read-only transaction: a single point read is atomic by itself and is
//! not validated; otherwise validate as in step 5, holding only the gates
//! of scanned trees (`B`). Then, unless `NoSync`, wait until the log is
//! durable up to the newest version read, so nothing is returned that a
//! crash could still take back.
//!
//! A read-only batch (`Db::get_many`) that fails validation is not re-run:
//! it finishes under the stripes of its keys (`refresh.rs`). A read-only
//! closure transaction whose scans keep failing validation runs again
//! holding its scanned trees' gates (`gated.rs`).
//!
//! Step 8's wait is the caller's: `Db::transaction` blocks
//! (`Wait::block`); `Db::transaction_pending` hands back a
//! [`crate::Pending`] that a task can await without holding a thread.

mod gated;
mod held;
mod refresh;

pub(crate) use gated::{GATED_AFTER, ScanGates};
pub(crate) use held::{ApplyGate, Held, LockPlan};
pub(crate) use refresh::{Moved, refresh_reads};

use crate::error::{DbError, TxError};
use crate::inner::DbInner;
use crate::locks::StripeSeen;
use crate::tx::TxBufs;
use crate::wal::{CommitTicket, Durability, Lsn, Record, Write};
use rime_btree::{BTree, LeafStamp};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Duration;

/// Scratch of the commit steps, kept in the transaction's buffers.
#[derive(Default)]
pub(crate) struct CommitBufs {
    pub plan: LockPlan,
    /// Stripes validation looked at, with what it saw (`occ.rs`).
    pub seen: Vec<(u32, StripeSeen)>,
    /// `version ‖ value` of the write being applied.
    pub stored: Vec<u8>,
}

pub(crate) enum Outcome<'a> {
    /// Committed; durable once `Wait` (if any) is over.
    Committed(Option<Wait<'a>>),
    Conflict,
}

/// What a committed transaction still waits for before it is durable: the
/// log through `lsn` (its own record, or the newest version it read).
pub(crate) struct Wait<'a> {
    pub lsn: Lsn,
    /// The flusher's round that makes `lsn` durable, if the append queued
    /// the wait with it (`Wal::append_queued`).
    round: Option<u64>,
    /// A writer's group-commit registration, kept until it waits.
    ticket: Option<CommitTicket<'a>>,
}

impl Wait<'_> {
    /// Blocks until durable; a failure poisons the Db.
    pub fn block(self, db: &DbInner) -> Result<(), TxError> {
        let waited = match self.ticket {
            Some(t) => t.wait_queued(self.lsn, self.round),
            None => db.wal().wait_durable(self.lsn),
        };
        waited.map_err(|e| {
            db.poison(&e);
            TxError::from(e)
        })
    }
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

/// Steps 1–7; the caller does step 8's wait (`Wait::block`, or a
/// callback for a caller that must not block).
pub(crate) fn commit<'a>(db: &'a DbInner, b: &mut TxBufs) -> Result<Outcome<'a>, TxError> {
    gated::refuse_nested()?;
    if b.writes.is_empty() {
        return read_only(db, b, false);
    }
    // Step 1.
    let ticket = db.wal().enter_commit();
    // Step 2's trees, resolved as of `generation`.
    let generation = b.hold_written_trees(db)?;
    let mut cb = std::mem::take(&mut b.commit);
    let result = poison_on_panic(db, || commit_locked(db, b, generation, &mut cb));
    b.commit = cb;
    let Some((lsn, round)) = result? else {
        return Ok(Outcome::Conflict);
    };
    // Step 8 (the locks were released as `commit_locked` returned).
    let wait = (db.wal().durability() != Durability::NoSync).then_some(Wait {
        lsn,
        round,
        ticket: Some(ticket),
    });
    Ok(Outcome::Committed(wait))
}

/// Steps 2–7; `None` is a conflict. Every lock is released on return.
/// The commit's LSN comes with its flusher round (`Wal::append_queued`).
fn commit_locked(
    db: &DbInner,
    b: &TxBufs,
    generation: u64,
    cb: &mut CommitBufs,
) -> Result<Option<(Lsn, Option<u64>)>, TxError> {
    // Step 2 (the trees were resolved as of `generation`).
    let (writes, trees) = b.final_writes()?;
    check_commit_size(&writes)?;
    cb.plan.build(b, &writes);
    // Step 3.
    let _held = Held::acquire(db, &cb.plan, true);
    // Step 4.
    db.check_poison()?;
    // A drop bumps the generation under its tree's gate, which step 3
    // waited for: unchanged, every tree written is still open.
    if db.tree_generation() != generation && writes.iter().any(|w| !db.has_tree(w.tree)) {
        return Ok(None);
    }
    // Step 5.
    if !crate::occ::validate(db, b, &cb.plan.stripes, &mut cb.seen)? {
        return Ok(None);
    }
    // Steps 6 and 7.
    let near = |w: &Write<'_>| b.read_leaf(w.tree, w.key);
    let queued = log_and_apply_queued(db, &writes, &trees, &near, &mut cb.stored)?;
    db.counters().commits.add(1);
    Ok(Some(queued))
}

/// Commits an attempt that ran holding `gates`, if any (step 3 of
/// `gated.rs`); without them, [`commit`].
pub(crate) fn commit_holding<'a>(
    db: &'a DbInner,
    b: &mut TxBufs,
    gates: Option<ScanGates<'_>>,
) -> Result<Outcome<'a>, TxError> {
    let Some(gates) = gates.filter(|g| b.writes.is_empty() && g.covers(&b.scans)) else {
        // Any gates are released here, before `commit` takes its own.
        return commit(db, b);
    };
    let outcome = read_only(db, b, true);
    drop(gates);
    if let Ok(Outcome::Committed(_)) = &outcome {
        db.counters().gated_reads.add(1);
    }
    outcome
}

/// A read-only transaction's commit: validation, holding the gates of the
/// scanned trees (already held by the caller if `gates_held`).
fn read_only<'a>(
    db: &'a DbInner,
    b: &mut TxBufs,
    gates_held: bool,
) -> Result<Outcome<'a>, TxError> {
    let needs_validation = b.reads.len() + b.scans.len() > 1 || !b.scans.is_empty();
    if needs_validation && !crate::occ::only_settled_scans(db, b) {
        let mut cb = std::mem::take(&mut b.commit);
        let valid = poison_on_panic(db, || {
            cb.plan.build(b, &[]);
            let _held = (!gates_held).then(|| Held::acquire(db, &cb.plan, false));
            crate::occ::validate(db, b, &[], &mut cb.seen)
        });
        b.commit = cb;
        if !valid? {
            return Ok(Outcome::Conflict);
        }
    }
    db.counters().read_only.add(1);
    Ok(Outcome::Committed(read_only_wait(db, b.max_version)))
}

/// What a read-only transaction waits for: the log durable through the
/// newest version it read, unless `NoSync` or durable already.
fn read_only_wait(db: &DbInner, max_version: u64) -> Option<Wait<'_>> {
    let wal = db.wal();
    (wal.durability() != Durability::NoSync
        && max_version >= wal.durable_lsn().0
        && max_version > 0)
        .then_some(Wait {
            lsn: Lsn(max_version),
            round: None,
            ticket: None,
        })
}

/// Runs `f`; a panic in it (a bug below the transaction layer, say)
/// poisons the Db and becomes an error: what the log and the trees hold
/// may disagree, and only recovery reconciles them. The locks `f` held are
/// released by their guards as the panic unwinds.
fn poison_on_panic<T>(db: &DbInner, f: impl FnOnce() -> Result<T, TxError>) -> Result<T, TxError> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".into());
            let why = format!("panic in the commit path: {what}");
            db.poison(&why);
            Err(TxError::Db(DbError::Poisoned(why)))
        }
    }
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

/// Steps 6–7: append one `Commit` record for `writes` (final values, one
/// per key; `trees[i]` is the tree of `writes[i]`) and apply it. The caller
/// holds the stripes of every key written and the gates of their trees.
pub(crate) fn log_and_apply(
    db: &DbInner,
    writes: &[Write<'_>],
    trees: &[&BTree],
    stored: &mut Vec<u8>,
) -> Result<Lsn, DbError> {
    let lsn = db
        .wal()
        .append(&Record::Commit(writes))
        .inspect_err(|e| db.poison(e))?;
    apply_all(db, lsn, writes, trees, &|_| None, stored)?;
    Ok(lsn)
}

/// [`log_and_apply`] for a transaction's commit, whose wait for
/// durability is queued with the append (`Wal::append_queued`).
fn log_and_apply_queued(
    db: &DbInner,
    writes: &[Write<'_>],
    trees: &[&BTree],
    near: &dyn Fn(&Write<'_>) -> Option<LeafStamp>,
    stored: &mut Vec<u8>,
) -> Result<(Lsn, Option<u64>), DbError> {
    let (lsn, round) = db
        .wal()
        .append_queued(&Record::Commit(writes))
        .inspect_err(|e| db.poison(e))?;
    apply_all(db, lsn, writes, trees, near, stored)?;
    Ok((lsn, round))
}

/// Step 7: applies every write of the commit logged at `lsn`. `near`
/// names the leaf a write's key was read from in this transaction, if it
/// was (`Writer::near`: no descent while that leaf is unchanged).
fn apply_all(
    db: &DbInner,
    lsn: Lsn,
    writes: &[Write<'_>],
    trees: &[&BTree],
    near: &dyn Fn(&Write<'_>) -> Option<LeafStamp>,
    stored: &mut Vec<u8>,
) -> Result<(), DbError> {
    for (i, w) in writes.iter().enumerate() {
        let tree = trees.get(i).unwrap_or(&trees[0]);
        apply_one(tree, lsn, w.key, w.value, near(w), stored).inspect_err(|e| db.poison(e))?;
    }
    Ok(())
}

/// Applies one logged write: `lsn ‖ value`, or removal, starting at the
/// leaf `near` if it is unchanged (`Writer::near`). Used by commit and by
/// recovery's redo (which has no stamps).
pub(crate) fn apply_one(
    tree: &BTree,
    lsn: Lsn,
    key: &[u8],
    value: Option<&[u8]>,
    near: Option<LeafStamp>,
    stored: &mut Vec<u8>,
) -> Result<(), DbError> {
    // A merge never reads a sibling from disk here: the commit holds its
    // locks, and a thread with reads of its own in flight must not wait
    // for one (`OwnedTx::commit_misses`, step 4).
    let w = tree.at_lsn(lsn.0).near(near).merge_in_memory_only();
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
