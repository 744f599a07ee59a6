//! The async executors (`exec`): many invocations in flight on few
//! threads, suspended on page reads and log syncs; fairness between a
//! looping guest and the others; cancellation.

mod common;
use common::kv_input::KvInput;
use common::*;
use rand::{Rng, SeedableRng};
use rime_faas::{FunctionConfig, InvokeError, Invoking, Runtime};
use rime_storage::Db;
use std::sync::Arc;
use std::time::{Duration, Instant};

const KV_KEYS: u32 = 100_000;
const VALUE_LEN: usize = 200;
const ACCOUNTS: usize = 40;
const INITIAL: i64 = 1000;

fn kv_value(i: u32) -> Vec<u8> {
    format!("{i:0>width$}", width = VALUE_LEN).into_bytes()
}

fn kv_key(i: u32) -> String {
    format!("key{i:06}")
}

/// The `kv` guest's input for a get of each key.
fn kv_gets(keys: &[u32]) -> Vec<u8> {
    let mut input = KvInput::new();
    for &k in keys {
        input.get(kv_key(k));
    }
    input.bytes()
}

/// The `kv` guest's input for a get of `key`.
fn kv_gets_raw(key: &[u8]) -> Vec<u8> {
    KvInput::new().get(key).bytes()
}

/// The `kv` guest's input for an add of `delta` to `key`.
fn kv_add(key: &[u8], delta: i64) -> Vec<u8> {
    KvInput::new().add(key, delta).bytes()
}

/// Checks a `kv` get output against the values `kv_value` wrote.
fn check_kv(keys: &[u32], out: &[u8]) {
    let mut at = 0;
    for &k in keys {
        assert_eq!(out[at], 1, "{} missing", kv_key(k));
        let len = u32::from_le_bytes(out[at + 1..at + 5].try_into().unwrap()) as usize;
        assert_eq!(
            &out[at + 5..at + 5 + len],
            &kv_value(k)[..],
            "{}",
            kv_key(k)
        );
        at += 5 + len;
    }
}

fn fill_kv(db: &Db) {
    let t = db.open_tree("ns/kv").unwrap().unwrap();
    for chunk in (0..KV_KEYS).collect::<Vec<_>>().chunks(2000) {
        db.transaction(|tx| {
            for &i in chunk {
                tx.put(t, kv_key(i).as_bytes(), &kv_value(i))?;
            }
            Ok(())
        })
        .unwrap();
    }
}

/// A Db in `dir` with the smallest pool (1 MiB), and a runtime of two
/// executors over it with `instances` running and `admitted` in flight.
fn two_executors_over_a_1_mib_pool(
    dir: &tempfile::TempDir,
    instances: u32,
    admitted: usize,
) -> (Arc<Db>, Runtime) {
    let db = Arc::new(Db::open(dir.path().join("db"), db_options().pool_bytes(1 << 20)).unwrap());
    let cfg = runtime_config(dir.path())
        .workers(2)
        .max_instances(instances)
        .max_admitted(admitted);
    let rt = Runtime::open(db.clone(), cfg).unwrap();
    (db, rt)
}

