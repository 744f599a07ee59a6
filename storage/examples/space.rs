//! Space a YCSB load takes in a `Db` (issue 16's space goal; `docs/btree.md`,
//! "Split rule"): loads `records` YCSB records (`"user" + fnvhash64(n)`
//! keys in the order of `n`, 1024-byte values) in transactions of about
//! 256 KiB, as `rime-bench`'s load does, into a pool of `pool_mib` MiB,
//! checkpoints, and prints the pages allocated against the logical size
//! (keys + values).
//!
//! ```text
//! cargo run --release -p rime-storage --example space -- [records] [pool_mib] [dir]
//! ```
//!
//! The `ltm` preset is 600000 records (599 MiB) with a 199 MiB pool of
//! which Rime's buffer pool gets 135 MiB; `space 600000 135` is that load.
//! `dir` (default: a temporary directory) must hold the data and the log.

use rime_storage::{Db, Durability, Options};
use rime_ycsb::user_key;
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, d: u64| args.get(i).and_then(|s| s.parse().ok()).unwrap_or(d);
    let (records, pool_mib) = (arg(0, 600_000), arg(1, 135) as usize);
    let tmp = tempfile::TempDir::new_in(args.get(2).map_or(".", String::as_str))?;
    let opts = Options::default()
        .pool_bytes(pool_mib << 20)
        .max_bytes(8 << 30)
        .durability(Durability::NoSync);
    let db = Db::open(tmp.path(), opts)?;
    let tree = db.create_tree("usertable")?;
    let value = vec![0x5Au8; 1024];
    let per_batch = (256 << 10) / (1024 + 23);
    let (mut logical, mut n) = (0u64, 0u64);
    let started = Instant::now();
    while n < records {
        let hi = (n + per_batch as u64).min(records);
        let keys: Vec<Vec<u8>> = (n..hi).map(user_key).collect();
        logical += keys
            .iter()
            .map(|k| (k.len() + value.len()) as u64)
            .sum::<u64>();
        db.transaction(|tx| {
            for k in &keys {
                tx.put(tree, k, &value)?;
            }
            Ok(())
        })?;
        n = hi;
    }
    let load = started.elapsed();
    db.checkpoint()?;
    let s = db.stats();
    let bytes = s.allocated_pages * rime_bufmgr::PAGE_SIZE as u64;
    println!(
        "{records} records in {load:.1?}: {} pages allocated ({:.1} MiB) for {:.1} MiB \
         of keys and values: {:.3}x; pool {pool_mib} MiB, {} evictions; {:.0} MiB logged",
        s.allocated_pages,
        bytes as f64 / (1 << 20) as f64,
        logical as f64 / (1 << 20) as f64,
        bytes as f64 / logical as f64,
        s.pool.evictions,
        s.log_bytes as f64 / (1 << 20) as f64,
    );
    db.close()?;
    Ok(())
}
