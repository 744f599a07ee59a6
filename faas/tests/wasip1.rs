//! WASI preview 1 modules (`docs/abi.md`, "WASI preview 1 modules"):
//! WASI beside `rime` on both paths (a blocking caller's thread and the
//! executors), stdout/stderr into the function's log, time and randomness
//! fixed per invocation across conflict re-runs, and the deploy-time
//! messages for modules Rime cannot run. The guests are wasm text, so the
//! exact WASI calls are visible; `wasip1_guests.rs` runs the Rust and C
//! example guests.

mod common;
use common::*;
use rime_faas::{DeployError, FunctionConfig, InvokeError, namespace_tree};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Tests of this file one at a time: `tracing` caches per call site
/// whether anyone listens, and a test logging on threads with no
/// subscriber while another installs its `Capture` can leave that cache
/// saying "no one" (the captured log came back empty in 1 run of 3).
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// Writes to stdout and stderr around a `rime.log` message, asks WASI for
/// its arguments and environment, tries a file and a sleep; outputs
/// `argc, environ count, path_open errno, poll_oneoff errno` as 4 u32.
const STDIO: &str = r#"(module
 (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
 (import "wasi_snapshot_preview1" "args_sizes_get" (func $args (param i32 i32) (result i32)))
 (import "wasi_snapshot_preview1" "environ_sizes_get" (func $env (param i32 i32) (result i32)))
 (import "wasi_snapshot_preview1" "path_open"
   (func $open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
 (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
 (import "rime" "log" (func $log (param i32 i32 i32)))
 (import "rime" "output" (func $output (param i32 i32) (result i32)))
 (memory (export "memory") 1)
 (data (i32.const 0) "hello stdout\npart")
 (data (i32.const 32) "to stderr\n")
 (data (i32.const 48) "via rime.log")
 (data (i32.const 64) "ial line")
 (data (i32.const 80) "etc/passwd")
 (func $put (param $fd i32) (param $ptr i32) (param $len i32)
   (i32.store (i32.const 200) (local.get $ptr))
   (i32.store (i32.const 204) (local.get $len))
   (drop (call $write (local.get $fd) (i32.const 200) (i32.const 1) (i32.const 208))))
 (func (export "rime_invoke") (result i32)
   (call $put (i32.const 1) (i32.const 0) (i32.const 17))
   (call $log (i32.const 2) (i32.const 48) (i32.const 12))
   (call $put (i32.const 2) (i32.const 32) (i32.const 10))
   (call $put (i32.const 1) (i32.const 64) (i32.const 8))
   (drop (call $args (i32.const 300) (i32.const 320)))
   (drop (call $env (i32.const 304) (i32.const 324)))
   (i32.store (i32.const 308)
     (call $open (i32.const 3) (i32.const 0) (i32.const 80) (i32.const 10) (i32.const 0)
       (i64.const 0) (i64.const 0) (i32.const 0) (i32.const 400)))
   (i32.store (i32.const 312) (call $poll (i32.const 500) (i32.const 600) (i32.const 1) (i32.const 700)))
   (drop (call $output (i32.const 300) (i32.const 16)))
   (i32.const 0)))"#;

/// The guest's results: argc, environ count, path_open's and poll_oneoff's errno.
fn stdio_results(output: &[u8]) -> [u32; 4] {
    let w = |i: usize| u32::from_le_bytes(output[i * 4..i * 4 + 4].try_into().unwrap());
    [w(0), w(1), w(2), w(3)]
}

/// WASI errno values (`wasi_snapshot_preview1`).
const ERRNO_BADF: u32 = 8;
const ERRNO_NOTSUP: u32 = 58;

#[test]
fn a_wasi_module_runs_with_its_stdout_and_stderr_in_the_log() {
    let _serial = serial();
    let e = env();
    e.rt.deploy("stdio", STDIO.as_bytes(), FunctionConfig::default())
        .unwrap();
    let cap = Capture::default();
    let inv = cap.during(|| e.rt.invoke("stdio", b"")).unwrap();
    // argv is the function's name alone; no environment; no file (no
    // directory is preopened: fd 3 does not exist); no sleeping.
    assert_eq!(stdio_results(&inv.output), [1, 0, ERRNO_BADF, ERRNO_NOTSUP]);
    let lines: Vec<_> = cap
        .events()
        .into_iter()
        .filter(|c| c.target == "rime::faaslet")
        .map(|c| {
            assert!(c.fields.contains("function=stdio"), "{c:?}");
            (c.level, c.message)
        })
        .collect();
    use tracing::Level;
    assert_eq!(
        lines,
        [
            (Level::INFO, "hello stdout".to_string()),
            (Level::INFO, "via rime.log".to_string()),
            (Level::WARN, "to stderr".to_string()),
            (Level::INFO, "partial line".to_string()),
        ],
        "stdout lines at info, stderr at warn, in the order written, the \
         unfinished last line at the end of the attempt"
    );
}

#[test]
fn a_wasi_module_runs_on_the_executors() {
    let _serial = serial();
    let e = env();
    e.rt.deploy("stdio", STDIO.as_bytes(), FunctionConfig::default())
        .unwrap();
    let all = e.rt.invoke_many((0..64).map(|_| ("stdio", Vec::new())));
    for r in all {
        let inv = r.expect("a WASI module on the executors' async linker");
        assert_eq!(stdio_results(&inv.output), [1, 0, ERRNO_BADF, ERRNO_NOTSUP]);
    }
}

/// Reads key `k` and writes key `o` (so a commit of `k` meanwhile
/// conflicts: a transaction that writes nothing is not validated), the wall clock
/// and 16 random bytes, spins for the input's u32 count of loop turns,
/// reads both again; writes the 48 bytes in hex, with a newline, to stdout
/// (so every attempt's values are in the log) and as the output.
const CLOCK_AND_RANDOM: &str = r#"(module
 (import "wasi_snapshot_preview1" "clock_time_get" (func $clock (param i32 i64 i32) (result i32)))
 (import "wasi_snapshot_preview1" "random_get" (func $random (param i32 i32) (result i32)))
 (import "wasi_snapshot_preview1" "fd_write" (func $write (param i32 i32 i32 i32) (result i32)))
 (import "rime" "input" (func $input (param i32 i32) (result i32)))
 (import "rime" "get" (func $get (param i32 i32 i32 i32 i32) (result i32)))
 (import "rime" "put" (func $put (param i32 i32 i32 i32 i32) (result i32)))
 (import "rime" "output" (func $output (param i32 i32) (result i32)))
 (memory (export "memory") 1)
 (data (i32.const 0) "0123456789abcdef")
 (data (i32.const 16) "ko")
 (func $sample (param $at i32) (result i32)
   (if (call $clock (i32.const 0) (i64.const 1) (local.get $at))
     (then (return (i32.const 1))))
   (call $random (i32.add (local.get $at) (i32.const 8)) (i32.const 16)))
 (func $hex (local $i i32) (local $b i32)
   (block $done (loop $next
     (br_if $done (i32.ge_u (local.get $i) (i32.const 48)))
     (local.set $b (i32.load8_u (i32.add (i32.const 256) (local.get $i))))
     (i32.store8 (i32.add (i32.const 512) (i32.shl (local.get $i) (i32.const 1)))
       (i32.load8_u (i32.shr_u (local.get $b) (i32.const 4))))
     (i32.store8 (i32.add (i32.const 513) (i32.shl (local.get $i) (i32.const 1)))
       (i32.load8_u (i32.and (local.get $b) (i32.const 15))))
     (local.set $i (i32.add (local.get $i) (i32.const 1)))
     (br $next)))
   (i32.store8 (i32.const 608) (i32.const 10)))
 (func (export "rime_invoke") (result i32)
   (local $n i32)
   (drop (call $input (i32.const 32) (i32.const 4)))
   (local.set $n (i32.load (i32.const 32)))
   (drop (call $get (i32.const 0) (i32.const 16) (i32.const 1) (i32.const 64) (i32.const 64)))
   (drop (call $put (i32.const 0) (i32.const 17) (i32.const 1) (i32.const 16) (i32.const 1)))
   (if (call $sample (i32.const 256)) (then (return (i32.const 1))))
   (block $done (loop $spin
     (br_if $done (i32.eqz (local.get $n)))
     (local.set $n (i32.sub (local.get $n) (i32.const 1)))
     (br $spin)))
   (if (call $sample (i32.const 280)) (then (return (i32.const 1))))
   (call $hex)
   (i32.store (i32.const 700) (i32.const 512))
   (i32.store (i32.const 704) (i32.const 97))
   (drop (call $write (i32.const 1) (i32.const 700) (i32.const 1) (i32.const 708)))
   (drop (call $output (i32.const 512) (i32.const 96)))
   (i32.const 0)))"#;

/// Loop turns the guest spins between its two samples: long enough
/// (tens of milliseconds) for another thread to commit `k` meanwhile.
const SPIN_TURNS: u32 = 100_000_000;

/// The wall clock (ns) and the two random draws of one output line.
fn decode(hex: &str) -> (u64, u64, String, String) {
    let clock = |i: usize| {
        let b: Vec<u8> = (0..8)
            .map(|j| u8::from_str_radix(&hex[i + 2 * j..i + 2 * j + 2], 16).unwrap())
            .collect();
        u64::from_le_bytes(b.try_into().unwrap())
    };
    (
        clock(0),
        clock(48),
        hex[16..48].to_string(),
        hex[64..96].to_string(),
    )
}

#[test]
fn every_attempt_of_an_invocation_sees_the_same_clock_and_random() {
    let _serial = serial();
    let e = env();
    let cfg = FunctionConfig::default().deadline(Duration::from_secs(30));
    e.rt.deploy("det", CLOCK_AND_RANDOM.as_bytes(), cfg)
        .unwrap();
    let db = e.rt.db().clone();
    let tree = db.open_or_create_tree(&namespace_tree("det")).unwrap();
    // The forced conflict: while the first attempt spins, another thread
    // commits the key it read. Timing decides whether the commit falls
    // inside the first attempt, so try a few times.
    for round in 0..5u32 {
        let cap = Capture::default();
        let writer = {
            let db = db.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(20));
                db.put(tree, b"k", &round.to_le_bytes()).unwrap();
            })
        };
        let inv = cap
            .during(|| e.rt.invoke("det", &SPIN_TURNS.to_le_bytes()))
            .unwrap();
        writer.join().unwrap();
        eprintln!(
            "round {round}: {} retries in {:?}",
            inv.retries, inv.duration
        );
        if inv.retries == 0 {
            continue;
        }
        let output = String::from_utf8(inv.output).unwrap();
        let attempts: Vec<String> = cap
            .events()
            .into_iter()
            .filter(|c| c.target == "rime::faaslet")
            .map(|c| c.message)
            .collect();
        assert_eq!(attempts.len(), inv.retries as usize + 1, "{attempts:?}");
        for a in &attempts {
            assert_eq!(a, &output, "an attempt saw other values than the last");
        }
        let (clock1, clock2, random1, random2) = decode(&output);
        assert_eq!(clock1, clock2, "the clock is fixed within an invocation");
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        let age = now.saturating_sub(Duration::from_nanos(clock1));
        assert!(
            age < Duration::from_secs(60),
            "clock {clock1} ns is not now"
        );
        assert_ne!(random1, random2, "two draws are two draws");
        // Another invocation draws other bytes.
        let again = e.rt.invoke("det", &0u32.to_le_bytes()).unwrap();
        let (_, _, other, _) = decode(std::str::from_utf8(&again.output).unwrap());
        assert_ne!(other, random1);
        return;
    }
    panic!("no invocation of 5 was re-run: the writer never committed inside an attempt");
}

