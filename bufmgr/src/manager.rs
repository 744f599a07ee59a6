//! The buffer manager: one virtual region, a state word per page, a budget.

use crate::error::{OpenError, PageError};
use crate::fault::{self, RegionGuard};
use crate::huge::{HugePages, HugePrefix};
use crate::io::{BlockFile, ReadOp};
use crate::meta::PageMeta;
use crate::prefault::Prefault;
use crate::region::{Region, ReleaseMode, ReleasePolicy};
use crate::resident::ResidentSet;
use crate::state::{EVICTED, LOCKED, StateWord};
use crate::stats::{Counter, Stats, StatsRegistry};
use crate::sync::Backoff;
use crate::wait::{LoadFailures, LoadWaits};
use crate::{AllocState, PAGE_SIZE, PageId, alloc::Allocator, frame};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// The smallest budget accepted: every thread may hold the handful of
/// latches of a B-tree split (about 4 frames) while an eviction batch is in
/// flight, with dozens of threads; 256 pages (1 MiB) leaves room for that.
pub const MIN_POOL_PAGES: usize = 256;
/// Default virtual region: 1 TiB, the largest database a pool can hold.
/// Address space only (`MAP_NORESERVE`); x86-64 user space has 128 TiB.
pub const DEFAULT_MAX_BYTES: u64 = 1 << 40;
/// Default budget: 1 GiB, a sane default for a server process.
pub const DEFAULT_POOL_BYTES: usize = 1 << 30;
/// Frames gathered per eviction round, written back in one submission.
/// vmcache's choice: large enough to amortise the submission and the scan,
/// small enough that one round is a short stall for the evicting thread.
pub const EVICT_BATCH: usize = 64;
/// Eviction rounds that free nothing before an allocation gives up with
/// [`PageError::PoolExhausted`] (each round yields the core first, so other
/// threads get to release their latches).
pub(crate) const MAX_FUTILE_EVICTIONS: u32 = 1000;

/// Called before any dirty frame is written to disk: the storage layer
/// enforces the write-ahead rule here (forcing the log up to `page_lsn`).
pub trait WriteBackHook: Send + Sync {
    /// Called for each frame, under its shared latch, right before it is
    /// copied for writing: may wait (for the log), and every writer that
    /// wants the page waits with it.
    fn before_write(&self, pid: PageId, page_lsn: u64) -> Result<(), WriteBackRefused>;

    /// Called with no latch held before a checkpoint's flush takes the
    /// latches of a batch of dirty frames: a hook that forces the log may
    /// force all of it here, so that `before_write` finds it durable for
    /// every frame not changed since and does not wait under a latch.
    /// Best effort: a failure here surfaces in `before_write`.
    fn before_batch(&self) {}
}

/// Why a [`WriteBackHook`] kept a page from the disk.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WriteBackRefused {
    /// The log could not be made durable up to the page's LSN.
    #[error("the log could not be made durable for page {pid}: {reason}")]
    LogNotDurable { pid: PageId, reason: String },
    /// The page holds a change that was never logged; it must never reach
    /// the disk.
    #[error("page {pid} holds a change that could not be logged")]
    Unlogged { pid: PageId },
}

/// How to open a buffer manager.
#[derive(Clone)]
pub struct Config {
    /// Physical memory budget for resident frames, in bytes.
    pub pool_bytes: usize,
    /// Size of the virtual region: the largest database this pool can hold.
    pub max_bytes: u64,
    /// Write-ahead hook (see [`WriteBackHook`]).
    pub write_back: Option<Arc<dyn WriteBackHook>>,
    /// Allocation state saved by the storage layer at its last checkpoint;
    /// `None` derives it from the file's length with an empty free list.
    pub alloc: Option<AllocState>,
    /// How evicted pages give their memory back (default: the cheapest
    /// this kernel offers; [`ReleaseMode::cheapest`]).
    pub release: ReleasePolicy,
    /// Transparent huge pages for the pool (see [`HugePages`]).
    pub huge_pages: HugePages,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            pool_bytes: DEFAULT_POOL_BYTES,
            max_bytes: DEFAULT_MAX_BYTES,
            write_back: None,
            alloc: None,
            release: ReleasePolicy::Cheapest,
            huge_pages: HugePages::default(),
        }
    }
}

static NEXT_POOL_ID: AtomicU64 = AtomicU64::new(1);

