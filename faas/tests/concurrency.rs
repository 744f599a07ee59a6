//! Invocations in parallel: exact counters, conserved bank totals (also
//! across a kill -9), the worker pool.

mod common;
use common::kv_input::KvInput;
use common::*;
use rand::{Rng, SeedableRng};
use rime_faas::{FunctionConfig, InvokeError, Runtime};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const ACCOUNTS: usize = 40;
const INITIAL: i64 = 1000;

#[test]
fn eight_threads_times_1000_increments_count_exactly_8000() {
    let e = env();
    e.deploy("counter", "counter", FunctionConfig::default());
    let t = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| {
                for _ in 0..1000 {
                    e.rt.invoke("counter", b"hits").unwrap();
                }
            });
        }
    });
    assert_eq!(e.call("counter", "hits"), "8001");
    assert_eq!(
        e.load("counter", b"hits"),
        Some(8001i64.to_le_bytes().to_vec())
    );
    let s = e.rt.stats();
    eprintln!(
        "8000 increments in {:?}; {} retries; {:?}",
        t.elapsed(),
        s.retries,
        s
    );
}

fn open_accounts(rt: &Runtime) {
    for a in 0..ACCOUNTS {
        let r = rt.invoke("bank", format!("open a{a} {INITIAL}").as_bytes());
        assert_eq!(r.unwrap().output, b"ok");
    }
}

fn transfer_input(rng: &mut impl Rng) -> Vec<u8> {
    let from = rng.gen_range(0..ACCOUNTS);
    let to = (from + rng.gen_range(1..ACCOUNTS)) % ACCOUNTS;
    let amount = rng.gen_range(1..300);
    format!("transfer a{from} a{to} {amount}").into_bytes()
}

fn total(rt: &Runtime) -> i64 {
    let t = String::from_utf8(rt.invoke("bank", b"total").unwrap().output).unwrap();
    t.parse().unwrap()
}

#[test]
fn ten_thousand_concurrent_transfers_keep_the_total() {
    let e = env();
    e.deploy("bank", "bank", FunctionConfig::default());
    open_accounts(&e.rt);
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let inputs: Vec<_> = (0..10_000)
        .map(|_| ("bank", transfer_input(&mut rng)))
        .collect();
    let t = Instant::now();
    let results = e.rt.invoke_many(inputs);
    let (mut ok, mut overdraft) = (0, 0);
    for r in results {
        match r {
            Ok(_) => ok += 1,
            Err(InvokeError::Function { message, .. }) if message.starts_with("overdraft") => {
                overdraft += 1
            }
            Err(e) => panic!("transfer failed: {e}"),
        }
    }
    assert_eq!(total(&e.rt), ACCOUNTS as i64 * INITIAL);
    eprintln!(
        "10000 transfers on {} workers in {:?}: {ok} done, {overdraft} refused, {} retries",
        e.rt.workers(),
        t.elapsed(),
        e.rt.stats().retries
    );
    assert!(ok > 5000, "{ok}");
    e.rt.db().verify().unwrap();
}

/// Set in the child of `transfers_survive_kill_9`: the data directory.
const CHILD_ENV: &str = "RIME_FAAS_BANK_CHILD";

/// In the child: transfer forever on 4 threads, reporting progress.
#[test]
fn bank_child_process() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        return; // only meaningful as the child of the test below
    };
    let dir = std::path::PathBuf::from(dir);
    let rt = Runtime::open(open_db(&dir), runtime_config(&dir)).unwrap();
    let done = std::sync::atomic::AtomicU64::new(0);
    std::thread::scope(|s| {
        for t in 0..4 {
            let (rt, done) = (&rt, &done);
            s.spawn(move || {
                let mut rng = rand::rngs::StdRng::seed_from_u64(t);
                loop {
                    let _ = rt.invoke("bank", &transfer_input(&mut rng));
                    let n = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                    if n % 100 == 0 {
                        println!("progress {n}");
                    }
                }
            });
        }
    });
}

#[test]
fn transfers_survive_kill_9() {
    let dir = tempfile::TempDir::new().unwrap();
    {
        let rt = Runtime::open(open_db(dir.path()), runtime_config(dir.path())).unwrap();
        rt.deploy("bank", &guest("bank"), FunctionConfig::default())
            .unwrap();
        open_accounts(&rt);
    }
    for round in 0..2 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "bank_child_process",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, dir.path())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let deadline = Instant::now() + Duration::from_secs(60);
        for line in stdout.lines() {
            let line = line.unwrap();
            if let Some(n) = line.strip_prefix("progress ")
                && n.parse::<u64>().unwrap() >= 500
            {
                break;
            }
            assert!(Instant::now() < deadline, "the child made no progress");
        }
        child.kill().unwrap(); // SIGKILL, mid-run
        let status = child.wait().unwrap();
        assert!(!status.success());
        let rt = Runtime::open(open_db(dir.path()), runtime_config(dir.path())).unwrap();
        assert_eq!(
            total(&rt),
            ACCOUNTS as i64 * INITIAL,
            "round {round}: the total changed across a kill -9"
        );
        rt.db().verify().unwrap();
        assert!(
            rt.db().stats().recovered_records > 0,
            "the child's commits were replayed"
        );
    }
}

#[test]
fn guests_read_correctly_while_pages_are_evicted_under_them() {
    // A pool of 1 MiB under a namespace of ~5 MiB: guests' gets go through
    // the B+tree's optimistic (fault-guarded) descents while other threads'
    // reads evict pages, with wasmtime's trap handler installed.
    let dir = tempfile::TempDir::new().unwrap();
    let db = std::sync::Arc::new(
        rime_storage::Db::open(dir.path().join("db"), db_options().pool_bytes(1 << 20)).unwrap(),
    );
    let rt = Runtime::open(db.clone(), runtime_config(dir.path())).unwrap();
    rt.deploy("kv", &guest("kv"), FunctionConfig::default())
        .unwrap();
    let t = db.open_tree("ns/kv").unwrap().unwrap();
    const KEYS: u32 = 20_000;
    let value = |i: u32| format!("{i:0>200}").into_bytes();
    for chunk in (0..KEYS).collect::<Vec<_>>().chunks(2000) {
        db.transaction(|tx| {
            for &i in chunk {
                tx.put(t, format!("key{i:06}").as_bytes(), &value(i))?;
            }
            Ok(())
        })
        .unwrap();
    }
    let before = db.stats().pool;
    std::thread::scope(|s| {
        for seed in 0..2 {
            let rt = &rt;
            s.spawn(move || {
                let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
                for _ in 0..300 {
                    let keys: Vec<u32> = (0..20).map(|_| rng.gen_range(0..KEYS)).collect();
                    let mut input = KvInput::new();
                    for &k in &keys {
                        input.get(format!("key{k:06}"));
                    }
                    let out = rt.invoke("kv", &input.bytes()).unwrap().output;
                    let mut at = 0;
                    for &k in &keys {
                        assert_eq!(out[at], 1, "key{k:06} missing");
                        let len =
                            u32::from_le_bytes(out[at + 1..at + 5].try_into().unwrap()) as usize;
                        assert_eq!(&out[at + 5..at + 5 + len], &value(k)[..]);
                        at += 5 + len;
                    }
                }
            });
        }
    });
    let after = db.stats().pool;
    eprintln!(
        "evictions {}, restarts {}, faults {}",
        after.evictions - before.evictions,
        after.restarts - before.restarts,
        after.faults - before.faults
    );
    assert!(after.evictions > before.evictions, "the pool never evicted");
    db.verify().unwrap();
}
