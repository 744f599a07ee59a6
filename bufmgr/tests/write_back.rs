//! A loader's write-back: dirty victims of the evictions its reads need are
//! written from copies on its own ring while it goes on, the write-ahead
//! hook first; a page changed while its write is in flight stays dirty; a
//! failed or refused write leaves every page dirty and resident and fails
//! the read that needed the memory.

mod common;
use common::*;
use rand::{Rng, SeedableRng};
use rime_bufmgr::io::{
    AlignedBuf, BlockFile, FaultPlan, FaultyFile, IoBackend, IoError, IoOp, open_block_file,
};
use rime_bufmgr::{
    BufferManager, Config, FRAME_HEADER_SIZE, Fetch, Interrupt, Loader, MIN_POOL_PAGES,
    PAGE_PAYLOAD, PAGE_SIZE, PageError, PageId, WriteBackHook, WriteBackRefused,
};
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// The write-ahead hook of these tests: counts its calls and, once armed,
/// checks that the page's write has not reached the file yet (the file
/// still holds generation 0 of it) and may refuse.
struct Hook {
    file: Arc<dyn BlockFile>,
    armed: AtomicBool,
    refuse: AtomicBool,
    calls: AtomicU64,
    /// Pages whose write had reached the file before the hook was asked.
    early: AtomicU64,
}

impl WriteBackHook for Hook {
    fn before_write(&self, pid: PageId, page_lsn: u64) -> Result<(), WriteBackRefused> {
        if !self.armed.load(Ordering::SeqCst) {
            return Ok(());
        }
        self.calls.fetch_add(1, Ordering::SeqCst);
        let mut disk = AlignedBuf::zeroed(PAGE_SIZE);
        self.file
            .read_at(pid * PAGE_SIZE as u64, &mut disk)
            .unwrap();
        if generation_on_disk(&disk[FRAME_HEADER_SIZE..], pid) != Some(0) {
            self.early.fetch_add(1, Ordering::SeqCst);
        }
        if self.refuse.load(Ordering::SeqCst) {
            return Err(WriteBackRefused::LogNotDurable {
                pid,
                reason: format!("not durable up to {page_lsn}"),
            });
        }
        Ok(())
    }
}

/// The generation stamped in the first page of a frame read from the
/// file (`None` if it holds no stamp of `pid`). The whole-frame checksum
/// is not checked: an extent's first page does not hold all of it.
fn generation_on_disk(payload: &[u8], pid: PageId) -> Option<u64> {
    let id = u64::from_le_bytes(payload[..8].try_into().unwrap());
    (id == pid).then(|| u64::from_le_bytes(payload[8..16].try_into().unwrap()))
}

struct Setup {
    bm: BufferManager,
    hook: Arc<Hook>,
    /// The fault-injecting file, offering its descriptor to loaders.
    faulty: Arc<FaultyFile>,
    /// Every page, generation 0 on disk.
    pids: Vec<PageId>,
    /// Half the pages resident after the fill, now dirty with generation 1
    /// (the other half is clean).
    dirty: Vec<PageId>,
    _dir: tempfile::TempDir,
}

