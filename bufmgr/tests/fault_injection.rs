//! Injected I/O failures: a failed write-back never marks a page clean or
//! drops it; a failed read reaches the caller as an error and leaves the
//! page loadable once the disk behaves again.

mod common;
use common::*;
use rime_bufmgr::io::{FaultPlan, IoError};
use rime_bufmgr::{
    BufferManager, Config, MIN_POOL_PAGES, PAGE_SIZE, PageError, PageId, WriteBackHook,
    WriteBackRefused,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

fn fill(bm: &BufferManager, n: usize) -> Vec<PageId> {
    (0..n)
        .map(|g| {
            let mut page = bm.alloc().unwrap();
            let pid = page.pid();
            stamp(page.payload_mut(), pid, g as u64);
            pid
        })
        .collect()
}

#[test]
fn a_failed_write_back_leaves_the_page_dirty_and_resident() {
    let (bm, file, _dir) = faulty_pool(MIN_POOL_PAGES, FaultPlan::default());
    let pids = fill(&bm, MIN_POOL_PAGES);
    assert!(pids.iter().all(|&p| bm.is_dirty(p) && bm.is_resident(p)));

    file.set_plan(FaultPlan {
        fail_all_writes: true,
        ..FaultPlan::default()
    });
    let err = bm.alloc().err().expect("no room without a write-back");
    assert!(
        matches!(
            err,
            PageError::Io {
                source: IoError::Injected { .. },
                ..
            }
        ),
        "{err}"
    );
    assert!(
        pids.iter().all(|&p| bm.is_dirty(p) && bm.is_resident(p)),
        "nothing was marked clean or dropped"
    );

    file.set_plan(FaultPlan::default());
    let more = fill(&bm, MIN_POOL_PAGES);
    for (g, &pid) in pids.iter().chain(&more).enumerate() {
        let expected = if g < MIN_POOL_PAGES {
            g
        } else {
            g - MIN_POOL_PAGES
        };
        assert_eq!(
            check(bm.shared(pid).unwrap().payload(), pid),
            Ok(expected as u64)
        );
    }
}

#[test]
fn a_failed_flush_keeps_pages_dirty() {
    let (bm, file, _dir) = faulty_pool(MIN_POOL_PAGES, FaultPlan::default());
    let pids = fill(&bm, 10);
    file.set_plan(FaultPlan {
        fail_nth_write: Some(3),
        ..FaultPlan::default()
    });
    assert!(bm.flush_dirty().is_err());
    assert!(
        pids.iter().all(|&p| bm.is_dirty(p)),
        "a batch that failed anywhere counts as unwritten"
    );
    assert_eq!(bm.flush_dirty().unwrap(), 10);
    assert!(pids.iter().all(|&p| !bm.is_dirty(p)));
}

#[test]
fn an_injected_read_error_reaches_the_caller_and_the_page_stays_loadable() {
    let (bm, file, _dir) = faulty_pool(MIN_POOL_PAGES, FaultPlan::default());
    let pids = fill(&bm, 4 * MIN_POOL_PAGES);
    let victim = pids[0];
    assert!(!bm.is_resident(victim));
    let offset = victim * PAGE_SIZE as u64;

    file.set_plan(FaultPlan {
        fail_reads_at: vec![offset],
        ..FaultPlan::default()
    });
    let err = bm.shared(victim).err().expect("the read fails");
    assert!(
        matches!(err, PageError::Io { pid, source: IoError::Injected { .. } } if pid == victim),
        "{err}"
    );
    assert!(!bm.is_resident(victim));

    file.set_plan(FaultPlan {
        short_read_at: Some(offset),
        ..FaultPlan::default()
    });
    let err = bm.exclusive(victim).err().expect("the short read fails");
    assert!(
        matches!(
            err,
            PageError::Io {
                source: IoError::ShortRead { .. },
                ..
            }
        ),
        "{err}"
    );

    file.set_plan(FaultPlan::default());
    assert_eq!(check(bm.shared(victim).unwrap().payload(), victim), Ok(0));
}

#[test]
fn a_read_error_inside_an_optimistic_read_is_returned_not_retried_forever() {
    let (bm, file, _dir) = faulty_pool(MIN_POOL_PAGES, FaultPlan::default());
    let pids = fill(&bm, 4 * MIN_POOL_PAGES);
    file.set_plan(FaultPlan {
        fail_reads_at: vec![pids[0] * PAGE_SIZE as u64],
        ..FaultPlan::default()
    });
    // SAFETY: no destructor-bearing values in the closure.
    let result = unsafe { bm.optimistic(|s| s.read(pids[0]).map(|g| g.pid())) };
    assert!(matches!(result, Err(PageError::Io { .. })));
}

struct Refuse(AtomicBool);

impl WriteBackHook for Refuse {
    fn before_write(&self, pid: PageId, page_lsn: u64) -> Result<(), WriteBackRefused> {
        if self.0.load(Ordering::Relaxed) {
            Err(WriteBackRefused::LogNotDurable {
                pid,
                reason: format!("not durable up to {page_lsn}"),
            })
        } else {
            Ok(())
        }
    }
}

#[test]
fn the_write_back_hook_can_hold_pages_back() {
    let dir = tempfile::TempDir::new().unwrap();
    let file =
        rime_bufmgr::io::open_block_file(&dir.path().join("p"), rime_bufmgr::io::IoBackend::Auto)
            .unwrap();
    let hook = Arc::new(Refuse(AtomicBool::new(true)));
    let config = Config {
        pool_bytes: MIN_POOL_PAGES * PAGE_SIZE,
        max_bytes: 1 << 32,
        write_back: Some(hook.clone()),
        ..Config::default()
    };
    let bm = BufferManager::open(file, config).unwrap();
    let mut page = bm.alloc().unwrap();
    page.set_lsn(5);
    let pid = page.pid();
    drop(page);
    let err = bm.flush_dirty().expect_err("refused");
    assert!(
        matches!(err, PageError::WriteBackRefused { pid: p, .. } if p == pid),
        "{err}"
    );
    assert!(bm.is_dirty(pid));
    hook.0.store(false, Ordering::Relaxed);
    assert_eq!(bm.flush_dirty().unwrap(), 1);
}
