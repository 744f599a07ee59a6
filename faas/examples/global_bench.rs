//! Global namespaces beside local ones and beside plain Redis round trips
//! per state operation (Glass's design), with 1, 2 and 3 Rime nodes on one
//! Redis Cluster (`docs/global.md`, "Benchmarks"). Starts its own 3-master
//! cluster (`rime_global::testing`, `appendfsync always`) and, per row and
//! repeat, fresh runtimes over fresh Dbs (`Durability::Sync`, the default
//! of `rime serve`).
//!
//! ```text
//! cargo run --release -p rime-faas --example global_bench -- SECONDS REPEATS [ROWS]
//! ```
//!
//! The workload is the `bank` guest over 64 accounts (random pairs):
//! * `read`: 90 % `balance <a>` (one read), 10 % `transfer <a> <b> 1`;
//! * `write`: 10 % `balance`, 90 % `transfer` (two reads, two writes).
//!
//! Rows (`ROWS`, comma-separated prefixes, picks some):
//! * `local/1`: the bank on a local namespace, one node.
//! * `global/N`: on a global namespace, from N nodes (runtimes of this
//!   process, each with its own Db, executors and cluster client).
//! * `glass/N`: no transaction, one Redis round trip per state operation
//!   (GET; a transfer is GET, GET, SET, SET: updates may be lost), with
//!   the concurrency of `global/N`.
//!
//! Each node keeps `IN_FLIGHT` invocations in flight on its executors (the
//! path `rime serve` takes); `glass/N` runs `N * IN_FLIGHT` threads.
//! Output: invocations/s per repeat, then min / median / max.

use rime_faas::{FunctionConfig, Invoking, Runtime, RuntimeConfig};
use rime_global::testing::RedisCluster;
use rime_global::{Cluster, GlobalConfig};
use rime_storage::{Db, Durability, Options};
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const ACCOUNTS: u64 = 64;
const IN_FLIGHT: usize = 16;

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

/// Read-heavy (`read`) or write-heavy (`write`).
#[derive(Clone, Copy, PartialEq)]
enum Mix {
    Read,
    Write,
}

/// The next operation of a client: a balance or a transfer.
enum Op {
    Balance(u64),
    Transfer(u64, u64),
}

/// xorshift64*: a client's own random sequence, no shared state.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn op(&mut self, mix: Mix) -> Op {
        let transfer = match mix {
            Mix::Read => self.next().is_multiple_of(10),
            Mix::Write => !self.next().is_multiple_of(10),
        };
        let a = self.next() % ACCOUNTS;
        if !transfer {
            return Op::Balance(a);
        }
        let b = (a + 1 + self.next() % (ACCOUNTS - 1)) % ACCOUNTS;
        Op::Transfer(a, b)
    }
}

/// Counts of a run.
#[derive(Default)]
struct Counts {
    ok: AtomicU64,
    failed: AtomicU64,
}

/// Runs `client(i, stop, counts)` on `clients` threads for `secs`;
/// invocations/s and the failures seen.
fn measure(
    clients: usize,
    secs: f64,
    client: impl Fn(usize, &AtomicBool, &Counts) + Sync,
) -> (f64, u64) {
    let stop = AtomicBool::new(false);
    let counts = Counts::default();
    let start = Instant::now();
    std::thread::scope(|s| {
        for i in 0..clients {
            let (stop, counts, client) = (&stop, &counts, &client);
            s.spawn(move || client(i, stop, counts));
        }
        std::thread::sleep(Duration::from_secs_f64(secs));
        stop.store(true, Ordering::Relaxed);
    });
    let ok = counts.ok.load(Ordering::Relaxed) as f64;
    (
        ok / start.elapsed().as_secs_f64(),
        counts.failed.load(Ordering::Relaxed),
    )
}

fn input(prefix: &str, op: Op) -> Vec<u8> {
    match op {
        Op::Balance(a) => format!("balance {prefix}{a}"),
        Op::Transfer(a, b) => format!("transfer {prefix}{a} {prefix}{b} 1"),
    }
    .into_bytes()
}

/// One node's client: `IN_FLIGHT` invocations on its executors, the
/// oldest waited for before the next is sent.
fn drive(rt: &Runtime, prefix: &str, mix: Mix, seed: u64, stop: &AtomicBool, c: &Counts) {
    let mut rng = Rng(seed | 1);
    let mut in_flight: VecDeque<Invoking> = VecDeque::with_capacity(IN_FLIGHT);
    let settle = |i: Invoking| match i.wait() {
        Ok(_) => c.ok.fetch_add(1, Ordering::Relaxed),
        Err(_) => c.failed.fetch_add(1, Ordering::Relaxed),
    };
    while !stop.load(Ordering::Relaxed) {
        if in_flight.len() == IN_FLIGHT
            && let Some(oldest) = in_flight.pop_front()
        {
            settle(oldest);
        }
        in_flight.push_back(rt.invoke_async("bank", input(prefix, rng.op(mix))));
    }
    in_flight.into_iter().for_each(|i| {
        settle(i);
    });
}