/// A pool of the minimum budget over 4x as many pages, flushed, then
/// filled to its budget with half the resident pages dirtied (generation
/// 1): the next miss evicts clean and dirty pages. `None` without io_uring
/// (these tests are about the ring).
fn setup() -> Option<Setup> {
    let dir = tempfile::TempDir::new().unwrap();
    let real = open_block_file(&dir.path().join("pages"), IoBackend::Auto).unwrap();
    let faulty = Arc::new(FaultyFile::new(real.clone(), FaultPlan::default()));
    faulty.set_direct(true);
    let hook = Arc::new(Hook {
        file: real,
        armed: AtomicBool::new(false),
        refuse: AtomicBool::new(false),
        calls: AtomicU64::new(0),
        early: AtomicU64::new(0),
    });
    let config = Config {
        pool_bytes: MIN_POOL_PAGES * PAGE_SIZE,
        max_bytes: 1 << 32,
        write_back: Some(hook.clone()),
        ..Config::default()
    };
    let bm = BufferManager::open(faulty.clone(), config).unwrap();
    if !ring_or_skip(&bm) {
        return None;
    }
    let pids = stamped_pages(&bm, 4 * MIN_POOL_PAGES);
    bm.flush_dirty().unwrap();
    // Fill the budget exactly (the resident pages, then evicted ones loaded
    // while there is room), and dirty every other page.
    let mut resident: Vec<PageId> = pids
        .iter()
        .copied()
        .filter(|&pid| bm.is_resident(pid))
        .collect();
    let mut more = pids.iter().copied().filter(|&pid| !bm.is_resident(pid));
    while bm.resident_pages() < bm.budget_pages() {
        resident.push(more.next().unwrap());
        drop(bm.shared(*resident.last().unwrap()).unwrap());
    }
    let dirty: Vec<PageId> = resident.iter().copied().step_by(2).collect();
    for &pid in &dirty {
        let mut page = bm.exclusive(pid).unwrap();
        stamp(page.payload_mut(), pid, 1);
    }
    assert_eq!(bm.resident_pages(), bm.budget_pages());
    assert!(resident.iter().all(|&p| bm.is_resident(p)));
    hook.armed.store(true, Ordering::SeqCst);
    Some(Setup {
        bm,
        hook,
        faulty,
        pids,
        dirty,
        _dir: dir,
    })
}

/// Polls until everything is reported and every write-back is done.
fn drain(loader: &mut Loader<'_>) -> Vec<(PageId, Result<(), PageError>)> {
    let mut out = Vec::new();
    while loader.pending() > 0 {
        loader.poll(true, |pid, r| out.push((pid, r)));
    }
    assert_eq!(loader.writes(), 0);
    out
}

/// Checks every page against its expected generation, twice: as it is now,
/// and after every page was evicted in between (read back from the file).
fn verify(bm: &BufferManager, pids: &[PageId], expected: impl Fn(PageId) -> u64) {
    for _ in 0..2 {
        for &pid in pids {
            let got = check(bm.shared(pid).unwrap().payload(), pid);
            assert_eq!(got, Ok(expected(pid)), "page {pid}");
        }
    }
}

#[test]
fn a_loader_writes_dirty_victims_from_copies_on_its_ring_and_goes_on() {
    let Some(s) = setup() else { return };
    let bm = &s.bm;
    let evicted: Vec<PageId> = s
        .pids
        .iter()
        .copied()
        .filter(|&p| !bm.is_resident(p))
        .take(32)
        .collect();
    let before = bm.stats();
    let mut loader = Loader::new(bm);
    let mut most_writes = 0;
    for &pid in &evicted {
        loader.request(pid, 1);
        most_writes = most_writes.max(loader.writes());
    }
    assert!(
        most_writes > 0,
        "the reads' evictions left write-backs in flight"
    );
    // With write-backs in flight, another thread latches and changes every
    // dirty page still in memory, at once: no write-back holds a latch on
    // its page (this thread does not poll meanwhile).
    let requested: HashSet<PageId> = evicted.iter().copied().collect();
    let changed: Vec<PageId> = s
        .dirty
        .iter()
        .copied()
        .filter(|p| bm.is_resident(*p) && !requested.contains(p))
        .collect();
    std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::channel();
        let changed = &changed;
        scope.spawn(move || {
            for &pid in changed {
                let mut page = bm.exclusive(pid).unwrap();
                stamp(page.payload_mut(), pid, 2);
            }
            tx.send(()).unwrap();
        });
        rx.recv_timeout(Duration::from_secs(20))
            .expect("a write-back in flight kept a page latched");
    });
    for (pid, r) in drain(&mut loader) {
        r.unwrap_or_else(|e| panic!("{pid}: {e}"));
    }
    let stats = bm.stats();
    let written = stats.write_backs - before.write_backs;
    assert!(written > 0);
    assert_eq!(
        s.hook.early.load(Ordering::SeqCst),
        0,
        "a page reached the file before the write-back hook approved it"
    );
    assert!(s.hook.calls.load(Ordering::SeqCst) >= written);
    drop(loader);
    // A page changed while its write was in flight stayed dirty: its
    // change reached the file later; nothing was lost.
    let changed: HashSet<PageId> = changed.into_iter().collect();
    let dirty: HashSet<PageId> = s.dirty.iter().copied().collect();
    s.hook.armed.store(false, Ordering::SeqCst);
    verify(bm, &s.pids, |pid| {
        if changed.contains(&pid) {
            2
        } else if dirty.contains(&pid) {
            1
        } else {
            0
        }
    });
}

