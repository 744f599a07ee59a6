//! Eviction and write-back.
//!
//! Eviction keeps the resident pages under the budget: a clock with second
//! chance over the resident set, in batches, dirty frames of a batch written
//! back with one submission (vmcache's `evict()`).
//!
//! Write-back of an eviction round's frame happens under a **shared**
//! latch: readers keep reading, no writer can change the frame while its
//! bytes go to disk, and the dirty bit, set only under exclusive latches,
//! can be cleared safely. A failed write-back leaves every frame of the
//! batch dirty and resident. A flush (the checkpoint's) writes one-page
//! frames from copies instead, as a loader does (below): it evicts
//! nothing, and writers need not wait out its writes.
//!
//! A loader's eviction round writes its dirty victims differently: from a
//! copy taken under the shared latch, on the loader's ring, the frame
//! unlatched while the write is in flight, cleaned (and evicted) at the
//! completion only if its version shows it unchanged since the copy. The
//! frame's W flag keeps every other write of the page out meanwhile
//! ([`Inner::copy_for_write_back`], [`Inner::finish_write_back`]; the
//! steps are in `crate::loader`'s docs, W1–W4).

use crate::error::PageError;
use crate::io::WriteOp;
use crate::manager::{EVICT_BATCH, Inner};
use crate::state::{MARKED, UNLOCKED};
use crate::stats::Counter;
use crate::sync::Backoff;
use crate::{PAGE_SIZE, PageId, frame};
use std::sync::atomic::Ordering;

impl Inner {
    /// One eviction round. Returns the number of frames evicted (0 when
    /// every candidate was latched or re-used meanwhile).
    ///
    /// 0. Walk the clock: a MARKED clean frame is a candidate; a MARKED dirty
    ///    frame is latched shared for write-back (unless a loader's write of
    ///    it is in flight: W set); an UNLOCKED frame is marked (its second
    ///    chance: any access before the clock comes back unmarks it).
    /// 1. Write the dirty candidates back, one submission.
    /// 2. Latch the clean candidates exclusively if still MARKED and clean.
    /// 3. Upgrade the written ones to exclusive if we are their only
    ///    latch holder; otherwise let them go (clean now, resident still).
    /// 4. Release the memory of every latched frame.
    /// 5. Remove them from the resident set and unlock them as EVICTED,
    ///    which bumps their version: optimistic readers restart.
    pub(crate) fn evict_batch(&self) -> Result<usize, PageError> {
        // Step 0.
        let Victims { clean, dirty } = self.clock_victims();
        // Step 1.
        if let Err(e) = self.write_back_latched(&dirty) {
            dirty
                .iter()
                .for_each(|&pid| self.meta(pid).state.unlock_shared());
            return Err(e);
        }
        // Steps 2–5.
        Ok(self.evict_victims(clean, &dirty))
    }

    /// Step 0 of [`Inner::evict_batch`].
    pub(crate) fn clock_victims(&self) -> Victims {
        // The pool has outgrown its budget: no more huge pages (`crate::huge`).
        self.huge.end(&self.pool);
        let mut clean: Vec<PageId> = Vec::with_capacity(EVICT_BATCH);
        let mut dirty: Vec<PageId> = Vec::with_capacity(EVICT_BATCH);
        // Two full turns of the clock are enough to mark and then collect
        // every unlatched frame; past that, everything is latched.
        let max_slots = 2 * self.resident.slot_count() as u64;
        let mut scanned = 0;
        while clean.len() + dirty.len() < EVICT_BATCH && scanned < max_slots {
            self.resident.clock_batch(EVICT_BATCH as u64, |pid| {
                let meta = self.meta(pid);
                let seen = meta.state.load();
                match seen.state() {
                    MARKED if !meta.is_dirty() => clean.push(pid),
                    MARKED if meta.state.try_lock_shared(seen) => {
                        // W is set under a shared latch: checked under ours.
                        if meta.is_writing() {
                            meta.state.unlock_shared();
                        } else {
                            dirty.push(pid);
                        }
                    }
                    UNLOCKED => {
                        meta.state.try_mark(seen);
                    }
                    _ => {}
                }
            });
            scanned += EVICT_BATCH as u64;
        }
        Victims { clean, dirty }
    }

