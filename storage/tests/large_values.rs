//! Values larger than a leaf holds: they live in page extents whose
//! allocation the tree logs, so they survive crashes like any value.

mod common;
use common::{faulty, power_cut};
use rime_storage::{Db, MAX_VALUE_LEN, Options, TxError, VerifyOnOpen};
use std::collections::BTreeMap;
use tempfile::TempDir;

fn base() -> Options {
    Options::default()
        .pool_bytes(2 << 20)
        .checkpoint_interval(None)
        .segment_size(4 << 20)
        .verify_on_open(VerifyOnOpen::Always)
}

/// A value whose every byte depends on key, generation and position.
fn value(key: u32, generation: u32, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| {
            (i as u32)
                .wrapping_mul(31)
                .wrapping_add(key * 7 + generation * 13) as u8
        })
        .collect()
}

/// Lengths from just over the inline limit (1456 user bytes under a 4-byte
/// key: `rime_btree::inline_value_max(4)` less the 8-byte version) to 1 MiB.
const LENGTHS: [usize; 6] = [1_600, 4_000, 4_096, 40_000, 300_000, 1 << 20];

#[test]
fn large_values_survive_replacement_eviction_and_a_power_cut() {
    let dir = TempDir::new().unwrap();
    let (opts, files) = faulty(base());
    let db = Db::open(dir.path(), opts).unwrap();
    let t = db.create_tree("blobs").unwrap();
    let mut model: BTreeMap<u32, Vec<u8>> = BTreeMap::new();
    // Before the checkpoint: on disk for sure.
    for k in 0..12u32 {
        let v = value(k, 0, LENGTHS[k as usize % LENGTHS.len()]);
        db.put(t, &k.to_be_bytes(), &v).unwrap();
        model.insert(k, v);
    }
    db.checkpoint().unwrap();
    // After it: replaced (large to large, large to small, small to large),
    // removed, and new; the pool (2 MiB) evicts extents meanwhile.
    for generation in 1..4u32 {
        for k in 0..16u32 {
            let len = LENGTHS[(k + generation) as usize % LENGTHS.len()] / (1 + (k % 3) as usize);
            let v = value(k, generation, if k % 5 == 0 { 100 } else { len });
            db.put(t, &k.to_be_bytes(), &v).unwrap();
            model.insert(k, v);
        }
        db.delete(t, &(generation * 3).to_be_bytes()).unwrap();
        model.remove(&(generation * 3));
    }
    assert!(db.stats().pool.evictions > 0, "the values outgrew the pool");
    power_cut(&files);
    drop(db);

    let db = Db::open(dir.path(), base()).unwrap();
    for k in 0..16u32 {
        let got = db.get(t, &k.to_be_bytes()).unwrap();
        assert_eq!(
            got.as_ref().map(Vec::len),
            model.get(&k).map(Vec::len),
            "length of key {k}"
        );
        assert!(got.as_ref() == model.get(&k), "bytes of key {k}");
    }
    db.verify().unwrap();
    db.close().unwrap();
}

/// The case the allocation logging exists for: after a checkpoint, leaves
/// that point to newly allocated extents are evicted (so they reach the
/// disk) and those values are then replaced (so redo frees the extents the
/// on-disk leaves point to). If recovery did not know those extents were
/// allocated, it would free pages it believes free already, hand them out
/// twice, and two keys would share an extent.
#[test]
fn evicted_leaves_pointing_at_new_extents_recover_without_sharing_an_extent() {
    const BLOBS: u32 = 200;
    /// Few distinct sizes, so freed extents are reused by later values.
    const SIZES: [usize; 3] = [1_600, 5_000, 9_000];
    let dir = TempDir::new().unwrap();
    let (opts, files) = faulty(base());
    let db = Db::open(dir.path(), opts).unwrap();
    let blobs = db.create_tree("blobs").unwrap();
    let filler = db.create_tree("filler").unwrap();
    db.checkpoint().unwrap();
    let mut model: BTreeMap<u32, Vec<u8>> = BTreeMap::new();
    for generation in 0..4u32 {
        for k in 0..BLOBS {
            let v = value(k, generation, SIZES[((k + generation) % 3) as usize]);
            db.put(blobs, &k.to_be_bytes(), &v).unwrap();
            model.insert(k, v);
        }
        // Churn the pool so the blob tree's leaves are written back.
        for i in 0..1500u32 {
            db.put(
                filler,
                &(generation * 10_000 + i).to_be_bytes(),
                &[7u8; 400],
            )
            .unwrap();
        }
    }
    power_cut(&files);
    drop(db);

    let db = Db::open(dir.path(), base()).unwrap();
    // Keep working after recovery: splits take free pages, and a page of a
    // live extent wrongly believed free would be overwritten now.
    for i in 0..4000u32 {
        db.put(filler, &(100_000 + i).to_be_bytes(), &[9u8; 400])
            .unwrap();
    }
    db.verify().unwrap();
    for (k, v) in &model {
        let got = db.get(blobs, &k.to_be_bytes()).unwrap();
        assert!(
            got.as_ref() == Some(v),
            "key {k}: {:?} bytes, want {}",
            got.map(|g| g.len()),
            v.len()
        );
    }
    db.close().unwrap();
}

