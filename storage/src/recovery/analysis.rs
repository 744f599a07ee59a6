//! Recovery's analysis pass (step 2): the log from the redo LSN to its
//! end, read once for what redo needs to know before it touches a page.

use super::rec_err;
use crate::error::{DbError, OpenError, WalError};
use crate::smo::{SmoCode, decode_smo};
use crate::wal::{EndKind, LogEnd, LoggedRecord, Lsn, OwnedRecord, WalOptions, WalReader};
use rime_bufmgr::{AllocState, PageId};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// What the analysis found.
pub(super) struct Analysis {
    /// The checkpoint's allocation state with every logged SMO's
    /// allocations and frees applied: pages in use at the end of the log
    /// (an upper bound: extent frees are not logged).
    pub model: AllocModel,
    /// Each tree's last `Destroy`: writes to it below this are skipped.
    pub last_destroy: HashMap<u32, Lsn>,
    /// SMO and commit records to replay.
    pub replayable: u64,
    /// Where the log ends (a clean end or a torn tail).
    pub end: LogEnd,
}

/// Reads the log from `redo` (where the superblock's checkpoint record
/// must be) to its end. A torn tail ends the log with a warning; damage
/// before it is an error.
pub(super) fn analyze(
    wal_dir: &Path,
    redo: Lsn,
    saved: &AllocState,
    wal_opts: &WalOptions,
) -> Result<Analysis, OpenError> {
    let mut model = AllocModel::new(saved);
    let mut last_destroy: HashMap<u32, Lsn> = HashMap::new();
    let mut replayable = 0u64;
    let mut reader = WalReader::open(wal_dir, redo, wal_opts)?;
    let mut first = true;
    for rec in reader.by_ref() {
        let rec = rec?;
        if std::mem::take(&mut first) {
            check_redo_record(wal_dir, redo, Some(&rec))?;
        }
        match &rec.record {
            OwnedRecord::Smo(payload) => {
                let smo = decode_smo(payload).ok_or_else(|| bad_smo(rec.lsn))?;
                for &p in &smo.allocated {
                    model.allocate(p);
                }
                if smo.kind == SmoCode::Create {
                    model.allocate(smo.root);
                }
                for &(p, n) in &smo.freed {
                    model.release(p, n);
                }
                if smo.kind == SmoCode::Destroy {
                    last_destroy.insert(smo.root as u32, rec.lsn);
                }
                replayable += 1;
            }
            OwnedRecord::Commit(_) => replayable += 1,
            _ => {}
        }
    }
    if first {
        check_redo_record(wal_dir, redo, None)?;
    }
    let end = reader
        .end()
        .cloned()
        .ok_or_else(|| rec_err(DbError::Corrupt("log reader stopped early".into())))?;
    if let EndKind::TornTail { reason } = end.kind() {
        tracing::warn!(lsn = end.lsn().0, reason = %reason, "the log ends in a torn tail (a write the crash cut short); it ends there");
    }
    Ok(Analysis {
        model,
        last_destroy,
        replayable,
        end,
    })
}

/// The superblock's redo LSN is where its checkpoint appended
/// `CheckpointBegin`, and the log was durable through it before the
/// superblock was written: anything else there (no record at all, a log
/// zeroed or cut from that point) is damage, never an empty log.
fn check_redo_record(
    wal_dir: &Path,
    redo: Lsn,
    first: Option<&LoggedRecord>,
) -> Result<(), OpenError> {
    let found = match first {
        Some(r) if r.lsn == redo && matches!(r.record, OwnedRecord::CheckpointBegin { .. }) => {
            return Ok(());
        }
        Some(r) if r.lsn == redo => match r.record {
            OwnedRecord::Commit(_) => "a Commit record".to_string(),
            OwnedRecord::Smo(_) => "an Smo record".to_string(),
            _ => "another kind of record".to_string(),
        },
        Some(r) => format!("the first record at {}", r.lsn.0),
        None => "no record".to_string(),
    };
    Err(OpenError::MissingCheckpoint {
        redo_lsn: redo.0,
        wal_dir: wal_dir.to_path_buf(),
        found,
    })
}

pub(super) fn bad_smo(lsn: Lsn) -> OpenError {
    OpenError::Wal(WalError::Corrupt {
        lsn,
        reason: "malformed Smo payload".into(),
    })
}

/// The allocation state replayed forward through SMO records.
pub(super) struct AllocModel {
    next: PageId,
    /// Free runs: first page → length.
    free: BTreeMap<PageId, u32>,
}

impl AllocModel {
    pub fn new(s: &AllocState) -> Self {
        AllocModel {
            next: s.next_pid.max(1),
            free: s.free.iter().copied().collect(),
        }
    }

    fn run_containing(&self, pid: PageId) -> Option<(PageId, u32)> {
        let (&start, &len) = self.free.range(..=pid).next_back()?;
        (pid < start + u64::from(len)).then_some((start, len))
    }

    pub fn is_free(&self, pid: PageId) -> bool {
        pid >= self.next || self.run_containing(pid).is_some()
    }

    pub fn allocate(&mut self, pid: PageId) {
        if pid >= self.next {
            for p in self.next..pid {
                self.free.insert(p, 1);
            }
            self.next = pid + 1;
        } else if let Some((start, len)) = self.run_containing(pid) {
            self.free.remove(&start);
            if pid > start {
                self.free.insert(start, (pid - start) as u32);
            }
            let end = start + u64::from(len);
            if pid + 1 < end {
                self.free.insert(pid + 1, (end - pid - 1) as u32);
            }
        }
    }

    pub fn release(&mut self, pid: PageId, pages: u32) {
        for p in pid..pid + u64::from(pages) {
            self.allocate(p); // normalise: no overlap with an existing run
        }
        self.free.insert(pid, pages);
    }

    pub fn state(&self) -> AllocState {
        AllocState {
            next_pid: self.next,
            free: self.free.iter().map(|(&p, &n)| (p, n)).collect(),
        }
    }
}
