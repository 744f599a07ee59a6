//! `rime-bench`: the YCSB-style comparison. See `benches/README.md`.
//!
//! ```text
//! cargo run -p rime-bench --release --features peers -- ycsb --workload A,B \
//!     --engines rime,lmdb,rocksdb --preset ycsb --threads 1,2 --duration 10
//! cargo run -p rime-bench --release --features peers -- full
//! cargo run -p rime-bench --release --features peers-rocksdb -- ycsb \
//!     --preset commit --engines rime,rime-tasks,rocksdb
//! ```
#![forbid(unsafe_code)]

mod http;

use clap::{Args, Parser, Subcommand};
use rime_bench::Matrix;
use rime_bench::cgroup;
use rime_bench::engine::{self, Durability};
use rime_bench::isolate::{self, Isolation};
use rime_bench::report::{self, Row};
use rime_bench::runner::Stop;
use rime_bench::workload::{Distribution, Preset};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "rime-bench",
    about = "YCSB-style benchmarks: Rime and its peers side by side"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// One matrix of runs: engines × workloads × threads × durability.
    Ycsb(YcsbArgs),
    /// The whole comparison (A–F, every engine in this build, in-memory
    /// and larger-than-memory, nosync and a durable row); writes
    /// docs/benchmarks.md.
    Full(FullArgs),
    /// HTTP load on `rime serve` (a child process): invocations/s and
    /// latency per guest and connection count.
    Http(http::HttpArgs),
    /// Lists the engines this build has.
    Engines,
    /// One engine's share of a matrix, in a child process (used by
    /// `--isolate process|cgroup`; not for direct use).
    #[command(hide = true)]
    Cell(CellArgs),
}

#[derive(Args)]
struct CellArgs {
    /// The sub-matrix, written by the parent (`isolate::to_spec`).
    #[arg(long)]
    spec: PathBuf,
    /// Rows are appended here as they are measured.
    #[arg(long)]
    rows_out: PathBuf,
}

#[derive(Args)]
struct YcsbArgs {
    /// Workloads: A,B,…,F, `all`, or `rndread`.
    #[arg(long, short, default_value = "A")]
    workload: String,
    /// Engines, comma-separated (see `engines`).
    #[arg(long, short, default_value = "rime")]
    engines: String,
    /// ycsb (~23 B keys, 1 KiB values) | small (8 B / 120 B) | rndread
    /// (1e7 × 8 B / 120 B, uniform reads) | ltm (ycsb sizes, data = 3 × pool)
    /// | rndread-ltm (rndread sizes, 2e7 records, data = 3 × pool; batched
    /// at 16,64,256 in flight; device probe rows) | commit (ycsb sizes, 2e5
    /// records; sync at 1,2,8,32,128,256,1024 threads, the device-fsync
    /// row, 3 rounds of 5 s).
    #[arg(long, default_value = "ycsb")]
    preset: Preset,
    /// Lookups in flight per thread for batched engines (rime-batched, rime-faas-async), a
    /// row each, comma-separated (default: the preset's; 16,64,256 for
    /// rndread-ltm, else 64). Other engines run one op per call.
    #[arg(long, value_delimiter = ',')]
    inflight: Option<Vec<usize>>,
    /// Rows device-qd1 and device-qd32: random 4 KiB reads of Rime's page
    /// file straight through io_uring at queue depths 1 and 32, in each
    /// cell, as long as a run (default: on for rndread-ltm; --device-probe
    /// or --device-probe=false to choose; with --isolate none only).
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    device_probe: Option<bool>,
    /// Row device-fsync: 4 KiB write + fdatasync one at a time in the data
    /// directory, in each cell, as long as a run (default: on for commit).
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    fsync_probe: Option<bool>,
    /// Rounds of the whole matrix (each loads every engine afresh); a
    /// cell's row is its median round's, with the ops/s range of all
    /// (default: the preset's; 3 for commit, else 1).
    #[arg(long)]
    repeat: Option<usize>,
    /// Records loaded (default: the preset's).
    #[arg(long)]
    records: Option<u64>,
    /// Measured operations (all threads together); overrides --duration.
    #[arg(long)]
    ops: Option<u64>,
    /// Measured seconds per run (default: the preset's; 5 for commit, else
    /// 10).
    #[arg(long)]
    duration: Option<f64>,
    /// Unmeasured seconds before each run.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Thread counts, comma-separated (default: the preset's;
    /// 1,2,8,32,128,256,1024 for commit, else 1). For rime-tasks: clients
    /// in flight, as tasks on one thread per core.
    #[arg(long, short, value_delimiter = ',')]
    threads: Option<Vec<usize>>,
    /// nosync | group | sync, comma-separated for several rows (default:
    /// the preset's; sync for commit, else nosync).
    #[arg(long, value_delimiter = ',')]
    durability: Option<Vec<Durability>>,
    /// zipfian | uniform | latest: overrides the workloads' own.
    #[arg(long)]
    distribution: Option<Distribution>,
    /// Key bytes (8 = binary u64; otherwise YCSB's "user<hash>" form).
    #[arg(long)]
    key_size: Option<usize>,
    /// Value bytes (default: the preset's).
    #[arg(long)]
    value_size: Option<usize>,
    /// Pool / cache budget in MiB (default: from the preset).
    #[arg(long)]
    pool_mib: Option<usize>,
    /// Where engine files go (not tmpfs). Default $RIME_BENCH_DIR or
    /// target/bench-data.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Output directory for results.md, results.csv and the SVGs.
    #[arg(long, default_value = "target/bench-results")]
    out: PathBuf,
    /// none: engines run in this process, one after another; process: each
    /// in a child process; cgroup: each in a child process in a memory
    /// cgroup limited to the pool, so the OS page cache counts too.
    #[arg(long, default_value = "none")]
    isolate: Isolation,
    #[arg(long)]
    no_progress: bool,
}

