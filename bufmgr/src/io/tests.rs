use super::*;
use tempfile::TempDir;

fn files(dir: &TempDir) -> Vec<(&'static str, Arc<dyn BlockFile>)> {
    let path = dir.path().join("blocks");
    vec![
        ("uring", open_block_file(&path, IoBackend::Auto).unwrap()),
        ("plain", open_block_file(&path, IoBackend::Plain).unwrap()),
    ]
}

fn pattern(seed: u8, len: usize) -> AlignedBuf {
    let mut b = AlignedBuf::zeroed(len);
    for (i, x) in b.iter_mut().enumerate() {
        *x = seed.wrapping_add(i as u8);
    }
    b
}

/// One write per buffer, each in the block after the one before.
fn block_after_block(bufs: &[AlignedBuf]) -> Vec<WriteOp<'_>> {
    bufs.iter()
        .enumerate()
        .map(|(i, b)| WriteOp {
            offset: (i * BLOCK_SIZE) as u64,
            data: b,
        })
        .collect()
}

#[test]
fn batch_write_then_read_round_trips() {
    let dir = TempDir::new().unwrap();
    for (name, f) in files(&dir) {
        let a = pattern(1, BLOCK_SIZE);
        let b = pattern(2, 3 * BLOCK_SIZE);
        f.write_batch(&[
            WriteOp {
                offset: 0,
                data: &a,
            },
            WriteOp {
                offset: 8192,
                data: &b,
            },
        ])
        .unwrap();
        f.sync_data().unwrap();
        let mut ra = AlignedBuf::zeroed(BLOCK_SIZE);
        let mut rb = AlignedBuf::zeroed(3 * BLOCK_SIZE);
        f.read_batch(&mut [
            ReadOp {
                offset: 0,
                buf: &mut ra,
            },
            ReadOp {
                offset: 8192,
                buf: &mut rb,
            },
        ])
        .unwrap();
        assert_eq!(&ra[..], &a[..], "{name}");
        assert_eq!(&rb[..], &b[..], "{name}");
    }
}

/// The linked write-and-sync (io_uring) and its fallback for a batch
/// larger than one ring (300 ops > 256 entries) both write every byte.
#[test]
fn write_and_sync_writes_every_op_linked_or_not() {
    let dir = TempDir::new().unwrap();
    for (name, f) in files(&dir) {
        for (round, n) in [(1u8, 3usize), (2, 300)] {
            let bufs: Vec<AlignedBuf> = (0..n)
                .map(|i| pattern(round ^ i as u8, BLOCK_SIZE))
                .collect();
            let ops = block_after_block(&bufs);
            f.write_and_sync(&ops).unwrap();
            for (i, b) in bufs.iter().enumerate() {
                let mut r = AlignedBuf::zeroed(BLOCK_SIZE);
                f.read_at((i * BLOCK_SIZE) as u64, &mut r).unwrap();
                assert_eq!(&r[..], &b[..], "{name}: {n} ops, op {i}");
            }
        }
    }
}

/// `meanwhile` runs exactly once on every path: the linked submission,
/// the fallback past one ring, and a batch refused before any I/O (the
/// log's committers it wakes would otherwise sleep for ever, or twice).
#[test]
fn write_and_sync_meanwhile_runs_exactly_once_whatever_happens() {
    let dir = TempDir::new().unwrap();
    for (name, f) in files(&dir) {
        for n in [1usize, 300] {
            let bufs: Vec<AlignedBuf> = (0..n).map(|i| pattern(i as u8, BLOCK_SIZE)).collect();
            let ops = block_after_block(&bufs);
            let mut runs = 0;
            f.write_and_sync_meanwhile(&ops, &mut || runs += 1).unwrap();
            assert_eq!(runs, 1, "{name}: {n} ops");
            let mut r = AlignedBuf::zeroed(BLOCK_SIZE);
            f.read_at(((n - 1) * BLOCK_SIZE) as u64, &mut r).unwrap();
            assert_eq!(&r[..], &bufs[n - 1][..], "{name}: {n} ops");
        }
        let buf = AlignedBuf::zeroed(BLOCK_SIZE);
        let mut runs = 0;
        let err = f
            .write_and_sync_meanwhile(
                &[WriteOp {
                    offset: 100,
                    data: &buf,
                }],
                &mut || runs += 1,
            )
            .unwrap_err();
        assert!(matches!(err, IoError::Misaligned { .. }), "{name}: {err}");
        assert_eq!(runs, 1, "{name}: refused batch");
    }
}

