//! `Db::transaction_pending`: commits whose durability a caller awaits
//! without a thread each — by a callback, as a `Future`, or blocking — and
//! what a failed sync does to every one of them.

mod common;
use common::{fail_log_syncs, faulty, power_cut};
use rime_storage::{Db, DbError, Durability, Options, Pending, TxError, VerifyOnOpen};
use std::future::Future;
use std::pin::Pin;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use tempfile::TempDir;

fn opts() -> Options {
    Options::default()
        .pool_bytes(4 << 20)
        .checkpoint_interval(None)
        .durability(Durability::Sync)
        .segment_size(1 << 20)
        .verify_on_open(VerifyOnOpen::Always)
}

/// A waker that counts its wake-ups (a test executor's whole job here).
#[derive(Default)]
struct Count(Mutex<u32>);

impl Wake for Count {
    fn wake(self: Arc<Self>) {
        *self.0.lock().unwrap() += 1;
    }
}

fn put_pending(db: &Db, t: rime_storage::TreeId, i: u32) -> Pending<u32> {
    db.transaction_pending(|tx| {
        tx.put(t, &i.to_be_bytes(), &[i as u8; 64])?;
        Ok::<_, TxError>(i)
    })
    .unwrap()
}

#[test]
fn one_thread_keeps_many_commits_waiting_and_each_completes_durable() {
    let dir = TempDir::new().unwrap();
    let db = Db::open(dir.path(), opts()).unwrap();
    let t = db.create_tree("t").unwrap();
    let before = db.stats();
    let (tx, rx) = mpsc::channel();
    for i in 0..500u32 {
        let p = put_pending(&db, t, i);
        let tx = tx.clone();
        p.on_durable(move |r| tx.send(r).unwrap());
    }
    let mut got: Vec<u32> = (0..500).map(|_| rx.recv().unwrap().unwrap()).collect();
    got.sort_unstable();
    assert_eq!(got, (0..500).collect::<Vec<_>>());
    let after = db.stats();
    let syncs = after.log_syncs - before.log_syncs;
    assert!(
        syncs < 500,
        "500 commits in flight from one thread took {syncs} syncs: none was shared"
    );
    assert!(syncs > 0, "500 durable commits and no log sync");
    // A write + fdatasync takes time; the stats say how much.
    let sync_ns = after.log_sync_ns - before.log_sync_ns;
    assert!(
        sync_ns >= syncs,
        "{syncs} log syncs timed at {sync_ns} ns in all"
    );
    drop(db);
    let db = Db::open(dir.path(), opts()).unwrap();
    for i in 0..500u32 {
        assert!(
            db.get(t, &i.to_be_bytes()).unwrap().is_some(),
            "key {i} lost"
        );
    }
}

#[test]
fn a_pending_commit_is_a_future_that_wakes_its_task() {
    let dir = TempDir::new().unwrap();
    let db = Db::open(dir.path(), opts()).unwrap();
    let t = db.create_tree("t").unwrap();
    let count = Arc::new(Count::default());
    let waker = Waker::from(count.clone());
    let mut cx = Context::from_waker(&waker);
    let mut pending: Vec<Pending<u32>> = (0..64).map(|i| put_pending(&db, t, i)).collect();
    let mut done = vec![None; pending.len()];
    let mut waited = false;
    while done.iter().any(Option::is_none) {
        for (i, p) in pending.iter_mut().enumerate() {
            if done[i].is_some() {
                continue;
            }
            match Pin::new(p).poll(&mut cx) {
                Poll::Ready(r) => done[i] = Some(r.unwrap()),
                Poll::Pending => waited = true,
            }
        }
        std::thread::yield_now();
    }
    assert_eq!(done, (0..64).map(Some).collect::<Vec<_>>());
    assert!(waited, "64 commits were all durable at their first poll");
    assert!(*count.0.lock().unwrap() > 0, "no task was woken by a sync");
    let durable = db.stats().durable_lsn;
    assert!(
        pending
            .iter()
            .all(|p| p.lsn().is_none_or(|l| l.0 < durable))
    );
    let again = Pin::new(&mut pending[0]).poll(&mut cx);
    assert!(
        matches!(again, Poll::Ready(Err(TxError::Aborted(_)))),
        "polling a finished Pending again is an error, not a panic"
    );
}

#[test]
fn a_failed_log_sync_reaches_every_pending_commit_and_none_succeeds() {
    let dir = TempDir::new().unwrap();
    let (o, files) = faulty(opts());
    let db = Db::open(dir.path(), o).unwrap();
    let t = db.create_tree("t").unwrap();
    fail_log_syncs(&files);
    let (tx, rx) = mpsc::channel();
    let mut registered = 0;
    for i in 0..50u32 {
        // Once the log is poisoned, commits fail before logging anything.
        let Ok(p) = db.transaction_pending(|tx| {
            tx.put(t, &i.to_be_bytes(), b"v")?;
            Ok::<_, TxError>(i)
        }) else {
            continue;
        };
        let tx = tx.clone();
        p.on_durable(move |r| tx.send(r).unwrap());
        registered += 1;
    }
    assert!(registered > 0);
    for _ in 0..registered {
        let r = rx.recv().unwrap();
        assert!(
            r.is_err(),
            "a commit whose sync failed was acknowledged: {r:?}"
        );
    }
    assert!(matches!(
        db.put(t, b"later", b"x"),
        Err(TxError::Db(DbError::Poisoned(_)))
    ));
    power_cut(&files);
}
