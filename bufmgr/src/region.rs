//! Anonymous virtual-memory regions: the page pool and the per-page metadata.
//!
//! Both are `mmap(PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS|MAP_NORESERVE)`:
//! address space only, backed by physical memory page by page as it is
//! touched. The pool is sized to the largest database the process may open;
//! the buffer manager's budget, not the region's size, bounds what is resident.

use crate::PAGE_SIZE;

/// `madvise` advice added in Linux 6.13: install guard markers on a range.
/// Frees the backing memory and makes every later access fault (SIGSEGV)
/// without splitting the VMA. Not in the `libc` crate yet.
const MADV_GUARD_INSTALL: libc::c_int = 102;
/// `madvise` advice added in Linux 6.13: remove guard markers from a range;
/// the range then reads as zeros until written.
const MADV_GUARD_REMOVE: libc::c_int = 103;
/// `madvise` advice added in Linux 5.14: fault a range in writable, as a
/// write to each page would, without writing it.
const MADV_POPULATE_WRITE: libc::c_int = 23;

/// Ranges one `process_madvise` call takes (the kernel's `UIO_MAXIOV`).
pub const MAX_IOVECS: usize = 1024;

/// A pidfd for this process (for `process_madvise`), opened once; `None`
/// where the kernel has no `pidfd_open` (before 5.3).
fn own_pidfd() -> Option<libc::c_int> {
    static PIDFD: std::sync::OnceLock<Option<libc::c_int>> = std::sync::OnceLock::new();
    *PIDFD.get_or_init(|| {
        // SAFETY: pidfd_open takes a pid and flags and returns a new fd (or
        // -1); it touches no memory of ours. The fd lives as long as the
        // process: one, deliberately never closed.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, libc::getpid(), 0) };
        (fd >= 0).then_some(fd as libc::c_int)
    })
}

/// How evicted pages give their memory back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReleaseMode {
    /// `MADV_GUARD_INSTALL`: freed, and a stale optimistic reader faults and
    /// restarts through the fault guard (exmap's semantics on a stock kernel).
    Guard,
    /// `MADV_DONTNEED` (kernels before 6.13): freed; a stale optimistic reader
    /// sees zeros and fails validation instead of faulting.
    DontNeed,
}

/// One anonymous mapping, unmapped on drop.
pub struct Region {
    base: *mut u8,
    len: usize,
}

// SAFETY: Region is an address range; concurrent access to its bytes is
// governed by the page latches of the buffer manager, not by Region.
unsafe impl Send for Region {}
// SAFETY: as above.
unsafe impl Sync for Region {}

