//! `Section::peek`: a look at a page for hints (a scan's prefetch of the
//! leaf after next) that never loads, waits for, or counts it.

mod common;
use common::*;
use rime_bufmgr::{Interrupt, MIN_POOL_PAGES, PageId};

/// What a peek inside a guarded section sees of `pid`: its first payload
/// byte, or `None`.
fn peek_first_byte(p: &Pool, pid: PageId) -> Option<u8> {
    // SAFETY: the closure holds only a Copy guard and integers across its
    // read of page bytes.
    let seen = unsafe {
        p.bm.optimistic(|s| Ok::<_, Interrupt>(s.peek(pid).map(|g| g.payload()[0])))
    };
    seen.unwrap()
}

#[test]
fn a_peek_sees_a_resident_page_and_nothing_of_a_latched_or_evicted_one() {
    let p = pool(MIN_POOL_PAGES);
    let pid = {
        let mut page = p.bm.alloc().unwrap();
        page.payload_mut()[0] = 0xAB;
        page.pid()
    };
    assert_eq!(peek_first_byte(&p, pid), Some(0xAB));
    // Latched exclusively (a writer at work): nothing.
    let held = p.bm.exclusive(pid).unwrap();
    assert_eq!(peek_first_byte(&p, pid), None);
    drop(held);
    // Evicted: nothing, and it stays out (a peek never loads).
    let others: Vec<PageId> = (0..2 * MIN_POOL_PAGES)
        .map(|_| p.bm.alloc().unwrap().pid())
        .collect();
    rime_bufmgr::testing::evict(&p.bm, pid, &others);
    let misses = p.bm.stats().misses;
    assert_eq!(peek_first_byte(&p, pid), None);
    assert!(!p.bm.is_resident(pid));
    assert_eq!(p.bm.stats().misses, misses);
    // Beyond the file: nothing, no error.
    assert_eq!(peek_first_byte(&p, 1 << 40), None);
    assert_eq!(peek_first_byte(&p, 0), None);
}
