//! The superblock: the root of a data directory, double-written.
//!
//! The file holds two 4 KiB slots. Each write goes to the slot *not*
//! holding the current superblock, with the next sequence number, and is
//! synced; so a crash mid-write tears at most the slot being written, and
//! the other still holds the previous superblock. Opening validates both and
//! takes the valid one with the highest sequence (LMDB's two meta pages,
//! redb's double-buffered header).
//!
//! One slot:
//!
//! ```text
//!  byte 0        8     12    16      24      32      40      48      56      64         4092  4096
//!       +--------+-----+-----+-------+-------+-------+-------+-------+-------+-- ... --+------+
//!       | magic  | ver | pgsz| seq   | ckpt  | redo  | pages | catlg | alloc | zeros   | crc  |
//!       | 8 B    | u32 | u32 | u64   | u64   | u64   | u64   | u64   | u64   |         | u32  |
//!       +--------+-----+-----+-------+-------+-------+-------+-------+-------+-- ... --+------+
//!       \______________________ crc32c covers bytes 0..4092 ______________________/
//! ```
//!
//! * `magic`: identifies a Rime superblock.
//! * `ver`: format version; a newer one than this build knows is an error
//!   (never silently replaced by the older slot, which would roll back).
//! * `pgsz`: page size of the page file.
//! * `seq`: write sequence number; the valid slot with the highest wins.
//! * `ckpt`, `redo`: the last complete checkpoint's LSN and the LSN recovery
//!   replays from.
//! * `pages`: pages allocated in the page file.
//! * `catlg`: the root page id of the catalog tree.
//! * `alloc`: the redo LSN of the checkpoint whose allocation-state file
//!   (`alloc-<LSN>.state`, see `allocfile.rs`) goes with this superblock.
//!   Both are opaque here (the Db defines them).
//! * zeros: reserved; covered by the checksum.
//! * `crc`: crc32c of everything before it.
//!
//! Integers are little-endian.

use crate::bytes::{u32_at, u64_at};
use crate::error::{SlotError, SuperblockError};
use crate::wal::Lsn;
use rime_bufmgr::io::{AlignedBuf, BLOCK_SIZE, BlockFile};
use std::sync::Arc;

/// One slot: one block, the unit the disk writes atomically at best, and
/// what `O_DIRECT` requires anyway.
pub const SLOT_SIZE: usize = BLOCK_SIZE;
/// Two slots, written alternately.
pub const SLOTS: usize = 2;
pub const FILE_SIZE: u64 = (SLOT_SIZE * SLOTS) as u64;

pub const MAGIC: [u8; 8] = *b"RIMEsupr";
/// The format version this build writes and the newest it reads.
///
/// * 1: B+tree leaves keep values up to 512 bytes inline.
/// * 2: leaves keep an entry inline when slot + key + value fit
///   `rime_btree::MAX_LEAF_ENTRY` (values up to 1468 bytes). Version 1
///   data reads as is (a slot's LARGE flag says where its value lives); a
///   version-1 build must not open version 2 data, whose larger inline
///   values it cannot read.
/// * 3: the log may hold `Redistribute` SMO records (code 8: a full leaf's
///   entries moved to siblings). Version 2 data reads as is; a version-2
///   build must not open version 3 data, whose log it would report as
///   corrupt. Opening older data stamps it with this version first
///   ([`SuperblockFile::upgrade_format`]), before recovery can log anything.
/// * 4: `Smo` records may hold holed page images (kind bit 7: an image's
///   longest zero run is not stored; `smo.rs`). Version 3 data reads as
///   is (its records have the bit clear); a version-3 build must not open
///   version 4 data, whose holed records it would report as corrupt.
/// * 5: a node may skip the key bytes all its keys share before their
///   heads (`head_at`, header byte 21, `rime_btree::node`). Version 4 data
///   reads as is (the byte is 0 there, which is always valid); a version-4
///   build must not open version 5 data, whose heads it would misread.
pub const FORMAT_VERSION: u32 = 5;