#[derive(Args)]
struct FullArgs {
    /// Engines (default: every engine in this build).
    #[arg(long, short)]
    engines: Option<String>,
    /// Records of the in-memory and durable parts (ycsb preset: ~23 B
    /// keys, 1 KiB values).
    #[arg(long, default_value_t = 200_000)]
    records: u64,
    /// Records of the larger-than-memory part (ycsb sizes, pool = data / 3).
    #[arg(long, default_value_t = 600_000)]
    ltm_records: u64,
    /// auto: the larger-than-memory part in a memory cgroup per engine
    /// (process isolation, with a warning, where none can be made), the
    /// rest in this process; or none|process|cgroup for every part.
    #[arg(long, default_value = "auto")]
    isolate: String,
    #[arg(long, default_value_t = 1.0)]
    duration: f64,
    #[arg(long, default_value_t = 0.3)]
    warmup: f64,
    #[arg(long, default_value = "1,2", value_delimiter = ',')]
    threads: Vec<usize>,
    /// Thread counts of the durable part (committers, issue 15).
    #[arg(long, default_value = "1,2,8,32,128,256,1024", value_delimiter = ',')]
    durable_threads: Vec<usize>,
    /// Rounds of each part; a cell's row is its median round's, with the
    /// ops/s range of all.
    #[arg(long, default_value_t = 1)]
    repeat: usize,
    #[arg(long)]
    data_dir: Option<PathBuf>,
    #[arg(long, default_value = "docs/bench")]
    out: PathBuf,
    /// The Markdown file written with the machine and the table.
    #[arg(long, default_value = "docs/benchmarks.md")]
    doc: PathBuf,
    #[arg(long)]
    no_progress: bool,
}

fn main() {
    let cli = Cli::parse();
    let r = match cli.cmd {
        Cmd::Ycsb(a) => ycsb(a),
        Cmd::Full(a) => full(a),
        Cmd::Http(a) => http::run(a),
        Cmd::Engines => {
            println!("{}", engine::available().join("\n"));
            Ok(())
        }
        Cmd::Cell(a) => cell(a),
    };
    if let Err(e) = r {
        eprintln!("rime-bench: {e}");
        std::process::exit(1);
    }
}

type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s.max(0.0))
}

fn engines_list(s: &str) -> Vec<&str> {
    s.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect()
}

