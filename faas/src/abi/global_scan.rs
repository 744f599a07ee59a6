//! `scan` on a global namespace (`docs/global.md`, "Scan"): the records
//! of the local `scan` (`scan.rs`: same arguments, codes, record
//! encoding, END record, resumption by the guest), read from the
//! namespace's index in the cluster.
//!
//! One host call:
//!
//! 1. Check the arguments as the local call does; an empty range returns
//!    END without a read.
//! 2. Fetch at most [`fetch_limit`] keys from the lower bound, with their
//!    values and versions (one script on the namespace's slot), and wait:
//!    an executor suspends the invocation, a blocking caller parks.
//! 3. Merge them with the attempt's own writes in the fetched range
//!    (`Attempt::merged`).
//! 4. Write whole records into the guest's buffer, after those of earlier
//!    fetches, while they fit.
//! 5. Record what the guest saw (`Attempt::scanned`): the fetched range
//!    up to the last key written (or the first that did not fit), or all
//!    of it, with the keys the cluster held in it. The commit re-lists
//!    each range: a key inserted or deleted there by another commit is a
//!    conflict and the invocation re-runs.
//! 6. A record did not fit: return the bytes written (or what the first
//!    record needs). The fetch was cut at its limit: go back to 2 from
//!    after its last key, for the room left. Else the range is exhausted:
//!    END, if it fits.
//!
//! So a call fills the buffer as the local call does (it may take several
//! fetches), and a guest sees the same records from both.

use super::memory::{NONE, range};
use super::*;
use crate::limits::MAX_KEY_LEN;
use rime_abi::{SCAN_END, SCAN_END_LEN, SCAN_ENTRY_HEADER as HEADER, SCAN_FLAGS_ALL};
use rime_abi::{SCAN_HI_INCLUSIVE, SCAN_LO_EXCLUSIVE};
use rime_global::{GlobalError, Reply, ScanEntries as Fetched};
use std::ops::Bound;

/// Most keys one fetch asks for: a buffer of typical entries (the SDK's
/// first buffer is 16 KiB) without fetching far more than fits.
const MAX_FETCH_KEYS: usize = 256;

type C<'a> = Caller<'a, HostState>;
pub(super) type ScanArgs = (i32, i32, i32, i32, i32, i32, i32, i32);

/// One scan call between its fetches.
pub(super) struct ScanCall {
    ns: String,
    lo: Bound<Vec<u8>>,
    hi: Bound<Vec<u8>>,
    /// The guest's buffer: offset and length (checked at step 1).
    buf: usize,
    cap: usize,
    /// Bytes of records written by earlier fetches of this call.
    pos: usize,
    limit: usize,
}

/// What to do next.
pub(super) enum Step {
    Done(i32),
    /// Wait for this reply, then call [`resume`].
    Fetch(ScanCall, Reply<Fetched>),
}

/// Steps 1–2: the call's arguments and its first fetch.
pub(super) fn begin(c: &mut C<'_>, args: ScanArgs) -> Result<Step, wasmtime::Error> {
    let (ns, lo, lo_len, hi, hi_len, flags, buf, cap) = args;
    let mem = memory(c)?;
    let (data, st) = mem.data_and_store_mut(c);
    let lo_r = range("scan", data.len(), lo, lo_len)?;
    let hi_r = match hi_len {
        NONE => None,
        _ => Some(range("scan", data.len(), hi, hi_len)?),
    };
    let dst = range("scan", data.len(), buf, cap)?;
    let Some(h) = st.handle(ns) else {
        return Ok(Step::Done(ERR_BAD_HANDLE));
    };
    if lo_r.len() > MAX_KEY_LEN || hi_r.as_ref().is_some_and(|r| r.len() > MAX_KEY_LEN) {
        return Ok(Step::Done(ERR_KEY_TOO_LARGE));
    }
    let flags = flags as u32;
    if flags & !SCAN_FLAGS_ALL != 0 {
        return Ok(Step::Done(ERR_INVALID));
    }
    let lo_key = data[lo_r].to_vec();
    let lo = if flags & SCAN_LO_EXCLUSIVE != 0 {
        Bound::Excluded(lo_key)
    } else if lo_key.is_empty() {
        Bound::Unbounded
    } else {
        Bound::Included(lo_key)
    };
    let hi = match hi_r {
        None => Bound::Unbounded,
        Some(r) if flags & SCAN_HI_INCLUSIVE != 0 => Bound::Included(data[r].to_vec()),
        Some(r) => Bound::Excluded(data[r].to_vec()),
    };
    // One call writes at most 2^31 - 1 bytes.
    let cap = dst.len().min(i32::MAX as usize);
    let call = ScanCall {
        ns: super::global::ns_name(&st.function, h).to_string(),
        lo,
        hi,
        buf: dst.start,
        cap,
        pos: 0,
        limit: fetch_limit(cap),
    };
    if is_empty(&call.lo, &call.hi) {
        // An empty range holds no keys, now or ever: no read.
        let out = &mut data[call.buf..call.buf + call.cap];
        return Ok(Step::Done(end(out, 0)));
    }
    fetch(st, call)
}

