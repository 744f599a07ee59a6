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
    // Every 97th value lives in an extent.
    let value = |k: &[u8]| {
        let n = u32::from_be_bytes(k.try_into().unwrap());
        let len = if n % 97 == 0 {
            3000
        } else {
            40 + n as usize % 80
        };
        vec![n as u8; len]
    };
    for chunk in keys.chunks(1000) {
        db.transaction(|tx| {
            for k in chunk {
                tx.put(t, k, &value(k))?;
            }
            Ok(())
        })
        .unwrap();
        model.extend(chunk.iter().map(|k| (k.clone(), value(k))));
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

/// A value that checks itself: the key's number, a generation, a pattern
/// derived from both, and an FNV-1a checksum of all of it.
fn checked_value(n: u32, generation: u32, len: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(len);
    v.extend_from_slice(&n.to_le_bytes());
    v.extend_from_slice(&generation.to_le_bytes());
    let mut x = u64::from(n) << 32 | u64::from(generation);
    while v.len() < len - 4 {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        v.push((x >> 56) as u8);
    }
    let sum = fnv(&v);
    v.extend_from_slice(&sum.to_le_bytes());
    v
}

fn fnv(b: &[u8]) -> u32 {
    b.iter().fold(0x811c_9dc5u32, |h, &x| {
        (h ^ x as u32).wrapping_mul(0x0100_0193)
    })
}

fn check_value(n: u32, v: &[u8]) {
    let (body, sum) = v.split_at(v.len() - 4);
    assert_eq!(
        fnv(body).to_le_bytes(),
        sum,
        "value of key {n} is torn or misplaced"
    );
    assert_eq!(
        &body[..4],
        &n.to_le_bytes(),
        "key {n} holds another key's value"
    );
}

/// Stress: the pool holds 1% of the data; four threads each keep 256
/// lookups in flight through `get_many` while a writer overwrites keys
/// with new generations; every value is checked on every read, and the
/// trees verify at the end.
#[test]
fn get_many_stress_on_a_pool_at_one_percent_of_the_data() {
    const RECORDS: u32 = 100_000;
    const VALUE_LEN: usize = 1000;
    let dir = TempDir::new().unwrap();
    let db = Db::open(
        dir.path(),
        Options::default()
            .pool_bytes(1 << 20)
            .checkpoint_interval(None),
    )
    .unwrap();
    let t = db.create_tree("t").unwrap();
    for first in (0..RECORDS).step_by(2000) {
        db.transaction(|tx| {
            for n in first..first + 2000 {
                tx.put(t, &n.to_be_bytes(), &checked_value(n, 0, VALUE_LEN))?;
            }
            Ok(())
        })
        .unwrap();
    }
    db.checkpoint().unwrap();
    let data_pages = db.stats().allocated_pages;
    assert!(
        data_pages >= 100 * 256,
        "the pool (256 pages) should be at most 1% of the data ({data_pages} pages)"
    );
    let misses = db.stats().pool.misses;
    let batches_per_thread = 30 * rime_storage_scale();
    std::thread::scope(|s| {
        for thread in 0..4u64 {
            let db = &db;
            s.spawn(move || {
                let mut r = Rng(0x57_2e55 + thread);
                for _ in 0..batches_per_thread {
                    let keys: Vec<[u8; 4]> = (0..256)
                        .map(|_| (r.below(RECORDS as u64) as u32).to_be_bytes())
                        .collect();
                    let mut answered = 0;
                    db.get_many(t, &keys, |i, v| {
                        check_value(u32::from_be_bytes(keys[i]), v.expect("every key exists"));
                        answered += 1;
                    })
                    .unwrap();
                    assert!(answered >= 256, "each key answered (again on a rerun)");
                }
            });
        }
        s.spawn(|| {
            let mut r = Rng(0xd1_7e);
            for generation in 1..=200 {
                let n = r.below(RECORDS as u64) as u32;
                db.put(
                    t,
                    &n.to_be_bytes(),
                    &checked_value(n, generation, VALUE_LEN),
                )
                .unwrap();
            }
        });
    });
    let reloads = db.stats().pool.misses - misses;
    assert!(
        reloads > 2 * data_pages,
        "{reloads} misses over {data_pages} pages: pages were not evicted and reloaded many times"
    );
    db.verify().unwrap();
}

/// `RIME_STRESS_SCALE` (default 1) multiplies the stress test's work.
fn rime_storage_scale() -> usize {
    std::env::var("RIME_STRESS_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
}

/// A `Db::get_many` of 128 keys that writers keep changing: each optimistic
/// attempt finds one of its keys changed at validation, and before the fix
/// all 16 attempts did, so the batch failed with `Conflict` (`rime-bench
/// ycsb --preset commit --engines rime-batched`: two thirds of the
/// operations at 256 threads). A conflicted read-only batch now finishes
/// under the locks of its read set. The writers change pairs of keys in
/// one transaction, to one value; every batch must see both keys of every
/// pair equal, or it was not one instant of the database.
#[test]
fn a_large_read_only_batch_commits_under_write_contention() {
    use std::sync::atomic::{AtomicBool, Ordering};
    const KEYS: u32 = 128;
    const WRITERS: u32 = 3;
    const BATCHES: u32 = 100;
    let dir = TempDir::new().unwrap();
    let db = Db::open(
        dir.path(),
        opts()
            .pool_bytes(16 << 20)
            .durability(rime_storage::Durability::NoSync),
    )
    .unwrap();
    let t = db.create_tree("t").unwrap();
    let keys: Vec<[u8; 4]> = (0..KEYS).map(u32::to_be_bytes).collect();
    for k in &keys {
        db.put(t, k, &0u64.to_le_bytes()).unwrap();
    }
    let stop = AtomicBool::new(false);
    /// Stops the writers however the reader leaves, a failed check too.
    struct StopOnDrop<'a>(&'a AtomicBool);
    impl Drop for StopOnDrop<'_> {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
        }
    }
    let conflicts_before = db.stats().conflicts;
    let reruns = std::thread::scope(|s| {
        for w in 0..WRITERS {
            let (db, keys, stop) = (&db, &keys, &stop);
            s.spawn(move || {
                let mut r = Rng(0x5eed + u64::from(w));
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let pair = (r.below(u64::from(KEYS / 2)) * 2) as usize;
                    n += 1;
                    let value = (n << 8 | u64::from(w)).to_le_bytes();
                    db.transaction(|tx| {
                        tx.put(t, &keys[pair], &value)?;
                        tx.put(t, &keys[pair + 1], &value)
                    })
                    .unwrap();
                }
            });
        }
        let _stop = StopOnDrop(&stop);
        let mut reruns = 0u32;
        // At least BATCHES, and on until the writers have made one of them
        // conflict (a release build can finish a hundred batches before
        // the writer threads first run), for at most 20 s.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let mut batches = 0;
        while batches < BATCHES
            || (db.stats().conflicts == conflicts_before && std::time::Instant::now() < deadline)
        {
            batches += 1;
            let mut got = vec![None; keys.len()];
            let mut calls = 0usize;
            let r = db.get_many(t, &keys, |i, v| {
                calls += 1;
                got[i] = v.map(<[u8]>::to_vec);
            });
            if let Err(e) = r {
                panic!("a read-only batch failed under write contention: {e}");
            }
            reruns += u32::from(calls > keys.len());
            for (pair, v) in got.chunks(2).enumerate() {
                assert!(v[0].is_some(), "key {} is present", pair * 2);
                assert_eq!(v[0], v[1], "pair {pair} was written in one transaction");
            }
        }
        reruns
    });
    let conflicts = db.stats().conflicts - conflicts_before;
    println!("{conflicts} conflicts, {reruns} batches saw keys again");
    assert!(
        conflicts > 0,
        "the writers never changed a key between a batch's read and its validation: \
         the test did not exercise the contended path"
    );
}
