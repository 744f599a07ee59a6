//! The memory above the high-water mark, populated ahead of allocations
//! while the pool is in its huge-page prefix (`rime_bufmgr`'s `prefault`
//! module), checked in the kernel's own account: `/proc/self/pagemap`
//! says whether a virtual page is present.
//!
//! Like `huge_pages.rs`, these need transparent huge pages in `madvise` or
//! `always` mode and fail saying so where they are off.
#![forbid(unsafe_code)]

mod common;
use common::*;
use rime_bufmgr::io::{IoBackend, open_block_file};
use rime_bufmgr::{BufferManager, Config, HUGE_PAGE_BYTES, HugePages, PAGE_SIZE};
use std::io::{Read, Seek, SeekFrom};
use std::time::{Duration, Instant};

/// Whether the virtual page at `addr` is backed by memory (pagemap's bit
/// 63; readable without privileges, unlike the frame number).
fn present(addr: usize) -> bool {
    let mut f = std::fs::File::open("/proc/self/pagemap").expect("/proc/self/pagemap");
    f.seek(SeekFrom::Start((addr / PAGE_SIZE * 8) as u64))
        .unwrap();
    let mut entry = [0u8; 8];
    f.read_exact(&mut entry).unwrap();
    u64::from_le_bytes(entry) >> 63 == 1
}

fn huge_pool(pool_bytes: usize) -> Pool {
    let dir = tempfile::TempDir::new().unwrap();
    let file = open_block_file(&dir.path().join("pages"), IoBackend::Auto).unwrap();
    let config = Config {
        pool_bytes,
        max_bytes: 1 << 32,
        huge_pages: HugePages::WhileFits,
        ..Config::default()
    };
    Pool {
        bm: BufferManager::open(file, config).unwrap(),
        dir,
    }
}

/// Allocates `pages` pages, stamping each; returns their ids.
fn fill(bm: &BufferManager, pages: u64) -> Vec<u64> {
    (0..pages)
        .map(|g| {
            let mut page = bm.alloc().unwrap();
            let pid = page.pid();
            stamp(page.payload_mut(), pid, g);
            pid
        })
        .collect()
}

/// Waits up to 10 s for `cond`.
fn eventually(cond: impl Fn() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}

const HUGE_PAGES: u64 = (HUGE_PAGE_BYTES / PAGE_SIZE) as u64;

#[test]
fn the_memory_above_the_high_water_mark_is_populated_before_it_is_allocated() {
    require_thp();
    let p = huge_pool(64 << 20);
    let (base, _) = p.bm.region();
    let base = base as usize;
    fill(&p.bm, 3 * HUGE_PAGES);
    let frontier = p.bm.allocated_pages() as usize * PAGE_SIZE;
    // In the huge page after the frontier's own (which the allocations
    // fault in themselves): once the thread has caught up, at least half
    // its lead (half of the 6 MiB the pool grew) lies populated above
    // the frontier, in whole huge pages.
    let ahead = frontier.next_multiple_of(HUGE_PAGE_BYTES) + PAGE_SIZE;
    assert!(
        eventually(|| present(base + ahead)),
        "nothing above the high-water mark ({frontier} bytes) was populated: {:?}",
        p.bm.prefault_progress()
    );
    // Bounded: the lead is at most what the pool allocated (~6 MiB), and
    // the prefix is 64 MiB.
    assert!(
        !present(base + (48 << 20)),
        "{:?}",
        p.bm.prefault_progress()
    );
    // The populated pages are zero when allocated, and nothing changed.
    let pids = fill(&p.bm, 2 * HUGE_PAGES);
    for (g, &pid) in pids.iter().enumerate() {
        let page = p.bm.shared(pid).unwrap();
        assert_eq!(check(page.payload(), pid), Ok(g as u64));
    }
}

#[test]
fn a_pool_that_allocates_nothing_populates_nothing() {
    require_thp();
    let p = huge_pool(64 << 20);
    let (base, _) = p.bm.region();
    std::thread::sleep(Duration::from_millis(100));
    assert!(p.bm.prefault_progress().1, "a thread runs for the prefix");
    assert!(!present(base as usize + HUGE_PAGE_BYTES + PAGE_SIZE));
    assert!(!present(base as usize + 4 * HUGE_PAGE_BYTES));
}

#[test]
fn the_first_eviction_stops_the_populating() {
    require_thp();
    let pool_pages = 4 * HUGE_PAGES;
    let p = huge_pool(pool_pages as usize * PAGE_SIZE);
    fill(&p.bm, HUGE_PAGES + 1);
    assert!(p.bm.prefault_progress().1);
    let pids = fill(&p.bm, 2 * pool_pages);
    assert!(p.bm.stats().evictions > 0, "the test needs eviction");
    assert!(
        eventually(|| !p.bm.prefault_progress().1),
        "the thread still runs after the first eviction: {:?}",
        p.bm.prefault_progress()
    );
    let (stopped_at, _) = p.bm.prefault_progress();
    fill(&p.bm, pool_pages);
    assert_eq!(p.bm.prefault_progress().0, stopped_at);
    assert!(p.bm.resident_pages() <= p.bm.budget_pages());
    for (g, &pid) in pids.iter().enumerate() {
        let page = p.bm.shared(pid).unwrap();
        assert_eq!(check(page.payload(), pid), Ok(g as u64));
    }
}

#[test]
fn a_pool_without_huge_pages_starts_no_thread() {
    let dir = tempfile::TempDir::new().unwrap();
    let file = open_block_file(&dir.path().join("pages"), IoBackend::Auto).unwrap();
    let config = Config {
        pool_bytes: 64 << 20,
        max_bytes: 1 << 32,
        huge_pages: HugePages::Never,
        ..Config::default()
    };
    let bm = BufferManager::open(file, config).unwrap();
    fill(&bm, 3 * HUGE_PAGES);
    assert!(!bm.prefault_progress().1);
}