/// The shared state of one pool; guards and loaders refer to it.
pub(crate) struct Inner {
    pub(crate) id: u64,
    pub(crate) pool: Region,
    meta: Region,
    pub(crate) file: Arc<dyn BlockFile>,
    pub(crate) budget_pages: u64,
    pub(crate) max_pages: u64,
    pub(crate) resident_pages: AtomicU64,
    pub(crate) resident: ResidentSet,
    pub(crate) allocator: Mutex<Allocator>,
    /// One past the highest page id handed out; page ids below it exist.
    pub(crate) allocated: AtomicU64,
    pub(crate) release: ReleaseMode,
    pub(crate) huge: HugePrefix,
    /// Populating the prefix ahead of allocations (`crate::prefault`).
    pub(crate) prefault: Prefault,
    pub(crate) waits: LoadWaits,
    /// Errors of failed loads, for the waiters of those loads.
    pub(crate) failures: LoadFailures,
    pub(crate) stats: StatsRegistry,
    pub(crate) hook: Option<Arc<dyn WriteBackHook>>,
    pub(crate) flush_lock: Mutex<()>,
    /// Pages latched by loaders for reads in flight, all loaders together
    /// (bounded by [`crate::loader`]'s share of the budget).
    pub(crate) loader_pages: AtomicU64,
    _fault_registration: RegionGuard,
}

/// The buffer manager. See the crate docs for the protocols.
pub struct BufferManager {
    pub(crate) inner: Arc<Inner>,
    /// The pre-faulting thread, if one runs: stopped and joined on drop.
    prefaulter: Option<std::thread::JoinHandle<()>>,
}

impl BufferManager {
    /// Opens a pool over `file`.
    pub fn open(file: Arc<dyn BlockFile>, config: Config) -> Result<Self, OpenError> {
        let min_bytes = MIN_POOL_PAGES * PAGE_SIZE;
        if config.pool_bytes < min_bytes {
            return Err(OpenError::BudgetTooSmall {
                pool_bytes: config.pool_bytes,
                min_bytes,
            });
        }
        if config.pool_bytes as u64 > config.max_bytes {
            return Err(OpenError::BudgetAboveRegion {
                pool_bytes: config.pool_bytes,
                max_bytes: config.max_bytes,
            });
        }
        let max_pages = config.max_bytes / PAGE_SIZE as u64;
        let file_pages = file.len_bytes()?.div_ceil(PAGE_SIZE as u64);
        let alloc = config.alloc.clone().unwrap_or(AllocState {
            next_pid: file_pages.max(1),
            free: Vec::new(),
        });
        if alloc.next_pid > max_pages {
            return Err(OpenError::FileLargerThanRegion {
                file_pages: alloc.next_pid,
                max_pages,
            });
        }
        let reserve = |bytes: usize| {
            Region::reserve(bytes).map_err(|source| OpenError::Reserve { bytes, source })
        };
        let pool = reserve(max_pages as usize * PAGE_SIZE)?;
        let meta = reserve(max_pages as usize * std::mem::size_of::<PageMeta>())?;
        let fault_registration = fault::register_region(
            pool.base() as usize,
            pool.base() as usize + pool.size_bytes(),
        )
        .ok_or(OpenError::TooManyPools(64))?;
        let budget_pages = (config.pool_bytes / PAGE_SIZE) as u64;
        let release = ReleaseMode::for_policy(config.release);
        let huge = HugePrefix::advise(
            &pool,
            &meta,
            config.huge_pages,
            budget_pages,
            alloc.next_pid,
        );
        let prefault = Prefault::new(alloc.next_pid, huge.len_bytes());
        let inner = Inner {
            id: NEXT_POOL_ID.fetch_add(1, Ordering::Relaxed),
            pool,
            meta,
            file,
            budget_pages,
            max_pages,
            resident_pages: AtomicU64::new(0),
            resident: ResidentSet::with_capacity(budget_pages as usize),
            allocator: Mutex::new(Allocator::new(&alloc)),
            allocated: AtomicU64::new(alloc.next_pid),
            release,
            huge,
            prefault,
            waits: LoadWaits::new(),
            failures: LoadFailures::new(),
            stats: StatsRegistry::default(),
            hook: config.write_back,
            flush_lock: Mutex::new(()),
            loader_pages: AtomicU64::new(0),
            _fault_registration: fault_registration,
        };
        // Every existing page starts out on disk. Page 0 is reserved (so 0
        // can mean "no page" in on-disk pointers) and never touched.
        for pid in 1..alloc.next_pid {
            inner
                .meta(pid)
                .state
                .store_initial(StateWord::new(0, EVICTED));
        }
        let inner = Arc::new(inner);
        let prefaulter = Prefault::start(&inner);
        Ok(BufferManager { inner, prefaulter })
    }

