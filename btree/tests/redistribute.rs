//! Redistribution (a full leaf moves entries towards a sibling with room
//! instead of splitting; issue 16's space goal): it must happen under
//! random loads, be reported as one SMO of its own, and leave scans,
//! optimistic readers and the tree exact, with concurrent writers and
//! under eviction.

mod common;
use common::*;
use rime_btree::{BTree, Direction, Smo, SmoKind, SmoNotLogged, TreeHooks};
use rime_bufmgr::MIN_POOL_PAGES;
use std::collections::BTreeMap;
use std::ops::{Bound, ControlFlow};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Counts SMOs by kind and checks the shape of every redistribution.
#[derive(Default)]
struct Counter {
    redistributions: AtomicU64,
    splits: AtomicU64,
    /// Pages per redistribution record seen (2 leaves + parent .. ).
    widths: Mutex<BTreeMap<usize, u64>>,
}

impl TreeHooks for Counter {
    fn on_smo(&self, smo: &Smo<'_>) -> Result<u64, SmoNotLogged> {
        match smo.kind {
            SmoKind::Redistribute => {
                // One record: the parent and every leaf it rewrote, nothing
                // allocated or freed.
                assert!(smo.pages.len() >= 3, "{smo:?}");
                assert!(smo.allocated.is_empty() && smo.freed.is_empty());
                *self
                    .widths
                    .lock()
                    .unwrap()
                    .entry(smo.pages.len())
                    .or_default() += 1;
                self.redistributions.fetch_add(1, Ordering::Relaxed);
            }
            SmoKind::Split => {
                self.splits.fetch_add(1, Ordering::Relaxed);
            }
            _ => {}
        }
        Ok(0)
    }
}

fn k(i: u64) -> Vec<u8> {
    format!("key{i:08}").into_bytes()
}

fn num(key: &[u8]) -> u64 {
    std::str::from_utf8(&key[3..]).unwrap().parse().unwrap()
}

/// A value that names its key: `len` bytes, starting with the key.
fn v(key: &[u8], tag: u8, len: usize) -> Vec<u8> {
    let mut out = key.to_vec();
    out.resize(len.max(key.len()), tag);
    out
}

fn check_value(key: &[u8], value: &[u8]) {
    assert!(value.starts_with(key), "value of {key:?} is not its own");
}

fn shuffle<T>(r: &mut Rng, items: &mut [T]) {
    for i in (1..items.len()).rev() {
        items.swap(i, r.below(i as u64 + 1) as usize);
    }
}

/// Random inserts (1 KiB and 100 B values) and removals against a
/// `BTreeMap` in a pool that evicts; full scans both ways and `verify`
/// along the way; redistributions of 2 to 4 leaves must have happened.
#[test]
fn random_loads_redistribute_and_match_the_model_under_eviction() {
    let p = pool(MIN_POOL_PAGES);
    let hooks = Arc::new(Counter::default());
    let t = BTree::create(p.bm.clone(), hooks.clone()).unwrap();
    let mut model = BTreeMap::new();
    let mut r = Rng::new(16);
    let n = 6_000 * scale() as u64;
    let mut order: Vec<u64> = (0..n).collect();
    shuffle(&mut r, &mut order);
    for (step, &i) in order.iter().enumerate() {
        let len = if i % 3 == 0 { 100 } else { 1024 };
        let value = v(&k(i), step as u8, len);
        t.insert(&k(i), &value).unwrap();
        model.insert(k(i), value);
        if r.chance(10) {
            let victim = k(order[r.below(step as u64 + 1) as usize]);
            assert_eq!(t.remove(&victim).unwrap(), model.remove(&victim).is_some());
        }
        if step % 1500 == 1499 {
            check_against(&t, &model);
        }
    }
    check_against(&t, &model);
    let widths = hooks.widths.lock().unwrap().clone();
    eprintln!(
        "{} redistributions (records of n pages: {widths:?}), {} splits; {:?}",
        hooks.redistributions.load(Ordering::Relaxed),
        hooks.splits.load(Ordering::Relaxed),
        p.bm.stats()
    );
    assert!(hooks.redistributions.load(Ordering::Relaxed) > 100);
    assert!(widths.len() >= 2, "only one chain length: {widths:?}");
    assert!(p.bm.stats().evictions > 0, "the pool must evict");
}

