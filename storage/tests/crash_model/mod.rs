//! The crash-consistency model shared by the crash-point search
//! (`tests/crash_points.rs`, seeded) and the coverage-guided fuzz target
//! (`fuzz/fuzz_targets/crash_model.rs`, driven by the fuzzer's bytes): a
//! directory of fault-injecting files stopped by one crash switch, a random
//! workload of every operation mirrored on a `BTreeMap` model, and the
//! checks after each recovery. See `tests/crash_points.rs` for the steps.
#![allow(dead_code)]

use rand::Rng;
use rime_bufmgr::PAGE_SIZE;
use rime_bufmgr::io::{
    BlockFile, CrashSwitch, Fate, FaultPlan, FaultyFile, IoBackend, open_block_file,
};
use rime_storage::{Db, Durability, MAX_VALUE_LEN, Options, TreeId, TxError, VerifyOnOpen};
use std::collections::{BTreeMap, HashMap};
use std::ops::{Bound, ControlFlow};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Crash points per seed (one directory each): enough history for
/// checkpoints, drops and log truncation to interleave with crashes.
pub const CYCLES_PER_SEED: u64 = 12;
/// Operations a cycle runs at most before it crashes between operations.
const OPS_PER_CYCLE: usize = 40;
/// Tree names the workload uses.
const TREES: [&str; 4] = ["t0", "t1", "t2", "t3"];
/// Distinct keys per tree: few, so values are overwritten often.
const KEYS: u32 = 40;

type Value = Arc<[u8]>;
/// The model: every tree's whole contents.
type Model = BTreeMap<String, BTreeMap<Vec<u8>, Value>>;

/// Odd seeds: a pool of 1 MiB (eviction inside most operations) and values
/// up to 300 kB. Even seeds: a pool that holds the largest value, and
/// values up to `MAX_VALUE_LEN`.
fn profile(seed: u64) -> (usize, usize) {
    match seed % 2 {
        1 => (256 * PAGE_SIZE, 300_000),
        _ => (20 << 20, MAX_VALUE_LEN),
    }
}

/// The files of one directory, all stopped by one switch.
struct Disk {
    switch: Arc<CrashSwitch>,
    files: Arc<Mutex<HashMap<PathBuf, Arc<FaultyFile>>>>,
    log: LogSegments,
}

impl Disk {
    fn new(log: LogSegments) -> Self {
        Disk {
            switch: Arc::new(CrashSwitch::default()),
            files: Arc::default(),
            log,
        }
    }

    fn options(&self, pool_bytes: usize) -> Options {
        let (switch, files) = (self.switch.clone(), self.files.clone());
        let sized = Options::default().segment_size(256 << 10);
        let sized = match self.log {
            LogSegments::Growing => sized,
            LogSegments::Preallocated => sized.preallocate_log(),
        };
        sized
            .pool_bytes(pool_bytes)
            .durability(Durability::Sync)
            .checkpoint_interval(None)
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

    /// The crash: every file stops, and its unsynced writes meet their fate.
    fn crash(&self, rng: &mut impl Rng) -> &'static str {
        self.switch.fire();
        let model = rng.gen_range(0..3);
        let mut files = self.files.lock().unwrap();
        for (path, f) in files.drain() {
            let pages = path.file_name().is_some_and(|n| n == "pages.db");
            let tear = |rng: &mut dyn rand::RngCore, len: usize| {
                let n = rng.gen_range(1..len.max(2));
                Fate::Tear(if pages { n / PAGE_SIZE * PAGE_SIZE } else { n })
            };
            match model {
                0 => f.crash_with(|_, _, _| Fate::Keep),
                1 => {
                    let keep = rng.gen_range(0..=f.unsynced_writes());
                    let torn = rng.gen_bool(0.5);
                    f.crash_with(|i, _, len| match i {
                        i if i < keep => Fate::Keep,
                        i if i == keep && torn => tear(rng, len),
                        _ => Fate::Drop,
                    });
                }
                _ => f.crash_with(|_, _, len| match rng.gen_range(0..8) {
                    0..=3 => Fate::Keep,
                    4 => tear(rng, len),
                    _ => Fate::Drop,
                }),
            }
        }
        ["kill", "power cut", "reordered"][model]
    }
}

