//! Block I/O behind one small trait.
//!
//! Everything Rime writes to disk — pages and log blocks — goes through
//! [`BlockFile`]. Three implementations:
//!
//! * [`UringFile`]: the real one. The file is opened `O_DIRECT`; every call is
//!   one io_uring submission (a batch of reads or writes, or an `fdatasync`).
//! * [`PlainFile`]: `pread`/`pwrite`/`fdatasync` on the same `O_DIRECT` file.
//!   Used when io_uring is unavailable (seccomp in containers and the Nix
//!   sandbox, `kernel.io_uring_disabled`), with a warning; see
//!   [`open_block_file`].
//! * [`FaultyFile`]: a **test double for fault injection only**. It wraps a
//!   real file and can fail the Nth write, fail or shorten reads, and crash:
//!   drop every write not yet made durable by `sync_data`.
//!
//! All offsets and lengths are multiples of [`BLOCK_SIZE`] and every buffer is
//! `BLOCK_SIZE`-aligned, as `O_DIRECT` requires; the implementations check it
//! and return [`IoError::Misaligned`] instead of letting the kernel say
//! `EINVAL` later.

mod faulty;
mod plain;
pub mod probe;
mod uring;

pub use faulty::{CrashSwitch, Fate, FaultPlan, FaultyFile};
pub use plain::PlainFile;
pub use uring::UringFile;

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Arc;

/// The unit of `O_DIRECT` I/O: alignment of offsets, lengths and buffers.
/// 4 KiB is the logical block size of NVMe namespaces formatted for
/// performance and the page size of x86-64.
pub const BLOCK_SIZE: usize = 4096;

/// Which operation an [`IoError`] comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoOp {
    Read,
    Write,
    Sync,
    Resize,
    Open,
}

/// An I/O failure, with the operation and the byte offset it concerns.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IoError {
    #[error("{op:?} at byte {offset} failed: {source}")]
    Os {
        op: IoOp,
        offset: u64,
        #[source]
        source: std::io::Error,
    },
    #[error("read at byte {offset} wanted {wanted} bytes but the file ends after {got}")]
    ShortRead {
        offset: u64,
        wanted: usize,
        got: usize,
    },
    #[error(
        "{op:?} at byte {offset} of {len} bytes is not {BLOCK_SIZE}-aligned (offset, length and buffer must be)"
    )]
    Misaligned { op: IoOp, offset: u64, len: usize },
    #[error(
        "{path}: the file system refuses O_DIRECT; Rime needs direct I/O to control write-back"
    )]
    DirectIoUnsupported { path: String },
    #[error("injected {op:?} failure at byte {offset} (fault-injection test double)")]
    Injected { op: IoOp, offset: u64 },
}

impl IoError {
    pub(crate) fn os(op: IoOp, offset: u64, source: std::io::Error) -> Self {
        IoError::Os { op, offset, source }
    }

    /// The same error again (see `PageError::duplicate`).
    pub(crate) fn duplicate(&self) -> IoError {
        match self {
            IoError::Os { op, offset, source } => IoError::Os {
                op: *op,
                offset: *offset,
                source: crate::error::duplicate_os(source),
            },
            IoError::ShortRead {
                offset,
                wanted,
                got,
            } => IoError::ShortRead {
                offset: *offset,
                wanted: *wanted,
                got: *got,
            },
            IoError::Misaligned { op, offset, len } => IoError::Misaligned {
                op: *op,
                offset: *offset,
                len: *len,
            },
            IoError::DirectIoUnsupported { path } => {
                IoError::DirectIoUnsupported { path: path.clone() }
            }
            IoError::Injected { op, offset } => IoError::Injected {
                op: *op,
                offset: *offset,
            },
        }
    }
}

/// One read of a batch: fill `buf` from byte `offset` of the file.
pub struct ReadOp<'a> {
    pub offset: u64,
    pub buf: &'a mut [u8],
}

/// One write of a batch: write `data` at byte `offset` of the file.
#[derive(Clone, Copy)]
pub struct WriteOp<'a> {
    pub offset: u64,
    pub data: &'a [u8],
}

