//! Host ABI v1 (`docs/abi.md`): the per-instance host state, the `rime`
//! imports, and the deploy-time check of a module's shape.
//!
//! * `memory.rs`: bounds checks of guest ranges (traps).
//! * `state.rs`: `input`, `output`, `ns_open`, `get`, `put`, `delete`,
//!   `add`, `cas`, `log`.
//! * `scan.rs`: `scan` and its record encoding.
//! * `write_set.rs`: the write set's size, as its commit will log it.
//!
//! Host calls that read may suspend their invocation (`crate::exec`): on
//! an executor, reads do not wait for the disk; one that needs a page
//! ends with [`WouldWait`], and the call's future waits for the page and
//! runs the operation again from the start. Operations record nothing
//! before their read succeeds, so a re-run is exact.

mod global;
mod global_scan;
mod memory;
mod scan;
mod state;
pub(crate) mod write_set;

pub(crate) use memory::BadPointer;
pub(crate) use state::{emit_log, truncated as log_truncated};

use crate::limits::{Limiter, MAX_OPEN_NAMESPACES};
use crate::registry::Function;
use rime_abi::{EXPORT_INVOKE, EXPORT_MEMORY, IMPORT_MODULE};
use rime_storage::{Miss, OwnedTx, TreeId, Tx, TxError};
use std::future::Future;
use std::sync::Arc;
use wasmtime::{Caller, Engine, ExternType, Linker, Memory, Module, ValType};

// The codes host calls return, from the one definition of the ABI.
pub(crate) use rime_abi::{
    CAS_MISMATCH, CAS_OK, ERR_BAD_HANDLE, ERR_DENIED, ERR_INVALID, ERR_KEY_TOO_LARGE, ERR_LIMIT,
    ERR_NOT_FOUND, ERR_NOT_I64, ERR_OUTPUT_TOO_LARGE, ERR_OVERFLOW, ERR_VALUE_TOO_LARGE,
    ERR_WRITE_SET_FULL,
};

/// A namespace the invocation may use.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Handle {
    pub tree: TreeId,
    pub writable: bool,
    /// Index into the function's grants; `u8::MAX` for the own namespace.
    pub grant: u8,
}

/// Guest log output of one invocation so far, carried from attempt to
/// attempt (`MAX_LOG_BYTES_PER_INVOCATION`, `MAX_LOG_LINES_PER_INVOCATION`).
#[derive(Clone, Debug, Default)]
pub(crate) struct LogBudget {
    /// The lines kept for `Invocation::logs` (bounded by the budget).
    pub kept: Vec<crate::GuestLog>,
    /// This invocation's own sink (`Runtime::invoke_async_with_logs`).
    pub sink: Option<crate::LogSink>,
    /// Message bytes emitted.
    pub bytes: usize,
    /// Messages emitted.
    pub lines: usize,
    /// Output was cut or dropped, and the one warning saying so logged.
    pub truncated: bool,
}

/// The data of one instance's store: everything host calls need.
pub(crate) struct HostState {
    pub function: Arc<Function>,
    pub limiter: Limiter,
    pub memory: Option<Memory>,
    /// The attempt's transaction: owned by the store while the attempt
    /// runs, taken back by `invoke` for its commit.
    pub txn: OwnedTx,
    pub input: Arc<[u8]>,
    /// Reads do not wait for the disk (the invocation runs on an
    /// executor): see the module docs.
    pub nowait: bool,
    pub handles: [Option<Handle>; MAX_OPEN_NAMESPACES],
    pub output: Vec<u8>,
    /// An `output` call was refused for its size.
    pub output_refused: bool,
    /// The write set's size and the bytes written, for the limits.
    pub writes: write_set::WriteSet,
    /// A storage error that abandoned the attempt inside a host call.
    pub tx_error: Option<TxError>,
    /// The invocation's log output so far (earlier attempts included).
    pub log: LogBudget,
    /// The message of a guest panic, from the SDK's log line just before
    /// it traps (`rime_abi::PANIC_LOG_PREFIX`); goes into the trap's error.
    pub panic: Option<String>,
    /// WASI preview 1 (a WASI module's context); empty for ABI v1.
    pub wasi: crate::wasip1::Wasi,
    /// A global function's attempt (`crate::global`); `None` otherwise.
    pub global: Option<Box<crate::global::Attempt>>,
}

