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
//!
//! The next leaf is usually the next child of the last leaf's parent, so a
//! scan keeps that parent (as a [`ScanHint`]: its page, its SMO epoch, the
//! last leaf and its index) and steps through it rather than descending
//! from the root for every leaf. The protocol, per leaf:
//!
//! 1. If there is a hint and its parent's SMO epoch (`epoch`) still reads
//!    what it read before the parent's version was first taken, read the
//!    parent optimistically. If it still holds the last leaf at the hinted
//!    index and has a child after it (backward: before it), take that
//!    child with `read_child` (which validates the parent after taking the
//!    child's version), then re-read the epoch: unchanged, the parent was
//!    the same live node throughout (no split, merge or free touched it, so
//!    its separators are those that bounded the last leaf), and the child
//!    is the leaf after (before) the last one. Latch it shared; the hint
//!    moves to its index. A changed epoch after the read restarts the
//!    section, which then takes step 2. Before taking the child, ask the
//!    CPU for the state word and first lines of the child two further on
//!    (`prefetch_following`): leaves lie anywhere in the pool, and this
//!    way each step's miss overlaps the visits before it instead of
//!    following them.
//! 2. Otherwise (no hint, epoch moved, parent exhausted): descend from the
//!    root to the leaf of the position (`strict` forward: the smallest key
//!    above the last upper fence), reading each node's epoch before taking
//!    its version; the leaf's parent becomes the hint. At each node, the
//!    two children after (before) the one taken are prefetched as in 1.
//! 3. Read-ahead: the first run of steps 1-2 does not wait for reads. If a
//!    child on the way is not in memory, it and up to
//!    [`READ_AHEAD_LEAVES`]` - 1` siblings after it (backward: before it)
//!    under the same node are read at once through the scan's loader, and
//!    waited for before anything is latched; then steps 1-2 run again,
//!    blocking.
//! 4. Find the first slot at the position in the latched leaf: its first
//!    (backward: last) entry when the position is the fence the leaf was
//!    entered through, else by a search.
//! 5. Hand the entries to the callback, stopping at the far end of the
//!    range or when it breaks.
//! 6. Unlatch; the position becomes the leaf's upper fence (exclusive;
//!    backward: its lower fence, inclusive) unless that is infinite or
//!    past the end of the range; go to 1.
//!
//! Why the epoch and not the parent's bytes: between two steps the parent
//! may be merged away and its page reused by another tree, or by a large
//! value whose bytes copy the old node, child ids and all; no check of
//! content can tell. The epoch is bumped by every SMO that writes or frees
//! the page, under its latch (the argument is in `epoch`).

use crate::error::{OrCorrupt, corrupt};
use crate::node::{Node, cmp_fence};
use crate::olc::{PREFETCH_ENTRIES, READ_AHEAD_LEAVES, ScanHint, ScanStep};
use crate::{BTree, LeafStamp, MAX_KEY_LEN, TreeError};
use rime_bufmgr::{Fetch, Loader, OnMiss, PageId, SharedGuard};
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

/// Step 4's shortcut: a leaf reached through the fence the last one ended
/// at (step 6) starts at its first entry (forward: every key lies above
/// its lower fence) or after its last (backward: every key lies at or
/// below its upper fence), with no search. `None`: search.
fn entered_at_fence(view: Node<'_>, pos: &KeyBound, dir: Direction, count: usize) -> Option<usize> {
    match (pos, dir) {
        (Bound::Excluded(k), Direction::Forward)
            if !view.lower_inf() && cmp_fence(view.lower_fence()?, k).is_eq() =>
        {
            Some(0)
        }
        (Bound::Included(k), Direction::Backward)
            if !view.upper_inf() && cmp_fence(view.upper_fence()?, k).is_eq() =>
        {
            Some(count)
        }
        _ => None,
    }
}

