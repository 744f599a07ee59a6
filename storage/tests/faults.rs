//! Fault injection through the I/O trait: every file of the directory is
//! opened through `Options::with_file_opener` wrapped in a `FaultyFile`
//! that holds unsynced writes, so a "power cut" can drop them or tear them.
//! Each case ends in a correct recovery or a clear error.

mod common;
use common::{fail_log_syncs, faulty, power_cut};
use rime_storage::wal::segment;
use rime_storage::{Db, DbError, Lsn, OpenError, Options, TreeId, TxError, VerifyOnOpen, WalError};
use std::path::{Path, PathBuf};
use tempfile::TempDir;

fn base() -> Options {
    Options::default()
        .pool_bytes(2 << 20)
        .checkpoint_interval(None)
        .segment_size(256 << 10)
        .verify_on_open(VerifyOnOpen::Always)
}

fn key(i: u32) -> Vec<u8> {
    format!("key{i:08}").into_bytes()
}

fn fill(db: &Db, t: TreeId, range: std::ops::Range<u32>) {
    for i in range {
        db.transaction(|tx| {
            tx.put(t, &key(i), &[i as u8; 90])?;
            tx.add(t, b"n", 1)?;
            Ok(())
        })
        .unwrap();
    }
}

fn check_all(db: &Db, t: TreeId, n: u32) {
    for i in 0..n {
        assert_eq!(
            db.get(t, &key(i)).unwrap(),
            Some(vec![i as u8; 90]),
            "key {i}"
        );
    }
    assert_eq!(
        db.get(t, b"n").unwrap(),
        Some((n as i64).to_le_bytes().to_vec())
    );
}

#[test]
fn power_cut_drops_unsynced_writes_and_recovery_keeps_every_acknowledged_commit() {
    let dir = TempDir::new().unwrap();
    let (opts, files) = faulty(base());
    let db = Db::open(dir.path(), opts).unwrap();
    let t = db.create_tree("t").unwrap();
    fill(&db, t, 0..400);
    db.checkpoint().unwrap();
    fill(&db, t, 400..800);
    power_cut(&files);
    drop(db); // every I/O fails now; the drop must not panic
    let db = Db::open(dir.path(), base()).unwrap();
    assert!(db.stats().recovered_records > 0);
    check_all(&db, t, 800);
    db.close().unwrap();
}

#[test]
fn failed_log_sync_poisons_and_a_torn_tail_ends_the_log() {
    let dir = TempDir::new().unwrap();
    let (opts, files) = faulty(base());
    let db = Db::open(dir.path(), opts).unwrap();
    let t = db.create_tree("t").unwrap();
    fill(&db, t, 0..300);
    // The next log sync fails; the commit's block reaches the disk torn.
    fail_log_syncs(&files);
    let r = db.put(t, b"unacked", b"x");
    assert!(
        r.is_err(),
        "a commit whose log sync failed must not be acknowledged"
    );
    // Poisoned: later writes fail without touching the disk.
    assert!(matches!(
        db.put(t, b"later", b"y"),
        Err(TxError::Db(DbError::Poisoned(_)))
    ));
    for (p, f) in files.lock().unwrap().iter() {
        if p.parent().unwrap().ends_with("wal") {
            f.crash_keeping(0, 700);
        } else {
            f.crash();
        }
    }
    drop(db);
    let db = Db::open(dir.path(), base()).unwrap();
    check_all(&db, t, 300);
    // Not acknowledged, so it may be there or not (the torn write may
    // have kept its whole record) — but never in part: it is one key.
    let unacked = db.get(t, b"unacked").unwrap();
    assert!(unacked.is_none() || unacked == Some(b"x".to_vec()));
    assert_eq!(db.get(t, b"later").unwrap(), None);
    db.close().unwrap();
}

fn segment_holding(dir: &Path, lsn: Lsn) -> (PathBuf, u64) {
    let mut best = None;
    for e in std::fs::read_dir(dir.join("wal")).unwrap().flatten() {
        if let Some(start) = segment::parse_file_name(&e.file_name().to_string_lossy())
            && start <= lsn
            && best
                .as_ref()
                .is_none_or(|(_, s): &(PathBuf, Lsn)| *s < start)
        {
            best = Some((e.path(), start));
        }
    }
    let (p, s) = best.unwrap();
    (p, lsn.0 - s.0)
}