    /// Steps 2–5 of [`Inner::evict_batch`]: `clean` as step 0 found them,
    /// `written` latched shared by this thread and written back. Returns
    /// the number of frames evicted.
    pub(crate) fn evict_victims(&self, mut clean: Vec<PageId>, written: &[PageId]) -> usize {
        // Step 2.
        clean.retain(|&pid| {
            let meta = self.meta(pid);
            let seen = meta.state.load();
            if seen.state() != MARKED || !meta.state.try_lock_exclusive(seen) {
                return false;
            }
            // Re-dirtied and re-marked since step 0: not clean any more.
            if meta.is_dirty() {
                meta.state.unlock_exclusive_unchanged();
                return false;
            }
            true
        });
        // Step 3.
        for &pid in written {
            let meta = self.meta(pid);
            if meta.state.try_upgrade(meta.state.load()) {
                clean.push(pid);
            } else {
                meta.state.unlock_shared();
            }
        }
        // Steps 4 and 5.
        self.drop_frames(&clean);
        self.count(Counter::Eviction, clean.len() as u64);
        clean.len()
    }

    /// Step W2 of a loader's write-back (module docs of `crate::loader`)
    /// for a dirty victim this thread holds shared (from
    /// [`Inner::clock_victims`]), one page or an extent, `copy` as long as
    /// its frame: W is set (`None` if another loader set it first: its
    /// write is the one), the hook approves the frame's LSN, the frame is
    /// copied into `copy` and the latch released; the copy is then sealed. Returns the version the copy was taken at. The latch is
    /// released in every case; on error (the hook refused) W is clear again.
    pub(crate) fn copy_for_write_back(
        &self,
        pid: PageId,
        copy: &mut [u8],
    ) -> Result<Option<u64>, PageError> {
        let meta = self.meta(pid);
        debug_assert_eq!(copy.len(), meta.frame_pages().max(1) as usize * PAGE_SIZE);
        if !meta.try_begin_writing() {
            meta.state.unlock_shared();
            return Ok(None);
        }
        // SAFETY: this thread holds a shared latch, which keeps writers out
        // and the frame resident; `copy.len()` is the frame's length, inside
        // the region (it is in the resident set). Other shared holders only
        // read it, except a blocking write-back sealing the header in place
        // (checksum and length, which this copy recomputes).
        let frame = unsafe { std::slice::from_raw_parts(self.frame_ptr(pid), copy.len()) };
        if let Some(hook) = &self.hook
            && let Err(reason) = hook.before_write(pid, frame::lsn(frame))
        {
            // A free needs an exclusive latch: none came meanwhile.
            let freed = meta.end_writing();
            debug_assert!(!freed);
            self.waits.notify(pid);
            meta.state.unlock_shared();
            return Err(PageError::WriteBackRefused { pid, reason });
        }
        let version = meta.state.load().version();
        copy.copy_from_slice(frame);
        meta.state.unlock_shared();
        frame::seal(copy);
        Ok(Some(version))
    }

    /// Step W4 of a loader's write-back (module docs of `crate::loader`):
    /// the write of the copy of `pid`'s frame (of `pages` pages), taken at
    /// `version`, completed (`written`) or failed.
    ///
    /// * Written, and the page unchanged since (its word still shows
    ///   `version`): clean it under a latch taken without waiting. An
    ///   exclusive one (from UNLOCKED or MARKED) is kept, and `true`
    ///   returned: the caller evicts the frame ([`Inner::drop_frames`],
    ///   batched with others). If readers hold it shared, a shared one,
    ///   released at once (clean, resident). Changed, or latched
    ///   exclusively by someone now: it stays dirty, for a later
    ///   write-back.
    /// * Failed: nothing changes; the page stays dirty and resident.
    ///
    /// Then W is cleared (and if a free came meanwhile, the id goes back to
    /// the allocator now), and flushes waiting for W are woken.
    pub(crate) fn finish_write_back(
        &self,
        pid: PageId,
        pages: u32,
        version: u64,
        written: bool,
    ) -> bool {
        let meta = self.meta(pid);
        let latched = written && self.clean_written(pid, version);
        if meta.end_writing() {
            debug_assert!(!latched, "a freed page's version moved on");
            // W kept the frame's pages from reuse, so its size is the one
            // the copy was taken at.
            self.give_back(pid, pages);
        }
        self.waits.notify(pid);
        latched
    }

