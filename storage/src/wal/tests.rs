//! WAL tests on real files in temporary directories, with real `O_DIRECT`.
//! Fault-injection tests wrap each segment in a `FaultyFile`.

use super::record::{LoggedRecord, OwnedRecord};
use super::*;
use crate::error::WalError;
use rime_bufmgr::io::{FaultPlan, FaultyFile, IoError, IoOp, ReadOp, WriteOp};
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use tempfile::TempDir;

const SMALL_SEGMENT: u64 = 16 * 1024;

fn real_opts(segment_size: u64, durability: Durability) -> WalOptions {
    WalOptions::new(durability).with_segment_size(segment_size)
}

/// Every segment file the log opens, wrapped for fault injection. After
/// `crash_all`, opening fails too: a dead process opens nothing.
type OpenedFiles = Arc<Mutex<Vec<(PathBuf, Arc<FaultyFile>)>>>;

#[derive(Clone, Default)]
struct Faults {
    files: OpenedFiles,
    crashed: Arc<AtomicBool>,
}

use std::path::PathBuf;

impl Faults {
    fn opts(&self, segment_size: u64, durability: Durability, plan: FaultPlan) -> WalOptions {
        let me = self.clone();
        real_opts(segment_size, durability).with_opener(Arc::new(move |p: &Path| {
            if me.crashed.load(Ordering::SeqCst) {
                return Err(IoError::Injected {
                    op: IoOp::Open,
                    offset: 0,
                });
            }
            let inner = open_block_file(p, IoBackend::Auto)?;
            let f = Arc::new(FaultyFile::new(inner, plan.clone()));
            me.files.lock().unwrap().push((p.to_path_buf(), f.clone()));
            Ok(f)
        }))
    }

    /// The fault double of the newest segment (by LSN order of names).
    fn newest(&self) -> Arc<FaultyFile> {
        let files = self.files.lock().unwrap();
        files
            .iter()
            .max_by_key(|(p, _)| p.file_name().map(|n| n.to_os_string()))
            .unwrap()
            .1
            .clone()
    }

    fn crash_all(&self) {
        self.crashed.store(true, Ordering::SeqCst);
        for (_, f) in self.files.lock().unwrap().iter() {
            f.crash();
        }
    }
}

fn smo_payload(thread: u32, seq: u32, len: usize) -> Vec<u8> {
    let mut p = Vec::with_capacity(len.max(8));
    p.extend_from_slice(&thread.to_le_bytes());
    p.extend_from_slice(&seq.to_le_bytes());
    p.extend((0..len.saturating_sub(8)).map(|i| (i as u32 ^ seq ^ thread) as u8));
    p
}

fn smo_of(rec: &LoggedRecord) -> (u32, u32) {
    match &rec.record {
        OwnedRecord::Smo(p) => (
            u32::from_le_bytes(p[..4].try_into().unwrap()),
            u32::from_le_bytes(p[4..8].try_into().unwrap()),
        ),
        other => panic!("unexpected record {other:?}"),
    }
}

/// Reads the whole log with real files; panics on corruption.
fn recover(dir: &Path) -> (Vec<LoggedRecord>, LogEnd) {
    let opts = real_opts(SMALL_SEGMENT, Durability::Sync);
    let mut reader = WalReader::open(dir, FIRST_LSN, &opts).unwrap();
    let recs: Vec<LoggedRecord> = reader.by_ref().map(|r| r.unwrap()).collect();
    let end = reader.end().unwrap().clone();
    (recs, end)
}

/// Reads until the first error and returns it with the records before it.
fn recover_err(dir: &Path) -> (Vec<LoggedRecord>, WalError) {
    let opts = real_opts(SMALL_SEGMENT, Durability::Sync);
    let mut recs = Vec::new();
    for r in WalReader::open(dir, FIRST_LSN, &opts).unwrap() {
        match r {
            Ok(rec) => recs.push(rec),
            Err(e) => return (recs, e),
        }
    }
    panic!("log read without error: {} records", recs.len());
}

/// Byte position of `lsn` in the segment files: (path, offset).
fn locate(dir: &Path, lsn: u64) -> (PathBuf, u64) {
    let seg = segment::list(dir)
        .unwrap()
        .into_iter()
        .find(|s| s.start.0 <= lsn && lsn < s.end().0)
        .unwrap();
    (seg.path, lsn - seg.start.0)
}

fn patch(dir: &Path, lsn: u64, f: impl FnOnce(&mut u8)) {
    let (path, off) = locate(dir, lsn);
    let mut bytes = std::fs::read(&path).unwrap();
    f(&mut bytes[off as usize]);
    std::fs::write(&path, bytes).unwrap();
}

