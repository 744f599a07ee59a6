//! Db-level commit throughput and latency (issue 15, item 4): real
//! transactions (one 100-byte put and one `add` per transaction, on keys
//! private to the committer so there are no conflicts) with 1, 2, 8, 32,
//! 128, 256 and 1024 concurrent committers for each durability mode, beside
//! the raw 4 KiB write + `fdatasync` of the same file system, measured in
//! the same run.
//!
//! Committers are threads blocking in `Db::transaction` (modes `sync`,
//! `group`, `nosync`), or, in mode `sync-tasks`, tasks: each commits with
//! `Db::transaction_pending` and starts its next commit once
//! `Pending::on_durable` has called back, all of them on one thread per
//! core, so a thousand commits wait for durability without a thousand
//! threads.
//!
//! `cargo bench -p rime-storage --bench db_commit`. Environment:
//! `RIME_BENCH_SECS` measured seconds per cell (default 1.0; a quarter of
//! that runs unmeasured first), `RIME_BENCH_COMMITTERS` the committer
//! counts (comma-separated, default 1,2,8,32,128,256,1024),
//! `RIME_BENCH_MODES` the modes (default sync,sync-tasks,group,nosync).
//!
//! One row per (mode, committers), commits/s in the third column (so runs
//! compare), then commits per log sync (the deltas of `DbStats::commits`
//! and `DbStats::log_syncs` over the measured window), p50/p99 commit
//! latency, both over the raw sync's p50 ("in raw syncs"), the log
//! bytes appended per commit (the splits' SMO records included: every
//! commit writes a new key until a committer's keys wrap), the p99 over
//! the raw sync's own p99 (`p99/raw99`), and the log's own rounds: their
//! mean write + sync time (`round µs`, `DbStats::log_sync_ns`) and the
//! share of the window one was in flight (`busy`).
//!
//! The raw syncs a row is divided by are its own: half measured just
//! before its cell and half just after, since this device's sync rate
//! drifts by 2× within minutes. The header gives the first cell's. A
//! `Sync` commit waits for at least one whole sync of its batch, so its
//! p99 cannot beat the device's own p99: `p99/raw99` is the tail over
//! that bound, while `p99/raw` also carries the device's tail
//! (`docs/transactions.md`, "The p99 at 32 committers").
//!
//! Committer threads have small stacks; all threads start together at a
//! barrier; a commit counts if it returns (a task's: is called back)
//! inside the measured window.

use rime_bufmgr::io::{AlignedBuf, BLOCK_SIZE, BlockFile, IoBackend, open_block_file};
use rime_storage::{Db, DbStats, Durability, Options, TreeId, Tx, TxError};
use std::fmt::Write as _;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Sender, channel};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

const COMMITTERS: [usize; 7] = [1, 2, 8, 32, 128, 256, 1024];
const VALUE_LEN: usize = 100;
/// Keys each committer cycles through.
const KEYS_PER_COMMITTER: u64 = 10_000;
/// As in the WAL-level bench: about three raw syncs on this machine.
const GROUP_DELAY: Duration = Duration::from_micros(200);
/// Raw syncs measured for each cell's baseline (half before it, half after).
const RAW_SYNCS: usize = 500;
/// Blocks the raw syncs cycle over (written once before timing, so every
/// timed sync is a plain overwrite, as the WAL's preallocated segments are).
const RAW_BLOCKS: usize = 16;
/// A committer's stack: 1024 of them must not take 2 GiB.
const COMMITTER_STACK_BYTES: usize = 64 << 10;
/// The unmeasured start of a cell, as a share of its measured seconds.
const WARMUP_SHARE: f64 = 0.25;

