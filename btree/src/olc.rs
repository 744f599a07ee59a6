//! Every optimistic section of the tree, and nothing else.
//!
//! This is the only module allowed to call the buffer manager's `unsafe`
//! [`BufferManager::optimistic`](rime_bufmgr::BufferManager::optimistic).
//! Its contract: a read of an evicted page's bytes may `siglongjmp` out of
//! the closure, skipping destructors. So every closure below holds only
//! `Copy` values (optimistic guards, page ids, integers, slices of page
//! bytes, a `&mut` to a caller-owned fixed array) while it reads page bytes.
//! Latch guards (which have destructors) are produced only by the final
//! `upgrade` calls, after the last read of page bytes, and are returned
//! straight out of the closure.
//!
//! The descent protocol (optimistic lock coupling):
//!
//! 1. Read the root optimistically (remember its version).
//! 2. In an inner node, find the child for the key in the racy bytes
//!    (every offset bounds-checked; garbage means restart).
//! 3. `read_child` validates the parent (the child id is then known to be
//!    real) and takes the child's version; then validate the parent again,
//!    so the child's version was taken while the parent still pointed to it
//!    (a merge that frees the child changes the parent first).
//! 4. Repeat at the child. At the leaf, either copy and validate (readers),
//!    or upgrade to a latch, which fails if the version moved (writers).
//!
//! A scan's step to its next leaf ([`BTree::scan_leaf`]) may start at the
//! parent it kept from an earlier section instead of the root; the page's
//! SMO epoch (`epoch`), not a version, says whether it still is that node.
#![allow(unsafe_code)]

use crate::node::{LargeRef, Node};
use crate::redistribute::{MAX_SHIFT, MIN_SIBLING_ROOM};
use crate::{BTree, INLINE_VALUE_MAX, MAX_DEPTH, TreeError, epoch};
use rime_bufmgr::{
    BufferManager, ExclusiveGuard, Fetch, Interrupt, OnMiss, OptimisticGuard, PageError, PageId,
    Section, SharedGuard,
};

/// The leaf a point lookup read, at the version it read: while
/// [`BTree::unchanged`] says so, the key is present with the same value,
/// or still absent, without descending again. Why the leaf alone answers
/// for an absent key too: the key range a leaf covers changes only by a
/// split, merge or redistribution, each of which changes that leaf. A
/// stamped scan ([`BTree::scan_stamped`]) notes one per leaf it visited,
/// and one per large value's extent it read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeafStamp(pub(crate) rime_bufmgr::PageStamp);

impl LeafStamp {
    /// The leaf's page.
    pub fn pid(&self) -> PageId {
        self.0.pid()
    }
}

/// Leaves a scan reads ahead at once when it reaches one not in memory: a
/// queue depth that keeps an NVMe device busy (Haas & Leis, VLDB 2023)
/// while a scan that stops early wastes little.
pub(crate) const READ_AHEAD_LEAVES: usize = 16;

/// The result of an optimistic point lookup ([`BTree::probe_nowait`]).
/// An answer read from the leaf comes with the leaf's stamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    Absent(LeafStamp),
    /// The value was copied into the caller's buffer: its length.
    Inline(usize, LeafStamp),
    /// The value lives in an extent (or, in a corrupt leaf, is longer than
    /// any inline value): read it under a shared leaf latch.
    Large,
}

fn restart<T>() -> Result<T, Interrupt> {
    Err(Interrupt::Restart)
}

fn too_deep(pid: PageId) -> Interrupt {
    Interrupt::Error(PageError::Corrupt {
        pid,
        reason: "tree deeper than MAX_DEPTH",
    })
}

/// Lines of a node asked for before it is read: the header and the search
/// hints.
const PREFETCH_NODE_LINES: usize = 2;

/// Hints the CPU to fetch the first lines of page `pid` (header and search
/// hints) with its state word, just before the state word is loaded: the
/// misses then overlap instead of following each other. A prefetch never
/// faults, so an evicted or bogus page is harmless.
#[inline(always)]
fn prefetch_node(bm: &BufferManager, pid: PageId) {
    bm.prefetch(pid, PREFETCH_NODE_LINES);
}

