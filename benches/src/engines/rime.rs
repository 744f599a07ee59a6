//! Rime's storage API (`rime_storage::Db`): one tree, every operation one
//! serializable transaction committed through the WAL. `rime-batched` is
//! the same engine with its reads handed over in batches, each one
//! `Db::get_many` with the batch's page misses in flight together.

use crate::engine::{CommitCounters, Durability, Engine, EngineConfig, Result};
use rime_storage::{Db, Options, TreeId};
use std::ops::{Bound, ControlFlow};
use std::path::Path;
use std::time::Duration;

pub struct RimeEngine {
    db: Db,
    tree: TreeId,
    durability: Durability,
    pool_bytes: usize,
    /// `rime-batched`: reads go through [`Engine::read_many`].
    batched: bool,
}

/// Group mode's gather window: a few fsyncs' worth (~60 µs each here).
pub const GROUP_DELAY: Duration = Duration::from_micros(200);

/// A Db's commits and log syncs (`DbStats::commits`, `DbStats::log_syncs`).
pub fn commit_counters(db: &Db) -> CommitCounters {
    let s = db.stats();
    CommitCounters {
        commits: s.commits,
        log_syncs: s.log_syncs,
    }
}

pub fn storage_durability(d: Durability) -> rime_storage::Durability {
    match d {
        Durability::NoSync => rime_storage::Durability::NoSync,
        Durability::Group => rime_storage::Durability::Group {
            max_delay: GROUP_DELAY,
        },
        Durability::Sync => rime_storage::Durability::Sync,
    }
}

impl RimeEngine {
    pub fn open(dir: &Path, cfg: &EngineConfig) -> Result<Self> {
        // Full-size log segments from the start, as a server runs (and as
        // the published numbers were measured): no segment creation while
        // the log grows.
        let opts = Options::default()
            .preallocate_log()
            .pool_bytes(cfg.pool_bytes)
            .durability(storage_durability(cfg.durability));
        let db = Db::open(dir, opts)?;
        let tree = db.open_or_create_tree("usertable")?;
        Ok(RimeEngine {
            db,
            tree,
            durability: cfg.durability,
            pool_bytes: cfg.pool_bytes,
            batched: false,
        })
    }

    /// The same engine as `rime-batched`.
    pub fn batched(mut self) -> Self {
        self.batched = true;
        self
    }
}

impl Engine for RimeEngine {
    fn name(&self) -> &str {
        if self.batched { "rime-batched" } else { "rime" }
    }
    fn describe(&self) -> String {
        let batched = if self.batched {
            "; reads in batches of the row's in-flight count, each batch one \
             Db::get_many (one read-only transaction) with its misses in flight \
             together; latency columns are per batch, not per lookup"
        } else {
            ""
        };
        format!(
            "rime_storage::Db, one tree; every op one serializable transaction; \
             durability {:?}; pool {} MiB; rmw = get+put in one transaction{batched}",
            storage_durability(self.durability),
            self.pool_bytes >> 20
        )
    }
    fn insert(&self, key: &[u8], value: &[u8]) -> Result<()> {
        Ok(self.db.put(self.tree, key, value)?)
    }
    fn insert_batch(&self, batch: &[(Vec<u8>, Vec<u8>)]) -> Result<()> {
        let t = self.tree;
        self.db.transaction(|tx| {
            for (k, v) in batch {
                tx.put(t, k, v)?;
            }
            Ok(())
        })?;
        Ok(())
    }
    fn read(&self, key: &[u8], out: &mut Vec<u8>) -> Result<bool> {
        let t = self.tree;
        let found = self.db.transaction(|tx| {
            tx.get(t, key, |v| {
                out.clear();
                out.extend_from_slice(v);
            })
        })?;
        Ok(found.is_some())
    }
    fn read_many(&self, keys: &[Vec<u8>]) -> Result<u64> {
        // By index, not a running count: a transaction that conflicts runs
        // again and hands over every key again.
        let mut found = vec![false; keys.len()];
        self.db.get_many(self.tree, keys, |i, v| {
            if let Some(v) = v {
                super::consume(&keys[i], v);
            }
            found[i] = v.is_some();
        })?;
        Ok(found.iter().filter(|f| **f).count() as u64)
    }
    fn batched(&self) -> bool {
        self.batched
    }
    fn update(&self, key: &[u8], value: &[u8]) -> Result<()> {
        Ok(self.db.put(self.tree, key, value)?)
    }
    fn rmw(&self, key: &[u8], modify: &mut dyn FnMut(&[u8], &mut Vec<u8>)) -> Result<bool> {
        let t = self.tree;
        let mut new = Vec::new();
        let done = self.db.transaction(|tx| {
            if tx.get(t, key, |v| modify(v, &mut new))?.is_none() {
                return Ok(false);
            }
            tx.put(t, key, &new)?;
            Ok(true)
        })?;
        Ok(done)
    }
    fn scan(&self, start: &[u8], n: usize) -> Result<usize> {
        let t = self.tree;
        let count = self.db.transaction(|tx| {
            let mut count = 0;
            tx.scan(t, Bound::Included(start), Bound::Unbounded, |k, v| {
                super::consume(k, v);
                count += 1;
                if count >= n {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            })?;
            Ok(count)
        })?;
        Ok(count)
    }
    fn commit_counters(&self) -> Option<CommitCounters> {
        Some(commit_counters(&self.db))
    }
    fn close(&self) -> Result<()> {
        self.db.checkpoint()?;
        Ok(())
    }
}
