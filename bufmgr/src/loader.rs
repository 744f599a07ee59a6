//! Loading many frames from one thread without waiting for each.
//!
//! A blocking miss ([`crate::BufferManager::optimistic`], the latches)
//! sleeps for its one read, so a thread keeps one read in flight. A
//! [`Loader`] keeps many: its owner runs optimistic sections with
//! [`crate::BufferManager::optimistic_nowait`], hands each frame they miss
//! to [`Loader::request`], and runs the sections again as [`Loader::poll`]
//! reports their frames in. The loader owns an io_uring of its own (one
//! issuer, no lock, one `io_uring_enter` per poll for all new reads).
//!
//! Life of a request for frame P:
//!
//! 1. **Resident**: nothing to read; reported done at the next poll.
//! 2. **Evicted**: the loader latches P from EVICTED with LOADING set
//!    (exactly as a blocking miss does, so every other thread that wants P
//!    now waits for this read instead of starting its own), reserves P's
//!    memory (evicting others if over budget), and queues a read straight
//!    into P's frame.
//! 3. **Being loaded** by another thread, or by this loader for an earlier
//!    request: the loader watches P's LOADING flag, noting the version P's
//!    word shows (LOCKED at `v`: it names that read); two requests for one
//!    frame share one read.
//!
//! [`Loader::poll`]:
//!
//! 4. Submits every queued read in one system call (and, if asked, waits
//!    for at least one completion).
//! 5. Reaps completions: a short transfer is resubmitted for the rest; a
//!    full frame is checked and published as a blocking miss publishes it
//!    (resident set, new version, waiters woken); a failed read or a bad
//!    frame records its error under `(P, v)`
//!    ([`crate::wait::LoadFailures`]), rolls P back to EVICTED (memory
//!    returned, waiters woken) and is reported for P; the next access reads
//!    it again.
//! 6. Reports watched frames whose LOADING flag has cleared: with the
//!    error recorded under `(P, v)` if their read failed, so every request
//!    and every blocking latch that waited for a failed read gets its
//!    error (and only those: other frames' requests are untouched).
//!
//! Dropping a loader waits for its reads: a frame is never left latched,
//! and the kernel never writes into memory that was given back.
//!
//! The one rule for its owner: **do not take a blocking latch on a frame
//! this thread's loader is reading** (requested, not yet reported). The
//! latch would sleep until the frame is in, and only this thread's poll
//! brings it in. Poll until the frame is reported first; optimistic
//! sections run with `optimistic_nowait` are safe (they report the frame
//! missing instead of waiting). This replaces the old prefetch thread:
//! requesting frames ahead of their use, and polling before using them,
//! is prefetching with no thread of its own.

use crate::error::PageError;
use crate::io::{IoError, IoOp};
use crate::manager::BufferManager;
use crate::state::{EVICTED, LOCKED};
use crate::stats::Counter;
use crate::{PAGE_SIZE, PageId};
use io_uring::{IoUring, opcode, types};
use std::os::fd::RawFd;
use std::sync::atomic::Ordering;

/// Reads one loader keeps in flight at most: what one thread needs to
/// reach a fast NVMe device's limit (Haas & Leis, VLDB 2023, keep ~47 I/Os
/// in flight per core; 256 leaves room for bursts) while its ring stays
/// small (256 SQ + 512 CQ entries, about 16 KiB). The pool's budget may
/// lower it (a quarter of the budget at most, so one loader cannot pin
/// the whole pool in reads).
pub const MAX_LOADER_READS: usize = 256;

/// Submission-queue entries of a loader's ring: room for every read it
/// may have in flight, so a push never finds the queue full.
const RING_ENTRIES: u32 = MAX_LOADER_READS.next_power_of_two() as u32;

/// Rings a thread keeps for its next loaders: setting one up (a system
/// call and three mappings) costs about as much as a few cached lookups,
/// which a batch of 16 would feel. At most this many per thread.
const SPARE_RINGS_PER_THREAD: usize = 2;