    /// [`Inner::finish_write_back`]'s cleaning: true if it left the frame
    /// latched exclusively (clean, for the caller to evict).
    fn clean_written(&self, pid: PageId, version: u64) -> bool {
        let meta = self.meta(pid);
        loop {
            let seen = meta.state.load();
            if seen.version() != version {
                return false;
            }
            match seen.state() {
                UNLOCKED | MARKED if meta.state.try_lock_exclusive(seen) => {
                    meta.set_dirty(false);
                    return true;
                }
                _ if seen.is_shared() && meta.state.try_lock_shared(seen) => {
                    meta.set_dirty(false);
                    meta.state.unlock_shared();
                    return false;
                }
                // The word moved between the load and the CAS: look again.
                UNLOCKED | MARKED => {}
                _ if seen.is_shared() => {}
                // LOCKED: a writer may be changing it.
                _ => return false,
            }
        }
    }

    /// Waits (holding no latch of this page, or an exclusive one) until no
    /// loader's write of `pid` is in flight. A write in flight is finished
    /// by its loader's owner at its next poll: see `Loader`'s one rule.
    pub(crate) fn wait_for_write_back(&self, pid: PageId) {
        let meta = self.meta(pid);
        if meta.is_writing() {
            self.waits.wait_while(pid, || meta.is_writing());
        }
    }

    /// Gives up the memory of exclusively latched, clean frames (in one
    /// system call where the kernel allows: `Region::release_many`) and
    /// unlocks them as EVICTED.
    pub(crate) fn drop_frames(&self, pids: &[PageId]) {
        let ranges: Vec<(usize, usize)> = pids
            .iter()
            .map(|&pid| {
                let pages = self.meta(pid).frame_pages().max(1) as usize;
                (pid as usize * PAGE_SIZE, pages * PAGE_SIZE)
            })
            .collect();
        // SAFETY: the caller holds every frame's exclusive latch (this
        // function's contract) and uses no slice of them any more (eviction
        // and `free_frame` latch without making one; `free` consumed its
        // guard), so no other guard's reference is live. Optimistic readers
        // may overlap, as `release` allows: the EVICTED unlocks below give
        // them a new version to fail on, or they fault and restart.
        if let Err(e) = unsafe { self.pool.release_many(&ranges, self.release) } {
            // The frames are clean, so their data is safe on disk either
            // way; a failed release only costs memory until they reload.
            tracing::warn!(error = %e, "releasing evicted frames' memory failed");
        }
        for (&pid, &(_, len)) in pids.iter().zip(&ranges) {
            let removed = self.resident.remove(pid);
            debug_assert!(removed, "evicted frame {pid} was not in the resident set");
            self.resident_pages
                .fetch_sub((len / PAGE_SIZE) as u64, Ordering::Relaxed);
            self.meta(pid).state.unlock_exclusive_evicted();
        }
    }

    /// Writes frames this thread holds latched (shared or exclusive) to the
    /// file in one submission, after the write-back hook approved each one.
    /// Clears their dirty bits only if everything succeeded.
    pub(crate) fn write_back_latched(&self, pids: &[PageId]) -> Result<(), PageError> {
        if pids.is_empty() {
            return Ok(());
        }
        let mut writes = Vec::with_capacity(pids.len());
        for &pid in pids {
            let pages = self.meta(pid).frame_pages().max(1) as usize;
            // SAFETY: the caller holds a latch that excludes writers; we are
            // the only thread writing the header fields (checksum, length),
            // which optimistic and shared readers do not interpret.
            let bytes =
                unsafe { std::slice::from_raw_parts_mut(self.frame_ptr(pid), pages * PAGE_SIZE) };
            if let Some(hook) = &self.hook {
                hook.before_write(pid, frame::lsn(bytes))
                    .map_err(|reason| PageError::WriteBackRefused { pid, reason })?;
            }
            frame::seal(bytes);
            writes.push(WriteOp {
                offset: pid * PAGE_SIZE as u64,
                data: bytes,
            });
        }
        self.file
            .write_batch(&writes)
            .map_err(|source| PageError::Io {
                pid: pids[0],
                source,
            })?;
        for &pid in pids {
            self.meta(pid).set_dirty(false);
        }
        self.count(Counter::WriteBack, pids.len() as u64);
        Ok(())
    }

