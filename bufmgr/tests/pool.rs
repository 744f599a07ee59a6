//! Allocation, latching, eviction and reload through the public API.
#![forbid(unsafe_code)]

mod common;
use common::*;
use rime_bufmgr::io::{IoBackend, open_block_file};
use rime_bufmgr::{BufferManager, Config, MIN_POOL_PAGES, OpenError, PAGE_SIZE, PageError};

#[test]
fn pages_survive_eviction_and_come_back_intact() {
    let p = pool(MIN_POOL_PAGES);
    let pages = 4 * MIN_POOL_PAGES as u64;
    let mut pids = Vec::new();
    for g in 0..pages {
        let mut page = p.bm.alloc().unwrap();
        let pid = page.pid();
        stamp(page.payload_mut(), pid, g);
        pids.push(pid);
    }
    assert!(p.bm.resident_pages() <= p.bm.budget_pages());
    assert!(p.bm.stats().evictions >= pages - MIN_POOL_PAGES as u64);
    for (g, &pid) in pids.iter().enumerate() {
        let page = p.bm.shared(pid).unwrap();
        assert_eq!(check(page.payload(), pid), Ok(g as u64));
    }
    assert!(p.bm.stats().misses > 0);
}

#[test]
fn freed_pages_are_reused_and_zeroed() {
    let p = pool(MIN_POOL_PAGES);
    let mut a = p.bm.alloc().unwrap();
    a.payload_mut().fill(0xAB);
    let pid = a.pid();
    p.bm.free(a);
    let b = p.bm.alloc().unwrap();
    assert_eq!(b.pid(), pid, "the freed id comes back first");
    assert!(
        b.payload().iter().all(|&x| x == 0),
        "a reused page starts zeroed"
    );
    assert_eq!(p.bm.alloc_state().free, vec![]);
}

#[test]
fn extents_are_contiguous_and_round_trip_through_disk() {
    let p = pool(MIN_POOL_PAGES);
    let mut e = p.bm.alloc_extent(40).unwrap();
    let pid = e.pid();
    for (i, b) in e.payload_mut().iter_mut().enumerate() {
        *b = (i % 251) as u8;
    }
    assert_eq!(
        e.payload().len(),
        40 * PAGE_SIZE - rime_bufmgr::FRAME_HEADER_SIZE
    );
    drop(e);
    // Push it out with single pages.
    for _ in 0..2 * MIN_POOL_PAGES {
        drop(p.bm.alloc().unwrap());
    }
    let e = p.bm.shared_extent(pid, 40).unwrap();
    assert!(
        e.payload()
            .iter()
            .enumerate()
            .all(|(i, &b)| b == (i % 251) as u8)
    );
}

#[test]
fn extent_lengths_are_checked_against_the_header() {
    let p = pool(MIN_POOL_PAGES);
    let pid = p.bm.alloc_extent(4).unwrap().pid();
    for _ in 0..2 * MIN_POOL_PAGES {
        drop(p.bm.alloc().unwrap());
    }
    let err =
        p.bm.shared_extent(pid, 3)
            .err()
            .expect("wrong length refused");
    assert!(matches!(err, PageError::Corrupt { .. }), "{err}");
    assert!(
        p.bm.shared_extent(pid, 4).is_ok(),
        "the right length still loads"
    );
}

#[test]
fn out_of_range_and_reserved_ids_are_errors() {
    let p = pool(MIN_POOL_PAGES);
    let pid = p.bm.alloc().unwrap().pid();
    for bad in [0, pid + 1, u64::MAX] {
        let err = p.bm.exclusive(bad).err().expect("refused");
        assert!(matches!(err, PageError::OutOfRange { .. }), "{bad}: {err}");
    }
    assert!(matches!(
        p.bm.alloc_extent(0),
        Err(PageError::ExtentTooLarge { .. })
    ));
    assert!(matches!(
        p.bm.alloc_extent(1 << 20),
        Err(PageError::ExtentTooLarge { .. })
    ));
}

#[test]
fn a_budget_below_the_minimum_is_refused() {
    let dir = tempfile::TempDir::new().unwrap();
    let file = open_block_file(&dir.path().join("f"), IoBackend::Auto).unwrap();
    let config = Config {
        pool_bytes: (MIN_POOL_PAGES - 1) * PAGE_SIZE,
        ..Config::default()
    };
    let err = BufferManager::open(file, config).err().expect("refused");
    assert!(matches!(err, OpenError::BudgetTooSmall { .. }), "{err}");
}

