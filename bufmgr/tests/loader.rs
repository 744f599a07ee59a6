//! The loader: many misses in flight from one thread, each frame read
//! once, every failure reported for its own frame only.

mod common;
use common::*;
use rime_bufmgr::io::FaultPlan;
use rime_bufmgr::testing::evict;
use rime_bufmgr::{BufferManager, Fetch, Loader, MIN_POOL_PAGES, PageError, PageId};
use std::collections::HashMap;

fn fill(bm: &BufferManager, n: usize) -> Vec<PageId> {
    let pids: Vec<PageId> = (0..n)
        .map(|g| {
            let mut page = bm.alloc().unwrap();
            let pid = page.pid();
            stamp(page.payload_mut(), pid, g as u64);
            pid
        })
        .collect();
    bm.flush_dirty().unwrap();
    pids
}

/// The loader of a pool on the real io_uring file must use its own ring:
/// else these tests would only exercise the synchronous fallback.
fn ring_loader(bm: &BufferManager) -> Loader<'_> {
    let loader = Loader::new(bm);
    if std::env::var_os("RIME_SKIP_IO_URING").is_none() {
        assert!(
            loader.uses_ring(),
            "io_uring is required for this test (RIME_SKIP_IO_URING unset)"
        );
    }
    loader
}

/// Polls until every request is reported; returns the outcomes by page.
fn drain(loader: &mut Loader<'_>, bm: &BufferManager) -> HashMap<PageId, Result<(), PageError>> {
    let mut out = HashMap::new();
    while loader.pending() > 0 {
        loader.poll(true, |pid, r| {
            if r.is_ok() {
                assert!(
                    bm.is_resident(pid),
                    "page {pid} reported in but not resident"
                );
            }
            out.insert(pid, r);
        });
    }
    out
}

#[test]
fn a_loader_keeps_many_reads_in_flight_and_every_page_arrives_intact() {
    let p = pool(MIN_POOL_PAGES * 4);
    let pids = fill(&p.bm, MIN_POOL_PAGES * 16);
    let mut loader = ring_loader(&p.bm);
    let before = p.bm.stats().misses;
    let mut most_in_flight = 0;
    let mut arrived = 0;
    // Request in waves of what the pool can hold, checking each page as
    // it is reported (later waves evict earlier ones).
    for wave in pids.chunks(MIN_POOL_PAGES) {
        for &pid in wave {
            loader.request(pid, 1);
            most_in_flight = most_in_flight.max(loader.reads());
        }
        while loader.pending() > 0 {
            loader.poll(true, |pid, r| {
                r.unwrap();
                let page = p.bm.shared(pid).unwrap();
                check(page.payload(), pid).unwrap();
                arrived += 1;
            });
        }
    }
    assert_eq!(arrived, pids.len());
    assert!(
        most_in_flight >= 32,
        "one thread kept only {most_in_flight} reads in flight"
    );
    assert!(p.bm.stats().misses - before >= pids.len() as u64 / 2);
}

#[test]
fn two_requests_for_one_page_share_one_read() {
    let p = pool(MIN_POOL_PAGES);
    let pids = fill(&p.bm, MIN_POOL_PAGES * 2);
    let victim = pids[0];
    evict(&p.bm, victim, &pids[MIN_POOL_PAGES..]);
    let mut loader = ring_loader(&p.bm);
    loader.request(victim, 1);
    loader.request(victim, 1);
    if loader.uses_ring() {
        assert_eq!(loader.reads(), 1, "the second request joins the first read");
    }
    let mut reports = 0;
    while loader.pending() > 0 {
        loader.poll(true, |pid, r| {
            assert_eq!(pid, victim);
            r.unwrap();
            reports += 1;
        });
    }
    assert_eq!(reports, 2, "each request is answered");
    check(p.bm.shared(victim).unwrap().payload(), victim).unwrap();
}