impl Region {
    /// Reserves `len` bytes of address space (rounded up to pages).
    pub fn reserve(len: usize) -> std::io::Result<Region> {
        let len = len.div_ceil(PAGE_SIZE).max(1) * PAGE_SIZE;
        // SAFETY: a fresh anonymous mapping at an address of the kernel's
        // choosing aliases no Rust object.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Region {
            base: ptr.cast(),
            len,
        })
    }

    pub fn base(&self) -> *mut u8 {
        self.base
    }

    /// The region's length in bytes (never zero).
    pub fn size_bytes(&self) -> usize {
        self.len
    }

    pub fn contains(&self, addr: usize) -> bool {
        addr >= self.base as usize && addr < self.base as usize + self.len
    }

    /// Frees the physical memory behind `[offset, offset + len)`.
    ///
    /// Afterwards the range reads as zeros (`DontNeed`) or faults on every
    /// access until [`reclaim`](Self::reclaim) (`Guard`).
    ///
    /// # Safety
    /// The caller holds the range exclusively (in the buffer manager: the
    /// exclusive latch of every page in it). No latched guard's reference
    /// (`&`/`&mut`) into the range is live during the call, and none is made
    /// afterwards before the range is reclaimed and written anew. The only
    /// readers that may overlap are optimistic ones in a guarded section
    /// ([`crate::fault::run_guarded`]), which treat what they read as a
    /// guess: after `DontNeed` they read zeros and fail validation, after
    /// `Guard` they fault and restart.
    ///
    /// Panics if the range is not inside the region.
    pub unsafe fn release(
        &self,
        offset: usize,
        len: usize,
        mode: ReleaseMode,
    ) -> std::io::Result<()> {
        let advice = match mode {
            ReleaseMode::Guard => MADV_GUARD_INSTALL,
            ReleaseMode::DontNeed => libc::MADV_DONTNEED,
        };
        // SAFETY: both advices discard memory; our caller holds the range
        // exclusively, which is `advise`'s contract for them.
        unsafe { self.advise(offset, len, advice) }
    }

    /// [`release`](Self::release) of many ranges, in as few system calls as
    /// the kernel allows: one `process_madvise` on this process for up to
    /// [`MAX_IOVECS`] ranges. For `DontNeed` the kernel then sends one round
    /// of TLB-shootdown interrupts for the call instead of one per range;
    /// guard markers get one per range however they are asked for
    /// ([`ReleaseMode::cheapest`]). Kernels without `process_madvise` for
    /// this advice get one `madvise` each.
    ///
    /// # Safety
    /// [`release`](Self::release)'s contract, for every range.
    pub unsafe fn release_many(
        &self,
        ranges: &[(usize, usize)],
        mode: ReleaseMode,
    ) -> std::io::Result<()> {
        let advice = match mode {
            ReleaseMode::Guard => MADV_GUARD_INSTALL,
            ReleaseMode::DontNeed => libc::MADV_DONTNEED,
        };
        for chunk in ranges.chunks(MAX_IOVECS) {
            // SAFETY: the caller holds every range exclusively (this
            // function's contract), which is what both advices need.
            if unsafe { self.process_madvise(chunk, advice) }.is_ok() {
                continue;
            }
            for &(offset, len) in chunk {
                // SAFETY: as above, range by range.
                unsafe { self.release(offset, len, mode) }?;
            }
        }
        Ok(())
    }

    /// [`reclaim`](Self::reclaim) of many ranges, in one `process_madvise`
    /// per [`MAX_IOVECS`] where the kernel allows.
    pub fn reclaim_many(
        &self,
        ranges: &[(usize, usize)],
        mode: ReleaseMode,
    ) -> std::io::Result<()> {
        if mode == ReleaseMode::DontNeed {
            return Ok(());
        }
        for chunk in ranges.chunks(MAX_IOVECS) {
            // SAFETY: MADV_GUARD_REMOVE only removes guard markers; it
            // discards no memory, so it needs nothing of the caller.
            if unsafe { self.process_madvise(chunk, MADV_GUARD_REMOVE) }.is_ok() {
                continue;
            }
            for &(offset, len) in chunk {
                self.reclaim(offset, len, mode)?;
            }
        }
        Ok(())
    }

    /// One `process_madvise(2)` on this process for `ranges`, continued
    /// after a partial advice. `Err` when the kernel refuses it (no such
    /// call, or not for this advice): the caller falls back to `madvise`.
    ///
    /// # Safety
    /// [`advise`](Self::advise)'s contract for `advice`, for every range.
    unsafe fn process_madvise(
        &self,
        ranges: &[(usize, usize)],
        advice: libc::c_int,
    ) -> std::io::Result<()> {
        let Some(pidfd) = own_pidfd() else {
            return Err(std::io::Error::from_raw_os_error(libc::ENOSYS));
        };
        let mut iovecs: Vec<libc::iovec> = Vec::with_capacity(ranges.len());
        for &(offset, len) in ranges {
            assert!(
                offset.checked_add(len).is_some_and(|end| end <= self.len),
                "madvise outside the region"
            );
            iovecs.push(libc::iovec {
                // SAFETY: offset + len lies inside this mapping (asserted).
                iov_base: unsafe { self.base.add(offset) }.cast(),
                iov_len: len,
            });
        }
        let mut done = 0;
        while done < iovecs.len() {
            let rest = &mut iovecs[done..];
            // SAFETY: every iovec names memory inside this mapping; what the
            // advice does to it is our caller's contract.
            let r = unsafe {
                libc::syscall(
                    libc::SYS_process_madvise,
                    pidfd,
                    rest.as_ptr(),
                    rest.len(),
                    advice,
                    0,
                )
            };
            if r < 0 {
                let e = std::io::Error::last_os_error();
                if matches!(e.raw_os_error(), Some(libc::EINTR | libc::EAGAIN)) {
                    continue;
                }
                return Err(e);
            }
            // Skip the ranges the call covered; a partly covered one keeps
            // its remainder.
            let mut advised = r as usize;
            while done < iovecs.len() && advised >= iovecs[done].iov_len {
                advised -= iovecs[done].iov_len;
                done += 1;
            }
            if advised > 0 {
                let v = &mut iovecs[done];
                // SAFETY: advised < iov_len, so the pointer stays inside.
                v.iov_base = unsafe { v.iov_base.cast::<u8>().add(advised) }.cast();
                v.iov_len -= advised;
            }
        }
        Ok(())
    }

    /// Makes `[offset, offset + len)` accessible again (zeros until written
    /// where it was released; pages that were not released keep their
    /// contents). Panics if the range is not inside the region.
    pub fn reclaim(&self, offset: usize, len: usize, mode: ReleaseMode) -> std::io::Result<()> {
        match mode {
            // SAFETY: MADV_GUARD_REMOVE only removes guard markers; it
            // discards no memory and leaves populated pages as they are.
            ReleaseMode::Guard => unsafe { self.advise(offset, len, MADV_GUARD_REMOVE) },
            ReleaseMode::DontNeed => Ok(()),
        }
    }

    /// Asks for transparent huge pages on `[offset, offset + len)`
    /// (`MADV_HUGEPAGE`), or stops asking (`MADV_NOHUGEPAGE`: no new huge
    /// page is faulted in there and khugepaged stops collapsing it; huge
    /// pages already there stay until a release splits them). Contents are
    /// unchanged either way. Panics if the range is not inside the region.
    pub fn advise_huge(&self, offset: usize, len: usize, huge: bool) -> std::io::Result<()> {
        let advice = if huge {
            libc::MADV_HUGEPAGE
        } else {
            libc::MADV_NOHUGEPAGE
        };
        // SAFETY: neither advice discards memory or changes what the range
        // reads; they only choose the size of the pages behind it.
        unsafe { self.advise(offset, len, advice) }
    }

    /// Faults in `[offset, offset + len)` writable without writing it
    /// (`MADV_POPULATE_WRITE`, Linux 5.14; refused before). Panics if the
    /// range is not inside the region.
    pub fn populate(&self, offset: usize, len: usize) -> std::io::Result<()> {
        // SAFETY: the advice changes no byte of the range (a present page
        // stays as it is, a missing one reads zeros as it did), so no
        // reader or writer of the pool can tell it happened.
        unsafe { self.advise(offset, len, MADV_POPULATE_WRITE) }
    }

    /// `madvise` on `[offset, offset + len)`, retried while the kernel asks
    /// to. Panics if the range is not inside the region.
    ///
    /// # Safety
    /// An advice that discards memory (`MADV_DONTNEED`, `MADV_GUARD_INSTALL`)
    /// needs [`release`](Self::release)'s contract from the caller.
    /// `MADV_GUARD_REMOVE`, `MADV_HUGEPAGE` and `MADV_NOHUGEPAGE` need
    /// nothing.
    unsafe fn advise(&self, offset: usize, len: usize, advice: libc::c_int) -> std::io::Result<()> {
        // Checked: a wrapped `offset + len` must not pass for a range inside.
        assert!(
            offset.checked_add(len).is_some_and(|end| end <= self.len),
            "madvise outside the region"
        );
        loop {
            // SAFETY: the range lies inside this mapping (asserted above), so
            // `add` stays in bounds and madvise touches no other mapping.
            // What the advice does to the range's memory is our caller's
            // contract (see `# Safety`).
            let rc = unsafe { libc::madvise(self.base.add(offset).cast(), len, advice) };
            if rc == 0 {
                return Ok(());
            }
            let err = std::io::Error::last_os_error();
            // Guard installation can be interrupted by a racing fault-in; the
            // kernel asks to retry.
            if err.raw_os_error() != Some(libc::EAGAIN) && err.raw_os_error() != Some(libc::EINTR) {
                return Err(err);
            }
        }
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: base/len are the mapping created in `reserve`, unmapped once.
        unsafe { libc::munmap(self.base.cast(), self.len) };
    }
}

