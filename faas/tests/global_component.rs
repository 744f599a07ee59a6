//! Components on global namespaces (`docs/global.md`, "Components"): the
//! `wasi:keyvalue` guests of guests/components on two `Runtime`s, each
//! over its own Db, sharing namespaces in one real Redis Cluster (3
//! `redis-server` masters started by `rime_global::testing::RedisCluster`;
//! no mock), beside the ABI v1 modules of the same namespaces.

mod common;
use common::kv_input::KvInput;

use bytes::Bytes;
use common::global_node::{
    Node, call, client, global_i64, global_value, node, random_transfer, text,
};
use common::{component, guest, open_db, runtime_config};
use rime_faas::{FunctionConfig, Grant, Invocation, InvokeError, Runtime};
use rime_global::testing::RedisCluster;
use tempfile::TempDir;

const KV: &str = "wasi_kv_counter";

fn two_nodes() -> Option<(RedisCluster, [Node; 2])> {
    let cluster = RedisCluster::start(3)?; // None: SKIPPED, said by `start`
    let nodes = [node(&cluster), node(&cluster)];
    Some((cluster, nodes))
}

/// `wasi-kv-counter` deployed as `name` on every node: its own namespace
/// and `grants`, all global.
fn deploy_kv(nodes: &[Node], name: &str, grants: &[Grant]) {
    let mut cfg = FunctionConfig::default().global(name);
    for g in grants {
        cfg = cfg.grant(g.clone()).global(g.namespace.clone());
    }
    for n in nodes {
        n.rt.deploy(name, &component(KV), cfg.clone()).unwrap();
    }
}

/// Increments from blocking callers and from the executors
/// (`invoke_many`) on both nodes, `per_node` each: the count is exact,
/// and nothing is in the nodes' own trees.
#[test]
fn a_component_counter_incremented_from_two_nodes_is_exact() {
    let Some((cluster, nodes)) = two_nodes() else {
        return;
    };
    deploy_kv(&nodes, "kvc", &[]);
    const PER_NODE: usize = 60;
    std::thread::scope(|s| {
        for n in &nodes {
            s.spawn(|| {
                for _ in 0..PER_NODE / 2 {
                    call(n, "kvc", "incr kvc hits");
                }
            });
            s.spawn(|| {
                let inputs = (0..PER_NODE / 2).map(|_| ("kvc", b"incr kvc hits".to_vec()));
                for r in n.rt.invoke_many(inputs) {
                    text("incr", r);
                }
            });
        }
    });
    let c = client(&cluster);
    assert_eq!(global_i64(&c, "kvc", "hits"), 2 * PER_NODE as i64);
    // Each node's next increment sees the other's.
    let a: i64 = call(&nodes[0], "kvc", "incr kvc hits").parse().unwrap();
    let b: i64 = call(&nodes[1], "kvc", "incr kvc hits").parse().unwrap();
    assert_eq!((a, b), (2 * PER_NODE as i64 + 1, 2 * PER_NODE as i64 + 2));
    assert_eq!(call(&nodes[1], "kvc", "get kvc nothing"), "none");
    for n in &nodes {
        let db = n.rt.db();
        let tree = db.open_tree(&rime_faas::namespace_tree("kvc")).unwrap();
        let local = tree.and_then(|t| db.get(t, b"hits").unwrap());
        assert_eq!(local, None, "a global component wrote its node's tree");
    }
}

/// The ABI v1 `counter` module and the component increment one global
/// key (same layout: an 8-byte little-endian i64), half each, on both
/// nodes at once: the total is exact.
#[test]
fn a_component_and_a_module_share_a_global_counter_exactly() {
    let Some((cluster, nodes)) = two_nodes() else {
        return;
    };
    for n in &nodes {
        let cfg = FunctionConfig::default().global("counter");
        n.rt.deploy("counter", &guest("counter"), cfg).unwrap();
    }
    deploy_kv(&nodes, "kvc", &[Grant::write("counter")]);
    const EACH: usize = 30;
    std::thread::scope(|s| {
        for n in &nodes {
            s.spawn(|| {
                for _ in 0..EACH {
                    text("counter", n.rt.invoke("counter", b"hits"));
                }
            });
            s.spawn(|| {
                let inputs = (0..EACH).map(|_| ("kvc", b"incr counter hits".to_vec()));
                for r in n.rt.invoke_many(inputs) {
                    text("incr", r);
                }
            });
        }
    });
    let total = 4 * EACH as i64;
    assert_eq!(global_i64(&client(&cluster), "counter", "hits"), total);
    assert_eq!(call(&nodes[1], "counter", "hits"), (total + 1).to_string());
    assert_eq!(
        call(&nodes[0], "kvc", "incr counter hits"),
        (total + 2).to_string()
    );
}

