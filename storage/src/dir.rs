//! The data directory: its layout and its exclusive lock.
//!
//! ```text
//! <root>/
//!   LOCK         empty; flock(LOCK_EX) by the process that has the directory open
//!   superblock   two 4 KiB slots, see crate::superblock
//!   pages.db     the page file (page id = offset / page size)
//!   alloc-<redo LSN>.state   allocation state of a checkpoint (the newest
//!                two are kept), see crate::allocfile
//!   wal/         log segments wal-<start LSN>.log, see crate::wal::segment
//!   CREATING     present only while a new database is being created
//! ```
//!
//! A directory holds a database once its superblock has a valid slot. Data
//! files without one are never taken for an empty directory: unless
//! `CREATING` says a creation was cut short, opening refuses and names them.
//!
//! Two processes writing one directory would destroy it (two logs, two
//! page caches), so opening takes `flock(LOCK_EX | LOCK_NB)` on `LOCK` and
//! holds it while the [`DataDir`] lives. `flock` locks belong to the open
//! file description, so a second open in the *same* process is refused as
//! well, and the kernel drops the lock when the holder dies — no stale lock
//! files after a crash (unlike a pid file). One subtlety: a child forked
//! while the lock is held shares the lock file's description until it
//! execs (the fd is close-on-exec), so a close racing a spawn may leave the
//! lock held for that short window.

use crate::error::DirError;
use rustix::fs::FlockOperation;
use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};

pub const LOCK_FILE: &str = "LOCK";
pub const SUPERBLOCK_FILE: &str = "superblock";
pub const PAGE_FILE: &str = "pages.db";
pub const WAL_DIR: &str = "wal";
/// Written (and synced) before a new database's first file, removed after
/// its superblock is durable: data files beside it are the leftovers of a
/// creation that crashed, and nothing in them was ever acknowledged.
pub const CREATING_FILE: &str = "CREATING";

/// An open, exclusively locked data directory.
#[derive(Debug)]
pub struct DataDir {
    root: PathBuf,
    /// Holds the flock; closing it (on drop) releases the lock.
    _lock: File,
}