fn flip(path: &Path, offset: u64) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[offset as usize] ^= 0x5a;
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn a_flipped_bit_in_a_durable_log_record_is_an_error_not_silent_loss() {
    let dir = TempDir::new().unwrap();
    let (opts, files) = faulty(base());
    let db = Db::open(dir.path(), opts).unwrap();
    let t = db.create_tree("t").unwrap();
    db.checkpoint().unwrap();
    let start = db.end_lsn();
    fill(&db, t, 0..300);
    power_cut(&files);
    drop(db);
    // A record near the start of the replayed log, with many after it.
    let (seg, off) = segment_holding(dir.path(), Lsn(start.0 + 200));
    flip(&seg, off);
    match Db::open(dir.path(), base()) {
        Err(OpenError::Wal(WalError::Corrupt { lsn, .. })) => assert!(lsn.0 >= start.0),
        Err(e) => panic!("expected a log corruption error, got {e}"),
        Ok(_) => panic!("a corrupt durable log record went unnoticed"),
    }
}

#[test]
fn a_flipped_bit_in_a_page_is_an_error_naming_the_page() {
    let dir = TempDir::new().unwrap();
    let db = Db::open(dir.path(), base()).unwrap();
    let t = db.create_tree("t").unwrap();
    fill(&db, t, 0..20); // one root leaf
    db.close().unwrap();
    let pid = u64::from(t.0);
    flip(&dir.path().join("pages.db"), pid * 4096 + 2000);
    let err = match Db::open(dir.path(), base()) {
        Err(e) => e.to_string(),
        Ok(db) => db.get(t, &key(1)).map(|_| ()).unwrap_err().to_string(),
    };
    assert!(
        err.contains(&format!("page {pid}")),
        "error does not name page {pid}: {err}"
    );
}

#[test]
fn recovery_skips_writes_to_a_dropped_tree_whose_pages_were_reused() {
    let dir = TempDir::new().unwrap();
    let (opts, files) = faulty(base());
    let db = Db::open(dir.path(), opts).unwrap();
    db.checkpoint().unwrap();
    let a = db.create_tree("a").unwrap();
    fill(&db, a, 0..200);
    assert!(db.drop_tree("a").unwrap());
    let b = db.create_tree("b").unwrap();
    for i in 0..50u32 {
        db.put(b, &key(i), b"b").unwrap();
    }
    power_cut(&files);
    drop(db);
    let db = Db::open(dir.path(), base()).unwrap();
    assert_eq!(db.open_tree("a").unwrap(), None);
    assert_eq!(db.open_tree("b").unwrap(), Some(b));
    for i in 0..200u32 {
        let want = (i < 50).then(|| b"b".to_vec());
        assert_eq!(db.get(b, &key(i)).unwrap(), want, "key {i}");
    }
    db.verify().unwrap();
    db.close().unwrap();
}

/// Options whose file opener fails with EMFILE, while `flag` is set, for
/// files whose name starts with `prefix` (a process out of descriptors).
fn emfile_while(
    opts: Options,
    prefix: &'static str,
    flag: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> Options {
    opts.with_file_opener(std::sync::Arc::new(move |p: &Path| {
        let hit = p
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with(prefix));
        if hit && flag.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(rime_bufmgr::io::IoError::Os {
                op: rime_bufmgr::io::IoOp::Open,
                offset: 0,
                source: std::io::Error::from_raw_os_error(24), // EMFILE
            });
        }
        rime_bufmgr::io::open_block_file(p, rime_bufmgr::io::IoBackend::Auto)
    }))
}

/// Issue 12, bug 5: out of descriptors, a background checkpoint failed to
/// open its allocation-state file and poisoned the Db, and every write
/// failed after. Nothing was lost there: the file was new and nothing named
/// it yet. Now the checkpoint fails alone, the Db keeps working, and the
/// next checkpoint succeeds.
#[test]
fn a_checkpoint_that_cannot_open_its_allocation_file_fails_alone_without_poisoning() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let dir = TempDir::new().unwrap();
    let emfile = Arc::new(AtomicBool::new(false));
    let opts = emfile_while(base(), "alloc-", emfile.clone());
    let db = Db::open(dir.path(), opts).unwrap();
    let t = db.create_tree("t").unwrap();
    fill(&db, t, 0..200);
    emfile.store(true, Ordering::SeqCst);
    let err = db.checkpoint().unwrap_err();
    assert!(matches!(err, DbError::AllocFile(_)), "{err}");
    assert!(err.to_string().contains("alloc-"), "names the file: {err}");
    assert_eq!(db.poisoned(), None);
    fill(&db, t, 200..400);
    emfile.store(false, Ordering::SeqCst);
    db.checkpoint().unwrap();
    fill(&db, t, 400..500);
    db.close().unwrap();
    let db = Db::open(dir.path(), base()).unwrap();
    check_all(&db, t, 500);
}

