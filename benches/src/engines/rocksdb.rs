//! RocksDB through the `rocksdb` crate 0.20, linked against Debian's
//! librocksdb (see benches/README.md). Tuned as RocksDB's wiki recommends
//! for a mixed point/range workload: a shared LRU block cache of the pool
//! budget, 10-bit bloom filters, index and filter blocks in the cache,
//! `increase_parallelism` for background work, level-style compaction.
//! Durability: `nosync` → `WriteOptions::sync = false` (WAL written, not
//! synced); `group` and `sync` → `sync = true` (RocksDB groups concurrent
//! writers behind one WAL sync itself).

use crate::engine::{Durability, Engine, EngineConfig, Result};
use rocksdb::{BlockBasedOptions, Cache, DB, Options, WriteBatch, WriteOptions};
use std::path::Path;

pub struct Rocks {
    db: DB,
    sync: bool,
    // Keeps the cache alive as long as the table options refer to it.
    _cache: Cache,
}

impl Rocks {
    pub fn open(dir: &Path, cfg: &EngineConfig) -> Result<Self> {
        let cache = Cache::new_lru_cache(cfg.pool_bytes)?;
        let mut table = BlockBasedOptions::default();
        table.set_block_cache(&cache);
        table.set_bloom_filter(10.0, false);
        table.set_cache_index_and_filter_blocks(true);
        table.set_pin_l0_filter_and_index_blocks_in_cache(true);
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.increase_parallelism(2);
        opts.optimize_level_style_compaction(64 << 20);
        opts.set_block_based_table_factory(&table);
        let db = DB::open(&opts, dir.join("rocksdb"))?;
        Ok(Rocks {
            db,
            sync: cfg.durability != Durability::NoSync,
            _cache: cache,
        })
    }
    fn wo(&self) -> WriteOptions {
        let mut wo = WriteOptions::default();
        wo.set_sync(self.sync);
        wo
    }
}

impl Engine for Rocks {
    fn name(&self) -> &str {
        "rocksdb"
    }
    fn describe(&self) -> String {
        format!(
            "RocksDB (system librocksdb), LRU block cache = pool, bloom 10 bits, WAL sync={}; rmw = get then put",
            self.sync
        )
    }
    fn insert(&self, key: &[u8], value: &[u8]) -> Result<()> {
        self.db.put_opt(key, value, &self.wo())?;
        Ok(())
    }
    fn insert_batch(&self, batch: &[(Vec<u8>, Vec<u8>)]) -> Result<()> {
        let mut b = WriteBatch::default();
        for (k, v) in batch {
            b.put(k, v);
        }
        self.db.write_opt(b, &self.wo())?;
        Ok(())
    }
    fn read(&self, key: &[u8], out: &mut Vec<u8>) -> Result<bool> {
        Ok(super::copy_value(self.db.get_pinned(key)?, out))
    }
    fn scan(&self, start: &[u8], n: usize) -> Result<usize> {
        let mut it = self.db.raw_iterator();
        it.seek(start);
        let mut count = 0;
        while count < n && it.valid() {
            if let (Some(k), Some(v)) = (it.key(), it.value()) {
                super::consume(k, v);
            }
            count += 1;
            it.next();
        }
        it.status()?;
        Ok(count)
    }
    fn close(&self) -> Result<()> {
        self.db.flush_wal(true)?;
        Ok(())
    }
}
