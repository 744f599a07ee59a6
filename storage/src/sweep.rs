//! The end of recovery: which pages the trees really own.
//!
//! Redo replays logged writes onto leaves that may be older than the log.
//! Replacing a value on such a leaf drops a reference that can be stale:
//! its extent may have been freed and its pages reused (as tree nodes or
//! other extents) before the crash. Freeing it again would hand a live page
//! to the allocator ("extent page owned twice", torn fences, redo spinning
//! on its own latched leaf). So redo frees no extent ([`RedoHooks`] keeps
//! them all), and afterwards this sweep walks the catalog and every tree it
//! names and returns every page none of them reaches. That also reclaims
//! what a crash leaks by design (a tree created but never named, extents of
//! values whose replacing commit was the last thing logged).

use crate::error::DbError;
use crate::hooks::LogHooks;
use rime_btree::{BTree, ExtentFree, Smo, SmoNotLogged, TreeHooks};
use rime_bufmgr::{BufferManager, PageId};
use std::sync::Arc;

/// The hooks redo runs the trees with: SMOs are logged as always; extents
/// a replayed write stops referencing are kept for the sweep.
pub(crate) struct RedoHooks(pub Arc<LogHooks>);

impl TreeHooks for RedoHooks {
    fn on_smo(&self, smo: &Smo<'_>) -> Result<u64, SmoNotLogged> {
        self.0.on_smo(smo)
    }

    fn on_extent_unreferenced(&self, _first: PageId, _pages: u32) -> ExtentFree {
        ExtentFree::Keep
    }
}

/// What the sweep found.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Swept {
    /// Pages some tree reaches.
    pub live_pages: u64,
    /// Pages returned to the free map.
    pub reclaimed_pages: u64,
}

/// Marks every page the catalog and its trees reach, then frees the rest.
/// No page may be reached twice (two owners is corruption, reported with
/// the page id). Nothing else may use the pool meanwhile.
pub(crate) fn sweep(
    bm: &Arc<BufferManager>,
    catalog: &BTree,
    hooks: &Arc<LogHooks>,
) -> Result<Swept, DbError> {
    let mut live = vec![false; bm.allocated_pages() as usize];
    let mut twice = None;
    let mut live_pages = 0u64;
    let mut mark = |first: PageId, pages: u32| {
        for pid in first..first + u64::from(pages) {
            match live.get_mut(pid as usize) {
                Some(seen @ false) => {
                    *seen = true;
                    live_pages += 1;
                }
                _ => {
                    twice.get_or_insert(pid);
                }
            }
        }
    };
    catalog.for_each_frame(&mut mark)?;
    for (_, id) in crate::catalog::entries(catalog)? {
        BTree::open(bm.clone(), u64::from(id.0), hooks.clone())?.for_each_frame(&mut mark)?;
    }
    if let Some(pid) = twice {
        return Err(DbError::Corrupt(format!(
            "page {pid} is owned twice, or lies beyond the allocated pages"
        )));
    }
    let reclaimed_pages = bm.reclaim_unreachable(|pid| live.get(pid as usize) == Some(&true))?;
    Ok(Swept {
        live_pages,
        reclaimed_pages,
    })
}
