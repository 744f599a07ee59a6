//! The commit locks: what replaces the one commit mutex.
//!
//! * [`KeyLocks`]: a fixed table of key stripes. A committer holds the
//!   stripes of its write set exclusively, from before validation to after
//!   apply. Each stripe's word carries a version that every release bumps,
//!   so a validator can prove "nobody locked or changed this stripe between
//!   two looks" without taking it (a seqlock).
//! * [`PhaseLock`]: a lock with two modes, each shared among its holders and
//!   excluding the other. Per tree (hashed into [`TREE_GATES`] gates):
//!   writers hold [`Phase::A`], scan validators and `drop_tree` hold
//!   [`Phase::B`]. Once for the whole Db (the apply gate): committers hold
//!   `A` from before they append to after they apply, a checkpoint holds
//!   `B` to append its `CheckpointBegin` with nothing half applied.
//!
//! Waiting spins briefly, then sleeps on one of [`PARKING_SLOTS`] condition
//! variables (the slot of the word waited for): a preempted holder on this
//! 2-core machine can keep a lock for a whole time slice, and hundreds of
//! spinning committers would take the cores it needs to finish.

mod phase;

#[cfg(all(test, not(loom)))]
use phase::A_SHARDS;
pub(crate) use phase::Phase;
use phase::{PhaseLock, Writers};

use crate::sync::{AtomicU64, Condvar, Mutex, Ordering, lock, wait, wait_timeout};
use rime_bufmgr::{BLOCKED_REAP_INTERVAL, reap_while_blocked};

/// Key stripes. 4096 × 8 bytes = 32 KiB: two committers of small write sets
/// share a stripe (and so wait for each other) rarely, and the table stays
/// in L2. A power of two, so a stripe is a mask of the key's hash.
#[cfg(not(loom))]
pub(crate) const KEY_STRIPES: usize = 4096;
#[cfg(loom)]
pub(crate) const KEY_STRIPES: usize = 4;

/// Tree gates: trees hash into these. 64 distinct gates make two busy
/// trees share one rarely; sharing only costs a scan validator of one
/// waiting for writers of the other.
#[cfg(not(loom))]
pub(crate) const TREE_GATES: usize = 64;
#[cfg(loom)]
pub(crate) const TREE_GATES: usize = 2;

/// Condition variables sleepers are spread over.
#[cfg(not(loom))]
const PARKING_SLOTS: usize = 64;
#[cfg(loom)]
const PARKING_SLOTS: usize = 1;

/// Spins before sleeping: about a microsecond, the length of a short
/// critical section.
#[cfg(not(loom))]
const SPINS: u32 = 64;

const _: () = assert!(KEY_STRIPES.is_power_of_two() && TREE_GATES.is_power_of_two());

/// Sleeping places for waiters; a releaser that saw a waiter bit wakes its
/// slot.
pub(super) struct Parking {
    slots: Box<[(Mutex<()>, Condvar)]>,
}

impl Parking {
    fn new() -> Self {
        Parking {
            slots: (0..PARKING_SLOTS)
                .map(|_| (Mutex::new(()), Condvar::new()))
                .collect(),
        }
    }

    /// Sleeps on `slot` if `still_blocked()` holds under the slot's mutex.
    /// The caller published its waiter bit before calling, so a release
    /// after this check must take the same mutex to wake us: no lost
    /// wake-up. (Spurious wake-ups are fine: callers loop.)
    ///
    /// A thread with page reads in flight (an executor's loader) reaps them
    /// first and sleeps only briefly: the holder it waits for may be
    /// waiting for one of those reads (`rime_bufmgr::reap_while_blocked`).
    pub(super) fn park(&self, slot: usize, still_blocked: impl Fn() -> bool) {
        let reaping = reap_while_blocked();
        let (m, cv) = &self.slots[slot % PARKING_SLOTS];
        let guard = lock(m);
        if still_blocked() {
            if reaping {
                drop(wait_timeout(cv, guard, BLOCKED_REAP_INTERVAL));
            } else {
                drop(wait(cv, guard));
            }
        }
    }

    pub(super) fn unpark(&self, slot: usize) {
        let (m, cv) = &self.slots[slot % PARKING_SLOTS];
        drop(lock(m));
        cv.notify_all();
    }
}

