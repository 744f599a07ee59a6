//! RocksDB through the `rocksdb` crate 0.20, linked against Debian's
//! librocksdb (see benches/README.md). Tuned as RocksDB's wiki recommends
//! for a mixed point/range workload: a shared LRU block cache of the pool
//! budget, 10-bit bloom filters, index and filter blocks in the cache,
//! `increase_parallelism` for background work, level-style compaction.
//! Durability: `nosync` → `WriteOptions::sync = false` (WAL written, not
//! synced); `group` and `sync` → `sync = true` (RocksDB groups concurrent
//! writers behind one WAL sync itself). In those two, RocksDB's statistics
//! are on, for commits per sync (tickers `rocksdb.write.self` +
//! `rocksdb.write.other` over `rocksdb.wal.synced`).

use crate::engine::{CommitCounters, Durability, Engine, EngineConfig, Result};
use rocksdb::{BlockBasedOptions, Cache, DB, Options, WriteBatch, WriteOptions};
use std::path::Path;

pub struct Rocks {
    db: DB,
    sync: bool,
    /// Holds the statistics object (durable modes).
    opts: Options,
    /// Which librocksdb runs, read off its LOG and this process's maps.
    library: String,
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
        let sync = cfg.durability != Durability::NoSync;
        if sync {
            opts.enable_statistics();
        }
        let db = DB::open(&opts, dir.join("rocksdb"))?;
        Ok(Rocks {
            db,
            sync,
            opts,
            library: library(&dir.join("rocksdb")),
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
            "RocksDB ({}), LRU block cache = pool, bloom 10 bits, WAL sync={}; rmw = get then put",
            self.library, self.sync
        )
    }
    fn note(&self) -> Option<String> {
        Some(format!("{}; WriteOptions sync={}", self.library, self.sync))
    }
    fn commit_counters(&self) -> Option<CommitCounters> {
        let stats = self.opts.get_statistics()?;
        let commits =
            ticker(&stats, "rocksdb.write.self")? + ticker(&stats, "rocksdb.write.other")?;
        Some(CommitCounters {
            commits,
            log_syncs: ticker(&stats, "rocksdb.wal.synced")?,
        })
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

/// Ticker `name`'s count in RocksDB's statistics dump (`name COUNT : n`).
fn ticker(stats: &str, name: &str) -> Option<u64> {
    stats.lines().find_map(|l| {
        let rest = l.strip_prefix(name)?.trim_start().strip_prefix("COUNT :")?;
        rest.trim().parse().ok()
    })
}

/// "Debian's librocksdb 7.8.3" and the like: the version from the LOG
/// RocksDB writes at open, and whose shared library this process mapped
/// (`/usr/lib/...` is the distribution's; none mapped: linked statically).
fn library(db_dir: &Path) -> String {
    let log = std::fs::read_to_string(db_dir.join("LOG")).unwrap_or_default();
    let version = log
        .lines()
        .find_map(|l| l.split("RocksDB version: ").nth(1))
        .map_or("?".to_string(), |v| v.trim().to_string());
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
    let so = maps
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .find(|p| p.contains("librocksdb.so"));
    match so {
        Some(p) if p.starts_with("/usr/lib/") => format!("Debian's librocksdb {version} ({p})"),
        Some(p) => format!("librocksdb {version} ({p})"),
        None => format!("librocksdb {version} (linked statically)"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn tickers_are_read_off_the_statistics_dump() {
        let dump = "rocksdb.block.cache.miss COUNT : 3\n\
                    rocksdb.wal.synced COUNT : 17\n\
                    rocksdb.wal.bytes COUNT : 4096\n\
                    rocksdb.write.self COUNT : 20\n";
        assert_eq!(super::ticker(dump, "rocksdb.wal.synced"), Some(17));
        assert_eq!(super::ticker(dump, "rocksdb.write.self"), Some(20));
        assert_eq!(super::ticker(dump, "rocksdb.write.other"), None);
        assert_eq!(super::ticker(dump, "rocksdb.wal"), None);
    }
}
