//! The call-loop guest: one host call made `n` times in a loop inside a
//! single invocation, so a caller can tell the cost of the call from the cost of
//! the invocation around it. Shared by `tests/no_alloc.rs` (allocations per
//! call) and `benches/faaslet.rs` (time per call, `#[path]`-included).
//!
//! Input: `n: u32 LE, mode: u32 LE`. The namespace must hold `key` with a
//! 100-byte value (for `GET`); any unexpected result traps.

/// `get` of key `key` into a 4 KiB buffer; expects the 100-byte value.
pub const GET: u32 = 0;
/// `put` of a 100-byte value to key `key`; expects 0.
pub const PUT: u32 = 1;
/// `scan` of the whole namespace into a 32 KiB buffer; expects more than
/// 100 bytes of records.
pub const SCAN: u32 = 2;

/// The module, in the text format (the runtime accepts it as is).
pub const CALL_LOOP: &str = r#"(module
  (import "rime" "input" (func $input (param i32 i32) (result i32)))
  (import "rime" "get" (func $get (param i32 i32 i32 i32 i32) (result i32)))
  (import "rime" "put" (func $put (param i32 i32 i32 i32 i32) (result i32)))
  (import "rime" "scan" (func $scan (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (data (i32.const 0) "key")
  (func (export "rime_invoke") (result i32)
    (local $n i32) (local $mode i32) (local $i i32)
    (drop (call $input (i32.const 16) (i32.const 8)))
    (local.set $n (i32.load (i32.const 16)))
    (local.set $mode (i32.load (i32.const 20)))
    (block $done (loop $next
      (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
      (if (i32.eqz (local.get $mode))
        (then (if (i32.ne (call $get (i32.const 0) (i32.const 0) (i32.const 3) (i32.const 1024) (i32.const 4096))
                          (i32.const 100))
                (then unreachable)))
        (else (if (i32.eq (local.get $mode) (i32.const 1))
          (then (if (i32.ne (call $put (i32.const 0) (i32.const 0) (i32.const 3) (i32.const 1024) (i32.const 100))
                            (i32.const 0))
                  (then unreachable)))
          (else (if (i32.le_s (call $scan (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const -1)
                                          (i32.const 0) (i32.const 8192) (i32.const 32768))
                              (i32.const 100))
                  (then unreachable))))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $next)))
    (i32.const 0)))"#;

/// The input for `n` calls of `mode`.
pub fn input(n: u32, mode: u32) -> Vec<u8> {
    [n.to_le_bytes(), mode.to_le_bytes()].concat()
}