    /// Counters summed over all threads.
    pub fn stats(&self) -> Stats {
        self.inner.stats.snapshot()
    }

    /// Pages currently resident (frames count their full length).
    pub fn resident_pages(&self) -> u64 {
        self.inner.resident_pages.load(Ordering::Relaxed)
    }

    /// The budget in pages.
    pub fn budget_pages(&self) -> u64 {
        self.inner.budget_pages
    }

    /// One past the highest page id handed out.
    pub fn allocated_pages(&self) -> u64 {
        self.inner.allocated.load(Ordering::Acquire)
    }

    /// Whether the pool's pages are advised huge: the database fitted in the
    /// budget at open and nothing has been evicted since ([`HugePages`]).
    pub fn huge_pages_active(&self) -> bool {
        self.inner.huge.is_active()
    }

    /// Where the pre-faulting thread's next round starts, in bytes from the
    /// pool's start, and whether it still runs (`crate::prefault`; for tests).
    #[doc(hidden)]
    pub fn prefault_progress(&self) -> (usize, bool) {
        let p = &self.inner.prefault;
        (p.populated_bytes(), p.is_running())
    }

    /// How evicted memory is released ([`Config::release`] on this kernel).
    pub fn release_mode(&self) -> ReleaseMode {
        self.inner.release
    }

    /// Writes every frame that is dirty now to the data file (a fuzzy
    /// flush: frames dirtied meanwhile may be missed). Does not sync; call
    /// [`BufferManager::sync`] after it for a checkpoint. Returns the number
    /// of frames written.
    pub fn flush_dirty(&self) -> Result<usize, PageError> {
        self.inner.flush_all()
    }

    /// `fdatasync` on the data file.
    pub fn sync(&self) -> Result<(), crate::io::IoError> {
        self.inner.file.sync_data()
    }

    /// Asks the CPU to start loading `pid`'s state word and the first
    /// `lines` cache lines of its frame, for a read expected soon (a scan's
    /// next leaf but one). Reads nothing architecturally and never faults:
    /// an evicted, free or out-of-range page costs a wasted hint, nothing
    /// else, so the caller may take `pid` from bytes it has not validated.
    #[inline]
    pub fn prefetch(&self, pid: PageId, lines: usize) {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
            if pid >= self.inner.max_pages {
                return;
            }
            let meta = self.inner.meta(pid) as *const PageMeta as *const i8;
            let frame = self.inner.frame_ptr(pid) as *const i8;
            // SAFETY: a prefetch reads nothing architecturally and never
            // faults; both addresses lie inside regions this manager maps
            // (pid < max_pages), so no hint reaches another mapping.
            unsafe {
                _mm_prefetch::<_MM_HINT_T0>(meta);
                for line in 0..lines.min(PAGE_SIZE / 64) {
                    _mm_prefetch::<_MM_HINT_T0>(frame.wrapping_add(line * 64));
                }
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = (pid, lines);
    }

    /// Whether the frame at `pid` is in memory now (a snapshot).
    pub fn is_resident(&self, pid: PageId) -> bool {
        self.inner.check_pid(pid, 1).is_ok() && self.inner.meta(pid).state.load().state() != EVICTED
    }

    /// Whether the frame at `pid` has changes not yet written back (a snapshot).
    pub fn is_dirty(&self, pid: PageId) -> bool {
        self.inner.check_pid(pid, 1).is_ok() && self.inner.meta(pid).is_dirty()
    }

    /// The data file.
    pub fn file(&self) -> &Arc<dyn BlockFile> {
        &self.inner.file
    }

    /// The start and length of the virtual region (for tests of the guard).
    pub fn region(&self) -> (*const u8, usize) {
        (self.inner.pool.base(), self.inner.pool.size_bytes())
    }
}

impl Drop for BufferManager {
    fn drop(&mut self) {
        if let Some(thread) = self.prefaulter.take() {
            self.inner.prefault.stop();
            // A panic there was a bug in a thread that only advises memory.
            let _ = thread.join();
        }
        StatsRegistry::forget_thread_entry(self.inner.id);
    }
}

impl Inner {
    #[inline]
    pub(crate) fn meta(&self, pid: PageId) -> &PageMeta {
        debug_assert!(pid < self.max_pages);
        // SAFETY: the metadata region holds max_pages PageMeta slots, zero
        // bytes are a valid PageMeta (two atomics), and pid < max_pages is
        // guaranteed by every caller's range check (`check_pid`).
        unsafe { &*self.meta.base().cast::<PageMeta>().add(pid as usize) }
    }