/// Issue 12, bug 5, at the log: a commit that needed a new log segment
/// while the process was out of descriptors poisoned the Db. The next
/// segment is now prepared once the current one is half used, so a
/// rollover during a short outage finds it ready.
#[test]
fn a_log_rollover_while_files_cannot_be_opened_uses_the_segment_prepared_ahead() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    const SEGMENT: u64 = 64 << 10;
    let dir = TempDir::new().unwrap();
    let emfile = Arc::new(AtomicBool::new(false));
    let opts = emfile_while(base().segment_size(SEGMENT), "wal-", emfile.clone());
    let db = Db::open(dir.path(), opts).unwrap();
    let t = db.create_tree("t").unwrap();
    let start = db.end_lsn().0;
    let mut i = 0u32;
    let mut fill_to = |lsn: u64, db: &Db| {
        while db.end_lsn().0 < lsn {
            fill(db, t, i..i + 1);
            i += 1;
        }
        i
    };
    // Past half of the current segment: the next one gets prepared.
    let segment_start = start / SEGMENT * SEGMENT;
    fill_to(segment_start + SEGMENT * 6 / 10, &db);
    // Out of descriptors across the rollover.
    emfile.store(true, Ordering::SeqCst);
    fill_to(segment_start + SEGMENT * 13 / 10, &db);
    assert_eq!(db.poisoned(), None);
    emfile.store(false, Ordering::SeqCst);
    let n = fill_to(segment_start + SEGMENT * 3, &db);
    db.close().unwrap();
    let db = Db::open(dir.path(), base().segment_size(SEGMENT)).unwrap();
    check_all(&db, t, n);
}

/// A page file whose reads panic once armed: a stand-in for a bug below
/// the B-tree (a test double that exists only to inject that fault).
struct PanickingReads {
    inner: std::sync::Arc<dyn rime_bufmgr::io::BlockFile>,
    armed: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl rime_bufmgr::io::BlockFile for PanickingReads {
    fn read_batch(
        &self,
        reads: &mut [rime_bufmgr::io::ReadOp<'_>],
    ) -> Result<(), rime_bufmgr::io::IoError> {
        assert!(
            !self.armed.load(std::sync::atomic::Ordering::SeqCst),
            "injected panic below the tree"
        );
        self.inner.read_batch(reads)
    }
    fn write_batch(
        &self,
        writes: &[rime_bufmgr::io::WriteOp<'_>],
    ) -> Result<(), rime_bufmgr::io::IoError> {
        self.inner.write_batch(writes)
    }
    fn sync_data(&self) -> Result<(), rime_bufmgr::io::IoError> {
        self.inner.sync_data()
    }
    fn len_bytes(&self) -> Result<u64, rime_bufmgr::io::IoError> {
        self.inner.len_bytes()
    }
    fn set_len(&self, len: u64) -> Result<(), rime_bufmgr::io::IoError> {
        self.inner.set_len(len)
    }
}

/// Issue 15: a panic inside the commit path (here: a page read during the
/// apply of a blind write, after its record was logged) poisons the Db
/// instead of leaving log and trees disagreeing, and releases the commit's
/// locks, so other committers get `Poisoned` rather than hang.
#[test]
fn a_panic_in_the_commit_path_poisons_the_db_and_releases_its_locks() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let dir = TempDir::new().unwrap();
    let armed = Arc::new(AtomicBool::new(false));
    let seen = armed.clone();
    let opts = base()
        .durability(rime_storage::Durability::NoSync)
        .with_file_opener(Arc::new(move |p: &Path| {
            let inner = rime_bufmgr::io::open_block_file(p, rime_bufmgr::io::IoBackend::Plain)?;
            if p.parent().is_some_and(|d| d.ends_with("wal")) {
                return Ok(inner);
            }
            Ok(Arc::new(PanickingReads {
                inner,
                armed: seen.clone(),
            }) as Arc<dyn rime_bufmgr::io::BlockFile>)
        }));
    let db = Arc::new(Db::open(dir.path(), opts).unwrap());
    let t = db.create_tree("t").unwrap();
    // Many times the 2 MiB pool: most leaves are evicted.
    fill(&db, t, 0..40_000);
    armed.store(true, Ordering::SeqCst);
    // A blind write reads nothing before commit; its apply must load the
    // leaf, and that read panics.
    let mut panicked = None;
    for i in 0..40_000u32 {
        if let Err(e) = db.put(t, &key(i), b"after") {
            panicked = Some(e);
            break;
        }
    }
    let e = panicked.expect("no blind write needed an evicted leaf");
    assert!(
        matches!(&e, TxError::Db(DbError::Poisoned(why)) if why.contains("panic")),
        "{e}"
    );
    assert!(
        db.poisoned()
            .is_some_and(|why| why.contains("injected panic"))
    );
    // Its locks were released: another thread's commit fails, not hangs.
    let other = {
        let db = db.clone();
        std::thread::spawn(move || db.put(t, &key(7), b"x"))
    };
    assert!(matches!(
        other.join().unwrap(),
        Err(TxError::Db(DbError::Poisoned(_)))
    ));
    armed.store(false, Ordering::SeqCst);
}
