//! Serializability of global namespaces (`docs/global.md`): the committed
//! history of transactions from three nodes over one real Redis Cluster
//! (3 `redis-server` masters started by `rime_global::testing::RedisCluster`;
//! no mock), checked for anomalies by an Elle-style register checker,
//! which is itself tested on histories with known anomalies.

mod common;
use common::kv_input::KvInput;

use common::global_node::{Node, client, global_value, node, xorshift};
use common::guest;
use rime_faas::FunctionConfig;
use rime_global::testing::RedisCluster;
use std::collections::HashMap;
use std::time::Instant;

/// One committed transaction of the history test: what it read (`None`:
/// the key was absent) and wrote, in a register history where every
/// written value is unique (its writer's id) and every write follows a
/// read of its key in the same transaction.
#[derive(Debug, Clone)]
struct HTxn {
    id: String,
    /// Index of the client thread that ran it (its session).
    session: usize,
    reads: Vec<(String, Option<String>)>,
    writes: Vec<(String, String)>,
}

/// An Elle-style check of a register history (the ideas of
/// `storage/tests/common/history/elle`, for registers): the version
/// order of each key is derived from the reads that precede every write
/// (a serializable history has, per key, one chain from "absent" through
/// every committed write to the final value), then the dependency graph
/// (ww along the chains, wr from a value's writer to its readers, rw from
/// a reader to the writer of the next version, and each session's order)
/// must be acyclic. `Err` names the anomaly; `Ok` counts the edges.
fn check_history(
    txns: &[HTxn],
    finals: &HashMap<String, Option<String>>,
) -> Result<[usize; 4], String> {
    use std::collections::HashMap as Map;
    let mut writer: Map<(&str, &str), usize> = Map::new();
    for (i, t) in txns.iter().enumerate() {
        for (k, v) in &t.writes {
            if writer.insert((k, v), i).is_some() {
                return Err(format!("malformed: {v} written to {k} twice"));
            }
        }
    }
    // The version order: the value each write replaced (its own read).
    let mut next: Map<(&str, Option<&str>), usize> = Map::new();
    for (i, t) in txns.iter().enumerate() {
        for (k, v) in &t.writes {
            let prev = t
                .reads
                .iter()
                .find(|(rk, _)| rk == k)
                .map(|(_, v)| v.as_deref());
            let Some(prev) = prev else {
                return Err(format!("malformed: T{} wrote {k} without reading it", t.id));
            };
            if let Some(&j) = next.get(&(k, prev)) {
                return Err(format!(
                    "lost update: T{} and T{} both replaced {k} = {prev:?} (with {v} and {:?})",
                    t.id, txns[j].id, txns[j].writes
                ));
            }
            next.insert((k, prev), i);
        }
    }
    for (i, t) in txns.iter().enumerate() {
        for (k, v) in &t.reads {
            if let Some(v) = v
                && !writer.contains_key(&(k.as_str(), v.as_str()))
            {
                return Err(format!(
                    "T{} read {k} = {v}, which no committed transaction wrote (G1a)",
                    txns[i].id
                ));
            }
        }
    }
    for (k, last) in finals {
        let mut at: Option<&str> = None;
        let mut len = 0;
        while let Some(&i) = next.get(&(k.as_str(), at)) {
            at = Some(
                txns[i]
                    .writes
                    .iter()
                    .find(|(wk, _)| wk == k)
                    .unwrap()
                    .1
                    .as_str(),
            );
            len += 1;
        }
        let writes = txns
            .iter()
            .filter(|t| t.writes.iter().any(|(wk, _)| wk == k))
            .count();
        if len != writes || at != last.as_deref() {
            return Err(format!(
                "{k}: the chain of versions from absent covers {len} of {writes} writes and ends \
                 at {at:?}, but the store holds {last:?}"
            ));
        }
    }
    // The graph.
    let mut edges: Vec<Vec<(usize, &str)>> = vec![Vec::new(); txns.len()];
    let mut counts = [0usize; 4];
    let mut edge = |a: usize, b: usize, kind: &'static str, counts: &mut [usize; 4]| {
        if a != b {
            edges[a].push((b, kind));
            counts[["ww", "wr", "rw", "po"]
                .iter()
                .position(|k| *k == kind)
                .unwrap()] += 1;
        }
    };
    let mut last_of_session: Map<usize, usize> = Map::new();
    for (i, t) in txns.iter().enumerate() {
        for (k, v) in &t.reads {
            let v = v.as_deref();
            if let Some(v) = v {
                edge(writer[&(k.as_str(), v)], i, "wr", &mut counts);
            }
            if let Some(&j) = next.get(&(k.as_str(), v)) {
                // The writer of the next version: ww from this value's
                // writer (if this transaction is it, it is the same edge),
                // rw from every reader of it.
                // (this transaction's own ww edge, when it replaced `v`).
                if let Some(v) = v
                    && j == i
                {
                    edge(writer[&(k.as_str(), v)], i, "ww", &mut counts);
                }
                edge(i, j, "rw", &mut counts);
            }
        }
        if let Some(&p) = last_of_session.get(&t.session) {
            edge(p, i, "po", &mut counts);
        }
        last_of_session.insert(t.session, i);
    }
    // Kahn's algorithm; what remains is on or behind a cycle.
    let mut indeg = vec![0usize; txns.len()];
    for es in &edges {
        for &(b, _) in es {
            indeg[b] += 1;
        }
    }
    let mut ready: Vec<usize> = (0..txns.len()).filter(|&i| indeg[i] == 0).collect();
    let mut done = 0;
    while let Some(a) = ready.pop() {
        done += 1;
        for &(b, _) in &edges[a] {
            indeg[b] -= 1;
            if indeg[b] == 0 {
                ready.push(b);
            }
        }
    }
    if done == txns.len() {
        return Ok(counts);
    }
    // Walk edges among the remaining nodes until one repeats: a cycle.
    let left = |i: usize| indeg[i] > 0;
    let mut path = vec![(0..txns.len()).find(|&i| left(i)).unwrap()];
    let mut kinds = Vec::new();
    loop {
        let a = *path.last().unwrap();
        let &(b, kind) = edges[a].iter().find(|&&(b, _)| left(b)).unwrap();
        kinds.push(kind);
        if let Some(at) = path.iter().position(|&p| p == b) {
            let mut msg = String::from("serializability cycle:\n");
            for (n, &t) in path[at..].iter().enumerate() {
                let t = &txns[t];
                msg += &format!(
                    "  T{} reads {:?} writes {:?} -{}->\n",
                    t.id,
                    t.reads,
                    t.writes,
                    kinds[at + n]
                );
            }
            return Err(msg);
        }
        path.push(b);
    }
}