/// Hints the CPU to fetch the cache lines of `bytes` (at most four): the
/// slots a binary search is about to probe, so their misses overlap.
#[inline(always)]
pub(crate) fn prefetch_bytes(bytes: &[u8]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        let p = bytes.as_ptr() as *const i8;
        let mut off = 0;
        while off < bytes.len().min(4 * 64) {
            // SAFETY: a prefetch reads nothing architecturally and never
            // faults; the address is inside `bytes`.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(off)) };
            off += 64;
        }
    }
}

/// Entries of a leaf whose keys (and values' first bytes) a scan asks for
/// before it visits them: a leaf of YCSB's 1 KiB records holds three; one
/// of 100-byte records ~30, whose keys the hardware's own prefetcher
/// follows once the first few are in.
pub(crate) const PREFETCH_ENTRIES: usize = 8;

/// Asks for the lines a scan's visit of leaf `pid` reads past its first
/// ones: its fences (the visit compares the one it is entered through to
/// where the last leaf ended, moves on through the other, and reads the
/// keys' prefix from the lower one) and the keys of its first
/// entries (backward: last) with their values' first bytes (where a
/// transaction's version is). Called one step ahead, once the leaf's
/// header lines asked for the step before are in: the leaf's bytes are
/// read as guesses (`Section::peek`), so torn ones prefetch nothing
/// useful, and nothing is decided from them.
fn prefetch_visit(s: &Section<'_>, pid: PageId, forward: bool) {
    let Some(guard) = s.peek(pid) else {
        return;
    };
    let view = Node(guard.payload());
    let Some(count) = view.count() else {
        return;
    };
    for fence in [view.lower_fence(), view.upper_fence()]
        .into_iter()
        .flatten()
    {
        prefetch_bytes(&fence[..fence.len().min(1)]);
    }
    let entries = if forward {
        0..count.min(PREFETCH_ENTRIES)
    } else {
        count.saturating_sub(PREFETCH_ENTRIES)..count
    };
    for i in entries {
        if let (Some(key), Some(value)) = (view.suffix(i), view.value(i)) {
            prefetch_bytes(&key[..key.len().min(1)]);
            prefetch_bytes(&value[..value.len().min(1)]);
        }
    }
}

/// Lines of a leaf asked for ahead of a scan's visit: the header, the slot
/// array's first entries and the search hints.
const PREFETCH_AHEAD_LINES: usize = 3;
/// How many leaves ahead of its visit a scan asks for one. A leaf of 1 KiB
/// values holds ~3 entries, visited in less time than a miss takes.
const PREFETCH_AHEAD_LEAVES: usize = 2;

/// Asks for the children `at + 1 ..= at + PREFETCH_AHEAD_LEAVES` (forward;
/// before `at`, backward) of an inner node with `count` keys, state word
/// and first lines, while the scan visits the child at `at`: consecutive
/// leaves lie anywhere in the pool, and without this each step of a scan
/// waits for one more miss that nothing overlaps. `from` skips the ones a
/// previous step already asked for. `view` may be torn (read
/// optimistically): the ids are only hints, and a bogus one prefetches
/// nothing useful.
#[inline(always)]
fn prefetch_following(
    bm: &BufferManager,
    view: Node<'_>,
    at: usize,
    count: usize,
    forward: bool,
    from: usize,
) {
    for ahead in from..=PREFETCH_AHEAD_LEAVES {
        let i = if forward {
            at.checked_add(ahead)
        } else {
            at.checked_sub(ahead)
        };
        if let Some(child) = i.filter(|&i| i <= count).and_then(|i| view.child(i)) {
            bm.prefetch(child, PREFETCH_AHEAD_LINES);
        }
    }
}

/// Steps 1-4 of the descent: the leaf for `key` (`strict`: for the
/// smallest key greater than `key`). Holds only `Copy` values.
#[inline]
fn descend<'a>(
    s: &Section<'a>,
    bm: &BufferManager,
    root: PageId,
    key: &[u8],
    strict: bool,
) -> Result<OptimisticGuard<'a>, Interrupt> {
    let mut node = s.read(root)?;
    for _ in 0..MAX_DEPTH {
        let view = Node(node.payload());
        if view.is_leaf() {
            return Ok(node);
        }
        let Some(child_pid) = view.child_for(key, strict) else {
            return restart();
        };
        prefetch_node(bm, child_pid);
        let next = s.read_child(child_pid, &node)?;
        node = next;
    }
    node.validate()?;
    Err(too_deep(root))
}

