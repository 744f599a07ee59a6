//! Rime's YCSB-style benchmark harness: Rime and its peers side by side, on
//! the same machine in the same run. See `benches/README.md`.
//!
//! * [`generator`]: YCSB's key choosers (scrambled zipfian, latest, uniform);
//!   [`acknowledged`]: which inserted records readers may choose.
//! * [`workload`]: workloads A–F, rndread, key/value formats, presets.
//! * [`engine`]: the [`engine::Engine`] trait and the registry;
//!   [`engines`]: the adapters (peers behind `peers-*` features).
//! * [`runner`]: load and run phases, threads, warm-up, latency histograms.
//! * [`isolate`]: an engine per child process, in a memory [`cgroup`] for
//!   the larger-than-memory rows.
//! * [`report`]: Markdown, CSV, SVG.
//! * [`Matrix`]: a set of runs (what the CLI's `ycsb` and `full` execute).
//!
//! The only `unsafe` is LMDB's (`engines::lmdb`, behind `peers-lmdb`),
//! allowed on the one function that opens the environment.
#![deny(unsafe_code)]

pub mod acknowledged;
pub mod cgroup;
pub mod engine;
pub mod engines;
pub mod generator;
pub mod isolate;
pub mod report;
pub mod runner;
pub mod workload;

use engine::{Durability, EngineConfig};
use isolate::Isolation;
use report::Row;
use runner::{RunConfig, Stop};
use std::path::PathBuf;
use std::time::Duration;
use workload::{Distribution, KeyFormat, Preset, Workload};

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
            stop: Stop::Duration(Duration::from_secs(10)),
            threads: vec![1],
            durabilities: vec![Durability::NoSync],
            pool_bytes: None,
            engine_pool_bytes: None,
            warmup: Duration::from_secs(1),
            data_dir: default_data_dir(),
            progress: true,
            seed: 42,
            isolation: Isolation::InProcess,
        })
    }

    /// Logical bytes of the loaded data (keys + values).
    pub fn data_bytes(&self) -> u64 {
        self.records * (self.key_format.avg_len() + self.value_len) as u64
    }

    /// The pool budget every engine gets.
    pub fn pool(&self) -> usize {
        if let Some(p) = self.pool_bytes {
            return p;
        }
        let data = self.data_bytes() as f64;
        match self.preset.data_over_pool() {
            // B+tree pages are ~70% full after hashed inserts; a pool that
            // holds everything needs headroom over the logical size.
            None => ((data * 2.5) as usize + (64 << 20)).max(128 << 20),
            Some(r) => ((data / r) as usize).max(16 << 20),
        }
    }

    /// Runs everything; `on_row` sees each row as it is measured.
    pub fn run(&self, mut on_row: impl FnMut(&Row)) -> engine::Result<Vec<Row>> {
        std::fs::create_dir_all(&self.data_dir)?;
        let mut rows = Vec::new();
        let pool = self.pool();
        for &durability in &self.durabilities {
            for name in &self.engines {
                if engine::keeps_all_data_in_memory(name) && self.data_bytes() > pool as u64 {
                    let why = "n/a: keeps all data in RAM, cannot run larger than memory";
                    rows.extend(self.rows_with_note(name, durability, why));
                    continue;
                }
                if self.isolation != Isolation::InProcess {
                    let measured = isolate::run_engine(self, name, durability)?;
                    measured.iter().for_each(&mut on_row);
                    rows.extend(measured);
                    continue;
                }
                let dir = tempfile::Builder::new()
                    .prefix(&format!("{name}-"))
                    .tempdir_in(&self.data_dir)?;
                let max_threads = self.threads.iter().copied().max().unwrap_or(1);
                let ecfg = EngineConfig {
                    pool_bytes: self.engine_pool_bytes.unwrap_or(pool),
                    durability,
                    expected_bytes: self.data_bytes(),
                    threads: max_threads,
                };
                let failed = |why: String| -> Vec<Row> {
                    eprintln!("{name}: {why}");
                    self.rows_with_note(name, durability, &why)
                };
                let engine = match engine::open(name, dir.path(), &ecfg) {
                    Ok(e) => e,
                    Err(e) => {
                        rows.extend(failed(format!("open failed: {e}")));
                        continue;
                    }
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
                };
                let load = match runner::load(engine.as_ref(), &base) {
                    Ok(l) => l,
                    Err(e) => {
                        rows.extend(failed(e.to_string()));
                        continue;
                    }
                };
                for wl in &self.workloads {
                    for &threads in &self.threads {
                        let mut wl = wl.clone();
                        if let Some(d) = self.distribution {
                            wl.distribution = d;
                        }
                        base.workload = wl.clone();
                        base.threads = threads;
                        let r = runner::run(engine.as_ref(), &base)?;
                        let row = self.row(
                            name,
                            &wl,
                            durability,
                            threads,
                            pool,
                            load.as_secs_f64(),
                            Some(&r),
                            None,
                        );
                        if let Some(e) = &r.first_error {
                            eprintln!("{name} {}: {} errors, first: {e}", wl.name, r.errors);
                        }
                        on_row(&row);
                        rows.push(row);
                    }
                }
                engine.close()?;
                drop(engine);
            }
        }
        Ok(rows)
    }
}

impl Matrix {
    /// A row for every cell of `engine`, each with no numbers and `why`.
    fn rows_with_note(&self, engine: &str, durability: Durability, why: &str) -> Vec<Row> {
        let mut out = Vec::new();
        for wl in &self.workloads {
            for &threads in &self.threads {
                let note = Some(why.to_string());
                out.push(self.row(
                    engine,
                    wl,
                    durability,
                    threads,
                    self.pool(),
                    0.0,
                    None,
                    note,
                ));
            }
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
        pool: usize,
        load_secs: f64,
        r: Option<&runner::RunResult>,
        note: Option<String>,
    ) -> Row {
        let distribution = self.distribution.unwrap_or(wl.distribution);
        Row {
            engine: engine.to_string(),
            workload: wl.name.clone(),
            distribution: distribution.to_string(),
            preset: self.preset.to_string(),
            durability: durability.to_string(),
            threads,
            records: self.records,
            data_bytes: self.data_bytes(),
            pool_bytes: pool as u64,
            load_secs,
            ops: r.map_or(0, |r| r.ops),
            secs: r.map_or(0.0, |r| r.elapsed.as_secs_f64()),
            ops_per_sec: r.map_or(0.0, |r| r.ops_per_sec()),
            p50_us: r.map_or(0.0, |r| r.latency_us(0.5)),
            p99_us: r.map_or(0.0, |r| r.latency_us(0.99)),
            p999_us: r.map_or(0.0, |r| r.latency_us(0.999)),
            not_found: r.map_or(0, |r| r.not_found),
            errors: r.map_or(0, |r| r.errors),
            mem_limit_bytes: 0,
            mem_peak_bytes: 0,
            note,
        }
    }
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
