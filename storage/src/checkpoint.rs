//! Fuzzy checkpoints: periodic (by time and by log growth), on demand, and
//! on clean close. They bound recovery to the log written since the last
//! one, and let the log be truncated behind it.

use crate::allocfile;
use crate::commit::ApplyGate;
use crate::error::DbError;
use crate::inner::DbInner;
use crate::locks::Phase;
use crate::superblock::Superblock;
use crate::wal::Record;
use rime_bufmgr::PAGE_SIZE;
use std::time::{Duration, Instant};

/// How often the background thread checks the log's growth against
/// `Options::checkpoint_log_bytes`: a second is short next to the time it
/// takes to write hundreds of MiB of log.
const LOG_GROWTH_POLL: Duration = Duration::from_secs(1);

/// 1. Holding the apply gate in phase `B` (so no committer is between its
///    append and the end of its apply: every change with a lower LSN is
///    applied in memory, and no SMO runs): append `CheckpointBegin`; its
///    LSN is the redo LSN. Snapshot the allocation state at the same
///    instant. Committers wait at the gate for these few microseconds.
/// 2. Make the log durable through that record.
/// 3. Write back every dirty page (the write-back hook forces the log
///    first, page by page) and `fdatasync` the page file. Every change
///    below the redo LSN is now on disk. Commits continue meanwhile.
/// 4. Write the allocation-state file, then the superblock naming it and
///    the redo LSN (double-written, synced): the checkpoint is complete.
/// 5. Append `CheckpointEnd`; delete the allocation files and the log
///    segments older than the *previous* checkpoint. The superblock's other
///    slot names that one, and opening falls back to it if the newer slot
///    is damaged: its allocation file and its log must still be there.
///
/// A failure in 2, 3 or the superblock write of 4 poisons the Db (a failed
/// `fdatasync` may have lost pages the kernel then marked clean). Failing
/// to write the allocation-state file (out of descriptors, disk full) does
/// not: nothing names that file yet, so the checkpoint is simply not done,
/// and the background checkpointer tries again after a backoff.
pub(crate) fn checkpoint(db: &DbInner) -> Result<(), DbError> {
    let _one = db.checkpoint_lock();
    db.check_poison()?;
    // Step 1.
    let (redo, alloc) = {
        let _gate = ApplyGate::enter(db.gates(), Phase::B);
        let end = db.wal().end_lsn();
        let redo = db
            .wal()
            .append(&Record::CheckpointBegin { redo_lsn: end })
            .inspect_err(|e| db.poison(e))?;
        (redo, db.bm().alloc_state())
    };
    let fail = |e: &dyn std::fmt::Display| db.poison(format!("checkpoint: {e}"));
    // Step 2.
    db.wal().flush_to(redo).inspect_err(|e| fail(e))?;
    // Step 3.
    db.bm().flush_dirty().inspect_err(|e| fail(e))?;
    db.bm().sync().map_err(|source| {
        fail(&source);
        DbError::Io {
            path: db.dir().page_file_path(),
            source,
        }
    })?;
    // Step 4.
    // (A failure here loses nothing: the file is new, nothing names it,
    // and the previous checkpoint stays in force. Not a poison.)
    allocfile::write(db.dir().root(), redo, &alloc, &db.opts().opener)?;
    let sb = Superblock {
        page_size: PAGE_SIZE as u32,
        checkpoint_lsn: redo,
        redo_lsn: redo,
        page_count: alloc.next_pid,
        catalog_root: db.catalog().root(),
        alloc_state_lsn: redo.0,
    };
    let previous = {
        let mut sbf = db.superblock();
        let previous = sbf.current().redo_lsn;
        sbf.write(&sb).inspect_err(|e| fail(e))?;
        previous
    };
    // Step 5.
    db.wal()
        .append(&Record::CheckpointEnd { redo_lsn: redo })
        .inspect_err(|e| db.poison(e))?;
    allocfile::remove_others(db.dir().root(), &[redo, previous]);
    db.wal().truncate_before(previous)?;
    db.set_last_checkpoint(redo.0);
    db.counters().checkpoints.add(1);
    Ok(())
}

/// The first wait after a failed background checkpoint; doubled per
/// failure in a row, up to the checkpoint interval. Transient causes (out
/// of descriptors, a full disk being cleaned) get retried soon without a
/// failing checkpoint every poll.
const RETRY_FIRST: Duration = Duration::from_secs(1);

/// The background checkpointer: runs until shutdown is requested.
/// Failures are logged and counted (`DbStats::checkpoint_failures`) and
/// retried with exponential backoff.
pub(crate) fn background(db: &DbInner) {
    let Some(interval) = db.opts().checkpoint_interval else {
        return;
    };
    let mut last = Instant::now();
    let mut retry: Option<Duration> = None;
    loop {
        let due = retry.unwrap_or(interval);
        let wait = due.saturating_sub(last.elapsed()).min(LOG_GROWTH_POLL);
        if db.sleep_unless_shutdown(wait) {
            return;
        }
        let grown = db.wal().end_lsn().0.saturating_sub(db.last_checkpoint());
        let log_due = retry.is_none() && grown >= db.opts().checkpoint_log_bytes;
        if last.elapsed() < due && !log_due {
            continue;
        }
        retry = match checkpoint(db) {
            Ok(()) => None,
            Err(e) => {
                db.counters().checkpoint_failures.add(1);
                let next = retry.map_or(RETRY_FIRST, |d| (d * 2).min(interval));
                tracing::warn!(error = %e, retry_in_ms = next.as_millis() as u64, "background checkpoint failed");
                Some(next)
            }
        };
        last = Instant::now();
    }
}
