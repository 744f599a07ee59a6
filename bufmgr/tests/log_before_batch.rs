//! A checkpoint's flush forces the log before it latches a batch of dirty
//! frames (`WriteBackHook::before_batch`), so the write-ahead check under
//! each frame's latch finds the log durable and waits for nothing.
//!
//! Regression: the flush forced the log under the shared latch of the
//! first frame whose LSN was past the durable one. In YCSB D through the
//! Db (2 threads) the checkpointer held a parent node that way for a log
//! sync while every split under it spun and yielded on its upgrade (1.35M
//! `sched_yield`s in a 3 s run and its load; 55k of 69k sampled in the
//! run were in `latch_for_split`).
//!
//! `LogModel` is a test double of the log's durability (two counters);
//! the file, the pool and the flush are real.

mod common;
use common::*;
use rime_bufmgr::io::{IoBackend, open_block_file};
use rime_bufmgr::{
    BufferManager, Config, EVICT_BATCH, MIN_POOL_PAGES, PAGE_SIZE, PageId, WriteBackHook,
    WriteBackRefused,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};

/// The log's end and its durable point, and what the hook was asked.
#[derive(Default)]
struct LogModel {
    /// LSN of the last record appended.
    appended: AtomicU64,
    durable: AtomicU64,
    batches: AtomicU64,
    /// Write-backs that found the log behind the page: each would force
    /// it (wait for a sync) under the frame's latch.
    forced_under_latch: AtomicU64,
}

impl WriteBackHook for LogModel {
    fn before_write(&self, _pid: PageId, page_lsn: u64) -> Result<(), WriteBackRefused> {
        if page_lsn > self.durable.load(SeqCst) {
            self.forced_under_latch.fetch_add(1, SeqCst);
            self.durable.fetch_max(self.appended.load(SeqCst), SeqCst);
        }
        Ok(())
    }

    fn before_batch(&self) {
        self.batches.fetch_add(1, SeqCst);
        self.durable.fetch_max(self.appended.load(SeqCst), SeqCst);
    }
}

#[test]
fn a_flush_forces_the_log_before_latching_a_batch_not_under_a_frames_latch() {
    let dir = tempfile::TempDir::new().unwrap();
    let file = open_block_file(&dir.path().join("pages"), IoBackend::Auto).unwrap();
    let log = Arc::new(LogModel::default());
    let config = Config {
        pool_bytes: MIN_POOL_PAGES * 4 * PAGE_SIZE,
        max_bytes: 1 << 32,
        write_back: Some(log.clone()),
        ..Config::default()
    };
    let bm = BufferManager::open(file, config).unwrap();
    let pages = 3 * EVICT_BATCH as u64 + 5;
    for lsn in 1..=pages {
        let mut page = bm.alloc().unwrap();
        let pid = page.pid();
        stamp(page.payload_mut(), pid, 1);
        page.set_lsn(lsn);
        log.appended.store(lsn, SeqCst);
    }
    assert_eq!(bm.flush_dirty().unwrap(), pages as usize);
    assert_eq!(
        log.forced_under_latch.load(SeqCst),
        0,
        "the log was forced under a frame's latch"
    );
    assert!(
        log.batches.load(SeqCst) >= pages.div_ceil(EVICT_BATCH as u64),
        "a batch went without forcing the log first"
    );
    // Changed after the flush forced the log: the next flush forces it
    // again before latching, still not under the latch.
    let mut page = bm.alloc().unwrap();
    let pid = page.pid();
    stamp(page.payload_mut(), pid, 1);
    page.set_lsn(pages + 1);
    log.appended.store(pages + 1, SeqCst);
    drop(page);
    assert_eq!(bm.flush_dirty().unwrap(), 1);
    assert_eq!(log.forced_under_latch.load(SeqCst), 0);
}
