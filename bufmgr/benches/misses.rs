//! Misses: random page reads over a data set 10x the pool budget, next to
//! the device's own random-read IOPS at queue depth 1 and 32, measured on
//! the same file in the same run.
//!
//! `cargo bench -p rime-bufmgr --bench misses`
//! (`RIME_MISS_BUDGET_MB`, default 32, sets the budget; the data is 10x.)
#![forbid(unsafe_code)]

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use rime_bufmgr::io::probe::random_read_iops;
use rime_bufmgr::io::{IoBackend, open_block_file};
use rime_bufmgr::{BufferManager, Config, Loader, PAGE_SIZE, PageId};
use std::collections::HashMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

/// Data set size relative to the budget (the 10x).
const DATA_TO_BUDGET: u64 = 10;
/// Pages per pipelined batch: a typical queue depth for NVMe saturation.
const PIPELINE_BATCH: usize = 32;
/// How long each summary measurement runs.
const SUMMARY_RUN: Duration = Duration::from_secs(3);

struct Setup {
    bm: BufferManager,
    pages: u64,
    path: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

fn setup() -> Setup {
    let budget_mb: u64 = std::env::var("RIME_MISS_BUDGET_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(32);
    let pool_bytes = (budget_mb << 20) as usize;
    let pages = DATA_TO_BUDGET * pool_bytes as u64 / PAGE_SIZE as u64;
    // The data file goes where the project lives (a real disk), not /tmp,
    // which may be tmpfs on other machines.
    let dir = tempfile::TempDir::new_in(env!("CARGO_MANIFEST_DIR")).unwrap();
    let path = dir.path().join("pages");
    let file = open_block_file(&path, IoBackend::Auto).unwrap();
    let bm = BufferManager::open(
        file,
        Config {
            pool_bytes,
            max_bytes: 1 << 36,
            ..Config::default()
        },
    )
    .unwrap();
    eprintln!(
        "loading {pages} pages ({} MiB) behind a {budget_mb} MiB budget",
        (pages * PAGE_SIZE as u64) >> 20
    );
    for _ in 0..pages {
        let mut p = bm.alloc().unwrap();
        let pid = p.pid();
        p.payload_mut()[..8].copy_from_slice(&pid.to_le_bytes());
    }
    bm.flush_dirty().unwrap();
    bm.sync().unwrap();
    Setup {
        bm,
        pages,
        path,
        _dir: dir,
    }
}

struct Rng(u64);
impl Rng {
    fn pid(&mut self, pages: u64) -> PageId {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        1 + self.0 % pages
    }
}

fn read_random(bm: &BufferManager, rng: &mut Rng, pages: u64) {
    let pid = rng.pid(pages);
    let page = bm.shared(pid).unwrap();
    assert_eq!(page.payload()[..8], pid.to_le_bytes());
}

/// A loader keeping the next batch's reads in flight while the current
/// batch is consumed, and which of its requests are not yet reported.
struct Pipeline<'a> {
    loader: Loader<'a>,
    pending: Vec<PageId>,
    outstanding: HashMap<PageId, u32>,
}

impl<'a> Pipeline<'a> {
    fn new(bm: &'a BufferManager) -> Self {
        Pipeline {
            loader: Loader::new(bm),
            pending: Vec::new(),
            outstanding: HashMap::new(),
        }
    }