/// Raw sync latencies, sorted, and the seconds they took in all.
struct RawSyncs {
    latency: Vec<Duration>,
    secs: f64,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// A file of `RAW_BLOCKS` blocks the raw syncs overwrite.
fn raw_file(dir: &std::path::Path) -> Arc<dyn BlockFile> {
    let f = open_block_file(&dir.join("raw"), IoBackend::Auto).unwrap();
    f.set_len((BLOCK_SIZE * RAW_BLOCKS) as u64).unwrap();
    let buf = AlignedBuf::zeroed(BLOCK_SIZE);
    for i in 0..RAW_BLOCKS {
        f.write_at((i * BLOCK_SIZE) as u64, &buf).unwrap();
    }
    f.sync_data().unwrap();
    f
}

/// `n` raw 4 KiB write + `fdatasync`s, timed.
fn raw_syncs(f: &dyn BlockFile, n: usize) -> RawSyncs {
    let buf = AlignedBuf::zeroed(BLOCK_SIZE);
    let started = Instant::now();
    let mut latency: Vec<Duration> = (0..n)
        .map(|i| {
            let t = Instant::now();
            f.write_at((i % RAW_BLOCKS * BLOCK_SIZE) as u64, &buf)
                .unwrap();
            f.sync_data().unwrap();
            t.elapsed()
        })
        .collect();
    latency.sort();
    RawSyncs {
        latency,
        secs: started.elapsed().as_secs_f64(),
    }
}

impl RawSyncs {
    /// Pools the syncs measured before and after a cell.
    fn pooled(mut before: RawSyncs, after: RawSyncs) -> RawSyncs {
        before.latency.extend(after.latency);
        before.latency.sort();
        before.secs += after.secs;
        before
    }
    fn syncs_per_sec(&self) -> f64 {
        self.latency.len() as f64 / self.secs
    }
    fn p50(&self) -> Duration {
        percentile(&self.latency, 0.5)
    }
    fn p99(&self) -> Duration {
        percentile(&self.latency, 0.99)
    }
}

/// The measured window of a cell, in ns since `base`: commits that return
/// inside it count.
struct Window {
    base: Instant,
    start_ns: AtomicU64,
    end_ns: AtomicU64,
}

impl Window {
    fn new() -> Window {
        Window {
            base: Instant::now(),
            start_ns: AtomicU64::new(u64::MAX),
            end_ns: AtomicU64::new(u64::MAX),
        }
    }
    fn ns(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.base).as_nanos() as u64
    }
    fn open(&self) -> Instant {
        let now = Instant::now();
        self.start_ns.store(self.ns(now), Ordering::Release);
        now
    }
    fn close(&self) -> Instant {
        let now = Instant::now();
        self.end_ns.store(self.ns(now), Ordering::Release);
        now
    }
    fn closed(&self) -> bool {
        self.end_ns.load(Ordering::Acquire) != u64::MAX
    }
    fn contains(&self, t: Instant) -> bool {
        let ns = self.ns(t);
        ns >= self.start_ns.load(Ordering::Acquire) && ns < self.end_ns.load(Ordering::Acquire)
    }
}

/// What committer `id` writes: its value, into its keys and its counter.
struct Writes {
    id: usize,
    value: [u8; VALUE_LEN],
    counter: String,
}

impl Writes {
    fn new(id: usize) -> Writes {
        Writes {
            id,
            value: [id as u8; VALUE_LEN],
            counter: format!("ctr{id:04}"),
        }
    }
    /// Its `i`th key, written into `key`.
    fn key_into(&self, i: u64, key: &mut String) {
        key.clear();
        write!(key, "t{:04}k{:08}", self.id, i % KEYS_PER_COMMITTER).unwrap();
    }
    /// The transaction every committer runs.
    fn commit(&self, tx: &mut Tx<'_>, tree: TreeId, key: &str) -> Result<(), TxError> {
        tx.put(tree, key.as_bytes(), &self.value)?;
        tx.add(tree, self.counter.as_bytes(), 1)?;
        Ok(())
    }
}

/// One committer thread: commits until the window closes; returns the
/// latencies of the commits that returned inside it.
fn committer(db: &Db, tree: TreeId, id: usize, window: &Window, go: &Barrier) -> Vec<Duration> {
    let w = Writes::new(id);
    let mut key = String::new();
    let mut latency = Vec::new();
    go.wait();
    for i in 0u64.. {
        if window.closed() {
            break;
        }
        w.key_into(i, &mut key);
        let started = Instant::now();
        db.transaction(|tx| w.commit(tx, tree, &key)).unwrap();
        let done = Instant::now();
        if window.contains(done) {
            latency.push(done - started);
        }
    }
    latency
}

/// A task's commit that is durable: (task, started, called back).
type Durable = (usize, Instant, Instant);

/// Task `task` (writing `w`) starts its `i`th commit; the callback
/// queues it on `done` once durable.
fn start_commit(db: &Db, tree: TreeId, w: &Writes, task: usize, i: u64, done: &Sender<Durable>) {
    let mut key = String::new();
    w.key_into(i, &mut key);
    let started = Instant::now();
    let pending = db
        .transaction_pending(|tx| w.commit(tx, tree, &key))
        .unwrap();
    let done = done.clone();
    pending.on_durable(move |r| {
        r.unwrap();
        // The receiver outlives every commit it started.
        let _ = done.send((task, started, Instant::now()));
    });
}