/// A file of blocks. Every method may be called from many threads at once.
pub trait BlockFile: Send + Sync {
    /// Reads every op's buffer completely, as one batch. A read that reaches
    /// the end of the file is [`IoError::ShortRead`].
    fn read_batch(&self, reads: &mut [ReadOp<'_>]) -> Result<(), IoError>;

    /// Writes every op completely, as one batch. On error, any subset of the
    /// batch may have reached the file; callers treat all of it as unwritten.
    fn write_batch(&self, writes: &[WriteOp<'_>]) -> Result<(), IoError>;

    /// `fdatasync`: every write that completed before the call is durable
    /// when it returns `Ok`.
    fn sync_data(&self) -> Result<(), IoError>;

    /// Writes every op completely, then `fdatasync`s: durable when it
    /// returns `Ok`. The io_uring file submits the writes and the sync
    /// together, linked, in one system call; others write, then sync.
    fn write_and_sync(&self, writes: &[WriteOp<'_>]) -> Result<(), IoError> {
        self.write_batch(writes)?;
        self.sync_data()
    }

    /// [`BlockFile::write_and_sync`], running `meanwhile` once while the
    /// I/O may be in flight: the io_uring file calls it after submitting
    /// the writes and the sync and before waiting for them, so work that
    /// need not come before the sync (waking the committers of the sync
    /// before) no longer delays it. Others call it first. It runs exactly
    /// once, whatever the outcome.
    fn write_and_sync_meanwhile(
        &self,
        writes: &[WriteOp<'_>],
        meanwhile: &mut dyn FnMut(),
    ) -> Result<(), IoError> {
        meanwhile();
        self.write_and_sync(writes)
    }

    /// The file's length in bytes.
    fn len_bytes(&self) -> Result<u64, IoError>;

    /// Grows or shrinks the file to `len` bytes (a multiple of [`BLOCK_SIZE`]).
    fn set_len(&self, len: u64) -> Result<(), IoError>;

    /// Reads one buffer at `offset`.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), IoError> {
        self.read_batch(&mut [ReadOp { offset, buf }])
    }

    /// Writes one buffer at `offset`.
    fn write_at(&self, offset: u64, data: &[u8]) -> Result<(), IoError> {
        self.write_batch(&[WriteOp { offset, data }])
    }

    /// The `O_DIRECT` descriptor, for a [`crate::Loader`] to read through
    /// its own io_uring, bypassing this object: only a file whose reads
    /// need nothing but the descriptor says `Some` (the io_uring file). A
    /// file that must see every read (fault injection) or that was chosen
    /// because io_uring is unavailable says `None`, and loaders then read
    /// through [`BlockFile::read_batch`].
    fn direct_fd(&self) -> Option<std::os::fd::RawFd> {
        None
    }

    /// Fault injection for transfers made through [`BlockFile::direct_fd`],
    /// which bypass this object: a loader asks here as each such transfer
    /// (`op` of `len` bytes at `offset`) completes, and an error replaces
    /// the kernel's result. Only the fault-injecting double answers.
    fn direct_fault(&self, op: IoOp, offset: u64, len: usize) -> Option<IoError> {
        let _ = (op, offset, len);
        None
    }
}

/// The `meanwhile` of [`BlockFile::write_and_sync_meanwhile`]: run once,
/// at [`Meanwhile::run`] or else when dropped (on an error path).
pub(crate) struct Meanwhile<'a>(Option<&'a mut dyn FnMut()>);

impl<'a> Meanwhile<'a> {
    pub(crate) fn new(f: &'a mut dyn FnMut()) -> Self {
        Meanwhile(Some(f))
    }

    pub(crate) fn run(&mut self) {
        if let Some(f) = self.0.take() {
            f();
        }
    }
}

impl Drop for Meanwhile<'_> {
    fn drop(&mut self) {
        self.run();
    }
}

/// How [`open_block_file`] chooses its implementation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IoBackend {
    /// io_uring if the kernel allows it, else `pread`/`pwrite` with a warning.
    /// The environment variable `RIME_SKIP_IO_URING=1` forces the fallback.
    #[default]
    Auto,
    /// io_uring or an error.
    Uring,
    /// `pread`/`pwrite`.
    Plain,
}

/// Opens (creating if needed) `path` for direct I/O.
///
/// Decision on io_uring being unavailable: fall back to `pread`/`pwrite`
/// with a `warn!`, rather than refuse to start. The data on disk and every
/// durability guarantee are the same; only batching (one submission for
/// many pages) is lost, so throughput on misses drops, correctness does not.
/// [`IoBackend::Uring`] turns the fallback into an error for deployments that
/// would rather know.
pub fn open_block_file(path: &Path, backend: IoBackend) -> Result<Arc<dyn BlockFile>, IoError> {
    let file = open_direct(path)?;
    let want_uring = match backend {
        IoBackend::Plain => false,
        IoBackend::Uring => true,
        IoBackend::Auto => std::env::var_os("RIME_SKIP_IO_URING").is_none_or(|v| v != "1"),
    };
    if !want_uring {
        return Ok(Arc::new(PlainFile::new(file)));
    }
    match UringFile::new(
        file.try_clone()
            .map_err(|e| IoError::os(IoOp::Open, 0, e))?,
    ) {
        Ok(f) => Ok(Arc::new(f)),
        Err(e) if backend == IoBackend::Auto => {
            tracing::warn!(path = %path.display(), error = %e,
                "io_uring unavailable; falling back to pread/pwrite (same durability, no batching)");
            Ok(Arc::new(PlainFile::new(file)))
        }
        Err(e) => Err(e),
    }
}

/// Opens `path` read-write with `O_DIRECT`, creating it if missing.
pub fn open_direct(path: &Path) -> Result<File, IoError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .custom_flags(libc::O_DIRECT | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::EINVAL) => IoError::DirectIoUnsupported {
                path: path.display().to_string(),
            },
            _ => IoError::os(IoOp::Open, 0, e),
        })
}

