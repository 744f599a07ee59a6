//! Rime's YCSB-style benchmark harness: Rime and its peers side by side, on
//! the same machine in the same run. See `benches/README.md`.
//!
//! * [`generator`]: YCSB's key choosers (scrambled zipfian, latest, uniform);
//!   [`acknowledged`]: which inserted records readers may choose.
//! * [`workload`]: workloads A–F, rndread, key/value formats, presets.
//! * [`engine`]: the [`engine::Engine`] trait and the registry;
//!   [`engines`]: the adapters (peers behind `peers-*` features).
//! * [`runner`]: load and run phases, threads, warm-up; [`latency`]: the
//!   latency histograms its workers share; [`tasks`]: clients as tasks on
//!   one thread per core, for engines that commit without waiting.
//! * [`isolate`]: an engine per child process, in a memory [`cgroup`] for
//!   the larger-than-memory rows.
//! * [`fsync_probe`]: the device's 4 KiB write + `fdatasync` rate beside
//!   the durable rows; [`report`]: Markdown, CSV, SVG; [`repeat`]: the
//!   median and spread of several rounds.
//! * [`Matrix`]: a set of runs (what the CLI's `ycsb` and `full` execute).
//!
//! The only `unsafe` is LMDB's (`engines::lmdb`, behind `peers-lmdb`),
//! allowed on the one function that opens the environment.
#![deny(unsafe_code)]

pub mod acknowledged;
pub mod cgroup;
pub mod engine;
pub mod engines;
pub mod fsync_probe;
/// YCSB's key choosers, in their own crate (`ycsb/`) since lower crates'
/// tests use its keys too.
pub use rime_ycsb as generator;
pub mod isolate;
pub mod latency;
pub mod repeat;
pub mod report;
pub mod runner;
pub mod tasks;
pub mod workload;

use engine::{Durability, Engine, EngineConfig};
use isolate::Isolation;
use report::Row;
use runner::{RunConfig, Stop};
use std::path::{Path, PathBuf};
use std::time::Duration;
use workload::{Distribution, KeyFormat, Preset, Workload};

/// Operations per second one core may do in any engine, a bound for
/// sizing the in-memory pool ([`Matrix::pool`]): above the fastest rate
/// measured here (Rime's bare tree on C at 2 threads, at most ~1.5M per
/// thread in the runs of 2026-12-07, `docs/benchmarks.md`).
pub const MAX_OPS_PER_CORE_SEC: f64 = 2.0e6;

/// Every combination of these is run: for each engine × durability, one
/// fresh load, then each workload at each thread count.
#[derive(Debug, Clone)]
pub struct Matrix {
    pub engines: Vec<String>,
    pub workloads: Vec<Workload>,
    /// Overrides each workload's own request distribution.
    pub distribution: Option<Distribution>,
    pub preset: Preset,
    pub records: u64,
    pub key_format: KeyFormat,
    pub value_len: usize,
    pub stop: Stop,
    pub threads: Vec<usize>,
    pub durabilities: Vec<Durability>,
    /// Pool / cache budget; `None`: from the preset (all data fits, or
    /// data / pool as the preset says).
    pub pool_bytes: Option<usize>,
    /// What the engine's own cache is opened with, where it differs from
    /// the pool: Rime in a memory cgroup gets the cgroup's memory less its
    /// process overhead, as it caches nothing in the OS page cache
    /// ([`isolate::run_engine`]).
    pub engine_pool_bytes: Option<usize>,
    pub warmup: Duration,
    /// Where the engines' files go (must support O_DIRECT: not tmpfs).
    pub data_dir: PathBuf,
    pub progress: bool,
    pub seed: u64,
    /// In this process, or each engine in a child process (and cgroup).
    pub isolation: Isolation,
    /// Lookups per thread a batched engine ([`engine::Engine::batched`])
    /// keeps in flight: a row for each. Other engines run one op per call.
    pub inflight: Vec<usize>,
    /// Rows `device-qd1` and `device-qd32`: the random 4 KiB read rate of
    /// the device under Rime's page file, measured in each cell just before
    /// the first Rime engine runs it ([`rime_bufmgr::io::probe`]). In this
    /// process only (`isolation` none).
    pub device_probe: bool,
    /// Row `device-fsync`: 4 KiB write + `fdatasync` one at a time in the
    /// data directory ([`fsync_probe`]), measured in each cell just before
    /// the first engine runs it.
    pub fsync_probe: bool,
    /// Rounds of the whole matrix; each cell's row is the median round's,
    /// with the spread beside it ([`repeat`]).
    pub repeat: usize,
}

