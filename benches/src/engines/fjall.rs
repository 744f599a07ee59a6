//! fjall 3 (LSM): one database, one keyspace. Durability per fjall's docs:
//! `nosync` → the default (journal written to OS buffers, no fsync on
//! write); `group` and `sync` → `Keyspace::persist(PersistMode::SyncData)`
//! after each write. Block cache = the pool budget.

use crate::engine::{Durability, Engine, EngineConfig, Result};
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use std::path::Path;

pub struct Fjall {
    ks: Database,
    part: Keyspace,
    sync: bool,
}

impl Fjall {
    pub fn open(dir: &Path, cfg: &EngineConfig) -> Result<Self> {
        let ks = Database::builder(dir.join("fjall"))
            .cache_size(cfg.pool_bytes as u64)
            .open()?;
        let part = ks.keyspace("usertable", KeyspaceCreateOptions::default)?;
        Ok(Fjall {
            ks,
            part,
            sync: cfg.durability != Durability::NoSync,
        })
    }
    fn persist(&self) -> Result<()> {
        if self.sync {
            self.ks.persist(PersistMode::SyncData)?;
        }
        Ok(())
    }
}

impl Engine for Fjall {
    fn name(&self) -> &str {
        "fjall"
    }
    fn describe(&self) -> String {
        format!(
            "fjall 3, one partition, {}; rmw = get then insert",
            if self.sync {
                "persist(SyncData) per write"
            } else {
                "no fsync on write"
            }
        )
    }
    fn insert(&self, key: &[u8], value: &[u8]) -> Result<()> {
        self.part.insert(key, value)?;
        self.persist()
    }
    fn insert_batch(&self, batch: &[(Vec<u8>, Vec<u8>)]) -> Result<()> {
        let mut b = self.ks.batch();
        for (k, v) in batch {
            b.insert(&self.part, k.as_slice(), v.as_slice());
        }
        b.commit()?;
        self.persist()
    }
    fn read(&self, key: &[u8], out: &mut Vec<u8>) -> Result<bool> {
        Ok(super::copy_value(self.part.get(key)?, out))
    }
    fn scan(&self, start: &[u8], n: usize) -> Result<usize> {
        let mut count = 0;
        for kv in self.part.range(start.to_vec()..).take(n) {
            let (k, v) = kv.into_inner()?;
            super::consume(&k, &v);
            count += 1;
        }
        Ok(count)
    }
    fn close(&self) -> Result<()> {
        self.ks.persist(PersistMode::SyncAll)?;
        Ok(())
    }
}