fn commit_smos(wal: &Wal, n: u32, len: usize) -> Vec<Lsn> {
    (0..n)
        .map(|i| wal.commit(&Record::Smo(&smo_payload(0, i, len))).unwrap())
        .collect()
}

#[test]
fn every_kind_round_trips_through_the_log() {
    let dir = TempDir::new().unwrap();
    let wal = Wal::create(dir.path(), real_opts(SMALL_SEGMENT, Durability::Sync)).unwrap();
    let writes = [
        Write {
            tree: TreeId(3),
            key: b"k1",
            value: Some(b"v1"),
        },
        Write {
            tree: TreeId(3),
            key: b"k2",
            value: None,
        },
    ];
    let big = vec![7u8; 10_000]; // spans blocks
    let recs = [
        Record::CheckpointBegin { redo_lsn: Lsn(0) },
        Record::Commit(&writes),
        Record::Smo(&big),
        Record::CheckpointEnd { redo_lsn: Lsn(0) },
    ];
    let lsns: Vec<Lsn> = recs.iter().map(|r| wal.commit(r).unwrap()).collect();
    assert!(wal.durable_lsn() > *lsns.last().unwrap());
    wal.close().unwrap();

    let (got, end) = recover(dir.path());
    assert_eq!(got.iter().map(|r| r.lsn).collect::<Vec<_>>(), lsns);
    for (g, r) in got.iter().zip(&recs) {
        assert_eq!(g.record, r.to_owned_record());
    }
    assert_eq!(end.lsn(), got.last().unwrap().end_lsn());
    assert_eq!(end.kind(), &EndKind::Clean);
}

#[test]
fn records_spanning_blocks_and_segments_survive_rollover() {
    let dir = TempDir::new().unwrap();
    let wal = Wal::create(dir.path(), real_opts(SMALL_SEGMENT, Durability::Sync)).unwrap();
    // 3000-byte records: boundaries fall everywhere relative to blocks and
    // 16 KiB segments, and some records straddle two segments.
    let lsns = commit_smos(&wal, 60, 3000);
    let segments = wal.segment_paths().len();
    assert!(segments >= 11, "{segments} segments");
    wal.close().unwrap();

    let (got, end) = recover(dir.path());
    assert_eq!(got.iter().map(|r| r.lsn).collect::<Vec<_>>(), lsns);
    for (i, r) in got.iter().enumerate() {
        assert_eq!(r.record, OwnedRecord::Smo(smo_payload(0, i as u32, 3000)));
    }
    assert_eq!(end.kind(), &EndKind::Clean);
}

#[test]
fn reopened_log_continues_at_the_end_lsn() {
    let dir = TempDir::new().unwrap();
    let opts = real_opts(SMALL_SEGMENT, Durability::Sync);
    let wal = Wal::create(dir.path(), opts.clone()).unwrap();
    let mut lsns = commit_smos(&wal, 10, 500);
    drop(wal);
    for round in 1..3u32 {
        let end = WalReader::open(dir.path(), FIRST_LSN, &opts)
            .unwrap()
            .into_end()
            .unwrap();
        let wal = Wal::open(dir.path(), opts.clone(), end.clone()).unwrap();
        assert_eq!(wal.end_lsn(), end.lsn());
        for i in 0..10 {
            lsns.push(
                wal.commit(&Record::Smo(&smo_payload(round, i, 500)))
                    .unwrap(),
            );
        }
    }
    let (got, _) = recover(dir.path());
    assert_eq!(got.iter().map(|r| r.lsn).collect::<Vec<_>>(), lsns);
}

#[test]
fn reopen_at_an_exact_segment_boundary_starts_a_new_segment() {
    let dir = TempDir::new().unwrap();
    let opts = real_opts(SMALL_SEGMENT, Durability::Sync);
    let wal = Wal::create(dir.path(), opts.clone()).unwrap();
    // One record that fills the first segment exactly.
    let payload = vec![1u8; SMALL_SEGMENT as usize - record::HEADER_SIZE];
    wal.commit(&Record::Smo(&payload)).unwrap();
    drop(wal);
    let end = WalReader::open(dir.path(), FIRST_LSN, &opts)
        .unwrap()
        .into_end()
        .unwrap();
    assert_eq!(end.lsn(), Lsn(SMALL_SEGMENT));
    let wal = Wal::open(dir.path(), opts, end).unwrap();
    let lsn = wal.commit(&Record::Smo(b"next")).unwrap();
    assert_eq!(lsn, Lsn(SMALL_SEGMENT));
    drop(wal);
    assert_eq!(recover(dir.path()).0.len(), 2);
}

