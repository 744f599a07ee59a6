//! Commit throughput and latency of the WAL, per durability mode and
//! committer count, beside the raw cost of one 4 KiB write + `sync_data` on
//! the same file system, measured in the same run.
//!
//! `cargo bench -p rime-storage --bench commit` (add `-- --quick` for a short
//! run). Criterion reports time per commit (the inverse of throughput);
//! the table printed at the end adds p50/p99 latency and the ratios to the
//! raw sync.

use criterion::{BenchmarkId, Criterion, Throughput};
use rime_bufmgr::io::{AlignedBuf, BLOCK_SIZE, IoBackend, open_block_file};
use rime_storage::wal::{Record, TreeId, Write};
use rime_storage::{Durability, Wal, WalOptions};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Committer counts to compare: one (no sharing possible) up to well past
/// the core count (2 here), where group commit has the most to gather.
const THREADS: [usize; 4] = [1, 2, 8, 32];
/// A small transaction: one 16-byte key, one 100-byte value.
const KEY_LEN: usize = 16;
const VALUE_LEN: usize = 100;
/// The Group mode's gathering delay under test: about three raw syncs
/// here, long enough to gather, short enough to be an acceptable ack delay.
const GROUP_DELAY: Duration = Duration::from_micros(200);
/// Log segment size for the runs: large enough that rollover is rare.
const SEGMENT_SIZE: u64 = 32 << 20;

#[derive(Default)]
struct Stats {
    latencies: Vec<Duration>,
    commits: u64,
    elapsed: Duration,
}

type Table = Mutex<BTreeMap<(usize, usize), Stats>>;