    /// Writes every frame that is dirty now back to the file (not synced:
    /// the caller decides when to `sync_data`). Frames dirtied while this
    /// runs may or may not be included: this is a fuzzy flush, as a
    /// checkpoint wants. Returns the number of frames written.
    ///
    /// A one-page frame is written from a copy, as a loader writes its
    /// victims (W2–W4 in `crate::loader`): latched shared only for the
    /// copy (W set, the write-ahead hook asked), unlatched while the write
    /// is in flight, cleaned afterwards only if its version shows it
    /// unchanged. So a checkpoint stalls no writer for the length of a
    /// write (they spun on its latches for whole batches before). An
    /// extent (a large value's frame) is written in place, latched.
    pub(crate) fn flush_all(&self) -> Result<usize, PageError> {
        let _one_flusher = self.flush_lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut candidates = Vec::new();
        self.resident.clock_snapshot(|pid| {
            if self.meta(pid).is_dirty() {
                candidates.push(pid);
            }
        });
        // Never wait for a latch while holding others: a writer holding
        // page A exclusively may be waiting to upgrade page B that this
        // batch holds shared (a merge does), and waiting for A here would
        // deadlock the two. So a batch takes only the latches it gets at
        // once; the busy frames are then waited for one at a time, with
        // nothing else held.
        let mut copies = crate::io::AlignedBuf::zeroed(EVICT_BATCH * PAGE_SIZE);
        let mut written = 0;
        for chunk in candidates.chunks(EVICT_BATCH) {
            // Before any latch: the log forced once for the batch, not
            // under the latch of each frame changed since the last force
            // (a writer upgrading that page, often a parent every split
            // touches, would wait out a log sync).
            self.before_batch();
            let mut busy = Vec::new();
            let mut batch = CopyBatch::default();
            for &pid in chunk {
                match self.try_latch_shared_if_dirty(pid) {
                    Some(true) => match self.copy_or_keep(pid, &mut copies, &mut batch) {
                        Ok(true) => {}
                        Ok(false) => busy.push(pid),
                        Err(e) => {
                            self.abandon(&batch);
                            return Err(e);
                        }
                    },
                    Some(false) => {}
                    None => busy.push(pid),
                }
            }
            written += self.write_batch_of_copies(&copies, batch)?;
            for pid in busy {
                self.before_batch();
                // Until its latest image is written or on its way by a
                // write that completes before this returns.
                while self.latch_shared_if_dirty(pid) {
                    let mut one = CopyBatch::default();
                    if self.copy_or_keep(pid, &mut copies, &mut one)? {
                        written += self.write_batch_of_copies(&copies, one)?;
                        break;
                    }
                }
            }
        }
        Ok(written)
    }

    /// [`WriteBackHook::before_batch`], if there is a hook.
    fn before_batch(&self) {
        if let Some(hook) = &self.hook {
            hook.before_batch();
        }
    }

