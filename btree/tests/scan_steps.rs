//! Scans that step from leaf to leaf through the parent they kept (issue
//! 16): differential scans both ways against `BTreeMap` while splits and
//! merges change the tree between steps, concurrently and under eviction;
//! readers never miss a key present before and after their scan; a paused
//! iterator never follows a parent that was freed and reused.

mod common;
use common::*;
use rime_btree::node::{NODE_SIZE, Node};
use rime_btree::{BTree, Direction};
use rime_bufmgr::MIN_POOL_PAGES;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::{Bound, ControlFlow};
use std::sync::atomic::{AtomicBool, Ordering};

type Model = BTreeMap<Vec<u8>, Vec<u8>>;

fn k(i: u64) -> Vec<u8> {
    format!("key:{i:08}").into_bytes()
}

fn num(key: &[u8]) -> u64 {
    std::str::from_utf8(&key[4..]).unwrap().parse().unwrap()
}

/// A value that names its key and a tag (`key ++ tag*`), `len` long.
fn v(key: &[u8], tag: u8, len: usize) -> Vec<u8> {
    let mut out = key.to_vec();
    out.resize(len.max(key.len() + 1), tag);
    out
}

fn check_value(key: &[u8], value: &[u8]) {
    assert!(
        value.len() > key.len() && &value[..key.len()] == key,
        "value of another key"
    );
    let tag = value[key.len()];
    assert!(value[key.len()..].iter().all(|&b| b == tag), "torn value");
}

fn in_range(key: &[u8], lo: &Bound<Vec<u8>>, hi: &Bound<Vec<u8>>) -> bool {
    let above = match lo {
        Bound::Included(l) => key >= &l[..],
        Bound::Excluded(l) => key > &l[..],
        Bound::Unbounded => true,
    };
    let below = match hi {
        Bound::Included(h) => key <= &h[..],
        Bound::Excluded(h) => key < &h[..],
        Bound::Unbounded => true,
    };
    above && below
}

fn as_ref(b: &Bound<Vec<u8>>) -> Bound<&[u8]> {
    match b {
        Bound::Included(k) => Bound::Included(k),
        Bound::Excluded(k) => Bound::Excluded(k),
        Bound::Unbounded => Bound::Unbounded,
    }
}

fn random_bound(r: &mut Rng, n: u64) -> Bound<Vec<u8>> {
    match r.below(4) {
        0 => Bound::Unbounded,
        1 | 2 => Bound::Included(k(r.below(n))),
        _ => Bound::Excluded(k(r.below(n))),
    }
}

/// A write between two steps of an iterator: single keys, and runs of
/// keys that split leaves (inserts of large values) or empty them
/// (removals, so that leaves and parents merge).
fn churn(
    t: &BTree,
    model: &mut Model,
    values: &mut HashMap<Vec<u8>, Vec<Vec<u8>>>,
    removed: &mut BTreeSet<Vec<u8>>,
    r: &mut Rng,
    n: u64,
) {
    let start = r.below(n);
    let run = match r.below(10) {
        0 => 40 + r.below(200),
        1..=3 => 1 + r.below(10),
        _ => 1,
    };
    let insert = r.chance(50);
    let len = if r.chance(20) {
        600 + r.below(800) as usize
    } else {
        14 + r.below(60) as usize
    };
    let tag = r.next() as u8;
    for i in start..(start + run).min(n) {
        let key = k(i);
        if insert {
            let val = v(&key, tag, len);
            t.upsert(&key, &val).unwrap();
            values.entry(key.clone()).or_default().push(val.clone());
            model.insert(key, val);
        } else if t.remove(&key).unwrap() {
            model.remove(&key);
            removed.insert(key);
        }
    }
}

