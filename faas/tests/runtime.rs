//! Deploying and invoking every example; hostile guests; the registry
//! across restarts; the module cache.

mod common;
use common::kv_input::{KvInput, push_key, push_value};
use common::*;
use rime_faas::{DeployError, FunctionConfig, Grant, InvokeError, Runtime};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

const MARKER: &[u8] = b"hostile-was-here";

#[test]
fn counter_counts_and_respects_grants() {
    let e = env();
    e.deploy(
        "counter",
        "counter",
        FunctionConfig::default().grant(Grant::write("stats")),
    );
    e.deploy(
        "reader",
        "counter",
        FunctionConfig::default().grant(Grant::read("stats")),
    );
    assert_eq!(e.call("counter", ""), "1");
    assert_eq!(e.call("counter", ""), "2");
    assert_eq!(e.call("counter", "other"), "1");
    assert_eq!(e.call("counter", "stats:hits"), "1");
    assert_eq!(e.load("stats", b"hits"), Some(1i64.to_le_bytes().to_vec()));
    assert_eq!(
        e.load("counter", b"counter"),
        Some(2i64.to_le_bytes().to_vec())
    );
    // A read-only grant refuses the add; an ungranted name is denied.
    let err = e.rt.invoke("reader", b"stats:hits").unwrap_err();
    assert!(matches!(err, InvokeError::Function { .. }), "{err}");
    let err = e.rt.invoke("counter", b"secret:hits").unwrap_err();
    assert!(err.to_string().contains("denied"), "{err}");
    // Not an i64.
    let db = e.rt.db();
    let t = db.open_tree("ns/counter").unwrap().unwrap();
    db.put(t, b"bad", b"not eight bytes").unwrap();
    let err = e.rt.invoke("counter", b"bad").unwrap_err();
    assert!(err.to_string().contains("i64"), "{err}");
}

#[test]
fn bank_transfers_and_refusals() {
    let e = env();
    e.deploy("bank", "bank", FunctionConfig::default());
    assert_eq!(e.call("bank", "open alice 100"), "ok");
    assert_eq!(e.call("bank", "open bob 5"), "ok");
    assert!(e.rt.invoke("bank", b"open bob 7").is_err());
    assert_eq!(e.call("bank", "transfer alice bob 30"), "70 35");
    let err = e.rt.invoke("bank", b"transfer bob alice 36").unwrap_err();
    assert_eq!(
        err.to_string(),
        "function error (1): overdraft: bob has 35, cannot send 36"
    );
    assert_eq!(e.call("bank", "balance bob"), "35");
    assert_eq!(e.call("bank", "total"), "105");
}

#[test]
fn kv_round_trip_with_read_your_writes() {
    let e = env();
    e.deploy("kv", "kv", FunctionConfig::default());
    let mut input = KvInput::new();
    for (k, v) in [(&b"a"[..], &b"1"[..]), (b"b", b"22"), (b"c", b"333")] {
        input.put(k, v);
    }
    input
        .delete(b"b")
        .get(b"a")
        .get(b"b")
        .add(b"n", -4)
        .scan(b"a", 2);
    let out = e.rt.invoke("kv", &input.bytes()).unwrap().output;
    let mut want = vec![1, 1, 0, 0, 0, b'1', 0];
    want.extend_from_slice(&(-4i64).to_le_bytes());
    want.extend_from_slice(&2u32.to_le_bytes());
    push_key(&mut want, b"a");
    push_value(&mut want, b"1");
    push_key(&mut want, b"c");
    push_value(&mut want, b"333");
    assert_eq!(out, want);
    // Committed: a second invocation sees the state.
    assert_eq!(
        e.rt.invoke("kv", &KvInput::new().get(b"c").bytes())
            .unwrap()
            .output,
        [&[1, 3, 0, 0, 0][..], b"333"].concat()
    );
    assert_eq!(e.load("kv", b"b"), None);
}