/// Keys to fetch for a buffer of `cap` bytes: each record takes at least
/// its header.
fn fetch_limit(cap: usize) -> usize {
    (cap / HEADER).clamp(1, MAX_FETCH_KEYS)
}

/// Step 2: starts the fetch of `call`'s range.
fn fetch(st: &mut HostState, call: ScanCall) -> Result<Step, wasmtime::Error> {
    let g = super::global::attempt(&mut st.global)?;
    match g.scan_fetch(&call.ns, &call.lo, &call.hi, call.limit) {
        Ok(reply) => Ok(Step::Fetch(call, reply)),
        Err(e) => Err(g.fail(e)),
    }
}

/// Steps 3–5, given the fetch's reply.
pub(super) fn resume(
    c: &mut C<'_>,
    mut call: ScanCall,
    r: Result<Fetched, GlobalError>,
) -> Result<Step, wasmtime::Error> {
    let mem = memory(c)?;
    let (data, st) = mem.data_and_store_mut(c);
    let g = super::global::attempt(&mut st.global)?;
    let fetched = match r {
        Ok(f) => f,
        Err(e) => return Err(g.fail(crate::global::global_error(e))),
    };
    // 3. The range the fetch covered: up to its last key if it was cut
    //    at the limit, else all of it.
    let last = (fetched.len() >= call.limit)
        .then(|| fetched.last().map(|(k, _)| k.clone()))
        .flatten();
    let fetched_hi = match &last {
        Some(k) => Bound::Included(k.clone()),
        None => call.hi.clone(),
    };
    let shown = g.merged(&call.lo, &fetched_hi, &fetched);
    // 4. The records, after those of earlier fetches.
    let out = &mut data[call.buf + call.pos..call.buf + call.cap];
    let filled = fill(out, &shown);
    // 5. What the guest saw.
    let covered_hi = match filled.records {
        n if n == shown.len() => fetched_hi,
        0 => Bound::Included(shown[0].0.clone()),
        n => Bound::Included(shown[n - 1].0.clone()),
    };
    let lo = std::mem::replace(&mut call.lo, Bound::Unbounded);
    g.scanned(lo, covered_hi, fetched);
    if let Some(needed) = filled.stopped_at {
        // A record did not fit: whole records so far, or what the first
        // one needs.
        let written = call.pos + filled.bytes;
        return Ok(Step::Done(
            if written == 0 { needed } else { written } as i32
        ));
    }
    call.pos += filled.bytes;
    if let Some(k) = last {
        // Room left and more keys beyond: the next fetch, from after them.
        call.lo = Bound::Excluded(k);
        call.limit = fetch_limit(call.cap - call.pos);
        return fetch(st, call);
    }
    // Exhausted: the END record, if it fits; otherwise the guest resumes
    // after the last entry and the next call returns just END.
    let out = &mut data[call.buf..call.buf + call.cap];
    Ok(Step::Done(end(out, call.pos)))
}

/// How [`fill`] went.
struct Filled {
    /// Bytes of whole records written.
    bytes: usize,
    /// Records written.
    records: usize,
    /// A record did not fit: its size.
    stopped_at: Option<usize>,
}

/// Step 4: whole records of `shown` into `out` while they fit.
fn fill(out: &mut [u8], shown: &[(Vec<u8>, Arc<[u8]>)]) -> Filled {
    let mut pos = 0usize;
    for (i, (k, v)) in shown.iter().enumerate() {
        let rec = HEADER + k.len() + v.len();
        let Some(o) = out.get_mut(pos..pos + rec) else {
            return Filled {
                bytes: pos,
                records: i,
                stopped_at: Some(rec),
            };
        };
        let (header, body) = o.split_at_mut(HEADER);
        header[..4].copy_from_slice(&(k.len() as u32).to_le_bytes());
        header[4..].copy_from_slice(&(v.len() as u32).to_le_bytes());
        body[..k.len()].copy_from_slice(k);
        body[k.len()..].copy_from_slice(v);
        pos += rec;
    }
    Filled {
        bytes: pos,
        records: shown.len(),
        stopped_at: None,
    }
}

/// The call's result once the range is exhausted with `pos` bytes of
/// records in `out`: END after them if it fits.
fn end(out: &mut [u8], pos: usize) -> i32 {
    match out.get_mut(pos..pos + SCAN_END_LEN) {
        Some(o) => {
            o.copy_from_slice(&SCAN_END.to_le_bytes());
            (pos + SCAN_END_LEN) as i32
        }
        None if pos == 0 => SCAN_END_LEN as i32,
        None => pos as i32,
    }
}

/// Whether no key lies between `lo` and `hi`.
fn is_empty(lo: &Bound<Vec<u8>>, hi: &Bound<Vec<u8>>) -> bool {
    match (lo, hi) {
        (Bound::Unbounded, _) | (_, Bound::Unbounded) => false,
        (Bound::Included(l), Bound::Included(h)) => l > h,
        (Bound::Included(l) | Bound::Excluded(l), Bound::Included(h) | Bound::Excluded(h)) => {
            l >= h
        }
    }
}
