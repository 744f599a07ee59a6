//! `wasi:keyvalue` and `rime:faaslet/scan` on a global function's buckets
//! (`docs/global.md`, "Components"): the operations of `kv.rs`, read and
//! written through the attempt's [`Attempt`] (the namespace's copy in the
//! node's Redis Cluster) instead of the local transaction, as ABI v1's
//! host calls on a global namespace do (`crate::abi::global`,
//! `global_scan.rs`).
//!
//! The same checks, limits and errors as on a local bucket (key and value
//! sizes, grants, the write set); the attempt's own writes show in later
//! reads, its reads repeat, and its commit (`crate::invoke`, step 8) is
//! one script on the namespace's slot that validates every read and
//! every range listed (a phantom re-runs the invocation).
//!
//! A read the local tier cannot serve:
//!
//! 1. Runs the operation. Done, or the attempt's end: that is the result.
//! 2. It stopped for a key of the cluster ([`Stop::Fetch`], having done
//!    nothing): awaits the fetch, bounded by the attempt's deadline. On an
//!    executor the invocation suspends; a blocking caller's thread, which
//!    drives the attempt's fiber (`exec::block_on`), parks.
//! 3. Records the reply in the attempt (an error ends the attempt with a
//!    trap; `invoke` reports the error), and goes back to 1.
//!
//! `set` and `delete` read nothing and never wait (a delete is blind, as
//! ABI v1's: it counts in the write set whether or not the key exists).

use super::ComponentState;
use super::kv::{Bucket, MAX_REPLY_BYTES, R, other};
use crate::error::InvokeError;
use crate::global::{Attempt, Stop, global_error};
use rime_global::ScanEntries;
use std::ops::Bound;

/// Most keys one fetch of a listing asks the cluster for (as
/// `abi::global_scan`'s): a page of keys without fetching far more than
/// the caller takes.
const MAX_FETCH_KEYS: usize = 256;

impl ComponentState {
    /// Whether the function's buckets are global: its attempt has a
    /// global attempt (`crate::global`).
    pub(super) fn is_global(&self) -> bool {
        self.host.global.is_some()
    }

    /// The attempt's global half; `Err` if there is none (a bug: only
    /// global functions' operations come here).
    fn attempt(&mut self) -> Result<&mut Attempt, InvokeError> {
        self.host.global.as_deref_mut().ok_or_else(|| {
            InvokeError::Internal("global keyvalue call without a global attempt".into())
        })
    }

    /// Ends the attempt with `e`: the trap that unwinds the guest
    /// (`component::attempt` reports `e`).
    fn global_fail(&mut self, e: InvokeError) -> wasmtime::Error {
        match self.host.global.as_deref_mut() {
            Some(g) => g.fail(e),
            None => wasmtime::Error::msg(e.to_string()),
        }
    }

    /// Steps 1–3 of the module docs: runs `op` until it does not stop for
    /// a key of the cluster.
    async fn fetching<T>(
        &mut self,
        mut op: impl FnMut(&mut Self) -> Result<T, Stop>,
    ) -> wasmtime::Result<T> {
        loop {
            let fetch = match op(self) {
                Ok(t) => return Ok(t),
                Err(Stop::Failed(e)) => return Err(self.global_fail(e)),
                Err(Stop::Fetch(f)) => f,
            };
            let r = fetch.reply.await;
            match self.attempt() {
                Ok(g) => g.fetched(fetch.key, r)?,
                Err(e) => return Err(self.global_fail(e)),
            }
        }
    }

    /// The value of `key` (checked by the caller) as the attempt sees it.
    pub(super) async fn global_read(&mut self, b: Bucket, key: &str) -> R<Option<Vec<u8>>> {
        let f = self.host.function.clone();
        let v = self
            .fetching(|s| {
                let g = s.attempt().map_err(Stop::Failed)?;
                g.value(f.ns_name(b.grant), key.as_bytes())
            })
            .await?;
        Ok(Ok(v.map(|v| v.to_vec())))
    }