    #[inline]
    pub(crate) fn frame_ptr(&self, pid: PageId) -> *mut u8 {
        // SAFETY: pid < max_pages, so the offset stays inside the pool region.
        unsafe { self.pool.base().add(pid as usize * PAGE_SIZE) }
    }

    /// Refuses page 0 and ids beyond the allocated range.
    #[inline]
    pub(crate) fn check_pid(&self, pid: PageId, pages: u32) -> Result<(), PageError> {
        let allocated = self.allocated.load(Ordering::Acquire);
        if pid == 0 || pages == 0 || pid.saturating_add(pages as u64) > allocated {
            return Err(PageError::OutOfRange { pid, allocated });
        }
        Ok(())
    }

    #[inline]
    pub(crate) fn count(&self, counter: Counter, n: u64) {
        self.stats.add(self.id, counter, n);
    }

    /// Makes frame `pid` (of `pages` pages) resident if it is evicted. On
    /// return the frame is resident or being used by another thread; callers
    /// re-read the state word and try to latch it. An error is this
    /// thread's read's, or that of the read it waited for.
    pub(crate) fn ensure_loaded(&self, pid: PageId, pages: u32) -> Result<(), PageError> {
        let meta = self.meta(pid);
        let mut backoff = Backoff::default();
        loop {
            let seen = meta.state.load();
            match seen.state() {
                EVICTED if meta.state.try_lock_evicted(seen) => {
                    meta.set_loading(true);
                    self.count(Counter::Miss, 1);
                    self.count(Counter::BlockingMiss, 1);
                    return self.load_locked(&[(pid, pages)]);
                }
                EVICTED => backoff.snooze(),
                LOCKED if meta.is_loading() => {
                    self.count(Counter::Miss, 1);
                    self.count(Counter::BlockingMiss, 1);
                    self.waits.wait(pid, meta);
                    return self.failures.outcome(pid, meta, seen.version());
                }
                _ => return Ok(()),
            }
        }
    }

