//! Global namespaces over HTTP (`docs/global.md`): real `rime serve` nodes,
//! each with its own data directory, sharing a real Redis Cluster (3
//! `redis-server` masters, `rime_global::testing::RedisCluster`).

mod common;

use common::{Server, TOKEN, auth, code, guest, send, text};
use rime_global::testing::RedisCluster;
use rime_global::{Cluster, GlobalConfig};
use std::time::{Duration, Instant};
use tempfile::TempDir;

fn start_node(cluster: &RedisCluster, dir: &TempDir) -> Server {
    let urls = cluster.url_list();
    Server::start(
        dir.path(),
        &["--token", TOKEN, "--global", &urls, "--executors", "1"],
    )
}

fn deploy(s: &Server, name: &str, guest_name: &str, query: &str) {
    let url = s.url(&format!("/functions/{name}?{query}"));
    let (st, body) = send(auth(ureq::post(&url)), Some(&guest(guest_name)));
    assert_eq!(st, 201, "{}", text(&body));
}

fn invoke(s: &Server, name: &str, input: &[u8]) -> (u16, Vec<u8>) {
    send(
        auth(ureq::post(&s.url(&format!("/invoke/{name}")))),
        Some(input),
    )
}

fn global_i64(cluster: &RedisCluster, ns: &str, key: &[u8]) -> i64 {
    let client = Cluster::new(GlobalConfig::new(cluster.urls())).unwrap();
    let v = client
        .fetch(ns, key, Instant::now() + Duration::from_secs(5))
        .unwrap();
    v.value
        .map_or(0, |v| i64::from_le_bytes((*v).try_into().unwrap()))
}

/// Three nodes increment one global counter; one is SIGKILLed in the
/// middle. Every acknowledged increment is in the cluster (the count is at
/// least the acknowledged ones, and at most those plus the ones in flight
/// at the kill); the others keep serving; the killed node, restarted on
/// its data directory, serves the current value.
#[test]
fn a_counter_shared_by_three_nodes_loses_nothing_acknowledged_when_one_is_killed() {
    let Some(cluster) = RedisCluster::start(3) else {
        return;
    };
    let dirs: Vec<TempDir> = (0..3).map(|_| TempDir::new().unwrap()).collect();
    let mut nodes: Vec<Server> = dirs.iter().map(|d| start_node(&cluster, d)).collect();
    for n in &nodes {
        deploy(n, "counter", "counter", "global=counter");
    }
    const CLIENTS_PER_NODE: usize = 2;
    const PER_CLIENT: usize = 60;
    let victim = 2;
    let (acknowledged, attempted) = std::thread::scope(|s| {
        let mut handles = Vec::new();
        for (i, n) in nodes.iter().enumerate() {
            for _ in 0..CLIENTS_PER_NODE {
                let base = n.base.clone();
                handles.push((
                    i,
                    s.spawn(move || {
                        let (mut ok, mut tried) = (0i64, 0i64);
                        // The victim's clients run until it dies.
                        let limit = if i == victim { usize::MAX } else { PER_CLIENT };
                        for _ in 0..limit {
                            tried += 1;
                            let r = auth(ureq::post(&format!("{base}/invoke/counter")))
                                .timeout(Duration::from_secs(10))
                                .send_bytes(b"hits");
                            match r {
                                Ok(resp) if resp.status() == 200 => ok += 1,
                                // The victim's connections fail once it is dead.
                                Err(ureq::Error::Transport(_)) if i == victim => {
                                    return (ok, tried, true);
                                }
                                other => panic!("node {i}: {other:?}"),
                            }
                        }
                        (ok, tried, false)
                    }),
                ));
            }
        }
        std::thread::sleep(Duration::from_millis(300));
        // SIGKILL (`Server`'s drop: Child::kill) of the victim, in the
        // middle of its load.
        drop(nodes.remove(victim));
        let mut ack = 0;
        let mut tried = 0;
        for (i, h) in handles {
            let (a, t, cut) = h.join().unwrap();
            if i == victim {
                assert!(
                    cut && a > 0,
                    "the victim was killed under load ({a} served)"
                );
            }
            ack += a;
            tried += t;
        }
        (ack, tried)
    });
    let n = global_i64(&cluster, "counter", b"hits");
    assert!(
        n >= acknowledged,
        "{n} counted < {acknowledged} acknowledged"
    );
    assert!(n <= attempted, "{n} counted > {attempted} attempted");
    assert!(
        acknowledged >= (2 * CLIENTS_PER_NODE * PER_CLIENT) as i64,
        "the survivors served all theirs"
    );
    // The killed node, restarted on its directory, serves the current value.
    let restarted = start_node(&cluster, &dirs[victim]);
    let (st, body) = invoke(&restarted, "counter", b"hits");
    assert_eq!(st, 200, "{}", text(&body));
    assert_eq!(text(&body), (n + 1).to_string());
    // And the others see that increment.
    let (st, body) = invoke(&nodes[0], "counter", b"hits");
    assert_eq!((st, text(&body)), (200, (n + 2).to_string()));
}

