//! Db basics: trees, transactions, read-your-writes, scans, reopen.

use rime_storage::{Db, DbError, Durability, Options, TxError};
use std::ops::{Bound, ControlFlow};
use tempfile::TempDir;

fn opts() -> Options {
    Options::default()
        .pool_bytes(4 << 20)
        .checkpoint_interval(None)
        .segment_size(1 << 20)
}

#[test]
fn trees_and_values_survive_a_clean_close() {
    let dir = TempDir::new().unwrap();
    let db = Db::open(dir.path(), opts()).unwrap();
    let a = db.create_tree("a").unwrap();
    assert!(matches!(db.create_tree("a"), Err(DbError::TreeExists(_))));
    assert_eq!(db.open_or_create_tree("a").unwrap(), a);
    let b = db.open_or_create_tree("b").unwrap();
    db.put(a, b"k1", b"v1").unwrap();
    db.put(b, b"k1", b"other").unwrap();
    assert_eq!(db.get(a, b"k1").unwrap(), Some(b"v1".to_vec()));
    assert!(db.delete(b, b"k1").unwrap());
    assert!(!db.delete(b, b"k1").unwrap());
    db.close().unwrap();

    let db = Db::open(dir.path(), opts()).unwrap();
    assert_eq!(db.open_tree("a").unwrap(), Some(a));
    assert_eq!(db.list_trees().unwrap().len(), 2);
    assert_eq!(db.get(a, b"k1").unwrap(), Some(b"v1".to_vec()));
    assert_eq!(db.get(b, b"k1").unwrap(), None);
    assert!(db.drop_tree("b").unwrap());
    assert!(!db.drop_tree("b").unwrap());
    assert_eq!(db.list_trees().unwrap(), vec![("a".to_string(), a)]);
    db.verify().unwrap();
    drop(db);
    let db = Db::open(dir.path(), opts()).unwrap();
    assert_eq!(db.open_tree("b").unwrap(), None);
    db.close().unwrap();
}

#[test]
fn transactions_read_their_writes_add_cas_scan_abort() {
    let dir = TempDir::new().unwrap();
    let db = Db::open(dir.path(), opts().durability(Durability::NoSync)).unwrap();
    let t = db.create_tree("t").unwrap();
    for i in 0..10u8 {
        db.put(t, &[b'k', i], &[i]).unwrap();
    }
    let seen = db
        .transaction(|tx| {
            tx.put(t, b"k\x03", b"new")?;
            tx.delete(t, b"k\x04")?;
            tx.put(t, b"k\x04x", b"ins")?;
            assert_eq!(tx.get(t, b"k\x03", |v| v.to_vec())?, Some(b"new".to_vec()));
            assert_eq!(tx.get(t, b"k\x04", |v| v.to_vec())?, None);
            assert_eq!(tx.add(t, b"ctr", 5)?, 5);
            assert_eq!(tx.add(t, b"ctr", -2)?, 3);
            assert!(matches!(
                tx.add(t, b"k\x03", 1),
                Err(TxError::NotI64 { len: 3 })
            ));
            assert!(tx.cas(t, b"k\x05", Some(&[5]), Some(b"five"))?);
            assert!(!tx.cas(t, b"k\x05", Some(&[5]), None)?);
            let mut seen = Vec::new();
            tx.scan(
                t,
                Bound::Included(b"k\x02"),
                Bound::Excluded(b"k\x07"),
                |k, v| {
                    seen.push((k.to_vec(), v.to_vec()));
                    ControlFlow::Continue(())
                },
            )?;
            Ok(seen)
        })
        .unwrap();
    let keys: Vec<_> = seen.iter().map(|(k, _)| k.clone()).collect();
    assert_eq!(
        keys,
        vec![
            b"k\x02".to_vec(),
            b"k\x03".to_vec(),
            b"k\x04x".to_vec(),
            b"k\x05".to_vec(),
            b"k\x06".to_vec()
        ]
    );
    assert_eq!(seen[1].1, b"new");
    assert_eq!(seen[3].1, b"five");
    assert_eq!(
        db.get(t, b"ctr").unwrap(),
        Some(3i64.to_le_bytes().to_vec())
    );
    // Abort commits nothing.
    let r: Result<(), _> = db.transaction(|tx| {
        tx.put(t, b"zz", b"x")?;
        Err(tx.abort("no"))
    });
    assert!(matches!(r, Err(TxError::Aborted(_))));
    assert_eq!(db.get(t, b"zz").unwrap(), None);
    // Early stop of a scan.
    let n = db
        .transaction(|tx| {
            let mut n = 0;
            tx.scan(t, Bound::Unbounded, Bound::Unbounded, |_, _| {
                n += 1;
                if n == 3 {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            })?;
            Ok(n)
        })
        .unwrap();
    assert_eq!(n, 3);
    assert!(matches!(
        db.put(t, b"big", &[0; 600]),
        Err(TxError::ValueTooLarge { .. })
    ));
    db.close().unwrap();
}

#[test]
fn many_keys_split_and_recover_without_a_clean_close() {
    let dir = TempDir::new().unwrap();
    let db = Db::open(dir.path(), opts()).unwrap();
    let t = db.create_tree("t").unwrap();
    db.transaction(|tx| {
        for i in 0..3000u32 {
            tx.put(t, format!("key{i:06}").as_bytes(), &[7u8; 100])?;
        }
        Ok(())
    })
    .unwrap();
    for i in 0..200u32 {
        db.delete(t, format!("key{i:06}").as_bytes()).unwrap();
    }
    // Simulate a crash: leak the Db (no checkpoint, no flush of pages).
    std::mem::forget(db);
    // The directory lock is held by the leaked handle's file: a second open
    // in-process is refused, which is the locking guarantee.
    assert!(Db::open(dir.path(), opts()).is_err());
}

#[test]
fn second_open_is_refused() {
    let dir = TempDir::new().unwrap();
    let db = Db::open(dir.path(), opts()).unwrap();
    assert!(matches!(
        Db::open(dir.path(), opts()),
        Err(rime_storage::OpenError::Dir(_))
    ));
    db.close().unwrap();
}
