//! `rime-bench http`: `rime serve` as a real child process, loaded over
//! loopback by N keep-alive HTTP/1.1 connections (issue 17, "Benchmarks").
//!
//! Each cell (guest × connection count × round) gets a fresh server on a
//! fresh data directory (default durability: `Sync`), the guest deployed
//! over HTTP, a warm-up, the measured part, then a check that every
//! acknowledged invocation counted exactly once; then the server is
//! killed. `GET /health` rows (`--no-ceiling` drops them) measure the
//! ceiling of the load generator and the server's HTTP path together.
//!
//! * `server.rs`: finding `rime` and the guests; the child process.
//! * `client.rs`: the HTTP/1.1 client; `api.rs`: the calls around a run.
//! * `workload.rs`: what each guest's requests are, setup and check.
//! * `load.rs`: the connections' loops and what they measured.
//! * this file: the options, the cells, the rows, the table and CSV.

mod api;
mod client;
mod load;
mod server;
mod workload;

use api::Api;
use load::{Outcome, Plan};
use rime_bench::repeat;
use rime_bench::report::{self, Row};
use server::{Server, ServerConfig};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use workload::{Check, Kind, WasmDir, Workload};

pub type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// The CSV's engine column.
const ENGINE: &str = "rime-serve-http";
/// Connections the server allows beyond the bench's own (setup, checks).
const SPARE_CONNECTIONS: usize = 64;
/// `rime serve`'s default `--max-connections`.
const DEFAULT_MAX_CONNECTIONS: usize = 512;

#[derive(clap::Args)]
pub struct HttpArgs {
    /// The `rime` binary (default: `rime` next to this executable; build it
    /// with `cargo build --release -p rime-cli`).
    #[arg(long)]
    rime: Option<PathBuf>,
    /// Guests, comma-separated: counter, bank (their modules from
    /// $RIME_GUESTS_DIR or guests/target/wasm32-unknown-unknown/release),
    /// hello (the HTTP-triggered component hello_http, from
    /// $RIME_COMPONENTS_DIR or guests/components/target/wasm32-wasip2/release).
    #[arg(long, default_value = "counter,bank", value_delimiter = ',')]
    guests: Vec<String>,
    /// Connection counts, a row each.
    #[arg(long, default_value = "1,64,256", value_delimiter = ',')]
    connections: Vec<usize>,
    /// Measured seconds per row.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Unmeasured seconds before each row.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Rounds of all rows; each row is its median round's, with the range.
    #[arg(long, default_value_t = 1)]
    repeat: usize,
    /// Leave out the `GET /health` rows (the load generator's ceiling).
    #[arg(long)]
    no_ceiling: bool,
    /// The load generator's threads (tokio workers).
    #[arg(long, default_value_t = 2)]
    client_threads: usize,
    /// Counter keys the invocations pick from, uniformly (1: all on the
    /// guest's default key `counter`).
    #[arg(long, default_value_t = 1)]
    counter_keys: usize,
    /// Bank accounts transfers pick from, uniformly (at least 2).
    #[arg(long, default_value_t = 1000)]
    bank_accounts: usize,
    /// An extra argument for `rime serve`, repeatable, e.g.
    /// `--serve-arg=--max-concurrent=256`.
    #[arg(long = "serve-arg", allow_hyphen_values = true)]
    serve_args: Vec<String>,
    /// Where the servers' data directories go (not tmpfs). Default
    /// $RIME_BENCH_DIR or target/bench-data.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Rows are appended to results.csv here (the `ycsb` format).
    #[arg(long, default_value = "target/bench-results")]
    out: PathBuf,
}

/// The validated arguments, with the binary found and the modules read.
struct Config {
    rime: PathBuf,
    data_root: PathBuf,
    workloads: Vec<(Workload, Option<Vec<u8>>)>,
    connections: Vec<usize>,
    warmup: Duration,
    duration: Duration,
    serve_args: Vec<String>,
}

/// One measured row and its check.
struct Cell {
    row: Row,
    check: Option<Check>,
}

