//! Errors, one type per family of operations. Every enum is
//! `#[non_exhaustive]` so new failure classes are not breaking changes.

use crate::wal::Lsn;
use rime_bufmgr::io::IoError;
use std::path::PathBuf;
use std::sync::Arc;

/// Why bytes could not be decoded as a log record. Decoding is total: every
/// malformed input maps to one of these, never to a panic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    #[error("record needs {need} bytes but only {have} are there")]
    Short { need: usize, have: usize },
    #[error("payload length {len} exceeds the maximum {max}")]
    TooLong { len: usize, max: usize },
    #[error("checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    BadChecksum { stored: u32, computed: u32 },
    #[error("unknown record kind {0}")]
    UnknownKind(u8),
    #[error("reserved header bytes are not zero")]
    ReservedNotZero,
    #[error("malformed {kind} payload: {reason}")]
    BadPayload { kind: &'static str, reason: &'static str },
}

/// Errors of the write-ahead log: appending, waiting, recovery, truncation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WalError {
    #[error("log I/O failed on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: IoError,
    },
    #[error("log directory operation on {path} failed: {source}")]
    Fs {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A write or `fdatasync` of the log failed earlier (or just now). What
    /// reached the disk is unknown, so the log refuses all further work; the
    /// process must reopen the directory and recover.
    #[error("the log is poisoned by an earlier I/O failure and accepts no more work: {cause}")]
    Poisoned {
        #[source]
        cause: Arc<WalError>,
    },
    /// The log is damaged before its tail: records that were durable are lost.
    #[error("log corrupt at LSN {lsn}: {reason}")]
    Corrupt { lsn: Lsn, reason: String },
    /// Recovery was asked to start below the oldest segment still kept.
    #[error("LSN {requested} was truncated away; the log now starts at {oldest}")]
    Truncated { requested: Lsn, oldest: Lsn },
    /// `flush_to`/`wait_durable` for an LSN the log has not reached.
    #[error("LSN {requested} is beyond the end of the log ({end})")]
    BeyondEnd { requested: Lsn, end: Lsn },
    #[error("record cannot be appended: {0}")]
    Record(#[from] RecordError),
    #[error("invalid log configuration: {0}")]
    Config(&'static str),
    #[error("{0} already holds log segments; open it through recovery instead")]
    NotEmpty(PathBuf),
}

/// Errors reading or writing the superblock.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SuperblockError {
    #[error("superblock I/O failed: {0}")]
    Io(#[from] IoError),
    /// Neither slot holds a valid superblock (torn, corrupt, or not Rime's).
    #[error("no valid superblock: slot 0: {slot0}; slot 1: {slot1}")]
    NoValidSlot { slot0: SlotError, slot1: SlotError },
    /// The newest valid slot was written by a newer Rime. Not silently
    /// replaced by the older slot: that would roll the database back.
    #[error("superblock format version {found} is newer than the supported {supported}")]
    UnsupportedVersion { found: u32, supported: u32 },
    #[error("superblock file is {len} bytes; expected {expected}")]
    BadFileLength { len: u64, expected: u64 },
    #[error("superblock field out of range: {0}")]
    Invalid(&'static str),
}

/// Why one superblock slot was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SlotError {
    #[error("empty (all zero)")]
    Empty,
    #[error("bad magic")]
    BadMagic,
    #[error("checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    BadChecksum { stored: u32, computed: u32 },
}

/// Errors opening a data directory.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DirError {
    /// Another open handle (this process or another) holds the directory.
    #[error("data directory {path} is in use by another process or handle (lock file {lock} is held)")]
    Locked { path: PathBuf, lock: PathBuf },
    #[error("{op} {path} failed: {source}")]
    Fs {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}