#[test]
fn kv_scan_pages_through_many_entries() {
    let e = env();
    e.deploy("kv", "kv", FunctionConfig::default());
    let db = e.rt.db();
    let t = db.open_tree("ns/kv").unwrap().unwrap();
    db.transaction(|tx| {
        for i in 0..3000u32 {
            tx.put(t, format!("k{i:05}").as_bytes(), &[7u8; 100])?;
        }
        Ok(())
    })
    .unwrap();
    let input = KvInput::new().scan(b"k00100", 100_000).bytes();
    let out = e.rt.invoke("kv", &input).unwrap().output;
    assert_eq!(u32::from_le_bytes(out[..4].try_into().unwrap()), 2900);
}

fn range_input(lo: &[u8], hi: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    for part in [lo, hi] {
        v.extend_from_slice(&(part.len() as u16).to_le_bytes());
        v.extend_from_slice(part);
    }
    v
}

#[test]
fn pushdown_aggregates_a_range() {
    let e = env();
    e.deploy("pushdown", "pushdown", FunctionConfig::default());
    let db = e.rt.db();
    let t = db.open_tree("ns/pushdown").unwrap().unwrap();
    db.transaction(|tx| {
        for i in 0..2000i64 {
            tx.put(t, format!("m/{i:06}").as_bytes(), &i.to_le_bytes())?;
        }
        tx.put(t, b"m/zzz", b"not a number")?;
        Ok(())
    })
    .unwrap();
    let out = e.call("pushdown", range_input(b"m/", b""));
    assert_eq!(
        out,
        r#"{"count":2000,"sum":1999000,"min":0,"max":1999,"skipped":1}"#
    );
    let out = e.call("pushdown", range_input(b"m/000010", b"m/000020"));
    assert_eq!(
        out,
        r#"{"count":10,"sum":145,"min":10,"max":19,"skipped":0}"#
    );
}

fn hostile_env(deadline: Duration) -> Env {
    let e = env();
    e.deploy(
        "hostile",
        "hostile",
        FunctionConfig::default()
            .deadline(deadline)
            .memory_bytes(16 << 20),
    );
    e
}

#[test]
fn hostile_guests_are_contained_and_commit_nothing() {
    let e = hostile_env(Duration::from_millis(200));
    type Check = fn(&InvokeError) -> bool;
    let cases: &[(&str, Check)] = &[
        ("loop", |e| matches!(e, InvokeError::Timeout(_))),
        (
            "wild-pointer",
            |e| matches!(e, InvokeError::Trap(m) if m.contains("outside")),
        ),
        (
            "oob-length",
            |e| matches!(e, InvokeError::Trap(m) if m.contains("outside")),
        ),
        (
            "memory-bomb",
            |e| matches!(e, InvokeError::Function { message, .. } if message.starts_with("memory.grow refused after")),
        ),
        // The panic's message and place, not just `unreachable`.
        (
            "panic",
            |e| matches!(e, InvokeError::Trap(m) if m.starts_with("panicked: hostile: deliberate panic (at examples/hostile/src/lib.rs:")),
        ),
        ("stack-overflow", |e| matches!(e, InvokeError::Trap(_))),
        // The SDK checks the length itself and answers with an error result.
        (
            "huge-output",
            |e| matches!(e, InvokeError::Function { message, .. } if message.contains("output longer than 1048576")),
        ),
        ("nonsense", |e| {
            matches!(e, InvokeError::Function { code: 1, .. })
        }),
    ];
    for (case, ok) in cases {
        let t = Instant::now();
        let err = e.rt.invoke("hostile", case.as_bytes()).unwrap_err();
        assert!(ok(&err), "{case}: unexpected {err:?}");
        assert_eq!(
            e.load("hostile", MARKER),
            None,
            "{case} committed its write"
        );
        eprintln!("{case}: {err} ({:?})", t.elapsed());
    }
    // The host is unharmed: the same runtime still works.
    e.deploy("counter", "counter", FunctionConfig::default());
    assert_eq!(e.call("counter", ""), "1");
    let s = e.rt.stats();
    assert!(s.traps >= 4 && s.timeouts == 1, "{s:?}");
}