/// The optimistic point lookup: descend, search the leaf, copy an inline
/// value into `buf`. Holds only `Copy` values and the `&mut` to `buf`.
#[inline(always)]
fn probe_leaf(
    s: &Section<'_>,
    bm: &BufferManager,
    root: PageId,
    key: &[u8],
    buf: &mut [u8; INLINE_VALUE_MAX],
) -> Result<Probe, Interrupt> {
    let leaf = descend(s, bm, root, key, false)?;
    let view = Node(leaf.payload());
    let Some((pos, found)) = view.search(key) else {
        return restart();
    };
    if !found {
        leaf.validate()?;
        return Ok(Probe::Absent(LeafStamp(leaf.stamp())));
    }
    let (Some(large), Some(value)) = (view.is_large(pos), view.value(pos)) else {
        return restart();
    };
    if large {
        leaf.validate()?;
        return Ok(Probe::Large);
    }
    let Some(dst) = buf.get_mut(..value.len()) else {
        // Longer than any inline value: torn bytes (the validation
        // restarts), else a corrupt leaf, which the latched path reads
        // rather than restarting forever.
        leaf.validate()?;
        return Ok(Probe::Large);
    };
    dst.copy_from_slice(value);
    leaf.validate()?;
    Ok(Probe::Inline(value.len(), LeafStamp(leaf.stamp())))
}

/// Children `at`, `at ± 1`, … of the inner node `view` (which has `count`
/// keys, so `count + 1` children), up to `out.len()`, into `out`.
fn siblings(
    view: Node<'_>,
    at: usize,
    count: usize,
    forward: bool,
    out: &mut [PageId; READ_AHEAD_LEAVES],
) -> Option<usize> {
    let indices: &mut dyn Iterator<Item = usize> = if forward {
        &mut (at..=count)
    } else {
        &mut (0..=at).rev()
    };
    let mut n = 0;
    for (slot, i) in out.iter_mut().zip(indices) {
        *slot = view.child(i)?;
        n += 1;
    }
    Some(n)
}

/// Where a scan's last leaf hung: its parent, the SMO epoch of the
/// parent's page read before the parent's version was taken (`epoch`),
/// and the leaf's page and child index in the parent.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ScanHint {
    parent: PageId,
    epoch: u64,
    leaf: PageId,
    index: usize,
}

/// What [`BTree::scan_leaf`] found.
pub(crate) enum ScanStep<'a> {
    /// The leaf, latched shared, and the hint for the next step.
    Leaf(SharedGuard<'a>, Option<ScanHint>),
    /// Not in memory: read the first `n` pages of `out` first.
    ReadFirst(usize),
}

/// Like [`descend`] but stops at page `target` and also returns its
/// parent; `None` when the path for `key` does not pass through `target`.
#[allow(clippy::type_complexity)]
fn descend_to<'a>(
    s: &Section<'a>,
    root: PageId,
    key: &[u8],
    target: PageId,
) -> Result<Option<(Option<OptimisticGuard<'a>>, OptimisticGuard<'a>)>, Interrupt> {
    let mut parent = None;
    let mut node = s.read(root)?;
    for _ in 0..MAX_DEPTH {
        if node.pid() == target {
            return Ok(Some((parent, node)));
        }
        let view = Node(node.payload());
        if view.is_leaf() {
            node.validate()?;
            return Ok(None);
        }
        let Some(child_pid) = view.child_for(key, false) else {
            return restart();
        };
        let next = s.read_child(child_pid, &node)?;
        parent = Some(node);
        node = next;
    }
    node.validate()?;
    Err(too_deep(root))
}

impl BTree {
    /// Point lookup that copies an inline value into `buf` without
    /// latching anything. `buf` holds [`INLINE_VALUE_MAX`] bytes, the
    /// longest value [`is_inline`](crate::is_inline) keeps in a leaf.
    pub(crate) fn probe(
        &self,
        key: &[u8],
        buf: &mut [u8; INLINE_VALUE_MAX],
    ) -> Result<Probe, TreeError> {
        let (root, bm) = (self.root, &*self.bm);
        // SAFETY: `probe_leaf` holds only Copy values (guards, slices of
        // page bytes, integers) and the `&mut` to the caller's fixed-size
        // array, which it writes with a plain copy; nothing has a destructor.
        let probe = unsafe { self.bm.optimistic(|s| probe_leaf(s, bm, root, key, buf)) }?;
        Ok(probe)
    }

