//! Concurrent stress: several threads on one tree in a small pool, so
//! splits, merges and evictions all race with readers and writers.

mod common;
use common::*;
use rime_btree::{BTree, Direction};
use std::collections::BTreeMap;
use std::ops::{Bound, ControlFlow};
use std::sync::Barrier;
use std::sync::atomic::{AtomicBool, Ordering};

const THREADS: usize = 4;

fn k(i: u64) -> Vec<u8> {
    format!("key:{:08}", i).into_bytes()
}

/// A value that names its key, so a torn or misplaced value is detected:
/// `key ++ tag`, padded to `len` (large when `len` > the inline limit).
fn v(key: &[u8], tag: u8, len: usize) -> Vec<u8> {
    let mut out = key.to_vec();
    out.push(tag);
    out.resize(len.max(key.len() + 1), tag);
    out
}

fn check_value(key: &[u8], value: &[u8]) {
    assert!(value.len() > key.len(), "short value for {key:?}");
    assert_eq!(&value[..key.len()], key, "value belongs to another key");
    let tag = value[key.len()];
    assert!(
        value[key.len()..].iter().all(|&b| b == tag),
        "torn value for {key:?}"
    );
}

#[test]
fn mixed_ops_on_shared_ranges_then_verify() {
    let p = pool(rime_bufmgr::MIN_POOL_PAGES);
    let tree = tree(&p);
    let ops = 20_000 * scale();
    let barrier = Barrier::new(THREADS);
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let (tree, barrier) = (&tree, &barrier);
            s.spawn(move || {
                let mut r = Rng::new(t as u64 + 77);
                barrier.wait();
                for _ in 0..ops {
                    let key = k(r.below(20_000));
                    let len = if r.chance(2) {
                        700 + r.below(6000) as usize
                    } else {
                        10 + r.below(150) as usize
                    };
                    match r.below(10) {
                        0..=2 => {
                            tree.upsert(&key, &v(&key, r.next() as u8, len)).unwrap();
                        }
                        3 => {
                            let _ = tree.insert(&key, &v(&key, r.next() as u8, len));
                        }
                        4..=5 => {
                            tree.remove(&key).unwrap();
                        }
                        6 => {
                            let tag = r.next() as u8;
                            tree.update(&key, |val| val[key.len()..].fill(tag)).unwrap();
                        }
                        7 => {
                            let mut out = Vec::new();
                            if tree.get_into(&key, &mut out).unwrap() {
                                check_value(&key, &out);
                            }
                            tree.get(&key, |val| check_value(&key, val)).unwrap();
                        }
                        _ => {
                            let dir = if r.chance(50) {
                                Direction::Forward
                            } else {
                                Direction::Backward
                            };
                            let mut last: Option<Vec<u8>> = None;
                            let mut n = 0;
                            tree.scan(
                                (Bound::Included(&key[..]), Bound::Unbounded),
                                dir,
                                |key, val| {
                                    check_value(key, val);
                                    if let Some(prev) = &last {
                                        assert!(if dir == Direction::Forward {
                                            prev.as_slice() < key
                                        } else {
                                            prev.as_slice() > key
                                        });
                                    }
                                    last = Some(key.to_vec());
                                    n += 1;
                                    if n < 50 {
                                        ControlFlow::Continue(())
                                    } else {
                                        ControlFlow::Break(())
                                    }
                                },
                            )
                            .unwrap();
                        }
                    }
                }
            });
        }
    });
    let stats = tree.verify().unwrap();
    let mut n = 0;
    tree.scan(.., Direction::Forward, |key, val| {
        check_value(key, val);
        n += 1;
        ControlFlow::Continue(())
    })
    .unwrap();
    assert_eq!(n, stats.entries);
    eprintln!("{stats:?} {:?}", p.bm.stats());
    assert!(
        p.bm.stats().evictions > 0,
        "the pool must be small enough to evict"
    );
}

