//! `rime demo`: the example faaslets sharing persistent state.
//!
//! 1. Open (or create) the data directory: the Db (recovering from its log)
//!    and the runtime with the functions deployed by earlier runs.
//! 2. Deploy the example guests `counter` and `bank` (a redeploy on later
//!    runs; their namespaces' data stays).
//! 3. Count this run with the counter (key `demo/runs`), so a second run
//!    shows the state carried over.
//! 4. Concurrent increments of one counter on the runtime's worker pool;
//!    they conflict and are re-run, and every one counts exactly once.
//! 5. Concurrent random transfers between bank accounts (opened with 1000
//!    each on the first run); overdrafts are refused by the guest.
//! 6. The invariants, each an `ok`/`FAIL` line: counter = before + N; the
//!    bank's total unchanged; `Db::verify` passes. Any FAIL exits non-zero.
//! 7. Counters, then a checkpoint and a clean close.

use crate::config::Settings;
use crate::env::{self, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rime_faas::{
    FunctionConfig, Invocation, InvokeError, Invoking, Runtime, RuntimeConfig, namespace_tree,
};
use std::io::IsTerminal;
use std::time::Instant;

const COUNTER_KEY: &str = "demo/counter";
const RUNS_KEY: &str = "demo/runs";
const ACCOUNTS: usize = 16;
const INITIAL_BALANCE: i64 = 1000;

#[derive(clap::Args)]
pub struct Args {
    /// Counter increments (concurrent invocations of `counter`).
    #[arg(long, default_value_t = 2_000)]
    increments: u64,
    /// Bank transfers (concurrent invocations of `bank`).
    #[arg(long, default_value_t = 2_000)]
    transfers: u64,
    /// Worker threads running invocations (0: one per core).
    #[arg(long, default_value_t = 0)]
    workers: usize,
}

struct Checks {
    failed: usize,
}

impl Checks {
    fn check(&mut self, ok: bool, what: &str) {
        println!("   {} {what}", if ok { "ok  " } else { "FAIL" });
        if !ok {
            self.failed += 1;
        }
    }
}

pub fn run(args: &Args, s: &Settings) -> Result<()> {
    let started = Instant::now();
    let rt = open(args, s)?;
    deploy_examples(&rt)?;
    count_this_run(&rt)?;
    let counter = increments(&rt, args.increments)?;
    let bank = transfers(&rt, args.transfers)?;
    let failed = invariants(&rt, args.increments, &counter, &bank);
    report_and_close(rt)?;
    println!(
        "done in {:.1?}; run it again to see the state carried over",
        started.elapsed()
    );
    if failed > 0 {
        return Err(format!("{failed} invariant(s) failed").into());
    }
    Ok(())
}

/// What step 4 saw: the counter before and after, and the invocations
/// that failed.
struct CounterRun {
    before: i64,
    after: i64,
    errors: Vec<String>,
}

/// What step 5 saw: the bank's total before and after, and the
/// invocations that failed (other than refused overdrafts).
struct BankRun {
    total_before: i64,
    total_after: i64,
    errors: Vec<String>,
}

/// Step 1: the Db (recovering from its log) and the runtime, with the
/// functions earlier runs deployed.
fn open(args: &Args, s: &Settings) -> Result<Runtime> {
    let db = env::open_db(&s.data, s.db_options(None, None))?;
    let recovered = db.stats().recovered_records;
    let rt = env::open_runtime(&s.data, db, RuntimeConfig::default().workers(args.workers))?;
    println!(
        "1. opened {}: {} functions deployed, {} log records replayed",
        s.data.display(),
        rt.functions().len(),
        recovered
    );
    Ok(rt)
}

/// Step 2: deploys (or redeploys) `counter` and `bank`.
fn deploy_examples(rt: &Runtime) -> Result<()> {
    let mut deployed = Vec::new();
    for name in ["counter", "bank"] {
        let wasm = env::guest(name)?;
        let info = rt
            .deploy(name, &wasm, FunctionConfig::default())
            .map_err(|e| format!("deploying {name}: {e}"))?;
        deployed.push(format!(
            "{name} ({} KiB, generation {})",
            info.module_len.div_ceil(1024),
            info.generation
        ));
    }
    println!("2. deployed {}", deployed.join(", "));
    Ok(())
}

/// Step 3: counts this run with the counter.
fn count_this_run(rt: &Runtime) -> Result<()> {
    let run_number = text(&rt.invoke("counter", RUNS_KEY.as_bytes())?.output);
    println!("3. run {run_number} on this directory");
    Ok(())
}

/// Step 4: `n` concurrent increments of one counter.
fn increments(rt: &Runtime, n: u64) -> Result<CounterRun> {
    let before = read_counter(rt)?;
    let t = Instant::now();
    let (mut errors, mut retries) = (Vec::new(), 0u64);
    run_concurrently(
        n,
        "increments",
        || rt.invoke_async("counter", COUNTER_KEY.as_bytes().to_vec()),
        |r| match r {
            Ok(inv) => retries += u64::from(inv.retries),
            Err(e) => errors.push(e.to_string()),
        },
    );
    let after = read_counter(rt)?;
    println!(
        "4. {n} concurrent increments of {COUNTER_KEY} on {} workers in {:.2?} ({retries} re-runs after conflicts)",
        rt.workers(),
        t.elapsed(),
    );
    Ok(CounterRun {
        before,
        after,
        errors,
    })
}

/// Step 5: `n` concurrent random transfers between the bank's accounts
/// (opened first if this is the first run).
fn transfers(rt: &Runtime, n: u64) -> Result<BankRun> {
    let accounts: Vec<String> = (0..ACCOUNTS).map(|i| format!("acct-{i:02}")).collect();
    let opened = open_accounts(rt, &accounts)?;
    let total_before = bank_total(rt)?;
    let mut rng = XorShift::seeded();
    let t = Instant::now();
    let (mut moved, mut refused, mut retries, mut errors) = (0u64, 0u64, 0u64, Vec::new());
    run_concurrently(
        n,
        "transfers",
        || rt.invoke_async("bank", random_transfer(&mut rng, &accounts)),
        |r| match r {
            Ok(inv) => {
                moved += 1;
                retries += u64::from(inv.retries);
            }
            Err(InvokeError::Function { message, .. }) if message.starts_with("overdraft") => {
                refused += 1
            }
            Err(e) => errors.push(e.to_string()),
        },
    );
    let total_after = bank_total(rt)?;
    println!(
        "5. {n} concurrent transfers between {ACCOUNTS} accounts{} in {:.2?}: {moved} moved money, {refused} refused as overdrafts, {retries} re-runs",
        if opened > 0 {
            format!(" ({opened} opened with {INITIAL_BALANCE})")
        } else {
            String::new()
        },
        t.elapsed()
    );
    Ok(BankRun {
        total_before,
        total_after,
        errors,
    })
}

/// Opens each of `accounts` that does not exist yet with
/// [`INITIAL_BALANCE`]; returns how many it opened.
fn open_accounts(rt: &Runtime, accounts: &[String]) -> Result<usize> {
    let mut opened = 0;
    for a in accounts {
        match rt.invoke("bank", format!("balance {a}").as_bytes()) {
            Ok(_) => {}
            Err(InvokeError::Function { .. }) => {
                rt.invoke("bank", format!("open {a} {INITIAL_BALANCE}").as_bytes())
                    .map_err(|e| format!("opening account {a}: {e}"))?;
                opened += 1;
            }
            Err(e) => return Err(format!("reading account {a}: {e}").into()),
        }
    }
    Ok(opened)
}

/// The input of one transfer: between two different accounts, 1 to 300.
fn random_transfer(rng: &mut XorShift, accounts: &[String]) -> Vec<u8> {
    let from = rng.below(ACCOUNTS);
    let to = (from + 1 + rng.below(ACCOUNTS - 1)) % ACCOUNTS;
    let amount = 1 + rng.below(300);
    format!("transfer {} {} {amount}", accounts[from], accounts[to]).into_bytes()
}

/// The sum of every account's balance, as the bank reports it.
fn bank_total(rt: &Runtime) -> Result<i64> {
    Ok(text(&rt.invoke("bank", b"total")?.output)
        .parse()
        .map_err(|_| "bank total is not a number")?)
}

/// Submits `n` invocations (each made by `submit`) to the worker pool at
/// once, then waits for them in order behind a progress bar; `each` sees
/// every result.
fn run_concurrently(
    n: u64,
    what: &str,
    mut submit: impl FnMut() -> Invoking,
    mut each: impl FnMut(std::result::Result<Invocation, InvokeError>),
) {
    let bar = progress(n, what);
    let pending: Vec<Invoking> = (0..n).map(|_| submit()).collect();
    for p in pending {
        each(p.wait());
        bar.inc(1);
    }
    bar.finish_and_clear();
}

/// Step 6: the invariants, each an `ok`/`FAIL` line; how many failed.
fn invariants(rt: &Runtime, increments: u64, counter: &CounterRun, bank: &BankRun) -> usize {
    println!("6. invariants");
    let mut checks = Checks { failed: 0 };
    let CounterRun { before, after, .. } = *counter;
    let expected = before + increments as i64;
    checks.check(
        after == expected,
        &format!(
            "counter {COUNTER_KEY}: {before} -> {after} (expected {before} + {increments} = {expected})"
        ),
    );
    let (total_before, total_after) = (bank.total_before, bank.total_after);
    let expected_total = ACCOUNTS as i64 * INITIAL_BALANCE;
    checks.check(
        total_before == expected_total && total_after == expected_total,
        &format!(
            "bank total {total_before} -> {total_after} (expected {ACCOUNTS} x {INITIAL_BALANCE} = {expected_total})"
        ),
    );
    let errors: Vec<&String> = counter.errors.iter().chain(&bank.errors).collect();
    checks.check(
        errors.is_empty(),
        &format!(
            "every invocation committed or was refused by the guest ({} errors{})",
            errors.len(),
            errors
                .first()
                .map(|e| format!(", first: {e}"))
                .unwrap_or_default()
        ),
    );
    let verified = rt.db().verify();
    checks.check(
        verified.is_ok(),
        &match &verified {
            Ok(()) => "Db::verify: every tree's invariants hold".to_string(),
            Err(e) => format!("Db::verify: {e}"),
        },
    );
    checks.failed
}

/// Step 7: the counters, then a checkpoint and a clean close.
fn report_and_close(rt: Runtime) -> Result<()> {
    let s = rt.db().stats();
    let r = rt.stats();
    println!(
        "7. invocations: {} committed, {} failed, {} re-runs; db: {} commits, {} conflicts, {} KiB of log, pool {} hits / {} misses",
        r.committed,
        r.failed,
        r.retries,
        s.commits,
        s.conflicts,
        s.log_bytes / 1024,
        s.pool.hits,
        s.pool.misses
    );
    env::close(rt)
}

fn progress(len: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    if std::io::stdout().is_terminal() {
        bar.set_style(
            ProgressStyle::with_template(&format!(
                "   {{bar:40}} {{pos}}/{{len}} {what} ({{per_sec}})"
            ))
            .expect("valid template"),
        );
    } else {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    bar
}

fn text(v: &[u8]) -> String {
    String::from_utf8_lossy(v).into_owned()
}

/// The counter's value, read directly from its namespace.
fn read_counter(rt: &Runtime) -> Result<i64> {
    let db = rt.db();
    let Some(tree) = db.open_tree(&namespace_tree("counter"))? else {
        return Ok(0);
    };
    Ok(db
        .get(tree, COUNTER_KEY.as_bytes())?
        .and_then(|v| v.try_into().ok())
        .map_or(0, i64::from_le_bytes))
}

/// Picks accounts and amounts; the demo needs no better randomness.
struct XorShift(u64);

impl XorShift {
    fn seeded() -> XorShift {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64);
        XorShift(t | 1)
    }
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}
