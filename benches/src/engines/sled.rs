//! sled 0.34: the default tree. Durability per sled's docs: `nosync` →
//! the default background flush every 500 ms; `group` and `sync` →
//! `Db::flush()` after each write. Page cache = the pool budget.

use crate::engine::{Durability, Engine, EngineConfig, Result};
use std::path::Path;

pub struct Sled {
    db: sled::Db,
    sync: bool,
}

impl Sled {
    pub fn open(dir: &Path, cfg: &EngineConfig) -> Result<Self> {
        let db = sled::Config::new()
            .path(dir.join("sled"))
            .cache_capacity(cfg.pool_bytes as u64)
            .open()?;
        Ok(Sled {
            db,
            sync: cfg.durability != Durability::NoSync,
        })
    }
    fn flush(&self) -> Result<()> {
        if self.sync {
            self.db.flush()?;
        }
        Ok(())
    }
}

impl Engine for Sled {
    fn name(&self) -> &str {
        "sled"
    }
    fn describe(&self) -> String {
        format!(
            "sled 0.34, {}; rmw = get then insert",
            if self.sync {
                "flush() per write"
            } else {
                "default 500 ms background flush"
            }
        )
    }
    fn insert(&self, key: &[u8], value: &[u8]) -> Result<()> {
        self.db.insert(key, value)?;
        self.flush()
    }
    fn insert_batch(&self, batch: &[(Vec<u8>, Vec<u8>)]) -> Result<()> {
        let mut b = sled::Batch::default();
        for (k, v) in batch {
            b.insert(k.as_slice(), v.as_slice());
        }
        self.db.apply_batch(b)?;
        self.flush()
    }
    fn read(&self, key: &[u8], out: &mut Vec<u8>) -> Result<bool> {
        Ok(super::copy_value(self.db.get(key)?, out))
    }
    fn scan(&self, start: &[u8], n: usize) -> Result<usize> {
        let mut count = 0;
        for kv in self.db.range(start..).take(n) {
            let (k, v) = kv?;
            super::consume(&k, &v);
            count += 1;
        }
        Ok(count)
    }
    fn close(&self) -> Result<()> {
        self.db.flush()?;
        Ok(())
    }
}
