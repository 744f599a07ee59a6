//! A flush (`flush_dirty`, the checkpoint's) writes one-page frames from
//! copies: a writer changes a page while the flush's write of it is in
//! flight instead of waiting for it, the flush leaves that page dirty, and
//! the next flush writes the newer image.
//!
//! `GatedFile` is a test double: a real file whose batch writes can be
//! held at the door, to put a write in flight at a known moment. Nothing
//! else about the I/O is simulated.

mod common;
use common::*;
use rime_bufmgr::io::{BlockFile, IoBackend, IoError, ReadOp, WriteOp, open_block_file};
use rime_bufmgr::{FRAME_HEADER_SIZE, MIN_POOL_PAGES, PAGE_SIZE, PageId};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// Test double: holds each `write_batch` while the gate is shut, and says
/// when one is waiting.
struct GatedFile {
    inner: Arc<dyn BlockFile>,
    shut: Mutex<bool>,
    opened: Condvar,
    waiting: Mutex<Option<mpsc::Sender<()>>>,
}

impl GatedFile {
    fn set_shut(&self, shut: bool) {
        *self.shut.lock().unwrap() = shut;
        self.opened.notify_all();
    }
}

impl BlockFile for GatedFile {
    fn read_batch(&self, reads: &mut [ReadOp<'_>]) -> Result<(), IoError> {
        self.inner.read_batch(reads)
    }
    fn write_batch(&self, writes: &[WriteOp<'_>]) -> Result<(), IoError> {
        let mut shut = self.shut.lock().unwrap();
        if *shut && let Some(tx) = &*self.waiting.lock().unwrap() {
            let _ = tx.send(());
        }
        while *shut {
            shut = self.opened.wait(shut).unwrap();
        }
        drop(shut);
        self.inner.write_batch(writes)
    }
    fn sync_data(&self) -> Result<(), IoError> {
        self.inner.sync_data()
    }
    fn len_bytes(&self) -> Result<u64, IoError> {
        self.inner.len_bytes()
    }
    fn set_len(&self, len: u64) -> Result<(), IoError> {
        self.inner.set_len(len)
    }
}

#[test]
fn a_writer_changes_a_page_while_the_flush_writes_it_and_the_next_flush_writes_the_change() {
    let dir = tempfile::TempDir::new().unwrap();
    let real = open_block_file(&dir.path().join("pages"), IoBackend::Auto).unwrap();
    let (tx, rx) = mpsc::channel();
    let file = Arc::new(GatedFile {
        inner: real,
        shut: Mutex::new(false),
        opened: Condvar::new(),
        waiting: Mutex::new(Some(tx)),
    });
    let bm = open(file.clone(), MIN_POOL_PAGES * 4);
    let pids: Vec<PageId> = (0..8u64)
        .map(|_| {
            let mut page = bm.alloc().unwrap();
            let pid = page.pid();
            stamp(page.payload_mut(), pid, 1);
            pid
        })
        .collect();
    let hot = pids[3];
    file.set_shut(true);
    std::thread::scope(|s| {
        let flush = s.spawn(|| bm.flush_dirty().unwrap());
        rx.recv_timeout(Duration::from_secs(10))
            .expect("the flush's write reached the file");
        // The write is held in flight. A writer gets the page at once (it
        // waited for the whole write when the flush held the latch).
        let (done_tx, done_rx) = mpsc::channel();
        let bm = &bm;
        s.spawn(move || {
            let mut page = bm.exclusive(hot).unwrap();
            stamp(page.payload_mut(), hot, 2);
            drop(page);
            done_tx.send(()).unwrap();
        });
        let got_it = done_rx.recv_timeout(Duration::from_secs(10)).is_ok();
        file.set_shut(false);
        assert!(got_it, "a writer waited for the flush's write in flight");
        assert_eq!(flush.join().unwrap(), pids.len());
    });
    // The flush wrote generation 1 of `hot`, changed since: still dirty.
    assert!(
        bm.is_dirty(hot),
        "a page changed after its copy was cleaned"
    );
    for &p in pids.iter().filter(|&&p| p != hot) {
        assert!(
            !bm.is_dirty(p),
            "page {p} unchanged since its copy stayed dirty"
        );
    }
    *file.waiting.lock().unwrap() = None;
    assert_eq!(
        bm.flush_dirty().unwrap(),
        1,
        "only the changed page is written again"
    );
    assert!(!bm.is_dirty(hot));
    // On disk: every page's latest image.
    for &p in &pids {
        let mut disk = rime_bufmgr::io::AlignedBuf::zeroed(PAGE_SIZE);
        file.read_at(p * PAGE_SIZE as u64, &mut disk).unwrap();
        let expected = if p == hot { 2 } else { 1 };
        assert_eq!(
            check(&disk[FRAME_HEADER_SIZE..], p),
            Ok(expected),
            "page {p} on disk"
        );
    }
}
