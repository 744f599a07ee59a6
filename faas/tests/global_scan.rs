//! `scan` on global namespaces (`docs/global.md`, "Scan"): two `Runtime`s,
//! each over its own Db, share a namespace in one real Redis Cluster (3
//! `redis-server` masters started by `rime_global::testing::RedisCluster`;
//! no mock).

mod common;
use common::kv_input::KvInput;

use common::global_node::{node, node_with};
use common::guest;
use probe::script::{Bytes, Op, encode};
use rime_abi::{SCAN_HI_INCLUSIVE, SCAN_LO_EXCLUSIVE};
use rime_faas::{FunctionConfig, LogSink, Runtime};
use rime_global::GlobalConfig;
use rime_global::testing::RedisCluster;
use std::collections::BTreeSet;
use std::sync::Mutex;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::time::Duration;

/// The deadline of the transcript test's functions.
const TRANSCRIPT_DEADLINE: Duration = Duration::from_secs(20);

/// The own namespace's handle.
const OWN: i32 = rime_abi::OWN_NAMESPACE;

fn k(s: impl AsRef<[u8]>) -> Bytes {
    Bytes::lit(s)
}
fn put(key: &str, val: Bytes) -> Op {
    Op::Put {
        ns: OWN,
        key: k(key),
        val,
    }
}
fn delete(key: &str) -> Op {
    Op::Delete {
        ns: OWN,
        key: k(key),
    }
}
fn scan(lo: &str, hi: Option<&str>, flags: u32, cap: u32) -> Op {
    Op::Scan {
        ns: OWN,
        lo: k(lo),
        hi: hi.map(k),
        flags,
        cap,
    }
}

/// The probe's transcript of `ops` run by `function` on `rt`.
fn transcript(rt: &Runtime, function: &str, ops: &[Op]) -> String {
    let r = rt.invoke(function, &encode(ops));
    let out = r.unwrap_or_else(|e| panic!("{function}: {e}")).output;
    String::from_utf8(out).unwrap()
}

/// Scans whose every call the local host answers in its own way: bounds
/// and flags, buffers too small for one record, for END, or exactly full.
fn scans() -> Vec<Op> {
    let (lo_x, hi_i) = (SCAN_LO_EXCLUSIVE, SCAN_HI_INCLUSIVE);
    // A record of a 3-byte key ("s/a") and a 2-byte value.
    let rec = 8 + 3 + 2;
    vec![
        scan("", None, 0, 4096),
        scan("s/", Some("s/d"), 0, 4096),
        scan("s/b", Some("s/d"), hi_i, 4096),
        scan("s/b", Some("s/d"), lo_x | hi_i, 4096),
        scan("s/b", None, lo_x, 4096),
        scan("s/", None, 0, rec),
        scan("s/", None, 0, rec + 3),
        scan("s/", None, 0, 2 * rec + 4),
        scan("s/", None, 0, 5),
        scan("s/", None, 0, 0),
        scan("s/z", None, 0, 2),
        scan("s/d", Some("s/b"), 0, 64),
        scan("s/b", Some("s/b"), 0, 64),
        scan("s/b", Some("s/b"), hi_i, 64),
        scan("s/", None, 4, 64),
        scan(&"k".repeat(513), None, 0, 64),
        Op::Scan {
            ns: 7,
            lo: k(""),
            hi: None,
            flags: 0,
            cap: 64,
        },
    ]
}

