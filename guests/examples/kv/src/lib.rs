//! `kv`: raw get/put/delete/add/scan driven by a compact binary input, for
//! benchmarks. All operations of one input run as one transaction.
//!
//! Input: operations back to back; integers little-endian.
//!
//! | op | encoding | response |
//! | --- | --- | --- |
//! | get | `b'g' key` | `0x00` if absent, else `0x01 value` |
//! | put | `b'p' key value` | nothing |
//! | delete | `b'd' key` | nothing |
//! | add | `b'a' key delta:i64` | `new:i64` |
//! | scan | `b's' key limit:u32` | `count:u32` then `count` × `key value` |
//!
//! where `key = len:u16 | bytes` and `value = len:u32 | bytes`. `scan`
//! returns up to `limit` entries with keys `>= key`, ascending. Output: the
//! responses concatenated in input order. Malformed input commits nothing.
#![cfg_attr(not(test), no_std)]

use core::fmt;
use core::ops::Bound;
use rime_sdk::{Namespace, Vec, faaslet};

const OP_GET: u8 = b'g';
const OP_PUT: u8 = b'p';
const OP_DELETE: u8 = b'd';
const OP_ADD: u8 = b'a';
const OP_SCAN: u8 = b's';
const ABSENT: u8 = 0;
const PRESENT: u8 = 1;

#[derive(Debug)]
enum KvError {
    Truncated { at: usize },
    UnknownOp { op: u8, at: usize },
    Host(rime_sdk::Error),
}

impl From<rime_sdk::Error> for KvError {
    fn from(e: rime_sdk::Error) -> Self {
        KvError::Host(e)
    }
}

impl fmt::Display for KvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KvError::Truncated { at } => write!(f, "input truncated at byte {at}"),
            KvError::UnknownOp { op, at } => write!(f, "unknown op {op:#04x} at byte {at}"),
            KvError::Host(e) => write!(f, "host: {e}"),
        }
    }
}

/// A cursor over the input that fails cleanly on truncation.
struct Reader<'a> {
    input: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], KvError> {
        let bytes = self.input.get(self.at..).and_then(|rest| rest.get(..n));
        let bytes = bytes.ok_or(KvError::Truncated { at: self.at })?;
        self.at += n;
        Ok(bytes)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], KvError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn key(&mut self) -> Result<&'a [u8], KvError> {
        let len = u16::from_le_bytes(self.array()?);
        self.take(usize::from(len))
    }

    fn value(&mut self) -> Result<&'a [u8], KvError> {
        let len = u32::from_le_bytes(self.array()?);
        self.take(len as usize)
    }
}

fn push_key(out: &mut Vec<u8>, key: &[u8]) {
    out.extend_from_slice(&(key.len() as u16).to_le_bytes()); // keys are <= 512 bytes
    out.extend_from_slice(key);
}

fn push_value(out: &mut Vec<u8>, value: &[u8]) {
    out.extend_from_slice(&(value.len() as u32).to_le_bytes()); // values are <= 16 MiB
    out.extend_from_slice(value);
}

#[faaslet]
fn kv(input: &[u8]) -> Result<Vec<u8>, KvError> {
    let ns = Namespace::OWN;
    let mut r = Reader { input, at: 0 };
    let mut out = Vec::new();
    while r.at < input.len() {
        let at = r.at;
        let [op] = r.array()?;
        match op {
            OP_GET => match ns.get(r.key()?)? {
                None => out.push(ABSENT),
                Some(v) => {
                    out.push(PRESENT);
                    push_value(&mut out, &v);
                }
            },
            OP_PUT => {
                let key = r.key()?;
                ns.put(key, r.value()?)?;
            }
            OP_DELETE => ns.delete(r.key()?)?,
            OP_ADD => {
                let key = r.key()?;
                let delta = i64::from_le_bytes(r.array()?);
                out.extend_from_slice(&ns.add(key, delta)?.to_le_bytes());
            }
            OP_SCAN => {
                let start = r.key()?;
                let limit = u32::from_le_bytes(r.array()?);
                let count_at = out.len();
                out.extend_from_slice(&0u32.to_le_bytes());
                let mut count = 0u32;
                let mut scan = ns.scan(Bound::Included(start), Bound::Unbounded);
                while count < limit {
                    let Some(entry) = scan.next_entry() else {
                        break;
                    };
                    let (key, value) = entry?;
                    push_key(&mut out, key);
                    push_value(&mut out, value);
                    count += 1;
                }
                out[count_at..count_at + 4].copy_from_slice(&count.to_le_bytes());
            }
            op => return Err(KvError::UnknownOp { op, at }),
        }
    }
    Ok(out)
}

// The mock host serves the SDK's calls on native targets only.
#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use rime_sdk::mock;

    #[test]
    fn ops_round_trip() {
        mock::reset();
        let mut input = Vec::new();
        for (k, v) in [(&b"a"[..], &b"1"[..]), (b"b", b"22"), (b"c", b"333")] {
            input.push(OP_PUT);
            push_key(&mut input, k);
            push_value(&mut input, v);
        }
        input.push(OP_DELETE);
        push_key(&mut input, b"b");
        input.push(OP_GET);
        push_key(&mut input, b"a");
        input.push(OP_GET);
        push_key(&mut input, b"b");
        input.push(OP_ADD);
        push_key(&mut input, b"n");
        input.extend_from_slice(&(-4i64).to_le_bytes());
        input.push(OP_SCAN);
        push_key(&mut input, b"a");
        input.extend_from_slice(&2u32.to_le_bytes());

        let outcome = mock::invoke(&input, super::rime_invoke);
        assert_eq!(outcome.code, 0, "{}", outcome.text());
        let mut want = vec![PRESENT, 1, 0, 0, 0, b'1', ABSENT];
        want.extend_from_slice(&(-4i64).to_le_bytes());
        want.extend_from_slice(&2u32.to_le_bytes());
        push_key(&mut want, b"a");
        push_value(&mut want, b"1");
        push_key(&mut want, b"c");
        push_value(&mut want, b"333");
        assert_eq!(outcome.output, want);
    }

    #[test]
    fn malformed_input_commits_nothing() {
        mock::reset();
        let outcome = mock::invoke(b"p\x01\x00k\x05\x00\x00\x00ab", super::rime_invoke);
        assert_eq!(outcome.text(), "input truncated at byte 8");
        let outcome = mock::invoke(b"p\x01\x00k\x00\x00\x00\x00x", super::rime_invoke);
        assert_eq!(outcome.text(), "unknown op 0x78 at byte 8");
        assert_eq!(mock::load(mock::OWN_NAME, b"k"), None);
    }
}