#[test]
fn an_injected_read_error_reaches_only_its_page_which_stays_evicted_and_loads_later() {
    // The fault-injecting file offers no direct descriptor, so the loader
    // reads through it (synchronously) and every read meets the plan.
    let (bm, file, _dir) = faulty_pool(MIN_POOL_PAGES, FaultPlan::default());
    let pids = fill(&bm, MIN_POOL_PAGES * 2);
    let (bad, good) = (pids[0], pids[1]);
    evict(&bm, bad, &pids[MIN_POOL_PAGES..]);
    evict(&bm, good, &pids[MIN_POOL_PAGES..]);
    file.set_plan(FaultPlan {
        fail_reads_at: vec![bad * rime_bufmgr::PAGE_SIZE as u64],
        ..FaultPlan::default()
    });
    let mut loader = Loader::new(&bm);
    loader.request(bad, 1);
    loader.request(good, 1);
    let out = drain(&mut loader, &bm);
    assert!(matches!(out[&bad], Err(PageError::Io { pid, .. }) if pid == bad));
    assert!(out[&good].is_ok());
    assert!(
        !bm.is_resident(bad),
        "a failed read leaves the page evicted"
    );
    file.set_plan(FaultPlan::default());
    loader.request(bad, 1);
    assert!(
        drain(&mut loader, &bm)[&bad].is_ok(),
        "the next request reads it"
    );
    check(bm.shared(bad).unwrap().payload(), bad).unwrap();
}

#[test]
fn a_short_read_is_an_error_never_a_half_filled_page() {
    let (bm, file, _dir) = faulty_pool(MIN_POOL_PAGES, FaultPlan::default());
    let pids = fill(&bm, MIN_POOL_PAGES * 2);
    let victim = pids[3];
    evict(&bm, victim, &pids[MIN_POOL_PAGES..]);
    file.set_plan(FaultPlan {
        short_read_at: Some(victim * rime_bufmgr::PAGE_SIZE as u64),
        ..FaultPlan::default()
    });
    let mut loader = Loader::new(&bm);
    loader.request(victim, 1);
    let out = drain(&mut loader, &bm);
    assert!(out[&victim].is_err(), "{:?}", out[&victim]);
    assert!(!bm.is_resident(victim));
}

#[test]
fn dropping_a_loader_with_reads_in_flight_leaves_no_page_latched() {
    let p = pool(MIN_POOL_PAGES * 2);
    let pids = fill(&p.bm, MIN_POOL_PAGES * 8);
    {
        let mut loader = ring_loader(&p.bm);
        for &pid in &pids[..64] {
            loader.request(pid, 1);
        }
        // Dropped with everything queued or in flight.
    }
    for &pid in &pids[..64] {
        let page =
            p.bm.exclusive(pid)
                .expect("no page is left latched or loading");
        check(page.payload(), pid).unwrap();
    }
}

#[test]
fn a_nowait_section_reports_the_page_it_misses_instead_of_reading_it() {
    let p = pool(MIN_POOL_PAGES);
    let pids = fill(&p.bm, MIN_POOL_PAGES * 2);
    let victim = pids[5];
    evict(&p.bm, victim, &pids[MIN_POOL_PAGES..]);
    let misses = p.bm.stats().misses;
    let read_first_byte = || {
        // SAFETY: the closure holds only a Copy guard and reads one byte.
        unsafe {
            p.bm.optimistic_nowait(|s| {
                let g = s.read(victim)?;
                let b = g.payload()[0];
                g.validate()?;
                Ok(b)
            })
        }
        .unwrap()
    };
    assert_eq!(
        read_first_byte(),
        Fetch::Missing {
            pid: victim,
            pages: 1
        }
    );
    assert!(!p.bm.is_resident(victim), "the section did not read it");
    assert_eq!(p.bm.stats().misses, misses, "nor count a miss");
    let mut loader = ring_loader(&p.bm);
    loader.request(victim, 1);
    drain(&mut loader, &p.bm)[&victim].as_ref().unwrap();
    assert_eq!(read_first_byte(), Fetch::Ready(victim.to_le_bytes()[0]));
}

