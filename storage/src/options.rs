//! [`Options`]: how to open a [`crate::Db`].

use crate::wal::{
    DEFAULT_INITIAL_SEGMENT_SIZE, DEFAULT_SEGMENT_SIZE, Durability, FileOpener, valid_segment_size,
};
use rime_bufmgr::io::{IoBackend, open_block_file};
use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Default time between periodic checkpoints: 30 s bounds the log a crash
/// leaves to replay to what 30 s of commits write, while a checkpoint
/// (flush of the dirty pages, two syncs) stays a background cost.
pub const DEFAULT_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(30);

/// Default log growth that triggers a checkpoint before the interval is up:
/// 256 MiB of log replays in seconds; this is the real bound on recovery time
/// under heavy write load.
pub const DEFAULT_CHECKPOINT_LOG_BYTES: u64 = 256 << 20;

/// Default pool budget: 256 MiB, a modest share of a server's memory.
pub const DEFAULT_POOL_BYTES: usize = 256 << 20;

/// What open checks after replaying the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum VerifyOnOpen {
    /// Full `verify()` of every tree whenever the log since the last
    /// checkpoint held any record to replay (a crash, or a close whose final
    /// checkpoint did not finish); nothing after a clean close.
    AfterReplay,
    /// Full `verify()` at every open.
    Always,
    /// Only open each tree's root (cheap; reads one page per tree). After
    /// a replay, recovery's sweep still walks every tree's nodes (not its
    /// extents) to rebuild the allocation state; it checks less than
    /// `verify()`.
    RootsOnly,
}

/// How to open a Db. `Options::default()` is a sane production setting.
#[derive(Clone)]
pub struct Options {
    /// Memory budget of the buffer pool, in bytes (at least
    /// `rime_bufmgr::MIN_POOL_PAGES` pages).
    pub pool_bytes: usize,
    /// Largest database (virtual address space reserved, not memory).
    pub max_bytes: u64,
    /// When a commit is acknowledged; see `docs/transactions.md`.
    pub durability: Durability,
    /// Periodic checkpoint interval; `None` disables the background
    /// checkpointer (checkpoints then happen on close and on demand).
    pub checkpoint_interval: Option<Duration>,
    /// Log growth since the last checkpoint that triggers one early.
    pub checkpoint_log_bytes: u64,
    /// Largest size of a log segment file (a checkpoint frees the log in
    /// segments).
    pub segment_size: u64,
    /// Size of the log's first segment; each next one doubles the newest
    /// one's size up to `segment_size`, so a new directory costs 64 KiB of
    /// log, not 64 MiB. Set it to `segment_size` to preallocate every
    /// segment at full size from the start ([`Options::preallocate_log`]).
    pub initial_segment_size: u64,
    pub verify_on_open: VerifyOnOpen,
    /// The fault-injection seam; see [`Options::with_file_opener`].
    pub(crate) opener: FileOpener,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            pool_bytes: DEFAULT_POOL_BYTES,
            max_bytes: rime_bufmgr::DEFAULT_MAX_BYTES,
            durability: Durability::Sync,
            checkpoint_interval: Some(DEFAULT_CHECKPOINT_INTERVAL),
            checkpoint_log_bytes: DEFAULT_CHECKPOINT_LOG_BYTES,
            segment_size: DEFAULT_SEGMENT_SIZE,
            initial_segment_size: DEFAULT_INITIAL_SEGMENT_SIZE,
            verify_on_open: VerifyOnOpen::AfterReplay,
            opener: Arc::new(|p: &Path| open_block_file(p, IoBackend::Auto)),
        }
    }
}

impl Options {
    pub fn pool_bytes(mut self, bytes: usize) -> Self {
        self.pool_bytes = bytes;
        self
    }
    pub fn durability(mut self, d: Durability) -> Self {
        self.durability = d;
        self
    }
    pub fn checkpoint_interval(mut self, i: Option<Duration>) -> Self {
        self.checkpoint_interval = i;
        self
    }
    pub fn checkpoint_log_bytes(mut self, bytes: u64) -> Self {
        self.checkpoint_log_bytes = bytes;
        self
    }
    pub fn segment_size(mut self, bytes: u64) -> Self {
        self.segment_size = bytes;
        self
    }
    pub fn initial_segment_size(mut self, bytes: u64) -> Self {
        self.initial_segment_size = bytes;
        self
    }
    /// Every new log segment at full `segment_size` from the start: a
    /// server's setting, where tens of MiB of zeros up front buy commits
    /// that never wait for a segment to be created. Call it after
    /// [`Options::segment_size`].
    pub fn preallocate_log(mut self) -> Self {
        self.initial_segment_size = self.segment_size;
        self
    }
    pub fn verify_on_open(mut self, v: VerifyOnOpen) -> Self {
        self.verify_on_open = v;
        self
    }
    pub fn max_bytes(mut self, bytes: u64) -> Self {
        self.max_bytes = bytes;
        self
    }

    /// **Fault-injection seam, for tests only.** Every file of the data
    /// directory (superblock, page file, allocation state, log segments) is
    /// opened through `opener`, so a test can wrap them in
    /// `rime_bufmgr::io::FaultyFile` and crash, tear or fail them.
    #[doc(hidden)]
    pub fn with_file_opener(mut self, opener: FileOpener) -> Self {
        self.opener = opener;
        self
    }

    pub(crate) fn validate(&self) -> Result<(), crate::OpenError> {
        if !valid_segment_size(self.segment_size) || !valid_segment_size(self.initial_segment_size)
        {
            return Err(crate::OpenError::Config(
                "segment sizes must be multiples of 4 KiB and at least 16 KiB",
            ));
        }
        if self.checkpoint_log_bytes == 0 {
            return Err(crate::OpenError::Config(
                "checkpoint_log_bytes must be positive",
            ));
        }
        Ok(())
    }
}

impl fmt::Debug for Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Options")
            .field("pool_bytes", &self.pool_bytes)
            .field("max_bytes", &self.max_bytes)
            .field("durability", &self.durability)
            .field("checkpoint_interval", &self.checkpoint_interval)
            .field("checkpoint_log_bytes", &self.checkpoint_log_bytes)
            .field("segment_size", &self.segment_size)
            .field("initial_segment_size", &self.initial_segment_size)
            .field("verify_on_open", &self.verify_on_open)
            .finish_non_exhaustive()
    }
}
