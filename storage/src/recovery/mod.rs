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

mod analysis;
mod redo;

use crate::allocfile;
use crate::db::Db;
use crate::dir::DataDir;
use crate::error::{DbError, OpenError, WalError};
use crate::hooks::{LogHooks, WalBeforeData};
use crate::inner::{DbInner, Parts};
use crate::options::{Options, VerifyOnOpen};
use crate::superblock::{FORMAT_VERSION, Superblock, SuperblockFile};
use crate::wal::{Lsn, Record, Wal, WalOptions};
use rime_btree::BTree;
use rime_bufmgr::{AllocState, BufferManager, Config, PAGE_SIZE};
use std::path::Path;
use std::sync::Arc;

pub(crate) fn open(root: &Path, opts: Options) -> Result<Db, OpenError> {
    opts.validate()?;
    let dir = DataDir::open(root)?;
    let wal_opts = WalOptions::new(opts.durability)
        .with_segment_size(opts.segment_size)
        .with_initial_segment_size(opts.initial_segment_size)
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
            alloc_state_lsn: 0,
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

fn recover(dir: DataDir, opts: Options, wal_opts: WalOptions) -> Result<Db, OpenError> {
    // Step 1.
    let sb_path = dir.superblock_path();
    let mut sbf = SuperblockFile::open((opts.opener)(&sb_path).map_err(io_err(&sb_path))?)?;
    let sb = sbf.current().clone();
    if sb.page_size != PAGE_SIZE as u32 {
        return Err(OpenError::Config(
            "the page file's page size differs from this build's",
        ));
    }
    let saved = allocfile::read(dir.root(), Lsn(sb.alloc_state_lsn), &opts.opener)?;
    // Step 2.
    let wal_dir = dir.wal_dir();
    let found = analysis::analyze(&wal_dir, sb.redo_lsn, &saved, &wal_opts)?;
    let span = redo::Span {
        wal_dir: &wal_dir,
        from: sb.redo_lsn,
        end: found.end.lsn(),
        opts: &wal_opts,
    };
    // Older data gets this build's format version once the directory is
    // known to be readable, before redo can log records an older build
    // could not read.
    if sbf.upgrade_format()? {
        tracing::info!(
            version = FORMAT_VERSION,
            "data directory stamped with this build's format version"
        );
    }
    // Step 3.
    let wal = Arc::new(Wal::open(&wal_dir, wal_opts.clone(), found.end.clone())?);
    let page_path = dir.page_file_path();
    let file = (opts.opener)(&page_path).map_err(io_err(&page_path))?;
    let file_pages = file.len_bytes().map_err(io_err(&page_path))? / PAGE_SIZE as u64;
    let bm = open_pool(file, &opts, &wal, Some(found.model.state()))?;
    let hooks = Arc::new(LogHooks { wal: wal.clone() });
    // Steps 4 and 5.
    redo::smo_images(&span, &bm, &found.model, file_pages)?;
    redo::commits(&span, &bm, &hooks, &found.last_destroy)?;
    if found.replayable > 0 {
        tracing::info!(
            records = found.replayable,
            from = span.from.0,
            to = span.end.0,
            "recovered from the log"
        );
    }
    // Step 6.
    let catalog = BTree::open(bm.clone(), sb.catalog_root, hooks.clone()).map_err(rec_err)?;
    if found.replayable > 0 {
        let swept = crate::sweep::sweep(&bm, &catalog, &hooks).map_err(rec_err)?;
        tracing::info!(
            live_pages = swept.live_pages,
            reclaimed_pages = swept.reclaimed_pages,
            "swept the trees for pages in use"
        );
    }
    finish(
        dir,
        opts,
        wal,
        bm,
        hooks,
        catalog,
        sbf,
        found.replayable,
        true,
    )
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
    let inner = Arc::new(DbInner::new(Parts {
        dir,
        opts,
        wal,
        bm,
        hooks,
        catalog,
        superblock: sb,
    }));
    inner.counters().recovered_records.set(replayed);
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
