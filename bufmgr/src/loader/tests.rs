//! The write-back flag's effects on the paths that meet it: a free while
//! the write is in flight, and a flush.

use crate::io::{IoBackend, open_block_file};
use crate::{BufferManager, Config, Loader, MIN_POOL_PAGES, PAGE_SIZE, PageId};
use std::sync::Arc;
use std::sync::mpsc::channel;
use std::time::Duration;

struct Setup {
    bm: Arc<BufferManager>,
    pids: Vec<PageId>,
    _dir: tempfile::TempDir,
}

/// A full pool (the minimum budget) over 4x as many pages, every other
/// resident page dirty; `None` without io_uring, which fails under CI
/// (where the kernel has it) and is said on stderr elsewhere.
fn setup() -> Option<Setup> {
    let dir = tempfile::TempDir::new().unwrap();
    let file = open_block_file(&dir.path().join("pages"), IoBackend::Auto).unwrap();
    let config = Config {
        pool_bytes: MIN_POOL_PAGES * PAGE_SIZE,
        max_bytes: 1 << 32,
        ..Config::default()
    };
    let bm = Arc::new(BufferManager::open(file, config).unwrap());
    if !Loader::new(&bm).uses_ring() {
        assert!(
            std::env::var_os("CI").is_none(),
            "no io_uring for a loader: these tests need it"
        );
        eprintln!("SKIPPED: no io_uring for a loader on this kernel");
        return None;
    }
    let pids: Vec<PageId> = (0..4 * MIN_POOL_PAGES)
        .map(|g| {
            let mut page = bm.alloc().unwrap();
            page.payload_mut()[..8].copy_from_slice(&(g as u64).to_le_bytes());
            page.pid()
        })
        .collect();
    bm.flush_dirty().unwrap();
    for &pid in &pids {
        if bm.resident_pages() == bm.budget_pages() {
            break;
        }
        drop(bm.shared(pid).unwrap());
    }
    let resident: Vec<PageId> = pids
        .iter()
        .copied()
        .filter(|&p| bm.is_resident(p))
        .collect();
    for &pid in resident.iter().step_by(2) {
        let mut page = bm.exclusive(pid).unwrap();
        page.payload_mut()[8] ^= 1;
    }
    Some(Setup {
        bm,
        pids,
        _dir: dir,
    })
}

/// Requests evicted pages until the loader has write-backs in flight;
/// returns a page being written.
fn start_writes<'a>(s: &'a Setup, loader: &mut Loader<'a>) -> PageId {
    for &pid in &s.pids {
        if loader.writes() > 0 {
            break;
        }
        if !s.bm.is_resident(pid) {
            loader.request(pid, 1);
        }
    }
    assert!(loader.writes() > 0, "no write-back in flight");
    s.pids
        .iter()
        .copied()
        .find(|&p| s.bm.inner.meta(p).is_writing())
        .expect("a page with W set")
}

fn drain(loader: &mut Loader<'_>) {
    while loader.pending() > 0 {
        loader.poll(true, |pid, r| {
            r.unwrap_or_else(|e| panic!("{pid}: {e}"));
        });
    }
}

#[test]
fn a_page_freed_while_its_write_is_in_flight_is_reused_only_after_the_write() {
    let Some(s) = setup() else { return };
    let mut loader = Loader::new(&s.bm);
    let p = start_writes(&s, &mut loader);
    s.bm.free_frame(p, 1).unwrap();
    let free = |pid| {
        s.bm.alloc_state()
            .free
            .iter()
            .any(|&(first, n)| (first..first + u64::from(n)).contains(&pid))
    };
    assert!(
        !free(p),
        "the id went back while its old write is in flight"
    );
    for _ in 0..8 {
        let page = s.bm.alloc().unwrap();
        assert_ne!(page.pid(), p);
    }
    drain(&mut loader);
    assert!(!s.bm.inner.meta(p).is_writing());
    assert!(free(p), "the write's completion gave the id back");
}

#[test]
fn a_flush_waits_for_a_write_in_flight_before_it_writes_the_page_again() {
    let Some(s) = setup() else { return };
    let mut loader = Loader::new(&s.bm);
    let p = start_writes(&s, &mut loader);
    // Change it while its write is in flight: the flush must write the
    // change, and only after the loader's write (never under it).
    {
        let mut page = s.bm.exclusive(p).unwrap();
        page.payload_mut()[9] = 0x5a;
    }
    std::thread::scope(|scope| {
        let flush = scope.spawn(|| s.bm.flush_dirty());
        std::thread::sleep(std::time::Duration::from_millis(200));
        assert!(
            !flush.is_finished(),
            "the flush wrote a page whose earlier write is in flight"
        );
        drain(&mut loader);
        flush.join().unwrap().unwrap();
    });
    assert!(!s.bm.is_dirty(p));
    // The file holds the change.
    let mut disk = crate::io::AlignedBuf::zeroed(PAGE_SIZE);
    s.bm.file()
        .read_at(p * PAGE_SIZE as u64, &mut disk)
        .unwrap();
    assert_eq!(disk[crate::FRAME_HEADER_SIZE + 9], 0x5a);
}