#[test]
fn memory_limit_stops_an_allocating_guest() {
    // The SDK's allocator panics when memory.grow is refused: with 2 MiB,
    // the 2 MiB output buffer of huge-output cannot be allocated.
    let e = env();
    e.deploy(
        "hostile",
        "hostile",
        FunctionConfig::default().memory_bytes(2 << 20),
    );
    let err = e.rt.invoke("hostile", b"huge-output").unwrap_err();
    assert!(
        matches!(err, InvokeError::MemoryLimit { limit } if limit == 2 << 20),
        "{err:?}"
    );
    assert_eq!(e.load("hostile", MARKER), None);
}

/// Polls `cond` until it holds. A test synchronises on an event it can
/// observe (a pool slot taken, a thread finished), not on a sleep that
/// guesses how long the event takes; the minute is only a guard against
/// hanging forever if it never comes.
fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let give_up = Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(Instant::now() < give_up, "still waiting for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn a_looping_guest_does_not_stop_others() {
    // Counter invocations run to completion while a guest spins in a loop:
    // they start once the loop holds its instance, and the loop must still
    // be running when the last of them has finished. Only the loop's
    // deadline ends it, so how long the calls take decides whether the
    // round shows anything: if the loop timed out first (a slow or loaded
    // machine), the round is inconclusive, not a failure, and is repeated
    // with twice the deadline.
    const CALLS: usize = 20;
    let e = env();
    e.deploy("counter", "counter", FunctionConfig::default());
    let mut deadline = Duration::from_millis(500);
    let mut calls = 0;
    loop {
        let cfg = FunctionConfig::default()
            .deadline(deadline)
            .memory_bytes(16 << 20);
        e.deploy("hostile", "hostile", cfg);
        let beside_the_loop = std::thread::scope(|s| {
            let looping = s.spawn(|| {
                let t = Instant::now();
                let err = e.rt.invoke("hostile", b"loop").unwrap_err();
                (err, t.elapsed())
            });
            wait_until("the looping guest's instance", || {
                e.rt.stats().instances == 1 || looping.is_finished()
            });
            for _ in 0..CALLS {
                e.call("counter", "");
                calls += 1;
            }
            let in_flight = !looping.is_finished();
            let (err, took) = looping.join().unwrap();
            assert!(matches!(err, InvokeError::Timeout(_)), "{err:?}");
            // A real property, whatever the machine: the deadline is never early.
            assert!(
                took >= deadline,
                "stopped after {took:?}, deadline {deadline:?}"
            );
            eprintln!(
                "deadline {deadline:?}: loop stopped after {took:?}, in flight after {CALLS} calls: {in_flight}"
            );
            in_flight
        });
        if beside_the_loop {
            break;
        }
        assert!(
            deadline < Duration::from_secs(60),
            "{CALLS} counter calls never finished within the looping guest's deadline"
        );
        deadline *= 2;
    }
    assert_eq!(e.call("counter", ""), (calls + 1).to_string());
    assert_eq!(e.rt.stats().instances, 0);
}