/// Transfers between accounts (two increments, refused as an overdraft
/// after the first if the account would go below 0) from both nodes, on
/// the executors and from blocking callers: the books balance, no
/// account is negative, and the balances are the acknowledged transfers.
#[test]
fn component_transfers_across_two_nodes_keep_the_total() {
    let Some((cluster, nodes)) = two_nodes() else {
        return;
    };
    deploy_kv(&nodes, "bank", &[]);
    const ACCOUNTS: usize = 5;
    const INITIAL: i64 = 30;
    const PER_NODE: usize = 80;
    for a in 0..ACCOUNTS {
        call(&nodes[a % 2], "bank", &format!("add bank a{a} {INITIAL}"));
    }
    let plan = |seed: u64| -> Vec<(usize, usize, i64)> {
        let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ seed;
        (0..PER_NODE)
            .map(|_| random_transfer(&mut x, ACCOUNTS, 25))
            .collect()
    };
    let input = |&(f, t, amt): &(usize, usize, i64)| format!("transfer bank a{f} a{t} {amt}");
    let outcome = |req, r: Result<Invocation, InvokeError>| match r {
        Ok(_) => Some(req),
        Err(InvokeError::Function { message, .. }) if message.starts_with("overdraft") => None,
        Err(e) => panic!("transfer {req:?}: {e}"),
    };
    let done: Vec<(usize, usize, i64)> = std::thread::scope(|s| {
        let hs: Vec<_> = nodes
            .iter()
            .enumerate()
            .flat_map(|(i, n)| {
                let blocking = s.spawn(move || {
                    let reqs = plan(2 * i as u64);
                    let rs = reqs
                        .iter()
                        .map(|r| n.rt.invoke("bank", input(r).as_bytes()));
                    let rs: Vec<_> = rs.collect();
                    reqs.into_iter()
                        .zip(rs)
                        .filter_map(|(q, r)| outcome(q, r))
                        .collect()
                });
                let executors = s.spawn(move || {
                    let reqs = plan(2 * i as u64 + 1);
                    let rs =
                        n.rt.invoke_many(reqs.iter().map(|r| ("bank", input(r).into_bytes())));
                    reqs.into_iter()
                        .zip(rs)
                        .filter_map(|(q, r)| outcome(q, r))
                        .collect::<Vec<_>>()
                });
                [blocking, executors]
            })
            .collect();
        hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    assert!(
        done.len() > PER_NODE,
        "only {} transfers went through",
        done.len()
    );
    let mut model = [INITIAL; ACCOUNTS];
    for &(f, t, amt) in &done {
        model[f] -= amt;
        model[t] += amt;
    }
    let c = client(&cluster);
    let balances: Vec<i64> = (0..ACCOUNTS)
        .map(|a| global_i64(&c, "bank", format!("a{a}")))
        .collect();
    assert_eq!(balances.iter().sum::<i64>(), ACCOUNTS as i64 * INITIAL);
    assert!(balances.iter().all(|&b| b >= 0), "{balances:?}");
    assert_eq!(
        balances, model,
        "the balances are the acknowledged transfers"
    );
}

/// The `kv` module's scan output (`count:u32`, then `key:u16-prefixed
/// value:u32-prefixed` entries) as `K=V` strings.
fn decode_scan(out: &[u8]) -> Vec<String> {
    let u = |b: &[u8]| b.iter().rev().fold(0usize, |n, &x| n << 8 | usize::from(x));
    let count = u(&out[..4]);
    let mut at = 4;
    let mut entries = Vec::new();
    for _ in 0..count {
        let kl = u(&out[at..at + 2]);
        let k = String::from_utf8(out[at + 2..at + 2 + kl].to_vec()).unwrap();
        at += 2 + kl;
        let vl = u(&out[at..at + 4]);
        let v = String::from_utf8(out[at + 4..at + 4 + vl].to_vec()).unwrap();
        at += 4 + vl;
        entries.push(format!("{k}={v}"));
    }
    entries
}

/// The `kv` module's scan of its whole namespace, from `start`.
fn module_scan(n: &Node, start: &str) -> Vec<String> {
    let input = KvInput::new().scan(start, 100_000).bytes();
    decode_scan(&n.rt.invoke("shared", &input).unwrap().output)
}

fn keys_of(entries: &[String]) -> String {
    let keys: Vec<&str> = entries
        .iter()
        .map(|e| e.split('=').next().unwrap())
        .collect();
    keys.join(",")
}

/// `list-keys` (over its pages of 1,000) and Rime's `range` on a global
/// bucket answer what the `kv` module's scan of the namespace answers,
/// on the node that wrote the keys and on the other; a listing shows the
/// invocation's own sets and deletes; batches and CAS go through the
/// cluster too.
#[test]
fn list_keys_and_range_on_a_global_bucket_answer_what_the_module_scan_answers() {
    let Some((cluster, nodes)) = two_nodes() else {
        return;
    };
    for n in &nodes {
        let cfg = FunctionConfig::default().global("shared");
        n.rt.deploy("shared", &guest("kv"), cfg).unwrap();
        let cfg = FunctionConfig::default()
            .grant(Grant::read("shared"))
            .global("rs")
            .global("shared");
        n.rt.deploy("rs", &component("range_scan"), cfg).unwrap();
    }
    deploy_kv(&nodes, "kvc", &[Grant::write("shared")]);
    // 1,300 keys, over several fetches from the cluster and two pages.
    let pairs: Vec<String> = (0..1300).map(|i| format!("k{i:04}=v{i}")).collect();
    for chunk in pairs.chunks(500) {
        let input = format!("set-many shared {}", chunk.join(","));
        assert_eq!(call(&nodes[0], "kvc", &input), "ok");
    }
    for n in &nodes {
        let all = module_scan(n, "");
        assert_eq!(all.len(), 1300);
        assert_eq!(call(n, "kvc", "keys shared"), keys_of(&all));
        assert_eq!(call(n, "rs", "shared - - 300"), all.join(","));
        let from = module_scan(n, "k0100");
        let upto: Vec<String> = from
            .into_iter()
            .take_while(|e| e.as_str() < "k0250")
            .collect();
        assert_eq!(upto.len(), 150);
        assert_eq!(call(n, "rs", "shared k0100 k0250 7"), upto.join(","));
        assert_eq!(call(n, "rs", "shared k0250 k0100 7"), "");
    }
    // Own writes in the listing: a delete hides a key, a set of a new one
    // and of an existing one show, before the commit; after it, the
    // module's scan on the other node shows the same.
    let listed = call(
        &nodes[1],
        "kvc",
        "edit-keys shared -k0000,k9999=x,k0500=y,-k1299",
    );
    let mut want: Vec<String> = (1..1299).map(|i| format!("k{i:04}")).collect();
    want.push("k9999".into());
    assert_eq!(listed, want.join(","));
    let scanned = module_scan(&nodes[0], "");
    assert_eq!(keys_of(&scanned), listed);
    assert!(scanned.contains(&"k0500=y".to_string()));
    // Batches and CAS, through the cluster: one node writes, the other reads.
    call(&nodes[0], "kvc", "delete-many shared k0001,k0002");
    assert_eq!(
        call(&nodes[1], "kvc", "get-many shared k0001,k0003,k9999"),
        "k0001=none,k0003=v3,k9999=x"
    );
    assert_eq!(call(&nodes[1], "kvc", "swap shared k0003 w3"), "ok");
    assert_eq!(call(&nodes[0], "kvc", "get shared k0003"), "w3");
    let c = client(&cluster);
    assert_eq!(global_value(&c, "shared", "k0003"), Some(b"w3".to_vec()));
    assert_eq!(global_value(&c, "shared", "k0001"), None);
}

/// Clients on both nodes each insert a new key and list the bucket in
/// one invocation (`edit-keys`). Serializable only if, ordered by how
/// many keys they listed, each listed exactly the keys inserted before it
/// and its own: a key another node commits into the listed range after
/// the listing (a phantom) must re-run the invocation at its commit.
#[test]
fn an_insert_by_another_node_into_a_listed_bucket_re_runs_the_listing() {
    let Some((_cluster, nodes)) = two_nodes() else {
        return;
    };
    deploy_kv(&nodes, "ph", &[]);
    const PER_CLIENT: usize = 12;
    let (listings, retries): (Vec<String>, u32) = std::thread::scope(|s| {
        let hs: Vec<_> = (0..4)
            .map(|client| {
                let n = &nodes[client % 2];
                s.spawn(move || {
                    let mut out = Vec::new();
                    let mut retries = 0;
                    for i in 0..PER_CLIENT {
                        let input = format!("edit-keys ph p{client}-{i:02}=x");
                        let inv = n.rt.invoke_async("ph", input.into_bytes()).wait().unwrap();
                        retries += inv.retries;
                        out.push(String::from_utf8(inv.output).unwrap());
                    }
                    (out, retries)
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).fold(
            (Vec::new(), 0),
            |(mut all, r), (out, retries)| {
                all.extend(out);
                (all, r + retries)
            },
        )
    });
    let mut seen: Vec<std::collections::BTreeSet<&str>> =
        listings.iter().map(|l| l.split(',').collect()).collect();
    seen.sort_by_key(|s| s.len());
    for (i, keys) in seen.iter().enumerate() {
        assert_eq!(
            keys.len(),
            i + 1,
            "two invocations listed {} keys",
            keys.len()
        );
        if i > 0 {
            assert!(
                keys.is_superset(&seen[i - 1]),
                "{keys:?} lost a key of {:?}",
                seen[i - 1]
            );
        }
    }
    eprintln!("{} inserts, {retries} re-runs", listings.len());
}

/// An `Err` from the handler, a trap (a panic), and an overdraft after a
/// first increment, each on a global namespace, on the executors and on
/// a blocking caller: nothing reaches the cluster. Then a read-only
/// grant's write is refused as locally.
#[test]
fn a_failed_component_on_a_global_namespace_commits_nothing() {
    let Some((cluster, nodes)) = two_nodes() else {
        return;
    };
    deploy_kv(&nodes, "kvc", &[Grant::read("ro")]);
    assert_eq!(call(&nodes[0], "kvc", "add kvc a 5"), "5");
    let c = client(&cluster);
    for n in &nodes {
        for input in ["fail kvc a", "panic kvc a", "transfer kvc a b 6"] {
            let blocking = n.rt.invoke("kvc", input.as_bytes());
            let executors = n.rt.invoke_async("kvc", input.as_bytes().to_vec()).wait();
            for r in [blocking, executors] {
                match (input, r) {
                    ("panic kvc a", Err(InvokeError::Trap(m))) => {
                        assert!(m.contains("unreachable"), "{m}")
                    }
                    (_, Err(InvokeError::Function { message, .. })) => {
                        assert!(!input.starts_with("panic"), "{input}: {message}")
                    }
                    (_, other) => panic!("{input}: {other:?}"),
                }
            }
        }
    }
    assert_eq!(global_i64(&c, "kvc", "a"), 5);
    assert_eq!(global_value(&c, "kvc", "b"), None);
    assert_eq!(call(&nodes[1], "kvc", "incr kvc a"), "6");
    match nodes[0].rt.invoke("kvc", b"set ro k v") {
        Err(InvokeError::Function { message, .. }) => assert!(message.contains("access denied")),
        other => panic!("{other:?}"),
    }
    assert_eq!(global_value(&c, "ro", "k"), None);
}

/// An HTTP-triggered component (the URL shortener) on a global namespace,
/// through `invoke_http_async`: a link stored on one node redirects on
/// the other, whose visits count on both.
#[test]
fn an_http_component_on_a_global_namespace_serves_every_node() {
    let Some((_cluster, nodes)) = two_nodes() else {
        return;
    };
    for n in &nodes {
        let cfg = FunctionConfig::default().global("short");
        n.rt.deploy("short", &component("url_shortener"), cfg)
            .unwrap();
    }
    let request = |method: &str, target: &str, body: &str| {
        let b = http::Request::builder().method(method).uri(target);
        let b = b.header("content-type", "text/uri-list");
        b.body(Bytes::from(body.to_string())).unwrap()
    };
    let put = request("PUT", "/rime", "https://example.invalid/rime");
    let (resp, _) = nodes[0].rt.invoke_http_async("short", &put).wait().unwrap();
    assert_eq!(resp.status().as_u16(), 201);
    for visit in 1..=4 {
        let n = &nodes[visit % 2];
        let get = request("GET", "/rime", "");
        let (resp, _) = n.rt.invoke_http_async("short", &get).wait().unwrap();
        assert_eq!(resp.status().as_u16(), 302);
        assert_eq!(resp.headers()["location"], "https://example.invalid/rime");
        assert_eq!(resp.headers()["x-visits"], visit.to_string().as_str());
    }
    // The blocking path too.
    let (resp, _) = nodes[1]
        .rt
        .invoke_http("short", &request("GET", "/rime", ""))
        .unwrap();
    assert_eq!(resp.headers()["x-visits"], "5");
}

/// Without `--global`, a global component fails as a global module does.
#[test]
fn a_global_component_on_a_node_without_a_global_store_says_so() {
    let dir = TempDir::new().unwrap();
    let rt = Runtime::open(open_db(dir.path()), runtime_config(dir.path())).unwrap();
    let cfg = FunctionConfig::default().global("kvc");
    rt.deploy("kvc", &component(KV), cfg).unwrap();
    let blocking = rt.invoke("kvc", b"incr kvc hits");
    let executors = rt.invoke_async("kvc", b"incr kvc hits".to_vec()).wait();
    for r in [blocking, executors] {
        match r {
            Err(InvokeError::GlobalUnavailable(m)) => assert!(m.contains("--global"), "{m}"),
            other => panic!("{other:?}"),
        }
    }
    // A local component still may not name a namespace global elsewhere.
    let local = FunctionConfig::default().grant(Grant::write("kvc"));
    assert!(matches!(
        rt.deploy("other", &component(KV), local),
        Err(rime_faas::DeployError::BadGlobal(_))
    ));
}
