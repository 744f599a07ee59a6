//! `pushdown`: aggregates a key range inside the guest, next to the data.
//!
//! Instead of shipping every value to the caller, the faaslet scans the range
//! (the host copies entries from pages straight into the scan buffer) and
//! returns only a few numbers: the storage-pushdown pattern.
//!
//! - Input: `lo_len: u16 LE | lo | hi_len: u16 LE | hi`, the range `[lo, hi)`;
//!   `hi_len = 0` means no upper bound.
//! - Output: JSON `{"count":C,"sum":S,"min":M,"max":X,"skipped":K}` over the
//!   values that are i64 (8 bytes, LE); `min`/`max` are `null` when `C = 0`;
//!   `skipped` counts values of another length. `sum` is exact (i128).
#![cfg_attr(not(test), no_std)]

use core::fmt::{self, Write};
use core::ops::Bound;
use rime_sdk::{Namespace, String, Vec, faaslet};

/// Scan buffer: range aggregation reads many entries, so a larger buffer than
/// the SDK's default means fewer host calls.
const SCAN_BUFFER: usize = 64 << 10;

#[derive(Debug)]
enum PushdownError {
    BadInput,
    Host(rime_sdk::Error),
}

impl fmt::Display for PushdownError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PushdownError::BadInput => {
                f.write_str("input: lo_len u16 LE | lo | hi_len u16 LE | hi")
            }
            PushdownError::Host(e) => write!(f, "host: {e}"),
        }
    }
}

/// Running aggregate over i64 values.
#[derive(Default)]
struct Stats {
    count: u64,
    sum: i128,
    min: Option<i64>,
    max: Option<i64>,
    skipped: u64,
}

impl Stats {
    fn add(&mut self, value: &[u8]) {
        let Ok(bytes) = <[u8; 8]>::try_from(value) else {
            self.skipped += 1;
            return;
        };
        let v = i64::from_le_bytes(bytes);
        self.count += 1;
        self.sum += i128::from(v);
        self.min = Some(self.min.map_or(v, |m| m.min(v)));
        self.max = Some(self.max.map_or(v, |m| m.max(v)));
    }
}

struct Json<'a>(Option<&'a i64>);

impl fmt::Display for Json<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(v) => write!(f, "{v}"),
            None => f.write_str("null"),
        }
    }
}

/// Splits `u16 LE length | bytes` off the front of `input`.
fn take_prefixed(input: &[u8]) -> Option<(&[u8], &[u8])> {
    let (len, rest) = input.split_first_chunk::<2>()?;
    let len = usize::from(u16::from_le_bytes(*len));
    Some((rest.get(..len)?, rest.get(len..)?))
}

#[faaslet]
fn pushdown(input: &[u8]) -> Result<Vec<u8>, PushdownError> {
    let (lo, rest) = take_prefixed(input).ok_or(PushdownError::BadInput)?;
    let (hi, rest) = take_prefixed(rest).ok_or(PushdownError::BadInput)?;
    if !rest.is_empty() {
        return Err(PushdownError::BadInput);
    }
    let hi = if hi.is_empty() {
        Bound::Unbounded
    } else {
        Bound::Excluded(hi)
    };

    let mut stats = Stats::default();
    let mut scan = Namespace::OWN
        .scan(Bound::Included(lo), hi)
        .with_buffer_capacity(SCAN_BUFFER);
    while let Some(entry) = scan.next_entry() {
        let (_key, value) = entry.map_err(PushdownError::Host)?;
        stats.add(value);
    }

    let mut out = String::new();
    let Stats {
        count,
        sum,
        min,
        max,
        skipped,
    } = stats;
    let _ = write!(
        out,
        r#"{{"count":{count},"sum":{sum},"min":{},"max":{},"skipped":{skipped}}}"#,
        Json(min.as_ref()),
        Json(max.as_ref())
    ); // writing to a String cannot fail
    Ok(out.into_bytes())
}

// The mock host serves the SDK's calls on native targets only.
#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use rime_sdk::mock;

    fn range(lo: &[u8], hi: &[u8]) -> Vec<u8> {
        let mut input = Vec::new();
        for part in [lo, hi] {
            input.extend_from_slice(&(part.len() as u16).to_le_bytes());
            input.extend_from_slice(part);
        }
        input
    }

    #[test]
    fn aggregates_the_range_only() {
        mock::reset();
        for (k, v) in [("t/1", 5i64), ("t/2", -3), ("t/3", 10), ("u/1", 1000)] {
            mock::store(mock::OWN_NAME, k.as_bytes(), &v.to_le_bytes());
        }
        mock::store(mock::OWN_NAME, b"t/4", b"text");
        let out = mock::invoke(&range(b"t/", b"t0"), super::rime_invoke).text();
        assert_eq!(out, r#"{"count":3,"sum":12,"min":-3,"max":10,"skipped":1}"#);
        let out = mock::invoke(&range(b"v", b""), super::rime_invoke).text();
        assert_eq!(
            out,
            r#"{"count":0,"sum":0,"min":null,"max":null,"skipped":0}"#
        );
        let bad = mock::invoke(b"\x05\x00ab", super::rime_invoke);
        assert_eq!(bad.code, rime_sdk::abi::RESULT_ERROR);
    }
}
