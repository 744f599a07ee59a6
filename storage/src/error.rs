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
    BadPayload {
        kind: &'static str,
        reason: &'static str,
    },
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
    /// The log was closed with this record not durable (a waiter
    /// registered with `Wal::on_durable` after the last flush).
    #[error("the log was closed before LSN {lsn} was durable")]
    Closed { lsn: Lsn },
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
    #[error(
        "data directory {path} is in use by another process or handle (lock file {lock} is held)"
    )]
    Locked { path: PathBuf, lock: PathBuf },
    #[error("{op} {path} failed: {source}")]
    Fs {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Errors opening a [`crate::Db`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    #[error(transparent)]
    Dir(#[from] DirError),
    #[error("superblock: {0}")]
    Superblock(#[from] SuperblockError),
    #[error("log: {0}")]
    Wal(#[from] WalError),
    #[error("buffer pool: {0}")]
    Pool(#[from] rime_bufmgr::OpenError),
    #[error("opening {path} failed: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: IoError,
    },
    /// The allocation-state file named by the superblock is missing or
    /// damaged (the error names it).
    #[error("allocation state: {0}")]
    AllocState(#[from] crate::allocfile::AllocFileError),
    #[error("invalid options: {0}")]
    Config(&'static str),
    /// Replaying the log or the check after it failed.
    #[error("recovery failed: {0}")]
    Recovery(#[source] DbError),
    /// The directory holds data files but no valid superblock (missing,
    /// empty or zeroed), and no creation was in progress. Opening never
    /// starts an empty database over them.
    #[error(
        "{superblock} is missing or empty, but the directory holds data ({}): \
         refusing to start an empty database over it. Restore the superblock \
         from a backup, or move the directory aside to start afresh",
        found.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
    )]
    NoSuperblock {
        superblock: PathBuf,
        found: Vec<PathBuf>,
    },
    /// The superblock names a checkpoint whose record is not in the log
    /// where it says: the log was damaged or truncated. Opening never
    /// treats that as "nothing was written".
    #[error(
        "the superblock names a checkpoint at log position {redo_lsn}, but the log in {wal_dir} \
         has {found} there: the log is damaged or truncated"
    )]
    MissingCheckpoint {
        redo_lsn: u64,
        wal_dir: PathBuf,
        found: String,
    },
}

/// Errors of Db-level operations (trees, checkpoints, verification), and
/// the cause inside [`TxError::Db`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DbError {
    /// A tree operation failed; a corrupt page is named in it
    /// (`TreeError::Corrupt { pid }` or `PageError::Corrupt { pid }`).
    #[error("tree: {0}")]
    Tree(#[from] rime_btree::TreeError),
    #[error("log: {0}")]
    Wal(#[from] WalError),
    #[error("superblock: {0}")]
    Superblock(#[from] SuperblockError),
    #[error("page file: {0}")]
    Page(#[from] rime_bufmgr::PageError),
    #[error("I/O on {path} failed: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: IoError,
    },
    /// An earlier failure (a failed `fdatasync`, a write that reached the
    /// log but not the tree) left the Db in a state it cannot vouch for. It
    /// refuses all further writes; reopen the directory to recover.
    #[error("the database is poisoned by an earlier failure and accepts no more writes: {0}")]
    Poisoned(String),
    /// A checkpoint could not write its allocation-state file. Nothing is
    /// lost and the Db is not poisoned: the previous checkpoint stays in
    /// force, and the next checkpoint tries again.
    #[error("checkpoint: {0}")]
    AllocFile(#[from] crate::allocfile::AllocFileError),
    #[error("a tree named {0:?} already exists")]
    TreeExists(String),
    #[error("tree name of {len} bytes exceeds the limit of {max}")]
    NameTooLong { len: usize, max: usize },
    #[error("tree {0:?} does not exist (dropped?)")]
    NoSuchTree(crate::TreeId),
    /// A record or page that decoded but makes no sense (e.g. a catalog
    /// value that is not a page id).
    #[error("corrupt: {0}")]
    Corrupt(String),
}

/// Errors of transactions and single-key operations.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TxError {
    /// The read set kept changing under the transaction: it was run
    /// `attempts` times and failed validation every time.
    #[error("transaction conflicted {attempts} times; giving up")]
    Conflict { attempts: u32 },
    /// `add` found a value that is not exactly 8 bytes.
    #[error("value is {len} bytes, not an 8-byte i64")]
    NotI64 { len: usize },
    /// `add` would overflow i64.
    #[error("i64 overflow in add")]
    Overflow,
    /// The closure asked to abort; nothing was committed.
    #[error("transaction aborted: {0}")]
    Aborted(String),
    #[error("key of {len} bytes exceeds the limit of {max}")]
    KeyTooLarge { len: usize, max: usize },
    #[error("value of {len} bytes exceeds the limit of {max}")]
    ValueTooLarge { len: usize, max: usize },
    /// The write set would make a log record larger than one commit may
    /// be ([`crate::wal::record::MAX_COMMIT_BYTES`]). Refused before
    /// anything was logged: the Db is unaffected.
    #[error("the transaction writes {bytes} bytes; one commit may log at most {max}")]
    CommitTooLarge { bytes: usize, max: usize },
    /// Only from a transaction made by [`crate::OwnedTx::tx_nowait`]: the
    /// operation needs this page in memory. It recorded nothing; load the
    /// page ([`crate::Reads`]) and run the operation again.
    #[error("the operation needs page {} in memory", .0.page())]
    WouldWait(crate::reads::Miss),
    /// The operation may wait for pages; run it with a waiting
    /// transaction ([`crate::OwnedTx::tx`]) once this thread has no reads
    /// in flight ([`crate::Reads::in_flight`]). No operation of this
    /// version returns it: scans and `get_many` of a non-waiting
    /// transaction end with [`TxError::WouldWait`] instead.
    #[error("the operation may wait for pages; run it with no reads of this thread in flight")]
    WouldBlock,
    /// A transaction was started inside another's closure while that one
    /// held tree gates (`commit/gated.rs`): it could have waited for ever.
    /// The closure must use only its own `Tx`.
    #[error("a transaction inside another transaction's closure; use the closure's own Tx")]
    Nested,
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<rime_btree::TreeError> for TxError {
    fn from(e: rime_btree::TreeError) -> Self {
        TxError::Db(DbError::Tree(e))
    }
}

impl From<WalError> for TxError {
    fn from(e: WalError) -> Self {
        TxError::Db(DbError::Wal(e))
    }
}