impl Matrix {
    /// A matrix with the preset's sizes.
    pub fn new(preset: Preset, engines: &[&str], workloads: &str) -> Result<Matrix, String> {
        Ok(Matrix {
            engines: engines.iter().map(|s| s.to_string()).collect(),
            workloads: parse_workloads(workloads)?,
            distribution: None,
            preset,
            records: preset.default_records(),
            key_format: preset.key_format(),
            value_len: preset.value_len(),
            stop: Stop::Duration(Duration::from_secs_f64(preset.default_duration_secs())),
            threads: preset.default_threads(),
            durabilities: preset.default_durabilities(),
            pool_bytes: None,
            engine_pool_bytes: None,
            warmup: Duration::from_secs(1),
            data_dir: default_data_dir(),
            progress: true,
            seed: 42,
            isolation: Isolation::InProcess,
            inflight: preset.default_inflight(),
            device_probe: preset.device_probe(),
            fsync_probe: preset.fsync_probe(),
            repeat: preset.default_repeat(),
        })
    }

    /// Logical bytes of the loaded data (keys + values).
    pub fn data_bytes(&self) -> u64 {
        self.records * self.record_bytes()
    }

    /// The pool budget every engine gets.
    ///
    /// In a preset whose data fits in memory, it holds the loaded records
    /// and every record one run may insert ([`Matrix::run_inserts_bound`]):
    /// a run of D or E inserts in proportion to the engine's speed, and a
    /// pool sized for the load alone let a fast engine's run outgrow it
    /// (Rime's bare tree on D at 2 threads, 3 s: 437k ops/s with the
    /// load's pool, 1.30M with room for the inserts), while the peers that
    /// cache in the OS page cache never notice. A larger-than-memory
    /// preset keeps its data/pool ratio at the load.
    pub fn pool(&self) -> usize {
        if let Some(p) = self.pool_bytes {
            return p;
        }
        let data = self.data_bytes() as f64;
        match self.preset.data_over_pool() {
            // B+tree pages are ~70% full after hashed inserts; a pool that
            // holds everything needs headroom over the logical size.
            None => {
                let inserted = self.run_inserts_bound() as f64 * self.record_bytes() as f64;
                (((data + inserted) * 2.5) as usize + (64 << 20)).max(128 << 20)
            }
            Some(r) => ((data / r) as usize).max(16 << 20),
        }
    }

    /// Logical bytes of one record (key + value).
    fn record_bytes(&self) -> u64 {
        (self.key_format.avg_len() + self.value_len) as u64
    }

    /// The most records one run (warm-up included) of any of the
    /// workloads may insert: its insert share of the operations it can
    /// do, at most [`MAX_OPS_PER_CORE_SEC`] on each core it can use.
    pub fn run_inserts_bound(&self) -> u64 {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let threads = self.threads.iter().copied().max().unwrap_or(1);
        let rate = MAX_OPS_PER_CORE_SEC * threads.min(cores) as f64;
        let ops = self.warmup.as_secs_f64() * rate
            + match self.stop {
                Stop::Ops(n) => n as f64,
                Stop::Duration(d) => d.as_secs_f64() * rate,
            };
        self.workloads
            .iter()
            .map(|wl| (wl.insert_share() * ops).ceil() as u64)
            .max()
            .unwrap_or(0)
    }

    /// The in-flight counts engine `name` runs at: each of
    /// [`Matrix::inflight`] if it is batched, else 1 (one op per call).
    pub fn inflights(&self, batched: bool) -> Vec<usize> {
        if batched && !self.inflight.is_empty() {
            self.inflight.clone()
        } else {
            vec![1]
        }
    }

    /// Runs everything, [`Matrix::repeat`] times over; `on_row` sees each
    /// row of each round as it is measured. With several rounds, each
    /// cell's row is its median round's ([`repeat`]).
    pub fn run(&self, mut on_row: impl FnMut(&Row)) -> engine::Result<Vec<Row>> {
        let rounds = self.repeat.max(1);
        let mut all = Vec::with_capacity(rounds);
        for round in 1..=rounds {
            if rounds > 1 {
                eprintln!("round {round} of {rounds}");
            }
            all.push(self.run_round(&mut on_row)?);
        }
        Ok(if rounds == 1 {
            all.pop().unwrap_or_default()
        } else {
            repeat::median_of_rounds(all)
        })
    }