    /// Reads frames this thread has latched from EVICTED (with LOADING set)
    /// into their final addresses, one submission for the whole batch, and
    /// publishes them. Every frame is published or rolled back; the first
    /// error is returned.
    ///
    /// 1. Reserve memory for all frames, evicting others if over budget.
    /// 2. Make the frames' memory accessible (remove guard markers).
    /// 3. Read all of them from the file straight into the pool: no copy.
    /// 4. Check each frame's header; a valid frame joins the resident set
    ///    and is unlocked (with a new version); an invalid one gives its
    ///    memory back and returns to EVICTED.
    /// 5. Wake the threads that waited for these loads.
    pub(crate) fn load_locked(&self, frames: &[(PageId, u32)]) -> Result<(), PageError> {
        // Steps 1 and 2.
        self.prepare_loads(frames)?;
        // Step 3.
        let mut reads: Vec<ReadOp<'_>> = frames
            .iter()
            .map(|&(pid, pages)| ReadOp {
                offset: pid * PAGE_SIZE as u64,
                // SAFETY: this thread holds the frame's exclusive latch (from
                // EVICTED), so nobody else writes it; optimistic readers may
                // read it concurrently, which they validate. The range is
                // inside the region (check_pid).
                buf: unsafe {
                    std::slice::from_raw_parts_mut(self.frame_ptr(pid), pages as usize * PAGE_SIZE)
                },
            })
            .collect();
        let read = self.file.read_batch(&mut reads);
        drop(reads);
        if let Err(source) = read {
            frames.iter().for_each(|&(pid, n)| {
                let e = PageError::Io {
                    pid,
                    source: source.duplicate(),
                };
                self.abandon_load(pid, n as u64, &e)
            });
            return Err(PageError::Io {
                pid: frames[0].0,
                source,
            });
        }
        // Steps 4 and 5.
        let mut first_error = None;
        for &(pid, pages) in frames {
            if let Err(e) = self.publish_loaded(pid, pages) {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Steps 1 and 2 of [`Inner::load_locked`], for frames this thread
    /// latched from EVICTED: reserve their memory and make it accessible.
    /// On error every frame is rolled back (EVICTED, waiters woken).
    pub(crate) fn prepare_loads(&self, frames: &[(PageId, u32)]) -> Result<(), PageError> {
        let total: u64 = frames.iter().map(|&(_, n)| n as u64).sum();
        if let Err(e) = self.reserve(total) {
            frames
                .iter()
                .for_each(|&(pid, _)| self.abandon_load(pid, 0, &e));
            return Err(e);
        }
        for &(pid, pages) in frames {
            let (offset, len) = (pid as usize * PAGE_SIZE, pages as usize * PAGE_SIZE);
            if let Err(e) = self.pool.reclaim(offset, len, self.release) {
                tracing::warn!(pid, error = %e, "removing guard markers failed; the read will fault");
            }
        }
        Ok(())
    }

    /// Step 4 and 5 for one frame whose bytes arrived: check its header,
    /// then publish it (or give it back to EVICTED) and wake its waiters.
    pub(crate) fn publish_loaded(&self, pid: PageId, pages: u32) -> Result<(), PageError> {
        // SAFETY: latched exclusively by this thread, inside the region.
        let bytes =
            unsafe { std::slice::from_raw_parts(self.frame_ptr(pid), pages as usize * PAGE_SIZE) };
        let problem = match frame::check(bytes) {
            frame::Check::Valid => None,
            frame::Check::NeverWritten => Some(PageError::NeverWritten { pid }),
            frame::Check::Corrupt(reason) => Some(PageError::Corrupt { pid, reason }),
        };
        if let Some(e) = problem {
            self.abandon_load(pid, pages as u64, &e);
            return Err(e);
        }
        let meta = self.meta(pid);
        meta.set_frame_pages(pages);
        meta.set_dirty(false);
        self.resident.insert(pid);
        self.failures.forget(pid, meta);
        self.waits.finish(pid, meta);
        meta.state.unlock_exclusive();
        Ok(())
    }

    /// Undoes a load that failed with `error`: memory back (if `reserved`
    /// pages were counted), the error recorded for the load's waiters
    /// ([`LoadFailures`]), state back to EVICTED, waiters woken. The caller
    /// holds `pid`'s exclusive latch, taken from EVICTED for the load
    /// (`load_locked`'s frames).
    pub(crate) fn abandon_load(&self, pid: PageId, reserved: u64, error: &PageError) {
        let meta = self.meta(pid);
        if reserved > 0 {
            // SAFETY: this thread holds the frame's exclusive latch (taken
            // from EVICTED for the load), so no other guard exists; its own
            // slices are done with (`load_locked` drops the read buffers and
            // `publish_loaded` is past its header check before calling
            // this). Optimistic readers may overlap, as `release` allows:
            // the EVICTED unlock below gives them a new version to fail on.
            let _ = unsafe {
                self.pool.release(
                    pid as usize * PAGE_SIZE,
                    reserved as usize * PAGE_SIZE,
                    self.release,
                )
            };
            self.resident_pages.fetch_sub(reserved, Ordering::Relaxed);
        }
        self.failures.record(pid, meta, error);
        self.waits.finish(pid, meta);
        meta.state.unlock_exclusive_evicted();
    }

    /// Counts `pages` more resident pages, evicting first while that would
    /// exceed the budget.
    pub(crate) fn reserve(&self, pages: u64) -> Result<(), PageError> {
        let mut futile = 0;
        loop {
            if self.try_reserve(pages) {
                return Ok(());
            }
            if self.evict_batch()? == 0 {
                futile += 1;
                if futile > MAX_FUTILE_EVICTIONS {
                    return Err(PageError::PoolExhausted {
                        resident_pages: self.resident_pages.load(Ordering::Relaxed),
                    });
                }
                // Memory may be held by reads of this thread's loaders.
                crate::loader::blocked::reap_while_blocked();
                std::thread::yield_now();
            }
        }
    }

    /// Counts `pages` more resident pages if that stays within the budget.
    pub(crate) fn try_reserve(&self, pages: u64) -> bool {
        let mut used = self.resident_pages.load(Ordering::Relaxed);
        while used + pages <= self.budget_pages {
            match self.resident_pages.compare_exchange(
                used,
                used + pages,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(now) => used = now,
            }
        }
        false
    }
}