pub fn run(a: HttpArgs) -> Res<()> {
    let cfg = config(&a)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(a.client_threads.max(1))
        .enable_all()
        .build()?;
    let mut rounds = Vec::new();
    let mut failed = Vec::new();
    for round in 1..=a.repeat.max(1) {
        let mut rows = Vec::new();
        for (w, wasm) in &cfg.workloads {
            for &c in &cfg.connections {
                eprintln!("round {round}: {} × {c} connections", w.name());
                let cell = rt.block_on(run_cell(&cfg, w, wasm.as_deref(), c))?;
                if let Some(check) = &cell.check {
                    print_check(w, c, check);
                    if !check.passed {
                        failed.push(format!("{} × {c}: {}", w.name(), check.detail));
                    }
                }
                rows.push(cell.row);
            }
        }
        rounds.push(rows);
    }
    let rows = repeat::median_of_rounds(rounds);
    print!("{}", table(&rows));
    let csv = append_csv(&a.out, &rows)?;
    eprintln!("appended {} rows to {}", rows.len(), csv.display());
    match failed.is_empty() {
        true => Ok(()),
        false => Err(format!("checks FAILED: {}", failed.join("; ")).into()),
    }
}

fn config(a: &HttpArgs) -> Res<Config> {
    if a.connections.is_empty() || a.connections.contains(&0) {
        return Err("--connections: counts of at least 1, comma-separated".into());
    }
    if a.counter_keys == 0 || a.bank_accounts < 2 {
        return Err("--counter-keys must be at least 1, --bank-accounts at least 2".into());
    }
    let rime = server::rime_binary(a.rime.as_deref())?;
    let mut kinds: Vec<Kind> = match a.no_ceiling {
        true => Vec::new(),
        false => vec![Kind::Health],
    };
    for g in a.guests.iter().filter(|g| !g.trim().is_empty()) {
        let k = Kind::parse(g)?;
        if !kinds.contains(&k) {
            kinds.push(k);
        }
    }
    let mut workloads = Vec::new();
    for kind in kinds {
        let w = Workload {
            kind,
            counter_keys: a.counter_keys,
            bank_accounts: a.bank_accounts,
        };
        let wasm = match w.wasm_file() {
            None => None,
            Some((WasmDir::Modules, file)) => Some(server::guest_wasm(file)?),
            Some((WasmDir::Components, file)) => Some(server::component_wasm(file)?),
        };
        workloads.push((w, wasm));
    }
    Ok(Config {
        rime,
        data_root: a
            .data_dir
            .clone()
            .unwrap_or_else(rime_bench::default_data_dir),
        workloads,
        connections: a.connections.clone(),
        warmup: Duration::from_secs_f64(a.warmup.max(0.0)),
        duration: Duration::from_secs_f64(a.duration.max(0.001)),
        serve_args: a.serve_args.clone(),
    })
}

/// A fresh server, the setup, the load, the check; the server is killed
/// when this returns, whichever way.
async fn run_cell(cfg: &Config, w: &Workload, wasm: Option<&[u8]>, conns: usize) -> Res<Cell> {
    let setup_start = Instant::now();
    let mut server = Server::start(&ServerConfig {
        rime: &cfg.rime,
        data_root: &cfg.data_root,
        max_connections: DEFAULT_MAX_CONNECTIONS.max(conns + SPARE_CONNECTIONS),
        extra_args: &cfg.serve_args,
    })?;
    w.setup(server.addr, &server.token, wasm).await?;
    let setup_secs = setup_start.elapsed().as_secs_f64();
    let outcome = load::run(Plan {
        addr: server.addr,
        token: server.token.clone(),
        connections: conns,
        warmup: cfg.warmup,
        duration: cfg.duration,
        workload: *w,
        server_pid: server.pid(),
    })
    .await?;
    server.check_alive()?;
    let mut api = Api::new(server.addr, &server.token);
    let check = w.check(&mut api, &outcome.acked).await?;
    let row = to_row(w, conns, setup_secs, &outcome, check.as_ref());
    print_progress(&row);
    Ok(Cell { row, check })
}

/// The row of `results.csv` (docs/benchmarks-http.md says what each column
/// holds here).
fn to_row(w: &Workload, conns: usize, setup_secs: f64, o: &Outcome, check: Option<&Check>) -> Row {
    let (p50, p99, p999) = (
        o.quantile_us(0.5),
        o.quantile_us(0.99),
        o.quantile_us(0.999),
    );
    let commits = w.commits();
    Row {
        engine: ENGINE.into(),
        workload: w.name().into(),
        distribution: w.distribution(),
        preset: "http".into(),
        durability: "sync".into(),
        threads: conns,
        inflight: 1,
        records: w.records(),
        data_bytes: 0,
        pool_bytes: 0,
        load_secs: setup_secs,
        ops: o.ok,
        secs: o.secs,
        ops_per_sec: o.ok_per_sec(),
        p50_us: p50,
        p99_us: p99,
        p999_us: p999,
        not_found: 0,
        errors: o.error_count(),
        mem_limit_bytes: 0,
        mem_peak_bytes: 0,
        runs: 1,
        ops_per_sec_min: o.ok_per_sec(),
        ops_per_sec_max: o.ok_per_sec(),
        commit_p50_us: if commits { p50 } else { 0.0 },
        commit_p99_us: if commits { p99 } else { 0.0 },
        commits_per_sync: None,
        engine_note: Some(note(o, check)),
        note: None,
    }
}