    /// Buffers a write of `key` (`None`: a blind delete) after the checks
    /// of a local write, and counts it in the write set.
    pub(super) fn global_write(&mut self, b: Bucket, key: &str, value: Option<&[u8]>) -> R<()> {
        let a = match self.admit(b, key, value.map_or(0, <[u8]>::len)) {
            Ok(a) => a,
            Err(e) => return Ok(Err(e)),
        };
        let f = self.host.function.clone();
        let written = self
            .attempt()
            .and_then(|g| g.write(f.ns_name(b.grant), key.as_bytes(), value));
        if let Err(e) = written {
            return Err(self.global_fail(e));
        }
        self.host.writes.record(b.tree, key.as_bytes(), a);
        Ok(Ok(()))
    }

    /// `atomics.increment`: reads the key through the attempt, then
    /// writes the sum (an 8-byte little-endian i64, as locally).
    pub(super) async fn global_increment(&mut self, b: Bucket, key: &str, delta: i64) -> R<i64> {
        let f = self.host.function.clone();
        self.fetching(|s| {
            // Checked before the read, as locally: a refused write reads
            // nothing. Nothing is recorded until the read succeeded.
            let a = match s.admit(b, key, 8) {
                Ok(a) => a,
                Err(e) => return Ok(Err(e)),
            };
            let g = s.attempt().map_err(Stop::Failed)?;
            let ns = f.ns_name(b.grant);
            let cur = match g
                .value(ns, key.as_bytes())?
                .as_deref()
                .map(<[u8; 8]>::try_from)
            {
                None => 0,
                Some(Ok(bytes)) => i64::from_le_bytes(bytes),
                Some(Err(_)) => return Ok(Err(other("the value is not an 8-byte i64".into()))),
            };
            let Some(new) = cur.checked_add(delta) else {
                return Ok(Err(other("the increment overflows an i64".into())));
            };
            g.write(ns, key.as_bytes(), Some(&new.to_le_bytes()))
                .map_err(Stop::Failed)?;
            s.host.writes.record(b.tree, key.as_bytes(), a);
            Ok(Ok(new))
        })
        .await
    }

    /// `atomics.swap`'s write: `Ok(false)` if the key no longer holds
    /// `current` (only the attempt's own writes can have changed it).
    pub(super) async fn global_swap(
        &mut self,
        b: Bucket,
        key: &str,
        current: Option<&[u8]>,
        value: &[u8],
    ) -> R<bool> {
        let f = self.host.function.clone();
        self.fetching(|s| {
            let a = match s.admit(b, key, value.len()) {
                Ok(a) => a,
                Err(e) => return Ok(Err(e)),
            };
            let g = s.attempt().map_err(Stop::Failed)?;
            let ns = f.ns_name(b.grant);
            if g.value(ns, key.as_bytes())?.as_deref() != current {
                return Ok(Ok(false));
            }
            g.write(ns, key.as_bytes(), Some(value))
                .map_err(Stop::Failed)?;
            s.host.writes.record(b.tree, key.as_bytes(), a);
            Ok(Ok(true))
        })
        .await
    }