    /// Polls until `pid` is not among this loader's unreported requests.
    fn wait_for(&mut self, pid: PageId) {
        while self.outstanding.contains_key(&pid) {
            let outstanding = &mut self.outstanding;
            self.loader.poll(true, |p, r| {
                r.unwrap();
                if let Some(n) = outstanding.get_mut(&p) {
                    *n -= 1;
                    if *n == 0 {
                        outstanding.remove(&p);
                    }
                }
            });
        }
    }
}

/// Reads a batch whose loads were requested one step earlier, after
/// requesting the next one: the loader reads batch i+1 while the caller
/// consumes batch i, so the device always has a batch in flight. A page is
/// latched only once the loader reported it (the loader's one rule: never
/// a blocking latch on a frame this thread's loader is reading).
fn read_pipelined(bm: &BufferManager, p: &mut Pipeline<'_>, rng: &mut Rng, pages: u64) {
    let next: Vec<PageId> = (0..PIPELINE_BATCH).map(|_| rng.pid(pages)).collect();
    for &pid in &next {
        p.loader.request(pid, 1);
        *p.outstanding.entry(pid).or_default() += 1;
    }
    let current = std::mem::replace(&mut p.pending, next);
    for pid in current {
        p.wait_for(pid);
        black_box(bm.shared(pid).unwrap().payload()[0]);
    }
}

/// Pages per second of `op` on `threads` threads for `SUMMARY_RUN`.
/// Pages per second of `threads` threads running `op` for `SUMMARY_RUN`,
/// each with its own state from `state()` (a loader stays on the thread
/// that made it: its thread's blocking waits reap it).
fn pages_per_sec<S>(
    threads: usize,
    pages_per_op: usize,
    state: impl Fn() -> S + Sync,
    op: impl Fn(&mut S, &mut Rng) + Sync,
) -> f64 {
    let (state, op) = (&state, &op);
    let start = Instant::now();
    let ops: u64 = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    let mut rng = Rng(0x9E37_79B9 + t as u64);
                    let mut st = state();
                    let mut n = 0u64;
                    while start.elapsed() < SUMMARY_RUN {
                        op(&mut st, &mut rng);
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    (ops * pages_per_op as u64) as f64 / start.elapsed().as_secs_f64()
}

fn misses(c: &mut Criterion) {
    let s = setup();
    let (bm, pages) = (&s.bm, s.pages);
    let mut group = c.benchmark_group("miss");
    for threads in [1usize, 2] {
        group.throughput(Throughput::Elements(threads as u64));
        group.bench_with_input(
            BenchmarkId::new("random_shared", threads),
            &threads,
            |b, &t| {
                b.iter_custom(|iters| {
                    let start = Instant::now();
                    std::thread::scope(|sc| {
                        for i in 0..t {
                            sc.spawn(move || {
                                let mut rng = Rng(0x1234 + i as u64);
                                (0..iters).for_each(|_| read_random(bm, &mut rng, pages));
                            });
                        }
                    });
                    start.elapsed()
                })
            },
        );
    }
    group.throughput(Throughput::Elements(PIPELINE_BATCH as u64));
    group.bench_function("loader_batch_32_pipelined", |b| {
        let mut rng = Rng(77);
        let mut pipeline = Pipeline::new(bm);
        b.iter(|| read_pipelined(bm, &mut pipeline, &mut rng, pages))
    });
    group.finish();

    // The summary: the pool next to the device, same file, same run.
    let qd1 = random_read_iops(&s.path, pages, 1, SUMMARY_RUN)
        .unwrap()
        .iops();
    let qd32 = random_read_iops(&s.path, pages, 32, SUMMARY_RUN)
        .unwrap()
        .iops();
    let pool1 = pages_per_sec(1, 1, || (), |_, r| read_random(bm, r, pages));
    let pool2 = pages_per_sec(2, 1, || (), |_, r| read_random(bm, r, pages));
    let pref = pages_per_sec(
        1,
        PIPELINE_BATCH,
        || Pipeline::new(bm),
        |p, r| read_pipelined(bm, p, r, pages),
    );
    println!(
        "\n=== misses over {} MiB of data, budget {} MiB ({:?}) ===",
        (pages * PAGE_SIZE as u64) >> 20,
        (bm.budget_pages() * PAGE_SIZE as u64) >> 20,
        bm.release_mode()
    );
    println!("| what                                  | pages/s   | ratio      |");
    println!("|---------------------------------------|-----------|------------|");
    println!("| device, random 4 KiB reads, QD 1      | {qd1:>9.0} | 1.00       |");
    println!(
        "| device, random 4 KiB reads, QD 32     | {qd32:>9.0} | {:.2} of QD1 |",
        qd32 / qd1
    );
    println!(
        "| pool misses, 1 thread                 | {pool1:>9.0} | {:.2} of QD1 |",
        pool1 / qd1
    );
    println!(
        "| pool misses, 2 threads                | {pool2:>9.0} | {:.2} of QD1 |",
        pool2 / qd1
    );
    println!(
        "| pool, loader 32 ahead, 1 thread       | {pref:>9.0} | {:.2} of QD32 |",
        pref / qd32
    );
    println!("stats: {:?}", bm.stats());
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = misses
}
criterion_main!(benches);