/// One thread of `sync-tasks`: runs tasks `ids`, each a closed-loop
/// committer with one commit in flight, until the window closes and every
/// commit is durable; returns the latencies of the commits called back
/// inside the window.
fn task_thread(
    db: &Db,
    tree: TreeId,
    ids: Range<usize>,
    window: &Window,
    go: &Barrier,
) -> Vec<Duration> {
    let (done, durable) = channel::<Durable>();
    let writes: Vec<Writes> = ids.map(Writes::new).collect();
    let mut next_i = vec![0u64; writes.len()];
    let mut latency = Vec::new();
    go.wait();
    for (task, w) in writes.iter().enumerate() {
        start_commit(db, tree, w, task, 0, &done);
    }
    let mut in_flight = writes.len();
    while in_flight > 0 {
        let (task, started, called_back) = durable.recv().expect("a sender is held here");
        in_flight -= 1;
        if window.contains(called_back) {
            latency.push(called_back - started);
        }
        if !window.closed() {
            next_i[task] += 1;
            start_commit(db, tree, &writes[task], task, next_i[task], &done);
            in_flight += 1;
        }
    }
    latency
}

/// Committers as threads (the blocking API) or as tasks on a few threads
/// (`Db::transaction_pending`).
#[derive(Clone, Copy)]
enum Committers {
    Threads,
    Tasks,
}

/// The threads of a `Tasks` cell: one per core, each with its share of
/// the tasks.
fn task_ranges(tasks: usize) -> Vec<Range<usize>> {
    let threads = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .min(tasks);
    (0..threads)
        .map(|t| t * tasks / threads..(t + 1) * tasks / threads)
        .collect()
}

/// What one (mode, committers) cell measured.
struct Cell {
    commits_per_sec: f64,
    /// `None` when the log did not sync in the window (NoSync).
    commits_per_sync: Option<f64>,
    /// Log bytes appended per commit (SMO records included).
    log_bytes_per_commit: f64,
    /// The log's rounds in the window (`None` without syncs).
    rounds: Option<LogRounds>,
    /// Sorted.
    latency: Vec<Duration>,
}

fn commits_per_sync(before: &DbStats, after: &DbStats) -> Option<f64> {
    let syncs = after.log_syncs - before.log_syncs;
    (syncs > 0).then(|| (after.commits - before.commits) as f64 / syncs as f64)
}

/// The log's write + sync rounds over a window.
struct LogRounds {
    /// Their mean time.
    mean_us: f64,
    /// The share of the window one was in flight.
    busy: f64,
}

/// The log's rounds between `before` and `after`, `secs` apart.
fn log_rounds(before: &DbStats, after: &DbStats, secs: f64) -> Option<LogRounds> {
    let syncs = after.log_syncs - before.log_syncs;
    let ns = (after.log_sync_ns - before.log_sync_ns) as f64;
    (syncs > 0).then(|| LogRounds {
        mean_us: ns / syncs as f64 / 1e3,
        busy: ns / 1e9 / secs,
    })
}

fn run_cell(db: &Db, tree: TreeId, kind: Committers, committers: usize, secs: f64) -> Cell {
    let window = Window::new();
    let ranges = match kind {
        Committers::Threads => (0..committers).map(|id| id..id + 1).collect(),
        Committers::Tasks => task_ranges(committers),
    };
    let go = Barrier::new(ranges.len() + 1);
    std::thread::scope(|s| {
        let handles: Vec<_> = ranges
            .into_iter()
            .map(|ids| {
                let (window, go) = (&window, &go);
                std::thread::Builder::new()
                    .stack_size(COMMITTER_STACK_BYTES)
                    .spawn_scoped(s, move || match kind {
                        Committers::Threads => committer(db, tree, ids.start, window, go),
                        Committers::Tasks => task_thread(db, tree, ids, window, go),
                    })
                    .expect("spawn a committer")
            })
            .collect();
        go.wait();
        std::thread::sleep(Duration::from_secs_f64(secs * WARMUP_SHARE));
        let before = db.stats();
        let start = window.open();
        std::thread::sleep(Duration::from_secs_f64(secs));
        let end = window.close();
        let after = db.stats();
        let mut latency: Vec<Duration> = handles
            .into_iter()
            .flat_map(|h| h.join().expect("committer panicked"))
            .collect();
        latency.sort();
        Cell {
            rounds: log_rounds(&before, &after, (end - start).as_secs_f64()),
            commits_per_sec: latency.len() as f64 / (end - start).as_secs_f64(),
            commits_per_sync: commits_per_sync(&before, &after),
            log_bytes_per_commit: (after.log_bytes - before.log_bytes) as f64
                / (after.commits - before.commits).max(1) as f64,
            latency,
        }
    })
}

