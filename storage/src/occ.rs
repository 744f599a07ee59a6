//! Validation: optimistic concurrency control with serializable results,
//! without a lock common to all commits.
//!
//! The transaction read its values at various times; validation proves
//! that at one instant, all of them were the database's current values
//! (then the transaction is equivalent to running entirely at that
//! instant, its serialization point). It takes three steps:
//!
//! 1. First look, per point read: the key's stripe must be free (or held
//!    by this committer), and is remembered as seen; then the key's version
//!    must be the one the transaction saw (0 standing for "absent"): true
//!    at once if the leaf the read came from is unchanged since
//!    (`BTree::unchanged`), else read from the tree again.
//! 2. Scanned ranges re-scan to the same `(key, version)` sequence, up to
//!    where the scan stopped (a new key is a phantom). The caller holds the
//!    scanned trees' gates in `B` or `X`, so no writer of those trees is
//!    between its lock and its release during the whole validation. A
//!    scan that began with no writer of its tree's gate in progress, and
//!    after which none has begun, read one state that is still the
//!    trees' now: it is not scanned again (`Gates::quiet`).
//! 3. Second look: every stripe seen in 1 is unchanged (nobody locked it
//!    since; a release bumps its version).
//!
//! Why one instant exists: every stripe's "nobody held it" interval runs
//! from its first look to its second look, and all first looks come before
//! all second looks; so the moment between steps 1 and 3 lies in all of
//! them. Writers change a key only while holding its stripe, so each point
//! read's value was current then; the gates make the scanned ranges so for
//! the whole validation. A stripe held by another committer fails the
//! check at once (a conflict): validation never waits, so it takes no
//! place in the lock order.
//!
//! A read-only transaction of scans alone whose scans all stayed quiet
//! skips all three steps and takes no gate ([`only_quiet_scans`]).

use crate::error::{DbError, TxError};
use crate::inner::DbInner;
use crate::locks::{Gates, KeyLocks, StripeSeen};
use crate::sync::{Ordering, fence};
use crate::tx::{TxBufs, split_stored};
use crate::wal::TreeId;
use rime_btree::{BTree, Direction};
use std::ops::ControlFlow;
use std::sync::Arc;

/// True if every read and scan of `b` saw the database as of one instant.
/// `own` (ascending) are the stripes the caller holds; `seen` is scratch.
pub(crate) fn validate(
    db: &DbInner,
    b: &TxBufs,
    own: &[u32],
    seen: &mut Vec<(u32, StripeSeen)>,
) -> Result<bool, TxError> {
    seen.clear();
    begin();
    // 1. Point reads, with the first look at their stripes.
    for r in &b.reads {
        let key = b.bytes(r.key);
        if !first_look(db.key_locks(), KeyLocks::stripe(r.tree.0, key), own, seen) {
            return Ok(false);
        }
        let Some(tree) = tree_of(db, b, r.tree) else {
            return Ok(false);
        };
        // The leaf the read came from, unchanged: the key's version too,
        // without a descent (`BTree::unchanged`; its state word is loaded
        // after the stripe's, so it is as current as the descent's).
        if r.leaf.is_some_and(|leaf| tree.unchanged(leaf)) {
            continue;
        }
        let now = tree.get(key, |v| split_stored(v).map(|(ver, _)| ver))?;
        let now = match now {
            None => 0,
            Some(Some(v)) => v,
            Some(None) => {
                return Err(TxError::Db(DbError::Corrupt(
                    "stored value without a version".into(),
                )));
            }
        };
        if now != r.version {
            return Ok(false);
        }
    }
    // 2. Scanned ranges, phantoms included; none to re-scan if no writer
    //    of its tree's gate has begun since before the scan read it.
    for s in &b.scans {
        let gate = Gates::of_tree(s.tree.0);
        if s.quiet.is_some_and(|q| db.gates().still_quiet(gate, q)) {
            continue;
        }
        db.counters().scan_rescans.add(1);
        let Some(tree) = tree_of(db, b, s.tree) else {
            return Ok(false);
        };
        let observed = &b.observed[s.observed.clone()];
        let mut i = 0usize;
        let mut same = true;
        tree.scan(
            (b.bound(s.lo), b.bound(s.hi)),
            Direction::Forward,
            |k, v| {
                let ver = split_stored(v).map(|(ver, _)| ver);
                match observed.get(i) {
                    Some(o) if b.bytes(o.key) == k && Some(o.version) == ver => {
                        i += 1;
                        ControlFlow::Continue(())
                    }
                    _ => {
                        same = false;
                        ControlFlow::Break(())
                    }
                }
            },
        )?;
        if !same || i != observed.len() {
            return Ok(false);
        }
    }
    // 3.
    Ok(second_look(db.key_locks(), seen))
}

