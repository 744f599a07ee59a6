//! The two hooks that tie the pool and the trees to the log:
//!
//! * [`LogHooks`] (`rime_btree::TreeHooks`): every structure modification
//!   becomes ONE `Smo` log record of after-images, so recovery never sees
//!   half a split.
//! * [`WalBeforeData`] (`rime_bufmgr::WriteBackHook`): before a dirty page
//!   is written back, the log is forced up to the page's LSN.
//!
//! The `Smo` record's payload is `smo.rs`.

use crate::smo::encode_smo;
use crate::wal::{Lsn, Record, Wal};
use rime_btree::{Smo, SmoNotLogged, TreeHooks, UNLOGGED_LSN};
use rime_bufmgr::{PageId, WriteBackHook, WriteBackRefused};
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

    /// Forces everything logged so far, with no latch held. A failure
    /// poisons the log, so the next `before_write` refuses as it should.
    fn before_batch(&self) {
        if let Err(e) = self.wal.flush() {
            tracing::debug!(error = %e, "forcing the log before a write-back batch");
        }
    }
}
