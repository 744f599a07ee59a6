//! The three ways to hold a page: exclusive, shared, optimistic.
//!
//! Exclusive and shared guards are ordinary RAII latches: the frame is
//! resident and pinned while one is held, and its bytes are plain slices.
//! Optimistic guards hold no latch at all: they remember a version, read the
//! bytes racily, and `validate` afterwards. They exist only inside a
//! [`Section`], the guarded region in which a read of an evicted page is
//! turned into a restart by the fault guard.

use crate::error::{Interrupt, PageError};
use crate::fault::{Outcome, run_guarded};
use crate::frame::{self, FRAME_HEADER_SIZE};
use crate::manager::BufferManager;
use crate::state::{EVICTED, LOCKED, MARKED, StateWord};
use crate::stats::Counter;
use crate::sync::Backoff;
use crate::{PAGE_SIZE, PageId};
use std::cell::Cell;
use std::marker::PhantomData;

/// An exclusive latch on a frame. Unlocks on drop; the version moves on only
/// if the bytes were handed out for writing.
pub struct ExclusiveGuard<'a> {
    bm: &'a BufferManager,
    pid: PageId,
    pages: u32,
    modified: bool,
}

impl<'a> ExclusiveGuard<'a> {
    pub(crate) fn new(bm: &'a BufferManager, pid: PageId, pages: u32, modified: bool) -> Self {
        ExclusiveGuard {
            bm,
            pid,
            pages,
            modified,
        }
    }
    #[inline]
    pub fn pid(&self) -> PageId {
        self.pid
    }
    pub fn frame_pages(&self) -> u32 {
        self.pages
    }
    fn frame(&self) -> &[u8] {
        // SAFETY: exclusively latched and resident for the guard's lifetime.
        unsafe {
            std::slice::from_raw_parts(
                self.bm.inner.frame_ptr(self.pid),
                self.pages as usize * PAGE_SIZE,
            )
        }
    }
    /// The frame's payload (everything after the buffer manager's header).
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.frame()[FRAME_HEADER_SIZE..]
    }
    /// The payload for writing; marks the frame dirty.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        self.touch();
        // SAFETY: as in `frame`, and &mut self makes the access exclusive.
        let bytes = unsafe {
            std::slice::from_raw_parts_mut(
                self.bm.inner.frame_ptr(self.pid),
                self.pages as usize * PAGE_SIZE,
            )
        };
        &mut bytes[FRAME_HEADER_SIZE..]
    }
    /// The log sequence number stamped by the storage layer.
    #[inline]
    pub fn lsn(&self) -> u64 {
        frame::lsn(self.frame())
    }
    /// Stamps the page's LSN (write-back forces the log up to it first).
    pub fn set_lsn(&mut self, lsn: u64) {
        self.touch();
        // SAFETY: exclusively latched; &mut self.
        let bytes =
            unsafe { std::slice::from_raw_parts_mut(self.bm.inner.frame_ptr(self.pid), PAGE_SIZE) };
        frame::set_lsn(bytes, lsn);
    }
    fn touch(&mut self) {
        self.modified = true;
        self.bm.inner.meta(self.pid).set_dirty(true);
    }
    /// The same latch, borrowed from another handle to the same pool. A
    /// guard made by [`OptimisticGuard::upgrade`] lives as long as its
    /// section, which cannot outlive the closure given to
    /// [`BufferManager::optimistic`]; rebinding it to the caller's `&bm`
    /// lets the closure return it. Panics if `bm` is another pool.
    pub fn rebind<'b>(self, bm: &'b BufferManager) -> ExclusiveGuard<'b> {
        assert!(
            std::sync::Arc::ptr_eq(&self.bm.inner, &bm.inner),
            "rebind to another pool"
        );
        let this = std::mem::ManuallyDrop::new(self);
        ExclusiveGuard {
            bm,
            pid: this.pid,
            pages: this.pages,
            modified: this.modified,
        }
    }
    /// Writes the frame to disk now (not synced), keeping the latch. If a
    /// loader's write of an earlier copy of it is in flight, waits for that
    /// first (its owner's next poll finishes it).
    pub fn write_back(&mut self) -> Result<(), PageError> {
        self.bm.inner.wait_for_write_back(self.pid);
        self.bm.inner.write_back_latched(&[self.pid])
    }
}