#[test]
fn the_longest_value_round_trips_and_one_byte_more_is_refused() {
    let dir = TempDir::new().unwrap();
    let db = Db::open(dir.path(), base().pool_bytes(64 << 20)).unwrap();
    let t = db.create_tree("t").unwrap();
    let v = value(1, 1, MAX_VALUE_LEN);
    db.put(t, b"max", &v).unwrap();
    assert!(db.get(t, b"max").unwrap().as_deref() == Some(&v[..]));
    let err = db.put(t, b"over", &vec![0; MAX_VALUE_LEN + 1]).unwrap_err();
    assert!(matches!(err, TxError::ValueTooLarge { .. }), "{err}");
    db.close().unwrap();
    let db = Db::open(dir.path(), base().pool_bytes(64 << 20)).unwrap();
    assert!(db.get(t, b"max").unwrap().as_deref() == Some(&v[..]));
}

/// Issue 12, bug 1: overwriting an extent-backed value frees its extent
/// (unlogged), a later split reuses those pages as tree nodes, and the
/// crash leaves the leaf on disk as the checkpoint wrote it, still naming
/// the extent. Redo replays the overwrite onto that stale leaf; freeing
/// the "old extent" again freed a live node, and recovery failed with torn
/// fences, "extent page owned twice", or spun on its own latched leaf.
#[test]
fn redo_of_an_overwrite_does_not_free_extent_pages_reused_as_nodes() {
    let dir = TempDir::new().unwrap();
    let (opts, files) = faulty(base());
    let db = Db::open(dir.path(), opts).unwrap();
    let t = db.create_tree("t").unwrap();
    let other = db.create_tree("other").unwrap();
    // 1. Extent-backed values, on disk for sure.
    for k in 0..8u32 {
        db.put(t, &k.to_be_bytes(), &value(k, 0, 5_000)).unwrap();
    }
    db.checkpoint().unwrap();
    // 2. Overwrite them small: their extents go back to the free map.
    for k in 0..8u32 {
        db.put(t, &k.to_be_bytes(), &value(k, 1, 10)).unwrap();
    }
    // 3. Splits in another tree take those pages for new nodes (no SMO
    //    touches `t`'s leaf, so nothing logs its new contents as an image).
    let mut model: BTreeMap<u32, Vec<u8>> = BTreeMap::new();
    for k in 1_000..4_000u32 {
        let v = value(k, 2, 300);
        db.put(other, &k.to_be_bytes(), &v).unwrap();
        model.insert(k, v);
    }
    // 4. The page writes since the checkpoint are lost; the log is not.
    power_cut(&files);
    drop(db);

    let db = Db::open(dir.path(), base()).unwrap();
    db.verify().unwrap();
    for k in 0..8u32 {
        let got = db.get(t, &k.to_be_bytes()).unwrap();
        assert!(got == Some(value(k, 1, 10)), "key {k} of t");
    }
    for (k, v) in &model {
        let got = db.get(other, &k.to_be_bytes()).unwrap();
        assert!(got.as_ref() == Some(v), "key {k} of other");
    }
    // New work must not be handed a page a tree still uses.
    for k in 10_000..12_000u32 {
        db.put(t, &k.to_be_bytes(), &value(k, 3, 2_000)).unwrap();
    }
    db.verify().unwrap();
    db.close().unwrap();
}
