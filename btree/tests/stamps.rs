//! Leaf stamps: a lookup's proof that its answer still stands
//! (`BTree::unchanged`), and writes that start at the stamped leaf
//! (`Writer::near`) instead of descending.

mod common;

use common::{Pool, pool, tree};
use rime_btree::{BTree, Direction, LeafStamp};
use std::ops::{Bound, ControlFlow};

type Entries = Vec<(Vec<u8>, Vec<u8>)>;

fn key(i: u32) -> Vec<u8> {
    format!("key{i:06}").into_bytes()
}

fn stamp_of(t: &BTree, k: &[u8]) -> (Option<Vec<u8>>, LeafStamp) {
    let (v, stamp) = t.get_copied_stamped(k, <[u8]>::to_vec).unwrap();
    (
        v,
        stamp.expect("an inline value or an absent key is stamped"),
    )
}

/// A tree of one leaf: `key(0)` to `key(9)`, each `v`.
fn ten_keys(p: &Pool) -> BTree {
    let t = tree(p);
    for i in 0..10 {
        t.insert(&key(i), b"v").unwrap();
    }
    t
}

/// Other pages of the pool, more than it holds, to push a page out.
fn filler(p: &Pool, n: usize) -> Vec<u64> {
    (0..n).map(|_| p.bm.alloc().unwrap().pid()).collect()
}

#[test]
fn a_stamp_stands_until_its_leaf_changes() {
    let p = pool(256);
    let t = ten_keys(&p);
    let (v, stamp) = stamp_of(&t, &key(3));
    assert_eq!(v.as_deref(), Some(&b"v"[..]));
    let (absent, absent_stamp) = stamp_of(&t, b"key000003x");
    assert_eq!(
        (absent, absent_stamp),
        (None, stamp),
        "one leaf answers both"
    );
    // Reads and a write that changes nothing leave it standing.
    assert!(t.contains(&key(5)).unwrap());
    assert!(t.insert(&key(5), b"w").is_err());
    assert!(t.unchanged(stamp));
    // Any change of the leaf, to another key too, ends it.
    t.upsert(&key(7), b"w").unwrap();
    assert!(!t.unchanged(stamp));
    // And a split of the leaf.
    let (_, stamp) = stamp_of(&t, &key(3));
    for i in 10..2000 {
        t.insert(&key(i), &[7; 100]).unwrap();
    }
    assert!(!t.unchanged(stamp));
}

#[test]
fn a_stamp_does_not_survive_its_leaf_leaving_memory() {
    let p = pool(256);
    let t = tree(&p);
    t.insert(&key(1), b"v").unwrap();
    let (_, stamp) = stamp_of(&t, &key(1));
    rime_bufmgr::testing::evict(&p.bm, stamp.pid(), &filler(&p, 512));
    assert!(!t.unchanged(stamp), "evicted");
    // Read back in, byte for byte the same, but under a new version.
    let (v, again) = stamp_of(&t, &key(1));
    assert_eq!(v.as_deref(), Some(&b"v"[..]));
    assert_eq!(again.pid(), stamp.pid());
    assert!(!t.unchanged(stamp), "reloaded");
    assert!(t.unchanged(again));
}

#[test]
fn a_write_near_its_unchanged_leaf_lands_there_and_changes_it() {
    let p = pool(256);
    let t = ten_keys(&p);
    let (_, stamp) = stamp_of(&t, &key(4));
    t.at_lsn(0)
        .near(Some(stamp))
        .upsert(&key(4), b"new")
        .unwrap();
    assert!(!t.unchanged(stamp));
    assert_eq!(t.get(&key(4), <[u8]>::to_vec).unwrap().unwrap(), b"new");
    t.verify().unwrap();
}

/// The stamped leaf split after the read, and the key moved to the new
/// right half: the write must find it there, not write it into the old
/// leaf (whose fences now exclude it) nor fail as if the tree were corrupt.
#[test]
fn a_write_near_a_leaf_that_split_since_lands_where_the_key_now_lives() {
    let p = pool(1024);
    let t = tree(&p);
    let last = key(1_000_000);
    t.insert(&last, b"v").unwrap();
    let (_, stamp) = stamp_of(&t, &last);
    for i in 0..3000 {
        t.insert(&key(i), &[1; 200]).unwrap();
    }
    let (_, now) = stamp_of(&t, &last);
    assert_ne!(now.pid(), stamp.pid(), "the key moved to another leaf");
    t.at_lsn(0).near(Some(stamp)).upsert(&last, b"new").unwrap();
    assert_eq!(t.get(&last, <[u8]>::to_vec).unwrap().unwrap(), b"new");
    for i in (0..3000).step_by(97) {
        assert_eq!(t.get(&key(i), <[u8]>::to_vec).unwrap().unwrap(), [1; 200]);
    }
    t.verify().unwrap();
}

