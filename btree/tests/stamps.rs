//! Leaf stamps: a lookup's proof that its answer still stands
//! (`BTree::unchanged`), and writes that start at the stamped leaf
//! (`Writer::near`) instead of descending.

mod common;

use common::{Pool, pool, tree};
use rime_btree::{BTree, LeafStamp};

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
