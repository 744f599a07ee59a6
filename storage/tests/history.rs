//! History checking (issue 15, item 3): thousands of concurrent
//! transactions — transfers, read-modify-writes, batched reads, range scans
//! over keys created and deleted meanwhile — each recording what its
//! committed attempt read and appended. The history is then checked for
//! serializability the way Elle checks it (`common/history/elle`:
//! list-append, so every read names the version it saw), and the bank
//! invariant with it.
//!
//! Three settings: a big pool; a pool so small that pages are evicted and
//! read back all the time; and `Sync` runs cut by crashes (power cuts and
//! kills that keep unsynced writes), each recovered and continued, the
//! whole history checked after every recovery. `RIME_STRESS_SCALE=N` runs
//! N times longer; `RIME_HISTORY_SEED` picks the transactions' random
//! choices (the interleaving is the scheduler's). A failure prints the
//! seed, the anomaly (a cycle edge by edge, with every transaction's reads
//! and appends) and the invariants committed transactions saw broken.
#![forbid(unsafe_code)]

#[path = "common/history/mod.rs"]
mod workload;

use rime_bufmgr::io::{
    BlockFile, CrashSwitch, Fate, FaultPlan, FaultyFile, IoBackend, open_block_file,
};
use rime_storage::{Db, Durability, Options, VerifyOnOpen};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tempfile::TempDir;
use workload::{Crash, Ids, Rec, RunLog, Shape, State, Trees, elle};

