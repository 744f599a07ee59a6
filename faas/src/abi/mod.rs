//! Host ABI v1 (`docs/abi.md`): the per-instance host state, the `rime`
//! imports, and the deploy-time check of a module's shape.
//!
//! * `memory.rs`: bounds checks of guest ranges (traps).
//! * `state.rs`: `input`, `output`, `ns_open`, `get`, `put`, `delete`,
//!   `add`, `cas`, `log`.
//! * `scan.rs`: `scan` and its record encoding.
//! * `write_set.rs`: the write set's size, as its commit will log it.
//!
//! The one `unsafe` of the ABI layer is here: the store's data reaches the
//! invocation's transaction and input through pointers (see [`Scope`]).
//! Only the two accessors that dereference them, `HostState::tx` and
//! `HostState::input`, allow `unsafe_code`; the rest of the module tree is
//! under the crate's `deny`.

mod memory;
mod scan;
mod state;
mod write_set;

pub(crate) use memory::BadPointer;

use crate::limits::{Limiter, MAX_OPEN_NAMESPACES};
use crate::registry::Function;
use rime_abi::{EXPORT_INVOKE, EXPORT_MEMORY, IMPORT_MODULE};
use rime_storage::{TreeId, Tx, TxError};
use std::ptr::NonNull;
use std::sync::Arc;
use wasmtime::{Caller, Engine, ExternType, Linker, Memory, Module, ValType};

// The codes host calls return, from the one definition of the ABI.
pub(crate) use rime_abi::{
    CAS_MISMATCH, CAS_OK, ERR_BAD_HANDLE, ERR_DENIED, ERR_INVALID, ERR_KEY_TOO_LARGE, ERR_LIMIT,
    ERR_NOT_FOUND, ERR_NOT_I64, ERR_OUTPUT_TOO_LARGE, ERR_OVERFLOW, ERR_VALUE_TOO_LARGE,
    ERR_WRITE_SET_FULL,
};

/// The transaction and input of the running attempt, as pointers: wasmtime
/// requires a store's data to be `'static`, and both live on the stack of
/// the `Db::transaction` closure that runs the attempt.
///
/// Invariant (upheld by `invoke::run_attempt`, the only code that sets or
/// clears it): a `Scope` is present in the store's data only while
/// `rime_invoke` runs, inside the closure that owns the `&mut Tx` and the
/// borrowed input; it is cleared before the closure returns, before the
/// store is dropped and whether the call returned or trapped. Host
/// functions run only during that call, on that thread.
pub(crate) struct Scope {
    tx: NonNull<Tx<'static>>,
    input: NonNull<[u8]>,
}

impl Scope {
    pub(crate) fn new(tx: &mut Tx<'_>, input: &[u8]) -> Scope {
        Scope {
            // A lifetime-only cast; see the type's invariant.
            tx: NonNull::from(tx).cast::<Tx<'static>>(),
            input: NonNull::from(input),
        }
    }
}

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
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct LogBudget {
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
    pub scope: Option<Scope>,
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
}

impl HostState {
    pub(crate) fn new(function: Arc<Function>, log: LogBudget) -> HostState {
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
            scope: None,
            handles,
            output: Vec::new(),
            output_refused: false,
            writes: write_set::WriteSet::default(),
            tx_error: None,
            log,
        }
    }

    /// The running attempt's transaction.
    #[allow(unsafe_code)] // dereferences `Scope::tx`, see the SAFETY comment
    fn tx(&mut self) -> Result<&mut Tx<'static>, wasmtime::Error> {
        let scope = self.scope.as_mut().ok_or_else(no_scope)?;
        // SAFETY: per `Scope`'s invariant the pointee is the live `&mut Tx`
        // of the closure that is (further up this thread's stack) running
        // the wasm call that called us; nothing else uses it meanwhile, and
        // the returned borrow ends before this host call returns.
        Ok(unsafe { scope.tx.as_mut() })
    }

    #[allow(unsafe_code)] // dereferences `Scope::input`, see the SAFETY comment
    fn input(&self) -> Result<&[u8], wasmtime::Error> {
        let scope = self.scope.as_ref().ok_or_else(no_scope)?;
        // SAFETY: as in `tx`: the input outlives the call.
        Ok(unsafe { scope.input.as_ref() })
    }

    fn handle(&self, ns: i32) -> Option<Handle> {
        usize::try_from(ns)
            .ok()
            .and_then(|i| self.handles.get(i).copied().flatten())
    }

    /// Abandons the attempt: remembers `e` and returns the trap that
    /// unwinds the guest. `invoke` hands `e` to `Db::transaction`.
    fn abandon(&mut self, e: TxError) -> wasmtime::Error {
        self.tx_error = Some(e);
        wasmtime::Error::msg("attempt abandoned by the host")
    }
}

fn no_scope() -> wasmtime::Error {
    wasmtime::Error::msg("host call outside an invocation")
}

/// The memory export, set by `invoke` after instantiation.
fn memory(caller: &Caller<'_, HostState>) -> Result<Memory, wasmtime::Error> {
    caller
        .data()
        .memory
        .ok_or_else(|| wasmtime::Error::msg("no memory"))
}

/// The linker with every `rime` import.
pub(crate) fn linker(engine: &Engine) -> Result<Linker<HostState>, wasmtime::Error> {
    let mut l = Linker::new(engine);
    state::define(&mut l)?;
    scan::define(&mut l)?;
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

/// Checks that `module` has the shape of `docs/abi.md` ("Module shape").
pub(crate) fn check_module(module: &Module) -> Result<(), String> {
    for imp in module.imports() {
        if imp.module() != IMPORT_MODULE {
            return Err(format!(
                "import {}.{} is not from module `{IMPORT_MODULE}`",
                imp.module(),
                imp.name()
            ));
        }
        let Some(want) = rime_abi::Import::find(imp.name()) else {
            return Err(format!("unknown import {IMPORT_MODULE}.{}", imp.name()));
        };
        match imp.ty() {
            ExternType::Func(f)
                if same(f.params(), want.params) && same(f.results(), want.results) => {}
            other => {
                return Err(format!(
                    "import {IMPORT_MODULE}.{} has type {other:?}, not the ABI's",
                    imp.name()
                ));
            }
        }
    }
    let invoke_ok = |f: &wasmtime::FuncType| {
        same(f.params(), &[]) && same(f.results(), &[rime_abi::ValType::I32])
    };
    match module.get_export(EXPORT_INVOKE) {
        Some(ExternType::Func(f)) if invoke_ok(&f) => {}
        Some(_) => {
            return Err(format!(
                "export `{EXPORT_INVOKE}` must be a function () -> i32"
            ));
        }
        None => return Err(format!("no export `{EXPORT_INVOKE}`")),
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
    Ok(())
}