/// Deploys `wat` and returns the refusal's message.
fn refused(wat: &str) -> String {
    let e = env();
    match e
        .rt
        .deploy("bad", wat.as_bytes(), FunctionConfig::default())
    {
        Err(err @ DeployError::Abi(_)) => err.to_string(),
        other => panic!("deployed or failed otherwise: {other:?}"),
    }
}

const BODY: &str = r#"(memory (export "memory") 1)
 (func (export "rime_invoke") (result i32) (i32.const 0))"#;

#[test]
fn a_socket_import_is_refused_by_name() {
    let _serial = serial();
    let m = refused(&format!(
        r#"(module (import "wasi_snapshot_preview1" "sock_accept"
             (func (param i32 i32 i32) (result i32))) {BODY})"#
    ));
    assert!(
        m.contains(
            "this is a WASI preview 1 module importing `wasi_snapshot_preview1.sock_accept`, \
             which Rime does not grant"
        ),
        "{m}"
    );
}

#[test]
fn other_modules_are_told_what_to_build() {
    let _serial = serial();
    let cases = [
        (
            r#"(import "wasi_unstable" "fd_write" (func (param i32 i32 i32 i32) (result i32)))"#,
            "this is a WASI preview 0 module (it imports `wasi_unstable.fd_write`), which Rime \
             does not run; build it for `wasm32-wasip1`",
        ),
        (
            r#"(import "wasi_snapshot_preview1" "fd_frobnicate" (func))"#,
            "imports `wasi_snapshot_preview1.fd_frobnicate`, which is not a WASI preview 1 function",
        ),
        (
            r#"(import "env" "helper" (func))"#,
            "imports `env.helper`: a symbol the build left undefined",
        ),
        (
            r#"(import "env" "memory" (memory 1))"#,
            "imports `env.memory`, which is not a function",
        ),
        (
            r#"(import "rime" "get" (func (param i32 i32) (result i32)))"#,
            "rime.get expects (i32, i32, i32, i32, i32) -> i32, the module declares (i32, i32) \
             -> i32",
        ),
    ];
    for (import, want) in cases {
        let m = refused(&format!("(module {import} {BODY})"));
        assert!(m.contains(want), "{import}: {m}");
    }
}

