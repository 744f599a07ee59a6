//! Load and run phases: worker threads, warm-up, latency histograms
//! (HdrHistogram, ns, 3 significant digits, shared by the workers in
//! [`crate::latency`]; all operations, and those that commit a write),
//! commits per log sync, progress bars.

use crate::acknowledged::AcknowledgedCounter;
use crate::engine::{Engine, Result};
use crate::generator::{Latest, Rng64, ScrambledZipfian, Uniform, ZIPFIAN_CONSTANT, zeta};
use crate::latency::{LatencyRecorder, LatencyShards};
use crate::workload::{Distribution, KeyFormat, Op, Workload, value_into};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// When the run phase stops.
#[derive(Debug, Clone, Copy)]
pub enum Stop {
    /// After this many measured operations (all threads together).
    Ops(u64),
    /// After this long (measured part, warm-up not included).
    Duration(Duration),
}

#[derive(Debug, Clone)]
pub struct RunConfig {
    pub workload: Workload,
    pub records: u64,
    pub stop: Stop,
    pub threads: usize,
    /// Time the workload runs unmeasured before measuring starts.
    pub warmup: Duration,
    pub key_format: KeyFormat,
    pub value_len: usize,
    pub progress: bool,
    pub seed: u64,
    /// Reads per [`Engine::read_many`] call: above 1, each thread gathers
    /// its reads into a batch of this many keys and hands the batch over in
    /// one call (other ops run one at a time); 1: one op per call. A
    /// batch's latency is recorded once for each of its keys, so the
    /// histogram then holds per-batch times.
    pub inflight: usize,
}

/// What one run phase measured.
#[derive(Debug, Clone)]
pub struct RunResult {
    pub ops: u64,
    pub elapsed: Duration,
    pub hist: Histogram<u64>,
    /// Latencies of the operations that write (update, insert,
    /// read-modify-write): each is one commit.
    pub commit_hist: Histogram<u64>,
    /// Commits per log sync over the measured part, where the engine counts
    /// both ([`Engine::commit_counters`]).
    pub commits_per_sync: Option<f64>,
    pub per_op: Vec<(Op, u64)>,
    pub not_found: u64,
    pub errors: u64,
    pub first_error: Option<String>,
}

