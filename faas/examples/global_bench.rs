//! Global namespaces against local ones and against plain Redis round
//! trips (`docs/global.md`, "Benchmarks"). Starts its own 3-master Redis
//! Cluster (`rime_global::testing`, `appendfsync always`) and, per row,
//! fresh runtimes over fresh Dbs (`Durability::Sync`, the default of
//! `rime serve`).
//!
//! ```text
//! cargo run --release -p rime-faas --example global_bench -- SECONDS REPEATS
//! ```
//!
//! Rows (every op on one hot key, `THREADS_PER_NODE` blocking callers per
//! node):
//! * `local`: the `counter` guest on a local namespace, one node.
//! * `global/1`, `global/2`: the `counter` guest on a global namespace
//!   from 1 and 2 nodes (runtimes of this process, each with its own Db and
//!   cluster client).
//! * `global-read/1`: `bank balance` of one account (a read-only
//!   invocation: one validation round trip when served from the tier).
//! * `redis-get-set`: Glass's design, no transaction: GET then SET of the
//!   key per increment (two round trips, lost updates possible), same
//!   number of threads as `global/2`.

use rime_faas::{FunctionConfig, Runtime, RuntimeConfig};
use rime_global::testing::RedisCluster;
use rime_global::{Cluster, GlobalConfig};
use rime_storage::{Db, Durability, Options};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const THREADS_PER_NODE: usize = 4;

fn guest(name: &str) -> Vec<u8> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../guests/target/wasm32-unknown-unknown/release");
    std::fs::read(dir.join(format!("{name}.wasm"))).expect("build the guests: scripts/build-guests")
}

struct Node {
    rt: Runtime,
    _dir: tempfile::TempDir,
}

fn node(cluster: Option<&RedisCluster>) -> Node {
    let dir = tempfile::TempDir::new().unwrap();
    let opts = Options::default()
        .durability(Durability::Sync)
        .checkpoint_interval(None)
        .max_bytes(1 << 32)
        .pool_bytes(64 << 20);
    let db = Arc::new(Db::open(dir.path().join("db"), opts).unwrap());
    let mut cfg = RuntimeConfig::default().max_instances(64);
    if let Some(c) = cluster {
        let client = Cluster::new(GlobalConfig::new(c.urls())).unwrap();
        cfg = cfg.global(Arc::new(client));
    }
    let rt = Runtime::open(db, cfg).unwrap();
    Node { rt, _dir: dir }
}

/// Ops/s of `op` run by `threads` threads for `secs`.
fn measure(threads: usize, secs: f64, op: impl Fn(usize) + Sync) -> f64 {
    let stop = AtomicBool::new(false);
    let done = AtomicU64::new(0);
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            let (stop, done, op) = (&stop, &done, &op);
            s.spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    op(t);
                    done.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        std::thread::sleep(Duration::from_secs_f64(secs));
        stop.store(true, Ordering::Relaxed);
    });
    done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let secs: f64 = args.get(1).map_or(3.0, |s| s.parse().unwrap());
    let repeats: usize = args.get(2).map_or(3, |s| s.parse().unwrap());
    let cluster = RedisCluster::start(3).expect("redis-server is needed");
    let counter = guest("counter");
    let bank = guest("bank");
    let mut rows: Vec<(&str, Vec<f64>)> = Vec::new();
    let mut record = |name, v: f64| match rows.iter_mut().find(|(n, _)| *n == name) {
        Some((_, vs)) => vs.push(v),
        None => rows.push((name, vec![v])),
    };
    for rep in 0..repeats {
        // local
        let n = node(None);
        n.rt.deploy("counter", &counter, FunctionConfig::default())
            .unwrap();
        record(
            "local",
            measure(THREADS_PER_NODE, secs, |_| {
                n.rt.invoke("counter", b"hot").unwrap();
            }),
        );
        drop(n);
        // global/1 and global/2
        for nodes in [1usize, 2] {
            let ns: Vec<Node> = (0..nodes).map(|_| node(Some(&cluster))).collect();
            for n in &ns {
                let cfg = FunctionConfig::default().global("counter");
                n.rt.deploy("counter", &counter, cfg).unwrap();
            }
            let key = format!("hot{rep}-{nodes}");
            let v = measure(nodes * THREADS_PER_NODE, secs, |t| {
                ns[t % nodes].rt.invoke("counter", key.as_bytes()).unwrap();
            });
            record(if nodes == 1 { "global/1" } else { "global/2" }, v);
        }
        // global-read/1
        let n = node(Some(&cluster));
        n.rt.deploy("bank", &bank, FunctionConfig::default().global("bank"))
            .unwrap();
        let acct = format!("r{rep}");
        n.rt.invoke("bank", format!("open {acct} 100").as_bytes())
            .unwrap();
        let q = format!("balance {acct}");
        record(
            "global-read/1",
            measure(THREADS_PER_NODE, secs, |_| {
                n.rt.invoke("bank", q.as_bytes()).unwrap();
            }),
        );
        drop(n);
        // redis-get-set: GET then SET, no transaction.
        let client = rime_global::redis::cluster::ClusterClient::new(cluster.urls()).unwrap();
        let conns: Vec<std::sync::Mutex<rime_global::redis::cluster::ClusterConnection>> = (0..2
            * THREADS_PER_NODE)
            .map(|_| std::sync::Mutex::new(client.get_connection().unwrap()))
            .collect();
        let key = format!("plain{{bench}}:{rep}");
        record(
            "redis-get-set",
            measure(2 * THREADS_PER_NODE, secs, |t| {
                let mut c = conns[t].lock().unwrap();
                let v: Option<i64> = rime_global::redis::cmd("GET")
                    .arg(&key)
                    .query(&mut *c)
                    .unwrap();
                let _: () = rime_global::redis::cmd("SET")
                    .arg(&key)
                    .arg(v.unwrap_or(0) + 1)
                    .query(&mut *c)
                    .unwrap();
            }),
        );
        eprintln!("repeat {} of {repeats} done", rep + 1);
    }
    println!("row\tops/s per repeat");
    for (name, vs) in rows {
        let vs: Vec<String> = vs.iter().map(|v| format!("{v:.0}")).collect();
        println!("{name}\t{}", vs.join("\t"));
    }
}