thread_local! {
    /// Idle rings of loaders this thread dropped, empty (nothing queued,
    /// nothing to reap): a ring is not tied to a file, only its entries are.
    static SPARE_RINGS: std::cell::RefCell<Vec<IoUring>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The share of the budget all loaders together may hold latched for
/// reads in flight: the rest stays evictable, so a loader that needs memory
/// for its next read always finds some, however many loaders there are.
const LOADER_SHARE_OF_BUDGET: u64 = 2;

/// One of this loader's reads.
struct Read {
    pid: PageId,
    pages: u32,
    /// Bytes already in the frame (a short transfer continues from here).
    done_bytes: usize,
}

/// A thread's reads in flight; see the module docs. Not `Sync`: one
/// thread submits and reaps (io_uring's single-issuer pattern).
pub struct Loader<'a> {
    bm: &'a BufferManager,
    /// `None`: the data file offers no descriptor for direct reads, or the
    /// kernel refused a ring; requests then read synchronously.
    ring: Option<(IoUring, RawFd)>,
    /// Reads by slot; a slot's index is the completion's `user_data`.
    slots: Vec<Option<Read>>,
    free_slots: Vec<usize>,
    /// Reads pushed to the submission queue but not yet submitted.
    queued: usize,
    /// Reads submitted and not yet complete.
    in_flight: usize,
    max_reads: usize,
    /// Frames another thread (or an earlier request) is loading, with the
    /// version of that load.
    watched: Vec<(PageId, u64)>,
    /// Outcomes not yet reported by `poll`.
    done: Vec<(PageId, Result<(), PageError>)>,
    /// Completions of one reap (kept to reuse its allocation).
    reaped: Vec<(usize, i32)>,
    /// Frames whose reads are queued but whose memory still has guard
    /// markers: made accessible together right before the submit, in one
    /// system call (a read into a guarded frame would fail).
    reclaims: Vec<(usize, usize)>,
}

impl<'a> Loader<'a> {
    /// A loader over `bm`'s data file. Without io_uring (or with a file
    /// that offers no direct descriptor) it still works, reading each
    /// request synchronously.
    pub fn new(bm: &'a BufferManager) -> Self {
        let max_reads = MAX_LOADER_READS.min((bm.budget_pages() / 4).max(1) as usize);
        let ring = bm.inner.file.direct_fd().and_then(|fd| {
            let spare = SPARE_RINGS.with(|r| r.borrow_mut().pop());
            match spare.map_or_else(|| IoUring::new(RING_ENTRIES), Ok) {
                Ok(ring) => Some((ring, fd)),
                Err(e) => {
                    tracing::debug!(error = %e, "no io_uring for a loader; it reads synchronously");
                    None
                }
            }
        });
        Loader {
            bm,
            ring,
            slots: Vec::new(),
            free_slots: Vec::new(),
            queued: 0,
            in_flight: 0,
            max_reads,
            watched: Vec::new(),
            done: Vec::new(),
            reaped: Vec::new(),
            reclaims: Vec::new(),
        }
    }

    /// Whether reads go through the loader's own io_uring (else each
    /// request reads synchronously; see [`Loader::new`]).
    pub fn uses_ring(&self) -> bool {
        self.ring.is_some()
    }

    /// Reads this loader has queued or in flight.
    pub fn reads(&self) -> usize {
        self.queued + self.in_flight
    }

    /// Requests outstanding: reads queued or in flight, frames watched, and
    /// outcomes not yet reported.
    pub fn pending(&self) -> usize {
        self.queued + self.in_flight + self.watched.len() + self.done.len()
    }

    /// Starts making the frame at `pid` (of `pages` pages) resident: steps
    /// 1–3 of the module docs. Its outcome comes from a later
    /// [`Loader::poll`]. May itself wait for earlier reads when the loader
    /// is full ([`MAX_LOADER_READS`]). Errors that concern only this frame
    /// (out of range, no memory) are reported by `poll` like a failed read.
    pub fn request(&mut self, pid: PageId, pages: u32) {
        let inner = &*self.bm.inner;
        if let Err(e) = inner.check_pid(pid, pages) {
            self.done.push((pid, Err(e)));
            return;
        }
        let meta = inner.meta(pid);
        loop {
            let seen = meta.state.load();
            match seen.state() {
                // 2. Evicted: this loader reads it.
                EVICTED if meta.state.try_lock_evicted(seen) => {
                    meta.set_loading(true);
                    inner.count(Counter::Miss, 1);
                    return self.start_read(pid, pages);
                }
                EVICTED => std::hint::spin_loop(),
                // 3. Someone is reading it: watch (the read's version
                //    names it when its outcome is looked up).
                LOCKED if meta.is_loading() => {
                    inner.count(Counter::Miss, 1);
                    self.watched.push((pid, seen.version()));
                    return;
                }
                // 1. In memory (possibly latched: the section will see).
                _ => {
                    self.done.push((pid, Ok(())));
                    return;
                }
            }
        }
    }

