//! Opening a data directory: creating a new database, or recovering one.
//!
//! Recovery (the argument is in `docs/transactions.md`, "Recovery"):
//!
//! 1. Lock the directory; read the superblock (the newer valid slot) and
//!    the allocation state of its checkpoint.
//! 2. **Analysis**: read the log from the redo LSN to its end. A torn tail
//!    ends the log with a warning; damage before it is an error. Replay the
//!    SMOs' `allocated`/`freed` onto the checkpoint's allocation state, and
//!    note each tree's last `Destroy`.
//! 3. Reopen the log for appending at its end; open the pool with the
//!    allocation state from step 2 (so no allocation during redo can take
//!    a page the log says is in use).
//! 4. **Redo SMOs** (physical), in log order: write each after-image to its
//!    page if the page is in use at the end of the log and its LSN is older
//!    than the record (a page never written, beyond the file, or torn gets
//!    the image through `BufferManager::recover_page`). Afterwards every
//!    page has the structure of its last logged SMO: the trees' shape is
//!    the shape at the end of the log.
//! 5. **Redo commits** (logical), in log order, through the trees:
//!    `at_lsn(lsn).upsert(key, lsn ‖ value)` / `remove(key)`, skipping
//!    writes to a tree below its last `Destroy`. New SMOs this causes are
//!    logged after the old end.
//!    Redo frees no extent a replayed write stops referencing: the
//!    reference may be stale (see `sweep`).
//! 6. **Sweep** (after any replay): walk the catalog and every tree it
//!    names, and free every allocated page none of them reaches; two
//!    owners of one page is corruption. Open the trees; verify as
//!    `Options::verify_on_open` says; checkpoint (so the next crash
//!    replays from here, with the swept allocation state).

use crate::allocfile;
use crate::db::{Counters, Db, DbInner};
use crate::dir::DataDir;
use crate::error::{DbError, OpenError, WalError};
use crate::hooks::{decode_smo, LogHooks, SmoCode, WalBeforeData};
use crate::options::{Options, VerifyOnOpen};
use crate::superblock::{Superblock, SuperblockFile};
use crate::sweep::RedoHooks;
use crate::wal::{EndKind, Lsn, OwnedRecord, Record, Wal, WalOptions, WalReader};
use rime_btree::BTree;
use rime_bufmgr::{AllocState, BufferManager, Config, PageError, PageId, PAGE_SIZE};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};

pub(crate) fn open(root: &Path, opts: Options) -> Result<Db, OpenError> {
    opts.validate()?;
    let dir = DataDir::open(root)?;
    let wal_opts = WalOptions::new(opts.durability)
        .with_segment_size(opts.segment_size)
        .with_opener(opts.opener.clone());
    if superblock_written(&dir, &opts)? {
        return recover(dir, opts, wal_opts);
    }
    // No database yet, a creation that crashed, or a lost superblock.
    let found = dir.data_files();
    if !found.is_empty() && !dir.creating_path().exists() {
        return Err(OpenError::NoSuperblock {
            superblock: dir.superblock_path(),
            found,
        });
    }
    create(dir, opts, wal_opts)
}