/// Counts syncs, to show that concurrent committers share them.
struct CountingFile {
    inner: Arc<dyn BlockFile>,
    syncs: Arc<AtomicU64>,
}

impl BlockFile for CountingFile {
    fn read_batch(&self, reads: &mut [ReadOp<'_>]) -> Result<(), IoError> {
        self.inner.read_batch(reads)
    }
    fn write_batch(&self, writes: &[WriteOp<'_>]) -> Result<(), IoError> {
        self.inner.write_batch(writes)
    }
    fn sync_data(&self) -> Result<(), IoError> {
        self.syncs.fetch_add(1, Ordering::Relaxed);
        self.inner.sync_data()
    }
    fn len_bytes(&self) -> Result<u64, IoError> {
        self.inner.len_bytes()
    }
    fn set_len(&self, len: u64) -> Result<(), IoError> {
        self.inner.set_len(len)
    }
}

fn syncs_for(durability: Durability, threads: u32, per_thread: u32) -> u64 {
    let dir = TempDir::new().unwrap();
    let syncs = Arc::new(AtomicU64::new(0));
    let counter = syncs.clone();
    let opts = real_opts(1 << 20, durability).with_opener(Arc::new(move |p: &Path| {
        Ok(Arc::new(CountingFile {
            inner: open_block_file(p, IoBackend::Auto)?,
            syncs: counter.clone(),
        }) as Arc<dyn BlockFile>)
    }));
    let wal = Wal::create(dir.path(), opts).unwrap();
    let before = syncs.load(Ordering::Relaxed); // preallocation
    std::thread::scope(|s| {
        for t in 0..threads {
            let wal = &wal;
            s.spawn(move || {
                for i in 0..per_thread {
                    let lsn = wal.commit(&Record::Smo(&smo_payload(t, i, 100))).unwrap();
                    assert!(wal.durable_lsn() > lsn);
                }
            });
        }
    });
    syncs.load(Ordering::Relaxed) - before
}

#[test]
fn concurrent_committers_share_syncs() {
    let commits = 8 * 50;
    let sync = syncs_for(Durability::Sync, 8, 50);
    assert!(
        sync < commits,
        "Sync mode: {sync} syncs for {commits} commits"
    );
    let group = syncs_for(
        Durability::Group {
            max_delay: Duration::from_millis(2),
        },
        8,
        50,
    );
    assert!(
        group < commits / 2,
        "Group mode: {group} syncs for {commits} commits"
    );
}

#[test]
fn nosync_acks_at_once_and_flush_or_close_makes_it_durable() {
    let dir = TempDir::new().unwrap();
    let opts = real_opts(SMALL_SEGMENT, Durability::NoSync);
    let wal = Wal::create(dir.path(), opts.clone()).unwrap();
    let a = wal.commit(&Record::Smo(b"a")).unwrap();
    assert!(wal.durable_lsn() <= a, "NoSync must not have synced");
    wal.flush_to(a).unwrap();
    assert!(wal.durable_lsn() > a);
    let b = wal.commit(&Record::Smo(b"b")).unwrap();
    assert!(wal.durable_lsn() <= b);
    drop(wal); // close flushes
    let (got, _) = recover(dir.path());
    assert_eq!(got.iter().map(|r| r.lsn).collect::<Vec<_>>(), vec![a, b]);
}

/// Regression: a committer asks the flusher to write behind only while the
/// flusher runs, so commits made before its thread first ran (`Db::open`
/// spawns it; under load it can start late) asked no one, and a flusher
/// that then found no request slept with megabytes pending, until some
/// later commit asked (CI failed `nosync_log_is_written_behind_once_a_
/// megabyte_is_pending`, 6 runs in 30 of `db_basic` beside its siblings).
#[test]
fn a_flusher_that_starts_late_writes_behind_what_was_pending() {
    let dir = TempDir::new().unwrap();
    let wal = Wal::create(dir.path(), real_opts(4 << 20, Durability::NoSync)).unwrap();
    let payload = vec![7u8; 64 << 10];
    let mut pending = 0;
    while pending < 2 * writer::WRITE_BEHIND_BYTES {
        wal.commit(&Record::Smo(&payload)).unwrap();
        pending = wal.end_lsn().0 - wal.durable_lsn().0;
    }
    assert_eq!(
        wal.syncs(),
        0,
        "NoSync commits synced before the flusher ran"
    );
    std::thread::scope(|s| {
        s.spawn(|| wal.run_flusher());
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while wal.syncs() == 0 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        wal.stop_flusher();
    });
    assert!(
        wal.syncs() > 0,
        "{pending} bytes pending, and the flusher slept on them for 10 s"
    );
    assert!(wal.durable_lsn().0 + writer::WRITE_BEHIND_BYTES > wal.end_lsn().0);
}

#[test]
fn waiting_for_an_lsn_not_yet_appended_is_beyond_end() {
    let dir = TempDir::new().unwrap();
    let wal = Wal::create(dir.path(), real_opts(SMALL_SEGMENT, Durability::Sync)).unwrap();
    let lsn = wal.commit(&Record::Smo(b"x")).unwrap();
    assert!(matches!(
        wal.flush_to(Lsn(1 << 30)),
        Err(WalError::BeyondEnd { .. })
    ));
    wal.flush_to(lsn).unwrap();
}

#[test]
fn creating_a_log_over_an_existing_one_is_refused() {
    let dir = TempDir::new().unwrap();
    drop(Wal::create(dir.path(), real_opts(SMALL_SEGMENT, Durability::Sync)).unwrap());
    assert!(matches!(
        Wal::create(dir.path(), real_opts(SMALL_SEGMENT, Durability::Sync)),
        Err(WalError::NotEmpty(_))
    ));
}

#[test]
fn bad_segment_size_is_a_config_error() {
    let dir = TempDir::new().unwrap();
    for size in [0, 4096, SMALL_SEGMENT + 1] {
        assert!(matches!(
            Wal::create(dir.path(), real_opts(size, Durability::Sync)),
            Err(WalError::Config(_))
        ));
    }
}

/// 8 threads commit concurrently; the power fails mid-run. Every commit
/// whose `commit` (append + wait_durable) returned Ok must be recovered, and
/// what is recovered is, per thread, a gap-free prefix of what it appended:
/// nothing past the durable point is half there.
#[test]
fn crash_during_group_commit_loses_no_acknowledged_record() {
    const THREADS: u32 = 8;
    const PER_THREAD: u32 = 400;
    for (round, durability) in [
        Durability::Sync,
        Durability::Group {
            max_delay: Duration::from_micros(300),
        },
    ]
    .into_iter()
    .enumerate()
    {
        let dir = TempDir::new().unwrap();
        let faults = Faults::default();
        let plan = FaultPlan {
            hold_unsynced: true,
            ..FaultPlan::default()
        };
        let wal = Wal::create(dir.path(), faults.opts(64 * 1024, durability, plan)).unwrap();
        let acked: Mutex<HashMap<u32, Vec<(u32, Lsn)>>> = Mutex::default();
        let acks = std::sync::atomic::AtomicU32::new(0);
        std::thread::scope(|s| {
            for t in 0..THREADS {
                let (wal, acked, acks) = (&wal, &acked, &acks);
                s.spawn(move || {
                    for i in 0..PER_THREAD {
                        let len = 20 + ((i * 37 + t * 11) % 700) as usize;
                        match wal.commit(&Record::Smo(&smo_payload(t, i, len))) {
                            Ok(lsn) => {
                                acked.lock().unwrap().entry(t).or_default().push((i, lsn));
                                acks.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            }
                            Err(WalError::Poisoned { .. }) => return,
                            Err(e) => panic!("unexpected {e}"),
                        }
                    }
                });
            }
            // Power cut while committers are running: after a quarter (then
            // a half) of the commits were acknowledged, never by the clock.
            let at = THREADS * PER_THREAD * (1 + round as u32) / 4;
            while acks.load(std::sync::atomic::Ordering::SeqCst) < at {
                std::thread::yield_now();
            }
            faults.crash_all();
        });
        drop(wal);

        let (got, end) = recover(dir.path());
        let mut by_thread: HashMap<u32, Vec<(u32, Lsn)>> = HashMap::new();
        for r in &got {
            let (t, i) = smo_of(r);
            by_thread.entry(t).or_default().push((i, r.lsn));
        }
        let acked = acked.into_inner().unwrap();
        let total_acked: usize = acked.values().map(Vec::len).sum();
        assert!(total_acked > 0, "crash came before any commit");
        assert!(
            total_acked < (THREADS * PER_THREAD) as usize,
            "crash came after every commit"
        );
        for t in 0..THREADS {
            let rec = by_thread.remove(&t).unwrap_or_default();
            // Gap-free prefix 0..n of this thread's appends.
            for (k, (i, _)) in rec.iter().enumerate() {
                assert_eq!(
                    *i, k as u32,
                    "thread {t}: recovered records are not a prefix"
                );
            }
            // Every acknowledged one is there, at the LSN it was given.
            for (i, lsn) in acked.get(&t).map(Vec::as_slice).unwrap_or(&[]) {
                assert_eq!(
                    rec.get(*i as usize).map(|x| x.1),
                    Some(*lsn),
                    "thread {t}: acked record {i} lost"
                );
            }
        }
        assert!(end.lsn() >= got.last().map_or(FIRST_LSN, LoggedRecord::end_lsn));
    }
}

/// Appends `n` records to a log whose newest segment then fails to sync,
/// then cuts the power so that `torn_bytes` of the held write (which starts
/// at the block of the durable end) reached the disk. Returns the durable
/// records' LSNs, the torn batch's LSNs, and the offset of the batch start.
fn torn_batch(
    dir: &Path,
    faults: &Faults,
    keep_durable: u32,
    n: u32,
    tear_at: impl Fn(&[Lsn], u64) -> usize,
) -> (Vec<Lsn>, Vec<Lsn>) {
    let wal = Wal::create(
        dir,
        faults.opts(1 << 20, Durability::Sync, FaultPlan::default()),
    )
    .unwrap();
    let durable = commit_smos(&wal, keep_durable, 300);
    faults.newest().set_plan(FaultPlan {
        hold_unsynced: true,
        fail_sync: true,
        ..FaultPlan::default()
    });
    let batch: Vec<Lsn> = (0..n)
        .map(|i| wal.append(&Record::Smo(&smo_payload(1, i, 300))).unwrap())
        .collect();
    assert!(matches!(wal.flush(), Err(WalError::Poisoned { .. })));
    let batch_start = block_floor(wal.durable_lsn().0);
    let torn = tear_at(&batch, batch_start);
    faults.newest().crash_keeping(0, torn);
    drop(wal);
    (durable, batch)
}

#[test]
fn torn_tail_ends_the_log_at_the_first_incomplete_record() {
    let dir = TempDir::new().unwrap();
    let faults = Faults::default();
    // The tear lands 10 bytes into the third record of the unsynced batch.
    let (durable, batch) = torn_batch(dir.path(), &faults, 5, 6, |b, start| {
        (b[2].0 + 10 - start) as usize
    });
    let (got, end) = recover(dir.path());
    let want: Vec<Lsn> = durable.iter().chain(&batch[..2]).copied().collect();
    assert_eq!(got.iter().map(|r| r.lsn).collect::<Vec<_>>(), want);
    assert_eq!(end.lsn(), batch[2]);
    assert!(
        matches!(end.kind(), EndKind::TornTail { .. }),
        "{:?}",
        end.kind()
    );

    // The reopened writer overwrites the torn bytes and carries on.
    let opts = real_opts(1 << 20, Durability::Sync);
    let wal = Wal::open(dir.path(), opts, end).unwrap();
    let next = wal.commit(&Record::Smo(&smo_payload(2, 0, 50))).unwrap();
    assert_eq!(next, batch[2]);
    drop(wal);
    let (got2, end2) = recover(dir.path());
    assert_eq!(got2.len(), want.len() + 1);
    assert_eq!(end2.kind(), &EndKind::Clean);
}

#[test]
fn torn_tail_inside_a_header_ends_the_log_there() {
    let dir = TempDir::new().unwrap();
    let faults = Faults::default();
    let (durable, batch) = torn_batch(dir.path(), &faults, 3, 4, |b, start| {
        (b[1].0 + 5 - start) as usize
    });
    let (got, end) = recover(dir.path());
    assert_eq!(got.len(), durable.len() + 1);
    assert_eq!(end.lsn(), batch[1]);
}

#[test]
fn unsynced_batch_lost_entirely_ends_the_log_cleanly_at_the_durable_point() {
    let dir = TempDir::new().unwrap();
    let faults = Faults::default();
    let (durable, batch) = torn_batch(dir.path(), &faults, 4, 5, |_, _| 0);
    let (got, end) = recover(dir.path());
    assert_eq!(got.iter().map(|r| r.lsn).collect::<Vec<_>>(), durable);
    assert_eq!(end.lsn(), batch[0]);
    assert_eq!(end.kind(), &EndKind::Clean);
}

/// A disk may persist the blocks of one unsynced write out of order: here
/// the whole batch landed except one block in its middle. Records after
/// the hole are valid, but their durable floors show the hole was never
/// durable: a torn tail, not corruption.
#[test]
fn lost_block_inside_the_last_unsynced_batch_is_a_torn_tail_not_corruption() {
    let dir = TempDir::new().unwrap();
    let faults = Faults::default();
    let (durable, batch) = torn_batch(dir.path(), &faults, 3, 40, |_, _| usize::MAX);
    // Zero the block holding the header of batch record 20.
    let hole = block_floor(batch[20].0);
    for lsn in hole..hole + BLOCK_SIZE as u64 {
        patch(dir.path(), lsn, |b| *b = 0);
    }
    let first_hit = batch
        .iter()
        .position(|l| l.0 + record::HEADER_SIZE as u64 + 300 > hole)
        .unwrap();
    let (got, end) = recover(dir.path());
    assert_eq!(got.len(), durable.len() + first_hit);
    assert_eq!(end.lsn(), batch[first_hit]);
}

#[test]
fn bit_flip_in_the_middle_of_the_log_is_corrupt_naming_its_lsn() {
    let dir = TempDir::new().unwrap();
    let wal = Wal::create(dir.path(), real_opts(SMALL_SEGMENT, Durability::Sync)).unwrap();
    let lsns = commit_smos(&wal, 100, 200);
    drop(wal);
    patch(dir.path(), lsns[50].0 + 100, |b| *b ^= 0x04); // payload byte
    let (before, err) = recover_err(dir.path());
    assert_eq!(before.len(), 50);
    match err {
        WalError::Corrupt { lsn, reason } => {
            assert_eq!(lsn, lsns[50]);
            assert!(reason.contains("checksum"), "{reason}");
        }
        other => panic!("{other}"),
    }
}

#[test]
fn bit_flip_in_a_header_lsn_is_corrupt_naming_its_lsn() {
    let dir = TempDir::new().unwrap();
    let wal = Wal::create(dir.path(), real_opts(SMALL_SEGMENT, Durability::Sync)).unwrap();
    let lsns = commit_smos(&wal, 30, 200);
    drop(wal);
    patch(dir.path(), lsns[7].0 + 1, |b| *b ^= 0x80);
    let (before, err) = recover_err(dir.path());
    assert_eq!(before.len(), 7);
    assert!(
        matches!(err, WalError::Corrupt { lsn, .. } if lsn == lsns[7]),
        "{err}"
    );
}

#[test]
fn zeroed_block_in_durable_log_is_corrupt_not_an_early_end() {
    let dir = TempDir::new().unwrap();
    let wal = Wal::create(dir.path(), real_opts(SMALL_SEGMENT, Durability::Sync)).unwrap();
    let lsns = commit_smos(&wal, 60, 500);
    drop(wal);
    // A lost write: the block holding record 20's header reads as zeros.
    let hole = block_floor(lsns[20].0);
    for lsn in hole..hole + BLOCK_SIZE as u64 {
        patch(dir.path(), lsn, |b| *b = 0);
    }
    let (before, err) = recover_err(dir.path());
    let first_hit = lsns.iter().position(|l| l.0 + 524 > hole).unwrap();
    assert_eq!(before.len(), first_hit);
    assert!(
        matches!(err, WalError::Corrupt { lsn, .. } if lsn == lsns[first_hit]),
        "{err}"
    );
}

#[test]
fn missing_segment_in_the_middle_is_corrupt() {
    let dir = TempDir::new().unwrap();
    let wal = Wal::create(dir.path(), real_opts(SMALL_SEGMENT, Durability::Sync)).unwrap();
    commit_smos(&wal, 30, 2000);
    let paths = wal.segment_paths();
    drop(wal);
    std::fs::remove_file(&paths[1]).unwrap();
    match WalReader::open(
        dir.path(),
        FIRST_LSN,
        &real_opts(SMALL_SEGMENT, Durability::Sync),
    ) {
        Err(WalError::Corrupt { lsn, reason }) => {
            assert_eq!(lsn, Lsn(SMALL_SEGMENT));
            assert!(reason.contains("missing"), "{reason}");
        }
        other => panic!("{:?}", other.err()),
    }
}

#[test]
fn sync_failure_poisons_the_log_for_good() {
    let dir = TempDir::new().unwrap();
    let faults = Faults::default();
    let wal = Wal::create(
        dir.path(),
        faults.opts(SMALL_SEGMENT, Durability::Sync, FaultPlan::default()),
    )
    .unwrap();
    let ok = wal.commit(&Record::Smo(b"before")).unwrap();
    faults.newest().set_plan(FaultPlan {
        fail_sync: true,
        ..FaultPlan::default()
    });

    // Several committers waiting on the failing sync all see the poison.
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                assert!(matches!(
                    wal.commit(&Record::Smo(b"x")),
                    Err(WalError::Poisoned { .. })
                ))
            });
        }
    });
    // The disk "recovers", the log does not pretend it did.
    faults.newest().set_plan(FaultPlan::default());
    assert!(matches!(
        wal.append(&Record::Smo(b"y")),
        Err(WalError::Poisoned { .. })
    ));
    assert!(matches!(
        wal.commit(&Record::Smo(b"y")),
        Err(WalError::Poisoned { .. })
    ));
    assert!(matches!(wal.flush(), Err(WalError::Poisoned { .. })));
    assert!(matches!(
        wal.truncate_before(ok),
        Err(WalError::Poisoned { .. })
    ));
    match wal.wait_durable(Lsn(ok.0 + 1)) {
        Err(WalError::Poisoned { cause }) => {
            assert!(matches!(*cause, WalError::Io { .. }), "{cause}")
        }
        other => panic!("{other:?}"),
    }
    // Sticky even for what was durable before the failure.
    assert!(matches!(
        wal.wait_durable(ok),
        Err(WalError::Poisoned { .. })
    ));
}

