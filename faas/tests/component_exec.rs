//! HTTP-triggered components on the executors (docs/components.md,
//! "Async"): `Runtime::invoke_http_async` runs a request as a task, its
//! guest on a fiber, so requests in flight hold no OS thread each; a
//! looping guest yields to the others on its executor and times out;
//! dropping the future cancels; concurrent requests stay serializable.

mod common;
use bytes::Bytes;
use common::*;
use rime_faas::{FunctionConfig, InvokeError, Runtime};
use std::time::{Duration, Instant};

/// An HTTP-triggered component whose handler loops until its deadline.
const SPIN_HTTP: &str = include_str!("common/spin_http.wat");

fn get(target: &str) -> http::Request<Bytes> {
    http::Request::get(target).body(Bytes::new()).unwrap()
}

/// Deploys the spinning component as `spin` (with `deadline`) and
/// `hello_http` as `hello`.
fn deploy_spin_and_hello(rt: &Runtime, deadline: Duration) {
    let cfg = FunctionConfig::default().deadline(deadline);
    rt.deploy("spin", SPIN_HTTP.as_bytes(), cfg).unwrap();
    rt.deploy("hello", &component("hello_http"), FunctionConfig::default())
        .unwrap();
}

/// Waits (at most 20 s) until `n` instances are alive; fails loudly if
/// they never are.
fn wait_for_instances(rt: &Runtime, n: u64) {
    let start = Instant::now();
    while rt.stats().instances < n {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "never {n} instances alive at once: {:?}",
            rt.stats()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// OS threads of this process now.
fn os_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task lists this process's threads")
        .count()
}

#[test]
fn a_looping_component_times_out_without_blocking_others_on_its_executor() {
    let e = env_with(|c| c.workers(1));
    deploy_spin_and_hello(&e.rt, Duration::from_secs(3));
    let spin = e.rt.invoke_http_async("spin", &get("/"));
    wait_for_instances(&e.rt, 1);
    // The one executor runs `hello` to its end while `spin` still loops.
    for _ in 0..5 {
        let (resp, _) = e.rt.invoke_http_async("hello", &get("/")).wait().unwrap();
        assert_eq!(
            (resp.status().as_u16(), &resp.body()[..]),
            (200, &b"hello"[..])
        );
    }
    assert_eq!(e.rt.stats().timeouts, 0, "spin ended before hello ran");
    assert_eq!(e.rt.stats().instances, 1, "spin is still running");
    let r = spin.wait();
    assert!(matches!(r, Err(InvokeError::Timeout(_))), "{r:?}");
    assert_eq!(e.rt.stats().instances, 0);
}

#[test]
fn many_requests_in_flight_hold_fewer_os_threads_than_requests() {
    const REQUESTS: usize = 48;
    let e = env_with(|c| c.workers(1).max_instances(64));
    deploy_spin_and_hello(&e.rt, Duration::from_secs(2));
    let threads_before = os_threads();
    let spins: Vec<_> = (0..REQUESTS)
        .map(|_| e.rt.invoke_http_async("spin", &get("/")))
        .collect();
    // All of them running at once, each in its own instance...
    wait_for_instances(&e.rt, REQUESTS as u64);
    let threads_during = os_threads();
    // ...on the one executor (and at most the few threads a runtime
    // starts once: the executor, the epoch ticker, wasmtime-wasi's
    // runtime), not a thread each.
    assert!(
        threads_during < REQUESTS / 2,
        "{threads_during} OS threads for {REQUESTS} requests in flight \
         ({threads_before} before them)"
    );
    // And a request still gets through beside them.
    let (resp, _) = e.rt.invoke_http_async("hello", &get("/")).wait().unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    for s in spins {
        let r = s.wait();
        assert!(matches!(r, Err(InvokeError::Timeout(_))), "{r:?}");
    }
    assert_eq!(e.rt.stats().timeouts, REQUESTS as u64);
}

#[test]
fn dropping_a_request_in_flight_cancels_it_before_its_deadline() {
    let e = env_with(|c| c.workers(1));
    deploy_spin_and_hello(&e.rt, Duration::from_secs(30));
    let spin = e.rt.invoke_http_async("spin", &get("/"));
    wait_for_instances(&e.rt, 1);
    drop(spin);
    // Cancelled at its next yield (an epoch tick), far before 30 s.
    let start = Instant::now();
    while e.rt.stats().cancelled == 0 || e.rt.stats().instances > 0 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "not cancelled: {:?}",
            e.rt.stats()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let stats = e.rt.stats();
    assert_eq!(
        (stats.cancelled, stats.timeouts, stats.committed),
        (1, 0, 0)
    );
}

#[test]
fn concurrent_requests_on_the_executors_are_serializable() {
    const VISITS: usize = 100;
    let e = env();
    e.rt.deploy(
        "short",
        &component("url_shortener"),
        FunctionConfig::default(),
    )
    .unwrap();
    let put = http::Request::put("/rime")
        .header("content-type", "text/uri-list")
        .body(Bytes::from_static(b"https://example.invalid/rime"))
        .unwrap();
    let (resp, _) = e.rt.invoke_http_async("short", &put).wait().unwrap();
    assert_eq!(resp.status().as_u16(), 201);
    // Every visit increments the one counter: conflicts are re-run, so
    // each sees a distinct count and none is lost.
    let visits: Vec<_> = (0..VISITS)
        .map(|_| e.rt.invoke_http_async("short", &get("/rime")))
        .collect();
    let mut counts: Vec<usize> = visits
        .into_iter()
        .map(|v| {
            let (resp, _) = v.wait().unwrap();
            assert_eq!(resp.status().as_u16(), 302);
            resp.headers()["x-visits"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    counts.sort_unstable();
    assert_eq!(counts, (1..=VISITS).collect::<Vec<_>>());
}

#[test]
fn wrong_functions_and_oversized_requests_are_typed_errors_on_the_executors() {
    let e = env();
    e.rt.deploy(
        "short",
        &component("url_shortener"),
        FunctionConfig::default(),
    )
    .unwrap();
    // Not HTTP-triggered: refused by type, on the async path too.
    e.rt.deploy(
        "kvc",
        &component("wasi_kv_counter"),
        FunctionConfig::default(),
    )
    .unwrap();
    let r = e.rt.invoke_http_async("kvc", &get("/")).wait();
    assert!(matches!(r, Err(InvokeError::WrongTrigger(_))), "{r:?}");
    let r = e.rt.invoke_http_async("nobody", &get("/")).wait();
    assert!(matches!(r, Err(InvokeError::NotFound(_))), "{r:?}");
    // A body over the input limit is refused before anything runs.
    let big = http::Request::put("/big")
        .header("content-type", "text/uri-list")
        .body(Bytes::from(vec![
            b'a';
            rime_faas::limits::MAX_INPUT_LEN + 1
        ]))
        .unwrap();
    let r = e.rt.invoke_http_async("short", &big).wait();
    assert!(matches!(r, Err(InvokeError::InputTooLarge { .. })), "{r:?}");
    assert_eq!(e.load("short", b"link:big"), None);
}
