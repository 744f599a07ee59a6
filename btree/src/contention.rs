//! Contention splits: a leaf that writers of different keys keep taking
//! from each other splits between those keys, however full it is (the
//! policy of LeanStore: Alhomssi and Leis, "Contention and Space
//! Management in B-Trees", CIDR 2021).
//!
//! Keys that are each written by one thread but share a leaf are
//! contended in all but name: every write takes the leaf's exclusive
//! latch and dirties its lines, so two cores writing two such keys pass
//! the leaf back and forth, and each waits while the other holds it.
//! `db_commit`'s committers each add to their own counter, and the 32
//! counters shared one leaf: 32 committers on two cores did 0.79–0.80×
//! what one did; with the counters in separate leaves, 1.01–1.04×.
//!
//! What is tracked, per leaf, in a small table the tree keeps in memory
//! (nothing on disk; a slot is shared by the leaves hashing to it and
//! taken over by the last one noted):
//!
//! ```text
//!  63                 32 31      24 23      16 15              0
//! +---------------------+----------+----------+-----------------+
//! |  page id (low 32)   |  writes  | contended|  last position  |
//! +---------------------+----------+----------+-----------------+
//! ```
//!
//! One write in [`SAMPLE`] notes its leaf (so most writes write nothing
//! shared): whether its latch was contended (a read of its descent waited
//! for another thread's exclusive latch, or the descent started over) and
//! its position. Every [`PERIOD`] notes the slot decides: if at least
//! [`CONTENDED_SHARE_PCT`] % of them were contended and this write's
//! position differs from the last one noted, the leaf splits between the
//! two positions. The same position (one hot key) never splits: a split
//! cannot separate a key from itself. LeanStore samples one write in 128
//! and splits at 1 %; a period here is shorter (a decision every ~128
//! writes of a leaf) and asks for 2 contended notes in 16. One thread
//! alone never waits for a latch but the buffer pool's (a write-back), so
//! single-threaded loads keep their fill.

use rime_bufmgr::PageId;
use std::sync::atomic::{AtomicU64, Ordering};

/// Slots of the table: 256 × 8 bytes per tree. Only leaves written often
/// enough to fill [`PERIOD`] notes before another leaf takes their slot
/// can be split: in a large tree written uniformly, none.
const SLOTS: usize = 256;

/// Notes per decision.
pub(crate) const PERIOD: u32 = 16;

/// Share of a period's notes that must be contended for a split, in %:
/// 2 of 16.
pub(crate) const CONTENDED_SHARE_PCT: u32 = 12;

/// One write in this many is noted.
pub(crate) const SAMPLE: u32 = 8;

const _: () = assert!(PERIOD < 256 && SLOTS.is_power_of_two());

/// The per-tree table (module doc).
pub(crate) struct Contention {
    slots: Box<[AtomicU64]>,
    /// Contention splits made (`BTree::contention_splits`).
    splits: AtomicU64,
}

/// A slot's fields.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Entry {
    tag: u32,
    writes: u32,
    contended: u32,
    last_pos: u16,
}

impl Entry {
    fn decode(w: u64) -> Entry {
        Entry {
            tag: (w >> 32) as u32,
            writes: ((w >> 24) & 0xff) as u32,
            contended: ((w >> 16) & 0xff) as u32,
            last_pos: w as u16,
        }
    }

    fn encode(self) -> u64 {
        u64::from(self.tag) << 32
            | u64::from(self.writes) << 24
            | u64::from(self.contended) << 16
            | u64::from(self.last_pos)
    }
}

impl Contention {
    pub fn new() -> Self {
        Contention {
            slots: (0..SLOTS).map(|_| AtomicU64::new(0)).collect(),
            splits: AtomicU64::new(0),
        }
    }

    /// Counts a contention split made.
    pub fn split_made(&self) {
        self.splits.fetch_add(1, Ordering::Relaxed);
    }

    /// Contention splits made so far.
    pub fn splits(&self) -> u64 {
        self.splits.load(Ordering::Relaxed)
    }

