//! `input`, `output`, `config_get`, `ns_open`, `get`, `put`, `delete`,
//! `add`, `cas`, `log`. Every call checks all its guest ranges first (a bad one traps),
//! then its arguments (error codes), then acts. None allocates on the
//! host heap except `output` (the result buffer), `log`, and a write of a
//! key not yet in the write set (its entry in `WriteSet`).

use super::memory::{NONE, optional_range, range};
use super::write_set::Admitted;
use super::*;
use crate::GuestLog;
use crate::limits::{
    MAX_KEY_LEN, MAX_LOG_BYTES_PER_INVOCATION, MAX_LOG_LEN, MAX_LOG_LINES_PER_INVOCATION,
    MAX_OUTPUT_LEN, MAX_VALUE_LEN,
};
use rime_abi::Level;
use wasmtime::Linker;

/// The calls that do not touch a namespace's data: the same for local
/// and global functions (`global.rs`).
pub(super) fn define_common(l: &mut Linker<HostState>) -> Result<(), wasmtime::Error> {
    l.func_wrap(IMPORT_MODULE, "input", input)?;
    l.func_wrap(IMPORT_MODULE, "output", output)?;
    l.func_wrap(IMPORT_MODULE, "ns_open", ns_open)?;
    l.func_wrap(IMPORT_MODULE, "log", log)?;
    l.func_wrap(IMPORT_MODULE, "config_get", config_get)?;
    Ok(())
}

pub(super) fn define(l: &mut Linker<HostState>, calls: HostCalls) -> Result<(), wasmtime::Error> {
    define_common(l)?;
    l.func_wrap(IMPORT_MODULE, "put", put)?;
    // Those that read may suspend the invocation (see the module docs of
    // `abi`); `put` reads nothing but buffers, so it never waits.
    if calls == HostCalls::Suspending {
        l.func_wrap_async(IMPORT_MODULE, "get", suspending(get))?;
        l.func_wrap_async(IMPORT_MODULE, "delete", suspending(delete))?;
        l.func_wrap_async(IMPORT_MODULE, "add", suspending(add))?;
        l.func_wrap_async(IMPORT_MODULE, "cas", suspending(cas))?;
        return Ok(());
    }
    type C<'a> = Caller<'a, HostState>;
    l.func_wrap(
        IMPORT_MODULE,
        "get",
        |mut c: C<'_>, a: i32, b: i32, d: i32, e: i32, f: i32| get(&mut c, (a, b, d, e, f)),
    )?;
    l.func_wrap(
        IMPORT_MODULE,
        "delete",
        |mut c: C<'_>, a: i32, b: i32, d: i32| delete(&mut c, (a, b, d)),
    )?;
    l.func_wrap(
        IMPORT_MODULE,
        "add",
        |mut c: C<'_>, a: i32, b: i32, d: i32, e: i64, f: i32| add(&mut c, (a, b, d, e, f)),
    )?;
    #[allow(clippy::too_many_arguments)] // the ABI's signature
    fn cas_waiting(mut c: C<'_>, a: i32, b: i32, d: i32, e: i32, f: i32, g: i32, h: i32) -> R {
        cas(&mut c, (a, b, d, e, f, g, h))
    }
    l.func_wrap(IMPORT_MODULE, "cas", cas_waiting)?;
    Ok(())
}

fn input(mut caller: Caller<'_, HostState>, buf: i32, cap: i32) -> R {
    let mem = memory(&caller)?;
    let (data, st) = mem.data_and_store_mut(&mut caller);
    let dst = range("input", data.len(), buf, cap)?;
    let input = &*st.input;
    if input.len() <= dst.len() {
        data[dst.start..dst.start + input.len()].copy_from_slice(input);
    }
    Ok(input.len() as i32) // <= MAX_INPUT_LEN
}

fn output(mut caller: Caller<'_, HostState>, ptr: i32, len: i32) -> R {
    let mem = memory(&caller)?;
    let (data, st) = mem.data_and_store_mut(&mut caller);
    let src = range("output", data.len(), ptr, len)?;
    if src.len() > MAX_OUTPUT_LEN {
        st.output_refused = true;
        return Ok(ERR_OUTPUT_TOO_LARGE);
    }
    st.output.clear();
    st.output.extend_from_slice(&data[src]);
    Ok(0)
}

