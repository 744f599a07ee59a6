//! Lean data directories: a new Db costs little disk, because log segments
//! start small and double up to the segment size; a log that grows through
//! several sizes still recovers everything, after a close and after a
//! power cut (the fault-injecting `FaultyFile` of `common`, a test double
//! that exists only to inject faults).

mod common;
use common::{faulty, power_cut};
use rime_storage::wal::segment;
use rime_storage::wal::{DEFAULT_INITIAL_SEGMENT_SIZE, DEFAULT_SEGMENT_SIZE};
use rime_storage::{Db, Options, TreeId, VerifyOnOpen};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use tempfile::TempDir;

/// The budget of a new data directory (issue 19): 2 MB on disk.
const FRESH_DIR_MAX_BYTES: u64 = 2_000_000;

/// Bytes the file system allocated for everything under `dir` (`du`, not
/// apparent sizes: a sparse file counts only its written blocks).
fn allocated_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let meta = entry.metadata().unwrap();
        total += meta.blocks() * 512;
        if meta.is_dir() {
            total += allocated_bytes(&entry.path());
        }
    }
    total
}

/// Sizes of the log's segment files, in LSN order.
fn segment_sizes(dir: &Path) -> Vec<u64> {
    segment::list(&dir.join("wal"))
        .unwrap()
        .iter()
        .map(|s| s.size)
        .collect()
}

#[test]
fn a_fresh_db_directory_takes_at_most_2_mb_on_disk() {
    let dir = TempDir::new().unwrap();
    let db = Db::open(dir.path(), Options::default()).unwrap();
    let t = db.create_tree("t").unwrap();
    db.transaction(|tx| tx.put(t, b"k", b"v")).unwrap();
    let open_bytes = allocated_bytes(dir.path());
    db.close().unwrap();
    let closed_bytes = allocated_bytes(dir.path());
    assert_eq!(
        segment_sizes(dir.path()),
        vec![DEFAULT_INITIAL_SEGMENT_SIZE]
    );
    for (when, bytes) in [("open", open_bytes), ("closed", closed_bytes)] {
        assert!(
            bytes <= FRESH_DIR_MAX_BYTES,
            "a fresh data directory ({when}) takes {bytes} bytes on disk"
        );
    }
    // Reopening it costs no more log.
    let db = Db::open(dir.path(), Options::default()).unwrap();
    assert_eq!(db.get(t, b"k").unwrap(), Some(b"v".to_vec()));
    db.close().unwrap();
    assert!(allocated_bytes(dir.path()) <= FRESH_DIR_MAX_BYTES);
}

#[test]
fn preallocation_stays_available_for_servers() {
    let dir = TempDir::new().unwrap();
    let opts = Options::default().segment_size(1 << 20).preallocate_log();
    let db = Db::open(dir.path(), opts).unwrap();
    db.close().unwrap();
    assert_eq!(segment_sizes(dir.path()), vec![1 << 20]);
    assert!(allocated_bytes(&dir.path().join("wal")) >= 1 << 20);
    assert_eq!(
        Options::default().preallocate_log().initial_segment_size,
        DEFAULT_SEGMENT_SIZE
    );
}

const SEGMENT_CAP: u64 = 256 << 10;

fn opts() -> Options {
    Options::default()
        .pool_bytes(4 << 20)
        .checkpoint_interval(None)
        .segment_size(SEGMENT_CAP)
        .verify_on_open(VerifyOnOpen::Always)
}

fn value(i: u32) -> Vec<u8> {
    vec![(i % 251) as u8; 300 + (i as usize % 7) * 100]
}

fn fill(db: &Db, t: TreeId, range: std::ops::Range<u32>) {
    for i in range {
        db.transaction(|tx| tx.put(t, format!("k{i:06}").as_bytes(), &value(i)))
            .unwrap();
    }
}

fn check_all(db: &Db, t: TreeId, n: u32) {
    for i in 0..n {
        assert_eq!(
            db.get(t, format!("k{i:06}").as_bytes()).unwrap(),
            Some(value(i)),
            "key {i}"
        );
    }
}

/// The log grows through 64, 128 and 256 KiB segments, then stays at the
/// cap; the sizes are what recovery reads the segments by.
fn assert_doubling_sizes(dir: &Path) {
    let sizes = segment_sizes(dir);
    assert!(sizes.len() >= 4, "the log never grew: {sizes:?}");
    assert_eq!(
        &sizes[..3],
        &[64 << 10, 128 << 10, SEGMENT_CAP],
        "{sizes:?}"
    );
    assert!(sizes[3..].iter().all(|&s| s == SEGMENT_CAP), "{sizes:?}");
}

/// Rows that log well past 64 + 128 + 256 KiB.
const ROWS: u32 = 1_500;

#[test]
fn a_log_grown_past_its_first_segment_recovers_everything_after_reopen() {
    let dir = TempDir::new().unwrap();
    let db = Db::open(dir.path(), opts()).unwrap();
    let t = db.create_tree("t").unwrap();
    fill(&db, t, 0..ROWS);
    assert_doubling_sizes(dir.path());
    drop(db); // no checkpoint: the reopen replays the whole log
    let db = Db::open(dir.path(), opts()).unwrap();
    check_all(&db, t, ROWS);
    // The reopened log keeps writing where it ended, at the cap size.
    fill(&db, t, ROWS..ROWS + 200);
    db.close().unwrap();
    // The close's checkpoint truncated the small segments; what is left is
    // at the cap.
    let sizes = segment_sizes(dir.path());
    assert!(sizes.iter().all(|&s| s == SEGMENT_CAP), "{sizes:?}");
    let db = Db::open(dir.path(), opts()).unwrap();
    check_all(&db, t, ROWS + 200);
    db.close().unwrap();
}

#[test]
fn a_power_cut_while_the_log_grows_loses_no_acknowledged_commit() {
    let dir = TempDir::new().unwrap();
    let (faulty_opts, files) = faulty(opts());
    let db = Db::open(dir.path(), faulty_opts).unwrap();
    let t = db.create_tree("t").unwrap();
    fill(&db, t, 0..ROWS);
    power_cut(&files);
    drop(db); // every I/O fails now; the drop must not panic
    assert_doubling_sizes(dir.path());
    let db = Db::open(dir.path(), opts()).unwrap();
    assert!(db.stats().recovered_records > 0);
    check_all(&db, t, ROWS);
    db.close().unwrap();
}
