//! "rime-btree (no WAL)": the bare B+tree over the buffer manager, with no
//! log, no transactions and no durability at all. An upper bound for what
//! the layers above cost, not a peer of the durable engines.

use crate::engine::{Engine, EngineConfig, Result};
use rime_btree::{BTree, Direction, NoHooks};
use rime_bufmgr::io::{IoBackend, open_block_file};
use rime_bufmgr::{BufferManager, Config};
use std::ops::{Bound, ControlFlow};
use std::path::Path;
use std::sync::Arc;

pub struct BTreeEngine {
    tree: BTree,
    pool_bytes: usize,
}

impl BTreeEngine {
    pub fn open(dir: &Path, cfg: &EngineConfig) -> Result<Self> {
        let file = open_block_file(&dir.join("pages"), IoBackend::Auto)?;
        let config = Config {
            pool_bytes: cfg.pool_bytes,
            max_bytes: super::region_bytes(),
            ..Config::default()
        };
        let bm = Arc::new(BufferManager::open(file, config)?);
        let tree = BTree::create(bm, Arc::new(NoHooks))?;
        Ok(BTreeEngine {
            tree,
            pool_bytes: cfg.pool_bytes,
        })
    }
}

impl Engine for BTreeEngine {
    fn name(&self) -> &str {
        "rime-btree"
    }
    fn describe(&self) -> String {
        format!(
            "rime_btree::BTree alone: no WAL, no transactions, not durable (any mode); pool {} MiB",
            self.pool_bytes >> 20
        )
    }
    fn insert(&self, key: &[u8], value: &[u8]) -> Result<()> {
        self.tree.upsert(key, value)?;
        Ok(())
    }
    fn read(&self, key: &[u8], out: &mut Vec<u8>) -> Result<bool> {
        Ok(self.tree.get_into(key, out)?)
    }
    fn update(&self, key: &[u8], value: &[u8]) -> Result<()> {
        self.tree.upsert(key, value)?;
        Ok(())
    }
    fn rmw(&self, key: &[u8], modify: &mut dyn FnMut(&[u8], &mut Vec<u8>)) -> Result<bool> {
        let mut found = false;
        self.tree.rmw(key, |cur| {
            let cur = cur?;
            found = true;
            let mut new = Vec::with_capacity(cur.len());
            modify(cur, &mut new);
            Some(new)
        })?;
        Ok(found)
    }
    fn scan(&self, start: &[u8], n: usize) -> Result<usize> {
        let mut count = 0;
        self.tree.scan(
            (Bound::Included(start), Bound::Unbounded),
            Direction::Forward,
            |k, v| {
                super::consume(k, v);
                count += 1;
                if count >= n {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            },
        )?;
        Ok(count)
    }
}