/// A tree validation reads: the thread's cached one while it is still
/// current, else the Db's map's; `None` if it is gone. The map is behind a
/// lock, and both it and a tree's reference count are lines every core's
/// commits would write.
enum TreeRef<'a> {
    Cached(&'a BTree),
    Shared(Arc<BTree>),
}

impl std::ops::Deref for TreeRef<'_> {
    type Target = BTree;
    fn deref(&self) -> &BTree {
        match self {
            TreeRef::Cached(t) => t,
            TreeRef::Shared(t) => t,
        }
    }
}

fn tree_of<'a>(db: &DbInner, b: &'a TxBufs, id: TreeId) -> Option<TreeRef<'a>> {
    match b.current_tree(db, id) {
        Some(t) => Some(TreeRef::Cached(t)),
        None => db.tree(id).ok().map(TreeRef::Shared),
    }
}

/// True if `b` read nothing but scans, each of which began with no writer
/// of its tree's gate in progress and after which none has begun: then
/// every scan read one state, the one current at the first writer's
/// change none of them saw, and the transaction commits without taking a
/// gate (`commit::read_only`).
///
/// Why no gate is needed, unlike step 2: a writer bumps its gate's begun
/// count before its first change, and a scan that read any of its changes
/// (through the page latch that published it) reads that count or a later
/// one here. An unchanged count means the scans saw no change of any
/// writer not yet counted at their `quiet`, and every change of the
/// writers counted then. Step 2 needs the gate because its point reads
/// and writes must share that instant with the scans; a transaction of
/// scans alone has no other reads to agree with. The loom model
/// `loom_a_scan_checked_quiet_without_its_gate_read_one_state` checks it.
///
/// The fence: a writer W1 that is serialized before a writer W2 only
/// because W1 read a key W2 later wrote (an anti-dependency: nothing W1
/// published was read by W2) must not be missed by a transaction that saw
/// W2's changes, or it would read W2's world without W1's. W1 bumped its
/// begun count before its own fence ([`begin`]), which preceded W2's
/// (W1 found W2's stripe still free), and W2's changes, seen here, follow
/// W2's fence; with a fence before these loads too, they see W1's count.
/// Holding the gate (step 2) gets the same from the gate's lock word.
pub(crate) fn only_quiet_scans(db: &DbInner, b: &TxBufs) -> bool {
    if !b.reads.is_empty() || b.scans.is_empty() {
        return false;
    }
    begin();
    b.scans.iter().all(|s| {
        s.quiet
            .is_some_and(|q| db.gates().still_quiet(Gates::of_tree(s.tree.0), q))
    })
}

/// Orders the caller's stripe locks (stores) before validation's looks
/// (loads). Without it two committers can each lock one key and then see
/// the other's key still free — the store-buffering pattern that loom
/// found as a write skew (`loom_write_skew_is_refused`): each read the
/// key the other writes, both validated, both committed. With a SeqCst
/// fence on both sides, at least one of them sees the other's lock.
pub(crate) fn begin() {
    fence(Ordering::SeqCst);
}

/// Step 1's look at `stripe`, before its key is read: false if another
/// committer holds it. Stripes in `own` (ascending) are the caller's.
pub(crate) fn first_look(
    locks: &KeyLocks,
    stripe: u32,
    own: &[u32],
    seen: &mut Vec<(u32, StripeSeen)>,
) -> bool {
    if own.binary_search(&stripe).is_ok() {
        return true;
    }
    match locks.observe(stripe) {
        Some(w) => {
            seen.push((stripe, w));
            true
        }
        None => false,
    }
}

/// Step 3: every stripe looked at in step 1 is as it was then.
pub(crate) fn second_look(locks: &KeyLocks, seen: &[(u32, StripeSeen)]) -> bool {
    seen.iter().all(|&(stripe, w)| locks.unchanged(stripe, w))
}