/// Iterators over random ranges, both ways, with writes between their
/// steps (a tiny pool: eviction too). Checked against the model: the keys
/// come in order, inside the range, each with a value it had during the
/// iteration; every key present from the iterator's start to its end is
/// there; no key absent throughout is. Then the quiescent tree is
/// compared with the model exactly, scans both ways included.
#[test]
fn iterators_with_splits_and_merges_between_steps_match_the_model() {
    let p = pool(MIN_POOL_PAGES);
    let t = tree(&p);
    let n = 6_000u64;
    let mut r = Rng::new(16);
    let mut model = Model::new();
    for i in (0..n).filter(|i| i % 3 != 0) {
        let val = v(&k(i), 1, 20 + (i % 90) as usize);
        t.insert(&k(i), &val).unwrap();
        model.insert(k(i), val);
    }
    for round in 0..(60 * scale()) {
        let (lo, hi) = (random_bound(&mut r, n), random_bound(&mut r, n));
        let dir = if r.chance(50) {
            Direction::Forward
        } else {
            Direction::Backward
        };
        let at_start: BTreeSet<Vec<u8>> = model
            .keys()
            .filter(|key| in_range(key, &lo, &hi))
            .cloned()
            .collect();
        let mut removed: BTreeSet<Vec<u8>> = BTreeSet::new();
        // Every value each key had during the iteration.
        let mut values: HashMap<Vec<u8>, Vec<Vec<u8>>> = model
            .iter()
            .map(|(key, val)| (key.clone(), vec![val.clone()]))
            .collect();
        let mut got: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        let mut it = t.iter((as_ref(&lo), as_ref(&hi)), dir);
        loop {
            if r.chance(30) {
                churn(&t, &mut model, &mut values, &mut removed, &mut r, n);
            }
            match it.next() {
                Some(entry) => got.push(entry.unwrap()),
                None => break,
            }
        }
        drop(it);
        // In order, in range, each key once, with one of its values.
        let keys: Vec<&Vec<u8>> = got.iter().map(|(key, _)| key).collect();
        let ordered = keys.windows(2).all(|w| match dir {
            Direction::Forward => w[0] < w[1],
            Direction::Backward => w[0] > w[1],
        });
        assert!(ordered, "round {round}: out of order");
        for (key, val) in &got {
            assert!(
                in_range(key, &lo, &hi),
                "round {round}: {key:?} outside the range"
            );
            check_value(key, val);
            let had = values.get(key).is_some_and(|vals| vals.contains(val));
            assert!(had, "round {round}: {key:?} with a value it never had");
        }
        let got_keys: BTreeSet<&Vec<u8>> = keys.into_iter().collect();
        for key in at_start.iter().filter(|key| !removed.contains(*key)) {
            assert!(
                got_keys.contains(key),
                "round {round} {dir:?}: missed {:?}",
                num(key)
            );
        }
        if round % 10 == 9 {
            t.verify().unwrap();
        }
    }
    // Quiescent: exactly the model, every way.
    let stats = t.verify().unwrap();
    assert_eq!(stats.entries, model.len() as u64);
    for _ in 0..200 {
        let (lo, hi) = (random_bound(&mut r, n), random_bound(&mut r, n));
        let want: Vec<_> = model
            .iter()
            .filter(|(key, _)| in_range(key, &lo, &hi))
            .map(|(key, val)| (key.clone(), val.clone()))
            .collect();
        let fwd: Vec<_> = t
            .iter((as_ref(&lo), as_ref(&hi)), Direction::Forward)
            .map(Result::unwrap)
            .collect();
        assert!(fwd == want, "forward iteration differs");
        let mut bwd = Vec::new();
        t.scan(
            (as_ref(&lo), as_ref(&hi)),
            Direction::Backward,
            |key, val| {
                bwd.push((key.to_vec(), val.to_vec()));
                ControlFlow::Continue(())
            },
        )
        .unwrap();
        bwd.reverse();
        assert!(bwd == want, "backward scan differs");
    }
    assert!(p.bm.stats().evictions > 0, "the pool must evict");
}

