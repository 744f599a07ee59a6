//! Measurement probes for `docs/btree.md` (issue 16): leaf fill after
//! ascending, descending and random loads, and the cost of scans.
//!
//! ```text
//! cargo run --release -p rime-btree --example probe -- fill
//! cargo run --release -p rime-btree --example probe -- scan [records] [scans] [len]
//! valgrind --tool=callgrind --toggle-collect='*probe*run_scans*' \
//!     target/release/examples/probe scan 20000 2000 50
//! cargo run --release -p rime-btree --example probe -- insert [records] [value_len] [ascending]
//! valgrind --tool=callgrind --toggle-collect='*probe*run_inserts*' \
//!     target/release/examples/probe insert 20000 1032
//! ```
//!
//! `insert` loads `records` YCSB keys in hashed order (a random load; or
//! `key%012d` keys in ascending order) with `value_len`-byte values and reports the time per insert and the tree's
//! shape: the insert path's cost, splits and all.
//!
//! `scan` loads YCSB-sized records (`"user" + fnvhash64(n)` keys, hashed
//! order, 1032-byte values: 1 KiB plus `rime-storage`'s 8-byte version)
//! and runs scans of `len` entries from random keys, half forward, half
//! backward (YCSB E draws the length uniformly from 1..=100: 50 on
//! average). The pool holds everything; `max_bytes` is 1 GiB so that
//! valgrind can map the region.

use rime_btree::{BTree, Direction, NoHooks, node::NODE_SIZE};
use rime_bufmgr::io::{IoBackend, open_block_file};
use rime_bufmgr::{BufferManager, Config, PAGE_SIZE};
use rime_ycsb::user_key;
use std::ops::{Bound, ControlFlow};
use std::sync::Arc;
use std::time::Instant;

fn pool(bytes: usize) -> (Arc<BufferManager>, tempfile::TempDir) {
    let dir = tempfile::TempDir::new().unwrap();
    let file = open_block_file(&dir.path().join("pages"), IoBackend::Auto).unwrap();
    let config = Config {
        pool_bytes: bytes,
        max_bytes: 1 << 30,
        ..Config::default()
    };
    (Arc::new(BufferManager::open(file, config).unwrap()), dir)
}

fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

fn fill() {
    println!(
        "{:<11} {:>6} {:>8} {:>7} {:>7} {:>10} {:>11} {:>12}",
        "order", "value", "entries", "leaves", "inner", "per leaf", "leaf fill", "pages/data"
    );
    for value_len in [100usize, 1032] {
        for order in ["ascending", "descending", "random", "ycsb"] {
            let n: u64 = if value_len > 500 { 20_000 } else { 100_000 };
            let (bm, _dir) = pool(256 << 20);
            let tree = BTree::create(bm, Arc::new(NoHooks)).unwrap();
            let value = vec![0x5A; value_len];
            let mut logical = 0u64;
            for i in 0..n {
                let key = match order {
                    "ascending" => format!("key{i:012}").into_bytes(),
                    "descending" => format!("key{:012}", n - 1 - i).into_bytes(),
                    "random" => format!("key{:012}", mix(i) % 1_000_000_000_000).into_bytes(),
                    _ => user_key(i),
                };
                logical += (key.len() + value_len) as u64;
                tree.upsert(&key, &value).unwrap();
            }
            let s = tree.verify().unwrap();
            let pages = s.leaves + s.inner_nodes;
            println!(
                "{:<11} {:>6} {:>8} {:>7} {:>7} {:>10.2} {:>10.1}% {:>12.2}",
                order,
                value_len,
                s.entries,
                s.leaves,
                s.inner_nodes,
                s.entries as f64 / s.leaves as f64,
                100.0 * s.leaf_used_bytes as f64 / (s.leaves as f64 * NODE_SIZE as f64),
                (pages * PAGE_SIZE as u64) as f64 / logical as f64,
            );
        }
    }
}

/// Runs `scans` scans of `len` entries; returns the entries seen.
#[inline(never)]
fn run_scans(tree: &BTree, records: u64, scans: u64, len: usize) -> u64 {
    let mut seen = 0u64;
    let mut seed = 11;
    for i in 0..scans {
        seed = mix(seed);
        let start = user_key(seed % records);
        let mut left = len;
        let mut f = |_: &[u8], v: &[u8]| {
            std::hint::black_box(v);
            seen += 1;
            left -= 1;
            if left == 0 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        };
        if i % 2 == 0 {
            let range = (Bound::Included(&start[..]), Bound::Unbounded);
            tree.scan(range, Direction::Forward, &mut f).unwrap();
        } else {
            let range = (Bound::Unbounded, Bound::Included(&start[..]));
            tree.scan(range, Direction::Backward, &mut f).unwrap();
        }
    }
    seen
}

fn scan(args: &[String]) {
    let arg = |i: usize, d: u64| args.get(i).and_then(|s| s.parse().ok()).unwrap_or(d);
    let (records, scans, len) = (arg(0, 50_000), arg(1, 20_000), arg(2, 50) as usize);
    let (bm, _dir) = pool((records as usize * 3000).max(64 << 20));
    let tree = BTree::create(bm, Arc::new(NoHooks)).unwrap();
    let value = vec![0x5A; 1032];
    for i in 0..records {
        tree.insert(&user_key(i), &value).unwrap();
    }
    let s = tree.verify().unwrap();
    eprintln!(
        "{records} records, {} leaves ({:.2} per leaf), depth {}",
        s.leaves,
        records as f64 / s.leaves as f64,
        s.depth
    );
    let started = Instant::now();
    let seen = run_scans(&tree, records, scans, len);
    let t = started.elapsed();
    println!(
        "{scans} scans of {len}: {seen} entries in {t:.2?}: {:.0} scans/s, {:.2} µs/scan",
        scans as f64 / t.as_secs_f64(),
        t.as_secs_f64() * 1e6 / scans as f64
    );
}

/// Inserts YCSB keys `0..records` in hashed order, or `key%012d` keys in
/// ascending order.
#[inline(never)]
fn run_inserts(tree: &BTree, records: u64, value: &[u8], ascending: bool) {
    for i in 0..records {
        let key = if ascending {
            format!("key{i:012}").into_bytes()
        } else {
            user_key(i)
        };
        tree.insert(&key, value).unwrap();
    }
}

fn insert(args: &[String]) {
    let arg = |i: usize, d: u64| args.get(i).and_then(|s| s.parse().ok()).unwrap_or(d);
    let (records, value_len) = (arg(0, 50_000), arg(1, 1032) as usize);
    let (bm, _dir) = pool((records as usize * (value_len + 200) * 3).max(64 << 20));
    let tree = BTree::create(bm, Arc::new(NoHooks)).unwrap();
    let value = vec![0x5A; value_len];
    let started = Instant::now();
    let ascending = args.get(2).is_some_and(|o| o == "ascending");
    run_inserts(&tree, records, &value, ascending);
    let t = started.elapsed();
    let s = tree.verify().unwrap();
    println!(
        "{records} inserts of {value_len} B in {t:.2?}: {:.3} µs/insert; {} leaves ({:.2} per leaf)",
        t.as_secs_f64() * 1e6 / records as f64,
        s.leaves,
        records as f64 / s.leaves as f64,
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("fill") => fill(),
        Some("scan") => scan(&args[1..]),
        Some("insert") => insert(&args[1..]),
        _ => eprintln!(
            "usage: probe fill | probe scan [records] [scans] [len] | probe insert [records] [value_len] [ascending]"
        ),
    }
}