impl Drop for ExclusiveGuard<'_> {
    fn drop(&mut self) {
        let state = &self.bm.inner.meta(self.pid).state;
        if self.modified {
            state.unlock_exclusive();
        } else {
            state.unlock_exclusive_unchanged();
        }
    }
}

/// A shared latch on a frame. Unlocks on drop.
pub struct SharedGuard<'a> {
    bm: &'a BufferManager,
    pid: PageId,
    pages: u32,
}

impl SharedGuard<'_> {
    pub fn pid(&self) -> PageId {
        self.pid
    }
    pub fn payload(&self) -> &[u8] {
        // SAFETY: a shared latch keeps the frame resident and writers out.
        let bytes = unsafe {
            std::slice::from_raw_parts(
                self.bm.inner.frame_ptr(self.pid),
                self.pages as usize * PAGE_SIZE,
            )
        };
        &bytes[FRAME_HEADER_SIZE..]
    }
    /// The same latch, borrowed from another handle to the same pool (see
    /// [`ExclusiveGuard::rebind`]). Panics if `bm` is another pool.
    pub fn rebind<'b>(self, bm: &'b BufferManager) -> SharedGuard<'b> {
        assert!(
            std::sync::Arc::ptr_eq(&self.bm.inner, &bm.inner),
            "rebind to another pool"
        );
        let this = std::mem::ManuallyDrop::new(self);
        SharedGuard {
            bm,
            pid: this.pid,
            pages: this.pages,
        }
    }
    /// The frame's stamp: its version cannot move while this latch is
    /// held, so [`BufferManager::unchanged_since`] tells later whether
    /// anyone changed (or evicted) the frame since it was read under it.
    pub fn stamp(&self) -> PageStamp {
        PageStamp {
            pid: self.pid,
            pages: self.pages,
            version: self.bm.inner.meta(self.pid).state.load().version(),
        }
    }
    pub fn lsn(&self) -> u64 {
        // SAFETY: as in payload.
        frame::lsn(unsafe {
            std::slice::from_raw_parts(self.bm.inner.frame_ptr(self.pid), PAGE_SIZE)
        })
    }
}

impl Drop for SharedGuard<'_> {
    fn drop(&mut self) {
        self.bm.inner.meta(self.pid).state.unlock_shared();
    }
}

