//! Damaged or missing files of a data directory: each ends in a clear
//! error naming the file, or in a correct recovery — never in an empty or
//! rolled-back database served silently (issue 12, bugs 2, 3, 4 and 6).

mod common;
use common::{faulty, power_cut};
use rime_storage::superblock::{OFF_SEQUENCE, SLOT_SIZE};
use rime_storage::wal::record::MAX_COMMIT_BYTES;
use rime_storage::{Db, OpenError, Options, SuperblockFile, TxError, VerifyOnOpen};
use std::fs;
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;
use tempfile::TempDir;

fn opts() -> Options {
    Options::default()
        .pool_bytes(4 << 20)
        .checkpoint_interval(None)
        .segment_size(1 << 20)
        .verify_on_open(VerifyOnOpen::Always)
}

/// A database with `n` keys in tree "t", closed cleanly.
fn populated(dir: &Path, n: u32) {
    let db = Db::open(dir, opts()).unwrap();
    let t = db.create_tree("t").unwrap();
    for k in 0..n {
        db.put(t, &k.to_be_bytes(), b"value").unwrap();
    }
    db.close().unwrap();
}

fn count_keys(db: &Db) -> usize {
    let t = db.open_tree("t").unwrap().expect("tree t exists");
    (0..10_000u32)
        .filter(|k| db.get(t, &k.to_be_bytes()).unwrap().is_some())
        .count()
}

#[test]
fn an_empty_or_missing_superblock_beside_data_is_an_error_not_a_fresh_database() {
    let dir = TempDir::new().unwrap();
    populated(dir.path(), 100);
    let sb = dir.path().join("superblock");
    let pages_len = fs::metadata(dir.path().join("pages.db")).unwrap().len();
    for damage in ["truncate", "remove"] {
        match damage {
            "truncate" => fs::File::create(&sb).map(drop).unwrap(),
            _ => fs::remove_file(&sb).unwrap(),
        }
        let err = Db::open(dir.path(), opts()).err().expect("open must fail");
        assert!(
            matches!(err, OpenError::NoSuperblock { .. }),
            "{damage}: {err}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains("superblock") && msg.contains("pages.db"),
            "{msg}"
        );
        // Nothing was deleted or rewritten.
        let len = fs::metadata(dir.path().join("pages.db")).unwrap().len();
        assert_eq!(len, pages_len, "{damage}: pages.db untouched");
    }
}

#[test]
fn a_creation_cut_short_before_its_superblock_is_redone() {
    let dir = TempDir::new().unwrap();
    // What a creation that crashed before its first superblock leaves.
    fs::write(dir.path().join("CREATING"), b"").unwrap();
    fs::write(dir.path().join("pages.db"), vec![0u8; 8192]).unwrap();
    let db = Db::open(dir.path(), opts()).unwrap();
    assert!(db.list_trees().unwrap().is_empty());
    let t = db.create_tree("t").unwrap();
    db.put(t, b"k", b"v").unwrap();
    db.close().unwrap();
    assert!(!dir.path().join("CREATING").exists());
    let db = Db::open(dir.path(), opts()).unwrap();
    let t = db.open_tree("t").unwrap().unwrap();
    assert_eq!(db.get(t, b"k").unwrap().as_deref(), Some(&b"v"[..]));
}