fn modes() -> [(&'static str, Durability); 3] {
    [
        ("sync", Durability::Sync),
        (
            "group",
            Durability::Group {
                max_delay: GROUP_DELAY,
            },
        ),
        ("nosync", Durability::NoSync),
    ]
}

fn bench_commit(c: &mut Criterion, dir: &std::path::Path, table: &Table) {
    let mut group = c.benchmark_group("commit");
    group.throughput(Throughput::Elements(1));
    for (mi, (name, durability)) in modes().into_iter().enumerate() {
        for (ti, &threads) in THREADS.iter().enumerate() {
            let wal_dir = dir.join(format!("wal-{name}-{threads}"));
            let wal = Wal::create(
                &wal_dir,
                WalOptions::new(durability)
                    .with_segment_size(SEGMENT_SIZE)
                    .with_initial_segment_size(SEGMENT_SIZE),
            )
            .unwrap();
            group.bench_with_input(BenchmarkId::new(name, threads), &threads, |b, &threads| {
                b.iter_custom(|iters| {
                    let per_thread = iters.div_ceil(threads as u64);
                    let start = Instant::now();
                    let lats: Vec<Vec<Duration>> = std::thread::scope(|s| {
                        let handles: Vec<_> = (0..threads)
                            .map(|t| {
                                let wal = &wal;
                                s.spawn(move || {
                                    let mut lat = Vec::with_capacity(per_thread as usize);
                                    let mut key = [0u8; KEY_LEN];
                                    let value = [t as u8; VALUE_LEN];
                                    for i in 0..per_thread {
                                        key[..8].copy_from_slice(&i.to_be_bytes());
                                        key[8..].copy_from_slice(&(t as u64).to_be_bytes());
                                        let writes = [Write {
                                            tree: TreeId(1),
                                            key: &key,
                                            value: Some(&value),
                                        }];
                                        let t0 = Instant::now();
                                        wal.commit(&Record::Commit(&writes)).unwrap();
                                        lat.push(t0.elapsed());
                                    }
                                    lat
                                })
                            })
                            .collect();
                        handles.into_iter().map(|h| h.join().unwrap()).collect()
                    });
                    let elapsed = start.elapsed();
                    let mut table = table.lock().unwrap();
                    let st = table.entry((mi, ti)).or_default();
                    st.commits += per_thread * threads as u64;
                    st.elapsed += elapsed;
                    st.latencies.extend(lats.into_iter().flatten());
                    // Per-commit time, as Criterion expects for `iters` iterations.
                    elapsed.mul_f64(iters as f64 / (per_thread * threads as u64) as f64)
                });
            });
            wal.close().unwrap();
            let _ = std::fs::remove_dir_all(&wal_dir);
        }
    }
    group.finish();
}

/// One 4 KiB write + `sync_data` on a preallocated file in the same
/// directory, through the same `BlockFile` layer: the floor under any
/// durable commit.
fn bench_raw_sync(
    c: &mut Criterion,
    when: &str,
    dir: &std::path::Path,
    raw: &Mutex<Vec<Duration>>,
) {
    let path = dir.join(format!("raw-sync-{when}"));
    let file = open_block_file(&path, IoBackend::Auto).unwrap();
    let blocks = 256u64;
    let zeros = AlignedBuf::zeroed(blocks as usize * BLOCK_SIZE);
    file.write_at(0, &zeros).unwrap();
    file.sync_data().unwrap();
    let mut block = AlignedBuf::zeroed(BLOCK_SIZE);
    let mut n = 0u64;
    c.bench_function(&format!("raw_write4k_sync_data/{when}"), |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            let mut lats = Vec::with_capacity(iters as usize);
            for _ in 0..iters {
                block[0] = n as u8;
                let t0 = Instant::now();
                file.write_at((n % blocks) * BLOCK_SIZE as u64, &block)
                    .unwrap();
                file.sync_data().unwrap();
                lats.push(t0.elapsed());
                n += 1;
            }
            raw.lock().unwrap().extend(lats);
            start.elapsed()
        });
    });
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn print_table(table: Table, raw: Mutex<Vec<Duration>>) {
    let mut raw = raw.into_inner().unwrap();
    raw.sort();
    let raw_p50 = percentile(&raw, 0.5);
    let raw_p99 = percentile(&raw, 0.99);
    let raw_rate = 1.0 / raw_p50.as_secs_f64();
    println!();
    println!(
        "raw 4 KiB write + sync_data: p50 {:.1} µs, p99 {:.1} µs ({} samples) => {:.0} syncs/s",
        us(raw_p50),
        us(raw_p99),
        raw.len(),
        raw_rate
    );
    println!(
        "{:<7} {:>7} {:>12} {:>10} {:>10} {:>14} {:>14}",
        "mode", "threads", "commits/s", "p50 µs", "p99 µs", "rate/raw-sync", "p50/raw-p50"
    );
    let modes = modes();
    for ((mi, ti), mut st) in table.into_inner().unwrap() {
        st.latencies.sort();
        let rate = st.commits as f64 / st.elapsed.as_secs_f64();
        let p50 = percentile(&st.latencies, 0.5);
        println!(
            "{:<7} {:>7} {:>12.0} {:>10.1} {:>10.1} {:>14.2} {:>14.2}",
            modes[mi].0,
            THREADS[ti],
            rate,
            us(p50),
            us(percentile(&st.latencies, 0.99)),
            rate / raw_rate,
            p50.as_secs_f64() / raw_p50.as_secs_f64(),
        );
    }
}

fn main() {
    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    // Same file system as the project's data: a temporary directory beside
    // the build output (tmpfs would refuse O_DIRECT).
    let base = std::env::var_os("CARGO_TARGET_TMPDIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let dir = tempfile::TempDir::new_in(base).unwrap();
    let table: Table = Mutex::default();
    let raw = Mutex::new(Vec::new());
    // Raw syncs before and after the commit runs, pooled: the disk's
    // state drifts during a run (write-back, other tenants).
    bench_raw_sync(&mut c, "before", dir.path(), &raw);
    bench_commit(&mut c, dir.path(), &table);
    bench_raw_sync(&mut c, "after", dir.path(), &raw);
    c.final_summary();
    print_table(table, raw);
}