impl BufferManager {
    /// Latches page `pid` exclusively, loading it if needed.
    pub fn exclusive(&self, pid: PageId) -> Result<ExclusiveGuard<'_>, PageError> {
        self.exclusive_extent(pid, 1)
    }

    /// Latches page `pid` shared, loading it if needed.
    pub fn shared(&self, pid: PageId) -> Result<SharedGuard<'_>, PageError> {
        self.shared_extent(pid, 1)
    }

    /// Latches the `pages`-page frame at `pid` exclusively.
    pub fn exclusive_extent(
        &self,
        pid: PageId,
        pages: u32,
    ) -> Result<ExclusiveGuard<'_>, PageError> {
        self.latch(pid, pages, |state, seen| state.try_lock_exclusive(seen))?;
        Ok(ExclusiveGuard::new(self, pid, pages, false))
    }

    /// Latches the `pages`-page frame at `pid` shared.
    pub fn shared_extent(&self, pid: PageId, pages: u32) -> Result<SharedGuard<'_>, PageError> {
        self.latch(pid, pages, |state, seen| state.try_lock_shared(seen))?;
        Ok(SharedGuard {
            bm: self,
            pid,
            pages,
        })
    }

    fn latch(
        &self,
        pid: PageId,
        pages: u32,
        try_latch: impl Fn(&crate::state::PageState, StateWord) -> bool,
    ) -> Result<(), PageError> {
        let inner = &*self.inner;
        inner.check_pid(pid, pages)?;
        let meta = inner.meta(pid);
        let mut backoff = Backoff::default();
        let mut hit = true;
        loop {
            let seen = meta.state.load();
            match seen.state() {
                EVICTED => {
                    hit = false;
                    inner.ensure_loaded(pid, pages)?;
                }
                LOCKED if meta.is_loading() => {
                    hit = false;
                    inner.ensure_loaded(pid, pages)?;
                }
                _ if try_latch(&meta.state, seen) => break,
                _ => backoff.snooze(),
            }
        }
        if hit {
            inner.count(Counter::Hit, 1);
        }
        Ok(())
    }

    /// Runs `body` as an optimistic read, restarting it until it finishes
    /// without interference. Inside, [`Section::read`] gives optimistic
    /// guards; `body` returns `Err(Interrupt::Restart)` when a validation
    /// fails, and the whole body runs again. A read that touches an evicted
    /// page's memory faults and restarts the same way.
    ///
    /// # Safety
    /// `body` may be cut short by `siglongjmp` at any read of page bytes
    /// through an optimistic guard. Every frame between this call and such a
    /// read is then discarded without running destructors, so `body` must
    /// keep no value with a meaningful destructor (latch guards, lock guards,
    /// owned allocations, `RefCell` borrows) alive across those reads. Values
    /// returned from `body` are safe: they are produced after its last read.
    pub unsafe fn optimistic<R>(
        &self,
        body: impl FnMut(&Section<'_>) -> Result<R, Interrupt>,
    ) -> Result<R, PageError> {
        // SAFETY: forwarded; the caller upholds the contract for `body`.
        match unsafe { self.optimistic_on_miss(OnMiss::Load, body) }? {
            Fetch::Ready(r) => Ok(r),
            // A loading section loads what it misses; it never stops early.
            Fetch::Missing { pid, .. } => Err(PageError::Corrupt {
                pid,
                reason: "a blocking section reported a missing page",
            }),
        }
    }

    /// [`BufferManager::optimistic`] that never waits for a page to be read:
    /// when `body` reaches a frame that is not in memory (evicted, or being
    /// loaded), the section stops and returns [`Fetch::Missing`] with the
    /// frame, which the caller loads with a [`crate::Loader`] (many at a
    /// time) before running the section again. It stops the same way at a
    /// frame latched exclusively while a loader's write-back of it is in
    /// flight (the latch holder may wait for that write; the caller's
    /// loader reports such a frame at once, and its poll may be what
    /// finishes the write).
    ///
    /// # Safety
    /// The contract of [`BufferManager::optimistic`].
    pub unsafe fn optimistic_nowait<R>(
        &self,
        body: impl FnMut(&Section<'_>) -> Result<R, Interrupt>,
    ) -> Result<Fetch<R>, PageError> {
        // SAFETY: forwarded; the caller upholds the contract for `body`.
        unsafe { self.optimistic_on_miss(OnMiss::Report, body) }
    }

    /// [`BufferManager::optimistic`] or [`BufferManager::optimistic_nowait`]
    /// as `on_miss` says, for callers that serve both (with
    /// [`OnMiss::Load`], the result is always [`Fetch::Ready`]).
    ///
    /// # Safety
    /// The contract of [`BufferManager::optimistic`].
    #[inline(always)]
    pub unsafe fn optimistic_on_miss<R>(
        &self,
        on_miss: OnMiss,
        mut body: impl FnMut(&Section<'_>) -> Result<R, Interrupt>,
    ) -> Result<Fetch<R>, PageError> {
        let mut backoff = Backoff::default();
        loop {
            let section = Section {
                bm: self,
                on_miss,
                waited: Cell::new(false),
                _not_send: PhantomData,
            };
            // SAFETY: the caller upholds the contract above for `body`; the
            // closure here adds only a reference to `section`.
            match unsafe { run_guarded(|| body(&section)) } {
                Outcome::Done(Ok(r)) => return Ok(Fetch::Ready(r)),
                Outcome::Done(Err(Interrupt::Error(e))) => return Err(e),
                Outcome::Done(Err(Interrupt::Missing { pid, pages }))
                    if on_miss == OnMiss::Report =>
                {
                    return Ok(Fetch::Missing { pid, pages });
                }
                Outcome::Done(Err(Interrupt::Restart | Interrupt::Missing { .. })) => {
                    self.inner.count(Counter::Restart, 1)
                }
                Outcome::Faulted => {
                    self.inner.count(Counter::Restart, 1);
                    self.inner.count(Counter::Fault, 1);
                }
            }
            backoff.snooze();
        }
    }
}

/// What an optimistic section does at a frame that is not in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnMiss {
    /// Read it (blocking this thread) and go on:
    /// [`BufferManager::optimistic`].
    Load,
    /// Stop and report it as [`Fetch::Missing`], for the caller to load with
    /// a [`crate::Loader`]: [`BufferManager::optimistic_nowait`].
    Report,
}

/// How a section run by [`BufferManager::optimistic_nowait`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Fetch<R> {
    /// It finished with this result.
    Ready(R),
    /// It needs the frame at `pid` (of `pages` pages) in memory first.
    Missing { pid: PageId, pages: u32 },
}

