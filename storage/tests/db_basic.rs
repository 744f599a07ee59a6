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
    // Larger than a leaf holds inline: stored in an extent.
    db.put(t, b"big", &[5; 600]).unwrap();
    assert_eq!(db.get(t, b"big").unwrap(), Some(vec![5; 600]));
    db.close().unwrap();
}

#[test]
fn a_leaked_handle_keeps_the_directory_locked() {
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

#[test]
fn a_changed_read_and_a_phantom_in_a_scanned_range_force_a_rerun() {
    let dir = TempDir::new().unwrap();
    let db = Db::open(dir.path(), opts().durability(Durability::NoSync)).unwrap();
    let t = db.create_tree("t").unwrap();
    db.put(t, b"a", b"1").unwrap();
    db.put(t, b"other", b"0").unwrap();
    // A changed point read.
    let mut runs = 0;
    let seen = db
        .transaction(|tx| {
            runs += 1;
            let v = tx.get(t, b"a", <[u8]>::to_vec)?.unwrap();
            if runs == 1 {
                db.put(t, b"a", b"2").unwrap(); // a concurrent commit
            }
            tx.put(t, b"other", &v)?;
            Ok(v)
        })
        .unwrap();
    assert_eq!((runs, seen), (2, b"2".to_vec()));
    // A phantom: a key inserted into a scanned range.
    let mut runs = 0;
    let n = db
        .transaction(|tx| {
            runs += 1;
            let mut n = 0;
            tx.scan(t, Bound::Included(b"m"), Bound::Excluded(b"n"), |_, _| {
                n += 1;
                ControlFlow::Continue(())
            })?;
            if runs == 1 {
                db.put(t, b"mid", b"x").unwrap();
            }
            tx.put(t, b"count", &[n])?;
            Ok(n)
        })
        .unwrap();
    assert_eq!((runs, n), (2, 1));
    // A read-only transaction validates too.
    let mut runs = 0;
    db.transaction(|tx| {
        runs += 1;
        tx.get(t, b"a", |_| ())?;
        if runs == 1 {
            db.put(t, b"a", b"3").unwrap();
        }
        tx.get(t, b"other", |_| ())?;
        Ok(())
    })
    .unwrap();
    assert_eq!(runs, 2);
    // Always conflicting: a typed error after the bounded retries.
    let mut i = 0u8;
    let r = db.transaction(|tx| {
        tx.get(t, b"a", |_| ())?;
        i = i.wrapping_add(1);
        db.put(t, b"a", &[i]).unwrap();
        tx.put(t, b"b", b"x")
    });
    assert!(matches!(
        r,
        Err(TxError::Conflict {
            attempts: rime_storage::MAX_TX_ATTEMPTS
        })
    ));
    assert!(db.stats().conflicts >= 3);
    // The catalog is not a user tree.
    let catalog = rime_storage::TreeId(1);
    assert!(db.put(catalog, b"x", b"y").is_err());
    db.close().unwrap();
}

#[test]
fn checkpoints_truncate_the_log_and_drop_closes_cleanly() {
    let dir = TempDir::new().unwrap();
    let o = || opts().segment_size(64 << 10).durability(Durability::NoSync);
    let db = Db::open(dir.path(), o()).unwrap();
    let t = db.create_tree("t").unwrap();
    for round in 0..5u32 {
        for i in 0..400u32 {
            db.put(t, format!("k{i:05}").as_bytes(), &[round as u8; 200])
                .unwrap();
        }
        db.checkpoint().unwrap();
    }
    // Each round logs ~1.5 segments; what stays is the log since the
    // previous checkpoint (the older superblock slot's fallback), not all 5.
    let segments = std::fs::read_dir(dir.path().join("wal")).unwrap().count();
    assert!(
        segments <= 4,
        "{segments} log segments left behind the previous checkpoint"
    );
    assert!(db.stats().checkpoints >= 6);
    drop(db); // best-effort clean close: checkpoint
    let db = Db::open(dir.path(), o()).unwrap();
    assert_eq!(
        db.stats().recovered_records,
        0,
        "a dropped Db must not need replay"
    );
    assert_eq!(db.get(t, b"k00399").unwrap(), Some(vec![4; 200]));
    db.close().unwrap();
}

#[test]
fn a_creation_that_crashed_before_its_superblock_starts_over() {
    let dir = TempDir::new().unwrap();
    std::fs::write(dir.path().join("superblock"), []).unwrap();
    std::fs::create_dir_all(dir.path().join("wal")).unwrap();
    let db = Db::open(dir.path(), opts()).unwrap();
    let t = db.create_tree("t").unwrap();
    db.put(t, b"k", b"v").unwrap();
    db.close().unwrap();
    let db = Db::open(dir.path(), opts()).unwrap();
    assert_eq!(db.get(t, b"k").unwrap(), Some(b"v".to_vec()));
    db.close().unwrap();
}

/// The closure's own error type: an application aborts with an error it
/// can match on, commits nothing, and a conflict still converts into it.
#[test]
fn try_transaction_returns_the_closures_own_error_and_commits_nothing() {
    #[derive(Debug)]
    enum AppError {
        Insufficient { balance: i64 },
        Tx(TxError),
    }
    impl From<TxError> for AppError {
        fn from(e: TxError) -> Self {
            AppError::Tx(e)
        }
    }
    let dir = TempDir::new().unwrap();
    let db = Db::open(dir.path(), opts()).unwrap();
    let t = db.create_tree("t").unwrap();
    db.put(t, b"balance", &5i64.to_le_bytes()).unwrap();
    let r: Result<(), AppError> = db.try_transaction(|tx| {
        let balance = tx.add(t, b"balance", -10)?;
        tx.put(t, b"audit", b"withdrew 10")?;
        if balance < 0 {
            return Err(AppError::Insufficient { balance });
        }
        Ok(())
    });
    assert!(
        matches!(r, Err(AppError::Insufficient { balance: -5 })),
        "{r:?}"
    );
    assert_eq!(
        db.get(t, b"balance").unwrap(),
        Some(5i64.to_le_bytes().to_vec())
    );
    assert_eq!(db.get(t, b"audit").unwrap(), None);
    // A storage error arrives through `From<TxError>`.
    let r: Result<(), AppError> = db.try_transaction(|tx| Ok(tx.put(t, &[0u8; 4096], b"x")?));
    assert!(
        matches!(r, Err(AppError::Tx(TxError::KeyTooLarge { .. }))),
        "{r:?}"
    );
    db.close().unwrap();
}

/// A thread's transactions cache the trees they use (issue 16: no lock or
/// reference count per read). Dropping a tree and creating another, which
/// may get the same id (its root page is reused), must not let a cached
/// handle of the old tree answer for the new one.
#[test]
fn a_tree_recreated_under_a_reused_id_is_read_fresh_not_from_a_stale_cache() {
    let dir = tempfile::TempDir::new().unwrap();
    let db = rime_storage::Db::open(
        dir.path(),
        rime_storage::Options::default()
            .durability(rime_storage::Durability::NoSync)
            .pool_bytes(4 << 20),
    )
    .unwrap();
    let mut reused = false;
    for round in 0..20u8 {
        let t = db.create_tree("t").unwrap();
        // Warm this thread's cache with the tree, then check it sees only
        // this round's value.
        db.put(t, b"k", &[round]).unwrap();
        assert_eq!(db.get(t, b"k").unwrap(), Some(vec![round]), "round {round}");
        assert!(db.drop_tree("t").unwrap());
        assert!(db.get(t, b"k").is_err(), "a dropped tree answered a read");
        let again = db.create_tree("t").unwrap();
        reused |= again == t;
        assert_eq!(
            db.get(again, b"k").unwrap(),
            None,
            "round {round}: stale tree"
        );
        assert!(db.drop_tree("t").unwrap());
    }
    assert!(
        reused,
        "no tree id was reused: the test did not test the cache"
    );
}

/// Regression: in `NoSync` mode a commit made while another committer was
/// inside the commit path queued a durability wait with the log's flusher
/// anyway (the queueing checked "not `Group`" rather than "`Sync`"), so
/// two threads committing kept the flusher writing and syncing the log,
/// and a commit that found it idle paid a futex wake. `NoSync` commits
/// never wait for durability, so they must never make the log sync.
#[test]
fn nosync_commits_from_concurrent_threads_never_sync_the_log() {
    let dir = TempDir::new().unwrap();
    let db = Db::open(dir.path(), opts().durability(Durability::NoSync)).unwrap();
    let t = db.create_tree("t").unwrap();
    let before = db.stats();
    std::thread::scope(|s| {
        for thread in 0..2u32 {
            let db = &db;
            s.spawn(move || {
                for i in 0..3000u32 {
                    let key = format!("{thread}-{}", i % 100);
                    db.transaction(|tx| {
                        tx.put(t, key.as_bytes(), &i.to_le_bytes())?;
                        tx.add(t, format!("n{thread}").as_bytes(), 1)
                    })
                    .unwrap();
                }
            });
        }
    });
    let after = db.stats();
    assert_eq!(after.commits - before.commits, 6000);
    assert_eq!(
        after.log_syncs, before.log_syncs,
        "NoSync commits synced the log"
    );
}

/// A key written several times in one transaction commits its last write
/// only, in the order of its first write; a scan inside the transaction
/// sees those last writes (the `superseded` flag the write set keeps).
#[test]
fn a_key_written_several_times_in_one_transaction_commits_its_last_write() {
    let dir = TempDir::new().unwrap();
    let db = Db::open(dir.path(), opts().durability(Durability::NoSync)).unwrap();
    let t = db.create_tree("t").unwrap();
    db.put(t, b"b", b"old").unwrap();
    db.transaction(|tx| {
        tx.put(t, b"a", b"1")?;
        tx.put(t, b"b", b"2")?;
        tx.put(t, b"a", b"3")?;
        assert!(tx.delete(t, b"b")?, "b is this transaction's write");
        tx.put(t, b"c", b"4")?;
        tx.put(t, b"a", b"5")?;
        let mut seen = Vec::new();
        tx.scan(t, Bound::Unbounded, Bound::Unbounded, |k, v| {
            seen.push((k.to_vec(), v.to_vec()));
            ControlFlow::Continue(())
        })?;
        assert_eq!(
            seen,
            [
                (b"a".to_vec(), b"5".to_vec()),
                (b"c".to_vec(), b"4".to_vec())
            ]
        );
        Ok(())
    })
    .unwrap();
    assert_eq!(db.get(t, b"a").unwrap(), Some(b"5".to_vec()));
    assert_eq!(db.get(t, b"b").unwrap(), None);
    assert_eq!(db.get(t, b"c").unwrap(), Some(b"4".to_vec()));
    db.close().unwrap();
    let db = Db::open(dir.path(), opts()).unwrap();
    assert_eq!(db.get(t, b"a").unwrap(), Some(b"5".to_vec()));
    assert_eq!(db.get(t, b"b").unwrap(), None);
}

/// A commit racing the drop of a tree it writes either lands before the
/// drop (and goes with the tree) or fails with `NoSuchTree`; it never
/// writes into the dropped tree's freed pages. The commit resolves its
/// trees from the transaction's tree cache and checks the catalog's
/// generation under its locks.
#[test]
fn a_commit_racing_the_drop_of_its_tree_lands_before_it_or_fails() {
    use std::sync::atomic::{AtomicU64, Ordering};
    let dir = TempDir::new().unwrap();
    let db = Db::open(dir.path(), opts().durability(Durability::NoSync)).unwrap();
    let keep = db.create_tree("keep").unwrap();
    let doomed = db.create_tree("doomed").unwrap();
    let done = AtomicU64::new(0);
    let committed = std::thread::scope(|s| {
        let writer = s.spawn(|| {
            // On until 100 commits have failed after the drop (a release
            // build can make thousands while the drop is under way).
            let (mut committed, mut failed) = (Vec::new(), 0);
            for i in 0..1_000_000u32 {
                let key = i.to_be_bytes();
                let r = db.transaction(|tx| {
                    tx.put(doomed, &key, &[7; 300])?;
                    tx.put(keep, &key, &[1; 10])
                });
                match r {
                    Ok(()) => committed.push(i),
                    Err(TxError::Db(DbError::NoSuchTree(id))) => {
                        assert_eq!(id, doomed);
                        failed += 1;
                    }
                    Err(e) => panic!("commit {i}: {e}"),
                }
                done.store(u64::from(i), Ordering::Relaxed);
                if failed == 100 {
                    break;
                }
            }
            assert_eq!(failed, 100, "the drop never reached the writer");
            committed
        });
        while done.load(Ordering::Relaxed) < 500 {
            std::thread::yield_now();
        }
        assert!(db.drop_tree("doomed").unwrap());
        writer.join().unwrap()
    });
    assert!(committed.len() >= 500, "{}", committed.len());
    assert!(
        committed.windows(2).all(|w| w[1] == w[0] + 1),
        "no commit lands after one failed"
    );
    db.verify().unwrap();
    let after = db.transaction(|tx| {
        let mut n = 0;
        tx.scan(keep, Bound::Unbounded, Bound::Unbounded, |_, _| {
            n += 1;
            ControlFlow::Continue(())
        })?;
        Ok(n)
    });
    assert_eq!(after.unwrap(), committed.len());
    db.close().unwrap();
    let db = Db::open(dir.path(), opts()).unwrap();
    db.verify().unwrap();
    assert_eq!(db.open_tree("doomed").unwrap(), None);
}

/// `NoSync` commits are written behind: once a megabyte of log is pending,
/// the flusher writes and syncs it in the background, so the committers do
/// not each meet the 8 MiB buffer bound and write it themselves (the
/// `NoSync` fix above had left them only that).
#[test]
fn nosync_log_is_written_behind_once_a_megabyte_is_pending() {
    let dir = TempDir::new().unwrap();
    let db = Db::open(dir.path(), opts().durability(Durability::NoSync)).unwrap();
    let t = db.create_tree("t").unwrap();
    let before = db.stats();
    // 3 MiB of commits: past the write-behind mark, under the buffer bound.
    for i in 0..48u32 {
        db.put(t, &i.to_be_bytes(), &[i as u8; 64 << 10]).unwrap();
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while db.stats().log_syncs == before.log_syncs {
        assert!(
            std::time::Instant::now() < deadline,
            "nothing was written behind"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let after = db.stats();
    assert!(
        after.durable_lsn >= before.durable_lsn + (1 << 20),
        "{before:?} {after:?}"
    );
}

/// A transaction whose read's tree is dropped before it commits does not
/// commit: its validation fails (the tree is gone, whatever this thread's
/// tree cache still holds), and the rerun gets `NoSuchTree`.
#[test]
fn a_read_of_a_tree_dropped_before_the_commit_fails_validation() {
    let dir = TempDir::new().unwrap();
    let db = Db::open(dir.path(), opts()).unwrap();
    let keep = db.create_tree("keep").unwrap();
    let doomed = db.create_tree("doomed").unwrap();
    db.put(doomed, b"k", b"v").unwrap();
    let mut attempts = 0;
    let r = db.transaction(|tx| {
        attempts += 1;
        let v = tx.get(doomed, b"k", |v| v.to_vec())?;
        if attempts == 1 {
            assert!(db.drop_tree("doomed").unwrap());
        }
        tx.put(keep, b"copy", &v.unwrap_or_default())
    });
    assert!(
        matches!(r, Err(TxError::Db(DbError::NoSuchTree(id))) if id == doomed),
        "{r:?} after {attempts} attempts"
    );
    assert_eq!(attempts, 2);
    assert_eq!(db.get(keep, b"copy").unwrap(), None);
}
