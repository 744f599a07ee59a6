//! [`PhaseLock`]: a lock with two shared modes that exclude each other,
//! whose common mode (`A`: every committer takes it, at the apply gate and
//! at the gate of each tree it writes) writes no line another core writes.
//!
//! Every commit takes two of these in `A`. When each `A` entry and exit
//! was a read-modify-write of the lock's one word, two committers on two
//! cores passed that line (and the writers' begun/ended counts beside it)
//! back and forth eight times per commit: with no key in common (and in
//! separate leaves), 32 `NoSync` committers on two cores did 0.92–0.95×
//! what one did (`db_commit`). Now an `A`
//! holder counts itself in its own thread's shard and only *reads* the
//! word, which changes when a `B` or `X` holder comes or goes (scan
//! validators, the checkpoint, `drop_tree`).
//!
//! The price is on the rare side: a `B` or `X` holder, once registered in
//! the word, waits until the `A` holders already in have left, which it
//! learns by summing [`A_SHARDS`] shards.

use super::{Parking, spin};
use crate::sync::{AtomicU64, Ordering, fence};

/// The modes of a [`PhaseLock`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Phase {
    /// Shared with other `A` holders (writers of a tree; committers at the
    /// apply gate).
    A,
    /// Shared with other `B` holders (scan validators of a tree; the
    /// checkpoint at the apply gate).
    B,
    /// Alone (a committer that both writes and scans a tree; `drop_tree`).
    X,
}

/// Shards the `A` holders of one lock count themselves in. A thread keeps
/// one shard for its life (taken round-robin), so with up to this many
/// threads committing, no two share a line; more share without harm
/// (two on one core cost nothing; two on two cores, what one word cost
/// everyone before). Eight × 128 bytes per lock, 65 locks: 65 KiB.
#[cfg(not(loom))]
pub(crate) const A_SHARDS: usize = 8;
/// Two, so the models sum across shards.
#[cfg(loom)]
pub(crate) const A_SHARDS: usize = 2;

/// One shard's counts, all of them only growing. `entered − left`,
/// summed over the shards, are the `A` holders in now (some perhaps about
/// to back out): what a `B` or `X` newcomer waits on. `begun` and `ended`
/// count the writers of a tree gate, `A` and `X` holders that got in
/// (a back-out is not a writer): what a scan's validation looks at
/// ([`PhaseLock::writers`]). 128-byte aligned: the adjacent-line
/// prefetcher pairs lines.
#[repr(align(128))]
struct AShard {
    entered: AtomicU64,
    left: AtomicU64,
    begun: AtomicU64,
    ended: AtomicU64,
}

/// Sums `count` over `shards`, with acquire loads.
fn sum(shards: &[AShard], count: fn(&AShard) -> &AtomicU64) -> u64 {
    shards.iter().fold(0u64, |n, s| {
        n.wrapping_add(count(s).load(Ordering::Acquire))
    })
}

/// Two monotone counts read as "none in progress": `first` (the later
/// count: `left`, `ended`) summed before `second`, so that everyone counted
/// in `first` is counted in `second` too (each bumps `second` before
/// `first`, and the acquire loads carry that order); equal sums then mean
/// the same ones, all done.
fn balanced(
    shards: &[AShard],
    first: fn(&AShard) -> &AtomicU64,
    second: fn(&AShard) -> &AtomicU64,
) -> (u64, u64) {
    let done = sum(shards, first);
    (done, sum(shards, second))
}

/// A lock whose holders are all in one phase: any number of `A` holders, or
/// any number of `B` holders, or one `X` holder. `A` holders are counted in
/// the shards; the rest in the word:
///
/// ```text
///  63                      8  7   6   5    4    3    2    1    0
/// +-------------------------+------+----+----+----+----+----+----+
/// |         B count         |  0   | WX |  X | S  | WB | WA |  0 |
/// +-------------------------+------+----+----+----+----+----+----+
///   X: held (or about to be, once the A holders left) by its one X holder
///   WA / WB / WX: a holder-to-be of A / B / X waits (fairness, below)
///   S: someone sleeps on this lock's parking slot
/// ```
///
/// Entering `A` (no write to the word):
/// 1. If the word refuses `A` (a `B` or `X` holder, or one waiting), wait.
/// 2. Count in: `entered += 1` in this thread's shard.
/// 3. Look at the word again (after a `SeqCst` fence). Still admitted: in.
///    Else count out (`left += 1`, waking a sleeper) and go to 1.
///
/// Entering `B` or `X`: register in the word by CAS (`B` count + 1, or
/// `X`) when admitted; then (after a `SeqCst` fence) wait until the
/// shards' sums show no `A` holder. Step 3 and this wait are a Dekker
/// pair: of an `A` and a `B` entering together, at least one sees the
/// other, and backs out or waits.
///
/// Leaving `A`: `left += 1`; if S is set, wake the slot (a `B` or `X`
/// may sleep until the `A` holders have left). Leaving `B` or `X`: the
/// last of them out clears S and wakes the slot.
///
/// Fairness: while another mode waits, a shared phase that holds the lock
/// admits no newcomers, so it drains and the waiting mode goes next. `A`
/// newcomers are refused while a `B` or `X` waits even if no `A` holds
/// the lock (the word cannot tell without summing the shards).
pub(crate) struct PhaseLock {
    word: AtomicU64,
    a: Box<[AShard]>,
}