/// `config_get`: the function's configuration entry `key` (deploy's
/// `--env`/`--secret`), by the buffer protocol of `get`.
fn config_get(mut caller: Caller<'_, HostState>, key: i32, key_len: i32, buf: i32, cap: i32) -> R {
    let mem = memory(&caller)?;
    let (data, st) = mem.data_and_store_mut(&mut caller);
    let k = range("config_get", data.len(), key, key_len)?;
    let dst = range("config_get", data.len(), buf, cap)?;
    if !rime_abi::valid_config_key(&data[k.clone()]) {
        return Ok(ERR_INVALID);
    }
    let Some(value) = st.function.config.setting_value(&data[k]) else {
        return Ok(ERR_NOT_FOUND);
    };
    if value.len() <= dst.len() {
        data[dst.start..dst.start + value.len()].copy_from_slice(value);
    }
    Ok(value.len() as i32) // <= MAX_CONFIG_VALUE_LEN
}

fn ns_open(mut caller: Caller<'_, HostState>, name: i32, name_len: i32) -> R {
    let mem = memory(&caller)?;
    let (data, st) = mem.data_and_store_mut(&mut caller);
    let name = &data[range("ns_open", data.len(), name, name_len)?];
    if !crate::limits::valid_name(name) {
        return Ok(ERR_INVALID);
    }
    if name == st.function.name.as_bytes() {
        return Ok(0);
    }
    let Some(g) = st
        .function
        .grants
        .iter()
        .position(|g| g.name.as_bytes() == name)
    else {
        return Ok(ERR_DENIED);
    };
    let mut free = None;
    for (i, h) in st.handles.iter().enumerate() {
        match h {
            Some(h) if usize::from(h.grant) == g => return Ok(i as i32),
            None if free.is_none() => free = Some(i),
            _ => {}
        }
    }
    let Some(i) = free else {
        return Ok(ERR_LIMIT);
    };
    let grant = &st.function.grants[g];
    st.handles[i] = Some(Handle {
        tree: grant.tree,
        writable: grant.writable,
        grant: g as u8, // grants < MAX_OPEN_NAMESPACES, checked at deploy
    });
    Ok(i as i32)
}

fn get(
    caller: &mut Caller<'_, HostState>,
    (ns, key, key_len, buf, cap): (i32, i32, i32, i32, i32),
) -> R {
    let mem = memory(caller)?;
    let (data, st) = mem.data_and_store_mut(caller);
    let k = range("get", data.len(), key, key_len)?;
    let dst = range("get", data.len(), buf, cap)?;
    let Some(h) = st.handle(ns) else {
        return Ok(ERR_BAD_HANDLE);
    };
    if k.len() > MAX_KEY_LEN {
        return Ok(ERR_KEY_TOO_LARGE);
    }
    // The key goes to the stack: the destination may overlap it.
    let mut kbuf = [0u8; MAX_KEY_LEN];
    let key = &mut kbuf[..k.len()];
    key.copy_from_slice(&data[k]);
    let dst = &mut data[dst];
    // The one copy: from the page (or the write set) into guest memory.
    let r = st.tx().get(h.tree, key, |v| {
        if let Some(d) = dst.get_mut(..v.len()) {
            d.copy_from_slice(v);
        }
        v.len()
    });
    match r {
        Ok(Some(n)) => Ok(n as i32), // values are far below 2 GiB
        Ok(None) => Ok(ERR_NOT_FOUND),
        Err(e) => Err(st.abandon(e)),
    }
}

/// Checks a write's handle, grant, key, value and write-set room.
pub(super) fn writable(
    st: &mut HostState,
    ns: i32,
    key: &[u8],
    val_len: usize,
) -> Result<(TreeId, Admitted), i32> {
    let h = st.handle(ns).ok_or(ERR_BAD_HANDLE)?;
    if !h.writable {
        return Err(ERR_DENIED);
    }
    if key.len() > MAX_KEY_LEN {
        return Err(ERR_KEY_TOO_LARGE);
    }
    if val_len > MAX_VALUE_LEN {
        return Err(ERR_VALUE_TOO_LARGE);
    }
    let a = st
        .writes
        .admit(h.tree, key, val_len)
        .ok_or(ERR_WRITE_SET_FULL)?;
    Ok((h.tree, a))
}

