//! [`DbInner`]: the state every handle, transaction and background thread
//! of one [`crate::Db`] shares, with the one statement of this crate's
//! lock order.
//!
//! ## What protects what
//!
//! | state | protected by | taken by |
//! |---|---|---|
//! | a key's value in its tree | its key stripe (`KeyLocks`), exclusive | commit steps 3–7; a conflicted `get_many`'s re-reads |
//! | a tree's key set, for scan validation | its tree gate (`Gates`): writers `A`, validators `B`, both `X` | commit, validation, `drop_tree` |
//! | "every logged change is applied" | the apply gate: committers `A`, checkpoint `B` | commit, catalog, checkpoint step 1 |
//! | catalog create/drop decisions | `catalog_lock` | `catalog.rs` |
//! | one checkpoint at a time | `checkpoint_lock` | `checkpoint.rs` |
//! | the superblock file | `superblock` | checkpoint step 4 |
//! | open trees by id | `trees` (`RwLock`), `tree_generation` | lookups; create/drop register |
//! | log buffer, durable LSN | `Wal`'s own state mutex | `Wal` |
//! | pages | the buffer manager's latches | the trees |
//!
//! ## Lock order
//!
//! A thread that holds a lock only ever waits for one later in this list:
//!
//! 1. `checkpoint_lock`
//! 2. `catalog_lock`
//! 3. the apply gate
//! 4. tree gates, in ascending gate index
//! 5. key stripes, in ascending stripe index
//! 6. `superblock`
//! 7. page latches (inside the trees), then the `Wal`'s state (appends,
//!    SMO logging, the write-ahead rule of a write-back), then the leaf
//!    locks: `trees`, `poison`, the buffer pool's shards, `shutdown`, which are held for a
//!    few instructions and never while waiting for anything else.
//!
//! Reads in flight are not in the order: a holder of 1–7 may wait for a
//! page another thread's loader is reading, and that thread may be
//! waiting for 1–5 or a latch. Those waits reap the waiting thread's
//! reads before they sleep (`rime_bufmgr::reap_while_blocked`: key
//! stripes and gates when they park, `catalog_lock` and `checkpoint_lock`
//! through `sync::lock_reaping`, latches and page waits in the buffer
//! manager), so every read in flight completes and no such cycle stays
//! closed (`crate::reads`, step 5).
//!
//! Validation never waits for 3–5 (it gives up instead: a conflict), so a
//! read-only transaction holds nothing but, with scans, tree gates. The
//! exceptions lose validation first: a read-only batch (`Db::get_many`,
//! `commit/refresh.rs`) then takes the stripes of its keys (5) and nothing
//! before them; a read-only closure transaction whose scans lost twice in
//! a row (`commit/gated.rs`) takes its scanned trees' gates (4) before
//! its next attempt and holds them while the closure runs, which takes
//! only page latches and the log's state (7) meanwhile.

use crate::DataDir;
use crate::error::DbError;
use crate::hooks::LogHooks;
use crate::local::{BufPool, Counter};
use crate::locks::{Gates, KeyLocks};
use crate::options::Options;
use crate::superblock::SuperblockFile;
use crate::sync::{
    AtomicBool, AtomicU64, Condvar, Mutex, MutexGuard, Ordering, RwLock, lock, lock_reaping,
};
use crate::tx::TxBufs;
use crate::wal::{TreeId, Wal};
use rime_btree::BTree;
use rime_bufmgr::BufferManager;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// Monotonic counters behind [`crate::DbStats`], sharded per thread.
#[derive(Default)]
pub(crate) struct Counters {
    pub commits: Counter,
    pub read_only: Counter,
    pub read_refreshes: Counter,
    pub gated_reads: Counter,
    pub scan_rescans: Counter,
    pub conflicts: Counter,
    pub checkpoints: Counter,
    pub checkpoint_failures: Counter,
    pub recovered_records: Counter,
}

/// Ids of `DbInner`s, so a thread's tree cache knows whose trees it holds.
static NEXT_DB_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// What a Db is made of when recovery hands it over.
pub(crate) struct Parts {
    pub dir: DataDir,
    pub opts: Options,
    pub wal: Arc<Wal>,
    pub bm: Arc<BufferManager>,
    pub hooks: Arc<LogHooks>,
    pub catalog: BTree,
    pub superblock: SuperblockFile,
}

pub(crate) struct DbInner {
    id: u64,
    dir: DataDir,
    opts: Options,
    wal: Arc<Wal>,
    bm: Arc<BufferManager>,
    hooks: Arc<LogHooks>,
    catalog: Arc<BTree>,
    trees: RwLock<HashMap<TreeId, Arc<BTree>>>,
    /// Bumped whenever `trees` changes: threads' tree caches start over.
    tree_generation: AtomicU64,
    key_locks: KeyLocks,
    gates: Gates,
    catalog_lock: Mutex<()>,
    checkpoint_lock: Mutex<()>,
    superblock: Mutex<SuperblockFile>,
    last_checkpoint: AtomicU64,
    poison: Mutex<Option<String>>,
    poisoned: AtomicBool,
    counters: Counters,
    tx_bufs: BufPool,
    shutdown: Mutex<bool>,
    shutdown_cv: Condvar,
}