/// Whether a [`PhaseLock`]'s `A` and `X` holders are counted as writers
/// (a tree gate's are; the apply gate's need not be).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Writers {
    Counted,
    Uncounted,
}

const WA: u64 = 1 << 1;
const WB: u64 = 1 << 2;
const SLEEP: u64 = 1 << 3;
const X: u64 = 1 << 4;
const WX: u64 = 1 << 5;
const B_ONE: u64 = 1 << 8;

fn b_count(w: u64) -> u64 {
    w >> 8
}

/// A `B` or `X` holder is in the word.
fn held(w: u64) -> bool {
    b_count(w) > 0 || w & X != 0
}

impl Phase {
    fn waiting_bit(self) -> u64 {
        match self {
            Phase::A => WA,
            Phase::B => WB,
            Phase::X => WX,
        }
    }
}

/// This thread's shard. Which shard a thread uses matters to speed only:
/// every count is read as a sum, so a lock may even be left on another
/// thread than it was taken on.
#[cfg(not(loom))]
fn my_shard() -> usize {
    use std::sync::atomic::AtomicUsize;
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local!(static MINE: usize = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % A_SHARDS);
    MINE.with(|m| *m)
}

/// Under loom, the model thread's number (0 for the main thread, then in
/// spawn order: the same in every run of a model, as loom needs; its
/// `Hash` also covers the run).
#[cfg(loom)]
fn my_shard() -> usize {
    let id = format!("{:?}", loom::thread::current().id());
    let n: usize = id
        .trim_start_matches("ThreadId(")
        .trim_end_matches(')')
        .parse()
        .expect("loom's ThreadId prints as ThreadId(n)");
    n % A_SHARDS
}

impl PhaseLock {
    pub fn new() -> Self {
        PhaseLock {
            word: AtomicU64::new(0),
            a: (0..A_SHARDS)
                .map(|_| AShard {
                    entered: AtomicU64::new(0),
                    left: AtomicU64::new(0),
                    begun: AtomicU64::new(0),
                    ended: AtomicU64::new(0),
                })
                .collect(),
        }
    }

    /// May a newcomer of `p` enter, given word `w`? (`A` and `X` newcomers
    /// then also wait for the `A` holders counted in the shards.)
    fn admits(p: Phase, w: u64) -> bool {
        match p {
            Phase::A => !held(w) && w & (WB | WX) == 0,
            Phase::B => w & X == 0 && !(b_count(w) > 0 && w & (WA | WX) != 0),
            Phase::X => !held(w),
        }
    }

    /// The writers counted so far, as `(ended, begun)` sums ([`balanced`]):
    /// equal, no writer is between its first change and its last.
    pub fn writers(&self) -> (u64, u64) {
        balanced(&self.a, |s| &s.ended, |s| &s.begun)
    }

    /// The writers that have begun so far.
    pub fn writers_begun(&self) -> u64 {
        sum(&self.a, |s| &s.begun)
    }

    /// Some `A` holder is in (or backing out).
    fn a_held(&self) -> bool {
        let (left, entered) = balanced(&self.a, |s| &s.left, |s| &s.entered);
        left != entered
    }

