//! Log segments: preallocated files, named by their start LSN; each new one
//! doubles the newest one's size up to a cap (see `WalOptions`).
//!
//! `wal-00000000000000065536.log` holds the log bytes `[65536, 65536 + len)`
//! where `len` is the file's length. Segments are contiguous: each one starts
//! where the previous ends. The name carries the LSN in zero-padded decimal
//! (20 digits hold any u64), so names sort in log order and match the LSNs
//! printed in errors.
//!
//! Preallocation writes zeros rather than calling `fallocate`: `fallocate`
//! leaves *unwritten* extents, and the first write into each one converts it
//! and makes every following `fdatasync` commit file-system metadata too.
//! Zero-filled blocks are plain overwrites, so a commit's `fdatasync` flushes
//! data only (the reason PostgreSQL zero-fills its WAL segments). Zeros are
//! also what the reader expects past the end of the log: a blank header.

use super::{FileOpener, Lsn};
use crate::error::WalError;
use rime_bufmgr::io::{AlignedBuf, BlockFile, WriteOp};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

const PREFIX: &str = "wal-";
const SUFFIX: &str = ".log";
/// Suffix of a segment being preallocated; never read, removed at open.
const TMP_SUFFIX: &str = ".log.tmp";
/// Decimal digits of the largest u64.
const LSN_DIGITS: usize = 20;
/// Bytes of zeros per write while preallocating: big enough to stream at
/// disk speed, small enough not to matter as a buffer.
const PREALLOC_CHUNK: usize = 1 << 20;

/// An open segment.
pub struct Segment {
    pub start: Lsn,
    pub size: u64,
    pub path: PathBuf,
    pub file: Arc<dyn BlockFile>,
}

impl Segment {
    /// The LSN just past this segment.
    pub fn end(&self) -> Lsn {
        Lsn(self.start.0 + self.size)
    }

    pub fn contains(&self, lsn: u64) -> bool {
        self.start.0 <= lsn && lsn < self.end().0
    }
}

/// A segment found on disk, not opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentInfo {
    pub start: Lsn,
    pub size: u64,
    pub path: PathBuf,
}

impl SegmentInfo {
    pub fn end(&self) -> Lsn {
        Lsn(self.start.0 + self.size)
    }
}

/// `wal-<start>.log`.
pub fn file_name(start: Lsn) -> String {
    format!("{PREFIX}{:0width$}{SUFFIX}", start.0, width = LSN_DIGITS)
}

/// The start LSN named by a segment file name, or `None` for other files.
pub fn parse_file_name(name: &str) -> Option<Lsn> {
    let digits = name.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?;
    if digits.len() != LSN_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().map(Lsn)
}

/// The segments in `dir`, in LSN order. Leftover preallocation files of a
/// crashed rollover are deleted. Continuity is the reader's concern.
pub fn list(dir: &Path) -> Result<Vec<SegmentInfo>, WalError> {
    let fs_err = |source| WalError::Fs {
        path: dir.to_path_buf(),
        source,
    };
    let mut segments = Vec::new();
    for entry in fs::read_dir(dir).map_err(fs_err)? {
        let entry = entry.map_err(fs_err)?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let path = entry.path();
        if name.starts_with(PREFIX) && name.ends_with(TMP_SUFFIX) {
            fs::remove_file(&path).map_err(|source| WalError::Fs {
                path: path.clone(),
                source,
            })?;
            continue;
        }
        if let Some(start) = parse_file_name(name) {
            let size = entry
                .metadata()
                .map_err(|source| WalError::Fs {
                    path: path.clone(),
                    source,
                })?
                .len();
            segments.push(SegmentInfo { start, size, path });
        }
    }
    segments.sort_by_key(|s| s.start);
    Ok(segments)
}

/// Opens an existing segment.
pub fn open(info: &SegmentInfo, opener: &FileOpener) -> Result<Segment, WalError> {
    let file = opener(&info.path).map_err(|source| WalError::Io {
        path: info.path.clone(),
        source,
    })?;
    Ok(Segment {
        start: info.start,
        size: info.size,
        path: info.path.clone(),
        file,
    })
}

/// Creates a segment of `size` zeroed bytes starting at `start`.
///
/// Crash-safe: until step 4 the file has a temporary name that [`list`]
/// deletes, so a half-preallocated segment is never mistaken for log.
pub fn create(dir: &Path, start: Lsn, size: u64, opener: &FileOpener) -> Result<Segment, WalError> {
    let path = dir.join(file_name(start));
    let tmp = dir.join(format!(
        "{PREFIX}{:0width$}{TMP_SUFFIX}",
        start.0,
        width = LSN_DIGITS
    ));
    let io_err = |source| WalError::Io {
        path: tmp.clone(),
        source,
    };

    // 1. A fresh temporary file (a leftover of a crash is discarded).
    match fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(WalError::Fs {
                path: tmp.clone(),
                source,
            });
        }
    }
    let file = opener(&tmp).map_err(io_err)?;

    // 2. Zero-fill every block, so later overwrites need no metadata.
    file.set_len(size).map_err(io_err)?;
    let zeros = AlignedBuf::zeroed(PREALLOC_CHUNK);
    let mut offset = 0u64;
    while offset < size {
        let n = (size - offset).min(PREALLOC_CHUNK as u64) as usize;
        file.write_batch(&[WriteOp {
            offset,
            data: &zeros[..n],
        }])
        .map_err(io_err)?;
        offset += n as u64;
    }

    // 3. The zeros and the length are durable.
    file.sync_data().map_err(io_err)?;

    // 4. Publish under the real name, durably.
    fs::rename(&tmp, &path).map_err(|source| WalError::Fs {
        path: path.clone(),
        source,
    })?;
    sync_dir(dir)?;
    Ok(Segment {
        start,
        size,
        path,
        file,
    })
}

/// Deletes segment files and makes the deletion durable.
pub fn remove(dir: &Path, paths: &[PathBuf]) -> Result<(), WalError> {
    for p in paths {
        fs::remove_file(p).map_err(|source| WalError::Fs {
            path: p.clone(),
            source,
        })?;
    }
    if !paths.is_empty() {
        sync_dir(dir)?;
    }
    Ok(())
}

/// `fsync` on a directory: makes creations, renames and deletions in it
/// durable.
pub fn sync_dir(dir: &Path) -> Result<(), WalError> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| WalError::Fs {
            path: dir.to_path_buf(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_sort_in_lsn_order() {
        let a = file_name(Lsn(4096));
        assert_eq!(a, "wal-00000000000000004096.log");
        assert_eq!(parse_file_name(&a), Some(Lsn(4096)));
        assert_eq!(
            parse_file_name(&file_name(Lsn(u64::MAX))),
            Some(Lsn(u64::MAX))
        );
        assert!(file_name(Lsn(9)) < file_name(Lsn(10)));
        for bad in [
            "wal-1.log",
            "wal-0000000000000000409x.log",
            "x-00000000000000004096.log",
            "wal-00000000000000004096.log.tmp",
        ] {
            assert_eq!(parse_file_name(bad), None, "{bad}");
        }
    }
}
