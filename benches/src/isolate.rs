//! Running one engine's share of a [`Matrix`] in a child process, optionally
//! inside a memory cgroup ([`crate::cgroup`]).
//!
//! The parent writes the engine's sub-matrix as a spec file ([`to_spec`]),
//! starts `rime-bench cell --spec F --rows-out R` (the same binary), moves
//! it into the cgroup before it has loaded anything, and reads back the rows
//! the child appends to `R` as each is measured ([`Row::to_line`]). A
//! child that is killed (the OOM killer at the cgroup's limit, say) leaves
//! the rows it finished; the cells it did not reach get a note saying why.
//!
//! Life cycle of one engine's run:
//! 1. cgroup created (limit = the pool budget); spec written with the
//!    engine's own cache inside it ([`cache_in_budget`]);
//! 2. child spawned *stopped at its first instruction of work*: it waits for
//!    a line on stdin, so it is in the cgroup before it allocates;
//! 3. parent adds the pid to the cgroup and writes the go line;
//! 4. child: open, load, every workload × thread count, close;
//! 5. parent: wait, read rows and the cgroup's peak and OOM count, fill in
//!    the missing cells, drop the cgroup.

use crate::Matrix;
use crate::cgroup::MemoryCgroup;
use crate::engine::{self, Durability};
use crate::report::Row;
use crate::runner::Stop;
use crate::workload::{Distribution, KeyFormat, Preset};
use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::str::FromStr;
use std::time::Duration;

// In a cgroup the pool is the memory budget: the cgroup's limit, the same
// for every engine, covering its process, its own cache and the page cache.
// Each engine's own cache is opened at the budget less what it needs
// outside that cache.

/// A peer's own cache is the budget less this: its process (heap, thread
/// stacks, histograms, RocksDB's 64 MiB memtable budget from
/// `optimize_level_style_compaction`) and the page cache its reads and
/// writes go through. At 2,000 records and a 16 MiB pool the peers peaked
/// at 8 (LMDB) to 63 MiB (redb), cache included.
pub const PEER_OUTSIDE_CACHE_BYTES: u64 = 128 << 20;

/// Rime's pool is the budget less this: Rime reads and writes with
/// O_DIRECT, so nothing else of the budget is cache. At 300,000 records and
/// a 200 MiB budget its processes peaked at 32 MiB (rime) and 47 MiB
/// (rime-faas: wasmtime, the guest, the module file) above the pool;
/// 64 MiB keeps an OOM kill well away.
pub const DIRECT_IO_PROCESS_BYTES: u64 = 64 << 20;

/// The smallest budget a cgroup run takes: a peer's own cache of at least
/// 64 MiB.
pub const MIN_CGROUP_BUDGET_BYTES: u64 = PEER_OUTSIDE_CACHE_BYTES + (64 << 20);

/// What engine `name`'s own cache is opened with under a cgroup limit of
/// `budget_bytes`.
pub fn cache_in_budget(name: &str, budget_bytes: u64) -> u64 {
    let outside = if engine::bypasses_page_cache(name) {
        DIRECT_IO_PROCESS_BYTES
    } else {
        PEER_OUTSIDE_CACHE_BYTES
    };
    budget_bytes.saturating_sub(outside)
}

/// How each engine of a matrix runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    /// In this process, one engine after another.
    InProcess,
    /// Each engine in its own child process (a fresh heap and page cache
    /// state, nothing left over from the previous engine).
    Process,
    /// Each engine in its own child process inside a memory cgroup limited
    /// to the pool: the page cache counts ([`cache_in_budget`]).
    Cgroup,
}

impl FromStr for Isolation {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" => Ok(Isolation::InProcess),
            "process" => Ok(Isolation::Process),
            "cgroup" => Ok(Isolation::Cgroup),
            _ => Err(format!("unknown isolation {s:?} (none|process|cgroup)")),
        }
    }
}

impl std::fmt::Display for Isolation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Isolation::InProcess => "none",
            Isolation::Process => "process",
            Isolation::Cgroup => "cgroup",
        })
    }
}