/// A guarded section in progress: the only place optimistic guards exist.
/// Not `Send`: the fault guard's jump buffer belongs to this thread.
pub struct Section<'a> {
    bm: &'a BufferManager,
    /// What to do at a frame that is not in memory.
    on_miss: OnMiss,
    /// Some read of this section waited for an exclusive latch.
    waited: Cell<bool>,
    _not_send: PhantomData<*const ()>,
}

impl<'a> Section<'a> {
    /// Whether a read of this section so far found its page latched
    /// exclusively and waited: a sign of contention for the caller to
    /// count (a B-tree's contention split).
    pub fn waited_for_a_latch(&self) -> bool {
        self.waited.get()
    }

    /// An optimistic guard on page `pid`, loading the page if it is evicted.
    #[inline]
    pub fn read(&self, pid: PageId) -> Result<OptimisticGuard<'a>, Interrupt> {
        self.read_extent(pid, 1)
    }

    /// An optimistic guard on a page whose id was read from `parent`'s
    /// bytes: the lock-coupling step.
    ///
    /// 1. Validate the parent: the id was not torn, so it names a real page.
    /// 2. Take the child's version (loading it if evicted).
    /// 3. Validate the parent again: the child's version was taken while the
    ///    parent still pointed to it (a merge that frees the child changes
    ///    the parent first), so a freed-and-reused id cannot be misread.
    ///    If loading failed, a parent that changed meanwhile makes the
    ///    failure a restart: the id was stale, not the disk broken.
    #[inline(always)]
    pub fn read_child(
        &self,
        pid: PageId,
        parent: &OptimisticGuard<'a>,
    ) -> Result<OptimisticGuard<'a>, Interrupt> {
        parent.validate()?;
        let child = self.read(pid);
        parent.validate()?;
        child
    }

    /// An optimistic guard on page `pid` if it is in memory and not
    /// latched exclusively right now, for hints only: nothing is loaded,
    /// waited for, unmarked or counted, and its bytes are guesses (what a
    /// scan prefetches from a leaf it will visit soon). `None` otherwise.
    #[inline]
    pub fn peek(&self, pid: PageId) -> Option<OptimisticGuard<'a>> {
        let inner = &*self.bm.inner;
        inner.check_pid(pid, 1).ok()?;
        let seen = inner.meta(pid).state.load();
        seen.is_readable().then_some(OptimisticGuard {
            bm: self.bm,
            pid,
            pages: 1,
            version: seen.version(),
        })
    }

    /// An optimistic guard on the `pages`-page frame at `pid`.
    #[inline]
    pub fn read_extent(&self, pid: PageId, pages: u32) -> Result<OptimisticGuard<'a>, Interrupt> {
        let inner = &*self.bm.inner;
        inner.check_pid(pid, pages)?;
        let meta = inner.meta(pid);
        let mut backoff = Backoff::default();
        loop {
            let seen = meta.state.load();
            match seen.state() {
                // Not in memory: load it here, or (nowait) say so.
                EVICTED | LOCKED if seen.state() == EVICTED || meta.is_loading() => {
                    if self.on_miss == OnMiss::Report {
                        return Err(Interrupt::Missing { pid, pages });
                    }
                    inner.ensure_loaded(pid, pages)?;
                }
                // Latched exclusively while a loader's write of it is in
                // flight: the holder may be waiting for that write
                // (`ExclusiveGuard::write_back`), which only its loader's
                // poll completes, and that loader may be this thread's.
                // Stop instead of spinning: the caller polls, then retries.
                LOCKED if self.on_miss == OnMiss::Report && meta.is_writing() => {
                    return Err(Interrupt::Missing { pid, pages });
                }
                LOCKED => {
                    self.waited.set(true);
                    backoff.snooze();
                }
                MARKED => {
                    // An access: give the frame its second chance back.
                    meta.state.try_unmark(seen);
                }
                _ => {
                    inner.count(Counter::Hit, 1);
                    return Ok(OptimisticGuard {
                        bm: self.bm,
                        pid,
                        pages,
                        version: seen.version(),
                    });
                }
            }
        }
    }
}

/// A page and the version an optimistic read of it validated: later,
/// [`BufferManager::unchanged_since`] says without reading the page whether
/// its bytes are still those. The version moves on at every release of an
/// exclusive latch that changed the page, and at every eviction and
/// reload, and never repeats (56 bits), so an equal version means the same
/// bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageStamp {
    pid: PageId,
    pages: u32,
    version: u64,
}

