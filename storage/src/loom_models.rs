//! loom models of the commit protocol's concurrency, on the real
//! `KeyLocks`, `Gates` and validation looks (`occ::first_look`,
//! `occ::second_look`), with a model store (a loom atomic per key standing
//! for its version in the tree, a loom mutex for the log's append).
//!
//! `RUSTFLAGS="--cfg loom" cargo test -p rime-storage --lib --release loom`

use crate::locks::{Gates, KeyLocks, Phase};
use crate::occ::{begin, first_look, second_look};
use crate::sync::{AtomicU64, Mutex, Ordering, lock};
use loom::sync::Arc;
use loom::thread;

/// Keys 0 and 1 live in stripes 0 and 1 (the model's table has 4).
const KEYS: usize = 2;

/// The model store: each key's version (the LSN of its last write, 0 for
/// absent), the log (LSN of every append, in order), the apply record.
struct Store {
    locks: KeyLocks,
    gates: Gates,
    version: [AtomicU64; KEYS],
    log: Mutex<Vec<(u64, usize)>>,
    next_lsn: AtomicU64,
}

impl Store {
    fn new() -> Arc<Store> {
        Arc::new(Store {
            locks: KeyLocks::new(),
            gates: Gates::new(),
            version: [AtomicU64::new(0), AtomicU64::new(0)],
            log: Mutex::new(Vec::new()),
            next_lsn: AtomicU64::new(1),
        })
    }

    /// A read-modify-write transaction: reads `read` (execution), then
    /// commits writing `write`, following commit steps 3 to 8. Returns its
    /// LSN (`None`: a conflict) and the version it read.
    /// With `gates`, it also holds the apply gate and its tree's gate, as
    /// a commit does; the models of commit vs commit leave them out (they
    /// exclude nothing between writers, and each lock multiplies the
    /// interleavings loom explores).
    fn rmw(&self, read: usize, write: usize, gates: bool) -> (Option<u64>, u64) {
        let seen_version = self.version[read].load(Ordering::Acquire);
        // Step 3 (one tree, its gate in A; one stripe).
        if gates {
            self.gates.lock_apply(Phase::A);
            self.gates.lock_tree(0, Phase::A);
        }
        self.locks.lock(write as u32);
        // Step 5.
        let own = [write as u32];
        let mut seen = Vec::new();
        begin();
        let valid = first_look(&self.locks, read as u32, &own, &mut seen)
            && self.version[read].load(Ordering::Acquire) == seen_version
            && second_look(&self.locks, &seen);
        let lsn = valid.then(|| {
            // Steps 6 and 7.
            let lsn = {
                let mut log = lock(&self.log);
                let lsn = self.next_lsn.fetch_add(1, Ordering::Relaxed);
                log.push((lsn, write));
                lsn
            };
            self.version[write].store(lsn, Ordering::Release);
            lsn
        });
        // Step 8.
        self.locks.unlock(write as u32);
        if gates {
            self.gates.unlock_tree(0, Phase::A);
            self.gates.unlock_apply(Phase::A);
        }
        (lsn, seen_version)
    }
}

/// Commit vs commit on an overlapping key: two increments of key 0 never
/// both commit on the version they both read (a lost update), and the
/// key's final version is the LSN logged last (apply order = log order).
#[test]
fn loom_two_commits_on_one_key_do_not_lose_an_update() {
    loom::model(|| {
        let s = Store::new();
        let t = {
            let s = s.clone();
            thread::spawn(move || s.rmw(0, 0, false))
        };
        let a = s.rmw(0, 0, false);
        let b = t.join().unwrap();
        assert!(
            !(a.0.is_some() && b.0.is_some() && a.1 == b.1),
            "lost update: both committed on version {}",
            a.1
        );
        if let Some(&(last, _)) = lock(&s.log).last() {
            assert_eq!(s.version[0].load(Ordering::Relaxed), last);
        }
    });
}

