//! Components written in Python (guests/components/python-counter, built
//! by componentize-py) and JavaScript (guests/components/js-counter, built
//! by componentize-js) against `wasi:keyvalue` only, deployed and run as
//! transactions next to ABI v1 modules on one namespace
//! (docs/components.md, "Python and JavaScript").
//!
//! Each component is tens of MB of wasm (CPython, SpiderMonkey), compiled
//! once per machine: the tests share one on-disk cache
//! (`CARGO_TARGET_TMPDIR/component-cache`) and deploy under one lock, so
//! the first deploy compiles and every other one loads the cached code.

mod common;
use common::*;
use rime_faas::{FunctionConfig, Grant, InvokeError, Setting};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

const PY: &str = "python_counter";
const JS: &str = "js_counter";

fn shared_cache() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("component-cache")
}

/// A runtime whose compiled code comes from (and goes to) the shared cache.
fn cached_env() -> Env {
    env_with(|c| c.cache_dir(shared_cache()))
}

fn shared() -> FunctionConfig {
    FunctionConfig::default().grant(Grant::write("shared"))
}

/// Deploys the built component `guest` as `name`. One deploy at a time
/// in this process: the first of each guest compiles it, the rest find
/// it in the cache.
fn deploy(e: &Env, name: &str, guest: &str, cfg: FunctionConfig) {
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let started = std::time::Instant::now();
    e.rt.deploy(name, &component(guest), cfg)
        .unwrap_or_else(|err| panic!("deploying {guest}: {err}"));
    let s = e.rt.stats();
    eprintln!(
        "deployed {guest} in {:?} (compiled: {}, from the cache: {})",
        started.elapsed(),
        s.compiles,
        s.cache_hits
    );
}

fn hits(e: &Env) -> Option<i64> {
    e.load("shared", b"hits")
        .map(|v| i64::from_le_bytes(v.try_into().expect("an 8-byte counter")))
}

/// `threads` threads increment `shared/hits` `each` times, thread `t`
/// through `functions[t % len]`; every increment answers the counter's
/// new value. The values are exactly the next threads×each, each once:
/// no increment lost or seen twice, whichever language made it.
fn count_concurrently(e: &Env, functions: &[&str], threads: usize, each: usize) {
    let start = hits(e).unwrap_or(0);
    let outputs = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for t in 0..threads {
            let (rt, outputs) = (&e.rt, &outputs);
            let f = functions[t % functions.len()];
            let input: &[u8] = if f == "counter" {
                b"shared:hits"
            } else {
                b"incr shared hits"
            };
            s.spawn(move || {
                for _ in 0..each {
                    let out = rt
                        .invoke(f, input)
                        .unwrap_or_else(|err| panic!("{f}: {err}"));
                    let n: i64 = String::from_utf8(out.output).unwrap().parse().unwrap();
                    outputs.lock().unwrap().push(n);
                }
            });
        }
    });
    let total = (threads * each) as i64;
    let mut seen = outputs.into_inner().unwrap();
    seen.sort_unstable();
    assert_eq!(seen, (start + 1..=start + total).collect::<Vec<_>>());
    assert_eq!(hits(e), Some(start + total));
}

/// `guest` deployed as `f` and the ABI v1 `counter` share `shared/hits`:
/// alternately, then from two threads each.
fn counts_with_abi_v1(f: &str, guest: &str) {
    let e = cached_env();
    deploy(&e, f, guest, shared());
    e.deploy("counter", "counter", shared());
    assert_eq!(e.call(f, "incr shared hits"), "1");
    assert_eq!(e.call("counter", "shared:hits"), "2");
    assert_eq!(e.call(f, "get shared hits").as_bytes(), 2i64.to_le_bytes());
    count_concurrently(&e, &[f, "counter"], 4, 25);
    let s = e.rt.stats();
    eprintln!("{guest} + ABI v1: 100 increments, {} retries", s.retries);
    assert!(s.retries > 0, "four threads on one key conflict: {s:?}");
}

#[test]
fn python_and_abi_v1_count_one_counter_exactly() {
    counts_with_abi_v1("py", PY);
}

#[test]
fn javascript_and_abi_v1_count_one_counter_exactly() {
    counts_with_abi_v1("js", JS);
}

#[test]
fn an_error_or_an_exception_commits_nothing() {
    let e = cached_env();
    deploy(&e, "py", PY, shared());
    deploy(&e, "js", JS, shared());
    assert_eq!(e.call("py", "incr shared hits"), "1");
    for f in ["py", "js"] {
        match e.rt.invoke(f, b"fail shared hits") {
            Err(InvokeError::Function { message, .. }) => {
                assert_eq!(message, "failed on purpose after incrementing to 2")
            }
            other => panic!("{f}: expected the handler's error, got {other:?}"),
        }
    }
    // An uncaught Python exception: componentize-py prints it to stderr
    // (the function's log) and traps.
    let log = Capture::default();
    let r = log.during(|| e.rt.invoke("py", b"raise shared hits"));
    assert!(matches!(r, Err(InvokeError::Trap(_))), "{r:?}");
    let events = log.events();
    assert!(
        events.iter().any(|ev| ev.fields.contains("function=py")
            && ev
                .message
                .contains("raised on purpose after incrementing to 2")),
        "{events:#?}"
    );
    // A transfer moves between two balances in one transaction; one that
    // would overdraw fails whole: neither balance moved.
    assert_eq!(e.call("py", "transfer shared hits other 1"), "ok");
    assert_eq!(e.call("py", "incr shared hits"), "1");
    let r = e.rt.invoke("py", b"transfer shared hits other 5");
    assert!(
        matches!(&r, Err(InvokeError::Function { message, .. }) if message == "hits has 1, less than 5"),
        "{r:?}"
    );
    assert_eq!(
        hits(&e),
        Some(1),
        "nothing but the increments that returned"
    );
    assert_eq!(
        e.load("shared", b"other"),
        Some(1i64.to_le_bytes().to_vec())
    );
}

/// Whole seconds since the epoch.
fn now_s() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[test]
fn guests_see_their_settings_the_invocations_clock_and_log_to_the_function() {
    let e = cached_env();
    let cfg = shared().setting(Setting::plain("GREETING", "hello from the settings"));
    deploy(&e, "py", PY, cfg.clone());
    deploy(&e, "js", JS, cfg);
    assert_eq!(e.call("py", "env GREETING"), "hello from the settings");
    assert_eq!(e.call("py", "env HOME"), "none", "no inherited environment");
    let log = Capture::default();
    for (f, seconds_per_unit) in [("py", 1.0), ("js", 1e-3)] {
        let before = now_s().floor();
        let out = log.during(|| e.call(f, "now"));
        let after = now_s().ceil();
        let (clock, random) = out.split_once(' ').expect("`CLOCK RANDOM`");
        let t = clock.parse::<f64>().unwrap() * seconds_per_unit;
        assert!(
            (before..=after).contains(&t),
            "{f}: {t} not in [{before}, {after}]"
        );
        // Each invocation its own seed.
        let again = e.call(f, "now");
        assert_ne!(again.split_once(' ').unwrap().1, random, "{f}");
    }
    let events = log.events();
    for f in ["py", "js"] {
        assert!(
            events.iter().any(|ev| ev.level == tracing::Level::INFO
                && ev.fields.contains(&format!("function={f} "))
                && ev.message == "now called"),
            "{f}: {events:#?}"
        );
    }
}
