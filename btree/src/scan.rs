//! Range scans, prefix scans, the iterator, and the size estimate.
//!
//! Leaves have no sibling pointers (they would need latching across
//! leaves); a scan moves between leaves through the fences instead, as in
//! LeanStore: after the last entry of a leaf, the next leaf is the one
//! holding the smallest key above the upper fence (forward), or the largest
//! key at or below the lower fence (backward). One leaf is latched (shared)
//! at a time, while the callback runs over its entries; no latch is held
//! between leaves, so a scan is not a snapshot: it sees each key at most
//! once, in order, with the value it had when its leaf was visited.

use crate::error::OrCorrupt;
use crate::node::Node;
use crate::{BTree, TreeError, MAX_KEY_LEN};
use std::collections::VecDeque;
use std::ops::{Bound, ControlFlow, RangeBounds};

/// Scan order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Forward,
    Backward,
}

/// A key greater than every valid key (one byte longer than the limit),
/// used to descend to the last leaf.
static PAST_END: [u8; MAX_KEY_LEN + 1] = [0xFF; MAX_KEY_LEN + 1];

type OwnedBound = Bound<Vec<u8>>;

fn owned(b: Bound<&[u8]>) -> OwnedBound {
    match b {
        Bound::Included(k) => Bound::Included(k.to_vec()),
        Bound::Excluded(k) => Bound::Excluded(k.to_vec()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

/// Whether `key` is still inside the far end `end` of a scan.
fn before_end(key: &[u8], end: &OwnedBound, dir: Direction) -> bool {
    match (end, dir) {
        (Bound::Unbounded, _) => true,
        (Bound::Included(e), Direction::Forward) => key <= &e[..],
        (Bound::Excluded(e), Direction::Forward) => key < &e[..],
        (Bound::Included(e), Direction::Backward) => key >= &e[..],
        (Bound::Excluded(e), Direction::Backward) => key > &e[..],
    }
}

/// What a scan does after one leaf.
enum After {
    Stop,
    Next(OwnedBound),
}

impl BTree {
    /// Calls `f(key, value)` for every entry in `range`, in `dir` order,
    /// until `f` breaks. `f` runs under a shared leaf latch and must not
    /// write to this tree. Ranges: `..`, or `(Bound<&[u8]>, Bound<&[u8]>)`.
    pub fn scan(
        &self,
        range: impl RangeBounds<[u8]>,
        dir: Direction,
        mut f: impl FnMut(&[u8], &[u8]) -> ControlFlow<()>,
    ) -> Result<(), TreeError> {
        let (start, end) = match dir {
            Direction::Forward => (owned(range.start_bound()), owned(range.end_bound())),
            Direction::Backward => (owned(range.end_bound()), owned(range.start_bound())),
        };
        let mut pos = start;
        loop {
            match self.visit_leaf(&pos, &end, dir, &mut f)? {
                After::Stop => return Ok(()),
                After::Next(next) => pos = next,
            }
        }
    }

    /// Scans the keys starting with `prefix`.
    pub fn scan_prefix(
        &self,
        prefix: &[u8],
        dir: Direction,
        f: impl FnMut(&[u8], &[u8]) -> ControlFlow<()>,
    ) -> Result<(), TreeError> {
        let end = prefix_end(prefix);
        let upper = match &end {
            Some(e) => Bound::Excluded(&e[..]),
            None => Bound::Unbounded,
        };
        self.scan((Bound::Included(prefix), upper), dir, f)
    }

    /// An iterator over `range` in `dir` order, yielding owned entries. It
    /// copies one leaf's worth of entries at a time and holds no latch
    /// between calls.
    pub fn iter(&self, range: impl RangeBounds<[u8]>, dir: Direction) -> Iter<'_> {
        let (start, end) = match dir {
            Direction::Forward => (owned(range.start_bound()), owned(range.end_bound())),
            Direction::Backward => (owned(range.end_bound()), owned(range.start_bound())),
        };
        Iter {
            tree: self,
            dir,
            pos: Some(start),
            end,
            buf: VecDeque::new(),
        }
    }

    /// A cheap estimate of the number of entries (no latches; exact for a
    /// single leaf, a fan-out product along the leftmost path otherwise).
    pub fn len_estimate(&self) -> Result<u64, TreeError> {
        self.estimate()
    }

    /// Runs the scan over the leaf holding the first key at `pos`.
    fn visit_leaf(
        &self,
        pos: &OwnedBound,
        end: &OwnedBound,
        dir: Direction,
        f: &mut impl FnMut(&[u8], &[u8]) -> ControlFlow<()>,
    ) -> Result<After, TreeError> {
        // 1. Latch the leaf shared and find the first slot to visit.
        let (probe, strict): (&[u8], bool) = match (pos, dir) {
            (Bound::Unbounded, Direction::Forward) => (&[], false),
            (Bound::Unbounded, Direction::Backward) => (&PAST_END, false),
            (Bound::Included(k), _) => (k, false),
            (Bound::Excluded(k), Direction::Forward) => (k, true),
            (Bound::Excluded(k), Direction::Backward) => (k, false),
        };
        let leaf = self.leaf_shared(probe, strict)?;
        let pid = leaf.pid();
        let view = Node(leaf.payload());
        let count = view.count().or_corrupt(pid, "count")?;
        let (at, found) = if matches!(pos, Bound::Unbounded) {
            (count, false)
        } else {
            view.search(probe).or_corrupt(pid, "slots")?
        };
        // Forward: visit [first, count); backward: visit [0, first) downwards.
        let first = match (pos, dir) {
            (Bound::Unbounded, Direction::Forward) => 0,
            (Bound::Excluded(_), Direction::Forward) => at + found as usize,
            (_, Direction::Forward) => at,
            (Bound::Included(_), Direction::Backward) => at + found as usize,
            (_, Direction::Backward) => at,
        };
        // 2. Visit the entries, stopping at the far end or when `f` breaks.
        let mut key = Vec::with_capacity(64);
        let mut visit = |i: usize| -> Result<bool, TreeError> {
            key.clear();
            view.full_key_into(i, &mut key).or_corrupt(pid, "key")?;
            if !before_end(&key, end, dir) {
                return Ok(false);
            }
            let flow = if view.is_large(i).or_corrupt(pid, "slot")? {
                let r = crate::olc::large_ref(view, i).or_corrupt(pid, "large ref")?;
                self.read_large(r, |v| f(&key, v))?
            } else {
                f(&key, view.value(i).or_corrupt(pid, "value")?)
            };
            Ok(flow.is_continue())
        };
        match dir {
            Direction::Forward => {
                for i in first..count {
                    if !visit(i)? {
                        return Ok(After::Stop);
                    }
                }
            }
            Direction::Backward => {
                for i in (0..first.min(count)).rev() {
                    if !visit(i)? {
                        return Ok(After::Stop);
                    }
                }
            }
        }
        // 3. Move on through the fence, unless it is infinite or past the end.
        let next = match dir {
            Direction::Forward if view.upper_inf() => return Ok(After::Stop),
            Direction::Backward if view.lower_inf() => return Ok(After::Stop),
            Direction::Forward => view.upper_fence().or_corrupt(pid, "fence")?,
            Direction::Backward => view.lower_fence().or_corrupt(pid, "fence")?,
        };
        let past = match (end, dir) {
            (Bound::Unbounded, _) => false,
            (Bound::Included(e) | Bound::Excluded(e), Direction::Forward) => next >= &e[..],
            (Bound::Included(e), Direction::Backward) => next < &e[..],
            (Bound::Excluded(e), Direction::Backward) => next <= &e[..],
        };
        if past {
            return Ok(After::Stop);
        }
        Ok(After::Next(match dir {
            Direction::Forward => Bound::Excluded(next.to_vec()),
            Direction::Backward => Bound::Included(next.to_vec()),
        }))
    }
}

/// The smallest key greater than every key starting with `prefix` (`None`
/// if there is none: the prefix is all 0xFF).
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xFF {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// An iterator over a key range: see [`BTree::iter`].
pub struct Iter<'t> {
    tree: &'t BTree,
    dir: Direction,
    /// Where the next leaf starts; `None` when finished.
    pos: Option<OwnedBound>,
    end: OwnedBound,
    buf: VecDeque<(Vec<u8>, Vec<u8>)>,
}

impl Iterator for Iter<'_> {
    type Item = Result<(Vec<u8>, Vec<u8>), TreeError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(entry) = self.buf.pop_front() {
                return Some(Ok(entry));
            }
            let pos = self.pos.take()?;
            let buf = &mut self.buf;
            match self
                .tree
                .visit_leaf(&pos, &self.end, self.dir, &mut |k: &[u8], v: &[u8]| {
                    buf.push_back((k.to_vec(), v.to_vec()));
                    ControlFlow::Continue(())
                }) {
                Ok(After::Stop) => {}
                Ok(After::Next(next)) => self.pos = Some(next),
                Err(e) => return Some(Err(e)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::prefix_end;

    #[test]
    fn prefix_end_increments_the_last_non_ff_byte() {
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_end(b"\xff\xff"), None);
        assert_eq!(prefix_end(b""), None);
    }
}
