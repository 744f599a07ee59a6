//! The durability hook: how the storage layer logs structure modifications.
//!
//! Contract (see also `docs/btree.md`):
//!
//! 1. The tree performs a structure modification (SMO: create, split, root
//!    split, merge, root collapse, redistribute, destroy) with every affected page latched
//!    exclusively.
//! 2. Still holding the latches, it calls [`TreeHooks::on_smo`] with an
//!    [`Smo`] carrying the after-image of every page it wrote and the ids
//!    of the pages it allocated and freed. The storage layer appends ONE log
//!    record (atomic: recovery sees the whole SMO or none of it) and returns
//!    its LSN.
//! 3. The tree stamps that LSN on every written page
//!    (`ExclusiveGuard::set_lsn`), then frees pages and unlatches. The
//!    buffer manager's write-back hook then keeps those pages in memory until
//!    the log is durable up to the LSN (write-ahead rule).
//!
//! Data changes (insert, upsert, update, rmw, remove) are logged logically
//! by the storage layer *before* it applies them, with the LSN it passes in
//! through [`BTree::at_lsn`](crate::BTree::at_lsn); the tree stamps that LSN
//! on the leaf (and on a new extent) it writes.

use rime_bufmgr::PageId;

/// What kind of structure modification an [`Smo`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SmoKind {
    /// A new tree: its root page.
    Create,
    /// A node split into a new left sibling and itself; the parent gained
    /// a separator.
    Split,
    /// The root's contents moved into two new children; the root (same
    /// page id) became an inner node with one separator.
    RootSplit,
    /// A left node merged into its right sibling; the parent lost a
    /// separator; the left node was freed.
    Merge,
    /// The root's only child was pulled up into the root and freed.
    RootCollapse,
    /// The whole tree was freed.
    Destroy,
    /// Entries moved between two adjacent leaves under one parent (a full
    /// leaf made room instead of splitting); the parent's separator
    /// between them changed. Nothing allocated or freed.
    Redistribute,
    /// A large value's extent was allocated (`allocated` lists all of its
    /// pages; `pages` is empty: the value itself is logged by the data
    /// change that writes it). Logged so that recovery knows the pages are
    /// in use before any leaf that points to them can reach the disk.
    ExtentAlloc,
}

/// One structure modification, described by after-images: redo is "write
/// each image to its page if the page's LSN is older than the record".
#[derive(Debug)]
pub struct Smo<'a> {
    pub kind: SmoKind,
    /// The tree's root page id (the tree's identity in the catalog).
    pub root: PageId,
    /// Every page the SMO wrote, with its full node payload afterwards.
    pub pages: &'a [(PageId, &'a [u8])],
    /// Pages this SMO allocated (they also appear in `pages`).
    pub allocated: &'a [PageId],
    /// Frames this SMO freed: (first page id, pages). Their contents are
    /// gone; the storage layer returns them to its allocation state.
    pub freed: &'a [(PageId, u32)],
}

/// Stamped on the pages of an SMO the hooks could not log. The storage
/// layer's write-back hook refuses a page carrying it, forever: its memory
/// holds a change the log does not, so it must never reach the disk.
pub const UNLOGGED_LSN: u64 = u64::MAX;

/// An SMO could not be logged (the log failed). The tree stamps the SMO's
/// pages with [`UNLOGGED_LSN`] and returns this as
/// [`TreeError::SmoNotLogged`](crate::TreeError): the operation fails, and
/// the storage layer, which sees the error, stops trusting its state.
#[derive(Debug, thiserror::Error)]
#[error("logging a structure modification failed: {reason}")]
pub struct SmoNotLogged {
    pub reason: String,
}

/// Implemented by the storage layer. Called with latches held: must not
/// call back into the tree, and should only append to the log (no waiting
/// for durability).
pub trait TreeHooks: Send + Sync {
    /// Logs `smo` as one atomic record; returns the LSN to stamp on every
    /// page in `smo.pages` (0: do not stamp).
    fn on_smo(&self, smo: &Smo<'_>) -> Result<u64, SmoNotLogged>;

    /// What to do with an extent a leaf slot stopped referencing (its value
    /// was replaced or removed). Called with the leaf latched.
    ///
    /// Recovery's redo answers [`ExtentFree::Keep`]: it replays writes onto
    /// leaves that may be older than the log, so the reference it replaces
    /// can be stale, naming pages that were freed and reused (as tree nodes
    /// or other extents) before the crash. Freeing them again would hand a
    /// live page to the allocator. Redo keeps them, and the sweep that ends
    /// recovery returns every page no tree reaches.
    fn on_extent_unreferenced(&self, _first: PageId, _pages: u32) -> ExtentFree {
        ExtentFree::Free
    }
}

/// The answer of [`TreeHooks::on_extent_unreferenced`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExtentFree {
    /// Return the pages to the allocator now.
    Free,
    /// Leave them allocated; someone else decides (recovery's sweep).
    Keep,
}

/// Hooks that log nothing (tests, benchmarks, volatile trees).
#[derive(Clone, Copy, Debug, Default)]
pub struct NoHooks;

impl TreeHooks for NoHooks {
    fn on_smo(&self, _smo: &Smo<'_>) -> Result<u64, SmoNotLogged> {
        Ok(0)
    }
}
