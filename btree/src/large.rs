//! Values above [`INLINE_VALUE_MAX`](crate::INLINE_VALUE_MAX): one
//! contiguous page extent each, so a reader gets the whole value as one
//! `&[u8]` over contiguous memory (vmcache maps an extent's pages at
//! consecutive addresses).
//!
//! ```text
//!  leaf slot value (16 bytes, slot flag LARGE)     extent (pages frames)
//!  +----------------+----------------+             +--------+----------------------+
//!  | first pid  u64 | length  u64    |  ------->   | bufmgr | value bytes ... pad  |
//!  +----------------+----------------+             | header |                      |
//!                                                  +--------+----------------------+
//! ```
//!
//! Ownership: exactly one leaf slot refers to an extent. Latch order is
//! leaf, then extent: readers hold the leaf shared while they read the
//! extent; writers hold the leaf exclusively while they free or update it.
//! A new extent is written before any latch is taken and becomes visible
//! only when its reference is installed in the leaf.
//!
//! Durability: allocating an extent is reported to the hooks as an
//! [`SmoKind::ExtentAlloc`] (its pages, no images: the value is in the data
//! change's own log record). The leaf that installs the reference is stamped
//! with that record's LSN, so the write-ahead rule keeps the leaf off the
//! disk until the allocation is durable: recovery never finds a reference
//! to pages it believes free. Frees are not logged: replaying the data
//! change that dropped the value frees it again; an extent freed by a
//! change the log does not reach is leaked, never reused while referenced.

/// A freshly written extent, and the LSN of the record that logged its
/// allocation (0 when the hooks log nothing).
#[derive(Clone, Copy)]
pub(crate) struct NewExtent {
    pub r: LargeRef,
    pub alloc_lsn: u64,
}

use crate::hooks::{Smo, SmoKind};
use crate::node::LargeRef;
use crate::{BTree, TreeError};
use rime_bufmgr::{FRAME_HEADER_SIZE, PAGE_SIZE};

/// Pages of the extent holding a `len`-byte value.
pub(crate) fn extent_pages(len: u64) -> u32 {
    (len as usize + FRAME_HEADER_SIZE).div_ceil(PAGE_SIZE) as u32
}

impl BTree {
    /// Writes `value` to a new extent and logs its allocation.
    pub(crate) fn write_large(&self, value: &[u8], lsn: u64) -> Result<NewExtent, TreeError> {
        let len = value.len() as u64;
        let pages = extent_pages(len);
        let mut extent = self.bm.alloc_extent(pages as usize)?;
        let pid = extent.pid();
        let allocated: Vec<_> = (pid..pid + u64::from(pages)).collect();
        let alloc_lsn = self.hooks.on_smo(&Smo {
            kind: SmoKind::ExtentAlloc,
            root: self.root,
            pages: &[],
            allocated: &allocated,
            freed: &[],
        });
        extent.payload_mut()[..value.len()].copy_from_slice(value);
        let stamp = lsn.max(alloc_lsn);
        if stamp != 0 {
            extent.set_lsn(stamp);
        }
        Ok(NewExtent {
            r: LargeRef { pid, len },
            alloc_lsn,
        })
    }

    /// Frees the extent behind `r` (its leaf slot is latched exclusively)
    /// without reading it.
    pub(crate) fn free_large(&self, r: LargeRef) -> Result<(), TreeError> {
        self.bm.free_frame(r.pid, extent_pages(r.len))?;
        Ok(())
    }

    /// Runs `f` on the value behind `r` under a shared extent latch.
    pub(crate) fn read_large<R>(
        &self,
        r: LargeRef,
        f: impl FnOnce(&[u8]) -> R,
    ) -> Result<R, TreeError> {
        let extent = self.bm.shared_extent(r.pid, extent_pages(r.len))?;
        let bytes = extent
            .payload()
            .get(..r.len as usize)
            .ok_or_else(|| crate::error::corrupt(r.pid, "extent shorter than its value"))?;
        Ok(f(bytes))
    }

    /// Runs `f` on the value behind `r` in place, stamping `lsn`.
    pub(crate) fn update_large<R>(
        &self,
        r: LargeRef,
        lsn: u64,
        f: impl FnOnce(&mut [u8]) -> R,
    ) -> Result<R, TreeError> {
        let mut extent = self.bm.exclusive_extent(r.pid, extent_pages(r.len))?;
        if lsn != 0 {
            let lsn = lsn.max(extent.lsn());
            extent.set_lsn(lsn);
        }
        let bytes = extent
            .payload_mut()
            .get_mut(..r.len as usize)
            .ok_or_else(|| crate::error::corrupt(r.pid, "extent shorter than its value"))?;
        Ok(f(bytes))
    }
}
