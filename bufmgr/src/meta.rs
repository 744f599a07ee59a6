//! Per-page metadata beside the pool: the state word, and a flags word with
//! the dirty and loading bits and the length of the frame that starts here.
//!
//! The array is one lazily backed anonymous region of [`PageMeta`]s, so its
//! cost follows the pages in use, not the pool's virtual size.
//!
//! ```text
//! flags  63                32 31            5   4   3   2   1   0
//!       +--------------------+----------------+---+---+---+---+---+
//!       |  frame pages (u32) |    (unused)    | R | W | F | L | D |
//!       +--------------------+----------------+---+---+---+---+---+
//!  D  dirty: changed since last written (set under an exclusive latch,
//!     cleared by a write-back under a shared latch: never both at once)
//!  L  loading: the exclusive latch is held by a read from disk; waiters
//!     sleep instead of spinning
//!  F  failed: the frame's last load failed, and its error waits in the
//!     pool's record of failed loads for the waiters of that load
//!     (`crate::wait::LoadFailures`); cleared by the next load that succeeds
//!  W  writing: a loader's write of a copy of this page is in flight
//!     (`crate::evict`, "Write-back through a loader"); set under a shared
//!     latch, cleared by the write's completion, which holds no latch. No
//!     other write of the page starts while it is set.
//!  R  freed while writing: the page was freed with W set; the write's
//!     completion, not the free, gives its id back to the allocator
//!  frame pages: 1 for a page, n for the head of an n-page extent, 0 for a
//!     page id not (yet) known to head a frame
//! ```

use crate::state::PageState;
use crate::sync::{AtomicU64, Ordering};

const DIRTY: u64 = 1 << 0;
const LOADING: u64 = 1 << 1;
const FAILED: u64 = 1 << 2;
const WRITING: u64 = 1 << 3;
const FREED_WHILE_WRITING: u64 = 1 << 4;
const FRAME_SHIFT: u32 = 32;

#[repr(C, align(16))]
pub struct PageMeta {
    pub state: PageState,
    flags: AtomicU64,
}

const _: () = assert!(std::mem::size_of::<PageMeta>() == 16, "two words per page");

impl PageMeta {
    /// A metadata slot in a given state (the pool's slots are zeroed memory;
    /// this is for the loom models).
    #[cfg(all(loom, test))]
    pub fn new(word: crate::state::StateWord) -> Self {
        PageMeta {
            state: PageState::new(word),
            flags: AtomicU64::new(0),
        }
    }

    #[inline]
    pub fn is_dirty(&self) -> bool {
        self.flags.load(Ordering::Relaxed) & DIRTY != 0
    }
    #[inline]
    pub fn set_dirty(&self, dirty: bool) {
        if dirty {
            self.flags.fetch_or(DIRTY, Ordering::Relaxed);
        } else {
            self.flags.fetch_and(!DIRTY, Ordering::Relaxed);
        }
    }
    #[inline]
    pub fn is_loading(&self) -> bool {
        self.flags.load(Ordering::Acquire) & LOADING != 0
    }
    pub fn set_loading(&self, loading: bool) {
        if loading {
            self.flags.fetch_or(LOADING, Ordering::AcqRel);
        } else {
            self.flags.fetch_and(!LOADING, Ordering::AcqRel);
        }
    }
    #[inline]
    pub fn has_failed(&self) -> bool {
        self.flags.load(Ordering::Acquire) & FAILED != 0
    }
    /// Sets or clears the failed flag; returns whether it was set before.
    pub fn set_failed(&self, failed: bool) -> bool {
        let before = if failed {
            self.flags.fetch_or(FAILED, Ordering::AcqRel)
        } else {
            self.flags.fetch_and(!FAILED, Ordering::AcqRel)
        };
        before & FAILED != 0
    }
    #[inline]
    pub fn is_writing(&self) -> bool {
        self.flags.load(Ordering::Acquire) & WRITING != 0
    }
    /// Sets W if it is clear: a write of this page's copy is about to be
    /// submitted. The caller holds a shared latch. False: another loader
    /// holding a shared latch too got there first (its write is the one).
    pub fn try_begin_writing(&self) -> bool {
        self.flags.fetch_or(WRITING, Ordering::AcqRel) & WRITING == 0
    }
    /// Clears W (and R) at the write's completion; returns whether the page
    /// was freed meanwhile (R: its id is the completion's to give back).
    pub fn end_writing(&self) -> bool {
        let before = self
            .flags
            .fetch_and(!(WRITING | FREED_WHILE_WRITING), Ordering::AcqRel);
        debug_assert!(before & WRITING != 0, "ending a write that did not begin");
        before & FREED_WHILE_WRITING != 0
    }
    /// For a free: if W is set, sets R and returns true (the completion
    /// gives the id back); else returns false (the free gives it back).
    /// One atomic step against `end_writing`, so exactly one of the two
    /// gives the id back.
    pub fn defer_free_if_writing(&self) -> bool {
        self.flags
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |f| {
                (f & WRITING != 0).then_some(f | FREED_WHILE_WRITING)
            })
            .is_ok()
    }
    pub fn frame_pages(&self) -> u32 {
        (self.flags.load(Ordering::Relaxed) >> FRAME_SHIFT) as u32
    }
    /// One read-modify-write, so that it never undoes a flag another
    /// thread changes at the same moment.
    pub fn set_frame_pages(&self, pages: u32) {
        let low = (1 << FRAME_SHIFT) - 1;
        let _ = self
            .flags
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |f| {
                Some(((pages as u64) << FRAME_SHIFT) | (f & low))
            });
    }
}