/// A backoff step of a waiter: spin, then yield, then report "sleep now".
/// (Under loom, sleep at once: the model explores the parking instead of
/// unbounded spinning.)
#[cfg(loom)]
pub(super) fn spin(_round: &mut u32) -> bool {
    true
}

/// A backoff step of a waiter: spin, then yield, then report "sleep now".
#[cfg(not(loom))]
pub(super) fn spin(round: &mut u32) -> bool {
    *round += 1;
    if *round < SPINS {
        std::hint::spin_loop();
        false
    } else if *round < SPINS + 4 {
        std::thread::yield_now();
        false
    } else {
        true
    }
}

/// The key stripes. Word of a stripe:
///
/// ```text
///  63                                  2   1   0
/// +-------------------------------------+---+---+
/// |  version (bumped by every release)  | W | L |
/// +-------------------------------------+---+---+
///   L: locked (exclusively, by one committer)
///   W: someone sleeps waiting for it (only while L)
/// ```
///
/// Transitions: `lock` 0→L (CAS); `unlock` L→0 with version + 1, waking
/// sleepers if W was set. A validator reads a word with L clear, reads
/// the keys it covers, and later finds the word unchanged: nobody held the
/// stripe in between.
pub(crate) struct KeyLocks {
    words: Box<[AtomicU64]>,
    parking: Parking,
}

const L: u64 = 1;
const W: u64 = 2;
const VERSION_ONE: u64 = 4;

/// A stripe's word as a validator saw it (see [`KeyLocks::observe`]).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct StripeSeen(u64);

impl KeyLocks {
    pub fn new() -> Self {
        KeyLocks {
            words: (0..KEY_STRIPES).map(|_| AtomicU64::new(0)).collect(),
            parking: Parking::new(),
        }
    }

    /// The stripe of `(tree, key)`.
    pub fn stripe(tree: u32, key: &[u8]) -> u32 {
        // The write index's FNV-1a, then a multiply to spread the low bits
        // the mask keeps.
        let h = crate::tx::hash(crate::wal::TreeId(tree), key);
        (h.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32) as u32 & (KEY_STRIPES as u32 - 1)
    }

    /// Locks stripe `s`, waiting for its holder. Callers lock their stripes
    /// in ascending order (deadlock freedom).
    pub fn lock(&self, s: u32) {
        let word = &self.words[s as usize];
        let mut round = 0;
        loop {
            let cur = word.load(Ordering::Relaxed);
            if cur & L == 0 {
                if word
                    .compare_exchange_weak(cur, cur | L, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
                {
                    return;
                }
                continue;
            }
            if !spin(&mut round) {
                continue;
            }
            // Publish the waiter bit, then sleep unless it was released.
            if cur & W == 0
                && word
                    .compare_exchange_weak(cur, cur | W, Ordering::Relaxed, Ordering::Relaxed)
                    .is_err()
            {
                continue;
            }
            self.parking.park(s as usize, || {
                word.load(Ordering::Relaxed) & (L | W) == L | W
            });
        }
    }

    /// Unlocks stripe `s` (held by the caller) and bumps its version.
    pub fn unlock(&self, s: u32) {
        let word = &self.words[s as usize];
        let old = word.load(Ordering::Relaxed);
        debug_assert!(old & L != 0, "unlocking stripe {s}, which is not locked");
        let new = (old & !(L | W)).wrapping_add(VERSION_ONE);
        let prev = word.swap(new, Ordering::Release);
        if prev & W != 0 {
            self.parking.unpark(s as usize);
        }
    }

    /// The stripe's word for a later [`KeyLocks::unchanged`], or `None` if
    /// someone holds it now.
    pub fn observe(&self, s: u32) -> Option<StripeSeen> {
        let w = self.words[s as usize].load(Ordering::Acquire);
        (w & L == 0).then_some(StripeSeen(w))
    }

    /// True if nobody has locked stripe `s` since `seen` was observed.
    /// The fence orders the key reads made since `observe` before this
    /// second look (the seqlock's read side).
    pub fn unchanged(&self, s: u32, seen: StripeSeen) -> bool {
        crate::sync::fence(Ordering::Acquire);
        self.words[s as usize].load(Ordering::Relaxed) == seen.0
    }
}

/// The tree gates and the apply gate, with their parking.
pub(crate) struct Gates {
    /// A tree gate counts its writers (holders of `A` or `X`): how many
    /// have begun and how many have ended, so that a scan can prove
    /// nothing it read changed without scanning again ([`Gates::quiet`]).
    /// A writer counts itself begun after it takes the gate and before it
    /// changes any tree of it, and ended after its last change and before
    /// it releases the gate.
    trees: Box<[PhaseLock]>,
    apply: PhaseLock,
    parking: Parking,
}

/// A tree gate found with no writer in progress, and how many had begun:
/// [`Gates::quiet`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct Quiet(u64);

/// The apply gate sleeps on its own slot, past the tree gates'.
const APPLY_SLOT: usize = TREE_GATES;

impl Gates {
    pub fn new() -> Self {
        Gates {
            trees: (0..TREE_GATES).map(|_| PhaseLock::new()).collect(),
            apply: PhaseLock::new(),
            parking: Parking::new(),
        }
    }

