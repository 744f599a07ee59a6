//! Durable storage: [`Db`] — named trees, serializable transactions, a
//! write-ahead log with group commit, fuzzy checkpoints, recovery.
//!
//! * [`Db`] (`db.rs`): open/close, trees, convenience methods, stats.
//! * `inner.rs`: the state a Db's threads share, and the crate's lock
//!   order; `locks/`: the key stripes and gates commits hold.
//! * [`Tx`] (`tx/`): a transaction's operations, read set, write set;
//!   `occ.rs` validates, `commit/` commits (the numbered protocol there).
//! * `catalog.rs`: names → trees, itself a logged B+tree.
//! * `checkpoint.rs`, `recovery.rs`: the other two protocols.
//! * `hooks.rs`: SMO logging and the write-ahead rule on write-back;
//!   `smo.rs`: the SMO record's payload.
//! * [`wal`]: the log. [`superblock`], [`dir`], `allocfile.rs`: the files.
//!
//! User guarantees: `docs/transactions.md`. All file I/O goes through
//! [`rime_bufmgr::io::BlockFile`].
#![forbid(unsafe_code)]

mod allocfile;
mod bytes;
mod catalog;
mod checkpoint;
mod commit;
mod db;
pub mod dir;
pub mod error;
mod hooks;
mod inner;
mod local;
mod locks;
#[cfg(all(test, loom))]
mod loom_models;
mod occ;
mod options;
mod pending;
mod reads;
mod recovery;
mod smo;
pub mod superblock;
mod sweep;
mod sync;
mod tx;
pub mod wal;

pub use allocfile::AllocFileError;
pub use db::{Db, DbStats, MAX_TX_ATTEMPTS};
pub use dir::DataDir;
pub use error::{
    DbError, DirError, OpenError, RecordError, SlotError, SuperblockError, TxError, WalError,
};
pub use options::{
    DEFAULT_CHECKPOINT_INTERVAL, DEFAULT_CHECKPOINT_LOG_BYTES, DEFAULT_POOL_BYTES, Options,
    VerifyOnOpen,
};
pub use pending::Pending;
pub use reads::{Miss, Reads};
pub use superblock::{Superblock, SuperblockFile};
pub use tx::{Committed, MAX_KEY_LEN, MAX_VALUE_LEN, OwnedTx, ScanEnd, Tx, VERSION_SIZE};
pub use wal::{Durability, DurableCallback, FileOpener, Lsn, TreeId, Wal, WalOptions, WalReader};
