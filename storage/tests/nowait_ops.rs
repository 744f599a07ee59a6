//! Scans, `get_many` and commits of a non-waiting transaction
//! (`OwnedTx::tx_nowait`, `commit_misses`) on a pool far smaller than the
//! data: each stops at a page not in memory having recorded nothing, the
//! caller loads the page with its `Reads` and runs it again, and a commit
//! made once `commit_misses` is empty reads no page itself. Checked
//! against a `BTreeMap` model.

use rime_storage::{Committed, Db, Miss, OwnedTx, Reads, TreeId, TxError};
use std::collections::{BTreeMap, HashSet};
use std::ops::{Bound, ControlFlow};
use tempfile::TempDir;

mod small_pool;
use small_pool::{opts, value};

const KEYS: u32 = 30_000;

fn filled() -> (TempDir, Db, TreeId, BTreeMap<Vec<u8>, Vec<u8>>) {
    let dir = TempDir::new().unwrap();
    let db = Db::open(dir.path(), opts()).unwrap();
    let t = db.create_tree("t").unwrap();
    let mut model = BTreeMap::new();
    for chunk in (0..KEYS).collect::<Vec<_>>().chunks(1000) {
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
    (dir, db, t, model)
}

/// Requests `miss` and the transaction's read-ahead, and polls until
/// `miss`'s page arrived.
fn load(reads: &mut Reads, txn: &OwnedTx, miss: Miss) {
    reads.request(miss);
    txn.read_ahead().iter().for_each(|&m| reads.request(m));
    let mut arrived = HashSet::new();
    while !arrived.contains(&miss.page()) {
        reads.poll(true, |page, r| {
            r.unwrap();
            arrived.insert(page);
        });
    }
}

fn xorshift(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

#[test]
fn a_nowait_scan_waits_for_its_leaves_recording_nothing_then_agrees_with_the_model() {
    let (_dir, db, t, model) = filled();
    let mut reads = db.reads();
    let (mut waited, mut x) = (0u32, 0x2545_f491u64);
    for _ in 0..100 {
        let lo = ((xorshift(&mut x) % u64::from(KEYS)) as u32).to_be_bytes();
        let n = 1 + (xorshift(&mut x) % 300) as usize;
        let mut txn = db.begin();
        let mut got = Vec::new();
        loop {
            got.clear();
            let r = txn
                .tx_nowait()
                .scan(t, Bound::Included(&lo), Bound::Unbounded, |k, v| {
                    got.push((k.to_vec(), v.to_vec()));
                    if got.len() == n {
                        ControlFlow::Break(())
                    } else {
                        ControlFlow::Continue(())
                    }
                });
            match r {
                Err(TxError::WouldWait(miss)) => {
                    waited += 1;
                    // Nothing recorded: the commit would validate nothing.
                    assert!(!txn.commit_latches_pages(), "a stopped scan recorded");
                    load(&mut reads, &txn, miss);
                }
                other => break other.unwrap(),
            }
        }
        let want: Vec<_> = model
            .range::<[u8], _>((Bound::Included(&lo[..]), Bound::Unbounded))
            .take(n)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        assert_eq!(got, want, "scan from {lo:?}, {n} entries");
        // Recorded once, when it finished: validated at commit.
        assert!(txn.commit_latches_pages());
        assert!(matches!(txn.commit().unwrap(), Committed::Durable(_)));
    }
    assert!(waited > 20, "the scans should have missed often: {waited}");
    reads.drain(|_, r| r.unwrap());
    db.verify().unwrap();
}

#[test]
fn a_nowait_get_many_reports_every_miss_recording_nothing_then_agrees_with_the_model() {
    let (_dir, db, t, model) = filled();
    let mut reads = db.reads();
    let (mut waited, mut most_misses, mut x) = (0u32, 0usize, 0x9e37_79b9u64);
    for _ in 0..100 {
        let keys: Vec<[u8; 4]> = (0..32)
            .map(|_| ((xorshift(&mut x) % u64::from(KEYS + 1000)) as u32).to_be_bytes())
            .collect();
        let mut txn = db.begin();
        let mut got = vec![None; keys.len()];
        loop {
            let r = txn
                .tx_nowait()
                .get_many(t, &keys, |i, v| got[i] = Some(v.map(<[u8]>::to_vec)));
            match r {
                Err(TxError::WouldWait(miss)) => {
                    waited += 1;
                    most_misses = most_misses.max(1 + txn.read_ahead().len());
                    assert!(!txn.commit_latches_pages(), "a stopped get_many recorded");
                    load(&mut reads, &txn, miss);
                }
                other => break other.unwrap(),
            }
        }
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(
                got[i].as_ref(),
                Some(&model.get(&k[..]).cloned()),
                "key {k:?}"
            );
        }
        assert!(matches!(txn.commit().unwrap(), Committed::Durable(_)));
    }
    assert!(
        waited > 20,
        "the lookups should have missed often: {waited}"
    );
    assert!(
        most_misses > 4,
        "every miss of a call is reported: {most_misses}"
    );
    reads.drain(|_, r| r.unwrap());
}

#[test]
fn a_commit_after_empty_commit_misses_reads_no_page_itself() {
    let (_dir, db, t, mut model) = filled();
    let mut reads = db.reads();
    let (mut loaded, mut in_flight_at_commit, mut x) = (0usize, 0u32, 0x5eed_0314u64);
    let mut commits_that_read = 0u32;
    let mut misses = Vec::new();
    for round in 0..200u32 {
        let mut txn = db.begin();
        // Writes (and deletes) of keys spread over the whole tree, and a
        // read that the commit validates.
        let keys: Vec<u32> = (0..8)
            .map(|_| (xorshift(&mut x) % u64::from(KEYS + 1000)) as u32)
            .collect();
        loop {
            let mut tx = txn.tx_nowait();
            let r = keys.iter().try_for_each(|&n| {
                let k = n.to_be_bytes();
                if n % 3 == 0 {
                    tx.delete(t, &k).map(drop)
                } else {
                    tx.put(t, &k, &value(n ^ round))
                }
            });
            match r {
                Err(TxError::WouldWait(miss)) => {
                    txn.restart();
                    load(&mut reads, &txn, miss);
                }
                other => break other.unwrap(),
            }
        }
        // Load what the commit latches, with a read of another page in
        // flight (the executor's situation), then commit in the same step.
        loop {
            txn.commit_misses(&mut misses).unwrap();
            if misses.is_empty() {
                break;
            }
            loaded += misses.len();
            for &m in &misses {
                reads.request(m);
            }
            let mut arrived = HashSet::new();
            while misses.iter().any(|m| !arrived.contains(&m.page())) {
                reads.poll(true, |page, r| {
                    r.unwrap();
                    arrived.insert(page);
                });
            }
        }
        // A read of this thread in flight, not polled: were the commit to
        // need its page, it would wait forever.
        let other = ((xorshift(&mut x) % u64::from(KEYS)) as u32).to_be_bytes();
        if let Err(TxError::WouldWait(m)) = db.begin().tx_nowait().get(t, &other, |_| ()) {
            reads.request(m);
            in_flight_at_commit += 1;
        }
        // The commit must not wait for the read in flight (it would hang
        // here). It may still read a page of its own path: its splits and
        // extents take frames, and the clock can evict a path page loaded
        // above (which victims it picks depends on the loader's
        // write-backs still in flight): a plain blocking miss, rare.
        let before = db.stats().pool.misses;
        assert!(matches!(txn.commit().unwrap(), Committed::Durable(_)));
        if db.stats().pool.misses != before {
            commits_that_read += 1;
        }
        for &n in &keys {
            let k = n.to_be_bytes().to_vec();
            if n % 3 == 0 {
                model.remove(&k);
            } else {
                model.insert(k, value(n ^ round));
            }
        }
    }
    assert!(
        loaded > 100,
        "the commits should have needed pages: {loaded}"
    );
    assert!(
        in_flight_at_commit > 50,
        "{in_flight_at_commit} commits with a read in flight"
    );
    assert!(
        commits_that_read <= 10,
        "{commits_that_read} of 200 commits read a page after an empty commit_misses"
    );
    reads.drain(|_, r| r.unwrap());
    db.verify().unwrap();
    let all: BTreeMap<Vec<u8>, Vec<u8>> = db
        .transaction(|tx| {
            let mut all = BTreeMap::new();
            tx.scan(t, Bound::Unbounded, Bound::Unbounded, |k, v| {
                all.insert(k.to_vec(), v.to_vec());
                ControlFlow::Continue(())
            })?;
            Ok(all)
        })
        .unwrap();
    assert_eq!(all, model);
}