fn scale() -> u64 {
    std::env::var("RIME_STRESS_SCALE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
}

fn seed() -> u64 {
    std::env::var("RIME_HISTORY_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(15_03)
}

/// Eight threads; few accounts and registers, so transactions collide.
fn shape(txns_per_thread: u64, registers: u32, pad: usize) -> Shape {
    Shape {
        threads: 8,
        txns_per_thread: txns_per_thread * scale(),
        accounts: 12,
        registers,
        pad,
        seed: seed(),
    }
}

/// Every committed transaction so far, over runs and recoveries.
#[derive(Default)]
struct History {
    recs: Vec<Rec>,
}

impl History {
    /// Keeps a run's commits; returns its writers in doubt.
    fn add_run(&mut self, what: &str, log: RunLog, took: Duration) -> Vec<Rec> {
        eprintln!("{what}: {} in {took:.1?}", log.describe());
        assert!(
            log.errors.is_empty(),
            "{what}: transactions failed with no crash to explain it (seed {}):\n{}",
            seed(),
            log.errors.join("\n")
        );
        self.recs.extend(log.committed);
        log.in_doubt
    }

    /// After a recovery: the writers in doubt whose ids survived join the
    /// history (all of their appends must have survived, the check says).
    fn add_recovered(&mut self, what: &str, in_doubt: Vec<Rec>, state: &State) {
        let present: HashSet<u64> = state.lists.values().flatten().copied().collect();
        let total = in_doubt.len();
        let kept: Vec<Rec> = in_doubt
            .into_iter()
            .filter(|r| present.contains(&r.txn.id))
            .collect();
        eprintln!(
            "{what}: {} of {total} commits in doubt survived",
            kept.len()
        );
        self.recs.extend(kept);
    }

    /// Checks the history so far against `state`, the Db's contents now
    /// (its read joins the history); panics with the anomaly and with the
    /// invariants committed transactions saw broken.
    fn check(&mut self, what: &str, state: State) {
        self.recs.push(state.rec);
        let txns: Vec<elle::Txn> = self.recs.iter().map(|r| r.txn.clone()).collect();
        let (verdict, took) = timed(|| elle::check(&txns, &state.lists));
        let problems: Vec<&str> = self
            .recs
            .iter()
            .flat_map(|r| &r.problems)
            .map(String::as_str)
            .collect();
        if let (Ok(s), true) = (&verdict, problems.is_empty()) {
            eprintln!("{what}: serializable ({took:.1?} to check): {s:?}");
            return;
        }
        panic!(
            "{what} (seed {}):\n{}\ncommitted transactions saw {} broken invariants{}{}",
            seed(),
            verdict
                .err()
                .unwrap_or_else(|| "the history is serializable".into()),
            problems.len(),
            if problems.is_empty() { "" } else { ":\n" },
            problems[..problems.len().min(20)].join("\n")
        );
    }
}

fn timed<R>(f: impl FnOnce() -> R) -> (R, Duration) {
    let t = Instant::now();
    let r = f();
    (r, t.elapsed())
}

#[test]
fn a_concurrent_history_in_a_big_pool_is_serializable() {
    let shape = shape(400, 48, 0);
    let dir = TempDir::new().unwrap();
    let opts = Options::default()
        .pool_bytes(64 << 20)
        .durability(Durability::NoSync)
        .checkpoint_interval(None);
    let db = Db::open(dir.path(), opts).unwrap();
    let (trees, ids) = (Trees::create(&db, &shape), Ids::default());
    let mut h = History::default();
    let (log, took) = timed(|| workload::run(&db, trees, &shape, &ids, None));
    let doubt = h.add_run("big pool", log, took);
    assert!(
        doubt.is_empty(),
        "no crash, yet {} commits in doubt",
        doubt.len()
    );
    assert!(
        h.recs.len() as u64 >= shape.threads * shape.txns_per_thread / 2,
        "only {} of {} transactions committed",
        h.recs.len(),
        shape.threads * shape.txns_per_thread
    );
    assert!(
        db.stats().conflicts > 0,
        "no transaction ever conflicted: no concurrency was tested"
    );
    println!(
        "big pool: {} read-only batches finished under their keys' locks",
        db.stats().read_refreshes
    );
    h.check("big pool", workload::read_state(&db, trees, &shape, &ids));
    db.verify().unwrap();
    db.close().unwrap();
}

#[test]
fn a_concurrent_history_under_eviction_is_serializable() {
    // 2000-byte padding: two elements fill a page; every list lives in
    // page extents, and the data outgrows the pool several times.
    let shape = shape(400, 256, 2000);
    let pool = 1 << 20; // 256 pages, the minimum
    let dir = TempDir::new().unwrap();
    let opts = Options::default()
        .pool_bytes(pool)
        .durability(Durability::NoSync)
        .checkpoint_interval(Some(Duration::from_millis(100)))
        .checkpoint_log_bytes(4 << 20)
        .segment_size(1 << 20);
    let db = Db::open(dir.path(), opts.clone()).unwrap();
    let (trees, ids) = (Trees::create(&db, &shape), Ids::default());
    let mut h = History::default();
    let (log, took) = timed(|| workload::run(&db, trees, &shape, &ids, None));
    h.add_run("eviction", log, took);
    let stats = db.stats();
    eprintln!(
        "eviction: {} pages allocated, pool {} pages: {} misses, {} evictions, {} conflicts, \
         {} read-only batches finished under their keys' locks",
        stats.allocated_pages,
        pool / 4096,
        stats.pool.misses,
        stats.pool.evictions,
        stats.conflicts,
        stats.read_refreshes
    );
    assert!(
        stats.allocated_pages * 4096 >= 4 * pool as u64,
        "the data ({} pages) should be several times the pool",
        stats.allocated_pages
    );
    // A miss every other transaction at least (about 1.3 per transaction
    // measured); the pool turned over many times.
    let (commits, pool_pages) = (h.recs.len() as u64, (pool / 4096) as u64);
    assert!(
        stats.pool.misses > commits / 2 && stats.pool.evictions > 8 * pool_pages,
        "pages should be evicted and read back all the time ({commits} commits): {:?}",
        stats.pool
    );
    let before = workload::read_state(&db, trees, &shape, &ids);
    db.close().unwrap();
    // A clean close keeps exactly what was there.
    let db = Db::open(dir.path(), opts.verify_on_open(VerifyOnOpen::Always)).unwrap();
    let after = workload::read_state(&db, Trees::open(&db), &shape, &ids);
    assert!(
        after.lists == before.lists,
        "a clean close and reopen changed the lists"
    );
    h.recs.push(before.rec);
    h.check("eviction", after);
    db.close().unwrap();
}

/// The files of one directory, all stopped by one crash switch.
struct Disk {
    switch: Arc<CrashSwitch>,
    files: Arc<Mutex<HashMap<PathBuf, Arc<FaultyFile>>>>,
}

impl Disk {
    fn new() -> Self {
        Disk {
            switch: Arc::default(),
            files: Arc::default(),
        }
    }

    /// `Sync`, so an acknowledgement means durability; a small pool (page
    /// write-backs in flight at the crash) and frequent checkpoints.
    fn options(&self) -> Options {
        let (switch, files) = (self.switch.clone(), self.files.clone());
        Options::default()
            .pool_bytes(2 << 20)
            .durability(Durability::Sync)
            .checkpoint_interval(Some(Duration::from_millis(30)))
            .checkpoint_log_bytes(256 << 10)
            .segment_size(128 << 10)
            .verify_on_open(VerifyOnOpen::Always)
            .with_file_opener(Arc::new(move |p: &Path| {
                let plan = FaultPlan {
                    hold_unsynced: true,
                    switch: Some(switch.clone()),
                    ..FaultPlan::default()
                };
                let file = Arc::new(FaultyFile::new(open_block_file(p, IoBackend::Auto)?, plan));
                files.lock().unwrap().insert(p.to_path_buf(), file.clone());
                Ok(file as Arc<dyn BlockFile>)
            }))
    }

    /// The process is dead; every unsynced write meets `fate` (`Drop`: a
    /// power cut; `Keep`: a kill, the kernel writes the page cache out).
    fn crash(&self, fate: Fate) {
        self.switch.fire();
        for f in self.files.lock().unwrap().values() {
            f.crash_with(|_, _, _| fate);
        }
    }
}

/// After a recovery: `verify` is clean, and the recovered state checks out
/// with the history so far (every acknowledged commit present; each commit
/// in doubt present whole or not at all; a prefix-closed set: no survivor
/// read or overwrote a lost one).
fn recovered(
    db: &Db,
    shape: &Shape,
    ids: &Ids,
    h: &mut History,
    in_doubt: Vec<Rec>,
    what: &str,
) -> Trees {
    db.verify()
        .unwrap_or_else(|e| panic!("{what}: verify after recovery: {e}"));
    let trees = Trees::open(db);
    let state = workload::read_state(db, trees, shape, ids);
    h.add_recovered(what, in_doubt, &state);
    h.check(what, state);
    trees
}

/// How each run but the last ends.
const CRASHES: [(&str, Fate); 4] = [
    ("a power cut (unsynced writes dropped)", Fate::Drop),
    ("a kill (unsynced writes kept)", Fate::Keep),
    ("a second power cut", Fate::Drop),
    ("a second kill", Fate::Keep),
];

/// Four runs cut by a crash (power cuts and kills, at different points),
/// each recovered and continued, then a clean run: one history, checked
/// after every recovery and at the end.
#[test]
fn a_history_across_crashes_and_recoveries_is_serializable() {
    let shape = shape(150, 48, 40);
    let dir = TempDir::new().unwrap();
    let ids = Ids::default();
    let mut h = History::default();
    let mut in_doubt = Vec::new();
    for round in 0..=CRASHES.len() {
        let disk = Disk::new();
        let db = Db::open(dir.path(), disk.options())
            .unwrap_or_else(|e| panic!("run {round}: open or recovery failed: {e}"));
        let trees = match round {
            0 => Trees::create(&db, &shape),
            r => {
                let what = format!("recovery from {}", CRASHES[r - 1].0);
                let doubt = std::mem::take(&mut in_doubt);
                recovered(&db, &shape, &ids, &mut h, doubt, &what)
            }
        };
        let crash = CRASHES.get(round).map(|_| Crash {
            switch: &disk.switch,
            after_commits: shape.threads * shape.txns_per_thread * (2 + round as u64) / 8,
        });
        let (log, took) = timed(|| workload::run(&db, trees, &shape, &ids, crash));
        let Some(&(how, fate)) = CRASHES.get(round) else {
            let doubt = h.add_run(&format!("run {round}"), log, took);
            assert!(
                doubt.is_empty(),
                "no crash, yet {} commits in doubt",
                doubt.len()
            );
            db.close().unwrap();
            break;
        };
        let what = format!("run {round}, cut by {how}");
        assert!(
            disk.switch.fired() && log.stopped > 0,
            "{what}: the crash should stop the run midway: {}",
            log.describe()
        );
        in_doubt = h.add_run(&what, log, took);
        disk.crash(fate);
        drop(db);
    }
    let db = Db::open(dir.path(), Disk::new().options()).unwrap();
    let state = workload::read_state(&db, Trees::open(&db), &shape, &ids);
    h.check("all runs, after a clean close", state);
    db.close().unwrap();
}