#[test]
fn a_failed_write_back_on_the_ring_leaves_pages_dirty_and_fails_the_read_that_needed_room() {
    let Some(mut s) = setup() else { return };
    let bm = &s.bm;
    // Every resident page dirty: no clean victim gives the read its memory
    // while the write-backs run.
    let clean: Vec<PageId> = s
        .pids
        .iter()
        .copied()
        .filter(|&p| bm.is_resident(p) && !bm.is_dirty(p))
        .collect();
    for &pid in &clean {
        let mut page = bm.exclusive(pid).unwrap();
        stamp(page.payload_mut(), pid, 1);
    }
    s.dirty.extend(clean);
    let bm = &s.bm;
    s.faulty.set_plan(FaultPlan {
        fail_all_writes: true,
        ..FaultPlan::default()
    });
    let victim = *s.pids.iter().find(|&&p| !bm.is_resident(p)).unwrap();
    let mut loader = Loader::new(bm);
    loader.request(victim, 1);
    let out = drain(&mut loader);
    assert_eq!(out.len(), 1);
    assert!(
        matches!(
            &out[0].1,
            Err(PageError::Io {
                source: IoError::Injected {
                    op: IoOp::Write,
                    ..
                },
                ..
            })
        ),
        "{:?}",
        out[0]
    );
    assert!(!bm.is_resident(victim));
    assert!(
        s.dirty.iter().all(|&p| bm.is_dirty(p) && bm.is_resident(p)),
        "a failed write-back cleaned or dropped a page"
    );
    s.faulty.set_plan(FaultPlan::default());
    loader.request(victim, 1);
    assert!(drain(&mut loader)[0].1.is_ok());
    drop(loader);
    s.hook.armed.store(false, Ordering::SeqCst);
    let dirty: HashSet<PageId> = s.dirty.iter().copied().collect();
    verify(bm, &s.pids, |pid| u64::from(dirty.contains(&pid)));
}

#[test]
fn a_refused_write_back_on_the_ring_writes_nothing_and_fails_the_read_that_needed_room() {
    let Some(s) = setup() else { return };
    let bm = &s.bm;
    s.hook.refuse.store(true, Ordering::SeqCst);
    let victim = *s.pids.iter().find(|&&p| !bm.is_resident(p)).unwrap();
    let before = bm.stats();
    let mut loader = Loader::new(bm);
    loader.request(victim, 1);
    let out = drain(&mut loader);
    assert!(
        matches!(&out[0].1, Err(PageError::WriteBackRefused { .. })),
        "{:?}",
        out[0]
    );
    assert_eq!(bm.stats().write_backs, before.write_backs);
    assert!(s.dirty.iter().all(|&p| bm.is_dirty(p) && bm.is_resident(p)));
    s.hook.refuse.store(false, Ordering::SeqCst);
    loader.request(victim, 1);
    assert!(drain(&mut loader)[0].1.is_ok());
    drop(loader);
    s.hook.armed.store(false, Ordering::SeqCst);
    let dirty: HashSet<PageId> = s.dirty.iter().copied().collect();
    verify(bm, &s.pids, |pid| u64::from(dirty.contains(&pid)));
}