impl PageStamp {
    pub fn pid(&self) -> PageId {
        self.pid
    }
}

impl BufferManager {
    /// Whether the page of `stamp` is resident, not exclusively latched,
    /// and unchanged since the read that made the stamp: then everything
    /// that read saw is still so. One load of the page's state word (with
    /// acquire ordering: it is not reordered before the caller's earlier
    /// loads), no latch, no access to the page.
    #[inline]
    pub fn unchanged_since(&self, stamp: PageStamp) -> bool {
        let now = self.inner.meta(stamp.pid).state.load();
        now.version() == stamp.version && now.is_readable()
    }

    /// The page of `stamp`, latched exclusively, if it is unchanged since
    /// the stamp and nobody holds a latch on it; else `None` at once (no
    /// waiting: the caller finds the page its usual way).
    pub fn lock_if_unchanged(&self, stamp: PageStamp) -> Option<ExclusiveGuard<'_>> {
        let state = &self.inner.meta(stamp.pid).state;
        let seen = state.load();
        let free = seen.state() == crate::state::UNLOCKED || seen.state() == MARKED;
        (seen.version() == stamp.version && free && state.try_lock_exclusive(seen))
            .then(|| ExclusiveGuard::new(self, stamp.pid, stamp.pages, false))
    }
}

/// An optimistic read of a frame: a version, no latch. Copyable and without
/// a destructor, so it may live anywhere in a guarded section.
#[derive(Clone, Copy)]
pub struct OptimisticGuard<'a> {
    bm: &'a BufferManager,
    pid: PageId,
    pages: u32,
    version: u64,
}

impl<'a> OptimisticGuard<'a> {
    pub fn pid(&self) -> PageId {
        self.pid
    }

    /// The payload as of now. Another thread may be changing it: anything
    /// read here is a guess until [`validate`](Self::validate) says otherwise,
    /// and must be bounds-checked before it is used as an index.
    pub fn payload(&self) -> &'a [u8] {
        // SAFETY: the range is inside the region (checked when the guard was
        // made), which stays mapped for the pool's lifetime ('a). The bytes
        // may be concurrently written (validated later) or released (the
        // fault guard turns the touch into a restart).
        let bytes = unsafe {
            std::slice::from_raw_parts(
                self.bm.inner.frame_ptr(self.pid),
                self.pages as usize * PAGE_SIZE,
            )
        };
        &bytes[FRAME_HEADER_SIZE..]
    }

    /// The page and the version this guard reads: a [`PageStamp`] that
    /// means something once [`validate`](Self::validate) has passed.
    #[inline]
    pub fn stamp(&self) -> PageStamp {
        PageStamp {
            pid: self.pid,
            pages: self.pages,
            version: self.version,
        }
    }

    /// Whether nobody changed or evicted the frame since the guard was made.
    #[inline]
    pub fn validate(&self) -> Result<(), Interrupt> {
        let now = self.bm.inner.meta(self.pid).state.load_after_read();
        if now.version() == self.version && now.is_readable() {
            Ok(())
        } else {
            Err(Interrupt::Restart)
        }
    }

    /// Turns the optimistic read into an exclusive latch, if nothing
    /// changed since. (Hold the result outside the section or until no more
    /// optimistic bytes are read: it has a destructor.)
    #[inline]
    pub fn upgrade(self) -> Result<ExclusiveGuard<'a>, Interrupt> {
        let state = &self.bm.inner.meta(self.pid).state;
        let mut backoff = Backoff::default();
        loop {
            let seen = state.load();
            if seen.version() != self.version || !seen.is_readable() {
                return Err(Interrupt::Restart);
            }
            if seen.is_shared() {
                backoff.snooze();
                continue;
            }
            if state.try_lock_exclusive(seen) {
                return Ok(ExclusiveGuard::new(self.bm, self.pid, self.pages, false));
            }
        }
    }

    /// Turns the optimistic read into a shared latch, if nothing changed.
    pub fn upgrade_shared(self) -> Result<SharedGuard<'a>, Interrupt> {
        let state = &self.bm.inner.meta(self.pid).state;
        loop {
            let seen = state.load();
            if seen.version() != self.version || !seen.is_readable() {
                return Err(Interrupt::Restart);
            }
            if state.try_lock_shared(seen) {
                return Ok(SharedGuard {
                    bm: self.bm,
                    pid: self.pid,
                    pages: self.pages,
                });
            }
        }
    }
}
