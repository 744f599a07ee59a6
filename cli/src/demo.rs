//! `rime demo`: threads sharing a persistent B+tree, larger than memory.
//!
//! 1. Open (or create) the data directory: the page file, the tree's root.
//! 2. Count this run in the tree (a read-modify-write), so a second run
//!    shows the state carried over.
//! 3. Threads increment one shared counter concurrently; the total must be
//!    exact (the increments are atomic under the leaf's exclusive latch).
//! 4. Threads insert records until the data is several times the memory
//!    budget, so pages are evicted and reloaded while they work.
//! 5. `verify()` walks the whole tree and checks every invariant.
//! 6. Flush every dirty page and `fdatasync`; print the pool's counters.
//!
//! Without the write-ahead log (issue 4) a crash in the middle of a run can
//! lose that run's changes; the demo says so and verifies on every start.

use crate::default_data_dir;
use rime_btree::{BTree, NoHooks};
use rime_bufmgr::io::{open_block_file, IoBackend};
use rime_bufmgr::{BufferManager, Config, PAGE_SIZE};
use std::error::Error;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// The pool budget: small on purpose, so the demo's data outgrows it.
const DEMO_POOL_BYTES: usize = 4 << 20;
/// Record value size: vmcache's "small" tuples.
const RECORD_VALUE_BYTES: usize = 120;
const COUNTER_KEY: &[u8] = b"demo/counter";
const RUNS_KEY: &[u8] = b"demo/runs";

#[derive(clap::Args)]
pub struct Args {
    /// Data directory (created if missing).
    #[arg(long, default_value_os_t = default_data_dir())]
    data: PathBuf,
    /// Threads sharing the tree.
    #[arg(long, default_value_t = 8)]
    threads: usize,
    /// Counter increments per thread.
    #[arg(long, default_value_t = 5_000)]
    increments: u64,
    /// Records inserted per run.
    #[arg(long, default_value_t = 100_000)]
    records: u64,
}

type Result<T> = std::result::Result<T, Box<dyn Error + Send + Sync>>;

