//! `rime-tasks` (clients as tasks, `benches/src/tasks.rs`) run by the real
//! runner on a real Db: the operations asked for all run and count, the
//! writes in flight together share log syncs, and every write called back
//! as durable survives a power cut.
//!
//! The power cut is the one test double here: `FaultyFile` (fault
//! injection) holds each write of the Db's files in memory until the file
//! is synced, and the crash drops whatever no sync covered.
#![forbid(unsafe_code)]

use rime_bench::engine::{Durability, Engine, EngineConfig};
use rime_bench::engines::rime::RimeEngine;
use rime_bench::runner::{self, RunConfig, RunResult, Stop};
use rime_bench::workload::{KeyFormat, Op, Workload};
use rime_bufmgr::io::{BlockFile, CrashSwitch, Fate, FaultPlan, FaultyFile, IoBackend};
use rime_storage::Options;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const RECORDS: u64 = 2_000;
const CLIENTS: usize = 64;

/// The Db's files, all behind one crash switch.
#[derive(Default)]
struct Disk {
    switch: Arc<CrashSwitch>,
    files: Arc<Mutex<HashMap<PathBuf, Arc<FaultyFile>>>>,
}

impl Disk {
    /// Options whose files hold unsynced writes until a crash decides.
    fn options(&self) -> Options {
        let (switch, files) = (self.switch.clone(), self.files.clone());
        same_log().with_file_opener(Arc::new(move |p: &Path| {
            let plan = FaultPlan {
                hold_unsynced: true,
                switch: Some(switch.clone()),
                ..FaultPlan::default()
            };
            let inner = rime_bufmgr::io::open_block_file(p, IoBackend::Auto)?;
            let file = Arc::new(FaultyFile::new(inner, plan));
            files.lock().unwrap().insert(p.to_path_buf(), file.clone());
            Ok(file as Arc<dyn BlockFile>)
        }))
    }

    /// A power cut: the process stops, and every write not yet synced is
    /// lost.
    fn power_cut(&self) {
        self.switch.fire();
        for f in self.files.lock().unwrap().values() {
            f.crash_with(|_, _, _| Fate::Drop);
        }
    }
}

/// Small log segments, and no background checkpoint (which would append to
/// the log after the run).
fn same_log() -> Options {
    Options::default()
        .segment_size(4 << 20)
        .checkpoint_interval(None)
}

fn engine_config() -> EngineConfig {
    EngineConfig {
        pool_bytes: 32 << 20,
        durability: Durability::Sync,
        expected_bytes: RECORDS * 200,
        threads: CLIENTS,
        inflight: 1,
    }
}

fn run_config(workload: char, ops: u64) -> RunConfig {
    RunConfig {
        workload: Workload::ycsb(workload).unwrap(),
        records: RECORDS,
        stop: Stop::Ops(ops),
        threads: CLIENTS,
        warmup: Duration::ZERO,
        key_format: KeyFormat::YcsbString,
        value_len: 100,
        progress: false,
        seed: 11,
        inflight: 1,
    }
}

fn count_of(r: &RunResult, op: Op) -> u64 {
    r.per_op.iter().find(|p| p.0 == op).map_or(0, |p| p.1)
}

/// Every loaded record's value, by record number.
fn values(e: &dyn Engine) -> Vec<Vec<u8>> {
    let mut key = Vec::new();
    (0..RECORDS)
        .map(|n| {
            KeyFormat::YcsbString.key_into(n, &mut key);
            let mut v = Vec::new();
            assert!(e.read(&key, &mut v).unwrap(), "record {n} is missing");
            v
        })
        .collect()
}

/// Workload A at 64 clients in flight on one thread per core: exactly
/// the operations asked for, one commit per update, commits sharing syncs
/// (at one commit in flight each would be its own sync), and, after a
/// power cut right after the run, every record as the run left it.
#[test]
fn rime_tasks_shares_syncs_and_every_called_back_write_survives_a_power_cut() {
    let dir = tempfile::TempDir::new().unwrap();
    let disk = Disk::default();
    let e = RimeEngine::open_with(dir.path(), &engine_config(), disk.options())
        .unwrap()
        .tasks();
    assert!(Engine::tasks(&e) && e.name() == "rime-tasks");
    let cfg = run_config('A', 6_000);
    runner::load(&e, &cfg).unwrap();
    let before = e.commit_counters().unwrap();
    let r = runner::run(&e, &cfg).unwrap();
    let after = e.commit_counters().unwrap();
    assert_eq!(r.errors, 0, "{:?}", r.first_error);
    assert_eq!((r.ops, r.not_found), (6_000, 0));
    let updates = count_of(&r, Op::Update);
    assert!(updates > 2_000, "workload A is half updates: {updates}");
    assert_eq!(count_of(&r, Op::Read) + updates, 6_000);
    assert_eq!(r.commit_hist.len(), updates, "a latency per update");
    assert_eq!(
        after.commits - before.commits,
        updates,
        "a commit per update"
    );
    let per_sync = r.commits_per_sync.unwrap();
    assert!(
        per_sync >= 4.0,
        "{CLIENTS} clients shared {per_sync} commits per sync"
    );

    // The run returns only when every write has been called back, so the
    // log must be durable to its end now. Checked before anything reads:
    // a read waits for the versions it sees to be durable, which would
    // cover up a write called back early.
    let log = e.db().stats();
    assert_eq!(
        log.durable_lsn, log.log_bytes,
        "every write was called back, yet the log is not durable to its end"
    );
    let acknowledged = values(&e);
    disk.power_cut();
    drop(e);
    let e = RimeEngine::open_with(dir.path(), &engine_config(), same_log()).unwrap();
    let recovered = values(&e);
    let lost = (0..RECORDS as usize)
        .filter(|&n| recovered[n] != acknowledged[n])
        .count();
    assert_eq!(
        lost, 0,
        "records whose acknowledged value the power cut lost"
    );
}

/// The other operations through `Engine::start`: workload F's
/// read-modify-writes, D's inserts (each read choosing only inserts
/// already called back) and E's scans.
#[test]
fn rime_tasks_runs_read_modify_writes_inserts_and_scans() {
    let dir = tempfile::TempDir::new().unwrap();
    let e = RimeEngine::open(dir.path(), &engine_config())
        .unwrap()
        .tasks();
    runner::load(&e, &run_config('F', 0)).unwrap();
    for (workload, op) in [
        ('F', Op::ReadModifyWrite),
        ('D', Op::Insert),
        ('E', Op::Scan),
    ] {
        let r = runner::run(&e, &run_config(workload, 3_000)).unwrap();
        assert_eq!(r.errors, 0, "{workload}: {:?}", r.first_error);
        assert_eq!((r.ops, r.not_found), (3_000, 0), "{workload}");
        assert!(count_of(&r, op) > 50, "{workload}: {:?}", r.per_op);
        let writes: u64 = r.per_op.iter().filter(|p| p.0.writes()).map(|p| p.1).sum();
        assert_eq!(r.commit_hist.len(), writes, "{workload}");
    }
    // D's and E's inserts are there, after the records loaded.
    let mut key = Vec::new();
    KeyFormat::YcsbString.key_into(RECORDS, &mut key);
    assert!(e.read(&key, &mut Vec::new()).unwrap());
}