impl DbInner {
    pub fn new(p: Parts) -> Self {
        DbInner {
            id: NEXT_DB_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            dir: p.dir,
            opts: p.opts,
            wal: p.wal,
            bm: p.bm,
            hooks: p.hooks,
            catalog: Arc::new(p.catalog),
            trees: RwLock::new(HashMap::new()),
            tree_generation: AtomicU64::new(0),
            key_locks: KeyLocks::new(),
            gates: Gates::new(),
            catalog_lock: Mutex::new(()),
            checkpoint_lock: Mutex::new(()),
            superblock: Mutex::new(p.superblock),
            last_checkpoint: AtomicU64::new(0),
            poison: Mutex::new(None),
            poisoned: AtomicBool::new(false),
            counters: Counters::default(),
            tx_bufs: BufPool::default(),
            shutdown: Mutex::new(false),
            shutdown_cv: Condvar::new(),
        }
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    pub fn tree_generation(&self) -> u64 {
        self.tree_generation.load(Ordering::Acquire)
    }

    pub fn dir(&self) -> &DataDir {
        &self.dir
    }
    pub fn opts(&self) -> &Options {
        &self.opts
    }
    pub fn wal(&self) -> &Arc<Wal> {
        &self.wal
    }
    pub fn bm(&self) -> &Arc<BufferManager> {
        &self.bm
    }
    pub fn hooks(&self) -> &Arc<LogHooks> {
        &self.hooks
    }
    pub fn catalog(&self) -> &Arc<BTree> {
        &self.catalog
    }
    pub fn counters(&self) -> &Counters {
        &self.counters
    }
    pub fn key_locks(&self) -> &KeyLocks {
        &self.key_locks
    }
    pub fn gates(&self) -> &Gates {
        &self.gates
    }

    /// Lock order 2: one create or drop at a time.
    pub fn catalog_lock(&self) -> MutexGuard<'_, ()> {
        lock_reaping(&self.catalog_lock)
    }

    /// Lock order 1: one checkpoint at a time.
    pub fn checkpoint_lock(&self) -> MutexGuard<'_, ()> {
        lock_reaping(&self.checkpoint_lock)
    }

    /// Lock order 6.
    pub fn superblock(&self) -> MutexGuard<'_, SuperblockFile> {
        lock(&self.superblock)
    }

    pub fn last_checkpoint(&self) -> u64 {
        self.last_checkpoint.load(Ordering::Acquire)
    }

    pub fn set_last_checkpoint(&self, lsn: u64) {
        self.last_checkpoint.store(lsn, Ordering::Release);
    }

    /// Marks the Db unusable for writes (see [`DbError::Poisoned`]).
    pub fn poison(&self, why: impl std::fmt::Display) {
        let mut p = lock(&self.poison);
        if p.is_none() {
            tracing::error!(cause = %why, "the database is poisoned");
            *p = Some(why.to_string());
        }
        self.poisoned.store(true, Ordering::Release);
    }

    pub fn check_poison(&self) -> Result<(), DbError> {
        match self.poisoned_cause() {
            None => Ok(()),
            Some(why) => Err(DbError::Poisoned(why)),
        }
    }

    /// Why the Db is poisoned, if it is.
    pub fn poisoned_cause(&self) -> Option<String> {
        if !self.poisoned.load(Ordering::Acquire) {
            return None;
        }
        Some(lock(&self.poison).clone().unwrap_or_default())
    }

    pub fn catalog_id(&self) -> TreeId {
        TreeId(self.catalog.root() as u32)
    }

    /// The open tree `id` (the catalog included).
    pub fn tree(&self, id: TreeId) -> Result<Arc<BTree>, DbError> {
        if id == self.catalog_id() {
            return Ok(self.catalog.clone());
        }
        self.trees
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .cloned()
            .ok_or(DbError::NoSuchTree(id))
    }

    /// Whether `id` is open (the catalog included).
    pub fn has_tree(&self, id: TreeId) -> bool {
        id == self.catalog_id()
            || self
                .trees
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .contains_key(&id)
    }

    pub fn register_tree(&self, id: TreeId, tree: Arc<BTree>) {
        self.trees
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, tree);
        self.tree_generation.fetch_add(1, Ordering::AcqRel);
    }

    pub fn unregister_tree(&self, id: TreeId) {
        self.trees
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
        self.tree_generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Pooled transaction buffers (cleared by the transaction that uses
    /// them), from this thread's shard.
    pub fn take_tx_bufs(&self) -> Box<TxBufs> {
        self.tx_bufs.take()
    }

    pub fn return_tx_bufs(&self, bufs: Box<TxBufs>) {
        self.tx_bufs.put(bufs);
    }

    /// Asks background threads to stop; true if it was already asked.
    pub fn request_shutdown(&self) -> bool {
        let was = std::mem::replace(&mut *lock(&self.shutdown), true);
        self.shutdown_cv.notify_all();
        was
    }

    pub fn shutting_down(&self) -> bool {
        *lock(&self.shutdown)
    }

    /// Sleeps up to `d`, or until shutdown is requested; true if it was.
    pub fn sleep_unless_shutdown(&self, d: Duration) -> bool {
        let stop = lock(&self.shutdown);
        if *stop {
            return true;
        }
        let (stop, _) = self
            .shutdown_cv
            .wait_timeout(stop, d)
            .unwrap_or_else(|p| p.into_inner());
        *stop
    }
}