pub fn run(args: &Args) -> Result<()> {
    if args.threads == 0 {
        return Err("--threads must be at least 1".into());
    }
    let started = Instant::now();
    // Step 1.
    let (bm, tree) = open(&args.data)?;
    println!("rime demo: the storage layers (the faaslet runtime is not built yet)");
    println!(
        "data directory {}: {} pages on disk, pool budget {} MiB",
        args.data.display(),
        bm.allocated_pages(),
        DEMO_POOL_BYTES >> 20
    );

    // Step 2.
    let run_number = increment(&tree, RUNS_KEY, 1)?;
    println!("run {run_number} on this directory");

    // Step 3.
    let before = read_i64(&tree, COUNTER_KEY)?;
    let t = Instant::now();
    std::thread::scope(|s| -> Result<()> {
        let workers: Vec<_> = (0..args.threads)
            .map(|_| {
                s.spawn(|| {
                    (0..args.increments)
                        .try_for_each(|_| increment(&tree, COUNTER_KEY, 1).map(drop))
                })
            })
            .collect();
        for w in workers {
            w.join()
                .map_err(|_| "a counter thread panicked")?
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    })?;
    let after = read_i64(&tree, COUNTER_KEY)?;
    let expected = before + (args.threads as u64 * args.increments) as i64;
    check(
        after == expected,
        &format!(
            "counter {before} -> {after} after {} x {} concurrent increments ({:.0?})",
            args.threads,
            args.increments,
            t.elapsed()
        ),
    )?;

    // Step 4.
    let t = Instant::now();
    let per_thread = args.records / args.threads as u64;
    std::thread::scope(|s| -> Result<()> {
        let workers: Vec<_> = (0..args.threads as u64)
            .map(|thread| {
                let tree = &tree;
                s.spawn(move || {
                    let value = [thread as u8; RECORD_VALUE_BYTES];
                    (0..per_thread).try_for_each(|i| {
                        let key = format!("demo/record/{run_number:04}/{thread:02}/{i:08}");
                        tree.upsert(key.as_bytes(), &value).map(drop)
                    })
                })
            })
            .collect();
        for w in workers {
            w.join()
                .map_err(|_| "an insert thread panicked")?
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    })?;
    let inserted = per_thread * args.threads as u64;
    println!(
        "inserted {inserted} records of {RECORD_VALUE_BYTES} bytes from {} threads in {:.0?}",
        args.threads,
        t.elapsed()
    );

    // Step 5.
    let stats = tree.verify()?;
    let data_bytes = (stats.leaves + stats.inner_nodes) * PAGE_SIZE as u64;
    check(
        stats.entries >= run_number as u64 * inserted,
        &format!(
            "verify: {} entries in {} leaves, depth {}, {:.1} MiB of tree = {:.1}x the pool budget",
            stats.entries,
            stats.leaves,
            stats.depth,
            data_bytes as f64 / (1 << 20) as f64,
            data_bytes as f64 / DEMO_POOL_BYTES as f64
        ),
    )?;

    // Step 6.
    let written = bm.flush_dirty()?;
    bm.sync()?;
    let s = bm.stats();
    println!("flushed {written} dirty pages and synced");
    println!(
        "pool: {} hits, {} misses, {} evictions, {} write-backs, {} optimistic restarts ({} by the fault guard)",
        s.hits, s.misses, s.evictions, s.write_backs, s.restarts, s.faults
    );
    println!(
        "done in {:.1?}; run it again to see the state carried over",
        started.elapsed()
    );
    Ok(())
}

fn open(dir: &Path) -> Result<(Arc<BufferManager>, BTree)> {
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let file = open_block_file(&dir.join("pages.db"), IoBackend::Auto)?;
    let config = Config {
        pool_bytes: DEMO_POOL_BYTES,
        max_bytes: 1 << 36,
        ..Config::default()
    };
    let bm = Arc::new(BufferManager::open(file, config)?);
    let root_file = dir.join("demo-root");
    let tree = match std::fs::read_to_string(&root_file) {
        Ok(text) => {
            let root = text
                .trim()
                .parse()
                .map_err(|_| format!("{}: not a page id: {text:?}", root_file.display()))?;
            let tree = BTree::open(bm.clone(), root, Arc::new(NoHooks))?;
            tree.verify().map_err(|e| format!("the tree in {} is damaged ({e}); a crash without the WAL can do that: delete the directory to start over", dir.display()))?;
            tree
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let tree = BTree::create(bm.clone(), Arc::new(NoHooks))?;
            // The root must reach the disk before the file naming it.
            bm.flush_dirty()?;
            bm.sync()?;
            std::fs::write(&root_file, tree.root().to_string())?;
            tree
        }
        Err(e) => return Err(format!("{}: {e}", root_file.display()).into()),
    };
    Ok((bm, tree))
}

/// Adds `delta` to the little-endian i64 at `key` (absent counts as 0);
/// returns the new value. Atomic: the tree runs it under the leaf's latch.
fn increment(tree: &BTree, key: &[u8], delta: i64) -> Result<i64> {
    let mut new = 0;
    tree.rmw(key, |old| {
        let old = old
            .and_then(|v| v.try_into().ok())
            .map_or(0, i64::from_le_bytes);
        new = old + delta;
        Some(new.to_le_bytes().to_vec())
    })?;
    Ok(new)
}

fn read_i64(tree: &BTree, key: &[u8]) -> Result<i64> {
    Ok(tree
        .get(key, |v| v.try_into().map(i64::from_le_bytes).unwrap_or(0))?
        .unwrap_or(0))
}

fn check(ok: bool, what: &str) -> Result<()> {
    println!("{} {what}", if ok { "ok  " } else { "FAIL" });
    if ok {
        Ok(())
    } else {
        Err(format!("check failed: {what}").into())
    }
}
