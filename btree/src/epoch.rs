//! SMO epochs: how a scan knows, in a later optimistic section, that a
//! node it read in an earlier one is still the node it was.
//!
//! An optimistic guard's version lives only inside its section, and a scan
//! leaves the section at every leaf (its callback runs under a shared
//! latch, outside). To step to the next leaf through the parent it read on
//! the way down instead of from the root, it must know that the page is
//! still that parent: a merge may have freed it since, and the page may
//! now be another tree's node or a large value's extent, whose bytes (user
//! data) could look like anything. Content checks (fences, child ids)
//! cannot tell; the page's identity must be tracked.
//!
//! So every structure modification bumps a counter for each page it writes
//! or frees, while it holds those pages' exclusive latches (`log_smo`,
//! before it unlatches or frees anything). Only SMOs change inner nodes or
//! free tree pages; data writes touch leaves and extents only. The
//! counters are a fixed table indexed by page id (pages that share a slot
//! only cost each other false alarms), process-wide, so every handle and
//! every tree on every pool agrees.
//!
//! The argument (a reader keeps `(pid, e)` where `e` was read, with
//! acquire, *before* it took the page's version in a validated descent
//! that reached the page as a live node):
//!
//! 1. An SMO that later wrote or freed the page latched it after that
//!    validated read (or the validation would have failed), and bumped the
//!    counter after latching: the bump comes after `e` in the counter's
//!    order. (Were `e` to include it, the bump's release would make the
//!    latch visible to the reader's later acquire of the page state, and
//!    the validation would have failed.)
//! 2. In a later section the reader takes the page's version (an acquire
//!    load of its state word), reads its bytes and validates them. If
//!    those bytes are from after the SMO, so is the version, so the SMO's
//!    unlatch (a release after the bump) — or the chain of latches through
//!    the page's eviction and reuse — happens before that acquire load, and
//!    a counter read after it sees the bump. (Bytes from before the SMO
//!    are the live node's: the SMO latched the page after they validated.)
//! 3. So: the counter still reads `e` after the validation ⇒ no SMO wrote
//!    or freed the page between the two reads ⇒ the validated bytes are
//!    those of the same live node, with the same children (inner nodes
//!    change only by SMOs).

use rime_bufmgr::PageId;
use std::sync::atomic::{AtomicU64, Ordering};

/// Counters in the table (a power of two). 512 cache lines: 32 KiB.
const SLOTS: usize = 512;

/// One counter on its own cache line: a split bumping three of them does
/// not make readers of the others miss.
#[repr(align(64))]
struct Slot(AtomicU64);

static EPOCHS: [Slot; SLOTS] = [const { Slot(AtomicU64::new(0)) }; SLOTS];

#[inline(always)]
fn slot(pid: PageId) -> &'static AtomicU64 {
    &EPOCHS[pid as usize & (SLOTS - 1)].0
}

/// Called for every page an SMO writes or frees, with the page latched
/// exclusively, before the page is unlatched or freed.
pub(crate) fn bump(pid: PageId) {
    slot(pid).fetch_add(1, Ordering::Release);
}

/// The counter of `pid`'s slot. Read it before taking the page's version
/// (to remember), and again after validating the page (to check).
#[inline(always)]
pub(crate) fn read(pid: PageId) -> u64 {
    slot(pid).load(Ordering::Acquire)
}
