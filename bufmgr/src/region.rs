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

    /// `madvise` on `[offset, offset + len)`, retried while the kernel asks
    /// to. Panics if the range is not inside the region.
    ///
    /// # Safety
    /// An advice that discards memory (`MADV_DONTNEED`, `MADV_GUARD_INSTALL`)
    /// needs [`release`](Self::release)'s contract from the caller.
    /// `MADV_GUARD_REMOVE` needs nothing.
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

/// Detects whether this kernel supports `MADV_GUARD_INSTALL`, by trying it on
/// a scratch page: Linux before 6.13 answers `EINVAL`.
pub fn detect_release_mode() -> ReleaseMode {
    let Ok(probe) = Region::reserve(PAGE_SIZE) else {
        return ReleaseMode::DontNeed;
    };
    // SAFETY: the probe region is ours alone and nothing references it.
    match unsafe { probe.advise(0, PAGE_SIZE, MADV_GUARD_INSTALL) } {
        Ok(()) => ReleaseMode::Guard,
        Err(_) => ReleaseMode::DontNeed,
    }
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