    /// Steps 4–6: submits what is queued, reaps what completed, and hands
    /// every outcome since the last poll to `on_done`. With `wait`, blocks
    /// until at least one outcome is there (unless nothing is pending).
    /// Returns the number of outcomes reported.
    pub fn poll(
        &mut self,
        wait: bool,
        mut on_done: impl FnMut(PageId, Result<(), PageError>),
    ) -> usize {
        loop {
            self.submit_and_reap(wait && self.done.is_empty());
            self.check_watched(wait && self.done.is_empty() && self.in_flight == 0);
            if !wait || !self.done.is_empty() || self.pending() == 0 {
                break;
            }
        }
        let n = self.done.len();
        for (pid, r) in self.done.drain(..) {
            on_done(pid, r);
        }
        n
    }

    /// Step 2's second half: memory for the frame, then its read.
    ///
    /// 1. Wait for room: this loader's reads under `max_reads`, and all
    ///    loaders' latched pages under their share of the budget. A loader
    ///    with reads of its own reaps them; one without yields to the
    ///    others (each of which reaps its own while it waits here).
    /// 2. Reserve the frame's memory (evicting if over budget).
    /// 3. Queue the read.
    fn start_read(&mut self, pid: PageId, pages: u32) {
        let inner = &*self.bm.inner;
        if self.ring.is_none() {
            let r = inner.load_locked(&[(pid, pages)]);
            self.done.push((pid, r));
            return;
        }
        // 1.
        let share = (inner.budget_pages / LOADER_SHARE_OF_BUDGET).max(1);
        loop {
            let all = inner.loader_pages.load(Ordering::Acquire);
            let mine = self.queued + self.in_flight;
            if mine < self.max_reads && (all + pages as u64 <= share || all == 0) {
                break;
            }
            if mine > 0 {
                self.submit_and_reap(true);
            } else {
                std::thread::yield_now();
            }
        }
        inner.loader_pages.fetch_add(pages as u64, Ordering::AcqRel);
        // 2. (Its guard markers go at the next submit, with the others'.)
        if let Err(e) = inner.reserve(pages as u64) {
            inner.abandon_load(pid, 0, &e);
            inner.loader_pages.fetch_sub(pages as u64, Ordering::AcqRel);
            self.done.push((pid, Err(e)));
            return;
        }
        self.reclaims
            .push((pid as usize * PAGE_SIZE, pages as usize * PAGE_SIZE));
        // 3.
        let slot = self.free_slots.pop().unwrap_or_else(|| {
            self.slots.push(None);
            self.slots.len() - 1
        });
        self.slots[slot] = Some(Read {
            pid,
            pages,
            done_bytes: 0,
        });
        self.push(slot);
    }

    /// Queues the (rest of the) read in `slot`.
    fn push(&mut self, slot: usize) {
        let Some((ring, fd)) = self.ring.as_mut() else {
            unreachable!("reads are queued only with a ring");
        };
        let read = self.slots[slot]
            .as_ref()
            .expect("a queued slot holds a read");
        let len = read.pages as usize * PAGE_SIZE - read.done_bytes;
        let offset = read.pid * PAGE_SIZE as u64 + read.done_bytes as u64;
        // SAFETY: `done_bytes < len(frame)`, so the pointer is inside the
        // frame, which is inside the region (check_pid).
        let dst = unsafe { self.bm.inner.frame_ptr(read.pid).add(read.done_bytes) };
        let entry = opcode::Read::new(types::Fd(*fd), dst, len as u32)
            .offset(offset)
            .build()
            .user_data(slot as u64);
        loop {
            // SAFETY: the kernel writes into the frame until the completion
            // arrives. The frame stays latched by this loader (from EVICTED,
            // LOADING set) until then: nobody else writes it, it is neither
            // evicted nor released, and the region outlives the loader
            // (which borrows the buffer manager); `Drop` waits for every
            // read. Optimistic readers may see the bytes change, as with a
            // blocking load, and fail validation.
            if unsafe { ring.submission().push(&entry) }.is_ok() {
                break;
            }
            // Not reached while `max_reads` fits the ring; should it be, the
            // queue goes to the kernel first.
            reclaim(self.bm, &mut self.reclaims);
            if ring.submit().is_ok() {
                self.in_flight += self.queued;
                self.queued = 0;
            }
        }
        self.queued += 1;
    }

