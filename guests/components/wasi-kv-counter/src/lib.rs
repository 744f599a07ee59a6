//! `wasi-kv-counter`: counters over `wasi:keyvalue`, and nothing else of
//! the host's. It uses only `wasi:keyvalue/store` and `wasi:keyvalue/atomics`
//! (0.2.0-draft2), so it runs unchanged on any host of those interfaces;
//! Rime serves it from a namespace the function is granted.
//!
//! Input: a command, text, words separated by one space:
//!
//! - `incr BUCKET KEY`: adds 1 to `KEY` (an 8-byte little-endian i64, the
//!   layout of `atomics.increment`), answers the new value in decimal.
//! - `add BUCKET KEY N`: adds `N` (decimal, may be negative), answers the
//!   new value.
//! - `transfer BUCKET FROM TO N`: moves `N` from `FROM` to `TO` with two
//!   increments, answers `ok`; fails with `overdraft ...` (after the first
//!   increment, so the host must drop it) if `FROM` would go below 0.
//! - `get BUCKET KEY`: the value's bytes, or `none`.
//! - `set BUCKET KEY VALUE`: stores `VALUE`'s bytes, answers `ok`.
//! - `fail BUCKET KEY`: increments, then fails with an error.
//! - `panic BUCKET KEY`: increments, then panics (a trap).
//! - `keys BUCKET`: every key (all `list-keys` pages), comma-separated.
//! - `edit-keys BUCKET K=V,-K,...`: sets `K` to `V` (`K=V`) or deletes `K`
//!   (`-K`), in order, then answers every key as `keys` does: the
//!   invocation's own writes in its listing.
//! - `swap BUCKET KEY VALUE`: a CAS of `KEY` to `VALUE` from the value it
//!   reads, answers `ok`.
//! - `set-many BUCKET K=V,...`, `delete-many BUCKET K,...`: `ok`;
//!   `get-many BUCKET K,...`: `K=V` or `K=none` for each, comma-separated.
//! - `noop`: answers nothing; `get-n BUCKET KEY N`: `get`s `KEY` `N` times
//!   and answers the last value's length (for benchmarks of the host).
//!
//! `fail` and `panic` show what a host must do with the increment before
//! them.

wit_bindgen::generate!({
    path: "../../../faas/wit",
    world: "rime:faaslet/faaslet",
    generate_all,
});

use exports::rime::faaslet::handler::Guest;
use wasi::keyvalue::{atomics, batch, store};

struct Counter;