/// The line the child waits for before it starts (step 2).
const GO: &str = "go";

/// Runs `engine` × `durability` of `m` (one round) in a child process,
/// with the `device-fsync` row of each cell if `fsync_probe`; returns a row
/// for every cell, measured or with a note saying why not.
pub fn run_engine(
    m: &Matrix,
    engine: &str,
    durability: Durability,
    fsync_probe: bool,
) -> engine::Result<Vec<Row>> {
    // 1. The cgroup if asked for, and the spec (with the engine's cache
    //    sized inside the cgroup's budget).
    let work = tempfile::Builder::new()
        .prefix(&format!("cell-{engine}-"))
        .tempdir_in(&m.data_dir)?;
    let mut sub = m.clone();
    sub.engines = vec![engine.to_string()];
    sub.durabilities = vec![durability];
    sub.pool_bytes = Some(m.pool());
    sub.isolation = Isolation::InProcess;
    // The probe reads the engine's file beside it: not in a child.
    sub.device_probe = false;
    sub.fsync_probe = fsync_probe;
    // The parent runs the rounds and takes their median.
    sub.repeat = 1;
    let cgroup = match m.isolation {
        Isolation::Cgroup => Some(budget_cgroup(m.pool() as u64, engine)?),
        _ => None,
    };
    if let Some(cg) = &cgroup {
        sub.engine_pool_bytes = Some(cache_in_budget(engine, cg.limit_bytes()) as usize);
    }
    let spec = work.path().join("spec");
    let rows_out = work.path().join("rows");
    std::fs::write(&spec, to_spec(&sub))?;
    // 2–3. Spawn, move into the cgroup, let it go.
    let mut child = Command::new(std::env::current_exe()?)
        .arg("cell")
        .arg("--spec")
        .arg(&spec)
        .arg("--rows-out")
        .arg(&rows_out)
        .stdin(Stdio::piped())
        .spawn()?;
    if let Some(cg) = &cgroup
        && let Err(e) = cg.add(child.id())
    {
        let _ = child.kill();
        let _ = child.wait();
        return Err(format!("moving the child into {}: {e}", cg.path().display()).into());
    }
    if let Some(mut stdin) = child.stdin.take() {
        writeln!(stdin, "{GO}")?;
    }
    // 4–5. Wait, collect what it measured, say why the rest is missing.
    let status = child.wait()?;
    let mut rows = read_rows(&rows_out)?;
    for r in &mut rows {
        r.mem_limit_bytes = cgroup.as_ref().map_or(0, MemoryCgroup::limit_bytes);
        r.mem_peak_bytes = cgroup
            .as_ref()
            .and_then(MemoryCgroup::peak_bytes)
            .unwrap_or(0);
    }
    if !status.success() {
        let why = match &cgroup {
            Some(cg) if cg.oom_kills().unwrap_or(0) > 0 => format!(
                "killed: out of memory at the {} MiB cgroup limit",
                cg.limit_bytes() >> 20
            ),
            _ => format!("child process failed ({status})"),
        };
        eprintln!("{engine}: {why}");
        fill_missing(m, engine, durability, &mut rows, &why);
    }
    Ok(rows)
}

/// A memory cgroup for `engine` limited to `budget_bytes`, if the budget
/// leaves a peer a useful cache.
fn budget_cgroup(budget_bytes: u64, engine: &str) -> engine::Result<MemoryCgroup> {
    if budget_bytes < MIN_CGROUP_BUDGET_BYTES {
        return Err(format!(
            "a pool of {} MiB is too small to run in a memory cgroup (at least {} MiB: \
             {} for a peer's process and page cache, 64 for its cache)",
            budget_bytes >> 20,
            MIN_CGROUP_BUDGET_BYTES >> 20,
            PEER_OUTSIDE_CACHE_BYTES >> 20
        )
        .into());
    }
    let name = format!("rime-bench-{}-{engine}", std::process::id());
    Ok(MemoryCgroup::create(&name, budget_bytes)?)
}