/// Errors by status, reconnects, CPU use and the check, for the notes.
fn note(o: &Outcome, check: Option<&Check>) -> String {
    let mut parts = Vec::new();
    if !o.errors.is_empty() {
        let by_status: Vec<String> = o.errors.iter().map(|(s, n)| format!("{s}×{n}")).collect();
        parts.push(format!("errors {}", by_status.join(" ")));
    }
    if let Some(e) = &o.first_io_error {
        parts.push(format!("first io error: {e}"));
    }
    if o.reconnects > 0 {
        parts.push(format!("{} reconnects", o.reconnects));
    }
    let cores = |c: Option<f64>| c.map_or("?".into(), |c| format!("{c:.2}"));
    parts.push(format!(
        "cores: client {} server {}",
        cores(o.client_cores),
        cores(o.server_cores)
    ));
    if let Some(c) = check {
        let verdict = if c.passed { "ok" } else { "FAILED" };
        parts.push(format!("check {verdict} ({})", c.detail));
    }
    parts.join("; ")
}

/// `check guest=G connections=N DETAIL: ok|FAILED` on stdout (the smoke
/// test reads it).
fn print_check(w: &Workload, conns: usize, c: &Check) {
    let verdict = if c.passed { "ok" } else { "FAILED" };
    println!(
        "check guest={} connections={conns} {}: {verdict}",
        w.name(),
        c.detail
    );
}

fn print_progress(r: &Row) {
    eprintln!(
        "{:>8} × {:<4} {:>10.0} /s  p50 {:>9.1} µs  p99 {:>9.1} µs  {}",
        r.workload,
        r.threads,
        r.ops_per_sec,
        r.p50_us,
        r.p99_us,
        r.engine_note.as_deref().unwrap_or_default()
    );
}

/// The human table: a line per row, and the ceiling under it.
fn table(rows: &[Row]) -> String {
    let mut s = format!(
        "\n{:<8} {:>5} {:>10} {:>19} {:>9} {:>9} {:>9} {:>7}  notes\n",
        "guest", "conns", "ok/s", "range", "p50 µs", "p99 µs", "p99.9 µs", "errors"
    );
    for r in rows {
        let range = match r.runs > 1 {
            true => format!("{:.0}–{:.0}", r.ops_per_sec_min, r.ops_per_sec_max),
            false => "-".into(),
        };
        s.push_str(&format!(
            "{:<8} {:>5} {:>10.0} {:>19} {:>9.1} {:>9.1} {:>9.1} {:>7}  {}\n",
            r.workload,
            r.threads,
            r.ops_per_sec,
            range,
            r.p50_us,
            r.p99_us,
            r.p999_us,
            r.errors,
            r.engine_note.as_deref().unwrap_or_default()
        ));
    }
    let ceiling = rows
        .iter()
        .filter(|r| r.workload == "health")
        .max_by(|a, b| a.ops_per_sec.total_cmp(&b.ops_per_sec));
    if let Some(c) = ceiling {
        s.push_str(&format!(
            "\nceiling (GET /health, load generator and HTTP path together): {:.0} req/s at {} connections\n",
            c.ops_per_sec, c.threads
        ));
    }
    s
}

/// Appends `rows` to `dir/results.csv`, writing the header first if the
/// file is new; refuses a file with another header.
fn append_csv(dir: &Path, rows: &[Row]) -> Res<PathBuf> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let path = dir.join("results.csv");
    let all = report::csv(rows);
    let (header, body) = all.split_once('\n').unwrap_or((&all, ""));
    let text = match std::fs::read_to_string(&path) {
        Ok(old) if old.lines().next() == Some(header) => body.to_string(),
        Ok(_) => {
            return Err(format!(
                "{} has another header (an older format?): pass another --out",
                path.display()
            )
            .into());
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => all.clone(),
        Err(e) => return Err(format!("{}: {e}", path.display()).into()),
    };
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    f.write_all(text.as_bytes())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(path)
}