    /// One round: every engine × durability, a fresh load each.
    fn run_round(&self, on_row: &mut dyn FnMut(&Row)) -> engine::Result<Vec<Row>> {
        std::fs::create_dir_all(&self.data_dir)?;
        let mut rows = Vec::new();
        let pool = self.pool();
        let in_process = self.isolation == Isolation::InProcess;
        if self.device_probe && !in_process {
            eprintln!(
                "rime-bench: no device-qd1/device-qd32 rows: the device probe runs only \
                 with --isolate none (it reads the engine's file while the engine is open)"
            );
        }
        for &durability in &self.durabilities {
            // The device rows come once per cell: the read probe's with the
            // first Rime engine, the fsync probe's with the first engine.
            let mut probes = Probes {
                read_file_pending: self.device_probe && in_process,
                fsync_pending: self.fsync_probe,
            };
            for name in &self.engines {
                if engine::keeps_all_data_in_memory(name) && self.data_bytes() > pool as u64 {
                    let why = "n/a: keeps all data in RAM, cannot run larger than memory";
                    rows.extend(self.rows_with_note(name, durability, why));
                    continue;
                }
                if !in_process {
                    let fsync = std::mem::take(&mut probes.fsync_pending);
                    let measured = isolate::run_engine(self, name, durability, fsync)?;
                    measured.iter().for_each(&mut *on_row);
                    rows.extend(measured);
                    continue;
                }
                let measured = self.run_engine_here(name, durability, &mut probes, on_row)?;
                rows.extend(measured);
            }
        }
        Ok(rows)
    }

    /// Opens, loads and runs engine `name` in this process: its rows, and
    /// the device rows it was due to measure beside it.
    fn run_engine_here(
        &self,
        name: &str,
        durability: Durability,
        probes: &mut Probes,
        on_row: &mut dyn FnMut(&Row),
    ) -> engine::Result<Vec<Row>> {
        let max_threads = self.threads.iter().copied().max().unwrap_or(1);
        let ecfg = EngineConfig {
            pool_bytes: self.engine_pool_bytes.unwrap_or(self.pool()),
            durability,
            expected_bytes: self.data_bytes(),
            threads: max_threads,
            inflight: self
                .inflights(engine::batched(name))
                .into_iter()
                .max()
                .unwrap_or(1),
        };
        let failed = |why: String| -> Vec<Row> {
            eprintln!("{name}: {why}");
            self.rows_with_note(name, durability, &why)
        };
        let mut base = RunConfig {
            workload: self.workloads[0].clone(),
            records: self.records,
            stop: self.stop,
            threads: max_threads,
            warmup: self.warmup,
            key_format: self.key_format,
            value_len: self.value_len,
            progress: self.progress,
            seed: self.seed,
            inflight: 1,
        };
        let mut cell = match self.open_and_load(name, &ecfg, &base) {
            Ok(c) => c,
            Err(why) => return Ok(failed(why)),
        };
        let mut here = CellProbes {
            read_file: probes.take_read_file(name, cell.dir.path()),
            fsync: std::mem::take(&mut probes.fsync_pending),
        };
        // Whether the last run inserted records: every run starts from the
        // loaded records alone, as YCSB's core workloads assume. A run of D
        // or E inserts in proportion to the engine's speed; run after it
        // on the same data, the next cell of a fast engine had more records
        // than a slow one's (in the in-memory preset, more than its pool).
        let mut grown = false;
        let mut rows = Vec::new();
        // Cells run so far, in `rows_with_note`'s order.
        let mut cells_done = 0;
        for wl in &self.workloads {
            for &threads in &self.threads {
                let mut wl = wl.clone();
                if let Some(d) = self.distribution {
                    wl.distribution = d;
                }
                for row in self.probe_rows(&here, &wl, durability, threads) {
                    on_row(&row);
                    rows.push(row);
                }
                base.workload = wl.clone();
                base.threads = threads;
                for inflight in self.inflights(cell.engine.batched()) {
                    base.inflight = inflight;
                    if grown {
                        // The old pool goes before the new one is filled.
                        cell.engine.close()?;
                        drop(cell);
                        cell = match self.open_and_load(name, &ecfg, &base) {
                            Ok(c) => c,
                            Err(why) => {
                                let why = format!("reloading: {why}");
                                eprintln!("{name}: {why}");
                                for row in self.rows_left(name, durability, &why, cells_done) {
                                    on_row(&row);
                                    rows.push(row);
                                }
                                return Ok(rows);
                            }
                        };
                        if here.read_file.is_some() {
                            here.read_file = page_file(cell.dir.path()).ok().flatten();
                        }
                    }
                    let r = runner::run(cell.engine.as_ref(), &base)?;
                    cells_done += 1;
                    grown = wl.inserts();
                    let mut row = self.row(
                        name,
                        &wl,
                        durability,
                        threads,
                        inflight,
                        self.pool(),
                        cell.load.as_secs_f64(),
                        Some(&r),
                        None,
                    );
                    row.engine_note = cell.engine.note();
                    if let Some(e) = &r.first_error {
                        eprintln!(
                            "{name} {} ×{inflight}: {} errors, first: {e}",
                            wl.name, r.errors
                        );
                    }
                    on_row(&row);
                    rows.push(row);
                }
            }
        }
        cell.engine.close()?;
        Ok(rows)
    }