#[test]
fn write_failure_poisons_the_log() {
    let dir = TempDir::new().unwrap();
    let faults = Faults::default();
    let wal = Wal::create(
        dir.path(),
        faults.opts(SMALL_SEGMENT, Durability::Sync, FaultPlan::default()),
    )
    .unwrap();
    faults.newest().set_plan(FaultPlan {
        fail_nth_write: Some(1),
        ..FaultPlan::default()
    });
    assert!(matches!(
        wal.commit(&Record::Smo(b"x")),
        Err(WalError::Poisoned { .. })
    ));
    assert!(matches!(
        wal.commit(&Record::Smo(b"x")),
        Err(WalError::Poisoned { .. })
    ));
}

#[test]
fn truncate_before_deletes_only_whole_durable_segments() {
    let dir = TempDir::new().unwrap();
    let opts = real_opts(SMALL_SEGMENT, Durability::Sync);
    let wal = Wal::create(dir.path(), opts.clone()).unwrap();
    let lsns = commit_smos(&wal, 40, 2000);
    let before = wal.segment_paths();
    // A checkpoint whose redo LSN lies inside the fourth segment.
    let redo = *lsns
        .iter()
        .find(|l| l.0 >= 3 * SMALL_SEGMENT + 100)
        .unwrap();
    assert_eq!(wal.truncate_before(redo).unwrap(), 3);
    let after = wal.segment_paths();
    assert_eq!(after, before[3..]);
    assert!(before[..3].iter().all(|p| !p.exists()));
    // The segment holding the end is never removed, however far the
    // checkpoint; the one prepared ahead of it (if any) stays too.
    let kept = wal.segment_paths().len() - wal.truncate_before(Lsn(u64::MAX)).unwrap();
    assert!((1..=2).contains(&kept), "{kept} segments kept");
    assert_eq!(wal.segment_paths().len(), kept);
    let last = *lsns.last().unwrap();
    drop(wal);

    assert!(matches!(
        WalReader::open(dir.path(), FIRST_LSN, &opts),
        Err(WalError::Truncated {
            requested: FIRST_LSN,
            ..
        })
    ));
    let got: Vec<LoggedRecord> = WalReader::open(dir.path(), last, &opts)
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].lsn, last);
}

