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
//!    memory (evicting others if over budget: steps W1–W4 below), and
//!    queues a read straight into P's frame.
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
//! Write-back of the victims its reservations evict, through the same
//! ring, without waiting for the writes (the frame's flag W: see
//! `crate::meta`):
//!
//! - W1. **Round**: the clock round of a blocking eviction
//!   ([`crate::evict`]): MARKED clean frames, and MARKED dirty frames
//!   latched shared (skipped if W is set: a write of theirs is in flight).
//!   Clean ones are evicted at once; dirty ones go on to W2 while the
//!   loader has room for their writes (the rest are let go, for a later
//!   round).
//! - W2. **Copy**: for a dirty victim, under its shared latch: set W
//!   (test-and-set: one loader wins), ask the write-ahead hook
//!   (`WriteBackHook::before_write` with the frame's LSN; a refusal clears
//!   W and fails the reservation), copy the frame (a page into one of the
//!   loader's [`MAX_LOADER_WRITES`] page-aligned buffers; an extent, a
//!   large value's frame, into a buffer of its own, within
//!   [`MAX_LOADER_EXTENT_COPY_BYTES`]), note its version, release the
//!   latch; seal the copy (checksum, length) and queue its write. The
//!   frame stays resident, dirty and unlatched: readers read it, writers
//!   change it (bumping its version) while the copy's write is in flight.
//! - W3. **Submit and reap** with the reads (steps 4 and 5): a short write
//!   is resubmitted for the rest.
//! - W4. **Complete**: if the write succeeded and P's word still shows the
//!   copy's version (nothing changed it since), latch it without waiting
//!   and clear its dirty bit: exclusively from UNLOCKED or MARKED, then
//!   evict it (memory back in one call per reap), or shared if readers hold
//!   it (it stays resident, clean). If it changed, or a writer holds it, it
//!   stays dirty. A failed write leaves it dirty and resident, and fails
//!   the reservation waiting for memory, if one is; otherwise it is logged
//!   (the next write-back of the page meets the disk again). Then clear W
//!   (give P's id to the allocator if P was freed meanwhile) and wake
//!   flushes waiting for W.
//!
//! A reservation that a round could not satisfy with clean victims waits
//! for its own transfers (a write's completion frees a frame) before the
//! next round: the submitter stalls only when every victim is dirty. While
//! W is set nothing else writes P: a blocking eviction and other loaders
//! skip it, a flush (`flush_dirty`) and `ExclusiveGuard::write_back` wait
//! for W to clear, and a free of P leaves the id to W4, so no newer image
//! of P (or of a page reusing its id) can be overtaken by the older copy.
//!
//! Dropping a loader waits for its reads and writes: a frame is never left
//! latched, the kernel never writes into memory that was given back, and
//! no W outlives its loader.
//!
//! The one rule for its owner: **do not wait on this thread's loader's
//! I/O** — no blocking latch on a frame it is reading (requested, not yet
//! reported), and no `flush_dirty` or `ExclusiveGuard::write_back` while it
//! has write-backs in flight ([`Loader::writes`]). Those wait for the
//! loader's completions, and only this thread's poll reaps them. Poll
//! until the frame is reported (until [`Loader::pending`] is 0) first;
//! optimistic sections run with `optimistic_nowait` are safe (they report
//! the frame missing instead of waiting, and also a frame latched
//! exclusively while its write-back is in flight, whose holder may be
//! waiting for this loader), and so are latches on any other frame (a
//! write-back holds no latch). This replaces the old prefetch
//! thread: requesting frames ahead of their use, and polling before using
//! them, is prefetching with no thread of its own.
//!
//! Other threads wait for a loader's reads too, and its owner may wait for
//! them (on a latch, or on a lock of a layer above): a cycle through two
//! threads that no lock order shows. So an owned loader ([`Loader::owned`])
//! registers with its thread's blocking waits, which reap its transfers
//! whenever the thread blocks ([`blocked`]); for such a loader, breaking
//! the rule above costs latency, not liveness.

