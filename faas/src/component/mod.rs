//! Component faaslets (`docs/components.md`): wasm components of the
//! `rime:faaslet/faaslet` world (`faas/wit/`), which export
//! `rime:faaslet/handler` and import `wasi:keyvalue` (store, atomics,
//! batch), Rime's `scan`, and WASI preview 2 without files or sockets.
//!
//! A component's invocation is the same transaction as a module's: the
//! retry loop of `crate::invoke` runs [`run_attempt`] instead of the
//! module's attempt, and the keyvalue host calls (`kv.rs`) go through the
//! attempt's `HostState` (its `OwnedTx`, write-set accounting, log budget
//! and memory limiter) exactly as the ABI v1 host calls do.
//!
//! * `kv.rs`: `wasi:keyvalue` and `rime:faaslet/scan` over namespaces.
//! * `stdio.rs`: stdout/stderr captured and logged as the function's.

mod kv;
mod stdio;

use crate::abi::{HostState, LogBudget};
use crate::error::{DeployError, InvokeError};
use crate::invoke::{Failed, classify_error};
use crate::limits::MAX_OUTPUT_LEN;
use crate::registry::Function;
use rime_storage::OwnedTx;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Engine, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

wasmtime::component::bindgen!({
    path: "wit",
    world: "rime:faaslet/faaslet",
    imports: { default: trappable },
    with: {
        "wasi:keyvalue/store.bucket": kv::Bucket,
        "wasi:keyvalue/atomics.cas": kv::Cas,
    },
    require_store_data_send: true,
});

/// The export every component faaslet has, as named in its WIT.
pub(crate) const HANDLER_EXPORT: &str = "rime:faaslet/handler@0.1.0";

/// Interfaces (by package) a component may import: the keyvalue and scan
/// imports of Rime's world, and WASI preview 2 as `wasmtime-wasi` links it
/// (files and sockets linked but granted nothing: no preopens, every
/// address refused). Anything else is refused at deploy, by name.
const PROVIDED_PACKAGES: &[&str] = &[
    "wasi:keyvalue/",
    "rime:faaslet/",
    "wasi:cli/",
    "wasi:clocks/",
    "wasi:io/",
    "wasi:random/",
    "wasi:filesystem/",
    "wasi:sockets/",
];

/// Whether `wasm` is a component (not a core module): the binary's layer
/// field (bytes 6..8 of the header) is 1 for components, 0 for modules. In
/// the text format (accepted as for modules), it begins `(component`.
pub(crate) fn is_component(wasm: &[u8]) -> bool {
    let binary = wasm.len() >= 8 && wasm[..4] == *b"\0asm" && wasm[6..8] == [1, 0];
    binary || wasm.trim_ascii_start().starts_with(b"(component")
}

/// The linker every component faaslet is linked with.
pub(crate) fn linker(engine: &Engine) -> Result<Linker<ComponentState>, wasmtime::Error> {
    let mut l = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut l)?;
    Faaslet::add_to_linker::<ComponentState, wasmtime::component::HasSelf<ComponentState>>(
        &mut l,
        |s| s,
    )?;
    Ok(l)
}

/// A compiled, linked component faaslet.
pub(crate) struct Compiled {
    pre: FaasletPre<ComponentState>,
}

/// Compiles `wasm` and checks it against Rime's world: every import is
/// one Rime provides (else the error names it), and the handler is
/// exported with the world's type.
pub(crate) fn compile(
    engine: &Engine,
    linker: &Linker<ComponentState>,
    wasm: &[u8],
) -> Result<Compiled, DeployError> {
    let component =
        Component::new(engine, wasm).map_err(|e| DeployError::Malformed(format!("{e:#}")))?;
    let ty = component.component_type();
    for (name, _) in ty.imports(engine) {
        if !PROVIDED_PACKAGES.iter().any(|p| name.starts_with(p)) {
            return Err(DeployError::Component(format!(
                "it imports `{name}`, which Rime does not provide (it provides \
                 wasi:keyvalue@0.2.0-draft2 store/atomics/batch, rime:faaslet/scan, \
                 and WASI preview 2 cli, clocks, io and random)"
            )));
        }
    }
    if ty.get_export(engine, HANDLER_EXPORT).is_none() {
        return Err(DeployError::Component(format!(
            "it does not export `{HANDLER_EXPORT}` \
             (handle: func(input: list<u8>) -> result<list<u8>, string>)"
        )));
    }
    let pre = linker
        .instantiate_pre(&component)
        .map_err(|e| DeployError::Component(format!("{e:#}")))?;
    let pre = FaasletPre::new(pre).map_err(|e| DeployError::Component(format!("{e:#}")))?;
    Ok(Compiled { pre })
}

