//! Global namespaces (`docs/global.md`): several `Runtime`s, each over its
//! own Db, share namespaces in one real Redis Cluster (3 `redis-server`
//! masters started by `rime_global::testing::RedisCluster`; no mock).
//! Counters and bank transfers across nodes, the deploy rules of global
//! namespaces, and local invocations beside global ones. Failover is in
//! `global_failover.rs`, the serializability of histories in
//! `global_history.rs`.

mod common;

use common::global_node::{Node, bank_balances, client, global_i64, node, random_transfer, text};
use common::{guest, open_db, runtime_config};
use rime_faas::{DeployError, FunctionConfig, Grant, InvokeError, Runtime};
use rime_global::testing::RedisCluster;
use std::time::{Duration, Instant};
use tempfile::TempDir;

#[test]
fn a_counter_incremented_from_three_nodes_is_exact() {
    let Some(cluster) = RedisCluster::start(3) else {
        return;
    };
    let nodes: Vec<Node> = (0..3).map(|_| node(&cluster)).collect();
    for n in &nodes {
        let cfg = FunctionConfig::default().global("counter");
        n.rt.deploy("counter", &guest("counter"), cfg).unwrap();
    }
    const PER_NODE: usize = 150;
    std::thread::scope(|s| {
        for n in &nodes {
            // Blocking callers and the executors, on every node.
            s.spawn(|| {
                for _ in 0..PER_NODE / 2 {
                    text("counter", n.rt.invoke("counter", b"hits"));
                }
            });
            s.spawn(|| {
                let many =
                    n.rt.invoke_many((0..PER_NODE / 2).map(|_| ("counter", b"hits".to_vec())));
                for r in many {
                    text("counter", r);
                }
            });
        }
    });
    assert_eq!(
        global_i64(&client(&cluster), "counter", b"hits"),
        3 * PER_NODE as i64
    );
    // Every node's next increment sees every other's.
    let mut seen: Vec<i64> = nodes
        .iter()
        .map(|n| {
            text("counter", n.rt.invoke("counter", b"hits"))
                .parse()
                .unwrap()
        })
        .collect();
    seen.sort();
    let first = 3 * PER_NODE as i64 + 1;
    assert_eq!(seen, vec![first, first + 1, first + 2]);
    // Nothing went to the nodes' local trees.
    for n in &nodes {
        let db = n.rt.db();
        let tree = db
            .open_tree(&rime_faas::namespace_tree("counter"))
            .unwrap()
            .unwrap();
        assert_eq!(db.get(tree, b"hits").unwrap(), None);
    }
}