    /// [`BTree::probe`] that does not wait for a page to be read: it
    /// reports the first frame on the key's path that is not in memory.
    pub fn probe_nowait(
        &self,
        key: &[u8],
        buf: &mut [u8; INLINE_VALUE_MAX],
    ) -> Result<Fetch<Probe>, TreeError> {
        crate::check_key(key)?;
        let (root, bm) = (self.root, &*self.bm);
        // SAFETY: as in `probe`.
        let probe = unsafe {
            self.bm
                .optimistic_nowait(|s| probe_leaf(s, bm, root, key, buf))
        }?;
        Ok(probe)
    }

    /// The write-path probe: whether a write of `key` would find every
    /// page its descent latches in memory, without waiting for any. For a
    /// caller that keeps many operations in flight on one thread and must
    /// never sleep on a read of its own loader (`Loader`'s one rule), run
    /// before it writes:
    ///
    /// 1. Descend optimistically from the root towards `key`'s leaf, as a
    ///    lookup does (steps 1-4 of the descent), but stop at the first
    ///    node that is not in memory (evicted, being loaded, or latched
    ///    for a loader's write-back).
    /// 2. Stopped: [`Fetch::Missing`] names that node. Nothing was latched
    ///    or changed; the caller loads the page (its `Loader`) and calls
    ///    again, since the next level may be missing too.
    /// 3. At the leaf, validate it: [`Fetch::Ready`]. Every node the
    ///    write's descent (`Writer`'s step 1) and a split of the leaf (its
    ///    parent, on the same path) latch was in memory and readable, so
    ///    none is a read in flight of the caller's loader.
    /// 4. The caller writes with the blocking [`Writer`](crate::Writer)
    ///    methods, before it polls its loader again (no read of its own
    ///    can start in between). If another thread's eviction took a page
    ///    of the path meanwhile, the write reads it itself (a brief
    ///    blocking miss), never through the caller's loader. Merges of a
    ///    leaf the write shrinks latch a sibling off this path: write with
    ///    [`Writer::merge_in_memory_only`](crate::Writer::merge_in_memory_only)
    ///    so that a sibling not in memory skips the merge instead of
    ///    waiting for it.
    ///
    /// Extents are not probed: a put or remove frees a replaced extent
    /// without reading it; only `update` and `rmw` of a large value read
    /// one (blocking).
    pub fn write_probe_nowait(&self, key: &[u8]) -> Result<Fetch<()>, TreeError> {
        crate::check_key(key)?;
        let (root, bm) = (self.root, &*self.bm);
        // SAFETY: the body holds only Copy values (guards, page ids).
        let probe = unsafe {
            self.bm.optimistic_nowait(|s| {
                // Steps 1 and 3 (step 2 is `optimistic_nowait`'s Missing).
                let leaf = descend(s, bm, root, key, false)?;
                leaf.validate()
            })
        }?;
        Ok(probe)
    }