#[test]
fn truncate_before_keeps_segments_not_yet_durable() {
    let dir = TempDir::new().unwrap();
    let wal = Wal::create(dir.path(), real_opts(SMALL_SEGMENT, Durability::NoSync)).unwrap();
    let lsns = commit_smos(&wal, 40, 2000); // appended, not flushed (< buffer limit)
    assert_eq!(wal.truncate_before(*lsns.last().unwrap()).unwrap(), 0);
}

#[test]
fn recovery_start_beyond_the_log_is_corrupt() {
    let dir = TempDir::new().unwrap();
    let opts = real_opts(SMALL_SEGMENT, Durability::Sync);
    drop(Wal::create(dir.path(), opts.clone()).unwrap());
    assert!(matches!(
        WalReader::open(dir.path(), Lsn(1 << 40), &opts),
        Err(WalError::Corrupt { .. })
    ));
}

#[test]
fn empty_directory_reads_as_an_empty_log() {
    let dir = TempDir::new().unwrap();
    let opts = real_opts(SMALL_SEGMENT, Durability::Sync);
    let end = WalReader::open(dir.path(), FIRST_LSN, &opts)
        .unwrap()
        .into_end()
        .unwrap();
    assert_eq!((end.lsn(), end.kind()), (FIRST_LSN, &EndKind::Clean));
    let wal = Wal::open(dir.path(), opts, end).unwrap();
    assert_eq!(wal.commit(&Record::Smo(b"first")).unwrap(), FIRST_LSN);
}

