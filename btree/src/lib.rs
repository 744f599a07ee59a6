//! # rime-btree: an optimistic-lock-coupling B+tree over rime-bufmgr pages
//!
//! Many trees share one buffer pool; a tree is identified by its root page
//! id, which never changes (root splits move the root's contents into new
//! children, root collapses pull the only child up). The catalog of named
//! trees belongs to `rime-storage`.
//!
//! * [`node`]: the slotted node (layout diagram there): fences, prefix
//!   truncation, 4-byte key heads, search hints.
//! * `olc`: the optimistic descent (the only module with `unsafe`).
//! * `write`: insert, upsert, update, rmw, remove on a latched leaf.
//! * `split` / `merge` / `redistribute`: structure modifications (a full
//!   leaf first moves entries to a sibling with room), reported through
//!   [`TreeHooks`] (see [`hooks`] for the logging contract).
//! * `large`: values too large for the leaf ([`is_inline`]) in page
//!   extents.
//! * `scan`: range and prefix scans (closure and iterator), size estimate;
//!   scans step from leaf to leaf through the parent they kept, which
//!   `epoch` (bumped by every SMO) tells them is still that parent.
//! * `verify`: the invariant checker and `destroy`.
//!
//! ```no_run
//! # use rime_btree::*; use std::sync::Arc; use std::ops::ControlFlow;
//! # fn demo(bm: Arc<rime_bufmgr::BufferManager>) -> Result<(), TreeError> {
//! let tree = BTree::create(bm, Arc::new(NoHooks))?;
//! tree.upsert(b"k", b"v")?;
//! assert_eq!(tree.get(b"k", |v| v.to_vec())?, Some(b"v".to_vec()));
//! tree.scan(.., Direction::Forward, |k, v| { println!("{k:?}={v:?}"); ControlFlow::Continue(()) })?;
//! tree.at_lsn(42).remove(b"k")?; // stamps LSN 42 on the leaf
//! # Ok(()) }
//! ```
#![deny(unsafe_code)]

pub mod hooks;
mod keybuf;
pub mod node;

mod contention;
mod epoch;
mod error;
mod large;
mod merge;
mod olc;
mod redistribute;
mod scan;
mod split;
mod verify;
mod write;

#[cfg(test)]
mod test_tree;

pub use error::TreeError;
pub use hooks::{ExtentFree, NoHooks, Smo, SmoKind, SmoNotLogged, TreeHooks, UNLOGGED_LSN};
pub use olc::{LeafStamp, Probe};
pub use rime_bufmgr::Fetch;
pub use scan::{Direction, Iter};
pub use verify::TreeStats;
pub use write::Writer;

use error::OrCorrupt;
use node::{NODE_SIZE, Node, NodeMut};
use rime_bufmgr::{BufferManager, OnMiss, PageId};
use std::sync::Arc;

