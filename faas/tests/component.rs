//! Component faaslets (docs/components.md): a guest written only against
//! `wasi:keyvalue` (guests/components/wasi-kv-counter) deployed and run
//! next to ABI v1 modules on the same namespaces, as transactions.

mod common;
use common::*;
use rime_faas::{
    DeployError, FunctionConfig, Grant, GuestLog, InvokeError, LogLevel, LogSink, Runtime,
};
use std::sync::{Arc, Mutex};

/// The component counter, granted namespace `shared`.
const KV: &str = "wasi_kv_counter";

fn shared() -> FunctionConfig {
    FunctionConfig::default().grant(Grant::write("shared"))
}

/// A runtime with the component as `kvc` and the ABI v1 counter as
/// `counter`, both granted `shared`.
fn env_with_both() -> Env {
    let e = env();
    e.rt.deploy("kvc", &component(KV), shared()).unwrap();
    e.deploy("counter", "counter", shared());
    e
}

fn hits(e: &Env) -> Option<i64> {
    e.load("shared", b"hits")
        .map(|v| i64::from_le_bytes(v.try_into().expect("an 8-byte counter")))
}

#[test]
fn a_component_and_a_module_share_a_namespace() {
    let e = env_with_both();
    assert_eq!(e.call("kvc", "incr shared hits"), "1");
    assert_eq!(e.call("counter", "shared:hits"), "2");
    assert_eq!(e.call("kvc", "incr shared hits"), "3");
    assert_eq!(hits(&e), Some(3));
    // Values the module wrote, read through wasi:keyvalue and back.
    let got = e.rt.invoke("kvc", b"get shared hits").unwrap().output;
    assert_eq!(got, 3i64.to_le_bytes());
    assert_eq!(e.call("kvc", "set shared greeting hello"), "ok");
    assert_eq!(
        e.load("shared", b"greeting").as_deref(),
        Some(&b"hello"[..])
    );
    // `default` is the function's own namespace.
    assert_eq!(e.call("kvc", "incr default n"), "1");
    assert_eq!(e.load("kvc", b"n"), Some(1i64.to_le_bytes().to_vec()));
    assert_eq!(e.call("kvc", "get kvc n").as_bytes(), 1i64.to_le_bytes());
}

#[test]
fn an_ungranted_or_read_only_bucket_is_refused() {
    let e = env();
    let cfg = FunctionConfig::default().grant(Grant::read("shared"));
    e.rt.deploy("kvc", &component(KV), cfg).unwrap();
    let err = |input: &str| {
        e.rt.invoke("kvc", input.as_bytes())
            .unwrap_err()
            .to_string()
    };
    assert!(err("incr secret x").contains("cannot open bucket \"secret\": access denied"));
    assert!(err("incr Not/A/Name x").contains("no such store"));
    assert!(err("incr shared x").contains("access denied"));
    assert_eq!(e.call("kvc", "get shared x"), "none");
}

#[test]
fn an_error_or_a_trap_commits_nothing() {
    // The guest's log through the runtime's sink, not a thread's tracing
    // subscriber: a `with_default` capture missed the line once in CI
    // (tracing's per-callsite interest is shared by the test threads).
    let lines: Arc<Mutex<Vec<GuestLog>>> = Arc::default();
    let sink = {
        let lines = lines.clone();
        LogSink::new(move |l| lines.lock().unwrap().push(l.clone()))
    };
    let e = env_with(|c| c.log_sink(sink));
    e.rt.deploy("kvc", &component(KV), shared()).unwrap();
    e.deploy("counter", "counter", shared());
    assert_eq!(e.call("kvc", "incr shared hits"), "1");
    match e.rt.invoke("kvc", b"fail shared hits") {
        Err(InvokeError::Function { message, .. }) => {
            assert_eq!(message, "failed on purpose after incrementing to 2")
        }
        other => panic!("expected the handler's error, got {other:?}"),
    }
    match e.rt.invoke("kvc", b"panic shared hits") {
        Err(InvokeError::Trap(msg)) => assert!(msg.contains("unreachable"), "{msg}"),
        other => panic!("expected a trap, got {other:?}"),
    }
    // The panic message went to stderr: the function's log, at `warn`.
    let lines = lines.lock().unwrap().clone();
    assert!(
        lines.iter().any(|l| l.level == LogLevel::Warn
            && l.function == "kvc"
            && l.message
                .contains("panicked on purpose after incrementing to 2")),
        "{lines:#?}"
    );
    assert_eq!(hits(&e), Some(1), "neither increment was committed");
    assert_eq!(e.call("counter", "shared:hits"), "2");
    let s = e.rt.stats();
    assert_eq!((s.committed, s.failed, s.traps), (2, 2, 1));
}

#[test]
fn half_component_half_module_increments_count_exactly() {
    const THREADS: usize = 4;
    const EACH: usize = 250;
    let e = env_with_both();
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let rt = &e.rt;
            s.spawn(move || {
                for _ in 0..EACH {
                    let r = if t % 2 == 0 {
                        rt.invoke("kvc", b"incr shared hits")
                    } else {
                        rt.invoke("counter", b"shared:hits")
                    };
                    r.unwrap();
                }
            });
        }
    });
    assert_eq!(hits(&e), Some((THREADS * EACH) as i64));
    let s = e.rt.stats();
    eprintln!("{} increments, {} retries", THREADS * EACH, s.retries);
    assert!(s.retries > 0, "four threads on one key conflict: {s:?}");
}

