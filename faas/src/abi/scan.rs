//! `scan`: records straight from the pages into the guest's buffer.
//!
//! The host keeps no cursor: the guest resumes from its last key. Bounds
//! go to the stack (they may overlap the destination); the B+tree hands
//! each entry to a closure that writes its record into guest memory, the
//! one copy, and stops at the first record that does not fit.

use super::memory::{NONE, range};
use super::*;
use crate::limits::MAX_KEY_LEN;
use rime_storage::ScanEnd;
use std::ops::{Bound, ControlFlow};
use wasmtime::Linker;

/// Bytes of a page: how many leaves a scan buffer can fill, at most.
const PAGE_SIZE: usize = 4096;

use rime_abi::{SCAN_END, SCAN_END_LEN, SCAN_ENTRY_HEADER as HEADER, SCAN_FLAGS_ALL};
use rime_abi::{SCAN_HI_INCLUSIVE, SCAN_LO_EXCLUSIVE};

pub(super) fn define(l: &mut Linker<HostState>, calls: HostCalls) -> Result<(), wasmtime::Error> {
    match calls {
        // A scan does not wait for a leaf not in memory
        // (`Tx::scan_resumable`): met after some records, the call returns
        // them (the guest resumes after the last, as when its buffer is
        // full) and the leaf is requested; met first, the call suspends
        // for it and scans again, the guest seeing only that run.
        HostCalls::Suspending => {
            l.func_wrap_async(IMPORT_MODULE, "scan", suspending(scan))?;
        }
        HostCalls::Waiting => {
            l.func_wrap(IMPORT_MODULE, "scan", scan_waiting)?;
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)] // the ABI's signature
fn scan_waiting(
    mut c: Caller<'_, HostState>,
    ns: i32,
    lo: i32,
    lo_len: i32,
    hi: i32,
    hi_len: i32,
    flags: i32,
    buf: i32,
    cap: i32,
) -> Result<i32, wasmtime::Error> {
    scan(&mut c, (ns, lo, lo_len, hi, hi_len, flags, buf, cap))
}

type ScanArgs = (i32, i32, i32, i32, i32, i32, i32, i32);

fn scan(
    caller: &mut Caller<'_, HostState>,
    (ns, lo, lo_len, hi, hi_len, flags, buf, cap): ScanArgs,
) -> Result<i32, wasmtime::Error> {
    let mem = memory(caller)?;
    let (data, st) = mem.data_and_store_mut(caller);
    let lo_r = range("scan", data.len(), lo, lo_len)?;
    let hi_r = if hi_len == NONE {
        None
    } else {
        Some(range("scan", data.len(), hi, hi_len)?)
    };
    let dst = range("scan", data.len(), buf, cap)?;
    let Some(h) = st.handle(ns) else {
        return Ok(ERR_BAD_HANDLE);
    };
    if lo_r.len() > MAX_KEY_LEN || hi_r.as_ref().is_some_and(|r| r.len() > MAX_KEY_LEN) {
        return Ok(ERR_KEY_TOO_LARGE);
    }
    let flags = flags as u32;
    if flags & !SCAN_FLAGS_ALL != 0 {
        return Ok(ERR_INVALID);
    }
    let mut lo_buf = [0u8; MAX_KEY_LEN];
    let lo_key = &mut lo_buf[..lo_r.len()];
    lo_key.copy_from_slice(&data[lo_r]);
    let mut hi_buf = [0u8; MAX_KEY_LEN];
    let hi_key = match hi_r {
        Some(r) => {
            let k = &mut hi_buf[..r.len()];
            k.copy_from_slice(&data[r]);
            Some(&*k)
        }
        None => None,
    };
    let lo_b = if flags & SCAN_LO_EXCLUSIVE != 0 {
        Bound::Excluded(&*lo_key)
    } else if lo_key.is_empty() {
        Bound::Unbounded
    } else {
        Bound::Included(&*lo_key)
    };
    let hi_b = match hi_key {
        None => Bound::Unbounded,
        Some(k) if flags & SCAN_HI_INCLUSIVE != 0 => Bound::Included(k),
        Some(k) => Bound::Excluded(k),
    };
    // One call writes at most 2^31 - 1 bytes.
    let cap = dst.len().min(i32::MAX as usize);
    let out = &mut data[dst.start..dst.start + cap];
    let mut pos = 0usize;
    let mut needed = 0usize;
    let mut stopped = false;
    // An empty range (lo above hi) holds no keys, now or ever: no read.
    let empty = match (lo_b, hi_b) {
        (Bound::Unbounded, _) | (_, Bound::Unbounded) => false,
        (Bound::Included(l), Bound::Included(h)) => l > h,
        (Bound::Included(l) | Bound::Excluded(l), Bound::Included(h) | Bound::Excluded(h)) => {
            l >= h
        }
    };
    let r = if empty {
        Ok(ScanEnd::Finished)
    } else {
        st.tx().scan_resumable(h.tree, lo_b, hi_b, |k, v| {
            let rec = HEADER + k.len() + v.len();
            let Some(o) = out.get_mut(pos..pos + rec) else {
                if pos == 0 {
                    needed = rec;
                }
                stopped = true;
                return ControlFlow::Break(());
            };
            let (header, body) = o.split_at_mut(HEADER);
            header[..4].copy_from_slice(&(k.len() as u32).to_le_bytes());
            header[4..].copy_from_slice(&(v.len() as u32).to_le_bytes());
            body[..k.len()].copy_from_slice(k);
            body[k.len()..].copy_from_slice(v);
            pos += rec;
            ControlFlow::Continue(())
        })
    };
    // Leaves the rest of the scan needs, up to what the buffer can take:
    // requested now, read while the guest works through these records.
    let leaves = cap.div_ceil(PAGE_SIZE).max(1);
    let read_ahead = |st: &HostState| {
        let ahead = st.txn.read_ahead();
        for &m in &ahead[..ahead.len().min(leaves)] {
            crate::exec::io::prefetch(m);
        }
    };
    match r {
        Err(e @ TxError::WouldWait(_)) => {
            read_ahead(st);
            return Err(st.abandon(e));
        }
        Err(e) => return Err(st.abandon(e)),
        Ok(ScanEnd::Paused(miss)) => {
            crate::exec::io::prefetch(miss);
            read_ahead(st);
            stopped = true;
        }
        Ok(ScanEnd::Finished) => {}
    }
    if stopped {
        // Some record did not fit: whole records so far, or what the
        // first one needs.
        return Ok(if pos == 0 { needed } else { pos } as i32);
    }
    // Exhausted: the END record, if it fits; otherwise the guest resumes
    // after the last entry and the next call returns just END.
    match out.get_mut(pos..pos + SCAN_END_LEN) {
        Some(o) => {
            o.copy_from_slice(&SCAN_END.to_le_bytes());
            Ok((pos + SCAN_END_LEN) as i32)
        }
        None if pos == 0 => Ok(SCAN_END_LEN as i32),
        None => Ok(pos as i32),
    }
}