pub const OFF_MAGIC: usize = 0;
pub const SIZE_MAGIC: usize = 8;
pub const OFF_VERSION: usize = OFF_MAGIC + SIZE_MAGIC;
pub const SIZE_VERSION: usize = 4;
pub const OFF_PAGE_SIZE: usize = OFF_VERSION + SIZE_VERSION;
pub const SIZE_PAGE_SIZE: usize = 4;
pub const OFF_SEQUENCE: usize = OFF_PAGE_SIZE + SIZE_PAGE_SIZE;
pub const SIZE_SEQUENCE: usize = 8;
pub const OFF_CHECKPOINT_LSN: usize = OFF_SEQUENCE + SIZE_SEQUENCE;
pub const SIZE_CHECKPOINT_LSN: usize = 8;
pub const OFF_REDO_LSN: usize = OFF_CHECKPOINT_LSN + SIZE_CHECKPOINT_LSN;
pub const SIZE_REDO_LSN: usize = 8;
pub const OFF_PAGE_COUNT: usize = OFF_REDO_LSN + SIZE_REDO_LSN;
pub const SIZE_PAGE_COUNT: usize = 8;
pub const OFF_CATALOG_ROOT: usize = OFF_PAGE_COUNT + SIZE_PAGE_COUNT;
pub const SIZE_CATALOG_ROOT: usize = 8;
pub const OFF_ALLOC_STATE_LSN: usize = OFF_CATALOG_ROOT + SIZE_CATALOG_ROOT;
pub const SIZE_ALLOC_STATE_LSN: usize = 8;
/// End of the defined fields; zeros from here to the checksum.
pub const FIELDS_END: usize = OFF_ALLOC_STATE_LSN + SIZE_ALLOC_STATE_LSN;
pub const SIZE_CRC: usize = 4;
pub const OFF_CRC: usize = SLOT_SIZE - SIZE_CRC;

const _: () = assert!(FIELDS_END == 64);
const _: () = assert!(FIELDS_END <= OFF_CRC, "fields must fit before the checksum");
const _: () = assert!(
    OFF_SEQUENCE.is_multiple_of(8) && OFF_ALLOC_STATE_LSN.is_multiple_of(8),
    "u64 fields stay 8-aligned"
);

/// The contents of a superblock (the sequence number is the file's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Superblock {
    pub page_size: u32,
    pub checkpoint_lsn: Lsn,
    pub redo_lsn: Lsn,
    pub page_count: u64,
    pub catalog_root: u64,
    pub alloc_state_lsn: u64,
}

impl Superblock {
    fn encode(&self, sequence: u64, out: &mut [u8]) {
        out[..SLOT_SIZE].fill(0);
        out[OFF_MAGIC..OFF_MAGIC + SIZE_MAGIC].copy_from_slice(&MAGIC);
        out[OFF_VERSION..OFF_VERSION + SIZE_VERSION].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        out[OFF_PAGE_SIZE..OFF_PAGE_SIZE + SIZE_PAGE_SIZE]
            .copy_from_slice(&self.page_size.to_le_bytes());
        for (off, v) in [
            (OFF_SEQUENCE, sequence),
            (OFF_CHECKPOINT_LSN, self.checkpoint_lsn.0),
            (OFF_REDO_LSN, self.redo_lsn.0),
            (OFF_PAGE_COUNT, self.page_count),
            (OFF_CATALOG_ROOT, self.catalog_root),
            (OFF_ALLOC_STATE_LSN, self.alloc_state_lsn),
        ] {
            out[off..off + 8].copy_from_slice(&v.to_le_bytes());
        }
        let crc = crc32c::crc32c(&out[..OFF_CRC]);
        out[OFF_CRC..OFF_CRC + SIZE_CRC].copy_from_slice(&crc.to_le_bytes());
    }
}

/// A slot that passed magic and checksum.
struct ValidSlot {
    version: u32,
    sequence: u64,
    sb: Superblock,
}