/// Write skew: T1 reads key 0 and writes key 1, T2 reads key 1 and writes
/// key 0. Both committing having read the initial versions has no serial
/// order (each would have to come first); validation must refuse one.
#[test]
fn loom_write_skew_is_refused() {
    loom::model(|| {
        let s = Store::new();
        let t = {
            let s = s.clone();
            thread::spawn(move || s.rmw(0, 1, false))
        };
        let a = s.rmw(1, 0, false);
        let b = t.join().unwrap();
        assert!(
            !(a.0.is_some() && b.0.is_some() && a.1 == 0 && b.1 == 0),
            "write skew: both committed on the initial versions"
        );
    });
}

/// A read-only transaction of two keys never sees half of a commit that
/// writes both: if its looks validate, the versions it read are equal.
#[test]
fn loom_a_validated_reader_never_sees_half_a_commit() {
    loom::model(|| {
        let s = Store::new();
        let w = {
            let s = s.clone();
            thread::spawn(move || {
                s.locks.lock(0);
                s.locks.lock(1);
                s.version[0].store(7, Ordering::Release);
                s.version[1].store(7, Ordering::Release);
                s.locks.unlock(1);
                s.locks.unlock(0);
            })
        };
        // Execution: read both.
        let x = s.version[0].load(Ordering::Acquire);
        let y = s.version[1].load(Ordering::Acquire);
        // Validation.
        let mut seen = Vec::new();
        begin();
        let valid = first_look(&s.locks, 0, &[], &mut seen)
            && s.version[0].load(Ordering::Acquire) == x
            && first_look(&s.locks, 1, &[], &mut seen)
            && s.version[1].load(Ordering::Acquire) == y
            && second_look(&s.locks, &seen);
        if valid {
            assert_eq!(x, y, "validated a torn read");
        }
        w.join().unwrap();
    });
}

/// Commit vs checkpoint: a checkpoint that holds the apply gate in B sees
/// every LSN below its redo point applied (nothing logged-but-unapplied).
#[test]
fn loom_a_checkpoint_never_sees_a_logged_change_unapplied() {
    loom::model(|| {
        let s = Store::new();
        let c = {
            let s = s.clone();
            thread::spawn(move || s.rmw(0, 0, true))
        };
        s.gates.lock_apply(Phase::B);
        let redo = s.next_lsn.load(Ordering::Relaxed);
        for &(lsn, key) in lock(&s.log).iter() {
            assert!(lsn < redo);
            assert!(
                s.version[key].load(Ordering::Acquire) >= lsn,
                "LSN {lsn} is logged below the redo point {redo} but not applied"
            );
        }
        s.gates.unlock_apply(Phase::B);
        c.join().unwrap();
    });
}

/// A scan validator (B) and a writer (A) of one tree never overlap, and an
/// `X` holder (write + scan) excludes both.
#[test]
fn loom_tree_gate_phases_exclude_each_other() {
    loom::model(|| {
        let g = Arc::new(Gates::new());
        let inside = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
        let spawn = |p: Phase, me: usize| {
            let (g, inside) = (g.clone(), inside.clone());
            thread::spawn(move || {
                g.lock_tree(1, p);
                inside[me].fetch_add(1, Ordering::SeqCst);
                assert_eq!(inside[1 - me].load(Ordering::SeqCst), 0, "{p:?} overlaps");
                inside[me].fetch_sub(1, Ordering::SeqCst);
                g.unlock_tree(1, p);
            })
        };
        let a = spawn(Phase::A, 0);
        let b = spawn(Phase::B, 1);
        a.join().unwrap();
        b.join().unwrap();
    });
}

/// The model tree of the two scan models below: two keys a writer changes
/// together under gate 0 in `A` (release stores, as page latches publish).
fn two_keys_and_their_writer() -> (Arc<Gates>, Arc<[AtomicU64; 2]>, thread::JoinHandle<()>) {
    let g = Arc::new(Gates::new());
    let keys = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
    let writer = {
        let (g, keys) = (g.clone(), keys.clone());
        thread::spawn(move || {
            g.lock_tree(0, Phase::A);
            keys[0].store(1, Ordering::Release);
            keys[1].store(1, Ordering::Release);
            g.unlock_tree(0, Phase::A);
        })
    };
    (g, keys, writer)
}