/// The rows a child appended to `path` (none if it died before the first).
fn read_rows(path: &Path) -> engine::Result<Vec<Row>> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter(|l| !l.is_empty())
        .map(|l| Row::from_line(l).map_err(|e| format!("{}: {e}", path.display()).into()))
        .collect()
}

/// Adds a row with note `why` for every cell of `engine` not in `rows`.
fn fill_missing(m: &Matrix, engine: &str, durability: Durability, rows: &mut Vec<Row>, why: &str) {
    let missing: Vec<Row> = m
        .rows_with_note(engine, durability, why)
        .into_iter()
        .filter(|c| {
            !rows.iter().any(|r| {
                r.workload == c.workload && r.threads == c.threads && r.inflight == c.inflight
            })
        })
        .collect();
    rows.extend(missing);
}

/// The child's side of step 2: returns once the parent says go.
pub fn wait_for_go() -> std::io::Result<()> {
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    if line.trim() == GO {
        Ok(())
    } else {
        Err(std::io::Error::other(format!(
            "expected {GO:?} on stdin, got {line:?}"
        )))
    }
}

/// Appends one row to the child's rows file (so a killed child keeps
/// what it measured).
pub fn append_row(path: &Path, row: &Row) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    writeln!(f, "{}", row.to_line())
}

/// `key=value` lines: everything a child needs to rebuild the sub-matrix.
pub fn to_spec(m: &Matrix) -> String {
    let names: Vec<&str> = m.workloads.iter().map(|w| w.name.as_str()).collect();
    let join = |v: Vec<String>| v.join(",");
    let mut s = String::new();
    let mut kv = |k: &str, v: String| {
        s.push_str(k);
        s.push('=');
        s.push_str(&v);
        s.push('\n');
    };
    kv("engines", m.engines.join(","));
    kv("workloads", names.join(","));
    kv(
        "distribution",
        m.distribution.map_or(String::new(), |d| d.to_string()),
    );
    kv("preset", m.preset.to_string());
    kv("records", m.records.to_string());
    kv("key_format", m.key_format.to_string());
    kv("value_len", m.value_len.to_string());
    kv(
        "stop",
        match m.stop {
            Stop::Ops(n) => format!("ops:{n}"),
            Stop::Duration(d) => format!("secs:{:?}", d.as_secs_f64()),
        },
    );
    kv(
        "threads",
        join(m.threads.iter().map(|t| t.to_string()).collect()),
    );
    kv(
        "durabilities",
        join(m.durabilities.iter().map(|d| d.to_string()).collect()),
    );
    let opt = |v: Option<usize>| v.map_or(String::new(), |p| p.to_string());
    kv("pool_bytes", opt(m.pool_bytes));
    kv("engine_pool_bytes", opt(m.engine_pool_bytes));
    kv("warmup_secs", format!("{:?}", m.warmup.as_secs_f64()));
    kv("data_dir", m.data_dir.display().to_string());
    kv("progress", m.progress.to_string());
    kv("seed", m.seed.to_string());
    kv(
        "inflight",
        join(m.inflight.iter().map(|n| n.to_string()).collect()),
    );
    kv("device_probe", m.device_probe.to_string());
    kv("fsync_probe", m.fsync_probe.to_string());
    kv("repeat", m.repeat.to_string());
    s
}