    /// Opens engine `name` in a fresh directory and loads `base.records`
    /// records into it; why not, as a note for its rows.
    fn open_and_load(
        &self,
        name: &str,
        ecfg: &EngineConfig,
        base: &RunConfig,
    ) -> Result<LoadedEngine, String> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("{name}-"))
            .tempdir_in(&self.data_dir)
            .map_err(|e| format!("data directory: {e}"))?;
        let engine =
            engine::open(name, dir.path(), ecfg).map_err(|e| format!("open failed: {e}"))?;
        let load = runner::load(engine.as_ref(), base).map_err(|e| e.to_string())?;
        Ok(LoadedEngine { engine, dir, load })
    }

    /// The device rows of one cell, measured just before an engine runs it.
    fn probe_rows(
        &self,
        probes: &CellProbes,
        wl: &Workload,
        durability: Durability,
        threads: usize,
    ) -> Vec<Row> {
        let mut rows = Vec::new();
        if probes.fsync {
            rows.push(self.fsync_row(wl, durability, threads));
        }
        if let Some(file) = &probes.read_file {
            rows.extend(self.device_rows(file, wl, durability, threads));
        }
        rows
    }
}

/// An engine with the loaded records, in its own directory (removed when
/// this is dropped, after the engine: fields drop in order).
struct LoadedEngine {
    engine: Box<dyn Engine>,
    dir: tempfile::TempDir,
    load: Duration,
}

/// Device probes of a durability's cells not yet taken by an engine.
struct Probes {
    /// The read probe waits for the first Rime engine (it reads its file).
    read_file_pending: bool,
    /// The fsync probe goes with the first engine to run.
    fsync_pending: bool,
}

impl Probes {
    /// Rime's page file under `dir` for the read probe, if it is still
    /// pending and `name` is a Rime engine (which then takes it).
    fn take_read_file(&mut self, name: &str, dir: &Path) -> Option<PathBuf> {
        if !self.read_file_pending || !name.starts_with("rime") {
            return None;
        }
        self.read_file_pending = false;
        match page_file(dir) {
            Ok(Some(f)) => {
                let mib = std::fs::metadata(&f).map_or(0, |m| m.len() >> 20);
                eprintln!("device probe: {} ({mib} MiB)", f.display());
                Some(f)
            }
            Ok(None) => {
                eprintln!("device probe: no file under {}", dir.display());
                None
            }
            Err(e) => {
                eprintln!("device probe: {}: {e}", dir.display());
                None
            }
        }
    }
}

/// The probes one engine runs before each of its cells.
struct CellProbes {
    read_file: Option<PathBuf>,
    fsync: bool,
}

impl Matrix {
    /// A row for every cell of `engine`, each with no numbers and `why`.
    pub(crate) fn rows_with_note(
        &self,
        engine: &str,
        durability: Durability,
        why: &str,
    ) -> Vec<Row> {
        let mut out = Vec::new();
        for wl in &self.workloads {
            for &threads in &self.threads {
                for inflight in self.inflights(engine::batched(engine)) {
                    let note = Some(why.to_string());
                    out.push(self.row(
                        engine,
                        wl,
                        durability,
                        threads,
                        inflight,
                        self.pool(),
                        0.0,
                        None,
                        note,
                    ));
                }
            }
        }
        out
    }