/// Which [`ReleaseMode`] a pool asks for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ReleasePolicy {
    /// The cheapest way this kernel offers ([`ReleaseMode::cheapest`]).
    #[default]
    Cheapest,
    /// Guard markers where the kernel has them, so that a stale reader
    /// faults (tests of the fault guard; debugging); else `DontNeed`.
    Guard,
    /// `MADV_DONTNEED` always (tests of the path older kernels take).
    DontNeed,
}

impl ReleaseMode {
    /// The mode `policy` gets on this kernel.
    pub fn for_policy(policy: ReleasePolicy) -> ReleaseMode {
        match policy {
            ReleasePolicy::Cheapest => Self::cheapest(),
            ReleasePolicy::Guard if has_guard_markers() => ReleaseMode::Guard,
            ReleasePolicy::Guard | ReleasePolicy::DontNeed => ReleaseMode::DontNeed,
        }
    }

    /// The cheapest release of an eviction batch on this kernel.
    ///
    /// What a release costs is its TLB shootdown: an inter-processor
    /// interrupt to every other core running the process, ~15 µs on this
    /// project's 2-core VM while the other core is busy. Measured there
    /// (Linux 6.18, 4 KiB ranges scattered over a region, a second thread
    /// reading the region on the other core): `MADV_DONTNEED` through one
    /// `process_madvise` of 1024 ranges, 0.2 µs a range (the kernel
    /// batches one shootdown for the call); `MADV_GUARD_INSTALL` the same
    /// way, 13–16 µs a range (it zaps, and shoots down, range by range);
    /// one `madvise` per range, ~15 µs either way. So `DontNeed` wherever
    /// `process_madvise` takes it: never worse, since a kernel that does not
    /// batch it costs one shootdown per range, as guard markers always do.
    /// Else guard markers where the kernel has them, for their fault on a
    /// stale read; else `DontNeed`.
    pub fn cheapest() -> ReleaseMode {
        if has_batched_dontneed() {
            ReleaseMode::DontNeed
        } else if has_guard_markers() {
            ReleaseMode::Guard
        } else {
            ReleaseMode::DontNeed
        }
    }
}