#[test]
fn reopening_the_file_sees_flushed_pages() {
    let dir = tempfile::TempDir::new().unwrap();
    let path = dir.path().join("pages");
    let (pid, state) = {
        let bm = open(
            open_block_file(&path, IoBackend::Auto).unwrap(),
            MIN_POOL_PAGES,
        );
        let mut page = bm.alloc().unwrap();
        let pid = page.pid();
        stamp(page.payload_mut(), pid, 7);
        page.set_lsn(99);
        drop(page);
        assert_eq!(bm.flush_dirty().unwrap(), 1);
        assert_eq!(bm.flush_dirty().unwrap(), 0, "nothing dirty after a flush");
        bm.sync().unwrap();
        (pid, bm.alloc_state())
    };
    let file = open_block_file(&path, IoBackend::Auto).unwrap();
    let config = Config {
        pool_bytes: MIN_POOL_PAGES * PAGE_SIZE,
        max_bytes: 1 << 32,
        alloc: Some(state),
        ..Config::default()
    };
    let bm = BufferManager::open(file, config).unwrap();
    let page = bm.shared(pid).unwrap();
    assert_eq!(check(page.payload(), pid), Ok(7));
    assert_eq!(page.lsn(), 99);
}

#[test]
fn a_page_corrupted_on_disk_is_an_error_naming_it() {
    let dir = tempfile::TempDir::new().unwrap();
    let path = dir.path().join("pages");
    let pid = {
        let bm = open(
            open_block_file(&path, IoBackend::Auto).unwrap(),
            MIN_POOL_PAGES,
        );
        let mut page = bm.alloc().unwrap();
        let pid = page.pid();
        stamp(page.payload_mut(), pid, 1);
        drop(page);
        bm.flush_dirty().unwrap();
        pid
    };
    // Flip one bit in the middle of the page, behind the pool's back.
    let raw = std::fs::read(&path).unwrap();
    let mut raw = raw;
    raw[pid as usize * PAGE_SIZE + 1000] ^= 0x10;
    std::fs::write(&path, &raw).unwrap();
    let bm = open(
        open_block_file(&path, IoBackend::Auto).unwrap(),
        MIN_POOL_PAGES,
    );
    let result = bm.shared(pid).map(|_| ());
    match result {
        Err(PageError::Corrupt { pid: p, .. }) => assert_eq!(p, pid),
        other => panic!("expected a corruption error, got {other:?}"),
    }
}

#[test]
fn free_frame_discards_an_evicted_extent_without_reading_it() {
    let (bm, file, _dir) = faulty_pool(MIN_POOL_PAGES, rime_bufmgr::io::FaultPlan::default());
    let pid = bm.alloc_extent(8).unwrap().pid();
    for _ in 0..2 * MIN_POOL_PAGES {
        drop(bm.alloc().unwrap());
    }
    assert!(!bm.is_resident(pid));
    // Any read of the extent would fail now: freeing must not read it.
    let offsets = (0..8).map(|i| (pid + i) * PAGE_SIZE as u64).collect();
    file.set_plan(rime_bufmgr::io::FaultPlan {
        fail_reads_at: offsets,
        ..Default::default()
    });
    bm.free_frame(pid, 8).unwrap();
    assert!(bm.alloc_state().free.contains(&(pid, 8)));
    let reused = bm.alloc_extent(8).unwrap();
    assert_eq!(reused.pid(), pid, "the freed run is reused");
    assert!(reused.payload().iter().all(|&b| b == 0));
}

#[test]
fn free_frame_releases_a_resident_frame() {
    let p = pool(MIN_POOL_PAGES);
    let mut page = p.bm.alloc().unwrap();
    page.payload_mut()[0] = 1;
    let pid = page.pid();
    drop(page);
    let before = p.bm.resident_pages();
    p.bm.free_frame(pid, 1).unwrap();
    assert_eq!(p.bm.resident_pages(), before - 1);
    assert!(!p.bm.is_resident(pid));
}

/// A prefetch is only a hint: for an evicted page, a page never allocated,
/// an id past the end of the region and more lines than a page has, it
/// neither faults (the process would die of SIGSEGV) nor changes what a
/// later read sees.
#[test]
fn prefetch_never_faults_and_changes_nothing() {
    let p = pool(MIN_POOL_PAGES);
    let mut pids = Vec::new();
    for g in 0..2 * MIN_POOL_PAGES as u64 {
        let mut page = p.bm.alloc().unwrap();
        let pid = page.pid();
        stamp(page.payload_mut(), pid, g);
        pids.push(pid);
    }
    let evicted = *pids
        .iter()
        .find(|&&pid| !p.bm.is_resident(pid))
        .expect("the pool holds half of the pages: some were evicted");
    for pid in
        pids.iter()
            .copied()
            .chain([evicted, pids[pids.len() - 1] + 1, u64::MAX / 2, u64::MAX])
    {
        p.bm.prefetch(pid, 3);
        p.bm.prefetch(pid, usize::MAX);
    }
    assert!(!p.bm.is_resident(evicted), "a prefetch loads nothing");
    for (g, &pid) in pids.iter().enumerate() {
        let page = p.bm.shared(pid).unwrap();
        assert_eq!(check(page.payload(), pid), Ok(g as u64));
    }
}