#[test]
fn malformed_and_non_abi_modules_are_deploy_errors() {
    let e = env();
    let cfg = FunctionConfig::default;
    assert!(matches!(
        e.rt.deploy("x", b"not wasm", cfg()),
        Err(DeployError::BadMagic(_))
    ));
    let mut truncated = guest("counter");
    truncated.truncate(truncated.len() / 2);
    assert!(matches!(
        e.rt.deploy("x", &truncated, cfg()),
        Err(DeployError::Malformed(_))
    ));
    let wrong_import = wat(
        "(module (import \"env\" \"f\" (func)) (memory (export \"memory\") 1) (func (export \"rime_invoke\") (result i32) i32.const 0))",
    );
    assert!(matches!(
        e.rt.deploy("x", &wrong_import, cfg()),
        Err(DeployError::Abi(_))
    ));
    let wrong_sig = wat(
        "(module (import \"rime\" \"get\" (func (param i32))) (memory (export \"memory\") 1) (func (export \"rime_invoke\") (result i32) i32.const 0))",
    );
    match e.rt.deploy("x", &wrong_sig, cfg()) {
        Err(DeployError::Abi(m)) => assert_eq!(
            m,
            "rime.get expects (i32, i32, i32, i32, i32) -> i32, the module declares (i32) -> ()"
        ),
        other => panic!("{other:?}"),
    }
    let no_memory = wat("(module (func (export \"rime_invoke\") (result i32) i32.const 0))");
    assert!(matches!(
        e.rt.deploy("x", &no_memory, cfg()),
        Err(DeployError::Abi(_))
    ));
    assert!(matches!(
        e.rt.deploy("Bad/Name", &guest("counter"), cfg()),
        Err(DeployError::BadName(_))
    ));
    assert!(e.rt.functions().is_empty(), "nothing was stored");
}

/// A module in the text format: `Module::new` (and so `deploy`) accepts
/// it as well as the binary format.
fn wat(text: &str) -> Vec<u8> {
    text.as_bytes().to_vec()
}

#[test]
fn the_host_refuses_output_over_the_limit() {
    let e = env();
    // Asks for 2 MiB of output (its memory is 4 MiB); on refusal (-6)
    // returns 1 without another output call.
    let m = wat(r#"(module
        (import "rime" "output" (func $out (param i32 i32) (result i32)))
        (memory (export "memory") 64)
        (func (export "rime_invoke") (result i32)
            (if (result i32) (i32.eq (call $out (i32.const 0) (i32.const 0x200000)) (i32.const -6))
                (then (i32.const 1)) (else (i32.const 0)))))"#);
    e.rt.deploy("big", &m, FunctionConfig::default()).unwrap();
    let err = e.rt.invoke("big", b"").unwrap_err();
    assert!(
        matches!(err, InvokeError::OutputTooLarge { max: 1048576 }),
        "{err:?}"
    );
    let err = e.rt.invoke("big", &vec![0u8; (1 << 20) + 1]).unwrap_err();
    assert!(matches!(err, InvokeError::InputTooLarge { .. }), "{err:?}");
}

#[test]
fn functions_survive_restart_without_recompiling() {
    let dir = tempfile::TempDir::new().unwrap();
    {
        let rt = Runtime::open(open_db(dir.path()), runtime_config(dir.path())).unwrap();
        rt.deploy(
            "counter",
            &guest("counter"),
            FunctionConfig::default().grant(Grant::write("stats")),
        )
        .unwrap();
        rt.deploy(
            "bank",
            &guest("bank"),
            FunctionConfig::default().deadline(Duration::from_millis(750)),
        )
        .unwrap();
        rt.deploy("gone", &guest("kv"), FunctionConfig::default())
            .unwrap();
        rt.undeploy("gone").unwrap();
        assert!(matches!(
            rt.undeploy("gone"),
            Err(rime_faas::UndeployError::NotFound(_))
        ));
        assert_eq!(rt.invoke("counter", b"").unwrap().output, b"1");
        // Redeploy replaces: the same name now runs bank.
        rt.deploy("counter", &guest("bank"), FunctionConfig::default())
            .unwrap();
        assert!(
            rt.invoke("counter", b"").is_err(),
            "bank refuses empty input"
        );
        rt.deploy(
            "counter",
            &guest("counter"),
            FunctionConfig::default().grant(Grant::write("stats")),
        )
        .unwrap();
        assert_eq!(
            rt.stats().compiles,
            3,
            "counter, bank, kv compiled once each"
        );
    }
    let rt = Runtime::open(open_db(dir.path()), runtime_config(dir.path())).unwrap();
    let fs = rt.functions();
    let names: Vec<_> = fs.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["bank", "counter"]);
    assert_eq!(fs[0].config.deadline, Duration::from_millis(750));
    assert_eq!(fs[1].config.grants, [Grant::write("stats")]);
    assert_eq!(fs[1].generation, 3);
    let s = rt.stats();
    assert_eq!(
        (s.compiles, s.cache_hits),
        (0, 2),
        "a restart loads compiled code from the cache"
    );
    assert_eq!(
        rt.invoke("counter", b"").unwrap().output,
        b"2",
        "state survived too"
    );
    assert_eq!(rt.invoke("counter", b"stats:x").unwrap().output, b"1");
}