/// The cluster gone: a global invocation answers 503 within its deadline,
/// a local one still 200.
#[test]
fn a_cluster_gone_is_503_for_global_functions_and_local_ones_still_serve() {
    let Some(mut cluster) = RedisCluster::start(3) else {
        return;
    };
    let dir = TempDir::new().unwrap();
    let n = start_node(&cluster, &dir);
    deploy(&n, "gcount", "counter", "global=gcount&deadline=500ms");
    deploy(&n, "lcount", "counter", "");
    assert_eq!(invoke(&n, "gcount", b"").0, 200);
    cluster.kill_all();
    let start = Instant::now();
    let (st, body) = invoke(&n, "gcount", b"");
    let took = start.elapsed();
    assert_eq!(st, 503, "{}", text(&body));
    assert_eq!(code(&body), "global_unavailable");
    assert!(took < Duration::from_millis(1500), "took {took:?}");
    let (st, body) = invoke(&n, "lcount", b"");
    assert_eq!((st, text(&body)), (200, "1".to_string()));
}

/// `rime deploy --global` through the CLI against a server.
#[test]
fn deploy_global_from_the_cli_and_a_half_global_function_is_refused() {
    let Some(cluster) = RedisCluster::start(3) else {
        return;
    };
    let dir = TempDir::new().unwrap();
    let n = start_node(&cluster, &dir);
    let counter = common::guest_file("counter");
    let run = |args: &[&str]| {
        common::client::rime_cmd()
            .args(["--server", &n.base, "--token", TOKEN])
            .args(args)
            .output()
            .unwrap()
    };
    let ok = run(&["deploy", "c", counter.to_str().unwrap(), "--global", "c"]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let out = run(&["invoke", "c", "--input", "k"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1");
    assert_eq!(global_i64(&cluster, "c", b"k"), 1);
    let half = run(&[
        "deploy",
        "d",
        counter.to_str().unwrap(),
        "--grant",
        "s:rw",
        "--global",
        "s",
    ]);
    assert!(!half.status.success());
    let err = String::from_utf8_lossy(&half.stderr);
    assert!(err.contains("global"), "{err}");
}

/// `rime state` and HTTP `/state` on a namespace a deployed function
/// declares global read and write it in the cluster (not in the node's
/// tree of the same name): what one node's invocations wrote, another
/// node's `state get` shows; what `state put` wrote, invocations see. A
/// local namespace stays in the node. Without a server, `rime state`
/// needs `--global` for a global namespace and says so.
#[test]
fn rime_state_reaches_global_namespaces_on_every_node() {
    let Some(cluster) = RedisCluster::start(3) else {
        return;
    };
    let (dir_a, dir_b) = (TempDir::new().unwrap(), TempDir::new().unwrap());
    let (a, b) = (start_node(&cluster, &dir_a), start_node(&cluster, &dir_b));
    for n in [&a, &b] {
        deploy(n, "gc", "counter", "global=gc");
    }
    deploy(&a, "lc", "counter", "");
    for _ in 0..2 {
        assert_eq!(invoke(&a, "gc", b"k").0, 200);
    }
    let state = |n: &Server, args: &[&str]| {
        let mut all = vec!["--server", &n.base, "--token", TOKEN, "state"];
        all.extend_from_slice(args);
        common::rime_output(&all)
    };
    let two = "0x0200000000000000 (i64 2)";
    // What node a's invocations committed, node b's `state get` shows.
    let (ok, out, err) = state(&b, &["get", "gc", "k"]);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), two);
    // `state put` on b, `state get` and `scan` on a, straight from Redis.
    let (ok, _, err) = state(&b, &["put", "gc", "k2", "hello"]);
    assert!(ok, "{err}");
    let (ok, out, err) = state(&a, &["get", "gc", "k2"]);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "hello");
    let (ok, out, err) = state(&a, &["scan", "gc"]);
    assert!(ok, "{err}");
    assert_eq!(out, format!("k\t{two}\nk2\thello\n"));
    let client = Cluster::new(GlobalConfig::new(cluster.urls())).unwrap();
    let soon = || Instant::now() + Duration::from_secs(5);
    assert_eq!(
        client.get_now("gc", b"k2", soon()).unwrap().unwrap(),
        b"hello"
    );
    // Delete: once, then "not found".
    assert!(state(&a, &["del", "gc", "k2"]).0);
    let (ok, _, err) = state(&b, &["del", "gc", "k2"]);
    assert!(!ok && err.contains("not found"), "{err}");
    assert_eq!(client.get_now("gc", b"k2", soon()).unwrap(), None);
    // HTTP: a value put on b is what an invocation on a counts from.
    let url = |n: &Server, path: &str| n.url(&format!("/state/gc/{path}"));
    let (st, _) = send(auth(ureq::put(&url(&b, "n"))), Some(&41i64.to_le_bytes()));
    assert_eq!(st, 204);
    assert_eq!(text(&invoke(&a, "gc", b"n").1), "42");
    let (st, body) = send(auth(ureq::get(&url(&b, "n"))), None);
    assert_eq!((st, body), (200, 42i64.to_le_bytes().to_vec()));
    let (st, body) = send(auth(ureq::get(&b.url("/state/gc?limit=1"))), None);
    assert_eq!(st, 200);
    let page: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(page["items"][0]["key"], "k");
    assert_eq!(page["next"], "n");
    // A local namespace stays in the node.
    assert!(state(&a, &["put", "lc", "x", "local"]).0);
    assert_eq!(state(&a, &["get", "lc", "x"]).1.trim(), "local");
    assert_eq!(client.get_now("lc", b"x", soon()).unwrap(), None);
    assert!(!state(&b, &["get", "lc", "x"]).0);
    // On the data directory, without a server.
    a.terminate();
    let data = dir_a.path().to_str().unwrap();
    let (ok, _, err) = common::rime_output(&["--data", data, "state", "get", "gc", "k"]);
    assert!(!ok && err.contains("--global"), "{err}");
    let urls = cluster.url_list();
    let on_dir = |args: &[&str]| {
        let mut all = vec!["--data", data, "state", "--global", &urls];
        all.extend_from_slice(args);
        common::rime_output(&all)
    };
    let (ok, out, err) = on_dir(&["get", "gc", "k"]);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), two);
    assert!(on_dir(&["put", "gc", "k3", "from-dir"]).0);
    assert_eq!(state(&b, &["get", "gc", "k3"]).1.trim(), "from-dir");
    let (ok, out, _) = on_dir(&["get", "lc", "x"]);
    assert!(ok);
    assert_eq!(out.trim(), "local");
}
