//! `get` and `scan` allocate nothing on the host heap: an invocation that
//! makes 2000 such calls allocates exactly as often as one that makes 10.
//!
//! A counting global allocator counts the allocations of the test's own
//! thread (the one running `Runtime::invoke`) while enabled; other threads
//! (the epoch ticker, the log) are not counted.

mod common;
use common::*;
use rime_faas::FunctionConfig;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::Duration;

struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static COUNT: Cell<u64> = const { Cell::new(0) };
}

fn bump() {
    // `try_with`: the thread-locals may be gone while a thread exits.
    let _ = COUNTING.try_with(|c| {
        if c.get() {
            let _ = COUNT.try_with(|n| n.set(n.get() + 1));
        }
    });
}

// SAFETY: forwards to the system allocator; counting has no effect on it.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        bump();
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc(l) }
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        bump();
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        bump();
        // SAFETY: as above.
        unsafe { System.realloc(p, l, n) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn setup() -> Env {
    let e = env();
    // A deadline far beyond what 2000 calls take: this test counts
    // allocations, and the default 1 s was missed by 2000 scans on a
    // loaded machine.
    let cfg = FunctionConfig::default().deadline(Duration::from_secs(60));
    e.rt.deploy("probe", call_loop::CALL_LOOP.as_bytes(), cfg)
        .unwrap();
    let db = e.rt.db();
    let t = db.open_tree("ns/probe").unwrap().unwrap();
    db.transaction(|tx| {
        tx.put(t, b"key", &[5u8; 100])?;
        for i in 0..100u32 {
            tx.put(t, format!("k{i:03}").as_bytes(), &[6u8; 50])?;
        }
        Ok(())
    })
    .unwrap();
    e
}

/// Allocations of (10 calls, 2000 calls) of `mode`, after warming up.
fn measure(e: &Env, mode: u32) -> (u64, u64) {
    let count = |n: u32| {
        COUNT.with(|c| c.set(0));
        COUNTING.with(|c| c.set(true));
        let r = e.rt.invoke("probe", &call_loop::input(n, mode));
        COUNTING.with(|c| c.set(false));
        r.unwrap();
        COUNT.with(|c| c.get())
    };
    // Warm up: the transaction buffers the Db pools grow to their size for
    // 2000 calls once, and are reused afterwards.
    count(2000);
    count(2000);
    let few = count(10);
    let many = count(2000);
    eprintln!(
        "{}: {few} allocations with 10 calls, {many} with 2000",
        ["get", "put", "scan"][mode as usize]
    );
    (few, many)
}

#[test]
fn get_does_not_allocate_per_call() {
    let (few, many) = measure(&setup(), call_loop::GET);
    assert_eq!(many, few, "get allocates per call");
}

/// The scan path: bounds and the current key on the stack, in the host
/// (`abi/scan.rs`) and in the B+tree (`keybuf.rs`), so a scan call allocates
/// nothing however many entries and leaves it crosses.
#[test]
fn scan_does_not_allocate_per_call() {
    let (few, many) = measure(&setup(), call_loop::SCAN);
    assert_eq!(many, few, "scan allocates per call");
}