/// Longest key: 512 bytes. A node must hold its two fences (each at most a
/// key) and still take two of the largest entries, so that splitting always
/// makes room (asserted below).
pub const MAX_KEY_LEN: usize = 512;
/// Largest bytes one leaf entry (slot + key + inline value) may take: 1480.
/// The reason is the split invariant: a node holds its header, two fences
/// of up to [`MAX_KEY_LEN`] and still two entries this large (asserted
/// below). It bounds the whole entry, not a worst-case key plus a
/// worst-case value each: a 23-byte key leaves room for a 1445-byte value,
/// a [`MAX_KEY_LEN`] key for a 956-byte one.
///
/// The rule ([`is_inline`]) is decided on the **full** key length, never on
/// the suffix a leaf stores after prefix truncation, so it depends on
/// `(key, value)` alone, not on which leaf holds the entry or what its
/// fences share; a split or merge that changes a leaf's prefix never makes
/// an inline entry "too large". Proof that every write makes progress:
///
/// 1. Every leaf entry is at most `MAX_LEAF_ENTRY`. Inline: it stores
///    `entry_size(suffix, value) <= entry_size(key, value) <= MAX_LEAF_ENTRY`
///    in any leaf, whatever its prefix. Large: `entry_size(suffix, 16)`,
///    at most `entry_size(MAX_KEY_LEN, 16)` (asserted below).
/// 2. Fences are keys or prefixes of keys: at most [`MAX_KEY_LEN`] each.
/// 3. So a leaf holding at most one entry besides the one being written
///    has `NODE_SIZE - HEADER_SIZE - 2 * MAX_KEY_LEN - MAX_LEAF_ENTRY >=
///    MAX_LEAF_ENTRY` bytes free and always takes it. A leaf that lacks
///    room therefore has at least two entries, and a leaf split leaves at
///    least one on each side: each retry after a split finds fewer
///    entries, so the write fits once at most one other is left. Merges build the merged node in a
///    private buffer and give up if it does not fit (`merge`), so they
///    never break (1) or (2).
pub const MAX_LEAF_ENTRY: usize = (NODE_SIZE - node::HEADER_SIZE - 2 * MAX_KEY_LEN) / 2;
/// Longest value ever stored inline: 1468 bytes, under the empty key (see
/// [`is_inline`]); a longer value always goes to an extent. Sizes the stack
/// buffer of the optimistic lookup (`get_into`).
pub const INLINE_VALUE_MAX: usize = inline_value_max(0);
/// Longest value stored inline under any key, even one of [`MAX_KEY_LEN`]:
/// 956 bytes.
pub const INLINE_VALUE_ANY_KEY: usize = inline_value_max(MAX_KEY_LEN);
/// Longest value: 16 MiB, one extent (well under the buffer manager's
/// `MAX_EXTENT_PAGES`, asserted below).
pub const MAX_VALUE_LEN: usize = 16 << 20;
/// A node using fewer bytes than this after a removal tries to merge with a
/// sibling (if the merged node fits in a page). A third, not a half: a
/// freshly split node is about half full, so a few removals right after a
/// split do not merge it straight back (no split/merge ping-pong).
pub const MERGE_THRESHOLD: usize = NODE_SIZE / 3;
/// Deepest tree accepted: 32 levels. The tree grows a level only when a
/// full root splits, and a full inner node has at least 3 separators
/// (asserted below), so each level multiplies the pages below it; 32
/// levels are far beyond what the region (2^28 pages at 1 TiB) can hold.
/// A deeper descent means a corrupt (cyclic) tree.
pub const MAX_DEPTH: usize = 32;

/// Longest value stored inline under a key of `key_len` bytes: what
/// [`MAX_LEAF_ENTRY`] leaves after the slot and the whole key.
pub const fn inline_value_max(key_len: usize) -> usize {
    MAX_LEAF_ENTRY
        .saturating_sub(node::SLOT_SIZE)
        .saturating_sub(key_len)
}

/// Whether `key_len`/`val_len` (the full key's length, not a leaf's
/// suffix: see [`MAX_LEAF_ENTRY`]) is stored inline in the leaf; if not,
/// the value goes to an extent and the leaf holds a 16-byte reference.
pub const fn is_inline(key_len: usize, val_len: usize) -> bool {
    val_len <= inline_value_max(key_len)
}

/// Largest bytes an entry can take in an inner node.
const MAX_INNER_ENTRY: usize = node::entry_size(MAX_KEY_LEN, 8);
// The split invariant for leaves (see MAX_LEAF_ENTRY) and inner nodes.
const _: () = assert!(node::HEADER_SIZE + 2 * MAX_KEY_LEN + 2 * MAX_LEAF_ENTRY <= NODE_SIZE);
const _: () = assert!(node::HEADER_SIZE + 2 * MAX_KEY_LEN + 3 * MAX_INNER_ENTRY <= NODE_SIZE);
// The values the doc comments give.
const _: () = assert!(MAX_LEAF_ENTRY == 1480);
const _: () = assert!(INLINE_VALUE_MAX == 1468 && INLINE_VALUE_ANY_KEY == 956);
// Every entry inline under the rule fits the invariant, with any key.
const _: () = assert!(node::entry_size(0, INLINE_VALUE_MAX) <= MAX_LEAF_ENTRY);
const _: () = assert!(node::entry_size(MAX_KEY_LEN, INLINE_VALUE_ANY_KEY) <= MAX_LEAF_ENTRY);
// An entry whose value went to an extent (its 16-byte reference in the
// leaf) is smaller than the inline entry it replaces, and fits too.
const _: () = assert!(is_inline(MAX_KEY_LEN, node::LargeRef::SIZE));
// The case the rule exists for: YCSB records (23-byte keys, 1 KiB values,
// plus rime-storage's 8-byte version) are inline, up to ~1.4 KiB values.
const _: () = assert!(is_inline(23, 1024 + 8) && is_inline(23, 1400 + 8));
const _: () = assert!(
    MAX_VALUE_LEN + rime_bufmgr::FRAME_HEADER_SIZE
        <= rime_bufmgr::MAX_EXTENT_PAGES * rime_bufmgr::PAGE_SIZE
);

