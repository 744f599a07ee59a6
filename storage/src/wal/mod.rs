//! The write-ahead log.
//!
//! The log is one logical byte stream addressed by [`Lsn`] (byte offset),
//! stored in preallocated segment files (`wal/wal-<start LSN>.log`, see
//! [`segment`]) whose sizes start small and double up to a cap
//! ([`WalOptions::next_segment_size`]). Records ([`record`]) are packed back to back and may
//! span blocks and segments.
//!
//! * [`Wal`] ([`writer`]): append, group commit, durability modes,
//!   `flush_to` for WAL-before-data, `truncate_before` behind checkpoints,
//!   poisoning on I/O failure.
//! * [`WalReader`] ([`reader`]): recovery. Reads records in order from an
//!   LSN; a torn tail ends the log, damage before the tail is an error.
//!   Its [`LogEnd`] is what reopens the [`Wal`] for writing.

pub mod reader;
pub mod record;
mod rounds;
pub mod segment;
mod waiters;
pub mod writer;

pub use reader::{EndKind, LogEnd, WalReader};
pub use record::{LoggedRecord, OwnedRecord, OwnedWrite, Record, TreeId, Write};
pub use waiters::DurableCallback;
pub use writer::{CommitTicket, Wal};

use rime_bufmgr::io::{BLOCK_SIZE, BlockFile, IoBackend, IoError, open_block_file};
use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Log sequence number: a byte offset in the logical log. A record's LSN is
/// the offset of its first byte; LSNs only grow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Lsn(pub u64);

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// LSN of the first record of a new log.
pub const FIRST_LSN: Lsn = Lsn(0);

/// When a commit is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Acknowledge once the log is durable up to the commit. Concurrent
    /// committers still share one `fdatasync` (whoever arrives while a sync
    /// is running joins the next one).
    Sync,
    /// Like `Sync`, but the thread that leads a sync first waits up to
    /// `max_delay` for more committers to join it: fewer syncs, higher
    /// latency. Still durable at acknowledgement.
    Group { max_delay: Duration },
    /// **Benchmarks only.** Acknowledge at once; the log is written and
    /// synced only when its buffer fills, on `flush_to`, or at close. A
    /// crash loses acknowledged commits.
    NoSync,
}

/// Opens a segment file for block I/O. Tests substitute one that wraps the
/// file in a fault-injecting double.
pub type FileOpener = Arc<dyn Fn(&Path) -> Result<Arc<dyn BlockFile>, IoError> + Send + Sync>;

/// Configuration of a [`Wal`] and a [`WalReader`].
#[derive(Clone)]
pub struct WalOptions {
    /// Largest size of a new segment file, a multiple of [`BLOCK_SIZE`] of
    /// at least [`MIN_SEGMENT_SIZE`]. Existing segments keep their size.
    pub segment_size: u64,
    /// Size of the first segment of a log; each next segment doubles the
    /// newest one's size up to `segment_size`. Same rules as
    /// `segment_size`; equal to it (or larger), every segment is
    /// preallocated at full size from the start (a server's choice).
    pub initial_segment_size: u64,
    pub durability: Durability,
    pub opener: FileOpener,
}

/// Default segment size. 64 MiB: preallocating one costs tens of
/// milliseconds once per 64 MiB of log, and a checkpoint frees the log in
/// units of this size.
pub const DEFAULT_SEGMENT_SIZE: u64 = 64 << 20;

/// Default size of a log's first segment. 64 KiB: a new data directory
/// costs little (a CLI command on it preallocates and syncs 64 KiB, not
/// 64 MiB), and doubling reaches [`DEFAULT_SEGMENT_SIZE`] after 11
/// segments, about 128 MiB of log.
pub const DEFAULT_INITIAL_SEGMENT_SIZE: u64 = 64 << 10;

/// Smallest segment: 4 blocks. Tests use small segments to exercise
/// rollover; nothing in the format needs more than one block.
pub const MIN_SEGMENT_SIZE: u64 = 4 * BLOCK_SIZE as u64;

impl WalOptions {
    /// Real files (io_uring if available, else `pread`/`pwrite`).
    pub fn new(durability: Durability) -> Self {
        WalOptions {
            segment_size: DEFAULT_SEGMENT_SIZE,
            initial_segment_size: DEFAULT_INITIAL_SEGMENT_SIZE,
            durability,
            opener: Arc::new(|p: &Path| open_block_file(p, IoBackend::Auto)),
        }
    }

    pub fn with_segment_size(mut self, size: u64) -> Self {
        self.segment_size = size;
        self
    }

    pub fn with_initial_segment_size(mut self, size: u64) -> Self {
        self.initial_segment_size = size;
        self
    }

    /// Size of the segment that follows one of `newest` bytes (`None`: the
    /// log has no segment yet): double it, at least the initial size, at
    /// most `segment_size`. Every result is a whole number of blocks, as
    /// both bounds are.
    pub fn next_segment_size(&self, newest: Option<u64>) -> u64 {
        let first = self.initial_segment_size.min(self.segment_size);
        match newest {
            None => first,
            Some(size) => size.saturating_mul(2).clamp(first, self.segment_size),
        }
    }

    pub fn with_opener(mut self, opener: FileOpener) -> Self {
        self.opener = opener;
        self
    }

    pub(crate) fn validate(&self) -> Result<(), crate::WalError> {
        if !valid_segment_size(self.segment_size) || !valid_segment_size(self.initial_segment_size)
        {
            return Err(crate::WalError::Config(
                "segment sizes must be multiples of 4 KiB and at least 16 KiB",
            ));
        }
        Ok(())
    }
}

impl fmt::Debug for WalOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WalOptions")
            .field("segment_size", &self.segment_size)
            .field("initial_segment_size", &self.initial_segment_size)
            .field("durability", &self.durability)
            .finish_non_exhaustive()
    }
}

/// A segment size the format allows: whole blocks, at least
/// [`MIN_SEGMENT_SIZE`].
pub(crate) fn valid_segment_size(size: u64) -> bool {
    size >= MIN_SEGMENT_SIZE && size.is_multiple_of(BLOCK_SIZE as u64)
}

/// Rounds an LSN down to the start of its block.
pub(crate) fn block_floor(lsn: u64) -> u64 {
    lsn - lsn % BLOCK_SIZE as u64
}

/// Rounds an LSN up to a block boundary.
pub(crate) fn block_ceil(lsn: u64) -> u64 {
    lsn.div_ceil(BLOCK_SIZE as u64) * BLOCK_SIZE as u64
}

#[cfg(test)]
mod tests;
