//! The page-state word: one `AtomicU64` per page that is the page's latch,
//! its version, and its residency, all at once (vmcache's `PageState`).
//!
//! ```text
//!  63                                                      8 7          0
//! +---------------------------------------------------------+------------+
//! |                     version (56 bits)                   |   state    |
//! +---------------------------------------------------------+------------+
//!
//! state    0        UNLOCKED   resident, no latch held
//!          1..=252  shared     that many shared latches held
//!          253      LOCKED     one exclusive latch held (or the page is loading)
//!          254      MARKED     resident, unlatched, chosen by the clock as an
//!                              eviction candidate; any access unmarks it
//!          255      EVICTED    not in memory
//! ```
//!
//! The version changes only when an exclusive latch is released (including
//! the release that evicts a page), so an optimistic reader that sees the same
//! version before and after its read, and no exclusive latch in between, read
//! bytes no writer touched. Shared latches and marking leave the version
//! alone: they do not change the page.
//!
//! Transitions (everything else is refused):
//!
//! ```text
//!  UNLOCKED/MARKED --try_lock_exclusive--> LOCKED --unlock_exclusive--> UNLOCKED (v+1)
//!  EVICTED --try_lock_evicted--> LOCKED --unlock_exclusive_evicted--> EVICTED (v+1)
//!  UNLOCKED/MARKED/n<252 --try_lock_shared--> n+1 --unlock_shared--> n (0 = UNLOCKED)
//!  shared(1) --try_upgrade--> LOCKED
//!  UNLOCKED --try_mark--> MARKED --try_unmark--> UNLOCKED
//! ```
//!
//! Memory ordering is that of a seqlock. A writer's lock is an acquiring CAS
//! followed by a release fence, so any page byte it writes is ordered after
//! the LOCKED state; a reader reads the bytes, then an acquire fence, then the
//! word again. If the reader saw any byte of the writer's, the fences
//! synchronise and the second load sees LOCKED or a newer version
//! (Boehm, "Can seqlocks get along with programming language memory models?").

use crate::sync::{AtomicU64, Ordering, fence};

pub const UNLOCKED: u8 = 0;
pub const MAX_SHARED: u8 = 252;
pub const LOCKED: u8 = 253;
pub const MARKED: u8 = 254;
pub const EVICTED: u8 = 255;

const STATE_BITS: u32 = 8;
const STATE_MASK: u64 = (1 << STATE_BITS) - 1;

/// A snapshot of a page-state word.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct StateWord(u64);

impl StateWord {
    #[inline]
    pub const fn new(version: u64, state: u8) -> Self {
        StateWord((version << STATE_BITS) | state as u64)
    }
    #[inline]
    pub const fn version(self) -> u64 {
        self.0 >> STATE_BITS
    }
    #[inline]
    pub const fn state(self) -> u8 {
        (self.0 & STATE_MASK) as u8
    }
    #[inline]
    pub const fn raw(self) -> u64 {
        self.0
    }
    /// The same version with another state.
    const fn with_state(self, state: u8) -> Self {
        StateWord((self.0 & !STATE_MASK) | state as u64)
    }
    /// The next version (wrapping after 2^56 releases) with another state.
    const fn next_version(self, state: u8) -> Self {
        StateWord::new((self.version() + 1) & (u64::MAX >> STATE_BITS), state)
    }
    #[inline]
    pub const fn is_shared(self) -> bool {
        let s = self.state();
        s >= 1 && s <= MAX_SHARED
    }
    /// A state an optimistic reader may proceed in: nobody is changing the page.
    #[inline]
    pub const fn is_readable(self) -> bool {
        self.state() <= MAX_SHARED || self.state() == MARKED
    }
}

impl std::fmt::Debug for StateWord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match self.state() {
            UNLOCKED => "unlocked".to_string(),
            LOCKED => "locked".to_string(),
            MARKED => "marked".to_string(),
            EVICTED => "evicted".to_string(),
            n => format!("shared({n})"),
        };
        write!(f, "v{}:{state}", self.version())
    }
}

/// The page-state word. See the module docs for the layout and transitions.
pub struct PageState(AtomicU64);

impl PageState {
    pub fn new(word: StateWord) -> Self {
        PageState(AtomicU64::new(word.raw()))
    }