/// Reads `pid` with a nowait section; the generation, or the frame missing.
fn read_nowait(bm: &BufferManager, pid: PageId) -> Fetch<u64> {
    // SAFETY: the closure keeps only plain data across its reads.
    let copy = unsafe {
        bm.optimistic_nowait(|s| {
            let page = s.read(pid)?;
            let mut copy = [0u8; PAGE_PAYLOAD];
            copy.copy_from_slice(page.payload());
            page.validate()?;
            Ok::<_, Interrupt>(copy)
        })
    }
    .expect("read");
    match copy {
        Fetch::Ready(copy) => Fetch::Ready(
            check(&copy, pid).unwrap_or_else(|e| panic!("a nowait read accepted a bad page: {e}")),
        ),
        Fetch::Missing { pid, pages } => Fetch::Missing { pid, pages },
    }
}

/// Writers change random pages while loaders read random pages, 64 at a
/// time, over a pool of 1/16 of the data: the loaders' reads evict dirty
/// pages, whose writes are in flight while the writers change them. No
/// write is lost, no bad page is read.
#[test]
fn loaders_and_writers_under_heavy_eviction_lose_no_write() {
    let p = pool(MIN_POOL_PAGES);
    let bm = &p.bm;
    if !ring_or_skip(bm) {
        return;
    }
    let pids = stamped_pages(bm, 16 * MIN_POOL_PAGES);
    let gens: Vec<AtomicU64> = pids.iter().map(|_| AtomicU64::new(0)).collect();
    let (pids, gens) = (&pids, &gens);
    let before = bm.stats();
    std::thread::scope(|scope| {
        for t in 0..2u64 {
            scope.spawn(move || {
                let mut rng = rand::rngs::StdRng::seed_from_u64(t);
                for _ in 0..3_000 {
                    let i = rng.gen_range(0..pids.len());
                    let mut page = bm.exclusive(pids[i]).unwrap();
                    let generation = check(page.payload(), pids[i]).unwrap();
                    assert_eq!(
                        generation,
                        gens[i].load(Ordering::Relaxed),
                        "a lost write on page {}",
                        pids[i]
                    );
                    stamp(page.payload_mut(), pids[i], generation + 1);
                    gens[i].store(generation + 1, Ordering::Release);
                }
            });
        }
        for t in 0..2u64 {
            scope.spawn(move || {
                let mut rng = rand::rngs::StdRng::seed_from_u64(100 + t);
                let mut loader = Loader::new(bm);
                for _ in 0..60 {
                    let mut todo: Vec<usize> =
                        (0..64).map(|_| rng.gen_range(0..pids.len())).collect();
                    while !todo.is_empty() {
                        let mut waiting = Vec::new();
                        for i in todo.drain(..) {
                            match read_nowait(bm, pids[i]) {
                                Fetch::Ready(generation) => assert!(
                                    generation <= gens[i].load(Ordering::Acquire),
                                    "a generation from the future"
                                ),
                                Fetch::Missing { pid, pages } => {
                                    loader.request(pid, pages);
                                    waiting.push(i);
                                }
                            }
                        }
                        while loader.pending() > 0 {
                            loader.poll(true, |pid, r| {
                                r.unwrap_or_else(|e| panic!("{pid}: {e}"));
                            });
                        }
                        todo = waiting;
                    }
                }
            });
        }
    });
    let stats = bm.stats();
    eprintln!("{stats:?}");
    assert!(stats.write_backs > before.write_backs);
    assert!(bm.resident_pages() <= bm.budget_pages());
    for _ in 0..2 {
        for (i, &pid) in pids.iter().enumerate() {
            assert_eq!(
                check(bm.shared(pid).unwrap().payload(), pid),
                Ok(gens[i].load(Ordering::Relaxed)),
                "page {pid}"
            );
        }
    }
}

/// `n` new pages, each stamped with its id at generation 0.
fn stamped_pages(bm: &BufferManager, n: usize) -> Vec<PageId> {
    (0..n)
        .map(|_| {
            let mut page = bm.alloc().unwrap();
            let pid = page.pid();
            stamp(page.payload_mut(), pid, 0);
            pid
        })
        .collect()
}

/// Whether loaders use their own ring here; without one, these tests
/// fail unless `RIME_SKIP_IO_URING` says to skip them.
fn ring_or_skip(bm: &BufferManager) -> bool {
    if Loader::new(bm).uses_ring() {
        return true;
    }
    assert!(
        std::env::var_os("RIME_SKIP_IO_URING").is_some(),
        "io_uring is required for this test (RIME_SKIP_IO_URING unset)"
    );
    false
}