fn env_list<T: std::str::FromStr>(name: &str) -> Option<Vec<T>> {
    let v = std::env::var(name).ok()?;
    let list: Option<Vec<T>> = v.split(',').map(|s| s.trim().parse().ok()).collect();
    Some(list.unwrap_or_else(|| panic!("{name}={v:?}: expected a comma-separated list")))
}

fn modes() -> Vec<(&'static str, Durability, Committers)> {
    let group = Durability::Group {
        max_delay: GROUP_DELAY,
    };
    let all = [
        ("sync", Durability::Sync, Committers::Threads),
        ("sync-tasks", Durability::Sync, Committers::Tasks),
        ("group", group, Committers::Threads),
        ("nosync", Durability::NoSync, Committers::Threads),
    ];
    let Some(chosen) = env_list::<String>("RIME_BENCH_MODES") else {
        return all.to_vec();
    };
    all.into_iter()
        .filter(|(name, ..)| chosen.iter().any(|c| c == name))
        .collect()
}

fn print_raw(raw: &RawSyncs) {
    println!(
        "raw 4 KiB write + fdatasync: p50 {:.1} µs, p99 {:.1} µs, {:.0} syncs/s",
        us(raw.p50()),
        us(raw.p99()),
        raw.syncs_per_sec()
    );
}

fn print_header() {
    println!(
        "{:<10} {:>10} {:>12} {:>12} {:>10} {:>10} {:>8} {:>8} {:>12} {:>10} {:>10} {:>9} {:>5}",
        "mode",
        "committers",
        "commits/s",
        "commits/sync",
        "p50 µs",
        "p99 µs",
        "p50/raw",
        "p99/raw",
        "log B/commit",
        "raw p99 µs",
        "p99/raw99",
        "round µs",
        "busy"
    );
}

fn print_row(mode: &str, committers: usize, cell: &Cell, raw: &RawSyncs) {
    let p50 = percentile(&cell.latency, 0.5);
    let p99 = percentile(&cell.latency, 0.99);
    let per_sync = cell
        .commits_per_sync
        .map_or("-".to_string(), |c| format!("{c:.1}"));
    println!(
        "{:<10} {:>10} {:>12.0} {:>12} {:>10.1} {:>10.1} {:>8.2} {:>8.2} {:>12.0} {:>10.1} {:>10.2} {:>9} {:>5}",
        mode,
        committers,
        cell.commits_per_sec,
        per_sync,
        us(p50),
        us(p99),
        us(p50) / us(raw.p50()),
        us(p99) / us(raw.p50()),
        cell.log_bytes_per_commit,
        us(raw.p99()),
        us(p99) / us(raw.p99()),
        cell.rounds
            .as_ref()
            .map_or("-".into(), |r| format!("{:.1}", r.mean_us)),
        cell.rounds
            .as_ref()
            .map_or("-".into(), |r| format!("{:.2}", r.busy)),
    );
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` probes with --list
    }
    let secs: f64 = std::env::var("RIME_BENCH_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1.0);
    let committer_counts = env_list("RIME_BENCH_COMMITTERS").unwrap_or(COMMITTERS.to_vec());
    let tmp = tempfile::TempDir::new().unwrap();
    let raw_file = raw_file(tmp.path());
    let mut first = true;
    for (name, durability, kind) in modes() {
        for &committers in &committer_counts {
            let dir = tmp.path().join(format!("{name}-{committers}"));
            let opts = Options::default()
                .preallocate_log() // as a server runs: no segment creation mid-run
                .durability(durability)
                .pool_bytes(64 << 20)
                .checkpoint_interval(None);
            let db = Db::open(&dir, opts).unwrap();
            let tree = db.create_tree("bench").unwrap();
            let before = raw_syncs(&*raw_file, RAW_SYNCS / 2);
            let cell = run_cell(&db, tree, kind, committers, secs);
            let raw = RawSyncs::pooled(before, raw_syncs(&*raw_file, RAW_SYNCS / 2));
            if std::mem::take(&mut first) {
                print_raw(&raw);
                print_header();
            }
            print_row(name, committers, &cell, &raw);
            db.close().unwrap();
        }
    }
}