fn print_row(r: &Row) {
    let commits = if r.durability == "nosync" {
        String::new()
    } else {
        format!(
            "  commit p50 {:.1} µs p99 {:.1} µs{}",
            r.commit_p50_us,
            r.commit_p99_us,
            r.commits_per_sync
                .map_or(String::new(), |c| format!("  {c:.1} commits/sync"))
        )
    };
    eprintln!(
        "{:>12} {:>8} {:>7} {:>6} t={} ×{:<3} {:>12.0} ops/s  p50 {:>8.1} µs  p99 {:>8.1} µs  p99.9 {:>8.1} µs{commits}{}",
        r.engine,
        r.workload,
        r.preset,
        r.durability,
        r.threads,
        r.inflight,
        r.ops_per_sec,
        r.p50_us,
        r.p99_us,
        r.p999_us,
        if r.errors > 0 {
            format!("  {} errors", r.errors)
        } else {
            String::new()
        }
    );
}

fn ycsb(a: YcsbArgs) -> Res<()> {
    let mut m = Matrix::new(a.preset, &engines_list(&a.engines), &a.workload)?;
    if let Some(n) = a.records {
        m.records = n;
    }
    m.stop = match (a.ops, a.duration) {
        (Some(n), _) => Stop::Ops(n),
        (None, Some(d)) => Stop::Duration(secs(d)),
        (None, None) => m.stop,
    };
    m.warmup = secs(a.warmup);
    if let Some(t) = a.threads {
        m.threads = t;
    }
    if let Some(d) = a.durability {
        m.durabilities = d;
    }
    if let Some(n) = a.repeat {
        m.repeat = n.max(1);
    }
    if let Some(p) = a.fsync_probe {
        m.fsync_probe = p;
    }
    m.distribution = a.distribution;
    if let Some(n) = a.inflight {
        if n.is_empty() || n.contains(&0) {
            return Err("--inflight: counts of at least 1, comma-separated".into());
        }
        m.inflight = n;
    }
    if let Some(p) = a.device_probe {
        m.device_probe = p;
    }
    if let Some(k) = a.key_size {
        m.key_format = if k == 8 {
            if m.key_format == rime_bench::workload::KeyFormat::OrderedU64 {
                m.key_format
            } else {
                rime_bench::workload::KeyFormat::HashedU64
            }
        } else {
            rime_bench::workload::KeyFormat::YcsbString
        };
    }
    if let Some(v) = a.value_size {
        m.value_len = v;
    }
    m.pool_bytes = a.pool_mib.map(|p| p << 20);
    if let Some(d) = a.data_dir {
        m.data_dir = d;
    }
    m.progress = !a.no_progress;
    m.isolation = a.isolate;
    if m.isolation == Isolation::Cgroup {
        cgroup::probe()?;
    }
    eprintln!(
        "{} records, {} MiB data, pool {} MiB, engines {:?}, threads {:?}, {:?}, {} round(s)",
        m.records,
        m.data_bytes() >> 20,
        m.pool() >> 20,
        m.engines,
        m.threads,
        m.durabilities,
        m.repeat
    );
    let rows = m.run(print_row)?;
    let svgs = report::write_all(&a.out, &rows).map_err(|e| e.to_string())?;
    println!("{}", report::markdown(&rows));
    eprintln!(
        "wrote {}/results.md, results.csv{}",
        a.out.display(),
        if svgs.is_empty() {
            String::new()
        } else {
            format!(" and {} SVGs", svgs.len())
        }
    );
    Ok(())
}

/// The child side of `--isolate`: waits for the parent's go (so it is in
/// its cgroup before it allocates), runs, appends each row to `rows_out`.
fn cell(a: CellArgs) -> Res<()> {
    isolate::wait_for_go()?;
    let m = isolate::from_spec(&std::fs::read_to_string(&a.spec)?)?;
    let mut write_err = None;
    m.run(|r| {
        if let Err(e) = isolate::append_row(&a.rows_out, r) {
            write_err.get_or_insert(e);
        }
    })?;
    match write_err {
        Some(e) => Err(format!("{}: {e}", a.rows_out.display()).into()),
        None => Ok(()),
    }
}

