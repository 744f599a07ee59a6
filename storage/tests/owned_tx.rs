//! `OwnedTx` and `Reads`, the face an async caller uses: reads that stop
//! at a page not in memory (`WouldWait`), loaded by the caller's `Reads`
//! and run again, checked against a `BTreeMap` model on a pool far smaller
//! than the data; commits driven attempt by attempt, with conflicts.

use rime_storage::{Committed, Db, TxError};
use std::collections::{BTreeMap, HashSet};
use tempfile::TempDir;

mod small_pool;
use small_pool::{opts, value};

#[test]
fn nowait_reads_agree_with_a_model_under_eviction() {
    let dir = TempDir::new().unwrap();
    let db = Db::open(dir.path(), opts()).unwrap();
    let t = db.create_tree("t").unwrap();
    let mut model = BTreeMap::new();
    for chunk in (0..30_000u32).collect::<Vec<_>>().chunks(1000) {
        db.transaction(|tx| {
            for &n in chunk {
                tx.put(t, &n.to_be_bytes(), &value(n))?;
            }
            Ok(())
        })
        .unwrap();
        model.extend(chunk.iter().map(|&n| (n.to_be_bytes().to_vec(), value(n))));
    }
    db.checkpoint().unwrap();
    let mut reads = db.reads();
    let (mut waited, mut x) = (0u32, 0x9e37_79b9u64);
    for _ in 0..2000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let key = ((x % 31_000) as u32).to_be_bytes(); // some absent
        let mut txn = db.begin();
        // 1–3 of `Reads`: run, and on a miss load the page and run again.
        let got = loop {
            match txn.tx_nowait().get(t, &key, <[u8]>::to_vec) {
                Err(TxError::WouldWait(miss)) => {
                    waited += 1;
                    reads.request(miss);
                    let mut arrived = HashSet::new();
                    while !arrived.contains(&miss.page()) {
                        reads.poll(true, |page, r| {
                            r.unwrap();
                            arrived.insert(page);
                        });
                    }
                }
                other => break other.unwrap(),
            }
        };
        assert_eq!(got.as_ref(), model.get(&key[..]), "key {key:?}");
        // One read, no write: commits without validation.
        assert!(!txn.commit_latches_pages());
        assert!(matches!(txn.commit().unwrap(), Committed::Durable(_)));
    }
    assert!(waited > 500, "the pool should have missed often: {waited}");
    assert_eq!(reads.in_flight(), 0);
    db.verify().unwrap();
}

#[test]
fn an_owned_transaction_commits_once_durable_and_reruns_after_a_conflict() {
    let dir = TempDir::new().unwrap();
    let db = Db::open(dir.path(), opts()).unwrap();
    let t = db.create_tree("t").unwrap();
    let mut a = db.begin();
    let mut b = db.begin();
    // Both read k (absent), both write it: the second to commit conflicts.
    for (txn, v) in [(&mut a, b"a"), (&mut b, b"b")] {
        let mut tx = txn.tx();
        assert_eq!(tx.get(t, b"k", <[u8]>::to_vec).unwrap(), None);
        tx.put(t, b"k", v).unwrap();
    }
    assert!(a.commit_latches_pages());
    let Committed::Durable(p) = a.commit().unwrap() else {
        panic!("the first commit conflicted")
    };
    p.wait().unwrap();
    assert!(matches!(b.commit().unwrap(), Committed::Conflict));
    // The conflict emptied b: its next attempt starts clean.
    assert!(!b.commit_latches_pages());
    let mut tx = b.tx();
    assert_eq!(
        tx.get(t, b"k", <[u8]>::to_vec).unwrap(),
        Some(b"a".to_vec())
    );
    tx.put(t, b"k", b"ab").unwrap();
    let Committed::Durable(p) = b.commit().unwrap() else {
        panic!("the re-run conflicted")
    };
    p.wait().unwrap();
    assert_eq!(db.get(t, b"k").unwrap(), Some(b"ab".to_vec()));
    // Dropped before its commit, a transaction leaves nothing.
    let mut c = db.begin();
    c.tx().put(t, b"k", b"never").unwrap();
    drop(c);
    assert_eq!(db.get(t, b"k").unwrap(), Some(b"ab".to_vec()));
}