/// A key of tree-local number `n`; lengths vary so the inline limit moves.
fn key(n: u32) -> Vec<u8> {
    let mut k = format!("key-{n:03}").into_bytes();
    k.resize([7, 40, 200][n as usize % 3], b'.');
    k
}

/// A value of a random size class up to `max`; its bytes depend on `stamp`.
fn value(rng: &mut impl Rng, stamp: u64, max: usize) -> Value {
    let len = match rng.gen_range(0..1000) {
        0..=99 => 0,
        100..=399 => rng.gen_range(1..64),
        // Around the inline limit (entry = slot + key + 8-byte version + value).
        400..=599 => rng.gen_range(1_200..1_600),
        600..=949 => rng.gen_range(1_600..20_000),
        950..=996 => rng.gen_range(20_000..300_000),
        997..=998 => 1 << 20,
        _ => MAX_VALUE_LEN,
    }
    .min(max);
    (0..len)
        .map(|i| (stamp as usize).wrapping_mul(131).wrapping_add(i * 7) as u8)
        .collect::<Vec<u8>>()
        .into()
}

/// One operation: what it does to the Db, and what it does to the model.
enum Op {
    Put(String, u32, Value),
    Delete(String, u32),
    /// Several writes (`None` deletes) in one transaction.
    Tx(Vec<(String, u32, Option<Value>)>),
    Create(String),
    Drop(String),
    Checkpoint,
    /// Checked on the spot; changes nothing.
    CheckGet(String, u32),
    CheckScan(String),
}

fn pick_op(rng: &mut impl Rng, model: &Model, stamp: u64, max: usize) -> Op {
    let names: Vec<&String> = model.keys().collect();
    if names.is_empty() {
        return Op::Create(TREES[rng.gen_range(0..TREES.len())].into());
    }
    let t = names[rng.gen_range(0..names.len())].clone();
    match rng.gen_range(0..100) {
        0..=34 => Op::Put(t, rng.gen_range(0..KEYS), value(rng, stamp, max)),
        35..=44 => Op::Delete(t, rng.gen_range(0..KEYS)),
        45..=64 => {
            let n = rng.gen_range(2..5);
            let writes = (0..n)
                .map(|i| {
                    let t = names[rng.gen_range(0..names.len())].clone();
                    let v = rng.gen_bool(0.8).then(|| value(rng, stamp + i, max));
                    (t, rng.gen_range(0..KEYS), v)
                })
                .collect();
            Op::Tx(writes)
        }
        65..=74 => Op::CheckGet(t, rng.gen_range(0..KEYS)),
        75..=79 => Op::CheckScan(t),
        80..=86 => {
            let free: Vec<&str> = TREES
                .iter()
                .copied()
                .filter(|n| !model.contains_key(*n))
                .collect();
            match free.len() {
                0 => Op::Checkpoint,
                n => Op::Create(free[rng.gen_range(0..n)].into()),
            }
        }
        87..=90 => Op::Drop(t),
        _ => Op::Checkpoint,
    }
}

/// The model after `op` took effect.
fn apply(model: &Model, op: &Op) -> Model {
    let mut m = model.clone();
    let mut write = |t: &String, k: u32, v: Option<&Value>| {
        let tree = m.get_mut(t).expect("ops name existing trees");
        match v {
            Some(v) => tree.insert(key(k), v.clone()),
            None => tree.remove(&key(k)),
        };
    };
    match op {
        Op::Put(t, k, v) => write(t, *k, Some(v)),
        Op::Delete(t, k) => write(t, *k, None),
        Op::Tx(ws) => ws.iter().for_each(|(t, k, v)| write(t, *k, v.as_ref())),
        Op::Create(t) => {
            m.insert(t.clone(), BTreeMap::new());
        }
        Op::Drop(t) => {
            m.remove(t);
        }
        Op::Checkpoint | Op::CheckGet(..) | Op::CheckScan(..) => {}
    }
    m
}