/// What `full --isolate auto` does for the larger-than-memory part.
fn ltm_isolation() -> (Isolation, String) {
    match cgroup::probe() {
        Ok(()) => (
            Isolation::Cgroup,
            format!(
                "Each engine ran in its own process inside a memory cgroup limited to \
                 the pool, so the OS page cache counts: every engine had the same memory \
                 for everything. Inside it, a peer's own cache was the pool less {} MiB \
                 (its process and the page cache took the rest); Rime (O_DIRECT, no \
                 page cache) had a buffer pool of the pool less {} MiB. *peak MiB* is \
                 the cgroup's high-water mark (anonymous memory + page cache) over load \
                 and all runs.",
                isolate::PEER_OUTSIDE_CACHE_BYTES >> 20,
                isolate::DIRECT_IO_PROCESS_BYTES >> 20
            ),
        ),
        Err(e) => {
            eprintln!("rime-bench: WARNING: {e}; the peers' page cache is not capped");
            (
                Isolation::Process,
                format!(
                    "**Not capped**: {e}, so each engine ran in its own process without a \
                     memory limit and the peers cached in the OS page cache beyond the pool."
                ),
            )
        }
    }
}

fn full(a: FullArgs) -> Res<()> {
    let all = engine::available();
    let engines: Vec<&str> = match &a.engines {
        Some(e) => engines_list(e),
        None => all.clone(),
    };
    let (ltm_iso, ltm_text, rest_iso) = match a.isolate.as_str() {
        "auto" => {
            let (iso, text) = ltm_isolation();
            (iso, text, Isolation::InProcess)
        }
        other => {
            let iso: Isolation = other.parse()?;
            if iso == Isolation::Cgroup {
                cgroup::probe()?;
            }
            (iso, format!("Isolation: `{iso}` for every part."), iso)
        }
    };
    let mut parts: Vec<(String, Matrix)> = Vec::new();
    let setup = |preset: Preset, records: u64, wl: &str, durs: Vec<Durability>| -> Res<Matrix> {
        let mut m = Matrix::new(preset, &engines, wl)?;
        m.records = records;
        m.stop = Stop::Duration(secs(a.duration));
        m.warmup = secs(a.warmup);
        m.threads = a.threads.clone();
        m.durabilities = durs;
        m.repeat = a.repeat.max(1);
        if let Some(d) = &a.data_dir {
            m.data_dir = d.clone();
        }
        m.progress = !a.no_progress;
        m.isolation = rest_iso;
        Ok(m)
    };
    parts.push((
        "In memory (pool holds all data), no fsync".into(),
        setup(Preset::Ycsb, a.records, "all", vec![Durability::NoSync])?,
    ));
    let mut ltm = setup(Preset::Ltm, a.ltm_records, "all", vec![Durability::NoSync])?;
    ltm.isolation = ltm_iso;
    parts.push((
        format!("Larger than memory (data ≈ 3 × pool), no fsync\n\n{ltm_text}"),
        ltm,
    ));
    let mut durable = setup(Preset::Ycsb, a.records, "A", vec![Durability::Sync])?;
    durable.threads = a.durable_threads.clone();
    durable.fsync_probe = true;
    parts.push((
        format!("Durable: fsync before every acknowledgement (workload A)\n\n{DURABLE_TEXT}"),
        durable,
    ));
    let mut all_rows = Vec::new();
    let mut sections = Vec::new();
    for (title, m) in &parts {
        let head = title.lines().next().unwrap_or_default();
        eprintln!(
            "== {head}: {} records, {} MiB data, pool {} MiB",
            m.records,
            m.data_bytes() >> 20,
            m.pool() >> 20
        );
        let rows = m.run(print_row)?;
        sections.push((title.clone(), m.clone(), rows.clone()));
        all_rows.extend(rows);
    }
    let svgs = report::write_all(&a.out, &all_rows).map_err(|e| e.to_string())?;
    let doc = benchmarks_md(&a, &engines, &sections, &svgs);
    if let Some(parent) = a.doc.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&a.doc, doc)?;
    println!("{}", report::markdown(&all_rows));
    eprintln!("wrote {} and {}/", a.doc.display(), a.out.display());
    Ok(())
}

