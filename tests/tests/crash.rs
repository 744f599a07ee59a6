//! Crash with real processes: a child runs `Sync` transactions from several
//! threads and prints each acknowledged transaction id; the parent SIGKILLs
//! it at a random moment, reopens the directory, and checks that every
//! acknowledged transaction is wholly present and no transaction is partly
//! present. Transactions write values from 120 bytes to 40 kB (inline and
//! extent-backed) and overwrite a per-thread blob of up to 30 kB; one
//! thread creates, fills and drops scratch trees. One cycle in four kills a
//! second child during its recovery of the first one's crash.
//!
//! `RIME_CRASH_CYCLES` sets the number of kill cycles (default 50; soak:
//! thousands, `scripts/crash-soak`), `RIME_CRASH_SEED` the seed (printed).
//!
//! The child is this test binary, re-executed with `RIME_CRASH_CHILD_DIR`
//! set, running only `crash_child`.
#![forbid(unsafe_code)]

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rime_storage::{Db, Durability, Options, TreeId, TxError, VerifyOnOpen};
use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::ops::{Bound, ControlFlow};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

const CHILD_DIR_ENV: &str = "RIME_CRASH_CHILD_DIR";
const CHILD_CYCLE_ENV: &str = "RIME_CRASH_CHILD_CYCLE";
/// Committing threads in the child.
const CHILD_THREADS: u64 = 4;
/// Keys each transaction writes besides its marker and the counter.
const PARTS: usize = 3;
/// Ids never repeat across cycles or threads.
const IDS_PER_CYCLE: u64 = 1 << 32;
const IDS_PER_THREAD: u64 = 1 << 28;

fn opts() -> Options {
    Options::default()
        .pool_bytes(2 << 20)
        .durability(Durability::Sync)
        // Frequent checkpoints and small segments: kills land during
        // checkpoints and log truncation too.
        .checkpoint_interval(Some(Duration::from_millis(40)))
        .checkpoint_log_bytes(256 << 10)
        .segment_size(64 << 10)
        .verify_on_open(VerifyOnOpen::AfterReplay)
}

fn part_key(id: u64, j: usize) -> Vec<u8> {
    format!("part/{id:020}/{j}").into_bytes()
}

/// Part `j` of transaction `id`: inline or extent-backed by its length.
fn part_value(id: u64, j: usize) -> Vec<u8> {
    const LENS: [usize; 5] = [120, 1_500, 5_000, 17_000, 40_000];
    vec![(j as u8) ^ (id as u8); LENS[(id as usize + j) % LENS.len()]]
}

fn blob_key(thread: u64) -> Vec<u8> {
    format!("blob/{thread}").into_bytes()
}

/// The blob a transaction overwrites: its id, then a length that varies
/// across the inline limit, filled with a byte of the id.
fn blob_value(id: u64) -> Vec<u8> {
    let len = 8 + (id as usize * 7919) % 30_000;
    let mut v = vec![id as u8 ^ 0x5A; len];
    v[..8].copy_from_slice(&id.to_le_bytes());
    v
}

fn marker_key(id: u64) -> Vec<u8> {
    format!("tx/{id:020}").into_bytes()
}

fn one_tx(db: &Db, t: TreeId, id: u64) -> Result<(), TxError> {
    db.transaction(|tx| {
        tx.put(t, &marker_key(id), &id.to_le_bytes())?;
        for j in 0..PARTS {
            tx.put(t, &part_key(id, j), &part_value(id, j))?;
        }
        tx.put(
            t,
            &blob_key(id % IDS_PER_CYCLE / IDS_PER_THREAD),
            &blob_value(id),
        )?;
        tx.add(t, b"count", 1)?;
        // Now and then delete an older transaction of this thread (merges;
        // deletes must be atomic too), leaving a tombstone key for the checker.
        if id % 7 == 3 && id % IDS_PER_THREAD >= 3 {
            let old = id - 3;
            if tx.delete(t, &marker_key(old))? {
                for j in 0..PARTS {
                    tx.delete(t, &part_key(old, j))?;
                }
                tx.put(t, format!("gone/{old:020}").as_bytes(), b"")?;
                tx.add(t, b"count", -1)?;
            }
        }
        Ok(())
    })
}

/// The child: never returns (killed by the parent).
#[test]
fn crash_child() {
    let Some(dir) = std::env::var_os(CHILD_DIR_ENV) else {
        return;
    };
    let cycle: u64 = std::env::var(CHILD_CYCLE_ENV).unwrap().parse().unwrap();
    let db = Db::open(Path::new(&dir), opts()).expect("child open");
    let t = db.open_or_create_tree("t").expect("tree");
    let out = std::sync::Mutex::new(std::io::stdout());
    let scratch = &db;
    std::thread::scope(|s| {
        // Scratch trees: created, filled with extent-backed values, dropped.
        s.spawn(move || {
            for n in 0u64.. {
                let name = format!("scratch/{cycle}/{n}");
                let st = scratch.create_tree(&name).expect("create scratch");
                for k in 0..8u64 {
                    let v = vec![k as u8; 3_000 + 4_000 * k as usize];
                    scratch.put(st, &k.to_le_bytes(), &v).expect("fill scratch");
                }
                scratch.drop_tree(&name).expect("drop scratch");
            }
        });
        for th in 0..CHILD_THREADS {
            let (db, out) = (&db, &out);
            s.spawn(move || {
                let base = cycle * IDS_PER_CYCLE + th * IDS_PER_THREAD;
                for i in 0.. {
                    let id = base + i;
                    one_tx(db, t, id).expect("commit");
                    let mut o = out.lock().unwrap();
                    writeln!(o, "ACK {id}").unwrap();
                    o.flush().unwrap();
                }
            });
        }
    });
}

