//! The namespace host calls of a global function (`crate::global`,
//! `docs/global.md`): `get`, `put`, `delete`, `add`, `cas` read and write
//! through the attempt's [`crate::global::Attempt`] instead of the local
//! transaction; `scan` is refused. Argument checks, codes and write-set
//! accounting are those of the local calls (`state.rs`).
//!
//! They are plain host functions in both linkers: a read the local tier
//! cannot serve waits for the cluster on the calling thread (bounded by
//! the attempt's deadline), on an executor too (`docs/global.md`, "Gaps").

use super::memory::{optional_range, range};
use super::state::writable;
use super::*;
use crate::error::InvokeError;
use crate::limits::MAX_KEY_LEN;
use wasmtime::Linker;

pub(super) fn define(l: &mut Linker<HostState>) -> Result<(), wasmtime::Error> {
    l.func_wrap(IMPORT_MODULE, "get", get)?;
    l.func_wrap(IMPORT_MODULE, "put", put)?;
    l.func_wrap(IMPORT_MODULE, "delete", delete)?;
    l.func_wrap(IMPORT_MODULE, "add", add)?;
    l.func_wrap(IMPORT_MODULE, "cas", cas)?;
    l.func_wrap(IMPORT_MODULE, "scan", scan)?;
    Ok(())
}

type C<'a> = Caller<'a, HostState>;

/// The attempt of a global function's store (set by `invoke`).
fn attempt(
    g: &mut Option<Box<crate::global::Attempt>>,
) -> Result<&mut crate::global::Attempt, wasmtime::Error> {
    g.as_deref_mut()
        .ok_or_else(|| wasmtime::Error::msg("global host call without a global attempt"))
}

/// The name of the namespace behind handle `h`.
fn ns_name(f: &crate::registry::Function, h: Handle) -> &str {
    match f.grants.get(usize::from(h.grant)) {
        Some(g) => &g.name,
        None => &f.name, // u8::MAX: the own namespace
    }
}

fn get(mut c: C<'_>, ns: i32, key: i32, key_len: i32, buf: i32, cap: i32) -> R {
    let mem = memory(&c)?;
    let (data, st) = mem.data_and_store_mut(&mut c);
    let k = range("get", data.len(), key, key_len)?;
    let dst = range("get", data.len(), buf, cap)?;
    let Some(h) = st.handle(ns) else {
        return Ok(ERR_BAD_HANDLE);
    };
    if k.len() > MAX_KEY_LEN {
        return Ok(ERR_KEY_TOO_LARGE);
    }
    let g = attempt(&mut st.global)?;
    let v = match g.value(ns_name(&st.function, h), &data[k]) {
        Ok(Some(v)) => v,
        Ok(None) => return Ok(ERR_NOT_FOUND),
        Err(e) => return Err(g.fail(e)),
    };
    if let Some(d) = data[dst].get_mut(..v.len()) {
        d.copy_from_slice(&v);
    }
    Ok(v.len() as i32) // values are far below 2 GiB
}

/// Buffers a checked write (`value` `None`: delete) and counts it in the
/// write set.
fn write(st: &mut HostState, ns: i32, key: &[u8], value: Option<&[u8]>) -> R {
    let (tree, a) = match writable(st, ns, key, value.map_or(0, <[u8]>::len)) {
        Ok(t) => t,
        Err(code) => return Ok(code),
    };
    let Some(h) = st.handle(ns) else {
        return Ok(ERR_BAD_HANDLE);
    };
    let g = attempt(&mut st.global)?;
    if let Err(e) = g.write(ns_name(&st.function, h), key, value) {
        return Err(g.fail(e));
    }
    st.writes.record(tree, key, a);
    Ok(0)
}

fn put(mut c: C<'_>, ns: i32, key: i32, key_len: i32, val: i32, val_len: i32) -> R {
    let mem = memory(&c)?;
    let (data, st) = mem.data_and_store_mut(&mut c);
    let k = range("put", data.len(), key, key_len)?;
    let v = range("put", data.len(), val, val_len)?;
    write(st, ns, &data[k], Some(&data[v]))
}

