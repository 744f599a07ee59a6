//! Redistribution SMOs (a full leaf moves entries to siblings instead of
//! splitting; `docs/btree.md`) through the log: a random-order load of
//! 1 KiB values logs them (as `Redistribute` records of the parent and
//! every leaf rewritten), a power cut drops every unsynced page write, and
//! recovery's redo of the after-images rebuilds a sound tree holding every
//! acknowledged commit.

mod common;
use common::{faulty, power_cut};
use rime_storage::{Db, Durability, Options, TreeId, VerifyOnOpen};
use std::ops::Bound;
use tempfile::TempDir;

fn base() -> Options {
    Options::default()
        .pool_bytes(32 << 20)
        .checkpoint_interval(None)
        .durability(Durability::Sync)
        .verify_on_open(VerifyOnOpen::Always)
}

/// Record `i` of the load, in hashed (random) order.
fn key(i: u64) -> Vec<u8> {
    format!("user{:019}", i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 1).into_bytes()
}

fn value(i: u64) -> Vec<u8> {
    let mut v = key(i);
    v.resize(1024, i as u8);
    v
}

fn load(db: &Db, t: TreeId, range: std::ops::Range<u64>) {
    for chunk in range.collect::<Vec<_>>().chunks(10) {
        db.transaction(|tx| {
            for &i in chunk {
                tx.put(t, &key(i), &value(i))?;
            }
            Ok(())
        })
        .unwrap();
    }
}

#[test]
fn a_power_cut_after_redistributions_recovers_every_acknowledged_record() {
    let n = 3_000u64;
    let dir = TempDir::new().unwrap();
    let (opts, files) = faulty(base());
    let db = Db::open(dir.path(), opts).unwrap();
    let t = db.create_tree("t").unwrap();
    load(&db, t, 0..n / 2);
    db.checkpoint().unwrap();
    load(&db, t, n / 2..n);
    // Leaves hold three records; splits alone leave ~2.3 a leaf (~1300
    // leaves for 3000), moving records to siblings first ~2.8 (~1070).
    let pages = db.stats().allocated_pages;
    eprintln!("{pages} pages allocated for {n} records");
    assert!(pages < 1_150, "{pages} pages: no redistribution happened?");
    power_cut(&files);
    drop(db);
    let db = Db::open(dir.path(), base()).unwrap();
    assert!(db.stats().recovered_records > 0, "nothing was redone");
    db.verify().unwrap();
    for i in 0..n {
        assert_eq!(db.get(t, &key(i)).unwrap(), Some(value(i)), "record {i}");
    }
    let mut seen = 0u64;
    db.transaction(|tx| {
        seen = 0;
        tx.scan(t, Bound::Unbounded, Bound::Unbounded, |_, _| {
            seen += 1;
            std::ops::ControlFlow::Continue(())
        })
    })
    .unwrap();
    assert_eq!(seen, n);
    db.close().unwrap();
}

/// Sets the format version of both superblock slots (checksums fixed).
fn stamp_version(dir: &std::path::Path, version: u32) {
    use rime_storage::superblock::{OFF_CRC, OFF_VERSION, SLOT_SIZE, SLOTS};
    let path = dir.join("superblock");
    let mut bytes = std::fs::read(&path).unwrap();
    for slot in 0..SLOTS {
        let b = &mut bytes[slot * SLOT_SIZE..(slot + 1) * SLOT_SIZE];
        b[OFF_VERSION..OFF_VERSION + 4].copy_from_slice(&version.to_le_bytes());
        let crc = crc32c::crc32c(&b[..OFF_CRC]);
        b[OFF_CRC..OFF_CRC + 4].copy_from_slice(&crc.to_le_bytes());
    }
    std::fs::write(&path, bytes).unwrap();
}

fn superblock_version(dir: &std::path::Path) -> u32 {
    let file =
        rime_bufmgr::io::open_block_file(&dir.join("superblock"), rime_bufmgr::io::IoBackend::Auto)
            .unwrap();
    rime_storage::SuperblockFile::open(file).unwrap().version()
}

/// Version 2 data (written before `Redistribute` records existed) opens
/// as is, and is stamped with this build's version before redo can log such a
/// record: a version-2 build then refuses the directory as too new
/// instead of finding a record it calls corrupt.
#[test]
fn version_2_data_opens_and_is_stamped_with_this_format_before_redo() {
    use rime_storage::superblock::FORMAT_VERSION;
    let dir = TempDir::new().unwrap();
    let (opts, files) = faulty(base());
    let db = Db::open(dir.path(), opts).unwrap();
    let t = db.create_tree("t").unwrap();
    db.checkpoint().unwrap();
    load(&db, t, 0..300);
    power_cut(&files); // the load is redone at the next open
    drop(db);
    stamp_version(dir.path(), 2);
    assert_eq!(superblock_version(dir.path()), 2);
    let db = Db::open(dir.path(), base()).unwrap();
    assert!(db.stats().recovered_records > 0, "nothing was redone");
    assert_eq!(superblock_version(dir.path()), FORMAT_VERSION);
    for i in 0..300 {
        assert_eq!(db.get(t, &key(i)).unwrap(), Some(value(i)), "record {i}");
    }
    db.close().unwrap();
}