impl RunResult {
    pub fn ops_per_sec(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
    /// Latency at `q` (0..1) in microseconds.
    pub fn latency_us(&self, q: f64) -> f64 {
        self.hist.value_at_quantile(q) as f64 / 1000.0
    }
    /// Latency of the writing operations at `q` in microseconds (0 if
    /// there were none).
    pub fn commit_latency_us(&self, q: f64) -> f64 {
        self.commit_hist.value_at_quantile(q) as f64 / 1000.0
    }
}

fn bar(progress: bool, len: u64, msg: String) -> ProgressBar {
    let pb = ProgressBar::with_draw_target(
        Some(len),
        if progress {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        },
    );
    pb.set_style(
        ProgressStyle::with_template("{msg:>28} [{bar:40}] {pos}/{len} {per_sec} eta {eta}")
            .expect("template")
            .progress_chars("=> "),
    );
    pb.set_message(msg);
    pb
}

/// Bytes per batch of the load phase (one transaction/batch each).
const LOAD_BATCH_BYTES: usize = 256 << 10;

/// At most this many threads load, however many run: a thousand loaders
/// would only queue on one another's batches.
pub const LOAD_THREADS_MAX: usize = 8;

/// Loads records `0..records` with `threads` threads (at most
/// [`LOAD_THREADS_MAX`]) in batches.
pub fn load(engine: &dyn Engine, cfg: &RunConfig) -> Result<Duration> {
    let per = (LOAD_BATCH_BYTES / (cfg.value_len + cfg.key_format.avg_len())).clamp(1, 1000) as u64;
    let next = AtomicU64::new(0);
    let done = AtomicU64::new(0);
    let failed: Mutex<Option<String>> = Mutex::new(None);
    let pb = bar(cfg.progress, cfg.records, format!("load {}", engine.name()));
    let started = Instant::now();
    std::thread::scope(|s| {
        for t in 0..cfg.threads.clamp(1, LOAD_THREADS_MAX) {
            let (next, done, failed) = (&next, &done, &failed);
            s.spawn(move || {
                let mut batch: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
                let mut rng = Rng64::new(cfg.seed ^ (t as u64) << 32);
                loop {
                    let lo = next.fetch_add(per, Ordering::Relaxed);
                    if lo >= cfg.records || failed.lock().unwrap().is_some() {
                        break;
                    }
                    let hi = (lo + per).min(cfg.records);
                    batch.resize_with((hi - lo) as usize, Default::default);
                    for (i, (k, v)) in batch.iter_mut().enumerate() {
                        cfg.key_format.key_into(lo + i as u64, k);
                        value_into(rng.next_u64(), cfg.value_len, v);
                    }
                    if let Err(e) = engine.insert_batch(&batch) {
                        *failed.lock().unwrap() = Some(e.to_string());
                        break;
                    }
                    done.fetch_add(hi - lo, Ordering::Relaxed);
                }
            });
        }
        while done.load(Ordering::Relaxed) < cfg.records && failed.lock().unwrap().is_none() {
            pb.set_position(done.load(Ordering::Relaxed));
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    pb.finish_and_clear();
    if let Some(e) = failed.into_inner().unwrap() {
        return Err(format!("load into {} failed: {e}", engine.name()).into());
    }
    Ok(started.elapsed())
}

/// Shared state of one run phase.
pub(crate) struct Shared {
    /// Insert numbers, and the limit below which all have returned: reads
    /// and scans choose only from `0..=limit` (YCSB's transaction-insert
    /// key sequence).
    pub(crate) inserts: AcknowledgedCounter,
    pub(crate) measuring: AtomicBool,
    pub(crate) stop: AtomicBool,
    /// Measured operations claimed so far (for `Stop::Ops`).
    claimed: AtomicU64,
    /// Measured operations completed (progress).
    pub(crate) completed: AtomicU64,
}

impl Shared {
    /// The next measured operations a worker may do (up to `claim`), or
    /// `None` once `Stop::Ops`'s total is claimed. Claims go in chunks so
    /// the shared counters are not touched on every op.
    pub(crate) fn claim(&self, stop: Stop, claim: u64) -> Option<u64> {
        match stop {
            Stop::Ops(n) => {
                let prev = self.claimed.fetch_add(claim, Ordering::Relaxed);
                (prev < n).then(|| claim.min(n - prev))
            }
            Stop::Duration(_) => Some(claim),
        }
    }
}

/// A worker's key chooser (each worker has its own).
pub(crate) enum Chooser {
    Zipfian(ScrambledZipfian),
    Uniform(Uniform),
    Latest(Latest),
}

impl Chooser {
    fn new(cfg: &RunConfig, expected_new: u64, latest_zeta: f64) -> Chooser {
        match cfg.workload.distribution {
            Distribution::Zipfian => {
                Chooser::Zipfian(ScrambledZipfian::new(0, cfg.records + expected_new - 1))
            }
            Distribution::Uniform => Chooser::Uniform(Uniform::new(0, cfg.records - 1)),
            Distribution::Latest => Chooser::Latest(Latest::with_zetan(cfg.records, latest_zeta)),
        }
    }

    /// The next record number, one of `0..=last` (the acknowledged ones).
    pub(crate) fn next_upto(&mut self, rng: &mut Rng64, last: u64) -> u64 {
        loop {
            let n = match self {
                Chooser::Zipfian(z) => z.next(rng),
                Chooser::Uniform(u) => u.next(rng),
                Chooser::Latest(l) => l.next(rng, last),
            };
            if n <= last {
                return n;
            }
        }
    }
}

/// Runs the transaction phase on a loaded engine.
pub fn run(engine: &dyn Engine, cfg: &RunConfig) -> Result<RunResult> {
    assert!(cfg.records > 0, "run needs loaded records");
    let insert_share: f64 = cfg
        .workload
        .mix
        .iter()
        .filter(|m| m.0 == Op::Insert)
        .map(|m| m.1)
        .sum();
    // YCSB: the zipfian chooser covers records + 2 × expected inserts.
    let expected_ops = match cfg.stop {
        Stop::Ops(n) => n,
        Stop::Duration(_) => cfg.records,
    };
    let expected_new = (expected_ops as f64 * insert_share * 2.0) as u64;
    let latest_zeta = match cfg.workload.distribution {
        Distribution::Latest => zeta(cfg.records, ZIPFIAN_CONSTANT),
        _ => 0.0,
    };
    let shared = Shared {
        inserts: AcknowledgedCounter::new(cfg.records),
        measuring: AtomicBool::new(cfg.warmup.is_zero()),
        stop: AtomicBool::new(false),
        claimed: AtomicU64::new(0),
        completed: AtomicU64::new(0),
    };
    let chooser = cfg.workload.chooser();
    let (pb_len, msg) = match cfg.stop {
        Stop::Ops(n) => (n, format!("{} {}", cfg.workload.name, engine.name())),
        Stop::Duration(d) => (
            d.as_millis() as u64,
            format!("{} {} (ms)", cfg.workload.name, engine.name()),
        ),
    };
    let pb = bar(cfg.progress, pb_len, msg);

    let mut measure_start = Instant::now();
    let mut counters_before = engine.commit_counters();
    // A task engine's clients share one worker thread per core; otherwise
    // each client is a worker thread.
    let tasks = engine.tasks();
    let workers = if tasks {
        crate::tasks::worker_threads(cfg.threads)
    } else {
        cfg.threads.max(1)
    };
    let shards = LatencyShards::new(workers);
    let results: Vec<WorkerOut> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|t| {
                let (shared, ops, lat) = (&shared, &chooser, shards.recorder(t));
                let keys = Chooser::new(cfg, expected_new, latest_zeta);
                let w = Worker {
                    engine,
                    cfg,
                    shared,
                    ops,
                    keys,
                    lat,
                    t: t as u64,
                };
                s.spawn(move || {
                    if tasks {
                        let clients = crate::tasks::clients_of(t, workers, cfg.threads);
                        crate::tasks::run_clients(w, clients)
                    } else {
                        worker(w)
                    }
                })
            })
            .collect();
        // Warm-up, then measure.
        if !cfg.warmup.is_zero() {
            std::thread::sleep(cfg.warmup);
            counters_before = engine.commit_counters();
            measure_start = Instant::now();
            shared.measuring.store(true, Ordering::Release);
        }
        let deadline = match cfg.stop {
            Stop::Duration(d) => Some(measure_start + d),
            Stop::Ops(_) => None,
        };
        while !handles.iter().all(|h| h.is_finished()) {
            match deadline {
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        shared.stop.store(true, Ordering::Release);
                    }
                    pb.set_position((now - measure_start).as_millis().min(pb_len as u128) as u64);
                }
                None => pb.set_position(shared.completed.load(Ordering::Relaxed)),
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        handles
            .into_iter()
            .map(|h| h.join().expect("worker panicked"))
            .collect()
    });
    pb.finish_and_clear();
    let commits_per_sync = match (counters_before, engine.commit_counters()) {
        (Some(before), Some(after)) => after.commits_per_sync_since(&before),
        _ => None,
    };
    // Elapsed: from measuring to the last worker's last operation.
    let end = results.iter().map(|r| r.end).max().unwrap_or(measure_start);
    let elapsed = end.saturating_duration_since(measure_start);
    let latencies = shards.merged();
    let mut per_op: Vec<(Op, u64)> = Op::ALL.iter().map(|&o| (o, 0)).collect();
    let (mut ops, mut not_found, mut errors, mut first_error) = (0, 0, 0, None);
    for r in results {
        for (i, n) in r.per_op.iter().enumerate() {
            per_op[i].1 += n;
        }
        ops += r.ops;
        not_found += r.not_found;
        errors += r.errors;
        if first_error.is_none() {
            first_error = r.first_error;
        }
    }
    per_op.retain(|p| p.1 > 0);
    Ok(RunResult {
        ops,
        elapsed,
        hist: latencies.all_ns,
        commit_hist: latencies.commit_ns,
        commits_per_sync,
        per_op,
        not_found,
        errors,
        first_error,
    })
}

/// What one worker thread counted.
pub(crate) struct WorkerOut {
    pub(crate) per_op: [u64; 5],
    pub(crate) ops: u64,
    pub(crate) not_found: u64,
    pub(crate) errors: u64,
    pub(crate) first_error: Option<String>,
    /// When its last measured operation completed.
    pub(crate) end: Instant,
}

impl WorkerOut {
    pub(crate) fn new() -> WorkerOut {
        WorkerOut {
            per_op: [0; 5],
            ops: 0,
            not_found: 0,
            errors: 0,
            first_error: None,
            end: Instant::now(),
        }
    }
}

/// What a worker thread runs with.
pub(crate) struct Worker<'a> {
    pub(crate) engine: &'a dyn Engine,
    pub(crate) cfg: &'a RunConfig,
    pub(crate) shared: &'a Shared,
    pub(crate) ops: &'a crate::workload::OpChooser,
    pub(crate) keys: Chooser,
    pub(crate) lat: LatencyRecorder<'a>,
    /// The worker's number (seeds its random numbers).
    pub(crate) t: u64,
}

