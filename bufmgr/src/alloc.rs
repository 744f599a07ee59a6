//! Page and extent allocation, with reuse of freed frames.
//!
//! Page ids are handed out by bumping a high-water mark; freed frames go to
//! free lists and are reused first. Extents (contiguous runs of pages, for
//! large values) come from a best-fit free map keyed by length: the
//! smallest free run that fits is taken and its rest returned to the map.
//! Runs are not coalesced; a workload that frees many small extents and
//! then wants large ones grows the file instead. The allocation state is
//! small and the storage layer persists it at checkpoints ([`AllocState`]).

use crate::error::PageError;
use crate::guards::ExclusiveGuard;
use crate::manager::{BufferManager, Inner};
use crate::state::{EVICTED, LOCKED, MARKED, StateWord, UNLOCKED};
use crate::sync::Backoff;
use crate::{PAGE_SIZE, PageId};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

/// The largest extent: 8192 pages (32 MiB). Values up to 16 MiB plus
/// headers fit with room to spare; the limit bounds a single I/O and a
/// single checksum pass.
pub const MAX_EXTENT_PAGES: usize = 8192;

/// What the storage layer saves to reopen the pool with the same free space.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllocState {
    /// One past the highest page id ever handed out.
    pub next_pid: PageId,
    /// Free frames: (first page id, length in pages).
    pub free: Vec<(PageId, u32)>,
}

pub(crate) struct Allocator {
    next: PageId,
    /// Free runs by length; the Vec is a stack of first page ids.
    free: BTreeMap<u32, Vec<PageId>>,
}

impl Allocator {
    pub(crate) fn new(state: &AllocState) -> Self {
        let mut free: BTreeMap<u32, Vec<PageId>> = BTreeMap::new();
        for &(pid, len) in &state.free {
            free.entry(len).or_default().push(pid);
        }
        Allocator {
            next: state.next_pid.max(1),
            free,
        }
    }

    /// A free run of `pages` pages, reused or new. The second value says
    /// whether the run was reused (its pages are EVICTED or were loaded).
    fn take(&mut self, pages: u32, max_pages: u64) -> Result<(PageId, bool), PageError> {
        if let Some((&len, _)) = self.free.range(pages..).next() {
            let stack = self.free.get_mut(&len).expect("key just seen");
            let pid = stack.pop().expect("free stacks are never left empty");
            if stack.is_empty() {
                self.free.remove(&len);
            }
            if len > pages {
                self.free
                    .entry(len - pages)
                    .or_default()
                    .push(pid + pages as u64);
            }
            return Ok((pid, true));
        }
        let pid = self.next;
        if pid + pages as u64 > max_pages {
            return Err(PageError::RegionFull { max_pages });
        }
        self.next += pages as u64;
        Ok((pid, false))
    }

    /// Undoes a `take` whose frame could not be set up.
    fn untake(&mut self, pid: PageId, pages: u32, reused: bool) {
        if reused {
            self.give_back(pid, pages);
        } else {
            debug_assert_eq!(self.next, pid + pages as u64, "the lock is held since take");
            self.next = pid;
        }
    }

    fn give_back(&mut self, pid: PageId, pages: u32) {
        self.free.entry(pages).or_default().push(pid);
    }

    pub(crate) fn state(&self) -> AllocState {
        let free = self
            .free
            .iter()
            .flat_map(|(&len, pids)| pids.iter().map(move |&p| (p, len)))
            .collect();
        AllocState {
            next_pid: self.next,
            free,
        }
    }
}