#[test]
fn the_history_checker_finds_anomalies() {
    let t = |id: &str, session, reads: &[(&str, Option<&str>)], writes: &[(&str, &str)]| HTxn {
        id: id.into(),
        session,
        reads: reads
            .iter()
            .map(|(k, v)| (k.to_string(), v.map(str::to_string)))
            .collect(),
        writes: writes
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    };
    let finals = |kv: &[(&str, &str)]| -> HashMap<String, Option<String>> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), Some(v.to_string())))
            .collect()
    };
    // Serial: fine.
    let ok = [
        t("1", 0, &[("x", None)], &[("x", "a")]),
        t("2", 1, &[("x", Some("a")), ("y", None)], &[("x", "b")]),
    ];
    assert!(check_history(&ok, &finals(&[("x", "b")])).is_ok());
    // Lost update: both replaced the absent x.
    let lost = [
        t("1", 0, &[("x", None)], &[("x", "a")]),
        t("2", 1, &[("x", None)], &[("x", "b")]),
    ];
    let e = check_history(&lost, &finals(&[("x", "b")])).unwrap_err();
    assert!(e.contains("lost update"), "{e}");
    // Write skew: each read both absent keys and wrote one: rw both ways.
    let skew = [
        t("1", 0, &[("x", None), ("y", None)], &[("x", "a")]),
        t("2", 1, &[("x", None), ("y", None)], &[("y", "b")]),
    ];
    let e = check_history(&skew, &finals(&[("x", "a"), ("y", "b")])).unwrap_err();
    assert!(e.contains("cycle") && e.contains("-rw->"), "{e}");
    // A value nobody wrote; a stale read in one session (po + rw).
    let g1a = [t("1", 0, &[("x", Some("z"))], &[])];
    assert!(
        check_history(&g1a, &HashMap::new())
            .unwrap_err()
            .contains("G1a")
    );
    let stale = [
        t("1", 0, &[("x", None)], &[("x", "a")]),
        t("2", 0, &[("x", None)], &[]),
    ];
    let e = check_history(&stale, &finals(&[("x", "a")])).unwrap_err();
    assert!(e.contains("-po->"), "{e}");
    // A write the store lost.
    let e = check_history(&ok, &finals(&[("x", "a")])).unwrap_err();
    assert!(e.contains("chain"), "{e}");
}

