//! Writes and scans that do not wait for the disk, many in flight on one
//! thread with a `Loader` reading their misses, checked against a
//! `BTreeMap` on a pool far smaller than the tree: the write-path probe
//! (`write_probe_nowait`) before every write, `scan_nowait` for scans, and
//! writes made while the loader has reads in flight (the loader's rule:
//! they must never wait for one of them, which would hang this test).

mod common;
use common::*;
use rime_btree::{Direction, Fetch};
use rime_bufmgr::{Loader, MIN_POOL_PAGES, PageId};
use std::collections::{BTreeMap, HashMap};
use std::ops::{Bound, ControlFlow};

const KEYS: u64 = 20_000;

#[derive(Clone, Debug)]
enum Op {
    Put(Vec<u8>, Vec<u8>),
    Remove(Vec<u8>),
    /// Up to `n` entries from `lo` on, forward or backward.
    Scan(Vec<u8>, usize, Direction),
}

fn key(i: u64) -> Vec<u8> {
    i.to_be_bytes().to_vec()
}

fn random_op(r: &mut Rng, seq: u64) -> Op {
    let k = key(r.below(KEYS + 2_000));
    match r.below(10) {
        0..=3 => {
            // Mostly inline values; one in forty is extent-backed.
            let len = if r.chance(2) {
                4_000
            } else {
                20 + r.below(200) as usize
            };
            Op::Put(k, value(seq, len))
        }
        4..=6 => Op::Remove(k),
        7 | 8 => Op::Scan(k, 1 + r.below(100) as usize, Direction::Forward),
        _ => Op::Scan(k, 1 + r.below(100) as usize, Direction::Backward),
    }
}

/// The model's answer to a scan.
fn model_scan(
    model: &BTreeMap<Vec<u8>, Vec<u8>>,
    lo: &[u8],
    n: usize,
    dir: Direction,
) -> Vec<(Vec<u8>, Vec<u8>)> {
    let it: Box<dyn Iterator<Item = (&Vec<u8>, &Vec<u8>)>> = match dir {
        Direction::Forward => {
            Box::new(model.range::<[u8], _>((Bound::Included(lo), Bound::Unbounded)))
        }
        Direction::Backward => Box::new(
            model
                .range::<[u8], _>((Bound::Unbounded, Bound::Included(lo)))
                .rev(),
        ),
    };
    it.take(n).map(|(k, v)| (k.clone(), v.clone())).collect()
}

#[test]
fn nowait_writes_and_scans_in_flight_agree_with_a_model_under_eviction() {
    let seed = 0x5eed_0214;
    println!("seed {seed}");
    let mut r = Rng::new(seed);
    let p = pool(MIN_POOL_PAGES);
    let t = tree(&p);
    let mut model = BTreeMap::new();
    for i in 0..KEYS {
        let (k, v) = (key(i * 7919 % KEYS), value(i, 100));
        t.upsert(&k, &v).unwrap();
        model.insert(k, v);
    }
    p.bm.flush_dirty().unwrap();
    let mut loader = Loader::new(&p.bm);
    let ops = 6_000 * scale() as u64;
    let mut waiting: HashMap<PageId, Vec<Op>> = HashMap::new();
    let mut ready: Vec<Op> = Vec::new();
    let (mut started, mut done) = (0u64, 0u64);
    let (mut write_misses, mut scan_misses, mut writes_with_reads_in_flight) = (0, 0, 0);
    let (mut writes, mut blocking_misses_in_writes) = (0u64, 0u64);
    let (mut got, mut ahead) = (Vec::new(), Vec::new());
    while done < ops {
        // Keep up to 64 operations in flight.
        while started < ops && ready.len() + waiting.values().map(Vec::len).sum::<usize>() < 64 {
            ready.push(random_op(&mut r, started));
            started += 1;
        }
        while let Some(op) = ready.pop() {
            let miss = match &op {
                Op::Put(k, _) | Op::Remove(k) => match t.write_probe_nowait(k).unwrap() {
                    Fetch::Missing { pid, pages } => {
                        write_misses += 1;
                        Some((pid, pages))
                    }
                    Fetch::Ready(()) => {
                        if loader.reads() > 0 {
                            writes_with_reads_in_flight += 1;
                        }
                        let before = p.bm.stats().misses;
                        let w = t.at_lsn(0).merge_in_memory_only();
                        match &op {
                            Op::Put(k, v) => {
                                let existed = w.upsert(k, v).unwrap();
                                assert_eq!(existed, model.insert(k.clone(), v.clone()).is_some());
                            }
                            Op::Remove(k) => {
                                assert_eq!(w.remove(k).unwrap(), model.remove(k).is_some());
                            }
                            Op::Scan(..) => unreachable!(),
                        }
                        writes += 1;
                        blocking_misses_in_writes += p.bm.stats().misses - before;
                        None
                    }
                },
                Op::Scan(lo, n, dir) => {
                    got.clear();
                    let range = match dir {
                        Direction::Forward => (Bound::Included(&lo[..]), Bound::Unbounded),
                        Direction::Backward => (Bound::Unbounded, Bound::Included(&lo[..])),
                    };
                    let fetch = t
                        .scan_nowait(range, *dir, &mut ahead, |k, v| {
                            got.push((k.to_vec(), v.to_vec()));
                            if got.len() == *n {
                                ControlFlow::Break(())
                            } else {
                                ControlFlow::Continue(())
                            }
                        })
                        .unwrap();
                    match fetch {
                        Fetch::Missing { pid, pages } => {
                            scan_misses += 1;
                            for &page in &ahead {
                                loader.request(page, 1);
                            }
                            Some((pid, pages))
                        }
                        Fetch::Ready(()) => {
                            assert_eq!(got, model_scan(&model, lo, *n, *dir), "{op:?}");
                            None
                        }
                    }
                }
            };
            match miss {
                Some((pid, pages)) => {
                    loader.request(pid, pages);
                    waiting.entry(pid).or_default().push(op);
                }
                None => done += 1,
            }
        }
        if waiting.is_empty() {
            continue;
        }
        loader.poll(true, |pid, res| {
            res.unwrap();
            ready.extend(waiting.remove(&pid).unwrap_or_default());
        });
    }
    println!(
        "{write_misses} write misses, {scan_misses} scan misses, {writes} writes \
         ({writes_with_reads_in_flight} with reads in flight, \
         {blocking_misses_in_writes} blocking misses in them)"
    );
    assert!(write_misses > ops / 10, "only {write_misses} write misses");
    assert!(scan_misses > ops / 20, "only {scan_misses} scan misses");
    assert!(
        writes_with_reads_in_flight > writes / 4,
        "only {writes_with_reads_in_flight} of {writes} writes ran with reads in flight"
    );
    // The probe made the write's path resident: the write itself read
    // nothing (a merge that would have needed a page was skipped).
    assert_eq!(blocking_misses_in_writes, 0, "writes waited for pages");
    drop(loader);
    t.verify().unwrap();
    let all: Vec<_> = t.iter(.., Direction::Forward).map(Result::unwrap).collect();
    let want: Vec<_> = model.into_iter().collect();
    assert_eq!(all, want);
}