impl DataDir {
    /// Opens `root`, creating it and its `wal/` folder if missing, and locks
    /// it. Fails with [`DirError::Locked`] if it is already open.
    pub fn open(root: &Path) -> Result<DataDir, DirError> {
        // 1. The directory.
        fs::create_dir_all(root).map_err(fs_err("create directory", root))?;

        // 2. The lock, before touching anything else in it.
        let lock_path = root.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(fs_err("open lock file", &lock_path))?;
        match rustix::fs::flock(&lock, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(rustix::io::Errno::WOULDBLOCK) => {
                return Err(DirError::Locked {
                    path: root.to_path_buf(),
                    lock: lock_path,
                });
            }
            Err(e) => {
                return Err(DirError::Fs {
                    op: "flock",
                    path: lock_path,
                    source: e.into(),
                });
            }
        }

        // 3. The log folder, durably (its entry lives in `root`).
        let wal = root.join(WAL_DIR);
        fs::create_dir_all(&wal).map_err(fs_err("create directory", &wal))?;
        File::open(root)
            .and_then(|d| d.sync_all())
            .map_err(fs_err("sync directory", root))?;

        Ok(DataDir {
            root: root.to_path_buf(),
            _lock: lock,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn superblock_path(&self) -> PathBuf {
        self.root.join(SUPERBLOCK_FILE)
    }

    pub fn page_file_path(&self) -> PathBuf {
        self.root.join(PAGE_FILE)
    }

    pub fn wal_dir(&self) -> PathBuf {
        self.root.join(WAL_DIR)
    }

    pub fn creating_path(&self) -> PathBuf {
        self.root.join(CREATING_FILE)
    }

    /// Durably marks (`true`) or unmarks a creation in progress.
    pub(crate) fn set_creating(&self, on: bool) -> Result<(), DirError> {
        let path = self.creating_path();
        if on {
            File::create(&path)
                .and_then(|f| f.sync_all())
                .map_err(fs_err("create", &path))?;
        } else if let Err(e) = fs::remove_file(&path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            return Err(fs_err("remove", &path)(e));
        }
        File::open(&self.root)
            .and_then(|d| d.sync_all())
            .map_err(fs_err("sync directory", &self.root))
    }

    /// The files that hold a database's data (page file, allocation
    /// states, log segments) present in the directory, non-empty ones only.
    pub(crate) fn data_files(&self) -> Vec<PathBuf> {
        let non_empty = |p: &Path| fs::metadata(p).is_ok_and(|m| m.len() > 0);
        let mut found = Vec::new();
        for dir in [self.root.clone(), self.wal_dir()] {
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            for e in entries.flatten() {
                let name = e.file_name();
                let name = name.to_string_lossy();
                let data = name == PAGE_FILE
                    || (name.starts_with("alloc-") && name.ends_with(".state"))
                    || (dir != self.root && name.starts_with("wal-"));
                if data && non_empty(&e.path()) {
                    found.push(e.path());
                }
            }
        }
        found.sort();
        found
    }
}

/// Maps an I/O error of operation `op` on `path` to a [`DirError`].
fn fs_err(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> DirError + use<> {
    let path = path.to_path_buf();
    move |source| DirError::Fs { op, path, source }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tempfile::TempDir;

    /// Set in the child process of `second_process_is_refused_while_the_first_holds_the_lock`.
    const PROBE_ENV: &str = "RIME_DIR_LOCK_PROBE";
    /// Child exit codes.
    const CHILD_SAW_LOCKED: i32 = 17;
    const CHILD_GOT_IN: i32 = 18;

    /// Serialises the tests that drop and retake a lock with the test that
    /// spawns a child: between fork and exec a child shares every open file
    /// description of the parent, flock included, so a lock dropped in that
    /// window is still held until the child execs.
    static SPAWN_GUARD: std::sync::Mutex<()> = std::sync::Mutex::new(());

    #[test]
    fn layout_is_created() {
        let tmp = TempDir::new().unwrap();
        let root = tmp.path().join("db");
        let d = DataDir::open(&root).unwrap();
        assert!(d.wal_dir().is_dir());
        assert!(root.join(LOCK_FILE).is_file());
        assert_eq!(d.superblock_path(), root.join("superblock"));
        assert_eq!(d.page_file_path(), root.join("pages.db"));
    }

    #[test]
    fn second_open_in_same_process_is_locked_until_the_first_closes() {
        let _serial = SPAWN_GUARD.lock().unwrap_or_else(|p| p.into_inner());
        let tmp = TempDir::new().unwrap();
        let first = DataDir::open(tmp.path()).unwrap();
        match DataDir::open(tmp.path()) {
            Err(DirError::Locked { path, .. }) => assert_eq!(path, tmp.path()),
            other => panic!("{other:?}"),
        }
        drop(first);
        DataDir::open(tmp.path()).unwrap();
    }

    #[test]
    fn second_process_is_refused_while_the_first_holds_the_lock() {
        let _serial = SPAWN_GUARD.lock().unwrap_or_else(|p| p.into_inner());
        let tmp = TempDir::new().unwrap();
        // The probe child's exit code says whether it found the dir locked.
        let probe = || {
            std::process::Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "dir::tests::lock_probe_child",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(PROBE_ENV, tmp.path())
                .status()
                .unwrap()
                .code()
        };
        let held = DataDir::open(tmp.path()).unwrap();
        assert_eq!(probe(), Some(CHILD_SAW_LOCKED));
        drop(held);
        // And once released, another process gets in.
        assert_eq!(probe(), Some(CHILD_GOT_IN));
    }

    /// Does nothing in a normal run; in the child process spawned above it
    /// tries to open the directory and reports the outcome as its exit code.
    #[test]
    fn lock_probe_child() {
        let Some(dir) = std::env::var_os(PROBE_ENV) else {
            return;
        };
        let code = match DataDir::open(Path::new(&dir)) {
            Err(DirError::Locked { .. }) => CHILD_SAW_LOCKED,
            Ok(_) => CHILD_GOT_IN,
            Err(_) => 1,
        };
        std::process::exit(code);
    }
}