use crate::alloc::MAX_EXTENT_PAGES;
use crate::error::PageError;
use crate::evict::Victims;
use crate::io::{AlignedBuf, IoError, IoOp};
use crate::manager::{BufferManager, EVICT_BATCH, Inner, MAX_FUTILE_EVICTIONS};
use crate::state::{EVICTED, LOCKED};
use crate::stats::Counter;
use crate::{PAGE_SIZE, PageId};
use io_uring::{IoUring, opcode, types};
use std::cell::RefCell;
use std::os::fd::RawFd;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// Reads one loader keeps in flight at most: what one thread needs to
/// reach a fast NVMe device's limit (Haas & Leis, VLDB 2023, keep ~47 I/Os
/// in flight per core; 256 leaves room for bursts) while its ring stays
/// small (with the write-backs', 512 SQ + 1024 CQ entries, about 48 KiB).
/// The pool's budget may lower it (a quarter of the budget at most, so one
/// loader cannot pin the whole pool in reads).
pub const MAX_LOADER_READS: usize = 256;

/// Write-backs one loader keeps in flight at most: one eviction batch's
/// worth (its copies take [`MAX_LOADER_WRITES`] pages of memory outside the
/// pool, 256 KiB). The pool's budget may lower it (a sixteenth at most).
pub const MAX_LOADER_WRITES: usize = EVICT_BATCH;

/// Bytes of extent copies one loader keeps in flight at most (beside its
/// page copies): write-backs of large values' frames go on the ring too,
/// but a copy of each is taken, and 16 extents of the largest size would
/// hold 512 MiB outside the pool. One extent is always allowed, however
/// large ([`MAX_EXTENT_PAGES`]), so a round never leaves a lone large
/// dirty victim unwritable.
pub const MAX_LOADER_EXTENT_COPY_BYTES: usize = 8 << 20;

/// Submission-queue entries of a loader's ring: room for every read and
/// write it may have in flight, so a push never finds the queue full.
const RING_ENTRIES: u32 = (MAX_LOADER_READS + MAX_LOADER_WRITES).next_power_of_two() as u32;

/// Rings a thread keeps for its next loaders: setting one up (a system
/// call and three mappings) costs about as much as a few cached lookups,
/// which a batch of 16 would feel. At most this many per thread.
const SPARE_RINGS_PER_THREAD: usize = 2;

thread_local! {
    /// Idle rings of loaders this thread dropped, empty (nothing queued,
    /// nothing to reap): a ring is not tied to a file, only its entries are.
    static SPARE_RINGS: std::cell::RefCell<Vec<IoUring>> = const { std::cell::RefCell::new(Vec::new()) };
    /// The copy buffer of the last loader this thread dropped that wrote
    /// back (no write in flight from it any more).
    static SPARE_COPIES: std::cell::RefCell<Option<AlignedBuf>> = const { std::cell::RefCell::new(None) };
}

/// The share of the budget all loaders together may hold latched for
/// reads in flight: the rest stays evictable, so a loader that needs memory
/// for its next read always finds some, however many loaders there are.
const LOADER_SHARE_OF_BUDGET: u64 = 2;

/// One of this loader's transfers.
enum Op {
    /// A read of a frame (latched from EVICTED, LOADING set) into place.
    Read {
        pid: PageId,
        pages: u32,
        /// Bytes already in the frame (a short transfer continues here).
        done_bytes: usize,
    },
    /// A write-back of a frame from its copy (W set).
    Write {
        pid: PageId,
        pages: u32,
        /// The frame's version when it was copied.
        version: u64,
        copy: CopyBuf,
        /// Bytes already written.
        done_bytes: usize,
    },
}

/// Where a write-back's copy is.
enum CopyBuf {
    /// A one-page frame's: this page of the loader's copy buffer.
    Page(usize),
    /// An extent's: its own buffer, counted in the loader's extent bytes.
    Extent(AlignedBuf),
}

impl CopyBuf {
    /// The copy's first byte.
    fn ptr(&mut self, copies: Option<&mut AlignedBuf>) -> *mut u8 {
        match self {
            CopyBuf::Page(page) => {
                let copies = copies.expect("a page copy lives in the copy buffer");
                // SAFETY: `page < MAX_LOADER_WRITES`, the buffer's length in
                // pages: inside the allocation.
                unsafe { copies.as_mut_ptr().add(*page * PAGE_SIZE) }
            }
            CopyBuf::Extent(buf) => buf.as_mut_ptr(),
        }
    }
}