impl BufferManager {
    /// A new zeroed page, latched exclusively and dirty.
    pub fn alloc(&self) -> Result<ExclusiveGuard<'_>, PageError> {
        self.alloc_frame(1)
    }

    /// A new zeroed extent of `pages` contiguous pages, latched exclusively
    /// (through its first page) and dirty.
    pub fn alloc_extent(&self, pages: usize) -> Result<ExclusiveGuard<'_>, PageError> {
        if pages == 0 || pages > MAX_EXTENT_PAGES {
            return Err(PageError::ExtentTooLarge {
                pages,
                max_pages: MAX_EXTENT_PAGES,
            });
        }
        self.alloc_frame(pages as u32)
    }

    /// 1. Count the memory first, evicting if needed, with no lock held.
    /// 2. Take a run from the free map, or bump the high-water mark.
    /// 3. Latch its first page: a new id is initialised straight to LOCKED
    ///    (no other thread can know it); a reused one is latched from
    ///    EVICTED, or from resident if a stray reader loaded it meanwhile
    ///    (then the memory counted in step 1 is handed back).
    /// 4. Make the memory accessible and zero it.
    /// 5. Mark it dirty and resident, and publish the new high-water mark;
    ///    past the lock, tell the pre-faulting thread (`crate::prefault`).
    fn alloc_frame(&self, pages: u32) -> Result<ExclusiveGuard<'_>, PageError> {
        let inner = &*self.inner;
        // Step 1.
        inner.reserve(pages as u64)?;
        let unreserve = || {
            inner
                .resident_pages
                .fetch_sub(pages as u64, Ordering::Relaxed)
        };
        // Step 2.
        let mut allocator = inner.allocator.lock().unwrap_or_else(|p| p.into_inner());
        let (pid, reused) = match allocator.take(pages, inner.max_pages) {
            Ok(taken) => taken,
            Err(e) => {
                unreserve();
                return Err(e);
            }
        };
        // Step 3.
        let meta = inner.meta(pid);
        let was_resident = reused && latch_reused(inner, pid);
        if !reused {
            meta.state.store_initial(StateWord::new(0, LOCKED));
            for tail in pid + 1..pid + pages as u64 {
                inner
                    .meta(tail)
                    .state
                    .store_initial(StateWord::new(0, EVICTED));
            }
        }
        if was_resident {
            unreserve();
        }
        // Step 4.
        let (offset, len) = (pid as usize * PAGE_SIZE, pages as usize * PAGE_SIZE);
        if let Err(source) = inner.pool.reclaim(offset, len, inner.release) {
            unreserve();
            meta.state.unlock_exclusive_evicted();
            allocator.untake(pid, pages, reused);
            return Err(PageError::Madvise { pid, source });
        }
        // SAFETY: latched exclusively by this thread; inside the region.
        unsafe { std::ptr::write_bytes(inner.frame_ptr(pid), 0, len) };
        // Step 5.
        meta.set_frame_pages(pages);
        meta.set_dirty(true);
        if !was_resident {
            inner.resident.insert(pid);
        }
        if !reused {
            inner.allocated.store(pid + pages as u64, Ordering::Release);
        }
        drop(allocator);
        if !reused {
            inner.prefault.frontier_moved(pid + pages as u64);
        }
        Ok(ExclusiveGuard::new(self, pid, pages, true))
    }

    /// Frees the frame behind `guard`: its memory is released at once and
    /// its pages are reused by later allocations. Its contents are gone.
    pub fn free(&self, guard: ExclusiveGuard<'_>) {
        let (pid, pages) = (guard.pid(), guard.frame_pages());
        // The latch passes to `discard_latched`, which releases it.
        std::mem::forget(guard);
        self.inner.discard_latched(pid, pages);
    }

    /// **For recovery only.** Latches page `pid` (already allocated: below
    /// the high-water mark, not in the free map) exclusively *without
    /// reading it*, as a zeroed, dirty, resident single-page frame. Redo
    /// uses it to write a logged after-image over a page the file never
    /// received (`PageError::NeverWritten`, or beyond the file's end) or
    /// received torn (`PageError::Corrupt`). Whatever the page held in
    /// memory or on disk is discarded. Must not race with other users of
    /// `pid` (recovery runs before the pool is shared).
    pub fn recover_page(&self, pid: PageId) -> Result<ExclusiveGuard<'_>, PageError> {
        let inner = &*self.inner;
        inner.check_pid(pid, 1)?;
        // 1. Count the memory, as an allocation does.
        inner.reserve(1)?;
        // 2. Latch it from EVICTED, or from resident (then the memory is
        //    already counted: hand back what step 1 took).
        let meta = inner.meta(pid);
        let was_resident = latch_reused(inner, pid);
        if was_resident {
            inner.resident_pages.fetch_sub(1, Ordering::Relaxed);
        }
        // 3. Make the memory accessible and zero it.
        if let Err(source) = inner
            .pool
            .reclaim(pid as usize * PAGE_SIZE, PAGE_SIZE, inner.release)
        {
            if !was_resident {
                inner.resident_pages.fetch_sub(1, Ordering::Relaxed);
            }
            meta.state.unlock_exclusive_evicted();
            return Err(PageError::Madvise { pid, source });
        }
        // SAFETY: latched exclusively by this thread; `check_pid` proved the
        // page lies inside the region.
        unsafe { std::ptr::write_bytes(inner.frame_ptr(pid), 0, PAGE_SIZE) };
        // 4. A one-page frame, dirty and resident.
        meta.set_frame_pages(1);
        meta.set_dirty(true);
        if !was_resident {
            inner.resident.insert(pid);
        }
        Ok(ExclusiveGuard::new(self, pid, 1, true))
    }

    /// Frees the `pages`-page frame at `pid` without reading it: a frame
    /// being discarded needs no I/O, and after a crash it may never have
    /// reached the file at all. Waits for any latch on it to be released.
    ///
    /// 1. Latch it: from EVICTED (nothing to release) or from resident
    ///    (its memory is released and it leaves the resident set).
    /// 2. Unlock it as EVICTED with the next version: stale optimistic
    ///    readers restart.
    /// 3. Return its pages to the free map.
    pub fn free_frame(&self, pid: PageId, pages: u32) -> Result<(), PageError> {
        let inner = &*self.inner;
        inner.check_pid(pid, pages)?;
        let meta = inner.meta(pid);
        let mut backoff = Backoff::default();
        // Steps 1 and 2.
        loop {
            let seen = meta.state.load();
            match seen.state() {
                EVICTED if meta.state.try_lock_evicted(seen) => {
                    meta.state.unlock_exclusive_evicted();
                    break;
                }
                LOCKED if meta.is_loading() => inner.waits.wait(pid, meta),
                UNLOCKED | MARKED if meta.state.try_lock_exclusive(seen) => {
                    inner.discard_latched(pid, pages);
                    return Ok(());
                }
                _ => backoff.snooze(),
            }
        }
        // Step 3.
        inner.give_back_freed(pid, pages);
        Ok(())
    }

    /// **For recovery only** (no other thread may use the pool). Returns to
    /// the free map every page below the high-water mark that `live`
    /// rejects and that is not free already; returns how many pages that
    /// was. Recovery's sweep passes "some tree reaches this page", which
    /// makes the allocation state exact whatever the crash left behind.
    ///
    /// 1. Mark the pages the free map already holds.
    /// 2. Walk the page ids in order. A resident frame is taken whole: if
    ///    its first page is live, every page of it must be live (it is
    ///    skipped); if not, none may be (it is discarded without I/O, its
    ///    changes dropped). Pages of a frame that is half live and half dead
    ///    mean the caller's liveness disagrees with the pool: an error,
    ///    nothing more is freed.
    /// 3. Dead pages that are not resident are gathered into runs of
    ///    consecutive ids (at most [`MAX_EXTENT_PAGES`] each, so a later
    ///    extent can reuse them) and given back.
    pub fn reclaim_unreachable(&self, live: impl Fn(PageId) -> bool) -> Result<u64, PageError> {
        let inner = &*self.inner;
        // Step 1.
        let state = self.alloc_state();
        let end = state.next_pid;
        let mut free = vec![false; end as usize];
        for (first, pages) in state.free {
            for pid in first..(first + u64::from(pages)).min(end) {
                free[pid as usize] = true;
            }
        }
        let half_live = |pid: PageId| PageError::Corrupt {
            pid,
            reason: "a resident frame covers both live and unreachable pages",
        };
        // Steps 2 and 3.
        let mut reclaimed = 0u64;
        let mut run: Option<(PageId, u32)> = None;
        let close_run = |run: &mut Option<(PageId, u32)>, reclaimed: &mut u64| {
            if let Some((first, pages)) = run.take() {
                inner.give_back(first, pages);
                *reclaimed += u64::from(pages);
            }
        };
        let mut pid: PageId = 1;
        while pid < end {
            let resident = self.is_resident(pid);
            let frame_pages = if resident {
                u64::from(inner.meta(pid).frame_pages().max(1))
            } else {
                1
            };
            let frame = pid..(pid + frame_pages).min(end);
            if free[pid as usize] || live(pid) {
                close_run(&mut run, &mut reclaimed);
                if resident && frame.clone().any(|p| !live(p)) {
                    return Err(half_live(pid));
                }
                pid = frame.end;
                continue;
            }
            if resident {
                close_run(&mut run, &mut reclaimed);
                if frame.clone().any(|p| live(p) || free[p as usize]) {
                    return Err(half_live(pid));
                }
                self.free_frame(pid, frame_pages as u32)?;
                reclaimed += frame_pages;
                pid = frame.end;
                continue;
            }
            match &mut run {
                Some((first, pages))
                    if *first + u64::from(*pages) == pid
                        && (*pages as usize) < MAX_EXTENT_PAGES =>
                {
                    *pages += 1;
                }
                _ => {
                    close_run(&mut run, &mut reclaimed);
                    run = Some((pid, 1));
                }
            }
            pid += 1;
        }
        close_run(&mut run, &mut reclaimed);
        Ok(reclaimed)
    }

    /// The allocation state to persist (see [`AllocState`]).
    pub fn alloc_state(&self) -> AllocState {
        self.inner
            .allocator
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .state()
    }
}