#[test]
fn reading_past_the_end_is_a_short_read() {
    let dir = TempDir::new().unwrap();
    for (name, f) in files(&dir) {
        let mut buf = AlignedBuf::zeroed(BLOCK_SIZE);
        let err = f.read_at(1 << 20, &mut buf).unwrap_err();
        assert!(matches!(err, IoError::ShortRead { .. }), "{name}: {err}");
    }
}

#[test]
fn misaligned_transfers_are_refused_before_the_kernel_sees_them() {
    let dir = TempDir::new().unwrap();
    for (name, f) in files(&dir) {
        let buf = AlignedBuf::zeroed(BLOCK_SIZE);
        let err = f.write_at(100, &buf).unwrap_err();
        assert!(matches!(err, IoError::Misaligned { .. }), "{name}: {err}");
        let err = f.write_at(0, &buf[1..]).unwrap_err();
        assert!(matches!(err, IoError::Misaligned { .. }), "{name}: {err}");
    }
}

#[test]
fn faulty_file_fails_the_nth_write_only() {
    let dir = TempDir::new().unwrap();
    let real = open_block_file(&dir.path().join("f"), IoBackend::Auto).unwrap();
    let f = FaultyFile::new(
        real,
        FaultPlan {
            fail_nth_write: Some(2),
            ..Default::default()
        },
    );
    let buf = pattern(7, BLOCK_SIZE);
    f.write_at(0, &buf).unwrap();
    assert!(matches!(
        f.write_at(4096, &buf),
        Err(IoError::Injected {
            op: IoOp::Write,
            offset: 4096
        })
    ));
    f.write_at(8192, &buf).unwrap();
}

#[test]
fn crash_drops_exactly_the_unsynced_writes() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("f");
    let real = open_block_file(&path, IoBackend::Auto).unwrap();
    let f = FaultyFile::new(
        real,
        FaultPlan {
            hold_unsynced: true,
            ..Default::default()
        },
    );
    let (a, b) = (pattern(1, BLOCK_SIZE), pattern(2, BLOCK_SIZE));
    f.write_at(0, &a).unwrap();
    f.sync_data().unwrap();
    f.write_at(0, &b).unwrap();
    f.write_at(4096, &b).unwrap();
    let mut seen = AlignedBuf::zeroed(BLOCK_SIZE);
    f.read_at(0, &mut seen).unwrap();
    assert_eq!(&seen[..], &b[..], "the process sees its own unsynced write");
    f.crash();
    assert!(
        f.read_at(0, &mut seen).is_err(),
        "a crashed file does no more I/O"
    );

    let reopened = open_block_file(&path, IoBackend::Auto).unwrap();
    reopened.read_at(0, &mut seen).unwrap();
    assert_eq!(&seen[..], &a[..], "the synced version survives");
    assert_eq!(
        reopened.len_bytes().unwrap(),
        BLOCK_SIZE as u64,
        "the unsynced block never reached the file"
    );
}

#[test]
fn crash_keeping_tears_the_next_write() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("f");
    let real = open_block_file(&path, IoBackend::Auto).unwrap();
    let f = FaultyFile::new(
        real,
        FaultPlan {
            hold_unsynced: true,
            ..Default::default()
        },
    );
    let (a, b) = (pattern(1, BLOCK_SIZE), pattern(2, BLOCK_SIZE));
    f.write_at(0, &a).unwrap();
    f.sync_data().unwrap();
    f.write_at(0, &b).unwrap();
    f.crash_keeping(0, 512);
    let reopened = open_block_file(&path, IoBackend::Auto).unwrap();
    let mut seen = AlignedBuf::zeroed(BLOCK_SIZE);
    reopened.read_at(0, &mut seen).unwrap();
    assert_eq!(&seen[..512], &b[..512]);
    assert_eq!(&seen[512..], &a[512..]);
}