    /// Notes a write at slot `pos` of leaf `pid` (`contended`: its latch
    /// was). Returns where to cut the leaf if it should split: entries
    /// `..left_end` go left. Racy by design (a load and a store): a lost
    /// note delays a decision, nothing else.
    pub fn note(&self, pid: PageId, pos: usize, contended: bool) -> Option<usize> {
        if !sampled() {
            return None;
        }
        let slot = &self.slots[(pid.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 56) as usize % SLOTS];
        let (entry, cut) = Self::step(
            Entry::decode(slot.load(Ordering::Relaxed)),
            pid,
            pos,
            contended,
        );
        slot.store(entry.encode(), Ordering::Relaxed);
        cut
    }

    /// The slot after a note, and the cut if the period ends in a split.
    fn step(e: Entry, pid: PageId, pos: usize, contended: bool) -> (Entry, Option<usize>) {
        let pos = pos.min(usize::from(u16::MAX)) as u16;
        let mut e = if e.tag == pid as u32 {
            e
        } else {
            Entry {
                tag: pid as u32,
                writes: 0,
                contended: 0,
                last_pos: pos,
            }
        };
        e.writes += 1;
        e.contended += u32::from(contended);
        let mut cut = None;
        if e.writes >= PERIOD {
            if e.contended * 100 >= e.writes * CONTENDED_SHARE_PCT && e.last_pos != pos {
                let (lo, hi) = (e.last_pos.min(pos), e.last_pos.max(pos));
                // Between the two: `lo` ends the left half, `hi` starts
                // the right one, the entries between split evenly.
                cut = Some(usize::from(lo) + usize::from(hi - lo).div_ceil(2));
            }
            e.writes = 0;
            e.contended = 0;
        }
        e.last_pos = pos;
        (e, cut)
    }
}

/// One call in [`SAMPLE`] on this thread.
fn sampled() -> bool {
    use std::cell::Cell;
    thread_local!(static TICK: Cell<u32> = const { Cell::new(0) });
    TICK.with(|t| {
        let n = t.get().wrapping_add(1);
        t.set(n);
        n % SAMPLE == 0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(notes: &[(u64, usize, bool)]) -> Vec<Option<usize>> {
        let mut e = Entry::decode(0);
        notes
            .iter()
            .map(|&(pid, pos, c)| {
                let (next, cut) = Contention::step(e, pid, pos, c);
                assert_eq!(Entry::decode(next.encode()), next, "fields round-trip");
                e = next;
                cut
            })
            .collect()
    }

    #[test]
    fn two_keys_taking_a_leaf_from_each_other_split_it_between_them() {
        let notes: Vec<_> = (0..PERIOD as usize)
            .map(|i| (7, [2, 9][i % 2], true))
            .collect();
        let cuts = run(&notes);
        assert!(cuts[..PERIOD as usize - 1].iter().all(Option::is_none));
        let cut = cuts[PERIOD as usize - 1].expect("a split at the period's end");
        assert!(
            (3..=9).contains(&cut),
            "cut {cut} is not between slots 2 and 9"
        );
    }

    #[test]
    fn one_hot_key_never_splits_its_leaf() {
        let notes: Vec<_> = (0..4 * PERIOD as usize).map(|_| (7, 4, true)).collect();
        assert!(run(&notes).iter().all(Option::is_none));
    }

    #[test]
    fn a_leaf_written_mostly_without_contention_does_not_split() {
        let notes: Vec<_> = (0..4 * PERIOD as usize)
            .map(|i| (7, i % 5, i % PERIOD as usize == 3))
            .collect();
        assert!(run(&notes).iter().all(Option::is_none));
    }

    #[test]
    fn another_leaf_taking_the_slot_starts_its_count_over() {
        let mut notes: Vec<_> = (0..PERIOD as usize - 1).map(|i| (7, i % 3, true)).collect();
        notes.push((8, 1, true));
        notes.push((7, 2, true));
        assert!(run(&notes).iter().all(Option::is_none));
    }
}