#[test]
fn ten_thousand_invocations_on_two_executors_over_a_pool_at_5_percent() {
    let _beside_others = ALONE.read().unwrap_or_else(|p| p.into_inner());
    // ≥ 20 MiB of kv data (100k × 200 B values) under the smallest pool
    // (1 MiB): nearly every get misses, and the executors' reads overlap.
    let dir = tempfile::TempDir::new().unwrap();
    let (db, rt) = two_executors_over_a_1_mib_pool(&dir, 1024, 16_384);
    // Deadlines that leave room for a debug build's thousands of reads
    // queued behind each other.
    let config = FunctionConfig::default().deadline(Duration::from_secs(120));
    for name in ["kv", "bank", "counter"] {
        rt.deploy(name, &guest(name), config.clone()).unwrap();
    }
    let t = Instant::now();
    fill_kv(&db);
    for a in 0..ACCOUNTS {
        let r = rt.invoke("bank", format!("open a{a} {INITIAL}").as_bytes());
        assert_eq!(r.unwrap().output, b"ok");
    }
    let data_pages = db.stats().allocated_pages;
    assert!(
        data_pages * 4096 >= 20 * (1 << 20),
        "the data ({data_pages} pages) should be ≥ 20× the pool"
    );
    let misses_before = db.stats().pool.misses;
    // 10,000 in flight at once: a third gets of 8 random keys, a third
    // transfers, a third increments of one counter.
    let mut rng = rand::rngs::StdRng::seed_from_u64(17);
    let mut gets = 0;
    let mut inflight: Vec<(u8, Vec<u32>, Invoking)> = Vec::with_capacity(10_000);
    for i in 0..10_000 {
        let (kind, keys, call) = match i % 3 {
            0 => {
                let keys: Vec<u32> = (0..8).map(|_| rng.gen_range(0..KV_KEYS)).collect();
                let call = rt.invoke_async("kv", kv_gets(&keys));
                (0, keys, call)
            }
            1 => {
                let from = rng.gen_range(0..ACCOUNTS);
                let to = (from + rng.gen_range(1..ACCOUNTS)) % ACCOUNTS;
                let input = format!("transfer a{from} a{to} {}", rng.gen_range(1..300));
                (1, vec![], rt.invoke_async("bank", input.into_bytes()))
            }
            _ => (2, vec![], rt.invoke_async("counter", b"hits".to_vec())),
        };
        inflight.push((kind, keys, call));
    }
    let mut increments = 0;
    for (kind, keys, call) in inflight {
        match (kind, call.wait()) {
            (0, Ok(inv)) => {
                check_kv(&keys, &inv.output);
                gets += 1;
            }
            (1, Ok(_)) => {}
            (1, Err(InvokeError::Function { message, .. })) if message.starts_with("overdraft") => {
            }
            (2, Ok(_)) => increments += 1,
            (k, Err(e)) => panic!("invocation of kind {k} failed: {e}"),
            (k, Ok(_)) => unreachable!("kind {k}"),
        }
    }
    assert_eq!(gets, 3334);
    assert_eq!(increments, 3333);
    let hits = rt.invoke("counter", b"hits").unwrap().output;
    assert_eq!(hits, b"3334", "every increment counted once, and this one");
    let total = rt.invoke("bank", b"total").unwrap().output;
    assert_eq!(total, (ACCOUNTS as i64 * INITIAL).to_string().as_bytes());
    let misses = db.stats().pool.misses - misses_before;
    eprintln!(
        "10,000 invocations in {:?}: {misses} misses, {:?}",
        t.elapsed(),
        rt.stats()
    );
    assert!(
        misses > 3000,
        "the gets should have missed the pool: {misses} misses"
    );
    assert_eq!(rt.in_flight(), 0);
    assert_eq!(rt.stats().instances, 0, "every instance slot back");
    db.verify().unwrap();
}

/// The test that needs its stream of short invocations to keep beating a
/// long one takes this alone; the others share it. Beside them (CI runs a
/// file's tests side by side on two cores), the stream's threads were
/// starved long enough for the long one to land after 31 re-runs, and the
/// test failed its own precondition.
static ALONE: std::sync::RwLock<()> = std::sync::RwLock::new(());

/// Regression: an invocation that kept losing a hot key answered
/// `Conflict` after 64 attempts in a row, however young it was (seen once
/// in ~460k increments of one counter over HTTP, with more executors than
/// cores: an executor preempted mid-attempt finds the key changed each
/// time it runs again). Here one long invocation (an increment, reads of
/// the 64 keys the short ones write, then enough reads of absent keys to
/// last ~15 ms: longer than an epoch tick, so it yields mid-attempt) loses
/// to a stream of short increments until it has lost 70 times, then the
/// stream stops. It must land then: an invocation gives up only once its
/// deadline has passed too.
#[test]
fn a_long_increment_outlasting_64_losses_to_short_ones_lands_when_they_stop() {
    let _alone = ALONE.write().unwrap_or_else(|p| p.into_inner());
    const SHORT_KEYS: u32 = 64;
    const LOSSES: u64 = 70;
    let dir = tempfile::TempDir::new().unwrap();
    let db = Arc::new(Db::open(dir.path().join("db"), db_options()).unwrap());
    let rt = Runtime::open(db.clone(), runtime_config(dir.path()).workers(2)).unwrap();
    let config = FunctionConfig::default().deadline(Duration::from_secs(300));
    rt.deploy("kv", &guest("kv"), config).unwrap();
    // Short increments: one in flight per key, so that they never conflict
    // with each other and every conflict of the Db is the long one's.
    let short_key = |i: u32| format!("short{i}").into_bytes();
    let mut long = kv_add(b"hot", 1);
    for i in 0..SHORT_KEYS {
        long.extend_from_slice(&kv_gets_raw(&short_key(i)));
    }
    // Reads of absent keys for ~15 ms, whatever the build's speed.
    let per_1000 = rt
        .invoke("kv", &kv_gets(&(0..1000).collect::<Vec<u32>>()))
        .unwrap()
        .duration;
    let reads = (15_000 * 1000 / per_1000.as_micros().max(1)).clamp(1000, 100_000) as u32;
    long.extend_from_slice(&kv_gets(&(1000..1000 + reads).collect::<Vec<u32>>()));
    let conflicts_before = db.stats().conflicts;
    let call = rt.invoke_async("kv", long);
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let call = {
        let done = done.clone();
        std::thread::spawn(move || {
            let r = call.wait();
            done.store(true, std::sync::atomic::Ordering::Release);
            r
        })
    };
    let start = Instant::now();
    let mut shorts: std::collections::VecDeque<(u32, Invoking)> = (0..SHORT_KEYS)
        .map(|i| (i, rt.invoke_async("kv", kv_add(&short_key(i), 1))))
        .collect();
    let mut landed = 0i64;
    while db.stats().conflicts - conflicts_before < LOSSES
        && !done.load(std::sync::atomic::Ordering::Acquire)
    {
        let (i, s) = shorts.pop_front().unwrap();
        s.wait().unwrap();
        landed += 1;
        shorts.push_back((i, rt.invoke_async("kv", kv_add(&short_key(i), 1))));
    }
    let streamed = start.elapsed();
    for (_, s) in shorts {
        s.wait().unwrap();
        landed += 1;
    }
    let inv = match call.join().unwrap() {
        Ok(inv) => inv,
        Err(e) => panic!("the long increment failed after {streamed:?} of short ones: {e}"),
    };
    eprintln!(
        "{landed} short increments over {streamed:?}; the long one ({reads} reads) took {:?} \
         and {} re-runs",
        inv.duration, inv.retries
    );
    assert!(
        inv.retries >= 64,
        "the short increments should have beaten the long one 64 times ({} re-runs)",
        inv.retries
    );
    let out = rt.invoke("kv", &kv_add(b"hot", 0)).unwrap().output;
    assert_eq!(i64::from_le_bytes(out[..8].try_into().unwrap()), 1);
    let mut total = 0;
    for i in 0..SHORT_KEYS {
        let out = rt.invoke("kv", &kv_add(&short_key(i), 0)).unwrap().output;
        total += i64::from_le_bytes(out[..8].try_into().unwrap());
    }
    assert_eq!(total, landed, "every short increment counted once");
}