/// Whether this kernel has `MADV_GUARD_INSTALL` (Linux 6.13), tried once on
/// a scratch page: older kernels answer `EINVAL`.
fn has_guard_markers() -> bool {
    static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *HAS.get_or_init(|| {
        let Ok(probe) = Region::reserve(PAGE_SIZE) else {
            return false;
        };
        // SAFETY: the probe region is ours alone and nothing references it.
        unsafe { probe.advise(0, PAGE_SIZE, MADV_GUARD_INSTALL) }.is_ok()
    })
}

/// Whether `process_madvise` takes `MADV_DONTNEED` for this process, tried
/// once on a scratch page (it took only `MADV_COLD` and `MADV_PAGEOUT` at
/// first, and older kernels lack the call).
fn has_batched_dontneed() -> bool {
    static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *HAS.get_or_init(|| {
        let Ok(probe) = Region::reserve(PAGE_SIZE) else {
            return false;
        };
        // SAFETY: the probe region is ours alone and nothing references
        // it; the write backs its page so that the advice has work to do.
        unsafe { probe.base().write_volatile(1) };
        // SAFETY: as above; discarding the probe's page is harmless.
        unsafe { probe.process_madvise(&[(0, PAGE_SIZE)], libc::MADV_DONTNEED) }.is_ok()
    })
}

/// Reads one byte at `addr` through a volatile load (tests and the fault
/// guard's own checks touch pool memory this way so the access is not
/// optimised out).
///
/// # Safety
/// `addr` must lie inside a live mapping (it may be guarded: then the read
/// faults, which is the point in a guarded section).
pub unsafe fn touch(addr: *const u8) -> u8 {
    // SAFETY: the caller promises addr is inside a live mapping.
    unsafe { std::ptr::read_volatile(addr) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fill(r: &Region, page: usize, byte: u8) {
        // SAFETY: the test owns the region and the page lies inside it.
        unsafe { std::ptr::write_bytes(r.base().add(page * PAGE_SIZE), byte, PAGE_SIZE) };
    }

    fn first_byte(r: &Region, page: usize) -> u8 {
        // SAFETY: as above; DontNeed leaves the range readable.
        unsafe { touch(r.base().add(page * PAGE_SIZE)) }
    }

    #[test]
    fn a_batched_dontneed_release_zeroes_its_ranges_and_only_those() {
        let r = Region::reserve(8 * PAGE_SIZE).unwrap();
        for page in 0..8 {
            fill(&r, page, 0x5a);
        }
        let ranges: Vec<(usize, usize)> = [1, 3, 4, 7]
            .iter()
            .map(|&p| (p * PAGE_SIZE, PAGE_SIZE))
            .collect();
        // SAFETY: the test holds the region and no reference into it.
        unsafe { r.release_many(&ranges, ReleaseMode::DontNeed) }.unwrap();
        let now: Vec<u8> = (0..8).map(|p| first_byte(&r, p)).collect();
        assert_eq!(now, [0x5a, 0, 0x5a, 0, 0, 0x5a, 0x5a, 0]);
    }

    #[test]
    fn each_policy_gets_the_mode_it_names_where_the_kernel_has_it() {
        assert_eq!(
            ReleaseMode::for_policy(ReleasePolicy::DontNeed),
            ReleaseMode::DontNeed
        );
        let guard = ReleaseMode::for_policy(ReleasePolicy::Guard);
        assert_eq!(guard == ReleaseMode::Guard, has_guard_markers());
        // Where one system call releases a batch, the default takes it.
        let cheapest = ReleaseMode::for_policy(ReleasePolicy::Cheapest);
        if has_batched_dontneed() {
            assert_eq!(cheapest, ReleaseMode::DontNeed);
        } else {
            assert_eq!(cheapest, guard);
        }
    }
}