impl Worker<'_> {
    /// The worker's own random numbers.
    pub(crate) fn rng(&self) -> Rng64 {
        Rng64::new(self.cfg.seed.wrapping_add(0x1234_5678 * (self.t + 1)))
    }
}

fn worker(w: Worker<'_>) -> WorkerOut {
    let mut rng = w.rng();
    let Worker {
        engine,
        cfg,
        shared,
        ops,
        mut keys,
        mut lat,
        ..
    } = w;
    let mut out = WorkerOut::new();
    let mut key = Vec::with_capacity(32);
    let mut value = Vec::with_capacity(cfg.value_len);
    let mut read_buf = Vec::with_capacity(cfg.value_len);
    let mut batch = Batch::new(cfg.inflight, Op::Read);
    let mut updates = Batch::new(cfg.inflight, Op::Update);
    let mut measuring = shared.measuring.load(Ordering::Acquire);
    // Measured ops this thread may still do before claiming more (claims
    // go in chunks so the shared counters are not touched on every op; a
    // chunk holds at least one batch).
    let claim = CLAIM.max(cfg.inflight as u64);
    let mut budget = 0u64;
    let mut pending = 0u64;
    loop {
        if shared.stop.load(Ordering::Relaxed) {
            break;
        }
        if !measuring && shared.measuring.load(Ordering::Acquire) {
            measuring = true;
            // Warm-up keys are not run: every key of a measured batch was
            // chosen (and claimed) while measuring.
            batch.clear();
            updates.clear();
        }
        if measuring && budget == 0 {
            shared.completed.fetch_add(pending, Ordering::Relaxed);
            pending = 0;
            match shared.claim(cfg.stop, claim) {
                Some(n) => budget = n,
                None => break,
            }
        }
        let op = ops.pick(rng.next_f64());
        let started;
        let r: Result<bool> = match op {
            Op::Insert => {
                let n = shared.inserts.next();
                cfg.key_format.key_into(n, &mut key);
                value_into(rng.next_u64(), cfg.value_len, &mut value);
                started = Instant::now();
                let r = engine.insert(&key, &value).map(|()| true);
                // A failed insert is acknowledged too: it is counted as an
                // error, and a read that picks it counts "not found".
                match shared.inserts.acknowledge(n) {
                    Ok(()) => r,
                    Err(e) => r.and(Err(e.into())),
                }
            }
            _ => {
                let n = keys.next_upto(&mut rng, shared.inserts.limit());
                let batching = match op {
                    Op::Read if batch.enabled() => Some(&mut batch),
                    Op::Update if updates.enabled() => Some(&mut updates),
                    _ => None,
                };
                if let Some(b) = batching {
                    // Claimed now, counted when its batch has run.
                    let (k, v) = b.push();
                    cfg.key_format.key_into(n, k);
                    if let Some(v) = v {
                        value_into(rng.next_u64(), cfg.value_len, v);
                    }
                    if measuring {
                        budget -= 1;
                    }
                    if b.is_full() {
                        pending += b.run(engine, measuring, &mut out, &mut lat);
                    }
                    continue;
                }
                cfg.key_format.key_into(n, &mut key);
                match op {
                    Op::Read => {
                        started = Instant::now();
                        engine.read(&key, &mut read_buf)
                    }
                    Op::Update => {
                        value_into(rng.next_u64(), cfg.value_len, &mut value);
                        started = Instant::now();
                        engine.update(&key, &value).map(|()| true)
                    }
                    Op::ReadModifyWrite => {
                        let stamp = rng.next_u64().to_le_bytes();
                        started = Instant::now();
                        engine.rmw(&key, &mut |old, new| stamp_front(&stamp, old, new))
                    }
                    Op::Scan => {
                        let len = 1 + rng.below(cfg.workload.max_scan_len as u64) as usize;
                        started = Instant::now();
                        engine.scan(&key, len).map(|n| n > 0)
                    }
                    Op::Insert => unreachable!(),
                }
            }
        };
        let now = Instant::now();
        if measuring {
            let ns = (now - started).as_nanos().max(1) as u64;
            lat.record(ns, 1, op.writes());
            out.per_op[op_index(op)] += 1;
            out.ops += 1;
            out.end = now;
            budget -= 1;
            pending += 1;
            match r {
                Ok(true) => {}
                Ok(false) => out.not_found += 1,
                Err(e) => out.error(e),
            }
        }
    }
    // The last, partial batches: their keys were claimed, so they run and
    // count.
    pending += batch.run(engine, measuring, &mut out, &mut lat);
    pending += updates.run(engine, measuring, &mut out, &mut lat);
    shared.completed.fetch_add(pending, Ordering::Relaxed);
    out
}