    /// [`Matrix::rows_with_note`] for the cells after the first `done`:
    /// those a failed reload left unmeasured, each saying why.
    fn rows_left(&self, engine: &str, durability: Durability, why: &str, done: usize) -> Vec<Row> {
        let mut rows = self.rows_with_note(engine, durability, why);
        rows.drain(..done.min(rows.len()));
        rows
    }

    /// The device's random 4 KiB read rate on `file` at queue depths 1 and
    /// 32, each for as long as a run of the matrix: rows `device-qd1` and
    /// `device-qd32` of the cell (`inflight` = the queue depth).
    fn device_rows(
        &self,
        file: &Path,
        wl: &Workload,
        durability: Durability,
        threads: usize,
    ) -> Vec<Row> {
        let duration = match self.stop {
            Stop::Duration(d) => d,
            Stop::Ops(_) => Duration::from_secs(10),
        };
        let blocks = std::fs::metadata(file).map_or(0, |m| m.len()) / 4096;
        let mut out = Vec::new();
        for qd in DEVICE_QUEUE_DEPTHS {
            let name = format!("device-qd{qd}");
            let r = if blocks == 0 {
                Err(format!("{} holds no whole 4 KiB block", file.display()))
            } else {
                rime_bufmgr::io::probe::random_read_iops(file, blocks, qd, duration)
                    .map_err(|e| e.to_string())
            };
            let mut row = self.row(
                &name,
                wl,
                durability,
                threads,
                qd,
                self.pool(),
                0.0,
                None,
                None,
            );
            match r {
                Ok(p) => {
                    row.ops = p.reads;
                    row.secs = p.elapsed.as_secs_f64();
                    row.ops_per_sec = p.iops();
                    row.ops_per_sec_min = row.ops_per_sec;
                    row.ops_per_sec_max = row.ops_per_sec;
                    row.runs = 1;
                }
                Err(e) => {
                    eprintln!("{name}: probe of {} failed: {e}", file.display());
                    row.note = Some(format!("probe failed: {e}"));
                }
            }
            out.push(row);
        }
        out
    }

    #[allow(clippy::too_many_arguments)]
    fn row(
        &self,
        engine: &str,
        wl: &Workload,
        durability: Durability,
        threads: usize,
        inflight: usize,
        pool: usize,
        load_secs: f64,
        r: Option<&runner::RunResult>,
        note: Option<String>,
    ) -> Row {
        let distribution = self.distribution.unwrap_or(wl.distribution);
        let ops_per_sec = r.map_or(0.0, |r| r.ops_per_sec());
        Row {
            engine: engine.to_string(),
            workload: wl.name.clone(),
            distribution: distribution.to_string(),
            preset: self.preset.to_string(),
            durability: durability.to_string(),
            threads,
            inflight,
            records: self.records,
            data_bytes: self.data_bytes(),
            pool_bytes: pool as u64,
            load_secs,
            ops: r.map_or(0, |r| r.ops),
            secs: r.map_or(0.0, |r| r.elapsed.as_secs_f64()),
            ops_per_sec,
            p50_us: r.map_or(0.0, |r| r.latency_us(0.5)),
            p99_us: r.map_or(0.0, |r| r.latency_us(0.99)),
            p999_us: r.map_or(0.0, |r| r.latency_us(0.999)),
            not_found: r.map_or(0, |r| r.not_found),
            errors: r.map_or(0, |r| r.errors),
            mem_limit_bytes: 0,
            mem_peak_bytes: 0,
            runs: usize::from(r.is_some()),
            ops_per_sec_min: ops_per_sec,
            ops_per_sec_max: ops_per_sec,
            commit_p50_us: r.map_or(0.0, |r| r.commit_latency_us(0.5)),
            commit_p99_us: r.map_or(0.0, |r| r.commit_latency_us(0.99)),
            commits_per_sync: r.and_then(|r| r.commits_per_sync),
            engine_note: None,
            note,
        }
    }