fn decode_slot(slot: &[u8]) -> Result<ValidSlot, SlotError> {
    if slot.iter().all(|&b| b == 0) {
        return Err(SlotError::Empty);
    }
    if slot[OFF_MAGIC..OFF_MAGIC + SIZE_MAGIC] != MAGIC {
        return Err(SlotError::BadMagic);
    }
    let stored = u32_at(slot, OFF_CRC);
    let computed = crc32c::crc32c(&slot[..OFF_CRC]);
    if stored != computed {
        return Err(SlotError::BadChecksum { stored, computed });
    }
    Ok(ValidSlot {
        version: u32_at(slot, OFF_VERSION),
        sequence: u64_at(slot, OFF_SEQUENCE),
        sb: Superblock {
            page_size: u32_at(slot, OFF_PAGE_SIZE),
            checkpoint_lsn: Lsn(u64_at(slot, OFF_CHECKPOINT_LSN)),
            redo_lsn: Lsn(u64_at(slot, OFF_REDO_LSN)),
            page_count: u64_at(slot, OFF_PAGE_COUNT),
            catalog_root: u64_at(slot, OFF_CATALOG_ROOT),
            alloc_state_lsn: u64_at(slot, OFF_ALLOC_STATE_LSN),
        },
    })
}

/// The superblock file, open.
pub struct SuperblockFile {
    file: Arc<dyn BlockFile>,
    sequence: u64,
    current: Superblock,
    /// The format version the slot in force was written with.
    version: u32,
}

impl SuperblockFile {
    /// Initialises a new superblock file with `initial` (sequence 1).
    pub fn create(
        file: Arc<dyn BlockFile>,
        initial: &Superblock,
    ) -> Result<SuperblockFile, SuperblockError> {
        file.set_len(FILE_SIZE)?;
        let mut f = SuperblockFile {
            file,
            sequence: 0,
            current: initial.clone(),
            version: FORMAT_VERSION,
        };
        f.write(initial)?;
        Ok(f)
    }

    /// Reads both slots and takes the valid one with the highest sequence.
    pub fn open(file: Arc<dyn BlockFile>) -> Result<SuperblockFile, SuperblockError> {
        let len = file.len_bytes()?;
        if len != FILE_SIZE {
            return Err(SuperblockError::BadFileLength {
                len,
                expected: FILE_SIZE,
            });
        }
        let mut buf = AlignedBuf::zeroed(FILE_SIZE as usize);
        file.read_at(0, &mut buf)?;
        let slot0 = decode_slot(&buf[..SLOT_SIZE]);
        let slot1 = decode_slot(&buf[SLOT_SIZE..2 * SLOT_SIZE]);
        let best = match (slot0, slot1) {
            (Ok(a), Ok(b)) => {
                if a.sequence >= b.sequence {
                    a
                } else {
                    b
                }
            }
            (Ok(a), Err(_)) => a,
            (Err(_), Ok(b)) => b,
            (Err(slot0), Err(slot1)) => return Err(SuperblockError::NoValidSlot { slot0, slot1 }),
        };
        if best.version > FORMAT_VERSION {
            return Err(SuperblockError::UnsupportedVersion {
                found: best.version,
                supported: FORMAT_VERSION,
            });
        }
        Ok(SuperblockFile {
            file,
            sequence: best.sequence,
            current: best.sb,
            version: best.version,
        })
    }

    /// The format version of the superblock in force.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// Stamps data of an older format version with this build's, by
    /// rewriting the superblock in force unchanged. Call before anything
    /// of the new version can reach the files (recovery's redo logs
    /// SMOs, `Redistribute` among them), so that an older build refuses
    /// them as too new rather than as corrupt. Returns whether it wrote.
    pub fn upgrade_format(&mut self) -> Result<bool, SuperblockError> {
        if self.version >= FORMAT_VERSION {
            return Ok(false);
        }
        let sb = self.current.clone();
        self.write(&sb)?;
        Ok(true)
    }

    /// The superblock in force.
    pub fn current(&self) -> &Superblock {
        &self.current
    }

    /// Its sequence number.
    pub fn sequence(&self) -> u64 {
        self.sequence
    }

