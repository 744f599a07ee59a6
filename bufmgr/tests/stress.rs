//! Stress: threads doing optimistic reads and exclusive writes over a pool
//! whose budget is a small fraction of the data, so every page is evicted
//! and reloaded many times while being read and written. Every page carries
//! its id and a checksum of its contents, checked on every read.

mod common;
use common::*;
use rand::{Rng, SeedableRng};
use rime_bufmgr::{
    BufferManager, Config, Interrupt, PAGE_PAYLOAD, PAGE_SIZE, PageId, ReleasePolicy,
};
use std::sync::atomic::{AtomicU64, Ordering};

/// Threads: at least 4, even on 2 cores, so latches are taken and dropped
/// by preempted threads too.
const THREADS: usize = 6;
/// Pool budget in pages (the minimum), and the data set: 16x the budget,
/// so the budget is ~6% of the pages.
const POOL_PAGES: usize = rime_bufmgr::MIN_POOL_PAGES;
const DATA_PAGES: usize = 16 * POOL_PAGES;

fn scale() -> u64 {
    std::env::var("RIME_STRESS_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
}

/// Reads `pid` optimistically into a stack copy and checks it outside the
/// section. Returns the generation the page carried.
fn read_optimistic(bm: &BufferManager, pid: PageId) -> u64 {
    // SAFETY: the closure keeps only plain data (a stack array and
    // integers) and references live across its reads of page bytes.
    let copy = unsafe {
        bm.optimistic(|s| {
            let page = s.read(pid)?;
            let mut copy = [0u8; PAGE_PAYLOAD];
            copy.copy_from_slice(page.payload());
            page.validate()?;
            Ok::<_, Interrupt>(copy)
        })
    }
    .expect("read");
    check(&copy, pid).unwrap_or_else(|e| panic!("optimistic read accepted a bad page: {e}"))
}

fn run(bm: &BufferManager, pids: &[PageId], writes: &[AtomicU64], ops_per_thread: u64) {
    std::thread::scope(|scope| {
        for t in 0..THREADS {
            scope.spawn(move || {
                let mut rng = rand::rngs::StdRng::seed_from_u64(t as u64);
                for _ in 0..ops_per_thread {
                    let i = rng.gen_range(0..pids.len());
                    let pid = pids[i];
                    match rng.gen_range(0..10) {
                        0..=5 => {
                            let seen = read_optimistic(bm, pid);
                            assert!(
                                seen <= writes[i].load(Ordering::Acquire),
                                "a generation from the future"
                            );
                        }
                        6 => {
                            let page = bm.shared(pid).unwrap();
                            check(page.payload(), pid).unwrap();
                        }
                        _ => {
                            let mut page = bm.exclusive(pid).unwrap();
                            let generation = check(page.payload(), pid).unwrap();
                            assert_eq!(
                                generation,
                                writes[i].load(Ordering::Relaxed),
                                "a lost write on page {pid}"
                            );
                            stamp(page.payload_mut(), pid, generation + 1);
                            writes[i].store(generation + 1, Ordering::Release);
                        }
                    }
                }
            });
        }
    });
}

fn stress(release: ReleasePolicy, ops_per_thread: u64) {
    let dir = tempfile::TempDir::new().unwrap();
    let file = rime_bufmgr::io::open_block_file(
        &dir.path().join("pages"),
        rime_bufmgr::io::IoBackend::Auto,
    )
    .unwrap();
    let config = Config {
        pool_bytes: POOL_PAGES * PAGE_SIZE,
        max_bytes: 1 << 32,
        release,
        ..Config::default()
    };
    let bm = BufferManager::open(file, config).unwrap();
    let pids: Vec<PageId> = (0..DATA_PAGES)
        .map(|_| {
            let mut page = bm.alloc().unwrap();
            let pid = page.pid();
            stamp(page.payload_mut(), pid, 0);
            pid
        })
        .collect();
    let writes: Vec<AtomicU64> = (0..DATA_PAGES).map(|_| AtomicU64::new(0)).collect();
    let before = bm.stats();
    run(&bm, &pids, &writes, ops_per_thread);
    let stats = bm.stats();

    // Every page holds exactly the last generation written to it.
    for (i, &pid) in pids.iter().enumerate() {
        assert_eq!(
            check(bm.shared(pid).unwrap().payload(), pid),
            Ok(writes[i].load(Ordering::Relaxed))
        );
    }
    assert!(bm.resident_pages() <= bm.budget_pages());
    let reloads = (stats.misses - before.misses) as f64 / DATA_PAGES as f64;
    eprintln!(
        "{:?}: {stats:?}, {reloads:.1} reloads per page",
        bm.release_mode()
    );
    assert!(
        reloads >= 3.0 * scale() as f64,
        "every page should be evicted and reloaded many times ({reloads:.1})"
    );
}

#[test]
fn optimistic_and_exclusive_under_heavy_eviction_with_guard_markers() {
    stress(ReleasePolicy::Guard, 4_000 * scale());
}

#[test]
fn optimistic_and_exclusive_under_heavy_eviction_with_dontneed() {
    stress(ReleasePolicy::DontNeed, 4_000 * scale());
}
