//! Loom models of the page-latch protocols, run with
//! `RUSTFLAGS="--cfg loom" cargo test -p rime-bufmgr --lib --release loom`.
//!
//! Each model drives the real [`PageState`], [`PageMeta`] and [`LoadWaits`]
//! (their atomics and locks come from `crate::sync`, which is loom's here)
//! over a "page" of two words. Page bytes are read racily in the real pool;
//! here they are relaxed atomics, which lets loom explore every value a racy
//! read could return under the C++ memory model.

use crate::error::PageError;
use crate::meta::PageMeta;
use crate::state::{EVICTED, LOCKED, MARKED, StateWord, UNLOCKED};
use crate::wait::{LoadFailures, LoadWaits};
use loom::sync::Arc;
use loom::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use loom::thread;

/// Preemptions loom explores per execution. Bugs in latch protocols of
/// this size show up within two or three preemptions (the loom docs' own
/// advice); unbounded exploration of the spin-and-yield loops takes minutes.
const PREEMPTION_BOUND: usize = 3;

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(PREEMPTION_BOUND);
    builder.check(f);
}

struct Page {
    meta: PageMeta,
    data: [AtomicU64; 2],
    /// The pool's record of failed loads (this page's only).
    failures: LoadFailures,
}

impl Page {
    fn new(state: u8, value: u64) -> Arc<Page> {
        let meta = PageMeta::new(StateWord::new(0, state));
        Arc::new(Page {
            meta,
            data: [AtomicU64::new(value), AtomicU64::new(value)],
            failures: LoadFailures::new(),
        })
    }

    fn write(&self, value: u64) {
        self.data[0].store(value, Relaxed);
        self.data[1].store(value, Relaxed);
    }

    /// The optimistic read protocol of `Section::read` + `validate`.
    fn read_optimistic(&self) -> Option<(u64, u64)> {
        let before = self.meta.state.load();
        if !before.is_readable() {
            return None;
        }
        let bytes = (self.data[0].load(Relaxed), self.data[1].load(Relaxed));
        let after = self.meta.state.load_after_read();
        (after.version() == before.version() && after.is_readable()).then_some(bytes)
    }

    fn lock_exclusive(&self) {
        while !self.meta.state.try_lock_exclusive(self.meta.state.load()) {
            thread::yield_now();
        }
    }
}

/// A reader never accepts bytes written under an exclusive latch it did
/// not see: it sees both words old or both new, or it restarts.
#[test]
fn loom_exclusive_vs_optimistic() {
    model(|| {
        let page = Page::new(UNLOCKED, 0);
        let writer = {
            let page = page.clone();
            thread::spawn(move || {
                page.lock_exclusive();
                page.write(1);
                page.meta.state.unlock_exclusive();
            })
        };
        if let Some((a, b)) = page.read_optimistic() {
            assert_eq!(a, b, "accepted a half-written page");
        }
        writer.join().unwrap();
        assert_eq!(page.meta.state.load(), StateWord::new(1, UNLOCKED));
    });
}

/// Shared latches exclude the exclusive one and count correctly.
#[test]
fn loom_shared_counts() {
    model(|| {
        let page = Page::new(UNLOCKED, 7);
        let inside = Arc::new(AtomicUsize::new(0));
        let reader = {
            let (page, inside) = (page.clone(), inside.clone());
            thread::spawn(move || {
                while !page.meta.state.try_lock_shared(page.meta.state.load()) {
                    thread::yield_now();
                }
                inside.fetch_add(1, Relaxed);
                assert_eq!(page.data[0].load(Relaxed), 7);
                inside.fetch_sub(1, Relaxed);
                page.meta.state.unlock_shared();
            })
        };
        if page.meta.state.try_lock_shared(page.meta.state.load()) {
            assert!(
                !page.meta.state.try_lock_exclusive(page.meta.state.load()),
                "exclusive under a shared latch"
            );
            page.meta.state.unlock_shared();
        }
        if page.meta.state.try_lock_exclusive(page.meta.state.load()) {
            assert_eq!(
                inside.load(Relaxed),
                0,
                "exclusive while a shared holder is inside"
            );
            page.meta.state.unlock_exclusive();
        }
        reader.join().unwrap();
        let end = page.meta.state.load();
        assert_eq!(
            end.state(),
            UNLOCKED,
            "every shared latch was released: {end:?}"
        );
    });
}

