//! Shared set-up for the tree's integration tests: a real buffer manager
//! over a real file in a temporary directory.
#![allow(dead_code)]

use rime_btree::{BTree, NoHooks};
use rime_bufmgr::io::{IoBackend, open_block_file};
use rime_bufmgr::{BufferManager, Config, PAGE_SIZE};
use std::sync::Arc;
use tempfile::TempDir;

pub struct Pool {
    pub bm: Arc<BufferManager>,
    pub dir: TempDir,
}

pub fn pool(pool_pages: usize) -> Pool {
    let dir = TempDir::new().unwrap();
    let file = open_block_file(&dir.path().join("pages"), IoBackend::Auto).unwrap();
    let config = Config {
        pool_bytes: pool_pages * PAGE_SIZE,
        max_bytes: 1 << 34,
        ..Config::default()
    };
    Pool {
        bm: Arc::new(BufferManager::open(file, config).unwrap()),
        dir,
    }
}

pub fn tree(p: &Pool) -> BTree {
    BTree::create(p.bm.clone(), Arc::new(NoHooks)).unwrap()
}

/// `RIME_STRESS_SCALE` (default 1) multiplies the work of the big tests.
pub fn scale() -> usize {
    std::env::var("RIME_STRESS_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
}

/// A small, fast, seedable generator (xorshift64*), so failures replay.
pub struct Rng(pub u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// A value whose bytes derive from (seed, len), so corruption is visible.
pub fn value(seed: u64, len: usize) -> Vec<u8> {
    let mut r = Rng::new(seed);
    (0..len).map(|_| r.next() as u8).collect()
}