    /// Sets the word of a page no other thread can know yet (a page id
    /// being handed out for the first time, or the pool being opened).
    pub fn store_initial(&self, word: StateWord) {
        self.0.store(word.raw(), Ordering::Release);
    }

    #[inline]
    pub fn load(&self) -> StateWord {
        StateWord(self.0.load(Ordering::Acquire))
    }

    /// Re-reads the word after an optimistic read of the page's bytes.
    #[inline]
    pub fn load_after_read(&self) -> StateWord {
        fence(Ordering::Acquire);
        StateWord(self.0.load(Ordering::Relaxed))
    }

    fn cas(&self, from: StateWord, to: StateWord) -> bool {
        self.0
            .compare_exchange(from.raw(), to.raw(), Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }

    /// UNLOCKED or MARKED → LOCKED, if the word is still `seen`.
    #[inline]
    pub fn try_lock_exclusive(&self, seen: StateWord) -> bool {
        let from_ok = seen.state() == UNLOCKED || seen.state() == MARKED;
        from_ok && self.lock_to_exclusive(seen)
    }

    /// EVICTED → LOCKED: the caller will load the page (or reuse its id).
    pub fn try_lock_evicted(&self, seen: StateWord) -> bool {
        seen.state() == EVICTED && self.lock_to_exclusive(seen)
    }

    /// shared(1) → LOCKED: the only shared holder becomes the exclusive one.
    #[inline]
    pub fn try_upgrade(&self, seen: StateWord) -> bool {
        seen.state() == 1 && self.lock_to_exclusive(seen)
    }

    fn lock_to_exclusive(&self, seen: StateWord) -> bool {
        let locked = self.cas(seen, seen.with_state(LOCKED));
        if locked {
            // Orders the page writes that follow after the LOCKED state for
            // optimistic readers (see the module docs).
            fence(Ordering::Release);
        }
        locked
    }

    /// LOCKED → UNLOCKED with the next version: publishes the page's changes.
    #[inline]
    pub fn unlock_exclusive(&self) {
        self.release_exclusive(UNLOCKED);
    }

    /// LOCKED → EVICTED with the next version: the page left memory.
    pub fn unlock_exclusive_evicted(&self) {
        self.release_exclusive(EVICTED);
    }

    fn release_exclusive(&self, state: u8) {
        let now = StateWord(self.0.load(Ordering::Relaxed));
        debug_assert_eq!(
            now.state(),
            LOCKED,
            "releasing an exclusive latch that is not held"
        );
        // The holder is the only writer of a LOCKED word: a plain store is enough.
        self.0
            .store(now.next_version(state).raw(), Ordering::Release);
    }

    /// LOCKED → UNLOCKED keeping the version: for a latch under which the
    /// page was not changed (a write-back that then decided not to evict).
    #[inline]
    pub fn unlock_exclusive_unchanged(&self) {
        let now = StateWord(self.0.load(Ordering::Relaxed));
        debug_assert_eq!(now.state(), LOCKED);
        self.0
            .store(now.with_state(UNLOCKED).raw(), Ordering::Release);
    }

    /// UNLOCKED, MARKED or shared(n < MAX) → one more shared latch.
    #[inline]
    pub fn try_lock_shared(&self, seen: StateWord) -> bool {
        let next = match seen.state() {
            UNLOCKED | MARKED => 1,
            n if n < MAX_SHARED => n + 1,
            _ => return false,
        };
        self.cas(seen, seen.with_state(next))
    }

    /// One shared latch fewer. The count lives in the low byte and is at least
    /// one, so a subtraction cannot borrow from the version.
    #[inline]
    pub fn unlock_shared(&self) {
        let before = StateWord(self.0.fetch_sub(1, Ordering::Release));
        debug_assert!(
            before.is_shared(),
            "releasing a shared latch that is not held: {before:?}"
        );
    }

    /// UNLOCKED → MARKED: the clock's first pass (second chance).
    pub fn try_mark(&self, seen: StateWord) -> bool {
        seen.state() == UNLOCKED && self.cas(seen, seen.with_state(MARKED))
    }

    /// MARKED → UNLOCKED: an access gives the page its second chance back.
    #[inline]
    pub fn try_unmark(&self, seen: StateWord) -> bool {
        seen.state() == MARKED && self.cas(seen, seen.with_state(UNLOCKED))
    }
}

#[cfg(all(test, not(loom)))]
mod tests;
