//! The write-set limit (`limits.rs`): counted as the commit will log it,
//! each key once, and never more than one commit may log.

mod common;
use common::*;
use rime_faas::limits::{
    MAX_VALUE_LEN, MAX_WRITE_SET_BYTES, MAX_WRITTEN_BYTES, WRITE_SET_ENTRY_OVERHEAD,
};
use rime_faas::{FunctionConfig, InvokeError};
use std::time::Duration;

/// Runs write operations from its input, 13-byte records
/// `op: u8, key: [u8; 4], value_len: u32 LE, repeat: u32 LE`, each
/// `repeat` times: `p` put (`value_len` zero bytes), `d` delete, `a` add 1,
/// `c` cas expecting absent. The first negative result is the output (i32
/// LE) and the result is 1; otherwise 0.
const WRITER: &str = r#"(module
 (import "rime" "input" (func $input (param i32 i32) (result i32)))
 (import "rime" "output" (func $output (param i32 i32) (result i32)))
 (import "rime" "put" (func $put (param i32 i32 i32 i32 i32) (result i32)))
 (import "rime" "delete" (func $delete (param i32 i32 i32) (result i32)))
 (import "rime" "add" (func $add (param i32 i32 i32 i64 i32) (result i32)))
 (import "rime" "cas" (func $cas (param i32 i32 i32 i32 i32 i32 i32) (result i32)))
 (memory (export "memory") 280)
 (func $op (param $op i32) (param $key i32) (param $vlen i32) (result i32)
   (if (i32.eq (local.get $op) (i32.const 112))
     (then (return (call $put (i32.const 0) (local.get $key) (i32.const 4)
                              (i32.const 0x100000) (local.get $vlen)))))
   (if (i32.eq (local.get $op) (i32.const 100))
     (then (return (call $delete (i32.const 0) (local.get $key) (i32.const 4)))))
   (if (i32.eq (local.get $op) (i32.const 97))
     (then (return (call $add (i32.const 0) (local.get $key) (i32.const 4)
                              (i64.const 1) (i32.const 65536)))))
   (call $cas (i32.const 0) (local.get $key) (i32.const 4) (i32.const 0) (i32.const -1)
              (i32.const 0x100000) (local.get $vlen)))
 (func (export "rime_invoke") (result i32)
   (local $n i32) (local $at i32) (local $rep i32) (local $r i32)
   (local.set $n (call $input (i32.const 0) (i32.const 65536)))
   (block $done
     (loop $next
       (br_if $done (i32.ge_u (local.get $at) (local.get $n)))
       (local.set $rep (i32.load (i32.add (local.get $at) (i32.const 9))))
       (block $ops
         (loop $again
           (br_if $ops (i32.eqz (local.get $rep)))
           (local.set $r (call $op (i32.load8_u (local.get $at))
                                   (i32.add (local.get $at) (i32.const 1))
                                   (i32.load (i32.add (local.get $at) (i32.const 5)))))
           (if (i32.lt_s (local.get $r) (i32.const 0))
             (then
               (i32.store (i32.const 65552) (local.get $r))
               (drop (call $output (i32.const 65552) (i32.const 4)))
               (return (i32.const 1))))
           (local.set $rep (i32.sub (local.get $rep) (i32.const 1)))
           (br $again)))
       (local.set $at (i32.add (local.get $at) (i32.const 13)))
       (br $next)))
   (i32.const 0)))"#;

fn op(op: u8, key: u32, value_len: usize, repeat: u32) -> Vec<u8> {
    let mut v = vec![op];
    v.extend_from_slice(&key.to_be_bytes());
    v.extend_from_slice(&(value_len as u32).to_le_bytes());
    v.extend_from_slice(&repeat.to_le_bytes());
    v
}

/// What a write of a 4-byte key adds to the write set.
fn size(value_len: usize) -> usize {
    WRITE_SET_ENTRY_OVERHEAD + 4 + value_len
}

fn writer_env() -> Env {
    let e = env();
    e.rt.deploy(
        "w",
        WRITER.as_bytes(),
        FunctionConfig::default().deadline(Duration::from_secs(120)),
    )
    .unwrap();
    e
}

fn run(e: &Env, ops: &[Vec<u8>]) -> Result<Vec<u8>, InvokeError> {
    e.rt.invoke("w", &ops.concat()).map(|i| i.output)
}