/// A scan of the model tree, in the order that can tear (acquire loads, as
/// validated optimistic reads).
fn scan_two_keys(keys: &[AtomicU64; 2]) -> (u64, u64) {
    (
        keys[0].load(Ordering::Acquire),
        keys[1].load(Ordering::Acquire),
    )
}

/// A scan that skips its second scan (`Gates::quiet`, then
/// `Gates::still_quiet` under `B`) read one state: never half of a
/// writer's changes. The model tree is two keys a writer changes together
/// under the gate in `A` (release stores, as page latches publish); the
/// scan reads them in the order that can tear (acquire loads, as validated
/// optimistic reads). Some interleaving must take the shortcut, or the
/// model proves nothing.
#[test]
fn loom_a_scan_that_skips_its_second_scan_read_one_state() {
    use std::sync::atomic::{AtomicBool, Ordering as StdOrdering};
    static SHORTCUT_TAKEN: AtomicBool = AtomicBool::new(false);
    loom::model(|| {
        let (g, keys, writer) = two_keys_and_their_writer();
        let quiet = g.quiet(0);
        let (first, second) = scan_two_keys(&keys);
        g.lock_tree(0, Phase::B);
        if quiet.is_some_and(|q| g.still_quiet(0, q)) {
            SHORTCUT_TAKEN.store(true, StdOrdering::Relaxed);
            assert_eq!(first, second, "the scan read half of a writer's changes");
        }
        g.unlock_tree(0, Phase::B);
        writer.join().unwrap();
    });
    assert!(
        SHORTCUT_TAKEN.load(StdOrdering::Relaxed),
        "no interleaving took the shortcut"
    );
}

/// A read-only transaction of scans alone commits without taking its
/// trees' gates when no writer has begun since each scan's `quiet`
/// (`commit::read_only`): the scan still read one state. The writer here
/// changes both keys and may still be between its changes when the check
/// runs; the check must never pass for a scan that saw one key changed and
/// not the other. Some interleaving must pass the check with the writer
/// already begun but not yet seen (else the model says nothing about the
/// missing gate), and some must pass it after the writer ended.
#[test]
fn loom_a_scan_checked_quiet_without_its_gate_read_one_state() {
    use std::sync::atomic::{AtomicBool, Ordering as StdOrdering};
    static PASSED_WITH_WRITER_UNSEEN: AtomicBool = AtomicBool::new(false);
    static PASSED_AFTER_WRITER: AtomicBool = AtomicBool::new(false);
    loom::model(|| {
        let (g, keys, writer) = two_keys_and_their_writer();
        let quiet = g.quiet(0);
        let (first, second) = scan_two_keys(&keys);
        if quiet.is_some_and(|q| g.still_quiet(0, q)) {
            assert_eq!(first, second, "the scan read half of a writer's changes");
            if first == 0 {
                PASSED_WITH_WRITER_UNSEEN.store(true, StdOrdering::Relaxed);
            } else {
                PASSED_AFTER_WRITER.store(true, StdOrdering::Relaxed);
            }
        }
        writer.join().unwrap();
    });
    assert!(
        PASSED_WITH_WRITER_UNSEEN.load(StdOrdering::Relaxed),
        "no interleaving passed the check before the writer's changes"
    );
    assert!(
        PASSED_AFTER_WRITER.load(StdOrdering::Relaxed),
        "no interleaving passed the check after the writer's changes"
    );
}

/// A model leaf: its page-state word (`version << 1 | locked`, as the
/// buffer manager's, whose exclusive release bumps the version) and the
/// one key it holds.
struct ModelPage {
    state: AtomicU64,
    key: AtomicU64,
}

impl ModelPage {
    fn new() -> Self {
        ModelPage {
            state: AtomicU64::new(0),
            key: AtomicU64::new(0),
        }
    }