#[test]
fn a_nowait_section_does_not_spin_on_a_page_latched_while_its_write_is_in_flight() {
    let Some(s) = setup() else { return };
    let mut loader = Loader::new(&s.bm);
    let p = start_writes(&s, &mut loader);
    std::thread::scope(|scope| {
        // Another thread latches p and writes it back now: it waits for
        // the write in flight, which only this thread's poll completes.
        let (tx, rx) = std::sync::mpsc::channel();
        let bm = &s.bm;
        let writer = scope.spawn(move || {
            let mut page = bm.exclusive(p).unwrap();
            tx.send(()).unwrap();
            page.payload_mut()[9] ^= 1;
            page.write_back().unwrap();
        });
        rx.recv().unwrap();
        // This thread's section meets p latched: it must stop (and let this
        // thread poll), not spin until the latch goes.
        loop {
            // SAFETY: the closure holds only a Copy guard and reads a byte.
            let fetched = unsafe {
                s.bm.optimistic_nowait(|sec| {
                    let g = sec.read(p)?;
                    let b = g.payload()[9];
                    g.validate()?;
                    Ok(b)
                })
            }
            .unwrap();
            match fetched {
                crate::Fetch::Ready(_) => break,
                crate::Fetch::Missing { pid, pages } => {
                    loader.request(pid, pages);
                    loader.poll(true, |_, r| r.unwrap());
                }
            }
        }
        writer.join().unwrap();
    });
    drain(&mut loader);
}

/// Regression (a hang of the faas `executors` test in CI): an executor
/// held a tree's gate and waited for a page that another executor's loader
/// was reading, while that executor waited for the gate; only the second
/// executor's poll could complete the read. A thread blocked on a latch
/// now reaps its owned loader's reads (`loader::blocked`), so the holder's
/// wait ends. Here the latch stands for the lock.
#[test]
fn a_thread_blocked_on_a_latch_completes_its_loaders_read_that_the_holder_waits_for() {
    let Some(s) = setup() else { return };
    let s = Arc::new(s);
    let evicted = *s.pids.iter().find(|&&p| !s.bm.is_resident(p)).unwrap();
    let held = *s.pids.iter().find(|&&p| s.bm.is_resident(p)).unwrap();
    let (latched_tx, latched_rx) = channel();
    let (requested_tx, requested_rx) = channel();
    let (done_tx, done_rx) = channel();
    // The holder: latches `held`, then waits for `evicted`.
    let holder = {
        let (s, done_tx) = (s.clone(), done_tx.clone());
        std::thread::spawn(move || {
            let mut latch = s.bm.exclusive(held).unwrap();
            latched_tx.send(()).unwrap();
            requested_rx.recv().unwrap();
            let page = s.bm.shared(evicted).unwrap();
            let g = u64::from_le_bytes(page.payload()[..8].try_into().unwrap());
            latch.payload_mut()[10] ^= 1;
            drop((page, latch));
            done_tx.send(("holder", g)).unwrap();
        })
    };
    // The loader's owner: reads `evicted` (queued, not yet submitted),
    // then blocks on the holder's latch without polling.
    let owner = {
        let s = s.clone();
        std::thread::spawn(move || {
            let mut loader = Loader::owned(&s.bm);
            latched_rx.recv().unwrap();
            loader.request(evicted, 1);
            requested_tx.send(()).unwrap();
            drop(s.bm.exclusive(held).unwrap());
            let mut outcomes = Vec::new();
            while loader.pending() > 0 {
                loader.poll(true, |pid, r| outcomes.push((pid, r.is_ok())));
            }
            assert_eq!(
                outcomes,
                vec![(evicted, true)],
                "the read is reported once, by the next poll"
            );
            done_tx.send(("owner", 0)).unwrap();
        })
    };
    let mut finished = Vec::new();
    for _ in 0..2 {
        match done_rx.recv_timeout(Duration::from_secs(30)) {
            Ok(who) => finished.push(who),
            Err(_) => panic!("deadlock: after 30 s only {finished:?} finished"),
        }
    }
    holder.join().unwrap();
    owner.join().unwrap();
    let index = s.pids.iter().position(|&p| p == evicted).unwrap() as u64;
    assert!(
        finished.contains(&("holder", index)),
        "the holder read the page's bytes: {finished:?}"
    );
}