/// How to read the durable part's table.
const DURABLE_TEXT: &str = "Every update is one commit that returns once its log \
    record is synced; the thread counts are the concurrent committers (half of \
    workload A's operations are reads, which commit nothing): threads blocking \
    in each engine's API, except `rime-tasks`, whose committers are that many \
    clients in flight as tasks on one thread per core (`Db::transaction_pending`, \
    called back by `Pending::on_durable`). *commit p50/p99* \
    are the latencies of the updates alone; *commits/sync* is the engine's own \
    count of commits over its log syncs in the measured part (Rime: \
    `DbStats::commits / log_syncs`; RocksDB: its statistics, tickers \
    `rocksdb.write.self + rocksdb.write.other` over `rocksdb.wal.synced`; \
    empty where an engine does not count them). Row `device-fsync` is the \
    device itself, measured in the same run just before the cell: 4 KiB \
    O_DIRECT write + `fdatasync`, one at a time, on the data directory's file \
    system, so a commit's latency can be read in raw syncs.";

fn sh(cmd: &str, args: &[&str]) -> String {
    std::process::Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(str::trim)
        .unwrap_or("?")
        .to_string();
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("MemTotal"))
        .and_then(|l| {
            l.split_whitespace()
                .nth(1)
                .and_then(|k| k.parse::<u64>().ok())
        })
        .map_or("?".into(), |kb| {
            format!("{:.1} GiB", kb as f64 / (1 << 20) as f64)
        });
    format!(
        "- CPU: {model}, {cpus} logical CPUs\n- Memory: {mem}\n- Kernel: {}\n- Disk: {}\n- rustc: {}\n- Date: {}\n",
        sh("uname", &["-sr"]),
        sh(
            "sh",
            &["-c", "df -h --output=source,fstype,size . | tail -1"]
        ),
        sh("rustc", &["--version"]),
        sh("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
    )
}

fn benchmarks_md(
    a: &FullArgs,
    engines: &[&str],
    sections: &[(String, Matrix, Vec<Row>)],
    svgs: &[String],
) -> String {
    let args: Vec<String> = std::env::args().collect();
    let mut s = String::new();
    s.push_str("# Benchmarks: Rime and its peers, YCSB A–F\n\n");
    s.push_str(
        "Generated by `rime-bench full` (benches/). Do not edit by hand: rerun the command \
         below and commit the result. Ratios (×rime) are each engine's ops/s over Rime's in \
         the same cell (preset, workload, durability, threads, pool), measured in this run.\n\n",
    );
    s.push_str("## Command\n\n```sh\n");
    s.push_str(&format!(
        "cargo run -p rime-bench --release --features peers -- {}\n```\n\n",
        args.iter().skip(1).cloned().collect::<Vec<_>>().join(" ")
    ));
    s.push_str("## Machine\n\n");
    s.push_str(&machine());
    s.push_str(&format!(
        "\nEngines: {}. Each run: {:.1} s warm-up, {:.1} s measured; threads {:?} \
         (durable part: {:?}); {} round(s) of each part{}.\n\n",
        engines.join(", "),
        a.warmup,
        a.duration,
        a.threads,
        a.durable_threads,
        a.repeat.max(1),
        if a.repeat > 1 {
            ", each row the median round's with the ops/s range of all"
        } else {
            ""
        }
    ));
    s.push_str(
        "Read `benches/README.md` for how each peer is configured, how durability maps \
         onto each, and what the numbers do and do not show.\n\n",
    );
    for (title, m, rows) in sections {
        s.push_str(&format!(
            "## {title}\n\n{} records ({} keys, {} B values) ≈ {} MiB; pool/cache {} MiB.\n\n",
            m.records,
            m.key_format,
            m.value_len,
            m.data_bytes() >> 20,
            m.pool() >> 20
        ));
        s.push_str(&report::markdown(rows));
        s.push('\n');
    }
    if !svgs.is_empty() {
        s.push_str("## Plots\n\n");
        let rel = Path::new("bench");
        for f in svgs {
            s.push_str(&format!("![{f}]({})\n", rel.join(f).display()));
        }
        s.push_str(&format!(
            "\nCSV of every row: [{0}/results.csv]({0}/results.csv).\n",
            rel.display()
        ));
    }
    s
}