/// Logs one message (`held`, level info) and returns: with a [`Gate`] as
/// the invoking thread's subscriber, its instance stays alive inside that
/// `log` call until the gate opens.
const HOLDER: &str = r#"(module
  (import "rime" "log" (func $log (param i32 i32 i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "held")
  (func (export "rime_invoke") (result i32)
    (call $log (i32.const 2) (i32.const 0) (i32.const 4))
    (i32.const 0)))"#;

/// A `tracing` subscriber that blocks every event until [`Gate::open`]:
/// a way to keep an invocation (and its instance) in flight for exactly
/// as long as a test needs, without a deadline or a sleep.
#[derive(Clone, Default)]
struct Gate(Arc<(Mutex<(usize, bool)>, Condvar)>);

impl Gate {
    fn during<R>(&self, f: impl FnOnce() -> R) -> R {
        tracing::subscriber::with_default(self.clone(), f)
    }
    /// Events being held now.
    fn held(&self) -> usize {
        self.0.0.lock().unwrap().0
    }
    fn open(&self) {
        self.0.0.lock().unwrap().1 = true;
        self.0.1.notify_all();
    }
}

impl tracing::Subscriber for Gate {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, _: &tracing::Event<'_>) {
        let (lock, cv) = &*self.0;
        let mut g = lock.lock().unwrap();
        g.0 += 1;
        while !g.1 {
            g = cv.wait(g).unwrap();
        }
        g.0 -= 1;
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

#[test]
fn instances_beyond_the_pool_are_refused_not_queued() {
    let dir = tempfile::TempDir::new().unwrap();
    let cfg = runtime_config(dir.path()).max_instances(2);
    let rt = Runtime::open(open_db(dir.path()), cfg).unwrap();
    // The deadline only has to outlast the test: the gate, not the clock,
    // decides when the held invocations finish.
    let cfg = FunctionConfig::default().deadline(Duration::from_secs(300));
    rt.deploy("holder", HOLDER.as_bytes(), cfg).unwrap();
    let gate = Gate::default();
    std::thread::scope(|s| {
        let held: Vec<_> = (0..2)
            .map(|_| s.spawn(|| gate.during(|| rt.invoke("holder", b""))))
            .collect();
        wait_until("both pool slots in use", || rt.stats().instances == 2);
        wait_until("both guests inside `log`", || gate.held() == 2);
        // A third instance is refused at once, not queued behind them.
        let err = rt.invoke("holder", b"").unwrap_err();
        assert!(matches!(err, InvokeError::Overloaded(_)), "{err:?}");
        assert_eq!(rt.stats().instances, 2);
        gate.open();
        for h in held {
            h.join().unwrap().unwrap();
        }
    });
    // Every slot is back: the pool serves again.
    assert_eq!(rt.stats().instances, 0);
    rt.invoke("holder", b"").unwrap();
}

#[test]
fn an_invocation_never_sees_memory_left_by_the_last_one() {
    // Reads its memory size and words in the first page, just below
    // 1 MiB, in its data segment (at 1 MiB, like a Rust guest's), and in
    // pages it grows; then overwrites them all. Slots are reused (and
    // reset in place, see `engine.rs`), so every run must still see the
    // pristine memory: size 17 pages, zeros, the data segment's value.
    let m = wat(r#"(module
        (import "rime" "output" (func $out (param i32 i32) (result i32)))
        (memory (export "memory") 17)
        (data (i32.const 0x100000) "\44\33\22\11")
        (func $probe (param $at i32) (param $slot i32)
            (i32.store (local.get $slot) (i32.load (local.get $at)))
            (i32.store (local.get $at) (i32.const 0xdeadbeef)))
        (func (export "rime_invoke") (result i32)
            (i32.store (i32.const 0x2000) (memory.size))
            (drop (memory.grow (i32.const 3)))
            (call $probe (i32.const 0x100) (i32.const 0x2004))
            (call $probe (i32.const 0xfff00) (i32.const 0x2008))
            (call $probe (i32.const 0x100000) (i32.const 0x200c))
            (call $probe (i32.const 0x110008) (i32.const 0x2010))
            (call $probe (i32.const 0x13fff0) (i32.const 0x2014))
            (drop (call $out (i32.const 0x2000) (i32.const 24)))
            (i32.store (i32.const 0x2000) (i32.const 0xdeadbeef))
            (i32.const 0)))"#);
    let e = env();
    e.rt.deploy("snoop", &m, FunctionConfig::default()).unwrap();
    let pristine: Vec<u8> = [17u32, 0, 0, 0x1122_3344, 0, 0]
        .iter()
        .flat_map(|w| w.to_le_bytes())
        .collect();
    for i in 0..50 {
        let out = e.rt.invoke("snoop", b"").unwrap().output;
        assert_eq!(out, pristine, "invocation {i}");
    }
    // And from several threads at once (slots handed between threads).
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..50 {
                    assert_eq!(e.rt.invoke("snoop", b"").unwrap().output, pristine);
                }
            });
        }
    });
    // Pages an earlier instance grew stay mapped in the slot, but are
    // beyond this instance's size: reading them traps.
    let peek = wat(r#"(module
        (memory (export "memory") 17)
        (data (i32.const 0x100000) "\44\33\22\11")
        (func (export "rime_invoke") (result i32)
            (i32.load (i32.const 0x110008))))"#);
    e.rt.deploy("snoop", &peek, FunctionConfig::default())
        .unwrap();
    for _ in 0..10 {
        let err = e.rt.invoke("snoop", b"").unwrap_err();
        assert!(matches!(err, InvokeError::Trap(_)), "{err:?}");
    }
}