/// A thread's reads in flight; see the module docs. Not `Sync`: one
/// thread submits and reaps (io_uring's single-issuer pattern).
pub struct Loader<'a> {
    bm: Manager<'a>,
    /// Shared with this thread's [`blocked`] registry (an owned loader's):
    /// a blocked wait of this thread borrows it to reap. A step of the
    /// loader's own holds the borrow, so a wait inside one leaves it be.
    io: Rc<RefCell<Transfers>>,
}

/// A loader's own state: its ring and the transfers on it. Kept apart from
/// the buffer manager it works for, so that its steps borrow the manager's
/// shared state (`&Inner`) beside `&mut self` without touching the
/// manager's reference count.
struct Transfers {
    /// `None`: the data file offers no descriptor for direct reads, or the
    /// kernel refused a ring; requests then read synchronously.
    ring: Option<(IoUring, RawFd)>,
    /// Transfers by slot; a slot's index is the completion's `user_data`.
    slots: Vec<Option<Op>>,
    free_slots: Vec<usize>,
    /// Transfers pushed to the submission queue but not yet submitted.
    queued: usize,
    /// Transfers submitted and not yet complete.
    in_flight: usize,
    /// Of the transfers queued or in flight, the write-backs.
    writes: usize,
    max_reads: usize,
    max_writes: usize,
    /// Page-aligned copies of the one-page frames being written back, one
    /// page each (allocated at the first write-back).
    copies: Option<AlignedBuf>,
    free_copies: Vec<usize>,
    /// Bytes of the extents' copies in flight (each in its own buffer):
    /// at most [`MAX_LOADER_EXTENT_COPY_BYTES`], or one extent.
    extent_copy_bytes: usize,
    /// The first write-back that failed while a reservation waited for
    /// memory: that reservation fails with it.
    write_error: Option<PageError>,
    /// Frames written back and latched for eviction by this reap: their
    /// memory goes back together at its end.
    written: Vec<PageId>,
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
        Self::over(Manager::Borrowed(bm))
    }

    fn over(bm: Manager<'a>) -> Self {
        let max_reads = MAX_LOADER_READS.min((bm.budget_pages() / 4).max(1) as usize);
        let max_writes = MAX_LOADER_WRITES.min((bm.budget_pages() / 16).max(1) as usize);
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
        let io = Transfers {
            ring,
            slots: Vec::new(),
            free_slots: Vec::new(),
            queued: 0,
            in_flight: 0,
            writes: 0,
            max_reads,
            max_writes,
            copies: None,
            free_copies: Vec::new(),
            extent_copy_bytes: 0,
            write_error: None,
            written: Vec::new(),
            watched: Vec::new(),
            done: Vec::new(),
            reaped: Vec::new(),
            reclaims: Vec::new(),
        };
        Loader {
            bm,
            io: Rc::new(RefCell::new(io)),
        }
    }

    /// Whether reads go through the loader's own io_uring (else each
    /// request reads synchronously; see [`Loader::new`]).
    pub fn uses_ring(&self) -> bool {
        self.io.borrow().ring.is_some()
    }

    /// Reads this loader has queued or in flight.
    pub fn reads(&self) -> usize {
        self.io.borrow().reads()
    }

    /// Write-backs this loader has queued or in flight (steps W1–W4 of the
    /// module docs).
    pub fn writes(&self) -> usize {
        self.io.borrow().writes
    }

    /// Work outstanding: reads and write-backs queued or in flight, frames
    /// watched, and outcomes not yet reported. Polling until it is 0 also
    /// finishes the loader's write-backs.
    pub fn pending(&self) -> usize {
        self.io.borrow().pending()
    }

    /// Starts making the frame at `pid` (of `pages` pages) resident: steps
    /// 1–3 of the module docs. Its outcome comes from a later
    /// [`Loader::poll`]. May itself wait for earlier reads when the loader
    /// is full ([`MAX_LOADER_READS`]), or for its write-backs when every
    /// eviction victim is dirty. Errors that concern only this frame (out
    /// of range, no memory, a failed or refused write-back of the victims
    /// its memory needed) are reported by `poll` like a failed read.
    pub fn request(&mut self, pid: PageId, pages: u32) {
        self.io.borrow_mut().request(&self.bm.inner, pid, pages);
    }

    /// Steps 4–6: submits what is queued, reaps what completed, and hands
    /// every outcome since the last poll to `on_done`. With `wait`, blocks
    /// until at least one outcome is there (unless nothing is pending).
    /// Returns the number of outcomes reported.
    pub fn poll(
        &mut self,
        wait: bool,
        on_done: impl FnMut(PageId, Result<(), PageError>),
    ) -> usize {
        self.io.borrow_mut().poll(&self.bm.inner, wait, on_done)
    }
}