    /// Row `device-fsync` of a cell: 4 KiB write + `fdatasync` in the data
    /// directory, one at a time, for as long as a run (1 s with `--ops`).
    /// Every write is one sync: its latency is also the commit latency.
    fn fsync_row(&self, wl: &Workload, durability: Durability, threads: usize) -> Row {
        let duration = match self.stop {
            Stop::Duration(d) => d,
            Stop::Ops(_) => Duration::from_secs(1),
        };
        let name = "device-fsync";
        let mut row = self.row(
            name,
            wl,
            durability,
            threads,
            1,
            self.pool(),
            0.0,
            None,
            None,
        );
        match fsync_probe::fdatasync_rate(&self.data_dir, duration) {
            Ok(p) => {
                row.ops = p.syncs;
                row.secs = p.elapsed.as_secs_f64();
                row.ops_per_sec = p.syncs_per_sec();
                row.ops_per_sec_min = row.ops_per_sec;
                row.ops_per_sec_max = row.ops_per_sec;
                row.runs = 1;
                row.p50_us = p.latency_us(0.5);
                row.p99_us = p.latency_us(0.99);
                row.p999_us = p.latency_us(0.999);
                row.commit_p50_us = row.p50_us;
                row.commit_p99_us = row.p99_us;
                row.commits_per_sync = Some(1.0);
                row.engine_note = Some(FSYNC_PROBE_NOTE.into());
            }
            Err(e) => {
                eprintln!("{name}: probe failed: {e}");
                row.note = Some(format!("probe failed: {e}"));
            }
        }
        row
    }
}

/// What a `device-fsync` row measured, beside its numbers.
pub const FSYNC_PROBE_NOTE: &str =
    "4 KiB O_DIRECT write + fdatasync one at a time on the same file system";

/// Queue depths of the device rows (`device-qd1`, `device-qd32`).
pub const DEVICE_QUEUE_DEPTHS: [usize; 2] = [1, 32];

/// The page file of the Rime engine in `dir`: `rime_storage`'s
/// [`PAGE_FILE`](rime_storage::dir::PAGE_FILE) where there is one (the
/// largest, should there be several), else the largest regular file
/// (`rime-btree`'s lone file). Not simply the largest file: a small
/// database's page file is smaller than one 64 MiB WAL segment.
pub fn page_file(dir: &Path) -> std::io::Result<Option<PathBuf>> {
    let named = largest_file_where(dir, &|p: &Path| {
        p.file_name()
            .is_some_and(|n| n == rime_storage::dir::PAGE_FILE)
    })?;
    match named {
        Some(f) => Ok(Some(f)),
        None => largest_file_where(dir, &|_: &Path| true),
    }
}

/// The largest regular file under `dir` (its subdirectories too) that
/// `keep` accepts.
fn largest_file_where(
    dir: &Path,
    keep: &dyn Fn(&Path) -> bool,
) -> std::io::Result<Option<PathBuf>> {
    let mut best: Option<(u64, PathBuf)> = None;
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d)? {
            let e = e?;
            let t = e.file_type()?;
            if t.is_dir() {
                todo.push(e.path());
            } else if t.is_file() && keep(&e.path()) {
                let len = e.metadata()?.len();
                if best.as_ref().is_none_or(|b| len > b.0) {
                    best = Some((len, e.path()));
                }
            }
        }
    }
    Ok(best.map(|b| b.1))
}

/// `"A,B,C"`, `"A-F"` or `"all"` (= A–F).
pub fn parse_workloads(s: &str) -> Result<Vec<Workload>, String> {
    let s = s.trim();
    if s.eq_ignore_ascii_case("all") || s.eq_ignore_ascii_case("a-f") {
        return Ok("ABCDEF"
            .chars()
            .map(|c| Workload::ycsb(c).expect("A-F"))
            .collect());
    }
    s.split(',').map(|w| Workload::parse(w.trim())).collect()
}