#[test]
fn appenders_past_the_buffer_limit_flush_instead_of_growing_memory() {
    let dir = TempDir::new().unwrap();
    let wal = Wal::create(dir.path(), real_opts(4 << 20, Durability::NoSync)).unwrap();
    let payload = vec![3u8; 64 * 1024];
    for _ in 0..(2 * writer::MAX_BUFFERED_BYTES / payload.len() as u64) {
        wal.commit(&Record::Smo(&payload)).unwrap();
    }
    let pending = wal.end_lsn().0 - wal.durable_lsn().0;
    assert!(
        pending <= writer::MAX_BUFFERED_BYTES + payload.len() as u64,
        "{pending} bytes pending"
    );
}

/// A fault double for one test: while armed, the next `write_and_sync`
/// says it has started, waits to be released, and fails.
struct GatedFile {
    inner: Arc<dyn BlockFile>,
    gate: Arc<Gate>,
}

#[derive(Default)]
struct Gate {
    /// (armed, entered, released)
    state: Mutex<(bool, bool, bool)>,
    changed: std::sync::Condvar,
}

impl Gate {
    fn wait_until(&self, what: impl Fn(&(bool, bool, bool)) -> bool) {
        let mut s = self.state.lock().unwrap();
        while !what(&s) {
            s = self.changed.wait(s).unwrap();
        }
    }
    fn update(&self, f: impl FnOnce(&mut (bool, bool, bool))) {
        f(&mut self.state.lock().unwrap());
        self.changed.notify_all();
    }
}

