//! The latency of one empty invocation at a time, as a distribution
//! (issue 17's goal: "an empty invocation ≤ 5 µs median"). Criterion's
//! `invoke/empty_executor` reports a mean over batches, in which the
//! occasional hand-off that parks a thread (a futex round trip on each
//! side, tens of µs on a VM) weighs as much as many that do not; this
//! times every invocation alone and prints the percentiles, on the
//! calling thread (`Runtime::invoke`) and through the executors
//! (`Runtime::invoke_async(..).wait()`), alternating rounds of each so
//! that both see the same machine.
//!
//! `cargo run --release -p rime-faas --example invoke_latency -- [N] [ROUNDS] [PATH]`
//! (default 200 000 invocations per round, 3 rounds, both paths; PATH
//! `calling` or `executors` runs one, for a profile of it).

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use rime_faas::{FunctionConfig, Runtime, RuntimeConfig};
use rime_storage::{Db, Durability, Options};
use std::sync::Arc;
use std::time::Instant;

const EMPTY: &str = r#"(module (memory (export "memory") 1)
  (func (export "rime_invoke") (result i32) (i32.const 0)))"#;

/// Invocations each path runs before its measured ones, per round.
const WARM_UP: usize = 20_000;

fn main() {
    let arg = |i: usize, default: usize| {
        std::env::args()
            .nth(i)
            .map(|a| a.parse().expect("N and ROUNDS are counts"))
            .unwrap_or(default)
    };
    let (n, rounds) = (arg(1, 200_000), arg(2, 3));
    let only = std::env::args().nth(3);
    let dir = tempfile::TempDir::new().expect("temp dir");
    let opts = Options::default()
        .durability(Durability::NoSync)
        .checkpoint_interval(None);
    let db = Arc::new(Db::open(dir.path().join("db"), opts).expect("open db"));
    let rt = Runtime::open(db, RuntimeConfig::default()).expect("open runtime");
    rt.deploy("empty", EMPTY.as_bytes(), FunctionConfig::default())
        .expect("deploy");
    let input: Arc<[u8]> = Arc::from(&b""[..]);
    let paths: [(&str, &dyn Fn()); 2] = [
        ("calling thread", &|| {
            rt.invoke("empty", b"").expect("invoke");
        }),
        ("executors", &|| {
            rt.invoke_async("empty", input.clone())
                .wait()
                .expect("invoke");
        }),
    ];
    println!("empty invocation, one at a time, {n} per round (ns)");
    println!("round  path            p50     p90     p99   p99.9    mean");
    for round in 1..=rounds {
        for (name, call) in paths {
            if only.as_deref().is_some_and(|p| !name.starts_with(p)) {
                continue;
            }
            let mut ns = time_each(call, n);
            let s = Summary::of(&mut ns);
            println!(
                "{round:>5}  {name:<14} {:>6} {:>7} {:>7} {:>7} {:>7}",
                s.p50, s.p90, s.p99, s.p999, s.mean
            );
        }
    }
}

/// `n` calls of `call`, each timed alone, after [`WARM_UP`] untimed ones.
fn time_each(call: &dyn Fn(), n: usize) -> Vec<u64> {
    for _ in 0..WARM_UP {
        call();
    }
    let mut ns = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        call();
        ns.push(start.elapsed().as_nanos() as u64);
    }
    ns
}

struct Summary {
    p50: u64,
    p90: u64,
    p99: u64,
    p999: u64,
    mean: u64,
}

impl Summary {
    fn of(ns: &mut [u64]) -> Summary {
        ns.sort_unstable();
        let at = |q: f64| ns[((ns.len() - 1) as f64 * q) as usize];
        Summary {
            p50: at(0.5),
            p90: at(0.9),
            p99: at(0.99),
            p999: at(0.999),
            mean: ns.iter().sum::<u64>() / ns.len().max(1) as u64,
        }
    }
}