/// Whether the directory holds a database: a superblock file with at least
/// one slot ever written. A file that is missing, empty, or all zeros is a
/// new directory, a creation that crashed before its first superblock write
/// completed (`CREATING` is present), or a lost superblock (`open` tells
/// them apart by the data files).
fn superblock_written(dir: &DataDir, opts: &Options) -> Result<bool, OpenError> {
    use crate::error::{SlotError, SuperblockError};
    let path = dir.superblock_path();
    if !path.exists() {
        return Ok(false);
    }
    match SuperblockFile::open((opts.opener)(&path).map_err(io_err(&path))?) {
        Ok(_) => Ok(true),
        Err(SuperblockError::BadFileLength { len: 0, .. })
        | Err(SuperblockError::NoValidSlot {
            slot0: SlotError::Empty,
            slot1: SlotError::Empty,
        }) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

fn io_err(path: &Path) -> impl FnOnce(rime_bufmgr::io::IoError) -> OpenError + '_ {
    move |source| OpenError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn rec_err(e: impl Into<DbError>) -> OpenError {
    OpenError::Recovery(e.into())
}

/// A new database. Until its superblock exists nothing in the directory
/// counts: leftovers of an earlier creation that crashed are removed.
fn create(dir: DataDir, opts: Options, wal_opts: WalOptions) -> Result<Db, OpenError> {
    // 1. Mark the creation, then clear leftovers of an earlier one that
    //    crashed (nothing is acknowledged before the superblock exists).
    dir.set_creating(true)?;
    let wal_dir = dir.wal_dir();
    for e in std::fs::read_dir(&wal_dir)
        .map_err(|source| WalError::Fs {
            path: wal_dir.clone(),
            source,
        })?
        .flatten()
    {
        let _ = std::fs::remove_file(e.path());
    }
    let _ = std::fs::remove_file(dir.page_file_path());
    allocfile::remove_others(dir.root(), &[]);
    // 2. The log, starting with a record at LSN 0 (so no page change ever
    //    has LSN 0, which means "never stamped").
    let wal = Arc::new(Wal::create(&wal_dir, wal_opts)?);
    wal.append(&Record::CheckpointBegin { redo_lsn: Lsn(0) })?;
    // 3. The pool and the catalog tree.
    let page_path = dir.page_file_path();
    let file = (opts.opener)(&page_path).map_err(io_err(&page_path))?;
    let bm = open_pool(file, &opts, &wal, None)?;
    let hooks = Arc::new(LogHooks { wal: wal.clone() });
    let catalog = BTree::create(bm.clone(), hooks.clone()).map_err(rec_err)?;
    // 4. The superblock, replaying from LSN 0; the checkpoint below
    //    replaces it at once.
    allocfile::write(
        dir.root(),
        Lsn(0),
        &AllocState {
            next_pid: 1,
            free: Vec::new(),
        },
        &opts.opener,
    )?;
    wal.flush()?;
    bm.flush_dirty().map_err(rec_err)?;
    bm.sync().map_err(io_err(&page_path))?;
    let sb_path = dir.superblock_path();
    let sb_file = (opts.opener)(&sb_path).map_err(io_err(&sb_path))?;
    let sb = SuperblockFile::create(
        sb_file,
        &Superblock {
            page_size: PAGE_SIZE as u32,
            checkpoint_lsn: Lsn(0),
            redo_lsn: Lsn(0),
            page_count: bm.allocated_pages(),
            catalog_root: catalog.root(),
            free_list_root: 0,
        },
    )?;
    dir.set_creating(false)?;
    finish(dir, opts, wal, bm, hooks, catalog, sb, 0, false)
}

fn open_pool(
    file: Arc<dyn rime_bufmgr::io::BlockFile>,
    opts: &Options,
    wal: &Arc<Wal>,
    alloc: Option<AllocState>,
) -> Result<Arc<BufferManager>, OpenError> {
    let config = Config {
        pool_bytes: opts.pool_bytes,
        max_bytes: opts.max_bytes,
        write_back: Some(Arc::new(WalBeforeData { wal: wal.clone() })),
        alloc,
        ..Config::default()
    };
    Ok(Arc::new(BufferManager::open(file, config)?))
}

/// The allocation state replayed forward through SMO records.
struct AllocModel {
    next: PageId,
    /// Free runs: first page → length.
    free: BTreeMap<PageId, u32>,
}

impl AllocModel {
    fn new(s: &AllocState) -> Self {
        AllocModel {
            next: s.next_pid.max(1),
            free: s.free.iter().copied().collect(),
        }
    }

    fn run_containing(&self, pid: PageId) -> Option<(PageId, u32)> {
        let (&start, &len) = self.free.range(..=pid).next_back()?;
        (pid < start + u64::from(len)).then_some((start, len))
    }

    fn is_free(&self, pid: PageId) -> bool {
        pid >= self.next || self.run_containing(pid).is_some()
    }

    fn allocate(&mut self, pid: PageId) {
        if pid >= self.next {
            for p in self.next..pid {
                self.free.insert(p, 1);
            }
            self.next = pid + 1;
        } else if let Some((start, len)) = self.run_containing(pid) {
            self.free.remove(&start);
            if pid > start {
                self.free.insert(start, (pid - start) as u32);
            }
            let end = start + u64::from(len);
            if pid + 1 < end {
                self.free.insert(pid + 1, (end - pid - 1) as u32);
            }
        }
    }

    fn release(&mut self, pid: PageId, pages: u32) {
        for p in pid..pid + u64::from(pages) {
            self.allocate(p); // normalise: no overlap with an existing run
        }
        self.free.insert(pid, pages);
    }

    fn state(&self) -> AllocState {
        AllocState {
            next_pid: self.next,
            free: self.free.iter().map(|(&p, &n)| (p, n)).collect(),
        }
    }
}

/// Iterates the records of the log from `from`, stopping before `end`.
fn records(
    wal_dir: &Path,
    from: Lsn,
    end: Lsn,
    opts: &WalOptions,
    mut f: impl FnMut(Lsn, &OwnedRecord) -> Result<(), OpenError>,
) -> Result<(), OpenError> {
    for rec in WalReader::open(wal_dir, from, opts)? {
        let rec = rec?;
        if rec.lsn >= end {
            break;
        }
        f(rec.lsn, &rec.record)?;
    }
    Ok(())
}

fn recover(dir: DataDir, opts: Options, wal_opts: WalOptions) -> Result<Db, OpenError> {
    // Step 1.
    let sb_path = dir.superblock_path();
    let sbf = SuperblockFile::open((opts.opener)(&sb_path).map_err(io_err(&sb_path))?)?;
    let sb = sbf.current().clone();
    if sb.page_size != PAGE_SIZE as u32 {
        return Err(OpenError::Config(
            "the page file's page size differs from this build's",
        ));
    }
    let saved = allocfile::read(dir.root(), Lsn(sb.free_list_root), &opts.opener)?;

    // Step 2: analysis, to the end of the log.
    let wal_dir = dir.wal_dir();
    let mut model = AllocModel::new(&saved);
    let mut last_destroy: HashMap<u32, Lsn> = HashMap::new();
    let mut replayable = 0u64;
    let mut reader = WalReader::open(&wal_dir, sb.redo_lsn, &wal_opts)?;
    let mut first = true;
    for rec in reader.by_ref() {
        let rec = rec?;
        if std::mem::take(&mut first) {
            check_redo_record(&wal_dir, sb.redo_lsn, Some(&rec))?;
        }
        match &rec.record {
            OwnedRecord::Smo(payload) => {
                let smo = decode_smo(payload).ok_or_else(|| bad_smo(rec.lsn))?;
                for &p in &smo.allocated {
                    model.allocate(p);
                }
                if smo.kind == SmoCode::Create {
                    model.allocate(smo.root);
                }
                for &(p, n) in &smo.freed {
                    model.release(p, n);
                }
                if smo.kind == SmoCode::Destroy {
                    last_destroy.insert(smo.root as u32, rec.lsn);
                }
                replayable += 1;
            }
            OwnedRecord::Commit(_) => replayable += 1,
            _ => {}
        }
    }
    if first {
        check_redo_record(&wal_dir, sb.redo_lsn, None)?;
    }
    let end = reader
        .end()
        .cloned()
        .ok_or_else(|| rec_err(DbError::Corrupt("log reader stopped early".into())))?;
    if let EndKind::TornTail { reason } = end.kind() {
        tracing::warn!(lsn = end.lsn().0, reason = %reason, "the log ends in a torn tail (a write the crash cut short); it ends there");
    }
    let end_lsn = end.lsn();

    // Step 3.
    let wal = Arc::new(Wal::open(&wal_dir, wal_opts.clone(), end)?);
    let page_path = dir.page_file_path();
    let file = (opts.opener)(&page_path).map_err(io_err(&page_path))?;
    let file_pages = file.len_bytes().map_err(io_err(&page_path))? / PAGE_SIZE as u64;
    let bm = open_pool(file, &opts, &wal, Some(model.state()))?;
    let hooks = Arc::new(LogHooks { wal: wal.clone() });

    // Step 4: SMO after-images.
    records(&wal_dir, sb.redo_lsn, end_lsn, &wal_opts, |lsn, rec| {
        let OwnedRecord::Smo(payload) = rec else {
            return Ok(());
        };
        let smo = decode_smo(payload).ok_or_else(|| bad_smo(lsn))?;
        for &(pid, image) in &smo.pages {
            if model.is_free(pid) {
                continue; // freed later in the log: its image is moot
            }
            let mut page = match bm.exclusive(pid) {
                Ok(g) if g.lsn() >= lsn.0 => continue,
                Ok(g) => g,
                Err(PageError::NeverWritten { .. } | PageError::Corrupt { .. }) => {
                    bm.recover_page(pid).map_err(rec_err)?
                }
                Err(PageError::Io { .. }) if pid >= file_pages => {
                    bm.recover_page(pid).map_err(rec_err)?
                }
                Err(e) => return Err(rec_err(e)),
            };
            page.payload_mut().copy_from_slice(image);
            page.set_lsn(lsn.0);
        }
        Ok(())
    })?;

    // Step 5: commits, through the trees (freeing no extent: see `sweep`).
    let redo_hooks = Arc::new(RedoHooks(hooks.clone()));
    let mut trees: HashMap<u32, BTree> = HashMap::new();
    let mut stored = Vec::new();
    records(&wal_dir, sb.redo_lsn, end_lsn, &wal_opts, |lsn, rec| {
        let OwnedRecord::Commit(writes) = rec else {
            return Ok(());
        };
        for w in writes {
            if last_destroy.get(&w.tree.0).is_some_and(|&d| d > lsn) {
                continue; // the tree was dropped later
            }
            let tree = match trees.entry(w.tree.0) {
                std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
                std::collections::hash_map::Entry::Vacant(v) => v.insert(
                    BTree::open(bm.clone(), u64::from(w.tree.0), redo_hooks.clone())
                        .map_err(rec_err)?,
                ),
            };
            crate::commit::apply_one(tree, lsn, &w.key, w.value.as_deref(), &mut stored)
                .map_err(rec_err)?;
        }
        Ok(())
    })?;
    drop(trees);
    if replayable > 0 {
        tracing::info!(
            records = replayable,
            from = sb.redo_lsn.0,
            to = end_lsn.0,
            "recovered from the log"
        );
    }

    // Step 6.
    let catalog = BTree::open(bm.clone(), sb.catalog_root, hooks.clone()).map_err(rec_err)?;
    if replayable > 0 {
        let swept = crate::sweep::sweep(&bm, &catalog, &hooks).map_err(rec_err)?;
        tracing::info!(
            live_pages = swept.live_pages,
            reclaimed_pages = swept.reclaimed_pages,
            "swept the trees for pages in use"
        );
    }
    finish(dir, opts, wal, bm, hooks, catalog, sbf, replayable, true)
}

/// The superblock's redo LSN is where its checkpoint appended
/// `CheckpointBegin`, and the log was durable through it before the
/// superblock was written: anything else there (no record at all, a log
/// zeroed or cut from that point) is damage, never an empty log.
fn check_redo_record(
    wal_dir: &Path,
    redo: Lsn,
    first: Option<&crate::wal::LoggedRecord>,
) -> Result<(), OpenError> {
    let found = match first {
        Some(r) if r.lsn == redo && matches!(r.record, OwnedRecord::CheckpointBegin { .. }) => {
            return Ok(())
        }
        Some(r) if r.lsn == redo => match r.record {
            OwnedRecord::Commit(_) => "a Commit record".to_string(),
            OwnedRecord::Smo(_) => "an Smo record".to_string(),
            _ => "another kind of record".to_string(),
        },
        Some(r) => format!("the first record at {}", r.lsn.0),
        None => "no record".to_string(),
    };
    Err(OpenError::MissingCheckpoint {
        redo_lsn: redo.0,
        wal_dir: wal_dir.to_path_buf(),
        found,
    })
}

fn bad_smo(lsn: Lsn) -> OpenError {
    OpenError::Wal(WalError::Corrupt {
        lsn,
        reason: "malformed Smo payload".into(),
    })
}

#[allow(clippy::too_many_arguments)]
fn finish(
    dir: DataDir,
    opts: Options,
    wal: Arc<Wal>,
    bm: Arc<BufferManager>,
    hooks: Arc<LogHooks>,
    catalog: BTree,
    sb: SuperblockFile,
    replayed: u64,
    existing: bool,
) -> Result<Db, OpenError> {
    let verify = opts.verify_on_open;
    let inner = Arc::new(DbInner {
        dir,
        opts,
        wal,
        bm,
        hooks,
        catalog: Arc::new(catalog),
        trees: RwLock::new(HashMap::new()),
        commit: Mutex::default(),
        superblock: Mutex::new(sb),
        checkpoint_lock: Mutex::new(()),
        last_checkpoint: AtomicU64::new(0),
        poison: Mutex::new(None),
        poisoned: AtomicBool::new(false),
        counters: Counters::default(),
        tx_pool: Mutex::new(Vec::new()),
        shutdown: Mutex::new(false),
        shutdown_cv: Condvar::new(),
    });
    inner
        .counters
        .recovered_records
        .store(replayed, Ordering::Relaxed);
    crate::catalog::register_all(&inner).map_err(rec_err)?;
    let full = match verify {
        VerifyOnOpen::Always => existing,
        VerifyOnOpen::AfterReplay => replayed > 0,
        VerifyOnOpen::RootsOnly => false,
    };
    if full {
        crate::catalog::verify_all(&inner).map_err(rec_err)?;
    }
    crate::checkpoint::checkpoint(&inner).map_err(rec_err)?;
    Ok(Db::start(inner))
}
