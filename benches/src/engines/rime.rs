//! Rime's storage API (`rime_storage::Db`): one tree, every operation one
//! serializable transaction committed through the WAL. `rime-batched` is
//! the same engine with its reads and updates handed over in batches: a
//! read batch is one `Db::get_many` with the batch's page misses in flight
//! together; an update batch commits every update (each its own
//! transaction) before waiting for their durability, so they share syncs
//! as that many concurrent committers would.
//!
//! `rime-tasks` is the same engine with its clients run as tasks
//! ([`crate::tasks`]): every operation is one transaction run with
//! `Db::transaction_pending`, whose durability is called back by
//! `Pending::on_durable` (no thread waits for it; `pending.rs`), so the
//! row's thread count is the number of clients in flight on one worker
//! thread per core.

mod pending;

use crate::engine::{CommitCounters, Durability, Engine, EngineConfig, OnDone, Request, Result};
use rime_storage::{Db, Options, TreeId};
use std::path::Path;
use std::time::Duration;

pub struct RimeEngine {
    db: Db,
    tree: TreeId,
    durability: Durability,
    pool_bytes: usize,
    mode: Mode,
}

/// How the runner hands this engine its operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// `rime`: one operation per call, each blocking until durable.
    Blocking,
    /// `rime-batched`: reads and updates in batches
    /// ([`Engine::read_many`], [`Engine::update_many`]).
    Batched,
    /// `rime-tasks`: clients as tasks, operations through [`Engine::start`].
    Tasks,
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
        Self::open_with(dir, cfg, Options::default())
    }

    /// [`RimeEngine::open`] on `base` (a test's fault-injecting file
    /// opener, say) instead of the default options.
    pub fn open_with(dir: &Path, cfg: &EngineConfig, base: Options) -> Result<Self> {
        // Full-size log segments from the start, as a server runs (and as
        // the published numbers were measured): no segment creation while
        // the log grows.
        let opts = base
            .preallocate_log()
            .pool_bytes(cfg.pool_bytes)
            .max_bytes(super::region_bytes())
            .durability(storage_durability(cfg.durability));
        let db = Db::open(dir, opts)?;
        let tree = db.open_or_create_tree("usertable")?;
        Ok(RimeEngine {
            db,
            tree,
            durability: cfg.durability,
            pool_bytes: cfg.pool_bytes,
            mode: Mode::Blocking,
        })
    }

    /// The same engine as `rime-batched`.
    pub fn batched(mut self) -> Self {
        self.mode = Mode::Batched;
        self
    }

    /// The Db under test (for tests that look at its state).
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// The same engine as `rime-tasks`.
    pub fn tasks(mut self) -> Self {
        self.mode = Mode::Tasks;
        self
    }
}

impl Engine for RimeEngine {
    fn name(&self) -> &str {
        match self.mode {
            Mode::Blocking => "rime",
            Mode::Batched => "rime-batched",
            Mode::Tasks => "rime-tasks",
        }
    }
    fn describe(&self) -> String {
        let mode = match self.mode {
            Mode::Blocking => "",
            Mode::Batched => {
                "; reads and updates in batches of the row's in-flight count: a read \
             batch is one Db::get_many (one read-only transaction) with its misses \
             in flight together, an update batch one transaction per update, all \
             committed before their durability is waited for (Db::transaction_pending); \
             latency columns are per batch, not per operation"
            }
            Mode::Tasks => {
                "; clients as tasks on one thread per core, every write committed \
             with Db::transaction_pending and called back by Pending::on_durable; \
             a write's latency runs to its callback"
            }
        };
        format!(
            "rime_storage::Db, one tree; every op one serializable transaction; \
             durability {:?}; pool {} MiB; rmw = get+put in one transaction{mode}",
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
        // By index, not a running count: a batch that lost validation hands
        // over again the keys that changed.
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
        self.mode == Mode::Batched
    }
    fn tasks(&self) -> bool {
        self.mode == Mode::Tasks
    }
    /// One transaction, run here; `on_done` runs once the log is durable
    /// through what it wrote or read (on the thread that completed the
    /// sync, or on this one if it needs none), or with its error now.
    fn start(&self, req: Request<'_>, on_done: OnDone) {
        match self.start_pending(req) {
            Ok(p) => p.on_durable(move |r| on_done(r.map_err(Into::into))),
            Err(e) => on_done(Err(e.into())),
        }
    }
    fn update(&self, key: &[u8], value: &[u8]) -> Result<()> {
        Ok(self.db.put(self.tree, key, value)?)
    }
    /// Every update its own transaction, all committed before any
    /// durability is waited for (`Db::transaction_pending`): the batch's
    /// commits share the syncs, as many committers' would, on one thread.
    fn update_many(&self, keys: &[Vec<u8>], values: &[Vec<u8>]) -> Result<()> {
        let t = self.tree;
        let mut pending = Vec::with_capacity(keys.len());
        let mut first_error = None;
        for (k, v) in keys.iter().zip(values) {
            match self.db.transaction_pending(|tx| tx.put(t, k, v)) {
                Ok(p) => pending.push(p),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        // Each is waited for, even after one failed: an error is reported
        // only once every commit of the batch has an outcome.
        for p in pending {
            if let Err(e) = p.wait() {
                first_error.get_or_insert(e);
            }
        }
        match first_error {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
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
        Ok(self
            .db
            .transaction(|tx| pending::scan_in(tx, t, start, n))?)
    }
    fn commit_counters(&self) -> Option<CommitCounters> {
        Some(commit_counters(&self.db))
    }
    fn note(&self) -> Option<String> {
        (self.mode == Mode::Tasks).then(|| {
            format!(
                "threads = clients in flight as tasks on one thread per core ({})",
                crate::tasks::worker_threads(usize::MAX)
            )
        })
    }
    fn close(&self) -> Result<()> {
        self.db.checkpoint()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `rime-batched`'s update batch: every update committed and durable
    /// when `update_many` returns (read back after reopening), and the
    /// batch's commits share log syncs (one thread, `Sync` mode: one by
    /// one, each commit would be its own sync).
    #[test]
    fn a_durable_update_batch_shares_syncs_and_loses_nothing() {
        let dir = tempfile::TempDir::new().unwrap();
        let cfg = EngineConfig {
            pool_bytes: 16 << 20,
            durability: Durability::Sync,
            expected_bytes: 1 << 20,
            threads: 1,
            inflight: 64,
        };
        let keys: Vec<Vec<u8>> = (0..64u32).map(|i| i.to_be_bytes().to_vec()).collect();
        let values: Vec<Vec<u8>> = (0..64u32).map(|i| vec![i as u8; 100]).collect();
        {
            let e = RimeEngine::open(dir.path(), &cfg).unwrap().batched();
            assert!(Engine::batched(&e));
            let old: Vec<(Vec<u8>, Vec<u8>)> =
                keys.iter().map(|k| (k.clone(), b"old".to_vec())).collect();
            e.insert_batch(&old).unwrap();
            let before = e.commit_counters().unwrap();
            e.update_many(&keys, &values).unwrap();
            let after = e.commit_counters().unwrap();
            assert_eq!(after.commits - before.commits, 64);
            let per_sync = after.commits_per_sync_since(&before).unwrap();
            assert!(
                per_sync >= 8.0,
                "64 commits in flight shared {per_sync} per sync"
            );
        }
        let e = RimeEngine::open(dir.path(), &cfg).unwrap();
        let mut out = Vec::new();
        for (k, v) in keys.iter().zip(&values) {
            assert!(e.read(k, &mut out).unwrap());
            assert_eq!(&out, v);
        }
    }
}
