//! Shared set-up of the global-tier tests (`tests/global*.rs`): Rime
//! nodes, each its own Db and runtime, clients of one real Redis Cluster
//! started by `rime_global::testing::RedisCluster`; and reads of what the
//! cluster committed, straight from it.

use super::{open_db, runtime_config};
use rime_faas::{Invocation, InvokeError, Runtime, RuntimeConfig};
use rime_global::testing::RedisCluster;
use rime_global::{Cluster, GlobalConfig};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// Global calls suspend their invocation, so the executor runs up to
/// `max_admitted` at once, each holding an instance: 32 leaves the
/// 64-instance pool (`runtime_config`) room for the tests' blocking callers.
pub const MAX_ADMITTED: usize = 32;

/// How long a read straight from the cluster may take.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// A Rime node: its own Db and runtime, a client of the shared cluster.
pub struct Node {
    pub rt: Runtime,
    _dir: TempDir,
}

/// A node with the default client configuration of `cluster`.
pub fn node(cluster: &RedisCluster) -> Node {
    node_with(GlobalConfig::new(cluster.urls()), |c| c)
}

/// A node whose client has the configuration `global`, and whose runtime
/// configuration (one executor thread, [`MAX_ADMITTED`]) `f` changes.
pub fn node_with(global: GlobalConfig, f: impl FnOnce(RuntimeConfig) -> RuntimeConfig) -> Node {
    let dir = TempDir::new().unwrap();
    let cfg = runtime_config(dir.path())
        .global(Arc::new(Cluster::new(global).unwrap()))
        .workers(1)
        .max_admitted(MAX_ADMITTED);
    let rt = Runtime::open(open_db(dir.path()), f(cfg)).unwrap();
    Node { rt, _dir: dir }
}

/// A client of the cluster of its own, for the tests' direct reads.
pub fn client(cluster: &RedisCluster) -> Cluster {
    Cluster::new(GlobalConfig::new(cluster.urls())).unwrap()
}

/// The committed value of global `key` in `ns`, straight from the cluster.
pub fn global_value(c: &Cluster, ns: &str, key: impl AsRef<[u8]>) -> Option<Vec<u8>> {
    let v = c
        .fetch(ns, key.as_ref(), Instant::now() + FETCH_TIMEOUT)
        .unwrap();
    v.value.map(|v| v.to_vec())
}

/// The committed counter at global `key` in `ns` (an 8-byte little-endian
/// i64; 0 when absent), straight from the cluster.
pub fn global_i64(c: &Cluster, ns: &str, key: impl AsRef<[u8]>) -> i64 {
    global_value(c, ns, key).map_or(0, |v| i64::from_le_bytes(v.try_into().unwrap()))
}

/// The output of an invocation as text, panicking with `what` (the call,
/// for the message) on an error.
pub fn text(what: &str, r: Result<Invocation, InvokeError>) -> String {
    let out = r.unwrap_or_else(|e| panic!("{what}: {e}")).output;
    String::from_utf8(out).unwrap()
}

/// `input` to function `f` on node `n`, invoked blocking, as text.
pub fn call(n: &Node, f: &str, input: &str) -> String {
    text(input, n.rt.invoke(f, input.as_bytes()))
}

/// The balances of the `bank` guest's accounts `a0`.. `a{accounts - 1}`,
/// as node `n` reads them.
pub fn bank_balances(n: &Node, accounts: usize) -> Vec<i64> {
    (0..accounts)
        .map(|a| {
            text(
                "bank",
                n.rt.invoke("bank", format!("balance a{a}").as_bytes()),
            )
            .parse()
            .unwrap()
        })
        .collect()
}

/// The next value of the xorshift64 sequence in `x`: the tests' random
/// choices, the same on every run for a seed.
pub fn xorshift(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

/// A transfer `(from, to, amount)` between two different accounts of
/// `accounts`, of 1 to `max_amount`, drawn from `x`'s next value.
pub fn random_transfer(x: &mut u64, accounts: usize, max_amount: i64) -> (usize, usize, i64) {
    let x = xorshift(x);
    let from = (x % accounts as u64) as usize;
    let to = (from + 1 + (x >> 8) as usize % (accounts - 1)) % accounts;
    (from, to, 1 + (x >> 20) as i64 % max_amount)
}