/// Reopens, checks, closes; returns how many transactions are present.
fn check(dir: &Path, total_acked: &HashSet<u64>) -> usize {
    let db = Db::open(dir, opts().checkpoint_interval(None)).expect("reopen after kill");
    let Some(t) = db.open_tree("t").unwrap() else {
        assert!(
            total_acked.is_empty(),
            "acknowledged transactions but no tree"
        );
        return 0;
    };
    let mut present = HashSet::new();
    let mut gone = HashSet::new();
    let mut parts: Vec<(u64, usize)> = Vec::new();
    let mut blobs: Vec<u64> = Vec::new();
    let mut count = 0i64;
    db.transaction(|tx| {
        present.clear();
        gone.clear();
        parts.clear();
        blobs.clear();
        tx.scan(t, Bound::Unbounded, Bound::Unbounded, |k, v| {
            let k = std::str::from_utf8(k).unwrap();
            if let Some(id) = k.strip_prefix("tx/") {
                let id: u64 = id.parse().unwrap();
                assert_eq!(v, id.to_le_bytes(), "marker value of {id}");
                present.insert(id);
            } else if let Some(id) = k.strip_prefix("gone/") {
                gone.insert(id.parse::<u64>().unwrap());
            } else if let Some(rest) = k.strip_prefix("part/") {
                let (id, j) = rest.split_once('/').unwrap();
                let (id, j): (u64, usize) = (id.parse().unwrap(), j.parse().unwrap());
                assert!(v == part_value(id, j), "value of part {j} of {id}");
                parts.push((id, j));
            } else if k.starts_with("blob/") {
                let id = u64::from_le_bytes(v[..8].try_into().unwrap());
                assert!(v == blob_value(id), "blob {k} holds a torn value of {id}");
                blobs.push(id);
            } else if k == "count" {
                count = i64::from_le_bytes(v.try_into().unwrap());
            }
            ControlFlow::Continue(())
        })?;
        Ok(())
    })
    .unwrap();
    // Every acknowledged transaction is present, or was deleted by a later
    // transaction (which left its tombstone).
    for id in total_acked {
        assert!(
            present.contains(id) || gone.contains(id),
            "acknowledged transaction {id} is missing"
        );
    }
    // No transaction is partly present.
    let mut per_id: HashMap<u64, usize> = HashMap::new();
    for (id, _) in &parts {
        *per_id.entry(*id).or_default() += 1;
    }
    for id in &present {
        assert_eq!(
            per_id.get(id).copied(),
            Some(PARTS),
            "transaction {id} is partly present"
        );
    }
    for id in per_id.keys() {
        assert!(present.contains(id), "parts of {id} without its marker");
    }
    // A blob comes from a committed transaction (present, or deleted since).
    for id in &blobs {
        assert!(
            present.contains(id) || gone.contains(id),
            "blob of transaction {id}, which is not committed"
        );
    }
    // Scratch trees left by a kill between create and drop are sound.
    for (name, _) in db.list_trees().unwrap() {
        assert!(name == "t" || name.starts_with("scratch/"), "tree {name}");
    }
    assert_eq!(
        count,
        present.len() as i64,
        "counter disagrees with the markers"
    );
    db.verify().unwrap();
    db.close().unwrap();
    present.len()
}

#[test]
fn sigkill_cycles_lose_no_acknowledged_transaction() {
    if std::env::var_os(CHILD_DIR_ENV).is_some() {
        return;
    }
    let cycles = rime_tests::knob("RIME_CRASH_CYCLES", 50);
    let tmp = tempfile::TempDir::new().unwrap();
    let dir = tmp.path().join("db");
    let seed = rime_tests::knob("RIME_CRASH_SEED", rand::random::<u32>() as u64);
    eprintln!("sigkill cycles: seed {seed} (RIME_CRASH_SEED={seed} replays the schedule)");
    let mut rng = StdRng::seed_from_u64(seed);
    let mut total_acked = HashSet::new();
    let mut present = 0;
    let mut recovery_kills = 0;
    for cycle in 0..cycles {
        // A child killed at a random moment of its workload.
        let ms = rng.gen_range(20..250);
        total_acked.extend(run_child(&dir, cycle * 2, ms));
        // One cycle in four: another killed while it recovers from that.
        if rng.gen_range(0..4) == 0 {
            let ms = rng.gen_range(1..30);
            total_acked.extend(run_child(&dir, cycle * 2 + 1, ms));
            recovery_kills += 1;
        }
        present = check(&dir, &total_acked);
    }
    eprintln!(
        "{cycles} kill cycles ({recovery_kills} with a kill during recovery); {} acknowledged transactions, {present} present at the end",
        total_acked.len()
    );
    assert!(!total_acked.is_empty());
}

/// Runs the child for `ms` milliseconds, SIGKILLs it, and returns the ids
/// it acknowledged.
fn run_child(dir: &Path, cycle: u64, ms: u64) -> HashSet<u64> {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR_ENV, dir)
        .env(CHILD_CYCLE_ENV, cycle.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut acked = HashSet::new();
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(id) = line.strip_prefix("ACK ") {
                acked.insert(id.parse::<u64>().unwrap());
            }
        }
        acked
    });
    std::thread::sleep(Duration::from_millis(ms));
    child.kill().unwrap(); // SIGKILL
    let status = child.wait().unwrap();
    assert!(
        status.code().is_none(),
        "child exited by itself: {status:?}"
    );
    reader.join().unwrap()
}