    /// For `flush_all`: `pid`, latched shared and dirty, joins `batch`:
    /// copied into the batch's next slot of `copies` and unlatched (W set),
    /// or, an extent, kept latched to be written in place. `false`: a
    /// loader set W first (between the caller's look and ours) and the
    /// latch is released; the caller waits for that write and looks again,
    /// since the flush may not end before it has completed (the checkpoint
    /// syncs the file next).
    fn copy_or_keep(
        &self,
        pid: PageId,
        copies: &mut crate::io::AlignedBuf,
        batch: &mut CopyBatch,
    ) -> Result<bool, PageError> {
        if self.meta(pid).frame_pages().max(1) > 1 {
            batch.in_place.push(pid);
            return Ok(true);
        }
        let slot = batch.copied.len();
        let dst = &mut copies[slot * PAGE_SIZE..(slot + 1) * PAGE_SIZE];
        // Releases the latch whatever the outcome.
        match self.copy_for_write_back(pid, dst)? {
            Some(version) => {
                batch.copied.push((pid, version));
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Writes a [`CopyBatch`] in one submission and finishes each copy's
    /// write (W4: cleaned if unchanged, W cleared, waiters woken); the
    /// extents are written in place and unlatched. A failure leaves every
    /// frame of the batch dirty.
    fn write_batch_of_copies(
        &self,
        copies: &crate::io::AlignedBuf,
        batch: CopyBatch,
    ) -> Result<usize, PageError> {
        let mut result = Ok(());
        if !batch.copied.is_empty() {
            let writes: Vec<WriteOp> = batch
                .copied
                .iter()
                .enumerate()
                .map(|(slot, &(pid, _))| WriteOp {
                    offset: pid * PAGE_SIZE as u64,
                    data: &copies[slot * PAGE_SIZE..(slot + 1) * PAGE_SIZE],
                })
                .collect();
            result = self
                .file
                .write_batch(&writes)
                .map_err(|source| PageError::Io {
                    pid: batch.copied[0].0,
                    source,
                });
            self.finish_copies(&batch.copied, result.is_ok());
            if result.is_ok() {
                self.count(Counter::WriteBack, batch.copied.len() as u64);
            }
        }
        let in_place = self.write_back_and_unlock(&batch.in_place);
        result?;
        Ok(batch.copied.len() + in_place?)
    }

    /// W4 for a batch's copies, `written` or not: each frame cleaned if it
    /// was written and is unchanged, W cleared, waiters woken.
    fn finish_copies(&self, copied: &[(PageId, u64)], written: bool) {
        for &(pid, version) in copied {
            if self.finish_write_back(pid, 1, version, written) {
                // Clean, and latched exclusively by the cleaning: a flush
                // leaves the frame resident.
                self.meta(pid).state.unlock_exclusive_unchanged();
            }
        }
    }

    /// A batch given up before its write (a refusal of the write-ahead
    /// hook): the copies' W cleared with their frames left dirty, the
    /// extents unlatched.
    fn abandon(&self, batch: &CopyBatch) {
        self.finish_copies(&batch.copied, false);
        for &pid in &batch.in_place {
            self.meta(pid).state.unlock_shared();
        }
    }

    /// Writes back frames this thread holds shared, then unlatches them.
    fn write_back_and_unlock(&self, latched: &[PageId]) -> Result<usize, PageError> {
        let result = self.write_back_latched(latched);
        latched
            .iter()
            .for_each(|&pid| self.meta(pid).state.unlock_shared());
        result.map(|()| latched.len())
    }

    /// One attempt at a shared latch on a dirty resident frame: `Some(true)`
    /// latched, `Some(false)` evicted or clean (nothing to write), `None`
    /// busy (latched by someone else; try again holding nothing).
    fn try_latch_shared_if_dirty(&self, pid: PageId) -> Option<bool> {
        let meta = self.meta(pid);
        let seen = meta.state.load();
        if !seen.is_readable() && seen.state() != crate::state::LOCKED {
            return Some(false); // evicted
        }
        if !meta.state.try_lock_shared(seen) {
            return None;
        }
        if meta.is_writing() {
            // A loader's write of an earlier copy is in flight: this write
            // must not overtake it. Busy.
            meta.state.unlock_shared();
            return None;
        }
        if meta.is_dirty() {
            return Some(true);
        }
        meta.state.unlock_shared();
        Some(false)
    }

    /// Waits for a shared latch on a resident frame with no loader's write
    /// in flight; false if the frame was evicted (hence written) or
    /// cleaned meanwhile.
    fn latch_shared_if_dirty(&self, pid: PageId) -> bool {
        let meta = self.meta(pid);
        let mut backoff = Backoff::default();
        loop {
            let seen = meta.state.load();
            if !seen.is_readable() && seen.state() != crate::state::LOCKED {
                return false; // evicted
            }
            if meta.state.try_lock_shared(seen) {
                if meta.is_writing() {
                    meta.state.unlock_shared();
                    self.wait_for_write_back(pid);
                    continue;
                }
                if meta.is_dirty() {
                    return true;
                }
                meta.state.unlock_shared();
                return false;
            }
            backoff.snooze();
        }
    }
}

/// One submission of [`Inner::flush_all`].
#[derive(Default)]
struct CopyBatch {
    /// One-page frames copied (W set, unlatched), with the version each
    /// copy was taken at; slot `i` of the copy buffer is the `i`th.
    copied: Vec<(PageId, u64)>,
    /// Extents latched shared, written in place.
    in_place: Vec<PageId>,
}

/// The candidates of one clock round (step 0 of [`Inner::evict_batch`]).
pub(crate) struct Victims {
    /// MARKED and clean when seen; not latched.
    pub(crate) clean: Vec<PageId>,
    /// MARKED and dirty, latched shared by this thread, with no loader's
    /// write in flight (W clear).
    pub(crate) dirty: Vec<PageId>,
}
