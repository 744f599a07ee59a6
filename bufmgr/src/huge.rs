//! Transparent huge pages while the database fits in the pool.
//!
//! An in-memory lookup touches, per tree level, one page and that page's
//! state word in the metadata region. With 4 KiB pages a tree of ten
//! million 128-byte tuples spans ~1.5 GB of pool, ~370,000 pages, far more
//! than the TLB maps, so each of those touches also walks the page table,
//! and the walk's own loads miss the cache. With 2 MiB pages the same tree
//! needs ~750 TLB entries. (`rndread` on this machine: see `docs/btree.md`.)
//!
//! Huge pages and this pool disagree in two ways: eviction gives back 4 KiB
//! at a time, and a huge page faulted in for one 4 KiB page holds 2 MiB of
//! memory the budget counts as 4 KiB. So the pool uses them only while
//! neither can happen:
//!
//! 1. **Open.** If every page of the file fits in the budget, the pool's
//!    first `pool_bytes` (rounded down to whole huge pages) are advised
//!    `MADV_HUGEPAGE`. Page ids are handed out from 1 upwards and reused
//!    from the free list, so that prefix is where an in-memory database
//!    lives, and what it can hold is the budget.
//! 2. **First eviction round.** The database has outgrown the pool: the
//!    prefix is advised `MADV_NOHUGEPAGE`, and from then on every page the
//!    pool faults in is 4 KiB. Huge pages already there stay until eviction
//!    releases one of their 4 KiB pages; the kernel then splits it, and
//!    frees the released parts when memory runs short (its deferred split).
//!    The prefix never goes back to huge pages in this process.
//!
//! The metadata region (16 bytes per page, written from page 1 up, never
//! released) is advised `MADV_HUGEPAGE` whole at open: its populated part is
//! dense, so a huge page there wastes at most the one at its end.

use crate::region::Region;
use crate::sync::{AtomicBool, Ordering};

/// The huge page size of x86-64 and arm64 with 4 KiB base pages.
pub const HUGE_PAGE_BYTES: usize = 2 << 20;

const _: () = assert!(
    HUGE_PAGE_BYTES.is_multiple_of(crate::PAGE_SIZE),
    "a huge page holds whole pages"
);

/// Whether the pool may use transparent huge pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum HugePages {
    /// While every page fits in the budget (the default; the protocol is in
    /// this module's docs). Kernels without transparent huge pages, or with
    /// them set to `never`, simply keep 4 KiB pages.
    #[default]
    WhileFits,
    /// Never: 4 KiB pages only.
    Never,
}

/// The pool's huge-page prefix and whether it is still advised huge.
pub(crate) struct HugePrefix {
    len_bytes: usize,
    active: AtomicBool,
}

impl HugePrefix {
    /// Step 1: advises the metadata region, and the pool's prefix if
    /// `file_pages` fit in `budget_pages`. A kernel that refuses the advice
    /// (built without transparent huge pages) leaves 4 KiB pages, which is
    /// only slower; it is logged, not an error.
    pub(crate) fn advise(
        pool: &Region,
        meta: &Region,
        mode: HugePages,
        budget_pages: u64,
        file_pages: u64,
    ) -> HugePrefix {
        let none = HugePrefix {
            len_bytes: 0,
            active: AtomicBool::new(false),
        };
        if mode == HugePages::Never {
            return none;
        }
        if let Err(e) = meta.advise_huge(0, meta.size_bytes(), true) {
            tracing::debug!(error = %e, "no huge pages for the page metadata");
            return none;
        }
        let budget_bytes = budget_pages as usize * crate::PAGE_SIZE;
        let len_bytes = (budget_bytes.min(pool.size_bytes()) / HUGE_PAGE_BYTES) * HUGE_PAGE_BYTES;
        if file_pages > budget_pages || len_bytes == 0 {
            return none;
        }
        match pool.advise_huge(0, len_bytes, true) {
            Ok(()) => HugePrefix {
                len_bytes,
                active: AtomicBool::new(true),
            },
            Err(e) => {
                tracing::debug!(error = %e, "no huge pages for the pool");
                none
            }
        }
    }

    /// The prefix's length in bytes (0 if none was advised).
    pub(crate) fn len_bytes(&self) -> usize {
        self.len_bytes
    }

    /// Whether the prefix is advised huge (step 1 done, step 2 not yet).
    pub(crate) fn is_active(&self) -> bool {
        self.active.load(Ordering::Relaxed)
    }

    /// Step 2, by the first eviction round; later calls cost one load.
    pub(crate) fn end(&self, pool: &Region) {
        if !self.is_active() || !self.active.swap(false, Ordering::Relaxed) {
            return;
        }
        if let Err(e) = pool.advise_huge(0, self.len_bytes, false) {
            // Only khugepaged's collapsing continues; eviction still splits
            // what it releases.
            tracing::warn!(error = %e, "ending huge pages for the pool failed");
        }
    }
}