    /// A writer's change under the exclusive latch.
    fn write(&self, value: u64) {
        let seen = loop {
            let s = self.state.load(Ordering::Relaxed);
            if s & 1 == 0
                && self
                    .state
                    .compare_exchange(s, s | 1, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            {
                break s;
            }
            thread::yield_now();
        };
        crate::sync::fence(Ordering::Release);
        self.key.store(value, Ordering::Relaxed);
        self.state.store(seen + 2, Ordering::Release);
    }

    /// A scan's visit: the key, and the stamp (the version it was read at),
    /// as a seqlock reader validates them.
    fn read(&self) -> (u64, u64) {
        loop {
            let s = self.state.load(Ordering::Acquire);
            if s & 1 == 0 {
                let key = self.key.load(Ordering::Relaxed);
                crate::sync::fence(Ordering::Acquire);
                if self.state.load(Ordering::Relaxed) == s {
                    return (key, s);
                }
            }
            thread::yield_now();
        }
    }

    /// `BufferManager::unchanged_since`.
    fn unchanged_since(&self, stamp: u64) -> bool {
        self.state.load(Ordering::Acquire) == stamp
    }
}

/// A read-only transaction of scans alone commits without its trees'
/// gates when no writer of them is in progress and every leaf it read is
/// unchanged (`occ::settled`, the very steps `commit::read_only` runs):
/// the scan still read one state. The writer changes two leaves under
/// the gate in `A`; the scan reads them in the order that can tear. Some
/// interleaving must pass with the writer's changes seen while the scan
/// was not quiet (else the model never runs the new path), and the check
/// must never pass a scan that saw one leaf changed and not the other
/// (it does without step 1: the writer changes the second leaf after
/// step 2).
#[test]
fn loom_a_scan_checked_unchanged_without_its_gate_read_one_state() {
    use std::sync::atomic::{AtomicBool, Ordering as StdOrdering};
    static PASSED_UNCHANGED: AtomicBool = AtomicBool::new(false);
    loom::model(|| {
        let g = Arc::new(Gates::new());
        let pages = Arc::new([ModelPage::new(), ModelPage::new()]);
        let writer = {
            let (g, pages) = (g.clone(), pages.clone());
            thread::spawn(move || {
                g.lock_tree(0, Phase::A);
                pages[0].write(1);
                pages[1].write(1);
                g.unlock_tree(0, Phase::A);
            })
        };
        let quiet = g.quiet(0);
        let (first, stamp0) = pages[0].read();
        let (second, stamp1) = pages[1].read();
        let unchanged = |_| pages[0].unchanged_since(stamp0) && pages[1].unchanged_since(stamp1);
        if crate::occ::settled(&g, 1, |_| (0, quiet), unchanged) == crate::occ::Settled::Yes {
            assert_eq!(first, second, "the scan read half of a writer's changes");
            if first == 1 && !quiet.is_some_and(|q| g.still_quiet(0, q)) {
                PASSED_UNCHANGED.store(true, StdOrdering::Relaxed);
            }
        }
        writer.join().unwrap();
    });
    assert!(
        PASSED_UNCHANGED.load(StdOrdering::Relaxed),
        "no interleaving passed by unchanged pages with the writer's changes seen"
    );
}

/// A read-only transaction that lost validation twice runs its scans
/// holding its trees' gates in `B` from before it reads
/// (`commit/gated.rs`): whatever a writer of the tree does around it, the
/// scan reads one state, and the writer's changes are all before it or
/// all after. Some interleaving must see the writer's changes and some
/// not, or the model proves nothing.
#[test]
fn loom_a_gated_scan_reads_one_state() {
    use std::sync::atomic::{AtomicBool, Ordering as StdOrdering};
    static SAW_BEFORE: AtomicBool = AtomicBool::new(false);
    static SAW_AFTER: AtomicBool = AtomicBool::new(false);
    loom::model(|| {
        let (g, keys, writer) = two_keys_and_their_writer();
        g.lock_tree(0, Phase::B);
        let (first, second) = scan_two_keys(&keys);
        g.unlock_tree(0, Phase::B);
        assert_eq!(
            first, second,
            "a gated scan read half of a writer's changes"
        );
        if first == 0 {
            SAW_BEFORE.store(true, StdOrdering::Relaxed);
        } else {
            SAW_AFTER.store(true, StdOrdering::Relaxed);
        }
        writer.join().unwrap();
    });
    assert!(SAW_BEFORE.load(StdOrdering::Relaxed) && SAW_AFTER.load(StdOrdering::Relaxed));
}