    /// The gate of tree `tree`.
    pub fn of_tree(tree: u32) -> u32 {
        (u64::from(tree).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 58) as u32 & (TREE_GATES as u32 - 1)
    }

    /// Enters `gate` in phase `p`; a writer (`A`, `X`) is counted as begun.
    /// Left on the same thread.
    pub fn lock_tree(&self, gate: u32, p: Phase) {
        let g = gate as usize;
        self.trees[g].lock(p, Writers::Counted, &self.parking, g);
    }

    /// Leaves `gate`; a writer (`A`, `X`) is counted as ended first.
    pub fn unlock_tree(&self, gate: u32, p: Phase) {
        let g = gate as usize;
        self.trees[g].unlock(p, Writers::Counted, &self.parking, g);
    }

    /// Taken before a scan of a tree of `gate` reads it: `Some` if no
    /// writer of the gate is between its first change and its last, so
    /// that what the scan reads is the trees as every writer so far left
    /// them. Then [`Gates::still_quiet`] tells, at validation, whether a
    /// writer has begun since; if none has, the scan read one unchanged
    /// state from this call until then, and needs no second scan.
    /// (Why equal sums mean no writer in progress: `phase::balanced`.)
    pub fn quiet(&self, gate: u32) -> Option<Quiet> {
        let (ended, begun) = self.trees[gate as usize].writers();
        (ended == begun).then_some(Quiet(begun))
    }

    /// Whether no writer of `gate` has begun since `q` was taken. Called
    /// holding the gate in `B` or `X` (validation), so that no writer is
    /// in progress now and every one that ended is visible; or without it
    /// for a transaction of scans alone (`occ::only_settled_scans`).
    pub fn still_quiet(&self, gate: u32, q: Quiet) -> bool {
        self.trees[gate as usize].writers_begun() == q.0
    }

    /// Enters the apply gate in phase `p` (committers `A`, the checkpoint
    /// `B`); left on the same thread.
    pub fn lock_apply(&self, p: Phase) {
        self.apply
            .lock(p, Writers::Uncounted, &self.parking, APPLY_SLOT);
    }