/// Runs `op` on the Db. `Err` only for I/O failures (the crash).
/// How an operation the model asked for ended without a crash.
enum Ran {
    /// It took effect: the model becomes `apply(model, op)`.
    Done,
    /// The Db refused it before logging anything, as it must (a write set
    /// larger than one commit may log): the model stays as it was.
    Refused,
}

fn run(db: &Db, model: &Model, op: &Op) -> Result<Ran, String> {
    let id = |t: &str| -> Result<TreeId, String> {
        db.open_tree(t)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("tree {t} is missing"))
    };
    let err = |e: TxError| e.to_string();
    let done = match op {
        Op::Put(t, k, v) => db.put(id(t)?, &key(*k), v).map_err(err),
        Op::Delete(t, k) => db.delete(id(t)?, &key(*k)).map(drop).map_err(err),
        Op::Tx(ws) => {
            let ids = ws
                .iter()
                .map(|(t, ..)| id(t))
                .collect::<Result<Vec<_>, _>>()?;
            let r = db.transaction(|tx| {
                for ((_, k, v), &t) in ws.iter().zip(&ids) {
                    match v {
                        Some(v) => tx.put(t, &key(*k), v)?,
                        None => drop(tx.delete(t, &key(*k))?),
                    }
                }
                Ok(())
            });
            match r {
                Err(TxError::CommitTooLarge { .. }) => return Ok(Ran::Refused),
                r => r.map_err(err),
            }
        }
        Op::Create(t) => db.create_tree(t).map(drop).map_err(|e| e.to_string()),
        Op::Drop(t) => db.drop_tree(t).map(drop).map_err(|e| e.to_string()),
        Op::Checkpoint => db.checkpoint().map_err(|e| e.to_string()),
        Op::CheckGet(t, k) => {
            let got = db.get(id(t)?, &key(*k)).map_err(err)?;
            let want = model[t].get(&key(*k));
            if got.as_deref() != want.map(|v| &v[..]) {
                panic!(
                    "get {t}/{k}: {:?} bytes, model {:?}",
                    got.map(|v| v.len()),
                    want.map(|v| v.len())
                );
            }
            Ok(())
        }
        Op::CheckScan(t) => {
            let got = read_tree(db, id(t)?).map_err(err)?;
            assert!(got == model[t], "scan of {t} differs from the model");
            Ok(())
        }
    };
    done.map(|()| Ran::Done)
}

fn read_tree(db: &Db, t: TreeId) -> Result<BTreeMap<Vec<u8>, Value>, TxError> {
    db.transaction(|tx| {
        let mut out = BTreeMap::new();
        tx.scan(t, Bound::Unbounded, Bound::Unbounded, |k, v| {
            out.insert(k.to_vec(), Value::from(v));
            ControlFlow::Continue(())
        })?;
        Ok(out)
    })
}

fn read_all(db: &Db) -> Model {
    let mut m = Model::new();
    for (name, id) in db.list_trees().unwrap() {
        m.insert(name, read_tree(db, id).unwrap());
    }
    m
}

fn describe(m: &Model) -> String {
    m.iter()
        .map(|(t, kv)| format!("{t}: {} keys", kv.len()))
        .collect::<Vec<_>>()
        .join(", ")
}

#[derive(Default, Debug)]
pub struct Tally {
    pub crash_points: u64,
    pub in_recovery: u64,
    pub mid_operation: u64,
    pub in_flight_present: u64,
    pub in_flight_absent: u64,
    /// Transactions the Db refused as too large for one commit record,
    /// before logging anything (the model keeps its state).
    pub refused: u64,
}

/// How the log's segments are sized in a search.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogSegments {
    /// The default: the first segment small, each next one double, up to
    /// the cap (more rollovers, so more crash points inside them).
    Growing,
    /// Every segment at the cap from the start (`Options::preallocate_log`),
    /// the layout the seeds found before segments grew: a regression seed
    /// replays only on the I/O sequence it was found with.
    Preallocated,
}

/// What a search runs in its first cycle before the random operations,
/// with no crash armed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Opening {
    /// Nothing.
    Nothing,
    /// Creates a tree, then commits one transaction of two `MAX_VALUE_LEN`
    /// values: more than one commit record may log, so the Db refuses it
    /// (`TxError::CommitTooLarge`) and the model must stay as it was.
    OversizedTx,
}

