//! Differential test against `BTreeMap`: random operation sequences on a
//! pool so small that eviction happens inside operations.

mod common;
use common::*;
use rime_btree::{
    BTree, Direction, INLINE_VALUE_MAX, MAX_KEY_LEN, TreeError, inline_value_max, is_inline,
};
use rime_bufmgr::MIN_POOL_PAGES;
use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::ops::{Bound, ControlFlow};

type Model = BTreeMap<Vec<u8>, Vec<u8>>;

/// Keys from a small alphabet with long shared prefixes, of every length
/// from empty to the maximum.
fn key(r: &mut Rng) -> Vec<u8> {
    let len = match r.below(100) {
        0..=4 => 0,
        5..=79 => 1 + r.below(12) as usize,
        80..=97 => 16 + r.below(64) as usize,
        _ => MAX_KEY_LEN - r.below(3) as usize,
    };
    let prefix = r.below(4) as usize * 6;
    (0..len)
        .map(|i| {
            if i < prefix {
                b'p'
            } else {
                b'a' + r.below(4) as u8
            }
        })
        .collect()
}

/// Values for `key`: mostly small; some in extents whatever the key; some
/// exactly at the key's inline threshold or one byte either side; some
/// anywhere in `0..=2 * INLINE_VALUE_MAX`, across every key's threshold.
fn val(r: &mut Rng, key: &[u8], large_percent: u64) -> Vec<u8> {
    let threshold = inline_value_max(key.len());
    let len = match r.below(100) {
        p if p < large_percent => INLINE_VALUE_MAX + 1 + r.below(30_000) as usize,
        p if p < large_percent + 3 => threshold - 1 + r.below(3) as usize,
        p if p < large_percent + 8 => r.below(2 * INLINE_VALUE_MAX as u64 + 1) as usize,
        _ => r.below(120) as usize,
    };
    value(r.next(), len)
}

fn bound(r: &mut Rng) -> Bound<Vec<u8>> {
    match r.below(3) {
        0 => Bound::Unbounded,
        1 => Bound::Included(key(r)),
        _ => Bound::Excluded(key(r)),
    }
}

fn as_ref(b: &Bound<Vec<u8>>) -> Bound<&[u8]> {
    match b {
        Bound::Included(k) => Bound::Included(k),
        Bound::Excluded(k) => Bound::Excluded(k),
        Bound::Unbounded => Bound::Unbounded,
    }
}

fn valid_range(lo: &Bound<Vec<u8>>, hi: &Bound<Vec<u8>>) -> bool {
    match (lo, hi) {
        (Bound::Included(a), Bound::Included(b)) => a <= b,
        (Bound::Included(a) | Bound::Excluded(a), Bound::Included(b) | Bound::Excluded(b)) => a < b,
        _ => true,
    }
}

