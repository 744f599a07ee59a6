//! Db-level commit throughput and latency: real transactions (one 100-byte
//! put and one `add` per transaction, on keys private to the thread so
//! there are no conflicts) with 1, 2, 8 and 32 committing threads for each
//! durability mode, beside the raw latency of a 4 KiB write + `fdatasync`
//! on the same file system, measured in the same run.
//!
//! `cargo bench -p rime-storage --bench db_commit`. `RIME_BENCH_SECS` sets
//! the seconds per cell (default 1.0).

use rime_bufmgr::io::{AlignedBuf, BLOCK_SIZE, IoBackend, open_block_file};
use rime_storage::{Db, Durability, Options};
use std::time::{Duration, Instant};

const THREADS: [usize; 4] = [1, 2, 8, 32];
const VALUE_LEN: usize = 100;
/// As in the WAL-level bench: about three raw syncs on this machine.
const GROUP_DELAY: Duration = Duration::from_micros(200);
/// Raw syncs measured for the baseline.
const RAW_SYNCS: usize = 500;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn raw_sync(dir: &std::path::Path) -> Vec<Duration> {
    let f = open_block_file(&dir.join("raw"), IoBackend::Auto).unwrap();
    f.set_len(BLOCK_SIZE as u64 * 16).unwrap();
    let buf = AlignedBuf::zeroed(BLOCK_SIZE);
    let mut out: Vec<Duration> = (0..RAW_SYNCS)
        .map(|i| {
            let t = Instant::now();
            f.write_at((i % 16 * BLOCK_SIZE) as u64, &buf).unwrap();
            f.sync_data().unwrap();
            t.elapsed()
        })
        .collect();
    out.sort();
    out
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` probes with --list
    }
    let secs: f64 = std::env::var("RIME_BENCH_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1.0);
    let tmp = tempfile::TempDir::new().unwrap();
    let raw = raw_sync(tmp.path());
    println!(
        "raw 4 KiB write + fdatasync: p50 {:.1} µs, p99 {:.1} µs",
        us(percentile(&raw, 0.5)),
        us(percentile(&raw, 0.99))
    );
    println!(
        "{:<8} {:>7} {:>12} {:>10} {:>10} {:>10}",
        "mode", "threads", "commits/s", "p50 µs", "p99 µs", "p50/raw"
    );
    let modes = [
        ("sync", Durability::Sync),
        (
            "group",
            Durability::Group {
                max_delay: GROUP_DELAY,
            },
        ),
        ("nosync", Durability::NoSync),
    ];
    for (name, durability) in modes {
        for threads in THREADS {
            let dir = tmp.path().join(format!("{name}-{threads}"));
            let opts = Options::default()
                .durability(durability)
                .pool_bytes(64 << 20)
                .checkpoint_interval(None);
            let db = Db::open(&dir, opts).unwrap();
            let t = db.create_tree("bench").unwrap();
            let deadline = Instant::now() + Duration::from_secs_f64(secs);
            let start = Instant::now();
            let mut lat: Vec<Duration> = std::thread::scope(|s| {
                let hs: Vec<_> = (0..threads)
                    .map(|th| {
                        let db = &db;
                        s.spawn(move || {
                            let mut lat = Vec::new();
                            let value = [th as u8; VALUE_LEN];
                            let mut i = 0u64;
                            while Instant::now() < deadline {
                                let key = format!("t{th:03}k{:08}", i % 10_000);
                                let t0 = Instant::now();
                                db.transaction(|tx| {
                                    tx.put(t, key.as_bytes(), &value)?;
                                    tx.add(t, format!("ctr{th:03}").as_bytes(), 1)?;
                                    Ok(())
                                })
                                .unwrap();
                                lat.push(t0.elapsed());
                                i += 1;
                            }
                            lat
                        })
                    })
                    .collect();
                hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
            });
            let elapsed = start.elapsed();
            lat.sort();
            let p50 = percentile(&lat, 0.5);
            println!(
                "{:<8} {:>7} {:>12.0} {:>10.1} {:>10.1} {:>10.2}",
                name,
                threads,
                lat.len() as f64 / elapsed.as_secs_f64(),
                us(p50),
                us(percentile(&lat, 0.99)),
                us(p50) / us(percentile(&raw, 0.5))
            );
            db.close().unwrap();
        }
    }
}