impl Opening {
    fn ops(self, stamp: u64) -> Vec<Op> {
        let huge = |n: u64| -> Value { vec![(stamp + n) as u8; MAX_VALUE_LEN].into() };
        match self {
            Opening::Nothing => vec![],
            Opening::OversizedTx => vec![
                Op::Create(TREES[0].into()),
                Op::Tx(vec![
                    (TREES[0].into(), 1, Some(huge(1))),
                    (TREES[0].into(), 2, Some(huge(2))),
                ]),
            ],
        }
    }
}

/// A fresh directory through `cycles` crash cycles, every choice drawn
/// from `rng`; `seed` picks the pool profile and names the run in errors.
pub fn search(rng: &mut impl Rng, seed: u64, cycles: u64, tally: &mut Tally) {
    search_with(
        rng,
        seed,
        cycles,
        tally,
        LogSegments::Growing,
        Opening::Nothing,
    )
}

/// [`search`] with the log's segments sized as `log` says, opening with
/// `opening`.
pub fn search_with(
    rng: &mut impl Rng,
    seed: u64,
    cycles: u64,
    tally: &mut Tally,
    log: LogSegments,
    opening: Opening,
) {
    let dir = tempfile::TempDir::new().unwrap();
    let mut model = Model::new();
    // The model if the operation in flight at the last crash took effect.
    let mut in_flight: Option<Model> = None;
    let mut stamp = seed << 20;
    let (pool_bytes, max_value) = profile(seed);
    for cycle in 0..cycles {
        let ctx = format!("seed {seed}, cycle {cycle}");
        let disk = Disk::new(log);
        // Every seed's second open crashes in recovery; later ones at times.
        let recovery_ios = match cycle {
            0 => 0,
            1 => rng.gen_range(1..4),
            _ if rng.gen_bool(0.15) => rng.gen_range(1..40),
            _ => 0,
        };
        disk.switch.arm(recovery_ios);
        // Steps 1-2.
        let db = match Db::open(dir.path(), disk.options(pool_bytes)) {
            Ok(db) => db,
            Err(e) if disk.switch.fired() => {
                disk.crash(rng);
                tally.crash_points += 1;
                tally.in_recovery += 1;
                let _ = e;
                continue;
            }
            Err(e) => panic!("{ctx}: recovery failed: {e}"),
        };
        db.verify()
            .unwrap_or_else(|e| panic!("{ctx}: verify after recovery: {e}"));
        let found = read_all(&db);
        if found == model {
            tally.in_flight_absent += u64::from(in_flight.is_some());
        } else if in_flight.as_ref() == Some(&found) {
            tally.in_flight_present += 1;
            model = found;
        } else {
            panic!(
                "{ctx}: recovered {} but acknowledged {}{}",
                describe(&found),
                describe(&model),
                in_flight
                    .map(|m| format!(" (or {})", describe(&m)))
                    .unwrap_or_default()
            );
        }
        in_flight = None;
        if cycle == 0 {
            for op in opening.ops(stamp) {
                match run(&db, &model, &op) {
                    Ok(Ran::Done) => model = apply(&model, &op),
                    Ok(Ran::Refused) => tally.refused += 1,
                    Err(e) => panic!("{ctx}: opening operation failed: {e}"),
                }
            }
        }
        // Step 3.
        disk.switch.arm(rng.gen_range(1..250));
        for _ in 0..OPS_PER_CYCLE {
            stamp += 16;
            let op = pick_op(rng, &model, stamp, max_value);
            let after = apply(&model, &op);
            match run(&db, &model, &op) {
                Ok(Ran::Done) => model = after,
                Ok(Ran::Refused) => tally.refused += 1,
                Err(e) if disk.switch.fired() => {
                    let _ = e;
                    in_flight = Some(after);
                    tally.mid_operation += 1;
                    break;
                }
                Err(e) => panic!("{ctx}: operation failed without a crash: {e}"),
            }
            if disk.switch.fired() {
                break; // fired in background work after the op returned
            }
        }
        // Step 4.
        disk.crash(rng);
        drop(db);
        tally.crash_points += 1;
    }
}
