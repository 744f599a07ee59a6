//! LMDB through heed. One environment, one named database; writers
//! serialise on LMDB's single write lock. Configured per LMDB's docs for a
//! random-access benchmark: `NO_READAHEAD` (random reads on a large map),
//! a map sized for the data, and for `nosync` `NO_SYNC` (commits are not
//! flushed; LMDB's "benchmarks only" setting, the same trade as Rime's
//! NoSync). `group` and `sync` are LMDB's default fsync per commit (LMDB
//! has no group commit). LMDB has no cache of its own: the pool budget does
//! not apply; it reads through the OS page cache.

use crate::engine::{Durability, Engine, EngineConfig, Result};
use heed::types::Bytes;
use heed::{CommitOrAbort, Database, Env, EnvFlags, EnvOpenOptions};
use std::ops::Bound;
use std::path::Path;

/// Reader slots beyond one per worker thread (load threads, the harness).
const READER_SLOTS_SPARE: usize = 64;

pub struct Lmdb {
    env: Env,
    db: Database<'static, Bytes, Bytes>,
    durability: Durability,
}

impl Lmdb {
    #[allow(unsafe_code)] // heed's flags and open, see the SAFETY comments
    pub fn open(dir: &Path, cfg: &EngineConfig) -> Result<Self> {
        // Room for the data with B+tree overhead, page-aligned.
        let map = ((cfg.expected_bytes * 4).max(1 << 30) as usize).next_multiple_of(4096);
        let mut opts = EnvOpenOptions::new();
        // A reader slot per thread that reads (held until the thread ends),
        // so 1024 worker threads need more than LMDB's default 126.
        let readers = (cfg.threads + READER_SLOTS_SPARE).max(256) as u32;
        opts.map_size(map).max_dbs(4).max_readers(readers);
        let mut flags = EnvFlags::NO_READ_AHEAD;
        if cfg.durability == Durability::NoSync {
            flags |= EnvFlags::NO_SYNC;
        }
        // SAFETY: flags documented by LMDB; NO_SYNC only weakens durability.
        unsafe { opts.flags(flags) };
        // SAFETY: the directory is fresh and opened by this process once.
        let env = unsafe { opts.open(dir)? };
        // heed 0.23 hands out a database that outlives its transaction
        // only through a commit of the transaction that opened it.
        let w = env.write_txn()?;
        let db = env
            .create_databases_and_commit(w, |opener, w| {
                let db = opener.create_database::<Bytes, Bytes>(w, Some("usertable"))?;
                Ok::<_, heed::Error>(CommitOrAbort::<_, ()>::Commit(db))
            })?
            .unwrap_commit();
        Ok(Lmdb {
            env,
            db,
            durability: cfg.durability,
        })
    }
}

impl Engine for Lmdb {
    fn name(&self) -> &str {
        "lmdb"
    }
    fn describe(&self) -> String {
        format!(
            "heed (LMDB), NO_READAHEAD{}; no own cache (OS page cache); rmw in one write txn",
            if self.durability == Durability::NoSync {
                ", NO_SYNC"
            } else {
                ", fsync per commit"
            }
        )
    }
    fn insert(&self, key: &[u8], value: &[u8]) -> Result<()> {
        let mut w = self.env.write_txn()?;
        self.db.put(&mut w, key, value)?;
        w.commit()?;
        Ok(())
    }
    fn insert_batch(&self, batch: &[(Vec<u8>, Vec<u8>)]) -> Result<()> {
        let mut w = self.env.write_txn()?;
        for (k, v) in batch {
            self.db.put(&mut w, k, v)?;
        }
        w.commit()?;
        Ok(())
    }
    fn read(&self, key: &[u8], out: &mut Vec<u8>) -> Result<bool> {
        let r = self.env.read_txn()?;
        Ok(super::copy_value(self.db.get(&r, key)?, out))
    }
    fn rmw(&self, key: &[u8], modify: &mut dyn FnMut(&[u8], &mut Vec<u8>)) -> Result<bool> {
        let mut w = self.env.write_txn()?;
        let mut new = Vec::new();
        match self.db.get(&w, key)? {
            Some(v) => modify(v, &mut new),
            None => return Ok(false),
        }
        self.db.put(&mut w, key, &new)?;
        w.commit()?;
        Ok(true)
    }
    fn scan(&self, start: &[u8], n: usize) -> Result<usize> {
        let r = self.env.read_txn()?;
        let range = (Bound::Included(start), Bound::Unbounded);
        let mut count = 0;
        for kv in self.db.range(&r, &range)?.take(n) {
            let (k, v) = kv?;
            super::consume(k, v);
            count += 1;
        }
        Ok(count)
    }
    fn close(&self) -> Result<()> {
        self.env.force_sync()?;
        Ok(())
    }
}