    /// Steps 4 and 5.
    fn submit_and_reap(&mut self, wait: bool) {
        let Some((ring, _)) = self.ring.as_mut() else {
            return;
        };
        if self.queued + self.in_flight == 0 {
            return;
        }
        reclaim(self.bm, &mut self.reclaims);
        let want = usize::from(wait);
        match ring.submit_and_wait(want) {
            Ok(_) => {
                self.in_flight += self.queued;
                self.queued = 0;
            }
            // Interrupted or the kernel is short of memory: try again at
            // the next poll (the entries stay queued).
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EINTR | libc::EAGAIN | libc::EBUSY)
                ) => {}
            Err(e) => {
                tracing::warn!(error = %e, "io_uring submit failed; retrying");
            }
        }
        let mut reaped = std::mem::take(&mut self.reaped);
        reaped.extend(
            ring.completion()
                .map(|c| (c.user_data() as usize, c.result())),
        );
        for &(slot, result) in &reaped {
            self.in_flight -= 1;
            self.complete(slot, result);
        }
        reaped.clear();
        self.reaped = reaped;
    }

    /// Step 5 for one completion.
    fn complete(&mut self, slot: usize, result: i32) {
        let inner = &*self.bm.inner;
        let read = self.slots[slot]
            .as_mut()
            .expect("a completion names a live slot");
        let frame_bytes = read.pages as usize * PAGE_SIZE;
        let failure = match result {
            r if r == -libc::EINTR || r == -libc::EAGAIN => None,
            r if r < 0 => Some(IoError::os(
                IoOp::Read,
                read.pid * PAGE_SIZE as u64,
                std::io::Error::from_raw_os_error(-r),
            )),
            0 => Some(IoError::ShortRead {
                offset: read.pid * PAGE_SIZE as u64,
                wanted: frame_bytes,
                got: read.done_bytes,
            }),
            n => {
                read.done_bytes += n as usize;
                None
            }
        };
        let (pid, pages, done_bytes) = (read.pid, read.pages, read.done_bytes);
        if failure.is_none() && done_bytes < frame_bytes {
            self.push(slot);
            return;
        }
        // A fault-injecting file fails transfers it did not see here.
        let offset = pid * PAGE_SIZE as u64;
        let failure = failure.or_else(|| inner.file.direct_fault(IoOp::Read, offset, frame_bytes));
        self.slots[slot] = None;
        self.free_slots.push(slot);
        inner.loader_pages.fetch_sub(pages as u64, Ordering::AcqRel);
        let outcome = match failure {
            Some(source) => {
                let e = PageError::Io { pid, source };
                inner.abandon_load(pid, pages as u64, &e);
                Err(e)
            }
            None => inner.publish_loaded(pid, pages),
        };
        if outcome.is_ok() {
            inner.count(Counter::Prefetched, 1);
        }
        self.done.push((pid, outcome));
    }

    /// Step 6. With `wait`, sleeps until the first watched load is over.
    /// A load that failed reports its error to every request that watched
    /// it ([`crate::wait::LoadFailures`]).
    fn check_watched(&mut self, wait: bool) {
        let inner = &*self.bm.inner;
        if wait && let Some(&(pid, _)) = self.watched.first() {
            inner.waits.wait(pid, inner.meta(pid));
        }
        let done = &mut self.done;
        self.watched.retain(|&(pid, version)| {
            let meta = inner.meta(pid);
            let loading = meta.is_loading();
            if !loading {
                done.push((pid, inner.failures.outcome(pid, meta, version)));
            }
            loading
        });
    }
}

/// Makes the frames of queued reads accessible, all in one system call.
fn reclaim(bm: &BufferManager, ranges: &mut Vec<(usize, usize)>) {
    if ranges.is_empty() {
        return;
    }
    let inner = &*bm.inner;
    if let Err(e) = inner.pool.reclaim_many(ranges, inner.release) {
        tracing::warn!(error = %e, "removing guard markers failed; those reads will fail and retry");
    }
    ranges.clear();
}

impl Drop for Loader<'_> {
    /// Waits for every read: the frames they fill are latched by this
    /// loader, and the kernel must be done with their memory.
    fn drop(&mut self) {
        while self.queued + self.in_flight > 0 {
            self.submit_and_reap(true);
        }
        // Every entry submitted and reaped: the ring is idle, keep it.
        if let Some((ring, _)) = self.ring.take() {
            SPARE_RINGS.with(|r| {
                let mut spare = r.borrow_mut();
                if spare.len() < SPARE_RINGS_PER_THREAD {
                    spare.push(ring);
                }
            });
        }
    }
}