    /// The leaf a scan visits next (the leaf of `key`; `strict`: of the
    /// smallest key above `key`), latched shared, and the hint for the step
    /// after it: steps 1-2 of the scan protocol in `scan`. The next child
    /// of `hint`'s parent when that parent is still the node it was and has
    /// one, else the descent from the root.
    ///
    /// [`OnMiss::Report`]: stops at the first node on the way that is not
    /// in memory.
    /// If it is a child of the node at hand, that child and the siblings
    /// after it (forward) or before it (backward), up to `out.len()`, go
    /// into `out` ([`ScanStep::ReadFirst`]); if it is where the step
    /// starts, [`Fetch::Missing`]. A blocking call always returns a leaf.
    pub(crate) fn scan_leaf<'t>(
        &'t self,
        key: &[u8],
        strict: bool,
        forward: bool,
        hint: Option<ScanHint>,
        on_miss: OnMiss,
        out: &mut [PageId; READ_AHEAD_LEAVES],
    ) -> Result<Fetch<ScanStep<'t>>, TreeError> {
        let (root, bm) = (self.root, &*self.bm);
        let body = |s: &Section<'_>| -> Result<ScanStep<'t>, Interrupt> {
            // Step 1 (scan protocol, `scan`): through the hint's parent, if
            // its epoch has not moved.
            if let Some(h) = hint.filter(|h| epoch::read(h.parent) == h.epoch) {
                let parent = match s.read(h.parent) {
                    Ok(parent) => parent,
                    // Freed since the check and unreadable: start over
                    // (the next run goes through the root).
                    Err(Interrupt::Error(_)) if epoch::read(h.parent) != h.epoch => {
                        return restart();
                    }
                    Err(e) => return Err(e),
                };
                let view = Node(parent.payload());
                let next = if forward {
                    h.index.checked_add(1)
                } else {
                    h.index.checked_sub(1)
                };
                // The parent still holds the last leaf at `index` (it must,
                // unchanged: a cheap guard of the epoch argument) and has a
                // child after it (forward) or before it (backward).
                let step = match (view.count(), next) {
                    (Some(count), Some(next))
                        if next <= count
                            && !view.is_leaf()
                            && view.child(h.index) == Some(h.leaf) =>
                    {
                        view.child(next).map(|child| (count, next, child))
                    }
                    _ => None,
                };
                if let Some((count, next, child)) = step {
                    prefetch_node(bm, child);
                    prefetch_following(bm, view, next, count, forward, PREFETCH_AHEAD_LEAVES);
                    let after = if forward {
                        next.checked_add(1)
                    } else {
                        next.checked_sub(1)
                    };
                    if let Some(after) = after.filter(|&i| i <= count).and_then(|i| view.child(i)) {
                        prefetch_visit(s, after, forward);
                    }
                    let leaf = match s.read_child(child, &parent) {
                        Ok(leaf) => leaf,
                        Err(Interrupt::Missing { .. }) => {
                            let n = siblings(view, next, count, forward, out)
                                .ok_or(Interrupt::Restart)?;
                            parent.validate()?;
                            return Ok(ScanStep::ReadFirst(n));
                        }
                        Err(e) => return Err(e),
                    };
                    // `read_child` validated the parent after taking the
                    // leaf's version: with the epoch unmoved, the parent was
                    // the node it had been, so `child` is the leaf after
                    // (before) the last one.
                    if epoch::read(h.parent) != h.epoch {
                        return restart();
                    }
                    if Node(leaf.payload()).is_leaf() {
                        let hint = ScanHint {
                            leaf: child,
                            index: next,
                            ..h
                        };
                        return Ok(ScanStep::Leaf(
                            leaf.upgrade_shared()?.rebind(bm),
                            Some(hint),
                        ));
                    }
                } else {
                    // Only a consistent read decides that there is no next
                    // child (torn bytes restart; never loop on them).
                    parent.validate()?;
                }
                // Else the parent is exhausted (or not what it was): from
                // the root.
            }
            // Step 2: from the root, reading each node's epoch before its
            // version is taken.
            let mut node_epoch = epoch::read(root);
            let mut node = s.read(root)?;
            let mut parent = None;
            for _ in 0..MAX_DEPTH {
                let view = Node(node.payload());
                if view.is_leaf() {
                    let leaf = node.upgrade_shared()?.rebind(bm);
                    return Ok(ScanStep::Leaf(leaf, parent));
                }
                let (Some((pos, found)), Some(count)) = (view.search(key), view.count()) else {
                    return restart();
                };
                let at = if strict && found { pos + 1 } else { pos };
                let Some(child) = view.child(at) else {
                    return restart();
                };
                prefetch_node(bm, child);
                prefetch_following(bm, view, at, count, forward, 1);
                let child_epoch = epoch::read(child);
                match s.read_child(child, &node) {
                    Ok(next) => {
                        parent = Some(ScanHint {
                            parent: node.pid(),
                            epoch: node_epoch,
                            leaf: child,
                            index: at,
                        });
                        (node, node_epoch) = (next, child_epoch);
                    }
                    Err(Interrupt::Missing { .. }) => {
                        let n =
                            siblings(view, at, count, forward, out).ok_or(Interrupt::Restart)?;
                        node.validate()?;
                        return Ok(ScanStep::ReadFirst(n));
                    }
                    Err(e) => return Err(e),
                }
            }
            node.validate()?;
            Err(too_deep(root))
        };
        // SAFETY: the body holds only Copy values (guards, ids, epochs,
        // slices of page bytes) and the `&mut` to the caller's fixed array,
        // written with plain stores; the shared guard is made by the last
        // call and returned at once.
        Ok(unsafe { self.bm.optimistic_on_miss(on_miss, body)? })
    }

    /// The leaf for `key`, latched shared (`strict`: the leaf of the
    /// smallest key greater than `key`).
    pub(crate) fn leaf_shared(
        &self,
        key: &[u8],
        strict: bool,
    ) -> Result<SharedGuard<'_>, TreeError> {
        let (root, bm) = (self.root, &*self.bm);
        // SAFETY: only Copy values live across page reads; the shared guard
        // is made by the last call and returned at once.
        let guard = unsafe {
            bm.optimistic(|s| {
                Ok(descend(s, bm, root, key, strict)?
                    .upgrade_shared()?
                    .rebind(bm))
            })
        }?;
        Ok(guard)
    }

    /// The leaf for `key`, latched exclusively, and whether getting it was
    /// contended: a read on the way waited for another thread's exclusive
    /// latch, or the descent started over (a node changed under it, the
    /// leaf's latch taken between its read and the upgrade).
    pub(crate) fn leaf_exclusive(
        &self,
        key: &[u8],
    ) -> Result<(ExclusiveGuard<'_>, bool), TreeError> {
        let (root, bm) = (self.root, &*self.bm);
        let mut attempts = 0u32;
        let mut waited = false;
        // SAFETY: as in `leaf_shared` (the two counters are Copy locals
        // written with plain stores).
        let guard = unsafe {
            bm.optimistic(|s| {
                attempts += 1;
                let leaf = descend(s, bm, root, key, false);
                waited |= s.waited_for_a_latch();
                Ok(leaf?.upgrade()?.rebind(bm))
            })
        }?;
        Ok((guard, waited || attempts > 1))
    }

    /// Page `target` on the path of `key` and its parent, latched
    /// exclusively top-down; `None` if `target` is no longer on that path.
    #[allow(clippy::type_complexity)]
    pub(crate) fn latch_for_split(
        &self,
        key: &[u8],
        target: PageId,
    ) -> Result<Option<(Option<ExclusiveGuard<'_>>, ExclusiveGuard<'_>)>, TreeError> {
        let (root, bm) = (self.root, &*self.bm);
        // SAFETY: only Copy values live across page reads. The upgrades
        // come after the last read; if the second fails, the first guard is
        // dropped by an ordinary return (no page bytes are read after it).
        let latched = unsafe {
            self.bm.optimistic(|s| {
                let Some((parent, node)) = descend_to(s, root, key, target)? else {
                    return Ok(None);
                };
                let parent = match parent {
                    Some(p) => Some(p.upgrade()?.rebind(bm)),
                    None => None,
                };
                Ok(Some((parent, node.upgrade()?.rebind(bm))))
            })
        }?;
        Ok(latched)
    }

    /// For merging `target` (on the path of `key`) with a sibling (the
    /// left one if `left_sibling`, else the right one, or the left one for
    /// a last child): the parent, the left and the right node, latched
    /// exclusively in that order, and the parent slot of the left node.
    /// `None` when `target` is the root, gone, or has no such sibling.
    ///
    /// [`OnMiss::Report`] gives up (`None`) instead of waiting for a node
    /// that is not in memory ([`Writer::merge_in_memory_only`](crate::Writer)).
    pub(crate) fn latch_for_merge<'t>(
        &'t self,
        key: &[u8],
        target: PageId,
        left_sibling: bool,
        on_miss: OnMiss,
    ) -> Result<Option<MergeLatches<'t>>, TreeError> {
        let (root, bm) = (self.root, &*self.bm);
        // SAFETY: as in `latch_for_split`: Copy values only until the three
        // upgrades, which read no page bytes.
        let body = |s: &Section<'_>| -> Result<Option<MergeLatches<'t>>, Interrupt> {
            let Some((Some(parent), node)) = descend_to(s, root, key, target)? else {
                return Ok(None);
            };
            let view = Node(parent.payload());
            let (Some((pos, _)), Some(count)) = (view.search(key), view.count()) else {
                return restart();
            };
            if view.child(pos) != Some(node.pid()) {
                return restart();
            }
            let left_pos = if pos < count && !left_sibling {
                pos
            } else if pos > 0 {
                pos - 1
            } else {
                parent.validate()?;
                return Ok(None);
            };
            let sibling_pos = if left_pos == pos { pos + 1 } else { left_pos };
            let Some(sibling) = view.child(sibling_pos) else {
                return restart();
            };
            let sibling = s.read_child(sibling, &parent)?;
            let (left, right) = if left_pos == pos {
                (node, sibling)
            } else {
                (sibling, node)
            };
            let parent = parent.upgrade()?.rebind(bm);
            let left = left.upgrade()?.rebind(bm);
            let right = right.upgrade()?.rebind(bm);
            Ok(Some(MergeLatches {
                parent,
                left,
                right,
                left_pos,
            }))
        };
        // SAFETY: as above; the latches are made by the last calls of the
        // body and returned at once.
        match unsafe { self.bm.optimistic_on_miss(on_miss, body)? } {
            Fetch::Ready(latched) => Ok(latched),
            Fetch::Missing { .. } => Ok(None),
        }
    }

    /// For moving entries out of the full leaf `target` (on the path of
    /// `key`, lacking `needed` bytes) towards the nearest leaf under the
    /// same parent with room ([`BTree::redistribute`](crate::BTree)): the
    /// parent and the leaves from `target` to that one, latched
    /// exclusively, parent first, leaves left to right. `None` when there
    /// is nothing to do or no leaf to do it with:
    ///
    /// * `target` is the root, not a leaf, gone, or has room now;
    /// * the insert follows an ascending or descending pattern (the append
    ///   split fills leaves there; `split::append_pattern`);
    /// * no sibling within [`MAX_SHIFT`] leaves has room for the new
    ///   entry and at least [`MIN_SIBLING_ROOM`] (with [`OnMiss::Report`],
    ///   only leaves in memory count: the search stops at one that is not);
    /// * a leaf changed since it was read, or is latched exclusively.
    ///
    /// A leaf's failed upgrade gives up rather than restarting. No upgrade
    /// here waits for an exclusive holder; like every upgrade, each waits
    /// out shared holders (a scan visiting the page, a write-back copying
    /// it), which hold it briefly. [`OnMiss::Report`] runs the section with
    /// `optimistic_nowait` (a path not in memory gives up, a sibling not
    /// in memory is never read), so a thread with reads in flight may
    /// call it; [`OnMiss::Load`] reads what is missing, as
    /// `latch_for_merge` does.
    pub(crate) fn latch_for_shift<'t>(
        &'t self,
        key: &[u8],
        target: PageId,
        needed: usize,
        on_miss: OnMiss,
    ) -> Result<Option<ShiftLatches<'t>>, TreeError> {
        let (root, bm) = (self.root, &*self.bm);
        let min_room = needed.max(MIN_SIBLING_ROOM);
        // SAFETY: as in `latch_for_split`: Copy values only (the guards in
        // `seen` are Copy) until the upgrades, which read no page bytes.
        let body = |s: &Section<'_>| -> Result<Option<ShiftLatches<'t>>, Interrupt> {
            let Some((Some(parent), node)) = descend_to(s, root, key, target)? else {
                return Ok(None);
            };
            let (view, pview) = (Node(node.payload()), Node(parent.payload()));
            let (Some((pos, _)), Some(count)) = (pview.search(key), pview.count()) else {
                return restart();
            };
            if pview.child(pos) != Some(node.pid()) {
                return restart();
            }
            let (Some((at, _)), Some(n), Some(free)) =
                (view.search(key), view.count(), view.free_after_compaction())
            else {
                return restart();
            };
            let edge = crate::split::Edge {
                first: pos == 0,
                last: pos == count,
            };
            if !view.is_leaf()
                || free >= needed
                || crate::split::sequential_pattern(view, at, n, edge)
            {
                node.validate()?;
                return Ok(None);
            }
            // Leaves at distance 1, 2, .. on both sides, until one has
            // room (the roomier one at equal distance). `seen[MAX_SHIFT +
            // d]` is child `pos + d`.
            let mut seen = [None; 2 * MAX_SHIFT + 1];
            seen[MAX_SHIFT] = Some(node);
            let mut open = [pos > 0, pos < count];
            let mut chosen: Option<(usize, usize)> = None;
            for d in 1..=MAX_SHIFT {
                let mut best_room = 0;
                for (side, right) in [(0, false), (1, true)] {
                    if !open[side] {
                        continue;
                    }
                    let child = if right { pos + d } else { pos - d };
                    open[side] = if right { child < count } else { child > 0 };
                    let Some(pid) = pview.child(child) else {
                        return restart();
                    };
                    let leaf = match s.read_child(pid, &parent) {
                        Ok(g) => g,
                        Err(Interrupt::Missing { .. }) => {
                            open[side] = false;
                            continue;
                        }
                        Err(e) => return Err(e),
                    };
                    let Some(room) = Node(leaf.payload()).free_after_compaction() else {
                        return restart();
                    };
                    seen[if right { MAX_SHIFT + d } else { MAX_SHIFT - d }] = Some(leaf);
                    if room >= min_room && room > best_room {
                        best_room = room;
                        chosen = Some(if right { (pos, child) } else { (child, pos) });
                    }
                }
                if chosen.is_some() {
                    break;
                }
            }
            let Some((first, last)) = chosen else {
                parent.validate()?;
                return Ok(None);
            };
            let parent = parent.upgrade()?.rebind(bm);
            let mut leaves = Vec::with_capacity(last - first + 1);
            for child in first..=last {
                let Some(leaf) = seen[MAX_SHIFT + child - pos] else {
                    return restart();
                };
                let Ok(leaf) = leaf.upgrade() else {
                    return Ok(None);
                };
                leaves.push(leaf.rebind(bm));
            }
            Ok(Some(ShiftLatches {
                parent,
                leaves,
                first,
            }))
        };
        // SAFETY: as above; the latches are made by the last calls of the
        // body and returned at once.
        match unsafe { self.bm.optimistic_on_miss(on_miss, body)? } {
            Fetch::Ready(latched) => Ok(latched),
            Fetch::Missing { .. } => Ok(None),
        }
    }

    /// A cheap size estimate: the fan-out along the leftmost path, times
    /// the entries of the leftmost leaf. Reads without latching.
    pub(crate) fn estimate(&self) -> Result<u64, TreeError> {
        let root = self.root;
        // SAFETY: integers and Copy guards only.
        let n = unsafe {
            self.bm.optimistic(|s| {
                let mut node = s.read(root)?;
                let mut estimate: u64 = 1;
                for _ in 0..MAX_DEPTH {
                    let view = Node(node.payload());
                    let Some(count) = view.count() else {
                        return restart();
                    };
                    if view.is_leaf() {
                        node.validate()?;
                        return Ok(estimate.saturating_mul(count as u64));
                    }
                    estimate = estimate.saturating_mul(count as u64 + 1);
                    let Some(child_pid) = view.child(0) else {
                        return restart();
                    };
                    let next = s.read_child(child_pid, &node)?;
                    node = next;
                }
                node.validate()?;
                Err(too_deep(root))
            })
        }?;
        Ok(n)
    }
}

/// Latches for a redistribution: see [`BTree::latch_for_shift`].
pub(crate) struct ShiftLatches<'a> {
    pub parent: ExclusiveGuard<'a>,
    /// Children `first..first + leaves.len()` of the parent, in order.
    pub leaves: Vec<ExclusiveGuard<'a>>,
    pub first: usize,
}

/// Latches for a merge: see [`BTree::latch_for_merge`].
pub(crate) struct MergeLatches<'a> {
    pub parent: ExclusiveGuard<'a>,
    pub left: ExclusiveGuard<'a>,
    pub right: ExclusiveGuard<'a>,
    pub left_pos: usize,
}

/// Decodes a large-value reference from a (latched) leaf slot.
pub(crate) fn large_ref(view: Node<'_>, pos: usize) -> Option<LargeRef> {
    LargeRef::decode(view.value(pos)?)
}
