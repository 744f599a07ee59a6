//! Validation and writes that trust a read's leaf stamp while the leaf is
//! unchanged, and fall back to the tree whenever it is not: each case below
//! is one way the stamped leaf stops answering for the key.

use rime_storage::{Db, Durability, Options};
use tempfile::TempDir;

fn open(dir: &TempDir) -> Db {
    let opts = Options::default()
        .durability(Durability::NoSync)
        .pool_bytes(4 << 20)
        .checkpoint_interval(None)
        .segment_size(1 << 20);
    Db::open(dir.path(), opts).unwrap()
}

fn num(v: &[u8]) -> u64 {
    u64::from_le_bytes(v.try_into().unwrap())
}

/// Another key of the same leaf changed after the read: the stamp no
/// longer stands, but the key's version is the one read, so the
/// transaction commits on its first run, and its write lands.
#[test]
fn a_read_whose_leaf_changed_for_another_key_still_commits_at_once() {
    let dir = TempDir::new().unwrap();
    let db = open(&dir);
    let t = db.create_tree("t").unwrap();
    db.put(t, b"a", &1u64.to_le_bytes()).unwrap();
    db.put(t, b"b", &1u64.to_le_bytes()).unwrap();
    let mut runs = 0;
    db.transaction(|tx| {
        runs += 1;
        let a = tx.get(t, b"a", num)?.unwrap();
        db.put(t, b"b", &2u64.to_le_bytes()).unwrap(); // the same leaf
        tx.put(t, b"a", &(a + 10).to_le_bytes())
    })
    .unwrap();
    assert_eq!(runs, 1);
    assert_eq!(db.get(t, b"a").unwrap().map(|v| num(&v)), Some(11));
    assert_eq!(db.get(t, b"b").unwrap().map(|v| num(&v)), Some(2));
    db.verify().unwrap();
}

/// The key itself changed after the read: no update is lost.
#[test]
fn a_read_modify_write_whose_key_changed_runs_again_and_loses_no_update() {
    let dir = TempDir::new().unwrap();
    let db = open(&dir);
    let t = db.create_tree("t").unwrap();
    db.put(t, b"a", &1u64.to_le_bytes()).unwrap();
    let mut runs = 0;
    db.transaction(|tx| {
        runs += 1;
        let a = tx.get(t, b"a", num)?.unwrap();
        if runs == 1 {
            db.put(t, b"a", &2u64.to_le_bytes()).unwrap();
        }
        tx.put(t, b"a", &(a + 10).to_le_bytes())
    })
    .unwrap();
    assert_eq!(runs, 2);
    assert_eq!(db.get(t, b"a").unwrap().map(|v| num(&v)), Some(12));
}

/// The read's leaf split before the commit, moving the key: the commit's
/// write finds the key's new leaf.
#[test]
fn a_read_modify_write_whose_leaf_split_since_writes_where_the_key_now_lives() {
    let dir = TempDir::new().unwrap();
    let db = open(&dir);
    let t = db.create_tree("t").unwrap();
    db.put(t, b"zz", &1u64.to_le_bytes()).unwrap();
    let mut runs = 0;
    db.transaction(|tx| {
        runs += 1;
        let v = tx.get(t, b"zz", num)?.unwrap();
        if runs == 1 {
            for i in 0..2000u32 {
                db.put(t, format!("k{i:05}").as_bytes(), &[3; 200]).unwrap();
            }
        }
        tx.put(t, b"zz", &(v + 1).to_le_bytes())
    })
    .unwrap();
    assert_eq!(runs, 1, "the key's version did not change");
    assert_eq!(db.get(t, b"zz").unwrap().map(|v| num(&v)), Some(2));
    db.verify().unwrap();
}

/// The tree read was dropped and created again under the same id (a tree
/// id is its root page) between the read and the commit. The old leaf's
/// pages were freed, which ends their stamps: the read is checked against
/// the new tree, where the key is absent, and the transaction runs again.
#[test]
fn a_read_of_a_tree_dropped_and_recreated_under_its_id_does_not_validate() {
    let dir = TempDir::new().unwrap();
    let db = open(&dir);
    let mut reused = 0;
    for round in 0..20u64 {
        let t = db.create_tree("t").unwrap();
        db.put(t, b"k", &round.to_le_bytes()).unwrap();
        let mut runs = 0;
        let mut again = t;
        let seen = db.transaction(|tx| {
            runs += 1;
            let seen = tx.get(t, b"k", num)?;
            if runs == 1 {
                assert!(db.drop_tree("t").unwrap());
                again = db.create_tree("t").unwrap();
            }
            if again != t {
                return Ok(seen); // another id: nothing to compare
            }
            tx.put(t, b"other", b"x")?;
            Ok(seen)
        });
        if again == t {
            reused += 1;
            assert_eq!(runs, 2, "round {round}: a stale read committed");
            assert_eq!(seen.unwrap(), None, "round {round}");
        }
        assert!(db.drop_tree("t").unwrap());
    }
    assert!(
        reused > 0,
        "no tree id was reused: the test did not test it"
    );
}
