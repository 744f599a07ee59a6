//! Latch round trips on a resident page, 1 and 2 threads.
//!
//! `cargo bench -p rime-bufmgr --bench latches`

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use rime_bufmgr::io::{IoBackend, open_block_file};
use rime_bufmgr::{BufferManager, Config, Interrupt, PAGE_SIZE, PageId};
use std::hint::black_box;
use std::time::{Duration, Instant};

fn pool() -> (BufferManager, Vec<PageId>, tempfile::TempDir) {
    let dir = tempfile::TempDir::new().unwrap();
    let file = open_block_file(&dir.path().join("pages"), IoBackend::Auto).unwrap();
    let bm = BufferManager::open(
        file,
        Config {
            pool_bytes: 64 << 20,
            max_bytes: 1 << 32,
            ..Config::default()
        },
    )
    .unwrap();
    let pids = (0..2).map(|_| bm.alloc().unwrap().pid()).collect();
    (bm, pids, dir)
}

fn optimistic_read(bm: &BufferManager, pid: PageId) -> u8 {
    // SAFETY: integers and a Copy guard only.
    unsafe {
        bm.optimistic(|s| {
            let page = s.read(pid)?;
            let byte = page.payload()[64];
            page.validate()?;
            Ok::<_, Interrupt>(byte)
        })
    }
    .unwrap()
}

/// Runs `op` `iters` times on each of `threads` threads; returns the wall time.
fn on_threads(threads: usize, iters: u64, op: &(dyn Fn(usize) + Sync)) -> Duration {
    let start = Instant::now();
    if threads == 1 {
        (0..iters).for_each(|_| op(0));
        return start.elapsed();
    }
    std::thread::scope(|s| {
        for t in 0..threads {
            s.spawn(move || (0..iters).for_each(|_| op(t)));
        }
    });
    start.elapsed()
}

fn latches(c: &mut Criterion) {
    let (bm, pids, _dir) = pool();
    let mut group = c.benchmark_group("latch");
    group.bench_function("empty_guarded_section", |b| {
        // SAFETY: no values at all in the closure.
        b.iter(|| unsafe { rime_bufmgr::fault::run_guarded(|| black_box(1u8)) })
    });
    for threads in [1usize, 2] {
        group.throughput(Throughput::Elements(threads as u64));
        // Same page for every thread: the contended case.
        group.bench_with_input(
            BenchmarkId::new("optimistic_read_same_page", threads),
            &threads,
            |b, &t| {
                b.iter_custom(|iters| {
                    on_threads(t, iters, &|_| {
                        black_box(optimistic_read(&bm, pids[0]));
                    })
                })
            },
        );
        group.bench_with_input(
            BenchmarkId::new("shared_same_page", threads),
            &threads,
            |b, &t| {
                b.iter_custom(|iters| {
                    on_threads(t, iters, &|_| drop(black_box(bm.shared(pids[0]).unwrap())))
                })
            },
        );
        group.bench_with_input(
            BenchmarkId::new("exclusive_same_page", threads),
            &threads,
            |b, &t| {
                b.iter_custom(|iters| {
                    on_threads(t, iters, &|_| {
                        drop(black_box(bm.exclusive(pids[0]).unwrap()))
                    })
                })
            },
        );
        group.bench_with_input(
            BenchmarkId::new("exclusive_own_page", threads),
            &threads,
            |b, &t| {
                b.iter_custom(|iters| {
                    on_threads(t, iters, &|i| {
                        drop(black_box(bm.exclusive(pids[i]).unwrap()))
                    })
                })
            },
        );
    }
    group.finish();
    let _ = PAGE_SIZE;
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    targets = latches
}
criterion_main!(benches);