/// The same on the executors (`invoke_async`): the attempt runs on an
/// executor's fiber, and its error or trap still commits nothing.
#[test]
fn an_error_or_a_trap_on_the_executors_commits_nothing() {
    let e = env_with_both();
    let call = |input: &'static [u8]| e.rt.invoke_async("kvc", input).wait();
    assert_eq!(call(b"incr shared hits").unwrap().output, b"1");
    match call(b"fail shared hits") {
        Err(InvokeError::Function { message, .. }) => {
            assert_eq!(message, "failed on purpose after incrementing to 2")
        }
        other => panic!("expected the handler's error, got {other:?}"),
    }
    match call(b"panic shared hits") {
        Err(InvokeError::Trap(msg)) => assert!(msg.contains("unreachable"), "{msg}"),
        other => panic!("expected a trap, got {other:?}"),
    }
    assert_eq!(hits(&e), Some(1), "neither increment was committed");
}

#[test]
fn invoke_async_and_invoke_many_run_a_component_on_the_executors() {
    let e = env_with_both();
    let r = e.rt.invoke_async("kvc", &b"incr shared hits"[..]).wait();
    assert_eq!(r.unwrap().output, b"1");
    let many =
        e.rt.invoke_many((0..10).map(|_| ("kvc", b"incr shared hits".to_vec())));
    assert!(many.iter().all(Result::is_ok), "{many:?}");
    assert_eq!(hits(&e), Some(11));
}

#[test]
fn a_component_survives_a_restart() {
    let e = env_with_both();
    assert_eq!(e.call("kvc", "incr shared hits"), "1");
    let Env { rt, dir } = e;
    drop(rt);
    let rt = Runtime::open(open_db(dir.path()), runtime_config(dir.path())).unwrap();
    assert!(rt.unloadable().is_empty(), "{:?}", rt.unloadable());
    // Both functions' compiled code came from the cache, the component's too.
    let s = rt.stats();
    assert_eq!((s.compiles, s.cache_hits), (0, 2), "{s:?}");
    assert_eq!(rt.invoke("kvc", b"incr shared hits").unwrap().output, b"2");
}

#[test]
fn a_component_importing_what_rime_lacks_is_refused_by_name() {
    let e = env();
    let wat = r#"(component
        (import "wasi:http/outgoing-handler@0.2.0" (instance))
    )"#;
    match e
        .rt
        .deploy("http", wat.as_bytes(), FunctionConfig::default())
    {
        Err(e @ DeployError::Component(_)) => {
            let msg = e.to_string();
            assert!(
                msg.contains(
                    "imports `wasi:http/outgoing-handler@0.2.0`, which Rime does not provide"
                ),
                "{msg}"
            );
        }
        other => panic!("expected a component refused, got {other:?}"),
    }
    assert!(e.rt.functions().is_empty(), "nothing deployed");
}

#[test]
fn a_component_without_the_handler_is_refused() {
    let e = env();
    let err =
        e.rt.deploy("empty", b"(component)", FunctionConfig::default())
            .unwrap_err()
            .to_string();
    assert!(
        err.contains("exports neither `rime:faaslet/handler@0.1.0`")
            && err.contains("nor `wasi:http/incoming-handler@0.2.x`"),
        "{err}"
    );
}

#[test]
fn batches_cas_and_list_keys_act_on_the_namespace() {
    let e = env_with_both();
    let call = |input: &str| e.call("kvc", input);
    assert_eq!(call("set-many shared a=1,b=2,c=3"), "ok");
    assert_eq!(call("get-many shared a,zz,c"), "a=1,zz=none,c=3");
    assert_eq!(call("swap shared b two"), "ok");
    assert_eq!(e.load("shared", b"b").as_deref(), Some(&b"two"[..]));
    assert_eq!(call("delete-many shared a,c,zz"), "ok");
    assert_eq!(call("keys shared"), "b");
    // More keys than one page (1000): the cursor walks them all, in order.
    let db = e.rt.db();
    let tree = db.open_tree("ns/shared").unwrap().unwrap();
    db.transaction(|tx| {
        for i in 0..2500 {
            tx.put(tree, format!("k{i:05}").as_bytes(), b"v")?;
        }
        Ok(())
    })
    .unwrap();
    let keys = call("keys shared");
    let keys: Vec<&str> = keys.split(',').collect();
    assert_eq!(keys.len(), 2501);
    assert_eq!((keys[0], keys[2499], keys[2500]), ("b", "k02498", "k02499"));
    // A non-i64 value is the guest's error, not a trap.
    let err =
        e.rt.invoke("kvc", b"incr shared b")
            .unwrap_err()
            .to_string();
    assert!(err.contains("the value is not an 8-byte i64"), "{err}");
}

#[test]
fn rime_scan_pages_through_a_range_in_key_order() {
    let e = env();
    e.rt.deploy("scan", &component("range_scan"), shared())
        .unwrap();
    let db = e.rt.db();
    let tree = db.open_or_create_tree("ns/shared").unwrap();
    db.transaction(|tx| {
        for k in ["d", "a", "c", "b", "e"] {
            tx.put(tree, k.as_bytes(), k.to_uppercase().as_bytes())?;
        }
        Ok(())
    })
    .unwrap();
    assert_eq!(e.call("scan", "shared - - 2"), "a=A,b=B,c=C,d=D,e=E");
    assert_eq!(e.call("scan", "shared b d 1"), "b=B,c=C");
    assert_eq!(e.call("scan", "shared d b 10"), "");
    let err =
        e.rt.invoke("scan", b"secret - - 1")
            .unwrap_err()
            .to_string();
    assert!(err.contains("AccessDenied"), "{err}");
}