impl HostState {
    pub(crate) fn new(
        function: Arc<Function>,
        log: LogBudget,
        txn: OwnedTx,
        input: Arc<[u8]>,
    ) -> HostState {
        let mut handles = [None; MAX_OPEN_NAMESPACES];
        handles[0] = Some(Handle {
            tree: function.own_tree,
            writable: true,
            grant: u8::MAX,
        });
        HostState {
            limiter: Limiter {
                memory_bytes: function.config.memory_bytes,
                denied: false,
            },
            function,
            memory: None,
            txn,
            input,
            nowait: crate::exec::io::on_executor(),
            handles,
            output: Vec::new(),
            output_refused: false,
            writes: write_set::WriteSet::default(),
            tx_error: None,
            log,
            panic: None,
            wasi: crate::wasip1::Wasi::default(),
            global: None,
        }
    }

    /// The running attempt's transaction; its reads wait for the disk
    /// only off an executor.
    pub(crate) fn tx(&mut self) -> Tx<'_> {
        if self.nowait {
            self.txn.tx_nowait()
        } else {
            self.txn.tx()
        }
    }

    fn handle(&self, ns: i32) -> Option<Handle> {
        usize::try_from(ns)
            .ok()
            .and_then(|i| self.handles.get(i).copied().flatten())
    }

    /// Abandons the attempt: remembers `e` and returns the trap that
    /// unwinds the guest; `invoke` ends the invocation with `e`. A
    /// [`TxError::WouldWait`] abandons nothing: it becomes [`WouldWait`],
    /// which the host call's future turns into a wait and a re-run.
    pub(crate) fn abandon(&mut self, e: TxError) -> wasmtime::Error {
        if let TxError::WouldWait(miss) = e {
            return wasmtime::Error::new(WouldWait(miss));
        }
        self.tx_error = Some(e);
        wasmtime::Error::msg("attempt abandoned by the host")
    }
}

/// A host operation stopped at a page not in memory, having done
/// nothing: wait for the page, then run it again (see the module docs).
#[derive(Debug)]
pub(crate) struct WouldWait(pub Miss);

impl std::fmt::Display for WouldWait {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "host call waits for page {}", self.0.page())
    }
}

impl std::error::Error for WouldWait {}

type R = Result<i32, wasmtime::Error>;

/// Wraps a host operation as an async host function: it runs `op`; if the
/// operation stopped at a page not in memory, the future waits for the
/// page (the invocation suspends, its executor runs others) and runs `op`
/// again.
fn suspending<P: Send + Copy + 'static>(
    op: fn(&mut Caller<'_, HostState>, P) -> R,
) -> impl for<'a> Fn(Caller<'a, HostState>, P) -> Box<dyn Future<Output = R> + Send + 'a>
+ Send
+ Sync
+ 'static {
    move |mut caller: Caller<'_, HostState>, p: P| -> Box<dyn Future<Output = R> + Send + '_> {
        Box::new(async move {
            loop {
                let e = match op(&mut caller, p) {
                    Err(e) => e,
                    done => return done,
                };
                let Some(&WouldWait(miss)) = e.downcast_ref::<WouldWait>() else {
                    return Err(e);
                };
                if let Err(e) = crate::exec::io::load(miss).await {
                    return Err(caller.data_mut().abandon(e));
                }
            }
        })
    }
}

/// The memory export, set by `invoke` after instantiation.
fn memory(caller: &Caller<'_, HostState>) -> Result<Memory, wasmtime::Error> {
    caller
        .data()
        .memory
        .ok_or_else(|| wasmtime::Error::msg("no memory"))
}

/// How the host calls that read wait for the disk.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum HostCalls {
    /// They block their thread (a blocking caller's own thread): plain
    /// host functions, nothing allocated per call.
    Waiting,
    /// They suspend the invocation (on an executor): async host
    /// functions, one boxed future per call (wasmtime's interface).
    Suspending,
}

/// The linker with every `rime` import.
pub(crate) fn linker(
    engine: &Engine,
    calls: HostCalls,
) -> Result<Linker<HostState>, wasmtime::Error> {
    let mut l = Linker::new(engine);
    state::define(&mut l, calls)?;
    scan::define(&mut l, calls)?;
    crate::wasip1::add_to_linker(&mut l, calls)?;
    Ok(l)
}