/// The data of a component's store: the ABI v1 host state (transaction,
/// write set, log budget, limiter) and what WASI needs.
pub(crate) struct ComponentState {
    host: HostState,
    wasi: WasiCtx,
    table: ResourceTable,
    /// Buckets and CAS handles alive, bounded by `kv::MAX_LIVE_HANDLES`.
    live_handles: usize,
}

impl WasiView for ComponentState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Steps 4–7 of the lifecycle (`docs/faas.md`) for a component: one
/// attempt of the invocation's transaction, on the caller's thread.
pub(crate) fn run_attempt(
    engine: &Engine,
    f: &Arc<Function>,
    c: &Compiled,
    input: &Arc<[u8]>,
    txn: OwnedTx,
    log: &mut LogBudget,
    instances: &AtomicU64,
) -> (OwnedTx, Result<Vec<u8>, Failed>) {
    let mut alive = None;
    let mut host = HostState::new(f.clone(), *log, txn, input.clone());
    // Host calls wait for the disk in place: a component runs on its
    // caller's thread (docs/components.md, "Async").
    host.nowait = false;
    let (stdio, wasi) = stdio::context();
    let state = ComponentState {
        host,
        wasi,
        table: ResourceTable::new(),
        live_handles: 0,
    };
    let mut store = Store::new(engine, state);
    store.limiter(|s| &mut s.host.limiter);
    store.set_epoch_deadline(crate::invoke::deadline_ticks(f.config.deadline));
    store.epoch_deadline_trap();
    let r = (|| {
        let instance = c
            .pre
            .instantiate(&mut store)
            .map_err(|e| fail(&store, e, f))?;
        alive = Some(crate::invoke::Alive::new(instances));
        let call = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            instance
                .rime_faaslet_handler()
                .call_handle(&mut store, input)
        }))
        .unwrap_or_else(|p| Err(wasmtime::Error::msg(crate::invoke::panic_text(&p))));
        match call {
            Ok(Ok(output)) if output.len() > MAX_OUTPUT_LEN => {
                Err(Failed::Final(InvokeError::OutputTooLarge {
                    max: MAX_OUTPUT_LEN,
                }))
            }
            Ok(Ok(output)) => Ok(output),
            Ok(Err(message)) => Err(Failed::Final(function_error(&store, message))),
            Err(e) => {
                if let Some(txe) = store.data_mut().host.tx_error.take() {
                    return Err(Failed::Tx(txe));
                }
                Err(fail(&store, e, f))
            }
        }
    })();
    let state = store.into_data();
    drop(alive);
    let mut host = state.host;
    stdio.log(&mut host.log, &f.name);
    *log = host.log;
    (host.txn, r)
}

/// The handler's `err`: the function's error, or the write set's if a
/// write was refused for it (as for a module).
fn function_error(store: &Store<ComponentState>, message: String) -> InvokeError {
    if store.data().host.writes.refused {
        return InvokeError::WriteSetFull {
            max: crate::limits::MAX_WRITE_SET_BYTES,
        };
    }
    InvokeError::Function {
        code: rime_abi::RESULT_ERROR,
        message,
    }
}

fn fail(store: &Store<ComponentState>, e: wasmtime::Error, f: &Function) -> Failed {
    Failed::Final(classify_error(e, store.data().host.limiter.denied, f))
}
