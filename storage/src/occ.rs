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
//!    trees' now: it is not scanned again (`Gates::quiet`). Nor is one
//!    whose pages (the leaves it visited, the extents it read) are all
//!    unchanged since: a second scan would read the same entries
//!    (`BTree::scan_stamped`).
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
//! A read-only transaction of scans alone whose scans all stayed quiet, or
//! whose trees have no writer in progress and whose pages are unchanged,
//! skips all three steps and takes no gate ([`only_settled_scans`]).

use crate::error::{DbError, TxError};
use crate::inner::DbInner;
use crate::locks::{Gates, KeyLocks, Quiet, StripeSeen};
use crate::sync::{Ordering, fence};
use crate::tx::{TxBufs, split_stored};
use crate::wal::TreeId;
use rime_btree::{BTree, Direction};
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::{Duration, Instant};

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
    //    of its tree's gate has begun since before the scan read it, or if
    //    the pages it read are unchanged (no writer of the tree is in
    //    progress now: the gate is held).
    for s in &b.scans {
        let gate = Gates::of_tree(s.tree.0);
        if s.quiet.is_some_and(|q| db.gates().still_quiet(gate, q)) {
            continue;
        }
        let Some(tree) = tree_of(db, b, s.tree) else {
            return Ok(false);
        };
        if tree.all_unchanged(b.pages_of(s)) {
            continue;
        }
        db.counters().scan_rescans.add(1);
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

/// True if `b` read nothing but scans, each of which is settled: then the
/// scans read one state of their trees, and the transaction commits
/// without taking a gate (`commit::read_only`). A scan is settled if
///
/// * *quiet*: it began with no writer of its tree's gate in progress, and
///   none has begun since; or
/// * *unchanged*: no writer of its gate is in progress at step 1 below,
///   and every page it read is unchanged at step 2.
///
/// 1. After a fence, for each scan not quiet: its gate's writers, summed
///    (`Gates::quiet`), must show none in progress. If one is, spin
///    briefly and start again: a commit holds its gates for microseconds,
///    and the alternative (validation holding the gates in `B`) makes
///    the writer wake this thread, and refuses new writers meanwhile.
/// 2. For each scan not quiet: its pages, unchanged (`BTree::all_unchanged`,
///    acquire loads after step 1's).
///
/// Why quiet suffices: a writer bumps its gate's begun count before its
/// first change, and a scan that read any of its changes (through the
/// page latch that published it) reads that count or a later one here.
/// An unchanged count means the scans saw no change of any writer not yet
/// counted at their `quiet`, and every change of the writers counted then.
/// The loom model `loom_a_scan_checked_quiet_without_its_gate_read_one_state`
/// checks it.
///
/// Why unchanged suffices: a writer's change to a page the scan read,
/// made after the scan read it, moves that page's version (it is made
/// under an exclusive latch, whose release bumps it) and fails step 2,
/// before or after step 1. So every writer that changed the scanned
/// ranges made all of those changes before the scan read them: the scan
/// saw each writer's changes to its ranges entirely or (the writer
/// touched none of its pages) not at all. What step 1 adds is the writer
/// still at work: it may have changed a page the scan read, and change
/// another one after step 2 (a transaction of two keys the scan covers).
/// It is counted in its gate's begun count before its first change, so
/// the scan, having read that change, sees the count at step 1 and backs
/// off. The loom model
/// `loom_a_scan_checked_unchanged_without_its_gate_read_one_state` checks
/// the two steps together.
///
/// Step 2 of [`validate`] needs the gate because its point reads and
/// writes must share one instant with the scans; a transaction of scans
/// alone has no other reads to agree with.
///
/// The fence: a writer W1 that is serialized before a writer W2 only
/// because W1 read a key W2 later wrote (an anti-dependency: nothing W1
/// published was read by W2) must not be missed by a transaction that saw
/// W2's changes, or it would read W2's world without W1's. W1 bumped its
/// begun count before its own fence ([`begin`]), which preceded W2's
/// (W1 found W2's stripe still free), and W2's changes, seen here, follow
/// W2's fence; with a fence before these loads too, they see W1's count:
/// a quiet scan is not quiet, and an unchanged one finds W1 in progress
/// or, W1 done, its changes to the scanned pages caught by their versions.
/// Holding the gate (step 2 of [`validate`]) gets the same from the
/// gate's lock word.
pub(crate) fn only_settled_scans(db: &DbInner, b: &TxBufs) -> bool {
    if !b.reads.is_empty() || b.scans.is_empty() {
        return false;
    }
    let scan = |i: usize| (Gates::of_tree(b.scans[i].tree.0), b.scans[i].quiet);
    let unchanged = |i: usize| {
        let s = &b.scans[i];
        tree_of(db, b, s.tree).is_some_and(|t| t.all_unchanged(b.pages_of(s)))
    };
    let mut since: Option<Instant> = None;
    loop {
        match settled(db.gates(), b.scans.len(), scan, unchanged) {
            Settled::Yes => return true,
            Settled::No => return false,
            Settled::WriterAtWork => {
                if since.get_or_insert_with(Instant::now).elapsed() > SETTLE_WAIT {
                    return false;
                }
                for _ in 0..SETTLE_SPINS {
                    std::hint::spin_loop();
                }
            }
        }
    }
}

/// How long [`only_settled_scans`] spins while a writer of its trees is at
/// work before it gives up (and the commit validates holding the gates):
/// a commit holds its gates for microseconds, a YCSB E insert that splits
/// a leaf of 1 KiB values and logs the split some 20 µs on this machine
/// kind. The gated path costs more than the wait: the writer must wake
/// this thread, and no new writer gets in meanwhile. Giving up after the
/// phase lock's own spin (64 `pause`s, ~0.6 µs here) put a scanning
/// thread of YCSB E to sleep about once per insert (`docs/transactions.md`).
const SETTLE_WAIT: Duration = Duration::from_micros(50);

/// `pause`s between two looks at the gates (~0.3 µs here).
const SETTLE_SPINS: u32 = 32;

/// What [`settled`] found.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Settled {
    /// Every scan is settled.
    Yes,
    /// A writer of a scanned tree's gate is in progress (step 1): look
    /// again once it is done.
    WriterAtWork,
    /// A page some scan read has changed (step 2).
    No,
}

/// Steps 1-2 of [`only_settled_scans`] for `n` scans: `scan(i)` is scan
/// `i`'s gate and its quiet, `unchanged(i)` whether its pages are all
/// unchanged. (Apart, so that the loom model runs these very steps.)
pub(crate) fn settled(
    gates: &Gates,
    n: usize,
    scan: impl Fn(usize) -> (u32, Option<Quiet>),
    unchanged: impl Fn(usize) -> bool,
) -> Settled {
    begin();
    let quiet = |(gate, q): (u32, Option<Quiet>)| q.is_some_and(|q| gates.still_quiet(gate, q));
    // 1. (A scan found quiet here and not in step 2 is checked in step 2
    //    too: quiet then, it needs no more, and more checks only refuse.)
    let at_work = |(gate, q)| !quiet((gate, q)) && gates.quiet(gate).is_none();
    if (0..n).any(|i| at_work(scan(i))) {
        return Settled::WriterAtWork;
    }
    // 2.
    match (0..n).all(|i| quiet(scan(i)) || unchanged(i)) {
        true => Settled::Yes,
        false => Settled::No,
    }
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
