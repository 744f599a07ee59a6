//! The fault-injection seam shared by the storage tests: every file of a
//! data directory opened through a `FaultyFile` (a test double that exists
//! only to inject faults) holding unsynced writes, so a test can cut the
//! power and drop them, or tear them.
#![allow(dead_code)]

use rime_bufmgr::io::{BlockFile, FaultPlan, FaultyFile, IoBackend, open_block_file};
use rime_storage::Options;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Every file opened so far, by path.
pub type Files = Arc<Mutex<HashMap<PathBuf, Arc<FaultyFile>>>>;

/// `opts` with every file opened as a `FaultyFile` that holds unsynced writes.
pub fn faulty(opts: Options) -> (Options, Files) {
    let files: Files = Arc::default();
    let seen = files.clone();
    let opts = opts.with_file_opener(Arc::new(move |p: &Path| {
        let inner = open_block_file(p, IoBackend::Auto)?;
        let plan = FaultPlan {
            hold_unsynced: true,
            ..FaultPlan::default()
        };
        let file = Arc::new(FaultyFile::new(inner, plan));
        seen.lock().unwrap().insert(p.to_path_buf(), file.clone());
        Ok(file as Arc<dyn BlockFile>)
    }));
    (opts, files)
}

/// A power cut: every write not yet synced, in every file, is lost.
pub fn power_cut(files: &Files) {
    for f in files.lock().unwrap().values() {
        f.crash();
    }
}

/// From now on every `fdatasync` of a log segment fails (the writes are
/// still held, so a later cut can drop or tear them).
pub fn fail_log_syncs(files: &Files) {
    for (p, f) in files.lock().unwrap().iter() {
        if p.parent().is_some_and(|d| d.ends_with("wal")) {
            f.set_plan(FaultPlan {
                hold_unsynced: true,
                fail_sync: true,
                ..FaultPlan::default()
            });
        }
    }
}