/// Step 4 by binary search: the first slot to visit at `pos`.
fn first_slot(
    view: Node<'_>,
    pid: PageId,
    pos: &KeyBound,
    dir: Direction,
    count: usize,
) -> Result<usize, TreeError> {
    let (at, found) = if matches!(pos, Bound::Unbounded) {
        (count, false)
    } else {
        view.search(probe_of(pos, dir).0).or_corrupt(pid, "slots")?
    };
    Ok(match (pos, dir) {
        (Bound::Unbounded, Direction::Forward) => 0,
        (Bound::Excluded(_), Direction::Forward) => at + found as usize,
        (_, Direction::Forward) => at,
        (Bound::Included(_), Direction::Backward) => at + found as usize,
        (_, Direction::Backward) => at,
    })
}

impl BTree {
    /// Calls `f(key, value)` for every entry in `range`, in `dir` order,
    /// until `f` breaks. `f` runs under a shared leaf latch and must not
    /// write to this tree. Ranges: `..`, or `(Bound<&[u8]>, Bound<&[u8]>)`.
    pub fn scan(
        &self,
        range: impl RangeBounds<[u8]>,
        dir: Direction,
        f: impl FnMut(&[u8], &[u8]) -> ControlFlow<()>,
    ) -> Result<(), TreeError> {
        self.scan_noting(range, dir, None, f)
    }

    /// [`BTree::scan`] that also appends to `pages` a stamp of every page
    /// it handed entries from: each leaf it visited, and each large
    /// value's extent. While [`BTree::all_unchanged`] holds for them, a
    /// second scan of the same range would hand out the same entries, up
    /// to where this one stopped: the leaves visited cover that range with
    /// their fences (one leaf's upper fence is the next one's lower), a
    /// key lives only in the leaf whose fences hold it, and every change
    /// of a leaf's entries or fences (a write, split, merge, free) changes
    /// the leaf. A transaction's validation checks its scans so, without
    /// scanning again.
    pub fn scan_stamped(
        &self,
        range: impl RangeBounds<[u8]>,
        dir: Direction,
        pages: &mut Vec<LeafStamp>,
        f: impl FnMut(&[u8], &[u8]) -> ControlFlow<()>,
    ) -> Result<(), TreeError> {
        self.scan_noting(range, dir, Some(pages), f)
    }

    /// Whether every page of `stamps` is unchanged since the read that
    /// stamped it ([`BTree::unchanged`] for each).
    pub fn all_unchanged(&self, stamps: &[LeafStamp]) -> bool {
        stamps.iter().all(|s| self.bm.unchanged_since(s.0))
    }

    fn scan_noting(
        &self,
        range: impl RangeBounds<[u8]>,
        dir: Direction,
        mut pages: Option<&mut Vec<LeafStamp>>,
        mut f: impl FnMut(&[u8], &[u8]) -> ControlFlow<()>,
    ) -> Result<(), TreeError> {
        let (start, end) = match dir {
            Direction::Forward => (range.start_bound(), range.end_bound()),
            Direction::Backward => (range.end_bound(), range.start_bound()),
        };
        let (mut pos, end) = (key_bound(start)?, key_bound(end)?);
        let (mut hint, mut ahead, mut key) = (None, None, KeyBuf::new());
        loop {
            let leaf = self.next_leaf(&pos, dir, &mut hint, Some(&mut ahead))?;
            let noted = pages.as_deref_mut();
            if !self.visit_leaf(leaf, &mut key, &mut pos, &end, dir, noted, &mut f)? {
                return Ok(());
            }
        }
    }