/// One B+tree in a buffer pool. Cheap to share across threads (`&BTree`
/// is all any operation needs).
pub struct BTree {
    pub(crate) bm: Arc<BufferManager>,
    pub(crate) root: PageId,
    pub(crate) hooks: Arc<dyn TreeHooks>,
    /// Which leaves writers fight over (`contention.rs`; memory only).
    pub(crate) contention: contention::Contention,
}

impl BTree {
    /// Creates an empty tree (one empty leaf as root) and logs it as an
    /// [`SmoKind::Create`].
    pub fn create(bm: Arc<BufferManager>, hooks: Arc<dyn TreeHooks>) -> Result<BTree, TreeError> {
        let mut page = bm.alloc()?;
        NodeMut(page.payload_mut()).init(true, None, None);
        let root = page.pid();
        let tree = BTree {
            bm: bm.clone(),
            root,
            hooks,
            contention: contention::Contention::new(),
        };
        tree.log_smo(SmoKind::Create, &mut [&mut page], &[root], &[])?;
        drop(page);
        Ok(tree)
    }

    /// Opens the tree whose root is `root` (from the catalog).
    pub fn open(
        bm: Arc<BufferManager>,
        root: PageId,
        hooks: Arc<dyn TreeHooks>,
    ) -> Result<BTree, TreeError> {
        let page = bm.shared(root)?;
        let view = Node(page.payload());
        let ok = view.count().is_some()
            && view.lower_inf()
            && view.upper_inf()
            && view.free_after_compaction().is_some();
        if !ok {
            return Err(error::corrupt(root, "not a tree root"));
        }
        drop(page);
        Ok(BTree {
            bm,
            root,
            hooks,
            contention: contention::Contention::new(),
        })
    }

    /// Leaves split for contention since this tree was opened
    /// (`contention.rs`).
    pub fn contention_splits(&self) -> u64 {
        self.contention.splits()
    }

    /// The root page id: the tree's identity, stable for its life.
    pub fn root(&self) -> PageId {
        self.root
    }

    /// The buffer manager the tree lives in.
    pub fn buffer_manager(&self) -> &Arc<BufferManager> {
        &self.bm
    }

    /// Looks `key` up and hands its value to `f`, which runs under a shared
    /// latch on the leaf (and on the extent, for large values): `f` must
    /// not write to this tree.
    pub fn get<R>(&self, key: &[u8], f: impl FnOnce(&[u8]) -> R) -> Result<Option<R>, TreeError> {
        check_key(key)?;
        let leaf = self.leaf_shared(key, false)?;
        let pid = leaf.pid();
        let view = Node(leaf.payload());
        let (pos, found) = view.search(key).or_corrupt(pid, "slots")?;
        if !found {
            return Ok(None);
        }
        if view.is_large(pos).or_corrupt(pid, "slot")? {
            let r = olc::large_ref(view, pos).or_corrupt(pid, "large ref")?;
            return Ok(Some(self.read_large(r, f)?));
        }
        Ok(Some(f(view.value(pos).or_corrupt(pid, "slot")?)))
    }

    /// Looks `key` up and hands a copy of its value to `f`, which runs
    /// under no latch. An inline value is copied by an optimistic read
    /// (no write to any shared cache line, so readers of a hot leaf on
    /// other cores are not slowed); a large value is handed over as
    /// [`BTree::get`] does, under shared latches.
    pub fn get_copied<R>(
        &self,
        key: &[u8],
        f: impl FnOnce(&[u8]) -> R,
    ) -> Result<Option<R>, TreeError> {
        Ok(self.get_copied_stamped(key, f)?.0)
    }

    /// [`BTree::get_copied`], with the stamp of the leaf that answered
    /// (`None` for a large value, read under latches), for
    /// [`BTree::unchanged`].
    pub fn get_copied_stamped<R>(
        &self,
        key: &[u8],
        f: impl FnOnce(&[u8]) -> R,
    ) -> Result<(Option<R>, Option<LeafStamp>), TreeError> {
        self.get_copied_stamped_in(key, &mut [0u8; INLINE_VALUE_MAX], f)
    }

    /// [`BTree::get_copied_stamped`] copying through `buf`, the caller's
    /// scratch: a caller that keeps one saves zeroing a fresh one (1.4 KiB,
    /// ~100 instructions) on every read.
    pub fn get_copied_stamped_in<R>(
        &self,
        key: &[u8],
        buf: &mut [u8; INLINE_VALUE_MAX],
        f: impl FnOnce(&[u8]) -> R,
    ) -> Result<(Option<R>, Option<LeafStamp>), TreeError> {
        check_key(key)?;
        match self.probe(key, buf)? {
            olc::Probe::Absent(stamp) => Ok((None, Some(stamp))),
            olc::Probe::Inline(len, stamp) => Ok((Some(f(&buf[..len])), Some(stamp))),
            olc::Probe::Large => Ok((self.get(key, f)?, None)),
        }
    }