impl Inner {
    /// Discards a resident frame this thread holds exclusively: its changes
    /// are dropped, its memory released, its latch released as EVICTED,
    /// and its pages returned to the free map.
    fn discard_latched(&self, pid: PageId, pages: u32) {
        self.meta(pid).set_dirty(false);
        self.drop_frames(&[pid]);
        self.give_back_freed(pid, pages);
    }

    /// Returns a freed frame's pages to the free map, unless a loader's
    /// write of it is in flight: then that write's completion returns them
    /// (`Inner::finish_write_back`), so no later owner of the pages can
    /// have its own write overtaken by the old one.
    fn give_back_freed(&self, pid: PageId, pages: u32) {
        if self.meta(pid).defer_free_if_writing() {
            return;
        }
        self.give_back(pid, pages);
    }

    pub(crate) fn give_back(&self, pid: PageId, pages: u32) {
        self.allocator
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .give_back(pid, pages);
    }
}

/// Latches a reused frame's first page exclusively; returns whether it was
/// resident (a stray optimistic reader may have loaded a freed page).
fn latch_reused(inner: &Inner, pid: PageId) -> bool {
    let state = &inner.meta(pid).state;
    let mut backoff = Backoff::default();
    loop {
        let seen = state.load();
        match seen.state() {
            EVICTED if state.try_lock_evicted(seen) => return false,
            UNLOCKED | MARKED if state.try_lock_exclusive(seen) => return true,
            _ => backoff.snooze(),
        }
    }
}
