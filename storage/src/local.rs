//! State sharded by thread, which keeps a point read off every cache line
//! other threads write: the pooled transaction buffers, the open-tree cache
//! they carry, and counters. With two threads reading, each shared
//! read-modify-write (a mutex, an `Arc` count, a counter) bounced a line
//! between the cores on every read, and the Db read at half the bare
//! tree's speed (issue 16). The shards belong to the Db (not to threads),
//! so closing it frees everything they hold.

use crate::error::DbError;
use crate::inner::DbInner;
use crate::sync::{AtomicU64, Mutex, Ordering, lock};
use crate::tx::TxBufs;
use crate::wal::TreeId;
use rime_btree::BTree;
use std::cell::Cell;
use std::sync::Arc;

thread_local! {
    /// This thread's shard, assigned on first use.
    static SHARD: Cell<usize> = const { Cell::new(usize::MAX) };
}

static NEXT_SHARD: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// This thread's shard index.
fn shard() -> usize {
    SHARD
        .try_with(|s| {
            if s.get() == usize::MAX {
                s.set(NEXT_SHARD.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % SHARDS);
            }
            s.get()
        })
        .unwrap_or(0)
}

/// Spare transaction buffers, a pool per shard: a thread locks its own
/// shard's mutex, which no other thread touches unless shards are shared.
pub(crate) struct BufPool {
    shards: [PaddedPool; SHARDS],
}

#[repr(align(128))]
#[allow(clippy::vec_box)] // kept boxed: handed out as boxes (see `take`)
struct PaddedPool(Mutex<Vec<Box<TxBufs>>>);

/// Buffers kept per shard: enough for the threads that share one.
const MAX_BUFS_PER_SHARD: usize = 32;

impl Default for BufPool {
    fn default() -> Self {
        BufPool {
            shards: std::array::from_fn(|_| PaddedPool(Mutex::new(Vec::new()))),
        }
    }
}

impl BufPool {
    /// Buffers for a transaction (warm if this shard ran one before).
    /// Boxed: a transaction an async caller holds (`OwnedTx`) moves with
    /// its task, and 8 bytes move cheaper than the buffers' few hundred.
    pub fn take(&self) -> Box<TxBufs> {
        lock(&self.shards[shard()].0).pop().unwrap_or_default()
    }

    /// Keeps `bufs` for a later transaction of this shard.
    pub fn put(&self, bufs: Box<TxBufs>) {
        let mut pool = lock(&self.shards[shard()].0);
        if pool.len() < MAX_BUFS_PER_SHARD {
            pool.push(bufs);
        }
    }
}

/// Counter shards: enough that two to eight threads rarely share one.
const SHARDS: usize = 8;

/// One cache line per shard (128 bytes: adjacent-line prefetch pairs them).
#[repr(align(128))]
struct Padded(AtomicU64);

/// A counter threads add to without sharing a cache line; reading it sums
/// the shards (stats only).
pub(crate) struct Counter {
    shards: [Padded; SHARDS],
}

impl Default for Counter {
    fn default() -> Self {
        Counter {
            shards: std::array::from_fn(|_| Padded(AtomicU64::new(0))),
        }
    }
}

impl Counter {
    pub fn add(&self, n: u64) {
        self.shards[shard()].0.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.shards
            .iter()
            .map(|p| p.0.load(Ordering::Relaxed))
            .sum()
    }

    pub fn set(&self, n: u64) {
        for (i, p) in self.shards.iter().enumerate() {
            p.0.store(if i == 0 { n } else { 0 }, Ordering::Relaxed);
        }
    }
}

/// The trees a thread's transactions used, kept in its buffers: a lookup
/// is a scan of a few entries, with no lock and no reference count
/// touched. Valid while the Db it came from (`db`) has not opened or
/// dropped a tree since (`generation`).
#[derive(Default)]
pub(crate) struct TreeCache {
    db: u64,
    generation: u64,
    trees: Vec<(TreeId, Arc<BTree>)>,
}

/// Trees kept at most; past it the cache starts over.
const MAX_CACHED_TREES: usize = 16;

impl TreeCache {
    /// The open tree `id` of `db`.
    pub fn get(&mut self, db: &DbInner, id: TreeId) -> Result<&BTree, DbError> {
        self.catch_up(db);
        let i = match self.trees.iter().position(|(t, _)| *t == id) {
            Some(i) => i,
            None => {
                if self.trees.len() >= MAX_CACHED_TREES {
                    self.trees.clear();
                }
                self.trees.push((id, db.tree(id)?));
                self.trees.len() - 1
            }
        };
        Ok(&self.trees[i].1)
    }

    /// Makes every tree of `ids` present (beyond the cache's usual size if
    /// it must: the next [`TreeCache::get`] trims it) and returns the
    /// generation they are valid for. A commit resolves the trees it
    /// writes this way, then borrows them with [`TreeCache::peek`]: no lock
    /// of the Db's tree map and no reference count, both lines the other
    /// cores' commits write.
    pub fn hold(
        &mut self,
        db: &DbInner,
        ids: impl Iterator<Item = TreeId>,
    ) -> Result<u64, DbError> {
        let generation = self.catch_up(db);
        for id in ids {
            if !self.trees.iter().any(|(t, _)| *t == id) {
                self.trees.push((id, db.tree(id)?));
            }
        }
        Ok(generation)
    }

    /// Forgets the trees if `db` is another Db or has opened or dropped a
    /// tree since they were resolved; returns its tree generation.
    fn catch_up(&mut self, db: &DbInner) -> u64 {
        let generation = db.tree_generation();
        if self.db != db.id() || self.generation != generation {
            self.trees.clear();
            self.db = db.id();
            self.generation = generation;
        }
        generation
    }

    /// Tree `id`, if present and `db` has opened or dropped no tree since
    /// the cache was filled: then it is the tree `DbInner::tree` would
    /// return, found without its lock or a reference count (validation's
    /// lookups, `occ.rs`).
    pub fn current(&self, db: &DbInner, id: TreeId) -> Option<&BTree> {
        if self.db != db.id() || self.generation != db.tree_generation() {
            return None;
        }
        self.peek(id)
    }

    /// Tree `id`, if present.
    pub fn peek(&self, id: TreeId) -> Option<&BTree> {
        self.trees
            .iter()
            .find(|(t, _)| *t == id)
            .map(|(_, tree)| &**tree)
    }
}