/// Writers split and merge the leaves around stable keys (present from
/// before the scans start to after they end) while readers scan both ways,
/// with the closure and the iterator, long ranges, in a pool that evicts:
/// every stable key in range is seen, in order, once, with a whole value.
#[test]
fn concurrent_scans_never_miss_a_key_present_before_and_after() {
    let p = pool(MIN_POOL_PAGES);
    let t = tree(&p);
    let n = 16_000u64;
    // Stable keys: multiples of 4. The writers own the others.
    for i in (0..n).step_by(4) {
        t.insert(&k(i), &v(&k(i), 0, 30)).unwrap();
    }
    let stop = AtomicBool::new(false);
    let scans = std::sync::atomic::AtomicU64::new(0);
    std::thread::scope(|s| {
        for w in 0..2u64 {
            let (t, stop) = (&t, &stop);
            s.spawn(move || {
                let mut r = Rng::new(40 + w);
                for round in 0..(3 * scale()) as u64 {
                    let mine: Vec<u64> = (0..n).filter(|i| i % 4 != 0 && i % 2 == w).collect();
                    for &i in &mine {
                        let len = if r.chance(5) {
                            1200
                        } else {
                            20 + r.below(200) as usize
                        };
                        t.upsert(&k(i), &v(&k(i), round as u8 + 1, len)).unwrap();
                    }
                    for &i in &mine {
                        assert!(t.remove(&k(i)).unwrap());
                    }
                }
                stop.store(true, Ordering::Relaxed);
            });
        }
        for reader in 0..2u64 {
            let (t, stop, scans) = (&t, &stop, &scans);
            s.spawn(move || {
                let mut r = Rng::new(90 + reader);
                while !stop.load(Ordering::Relaxed) {
                    let a = r.below(n);
                    let b = (a + 1 + r.below(3000)).min(n);
                    let (lo, hi) = (k(a), k(b));
                    let dir = if r.chance(50) {
                        Direction::Forward
                    } else {
                        Direction::Backward
                    };
                    let mut keys = Vec::new();
                    let range = (Bound::Included(&lo[..]), Bound::Excluded(&hi[..]));
                    if r.chance(50) {
                        t.scan(range, dir, |key, val| {
                            check_value(key, val);
                            keys.push(num(key));
                            ControlFlow::Continue(())
                        })
                        .unwrap();
                    } else {
                        for entry in t.iter(range, dir) {
                            let (key, val) = entry.unwrap();
                            check_value(&key, &val);
                            keys.push(num(&key));
                        }
                    }
                    if dir == Direction::Backward {
                        keys.reverse();
                    }
                    assert!(keys.windows(2).all(|w| w[0] < w[1]), "{dir:?} out of order");
                    assert!(
                        keys.iter().all(|&i| i >= a && i < b),
                        "{dir:?} outside the range"
                    );
                    let stable: Vec<u64> = keys.into_iter().filter(|i| i % 4 == 0).collect();
                    let want: Vec<u64> = (a.next_multiple_of(4)..b).step_by(4).collect();
                    assert_eq!(stable, want, "{dir:?} scan of [{a}, {b})");
                    scans.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
    });
    eprintln!("{} scans; {:?}", scans.into_inner(), p.bm.stats());
    assert_eq!(t.verify().unwrap().entries, n / 4);
    assert!(p.bm.stats().evictions > 0, "the pool must evict");
}

/// The hazard the SMO epochs exist for: an iterator keeps a leaf's parent
/// between two steps; meanwhile removals merge that parent away, and
/// another tree in the same pool takes its page for a large value's extent
/// holding a byte-for-byte copy of the parent (child ids and all). The
/// iterator must notice that the page is not its parent any more.
#[test]
fn a_paused_iterator_never_follows_a_freed_and_reused_parent() {
    let p = pool(8 * MIN_POOL_PAGES);
    let a = tree(&p);
    let n = 20_000u64;
    for dir in [Direction::Forward, Direction::Backward] {
        for i in 0..n {
            a.upsert(&k(i), &v(&k(i), 1, 60)).unwrap();
        }
        assert!(a.verify().unwrap().depth >= 3);
        // Copies of every node of `a` but the root, as they are now.
        let mut frames = Vec::new();
        a.for_each_frame(|pid, _| frames.push(pid)).unwrap();
        let images: HashMap<u64, Vec<u8>> = frames
            .iter()
            .filter(|&&pid| pid != a.root())
            .map(|&pid| {
                (
                    pid,
                    p.bm.shared(pid).unwrap().payload()[..NODE_SIZE].to_vec(),
                )
            })
            .collect();
        let mut it = a.iter(.., dir);
        let first = num(&it.next().unwrap().unwrap().0);
        // Shrink `a` to a few keys: its leaves and their parents are freed.
        let keep = |i: u64| i.is_multiple_of(997) || i == n - 1;
        for i in (0..n).filter(|&i| !keep(i)) {
            assert!(a.remove(&k(i)).unwrap());
        }
        // Another tree takes all the freed pages for extents, then each
        // extent that landed on an old node's page gets that node's image:
        // the old parent, pointing to old leaves with removed keys.
        let b = tree(&p);
        let image = images.values().next().unwrap();
        for j in 0..p.bm.alloc_state().free.len() + 16 {
            b.insert(format!("b{j:06}").as_bytes(), image).unwrap();
        }
        let mut frames = Vec::new();
        b.for_each_frame(|pid, _| frames.push(pid)).unwrap();
        let mut forge: Vec<(Vec<u8>, &Vec<u8>)> = Vec::new();
        for pid in frames {
            let page = p.bm.shared(pid).unwrap();
            let view = Node(page.payload());
            if !view.is_leaf() || view.count().is_none() {
                continue; // b's inner nodes and extents
            }
            for i in 0..view.count().unwrap() {
                if !view.is_large(i).unwrap() {
                    continue;
                }
                let r = rime_btree::node::LargeRef::decode(view.value(i).unwrap()).unwrap();
                if let Some(old) = images.get(&r.pid) {
                    let mut key = Vec::new();
                    view.full_key_into(i, &mut key).unwrap();
                    forge.push((key, old));
                }
            }
        }
        for (key, old) in &forge {
            b.update(key, |val| val.copy_from_slice(old)).unwrap();
        }
        assert!(
            forge.len() * 10 > images.len() * 9,
            "{} of {} old nodes forged",
            forge.len(),
            images.len()
        );
        // The iterator goes on: the rest of the first leaf's entries
        // (copied before the removals: consecutive keys), then exactly the
        // keys `a` has now.
        let rest: Vec<u64> = it.map(|e| num(&e.unwrap().0)).collect();
        let step = |i: u64| {
            if dir == Direction::Forward {
                i + 1
            } else {
                i - 1
            }
        };
        let mut last = first;
        let mut run = 0;
        while run < rest.len() && rest[run] == step(last) {
            last = rest[run];
            run += 1;
        }
        let mut want: Vec<u64> = (0..n)
            .filter(|&i| keep(i))
            .filter(|&i| match dir {
                Direction::Forward => i > last,
                Direction::Backward => i < last,
            })
            .collect();
        if dir == Direction::Backward {
            want.reverse();
        }
        assert!(run > 0 && run < 200, "{dir:?}: {run} buffered entries");
        assert_eq!(&rest[run..], &want[..], "{dir:?}");
        a.verify().unwrap();
        b.verify().unwrap();
        b.destroy().unwrap();
    }
}
