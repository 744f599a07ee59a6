//! Lookups that do not wait for the disk: many in flight on one thread,
//! their misses read by a `Loader`, checked against a `BTreeMap` on a pool
//! far smaller than the tree.

mod common;
use common::*;
use rime_btree::{Fetch, INLINE_VALUE_MAX, Probe};
use rime_bufmgr::{Loader, MIN_POOL_PAGES, PageId};
use std::collections::{BTreeMap, HashMap};

#[test]
fn many_nowait_lookups_in_flight_agree_with_a_model_under_eviction() {
    let seed = 0x5eed_0014;
    println!("seed {seed}");
    let mut r = Rng::new(seed);
    let p = pool(MIN_POOL_PAGES);
    let t = tree(&p);
    let mut model = BTreeMap::new();
    for i in 0..20_000u64 {
        let key = (i * 7919 % 20_000).to_be_bytes().to_vec();
        // Mostly inline values; one in fifty is extent-backed.
        let len = if i % 50 == 0 { 5_000 } else { 100 };
        let value = vec![(i % 251) as u8; len];
        t.upsert(&key, &value).unwrap();
        model.insert(key, value);
    }
    p.bm.flush_dirty().unwrap();
    let mut loader = Loader::new(&p.bm);
    let lookups = 4_000 * scale();
    // Each lookup in flight waits on one frame; keys absent from the model
    // (above 20 000) check the absent path.
    let mut waiting: HashMap<PageId, Vec<Vec<u8>>> = HashMap::new();
    let mut ready: Vec<Vec<u8>> = (0..lookups)
        .map(|_| r.below(21_000).to_be_bytes().to_vec())
        .collect();
    let (mut done, mut missed, mut most_waiting) = (0, 0, 0);
    let mut buf = [0u8; INLINE_VALUE_MAX];
    while done < lookups {
        // Run every lookup that can run, keeping up to 128 in flight.
        while let Some(key) = ready.pop() {
            match t.probe_nowait(&key, &mut buf).unwrap() {
                Fetch::Missing { pid, pages } => {
                    missed += 1;
                    loader.request(pid, pages);
                    waiting.entry(pid).or_default().push(key);
                    most_waiting = most_waiting.max(waiting.values().map(Vec::len).sum());
                }
                Fetch::Ready(probe) => {
                    let want = model.get(&key);
                    match probe {
                        Probe::Absent(_) => assert_eq!(want, None, "key {key:?}"),
                        Probe::Inline(n, _) => assert_eq!(Some(&buf[..n].to_vec()), want),
                        Probe::Large => {
                            let got = t.get(&key, <[u8]>::to_vec).unwrap();
                            assert_eq!(got.as_ref(), want);
                        }
                    }
                    done += 1;
                }
            }
            if waiting.len() >= 128 {
                break;
            }
        }
        loader.poll(true, |pid, res| {
            res.unwrap();
            ready.extend(waiting.remove(&pid).unwrap_or_default());
        });
    }
    assert!(
        missed > lookups / 2,
        "only {missed} of {lookups} lookups missed"
    );
    assert!(
        most_waiting >= 32,
        "at most {most_waiting} lookups were in flight"
    );
    t.verify().unwrap();
}

/// A scan over leaves that are not in memory reads them ahead, many at a
/// time, and still returns exactly the model's entries, both directions.
#[test]
fn a_cold_scan_reads_leaves_ahead_and_sees_every_entry() {
    let p = pool(MIN_POOL_PAGES);
    let t = tree(&p);
    let mut model = BTreeMap::new();
    for i in 0..40_000u64 {
        let key = i.to_be_bytes().to_vec();
        let value = vec![(i % 251) as u8; 60 + (i % 7) as usize * 200];
        t.upsert(&key, &value).unwrap();
        model.insert(key, value);
    }
    p.bm.flush_dirty().unwrap();
    for dir in [
        rime_btree::Direction::Forward,
        rime_btree::Direction::Backward,
    ] {
        // Make the start cold: touch the far end of the key space.
        let far = if dir == rime_btree::Direction::Forward {
            39_999u64
        } else {
            0
        };
        for k in 0..400u64 {
            let k = if far == 0 { k * 97 } else { far - k * 97 };
            t.get(&k.to_be_bytes(), |_| ()).unwrap();
        }
        let before = p.bm.stats().prefetched;
        let mut seen = Vec::new();
        t.scan(.., dir, |k, v| {
            seen.push((k.to_vec(), v.to_vec()));
            std::ops::ControlFlow::Continue(())
        })
        .unwrap();
        let mut want: Vec<_> = model.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        if dir == rime_btree::Direction::Backward {
            want.reverse();
        }
        assert!(seen == want, "{dir:?} scan differs from the model");
        let read_ahead = p.bm.stats().prefetched - before;
        assert!(
            read_ahead > 100,
            "{dir:?}: only {read_ahead} leaves were read ahead"
        );
    }
    t.verify().unwrap();
}