/// `bank` deployed on every node (global or not), its accounts opened.
fn bank_nodes(cluster: Option<&RedisCluster>, nodes: usize, prefix: &str) -> Vec<Node> {
    let ns: Vec<Node> = (0..nodes).map(|_| node(cluster)).collect();
    for n in &ns {
        let cfg = match cluster {
            Some(_) => FunctionConfig::default().global("bank"),
            None => FunctionConfig::default(),
        };
        n.rt.deploy("bank", &guest("bank"), cfg).unwrap();
    }
    for a in 0..ACCOUNTS {
        let open = format!("open {prefix}{a} 1000000000");
        ns[0].rt.invoke("bank", open.as_bytes()).unwrap();
    }
    ns
}

/// `glass/N`: the same operations as plain round trips, no transaction.
fn glass(cluster: &RedisCluster, clients: usize, secs: f64, mix: Mix, prefix: &str) -> (f64, u64) {
    use rime_global::redis;
    let client = redis::cluster::ClusterClient::new(cluster.urls()).unwrap();
    let key = |a: u64| format!("glass:{{bench}}:{prefix}{a}");
    let mut setup = client.get_connection().unwrap();
    for a in 0..ACCOUNTS {
        let _: () = redis::cmd("SET")
            .arg(key(a))
            .arg(1_000_000_000i64)
            .query(&mut setup)
            .unwrap();
    }
    let r = measure(clients, secs, |i, stop, c| {
        let mut conn = client.get_connection().unwrap();
        let mut rng = Rng((i as u64 + 1) * 0x9e37_79b9);
        let get = |conn: &mut redis::cluster::ClusterConnection, a: u64| {
            redis::cmd("GET").arg(key(a)).query::<i64>(conn)
        };
        while !stop.load(Ordering::Relaxed) {
            let r = match rng.op(mix) {
                Op::Balance(a) => get(&mut conn, a).map(drop),
                Op::Transfer(a, b) => (|| {
                    let (va, vb) = (get(&mut conn, a)?, get(&mut conn, b)?);
                    redis::cmd("SET")
                        .arg(key(a))
                        .arg(va - 1)
                        .query::<()>(&mut conn)?;
                    redis::cmd("SET")
                        .arg(key(b))
                        .arg(vb + 1)
                        .query::<()>(&mut conn)
                })(),
            };
            match r {
                Ok(()) => c.ok.fetch_add(1, Ordering::Relaxed),
                Err(_) => c.failed.fetch_add(1, Ordering::Relaxed),
            };
        }
    });
    // Transfers keep the total; racing get-then-set ones do not.
    let total: i64 = (0..ACCOUNTS)
        .map(|a| {
            redis::cmd("GET")
                .arg(key(a))
                .query::<i64>(&mut setup)
                .unwrap()
        })
        .sum();
    let drift = total - ACCOUNTS as i64 * 1_000_000_000;
    eprintln!("glass {prefix}: the accounts' total is off by {drift} after the run");
    r
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let secs: f64 = args.get(1).map_or(3.0, |s| s.parse().unwrap());
    let repeats: usize = args.get(2).map_or(3, |s| s.parse().unwrap());
    let wanted: Vec<String> = args.get(3).map_or(vec![String::new()], |s| {
        s.split(',').map(String::from).collect()
    });
    let cluster = RedisCluster::start(3).expect("redis-server is needed");
    let mut rows: Vec<(String, Vec<f64>, u64)> = Vec::new();
    let mut names = Vec::new();
    for mix in ["read", "write"] {
        names.push(format!("local/1 {mix}"));
        for n in 1..=3 {
            names.push(format!("global/{n} {mix}"));
        }
        for n in 1..=3 {
            names.push(format!("glass/{n} {mix}"));
        }
    }
    names.retain(|n| wanted.iter().any(|w| n.starts_with(w.as_str())));
    for rep in 0..repeats {
        for name in &names {
            let (kind, rest) = name.split_once('/').unwrap();
            let (n, mix) = rest.split_once(' ').unwrap();
            let nodes: usize = n.parse().unwrap();
            let mix = if mix == "read" { Mix::Read } else { Mix::Write };
            let prefix = format!("r{rep}{}{nodes}{}", &kind[..2], mix as u8);
            let (rate, failed) = match kind {
                "glass" => glass(&cluster, nodes * IN_FLIGHT, secs, mix, &prefix),
                _ => {
                    let c = (kind == "global").then_some(&cluster);
                    let ns = bank_nodes(c, nodes, &prefix);
                    measure(nodes, secs, |i, stop, c| {
                        drive(&ns[i].rt, &prefix, mix, i as u64 * 7919 + 1, stop, c)
                    })
                }
            };
            match rows.iter_mut().find(|(n, _, _)| n == name) {
                Some((_, vs, f)) => {
                    vs.push(rate);
                    *f += failed;
                }
                None => rows.push((name.clone(), vec![rate], failed)),
            }
        }
        eprintln!("repeat {} of {repeats} done", rep + 1);
    }
    println!("| row | invocations/s per repeat | min | median | max | failed |");
    println!("| --- | --- | --- | --- | --- | --- |");
    for (name, mut vs, failed) in rows {
        let each: Vec<String> = vs.iter().map(|v| format!("{v:.0}")).collect();
        vs.sort_by(f64::total_cmp);
        let (min, med, max) = (vs[0], vs[vs.len() / 2], vs[vs.len() - 1]);
        println!(
            "| {name} | {} | {min:.0} | {med:.0} | {max:.0} | {failed} |",
            each.join(" "),
        );
    }
}