#[test]
fn a_wasi_import_of_the_wrong_type_prints_both_signatures() {
    let _serial = serial();
    let m = refused(&format!(
        r#"(module (import "wasi_snapshot_preview1" "fd_write" (func (param i32) (result i32))) {BODY})"#
    ));
    assert!(
        m.contains(
            "the module imports `wasi_snapshot_preview1.fd_write` with type \
             (type (func (param i32) (result i32))); WASI preview 1's is \
             (type (func (param i32 i32 i32 i32) (result i32)))"
        ),
        "{m}"
    );
}

#[test]
fn a_wasi_command_module_is_told_to_export_rime_invoke() {
    let _serial = serial();
    let m = refused(
        r#"(module
         (import "wasi_snapshot_preview1" "proc_exit" (func (param i32)))
         (memory (export "memory") 1)
         (func (export "_start")))"#,
    );
    assert!(
        m.contains("this is a WASI command module (it exports `_start`")
            && m.contains("exports `rime_invoke`"),
        "{m}"
    );
}

#[test]
fn exit_instead_of_return_commits_nothing_and_says_so() {
    let _serial = serial();
    let e = env();
    let wat = r#"(module
     (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
     (import "rime" "put" (func $put (param i32 i32 i32 i32 i32) (result i32)))
     (memory (export "memory") 1)
     (func (export "rime_invoke") (result i32)
       (drop (call $put (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 0) (i32.const 1)))
       (call $exit (i32.const 3))
       (i32.const 0)))"#;
    e.rt.deploy("quits", wat.as_bytes(), FunctionConfig::default())
        .unwrap();
    match e.rt.invoke("quits", b"") {
        Err(InvokeError::Trap(m)) => {
            assert!(m.contains("called proc_exit(3)"), "{m}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(e.load("quits", b"\0"), None, "nothing committed");
}

/// A reactor's `_initialize` (its constructors) runs before `rime_invoke`
/// in every instance.
#[test]
fn a_reactor_is_initialized_before_each_invocation() {
    let _serial = serial();
    let e = env();
    let wat = r#"(module
     (import "wasi_snapshot_preview1" "sched_yield" (func $yield (result i32)))
     (import "rime" "output" (func $output (param i32 i32) (result i32)))
     (memory (export "memory") 1)
     (func (export "_initialize")
       (i32.store (i32.const 0) (i32.add (i32.load (i32.const 0)) (i32.const 1))))
     (func (export "rime_invoke") (result i32)
       (drop (call $yield))
       (call $output (i32.const 0) (i32.const 4))))"#;
    e.rt.deploy("reactor", wat.as_bytes(), FunctionConfig::default())
        .unwrap();
    for _ in 0..2 {
        let out = e.rt.invoke("reactor", b"").unwrap().output;
        assert_eq!(out, 1u32.to_le_bytes(), "initialized once per instance");
    }
}
