//! The bank invariant under concurrency and after recovery, and a database
//! ten times larger than its pool through random transactions, a crash and
//! recovery. Scale with `RIME_STRESS_SCALE` (default 1).

mod common;
use common::{faulty, power_cut};
use rand::{Rng, SeedableRng};
use rime_storage::{Db, Durability, Options, TxError, VerifyOnOpen};
use std::collections::HashMap;
use std::ops::{Bound, ControlFlow};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use tempfile::TempDir;

fn scale() -> u64 {
    std::env::var("RIME_STRESS_SCALE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
}

const ACCOUNTS: u32 = 64;
const INITIAL: i64 = 1000;

fn account(i: u32) -> Vec<u8> {
    format!("acct{i:04}").into_bytes()
}

fn total(db: &Db, t: rime_storage::TreeId) -> Result<(i64, usize), TxError> {
    db.transaction(|tx| {
        let mut sum = 0i64;
        let mut n = 0usize;
        tx.scan(t, Bound::Unbounded, Bound::Unbounded, |_, v| {
            sum += i64::from_le_bytes(v.try_into().unwrap());
            n += 1;
            ControlFlow::Continue(())
        })?;
        Ok((sum, n))
    })
}

#[test]
fn bank_total_never_changes_under_concurrency_nor_after_a_power_cut() {
    let dir = TempDir::new().unwrap();
    let opts = Options::default()
        .pool_bytes(2 << 20)
        .durability(Durability::Group {
            max_delay: Duration::from_micros(200),
        })
        .checkpoint_interval(Some(Duration::from_millis(50)))
        .segment_size(128 << 10)
        .checkpoint_log_bytes(512 << 10);
    let (fopts, files) = faulty(opts.clone());
    let db = Db::open(dir.path(), fopts).unwrap();
    let t = db.create_tree("bank").unwrap();
    db.transaction(|tx| {
        for i in 0..ACCOUNTS {
            tx.put(t, &account(i), &INITIAL.to_le_bytes())?;
        }
        Ok(())
    })
    .unwrap();
    let expected = INITIAL * i64::from(ACCOUNTS);
    let stop = AtomicBool::new(false);
    let transfers = AtomicU64::new(0);
    let audits = AtomicU64::new(0);
    let per_thread = 150 * scale();
    std::thread::scope(|s| {
        for th in 0..6u64 {
            let (db, transfers) = (&db, &transfers);
            s.spawn(move || {
                let mut rng = rand::rngs::StdRng::seed_from_u64(th);
                for _ in 0..per_thread {
                    let (a, b) = (rng.gen_range(0..ACCOUNTS), rng.gen_range(0..ACCOUNTS));
                    let amount = rng.gen_range(1..50);
                    let r = db.transaction(|tx| {
                        let bal = tx.add(t, &account(a), -amount)?;
                        if bal < 0 {
                            return Err(tx.abort("insufficient funds"));
                        }
                        tx.add(t, &account(b), amount)?;
                        Ok(())
                    });
                    match r {
                        Ok(()) => {
                            transfers.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(TxError::Aborted(_)) => {}
                        Err(e) => panic!("{e}"),
                    }
                }
            });
        }
        for _ in 0..2 {
            let (db, stop, audits) = (&db, &stop, &audits);
            s.spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let (sum, n) = total(db, t).unwrap();
                    assert_eq!(
                        (sum, n),
                        (expected, ACCOUNTS as usize),
                        "an audit saw money appear or vanish"
                    );
                    audits.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        // Stop auditors once the transfer threads are done.
        s.spawn(|| {
            while transfers.load(Ordering::Relaxed) < 6 * per_thread / 2 {
                std::thread::sleep(Duration::from_millis(5));
            }
            std::thread::sleep(Duration::from_millis(100));
            stop.store(true, Ordering::Relaxed);
        });
    });
    assert!(audits.load(Ordering::Relaxed) > 0);
    assert_eq!(total(&db, t).unwrap(), (expected, ACCOUNTS as usize));
    eprintln!(
        "bank: {} transfers, {} audits, {} conflicts",
        transfers.load(Ordering::Relaxed),
        audits.load(Ordering::Relaxed),
        db.stats().conflicts
    );
    power_cut(&files);
    drop(db);
    let db = Db::open(dir.path(), opts.verify_on_open(VerifyOnOpen::Always)).unwrap();
    assert_eq!(total(&db, t).unwrap(), (expected, ACCOUNTS as usize));
    db.close().unwrap();
}

#[test]
fn ten_times_the_pool_random_transactions_crash_recover_verify() {
    let dir = TempDir::new().unwrap();
    let pool = 1 << 20; // 256 pages, the minimum
    let opts = Options::default()
        .pool_bytes(pool)
        .checkpoint_interval(Some(Duration::from_millis(200)))
        .segment_size(1 << 20)
        .checkpoint_log_bytes(4 << 20);
    let (fopts, files) = faulty(opts.clone());
    let db = Db::open(dir.path(), fopts).unwrap();
    let t = db.create_tree("big").unwrap();
    let mut model: HashMap<u32, Vec<u8>> = HashMap::new();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let target = 10 * pool as u64 * scale();
    let mut bytes = 0u64;
    let mut key_space = 0u32;
    // Until the tree's pages (not the logical bytes: full leaves pack
    // ascending keys tighter than the values' sum suggests) are ten pools.
    while bytes < target || db.stats().allocated_pages * 4096 < target {
        // Mostly inserts of new keys, some overwrites and deletes.
        let batch: Vec<(u32, Option<Vec<u8>>)> = (0..64)
            .map(|_| {
                let roll = rng.gen_range(0..10);
                if roll < 7 || key_space == 0 {
                    key_space += 1;
                    (
                        key_space - 1,
                        Some(vec![rng.r#gen(); rng.gen_range(100..400)]),
                    )
                } else if roll < 9 {
                    (
                        rng.gen_range(0..key_space),
                        Some(vec![rng.r#gen(); rng.gen_range(10..400)]),
                    )
                } else {
                    (rng.gen_range(0..key_space), None)
                }
            })
            .collect();
        db.transaction(|tx| {
            for (k, v) in &batch {
                let key = format!("k{k:09}");
                match v {
                    Some(v) => tx.put(t, key.as_bytes(), v)?,
                    None => {
                        tx.delete(t, key.as_bytes())?;
                    }
                }
            }
            Ok(())
        })
        .unwrap();
        for (k, v) in batch {
            match v {
                Some(v) => {
                    bytes += v.len() as u64 + 10;
                    model.insert(k, v);
                }
                None => {
                    model.remove(&k);
                }
            }
        }
    }
    let live: u64 = model.values().map(|v| v.len() as u64).sum();
    let pages = db.stats().allocated_pages;
    assert!(
        pages * 4096 >= 10 * pool as u64,
        "only {pages} pages for a {pool}-byte pool"
    );
    eprintln!(
        "larger than memory: {} keys, {live} live value bytes, {pages} pages, pool {pool} bytes",
        model.len()
    );
    power_cut(&files);
    drop(db);
    let db = Db::open(dir.path(), opts.verify_on_open(VerifyOnOpen::Always)).unwrap();
    let mut n = 0;
    db.transaction(|tx| {
        n = 0;
        tx.scan(t, Bound::Unbounded, Bound::Unbounded, |k, v| {
            let k: u32 = std::str::from_utf8(&k[1..]).unwrap().parse().unwrap();
            assert_eq!(Some(v), model.get(&k).map(Vec::as_slice), "key {k}");
            n += 1;
            ControlFlow::Continue(())
        })
    })
    .unwrap();
    assert_eq!(n, model.len());
    db.close().unwrap();
}
