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
use crate::olc::READ_AHEAD_LEAVES;
use crate::{BTree, MAX_KEY_LEN, TreeError};
use rime_bufmgr::Loader;
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

use crate::keybuf::{KeyBound, KeyBuf, key_bound};

/// The key whose leaf a scan at `pos` visits, and whether it wants the
/// leaf of the smallest key above it (`strict`).
fn probe_of(pos: &KeyBound, dir: Direction) -> (&[u8], bool) {
    match (pos, dir) {
        (Bound::Unbounded, Direction::Forward) => (&[], false),
        (Bound::Unbounded, Direction::Backward) => (&PAST_END, false),
        (Bound::Included(k), _) => (k, false),
        (Bound::Excluded(k), Direction::Forward) => (k, true),
        (Bound::Excluded(k), Direction::Backward) => (k, false),
    }
}

/// Whether `key` is still inside the far end `end` of a scan.
fn before_end(key: &[u8], end: &KeyBound, dir: Direction) -> bool {
    match (end, dir) {
        (Bound::Unbounded, _) => true,
        (Bound::Included(e), Direction::Forward) => key <= &e[..],
        (Bound::Excluded(e), Direction::Forward) => key < &e[..],
        (Bound::Included(e), Direction::Backward) => key >= &e[..],
        (Bound::Excluded(e), Direction::Backward) => key > &e[..],
    }
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
            Direction::Forward => (range.start_bound(), range.end_bound()),
            Direction::Backward => (range.end_bound(), range.start_bound()),
        };
        let (mut pos, end) = (key_bound(start)?, key_bound(end)?);
        let mut ahead = None;
        loop {
            self.read_ahead(&pos, dir, &mut ahead)?;
            if !self.visit_leaf(&mut pos, &end, dir, &mut f)? {
                return Ok(());
            }
        }
    }

    /// Read-ahead: when a node on the path to the leaf the scan visits
    /// next is not in memory, reads it and the nodes after it under the
    /// same parent (up to [`READ_AHEAD_LEAVES`]) at once, through `ahead`'s
    /// loader, and waits for them all: one device latency for the window
    /// instead of one per leaf. It waits before the scan latches anything (the loader's rule:
    /// no blocking latch on a frame this thread's loader is reading), so
    /// the callback never runs with reads in flight. A failed read is left
    /// for the visit, which reads the leaf itself and reports the error.
    fn read_ahead<'t>(
        &'t self,
        pos: &KeyBound,
        dir: Direction,
        ahead: &mut Option<Loader<'t>>,
    ) -> Result<(), TreeError> {
        let (probe, strict) = probe_of(pos, dir);
        let mut leaves = [0; READ_AHEAD_LEAVES];
        let n = self.read_ahead_window(probe, strict, dir == Direction::Forward, &mut leaves)?;
        let bm = &*self.bm;
        if n == 0 {
            return Ok(());
        }
        let loader = ahead.get_or_insert_with(|| Loader::new(bm));
        for &pid in leaves[..n].iter().filter(|&&p| !bm.is_resident(p)) {
            loader.request(pid, 1);
        }
        while loader.pending() > 0 {
            loader.poll(true, |_, _| {});
        }
        Ok(())
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
            Direction::Forward => (range.start_bound(), range.end_bound()),
            Direction::Backward => (range.end_bound(), range.start_bound()),
        };
        let (pos, end, error) = match (key_bound(start), key_bound(end)) {
            (Ok(start), Ok(end)) => (Some(start), end, None),
            (Err(e), _) | (_, Err(e)) => (None, Bound::Unbounded, Some(e)),
        };
        Iter {
            tree: self,
            dir,
            pos,
            end,
            error,
            buf: VecDeque::new(),
        }
    }

    /// A cheap estimate of the number of entries (no latches; exact for a
    /// single leaf, a fan-out product along the leftmost path otherwise).
    pub fn len_estimate(&self) -> Result<u64, TreeError> {
        self.estimate()
    }

    /// Runs the scan over the leaf holding the first key at `pos`, then
    /// moves `pos` to where the next leaf starts. Returns whether there is
    /// a next leaf to visit. (An out-parameter rather than a returned
    /// position: the position is a 513-byte stack key.)
    fn visit_leaf(
        &self,
        pos: &mut KeyBound,
        end: &KeyBound,
        dir: Direction,
        f: &mut impl FnMut(&[u8], &[u8]) -> ControlFlow<()>,
    ) -> Result<bool, TreeError> {
        // 1. Latch the leaf shared and find the first slot to visit.
        let (probe, strict) = probe_of(pos, dir);
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
        let first = match (&*pos, dir) {
            (Bound::Unbounded, Direction::Forward) => 0,
            (Bound::Excluded(_), Direction::Forward) => at + found as usize,
            (_, Direction::Forward) => at,
            (Bound::Included(_), Direction::Backward) => at + found as usize,
            (_, Direction::Backward) => at,
        };
        // 2. Visit the entries, stopping at the far end or when `f` breaks.
        let mut key = KeyBuf::new();
        let mut visit = |i: usize| -> Result<bool, TreeError> {
            let prefix = view.prefix().or_corrupt(pid, "prefix")?;
            key.set_concat(prefix, view.suffix(i).or_corrupt(pid, "key")?)
                .or_corrupt(pid, "key length")?;
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
                        return Ok(false);
                    }
                }
            }
            Direction::Backward => {
                for i in (0..first.min(count)).rev() {
                    if !visit(i)? {
                        return Ok(false);
                    }
                }
            }
        }
        // 3. Move on through the fence, unless it is infinite or past the end.
        let next = match dir {
            Direction::Forward if view.upper_inf() => return Ok(false),
            Direction::Backward if view.lower_inf() => return Ok(false),
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
            return Ok(false);
        }
        *pos = match dir {
            Direction::Forward => Bound::Excluded(
                KeyBuf::try_from_slice(next)
                    .ok()
                    .or_corrupt(pid, "fence length")?,
            ),
            Direction::Backward => Bound::Included(
                KeyBuf::try_from_slice(next)
                    .ok()
                    .or_corrupt(pid, "fence length")?,
            ),
        };
        Ok(true)
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
    pos: Option<KeyBound>,
    end: KeyBound,
    /// A bad bound, reported by the first `next`.
    error: Option<TreeError>,
    buf: VecDeque<(Vec<u8>, Vec<u8>)>,
}

impl Iterator for Iter<'_> {
    type Item = Result<(Vec<u8>, Vec<u8>), TreeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(e) = self.error.take() {
            return Some(Err(e));
        }
        loop {
            if let Some(entry) = self.buf.pop_front() {
                return Some(Ok(entry));
            }
            let mut pos = self.pos.take()?;
            let buf = &mut self.buf;
            let more =
                self.tree
                    .visit_leaf(&mut pos, &self.end, self.dir, &mut |k: &[u8], v: &[u8]| {
                        buf.push_back((k.to_vec(), v.to_vec()));
                        ControlFlow::Continue(())
                    });
            match more {
                Ok(true) => self.pos = Some(pos),
                Ok(false) => {}
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
