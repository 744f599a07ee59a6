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

use crate::node::LargeRef;
use crate::{BTree, TreeError};
use rime_bufmgr::{FRAME_HEADER_SIZE, PAGE_SIZE};

/// Pages of the extent holding a `len`-byte value.
pub(crate) fn extent_pages(len: u64) -> u32 {
    (len as usize + FRAME_HEADER_SIZE).div_ceil(PAGE_SIZE) as u32
}

impl BTree {
    /// Writes `value` to a new extent; returns its reference.
    pub(crate) fn write_large(&self, value: &[u8], lsn: u64) -> Result<LargeRef, TreeError> {
        let len = value.len() as u64;
        let mut extent = self.bm.alloc_extent(extent_pages(len) as usize)?;
        extent.payload_mut()[..value.len()].copy_from_slice(value);
        if lsn != 0 {
            extent.set_lsn(lsn);
        }
        Ok(LargeRef {
            pid: extent.pid(),
            len,
        })
    }

    /// Frees the extent behind `r` (its leaf slot is latched exclusively).
    pub(crate) fn free_large(&self, r: LargeRef) -> Result<(), TreeError> {
        let extent = self.bm.exclusive_extent(r.pid, extent_pages(r.len))?;
        self.bm.free(extent);
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