/// Bank transfers from clients on three nodes: the total is exact and every
/// node sees every acknowledged transfer. 600 transfers in CI;
/// `RIME_STRESS_SCALE=17` runs the issue's 10,000 (10,200).
#[test]
fn bank_transfers_across_nodes_keep_the_total() {
    let Some(cluster) = RedisCluster::start(3) else {
        return;
    };
    let nodes: Vec<Node> = (0..3).map(|_| node(&cluster)).collect();
    for n in &nodes {
        let cfg = FunctionConfig::default().global("bank");
        n.rt.deploy("bank", &guest("bank"), cfg).unwrap();
    }
    const ACCOUNTS: usize = 8;
    const INITIAL: i64 = 100;
    let transfers_per_node: usize = 200 * stress_scale();
    for a in 0..ACCOUNTS {
        text(
            "bank",
            nodes[a % 3]
                .rt
                .invoke("bank", format!("open a{a} {INITIAL}").as_bytes()),
        );
    }
    let transfers_done = std::sync::atomic::AtomicBool::new(false);
    let acknowledged: Vec<Vec<(usize, usize, i64)>> = std::thread::scope(|s| {
        // Meanwhile every node sums the accounts (a scan): always exact.
        for n in &nodes {
            let done = &transfers_done;
            s.spawn(move || {
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    let total = text("bank", n.rt.invoke("bank", b"total"));
                    assert_eq!(total, (ACCOUNTS as i64 * INITIAL).to_string());
                }
            });
        }
        let hs: Vec<_> = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| {
                s.spawn(move || {
                    let mut done = Vec::new();
                    let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ i as u64;
                    let reqs: Vec<(usize, usize, i64)> = (0..transfers_per_node)
                        .map(|_| random_transfer(&mut x, ACCOUNTS, 40))
                        .collect();
                    let results = n.rt.invoke_many(reqs.iter().map(|(f, t, amt)| {
                        ("bank", format!("transfer a{f} a{t} {amt}").into_bytes())
                    }));
                    for (r, req) in results.into_iter().zip(reqs) {
                        match r {
                            Ok(_) => done.push(req),
                            Err(InvokeError::Function { message, .. })
                                if message.starts_with("overdraft") => {}
                            Err(e) => panic!("transfer {req:?}: {e}"),
                        }
                    }
                    done
                })
            })
            .collect();
        let acknowledged = hs.into_iter().map(|h| h.join().unwrap()).collect();
        transfers_done.store(true, std::sync::atomic::Ordering::Relaxed);
        acknowledged
    });
    // The model: the acknowledged transfers, applied in any order, give
    // the balances (a sum is order-free; overdraft refusals are not
    // checked against the model, only that the books balance).
    let mut model = [INITIAL; ACCOUNTS];
    for &(f, t, amt) in acknowledged.iter().flatten() {
        model[f] -= amt;
        model[t] += amt;
    }
    let ok: usize = acknowledged.iter().map(Vec::len).sum();
    assert!(ok > transfers_per_node, "only {ok} transfers went through");
    for n in &nodes {
        let balances = bank_balances(n, ACCOUNTS);
        assert_eq!(balances.iter().sum::<i64>(), ACCOUNTS as i64 * INITIAL);
        assert_eq!(
            balances, model,
            "every node sees every acknowledged transfer"
        );
    }
    // `total` scans the accounts: every node sums them to the total.
    for n in &nodes {
        let total = text("bank", n.rt.invoke("bank", b"total"));
        assert_eq!(total, (ACCOUNTS as i64 * INITIAL).to_string());
    }
}

/// A global call waits for Redis without holding its executor: with one
/// executor thread and the namespace's master stopped (SIGSTOP: it
/// neither answers nor refuses), local invocations on that same thread
/// keep completing while the global one is outstanding, and the global
/// one fails at its deadline. (With the synchronous client the global
/// read held the thread, and the local invocations waited for it.)
#[test]
fn an_executor_runs_local_invocations_while_a_global_call_waits() {
    let Some(cluster) = RedisCluster::start(3) else {
        panic!("redis-server is required for this test");
    };
    let n = node(&cluster);
    let deadline = Duration::from_millis(1500);
    let global = FunctionConfig::default()
        .global("gcount")
        .deadline(deadline);
    n.rt.deploy("gcount", &guest("counter"), global).unwrap();
    n.rt.deploy("lcount", &guest("counter"), FunctionConfig::default())
        .unwrap();
    // Connected, and the counter's copy not in the tier (a commit drops
    // the keys it wrote): the next invocation reads from the master.
    assert_eq!(
        text("gcount", n.rt.invoke_async("gcount", b"".to_vec()).wait()),
        "1"
    );
    assert_eq!(n.rt.workers(), 1, "one executor runs both");
    let master = cluster.master_of("gcount");
    cluster.pause(master, true);
    let start = Instant::now();
    let outstanding = n.rt.invoke_async("gcount", b"".to_vec());
    let mut locals = 0;
    let mut slowest = Duration::ZERO;
    while start.elapsed() < deadline / 2 {
        let t = Instant::now();
        text("lcount", n.rt.invoke_async("lcount", b"".to_vec()).wait());
        slowest = slowest.max(t.elapsed());
        locals += 1;
    }
    let locals_done = start.elapsed();
    let r = outstanding.wait();
    let global_took = start.elapsed();
    cluster.pause(master, false);
    eprintln!(
        "{locals} local invocations in {locals_done:?} (slowest {slowest:?}); \
         the global one ended after {global_took:?}: {r:?}"
    );
    assert!(
        matches!(r, Err(InvokeError::GlobalUnavailable(_))),
        "the global invocation: {r:?}"
    );
    assert!(
        global_took >= deadline && global_took < deadline + Duration::from_millis(500),
        "the global invocation ended after {global_took:?}, its deadline is {deadline:?}"
    );
    assert!(
        locals >= 5 && locals_done < global_took,
        "{locals} local invocations completed in {locals_done:?}, while the global one waited"
    );
    assert!(
        slowest < deadline / 4,
        "slowest local invocation: {slowest:?}"
    );
    // The master back, the namespace serves again.
    assert_eq!(
        text("gcount", n.rt.invoke_async("gcount", b"".to_vec()).wait()),
        "2"
    );
}