/// Bug 4: the log zeroed from the checkpoint the superblock names read as
/// "nothing written", and ~350 acknowledged commits were rolled back.
#[test]
fn a_log_zeroed_from_the_checkpoint_lsn_is_an_error_not_a_rollback() {
    let dir = TempDir::new().unwrap();
    let (o, files) = faulty(opts());
    let db = Db::open(dir.path(), o).unwrap();
    let t = db.create_tree("t").unwrap();
    db.checkpoint().unwrap();
    for k in 0..350u32 {
        db.put(t, &k.to_be_bytes(), b"acknowledged").unwrap();
    }
    power_cut(&files);
    drop(db);
    // Zero the log from the redo LSN on.
    let sbf = SuperblockFile::open(
        rime_bufmgr::io::open_block_file(
            &dir.path().join("superblock"),
            rime_bufmgr::io::IoBackend::Auto,
        )
        .unwrap(),
    )
    .unwrap();
    let redo = sbf.current().redo_lsn.0;
    drop(sbf);
    let mut zeroed = 0;
    for e in fs::read_dir(dir.path().join("wal")).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let start: u64 = name["wal-".len()..name.len() - ".log".len()]
            .parse()
            .unwrap();
        let len = e.metadata().unwrap().len();
        if start + len <= redo {
            continue;
        }
        let from = redo.saturating_sub(start);
        let mut f = fs::OpenOptions::new().write(true).open(e.path()).unwrap();
        f.seek(SeekFrom::Start(from)).unwrap();
        f.write_all(&vec![0u8; (len - from) as usize]).unwrap();
        zeroed += 1;
    }
    assert!(zeroed > 0, "a segment holds the redo LSN {redo}");
    let err = Db::open(dir.path(), opts()).err().expect("open must fail");
    assert!(matches!(err, OpenError::MissingCheckpoint { .. }), "{err}");
    assert!(err.to_string().contains("wal"), "{err}");
}

/// Bug 6: with the newer slot damaged, the older one named an allocation
/// file (and log) already deleted.
#[test]
fn the_older_superblock_slot_is_usable_when_the_newer_is_damaged() {
    let dir = TempDir::new().unwrap();
    let db = Db::open(dir.path(), opts()).unwrap();
    let t = db.create_tree("t").unwrap();
    for round in 0..3u32 {
        for k in round * 100..(round + 1) * 100 {
            db.put(t, &k.to_be_bytes(), b"value").unwrap();
        }
        db.checkpoint().unwrap();
    }
    db.close().unwrap();
    // Flip a byte in the slot with the higher sequence number.
    let path = dir.path().join("superblock");
    let mut bytes = fs::read(&path).unwrap();
    let seq = |slot: usize| {
        let at = slot * SLOT_SIZE + OFF_SEQUENCE;
        u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap())
    };
    let newer = if seq(0) > seq(1) { 0 } else { 1 };
    bytes[newer * SLOT_SIZE + 100] ^= 0xFF;
    fs::write(&path, &bytes).unwrap();
    let db = Db::open(dir.path(), opts()).unwrap();
    assert_eq!(count_keys(&db), 300, "nothing committed is lost");
    db.verify().unwrap();
}

/// Bug 2: a write set between the log's record limit and the ABI's limit
/// reached the log, failed there, and poisoned the live Db.
#[test]
fn a_commit_too_large_for_one_log_record_is_refused_and_poisons_nothing() {
    let dir = TempDir::new().unwrap();
    let db = Db::open(dir.path(), opts().pool_bytes(128 << 20)).unwrap();
    let t = db.create_tree("t").unwrap();
    let big = vec![7u8; 12 << 20];
    let err = db
        .transaction(|tx| {
            for k in 0..3u8 {
                tx.put(t, &[k], &big)?;
            }
            Ok(())
        })
        .unwrap_err();
    match err {
        TxError::CommitTooLarge { bytes, max } => {
            assert!(bytes > max && max == MAX_COMMIT_BYTES, "{bytes} > {max}")
        }
        e => panic!("want CommitTooLarge, got {e}"),
    }
    assert_eq!(db.poisoned(), None);
    assert_eq!(db.get(t, &[0]).unwrap(), None, "nothing of it committed");
    db.put(t, b"after", b"fine").unwrap();
    db.close().unwrap();
}

/// Copies a data directory (files and `wal/`), without its lock file.
fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to.join("wal")).unwrap();
    for sub in ["", "wal"] {
        for e in fs::read_dir(from.join(sub)).unwrap().flatten() {
            if e.file_type().unwrap().is_file() && e.file_name() != "LOCK" {
                fs::copy(e.path(), to.join(sub).join(e.file_name())).unwrap();
            }
        }
    }
}

