//! A small tree over a real page file, for the crate's unit tests.

use crate::{BTree, NoHooks};
use rime_bufmgr::io::{IoBackend, open_block_file};
use rime_bufmgr::{BufferManager, Config, MIN_POOL_PAGES, PAGE_SIZE};
use std::sync::Arc;

/// A new tree in a pool of the smallest size, its file in a temporary
/// directory that lives as long as the returned guard.
pub(crate) fn small_tree() -> (tempfile::TempDir, Arc<BufferManager>, BTree) {
    let dir = tempfile::TempDir::new().unwrap();
    let file = open_block_file(&dir.path().join("pages"), IoBackend::Auto).unwrap();
    let config = Config {
        pool_bytes: MIN_POOL_PAGES * PAGE_SIZE,
        max_bytes: 1 << 30,
        ..Config::default()
    };
    let bm = Arc::new(BufferManager::open(file, config).unwrap());
    let tree = BTree::create(bm.clone(), Arc::new(NoHooks)).unwrap();
    (dir, bm, tree)
}