/// The probe's scans of a global namespace answer what they answer on a
/// local one (same codes, same bytes in the buffer), for keys another
/// node committed, for the invocation's own writes, and over ranges that
/// take several fetches from the cluster.
#[test]
fn a_global_scan_answers_what_a_local_scan_answers() {
    let Some(cluster) = RedisCluster::start(3) else {
        return; // SKIPPED, said by `start`; with RIME_REQUIRE_REDIS it panics
    };
    let (a, b) = (node(&cluster), node(&cluster));
    let probe = guest("probe");
    // What is compared is the answers, not their speed: the 700-key
    // scans take several round trips each, over a second in a debug
    // build on two loaded cores (the default deadline failed CI).
    let slow = || FunctionConfig::default().deadline(TRANSCRIPT_DEADLINE);
    a.rt.deploy("local", &probe, slow()).unwrap();
    for n in [&a, &b] {
        let cfg = slow().global("shared");
        n.rt.deploy("shared", &probe, cfg).unwrap();
    }
    // Each step: what node `a` writes (locally and globally), then what
    // node `b` scans of the global namespace beside `a`'s local scans.
    let v = |s: &str| k(s);
    let steps: Vec<(&str, Vec<Op>)> = vec![
        ("empty", scans()),
        (
            "committed elsewhere",
            [
                vec![
                    put("s/a", v("1a")),
                    put("s/b", v("2b")),
                    put("s/c", v("3c")),
                    put("s/d", v("4d")),
                    put("t/x", v("xx")),
                    put("", v("")),
                ],
                scans(),
            ]
            .concat(),
        ),
        (
            "own writes over committed keys",
            [
                vec![
                    delete("s/b"),
                    put("s/bb", v("22")),
                    put("s/c", v("33")),
                    delete("t/x"),
                    delete("nothing"),
                ],
                scans(),
            ]
            .concat(),
        ),
    ];
    for (what, ops) in &steps {
        let local = transcript(&a.rt, "local", ops);
        let global = transcript(&a.rt, "shared", ops);
        assert_eq!(global, local, "{what}: node a, global beside local");
        let read_only: Vec<Op> = scans();
        let local = transcript(&a.rt, "local", &read_only);
        let global = transcript(&b.rt, "shared", &read_only);
        assert_eq!(global, local, "{what}: node b reads what a committed");
    }
    // 700 keys of 100-byte values: one call fills a 16 KiB buffer (about
    // 140 records), a 1 MiB one takes every key (several fetches of 256).
    let many: Vec<Op> = (0..700)
        .map(|i| {
            put(
                &format!("m/{i:04}"),
                Bytes::Fill(100, b'0' + (i % 10) as u8),
            )
        })
        .collect();
    assert_eq!(
        transcript(&a.rt, "shared", &many),
        transcript(&a.rt, "local", &many)
    );
    let big = vec![
        scan("m/", None, 0, 16 << 10),
        scan("m/0100", None, SCAN_LO_EXCLUSIVE, 16 << 10),
        scan("m/", None, 0, 1 << 20),
        scan("m/0300", Some("m/0600"), 0, 1 << 20),
        scan("", None, 0, 1 << 20),
    ];
    let local = transcript(&a.rt, "local", &big);
    assert_eq!(transcript(&b.rt, "shared", &big), local, "700 keys");
    // The same after `b` deleted most of them in the invocation that
    // scans: fetches whose keys are all hidden go on to the next.
    let hide: Vec<Op> = (20..690).map(|i| delete(&format!("m/{i:04}"))).collect();
    let ops = [hide, big].concat();
    let local = transcript(&a.rt, "local", &ops);
    assert_eq!(transcript(&b.rt, "shared", &ops), local, "own deletes");
}

