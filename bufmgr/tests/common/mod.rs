//! Shared set-up for the buffer manager's integration tests.
#![allow(dead_code)]

use rime_bufmgr::io::{BlockFile, FaultPlan, FaultyFile, IoBackend, open_block_file};
use rime_bufmgr::{BufferManager, Config, PAGE_SIZE, PageId, ReleasePolicy};
use std::sync::Arc;
use tempfile::TempDir;

pub struct Pool {
    pub bm: BufferManager,
    pub dir: TempDir,
}

pub fn pool(pool_pages: usize) -> Pool {
    pool_releasing(pool_pages, ReleasePolicy::Cheapest)
}

/// A pool whose evicted pages give their memory back as `release` says.
pub fn pool_releasing(pool_pages: usize, release: ReleasePolicy) -> Pool {
    let dir = TempDir::new().unwrap();
    let file = open_block_file(&dir.path().join("pages"), IoBackend::Auto).unwrap();
    Pool {
        bm: open_releasing(file, pool_pages, release),
        dir,
    }
}

pub fn open(file: Arc<dyn BlockFile>, pool_pages: usize) -> BufferManager {
    open_releasing(file, pool_pages, ReleasePolicy::Cheapest)
}

fn open_releasing(
    file: Arc<dyn BlockFile>,
    pool_pages: usize,
    release: ReleasePolicy,
) -> BufferManager {
    let config = Config {
        pool_bytes: pool_pages * PAGE_SIZE,
        max_bytes: 1 << 32,
        release,
        ..Config::default()
    };
    BufferManager::open(file, config).unwrap()
}

pub fn faulty_pool(
    pool_pages: usize,
    plan: FaultPlan,
) -> (BufferManager, Arc<FaultyFile>, TempDir) {
    let dir = TempDir::new().unwrap();
    let real = open_block_file(&dir.path().join("pages"), IoBackend::Auto).unwrap();
    let faulty = Arc::new(FaultyFile::new(real, plan));
    (open(faulty.clone(), pool_pages), faulty, dir)
}

/// Fills a payload with a pattern derived from the page id and a generation,
/// ending in a checksum, so any torn or misplaced page is detectable.
pub fn stamp(payload: &mut [u8], pid: PageId, generation: u64) {
    payload[..8].copy_from_slice(&pid.to_le_bytes());
    payload[8..16].copy_from_slice(&generation.to_le_bytes());
    let mut x = pid.wrapping_mul(31).wrapping_add(generation);
    let body_end = payload.len() - 4;
    for b in &mut payload[16..body_end] {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        *b = (x >> 56) as u8;
    }
    let crc = crc32(&payload[..body_end]);
    payload[body_end..].copy_from_slice(&crc.to_le_bytes());
}

/// Checks a stamped payload; returns its generation.
pub fn check(payload: &[u8], pid: PageId) -> Result<u64, String> {
    let body_end = payload.len() - 4;
    let crc = u32::from_le_bytes(payload[body_end..].try_into().unwrap());
    if crc != crc32(&payload[..body_end]) {
        return Err(format!("page {pid}: checksum mismatch"));
    }
    let id = u64::from_le_bytes(payload[..8].try_into().unwrap());
    if id != pid {
        return Err(format!("page {pid} holds page {id}'s contents"));
    }
    Ok(u64::from_le_bytes(payload[8..16].try_into().unwrap()))
}

fn crc32(bytes: &[u8]) -> u32 {
    // FNV-1a: independent of the pool's own crc32c, so a bug there cannot
    // hide a bug here.
    bytes.iter().fold(0x811c_9dc5u32, |h, &b| {
        (h ^ b as u32).wrapping_mul(0x0100_0193)
    })
}

/// Fails, saying why, unless the kernel has transparent huge pages in
/// `madvise` or `always` mode (Debian's default, and CI's).
pub fn require_thp() {
    let mode = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled").expect(
        "this kernel has no transparent huge pages (no /sys/kernel/mm/transparent_hugepage)",
    );
    assert!(
        !mode.contains("[never]"),
        "transparent huge pages are off on this machine ({}); these tests need `madvise` or `always`",
        mode.trim()
    );
}
