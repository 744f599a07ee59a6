//! Contention splits (`src/contention.rs`): a leaf two threads keep taking
//! from each other to write different keys splits between them; one
//! thread alone, or two fighting over one key, never split a leaf for it.

mod common;
use common::*;
use rime_btree::BTree;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Barrier, Mutex};
use std::time::{Duration, Instant};

/// Counters: short keys, 8-byte values, all in one leaf to begin with
/// (a root leaf never splits for contention, so a few filler keys first
/// give the tree a level above them).
fn counters_tree(p: &Pool, counters: u64) -> BTree {
    let t = tree(p);
    for i in 0..400u64 {
        t.insert(format!("a{i:05}").as_bytes(), &value(i, 200))
            .unwrap();
    }
    for c in 0..counters {
        t.insert(&ctr(c), &0u64.to_le_bytes()).unwrap();
    }
    assert!(t.verify().unwrap().depth > 1, "the counters need a parent");
    t
}

fn ctr(c: u64) -> Vec<u8> {
    format!("ctr{c:04}").into_bytes()
}

/// Adds 1 to counter `c`, `n` times.
fn add(t: &BTree, c: u64, n: u64) {
    for _ in 0..n {
        t.rmw(&ctr(c), |old| {
            let v = u64::from_le_bytes(old.unwrap().try_into().unwrap());
            Some((v + 1).to_le_bytes().to_vec())
        })
        .unwrap();
    }
}

/// Every counter holds what was added to it, and the rest of the tree is
/// what was loaded.
fn check(t: &BTree, expected: &BTreeMap<u64, u64>) {
    let stats = t.verify().unwrap();
    assert_eq!(stats.entries, 400 + expected.len() as u64);
    for (&c, &n) in expected {
        let got = t
            .get(&ctr(c), |v| v.to_vec())
            .unwrap()
            .expect("counter present");
        assert_eq!(
            u64::from_le_bytes(got.try_into().unwrap()),
            n,
            "counter {c}"
        );
    }
}

/// The tests of this file run one at a time: two writers meet at a latch
/// only while both run, which the other tests' threads would make rarer.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner())
}

fn needs_two_cores() {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert!(
        cores >= 2,
        "this test needs two threads running at once to contend; {cores} core(s) here"
    );
}

/// How long the two writers may take to provoke a split: they need to run
/// at the same time, which a loaded machine (CI runs tests side by side)
/// allows only now and then.
const PATIENCE: Duration = Duration::from_secs(60);

#[test]
fn two_threads_writing_their_own_counters_in_one_leaf_split_it() {
    let _serial = serial();
    needs_two_cores();
    let p = pool(4096);
    let t = counters_tree(&p, 16);
    let leaves_before = t.verify().unwrap().leaves;
    let go = Barrier::new(3);
    let stop = AtomicBool::new(false);
    let started = Instant::now();
    let added: Vec<u64> = std::thread::scope(|s| {
        let writers: Vec<_> = [3u64, 12]
            .into_iter()
            .map(|c| {
                let (t, go, stop) = (&t, &go, &stop);
                s.spawn(move || {
                    go.wait();
                    let mut n = 0;
                    while !stop.load(Ordering::Relaxed) {
                        add(t, c, 1000);
                        n += 1000;
                    }
                    n
                })
            })
            .collect();
        go.wait();
        while t.contention_splits() == 0 && started.elapsed() < PATIENCE {
            std::thread::sleep(Duration::from_millis(10));
        }
        stop.store(true, Ordering::Relaxed);
        writers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    let expected: BTreeMap<u64, u64> = (0..16)
        .map(|c| {
            let n = match c {
                3 => added[0],
                12 => added[1],
                _ => 0,
            };
            (c, n)
        })
        .collect();
    check(&t, &expected);
    assert!(
        t.contention_splits() > 0,
        "no contention split in {PATIENCE:?}: {added:?} writes by two threads"
    );
    assert!(t.verify().unwrap().leaves > leaves_before);
}

#[test]
fn one_thread_alone_never_splits_for_contention() {
    let _serial = serial();
    let p = pool(4096);
    let t = counters_tree(&p, 16);
    for round in 0..20_000u64 {
        add(&t, round % 16, 1);
    }
    let expected: BTreeMap<u64, u64> = (0..16).map(|c| (c, 20_000 / 16)).collect();
    check(&t, &expected);
    assert_eq!(t.contention_splits(), 0);
}

#[test]
fn two_threads_fighting_over_one_counter_do_not_split_its_leaf() {
    let _serial = serial();
    needs_two_cores();
    let p = pool(4096);
    let t = counters_tree(&p, 16);
    let per_thread = 100_000 / if cfg!(debug_assertions) { 4 } else { 1 };
    let go = Barrier::new(2);
    std::thread::scope(|s| {
        for _ in 0..2 {
            let (t, go) = (&t, &go);
            s.spawn(move || {
                go.wait();
                add(t, 5, per_thread);
            });
        }
    });
    let expected: BTreeMap<u64, u64> = (0..16)
        .map(|c| (c, if c == 5 { 2 * per_thread } else { 0 }))
        .collect();
    check(&t, &expected);
    assert_eq!(t.contention_splits(), 0);
}
