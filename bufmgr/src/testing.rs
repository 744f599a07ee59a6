//! Helpers for tests, of this crate and of the crates above it (faas's
//! fault-guard test). Hidden from the docs and outside the API's promises:
//! they exist so each helper has one home instead of a copy per test.

use crate::{BufferManager, PageId};

/// Evicts `pid` by latching `others` (other pages of the same pool, more
/// of them than its budget holds) in turn until the clock has taken `pid`
/// out. Panics if `pid` is still resident after 50 rounds over `others`.
pub fn evict(bm: &BufferManager, pid: PageId, others: &[PageId]) {
    for &o in others.iter().cycle().take(50 * others.len()) {
        if !bm.is_resident(pid) {
            return;
        }
        drop(bm.shared(o).unwrap());
    }
    panic!("page {pid} was never evicted");
}