    /// [`BTree::scan`] that never waits for a page to be read: for a
    /// caller that keeps many operations in flight on one thread. The
    /// protocol is the module's, with step 3 replaced:
    ///
    /// 3. A step to the next leaf (steps 1-2) that meets a node not in
    ///    memory (evicted, being loaded, or latched for a loader's
    ///    write-back) ends the scan with [`Fetch::Missing`] naming it,
    ///    before anything of that leaf is latched or handed to `f`. No
    ///    latch is held on return. When the node is a child of the node at
    ///    hand, the nodes a waiting scan would read ahead with it (up to
    ///    [`READ_AHEAD_LEAVES`]` - 1` siblings after it; backward: before
    ///    it) go into `ahead` (cleared first), for the caller to request
    ///    together: a scan over many leaves not in memory then costs a
    ///    device latency per window, not per leaf.
    ///
    /// `f` may have seen the entries of the leaves before that one: a
    /// caller that runs the scan again once the page is in (the scan is
    /// exact only as a whole) must discard what `f` gathered. Large values
    /// are read under the leaf's latch, waiting for their extent (which is
    /// never a read of the caller's loader: a loader reads only the tree
    /// nodes its caller names). [`Fetch::Ready`]: the scan finished, or `f`
    /// broke. Nothing is read ahead.
    pub fn scan_nowait(
        &self,
        range: impl RangeBounds<[u8]>,
        dir: Direction,
        ahead: &mut Vec<PageId>,
        f: impl FnMut(&[u8], &[u8]) -> ControlFlow<()>,
    ) -> Result<Fetch<()>, TreeError> {
        self.scan_nowait_noting(range, dir, ahead, None, f)
    }

    /// [`BTree::scan_nowait`] that notes the pages it handed entries from
    /// in `pages`, as [`BTree::scan_stamped`] does (those of the leaves
    /// visited before a [`Fetch::Missing`] included).
    pub fn scan_nowait_stamped(
        &self,
        range: impl RangeBounds<[u8]>,
        dir: Direction,
        ahead: &mut Vec<PageId>,
        pages: &mut Vec<LeafStamp>,
        f: impl FnMut(&[u8], &[u8]) -> ControlFlow<()>,
    ) -> Result<Fetch<()>, TreeError> {
        self.scan_nowait_noting(range, dir, ahead, Some(pages), f)
    }

    fn scan_nowait_noting(
        &self,
        range: impl RangeBounds<[u8]>,
        dir: Direction,
        ahead: &mut Vec<PageId>,
        mut pages_noted: Option<&mut Vec<LeafStamp>>,
        mut f: impl FnMut(&[u8], &[u8]) -> ControlFlow<()>,
    ) -> Result<Fetch<()>, TreeError> {
        ahead.clear();
        let (start, end) = match dir {
            Direction::Forward => (range.start_bound(), range.end_bound()),
            Direction::Backward => (range.end_bound(), range.start_bound()),
        };
        let (mut pos, end) = (key_bound(start)?, key_bound(end)?);
        let (mut hint, mut key) = (None, KeyBuf::new());
        let mut pages = [0; READ_AHEAD_LEAVES];
        loop {
            let (probe, strict) = probe_of(&pos, dir);
            let forward = dir == Direction::Forward;
            let leaf =
                match self.scan_leaf(probe, strict, forward, hint, OnMiss::Report, &mut pages)? {
                    Fetch::Ready(ScanStep::Leaf(leaf, next)) => {
                        hint = next;
                        leaf
                    }
                    // The first of the nodes a waiting scan would read ahead.
                    Fetch::Ready(ScanStep::ReadFirst(n)) => {
                        let bm = &*self.bm;
                        let rest = pages.get(1..n).unwrap_or_default();
                        ahead.extend(rest.iter().filter(|&&p| !bm.is_resident(p)));
                        return Ok(Fetch::Missing {
                            pid: pages[0],
                            pages: 1,
                        });
                    }
                    Fetch::Missing { pid, pages } => return Ok(Fetch::Missing { pid, pages }),
                };
            let noted = pages_noted.as_deref_mut();
            if !self.visit_leaf(leaf, &mut key, &mut pos, &end, dir, noted, &mut f)? {
                return Ok(Fetch::Ready(()));
            }
        }
    }