/// A blind delete: nothing read, nothing validated.
fn delete(mut c: C<'_>, ns: i32, key: i32, key_len: i32) -> R {
    let mem = memory(&c)?;
    let (data, st) = mem.data_and_store_mut(&mut c);
    let k = range("delete", data.len(), key, key_len)?;
    write(st, ns, &data[k], None)
}

/// The current value of a key about to be written (checks first, as
/// `writable` does, so a refused write reads nothing).
fn current(
    st: &mut HostState,
    ns: i32,
    key: &[u8],
    val_len: usize,
) -> Result<Option<Arc<[u8]>>, Result<i32, wasmtime::Error>> {
    let Some(h) = st.handle(ns) else {
        return Err(Ok(ERR_BAD_HANDLE));
    };
    if !h.writable {
        return Err(Ok(ERR_DENIED));
    }
    if key.len() > MAX_KEY_LEN {
        return Err(Ok(ERR_KEY_TOO_LARGE));
    }
    if val_len > crate::limits::MAX_VALUE_LEN {
        return Err(Ok(ERR_VALUE_TOO_LARGE));
    }
    let g = attempt(&mut st.global).map_err(Err)?;
    g.value(ns_name(&st.function, h), key)
        .map_err(|e| Err(g.fail(e)))
}

fn add(mut c: C<'_>, ns: i32, key: i32, key_len: i32, delta: i64, out: i32) -> R {
    let mem = memory(&c)?;
    let (data, st) = mem.data_and_store_mut(&mut c);
    let k = range("add", data.len(), key, key_len)?;
    let o = range("add", data.len(), out, 8)?;
    let cur = match current(st, ns, &data[k.clone()], 8) {
        Ok(v) => v,
        Err(r) => return r,
    };
    let cur = match cur.as_deref().map(<[u8; 8]>::try_from) {
        None => 0,
        Some(Ok(b)) => i64::from_le_bytes(b),
        Some(Err(_)) => return Ok(ERR_NOT_I64),
    };
    let Some(new) = cur.checked_add(delta) else {
        return Ok(ERR_OVERFLOW);
    };
    let code = write(st, ns, &data[k], Some(&new.to_le_bytes()))?;
    if code == 0 {
        data[o].copy_from_slice(&new.to_le_bytes());
    }
    Ok(code)
}

#[allow(clippy::too_many_arguments)] // the ABI's signature
fn cas(
    mut c: C<'_>,
    ns: i32,
    key: i32,
    key_len: i32,
    exp: i32,
    exp_len: i32,
    new: i32,
    new_len: i32,
) -> R {
    let mem = memory(&c)?;
    let (data, st) = mem.data_and_store_mut(&mut c);
    let k = range("cas", data.len(), key, key_len)?;
    let e = optional_range("cas", data.len(), exp, exp_len)?;
    let v = optional_range("cas", data.len(), new, new_len)?;
    if e.as_ref()
        .is_some_and(|e| e.len() > crate::limits::MAX_VALUE_LEN)
    {
        return Ok(ERR_VALUE_TOO_LARGE);
    }
    let cur = match current(st, ns, &data[k.clone()], v.as_ref().map_or(0, |v| v.len())) {
        Ok(v) => v,
        Err(r) => return r,
    };
    if cur.as_deref() != e.map(|e| &data[e]) {
        return Ok(CAS_MISMATCH);
    }
    match write(st, ns, &data[k], v.map(|v| &data[v]))? {
        0 => Ok(CAS_OK),
        code => Ok(code),
    }
}

#[allow(clippy::too_many_arguments)] // the ABI's signature
fn scan(mut c: C<'_>, ns: i32, _: i32, _: i32, _: i32, _: i32, _: i32, _: i32, _: i32) -> R {
    let st = c.data_mut();
    let name = match st.handle(ns) {
        Some(h) => ns_name(&st.function, h).to_string(),
        None => return Ok(ERR_BAD_HANDLE),
    };
    let g = attempt(&mut st.global)?;
    Err(g.fail(InvokeError::GlobalUnsupported(format!(
        "scan of global namespace {name:?} (not built yet: docs/global.md)"
    ))))
}