/// `n` keys of 100-byte values: many leaves.
fn many_leaves(p: &Pool, n: u32) -> BTree {
    let t = tree(p);
    for i in 0..n {
        t.insert(&key(i), &[b'a'; 100]).unwrap();
    }
    t
}

/// The entries of a stamped scan of `key(lo)..key(hi)` and its stamps.
fn stamped_scan(t: &BTree, lo: u32, hi: u32) -> (Entries, Vec<LeafStamp>) {
    let (mut seen, mut stamps) = (Vec::new(), Vec::new());
    let range = (Bound::Included(&key(lo)[..]), Bound::Excluded(&key(hi)[..]));
    t.scan_stamped(range, Direction::Forward, &mut stamps, |k, v| {
        seen.push((k.to_vec(), v.to_vec()));
        ControlFlow::Continue(())
    })
    .unwrap();
    (seen, stamps)
}

#[test]
fn a_stamped_scan_notes_each_leaf_and_stands_until_one_of_them_changes() {
    let p = pool(512);
    let t = many_leaves(&p, 2000);
    let (seen, stamps) = stamped_scan(&t, 100, 200);
    assert_eq!(seen.len(), 100);
    let mut pids: Vec<u64> = stamps.iter().map(|s| s.pid()).collect();
    pids.dedup();
    assert!(pids.len() >= 3, "100 entries of 100 bytes span leaves");
    assert_eq!(pids.len(), stamps.len(), "one stamp per leaf visited");
    assert!(t.all_unchanged(&stamps));
    // A write far from the range leaves the scan's leaves alone.
    t.upsert(&key(1500), &[b'b'; 100]).unwrap();
    assert!(t.all_unchanged(&stamps));
    // A write inside it does not.
    t.upsert(&key(150), &[b'b'; 100]).unwrap();
    assert!(!t.all_unchanged(&stamps));
}

#[test]
fn a_stamped_scan_notes_the_extent_of_a_large_value_and_an_in_place_update_ends_it() {
    let p = pool(512);
    let t = many_leaves(&p, 200);
    t.upsert(&key(50), &[b'L'; 9000]).unwrap();
    let (seen, stamps) = stamped_scan(&t, 40, 60);
    assert_eq!(seen.len(), 20);
    assert_eq!(seen[10].1.len(), 9000);
    let leaves: std::collections::BTreeSet<u64> = stamps.iter().map(|s| s.pid()).collect();
    assert_eq!(stamps.len(), leaves.len(), "distinct pages");
    assert!(t.all_unchanged(&stamps));
    assert_eq!(t.update(&key(50), |v| v[0] = b'M').unwrap(), Some(()));
    assert!(!t.all_unchanged(&stamps));
}

/// The property validation relies on: while a scan's stamps are all
/// unchanged, scanning the range again hands out the same entries. Random
/// ranges, then random writes (inside and outside them, inserts, removes,
/// splits, merges), then the check, against a second scan.
#[test]
fn while_a_scans_stamps_stand_a_second_scan_reads_the_same() {
    let p = pool(1024);
    let t = many_leaves(&p, 3000);
    let mut rng = common::Rng::new(16);
    let (mut stood, mut fell) = (0, 0);
    for _ in 0..400 {
        let lo = rng.below(3000) as u32;
        let hi = lo + rng.below(200) as u32;
        let (seen, stamps) = stamped_scan(&t, lo, hi);
        for _ in 0..rng.below(12) {
            let k = key(rng.below(3400) as u32);
            match rng.below(3) {
                0 => {
                    t.remove(&k).unwrap();
                }
                1 => {
                    t.upsert(&k, &vec![b'c'; rng.below(300) as usize]).unwrap();
                }
                _ => {
                    t.upsert(&k, &[b'd'; 100]).unwrap();
                }
            }
        }
        if t.all_unchanged(&stamps) {
            stood += 1;
            assert_eq!(stamped_scan(&t, lo, hi).0, seen, "range {lo}..{hi}");
        } else {
            fell += 1;
        }
    }
    assert!(
        stood > 50 && fell > 50,
        "both cases exercised: {stood} / {fell}"
    );
}
