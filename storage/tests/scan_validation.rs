//! A scan's validation: a second scan only when a writer of its tree has
//! been at work since the scan began (`Gates::quiet`) and changed a page
//! the scan read (`BTree::scan_stamped`), and every change to the scanned
//! range still caught.

use rime_storage::{Db, DbStats, Options, TreeId};
use std::ops::{Bound, ControlFlow};
use tempfile::TempDir;

/// Keys `k000..k099`, each value `1`: one leaf.
fn open() -> (Db, TreeId, TempDir) {
    open_with(b"1")
}

/// Keys `k000..k099`, each value `1` and 299 bytes of padding: a dozen
/// keys per leaf, so `k010..k020` and `k090` lie in different leaves.
fn open_wide() -> (Db, TreeId, TempDir) {
    open_with(&wide(b'1'))
}

fn wide(digit: u8) -> Vec<u8> {
    let mut v = vec![b' '; 300];
    v[0] = digit;
    v
}

fn open_with(value: &[u8]) -> (Db, TreeId, TempDir) {
    let dir = TempDir::new().unwrap();
    let opts = Options::default()
        .pool_bytes(4 << 20)
        .checkpoint_interval(None)
        .segment_size(1 << 20);
    let db = Db::open(dir.path(), opts).unwrap();
    let tree = db.create_tree("t").unwrap();
    for i in 0..100u32 {
        db.put(tree, format!("k{i:03}").as_bytes(), value).unwrap();
    }
    (db, tree, dir)
}

/// Keys `k010..k020`, summed (each value's first byte is its digit), and a
/// point read of `k050`, so that the transaction is validated holding the
/// tree's gate (`occ::validate`).
fn sum_range(db: &Db, tree: TreeId, during_first_attempt: impl Fn()) -> u64 {
    sum_range_reading(db, tree, true, during_first_attempt)
}

/// [`sum_range`]; without the point read (`with_read` false) the
/// transaction is scans alone, validated without the gate when it can be
/// (`occ::only_settled_scans`).
fn sum_range_reading(
    db: &Db,
    tree: TreeId,
    with_read: bool,
    during_first_attempt: impl Fn(),
) -> u64 {
    let attempts = std::cell::Cell::new(0);
    db.transaction(|tx| {
        let mut sum = 0u64;
        tx.scan(
            tree,
            Bound::Included(b"k010".as_slice()),
            Bound::Excluded(b"k020".as_slice()),
            |_, v| {
                sum += u64::from(v[0] - b'0');
                ControlFlow::Continue(())
            },
        )?;
        if with_read {
            tx.get(tree, b"k050", |_| ())?;
        }
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
    write: (TreeId, &[u8], &[u8]),
) -> (u64, (u64, u64)) {
    sum_with_a_write_between_reading(db, tree, true, write)
}

fn sum_with_a_write_between_reading(
    db: &Db,
    tree: TreeId,
    with_read: bool,
    (tree2, key, value): (TreeId, &[u8], &[u8]),
) -> (u64, (u64, u64)) {
    let before = db.stats();
    let sum = sum_range_reading(db, tree, with_read, || {
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

#[test]
fn a_write_to_another_leaf_of_the_tree_costs_the_scan_nothing() {
    for with_read in [true, false] {
        let (db, tree, _dir) = open_wide();
        let write = (tree, b"k090".as_slice(), wide(b'5'));
        let (sum, stats) =
            sum_with_a_write_between_reading(&db, tree, with_read, (write.0, write.1, &write.2));
        assert_eq!(sum, 10, "with_read {with_read}");
        // The writer was at work, but on no page the scan read.
        assert_eq!(stats, (0, 0), "with_read {with_read}");
    }
}

/// Over [`open_wide`], with and without the gate: `key` set to a wide
/// `digit` after the scan is a conflict, and the re-run sums to `sum`.
fn caught_in_a_wide_range(key: &[u8], digit: u8, sum: u64) {
    for with_read in [true, false] {
        let (db, tree, _dir) = open_wide();
        let value = wide(digit);
        let (got, stats) =
            sum_with_a_write_between_reading(&db, tree, with_read, (tree, key, &value));
        assert_eq!(got, sum, "with_read {with_read}: the re-run saw the write");
        assert_eq!(stats.1, 1, "with_read {with_read}: a conflict");
    }
}

#[test]
fn a_write_inside_a_wide_range_is_caught_with_or_without_the_gate() {
    caught_in_a_wide_range(b"k015", b'5', 14);
}

#[test]
fn a_key_inserted_into_a_wide_range_is_a_phantom_caught_with_or_without_the_gate() {
    caught_in_a_wide_range(b"k015a", b'7', 17);
}

/// A large value lives in its own extent: its replacement after the scan
/// is caught (the scan's stamps cover the leaf that refers to the extent,
/// and the extent).
#[test]
fn a_large_value_rewritten_after_the_scan_is_caught() {
    const LARGE: usize = 6000;
    let large = |digit: u8| {
        let mut v = vec![b'.'; LARGE];
        v[0] = digit;
        v
    };
    for with_read in [true, false] {
        let (db, tree, _dir) = open_wide();
        db.put(tree, b"k012", &large(b'1')).unwrap();
        let value = large(b'6');
        let (sum, stats) =
            sum_with_a_write_between_reading(&db, tree, with_read, (tree, b"k012", &value));
        assert_eq!(
            sum, 15,
            "with_read {with_read}: the re-run saw the new value"
        );
        assert_eq!(stats.1, 1, "with_read {with_read}: a conflict");
    }
}