/// Every tree's name and whole contents.
type Contents = Vec<(String, Vec<(Vec<u8>, Vec<u8>)>)>;

fn contents(db: &Db) -> Contents {
    let mut out = Vec::new();
    for (name, id) in db.list_trees().unwrap() {
        let kv = db
            .transaction(|tx| {
                let mut kv = Vec::new();
                tx.scan(
                    id,
                    std::ops::Bound::Unbounded,
                    std::ops::Bound::Unbounded,
                    |k, v| {
                        kv.push((k.to_vec(), v.to_vec()));
                        std::ops::ControlFlow::Continue(())
                    },
                )?;
                Ok(kv)
            })
            .unwrap();
        out.push((name, kv));
    }
    out
}

/// The goal of issue 12 for damaged files: a byte flipped anywhere in the
/// superblock, an allocation file, the page file or the log of a cleanly
/// closed database ends in an error that names the file (or the page), or
/// in a recovery with every acknowledged write — never in less data served
/// as if nothing happened.
#[test]
fn a_flipped_byte_in_any_file_is_a_named_error_or_a_full_recovery() {
    use rand::{Rng, SeedableRng};
    let template = TempDir::new().unwrap();
    {
        let db = Db::open(template.path(), opts()).unwrap();
        for name in ["a", "b"] {
            let t = db.create_tree(name).unwrap();
            for k in 0..300u32 {
                let len = [10, 900, 5_000][k as usize % 3];
                db.put(t, &k.to_be_bytes(), &vec![k as u8; len]).unwrap();
            }
        }
        db.checkpoint().unwrap();
        let a = db.open_tree("a").unwrap().unwrap();
        for k in 0..100u32 {
            db.put(a, &k.to_be_bytes(), &vec![!k as u8; 3_000]).unwrap();
        }
        db.close().unwrap();
    }
    let want = contents(&Db::open(template.path(), opts()).unwrap());
    let mut files: Vec<(String, u64)> = Vec::new();
    for sub in ["", "wal"] {
        for e in fs::read_dir(template.path().join(sub)).unwrap().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if e.file_type().unwrap().is_file() && name != "LOCK" {
                let rel = if sub.is_empty() {
                    name
                } else {
                    format!("wal/{name}")
                };
                files.push((rel, e.metadata().unwrap().len()));
            }
        }
    }
    let seed = std::env::var("RIME_DAMAGE_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let (mut errors, mut recovered) = (0, 0);
    for (rel, len) in &files {
        for _ in 0..12 {
            // Half the flips in the first 64 KiB, where headers and the
            // newest records are; half anywhere.
            let end = if rng.gen_bool(0.5) {
                (*len).min(64 << 10)
            } else {
                *len
            };
            let at = rng.gen_range(0..end.max(1));
            let dir = TempDir::new().unwrap();
            copy_dir(template.path(), dir.path());
            let path = dir.path().join(rel);
            let mut bytes = fs::read(&path).unwrap();
            bytes[at as usize] ^= 1 << rng.gen_range(0..8);
            fs::write(&path, &bytes).unwrap();
            let what = format!("seed {seed}: bit flipped in {rel} at byte {at}");
            match Db::open(dir.path(), opts()) {
                Ok(db) => {
                    db.verify()
                        .unwrap_or_else(|e| panic!("{what}: opened, but {e}"));
                    assert!(contents(&db) == want, "{what}: opened with other contents");
                    recovered += 1;
                }
                Err(e) => {
                    let msg = e.to_string();
                    let file = rel.rsplit('/').next().unwrap();
                    let named = msg.contains(file)
                        || (file == "pages.db" && msg.contains("page "))
                        || (rel.starts_with("wal/") && msg.contains("log"))
                        || (file == "superblock" && msg.contains("superblock"));
                    assert!(named, "{what}: the error does not name the file: {msg}");
                    errors += 1;
                }
            }
        }
    }
    eprintln!(
        "{} files, {errors} named errors, {recovered} full recoveries",
        files.len()
    );
    assert!(errors > 0 && recovered > 0);
}
