//! Pool sizing for components (docs/components.md, "Instances and the
//! pool"): `max_instances` invocations fit at once though a component's
//! instance is several core instances and tables, and a component that
//! would take more than an invocation's share is refused at deploy.

mod common;
use common::*;
use rime_faas::{DeployError, FunctionConfig, InvokeError, MAX_CORE_INSTANCES_PER_COMPONENT};
use std::time::Duration;

/// A component of `modules` (at least 2) core instances (the handler's,
/// one with a second table, empty ones), two tables, whose `handle` either answers `ok([])` or
/// (`spin`) loops until its deadline.
fn component_wat(modules: u32, spin: bool) -> String {
    let body = if spin {
        "(loop $l (br $l)) (i32.const 16)"
    } else {
        "(i32.const 16)"
    };
    let extra: String = (2..modules)
        .map(|i| format!("(core instance $e{i} (instantiate $empty))\n"))
        .collect();
    format!(
        r#"(component
  (core module $empty)
  (core module $m
    (memory (export "memory") 1)
    (table 1 funcref)
    (func (export "realloc") (param i32 i32 i32 i32) (result i32) (i32.const 1024))
    (func (export "handle") (param i32 i32) (result i32) {body}))
  (core module $t (table 1 funcref))
  (core instance $i (instantiate $m))
  (core instance $tables (instantiate $t))
  {extra}
  (type $output (result (list u8) (error string)))
  (func $handle (param "input" (list u8)) (result $output)
    (canon lift (core func $i "handle")
      (memory (core memory $i "memory"))
      (realloc (core func $i "realloc"))))
  (instance $handler (export "handle" (func $handle)))
  (export "rime:faaslet/handler@0.1.0" (instance $handler)))"#
    )
}

#[test]
fn one_instance_slot_runs_a_component_of_many_core_instances() {
    // 10 core instances and two tables, in a runtime with one slot.
    let e = env_with(|c| c.max_instances(1));
    let wat = component_wat(10, false);
    e.rt.deploy("c", wat.as_bytes(), FunctionConfig::default())
        .unwrap();
    for _ in 0..3 {
        assert_eq!(e.call("c", ""), "");
    }
    // And the real Rust component (three core instances, two tables).
    e.rt.deploy(
        "kvc",
        &component("wasi_kv_counter"),
        FunctionConfig::default(),
    )
    .unwrap();
    assert_eq!(e.call("kvc", "incr default n"), "1");
}

#[test]
fn max_instances_components_run_at_once_and_one_more_is_overloaded() {
    // Two executors, one slot each (`max_instances` 2).
    let e = env_with(|c| c.max_instances(2).workers(2));
    let cfg = FunctionConfig::default().deadline(Duration::from_millis(1500));
    let wat = component_wat(4, true);
    e.rt.deploy("spin", wat.as_bytes(), cfg).unwrap();
    // Two on the executors, each alive until its deadline: both get
    // their instances; a third there waits for a slot of its executor.
    let calls: Vec<_> = (0..3)
        .map(|_| e.rt.invoke_async("spin", &b""[..]))
        .collect();
    let start = std::time::Instant::now();
    while e.rt.stats().instances < 2 {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{:?}",
            e.rt.stats()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    // A blocking caller meanwhile finds the pool full.
    let r = e.rt.invoke("spin", b"");
    assert!(matches!(r, Err(InvokeError::Overloaded(_))), "{r:?}");
    let results: Vec<_> = calls.into_iter().map(|c| c.wait()).collect();
    assert!(
        results
            .iter()
            .all(|r| matches!(r, Err(InvokeError::Timeout(_)))),
        "{results:?}"
    );
}

#[test]
fn a_component_of_too_many_core_instances_is_refused_at_deploy() {
    let e = env();
    let wat = component_wat(MAX_CORE_INSTANCES_PER_COMPONENT + 1, false);
    let err =
        e.rt.deploy("big", wat.as_bytes(), FunctionConfig::default())
            .unwrap_err();
    assert!(matches!(err, DeployError::Component(_)), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains(&format!(
            "{} core module instances",
            MAX_CORE_INSTANCES_PER_COMPONENT + 1
        )),
        "{text}"
    );
    assert!(
        text.contains("more than Rime gives an invocation"),
        "{text}"
    );
    // At the limit it deploys and runs.
    let wat = component_wat(MAX_CORE_INSTANCES_PER_COMPONENT, false);
    e.rt.deploy("at_limit", wat.as_bytes(), FunctionConfig::default())
        .unwrap();
    assert_eq!(e.call("at_limit", ""), "");
}
