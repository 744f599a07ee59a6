//! Host memory per invocation in flight (issue 17's goal: ≤ 100 KiB beyond
//! its guest memory). Starts N invocations of a guest that spins with no
//! memory of its own touched (a loop yielding at every epoch tick, its
//! deadline far away), waits until all N are running on the executors,
//! and reports the growth of the process's resident set divided by N;
//! then cancels them.
//!
//! `cargo run --release -p rime-faas --example inflight_memory -- [N]`

use rime_faas::{FunctionConfig, Runtime, RuntimeConfig};
use rime_storage::{Db, Durability, Options};
use std::sync::Arc;
use std::time::{Duration, Instant};

const SPIN: &str = r#"(module (memory (export "memory") 1)
  (func (export "rime_invoke") (result i32) (loop $l (br $l)) (i32.const 0)))"#;

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(4000);
    let dir = tempfile::TempDir::new().expect("temp dir");
    let opts = Options::default()
        .durability(Durability::NoSync)
        .checkpoint_interval(None);
    let db = Arc::new(Db::open(dir.path().join("db"), opts).expect("open db"));
    let rt = Runtime::open(
        db,
        RuntimeConfig::default()
            .max_instances(n as u32 + 16)
            .max_admitted(2 * n + 16),
    )
    .expect("runtime");
    let cfg = FunctionConfig::default().deadline(Duration::from_secs(300));
    rt.deploy("spin", SPIN.as_bytes(), cfg).expect("deploy");
    // Warm the executors and one slot, then measure from there.
    let warm = rt.invoke_async("spin", &b""[..]);
    while rt.stats().instances < 1 {
        std::thread::sleep(Duration::from_millis(1));
    }
    drop(warm);
    while rt.in_flight() > 0 {
        std::thread::sleep(Duration::from_millis(1));
    }
    let before = rss_kib();
    let calls: Vec<_> = (0..n).map(|_| rt.invoke_async("spin", &b""[..])).collect();
    let t = Instant::now();
    while (rt.stats().instances as usize) < n && t.elapsed() < Duration::from_secs(120) {
        std::thread::sleep(Duration::from_millis(10));
    }
    let running = rt.stats().instances;
    std::thread::sleep(Duration::from_millis(200));
    let after = rss_kib();
    let per_kib = (after.saturating_sub(before)) as f64 / running.max(1) as f64;
    println!(
        "{running} invocations in flight (of {n}): RSS {before} KiB -> {after} KiB, \
         {per_kib:.1} KiB per invocation (guest memory untouched: 1 wasm page reserved)"
    );
    drop(calls);
    while rt.in_flight() > 0 {
        std::thread::sleep(Duration::from_millis(1));
    }
}