#[test]
fn a_guest_that_loops_forever_times_out_while_a_thousand_others_complete() {
    let _beside_others = ALONE.read().unwrap_or_else(|p| p.into_inner());
    let e = env_with(|c| c.workers(1));
    e.deploy(
        "hostile",
        "hostile",
        FunctionConfig::default().deadline(Duration::from_secs(3)),
    );
    e.deploy("counter", "counter", FunctionConfig::default());
    let t = Instant::now();
    let looping = e.rt.invoke_async("hostile", b"loop".to_vec());
    // The looping guest is running on the one executor; these share it.
    let others: Vec<Invoking> = (0..1000)
        .map(|_| e.rt.invoke_async("counter", b"n".to_vec()))
        .collect();
    for o in others {
        o.wait().unwrap();
    }
    let others_done = t.elapsed();
    assert!(
        others_done < Duration::from_secs(3),
        "the others waited for the loop: {others_done:?}"
    );
    let err = looping.wait().unwrap_err();
    assert!(matches!(err, InvokeError::Timeout(_)), "{err:?}");
    assert!(t.elapsed() >= Duration::from_secs(3));
    assert_eq!(e.call("counter", "n"), "1001");
    assert_eq!(
        e.load("hostile", b"hostile-was-here"),
        None,
        "a timeout commits nothing"
    );
}