/// Exact contents both ways, values by point lookup too, and `verify`.
fn check_against(t: &BTree, model: &BTreeMap<Vec<u8>, Vec<u8>>) {
    assert_eq!(t.verify().unwrap().entries, model.len() as u64);
    let fwd: Vec<(Vec<u8>, Vec<u8>)> = t.iter(.., Direction::Forward).map(Result::unwrap).collect();
    assert!(
        fwd.iter().map(|(a, b)| (a, b)).eq(model.iter()),
        "forward scan differs from the model"
    );
    let mut bwd = Vec::new();
    t.scan(.., Direction::Backward, |key, val| {
        bwd.push((key.to_vec(), val.to_vec()));
        ControlFlow::Continue(())
    })
    .unwrap();
    bwd.reverse();
    assert_eq!(fwd, bwd, "backward scan differs from forward");
    let mut out = Vec::new();
    for (key, val) in model.iter().step_by(7) {
        assert!(t.get_into(key, &mut out).unwrap());
        assert_eq!(&out, val);
    }
}

/// Writers insert 1 KiB values in random order around stable keys
/// (present from before the readers start to after they end) and remove
/// them again, so leaves keep redistributing, splitting and merging;
/// readers scan both ways (closure and iterator) and look stable keys up
/// optimistically, in a pool that evicts. Every stable key in range is
/// seen, in order, once, with its own value; every lookup finds it.
#[test]
fn concurrent_redistributions_never_hide_a_stable_key() {
    let p = pool(MIN_POOL_PAGES);
    let hooks = Arc::new(Counter::default());
    let t = BTree::create(p.bm.clone(), hooks.clone()).unwrap();
    let n = 6_000u64;
    // Stable keys: multiples of 4. The writers own the others.
    for i in (0..n).step_by(4) {
        t.insert(&k(i), &v(&k(i), 0, 1000)).unwrap();
    }
    let stop = AtomicBool::new(false);
    let (scans, lookups) = (AtomicU64::new(0), AtomicU64::new(0));
    let writers_done = AtomicU64::new(0);
    std::thread::scope(|s| {
        for w in 0..2u64 {
            let (t, stop, done) = (&t, &stop, &writers_done);
            s.spawn(move || {
                let mut r = Rng::new(60 + w);
                for round in 0..(2 * scale()) as u64 {
                    let mut mine: Vec<u64> = (0..n).filter(|i| i % 4 != 0 && i % 2 == w).collect();
                    shuffle(&mut r, &mut mine);
                    for &i in &mine {
                        let len = 900 + r.below(130) as usize;
                        t.upsert(&k(i), &v(&k(i), round as u8 + 1, len)).unwrap();
                    }
                    shuffle(&mut r, &mut mine);
                    for &i in &mine {
                        assert!(t.remove(&k(i)).unwrap());
                    }
                }
                if done.fetch_add(1, Ordering::SeqCst) == 1 {
                    stop.store(true, Ordering::Relaxed);
                }
            });
        }
        for reader in 0..2u64 {
            let (t, stop, scans, lookups) = (&t, &stop, &scans, &lookups);
            s.spawn(move || {
                let mut r = Rng::new(90 + reader);
                let mut out = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    for _ in 0..20 {
                        let i = r.below(n / 4) * 4;
                        assert!(
                            t.get_into(&k(i), &mut out).unwrap(),
                            "stable key {i} missed"
                        );
                        check_value(&k(i), &out);
                        lookups.fetch_add(1, Ordering::Relaxed);
                    }
                    let a = r.below(n);
                    let b = (a + 1 + r.below(1500)).min(n);
                    scan_stable(t, &mut r, a, b);
                    scans.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
    });
    let (scans, lookups) = (scans.into_inner(), lookups.into_inner());
    eprintln!(
        "{scans} scans, {lookups} lookups, {} redistributions, {} splits; {:?}",
        hooks.redistributions.load(Ordering::Relaxed),
        hooks.splits.load(Ordering::Relaxed),
        p.bm.stats()
    );
    assert!(scans > 0 && lookups > 0, "the readers never ran");
    assert_eq!(t.verify().unwrap().entries, n / 4);
    assert!(hooks.redistributions.load(Ordering::Relaxed) > 100);
    assert!(p.bm.stats().evictions > 0, "the pool must evict");
}

/// One scan of `[a, b)` in a random direction and style: in order, in
/// range, values their keys' own, and exactly the stable keys in range.
fn scan_stable(t: &BTree, r: &mut Rng, a: u64, b: u64) {
    let (lo, hi) = (k(a), k(b));
    let dir = if r.chance(50) {
        Direction::Forward
    } else {
        Direction::Backward
    };
    let range = (Bound::Included(&lo[..]), Bound::Excluded(&hi[..]));
    let mut keys = Vec::new();
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
    assert!(keys.iter().all(|&i| i >= a && i < b), "{dir:?} outside");
    let stable: Vec<u64> = keys.into_iter().filter(|i| i % 4 == 0).collect();
    let want: Vec<u64> = (a.next_multiple_of(4)..b).step_by(4).collect();
    assert_eq!(stable, want, "{dir:?} scan of [{a}, {b})");
}