/// Regression: a damaged registry entry used to be reported as an aborted
/// transaction and made `Runtime::open` fail, so no function ran and the
/// damaged one could not be undeployed. Now it alone is unloadable.
#[test]
fn a_damaged_registry_entry_leaves_the_others_running_and_can_be_undeployed() {
    let dir = tempfile::TempDir::new().unwrap();
    {
        let rt = Runtime::open(open_db(dir.path()), runtime_config(dir.path())).unwrap();
        rt.deploy("kv", &guest("kv"), FunctionConfig::default())
            .unwrap();
        rt.deploy("counter", &guest("counter"), FunctionConfig::default())
            .unwrap();
        rt.deploy("counter", &guest("counter"), FunctionConfig::default())
            .unwrap();
        let db = rt.db();
        let reg = db.open_tree("rime/functions").unwrap().unwrap();
        db.put(reg, b"m/counter", b"not a registry entry").unwrap();
    }
    let rt = Runtime::open(open_db(dir.path()), runtime_config(dir.path())).unwrap();
    rt.invoke("kv", &KvInput::new().get(b"k").bytes())
        .expect("kv still runs");
    let names: Vec<_> = rt.functions().into_iter().map(|f| f.name).collect();
    assert_eq!(names, ["kv"]);
    let unloadable = rt.unloadable();
    assert_eq!(unloadable.len(), 1);
    assert_eq!(unloadable[0].0, "counter");
    assert!(unloadable[0].1.contains("corrupt"), "{unloadable:?}");
    assert!(matches!(
        rt.invoke("counter", b""),
        Err(rime_faas::InvokeError::Unloadable { .. })
    ));
    // Undeploy removes every generation's chunks although the entry that
    // named the generation is unreadable.
    rt.undeploy("counter").unwrap();
    assert!(rt.unloadable().is_empty());
    assert!(matches!(
        rt.invoke("counter", b""),
        Err(rime_faas::InvokeError::NotFound(_))
    ));
    let db = rt.db();
    let reg = db.open_tree("rime/functions").unwrap().unwrap();
    let left = db
        .transaction(|tx| {
            let mut left = 0;
            tx.scan(
                reg,
                std::ops::Bound::Unbounded,
                std::ops::Bound::Unbounded,
                |k, _| {
                    left += usize::from(k.windows(7).any(|w| w == b"counter"));
                    std::ops::ControlFlow::Continue(())
                },
            )?;
            Ok(left)
        })
        .unwrap();
    assert_eq!(left, 0, "nothing of counter is left in the registry");
    // A redeploy works as for any new name.
    rt.deploy("counter", &guest("counter"), FunctionConfig::default())
        .unwrap();
    assert_eq!(rt.invoke("counter", b"").unwrap().output, b"1");
}