/// The linker of a global function (`crate::global`): the namespace calls
/// go to its global store (`global.rs`), the rest are the local linker's.
pub(crate) fn linker_global(
    engine: &Engine,
    calls: HostCalls,
) -> Result<Linker<HostState>, wasmtime::Error> {
    let mut l = Linker::new(engine);
    state::define_common(&mut l)?;
    global::define(&mut l, calls)?;
    crate::wasip1::add_to_linker(&mut l, calls)?;
    Ok(l)
}

/// Whether wasm value types `types` are exactly the ABI's `want`.
fn same(types: impl ExactSizeIterator<Item = ValType>, want: &[rime_abi::ValType]) -> bool {
    types.len() == want.len()
        && types.zip(want).all(|(v, w)| match w {
            rime_abi::ValType::I32 => matches!(v, ValType::I32),
            rime_abi::ValType::I64 => matches!(v, ValType::I64),
        })
}

/// A function type as wasm text writes it: `(i32, i32) -> i32`, `() -> ()`.
fn signature(params: Vec<String>, results: Vec<String>) -> String {
    let results = match results.len() {
        0 => "()".to_string(),
        1 => results[0].clone(),
        _ => format!("({})", results.join(", ")),
    };
    format!("({}) -> {results}", params.join(", "))
}

fn abi_signature(params: &[rime_abi::ValType], results: &[rime_abi::ValType]) -> String {
    let name = |v: &rime_abi::ValType| match v {
        rime_abi::ValType::I32 => "i32".to_string(),
        rime_abi::ValType::I64 => "i64".to_string(),
    };
    signature(
        params.iter().map(name).collect(),
        results.iter().map(name).collect(),
    )
}

/// What a module declares for an import or export, for people: a
/// function's signature, else the kind of item.
fn declared(ty: &ExternType) -> String {
    match ty {
        ExternType::Func(f) => signature(
            f.params().map(|v| v.to_string()).collect(),
            f.results().map(|v| v.to_string()).collect(),
        ),
        ExternType::Memory(_) => "a memory".into(),
        ExternType::Table(_) => "a table".into(),
        ExternType::Global(_) => "a global".into(),
        ExternType::Tag(_) => "a tag".into(),
    }
}

/// Checks that `module` has the shape of `docs/abi.md` ("Module shape");
/// whether it imports WASI preview 1 (`crate::wasip1`).
pub(crate) fn check_module(module: &Module) -> Result<bool, String> {
    let mut wasi = false;
    let mut wasi_signatures = None;
    for imp in module.imports() {
        if imp.module() != IMPORT_MODULE {
            crate::wasip1::check_import(&imp, module.engine(), &mut wasi_signatures)?;
            wasi = true;
            continue;
        }
        let Some(want) = rime_abi::Import::find(imp.name()) else {
            return Err(format!("unknown import {IMPORT_MODULE}.{}", imp.name()));
        };
        let expects = abi_signature(want.params, want.results);
        match imp.ty() {
            ExternType::Func(f)
                if same(f.params(), want.params) && same(f.results(), want.results) => {}
            other => {
                return Err(format!(
                    "{IMPORT_MODULE}.{} expects {expects}, the module declares {}",
                    imp.name(),
                    declared(&other)
                ));
            }
        }
    }
    let invoke_ok = |f: &wasmtime::FuncType| {
        same(f.params(), &[]) && same(f.results(), &[rime_abi::ValType::I32])
    };
    match module.get_export(EXPORT_INVOKE) {
        Some(ExternType::Func(f)) if invoke_ok(&f) => {}
        Some(other) => {
            return Err(format!(
                "export `{EXPORT_INVOKE}` must be a function () -> i32, the module declares {}",
                declared(&other)
            ));
        }
        None => {
            return Err(crate::wasip1::command_module_hint(module)
                .unwrap_or_else(|| format!("no export `{EXPORT_INVOKE}`")));
        }
    }
    match module.get_export(EXPORT_MEMORY) {
        Some(ExternType::Memory(m)) if !m.is_64() && !m.is_shared() => {}
        Some(_) => {
            return Err(format!(
                "export `{EXPORT_MEMORY}` must be a 32-bit unshared memory"
            ));
        }
        None => return Err(format!("no export `{EXPORT_MEMORY}`")),
    }
    Ok(wasi)
}