/// An rmw's modification: YCSB's F rewrites one field, so `new` is `old`
/// with `stamp` over its first bytes.
pub(crate) fn stamp_front(stamp: &[u8; 8], old: &[u8], new: &mut Vec<u8>) {
    new.clear();
    new.extend_from_slice(old);
    let m = new.len().min(8);
    new[..m].copy_from_slice(&stamp[..m]);
}

pub(crate) fn op_index(op: Op) -> usize {
    Op::ALL.iter().position(|&o| o == op).unwrap_or(0)
}

impl WorkerOut {
    pub(crate) fn error(&mut self, e: crate::engine::Error) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(e.to_string());
        }
    }
}

/// A worker's reads (or updates) gathered for one [`Engine::read_many`]
/// (or [`Engine::update_many`]) call, in batch mode (an in-flight count,
/// [`RunConfig::inflight`], above 1). The key and value buffers are kept
/// between batches; `len` of them are this batch's.
struct Batch {
    op: Op,
    keys: Vec<Vec<u8>>,
    /// An update batch's new values (empty for reads).
    values: Vec<Vec<u8>>,
    len: usize,
    size: usize,
}

impl Batch {
    fn new(inflight: usize, op: Op) -> Batch {
        debug_assert!(matches!(op, Op::Read | Op::Update));
        let size = if inflight > 1 { inflight } else { 0 };
        let buffers = |n: usize| (0..n).map(|_| Vec::with_capacity(32)).collect();
        Batch {
            op,
            keys: buffers(size),
            values: buffers(if op == Op::Update { size } else { 0 }),
            len: 0,
            size,
        }
    }
    fn enabled(&self) -> bool {
        self.size > 0
    }
    fn is_full(&self) -> bool {
        self.len == self.size
    }
    fn clear(&mut self) {
        self.len = 0;
    }
    /// The next key's buffer, and its value's for an update.
    fn push(&mut self) -> (&mut Vec<u8>, Option<&mut Vec<u8>>) {
        self.len += 1;
        let i = self.len - 1;
        (&mut self.keys[i], self.values.get_mut(i))
    }
    /// Runs the batch (if it holds any key) and empties it; when
    /// `measuring`, counts each key as one operation, records the batch's
    /// time once per key and returns how many keys were counted.
    fn run(
        &mut self,
        engine: &dyn Engine,
        measuring: bool,
        out: &mut WorkerOut,
        lat: &mut LatencyRecorder,
    ) -> u64 {
        if self.len == 0 {
            return 0;
        }
        let keys = &self.keys[..self.len];
        let n = keys.len() as u64;
        self.len = 0;
        let started = Instant::now();
        let r = match self.op {
            Op::Update => engine
                .update_many(keys, &self.values[..keys.len()])
                .map(|()| n),
            _ => engine.read_many(keys),
        };
        let now = Instant::now();
        if !measuring {
            return 0;
        }
        let ns = (now - started).as_nanos().max(1) as u64;
        lat.record(ns, n, self.op.writes());
        out.per_op[op_index(self.op)] += n;
        out.ops += n;
        out.end = now;
        match r {
            Ok(found) => out.not_found += n.saturating_sub(found),
            Err(e) => {
                // Every key of a failed batch is a failed operation.
                out.errors += n - 1;
                out.error(e);
            }
        }
        n
    }
}

