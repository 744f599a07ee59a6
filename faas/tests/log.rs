//! A guest's log output is capped per invocation
//! (`MAX_LOG_BYTES_PER_INVOCATION`, `MAX_LOG_LINES_PER_INVOCATION`), with
//! one final warning, and the invocation goes on. Each line also reaches
//! the runtime's log sink and the invocation's `logs`.

mod common;
use common::*;
use rime_faas::limits::{MAX_LOG_BYTES_PER_INVOCATION, MAX_LOG_LEN, MAX_LOG_LINES_PER_INVOCATION};
use rime_faas::{FunctionConfig, InvokeError};
use std::time::Duration;

/// Input `n: u32, len: u32`: logs `len` bytes of `x` at info, `n` times.
const LOGGER: &str = r#"(module
 (import "rime" "input" (func $input (param i32 i32) (result i32)))
 (import "rime" "log" (func $log (param i32 i32 i32)))
 (memory (export "memory") 1)
 (func (export "rime_invoke") (result i32)
   (local $n i32) (local $len i32) (local $i i32)
   (drop (call $input (i32.const 0) (i32.const 8)))
   (local.set $n (i32.load (i32.const 0)))
   (local.set $len (i32.load (i32.const 4)))
   (memory.fill (i32.const 1024) (i32.const 120) (local.get $len))
   (block $done
     (loop $again
       (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
       (call $log (i32.const 2) (i32.const 1024) (local.get $len))
       (local.set $i (i32.add (local.get $i) (i32.const 1)))
       (br $again)))
   (i32.const 0)))"#;

fn input(n: u32, len: u32) -> Vec<u8> {
    [n.to_le_bytes(), len.to_le_bytes()].concat()
}

fn logger(deadline: Duration) -> Env {
    let e = env();
    e.rt.deploy(
        "chatty",
        LOGGER.as_bytes(),
        FunctionConfig::default().deadline(deadline),
    )
    .unwrap();
    e
}

/// The guest's messages and the truncation warnings, from one call.
fn logged(
    e: &Env,
    n: u32,
    len: u32,
) -> (
    Result<rime_faas::Invocation, InvokeError>,
    Vec<String>,
    usize,
) {
    let cap = Capture::default();
    let r = cap.during(|| e.rt.invoke("chatty", &input(n, len)));
    let events: Vec<_> = cap
        .events()
        .into_iter()
        .filter(|c| c.target == "rime::faaslet")
        .collect();
    let notices = events
        .iter()
        .filter(|c| c.message.starts_with("log output truncated"))
        .count();
    if notices > 0 {
        assert!(
            events
                .last()
                .unwrap()
                .message
                .starts_with("log output truncated"),
            "the warning is the last line"
        );
        assert!(events.last().unwrap().fields.contains("chatty"));
    }
    let messages = events
        .into_iter()
        .filter(|c| !c.message.starts_with("log output truncated"))
        .map(|c| c.message)
        .collect();
    (r, messages, notices)
}

#[test]
fn a_guest_logging_in_a_loop_gets_bounded_output_and_still_completes() {
    let e = logger(Duration::from_secs(60));
    // A few messages pass whole, with no warning.
    let (r, msgs, notices) = logged(&e, 3, 10);
    r.unwrap();
    assert_eq!(msgs, vec!["x".repeat(10); 3]);
    assert_eq!(notices, 0);
    // A million: the first MAX_LOG_LINES_PER_INVOCATION, then one warning.
    let (r, msgs, notices) = logged(&e, 1_000_000, 100);
    r.unwrap();
    assert_eq!(msgs.len(), MAX_LOG_LINES_PER_INVOCATION);
    assert!(msgs.iter().all(|m| *m == "x".repeat(100)));
    assert_eq!(notices, 1);
    // The budget is per invocation: the next one logs again.
    let (r, msgs, notices) = logged(&e, 2, 10);
    r.unwrap();
    assert_eq!((msgs.len(), notices), (2, 0));
}

#[test]
fn long_messages_are_cut_at_the_byte_budget() {
    let e = logger(Duration::from_secs(60));
    // Messages of 3000 bytes: 21 whole, the 22nd cut to what is left.
    let (r, msgs, notices) = logged(&e, 1000, 3000);
    r.unwrap();
    let total: usize = msgs.iter().map(String::len).sum();
    assert_eq!(total, MAX_LOG_BYTES_PER_INVOCATION);
    assert_eq!(msgs.len(), MAX_LOG_BYTES_PER_INVOCATION.div_ceil(3000));
    assert_eq!(notices, 1);
    // Messages over MAX_LOG_LEN are truncated to it first.
    let (r, msgs, notices) = logged(&e, 1000, 8000);
    r.unwrap();
    assert!(msgs.iter().all(|m| m.len() == MAX_LOG_LEN));
    assert_eq!(msgs.len(), MAX_LOG_BYTES_PER_INVOCATION / MAX_LOG_LEN);
    assert_eq!(notices, 1);
}

#[test]
fn a_guest_logging_forever_meets_its_deadline_with_bounded_output() {
    let e = logger(Duration::from_millis(300));
    let (r, msgs, notices) = logged(&e, u32::MAX, 100);
    assert!(matches!(r, Err(InvokeError::Timeout(_))), "{r:?}");
    assert_eq!(msgs.len(), MAX_LOG_LINES_PER_INVOCATION);
    assert_eq!(notices, 1);
}

/// The runtime's sink gets every line, as the invocation logs them, those
/// of a failed invocation too, and so does an invocation's own sink; a
/// committed invocation also carries its lines.
#[test]
fn the_sink_and_the_invocation_get_the_lines_within_the_budget() {
    use rime_faas::{GuestLog, LogLevel, LogSink};
    use std::sync::{Arc, Mutex};
    let seen: Arc<Mutex<Vec<GuestLog>>> = Arc::default();
    let sink = {
        let seen = seen.clone();
        LogSink::new(move |l| seen.lock().unwrap().push(l.clone()))
    };
    let e = env_with(|c| c.log_sink(sink));
    let cfg = FunctionConfig::default().deadline(Duration::from_millis(300));
    e.rt.deploy("chatty", LOGGER.as_bytes(), cfg).unwrap();

    let inv = e.rt.invoke("chatty", &input(2, 5)).unwrap();
    let line = GuestLog {
        function: "chatty".into(),
        level: LogLevel::Info,
        message: "xxxxx".into(),
    };
    assert_eq!(inv.logs, vec![line.clone(); 2]);
    assert_eq!(*seen.lock().unwrap(), vec![line; 2]);

    // On the executors too, and a timed-out invocation's lines still
    // reach the sink, capped at the per-invocation budget.
    // The invocation's own sink gets them too.
    seen.lock().unwrap().clear();
    let own: Arc<Mutex<Vec<GuestLog>>> = Arc::default();
    let own_sink = {
        let own = own.clone();
        LogSink::new(move |l| own.lock().unwrap().push(l.clone()))
    };
    let r = (e
        .rt
        .invoke_async_with_logs("chatty", input(u32::MAX, 10), Some(own_sink)))
    .wait();
    assert!(matches!(r, Err(InvokeError::Timeout(_))), "{r:?}");
    assert_eq!(seen.lock().unwrap().len(), MAX_LOG_LINES_PER_INVOCATION);
    assert_eq!(*own.lock().unwrap(), *seen.lock().unwrap());
}