    /// Entries of `b` in `(lo, hi)`, in key order, at most `limit` and
    /// about `MAX_REPLY_BYTES` (what `kv.rs`'s local listing returns),
    /// from the namespace's index in the cluster:
    ///
    /// 1. Fetch at most `min(limit left, MAX_FETCH_KEYS)` keys from `lo`,
    ///    with values and versions (one script on the namespace's slot),
    ///    and await them.
    /// 2. Merge the attempt's own writes into the fetched range
    ///    (`Attempt::merged`).
    /// 3. Take entries while the limits allow (keys must be UTF-8).
    /// 4. Record what the caller saw (`Attempt::scanned`): the range up
    ///    to the last entry taken (or the first not taken), or the whole
    ///    fetched range, with the keys the cluster held in it; the commit
    ///    re-lists it.
    /// 5. Stopped at a limit or a bad key: done. The fetch was cut at its
    ///    limit: back to 1 from after its last key. Else the range is
    ///    exhausted.
    pub(super) async fn global_entries(
        &mut self,
        b: Bucket,
        lo: Bound<&[u8]>,
        hi: Bound<&[u8]>,
        limit: usize,
        values: bool,
    ) -> R<Vec<(String, Vec<u8>)>> {
        if limit == 0 {
            return Ok(Ok(Vec::new()));
        }
        let f = self.host.function.clone();
        let mut listing = Listing {
            lo: lo.map(<[u8]>::to_vec),
            hi: hi.map(<[u8]>::to_vec),
            limit,
            values,
            out: Vec::new(),
            bytes: 0,
            stopped: false,
            bad_key: None,
        };
        loop {
            // 1. Fetch.
            let want = (limit - listing.out.len()).min(MAX_FETCH_KEYS);
            let ns = f.ns_name(b.grant);
            let reply = self
                .attempt()
                .and_then(|g| g.scan_fetch(ns, &listing.lo, &listing.hi, want));
            let reply = match reply {
                Ok(r) => r,
                Err(e) => return Err(self.global_fail(e)),
            };
            let fetched = match reply.await {
                Ok(fetched) => fetched,
                Err(e) => return Err(self.global_fail(global_error(e))),
            };
            let g = match self.attempt() {
                Ok(g) => g,
                Err(e) => return Err(self.global_fail(e)),
            };
            // 2–4.
            let last = listing.take(g, fetched, want);
            // 5.
            if let Some(k) = listing.bad_key {
                return Ok(Err(other(format!(
                    "key {} is not UTF-8: wasi:keyvalue keys are strings",
                    String::from_utf8_lossy(&k).escape_debug()
                ))));
            }
            match last {
                Some(k) if !listing.full() => listing.lo = Bound::Excluded(k),
                _ => return Ok(Ok(listing.out)),
            }
        }
    }
}

/// A listing of a global bucket between its fetches.
struct Listing {
    /// Where the next fetch starts.
    lo: Bound<Vec<u8>>,
    hi: Bound<Vec<u8>>,
    limit: usize,
    values: bool,
    out: Vec<(String, Vec<u8>)>,
    /// Bytes of `out` (keys, and values if asked for).
    bytes: usize,
    /// An entry was refused (a limit or a bad key): the listing ends.
    stopped: bool,
    /// The first key that is not UTF-8: the listing's error.
    bad_key: Option<Vec<u8>>,
}

impl Listing {
    /// No further fetch: an entry was refused, or `limit` reached.
    fn full(&self) -> bool {
        self.stopped || self.out.len() >= self.limit
    }

    /// Takes the entry `k`, `v` if the limits allow, as `kv.rs`'s local
    /// listing does: at most `limit` entries, and past the first, at most
    /// `MAX_REPLY_BYTES`; a key that is not UTF-8 stops the listing.
    fn admits(&mut self, k: &[u8], v: &[u8]) -> bool {
        let over = self.bytes > 0 && self.bytes + k.len() + v.len() > MAX_REPLY_BYTES;
        if self.out.len() >= self.limit || over {
            self.stopped = true;
            return false;
        }
        let Ok(key) = String::from_utf8(k.to_vec()) else {
            self.bad_key = Some(k.to_vec());
            self.stopped = true;
            return false;
        };
        self.bytes += k.len() + if self.values { v.len() } else { 0 };
        let value = if self.values { v.to_vec() } else { Vec::new() };
        self.out.push((key, value));
        true
    }

    /// Steps 2–4 for one fetch of at most `want` keys: returns the fetch's
    /// last key if it was cut at `want` (the next fetch starts after it).
    fn take(&mut self, g: &mut Attempt, fetched: ScanEntries, want: usize) -> Option<Vec<u8>> {
        let last = (fetched.len() >= want)
            .then(|| fetched.last().map(|(k, _)| k.clone()))
            .flatten();
        let fetched_hi = match &last {
            Some(k) => Bound::Included(k.clone()),
            None => self.hi.clone(),
        };
        let shown = g.merged(&self.lo, &fetched_hi, &fetched);
        let taken = shown.iter().take_while(|(k, v)| self.admits(k, v)).count();
        let covered_hi = match taken {
            n if n == shown.len() => fetched_hi,
            0 => Bound::Included(shown[0].0.clone()),
            n => Bound::Included(shown[n - 1].0.clone()),
        };
        let lo = std::mem::replace(&mut self.lo, Bound::Unbounded);
        g.scanned(lo, covered_hi, fetched);
        last
    }
}