    /// Durably replaces the superblock.
    ///
    /// On error the slot being written is in an unknown state and the
    /// previous superblock stays in force (in memory and in the other
    /// slot); the caller (the Db) treats the failure as fatal, like a failed
    /// log sync.
    pub fn write(&mut self, sb: &Superblock) -> Result<(), SuperblockError> {
        // 1. The next sequence goes to the slot not holding the current one.
        let sequence = self
            .sequence
            .checked_add(1)
            .ok_or(SuperblockError::Invalid("sequence number exhausted"))?;
        let slot = (sequence % SLOTS as u64) as usize;

        // 2. Encode and write that slot only.
        let mut buf = AlignedBuf::zeroed(SLOT_SIZE);
        sb.encode(sequence, &mut buf);
        self.file.write_at((slot * SLOT_SIZE) as u64, &buf)?;

        // 3. Durable before it counts.
        self.file.sync_data()?;
        self.sequence = sequence;
        self.current = sb.clone();
        self.version = FORMAT_VERSION;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rime_bufmgr::io::{FaultPlan, FaultyFile, IoBackend, open_block_file};
    use tempfile::TempDir;

    fn sb(n: u64) -> Superblock {
        Superblock {
            page_size: 4096,
            checkpoint_lsn: Lsn(n * 100),
            redo_lsn: Lsn(n * 90),
            page_count: n,
            catalog_root: n + 1,
            alloc_state_lsn: n + 2,
        }
    }

    fn real(dir: &TempDir) -> Arc<dyn BlockFile> {
        open_block_file(&dir.path().join("superblock"), IoBackend::Auto).unwrap()
    }

    fn corrupt_slot(dir: &TempDir, slot: usize) {
        let path = dir.path().join("superblock");
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[slot * SLOT_SIZE + OFF_PAGE_COUNT] ^= 0x40;
        std::fs::write(&path, bytes).unwrap();
    }

    #[test]
    fn writes_alternate_slots_and_reopen_takes_the_newest() {
        let dir = TempDir::new().unwrap();
        let mut f = SuperblockFile::create(real(&dir), &sb(1)).unwrap();
        for n in 2..=5 {
            f.write(&sb(n)).unwrap();
        }
        drop(f);
        let f = SuperblockFile::open(real(&dir)).unwrap();
        assert_eq!(f.sequence(), 5);
        assert_eq!(f.current(), &sb(5));
    }

    #[test]
    fn torn_newest_slot_falls_back_to_the_previous_superblock() {
        let dir = TempDir::new().unwrap();
        let faulty = Arc::new(FaultyFile::new(real(&dir), FaultPlan::default()));
        let mut f = SuperblockFile::create(faulty.clone(), &sb(1)).unwrap();
        f.write(&sb(2)).unwrap();
        // The write of sequence 3 reaches the disk only in part: a power cut
        // after 100 bytes of the slot.
        faulty.set_plan(FaultPlan {
            hold_unsynced: true,
            fail_sync: true,
            ..FaultPlan::default()
        });
        assert!(f.write(&sb(3)).is_err());
        faulty.crash_keeping(0, 100);
        let f = SuperblockFile::open(real(&dir)).unwrap();
        assert_eq!((f.sequence(), f.current()), (2, &sb(2)));
    }

    #[test]
    fn corrupt_newest_slot_falls_back_to_the_previous_superblock() {
        let dir = TempDir::new().unwrap();
        let mut f = SuperblockFile::create(real(&dir), &sb(1)).unwrap();
        f.write(&sb(2)).unwrap(); // sequence 2 → slot 0
        drop(f);
        corrupt_slot(&dir, 0);
        let f = SuperblockFile::open(real(&dir)).unwrap();
        assert_eq!((f.sequence(), f.current()), (1, &sb(1)));
    }

    #[test]
    fn both_slots_corrupt_is_no_valid_slot() {
        let dir = TempDir::new().unwrap();
        let mut f = SuperblockFile::create(real(&dir), &sb(1)).unwrap();
        f.write(&sb(2)).unwrap();
        drop(f);
        corrupt_slot(&dir, 0);
        corrupt_slot(&dir, 1);
        match SuperblockFile::open(real(&dir)) {
            Err(SuperblockError::NoValidSlot { slot0, slot1 }) => {
                assert!(matches!(slot0, SlotError::BadChecksum { .. }));
                assert!(matches!(slot1, SlotError::BadChecksum { .. }));
            }
            other => panic!("{:?}", other.map(|f| f.sequence())),
        }
    }

    #[test]
    fn blank_file_is_no_valid_slot_and_foreign_file_is_bad_magic() {
        let dir = TempDir::new().unwrap();
        let file = real(&dir);
        file.set_len(FILE_SIZE).unwrap();
        assert!(matches!(
            SuperblockFile::open(file.clone()),
            Err(SuperblockError::NoValidSlot {
                slot0: SlotError::Empty,
                slot1: SlotError::Empty
            })
        ));
        let mut junk = AlignedBuf::zeroed(FILE_SIZE as usize);
        junk.fill(0xab);
        file.write_at(0, &junk).unwrap();
        assert!(matches!(
            SuperblockFile::open(file),
            Err(SuperblockError::NoValidSlot {
                slot0: SlotError::BadMagic,
                slot1: SlotError::BadMagic
            })
        ));
    }

    #[test]
    fn newer_format_version_is_refused_not_rolled_back() {
        let dir = TempDir::new().unwrap();
        let mut f = SuperblockFile::create(real(&dir), &sb(1)).unwrap();
        f.write(&sb(2)).unwrap(); // slot 0, sequence 2
        drop(f);
        // Rewrite slot 0 as a future version with a valid checksum.
        let path = dir.path().join("superblock");
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[OFF_VERSION..OFF_VERSION + 4].copy_from_slice(&(FORMAT_VERSION + 1).to_le_bytes());
        let crc = crc32c::crc32c(&bytes[..OFF_CRC]);
        bytes[OFF_CRC..OFF_CRC + 4].copy_from_slice(&crc.to_le_bytes());
        std::fs::write(&path, bytes).unwrap();
        assert!(matches!(
            SuperblockFile::open(real(&dir)),
            Err(SuperblockError::UnsupportedVersion { found, supported })
                if found == FORMAT_VERSION + 1 && supported == FORMAT_VERSION
        ));
    }

    #[test]
    fn older_format_version_still_opens() {
        // Version 1 data (values above 512 bytes always in extents) and
        // version 2 data (no redistribution records in its log) read as is.
        for old in [1u32, 2] {
            let dir = TempDir::new().unwrap();
            let mut f = SuperblockFile::create(real(&dir), &sb(1)).unwrap();
            f.write(&sb(2)).unwrap();
            drop(f);
            let path = dir.path().join("superblock");
            let mut bytes = std::fs::read(&path).unwrap();
            for slot in 0..SLOTS {
                let b = &mut bytes[slot * SLOT_SIZE..(slot + 1) * SLOT_SIZE];
                b[OFF_VERSION..OFF_VERSION + 4].copy_from_slice(&old.to_le_bytes());
                let crc = crc32c::crc32c(&b[..OFF_CRC]);
                b[OFF_CRC..OFF_CRC + 4].copy_from_slice(&crc.to_le_bytes());
            }
            std::fs::write(&path, bytes).unwrap();
            let mut f = SuperblockFile::open(real(&dir)).unwrap();
            assert_eq!(f.current(), &sb(2), "version {old}");
            assert_eq!(f.version(), old);
            assert!(f.upgrade_format().unwrap(), "version {old} is stamped");
            assert!(!f.upgrade_format().unwrap(), "once");
            let f = SuperblockFile::open(real(&dir)).unwrap();
            assert_eq!((f.current(), f.version()), (&sb(2), FORMAT_VERSION));
        }
    }

    #[test]
    fn wrong_file_length_is_an_error() {
        let dir = TempDir::new().unwrap();
        let file = real(&dir);
        file.set_len(BLOCK_SIZE as u64).unwrap();
        assert!(matches!(
            SuperblockFile::open(file),
            Err(SuperblockError::BadFileLength { len: 4096, .. })
        ));
    }
}