impl Transfers {
    fn reads(&self) -> usize {
        self.queued + self.in_flight - self.writes
    }

    fn pending(&self) -> usize {
        self.queued + self.in_flight + self.watched.len() + self.done.len()
    }

    /// [`Loader::request`].
    fn request(&mut self, inner: &Inner, pid: PageId, pages: u32) {
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
                    return self.start_read(inner, pid, pages);
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

    /// [`Loader::poll`].
    fn poll(
        &mut self,
        inner: &Inner,
        wait: bool,
        mut on_done: impl FnMut(PageId, Result<(), PageError>),
    ) -> usize {
        loop {
            self.submit_and_reap(inner, wait && self.done.is_empty());
            self.check_watched(inner, wait && self.done.is_empty() && self.in_flight == 0);
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
    fn start_read(&mut self, inner: &Inner, pid: PageId, pages: u32) {
        if self.ring.is_none() {
            let r = inner.load_locked(&[(pid, pages)]);
            self.done.push((pid, r));
            return;
        }
        // 1.
        let share = (inner.budget_pages / LOADER_SHARE_OF_BUDGET).max(1);
        loop {
            let all = inner.loader_pages.load(Ordering::Acquire);
            let mine = self.reads();
            if mine < self.max_reads && (all + pages as u64 <= share || all == 0) {
                break;
            }
            if self.queued + self.in_flight > 0 {
                self.submit_and_reap(inner, true);
            } else {
                std::thread::yield_now();
            }
        }
        inner.loader_pages.fetch_add(pages as u64, Ordering::AcqRel);
        // 2. (Its guard markers go at the next submit, with the others'.)
        if let Err(e) = self.reserve(inner, pages) {
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
        self.slots[slot] = Some(Op::Read {
            pid,
            pages,
            done_bytes: 0,
        });
        self.push(inner, slot);
    }

    /// Step 2's reservation: `pages` more resident pages, evicting while
    /// over budget as a blocking miss does, except that dirty victims'
    /// writes go on this loader's ring (steps W1–W4 of the module docs)
    /// instead of stalling it. When a round frees nothing at once, it waits
    /// for its own transfers (a write's completion evicts its frame); a
    /// write-back that fails meanwhile fails the reservation, as a failed
    /// write-back fails a blocking miss's. (One that fails at a plain poll
    /// is only logged: its page stays dirty, and the next write-back of it
    /// meets the disk again.)
    fn reserve(&mut self, inner: &Inner, pages: u32) -> Result<(), PageError> {
        let mut futile = 0;
        self.write_error = None;
        loop {
            if inner.try_reserve(pages as u64) {
                return Ok(());
            }
            if let Some(e) = self.write_error.take() {
                return Err(e);
            }
            if self.evict_round(inner)? > 0 {
                continue;
            }
            if self.writes > 0 {
                self.submit_and_reap(inner, true);
                continue;
            }
            futile += 1;
            if futile > MAX_FUTILE_EVICTIONS {
                return Err(PageError::PoolExhausted {
                    resident_pages: inner.resident_pages.load(Ordering::Relaxed),
                });
            }
            std::thread::yield_now();
        }
    }

    /// Step W1 of the module docs: one clock round. Clean victims are
    /// evicted now; dirty victims are copied and their writes queued while
    /// this loader has room for them (writes, and bytes of extent copies);
    /// the rest wait for a later round. Returns the number of frames
    /// evicted now.
    fn evict_round(&mut self, inner: &Inner) -> Result<usize, PageError> {
        let Victims { clean, dirty } = inner.clock_victims();
        let mut refused = None;
        for pid in dirty {
            let frame_bytes = inner.meta(pid).frame_pages().max(1) as usize * PAGE_SIZE;
            if refused.is_some() || !self.has_room_to_write(frame_bytes) {
                inner.meta(pid).state.unlock_shared();
            } else if let Err(e) = self.start_write(inner, pid) {
                refused = Some(e);
            }
        }
        match refused {
            Some(e) => Err(e),
            None => Ok(inner.evict_victims(clean, &[])),
        }
    }

    /// Whether a write-back of a frame of `frame_bytes` fits now: under
    /// [`MAX_LOADER_WRITES`] (the budget may lower it) and, for an extent,
    /// under [`MAX_LOADER_EXTENT_COPY_BYTES`] of copies unless none is in
    /// flight.
    fn has_room_to_write(&self, frame_bytes: usize) -> bool {
        self.writes < self.max_writes
            && (frame_bytes == PAGE_SIZE
                || self.extent_copy_bytes == 0
                || self.extent_copy_bytes + frame_bytes <= MAX_LOADER_EXTENT_COPY_BYTES)
    }

    /// Step W2: copies the frame at `pid` (latched shared by this thread,
    /// dirty; one page into the copy buffer, an extent into a buffer of its
    /// own) and queues the copy's write. The latch is released either way.
    fn start_write(&mut self, inner: &Inner, pid: PageId) -> Result<(), PageError> {
        let pages = inner.meta(pid).frame_pages().max(1);
        debug_assert!(pages as usize <= MAX_EXTENT_PAGES);
        let mut copy = if pages == 1 {
            if self.copies.is_none() {
                self.free_copies = (0..MAX_LOADER_WRITES).rev().collect();
                self.copies = Some(
                    SPARE_COPIES
                        .with(|c| c.borrow_mut().take())
                        .unwrap_or_else(|| AlignedBuf::zeroed(MAX_LOADER_WRITES * PAGE_SIZE)),
                );
            }
            let page = self
                .free_copies
                .pop()
                .expect("fewer writes than copies (max_writes <= MAX_LOADER_WRITES)");
            CopyBuf::Page(page)
        } else {
            CopyBuf::Extent(AlignedBuf::zeroed(pages as usize * PAGE_SIZE))
        };
        let frame_bytes = pages as usize * PAGE_SIZE;
        // SAFETY: the copy is `frame_bytes` long (one page of the buffer,
        // or its own buffer) and free: no write in flight reads it (a page
        // of the buffer comes back only at its write's completion), and
        // this slice is the only reference to it until `push` hands its
        // pointer to the kernel.
        let dst =
            unsafe { std::slice::from_raw_parts_mut(copy.ptr(self.copies.as_mut()), frame_bytes) };
        let version = match inner.copy_for_write_back(pid, dst) {
            Ok(Some(version)) => version,
            Ok(None) => {
                self.free_copy(copy);
                return Ok(());
            }
            Err(e) => {
                self.free_copy(copy);
                return Err(e);
            }
        };
        if let CopyBuf::Extent(_) = copy {
            self.extent_copy_bytes += frame_bytes;
        }
        let slot = self.free_slots.pop().unwrap_or_else(|| {
            self.slots.push(None);
            self.slots.len() - 1
        });
        self.slots[slot] = Some(Op::Write {
            pid,
            pages,
            version,
            copy,
            done_bytes: 0,
        });
        self.writes += 1;
        self.push(inner, slot);
        Ok(())
    }

    /// Returns a copy that is no longer written (or was never queued).
    fn free_copy(&mut self, copy: CopyBuf) {
        if let CopyBuf::Page(page) = copy {
            self.free_copies.push(page);
        }
    }

    /// Queues the (rest of the) transfer in `slot`.
    fn push(&mut self, inner: &Inner, slot: usize) {
        let Some((ring, fd)) = self.ring.as_mut() else {
            unreachable!("transfers are queued only with a ring");
        };
        let entry = match self.slots[slot]
            .as_mut()
            .expect("a queued slot holds a transfer")
        {
            &mut Op::Read {
                pid,
                pages,
                done_bytes,
            } => {
                let len = pages as usize * PAGE_SIZE - done_bytes;
                let offset = pid * PAGE_SIZE as u64 + done_bytes as u64;
                // SAFETY: `done_bytes < len(frame)`, so the pointer is
                // inside the frame, which is inside the region (check_pid).
                let dst = unsafe { inner.frame_ptr(pid).add(done_bytes) };
                opcode::Read::new(types::Fd(*fd), dst, len as u32)
                    .offset(offset)
                    .build()
            }
            Op::Write {
                pid,
                pages,
                copy,
                done_bytes,
                ..
            } => {
                let len = *pages as usize * PAGE_SIZE - *done_bytes;
                let offset = *pid * PAGE_SIZE as u64 + *done_bytes as u64;
                // SAFETY: the copy is as long as the frame and
                // `done_bytes < len(frame)`: inside the copy.
                let src = unsafe { copy.ptr(self.copies.as_mut()).add(*done_bytes) };
                opcode::Write::new(types::Fd(*fd), src, len as u32)
                    .offset(offset)
                    .build()
            }
        }
        .user_data(slot as u64);
        loop {
            // SAFETY: for a read, the kernel writes into the frame until the
            // completion arrives. The frame stays latched by this loader
            // (from EVICTED, LOADING set) until then: nobody else writes it,
            // it is neither evicted nor released, and the region outlives
            // the loader (which borrows or shares the buffer manager). Optimistic
            // readers may see the bytes change, as with a blocking load, and
            // fail validation. For a write, the kernel reads the copy until
            // the completion: its page of the buffer is not reused before
            // (`complete_write` returns it), and the buffer lives as long as
            // the loader. `Drop` waits for every transfer.
            if unsafe { ring.submission().push(&entry) }.is_ok() {
                break;
            }
            // Not reached while `max_reads` fits the ring; should it be, the
            // queue goes to the kernel first.
            reclaim(inner, &mut self.reclaims);
            if ring.submit().is_ok() {
                self.in_flight += self.queued;
                self.queued = 0;
            }
        }
        self.queued += 1;
    }

    /// Steps 4 and 5.
    fn submit_and_reap(&mut self, inner: &Inner, wait: bool) {
        let Some((ring, _)) = self.ring.as_mut() else {
            return;
        };
        if self.queued + self.in_flight == 0 {
            return;
        }
        reclaim(inner, &mut self.reclaims);
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
            self.complete(inner, slot, result);
        }
        reaped.clear();
        self.reaped = reaped;
        if !self.written.is_empty() {
            inner.drop_frames(&self.written);
            inner.count(Counter::Eviction, self.written.len() as u64);
            self.written.clear();
        }
    }

    /// Step 5 (or W3) for one completion.
    fn complete(&mut self, inner: &Inner, slot: usize, result: i32) {
        match self.slots[slot] {
            Some(Op::Read { .. }) => self.complete_read(inner, slot, result),
            Some(Op::Write { .. }) => self.complete_write(inner, slot, result),
            None => unreachable!("a completion names a live slot"),
        }
    }

    /// The kernel's `result` for a transfer that had `done_bytes` of
    /// `len` done: `Ok(bytes now done)` (a short transfer is continued by
    /// the caller) or the failure.
    fn transferred(
        op: IoOp,
        offset: u64,
        len: usize,
        done_bytes: usize,
        result: i32,
    ) -> Result<usize, IoError> {
        match result {
            r if r == -libc::EINTR || r == -libc::EAGAIN => Ok(done_bytes),
            r if r < 0 => Err(IoError::os(
                op,
                offset,
                std::io::Error::from_raw_os_error(-r),
            )),
            0 if op == IoOp::Read => Err(IoError::ShortRead {
                offset,
                wanted: len,
                got: done_bytes,
            }),
            0 => Err(IoError::os(
                op,
                offset,
                std::io::Error::from(std::io::ErrorKind::WriteZero),
            )),
            n => Ok(done_bytes + n as usize),
        }
    }

    /// Step 5 for one read's completion.
    fn complete_read(&mut self, inner: &Inner, slot: usize, result: i32) {
        let Some(Op::Read {
            pid,
            pages,
            done_bytes,
        }) = self.slots[slot].as_mut()
        else {
            unreachable!("complete_read on a read");
        };
        let (pid, pages) = (*pid, *pages);
        let frame_bytes = pages as usize * PAGE_SIZE;
        let offset = pid * PAGE_SIZE as u64;
        let failure = match Self::transferred(IoOp::Read, offset, frame_bytes, *done_bytes, result)
        {
            Ok(n) if n < frame_bytes => {
                *done_bytes = n;
                self.push(inner, slot);
                return;
            }
            Ok(_) => None,
            Err(e) => Some(e),
        };
        // A fault-injecting file fails transfers it did not see here.
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

    /// Step W3 for one write-back's completion: the rest of a short write
    /// is resubmitted; a whole page ends the write-back
    /// (`Inner::finish_write_back`: clean and evict the frame if unchanged
    /// since its copy); a failure leaves the frame dirty and resident and
    /// is kept for the next reservation that needs memory.
    fn complete_write(&mut self, inner: &Inner, slot: usize, result: i32) {
        let Some(Op::Write {
            pid,
            pages,
            version,
            done_bytes,
            ..
        }) = self.slots[slot].as_mut()
        else {
            unreachable!("complete_write on a write");
        };
        let (pid, pages, version) = (*pid, *pages, *version);
        let frame_bytes = pages as usize * PAGE_SIZE;
        let offset = pid * PAGE_SIZE as u64;
        let failure = match Self::transferred(IoOp::Write, offset, frame_bytes, *done_bytes, result)
        {
            Ok(n) if n < frame_bytes => {
                *done_bytes = n;
                self.push(inner, slot);
                return;
            }
            Ok(_) => None,
            Err(e) => Some(e),
        };
        let failure = failure.or_else(|| inner.file.direct_fault(IoOp::Write, offset, frame_bytes));
        let Some(Op::Write { copy, .. }) = self.slots[slot].take() else {
            unreachable!("complete_write on a write");
        };
        self.free_slots.push(slot);
        if let CopyBuf::Extent(_) = copy {
            self.extent_copy_bytes -= frame_bytes;
        }
        self.free_copy(copy);
        self.writes -= 1;
        if inner.finish_write_back(pid, pages, version, failure.is_none()) {
            self.written.push(pid);
        }
        match failure {
            None => inner.count(Counter::WriteBack, 1),
            Some(source) => {
                tracing::warn!(pid, error = %source, "a loader's write-back failed; the page stays dirty");
                self.write_error
                    .get_or_insert(PageError::Io { pid, source });
            }
        }
    }

    /// Step 6. With `wait`, sleeps until the first watched load is over.
    /// A load that failed reports its error to every request that watched
    /// it ([`crate::wait::LoadFailures`]).
    fn check_watched(&mut self, inner: &Inner, wait: bool) {
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

impl Loader<'static> {
    /// A loader that holds its own reference to the buffer manager, for an
    /// owner that keeps it across many operations of its thread (an
    /// executor running many tasks) rather than one scope. Same behaviour
    /// as [`Loader::new`].
    ///
    /// It registers with its thread's blocked waits ([`blocked`]): while
    /// it has transfers in flight, every wait of this thread for a latch,
    /// a frame or a lock of a layer above reaps them.
    pub fn owned(bm: &Arc<BufferManager>) -> Self {
        let loader = Self::over(Manager::Shared(bm.clone()));
        blocked::register(&loader.io, bm);
        loader
    }
}

/// The buffer manager a loader works for: borrowed for a scope, or shared.
enum Manager<'a> {
    Borrowed(&'a BufferManager),
    Shared(Arc<BufferManager>),
}

impl std::ops::Deref for Manager<'_> {
    type Target = BufferManager;

    fn deref(&self) -> &BufferManager {
        match self {
            Manager::Borrowed(bm) => bm,
            Manager::Shared(bm) => bm,
        }
    }
}

/// Makes the frames of queued reads accessible, all in one system call.
fn reclaim(inner: &Inner, ranges: &mut Vec<(usize, usize)>) {
    if ranges.is_empty() {
        return;
    }
    if let Err(e) = inner.pool.reclaim_many(ranges, inner.release) {
        tracing::warn!(error = %e, "removing guard markers failed; those reads will fail and retry");
    }
    ranges.clear();
}

impl Drop for Loader<'_> {
    /// Waits for every read: the frames they fill are latched by this
    /// loader, and the kernel must be done with their memory.
    fn drop(&mut self) {
        let io = &mut *self.io.borrow_mut();
        while io.queued + io.in_flight > 0 {
            io.submit_and_reap(&self.bm.inner, true);
        }
        // Every entry submitted and reaped: the ring is idle, keep it (and
        // the copy buffer, which no write reads any more).
        if let Some(copies) = io.copies.take() {
            SPARE_COPIES.with(|c| *c.borrow_mut() = Some(copies));
        }
        if let Some((ring, _)) = io.ring.take() {
            SPARE_RINGS.with(|r| {
                let mut spare = r.borrow_mut();
                if spare.len() < SPARE_RINGS_PER_THREAD {
                    spare.push(ring);
                }
            });
        }
    }
}

pub(crate) mod blocked;
#[cfg(all(test, not(loom)))]
mod tests;