#[test]
fn a_global_function_on_a_node_without_a_global_store_says_so() {
    let dir = TempDir::new().unwrap();
    let rt = Runtime::open(open_db(dir.path()), runtime_config(dir.path())).unwrap();
    rt.deploy(
        "counter",
        &guest("counter"),
        FunctionConfig::default().global("counter"),
    )
    .unwrap();
    match rt.invoke("counter", b"") {
        Err(InvokeError::GlobalUnavailable(m)) => assert!(m.contains("--global"), "{m}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn deploy_refuses_namespaces_half_global() {
    let dir = TempDir::new().unwrap();
    let rt = Runtime::open(open_db(dir.path()), runtime_config(dir.path())).unwrap();
    let wasm = guest("counter");
    let half = FunctionConfig::default()
        .grant(Grant::write("stats"))
        .global("stats");
    assert!(matches!(
        rt.deploy("c", &wasm, half),
        Err(DeployError::BadGlobal(_))
    ));
    let stranger = FunctionConfig::default().global("c").global("nobody");
    assert!(matches!(
        rt.deploy("c", &wasm, stranger),
        Err(DeployError::BadGlobal(_))
    ));
    // `stats` local for one function, then global for another: refused.
    let local = FunctionConfig::default().grant(Grant::write("stats"));
    rt.deploy("a", &wasm, local).unwrap();
    let global = FunctionConfig::default()
        .grant(Grant::write("stats"))
        .global("b")
        .global("stats");
    match rt.deploy("b", &wasm, global.clone()) {
        Err(DeployError::BadGlobal(m)) => assert!(m.contains("\"stats\""), "{m}"),
        other => panic!("{other:?}"),
    }
    rt.undeploy("a").unwrap();
    rt.deploy("b", &wasm, global).unwrap();
    // The declaration survives a restart.
    drop(rt);
    let rt = Runtime::open(open_db(dir.path()), runtime_config(dir.path())).unwrap();
    let b = rt.functions().into_iter().find(|f| f.name == "b").unwrap();
    let mut g = b.config.global.clone();
    g.sort();
    assert_eq!(g, ["b", "stats"]);
}

/// Read-only invocations of a key in the local tier commit (they are
/// validated, and valid) from many threads at once.
#[test]
fn concurrent_reads_of_a_tier_copy_commit() {
    let Some(cluster) = RedisCluster::start(3) else {
        return;
    };
    let n = node(&cluster);
    n.rt.deploy(
        "bank",
        &guest("bank"),
        FunctionConfig::default().global("bank"),
    )
    .unwrap();
    text("bank", n.rt.invoke("bank", b"open r 100"));
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..50 {
                    let inv = n.rt.invoke("bank", b"balance r").unwrap();
                    assert_eq!(inv.output, b"100");
                    assert_eq!(inv.retries, 0);
                }
            });
        }
    });
}

/// `RIME_STRESS_SCALE` (default 1): how many times the CI size a test runs.
fn stress_scale() -> usize {
    std::env::var("RIME_STRESS_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
}
