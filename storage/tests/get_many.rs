//! `get_many` against a `BTreeMap` model, on a pool so small that most
//! lookups miss; inside transactions that also write.

use rime_storage::{Db, Options, TxError};
use std::collections::BTreeMap;
use tempfile::TempDir;

fn opts() -> Options {
    Options::default()
        .pool_bytes(1 << 20)
        .checkpoint_interval(None)
        .segment_size(8 << 20)
}

/// xorshift64*, seeded, so a failure replays.
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }
}

#[test]
fn get_many_agrees_with_a_model_under_eviction() {
    let seed = 0x9e7_4a11;
    println!("seed {seed}");
    let mut r = Rng(seed);
    let dir = TempDir::new().unwrap();
    let db = Db::open(dir.path(), opts()).unwrap();
    let t = db.create_tree("t").unwrap();
    let mut model = BTreeMap::new();
    let keys: Vec<Vec<u8>> = (0..30_000u32).map(|i| i.to_be_bytes().to_vec()).collect();
    for chunk in keys.chunks(1000) {
        db.transaction(|tx| {
            for k in chunk {
                let n = u32::from_be_bytes(k[..].try_into().unwrap());
                // Every 97th value lives in an extent.
                let len = if n % 97 == 0 {
                    3000
                } else {
                    40 + n as usize % 80
                };
                tx.put(t, k, &vec![n as u8; len])?;
            }
            Ok(())
        })
        .unwrap();
        for k in chunk {
            let n = u32::from_be_bytes(k[..].try_into().unwrap());
            let len = if n % 97 == 0 {
                3000
            } else {
                40 + n as usize % 80
            };
            model.insert(k.clone(), vec![n as u8; len]);
        }
    }
    db.checkpoint().unwrap();
    let misses_before = db.stats().pool.misses;
    for _ in 0..20 {
        // A batch of 200 keys, some absent, some repeated.
        let batch: Vec<Vec<u8>> = (0..200)
            .map(|_| (r.below(31_000) as u32).to_be_bytes().to_vec())
            .collect();
        let mut seen = vec![false; batch.len()];
        db.get_many(t, &batch, |i, v| {
            assert!(!seen[i], "key {i} answered twice");
            seen[i] = true;
            assert_eq!(
                v,
                model.get(&batch[i]).map(Vec::as_slice),
                "key {:?}",
                batch[i]
            );
        })
        .unwrap();
        assert!(seen.iter().all(|&s| s), "every key is answered");
    }
    assert!(
        db.stats().pool.misses > misses_before + 1000,
        "the lookups missed"
    );
    db.verify().unwrap();
}

#[test]
fn get_many_in_a_transaction_sees_its_own_writes() {
    let dir = TempDir::new().unwrap();
    let db = Db::open(dir.path(), opts()).unwrap();
    let t = db.create_tree("t").unwrap();
    db.put(t, b"a", b"1").unwrap();
    db.put(t, b"b", b"2").unwrap();
    let got = db
        .transaction(|tx| {
            tx.put(t, b"a", b"own")?;
            tx.delete(t, b"b")?;
            let mut got = vec![None; 3];
            tx.get_many(t, &[&b"a"[..], b"b", b"c"], |i, v| {
                got[i] = Some(v.map(<[u8]>::to_vec))
            })?;
            Ok(got)
        })
        .unwrap();
    assert_eq!(got, [Some(Some(b"own".to_vec())), Some(None), Some(None)]);
    // A key over the limit is refused before anything is read.
    let long = vec![0u8; rime_storage::MAX_KEY_LEN + 1];
    let r = db.get_many(t, &[long], |_, _| panic!("no key is answered"));
    assert!(matches!(r, Err(TxError::KeyTooLarge { .. })), "{r:?}");
}

/// The reads of `get_many` join the read set: a key it read and another
/// transaction changed before the commit makes the transaction run again.
#[test]
fn a_key_read_by_get_many_and_changed_before_commit_reruns_the_transaction() {
    let dir = TempDir::new().unwrap();
    let db = Db::open(dir.path(), opts()).unwrap();
    let t = db.create_tree("t").unwrap();
    db.put(t, b"x", b"old").unwrap();
    let mut attempts = 0;
    let seen = db
        .transaction(|tx| {
            attempts += 1;
            let mut seen = Vec::new();
            tx.get_many(t, &[b"x"], |_, v| seen = v.unwrap().to_vec())?;
            if attempts == 1 {
                db.put(t, b"x", b"new").unwrap();
            }
            tx.put(t, b"copy", &seen)?;
            Ok(seen)
        })
        .unwrap();
    assert_eq!(
        attempts, 2,
        "the first attempt read a value changed before its commit"
    );
    assert_eq!(seen, b"new");
    assert_eq!(db.get(t, b"copy").unwrap().unwrap(), b"new");
}
