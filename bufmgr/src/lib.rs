//! # rime-bufmgr: a vmcache-style buffer manager
//!
//! All pages live in one anonymous virtual-memory region: page `pid` is at
//! `base + pid * PAGE_SIZE` and at byte `pid * PAGE_SIZE` of the data file,
//! whether it is in memory or not. A page is "in the buffer pool" when its
//! virtual page is backed by physical memory; eviction gives the memory
//! back, a miss reads the page straight into its address. There is no
//! translation table and no bounce buffer (Leis et al., "Virtual-Memory
//! Assisted Buffer Management", SIGMOD 2023).
//!
//! ```text
//!   region (virtual, sized to the largest database)
//!   +--------+--------+--------+--------+--------+----- ~ -----+
//!   | pid 0  | pid 1  | pid 2  | pid 3  | pid 4  |             |
//!   |reserved|resident|evicted |resident| extent (2 pages)     |
//!   +--------+--------+--------+--------+--------+----- ~ -----+
//!   metadata (one 16-byte PageMeta per page, lazily backed)
//!   [state word | dirty, loading, frame length] ...
//! ```
//!
//! * [`state`]: the page-state word — latch, version and residency in one
//!   `AtomicU64` with named transitions.
//! * Guards ([`ExclusiveGuard`], [`SharedGuard`], [`OptimisticGuard`]):
//!   optimistic reads run in a [`Section`] and validate a version;
//!   restarts are values ([`Interrupt::Restart`]), never panics.
//! * Eviction: clock with second chance over the resident set, in batches;
//!   dirty frames written back with one io_uring submission; memory released
//!   in one `process_madvise(MADV_DONTNEED)` per batch where the kernel
//!   takes it (one TLB shootdown per batch), else with `MADV_GUARD_INSTALL`
//!   where the kernel has it (Linux ≥ 6.13) ([`ReleaseMode`]).
//! * The fault guard ([`fault`]): with guard markers, a reader that
//!   touches a page evicted under it takes SIGSEGV; the handler
//!   `siglongjmp`s back into the section and the read restarts (without
//!   them it reads zeros and fails validation). Other faults go to the
//!   previous handler.
//! * Transparent huge pages for the pool while the database fits in its
//!   budget, 4 KiB pages from the first eviction on ([`HugePages`]), the
//!   memory just above the high-water mark populated ahead of allocations
//!   by a thread of the pool meanwhile (`prefault`).
//! * Page I/O behind [`io::BlockFile`]: io_uring, `pread` fallback, and a
//!   fault-injecting test double.
//! * Every frame carries a 16-byte header ([`frame`]) with a checksum the
//!   pool stamps on write-back and checks on every read from disk.

pub mod error;
pub mod fault;
pub mod frame;
pub mod io;
pub mod region;
pub mod state;
#[doc(hidden)]
pub mod testing;

mod alloc;
mod evict;
mod guards;
mod huge;
mod loader;
mod manager;
mod meta;
mod prefault;
mod resident;
mod stats;
mod sync;
mod wait;

#[cfg(all(test, loom))]
mod loom_models;

pub use alloc::{AllocState, MAX_EXTENT_PAGES};
pub use error::{Interrupt, OpenError, PageError};
pub use frame::FRAME_HEADER_SIZE;
pub use guards::{ExclusiveGuard, Fetch, OnMiss, OptimisticGuard, PageStamp, Section, SharedGuard};
pub use huge::{HUGE_PAGE_BYTES, HugePages};
pub use loader::blocked::{BLOCKED_REAP_INTERVAL, reap_while_blocked};
pub use loader::{Loader, MAX_LOADER_READS, MAX_LOADER_WRITES};
pub use manager::{
    BufferManager, Config, DEFAULT_MAX_BYTES, DEFAULT_POOL_BYTES, EVICT_BATCH, MIN_POOL_PAGES,
    WriteBackHook, WriteBackRefused,
};
pub use region::{ReleaseMode, ReleasePolicy};
pub use stats::Stats;

/// A page's id: its index in the region and in the data file.
pub type PageId = u64;

/// The page size: 4 KiB, the x86-64 virtual-memory page and the NVMe block.
pub const PAGE_SIZE: usize = 4096;

/// Bytes of a single page available to the layer above.
pub const PAGE_PAYLOAD: usize = PAGE_SIZE - FRAME_HEADER_SIZE;

const _: () = assert!(
    PAGE_SIZE == io::BLOCK_SIZE,
    "a page is one direct-I/O block"
);
