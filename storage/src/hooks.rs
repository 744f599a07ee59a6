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

use crate::bytes::Cursor;
use crate::wal::{Lsn, Record, Wal};
use rime_btree::{Smo, SmoKind, SmoNotLogged, TreeHooks, UNLOGGED_LSN};
use rime_bufmgr::{PAGE_PAYLOAD, PageId, WriteBackHook, WriteBackRefused};
use std::sync::Arc;

/// Logs SMOs to the WAL. A failure is returned to the tree
/// (`TreeError::SmoNotLogged`), which fails the operation; the commit or
/// recovery that ran it poisons the Db.
pub struct LogHooks {
    pub wal: Arc<Wal>,
}

impl TreeHooks for LogHooks {
    fn on_smo(&self, smo: &Smo<'_>) -> Result<u64, SmoNotLogged> {
        let not_logged = |reason: String| {
            tracing::error!(%reason, "logging a structure modification failed");
            SmoNotLogged { reason }
        };
        let payload = encode_smo(smo)
            .ok_or_else(|| not_logged(format!("{:?} has no code in the log format", smo.kind)))?;
        match self.wal.append(&Record::Smo(&payload)) {
            Ok(lsn) => Ok(lsn.0),
            Err(e) => Err(not_logged(e.to_string())),
        }
    }
}

/// Enforces the write-ahead rule on every write-back.
pub struct WalBeforeData {
    pub wal: Arc<Wal>,
}

impl WriteBackHook for WalBeforeData {
    fn before_write(&self, pid: PageId, page_lsn: u64) -> Result<(), WriteBackRefused> {
        match page_lsn {
            // Never stamped: nothing logged describes it (LSN 0 is the
            // log's first record, a CheckpointBegin, never a page change).
            0 => Ok(()),
            UNLOGGED_LSN => Err(WriteBackRefused::Unlogged { pid }),
            lsn => self
                .wal
                .flush_to(Lsn(lsn))
                .map_err(|e| WriteBackRefused::LogNotDurable {
                    pid,
                    reason: e.to_string(),
                }),
        }
    }
}

/// The kind byte of an `Smo` payload. Codes are on disk: never reuse one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum SmoCode {
    Create = 1,
    Split = 2,
    RootSplit = 3,
    Merge = 4,
    RootCollapse = 5,
    Destroy = 6,
    ExtentAlloc = 7,
    Redistribute = 8,
}

impl SmoCode {
    const ALL: [SmoCode; 8] = [
        SmoCode::Create,
        SmoCode::Split,
        SmoCode::RootSplit,
        SmoCode::Merge,
        SmoCode::RootCollapse,
        SmoCode::Destroy,
        SmoCode::ExtentAlloc,
        SmoCode::Redistribute,
    ];

    /// The code of a tree's SMO kind; `None` for a kind this log format
    /// does not know (a newer tree: refused, never logged as garbage).
    pub fn of(kind: SmoKind) -> Option<SmoCode> {
        Some(match kind {
            SmoKind::Create => SmoCode::Create,
            SmoKind::Split => SmoCode::Split,
            SmoKind::RootSplit => SmoCode::RootSplit,
            SmoKind::Merge => SmoCode::Merge,
            SmoKind::RootCollapse => SmoCode::RootCollapse,
            SmoKind::Destroy => SmoCode::Destroy,
            SmoKind::ExtentAlloc => SmoCode::ExtentAlloc,
            SmoKind::Redistribute => SmoCode::Redistribute,
            _ => return None,
        })
    }

    pub fn from_byte(b: u8) -> Option<SmoCode> {
        Self::ALL.into_iter().find(|c| *c as u8 == b)
    }
}

/// Encodes `smo`; `None` if its kind has no code ([`SmoCode::of`]).
pub fn encode_smo(smo: &Smo<'_>) -> Option<Vec<u8>> {
    let code = SmoCode::of(smo.kind)?;
    let mut out =
        Vec::with_capacity(32 + smo.pages.len() * (8 + PAGE_PAYLOAD) + smo.freed.len() * 12);
    out.push(code as u8);
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
    Some(out)
}

/// A decoded `Smo` payload, borrowing the images.
#[derive(Debug)]
pub struct SmoRecord<'a> {
    pub kind: SmoCode,
    pub root: PageId,
    pub allocated: Vec<PageId>,
    pub freed: Vec<(PageId, u32)>,
    pub pages: Vec<(PageId, &'a [u8])>,
}

/// Decodes an `Smo` payload; `None` if malformed (the record's checksum
/// passed, so this means a bug or a foreign log, reported as corruption).
pub fn decode_smo(b: &[u8]) -> Option<SmoRecord<'_>> {
    let mut cur = Cursor(b);
    let kind = SmoCode::from_byte(cur.u8()?)?;
    let root = cur.u64()?;
    let n = cur.u32()? as usize;
    let mut allocated = Vec::with_capacity(n.min(b.len() / 8));
    for _ in 0..n {
        allocated.push(cur.u64()?);
    }
    let n = cur.u32()? as usize;
    let mut freed = Vec::with_capacity(n.min(b.len() / 12));
    for _ in 0..n {
        freed.push((cur.u64()?, cur.u32()?));
    }
    let n = cur.u32()? as usize;
    let mut pages = Vec::with_capacity(n.min(b.len() / PAGE_PAYLOAD));
    for _ in 0..n {
        pages.push((cur.u64()?, cur.take(PAGE_PAYLOAD)?));
    }
    if !cur.rest().is_empty() {
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