    /// Counts an `A` holder out; wakes the slot if someone may sleep until
    /// the holders have left.
    fn count_out(&self, shard: usize, parking: &Parking, slot: usize) {
        self.a[shard].left.fetch_add(1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        if self.word.load(Ordering::Relaxed) & SLEEP != 0 {
            parking.unpark(slot);
        }
    }

    /// Enters phase `p`, waiting (parked on `parking`, slot `slot`) while
    /// another mode holds the lock or waits for it. Left by
    /// [`PhaseLock::unlock`] on the same thread (the shard is the thread's).
    pub(super) fn lock(&self, p: Phase, w: Writers, parking: &Parking, slot: usize) {
        let shard = my_shard();
        match p {
            Phase::A => self.lock_a(shard, parking, slot),
            Phase::B | Phase::X => {
                self.register(p, parking, slot);
                self.wait_for_a_to_leave(parking, slot);
            }
        }
        if p != Phase::B && w == Writers::Counted {
            // Before the writer's first change: a reader that sees any of
            // its changes (through the page latch that published it) sees
            // this count too.
            self.a[shard].begun.fetch_add(1, Ordering::AcqRel);
        }
    }

    pub(super) fn unlock(&self, p: Phase, w: Writers, parking: &Parking, slot: usize) {
        let shard = my_shard();
        if p != Phase::B && w == Writers::Counted {
            // After the writer's last change: a reader that sees this count
            // sees all of its changes.
            self.a[shard].ended.fetch_add(1, Ordering::Release);
        }
        match p {
            Phase::A => self.count_out(shard, parking, slot),
            Phase::B | Phase::X => self.deregister(p, parking, slot),
        }
    }

    /// Steps 1–3 of entering `A` (type doc).
    fn lock_a(&self, shard: usize, parking: &Parking, slot: usize) {
        loop {
            // 1.
            if !self.await_admission(Phase::A, parking, slot) {
                continue;
            }
            // 2.
            self.a[shard].entered.fetch_add(1, Ordering::SeqCst);
            fence(Ordering::SeqCst);
            // 3.
            let w = self.word.load(Ordering::Relaxed);
            if Self::admits(Phase::A, w) {
                if w & WA != 0 {
                    // Admitted, so every A waiting would be now: any still
                    // refused later sets it again.
                    self.word.fetch_and(!WA, Ordering::Relaxed);
                }
                return;
            }
            self.count_out(shard, parking, slot);
        }
    }

    /// One look at the word for a newcomer of `p`: true if admitted now;
    /// else publishes the waiting bit (and, after spinning, S and sleeps).
    fn await_admission(&self, p: Phase, parking: &Parking, slot: usize) -> bool {
        let mut round = 0;
        loop {
            let cur = self.word.load(Ordering::Relaxed);
            if Self::admits(p, cur) {
                return true;
            }
            let want = cur | p.waiting_bit() | if spin(&mut round) { SLEEP } else { 0 };
            if want != cur
                && self
                    .word
                    .compare_exchange_weak(cur, want, Ordering::Relaxed, Ordering::Relaxed)
                    .is_err()
            {
                continue;
            }
            if want & SLEEP != 0 {
                // Admission is refused only while a B or X holds the lock
                // or waits for it, and the last of them out clears S and
                // wakes the slot.
                parking.park(slot, || {
                    let w = self.word.load(Ordering::Relaxed);
                    w & SLEEP != 0 && !Self::admits(p, w)
                });
                return false;
            }
        }
    }

    /// A `B` or `X` newcomer enters the word (its waiting bit cleared: any
    /// others of its mode still waiting are admitted with it, or set the
    /// bit again).
    fn register(&self, p: Phase, parking: &Parking, slot: usize) {
        loop {
            let cur = self.word.load(Ordering::Relaxed);
            if !Self::admits(p, cur) {
                self.await_admission(p, parking, slot);
                continue;
            }
            let new = match p {
                Phase::B => (cur & !WB) + B_ONE,
                _ => (cur & !WX) | X,
            };
            if self
                .word
                .compare_exchange_weak(cur, new, Ordering::SeqCst, Ordering::Relaxed)
                .is_ok()
            {
                return;
            }
        }
    }

    /// After registering: waits until the `A` holders counted before have
    /// left (none can enter now: they see the registration, or back out).
    fn wait_for_a_to_leave(&self, parking: &Parking, slot: usize) {
        fence(Ordering::SeqCst);
        let mut round = 0;
        while self.a_held() {
            if !spin(&mut round) {
                continue;
            }
            // S before the last look: a leaving A that counts out after it
            // sees S and wakes the slot.
            self.word.fetch_or(SLEEP, Ordering::SeqCst);
            fence(Ordering::SeqCst);
            parking.park(slot, || self.a_held());
        }
    }

    fn deregister(&self, p: Phase, parking: &Parking, slot: usize) {
        let mut cur = self.word.load(Ordering::Relaxed);
        loop {
            let mut new = match p {
                Phase::B => {
                    debug_assert!(b_count(cur) > 0, "leaving B, which is not held");
                    cur - B_ONE
                }
                _ => {
                    debug_assert!(cur & X != 0, "leaving X, which is not held");
                    cur & !X
                }
            };
            // The last holder out wakes every sleeper: they re-decide.
            let last = !held(new);
            if last {
                new &= !SLEEP;
            }
            match self
                .word
                .compare_exchange_weak(cur, new, Ordering::Release, Ordering::Relaxed)
            {
                Ok(_) => {
                    if last && cur & SLEEP != 0 {
                        parking.unpark(slot);
                    }
                    return;
                }
                Err(actual) => cur = actual,
            }
        }
    }
}
