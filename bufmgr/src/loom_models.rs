//! Loom models of the page-latch protocols, run with
//! `RUSTFLAGS="--cfg loom" cargo test -p rime-bufmgr --lib --release loom`.
//!
//! Each model drives the real [`PageState`], [`PageMeta`] and [`LoadWaits`]
//! (their atomics and locks come from `crate::sync`, which is loom's here)
//! over a "page" of two words. Page bytes are read racily in the real pool;
//! here they are relaxed atomics, which lets loom explore every value a racy
//! read could return under the C++ memory model.

use crate::meta::PageMeta;
use crate::state::{EVICTED, LOCKED, MARKED, StateWord, UNLOCKED};
use crate::wait::LoadWaits;
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
}

impl Page {
    fn new(state: u8, value: u64) -> Arc<Page> {
        let meta = PageMeta::new(StateWord::new(0, state));
        Arc::new(Page {
            meta,
            data: [AtomicU64::new(value), AtomicU64::new(value)],
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