/// The evictor's path (mark, latch from MARKED, release memory, unlock as
/// EVICTED): an optimistic reader either read the page before its memory
/// went, or restarts; it never accepts the zeros of a released page.
#[test]
fn loom_eviction_vs_optimistic_reader() {
    model(|| {
        let page = Page::new(UNLOCKED, 7);
        let evictor = {
            let page = page.clone();
            thread::spawn(move || evict(&page))
        };
        if let Some(bytes) = page.read_optimistic() {
            assert_eq!(bytes, (7, 7), "accepted an evicted page's bytes");
        }
        evictor.join().unwrap();
    });
}

/// A shared latch holder's page is never evicted under it.
#[test]
fn loom_eviction_vs_shared_latch() {
    model(|| {
        let page = Page::new(UNLOCKED, 7);
        let evictor = {
            let page = page.clone();
            thread::spawn(move || evict(&page))
        };
        let seen = page.meta.state.load();
        if page.meta.state.try_lock_shared(seen) {
            assert_eq!(
                (page.data[0].load(Relaxed), page.data[1].load(Relaxed)),
                (7, 7)
            );
            page.meta.state.unlock_shared();
        } else {
            assert!(
                matches!(seen.state(), LOCKED | EVICTED)
                    || page.meta.state.load().raw() != seen.raw()
            );
        }
        evictor.join().unwrap();
    });
}

/// Steps 0, 2, 4 and 5 of `evict_batch` for one clean page.
fn evict(page: &Page) {
    let seen = page.meta.state.load();
    page.meta.state.try_mark(seen);
    let seen = page.meta.state.load();
    if seen.state() == MARKED && page.meta.state.try_lock_exclusive(seen) {
        page.write(0); // the memory is released: it reads as zeros
        page.meta.state.unlock_exclusive_evicted();
    }
}