    pub fn unlock_apply(&self, p: Phase) {
        self.apply
            .unlock(p, Writers::Uncounted, &self.parking, APPLY_SLOT);
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn a_stripe_excludes_and_its_version_moves_on_every_release() {
        let k = KeyLocks::new();
        let seen = k.observe(7).expect("free");
        k.lock(7);
        assert_eq!(k.observe(7), None, "a held stripe cannot be observed");
        assert!(!k.unchanged(7, seen));
        k.unlock(7);
        assert!(!k.unchanged(7, seen), "lock + unlock must change the word");
        let again = k.observe(7).expect("free again");
        assert!(k.unchanged(7, again));
    }

    #[test]
    fn stripe_waiters_sleep_and_are_woken() {
        let k = Arc::new(KeyLocks::new());
        let inside = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (k, inside) = (k.clone(), inside.clone());
                std::thread::spawn(move || {
                    for _ in 0..2000 {
                        k.lock(3);
                        assert_eq!(inside.fetch_add(1, Ordering::Relaxed), 0);
                        if inside.load(Ordering::Relaxed) % 7 == 0 {
                            std::thread::yield_now();
                        }
                        inside.fetch_sub(1, Ordering::Relaxed);
                        k.unlock(3);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert!(k.observe(3).is_some());
    }

    #[test]
    fn phases_never_overlap_and_both_make_progress() {
        let g = Arc::new(Gates::new());
        let held = Arc::new([
            AtomicUsize::new(0),
            AtomicUsize::new(0),
            AtomicUsize::new(0),
        ]);
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let (g, held) = (g.clone(), held.clone());
                let p = [Phase::A, Phase::A, Phase::B, Phase::X][i % 4];
                std::thread::spawn(move || {
                    let me = p as usize;
                    for _ in 0..2000 {
                        g.lock_tree(5, p);
                        let before = held[me].fetch_add(1, Ordering::SeqCst);
                        assert!(p != Phase::X || before == 0, "two X holders");
                        for (other, n) in held.iter().enumerate() {
                            if other != me {
                                assert_eq!(n.load(Ordering::SeqCst), 0, "{p:?} overlaps {other}");
                            }
                        }
                        held[me].fetch_sub(1, Ordering::SeqCst);
                        g.unlock_tree(5, p);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
    }

    /// A writer kept out by a scan validator's `B` is not a writer that
    /// began: the validator's `still_quiet` holds until the writer gets in
    /// (counting a writer that backs out as begun would make each such
    /// validator scan again).
    #[test]
    fn a_writer_waiting_for_a_validator_leaves_its_scan_quiet() {
        let g = Arc::new(Gates::new());
        let q = g.quiet(2).expect("no writer yet");
        g.lock_tree(2, Phase::B);
        let writer = {
            let g = g.clone();
            std::thread::spawn(move || {
                g.lock_tree(2, Phase::A);
                g.unlock_tree(2, Phase::A);
            })
        };
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(g.still_quiet(2, q), "a waiting writer counted as begun");
        assert!(!writer.is_finished(), "a writer got in past B");
        g.unlock_tree(2, Phase::B);
        writer.join().unwrap();
        assert!(
            !g.still_quiet(2, q),
            "the writer that got in was not counted"
        );
        assert!(
            g.quiet(2).is_some(),
            "the writer that left was not counted out"
        );
    }

    /// `A` holders on many threads (so many shards) and a `B` newcomer: the
    /// `B` waits for every one of them, whichever shard counted it.
    #[test]
    fn a_validator_waits_for_writers_in_every_shard() {
        let g = Arc::new(Gates::new());
        let (tx, rx) = std::sync::mpsc::channel();
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        let go_rx = Arc::new(std::sync::Mutex::new(go_rx));
        let writers: Vec<_> = (0..2 * A_SHARDS)
            .map(|_| {
                let (g, tx, go_rx) = (g.clone(), tx.clone(), go_rx.clone());
                std::thread::spawn(move || {
                    g.lock_apply(Phase::A);
                    tx.send(()).unwrap();
                    go_rx.lock().unwrap().recv().unwrap();
                    g.unlock_apply(Phase::A);
                })
            })
            .collect();
        for _ in &writers {
            rx.recv().unwrap();
        }
        let checkpoint = {
            let g = g.clone();
            std::thread::spawn(move || {
                g.lock_apply(Phase::B);
                g.unlock_apply(Phase::B);
            })
        };
        for _ in 1..writers.len() {
            go_tx.send(()).unwrap();
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(!checkpoint.is_finished(), "B got in with an A holder left");
        go_tx.send(()).unwrap();
        checkpoint.join().unwrap();
        for w in writers {
            w.join().unwrap();
        }
    }

    #[test]
    fn stripes_and_gates_spread() {
        let mut hit = vec![0u32; KEY_STRIPES];
        for i in 0..100_000u32 {
            hit[KeyLocks::stripe(1, &i.to_be_bytes()) as usize] += 1;
        }
        let max = *hit.iter().max().unwrap();
        assert!(max < 60, "a stripe got {max} of 100k keys (mean 24)");
        let gates: std::collections::HashSet<u32> = (1..200u32).map(Gates::of_tree).collect();
        assert!(gates.len() > TREE_GATES / 2);
    }
    /// A pool of `MIN_POOL_PAGES` over twice as many pages written out:
    /// the first page that is not resident, for a loader to read.
    fn pool_with_an_evicted_page() -> (Arc<rime_bufmgr::BufferManager>, u64, tempfile::TempDir) {
        use rime_bufmgr::{BufferManager, Config, MIN_POOL_PAGES, PAGE_SIZE, io};
        let dir = tempfile::TempDir::new().unwrap();
        let file = io::open_block_file(&dir.path().join("pages"), io::IoBackend::Auto).unwrap();
        let config = Config {
            pool_bytes: MIN_POOL_PAGES * PAGE_SIZE,
            max_bytes: 1 << 32,
            ..Config::default()
        };
        let bm = Arc::new(BufferManager::open(file, config).unwrap());
        let pids: Vec<u64> = (0..2 * MIN_POOL_PAGES)
            .map(|_| bm.alloc().unwrap().pid())
            .collect();
        bm.flush_dirty().unwrap();
        let evicted = pids.into_iter().find(|&p| !bm.is_resident(p)).unwrap();
        (bm, evicted, dir)
    }

    /// Regression (a hang of the faas `executors` test in CI): one
    /// executor's commit held a tree's gate and waited for a page that
    /// another executor's loader was reading; that executor waited for the
    /// gate, and only its own poll could complete the read. A thread
    /// parked on a stripe or a gate now reaps its loader's reads first
    /// (`rime_bufmgr::reap_while_blocked`).
    fn a_lock_waiter_completes_its_loaders_read(
        hold: impl FnOnce() + Send + 'static,
        release: impl FnOnce() + Send + 'static,
        block: impl FnOnce() + Send + 'static,
    ) {
        use std::sync::mpsc::channel;
        let (bm, evicted, _dir) = pool_with_an_evicted_page();
        let (held_tx, held_rx) = channel();
        let (requested_tx, requested_rx) = channel();
        let (done_tx, done_rx) = channel();
        let holder = {
            let (bm, done_tx) = (bm.clone(), done_tx.clone());
            std::thread::spawn(move || {
                hold();
                held_tx.send(()).unwrap();
                requested_rx.recv().unwrap();
                drop(bm.shared(evicted).unwrap());
                release();
                done_tx.send("holder").unwrap();
            })
        };
        let owner = std::thread::spawn(move || {
            let mut loader = rime_bufmgr::Loader::owned(&bm);
            assert!(
                loader.uses_ring(),
                "the test needs io_uring: without it a read is synchronous"
            );
            held_rx.recv().unwrap();
            loader.request(evicted, 1);
            requested_tx.send(()).unwrap();
            block();
            while loader.pending() > 0 {
                loader.poll(true, |_, r| r.unwrap());
            }
            done_tx.send("owner").unwrap();
        });
        for _ in 0..2 {
            done_rx
                .recv_timeout(std::time::Duration::from_secs(30))
                .expect("deadlock: a lock waiter did not complete its read");
        }
        holder.join().unwrap();
        owner.join().unwrap();
    }

    #[test]
    fn a_thread_parked_on_a_stripe_completes_its_loaders_read_that_the_holder_waits_for() {
        let k = Arc::new(KeyLocks::new());
        let (k1, k2, k3) = (k.clone(), k.clone(), k);
        a_lock_waiter_completes_its_loaders_read(
            move || k1.lock(5),
            move || k2.unlock(5),
            move || {
                k3.lock(5);
                k3.unlock(5);
            },
        );
    }

    #[test]
    fn a_thread_parked_on_a_gate_completes_its_loaders_read_that_the_holder_waits_for() {
        let g = Arc::new(Gates::new());
        let (g1, g2, g3) = (g.clone(), g.clone(), g);
        a_lock_waiter_completes_its_loaders_read(
            move || g1.lock_tree(1, Phase::B),
            move || g2.unlock_tree(1, Phase::B),
            move || {
                g3.lock_tree(1, Phase::A);
                g3.unlock_tree(1, Phase::A);
            },
        );
    }
}