/// Operations a worker claims at a time in `Stop::Ops` mode.
pub(crate) const CLAIM: u64 = 64;

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// A `BTreeMap` behind a lock whose inserts of even-numbered keys stall
    /// (fault injection: a slow insert keeps its number in flight while
    /// later ones finish). It counts its own lookups and the batches it is
    /// handed, to check the runner's counts against.
    struct SlowEvenInserts {
        map: Mutex<BTreeMap<Vec<u8>, Vec<u8>>>,
        reads: AtomicU64,
        misses: AtomicU64,
        batches: Mutex<Vec<usize>>,
        /// Sizes of the update batches handed to `update_many`, and the
        /// updates applied.
        update_batches: Mutex<Vec<usize>>,
        updates: AtomicU64,
    }

    impl SlowEvenInserts {
        fn new() -> Self {
            SlowEvenInserts {
                map: Mutex::new(BTreeMap::new()),
                reads: AtomicU64::new(0),
                misses: AtomicU64::new(0),
                batches: Mutex::new(Vec::new()),
                update_batches: Mutex::new(Vec::new()),
                updates: AtomicU64::new(0),
            }
        }
    }

    impl Engine for SlowEvenInserts {
        fn name(&self) -> &str {
            "slow-even-inserts"
        }
        fn describe(&self) -> String {
            String::new()
        }
        fn insert(&self, key: &[u8], value: &[u8]) -> Result<()> {
            if key.last().is_some_and(|b| b % 2 == 0) {
                std::thread::sleep(Duration::from_micros(300));
            }
            self.map
                .lock()
                .unwrap()
                .insert(key.to_vec(), value.to_vec());
            Ok(())
        }
        fn read(&self, key: &[u8], out: &mut Vec<u8>) -> Result<bool> {
            let m = self.map.lock().unwrap();
            out.clear();
            let found = m.get(key).map(|v| out.extend_from_slice(v)).is_some();
            self.reads.fetch_add(1, Ordering::Relaxed);
            self.misses.fetch_add(u64::from(!found), Ordering::Relaxed);
            Ok(found)
        }
        fn read_many(&self, keys: &[Vec<u8>]) -> Result<u64> {
            self.batches.lock().unwrap().push(keys.len());
            let mut out = Vec::new();
            let mut found = 0;
            for k in keys {
                found += u64::from(self.read(k, &mut out)?);
            }
            Ok(found)
        }
        fn update(&self, key: &[u8], value: &[u8]) -> Result<()> {
            self.updates.fetch_add(1, Ordering::Relaxed);
            self.insert(key, value)
        }
        fn update_many(&self, keys: &[Vec<u8>], values: &[Vec<u8>]) -> Result<()> {
            self.update_batches.lock().unwrap().push(keys.len());
            assert_eq!(keys.len(), values.len());
            for (k, v) in keys.iter().zip(values) {
                assert_eq!(v.len(), 16, "an update batch's value is the row's length");
                self.update(k, v)?;
            }
            Ok(())
        }
        fn scan(&self, start: &[u8], n: usize) -> Result<usize> {
            Ok(self
                .map
                .lock()
                .unwrap()
                .range(start.to_vec()..)
                .take(n)
                .count())
        }
    }

    fn cfg(workload: char, threads: usize) -> RunConfig {
        RunConfig {
            workload: Workload::ycsb(workload).unwrap(),
            records: 1000,
            stop: Stop::Ops(20_000),
            threads,
            warmup: Duration::ZERO,
            key_format: KeyFormat::OrderedU64,
            value_len: 16,
            progress: false,
            seed: 7,
            inflight: 1,
        }
    }

    /// Regression: with `fetch_max` as the "last inserted" counter, D at 2
    /// threads read keys whose insert had not returned ("87 not found" in
    /// the full run of 2026-11-22).
    #[test]
    fn workload_d_never_reads_an_insert_still_in_flight() {
        let engine = SlowEvenInserts::new();
        let c = cfg('D', 4);
        load(&engine, &c).unwrap();
        let r = run(&engine, &c).unwrap();
        assert_eq!(r.errors, 0, "{:?}", r.first_error);
        assert!(r.per_op.iter().any(|(op, n)| *op == Op::Insert && *n > 500));
        assert_eq!(r.not_found, 0, "a read chose an unacknowledged insert");
    }

    fn reads_of(r: &RunResult) -> u64 {
        r.per_op
            .iter()
            .find(|(op, _)| *op == Op::Read)
            .map_or(0, |p| p.1)
    }

    /// Batch mode on one thread: every op counts once per key, batches are
    /// full but the last, which holds the claimed remainder.
    #[test]
    fn batches_count_per_key_and_the_last_partial_batch_counts_too() {
        let engine = SlowEvenInserts::new();
        let mut c = cfg('C', 1);
        load(&engine, &c).unwrap();
        c.stop = Stop::Ops(1000);
        c.inflight = 64;
        let r = run(&engine, &c).unwrap();
        assert_eq!(r.errors, 0, "{:?}", r.first_error);
        assert_eq!(r.ops, 1000);
        assert_eq!(reads_of(&r), 1000);
        assert_eq!(r.hist.len(), 1000, "one latency per key");
        assert_eq!(engine.reads.load(Ordering::Relaxed), 1000);
        assert_eq!(r.not_found, 0);
        let batches = engine.batches.lock().unwrap().clone();
        assert_eq!(batches.len(), 16, "{batches:?}");
        assert!(batches[..15].iter().all(|&n| n == 64), "{batches:?}");
        assert_eq!(batches[15], 1000 - 15 * 64);
    }

    /// Missing keys are "not found" per key (n − found of each batch),
    /// the total is exact over threads, and updates are batched apart.
    #[test]
    fn batched_reads_count_not_found_and_stop_at_exactly_the_ops_asked() {
        let engine = SlowEvenInserts::new();
        let mut c = cfg('B', 2);
        load(&engine, &c).unwrap();
        // Every third record gone: reads of them are not found.
        engine
            .map
            .lock()
            .unwrap()
            .retain(|k, _| u64::from_be_bytes(k[..8].try_into().unwrap()) % 3 != 0);
        c.stop = Stop::Ops(5_003);
        c.inflight = 16;
        let r = run(&engine, &c).unwrap();
        assert_eq!(r.errors, 0, "{:?}", r.first_error);
        assert_eq!(r.ops, 5_003);
        let updates = r
            .per_op
            .iter()
            .find(|(op, _)| *op == Op::Update)
            .map_or(0, |p| p.1);
        assert!(updates > 0);
        assert_eq!(reads_of(&r) + updates, 5_003);
        // Updates of a missing record write it again (as YCSB's would), so
        // the engine's own count of misses is the truth to compare with.
        assert_eq!(engine.reads.load(Ordering::Relaxed), reads_of(&r));
        assert_eq!(r.not_found, engine.misses.load(Ordering::Relaxed));
        assert!(r.not_found > 0);
        let batches = engine.batches.lock().unwrap().clone();
        assert_eq!(batches.iter().sum::<usize>() as u64, reads_of(&r));
        assert!(batches.iter().all(|&n| (1..=16).contains(&n)));
        assert!(
            batches.iter().filter(|&&n| n < 16).count() <= 2,
            "only each thread's last batch may be partial: {batches:?}"
        );
    }

    /// Batch mode batches updates too (each batch one `update_many`, full
    /// but each thread's last), apart from the reads: every update
    /// claimed is applied and counted once.
    #[test]
    fn updates_are_batched_apart_from_reads_and_each_counts_once() {
        let engine = SlowEvenInserts::new();
        let mut c = cfg('A', 2);
        load(&engine, &c).unwrap();
        let loaded = engine.updates.load(Ordering::Relaxed);
        c.stop = Stop::Ops(4_000);
        c.inflight = 32;
        let r = run(&engine, &c).unwrap();
        assert_eq!(r.errors, 0, "{:?}", r.first_error);
        assert_eq!(r.ops, 4_000);
        let updates = r
            .per_op
            .iter()
            .find(|(op, _)| *op == Op::Update)
            .map_or(0, |p| p.1);
        assert!(updates > 1_000, "workload A is half updates: {updates}");
        assert_eq!(reads_of(&r) + updates, 4_000);
        assert_eq!(engine.updates.load(Ordering::Relaxed) - loaded, updates);
        assert_eq!(r.hist.len(), 4_000, "one latency per operation");
        let batches = engine.update_batches.lock().unwrap().clone();
        assert_eq!(batches.iter().sum::<usize>() as u64, updates);
        assert!(
            batches.iter().filter(|&&n| n < 32).count() <= 2,
            "only each thread's last update batch may be partial: {batches:?}"
        );
    }

    /// With a time limit, the batch that is still gathering when time is
    /// up runs and counts: no lookup done goes unreported.
    #[test]
    fn a_timed_batched_run_reports_every_lookup_it_did() {
        let engine = SlowEvenInserts::new();
        let mut c = cfg('C', 2);
        load(&engine, &c).unwrap();
        c.stop = Stop::Duration(Duration::from_millis(30));
        c.inflight = 256;
        let r = run(&engine, &c).unwrap();
        assert_eq!(r.errors, 0, "{:?}", r.first_error);
        assert!(r.ops > 0);
        assert_eq!(engine.reads.load(Ordering::Relaxed), r.ops);
        assert_eq!(r.hist.len(), r.ops);
    }
}