/// Invocations on two nodes each scan a range and insert one key into
/// it: serializable only if each saw exactly the keys inserted before it,
/// so no two saw the same number. Without the commit's check of the
/// scanned range (phantoms) two concurrent ones see the same keys and
/// both commit; with it, one re-runs.
#[test]
fn an_insert_into_a_scanned_range_by_another_node_re_runs_the_scan() {
    let Some(cluster) = RedisCluster::start(3) else {
        return; // SKIPPED, said by `start`; with RIME_REQUIRE_REDIS it panics
    };
    let nodes = [node(&cluster), node(&cluster)];
    for n in &nodes {
        let cfg = FunctionConfig::default().global("roster");
        n.rt.deploy("roster", &guest("kv"), cfg).unwrap();
    }
    const THREADS_PER_NODE: usize = 3;
    const PER_THREAD: usize = 25;
    // (key inserted, keys seen, retries) of every invocation.
    let runs: Vec<(Vec<u8>, BTreeSet<Vec<u8>>, u32)> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..nodes.len() * THREADS_PER_NODE)
            .map(|t| {
                let rt = &nodes[t % nodes.len()].rt;
                s.spawn(move || {
                    (0..PER_THREAD)
                        .map(|i| {
                            let key = format!("d/{t}-{i:03}").into_bytes();
                            let inv = rt.invoke("roster", &scan_then_put(&key)).unwrap();
                            (key, seen_keys(&inv.output), inv.retries)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    let mut by_seen: Vec<_> = runs.iter().collect();
    by_seen.sort_by_key(|(_, seen, _)| seen.len());
    let mut before = BTreeSet::new();
    for (key, seen, _) in by_seen {
        assert_eq!(
            seen,
            &before,
            "the insert of {:?} saw other keys than those inserted before it",
            String::from_utf8_lossy(key)
        );
        before.insert(key.clone());
    }
    let retries: u32 = runs.iter().map(|r| r.2).sum();
    assert!(retries > 0, "6 clients on one range never conflicted");
    eprintln!("{} inserts, {retries} re-runs for phantoms", runs.len());
}

/// The `kv` guest's input: scan from `d/` (every key), then put `key`.
fn scan_then_put(key: &[u8]) -> Vec<u8> {
    KvInput::new().scan(b"d/", u32::MAX).put(key, b"1").bytes()
}

/// The keys of the `kv` guest's scan response (`count`, then `count` ×
/// `key value`).
fn seen_keys(out: &[u8]) -> BTreeSet<Vec<u8>> {
    let count = u32::from_le_bytes(out[..4].try_into().unwrap());
    let mut at = 4;
    let mut keys = BTreeSet::new();
    for _ in 0..count {
        let len = usize::from(u16::from_le_bytes(out[at..at + 2].try_into().unwrap()));
        keys.insert(out[at + 2..at + 2 + len].to_vec());
        at += 2 + len;
        let vlen = u32::from_le_bytes(out[at..at + 4].try_into().unwrap()) as usize;
        at += 4 + vlen;
    }
    assert_eq!(at, out.len(), "the response is the scan's only");
    keys
}

/// A log sink that holds the first line's host call until the test says
/// go: the guest is stopped between its scan and its commit.
fn held_log() -> (LogSink, Receiver<()>, Sender<()>) {
    let (reached_tx, reached) = channel();
    let (go, go_rx) = channel::<()>();
    let gate = Mutex::new(Some((reached_tx, go_rx)));
    let sink = LogSink::new(move |_| {
        let first = gate.lock().unwrap().take();
        if let Some((reached, go)) = first {
            reached.send(()).unwrap();
            go.recv().unwrap();
        }
    });
    (sink, reached, go)
}

/// Deterministically: node A's invocation scans `[d/, d0)` and stops
/// (its log line held); node B commits a key; A goes on and commits. A
/// key inserted into the range re-runs A's invocation once, and the
/// re-run's scan sees it; one inserted outside the range does not.
#[test]
fn a_key_another_node_inserts_into_a_scanned_range_re_runs_the_scan() {
    let Some(cluster) = RedisCluster::start(3) else {
        return; // SKIPPED, said by `start`; with RIME_REQUIRE_REDIS it panics
    };
    let probe = guest("probe");
    let b = node(&cluster);
    let cfg = || FunctionConfig::default().global("rooms");
    b.rt.deploy("rooms", &probe, cfg()).unwrap();
    transcript(&b.rt, "rooms", &[put("d/1", k("x"))]);
    for (inserted, re_runs) in [("e/1", 0), ("d/2", 1)] {
        let (sink, reached, go) = held_log();
        let a = node_with(GlobalConfig::new(cluster.urls()), |c| c.log_sink(sink));
        a.rt.deploy("rooms", &probe, cfg()).unwrap();
        let script = encode(&[
            scan("d/", Some("d0"), 0, 4096),
            Op::Log {
                level: rime_abi::Level::Info as i32,
                msg: k("scanned"),
            },
            put("d/seen", k("y")),
        ]);
        std::thread::scope(|s| {
            let scanning = s.spawn(|| a.rt.invoke("rooms", &script).unwrap());
            reached
                .recv_timeout(Duration::from_secs(10))
                .expect("the invocation reached its log line");
            transcript(&b.rt, "rooms", &[put(inserted, k("z"))]);
            go.send(()).unwrap();
            let inv = scanning.join().unwrap();
            assert_eq!(inv.retries, re_runs, "after an insert of {inserted}");
            let out = String::from_utf8(inv.output).unwrap();
            let d2_hex = "642f32"; // "d/2"
            assert_eq!(out.contains(d2_hex), inserted == "d/2", "{out}");
        });
    }
}
