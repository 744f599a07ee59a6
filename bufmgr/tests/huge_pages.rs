//! Transparent huge pages while the database fits (`rime_bufmgr::HugePages`),
//! checked in the kernel's own account of this process: `/proc/self/smaps`.
//!
//! These tests need transparent huge pages in `madvise` or `always` mode
//! (Debian's default, and CI's); where the kernel has them off they fail
//! and say so rather than pass without testing anything.
#![forbid(unsafe_code)]

mod common;
use common::*;
use rime_bufmgr::io::{IoBackend, open_block_file};
use rime_bufmgr::{BufferManager, Config, HUGE_PAGE_BYTES, HugePages, PAGE_SIZE};

/// What smaps says about the mapping that contains `addr`.
#[derive(Debug)]
struct Vma {
    flags: Vec<String>,
    anon_huge_kib: u64,
}

fn vma_of(addr: usize) -> Vma {
    let smaps = std::fs::read_to_string("/proc/self/smaps").expect("/proc/self/smaps");
    let mut inside = false;
    let mut huge_kib = 0;
    for line in smaps.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if let Some((lo, hi)) = first.split_once('-')
            && let (Ok(lo), Ok(hi)) = (usize::from_str_radix(lo, 16), usize::from_str_radix(hi, 16))
        {
            inside = (lo..hi).contains(&addr);
            continue;
        }
        if !inside {
            continue;
        }
        if let Some(kib) = line.strip_prefix("AnonHugePages:") {
            huge_kib = kib.trim().trim_end_matches("kB").trim().parse().unwrap();
        }
        if let Some(flags) = line.strip_prefix("VmFlags:") {
            return Vma {
                flags: flags.split_whitespace().map(str::to_owned).collect(),
                anon_huge_kib: huge_kib,
            };
        }
    }
    panic!("no mapping contains {addr:#x}");
}

fn pool_with(pool_bytes: usize, huge_pages: HugePages) -> Pool {
    let dir = tempfile::TempDir::new().unwrap();
    let file = open_block_file(&dir.path().join("pages"), IoBackend::Auto).unwrap();
    let config = Config {
        pool_bytes,
        max_bytes: 1 << 32,
        huge_pages,
        ..Config::default()
    };
    Pool {
        bm: BufferManager::open(file, config).unwrap(),
        dir,
    }
}

/// Allocates `pages` pages, stamps each, returns their ids and the address
/// of the first one's payload.
fn fill(bm: &BufferManager, pages: u64) -> (Vec<u64>, usize) {
    let mut pids = Vec::new();
    let mut first = 0;
    for g in 0..pages {
        let mut page = bm.alloc().unwrap();
        let pid = page.pid();
        stamp(page.payload_mut(), pid, g);
        if pids.is_empty() {
            first = page.payload().as_ptr() as usize;
        }
        pids.push(pid);
    }
    (pids, first)
}

#[test]
fn a_pool_that_holds_its_database_is_backed_by_huge_pages() {
    require_thp();
    let p = pool_with(64 << 20, HugePages::WhileFits);
    assert!(p.bm.huge_pages_active());
    let (_, addr) = fill(&p.bm, (8 * HUGE_PAGE_BYTES / PAGE_SIZE) as u64);
    let vma = vma_of(addr);
    assert!(vma.flags.iter().any(|f| f == "hg"), "{vma:?}");
    assert!(
        vma.anon_huge_kib >= (HUGE_PAGE_BYTES >> 10) as u64,
        "8 huge pages' worth written, none backed by a huge page: {vma:?}"
    );
}

#[test]
fn the_first_eviction_returns_the_pool_to_small_pages_and_loses_nothing() {
    require_thp();
    let pool_pages = 2 * HUGE_PAGE_BYTES / PAGE_SIZE;
    let p = pool_with(pool_pages * PAGE_SIZE, HugePages::WhileFits);
    let (pids, addr) = fill(&p.bm, 3 * pool_pages as u64);
    assert!(p.bm.stats().evictions > 0, "the test needs eviction");
    assert!(!p.bm.huge_pages_active());
    let vma = vma_of(addr);
    assert!(vma.flags.iter().any(|f| f == "nh"), "{vma:?}");
    for (g, &pid) in pids.iter().enumerate() {
        let page = p.bm.shared(pid).unwrap();
        assert_eq!(check(page.payload(), pid), Ok(g as u64));
    }
    assert!(p.bm.resident_pages() <= p.bm.budget_pages());
}

#[test]
fn a_database_larger_than_the_pool_opens_with_small_pages() {
    let pool_pages = HUGE_PAGE_BYTES / PAGE_SIZE;
    let dir = tempfile::TempDir::new().unwrap();
    let path = dir.path().join("pages");
    {
        let file = open_block_file(&path, IoBackend::Auto).unwrap();
        let bm = open(file, 4 * pool_pages);
        fill(&bm, 2 * pool_pages as u64);
        bm.flush_dirty().unwrap();
    }
    let file = open_block_file(&path, IoBackend::Auto).unwrap();
    let bm = open(file, pool_pages);
    assert!(!bm.huge_pages_active());
}

#[test]
fn huge_pages_never_keeps_small_pages() {
    let p = pool_with(64 << 20, HugePages::Never);
    assert!(!p.bm.huge_pages_active());
    let (_, addr) = fill(&p.bm, 1024);
    let vma = vma_of(addr);
    assert!(!vma.flags.iter().any(|f| f == "hg"), "{vma:?}");
}