/// Maps a storage error of a write to an ABI code, or abandons the attempt.
fn write_error(st: &mut HostState, e: TxError) -> R {
    match e {
        TxError::ValueTooLarge { .. } => Ok(ERR_VALUE_TOO_LARGE),
        TxError::KeyTooLarge { .. } => Ok(ERR_KEY_TOO_LARGE),
        TxError::NotI64 { .. } => Ok(ERR_NOT_I64),
        TxError::Overflow => Ok(ERR_OVERFLOW),
        e => Err(st.abandon(e)),
    }
}

fn put(
    mut caller: Caller<'_, HostState>,
    ns: i32,
    key: i32,
    key_len: i32,
    val: i32,
    val_len: i32,
) -> R {
    let mem = memory(&caller)?;
    let (data, st) = mem.data_and_store_mut(&mut caller);
    let k = range("put", data.len(), key, key_len)?;
    let v = range("put", data.len(), val, val_len)?;
    let (tree, a) = match writable(st, ns, &data[k.clone()], v.len()) {
        Ok(t) => t,
        Err(code) => return Ok(code),
    };
    let r = st.tx().put(tree, &data[k.clone()], &data[v]);
    match r {
        Ok(()) => {
            st.writes.record(tree, &data[k], a);
            Ok(0)
        }
        Err(e) => write_error(st, e),
    }
}

fn delete(caller: &mut Caller<'_, HostState>, (ns, key, key_len): (i32, i32, i32)) -> R {
    let mem = memory(caller)?;
    let (data, st) = mem.data_and_store_mut(caller);
    let k = range("delete", data.len(), key, key_len)?;
    let (tree, a) = match writable(st, ns, &data[k.clone()], 0) {
        Ok(t) => t,
        Err(code) => return Ok(code),
    };
    let r = st.tx().delete(tree, &data[k.clone()]);
    match r {
        Ok(existed) => {
            // `Tx::delete` records a tombstone only for a key that exists
            // (in the tree or the write set); otherwise it writes nothing.
            if existed {
                st.writes.record(tree, &data[k], a);
            }
            Ok(0)
        }
        Err(e) => write_error(st, e),
    }
}

fn add(
    caller: &mut Caller<'_, HostState>,
    (ns, key, key_len, delta, out): (i32, i32, i32, i64, i32),
) -> R {
    let mem = memory(caller)?;
    let (data, st) = mem.data_and_store_mut(caller);
    let k = range("add", data.len(), key, key_len)?;
    let o = range("add", data.len(), out, 8)?;
    let (tree, a) = match writable(st, ns, &data[k.clone()], 8) {
        Ok(t) => t,
        Err(code) => return Ok(code),
    };
    let r = st.tx().add(tree, &data[k.clone()], delta);
    match r {
        Ok(new) => {
            st.writes.record(tree, &data[k], a);
            data[o].copy_from_slice(&new.to_le_bytes());
            Ok(0)
        }
        Err(e) => write_error(st, e),
    }
}

type CasArgs = (i32, i32, i32, i32, i32, i32, i32);

fn cas(
    caller: &mut Caller<'_, HostState>,
    (ns, key, key_len, exp, exp_len, new, new_len): CasArgs,
) -> R {
    let mem = memory(caller)?;
    let (data, st) = mem.data_and_store_mut(caller);
    let k = range("cas", data.len(), key, key_len)?;
    let e = optional_range("cas", data.len(), exp, exp_len)?;
    let v = optional_range("cas", data.len(), new, new_len)?;
    let new_len = v.as_ref().map_or(0, |v| v.len());
    let (tree, a) = match writable(st, ns, &data[k.clone()], new_len) {
        Ok(t) => t,
        Err(code) => return Ok(code),
    };
    if e.as_ref().is_some_and(|e| e.len() > MAX_VALUE_LEN) {
        return Ok(ERR_VALUE_TOO_LARGE);
    }
    let data: &[u8] = data;
    let key = &data[k];
    let r = st
        .tx()
        .cas(tree, key, e.map(|e| &data[e]), v.map(|v| &data[v]));
    match r {
        Ok(true) => {
            st.writes.record(tree, key, a);
            Ok(CAS_OK)
        }
        Ok(false) => Ok(CAS_MISMATCH),
        Err(e) => write_error(st, e),
    }
}

