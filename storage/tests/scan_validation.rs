//! A scan's validation: a second scan only when a writer of its tree has
//! been at work since the scan began (`Gates::quiet`), and every change to
//! the scanned range still caught.

use rime_storage::{Db, DbStats, Options, TreeId};
use std::ops::{Bound, ControlFlow};
use tempfile::TempDir;

fn open() -> (Db, TreeId, TempDir) {
    let dir = TempDir::new().unwrap();
    let opts = Options::default()
        .pool_bytes(4 << 20)
        .checkpoint_interval(None)
        .segment_size(1 << 20);
    let db = Db::open(dir.path(), opts).unwrap();
    let tree = db.create_tree("t").unwrap();
    for i in 0..100u32 {
        db.put(tree, format!("k{i:03}").as_bytes(), b"1").unwrap();
    }
    (db, tree, dir)
}

/// Keys `k010..k020`, summed, and a point read of `k050` (so that even a
/// read-only transaction is validated).
fn sum_range(db: &Db, tree: TreeId, during_first_attempt: impl Fn()) -> u64 {
    let attempts = std::cell::Cell::new(0);
    db.transaction(|tx| {
        let mut sum = 0u64;
        tx.scan(
            tree,
            Bound::Included(b"k010".as_slice()),
            Bound::Excluded(b"k020".as_slice()),
            |_, v| {
                sum += std::str::from_utf8(v).unwrap().parse::<u64>().unwrap();
                ControlFlow::Continue(())
            },
        )?;
        tx.get(tree, b"k050", |_| ())?;
        attempts.set(attempts.get() + 1);
        if attempts.get() == 1 {
            during_first_attempt();
        }
        Ok(sum)
    })
    .unwrap()
}

/// `sum_range`, with `tree2`'s `key` set to `value` by another thread
/// after the first attempt's scan; the sum and `delta` of the stats.
fn sum_with_a_write_between(
    db: &Db,
    tree: TreeId,
    (tree2, key, value): (TreeId, &[u8], &[u8]),
) -> (u64, (u64, u64)) {
    let before = db.stats();
    let sum = sum_range(db, tree, || {
        std::thread::scope(|s| {
            s.spawn(|| db.put(tree2, key, value).unwrap());
        })
    });
    (sum, delta(&before, &db.stats()))
}

fn delta(before: &DbStats, after: &DbStats) -> (u64, u64) {
    (
        after.scan_rescans - before.scan_rescans,
        after.conflicts - before.conflicts,
    )
}

#[test]
fn a_scan_no_writer_came_near_is_validated_without_scanning_again() {
    let (db, tree, _dir) = open();
    let before = db.stats();
    assert_eq!(sum_range(&db, tree, || ()), 10);
    assert_eq!(delta(&before, &db.stats()), (0, 0));
}

#[test]
fn a_write_outside_the_range_makes_the_scan_check_again_and_pass() {
    let (db, tree, _dir) = open();
    let (sum, stats) = sum_with_a_write_between(&db, tree, (tree, b"k090", b"5"));
    assert_eq!(sum, 10);
    // Scanned again once (the writer had been at work), no conflict.
    assert_eq!(stats, (1, 0));
}

#[test]
fn a_write_inside_the_range_after_the_scan_is_a_conflict_and_a_rerun() {
    let (db, tree, _dir) = open();
    let (sum, stats) = sum_with_a_write_between(&db, tree, (tree, b"k015", b"5"));
    assert_eq!(sum, 14, "the re-run saw the write");
    assert_eq!(stats, (1, 1));
}

#[test]
fn a_key_inserted_into_the_range_after_the_scan_is_a_phantom_caught() {
    let (db, tree, _dir) = open();
    let (sum, stats) = sum_with_a_write_between(&db, tree, (tree, b"k015a", b"7"));
    assert_eq!(sum, 17, "the re-run saw the new key");
    assert_eq!(stats, (1, 1));
}

#[test]
fn a_write_to_another_tree_costs_the_scan_nothing() {
    let (db, tree, _dir) = open();
    // A tree on another gate (64 gates: some of the next names differ).
    let other = (0..64)
        .map(|i| db.create_tree(&format!("other{i}")).unwrap())
        .find(|t| gate_differs(*t, tree))
        .expect("a tree on another gate");
    let (sum, stats) = sum_with_a_write_between(&db, tree, (other, b"k015", b"5"));
    assert_eq!(sum, 10);
    assert_eq!(stats, (0, 0));
}

/// Whether trees `a` and `b` hash to different gates (the Db's own hash,
/// `Gates::of_tree`, restated here: the test must not pass by luck).
fn gate_differs(a: TreeId, b: TreeId) -> bool {
    let gate = |t: TreeId| (u64::from(t.0).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 58) & 63;
    gate(a) != gate(b)
}
