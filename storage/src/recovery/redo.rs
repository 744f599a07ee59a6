//! Recovery's redo passes: SMO after-images (step 4, physical), then
//! commits through the trees (step 5, logical).

use super::analysis::{AllocModel, bad_smo};
use super::rec_err;
use crate::error::OpenError;
use crate::hooks::LogHooks;
use crate::smo::decode_smo;
use crate::sweep::RedoHooks;
use crate::wal::{Lsn, OwnedRecord, WalOptions, WalReader};
use rime_btree::BTree;
use rime_bufmgr::{BufferManager, PageError};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

/// The log records to replay: `[from, end)`.
pub(super) struct Span<'a> {
    pub wal_dir: &'a Path,
    pub from: Lsn,
    pub end: Lsn,
    pub opts: &'a WalOptions,
}

/// Step 4: writes each SMO after-image to its page if the page is in use
/// at the end of the log and its LSN is older than the record. A page
/// never written, beyond the file (`file_pages`), or torn gets the image
/// through `BufferManager::recover_page`.
pub(super) fn smo_images(
    span: &Span<'_>,
    bm: &BufferManager,
    model: &AllocModel,
    file_pages: u64,
) -> Result<(), OpenError> {
    records(span, |lsn, rec| {
        let OwnedRecord::Smo(payload) = rec else {
            return Ok(());
        };
        let smo = decode_smo(payload).ok_or_else(|| bad_smo(lsn))?;
        for &(pid, image) in &smo.pages {
            if model.is_free(pid) {
                continue; // freed later in the log: its image is moot
            }
            let mut page = match bm.exclusive(pid) {
                Ok(g) if g.lsn() >= lsn.0 => continue,
                Ok(g) => g,
                Err(PageError::NeverWritten { .. } | PageError::Corrupt { .. }) => {
                    bm.recover_page(pid).map_err(rec_err)?
                }
                Err(PageError::Io { .. }) if pid >= file_pages => {
                    bm.recover_page(pid).map_err(rec_err)?
                }
                Err(e) => return Err(rec_err(e)),
            };
            image.write_to(page.payload_mut());
            page.set_lsn(lsn.0);
        }
        Ok(())
    })
}

/// Step 5: re-applies every commit in log order through the trees
/// (`upsert(key, lsn ‖ value)` / `remove(key)`), skipping writes to a tree
/// below its last `Destroy`. The trees run with [`RedoHooks`]: SMOs this
/// causes are logged after the old end, and no extent is freed.
pub(super) fn commits(
    span: &Span<'_>,
    bm: &Arc<BufferManager>,
    hooks: &Arc<LogHooks>,
    last_destroy: &HashMap<u32, Lsn>,
) -> Result<(), OpenError> {
    let redo_hooks = Arc::new(RedoHooks(hooks.clone()));
    let mut trees: HashMap<u32, BTree> = HashMap::new();
    let mut stored = Vec::new();
    records(span, |lsn, rec| {
        let OwnedRecord::Commit(writes) = rec else {
            return Ok(());
        };
        for w in writes {
            if last_destroy.get(&w.tree.0).is_some_and(|&d| d > lsn) {
                continue; // the tree was dropped later
            }
            let tree = match trees.entry(w.tree.0) {
                std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
                std::collections::hash_map::Entry::Vacant(v) => v.insert(
                    BTree::open(bm.clone(), u64::from(w.tree.0), redo_hooks.clone())
                        .map_err(rec_err)?,
                ),
            };
            crate::commit::apply_one(tree, lsn, &w.key, w.value.as_deref(), None, &mut stored)
                .map_err(rec_err)?;
        }
        Ok(())
    })
}

/// Iterates the records of the log from `from`, stopping before `end`.
fn records(
    span: &Span<'_>,
    mut f: impl FnMut(Lsn, &OwnedRecord) -> Result<(), OpenError>,
) -> Result<(), OpenError> {
    for rec in WalReader::open(span.wal_dir, span.from, span.opts)? {
        let rec = rec?;
        if rec.lsn >= span.end {
            break;
        }
        f(rec.lsn, &rec.record)?;
    }
    Ok(())
}