/// A pool on the fault-injecting file whose loaders read through their own
/// rings (`FaultyFile::set_direct`), faults injected as transfers complete.
/// `None` when io_uring is off (`RIME_SKIP_IO_URING=1`): these tests are
/// about the ring's path.
fn direct_faulty_pool(
    pool_pages: usize,
) -> Option<(
    BufferManager,
    std::sync::Arc<rime_bufmgr::io::FaultyFile>,
    tempfile::TempDir,
)> {
    let (bm, file, dir) = faulty_pool(pool_pages, FaultPlan::default());
    file.set_direct(true);
    if !Loader::new(&bm).uses_ring() {
        assert!(
            std::env::var_os("RIME_SKIP_IO_URING").is_some(),
            "io_uring is required for this test (RIME_SKIP_IO_URING unset)"
        );
        return None;
    }
    Some((bm, file, dir))
}

/// Polls until every request is reported; returns every outcome (a page
/// requested twice is reported twice).
fn drain_all(loader: &mut Loader<'_>) -> Vec<(PageId, Result<(), PageError>)> {
    let mut out = Vec::new();
    while loader.pending() > 0 {
        loader.poll(true, |pid, r| out.push((pid, r)));
    }
    out
}

fn is_injected(r: &Result<(), PageError>, page: PageId) -> bool {
    matches!(r, Err(PageError::Io { pid, source: rime_bufmgr::io::IoError::Injected { .. } }) if *pid == page)
}

#[test]
fn a_failed_read_reaches_every_operation_waiting_for_it_and_the_next_access_retries() {
    let Some((bm, file, _dir)) = direct_faulty_pool(MIN_POOL_PAGES) else {
        return;
    };
    let pids = fill(&bm, MIN_POOL_PAGES * 2);
    let (bad, good) = (pids[0], pids[1]);
    evict(&bm, bad, &pids[MIN_POOL_PAGES..]);
    evict(&bm, good, &pids[MIN_POOL_PAGES..]);
    file.set_plan(FaultPlan {
        fail_reads_at: vec![bad * rime_bufmgr::PAGE_SIZE as u64],
        ..FaultPlan::default()
    });
    let mut a = Loader::new(&bm);
    let mut b = Loader::new(&bm);
    // Loader `a` reads `bad` (queued, not yet submitted) and `good`; a
    // second request of `bad` in `a`, one in `b`, and a blocking latch on
    // another thread all wait for that one read.
    a.request(bad, 1);
    a.request(good, 1);
    a.request(bad, 1);
    b.request(bad, 1);
    assert_eq!(a.reads(), 2, "the second request of `bad` joined the first");
    assert_eq!(b.reads(), 0, "`b` waits for `a`'s read");
    std::thread::scope(|s| {
        let misses = bm.stats().misses;
        let blocked = s.spawn(|| bm.shared(bad).map(drop));
        // The latch counts its miss when it finds the read running, then
        // sleeps until it ends.
        while bm.stats().misses == misses {
            std::thread::yield_now();
        }
        let from_a = drain_all(&mut a);
        let from_b = drain_all(&mut b);
        let blocked = blocked.join().unwrap();
        assert_eq!(from_a.len(), 3);
        for (pid, r) in &from_a {
            if *pid == good {
                assert!(r.is_ok(), "{r:?}");
            } else {
                assert!(is_injected(r, bad), "{pid}: {r:?}");
            }
        }
        assert_eq!(from_b.len(), 1);
        assert!(is_injected(&from_b[0].1, bad), "{:?}", from_b[0]);
        assert!(
            matches!(&blocked, Err(PageError::Io { pid, .. }) if *pid == bad),
            "{blocked:?}"
        );
    });
    assert_eq!(file.failed_reads(), 1, "four operations, one read");
    assert!(
        !bm.is_resident(bad),
        "a failed read leaves the page evicted"
    );
    assert!(bm.is_resident(good));
    // The next access reads again: the failure was that read's, not the
    // page's.
    a.request(bad, 1);
    assert!(is_injected(&drain_all(&mut a)[0].1, bad));
    assert_eq!(file.failed_reads(), 2, "a new read, not a remembered error");
    file.set_plan(FaultPlan::default());
    a.request(bad, 1);
    assert!(drain_all(&mut a)[0].1.is_ok());
    check(bm.shared(bad).unwrap().payload(), bad).unwrap();
}
