//! The namespace host calls of a global function (`crate::global`,
//! `docs/global.md`): `get`, `put`, `delete`, `add`, `cas` read and write
//! through the attempt's [`crate::global::Attempt`] instead of the local
//! transaction; `scan` reads the namespace's index (`global_scan.rs`).
//! Argument checks, codes and write-set
//! accounting are those of the local calls (`state.rs`).
//!
//! A read the local tier cannot serve (`get`, `add`, `cas`) stops its
//! operation with [`FetchWait`], having done nothing; the host call then
//! waits for the fetch and runs the operation again, which finds the key
//! among the attempt's reads:
//!
//! 1. Run the operation. Done, or an error other than [`FetchWait`]: that
//!    is the call's result.
//! 2. [`FetchWait`]: wait for its reply (bounded by the attempt's
//!    deadline, on `rime_global`'s thread). Suspending calls (on an
//!    executor) await it: the invocation suspends and the executor runs
//!    others. Waiting calls (a blocking caller) park their thread.
//! 3. Record the reply in the attempt (an error ends the attempt), and go
//!    back to 1.
//!
//! `put` and `delete` read nothing and never wait.

use super::global_scan::{self, Step};
use super::memory::{optional_range, range};
use super::state::writable;
use super::*;
use crate::global::{Fetch, Stop};
use crate::limits::MAX_KEY_LEN;
use wasmtime::Linker;

pub(super) fn define(l: &mut Linker<HostState>, calls: HostCalls) -> Result<(), wasmtime::Error> {
    l.func_wrap(IMPORT_MODULE, "put", put)?;
    l.func_wrap(IMPORT_MODULE, "delete", delete)?;
    if calls == HostCalls::Suspending {
        l.func_wrap_async(IMPORT_MODULE, "scan", scan_suspending)?;
        l.func_wrap_async(IMPORT_MODULE, "get", suspending(get))?;
        l.func_wrap_async(IMPORT_MODULE, "add", suspending(add))?;
        l.func_wrap_async(IMPORT_MODULE, "cas", suspending(cas))?;
        return Ok(());
    }
    l.func_wrap(
        IMPORT_MODULE,
        "get",
        |mut c: C<'_>, a: i32, b: i32, d: i32, e: i32, f: i32| {
            waiting(get, &mut c, (a, b, d, e, f))
        },
    )?;
    l.func_wrap(
        IMPORT_MODULE,
        "add",
        |mut c: C<'_>, a: i32, b: i32, d: i32, e: i64, f: i32| {
            waiting(add, &mut c, (a, b, d, e, f))
        },
    )?;
    #[allow(clippy::too_many_arguments)] // the ABI's signature
    fn cas_waiting(mut c: C<'_>, a: i32, b: i32, d: i32, e: i32, f: i32, g: i32, h: i32) -> R {
        waiting(cas, &mut c, (a, b, d, e, f, g, h))
    }
    l.func_wrap(IMPORT_MODULE, "cas", cas_waiting)?;
    #[allow(clippy::too_many_arguments)] // the ABI's signature
    fn scan_waiting(
        mut c: C<'_>,
        a: i32,
        b: i32,
        d: i32,
        e: i32,
        f: i32,
        g: i32,
        h: i32,
        i: i32,
    ) -> R {
        let mut step = global_scan::begin(&mut c, (a, b, d, e, f, g, h, i))?;
        loop {
            match step {
                Step::Done(n) => return Ok(n),
                Step::Fetch(call, reply) => {
                    step = global_scan::resume(&mut c, call, reply.wait())?;
                }
            }
        }
    }
    l.func_wrap(IMPORT_MODULE, "scan", scan_waiting)?;
    Ok(())
}

/// `scan` as an async host function: each fetch suspends the invocation.
fn scan_suspending(
    mut c: C<'_>,
    args: global_scan::ScanArgs,
) -> Box<dyn Future<Output = R> + Send + '_> {
    Box::new(async move {
        let mut step = global_scan::begin(&mut c, args)?;
        loop {
            match step {
                Step::Done(n) => return Ok(n),
                Step::Fetch(call, reply) => {
                    let r = reply.await;
                    step = global_scan::resume(&mut c, call, r)?;
                }
            }
        }
    })
}

type C<'a> = Caller<'a, HostState>;

/// A read stopped for a fetch from the cluster (module docs).
#[derive(Debug)]
struct FetchWait(Fetch);

impl std::fmt::Display for FetchWait {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("host call waits for the global store")
    }
}

impl std::error::Error for FetchWait {}

/// Steps 1–3 of the module docs, parking the calling thread at step 2.
fn waiting<P: Copy>(op: fn(&mut C<'_>, P) -> R, c: &mut C<'_>, p: P) -> R {
    loop {
        let fetch = match op(c, p) {
            Err(e) => e.downcast::<FetchWait>()?.0,
            done => return done,
        };
        let r = fetch.reply.wait();
        attempt(&mut c.data_mut().global)?.fetched(fetch.key, r)?;
    }
}

/// Steps 1–3 of the module docs as an async host function: step 2
/// suspends the invocation.
fn suspending<P: Send + Copy + 'static>(
    op: fn(&mut C<'_>, P) -> R,
) -> impl for<'a> Fn(C<'a>, P) -> Box<dyn Future<Output = R> + Send + 'a> + Send + Sync + 'static {
    move |mut c: C<'_>, p: P| -> Box<dyn Future<Output = R> + Send + '_> {
        Box::new(async move {
            loop {
                let fetch = match op(&mut c, p) {
                    Err(e) => e.downcast::<FetchWait>()?.0,
                    done => return done,
                };
                let r = fetch.reply.await;
                attempt(&mut c.data_mut().global)?.fetched(fetch.key, r)?;
            }
        })
    }
}

/// What a stopped read means for the host call: a fetch to wait for
/// ([`FetchWait`]) or the attempt's end.
fn stop(g: &mut crate::global::Attempt, s: Stop) -> wasmtime::Error {
    match s {
        Stop::Fetch(f) => wasmtime::Error::new(FetchWait(f)),
        Stop::Failed(e) => g.fail(e),
    }
}

/// The attempt of a global function's store (set by `invoke`).
pub(super) fn attempt(
    g: &mut Option<Box<crate::global::Attempt>>,
) -> Result<&mut crate::global::Attempt, wasmtime::Error> {
    g.as_deref_mut()
        .ok_or_else(|| wasmtime::Error::msg("global host call without a global attempt"))
}

/// The name of the namespace behind handle `h`.
pub(super) fn ns_name(f: &crate::registry::Function, h: Handle) -> &str {
    f.ns_name(h.grant)
}

fn get(c: &mut C<'_>, (ns, key, key_len, buf, cap): (i32, i32, i32, i32, i32)) -> R {
    let mem = memory(c)?;
    let (data, st) = mem.data_and_store_mut(c);
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
        Err(s) => return Err(stop(g, s)),
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
        .map_err(|s| Err(stop(g, s)))
}

fn add(c: &mut C<'_>, (ns, key, key_len, delta, out): (i32, i32, i32, i64, i32)) -> R {
    let mem = memory(c)?;
    let (data, st) = mem.data_and_store_mut(c);
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

type CasArgs = (i32, i32, i32, i32, i32, i32, i32);

fn cas(c: &mut C<'_>, (ns, key, key_len, exp, exp_len, new, new_len): CasArgs) -> R {
    let mem = memory(c)?;
    let (data, st) = mem.data_and_store_mut(c);
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