fn log(
    mut caller: Caller<'_, HostState>,
    level: i32,
    msg: i32,
    msg_len: i32,
) -> Result<(), wasmtime::Error> {
    let mem = memory(&caller)?;
    let (data, st) = mem.data_and_store_mut(&mut caller);
    let m = range("log", data.len(), msg, msg_len)?;
    keep_panic(&mut st.panic, level, &data[m.clone()]);
    // A WASI guest's stdout lines written before this message go first.
    st.wasi.log_lines(&mut st.log, &st.function);
    emit_log(&mut st.log, &st.function, Level::from_raw(level), &data[m]);
    Ok(())
}

/// Logs one guest message as `function`'s, within the invocation's budget
/// (`MAX_LOG_LEN` a message, `MAX_LOG_*_PER_INVOCATION` in all): to
/// `tracing`, the function's and the invocation's sinks, and the
/// invocation's kept lines. ABI v1's `log`, and a WASI module's or a
/// component's stdout and stderr.
pub(crate) fn emit_log(budget: &mut LogBudget, function: &Function, level: Level, bytes: &[u8]) {
    let f = &*function.name;
    if budget.truncated {
        return;
    }
    let room = MAX_LOG_BYTES_PER_INVOCATION - budget.bytes;
    if budget.lines >= MAX_LOG_LINES_PER_INVOCATION || room == 0 {
        truncated(budget, f);
        return;
    }
    let mut text = String::from_utf8_lossy(&bytes[..bytes.len().min(MAX_LOG_LEN).min(room)]);
    // Replacement characters can make the text longer than its bytes.
    let cut = text.len() > room || bytes.len().min(MAX_LOG_LEN) > room;
    if text.len() > room {
        let mut end = room;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.to_mut().truncate(end);
    }
    budget.bytes += text.len();
    budget.lines += 1;
    match level {
        Level::Error => tracing::error!(target: "rime::faaslet", function = f, "{text}"),
        Level::Warn => tracing::warn!(target: "rime::faaslet", function = f, "{text}"),
        Level::Info => tracing::info!(target: "rime::faaslet", function = f, "{text}"),
        Level::Debug => tracing::debug!(target: "rime::faaslet", function = f, "{text}"),
        Level::Trace => tracing::trace!(target: "rime::faaslet", function = f, "{text}"),
    }
    let line = GuestLog {
        function: f.to_string(),
        level,
        message: text.into_owned(),
    };
    if let Some(sink) = &function.log_sink {
        sink.send(&line);
    }
    if let Some(sink) = &budget.sink {
        sink.send(&line);
    }
    budget.kept.push(line);
    if cut {
        truncated(budget, f);
    }
}

/// Keeps the message of the SDK's panic line (whatever the log budget
/// says), at most `MAX_LOG_LEN` bytes of it, for the trap's error.
fn keep_panic(panic: &mut Option<String>, level: i32, bytes: &[u8]) {
    let Some(message) = bytes.strip_prefix(rime_abi::PANIC_LOG_PREFIX.as_bytes()) else {
        return;
    };
    if Level::from_raw(level) == Level::Error {
        let message = &message[..message.len().min(MAX_LOG_LEN)];
        *panic = Some(String::from_utf8_lossy(message).into_owned());
    }
}

/// Marks the invocation's log output truncated, with the one warning.
pub(crate) fn truncated(budget: &mut LogBudget, function: &str) {
    budget.truncated = true;
    tracing::warn!(
        target: "rime::faaslet",
        function,
        "log output truncated: this invocation reached {} messages or {} bytes; \
         the rest of its log is dropped",
        MAX_LOG_LINES_PER_INVOCATION,
        MAX_LOG_BYTES_PER_INVOCATION,
    );
}

#[allow(dead_code)]
const _: () = assert!(NONE == -1);