/// The inverse of [`to_spec`].
pub fn from_spec(text: &str) -> Result<Matrix, String> {
    let map: BTreeMap<&str, &str> = text.lines().filter_map(|l| l.split_once('=')).collect();
    let get = |k: &str| map.get(k).copied().ok_or(format!("spec has no {k}"));
    let num =
        |k: &str| -> Result<u64, String> { get(k)?.parse().map_err(|e| format!("spec {k}: {e}")) };
    let secs = |v: &str| -> Result<Duration, String> {
        v.parse::<f64>()
            .map(Duration::from_secs_f64)
            .map_err(|e| format!("spec seconds {v:?}: {e}"))
    };
    let preset: Preset = get("preset")?.parse()?;
    let engines: Vec<&str> = get("engines")?.split(',').collect();
    let mut m = Matrix::new(preset, &engines, get("workloads")?)?;
    m.distribution = match get("distribution")? {
        "" => None,
        d => Some(d.parse::<Distribution>()?),
    };
    m.records = num("records")?;
    m.key_format = get("key_format")?.parse::<KeyFormat>()?;
    m.value_len = num("value_len")? as usize;
    m.stop = match get("stop")?.split_once(':') {
        Some(("ops", n)) => Stop::Ops(n.parse().map_err(|e| format!("spec stop: {e}"))?),
        Some(("secs", s)) => Stop::Duration(secs(s)?),
        _ => return Err("spec stop: expected ops:N or secs:S".into()),
    };
    m.threads = get("threads")?
        .split(',')
        .map(|t| t.parse().map_err(|e| format!("spec threads: {e}")))
        .collect::<Result<_, _>>()?;
    m.durabilities = get("durabilities")?
        .split(',')
        .map(str::parse)
        .collect::<Result<_, _>>()?;
    let opt = |k: &str| -> Result<Option<usize>, String> {
        match get(k)? {
            "" => Ok(None),
            p => p.parse().map(Some).map_err(|e| format!("spec {k}: {e}")),
        }
    };
    m.pool_bytes = opt("pool_bytes")?;
    m.engine_pool_bytes = opt("engine_pool_bytes")?;
    m.warmup = secs(get("warmup_secs")?)?;
    m.data_dir = PathBuf::from(get("data_dir")?);
    m.progress = get("progress")? == "true";
    m.seed = num("seed")?;
    m.inflight = get("inflight")?
        .split(',')
        .map(|t| t.parse().map_err(|e| format!("spec inflight: {e}")))
        .collect::<Result<_, _>>()?;
    m.device_probe = get("device_probe")? == "true";
    m.fsync_probe = get("fsync_probe")? == "true";
    m.repeat = num("repeat")? as usize;
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_round_trips_every_field() {
        let mut m = Matrix::new(Preset::Ltm, &["rime", "lmdb"], "A,D,rndread").unwrap();
        m.distribution = Some(Distribution::Uniform);
        m.records = 12_345;
        m.key_format = KeyFormat::OrderedU64;
        m.value_len = 777;
        m.stop = Stop::Duration(Duration::from_secs_f64(1.3));
        m.threads = vec![1, 2, 4];
        m.durabilities = vec![Durability::NoSync, Durability::Sync];
        m.pool_bytes = Some(98_765_432);
        m.engine_pool_bytes = Some(123_456_789);
        m.warmup = Duration::from_millis(250);
        m.data_dir = PathBuf::from("/tmp/x y");
        m.progress = false;
        m.seed = 99;
        m.inflight = vec![16, 256];
        m.device_probe = true;
        m.fsync_probe = true;
        m.repeat = 3;
        let back = from_spec(&to_spec(&m)).unwrap();
        assert_eq!(to_spec(&back), to_spec(&m));
        assert_eq!(back.workloads.len(), 3);
        assert_eq!(back.workloads[2].name, "rndread");
        assert_eq!(back.inflight, vec![16, 256]);
        assert!(back.device_probe && back.fsync_probe);
        assert_eq!(back.repeat, 3);
        assert!(matches!(back.stop, Stop::Duration(d) if d == Duration::from_secs_f64(1.3)));
        m.stop = Stop::Ops(5000);
        m.distribution = None;
        m.pool_bytes = None;
        assert_eq!(to_spec(&from_spec(&to_spec(&m)).unwrap()), to_spec(&m));
    }

    #[test]
    fn a_bad_spec_says_which_field() {
        let m = Matrix::new(Preset::Small, &["rime"], "A").unwrap();
        let spec = to_spec(&m).replace("records=", "records=x");
        assert!(from_spec(&spec).unwrap_err().contains("records"));
        let spec = to_spec(&m).replace("seed=42\n", "");
        assert!(from_spec(&spec).unwrap_err().contains("seed"));
    }
}