/// Regression: a loader's eviction round wrote a dirty extent (a large
/// value's frame) synchronously, stalling its thread for the whole write.
/// Now extents go on the ring from copies like pages: the loader's writes
/// include them, none reaches the file before the hook approved it, and
/// every extent reads back as last written, whether it changed while its
/// write was in flight or not.
#[test]
fn a_loader_writes_dirty_extents_from_copies_on_its_ring() {
    const EXTENT_PAGES: u32 = 8;
    let Some(s) = setup() else { return };
    let bm = &s.bm;
    // Extents at generation 0 on disk, then dirtied (generation 1) while
    // resident: evicting them now means writing them.
    s.hook.armed.store(false, Ordering::SeqCst);
    let extents: Vec<PageId> = (0..8)
        .map(|_| {
            let mut frame = bm.alloc_extent(EXTENT_PAGES as usize).unwrap();
            let pid = frame.pid();
            stamp(frame.payload_mut(), pid, 0);
            pid
        })
        .collect();
    bm.flush_dirty().unwrap();
    bm.sync().unwrap();
    for &pid in &extents {
        let mut frame = bm.exclusive_extent(pid, EXTENT_PAGES).unwrap();
        stamp(frame.payload_mut(), pid, 1);
    }
    assert!(extents.iter().all(|&p| bm.is_resident(p) && bm.is_dirty(p)));
    s.hook.armed.store(true, Ordering::SeqCst);
    // Writes through the file's own calls (the blocking path's; the ring
    // writes to the descriptor) are held back from now on, to be counted.
    s.faulty.set_plan(FaultPlan {
        hold_unsynced: true,
        ..FaultPlan::default()
    });
    let before = bm.stats();
    // Read every evicted page: the reservations go round the clock until
    // every resident frame, the extents included, was a victim.
    let mut loader = Loader::new(bm);
    let mut changed = Vec::new();
    for &pid in s.pids.iter().filter(|&&p| !bm.is_resident(p)) {
        loader.request(pid, 1);
        // With write-backs in flight, two resident extents are changed by
        // this thread (a write-back holds no latch): one changed while its
        // own write is in flight must stay dirty and be written again.
        if changed.len() < 2
            && let Some(&victim) = extents
                .iter()
                .find(|&&p| !changed.contains(&p) && bm.is_resident(p) && loader.writes() > 0)
        {
            let mut frame = bm.exclusive_extent(victim, EXTENT_PAGES).unwrap();
            stamp(frame.payload_mut(), victim, 2);
            changed.push(victim);
        }
    }
    for (pid, r) in drain(&mut loader) {
        r.unwrap_or_else(|e| panic!("{pid}: {e}"));
    }
    drop(loader);
    let written = bm.stats().write_backs - before.write_backs;
    assert_eq!(
        s.faulty.unsynced_writes(),
        0,
        "a write-back went through the blocking path, stalling the loader"
    );
    s.faulty.set_plan(FaultPlan::default());
    let evicted_extents = extents.iter().filter(|&&p| !bm.is_resident(p)).count();
    assert!(
        evicted_extents > 0,
        "the loader's rounds evicted no extent ({written} write-backs)"
    );
    assert_eq!(
        s.hook.early.load(Ordering::SeqCst),
        0,
        "a frame reached the file before the write-back hook approved it"
    );
    s.hook.armed.store(false, Ordering::SeqCst);
    for _ in 0..2 {
        for &pid in &extents {
            let frame = bm.shared_extent(pid, EXTENT_PAGES).unwrap();
            let want = if changed.contains(&pid) { 2 } else { 1 };
            assert_eq!(check(frame.payload(), pid), Ok(want), "extent {pid}");
        }
        bm.flush_dirty().unwrap();
        // Evict everything: the second pass reads the extents from the file.
        let mut loader = Loader::new(bm);
        for &pid in &s.pids {
            loader.request(pid, 1);
        }
        drain(&mut loader);
    }
}
