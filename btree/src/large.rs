//! Values too large for their leaf entry ([`is_inline`](crate::is_inline):
//! the entry would exceed [`MAX_LEAF_ENTRY`](crate::MAX_LEAF_ENTRY)): one
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
//! to pages it believes free. Frees are not logged, and redo does not
//! repeat them (a replayed write may replace a *stale* reference whose pages
//! were reused before the crash): the hooks keep such extents
//! ([`TreeHooks::on_extent_unreferenced`](crate::TreeHooks)) and the
//! storage layer's recovery ends with a sweep that frees every page no tree
//! reaches ([`BTree::for_each_frame`]).

/// A freshly written extent, and the LSN of the record that logged its
/// allocation (0 when the hooks log nothing).
#[derive(Clone, Copy)]
pub(crate) struct NewExtent {
    pub r: LargeRef,
    pub alloc_lsn: u64,
}

use crate::hooks::{ExtentFree, Smo, SmoKind};
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
        let logged = self.hooks.on_smo(&Smo {
            kind: SmoKind::ExtentAlloc,
            root: self.root,
            pages: &[],
            allocated: &allocated,
            freed: &[],
        });
        let alloc_lsn = match logged {
            Ok(lsn) => lsn,
            Err(e) => {
                extent.set_lsn(crate::UNLOGGED_LSN);
                return Err(e.into());
            }
        };
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
    /// without reading it, unless the hooks say to keep it
    /// ([`TreeHooks::on_extent_unreferenced`](crate::TreeHooks)).
    pub(crate) fn free_large(&self, r: LargeRef) -> Result<(), TreeError> {
        let pages = extent_pages(r.len);
        match self.hooks.on_extent_unreferenced(r.pid, pages) {
            ExtentFree::Free => self.bm.free_frame(r.pid, pages)?,
            ExtentFree::Keep => {}
        }
        Ok(())
    }

    /// Runs `f` on the value behind `r` under a shared extent latch.
    pub(crate) fn read_large<R>(
        &self,
        r: LargeRef,
        f: impl FnOnce(&[u8]) -> R,
    ) -> Result<R, TreeError> {
        self.read_large_noting(r, None, f)
    }

    /// [`BTree::read_large`], appending the extent's stamp to `noted`.
    pub(crate) fn read_large_noting<R>(
        &self,
        r: LargeRef,
        noted: Option<&mut Vec<crate::LeafStamp>>,
        f: impl FnOnce(&[u8]) -> R,
    ) -> Result<R, TreeError> {
        let extent = self.bm.shared_extent(r.pid, extent_pages(r.len))?;
        if let Some(noted) = noted {
            noted.push(crate::LeafStamp(extent.stamp()));
        }
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

#[cfg(test)]
mod tests {
    use crate::write::Stored;
    use rime_bufmgr::BufferManager;

    /// Trees written when every value above 512 bytes went to an extent
    /// hold references the current rule would not make (a 600-byte value
    /// under a short key is inline now). They stay readable, valid and
    /// updatable; rewriting the value stores it inline and frees the extent.
    #[test]
    fn references_made_under_the_old_512_byte_rule_stay_valid() {
        let (_dir, bm, tree) = crate::test_tree::small_tree();
        let (key, value) = (&b"old"[..], vec![0x5A; 600]);
        assert!(crate::is_inline(key.len(), value.len()));
        // Install it the old way: an extent and a reference.
        let e = tree.write_large(&value, 0).unwrap();
        let w = tree.at_lsn(0);
        let existed: bool = w
            .on_leaf(key, |leaf, pos, found| {
                w.install(leaf, key, pos, found, &Stored::Large(e))
            })
            .unwrap();
        assert!(!existed);
        assert_eq!(tree.verify().unwrap().large_values, 1);
        let mut out = Vec::new();
        assert!(tree.get_into(key, &mut out).unwrap() && out == value);
        tree.update(key, |v| v[599] = 1).unwrap();
        assert_eq!(tree.get(key, |v| v[599]).unwrap(), Some(1));
        assert_eq!(tree.verify().unwrap().large_values, 1, "update is in place");
        let free = |bm: &BufferManager| bm.alloc_state().free.len();
        let before = free(&bm);
        tree.upsert(key, &value).unwrap();
        assert!(free(&bm) > before, "the old extent was freed");
        let stats = tree.verify().unwrap();
        assert_eq!((stats.large_values, stats.extent_pages), (0, 0));
        assert!(tree.get_into(key, &mut out).unwrap() && out == value);
    }
}
