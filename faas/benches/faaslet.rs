//! Faaslet benchmarks (criterion):
//!
//! * `invoke/empty`: one invocation of an empty faaslet — instantiate from
//!   the pooling allocator, call (on a fiber), drop, plus the (empty,
//!   read-only) transaction around it — on the calling thread;
//!   `empty_executor`: the same through `invoke_async` on the executors,
//!   one at a time; `empty_executor_x64`: 64 in flight (per element).
//! * `get`, `put`: 1000 calls inside one invocation from a guest, next to
//!   1000 native `Tx` calls in one `Db::transaction`, in the same run. The
//!   per-call cost is the difference to the `x0` variant, divided by 1000.
//! * `component/empty_abi_v1` and `component/noop`: an empty ABI v1
//!   invocation next to a component's (`wasi_kv_counter` with `noop`: a std
//!   Rust component, instantiated with its WASI context); `component/get_x0`
//!   and `get_x1000`: 1000 `wasi:keyvalue` `get`s of a 100-byte value from
//!   that component, to set beside `get/guest_x*` (ABI v1). Issue 18's
//!   goals: each at most 2× its ABI v1 counterpart. The `_executor`
//!   variants of both run through `invoke_async` on an executor, where
//!   ABI v1's `get` is an async import too (on the calling thread it is a
//!   synchronous one; a component's imports are async on both).
//!
//! `RIME_BENCH_MAX_INSTANCES=n` gives the runtime `n` pool slots instead
//! of the default: valgrind (instruction counts with callgrind) cannot
//! reserve the default pool's address space. `RIME_BENCH_WORKERS=n` runs
//! `n` executors instead of one per core.
//! * `polyglot`: one counter increment (a committed invocation) through
//!   the ABI v1 `counter` module, the Rust component `wasi_kv_counter`, the
//!   Python component `python_counter` (componentize-py) and the
//!   JavaScript component `js_counter` (componentize-js), all on one
//!   namespace, in the same run; and `noop` of each component. Issue 18:
//!   "a Python component's invocation: measure and report".
//! * `scan`: aggregating 10 000 i64 values from a guest (`pushdown`, which
//!   copies records page → guest buffer) next to the same aggregation
//!   natively (`Tx::scan`).
//!
//! Durability is `NoSync` (so the commit's fsync does not drown the CPU
//! costs being compared); run with `cargo bench -p rime-faas`.

/// The allocator the `rime` binary runs with (`cli/src/main.rs`): with
/// glibc's, an executor freeing what the calling thread allocated (the
/// input, the task) takes the caller's arena lock, and the executor rows
/// measure that lock (see `docs/faas.md`, "The allocator").
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use rime_faas::{FunctionConfig, Runtime, RuntimeConfig};
use rime_storage::{Db, Durability, Options};
use std::ops::{Bound, ControlFlow};
use std::path::PathBuf;
use std::sync::Arc;

const EMPTY: &str = r#"(module (memory (export "memory") 1)
  (func (export "rime_invoke") (result i32) (i32.const 0)))"#;

/// The component counterpart of `EMPTY`: one core module, whose `handle`
/// answers `ok([])` (the result area at 16 is zeroed memory) and imports
/// nothing, so `component/empty` is the component model's own cost.
const EMPTY_COMPONENT: &str = include_str!("../tests/common/empty_component.wat");

/// The call-loop guest (`n` calls of `get` or `put` in one invocation),
/// shared with `tests/no_alloc.rs`.
#[path = "../tests/common/call_loop.rs"]
#[allow(dead_code)] // SCAN: the scan bench uses `pushdown`
mod call_loop;

/// `$RIME_COMPONENTS_DIR`, else where `scripts/build-guests` puts them,
/// as the tests and the HTTP bench find them.
fn components_dir() -> PathBuf {
    std::env::var_os("RIME_COMPONENTS_DIR").map_or_else(
        || {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../guests/components/target/wasm32-wasip2/release")
        },
        PathBuf::from,
    )
}

fn guests_dir() -> PathBuf {
    std::env::var_os("RIME_GUESTS_DIR").map_or_else(
        || {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../guests/target/wasm32-unknown-unknown/release")
        },
        PathBuf::from,
    )
}