#[test]
fn a_cancelled_invocation_commits_nothing_and_frees_its_slot() {
    let _beside_others = ALONE.read().unwrap_or_else(|p| p.into_inner());
    let e = env_with(|c| c.workers(1));
    e.deploy(
        "hostile",
        "hostile",
        FunctionConfig::default().deadline(Duration::from_secs(30)),
    );
    let looping = e.rt.invoke_async("hostile", b"loop".to_vec());
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(e.rt.in_flight(), 1);
    let t = Instant::now();
    drop(looping);
    while e.rt.in_flight() > 0 {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "the cancelled guest still runs"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    // Stopped at its next epoch yield, long before its deadline.
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    assert_eq!(e.rt.stats().instances, 0);
    assert_eq!(e.load("hostile", b"hostile-was-here"), None);
}

#[test]
fn an_invocation_that_committed_stays_committed_when_its_caller_goes() {
    let _beside_others = ALONE.read().unwrap_or_else(|p| p.into_inner());
    let e = env_with(|c| c.workers(1));
    e.deploy("counter", "counter", FunctionConfig::default());
    for i in 0..100 {
        let call = e.rt.invoke_async("counter", b"n".to_vec());
        // Some go at once, some once they may have committed.
        std::thread::sleep(Duration::from_micros(20 * (i % 10)));
        drop(call);
    }
    let t = Instant::now();
    while e.rt.in_flight() > 0 {
        assert!(t.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(1));
    }
    // Some were cancelled before they committed, the others committed:
    // the counter holds exactly those that did.
    let s = e.rt.stats();
    assert_eq!(s.committed + s.cancelled, 100, "{s:?}");
    let n: u64 = e.call("counter", "n").parse().unwrap();
    assert_eq!(n, s.committed + 1, "{s:?}");
}

#[test]
fn admission_past_its_bound_is_overloaded_at_once() {
    let _beside_others = ALONE.read().unwrap_or_else(|p| p.into_inner());
    let e = env_with(|c| c.workers(1).max_instances(4).max_admitted(8));
    e.deploy(
        "hostile",
        "hostile",
        FunctionConfig::default().deadline(Duration::from_millis(500)),
    );
    let held: Vec<Invoking> = (0..8)
        .map(|_| e.rt.invoke_async("hostile", b"loop".to_vec()))
        .collect();
    let err =
        e.rt.invoke_async("hostile", b"loop".to_vec())
            .wait()
            .unwrap_err();
    assert!(matches!(err, InvokeError::Overloaded(_)), "{err:?}");
    for h in held {
        assert!(matches!(h.wait(), Err(InvokeError::Timeout(_))));
    }
}

/// The `kv` guest's input: a scan of `limit` entries from `kv_key(from)`,
/// then a put of `key -> value`.
fn kv_scan_and_put(from: u32, limit: u32, key: &str, value: &[u8]) -> Vec<u8> {
    KvInput::new()
        .scan(kv_key(from), limit)
        .put(key, value)
        .bytes()
}

/// Checks a `kv` scan output: `kv_key(from..)` with their values.
fn check_kv_scan(from: u32, limit: u32, out: &[u8]) {
    let count = u32::from_le_bytes(out[..4].try_into().unwrap());
    assert_eq!(count, limit.min(KV_KEYS - from), "entries from {from}");
    let mut at = 4;
    for i in from..from + count {
        let klen = usize::from(u16::from_le_bytes(out[at..at + 2].try_into().unwrap()));
        assert_eq!(&out[at + 2..at + 2 + klen], kv_key(i).as_bytes());
        at += 2 + klen;
        let vlen = u32::from_le_bytes(out[at..at + 4].try_into().unwrap()) as usize;
        assert_eq!(
            &out[at + 4..at + 4 + vlen],
            &kv_value(i)[..],
            "{}",
            kv_key(i)
        );
        at += 4 + vlen;
    }
}

#[test]
fn scans_and_writes_far_beyond_the_pool_never_block_an_executor_on_a_read() {
    let _beside_others = ALONE.read().unwrap_or_else(|p| p.into_inner());
    // 20 MiB of kv data under a 1 MiB pool (256 pages), 16 invocations
    // running at once, each touching about ten pages: nearly every scan
    // and every commit needs leaves that are not in memory. Scans stop at them and
    // suspend; commits have their pages loaded first (`commit_misses`).
    // So the executors never sleep on a read (a blocking miss), except
    // when another thread's eviction takes a page between a commit's check
    // and its write (a rare race, counted).
    let dir = tempfile::TempDir::new().unwrap();
    let (db, rt) = two_executors_over_a_1_mib_pool(&dir, 16, 4096);
    let config = FunctionConfig::default().deadline(Duration::from_secs(120));
    rt.deploy("kv", &guest("kv"), config).unwrap();
    fill_kv(&db);
    db.checkpoint().unwrap();
    let before = db.stats().pool;
    let mut rng = rand::rngs::StdRng::seed_from_u64(41);
    let calls = 2000;
    let inflight: Vec<(u32, u32, Invoking)> = (0..calls)
        .map(|i| {
            let (from, limit) = (rng.gen_range(0..KV_KEYS), rng.gen_range(1..40));
            let input = kv_scan_and_put(from, limit, &format!("a-put{i:06}"), &kv_value(i));
            (from, limit, rt.invoke_async("kv", input))
        })
        .collect();
    for (from, limit, call) in inflight {
        check_kv_scan(from, limit, &call.wait().unwrap().output);
    }
    let after = db.stats().pool;
    let (misses, blocking) = (
        after.misses - before.misses,
        after.blocking_misses - before.blocking_misses,
    );
    eprintln!("{calls} scans and puts: {misses} misses, {blocking} of them blocking");
    assert!(
        misses > 1000,
        "the scans should have missed the pool: {misses}"
    );
    assert!(
        blocking * 100 <= misses,
        "the executors slept on {blocking} of {misses} misses"
    );
    let t = db.open_tree("ns/kv").unwrap().unwrap();
    db.transaction(|tx| {
        for i in 0..calls {
            let v = tx.get(t, format!("a-put{i:06}").as_bytes(), <[u8]>::to_vec)?;
            assert_eq!(v, Some(kv_value(i)), "a-put{i:06}");
        }
        Ok(())
    })
    .unwrap();
    assert_eq!(rt.in_flight(), 0);
    db.verify().unwrap();
}