/// One random operation, applied to both; panics on any difference.
fn step(tree: &BTree, model: &mut Model, r: &mut Rng, large_percent: u64) {
    let k = if !model.is_empty() && r.chance(50) {
        let nth = r.below(model.len() as u64) as usize;
        model.keys().nth(nth).unwrap().clone()
    } else {
        key(r)
    };
    match r.below(20) {
        0..=3 => {
            let v = val(r, &k, large_percent);
            let res = tree.insert(&k, &v);
            match model.entry(k) {
                Entry::Occupied(_) => assert!(
                    matches!(res, Err(TreeError::Exists)),
                    "insert of present key: {res:?}"
                ),
                Entry::Vacant(slot) => {
                    res.unwrap();
                    slot.insert(v);
                }
            }
        }
        4..=7 => {
            let v = val(r, &k, large_percent);
            assert_eq!(tree.upsert(&k, &v).unwrap(), model.insert(k, v).is_some());
        }
        8 => {
            let x = r.next() as u8;
            let got = tree.update(&k, |v| {
                v.iter_mut().for_each(|b| *b ^= x);
                v.len()
            });
            let want = model.get_mut(&k).map(|v| {
                v.iter_mut().for_each(|b| *b ^= x);
                v.len()
            });
            assert_eq!(got.unwrap(), want);
        }
        9 => {
            let extra = val(r, &k, large_percent / 2);
            let delete = r.chance(20);
            let f = |old: Option<&[u8]>| {
                if delete {
                    return None;
                }
                let mut v = old.map(<[u8]>::to_vec).unwrap_or_default();
                v.truncate(40_000);
                v.extend_from_slice(&extra[..extra.len().min(300)]);
                Some(v)
            };
            let want = f(model.get(&k).map(Vec::as_slice));
            tree.rmw(&k, f).unwrap();
            match want {
                Some(v) => model.insert(k, v),
                None => model.remove(&k),
            };
        }
        10..=12 => assert_eq!(tree.remove(&k).unwrap(), model.remove(&k).is_some()),
        13..=15 => {
            assert_eq!(
                tree.get(&k, |v| v.to_vec()).unwrap().as_ref(),
                model.get(&k)
            );
            let mut out = vec![1, 2, 3];
            let found = tree.get_into(&k, &mut out).unwrap();
            assert_eq!(found.then_some(&out), model.get(&k));
        }
        16..=18 => {
            let (lo, hi) = (bound(r), bound(r));
            if !valid_range(&lo, &hi) {
                return;
            }
            let dir = if r.chance(50) {
                Direction::Forward
            } else {
                Direction::Backward
            };
            let limit = 1 + r.below(60) as usize;
            let mut got = Vec::new();
            tree.scan((as_ref(&lo), as_ref(&hi)), dir, |k, v| {
                got.push((k.to_vec(), v.to_vec()));
                if got.len() == limit {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            })
            .unwrap();
            let range = model.range::<Vec<u8>, _>((lo.clone(), hi.clone()));
            let want: Vec<_> = match dir {
                Direction::Forward => range
                    .take(limit)
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
                Direction::Backward => range
                    .rev()
                    .take(limit)
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            };
            assert_eq!(got, want, "scan {lo:?}..{hi:?} {dir:?}");
            let iter: Vec<_> = tree
                .iter((as_ref(&lo), as_ref(&hi)), dir)
                .take(limit)
                .map(Result::unwrap)
                .collect();
            assert_eq!(iter, want, "iter {lo:?}..{hi:?} {dir:?}");
        }
        _ => {
            let prefix = &k[..k.len().min(r.below(4) as usize)];
            let mut got = Vec::new();
            tree.scan_prefix(prefix, Direction::Forward, |k, _| {
                got.push(k.to_vec());
                ControlFlow::Continue(())
            })
            .unwrap();
            let want: Vec<_> = model
                .keys()
                .filter(|k| k.starts_with(prefix))
                .cloned()
                .collect();
            assert_eq!(got, want, "prefix {prefix:?}");
        }
    }
}

fn check_all(tree: &BTree, model: &Model) {
    let stats = tree.verify().unwrap();
    assert_eq!(stats.entries, model.len() as u64);
    // Exactly the entries the rule rejects live in extents.
    let large = model
        .iter()
        .filter(|(k, v)| !is_inline(k.len(), v.len()))
        .count();
    assert_eq!(stats.large_values, large as u64);
    let all: Vec<_> = tree
        .iter(.., Direction::Forward)
        .map(Result::unwrap)
        .collect();
    let want: Vec<_> = model.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    assert!(
        all == want,
        "full iteration differs ({} vs {} entries)",
        all.len(),
        want.len()
    );
}

#[test]
fn thousands_of_short_sequences() {
    let p = pool(MIN_POOL_PAGES);
    for seed in 0..(1000 * scale()) as u64 {
        let mut r = Rng::new(seed);
        let tree = tree(&p);
        let mut model = Model::new();
        let ops = 1 + r.below(300);
        for _ in 0..ops {
            step(&tree, &mut model, &mut r, 3);
        }
        check_all(&tree, &model);
        tree.destroy().unwrap();
    }
    assert_eq!(p.bm.alloc_state().next_pid, p.bm.alloc_state().next_pid);
}

#[test]
fn long_sequences_with_eviction_inside_operations() {
    let p = pool(MIN_POOL_PAGES);
    for seed in 0..scale() as u64 {
        let mut r = Rng::new(1_000_000 + seed);
        let tree = tree(&p);
        let mut model = Model::new();
        for i in 0..15_000 {
            if r.chance(60) {
                // Growth: a fresh key, so the tree outgrows the pool.
                let mut k = key(&mut r);
                k.truncate(MAX_KEY_LEN - 6);
                k.extend((0..6).map(|_| b'a' + r.below(26) as u8));
                let v = value(r.next(), r.below(200) as usize);
                assert_eq!(tree.upsert(&k, &v).unwrap(), model.insert(k, v).is_some());
            }
            step(&tree, &mut model, &mut r, 1);
            if i % 5000 == 4999 {
                check_all(&tree, &model);
            }
        }
        check_all(&tree, &model);
        let stats = tree.verify().unwrap();
        eprintln!("seed {seed}: {stats:?}, {:?}", p.bm.stats());
        assert!(stats.depth >= 2, "{stats:?}");
        // Delete everything: merges must shrink the tree back to one leaf.
        for k in model.keys() {
            assert!(tree.remove(k).unwrap());
        }
        let stats = tree.verify().unwrap();
        assert_eq!(stats.entries, 0);
        assert_eq!(stats.depth, 1, "{stats:?}");
        tree.destroy().unwrap();
    }
    assert!(
        p.bm.stats().evictions > 0,
        "the pool must be small enough to evict"
    );
}
