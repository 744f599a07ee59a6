//! The two hooks that tie the pool and the trees to the log:
//!
//! * [`LogHooks`] (`rime_btree::TreeHooks`): every structure modification
//!   becomes ONE `Smo` log record of after-images, so recovery never sees
//!   half a split.
//! * [`WalBeforeData`] (`rime_bufmgr::WriteBackHook`): before a dirty page
//!   is written back, the log is forced up to the page's LSN.
//!
//! `Smo` payload (all integers little-endian):
//!
//! ```text
//!  kind u8 | root u64 | n_alloc u32 | n_alloc × pid u64
//!          | n_freed u32 | n_freed × (pid u64, pages u32)
//!          | n_pages u32 | n_pages × (pid u64, image: PAGE_PAYLOAD bytes)
//! ```

use crate::wal::{Lsn, Record, Wal};
use rime_btree::{Smo, SmoKind, TreeHooks};
use rime_bufmgr::{PageId, WriteBackHook, PAGE_PAYLOAD};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Stamped on pages whose SMO could not be logged (the log is poisoned):
/// the write-back hook refuses such pages forever, so they never reach disk.
pub const UNLOGGED_LSN: u64 = u64::MAX;

/// Logs SMOs to the WAL.
pub struct LogHooks {
    pub wal: Arc<Wal>,
    /// Set when an SMO could not be logged: the Db is poisoned.
    pub failed: Arc<AtomicBool>,
}

impl TreeHooks for LogHooks {
    fn on_smo(&self, smo: &Smo<'_>) -> u64 {
        let payload = encode_smo(smo);
        match self.wal.append(&Record::Smo(&payload)) {
            Ok(lsn) => lsn.0,
            Err(e) => {
                tracing::error!(error = %e, "logging a structure modification failed; the database is poisoned");
                self.failed.store(true, Ordering::Release);
                UNLOGGED_LSN
            }
        }
    }
}

/// Enforces the write-ahead rule on every write-back.
pub struct WalBeforeData {
    pub wal: Arc<Wal>,
}

impl WriteBackHook for WalBeforeData {
    fn before_write(&self, pid: PageId, page_lsn: u64) -> Result<(), String> {
        match page_lsn {
            // Never stamped: nothing logged describes it (LSN 0 is the
            // log's first record, a CheckpointBegin, never a page change).
            0 => Ok(()),
            UNLOGGED_LSN => Err(format!(
                "page {pid} holds a change that could not be logged"
            )),
            lsn => self.wal.flush_to(Lsn(lsn)).map_err(|e| e.to_string()),
        }
    }
}

fn smo_kind_code(k: SmoKind) -> u8 {
    match k {
        SmoKind::Create => 1,
        SmoKind::Split => 2,
        SmoKind::RootSplit => 3,
        SmoKind::Merge => 4,
        SmoKind::RootCollapse => 5,
        SmoKind::Destroy => 6,
        SmoKind::ExtentAlloc => 7,
        _ => 255,
    }
}

/// `kind` code of a `Destroy`.
pub const SMO_DESTROY: u8 = 6;
/// `kind` code of a `Create`.
pub const SMO_CREATE: u8 = 1;

pub fn encode_smo(smo: &Smo<'_>) -> Vec<u8> {
    let mut out =
        Vec::with_capacity(32 + smo.pages.len() * (8 + PAGE_PAYLOAD) + smo.freed.len() * 12);
    out.push(smo_kind_code(smo.kind));
    out.extend_from_slice(&smo.root.to_le_bytes());
    out.extend_from_slice(&(smo.allocated.len() as u32).to_le_bytes());
    for p in smo.allocated {
        out.extend_from_slice(&p.to_le_bytes());
    }
    out.extend_from_slice(&(smo.freed.len() as u32).to_le_bytes());
    for (p, n) in smo.freed {
        out.extend_from_slice(&p.to_le_bytes());
        out.extend_from_slice(&n.to_le_bytes());
    }
    out.extend_from_slice(&(smo.pages.len() as u32).to_le_bytes());
    for (p, img) in smo.pages {
        debug_assert_eq!(img.len(), PAGE_PAYLOAD);
        out.extend_from_slice(&p.to_le_bytes());
        out.extend_from_slice(img);
    }
    out
}

/// A decoded `Smo` payload, borrowing the images.
#[derive(Debug)]
pub struct SmoRecord<'a> {
    pub kind: u8,
    pub root: PageId,
    pub allocated: Vec<PageId>,
    pub freed: Vec<(PageId, u32)>,
    pub pages: Vec<(PageId, &'a [u8])>,
}

/// Decodes an `Smo` payload; `None` if malformed (the record's checksum
/// passed, so this means a bug or a foreign log, reported as corruption).
pub fn decode_smo(b: &[u8]) -> Option<SmoRecord<'_>> {
    let mut cur = Cursor(b);
    let mut take = |n: usize| cur.take(n);
    let kind = take(1)?[0];
    let root = u64::from_le_bytes(take(8)?.try_into().ok()?);
    let n = u32::from_le_bytes(take(4)?.try_into().ok()?) as usize;
    let mut allocated = Vec::with_capacity(n.min(b.len() / 8));
    for _ in 0..n {
        allocated.push(u64::from_le_bytes(take(8)?.try_into().ok()?));
    }
    let n = u32::from_le_bytes(take(4)?.try_into().ok()?) as usize;
    let mut freed = Vec::with_capacity(n.min(b.len() / 12));
    for _ in 0..n {
        let p = u64::from_le_bytes(take(8)?.try_into().ok()?);
        let len = u32::from_le_bytes(take(4)?.try_into().ok()?);
        freed.push((p, len));
    }
    let n = u32::from_le_bytes(take(4)?.try_into().ok()?) as usize;
    let mut pages = Vec::with_capacity(n.min(b.len() / PAGE_PAYLOAD));
    for _ in 0..n {
        let p = u64::from_le_bytes(take(8)?.try_into().ok()?);
        pages.push((p, take(PAGE_PAYLOAD)?));
    }
    if !cur.0.is_empty() {
        return None;
    }
    Some(SmoRecord {
        kind,
        root,
        allocated,
        freed,
        pages,
    })
}

struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (h, t) = self.0.split_at(n);
        self.0 = t;
        Some(h)
    }
}