impl Guest for Counter {
    fn handle(input: Vec<u8>) -> Result<Vec<u8>, String> {
        let text = String::from_utf8(input).map_err(|_| "input is not UTF-8".to_string())?;
        let words: Vec<&str> = text.split(' ').collect();
        match words.as_slice() {
            ["incr", bucket, key] => Ok(increment(bucket, key)?.to_string().into_bytes()),
            ["get", bucket, key] => {
                let value = open(bucket)?.get(key).map_err(describe)?;
                Ok(value.unwrap_or_else(|| b"none".to_vec()))
            }
            ["set", bucket, key, value] => {
                open(bucket)?.set(key, value.as_bytes()).map_err(describe)?;
                Ok(b"ok".to_vec())
            }
            ["add", bucket, key, n] => {
                let n: i64 = n.parse().map_err(|_| format!("not an amount: {n:?}"))?;
                let v = atomics::increment(&open(bucket)?, key, n).map_err(describe)?;
                Ok(v.to_string().into_bytes())
            }
            ["transfer", bucket, from, to, n] => {
                let n: i64 = n.parse().map_err(|_| format!("not an amount: {n:?}"))?;
                let b = open(bucket)?;
                let left = atomics::increment(&b, from, -n).map_err(describe)?;
                if left < 0 {
                    return Err(format!("overdraft: {from} would hold {left}"));
                }
                atomics::increment(&b, to, n).map_err(describe)?;
                Ok(b"ok".to_vec())
            }
            ["edit-keys", bucket, edits] => {
                let b = open(bucket)?;
                for edit in edits.split(',') {
                    match (edit.strip_prefix('-'), edit.split_once('=')) {
                        (Some(key), _) => b.delete(key).map_err(describe)?,
                        (None, Some((k, v))) => b.set(k, v.as_bytes()).map_err(describe)?,
                        (None, None) => return Err(format!("not K=V or -K: {edit:?}")),
                    }
                }
                Ok(keys(&b)?.join(",").into_bytes())
            }
            ["fail", bucket, key] => {
                let n = increment(bucket, key)?;
                Err(format!("failed on purpose after incrementing to {n}"))
            }
            ["keys", bucket] => Ok(keys(&open(bucket)?)?.join(",").into_bytes()),
            ["swap", bucket, key, value] => {
                let cas = atomics::Cas::new(&open(bucket)?, key).map_err(describe)?;
                match atomics::swap(cas, value.as_bytes()) {
                    Ok(()) => Ok(b"ok".to_vec()),
                    Err(atomics::CasError::StoreError(e)) => Err(describe(e)),
                    Err(atomics::CasError::CasFailed(_)) => Err("the value changed".into()),
                }
            }
            ["set-many", bucket, pairs] => {
                let pairs: Vec<(String, Vec<u8>)> = (pairs.split(','))
                    .filter_map(|p| p.split_once('='))
                    .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
                    .collect();
                batch::set_many(&open(bucket)?, &pairs).map_err(describe)?;
                Ok(b"ok".to_vec())
            }
            ["get-many", bucket, list] => {
                let names: Vec<String> = list.split(',').map(String::from).collect();
                let got = batch::get_many(&open(bucket)?, &names).map_err(describe)?;
                let shown: Vec<String> = (names.iter().zip(got))
                    .map(|(k, v)| match v {
                        Some((_, v)) => format!("{k}={}", String::from_utf8_lossy(&v)),
                        None => format!("{k}=none"),
                    })
                    .collect();
                Ok(shown.join(",").into_bytes())
            }
            ["delete-many", bucket, list] => {
                let names: Vec<String> = list.split(',').map(String::from).collect();
                batch::delete_many(&open(bucket)?, &names).map_err(describe)?;
                Ok(b"ok".to_vec())
            }
            ["noop"] => Ok(Vec::new()),
            ["get-n", bucket, key, n] => {
                let n: u32 = n.parse().map_err(|_| format!("not a count: {n:?}"))?;
                let b = open(bucket)?;
                let mut len = 0;
                for _ in 0..n {
                    len = b.get(key).map_err(describe)?.map_or(0, |v| v.len());
                }
                Ok(len.to_string().into_bytes())
            }
            ["panic", bucket, key] => {
                let n = increment(bucket, key)?;
                panic!("panicked on purpose after incrementing to {n}")
            }
            _ => Err(format!(
                "unknown command {text:?}: incr|get|set|fail|panic BUCKET KEY [VALUE], add|transfer, keys|edit-keys|swap|set-many|get-many|delete-many, noop, get-n BUCKET KEY N"
            )),
        }
    }
}

fn open(bucket: &str) -> Result<store::Bucket, String> {
    store::open(bucket).map_err(|e| format!("cannot open bucket {bucket:?}: {}", describe(e)))
}

/// Every key of `bucket`, following the cursor.
fn keys(bucket: &store::Bucket) -> Result<Vec<String>, String> {
    let mut all = Vec::new();
    let mut cursor = None;
    loop {
        let page = bucket.list_keys(cursor.as_deref()).map_err(describe)?;
        all.extend(page.keys);
        match page.cursor {
            Some(c) => cursor = Some(c),
            None => return Ok(all),
        }
    }
}

fn increment(bucket: &str, key: &str) -> Result<i64, String> {
    atomics::increment(&open(bucket)?, key, 1).map_err(describe)
}

fn describe(e: store::Error) -> String {
    match e {
        store::Error::NoSuchStore => "no such store".into(),
        store::Error::AccessDenied => "access denied".into(),
        store::Error::Other(m) => m,
    }
}

export!(Counter);
