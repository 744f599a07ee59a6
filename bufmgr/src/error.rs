//! Errors, typed per operation and `#[non_exhaustive]` so variants can be
//! added without breaking callers.

use crate::PageId;
use crate::io::IoError;

/// Opening a buffer manager.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    #[error("pool budget of {pool_bytes} bytes is below the minimum of {min_bytes} bytes")]
    BudgetTooSmall { pool_bytes: usize, min_bytes: usize },
    #[error("pool budget of {pool_bytes} bytes exceeds the virtual region of {max_bytes} bytes")]
    BudgetAboveRegion { pool_bytes: usize, max_bytes: u64 },
    #[error("the data file holds {file_pages} pages but the region allows only {max_pages}")]
    FileLargerThanRegion { file_pages: u64, max_pages: u64 },
    #[error("reserving {bytes} bytes of address space failed: {source}")]
    Reserve {
        bytes: usize,
        #[source]
        source: std::io::Error,
    },
    #[error("too many buffer pools open in this process (the fault guard tracks {0})")]
    TooManyPools(usize),
    #[error("reading the data file's size failed: {0}")]
    Io(#[from] IoError),
}

/// Latching, loading, allocating or writing back a page.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PageError {
    #[error("page {pid} is out of range (the pool has {allocated} pages)")]
    OutOfRange { pid: PageId, allocated: u64 },
    #[error("page {pid} is corrupt: {reason}")]
    Corrupt { pid: PageId, reason: &'static str },
    #[error("page {pid} was never written (the file has room for it, but it is all zeros)")]
    NeverWritten { pid: PageId },
    #[error("I/O on page {pid} failed: {source}")]
    Io {
        pid: PageId,
        #[source]
        source: IoError,
    },
    #[error("the write-back hook refused page {pid}: {reason}")]
    WriteBackRefused {
        pid: PageId,
        #[source]
        reason: crate::manager::WriteBackRefused,
    },
    #[error("no page can be evicted: all {resident_pages} resident pages are latched")]
    PoolExhausted { resident_pages: u64 },
    #[error("the region is full: {max_pages} pages")]
    RegionFull { max_pages: u64 },
    #[error("an extent of {pages} pages exceeds the limit of {max_pages}")]
    ExtentTooLarge { pages: usize, max_pages: usize },
    #[error("releasing memory of page {pid} failed: {source}")]
    Madvise {
        pid: PageId,
        #[source]
        source: std::io::Error,
    },
}

impl PageError {
    /// The same error, for another waiter of the same failed load: every
    /// operation that waited for one read learns that read's error. An OS
    /// error keeps its code (or its kind and message).
    pub(crate) fn duplicate(&self) -> PageError {
        match self {
            PageError::OutOfRange { pid, allocated } => PageError::OutOfRange {
                pid: *pid,
                allocated: *allocated,
            },
            PageError::Corrupt { pid, reason } => PageError::Corrupt { pid: *pid, reason },
            PageError::NeverWritten { pid } => PageError::NeverWritten { pid: *pid },
            PageError::Io { pid, source } => PageError::Io {
                pid: *pid,
                source: source.duplicate(),
            },
            PageError::WriteBackRefused { pid, reason } => PageError::WriteBackRefused {
                pid: *pid,
                reason: reason.clone(),
            },
            PageError::PoolExhausted { resident_pages } => PageError::PoolExhausted {
                resident_pages: *resident_pages,
            },
            PageError::RegionFull { max_pages } => PageError::RegionFull {
                max_pages: *max_pages,
            },
            PageError::ExtentTooLarge { pages, max_pages } => PageError::ExtentTooLarge {
                pages: *pages,
                max_pages: *max_pages,
            },
            PageError::Madvise { pid, source } => PageError::Madvise {
                pid: *pid,
                source: duplicate_os(source),
            },
        }
    }
}

/// An `std::io::Error` is not `Clone`: keep its code, or its kind and text.
pub(crate) fn duplicate_os(e: &std::io::Error) -> std::io::Error {
    match e.raw_os_error() {
        Some(code) => std::io::Error::from_raw_os_error(code),
        None => std::io::Error::new(e.kind(), e.to_string()),
    }
}

/// Why an optimistic operation stopped early: a restart is ordinary
/// control flow (another thread changed a page under the reader); an error
/// is a real failure to hand to the caller.
#[derive(Debug)]
pub enum Interrupt {
    Restart,
    Error(PageError),
    /// A section run with [`crate::BufferManager::optimistic_nowait`] needs
    /// the frame at `pid` (of `pages` pages), which is not in memory: the
    /// caller starts its load (a [`crate::Loader`]) and runs the section
    /// again once it is in. Never seen by a blocking section.
    Missing {
        pid: PageId,
        pages: u32,
    },
}

impl From<PageError> for Interrupt {
    fn from(e: PageError) -> Self {
        Interrupt::Error(e)
    }
}
