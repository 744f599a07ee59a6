//! The allocation state (`rime_bufmgr::AllocState`: high-water mark and
//! free frames), saved at each checkpoint in its own file.
//!
//! A new file `alloc-<redo LSN>.state` per checkpoint, written and synced
//! before the superblock that names it (the superblock's `alloc_state_lsn`
//! field holds that redo LSN); after the superblock is durable, files older
//! than the previous checkpoint's are deleted. So both superblock slots
//! name a complete file (the older one is the fallback when the newer slot
//! is damaged), and a crash mid-checkpoint leaves at most an orphan file
//! (deleted later).
//!
//! ```text
//!  magic "RIMEallc" | next_pid u64 | count u64 | count × (pid u64, pages u32) | crc32c u32 | zeros to 4 KiB
//! ```

use crate::bytes::{u32_at, u64_at};
use crate::wal::{FileOpener, Lsn};
use rime_bufmgr::AllocState;
use rime_bufmgr::io::{AlignedBuf, BLOCK_SIZE, IoError};
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"RIMEallc";
const HEADER: usize = 8 + 8 + 8;
const ENTRY: usize = 12;

/// Why an allocation-state file could not be written or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AllocFileError {
    #[error("{path}: {op} failed: {source}")]
    Io {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: IoError,
    },
    #[error("{path}: syncing its directory failed: {source}")]
    SyncDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is missing")]
    Missing { path: PathBuf },
    #[error("{path} is damaged: {reason}")]
    Damaged { path: PathBuf, reason: &'static str },
}

impl AllocFileError {
    /// The file it is about.
    pub fn path(&self) -> &Path {
        match self {
            AllocFileError::Io { path, .. }
            | AllocFileError::SyncDir { path, .. }
            | AllocFileError::Missing { path }
            | AllocFileError::Damaged { path, .. } => path,
        }
    }
}

pub fn path(root: &Path, redo: Lsn) -> PathBuf {
    root.join(format!("alloc-{:020}.state", redo.0))
}

/// Writes and syncs the file for the checkpoint with redo LSN `redo`.
pub fn write(
    root: &Path,
    redo: Lsn,
    state: &AllocState,
    opener: &FileOpener,
) -> Result<(), AllocFileError> {
    let mut bytes = Vec::with_capacity(HEADER + state.free.len() * ENTRY + 4);
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&state.next_pid.to_le_bytes());
    bytes.extend_from_slice(&(state.free.len() as u64).to_le_bytes());
    for (pid, n) in &state.free {
        bytes.extend_from_slice(&pid.to_le_bytes());
        bytes.extend_from_slice(&n.to_le_bytes());
    }
    let crc = crc32c::crc32c(&bytes);
    bytes.extend_from_slice(&crc.to_le_bytes());
    let len = bytes.len().div_ceil(BLOCK_SIZE) * BLOCK_SIZE;
    let mut buf = AlignedBuf::zeroed(len);
    buf[..bytes.len()].copy_from_slice(&bytes);
    let p = path(root, redo);
    let io = |op| {
        let path = p.clone();
        move |source| AllocFileError::Io { path, op, source }
    };
    let file = opener(&p).map_err(io("open"))?;
    file.set_len(len as u64).map_err(io("resize"))?;
    file.write_at(0, &buf).map_err(io("write"))?;
    file.sync_data().map_err(io("sync"))?;
    std::fs::File::open(root)
        .and_then(|d| d.sync_all())
        .map_err(|source| AllocFileError::SyncDir { path: p, source })
}

/// Reads the file of the checkpoint with redo LSN `redo`.
pub fn read(root: &Path, redo: Lsn, opener: &FileOpener) -> Result<AllocState, AllocFileError> {
    let p = path(root, redo);
    if !p.exists() {
        return Err(AllocFileError::Missing { path: p });
    }
    let io = |op| {
        let path = p.clone();
        move |source| AllocFileError::Io { path, op, source }
    };
    let damaged = |reason| AllocFileError::Damaged {
        path: p.clone(),
        reason,
    };
    let file = opener(&p).map_err(io("open"))?;
    let len = file.len_bytes().map_err(io("stat"))? as usize;
    if len < BLOCK_SIZE || !len.is_multiple_of(BLOCK_SIZE) {
        return Err(damaged("its length is not whole blocks"));
    }
    let mut buf = AlignedBuf::zeroed(len);
    file.read_at(0, &mut buf).map_err(io("read"))?;
    if &buf[..8] != MAGIC {
        return Err(damaged("bad magic"));
    }
    let next_pid = u64_at(&buf, 8);
    let count = u64_at(&buf, 16) as usize;
    let end = count
        .checked_mul(ENTRY)
        .and_then(|n| n.checked_add(HEADER))
        .filter(|&e| e + 4 <= len)
        .ok_or_else(|| damaged("its entry count exceeds the file"))?;
    let stored = u32_at(&buf, end);
    if crc32c::crc32c(&buf[..end]) != stored {
        return Err(damaged("checksum mismatch"));
    }
    let free = (0..count)
        .map(|i| {
            let o = HEADER + i * ENTRY;
            (u64_at(&buf, o), u32_at(&buf, o + 8))
        })
        .collect();
    Ok(AllocState { next_pid, free })
}

/// Deletes every allocation-state file except the one for `keep`.
pub fn remove_others(root: &Path, keep: &[Lsn]) {
    let keep_names: Vec<PathBuf> = keep.iter().map(|&lsn| path(root, lsn)).collect();
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        let name = e.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("alloc-")
            && name.ends_with(".state")
            && !keep_names.contains(&p)
            && let Err(err) = std::fs::remove_file(&p)
        {
            tracing::warn!(path = %p.display(), error = %err, "removing an old allocation-state file failed");
        }
    }
}