/// Issue 19: deploy-time errors say what is wrong in wasm's terms and
/// what to change, instead of failing at every call or printing
/// wasmtime's debug dump.
#[test]
fn deploy_checks_name_the_numbers_and_the_signatures() {
    let e = env();
    let cfg = FunctionConfig::default;
    // Not wasm at all: the magic, with the bytes found.
    let err = e.rt.deploy("x", b"\x7fELF\x02\x01\x01", cfg()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "not a wasm module (bad magic): it starts with 7f 45 4c 46, a wasm module starts with 00 61 73 6d (\"\\0asm\")"
    );
    // A memory limit below the module's declared minimum (17 pages).
    let big = wat(
        "(module (memory (export \"memory\") 17) (func (export \"rime_invoke\") (result i32) i32.const 0))",
    );
    let err =
        e.rt.deploy("x", &big, cfg().memory_bytes(1024))
            .unwrap_err();
    assert!(
        matches!(
            err,
            DeployError::MemoryBelowMinimum {
                limit_bytes: 1024,
                min_bytes: 1_114_112,
                min_pages: 17
            }
        ),
        "{err:?}"
    );
    let m = err.to_string();
    assert!(
        m.contains("memory limit 1024 B is below the module's declared minimum memory of 1114112 B (17 pages"),
        "{m}"
    );
    // Exactly the minimum is fine.
    e.rt.deploy("x", &big, cfg().memory_bytes(17 << 16))
        .unwrap();
    // An export of the wrong type prints the module's signature.
    let bad_export = wat(
        "(module (memory (export \"memory\") 1) (func (export \"rime_invoke\") (param i32) (result i32) i32.const 0))",
    );
    match e.rt.deploy("y", &bad_export, cfg()) {
        Err(DeployError::Abi(m)) => assert_eq!(
            m,
            "export `rime_invoke` must be a function () -> i32, the module declares (i32) -> i32"
        ),
        other => panic!("{other:?}"),
    }
    // An import that is not a function says what it is.
    let mem_import = wat(
        "(module (import \"rime\" \"input\" (global i32)) (memory (export \"memory\") 1) (func (export \"rime_invoke\") (result i32) i32.const 0))",
    );
    match e.rt.deploy("y", &mem_import, cfg()) {
        Err(DeployError::Abi(m)) => {
            assert_eq!(
                m,
                "rime.input expects (i32, i32) -> i32, the module declares a global"
            )
        }
        other => panic!("{other:?}"),
    }
    assert!(e.rt.functions().iter().all(|f| f.name != "y"));
}