    /// Whether the leaf of `stamp` is unchanged since the lookup that
    /// stamped it (and not latched for a change now): then that lookup's
    /// answer stands. One load of the leaf's state word; `false` says
    /// only "look again".
    pub fn unchanged(&self, stamp: LeafStamp) -> bool {
        self.bm.unchanged_since(stamp.0)
    }

    /// Copies the value of `key` into `out` (replacing its contents);
    /// returns whether the key exists. Inline values are copied by an
    /// optimistic read that takes no latch (the fast path).
    pub fn get_into(&self, key: &[u8], out: &mut Vec<u8>) -> Result<bool, TreeError> {
        let found = self.get_copied(key, |v| {
            out.clear();
            out.extend_from_slice(v);
        })?;
        Ok(found.is_some())
    }

    /// Whether `key` is present.
    pub fn contains(&self, key: &[u8]) -> Result<bool, TreeError> {
        check_key(key)?;
        let mut buf = [0u8; INLINE_VALUE_MAX];
        Ok(!matches!(self.probe(key, &mut buf)?, olc::Probe::Absent(_)))
    }

    /// A write handle that stamps `lsn` on every page its writes change
    /// (the storage layer's commit LSN for these writes; see [`hooks`]).
    pub fn at_lsn(&self, lsn: u64) -> Writer<'_> {
        Writer {
            tree: self,
            lsn,
            merge_on_miss: OnMiss::Load,
            near: None,
        }
    }

    /// Inserts `key -> value`; [`TreeError::Exists`] if `key` is present.
    pub fn insert(&self, key: &[u8], value: &[u8]) -> Result<(), TreeError> {
        self.at_lsn(0).insert(key, value)
    }
    /// Inserts or replaces; returns whether the key was present.
    pub fn upsert(&self, key: &[u8], value: &[u8]) -> Result<bool, TreeError> {
        self.at_lsn(0).upsert(key, value)
    }
    /// Changes the value in place (same length); `None` if absent.
    pub fn update<R>(
        &self,
        key: &[u8],
        f: impl FnOnce(&mut [u8]) -> R,
    ) -> Result<Option<R>, TreeError> {
        self.at_lsn(0).update(key, f)
    }
    /// Read-modify-write: see [`Writer::rmw`].
    pub fn rmw(
        &self,
        key: &[u8],
        f: impl FnMut(Option<&[u8]>) -> Option<Vec<u8>>,
    ) -> Result<(), TreeError> {
        self.at_lsn(0).rmw(key, f)
    }
    /// Removes `key`; returns whether it was present.
    pub fn remove(&self, key: &[u8]) -> Result<bool, TreeError> {
        self.at_lsn(0).remove(key)
    }

    /// Reports `smo` to the hooks with `pages` still latched, then stamps
    /// the returned LSN on all of them (hooks contract, steps 2-3). If it
    /// could not be logged, the pages get [`UNLOGGED_LSN`] (they never
    /// reach the disk) and the error is returned.
    pub(crate) fn log_smo(
        &self,
        kind: SmoKind,
        pages: &mut [&mut rime_bufmgr::ExclusiveGuard<'_>],
        allocated: &[PageId],
        freed: &[(PageId, u32)],
    ) -> Result<(), TreeError> {
        // Scans that kept a page from an earlier section learn that it
        // changed or went (`epoch`); the pages are still latched.
        for pid in pages
            .iter()
            .map(|g| g.pid())
            .chain(freed.iter().map(|f| f.0))
        {
            epoch::bump(pid);
        }
        let images: Vec<(PageId, &[u8])> = pages.iter().map(|g| (g.pid(), g.payload())).collect();
        let logged = self.hooks.on_smo(&Smo {
            kind,
            root: self.root,
            pages: &images,
            allocated,
            freed,
        });
        drop(images);
        let lsn = *logged.as_ref().unwrap_or(&UNLOGGED_LSN);
        if lsn != 0 {
            for page in pages.iter_mut() {
                page.set_lsn(lsn.max(page.lsn()));
            }
        }
        logged.map(drop).map_err(TreeError::from)
    }
}

pub(crate) fn check_key(key: &[u8]) -> Result<(), TreeError> {
    if key.len() > MAX_KEY_LEN {
        return Err(TreeError::KeyTooLarge {
            len: key.len(),
            max: MAX_KEY_LEN,
        });
    }
    Ok(())
}
