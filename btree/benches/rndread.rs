//! vmcache's "rndread" workload on rime-btree, plus insert and scan
//! throughput.
//!
//! rndread: `RIME_RNDREAD_TUPLES` tuples (default 10 million) with 8-byte
//! keys and 120-byte values, loaded in key order into a pool large enough
//! for all of them; then uniformly random point lookups that copy the value
//! out (`get_into`, the optimistic path), on 1 and 2 threads. Reported as
//! elements/s = lookups/s. Against vmcache's own C++ rndread, measured in
//! the same run: `scripts/bench-rndread-vmcache` (figures in
//! `docs/btree.md`).
//!
//! Run: `cargo bench -p rime-btree --bench rndread`
//! (quick: `RIME_RNDREAD_TUPLES=1000000 cargo bench -p rime-btree --bench rndread`).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rime_btree::{BTree, Direction, NoHooks};
use rime_bufmgr::io::{IoBackend, open_block_file};
use rime_bufmgr::{BufferManager, Config};
use std::ops::{Bound, ControlFlow};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tempfile::TempDir;

const VALUE_LEN: usize = 120;

fn tuples() -> u64 {
    std::env::var("RIME_RNDREAD_TUPLES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000_000)
}

/// A pool that holds `tuples` tuples without evicting.
fn pool(tuples: u64) -> (Arc<BufferManager>, TempDir) {
    let dir = TempDir::new().unwrap();
    let file = open_block_file(&dir.path().join("pages"), IoBackend::Auto).unwrap();
    let pool_bytes = (tuples as usize * 320).max(64 << 20) + (256 << 20);
    // The virtual region: 1 TiB by default, which valgrind cannot map;
    // `RIME_RNDREAD_MAX_BYTES=4294967296` runs it under callgrind.
    let max_bytes = std::env::var("RIME_RNDREAD_MAX_BYTES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(Config::default().max_bytes);
    let config = Config {
        pool_bytes,
        max_bytes,
        ..Config::default()
    };
    (Arc::new(BufferManager::open(file, config).unwrap()), dir)
}

/// splitmix64: uniform, cheap, stateless per call.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

fn rndread(c: &mut Criterion) {
    let n = tuples();
    let (bm, _dir) = pool(n);
    let tree = BTree::create(bm.clone(), Arc::new(NoHooks)).unwrap();
    let started = Instant::now();
    let value = [0x5Au8; VALUE_LEN];
    for i in 0..n {
        tree.insert(&i.to_be_bytes(), &value).unwrap();
    }
    let load = started.elapsed();
    eprintln!(
        "loaded {n} tuples in {load:.2?} ({:.0} inserts/s, sequential)",
        n as f64 / load.as_secs_f64()
    );

    let mut group = c.benchmark_group("rndread");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(5))
        .warm_up_time(Duration::from_secs(1));
    for threads in [1u64, 2] {
        group.throughput(Throughput::Elements(threads));
        group.bench_function(format!("{threads}thread"), |b| {
            b.iter_custom(|iters| {
                let elapsed: Vec<Duration> = std::thread::scope(|s| {
                    let handles: Vec<_> = (0..threads)
                        .map(|t| {
                            let tree = &tree;
                            s.spawn(move || {
                                let mut out = Vec::with_capacity(VALUE_LEN);
                                let mut seed = mix(t + iters);
                                let start = Instant::now();
                                for _ in 0..iters {
                                    seed = mix(seed);
                                    let key = (seed % n).to_be_bytes();
                                    assert!(tree.get_into(&key, &mut out).unwrap());
                                }
                                start.elapsed()
                            })
                        })
                        .collect();
                    handles.into_iter().map(|h| h.join().unwrap()).collect()
                });
                elapsed.into_iter().max().unwrap()
            })
        });
    }
    // The closure API (shared latch on the leaf) for comparison.
    group.throughput(Throughput::Elements(1));
    group.bench_function("1thread_get_closure", |b| {
        let mut seed = 7;
        b.iter(|| {
            seed = mix(seed);
            tree.get(&(seed % n).to_be_bytes(), |v| v[0]).unwrap()
        })
    });
    group.finish();

    let mut group = c.benchmark_group("scan");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
    group.throughput(Throughput::Elements(1000));
    group.bench_function("forward_1000", |b| {
        let mut seed = 11;
        b.iter(|| {
            seed = mix(seed);
            let start = (seed % n).to_be_bytes();
            let mut left = 1000;
            tree.scan(
                (Bound::Included(&start[..]), Bound::Unbounded),
                Direction::Forward,
                |_, v| {
                    std::hint::black_box(v);
                    left -= 1;
                    if left == 0 {
                        ControlFlow::Break(())
                    } else {
                        ControlFlow::Continue(())
                    }
                },
            )
            .unwrap();
        })
    });
    group.bench_function("backward_1000", |b| {
        let mut seed = 13;
        b.iter(|| {
            seed = mix(seed);
            let start = (seed % n).to_be_bytes();
            let mut left = 1000;
            tree.scan(
                (Bound::Unbounded, Bound::Included(&start[..])),
                Direction::Backward,
                |_, v| {
                    std::hint::black_box(v);
                    left -= 1;
                    if left == 0 {
                        ControlFlow::Break(())
                    } else {
                        ControlFlow::Continue(())
                    }
                },
            )
            .unwrap();
        })
    });
    group.finish();
    let started = Instant::now();
    let mut count = 0u64;
    tree.scan(.., Direction::Forward, |_, _| {
        count += 1;
        ControlFlow::Continue(())
    })
    .unwrap();
    let full = started.elapsed();
    eprintln!(
        "full scan of {count} tuples in {full:.2?} ({:.0} entries/s)",
        count as f64 / full.as_secs_f64()
    );
    eprintln!("{:?}", bm.stats());
}

fn inserts(c: &mut Criterion) {
    let n = tuples();
    let (bm, _dir) = pool(n);
    let mut group = c.benchmark_group("insert");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(5))
        .warm_up_time(Duration::from_secs(1));
    group.throughput(Throughput::Elements(1));
    let value = [0x5Au8; VALUE_LEN];
    for random in [false, true] {
        let tree = BTree::create(bm.clone(), Arc::new(NoHooks)).unwrap();
        let mut next = 0u64;
        group.bench_function(if random { "random" } else { "sequential" }, |b| {
            b.iter(|| {
                next += 1;
                let key = if random { mix(next) } else { next };
                tree.upsert(&key.to_be_bytes(), &value).unwrap()
            })
        });
        eprintln!(
            "insert tree after the bench: {:?}",
            tree.verify().map(|s| (s.entries, s.depth, s.leaves))
        );
    }
    group.finish();
}

criterion_group!(benches, rndread, inserts);
criterion_main!(benches);