/// The history check across nodes: three nodes (each its own Db
/// and runtime) run read-modify-write transactions on a few keys of one
/// global namespace with the `kv` guest, which returns what each `get`
/// read. Every written value is unique (writer and counter) and every
/// write follows a read of its key in the same transaction, so the
/// committed history gives each key's version order; `check_history`
/// finds no lost update, no read of an unwritten value, no write missing
/// from the store, and no cycle of ww/wr/rw/session edges.
#[test]
fn a_history_across_three_nodes_is_serializable() {
    let Some(cluster) = RedisCluster::start(3) else {
        return;
    };
    let nodes: Vec<Node> = (0..3).map(|_| node(&cluster)).collect();
    for n in &nodes {
        let cfg = FunctionConfig::default().global("hist");
        n.rt.deploy("hist", &guest("kv"), cfg).unwrap();
    }
    const KEYS: usize = 5;
    const THREADS_PER_NODE: usize = 2;
    const TXNS_PER_THREAD: usize = 300;
    let started = Instant::now();
    let txns: Vec<HTxn> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..3 * THREADS_PER_NODE)
            .map(|session| {
                let n = &nodes[session % 3];
                s.spawn(move || {
                    let mut x = 0x2545_f491_4f6c_dd1du64 ^ ((session as u64 + 1) * 0x9e37_79b9);
                    let mut done = Vec::new();
                    for c in 0..TXNS_PER_THREAD {
                        let id = format!("{session}.{c}");
                        let mut input = KvInput::new();
                        let mut keys: Vec<(String, bool)> = Vec::new();
                        for _ in 0..1 + c % 3 {
                            let r = xorshift(&mut x);
                            let k = format!("x{}", r % KEYS as u64);
                            if keys.iter().any(|(kk, _)| *kk == k) {
                                continue;
                            }
                            let write = !(r >> 32).is_multiple_of(3);
                            input.get(&k);
                            if write {
                                input.put(&k, &id);
                            }
                            keys.push((k, write));
                        }
                        let out = match n.rt.invoke("hist", &input.bytes()) {
                            Ok(inv) => inv.output,
                            Err(e) => panic!("T{id}: {e}"),
                        };
                        let mut at = 0;
                        let mut t = HTxn {
                            id: id.clone(),
                            session,
                            reads: Vec::new(),
                            writes: Vec::new(),
                        };
                        for (k, write) in keys {
                            let v = match out[at] {
                                0 => {
                                    at += 1;
                                    None
                                }
                                _ => {
                                    let len =
                                        u32::from_le_bytes(out[at + 1..at + 5].try_into().unwrap())
                                            as usize;
                                    at += 5 + len;
                                    Some(String::from_utf8(out[at - len..at].to_vec()).unwrap())
                                }
                            };
                            t.reads.push((k.clone(), v));
                            if write {
                                t.writes.push((k, id.clone()));
                            }
                        }
                        assert_eq!(at, out.len());
                        done.push(t);
                    }
                    done
                })
            })
            .collect();
        hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    let ran = started.elapsed();
    let probe = client(&cluster);
    let finals: HashMap<String, Option<String>> = (0..KEYS)
        .map(|k| {
            let k = format!("x{k}");
            let v = global_value(&probe, "hist", &k);
            (k, v.map(|v| String::from_utf8(v).unwrap()))
        })
        .collect();
    let writes: usize = txns.iter().map(|t| t.writes.len()).sum();
    match check_history(&txns, &finals) {
        Ok([ww, wr, rw, po]) => eprintln!(
            "{} transactions ({writes} writes) in {ran:?}: ww {ww}, wr {wr}, rw {rw}, po {po}, no cycle",
            txns.len()
        ),
        Err(e) => panic!("{e}"),
    }
    assert_eq!(txns.len(), 3 * THREADS_PER_NODE * TXNS_PER_THREAD);
    assert!(writes > txns.len() / 2);
}