/// A `NoSync` database in `dir` and a runtime over it.
fn open(dir: &tempfile::TempDir) -> (Arc<Db>, Runtime) {
    let opts = Options::default()
        .durability(Durability::NoSync)
        .checkpoint_interval(None)
        .max_bytes(1 << 34);
    let db = Arc::new(Db::open(dir.path().join("db"), opts).unwrap());
    let mut cfg = RuntimeConfig::default().cache_dir(dir.path().join("cache"));
    // Under valgrind (see the module docs): fewer slots.
    if let Some(n) = std::env::var("RIME_BENCH_MAX_INSTANCES")
        .ok()
        .and_then(|n| n.parse().ok())
    {
        cfg = cfg.max_instances(n);
    }
    if let Some(n) = std::env::var("RIME_BENCH_WORKERS")
        .ok()
        .and_then(|n| n.parse().ok())
    {
        cfg = cfg.workers(n);
    }
    let rt = Runtime::open(db.clone(), cfg).unwrap();
    (db, rt)
}

fn benches(c: &mut Criterion) {
    let dir = tempfile::TempDir::new().unwrap();
    let (db, rt) = open(&dir);
    rt.deploy("empty", EMPTY.as_bytes(), FunctionConfig::default())
        .unwrap();
    rt.deploy(
        "probe",
        call_loop::CALL_LOOP.as_bytes(),
        FunctionConfig::default(),
    )
    .unwrap();
    let pushdown = std::fs::read(guests_dir().join("pushdown.wasm"))
        .expect("build the guests first: scripts/build-guests");
    rt.deploy("pushdown", &pushdown, FunctionConfig::default())
        .unwrap();
    let kv = std::fs::read(components_dir().join("wasi_kv_counter.wasm"))
        .expect("build the guests first: scripts/build-guests");
    rt.deploy("kvc", &kv, FunctionConfig::default()).unwrap();
    rt.deploy(
        "empty_component",
        EMPTY_COMPONENT.as_bytes(),
        FunctionConfig::default(),
    )
    .unwrap();
    let probe_tree = db.open_tree("ns/probe").unwrap().unwrap();
    db.put(probe_tree, b"key", &[5u8; 100]).unwrap();
    let kvc_tree = db.open_tree("ns/kvc").unwrap().unwrap();
    db.put(kvc_tree, b"key", &[5u8; 100]).unwrap();
    let scan_tree = db.open_tree("ns/pushdown").unwrap().unwrap();
    db.transaction(|tx| {
        for i in 0..10_000i64 {
            tx.put(scan_tree, format!("v/{i:08}").as_bytes(), &i.to_le_bytes())?;
        }
        Ok(())
    })
    .unwrap();

    let mut g = c.benchmark_group("invoke");
    g.bench_function("empty", |b| b.iter(|| rt.invoke("empty", b"").unwrap()));
    // On the executors, one at a time: the hand-off to an executor thread
    // and back (a wake-up each way) on top of `empty`.
    g.bench_function("empty_executor", |b| {
        b.iter(|| rt.invoke_async("empty", &b""[..]).wait().unwrap())
    });
    // 64 at a time on the executors: per-invocation cost when they overlap.
    g.throughput(Throughput::Elements(64));
    g.bench_function("empty_executor_x64", |b| {
        b.iter(|| {
            let calls: Vec<_> = (0..64)
                .map(|_| rt.invoke_async("empty", &b""[..]))
                .collect();
            for c in calls {
                c.wait().unwrap();
            }
        })
    });
    g.finish();

    let mut g = c.benchmark_group("get");
    g.throughput(Throughput::Elements(1000));
    for (name, n) in [("guest_x0", 0), ("guest_x1000", 1000)] {
        let inp = call_loop::input(n, call_loop::GET);
        g.bench_function(name, |b| b.iter(|| rt.invoke("probe", &inp).unwrap()));
        // On an executor, where `get` is an async import (it may suspend).
        g.bench_function(format!("{name}_executor"), |b| {
            b.iter(|| rt.invoke_async("probe", &inp[..]).wait().unwrap())
        });
    }
    g.bench_function("native_x1000", |b| {
        let mut buf = [0u8; 4096];
        b.iter(|| {
            db.transaction(|tx| {
                for _ in 0..1000 {
                    let n = tx
                        .get(probe_tree, b"key", |v| {
                            buf[..v.len()].copy_from_slice(v);
                            v.len()
                        })?
                        .unwrap();
                    assert_eq!(n, 100);
                }
                Ok(())
            })
            .unwrap()
        })
    });
    g.finish();

    let mut g = c.benchmark_group("put");
    g.throughput(Throughput::Elements(1000));
    for (name, n) in [("guest_x0", 0), ("guest_x1000", 1000)] {
        let inp = call_loop::input(n, call_loop::PUT);
        g.bench_function(name, |b| b.iter(|| rt.invoke("probe", &inp).unwrap()));
    }
    g.bench_function("native_x1000", |b| {
        let value = [5u8; 100];
        b.iter(|| {
            db.transaction(|tx| {
                for _ in 0..1000 {
                    tx.put(probe_tree, b"key", &value)?;
                }
                Ok(())
            })
            .unwrap()
        })
    });
    g.finish();

    let mut g = c.benchmark_group("component");
    g.bench_function("empty_abi_v1", |b| {
        b.iter(|| rt.invoke("empty", b"").unwrap())
    });
    g.bench_function("empty", |b| {
        b.iter(|| rt.invoke("empty_component", b"").unwrap())
    });
    g.bench_function("noop", |b| b.iter(|| rt.invoke("kvc", b"noop").unwrap()));
    g.throughput(Throughput::Elements(1000));
    for (name, input) in [
        ("get_x0", &b"get-n default key 0"[..]),
        ("get_x1000", &b"get-n default key 1000"[..]),
    ] {
        g.bench_function(name, |b| b.iter(|| rt.invoke("kvc", input).unwrap()));
        g.bench_function(format!("{name}_executor"), |b| {
            b.iter(|| rt.invoke_async("kvc", input).wait().unwrap())
        });
    }
    g.finish();

    let mut g = c.benchmark_group("scan");
    g.throughput(Throughput::Elements(10_000));
    let range = [&0u16.to_le_bytes()[..], &0u16.to_le_bytes()[..]].concat();
    g.bench_function("guest_pushdown_10k", |b| {
        b.iter(|| {
            let out = rt.invoke("pushdown", &range).unwrap().output;
            assert!(out.starts_with(b"{\"count\":10000,"));
        })
    });
    g.bench_function("native_10k", |b| {
        b.iter_batched(
            || (),
            |()| {
                db.transaction(|tx| {
                    let (mut count, mut sum) = (0u64, 0i128);
                    tx.scan(scan_tree, Bound::Unbounded, Bound::Unbounded, |_, v| {
                        if let Ok(b) = <[u8; 8]>::try_from(v) {
                            count += 1;
                            sum += i128::from(i64::from_le_bytes(b));
                        }
                        ControlFlow::Continue(())
                    })?;
                    assert_eq!(count, 10_000);
                    Ok(sum)
                })
                .unwrap()
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

/// Counter increments in four languages, on one namespace (`polyglot`).
/// The components are compiled at the first benchmark that runs (Python's
/// and JavaScript's take a minute on a loaded machine), so a run filtered
/// to other groups does not pay for them.
fn polyglot(c: &mut Criterion) {
    let dir = tempfile::TempDir::new().unwrap();
    let (_, rt) = open(&dir);
    let deployed = std::sync::Once::new();
    let deploy_all = || deployed.call_once(|| deploy_polyglot(&rt));
    let mut g = c.benchmark_group("polyglot");
    for (bench, name, input) in [
        ("incr_abi_v1", "counter", &b"shared:hits"[..]),
        ("incr_rust_component", "rust", &b"incr shared hits"[..]),
        ("incr_python", "python", &b"incr shared hits"[..]),
        ("incr_js", "js", &b"incr shared hits"[..]),
        ("noop_rust_component", "rust", &b"noop"[..]),
        ("noop_python", "python", &b"noop"[..]),
        ("noop_js", "js", &b"noop"[..]),
    ] {
        g.bench_function(bench, |b| {
            deploy_all();
            b.iter(|| rt.invoke(name, input).unwrap())
        });
    }
    g.finish();
}

fn deploy_polyglot(rt: &Runtime) {
    let shared = FunctionConfig::default().grant(rime_faas::Grant::write("shared"));
    let read = |path: PathBuf| {
        std::fs::read(&path)
            .unwrap_or_else(|e| panic!("{}: {e}: run scripts/build-guests", path.display()))
    };
    rt.deploy(
        "counter",
        &read(guests_dir().join("counter.wasm")),
        shared.clone(),
    )
    .unwrap();
    for (name, file) in [
        ("rust", "wasi_kv_counter"),
        ("python", "python_counter"),
        ("js", "js_counter"),
    ] {
        let started = std::time::Instant::now();
        rt.deploy(
            name,
            &read(components_dir().join(format!("{file}.wasm"))),
            shared.clone(),
        )
        .unwrap();
        eprintln!("polyglot: {file} compiled in {:?}", started.elapsed());
    }
}

criterion_group!(faaslet, benches, polyglot);
criterion_main!(faaslet);