/// `$RIME_BENCH_DIR`, else `target/bench-data` under the working directory
/// (on disk: tmpfs has no O_DIRECT).
pub fn default_data_dir() -> PathBuf {
    std::env::var_os("RIME_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target/bench-data"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_batched_engines_run_at_each_inflight_count() {
        let mut m = Matrix::new(Preset::RndreadLtm, &["rime", "rime-batched"], "rndread").unwrap();
        assert_eq!(m.inflight, vec![16, 64, 256]);
        assert!(m.device_probe);
        assert_eq!(m.inflights(true), vec![16, 64, 256]);
        assert_eq!(m.inflights(false), vec![1]);
        let notes = m.rows_with_note("rime-batched", Durability::NoSync, "x");
        let n: Vec<usize> = notes.iter().map(|r| r.inflight).collect();
        assert_eq!(n, vec![16, 64, 256]);
        assert_eq!(
            m.rows_with_note("rime", Durability::NoSync, "x")[0].inflight,
            1
        );
        m.inflight.clear();
        assert_eq!(m.inflights(true), vec![1]);
        let ltm = Matrix::new(Preset::Ltm, &["rime"], "A").unwrap();
        assert_eq!((ltm.inflight.clone(), ltm.device_probe), (vec![64], false));
    }

    /// Regression: the in-memory pool was sized for the loaded records
    /// alone, and a run of D that inserted in proportion to its speed
    /// outgrew it (Rime's bare tree evicted and read back pages mid-run).
    #[test]
    fn an_in_memory_pool_holds_what_a_run_may_insert() {
        let c = Matrix::new(Preset::Ycsb, &["rime"], "C").unwrap();
        let mut d = Matrix::new(Preset::Ycsb, &["rime"], "C,D").unwrap();
        assert_eq!(c.run_inserts_bound(), 0);
        let inserts = d.run_inserts_bound();
        assert!(inserts > 0);
        let record = d.data_bytes() / d.records;
        assert!(d.pool() as u64 >= (d.records + inserts) * record * 2);
        assert!(d.pool() > c.pool());
        // A fixed operation count bounds the inserts by itself (plus what
        // the warm-up may do), and more threads than cores insert no faster.
        d.warmup = Duration::ZERO;
        d.stop = Stop::Ops(1_000_000);
        assert_eq!(d.run_inserts_bound(), 50_000, "D inserts 5%");
        d.threads = vec![1024];
        d.stop = Stop::Duration(Duration::from_secs(1));
        let cores = std::thread::available_parallelism().unwrap().get();
        assert!(d.run_inserts_bound() <= (0.05 * MAX_OPS_PER_CORE_SEC) as u64 * cores as u64);
        // A larger-than-memory preset keeps its ratio at the load.
        let ltm = Matrix::new(Preset::Ltm, &["rime"], "D").unwrap();
        let ratio = ltm.data_bytes() as f64 / ltm.pool() as f64;
        assert!((ratio - 3.0).abs() < 0.01, "{ratio}");
    }

    /// Regression: a reload that failed after D or E returned the rows
    /// measured so far and nothing for the cells after them, so a report
    /// silently lacked them.
    #[test]
    fn cells_a_failed_reload_left_unmeasured_get_note_rows() {
        let mut m = Matrix::new(Preset::Ycsb, &["rime"], "D,E,C").unwrap();
        m.threads = vec![1, 2];
        let all = m.rows_with_note("rime", Durability::NoSync, "x");
        assert_eq!(all.len(), 6, "3 workloads × 2 thread counts");
        let left = m.rows_left("rime", Durability::NoSync, "reloading: disk full", 1);
        let cells: Vec<(String, usize)> = left
            .iter()
            .map(|r| (r.workload.clone(), r.threads))
            .collect();
        let expected: Vec<(String, usize)> = all[1..]
            .iter()
            .map(|r| (r.workload.clone(), r.threads))
            .collect();
        assert_eq!(cells, expected, "every cell after the first, in order");
        assert!(
            left.iter()
                .all(|r| r.note.as_deref() == Some("reloading: disk full"))
        );
        assert!(m.rows_left("rime", Durability::NoSync, "x", 9).is_empty());
    }

    #[test]
    fn the_page_file_is_found_by_name_before_size() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("small"), [0u8; 10]).unwrap();
        std::fs::create_dir_all(d.path().join("a/wal")).unwrap();
        std::fs::write(d.path().join("a/wal/wal-0.log"), [0u8; 100]).unwrap();
        std::fs::write(d.path().join("a/mid"), [0u8; 50]).unwrap();
        // No page file by name: the largest file, in a subdirectory too.
        assert_eq!(
            page_file(d.path()).unwrap(),
            Some(d.path().join("a/wal/wal-0.log"))
        );
        // A Db's page file, smaller than a WAL segment.
        std::fs::write(d.path().join("a/pages.db"), [0u8; 20]).unwrap();
        assert_eq!(
            page_file(d.path()).unwrap(),
            Some(d.path().join("a/pages.db"))
        );
        let empty = tempfile::tempdir().unwrap();
        assert_eq!(page_file(empty.path()).unwrap(), None);
    }
}