    /// Steps 1-3 of the scan protocol (module docs): the leaf a scan at
    /// `pos` visits, latched shared; `hint` is the last leaf's parent and
    /// becomes this one's.
    ///
    /// With `ahead` (read-ahead), the step first runs without waiting for
    /// reads: when a node on its way is not in memory, it reads that node
    /// and the nodes after it (forward) or before it (backward) under the
    /// same parent, up to [`READ_AHEAD_LEAVES`], at once through `ahead`'s
    /// loader, and waits for them all: one device latency for the window
    /// instead of one per leaf. Then it runs again, waiting for whatever
    /// is (again) missing, so it always ends. It waits before anything is
    /// latched (the loader's rule: no blocking latch on a frame this
    /// thread's loader is reading), so the callback never runs with reads
    /// in flight. A failed read is left for the blocking run, which reads
    /// the page itself and reports the error.
    fn next_leaf<'t>(
        &'t self,
        pos: &KeyBound,
        dir: Direction,
        hint: &mut Option<ScanHint>,
        ahead: Option<&mut Option<Loader<'t>>>,
    ) -> Result<SharedGuard<'t>, TreeError> {
        let (probe, strict) = probe_of(pos, dir);
        let forward = dir == Direction::Forward;
        let mut pages = [0; READ_AHEAD_LEAVES];
        if let Some(ahead) = ahead {
            let bm = &*self.bm;
            match self.scan_leaf(probe, strict, forward, *hint, OnMiss::Report, &mut pages)? {
                Fetch::Ready(ScanStep::Leaf(leaf, next)) => {
                    *hint = next;
                    return Ok(leaf);
                }
                Fetch::Ready(ScanStep::ReadFirst(n)) => {
                    let loader = ahead.get_or_insert_with(|| Loader::new(bm));
                    for &pid in pages[..n].iter().filter(|&&p| !bm.is_resident(p)) {
                        loader.request(pid, 1);
                    }
                }
                Fetch::Missing { pid, pages } => {
                    ahead
                        .get_or_insert_with(|| Loader::new(bm))
                        .request(pid, pages);
                }
            }
            if let Some(loader) = ahead {
                while loader.pending() > 0 {
                    loader.poll(true, |_, _| {});
                }
            }
        }
        match self.scan_leaf(probe, strict, forward, *hint, OnMiss::Load, &mut pages)? {
            Fetch::Ready(ScanStep::Leaf(leaf, next)) => {
                *hint = next;
                Ok(leaf)
            }
            _ => Err(corrupt(self.root, "a blocking scan step stopped early")),
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
            hint: None,
            buf: VecDeque::new(),
        }
    }

    /// A cheap estimate of the number of entries (no latches; exact for a
    /// single leaf, a fan-out product along the leftmost path otherwise).
    pub fn len_estimate(&self) -> Result<u64, TreeError> {
        self.estimate()
    }

    /// Steps 4-6 of the scan protocol: runs the scan over `leaf` (the leaf
    /// holding the first key at `pos`; `key` is scratch space for the keys
    /// handed to `f`), then moves `pos` to where the next leaf starts.
    /// Returns whether there is a next leaf to visit. (An out-parameter
    /// rather than a returned position: the position is a 513-byte stack
    /// key.) With `noted`, stamps the leaf and each large value's extent.
    #[allow(clippy::too_many_arguments)]
    fn visit_leaf(
        &self,
        leaf: SharedGuard<'_>,
        key: &mut KeyBuf,
        pos: &mut KeyBound,
        end: &KeyBound,
        dir: Direction,
        mut noted: Option<&mut Vec<LeafStamp>>,
        f: &mut impl FnMut(&[u8], &[u8]) -> ControlFlow<()>,
    ) -> Result<bool, TreeError> {
        if let Some(noted) = noted.as_deref_mut() {
            noted.push(LeafStamp(leaf.stamp()));
        }
        // 4. Find the first slot to visit.
        let pid = leaf.pid();
        let view = Node(leaf.payload());
        let count = view.count().or_corrupt(pid, "count")?;
        // Forward: visit [first, count); backward: visit [0, first) downwards.
        let first = match entered_at_fence(view, pos, dir, count) {
            Some(first) => first,
            None => first_slot(view, pid, pos, dir, count)?,
        };
        // 5. Visit the entries, stopping at the far end or when `f` breaks.
        //    Their keys lie apart in the heap (a 1 KiB value between two):
        //    ask for the first line of each at once, so that their misses
        //    overlap instead of following one another.
        let soon = match dir {
            Direction::Forward => first..count.min(first + PREFETCH_ENTRIES),
            Direction::Backward => {
                let end = first.min(count);
                end.saturating_sub(PREFETCH_ENTRIES)..end
            }
        };
        for i in soon {
            if let Some(k) = view.suffix(i) {
                crate::olc::prefetch_bytes(&k[..k.len().min(1)]);
            }
        }
        let mut visit = |i: usize| -> Result<bool, TreeError> {
            let prefix = view.prefix().or_corrupt(pid, "prefix")?;
            key.set_concat(prefix, view.suffix(i).or_corrupt(pid, "key")?)
                .or_corrupt(pid, "key length")?;
            if !before_end(key, end, dir) {
                return Ok(false);
            }
            let flow = if view.is_large(i).or_corrupt(pid, "slot")? {
                let r = crate::olc::large_ref(view, i).or_corrupt(pid, "large ref")?;
                self.read_large_noting(r, noted.as_deref_mut(), |v| f(key, v))?
            } else {
                f(key, view.value(i).or_corrupt(pid, "value")?)
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
        // 6. Move on through the fence, unless it is infinite or past the end.
        let next = match dir {
            Direction::Forward if view.upper_inf() => return Ok(false),
            Direction::Backward if view.lower_inf() => return Ok(false),
            Direction::Forward => view.upper_fence().or_corrupt(pid, "fence")?,
            Direction::Backward => view.lower_fence().or_corrupt(pid, "fence")?,
        };
        let past = match (end, dir) {
            (Bound::Unbounded, _) => false,
            (Bound::Included(e) | Bound::Excluded(e), Direction::Forward) => {
                cmp_fence(next, e).is_ge()
            }
            (Bound::Included(e), Direction::Backward) => cmp_fence(next, e).is_lt(),
            (Bound::Excluded(e), Direction::Backward) => cmp_fence(next, e).is_le(),
        };
        if past {
            return Ok(false);
        }
        // After the first leaf the bound already has the right kind: copy
        // the fence into its buffer in place (a `KeyBuf` is 520 bytes).
        match (&mut *pos, dir) {
            (Bound::Excluded(buf), Direction::Forward)
            | (Bound::Included(buf), Direction::Backward) => {
                buf.set_concat(next, &[]).or_corrupt(pid, "fence length")?;
            }
            _ => {
                let buf = KeyBuf::try_from_slice(next)
                    .ok()
                    .or_corrupt(pid, "fence length")?;
                *pos = match dir {
                    Direction::Forward => Bound::Excluded(buf),
                    Direction::Backward => Bound::Included(buf),
                };
            }
        }
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
    /// The last leaf's parent (the scan protocol's step 1).
    hint: Option<ScanHint>,
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
            let leaf = match self.tree.next_leaf(&pos, self.dir, &mut self.hint, None) {
                Ok(leaf) => leaf,
                Err(e) => return Some(Err(e)),
            };
            let more = self.tree.visit_leaf(
                leaf,
                &mut KeyBuf::new(),
                &mut pos,
                &self.end,
                self.dir,
                None,
                &mut |k: &[u8], v: &[u8]| {
                    buf.push_back((k.to_vec(), v.to_vec()));
                    ControlFlow::Continue(())
                },
            );
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
