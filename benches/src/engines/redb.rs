//! redb: one table; every operation its own transaction. Durability per
//! redb's docs: `nosync` → `Durability::None` (commit without fsync; redb
//! says such commits become durable with the next durable one), `group`
//! and `sync` → `Durability::Immediate` (fsync per commit; redb has no
//! group commit). Cache: `Builder::set_cache_size(pool budget)`.

use crate::engine::{Durability, Engine, EngineConfig, Result};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use std::path::Path;

const TABLE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("usertable");

pub struct Redb {
    db: Database,
    durability: redb::Durability,
}

impl Redb {
    pub fn open(dir: &Path, cfg: &EngineConfig) -> Result<Self> {
        let db = redb::Builder::new()
            .set_cache_size(cfg.pool_bytes)
            .create(dir.join("redb"))?;
        let w = db.begin_write()?;
        w.open_table(TABLE)?;
        w.commit()?;
        let durability = match cfg.durability {
            Durability::NoSync => redb::Durability::None,
            Durability::Group | Durability::Sync => redb::Durability::Immediate,
        };
        Ok(Redb { db, durability })
    }

    fn write(
        &self,
        f: impl FnOnce(&mut redb::Table<&[u8], &[u8]>) -> Result<bool>,
    ) -> Result<bool> {
        let mut w = self.db.begin_write()?;
        w.set_durability(self.durability)?;
        let r = {
            let mut t = w.open_table(TABLE)?;
            f(&mut t)?
        };
        w.commit()?;
        Ok(r)
    }
}

impl Engine for Redb {
    fn name(&self) -> &str {
        "redb"
    }
    fn describe(&self) -> String {
        format!(
            "redb, {:?} per commit; rmw in one write txn",
            self.durability
        )
    }
    fn insert(&self, key: &[u8], value: &[u8]) -> Result<()> {
        self.write(|t| {
            t.insert(key, value)?;
            Ok(true)
        })?;
        Ok(())
    }
    fn insert_batch(&self, batch: &[(Vec<u8>, Vec<u8>)]) -> Result<()> {
        self.write(|t| {
            for (k, v) in batch {
                t.insert(k.as_slice(), v.as_slice())?;
            }
            Ok(true)
        })?;
        Ok(())
    }
    fn read(&self, key: &[u8], out: &mut Vec<u8>) -> Result<bool> {
        let r = self.db.begin_read()?;
        let t = r.open_table(TABLE)?;
        // Not `copy_value`: the value borrows from redb's guard, which an
        // `Option::map` could not hand out without an extra copy.
        Ok(match t.get(key)? {
            Some(v) => {
                out.clear();
                out.extend_from_slice(v.value());
                true
            }
            None => false,
        })
    }
    fn rmw(&self, key: &[u8], modify: &mut dyn FnMut(&[u8], &mut Vec<u8>)) -> Result<bool> {
        self.write(|t| {
            let mut new = Vec::new();
            match t.get(key)? {
                Some(v) => modify(v.value(), &mut new),
                None => return Ok(false),
            }
            t.insert(key, new.as_slice())?;
            Ok(true)
        })
    }
    fn scan(&self, start: &[u8], n: usize) -> Result<usize> {
        let r = self.db.begin_read()?;
        let t = r.open_table(TABLE)?;
        let mut count = 0;
        for kv in t.range(start..)?.take(n) {
            let (k, v) = kv?;
            super::consume(k.value(), v.value());
            count += 1;
        }
        Ok(count)
    }
    fn close(&self) -> Result<()> {
        // One durable commit makes the non-durable ones before it durable.
        let mut w = self.db.begin_write()?;
        w.set_durability(redb::Durability::Immediate)?;
        w.commit()?;
        Ok(())
    }
}