/// The length of a file, for the `BlockFile` implementations over `File`.
pub(crate) fn file_len(file: &File) -> Result<u64, IoError> {
    file.metadata()
        .map(|m| m.len())
        .map_err(|e| IoError::os(IoOp::Resize, 0, e))
}

/// Sets the length of a file, for the `BlockFile` implementations over `File`.
pub(crate) fn file_set_len(file: &File, len: u64) -> Result<(), IoError> {
    file.set_len(len)
        .map_err(|e| IoError::os(IoOp::Resize, len, e))
}

/// Checks the `O_DIRECT` alignment rules for one transfer.
pub(crate) fn check_aligned(
    op: IoOp,
    offset: u64,
    ptr: *const u8,
    len: usize,
) -> Result<(), IoError> {
    let aligned = offset.is_multiple_of(BLOCK_SIZE as u64)
        && len.is_multiple_of(BLOCK_SIZE)
        && (ptr as usize).is_multiple_of(BLOCK_SIZE);
    if aligned {
        Ok(())
    } else {
        Err(IoError::Misaligned { op, offset, len })
    }
}

/// A heap buffer aligned to [`BLOCK_SIZE`], for callers that do I/O outside
/// the buffer pool (the log, the superblock, tests).
pub struct AlignedBuf {
    ptr: std::ptr::NonNull<u8>,
    len: usize,
}

// SAFETY: AlignedBuf owns its allocation exclusively, like a Vec<u8>.
unsafe impl Send for AlignedBuf {}
// SAFETY: shared access only hands out `&[u8]`, like a Vec<u8>.
unsafe impl Sync for AlignedBuf {}

impl AlignedBuf {
    /// A zeroed buffer of `len` bytes, rounded up to a whole number of blocks.
    pub fn zeroed(len: usize) -> Self {
        let len = len.div_ceil(BLOCK_SIZE).max(1) * BLOCK_SIZE;
        let layout = Self::layout(len);
        // SAFETY: the layout has a non-zero size (at least one block).
        let raw = unsafe { std::alloc::alloc_zeroed(layout) };
        let ptr =
            std::ptr::NonNull::new(raw).unwrap_or_else(|| std::alloc::handle_alloc_error(layout));
        AlignedBuf { ptr, len }
    }

    /// The start of the buffer, for I/O into or out of parts of it while
    /// other parts are in use (no reference to the whole is made).
    pub(crate) fn as_mut_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    fn layout(len: usize) -> std::alloc::Layout {
        std::alloc::Layout::from_size_align(len, BLOCK_SIZE)
            .expect("block-multiple length is a valid layout")
    }
}

impl std::ops::Deref for AlignedBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: ptr is a live allocation of len initialised (zeroed) bytes.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl std::ops::DerefMut for AlignedBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in deref, and &mut self makes the access exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        // SAFETY: ptr came from alloc_zeroed with this very layout.
        unsafe { std::alloc::dealloc(self.ptr.as_ptr(), Self::layout(self.len)) }
    }
}

#[cfg(test)]
mod tests;