/// Two threads miss the same page: exactly one reads it from "disk"; the
/// other sleeps until it is in, then sees the loaded bytes.
#[test]
fn loom_two_threads_miss_the_same_page() {
    model(|| {
        let page = Page::new(EVICTED, 0);
        let waits = Arc::new(LoadWaits::with_slots(1));
        let loads = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let (page, waits, loads) = (page.clone(), waits.clone(), loads.clone());
                thread::spawn(move || {
                    fix(&page, &waits, &loads);
                    while !page.meta.state.try_lock_shared(page.meta.state.load()) {
                        thread::yield_now();
                    }
                    assert_eq!(
                        page.data[0].load(Relaxed),
                        42,
                        "latched a page that is not loaded"
                    );
                    page.meta.state.unlock_shared();
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        assert_eq!(loads.load(Relaxed), 1, "the page was read once");
    });
}

/// The miss path of `ensure_loaded`.
fn fix(page: &Page, waits: &LoadWaits, loads: &AtomicUsize) {
    loop {
        let seen = page.meta.state.load();
        match seen.state() {
            EVICTED if page.meta.state.try_lock_evicted(seen) => {
                page.meta.set_loading(true);
                loads.fetch_add(1, Relaxed);
                page.write(42);
                waits.finish(0, &page.meta);
                page.meta.state.unlock_exclusive();
                return;
            }
            LOCKED if page.meta.is_loading() => waits.wait(0, &page.meta),
            EVICTED | LOCKED => thread::yield_now(),
            _ => return,
        }
    }
}

// --- The loader's pending-miss protocol (`loader.rs`) ---------------------
//
// A `Loader` does not read inside `request`: it latches the frame from
// EVICTED with LOADING set, and the read completes later, at a poll, on
// the same thread. Other requests for the frame watch LOADING. The models
// below split the loader's work the same way: `request`, then (maybe
// after other threads ran) `complete_ok` or `complete_err`.

/// How `Loader::request` took a frame.
#[derive(Debug, PartialEq)]
enum Req {
    /// This request latched it from EVICTED: its read is in flight.
    Own,
    /// Another request is reading it: watch LOADING (the read's version).
    Watch(u64),
    /// In memory (or latched by a writer): nothing to read.
    Ready,
}

/// Steps 1–3 of `Loader::request`.
fn request(page: &Page) -> Req {
    loop {
        let seen = page.meta.state.load();
        match seen.state() {
            EVICTED if page.meta.state.try_lock_evicted(seen) => {
                page.meta.set_loading(true);
                return Req::Own;
            }
            EVICTED => thread::yield_now(),
            LOCKED if page.meta.is_loading() => return Req::Watch(seen.version()),
            _ => return Req::Ready,
        }
    }
}

/// Step 5, a read that arrived: the bytes, then `publish_loaded`.
fn complete_ok(page: &Page, waits: &LoadWaits) {
    page.write(42);
    page.failures.forget(0, &page.meta);
    waits.finish(0, &page.meta);
    page.meta.state.unlock_exclusive();
}

/// The error every failed read of the models returns.
fn read_error() -> PageError {
    PageError::Corrupt {
        pid: 0,
        reason: "injected",
    }
}

/// Step 5, a failed read: `abandon_load`.
fn complete_err(page: &Page, waits: &LoadWaits) {
    page.failures.record(0, &page.meta, &read_error());
    waits.finish(0, &page.meta);
    page.meta.state.unlock_exclusive_evicted();
}

/// Step 6's report for a watch of the read at `version`, once it is over.
fn watch_outcome(page: &Page, version: u64) -> Result<(), PageError> {
    page.failures.outcome(0, &page.meta, version)
}

/// What a caller of the loader does until its section reads the frame:
/// read optimistically; if that fails, request the frame and wait for its
/// own read or its watch (a frame latched by a completion that has not
/// unlocked yet reads as `Ready`, and the section snoozes and runs again).
/// Returns how many reads this caller did itself.
fn read_through_loader(page: &Page, waits: &LoadWaits) -> usize {
    let mut own_reads = 0;
    loop {
        if let Some(bytes) = page.read_optimistic() {
            assert_eq!(bytes, (42, 42), "accepted a frame that is not loaded");
            return own_reads;
        }
        match request(page) {
            Req::Own => {
                own_reads += 1;
                complete_ok(page, waits);
            }
            Req::Watch(_) => waits.wait(0, &page.meta),
            Req::Ready => thread::yield_now(),
        }
    }
}

/// Two requests pending on one frame share one read, and the one that
/// watched sees the loaded bytes once its watch reports done.
#[test]
fn loom_two_pending_requests_share_one_read() {
    model(|| {
        let page = Page::new(EVICTED, 0);
        let waits = Arc::new(LoadWaits::with_slots(1));
        let reads = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let (page, waits, reads) = (page.clone(), waits.clone(), reads.clone());
                thread::spawn(move || {
                    reads.fetch_add(read_through_loader(&page, &waits), Relaxed);
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        assert_eq!(reads.load(Relaxed), 1, "the frame was read once");
    });
}

/// Eviction racing a completion: the evictor cannot take a frame whose
/// read is in flight (it is latched), and a reader told "done" either
/// reads the loaded bytes or sees the frame gone and restarts; it never
/// accepts the zeros of a released frame.
#[test]
fn loom_eviction_racing_a_completion() {
    model(|| {
        let page = Page::new(EVICTED, 0);
        let waits = Arc::new(LoadWaits::with_slots(1));
        assert_eq!(request(&page), Req::Own);
        let evictor = {
            let page = page.clone();
            thread::spawn(move || evict(&page))
        };
        let reader = {
            let page = page.clone();
            thread::spawn(move || {
                if let Some(bytes) = page.read_optimistic() {
                    assert_eq!(
                        bytes,
                        (42, 42),
                        "accepted a frame not (or no longer) loaded"
                    );
                }
            })
        };
        complete_ok(&page, &waits);
        evictor.join().unwrap();
        reader.join().unwrap();
        let end = page.meta.state.load().state();
        assert!(end == UNLOCKED || end == MARKED || end == EVICTED, "{end}");
    });
}

/// One run of a section through a loader of its own, on a disk that
/// fails every read: the frame is missing, so it requests it, and reads it
/// itself or watches another's read. `None`: it found the frame latched by
/// a read that has not set LOADING yet (the section would run again; the
/// model stops there to stay finite).
fn request_failing(page: &Page, waits: &LoadWaits) -> Option<Result<(), PageError>> {
    match request(page) {
        Req::Own => {
            complete_err(page, waits);
            Some(Err(read_error()))
        }
        Req::Watch(version) => {
            waits.wait(0, &page.meta);
            Some(watch_outcome(page, version))
        }
        Req::Ready => None,
    }
}

/// One round of a blocking latch's miss (`ensure_loaded`) on a disk that
/// fails every read; `None` as in [`request_failing`].
fn latch_failing(page: &Page, waits: &LoadWaits) -> Option<Result<(), PageError>> {
    let seen = page.meta.state.load();
    match seen.state() {
        EVICTED if page.meta.state.try_lock_evicted(seen) => {
            page.meta.set_loading(true);
            complete_err(page, waits);
            Some(Err(read_error()))
        }
        LOCKED if page.meta.is_loading() => {
            waits.wait(0, &page.meta);
            Some(page.failures.outcome(0, &page.meta, seen.version()))
        }
        UNLOCKED | MARKED => panic!("no read succeeds, yet the frame is in"),
        _ => None,
    }
}

/// A failed read completes with its error to every waiter: a second
/// request in the loader that reads, a request in another loader and a
/// blocking latch each end with an error (that read's, or that of a read
/// they made or watched after it, the disk failing every read); the frame
/// stays EVICTED, and the next access reads it again.
#[test]
fn loom_a_failed_read_completes_with_an_error_to_every_waiter() {
    model(|| {
        let page = Page::new(EVICTED, 0);
        let waits = Arc::new(LoadWaits::with_slots(1));
        assert_eq!(request(&page), Req::Own);
        let Req::Watch(version) = request(&page) else {
            panic!("the second request of the same loader watches its read");
        };
        let other_loader = {
            let (page, waits) = (page.clone(), waits.clone());
            thread::spawn(move || request_failing(&page, &waits))
        };
        let blocking = {
            let (page, waits) = (page.clone(), waits.clone());
            thread::spawn(move || latch_failing(&page, &waits))
        };
        // The loader's poll: the read fails, then its watch ends (at once,
        // or after a retry another thread started meanwhile, still named
        // by the failed read's version).
        complete_err(&page, &waits);
        waits.wait(0, &page.meta);
        assert!(
            watch_outcome(&page, version).is_err(),
            "the same loader's second request"
        );
        if let Some(r) = other_loader.join().unwrap() {
            assert!(r.is_err(), "another loader");
        }
        if let Some(r) = blocking.join().unwrap() {
            assert!(r.is_err(), "a blocking latch");
        }
        assert_eq!(page.meta.state.load().state(), EVICTED);
        assert!(!page.meta.is_loading(), "LOADING left set");
        // The failure was the read's, not the frame's: the next access
        // reads it, and a success clears the record.
        assert_eq!(request(&page), Req::Own);
        complete_ok(&page, &waits);
        assert!(!page.meta.has_failed());
        assert_eq!(page.read_optimistic(), Some((42, 42)));
    });
}

/// A watcher that looks at its watch only after a later read of the frame
/// succeeded reports success, never a stale error, and the frame is in.
#[test]
fn loom_a_late_watcher_after_a_retry_sees_the_frame_in() {
    model(|| {
        let page = Page::new(EVICTED, 0);
        let waits = Arc::new(LoadWaits::with_slots(1));
        assert_eq!(request(&page), Req::Own);
        let Req::Watch(version) = request(&page) else {
            panic!("the second request watches");
        };
        let retry = {
            let (page, waits) = (page.clone(), waits.clone());
            thread::spawn(move || read_through_loader(&page, &waits))
        };
        complete_err(&page, &waits);
        retry.join().unwrap();
        // The retry's read succeeded before this watch was looked at.
        assert!(watch_outcome(&page, version).is_ok());
        assert_eq!(page.read_optimistic(), Some((42, 42)));
    });
}

/// A waiter that gave up (its loader dropped its watch) before the read
/// completed leaves nothing behind: the completion still publishes, and a
/// later request finds the frame in memory.
#[test]
fn loom_a_waiter_that_gave_up_leaves_nothing_behind() {
    model(|| {
        let page = Page::new(EVICTED, 0);
        let waits = Arc::new(LoadWaits::with_slots(1));
        let loader = {
            let (page, waits) = (page.clone(), waits.clone());
            thread::spawn(move || {
                if request(&page) == Req::Own {
                    complete_ok(&page, &waits);
                }
            })
        };
        // Requests, then gives up at once: a watch is only local state,
        // and a read of its own is completed first (a loader's drop waits
        // for its reads).
        if request(&page) == Req::Own {
            complete_ok(&page, &waits);
        }
        loader.join().unwrap();
        // The frame is in: a later request has nothing to read.
        assert_eq!(request(&page), Req::Ready);
        assert_eq!(page.read_optimistic(), Some((42, 42)));
    });
}

// --- A loader's write-back (`Inner::copy_for_write_back`,
// `Inner::finish_write_back`) --------------------------------------------
//
// The loader copies a dirty victim under a shared latch (W set), lets the
// latch go, and its write of the copy lands on the "disk" some time later;
// the completion then cleans and evicts the frame if its version is still
// the copy's. Meanwhile writers change the frame and a blocking evictor
// runs its own round. The disk is one word, the frame's bytes two.

/// Step W2 for a MARKED dirty frame: the copy and its version, or `None`
/// (not a dirty candidate now, or a write of it is in flight already).
fn wb_copy(page: &Page) -> Option<(u64, u64)> {
    let seen = page.meta.state.load();
    if seen.state() != MARKED || !page.meta.is_dirty() || !page.meta.state.try_lock_shared(seen) {
        return None;
    }
    if !page.meta.try_begin_writing() {
        page.meta.state.unlock_shared();
        return None;
    }
    let version = page.meta.state.load().version();
    let copy = page.data[0].load(Relaxed);
    assert_eq!(copy, page.data[1].load(Relaxed), "copied a torn frame");
    page.meta.state.unlock_shared();
    Some((copy, version))
}

/// Step W4 after the copy landed: clean (and evict) the frame if it is
/// unchanged since the copy; then W is cleared. Returns whether the page
/// had been freed meanwhile (the completion gives its id back).
fn wb_finish(page: &Page, version: u64) -> bool {
    loop {
        let seen = page.meta.state.load();
        if seen.version() != version {
            break;
        }
        match seen.state() {
            UNLOCKED | MARKED if page.meta.state.try_lock_exclusive(seen) => {
                page.meta.set_dirty(false);
                page.write(0); // the memory is released
                page.meta.state.unlock_exclusive_evicted();
                break;
            }
            _ if seen.is_shared() && page.meta.state.try_lock_shared(seen) => {
                page.meta.set_dirty(false);
                page.meta.state.unlock_shared();
                break;
            }
            UNLOCKED | MARKED => {}
            _ if seen.is_shared() => {}
            _ => break,
        }
    }
    page.meta.end_writing()
}

/// A writer: latch exclusively (loading the frame from `disk` first if it
/// is evicted), check it holds the latest value, write the next one.
fn wb_writer(page: &Page, disk: &AtomicU64, latest: &AtomicU64) {
    loop {
        let seen = page.meta.state.load();
        match seen.state() {
            EVICTED if page.meta.state.try_lock_evicted(seen) => {
                page.write(disk.load(Relaxed));
                page.meta.state.unlock_exclusive();
            }
            UNLOCKED | MARKED if page.meta.state.try_lock_exclusive(seen) => {
                let now = page.data[0].load(Relaxed);
                assert_eq!(now, latest.load(Relaxed), "a lost write");
                page.write(now + 1);
                page.meta.set_dirty(true);
                latest.store(now + 1, Relaxed);
                page.meta.state.unlock_exclusive();
                return;
            }
            _ => thread::yield_now(),
        }
    }
}

/// One blocking eviction round (`evict_batch`) over the frame: a clean
/// frame is evicted; a dirty one without W is written back under a shared
/// latch (the write lands at once) and evicted if this is its only holder.
fn wb_evictor(page: &Page, disk: &AtomicU64) {
    let seen = page.meta.state.load();
    match seen.state() {
        MARKED if !page.meta.is_dirty() => {
            if page.meta.state.try_lock_exclusive(seen) {
                if page.meta.is_dirty() {
                    page.meta.state.unlock_exclusive_unchanged();
                } else {
                    page.write(0);
                    page.meta.state.unlock_exclusive_evicted();
                }
            }
        }
        MARKED if page.meta.state.try_lock_shared(seen) => {
            if page.meta.is_writing() {
                page.meta.state.unlock_shared();
                return;
            }
            disk.store(page.data[0].load(Relaxed), Relaxed);
            page.meta.set_dirty(false);
            if page.meta.state.try_upgrade(page.meta.state.load()) {
                page.write(0);
                page.meta.state.unlock_exclusive_evicted();
            } else {
                page.meta.state.unlock_shared();
            }
        }
        UNLOCKED => {
            page.meta.state.try_mark(seen);
        }
        _ => {}
    }
}

/// A loader's write-back racing a writer and a blocking evictor: the copy
/// is never torn, no write is lost, and whatever the interleaving, a frame
/// that is evicted or clean at the end has the latest value on disk (an
/// older copy's write never lands over a newer one, and a frame changed
/// while its copy was in flight stays dirty).
#[test]
fn loom_a_write_back_in_flight_vs_a_writer_and_an_evictor() {
    model(|| {
        let page = Page::new(MARKED, 1);
        page.meta.set_dirty(true);
        let disk = Arc::new(AtomicU64::new(0));
        let latest = Arc::new(AtomicU64::new(1));
        let (copy, version) = wb_copy(&page).expect("a dirty MARKED frame");
        let writer = {
            let (page, disk, latest) = (page.clone(), disk.clone(), latest.clone());
            thread::spawn(move || wb_writer(&page, &disk, &latest))
        };
        // Two rounds: one to mark the frame the writer unmarked, one to
        // take it.
        let evictor = {
            let (page, disk) = (page.clone(), disk.clone());
            thread::spawn(move || {
                wb_evictor(&page, &disk);
                wb_evictor(&page, &disk);
            })
        };
        // The write lands, then its completion is reaped.
        disk.store(copy, Relaxed);
        assert!(!wb_finish(&page, version));
        writer.join().unwrap();
        evictor.join().unwrap();
        let latest = latest.load(Relaxed);
        let state = page.meta.state.load().state();
        if state == EVICTED || !page.meta.is_dirty() {
            assert_eq!(
                disk.load(Relaxed),
                latest,
                "evicted or clean, but not on disk"
            );
        }
        if state != EVICTED {
            assert_eq!(page.data[0].load(Relaxed), latest);
        }
        assert!(!page.meta.is_writing());
    });
}

/// A page freed while its write is in flight: exactly one of the free and
/// the write's completion gives its id back, and never before the write
/// landed (a later owner of the id cannot have its write overtaken).
#[test]
fn loom_a_page_freed_while_its_write_is_in_flight() {
    model(|| {
        let page = Page::new(MARKED, 1);
        page.meta.set_dirty(true);
        let landed = Arc::new(AtomicUsize::new(0));
        let given_back = Arc::new(AtomicUsize::new(0));
        let (_, version) = wb_copy(&page).expect("a dirty MARKED frame");
        let freer = {
            let (page, landed, given_back) = (page.clone(), landed.clone(), given_back.clone());
            thread::spawn(move || {
                // `free_frame`: latch it (from resident or EVICTED), drop
                // its memory and changes, then give the id back unless W.
                loop {
                    let seen = page.meta.state.load();
                    let latched = match seen.state() {
                        EVICTED => page.meta.state.try_lock_evicted(seen),
                        UNLOCKED | MARKED => page.meta.state.try_lock_exclusive(seen),
                        _ => false,
                    };
                    if latched {
                        break;
                    }
                    thread::yield_now();
                }
                page.meta.set_dirty(false);
                page.write(0);
                page.meta.state.unlock_exclusive_evicted();
                if !page.meta.defer_free_if_writing() {
                    assert_eq!(landed.load(Relaxed), 1, "id back before the write landed");
                    given_back.fetch_add(1, Relaxed);
                }
            })
        };
        landed.store(1, Relaxed);
        if wb_finish(&page, version) {
            given_back.fetch_add(1, Relaxed);
        }
        freer.join().unwrap();
        assert_eq!(given_back.load(Relaxed), 1, "the id went back once");
    });
}

/// Two loaders take the same dirty victim in their rounds (both latch it
/// shared): exactly one of them writes it back.
#[test]
fn loom_two_loaders_race_for_one_victim() {
    model(|| {
        let page = Page::new(MARKED, 1);
        page.meta.set_dirty(true);
        let other = {
            let page = page.clone();
            thread::spawn(move || wb_copy(&page).map(|(_, v)| v))
        };
        let mine = wb_copy(&page).map(|(_, v)| v);
        let theirs = other.join().unwrap();
        assert!(
            mine.is_none() || theirs.is_none(),
            "two write-backs of one page in flight"
        );
        if let Some(version) = mine.or(theirs) {
            assert!(!wb_finish(&page, version));
        }
        assert!(!page.meta.is_writing());
    });
}