fn assert_write_set_full(r: Result<Vec<u8>, InvokeError>) {
    match r {
        Err(InvokeError::WriteSetFull { max }) => assert_eq!(max, MAX_WRITE_SET_BYTES),
        other => panic!("expected the write-set error, got {other:?}"),
    }
}

fn stored_len(e: &Env, key: u32) -> Option<usize> {
    e.load("w", &key.to_be_bytes()).map(|v| v.len())
}

#[test]
fn a_write_set_over_the_commit_limit_is_refused_and_does_not_poison_the_db() {
    let e = writer_env();
    // The largest value, then one that makes the write set exactly the
    // limit — or one byte more.
    let rest = MAX_WRITE_SET_BYTES - size(MAX_VALUE_LEN) - size(0);
    assert!(rest <= MAX_VALUE_LEN);
    assert_write_set_full(run(
        &e,
        &[op(b'p', 0, MAX_VALUE_LEN, 1), op(b'p', 1, rest + 1, 1)],
    ));
    // 40 MiB, in the range that the log refused and that poisoned the Db
    // when the ABI admitted 64 MiB.
    assert_write_set_full(run(
        &e,
        &[
            op(b'p', 0, 13 << 20, 1),
            op(b'p', 1, 13 << 20, 1),
            op(b'p', 2, 14 << 20, 1),
        ],
    ));
    assert_eq!(e.rt.db().poisoned(), None);
    assert_eq!(stored_len(&e, 0), None, "nothing committed");
    // Exactly the limit commits: the accounting is the log's own.
    run(&e, &[op(b'p', 0, MAX_VALUE_LEN, 1), op(b'p', 1, rest, 1)]).unwrap();
    assert_eq!(stored_len(&e, 0), Some(MAX_VALUE_LEN));
    assert_eq!(stored_len(&e, 1), Some(rest));
    // And an ordinary invocation after all that.
    run(&e, &[op(b'p', 2, 10, 1), op(b'a', 3, 0, 5)]).unwrap();
    assert_eq!(stored_len(&e, 2), Some(10));
    assert_eq!(
        e.load("w", &3u32.to_be_bytes()),
        Some(5i64.to_le_bytes().to_vec())
    );
    assert_eq!(e.rt.db().poisoned(), None);
}

#[test]
fn many_puts_of_one_key_count_once() {
    let e = writer_env();
    // A million 100-byte puts of one key: 100 MB put, 116 B in the write
    // set. (Counted per put, this failed after 64 MiB.)
    run(&e, &[op(b'p', 7, 96, 1_000_000)]).unwrap();
    assert_eq!(stored_len(&e, 7), Some(96));
    // The largest value rewritten three times, then the rest of the limit.
    let rest = MAX_WRITE_SET_BYTES - size(MAX_VALUE_LEN) - size(0);
    run(&e, &[op(b'p', 0, MAX_VALUE_LEN, 3), op(b'p', 1, rest, 1)]).unwrap();
    // A delete replaces a put's contribution with a tombstone's; `add` and
    // `cas` count as puts of what they write.
    let rest = MAX_WRITE_SET_BYTES - 2 * size(0) - size(8) - size(MAX_VALUE_LEN);
    run(
        &e,
        &[
            op(b'p', 0, MAX_VALUE_LEN, 1),
            op(b'd', 0, 0, 1),
            op(b'a', 5, 0, 3),
            op(b'p', 6, MAX_VALUE_LEN, 1),
            op(b'c', 8, rest, 1),
        ],
    )
    .unwrap();
    assert_eq!(stored_len(&e, 0), None);
    assert_eq!(stored_len(&e, 8), Some(rest));
    assert_eq!(e.rt.db().poisoned(), None);
}

#[test]
fn rewriting_one_key_is_bounded_by_the_bytes_written() {
    let e = writer_env();
    // Each rewrite is copied into the transaction: at most
    // MAX_WRITTEN_BYTES of them, however small the final write set.
    let fits = (MAX_WRITTEN_BYTES / (4 + MAX_VALUE_LEN)) as u32;
    assert_write_set_full(run(&e, &[op(b'p', 0, MAX_VALUE_LEN, fits + 1)]));
    run(&e, &[op(b'p', 0, MAX_VALUE_LEN, fits)]).unwrap();
    assert_eq!(stored_len(&e, 0), Some(MAX_VALUE_LEN));
}
