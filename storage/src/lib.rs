//! Durable storage: Db, transactions, WAL, checkpoints, recovery (issue 4).
//!
//! Built so far — the log and file-format foundation the Db will stand on:
//!
//! * [`wal`]: the write-ahead log. Record format ([`wal::record`]),
//!   preallocated `O_DIRECT` segments, group commit with three
//!   [`wal::Durability`] modes, poisoning on I/O failure, and a recovery
//!   reader that tells a torn tail (the end of the log) from corruption
//!   before it (an error).
//! * [`superblock`]: the double-written, checksummed root of a data directory.
//! * [`dir`]: the data directory's layout and its exclusive process lock.
//! * [`error`]: the error types, one per operation family.
//!
//! Not yet built: the Db itself (named trees, transactions, checkpoints,
//! replay into the B+tree).
//!
//! All file I/O goes through [`rime_bufmgr::io::BlockFile`].
#![deny(unsafe_code)]

pub mod dir;
pub mod error;
pub mod superblock;
mod sync;
pub mod wal;

pub use dir::DataDir;
pub use error::{DirError, RecordError, SuperblockError, WalError};
pub use superblock::{Superblock, SuperblockFile};
pub use wal::{Durability, Lsn, Wal, WalOptions, WalReader};