impl BlockFile for GatedFile {
    fn read_batch(&self, reads: &mut [ReadOp<'_>]) -> Result<(), IoError> {
        self.inner.read_batch(reads)
    }
    fn write_batch(&self, writes: &[WriteOp<'_>]) -> Result<(), IoError> {
        self.inner.write_batch(writes)
    }
    fn sync_data(&self) -> Result<(), IoError> {
        self.inner.sync_data()
    }
    fn write_and_sync(&self, writes: &[WriteOp<'_>]) -> Result<(), IoError> {
        if !self.gate.state.lock().unwrap().0 {
            return self.inner.write_and_sync(writes);
        }
        self.gate.update(|s| s.1 = true);
        self.gate.wait_until(|s| s.2);
        Err(IoError::Injected {
            op: IoOp::Sync,
            offset: 0,
        })
    }
    fn len_bytes(&self) -> Result<u64, IoError> {
        self.inner.len_bytes()
    }
    fn set_len(&self, len: u64) -> Result<(), IoError> {
        self.inner.set_len(len)
    }
}

/// Regression: a committer that appended while a sync was in flight sleeps
/// for the round after it; when the sync in flight failed, no round came
/// after it, and the committer slept for ever (the history test under
/// injected crashes hung with two committers asleep, the flusher idle on
/// the poisoned log). It must get the poison instead.
#[test]
fn a_committer_asleep_for_the_next_round_gets_the_poison_of_the_failed_sync() {
    let dir = TempDir::new().unwrap();
    let gate = Arc::new(Gate::default());
    let g = gate.clone();
    let opts = real_opts(SMALL_SEGMENT, Durability::Sync).with_opener(Arc::new(move |p: &Path| {
        let inner = open_block_file(p, IoBackend::Auto)?;
        Ok(Arc::new(GatedFile {
            inner,
            gate: g.clone(),
        }) as Arc<dyn BlockFile>)
    }));
    let wal = Wal::create(dir.path(), opts).unwrap();
    let payload = smo_payload(0, 0, 100);
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::scope(|s| {
        s.spawn(|| wal.run_flusher());
        gate.update(|st| st.0 = true);
        // 1. A commits; its sync (led by A or the flusher) stops in the gate.
        let (a_done, wal_a, p_a) = (done_tx.clone(), &wal, &payload);
        s.spawn(move || a_done.send(("a", wal_a.commit(&Record::Smo(p_a)))).unwrap());
        gate.wait_until(|st| st.1);
        // 2. B appends after that sync's snapshot: it sleeps for the next
        //    round, led by the flusher.
        let (b_done, wal_b, p_b) = (done_tx.clone(), &wal, &payload);
        s.spawn(move || b_done.send(("b", wal_b.commit(&Record::Smo(p_b)))).unwrap());
        std::thread::sleep(Duration::from_millis(200));
        // 3. The sync in flight fails: both must hear it.
        gate.update(|st| st.2 = true);
        let heard: Vec<_> = (0..2)
            .map_while(|_| done_rx.recv_timeout(Duration::from_secs(10)).ok())
            .collect();
        // Stopping the flusher ends every round: a sleeper left goes now,
        // so the test fails below instead of hanging.
        wal.stop_flusher();
        assert_eq!(
            heard.len(),
            2,
            "a committer still asleep 10 s after the log was poisoned: {heard:?}"
        );
        for (who, r) in heard {
            assert!(
                matches!(r, Err(WalError::Poisoned { .. }) | Err(WalError::Io { .. })),
                "{who}: {r:?}"
            );
        }
    });
}