#[test]
fn disjoint_ranges_see_exactly_their_own_keys() {
    let p = pool(rime_bufmgr::MIN_POOL_PAGES);
    let tree = tree(&p);
    let ops = 15_000 * scale();
    let models: Vec<BTreeMap<Vec<u8>, Vec<u8>>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let tree = &tree;
                s.spawn(move || {
                    let mut r = Rng::new(1000 + t as u64);
                    let mut model = BTreeMap::new();
                    let key = |i: u64| format!("t{t}/{i:06}").into_bytes();
                    for _ in 0..ops {
                        let kk = key(r.below(2000));
                        match r.below(6) {
                            0..=2 => {
                                let val = v(&kk, r.next() as u8, 5 + r.below(200) as usize);
                                assert_eq!(
                                    tree.upsert(&kk, &val).unwrap(),
                                    model.insert(kk, val).is_some()
                                );
                            }
                            3 => assert_eq!(tree.remove(&kk).unwrap(), model.remove(&kk).is_some()),
                            4 => assert_eq!(
                                tree.get(&kk, |v| v.to_vec()).unwrap().as_ref(),
                                model.get(&kk)
                            ),
                            _ => {
                                let lo = format!("t{t}/").into_bytes();
                                let mut got = Vec::new();
                                tree.scan_prefix(&lo, Direction::Backward, |k, _| {
                                    got.push(k.to_vec());
                                    ControlFlow::Continue(())
                                })
                                .unwrap();
                                let want: Vec<_> = model.keys().rev().cloned().collect();
                                assert_eq!(got, want);
                            }
                        }
                    }
                    model
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let all: BTreeMap<_, _> = models.into_iter().flatten().collect();
    let got: BTreeMap<_, _> = tree
        .iter(.., Direction::Forward)
        .map(Result::unwrap)
        .collect();
    assert!(got == all, "final contents differ");
    assert_eq!(tree.verify().unwrap().entries, all.len() as u64);
}

#[test]
fn readers_never_miss_keys_present_throughout() {
    let p = pool(rime_bufmgr::MIN_POOL_PAGES);
    let tree = tree(&p);
    // Stable keys (even) stay for the whole test; writers insert and remove
    // odd keys around them, splitting and merging the leaves that hold them.
    let n = 4000u64;
    for i in (0..n).step_by(2) {
        tree.insert(&k(i), &v(&k(i), 1, 40)).unwrap();
    }
    let stop = AtomicBool::new(false);
    let rounds = 6 * scale();
    std::thread::scope(|s| {
        for t in 0..2u64 {
            let (tree, stop) = (&tree, &stop);
            s.spawn(move || {
                let mut r = Rng::new(t);
                for round in 0..rounds {
                    // Fill, then empty, this writer's odd keys.
                    let mine = (0..n).filter(|i| i % 2 == 1 && (i / 2) % 2 == t);
                    for i in mine.clone() {
                        let len = if r.chance(3) {
                            2000
                        } else {
                            100 + r.below(150) as usize
                        };
                        tree.upsert(&k(i), &v(&k(i), round as u8, len)).unwrap();
                    }
                    for i in mine {
                        assert!(tree.remove(&k(i)).unwrap());
                    }
                }
                stop.store(true, Ordering::Relaxed);
            });
        }
        for t in 0..2u64 {
            let (tree, stop) = (&tree, &stop);
            s.spawn(move || {
                let mut r = Rng::new(100 + t);
                while !stop.load(Ordering::Relaxed) {
                    let i = r.below(n / 2) * 2;
                    assert!(
                        tree.get(&k(i), |val| check_value(&k(i), val))
                            .unwrap()
                            .is_some(),
                        "lost {i}"
                    );
                    let mut out = Vec::new();
                    assert!(
                        tree.get_into(&k(i), &mut out).unwrap(),
                        "lost {i} (optimistic)"
                    );
                    // A scan of 100 keys must contain every stable key in it.
                    let (lo, hi) = (k(i), k(i + 100));
                    let dir = if r.chance(50) {
                        Direction::Forward
                    } else {
                        Direction::Backward
                    };
                    let mut stable = Vec::new();
                    tree.scan(
                        (Bound::Included(&lo[..]), Bound::Excluded(&hi[..])),
                        dir,
                        |key, val| {
                            check_value(key, val);
                            let num: u64 = std::str::from_utf8(&key[4..]).unwrap().parse().unwrap();
                            if num & 1 == 0 {
                                stable.push(num);
                            }
                            ControlFlow::Continue(())
                        },
                    )
                    .unwrap();
                    if dir == Direction::Backward {
                        stable.reverse();
                    }
                    let want: Vec<u64> = (i..(i + 100).min(n)).step_by(2).collect();
                    assert_eq!(stable, want, "scan from {i} {dir:?}");
                }
            });
        }
    });
    let stats = tree.verify().unwrap();
    assert_eq!(stats.entries, n / 2);
}

#[test]
fn rmw_increments_are_atomic() {
    let p = pool(rime_bufmgr::MIN_POOL_PAGES);
    let tree = tree(&p);
    let per_thread = 3000 * scale() as u64;
    std::thread::scope(|s| {
        for t in 0..THREADS as u64 {
            let tree = &tree;
            s.spawn(move || {
                let mut r = Rng::new(500 + t);
                for _ in 0..per_thread {
                    let key = k(r.below(64));
                    // Counters padded to various lengths, so rmw also moves
                    // entries between sizes (and splits leaves).
                    let pad = r.below(300) as usize;
                    tree.rmw(&key, |old| {
                        let n = old
                            .map(|o| u64::from_le_bytes(o[..8].try_into().unwrap()))
                            .unwrap_or(0);
                        let mut out = (n + 1).to_le_bytes().to_vec();
                        out.resize(8 + pad, 0);
                        Some(out)
                    })
                    .unwrap();
                }
            });
        }
    });
    let mut total = 0;
    tree.scan(.., Direction::Forward, |_, v| {
        total += u64::from_le_bytes(v[..8].try_into().unwrap());
        ControlFlow::Continue(())
    })
    .unwrap();
    assert_eq!(total, per_thread * THREADS as u64);
    tree.verify().unwrap();
}

#[allow(dead_code)]
fn _uses(_: &BTree) {}

#[test]
fn optimistic_readers_survive_eviction_under_them() {
    // A tree several times the pool: every miss evicts, so optimistic
    // readers (get_into, the descent of every operation) keep finding pages
    // evicted or released under them; each such read must restart, never
    // return wrong bytes.
    let p = pool(rime_bufmgr::MIN_POOL_PAGES);
    let tree = tree(&p);
    let n = 30_000u64;
    for i in 0..n {
        tree.insert(&k(i), &v(&k(i), 3, 60)).unwrap();
    }
    let lookups = 20_000 * scale();
    std::thread::scope(|s| {
        for t in 0..THREADS as u64 {
            let tree = &tree;
            s.spawn(move || {
                let mut r = Rng::new(900 + t);
                let mut out = Vec::new();
                for _ in 0..lookups {
                    let i = r.below(n);
                    if t == 0 && r.chance(10) {
                        tree.upsert(&k(i), &v(&k(i), r.next() as u8, 60)).unwrap();
                        continue;
                    }
                    assert!(tree.get_into(&k(i), &mut out).unwrap(), "lost {i}");
                    check_value(&k(i), &out);
                }
            });
        }
    });
    let stats = p.bm.stats();
    eprintln!("{stats:?}");
    assert!(stats.evictions > 0 && stats.restarts > 0, "{stats:?}");
    assert_eq!(tree.verify().unwrap().entries, n);
}
