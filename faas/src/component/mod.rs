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
//! * `http.rs`: components exporting `wasi:http/incoming-handler`.
//!
//! WASI preview 2 is the context WASI preview 1 modules get
//! (`crate::wasip1::builder`): the function's settings as the environment,
//! stdout and stderr into its log, the invocation's fixed clock and random
//! seed (the same in every attempt), no preopened directories, every
//! socket refused. It is built for every attempt: a component's runtime
//! (CPython, StarlingMonkey, Rust's std) reads its environment and clocks
//! as it starts.

pub(crate) mod http;
mod kv;

use crate::abi::{HostState, LogBudget};
use crate::error::{DeployError, InvokeError};
use crate::invoke::{Failed, classify_error};
use crate::limits::MAX_OUTPUT_LEN;
use crate::registry::Function;
use crate::wasip1::Fixed;
use rime_storage::OwnedTx;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use wasmtime::component::{Component, ComponentExportIndex, Linker, Resource, ResourceTable};
use wasmtime::{Engine, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::p2::types::{HostIncomingRequest, HostResponseOutparam};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

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
/// address refused; they cannot be refused at deploy, since the libc of
/// componentize-py's CPython imports them all). Anything else is refused
/// at deploy, by name.
const PROVIDED_PACKAGES: &[&str] = &[
    "wasi:keyvalue/",
    "rime:faaslet/",
    "wasi:cli/",
    "wasi:clocks/",
    "wasi:io/",
    "wasi:random/",
    "wasi:filesystem/",
    "wasi:sockets/",
    // Requests and responses; not `wasi:http/outgoing-handler`: outgoing
    // HTTP is disabled.
    "wasi:http/types@",
];

/// Whether `wasm` is a component (not a core module): the binary's layer
/// field (bytes 6..8 of the header) is 1 for components, 0 for modules. In
/// the text format (accepted as for modules), it begins `(component`,
/// after any blank space and `;;` line comments.
pub(crate) fn is_component(wasm: &[u8]) -> bool {
    let binary = wasm.len() >= 8 && wasm[..4] == *b"\0asm" && wasm[6..8] == [1, 0];
    binary || skip_line_comments(wasm).starts_with(b"(component")
}

fn skip_line_comments(mut text: &[u8]) -> &[u8] {
    loop {
        text = text.trim_ascii_start();
        if !text.starts_with(b";;") {
            return text;
        }
        let end = text.iter().position(|&b| b == b'\n').unwrap_or(text.len());
        text = &text[end..];
    }
}

/// A component the pooling allocator refused for what one invocation of it
/// would take (`crate::engine`, `MAX_CORE_INSTANCES_PER_COMPONENT` and the
/// rest): wasmtime says which limit, in its own words; this says it is
/// Rime's per-invocation limit, not a malformed binary.
pub(crate) fn too_large(e: DeployError) -> DeployError {
    match e {
        DeployError::Malformed(m) if m.contains("in the pooling allocator") => {
            DeployError::Component(format!(
                "one invocation of it needs more than Rime gives an invocation \
                 ({} core instances, {} linear memory, {} tables): {m}",
                crate::engine::MAX_CORE_INSTANCES_PER_COMPONENT,
                crate::engine::MAX_MEMORIES_PER_COMPONENT,
                crate::engine::MAX_TABLES_PER_COMPONENT,
            ))
        }
        e => e,
    }
}

/// The linker every component faaslet is linked with.
pub(crate) fn linker(engine: &Engine) -> Result<Linker<ComponentState>, wasmtime::Error> {
    let mut l = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut l)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_sync(&mut l)?;
    Faaslet::add_to_linker::<ComponentState, wasmtime::component::HasSelf<ComponentState>>(
        &mut l,
        |s| s,
    )?;
    Ok(l)
}

/// A compiled, linked component faaslet.
pub(crate) struct Compiled {
    entry: Entry,
}

/// How a component is invoked.
enum Entry {
    /// `rime:faaslet/handler.handle`: input bytes to output bytes.
    Handler(FaasletPre<ComponentState>),
    /// `wasi:http/incoming-handler.handle`: a request to a response.
    Http {
        pre: wasmtime::component::InstancePre<ComponentState>,
        handle: ComponentExportIndex,
    },
}

impl Compiled {
    /// Whether it is HTTP-triggered (exports `wasi:http/incoming-handler`).
    pub(crate) fn is_http(&self) -> bool {
        matches!(self.entry, Entry::Http { .. })
    }
}

/// Checks a compiled component (from the cache, `crate::cache`) against
/// Rime's world and links it: every import is one Rime provides (else the
/// error names it), and the handler is exported with the world's type.
pub(crate) fn link(
    engine: &Engine,
    linker: &Linker<ComponentState>,
    component: Component,
) -> Result<Compiled, DeployError> {
    let ty = component.component_type();
    for (name, _) in ty.imports(engine) {
        if !PROVIDED_PACKAGES.iter().any(|p| name.starts_with(p)) {
            return Err(DeployError::Component(format!(
                "it imports `{name}`, which Rime does not provide (it provides \
                 wasi:keyvalue@0.2.0-draft2 store/atomics/batch, rime:faaslet/scan, \
                 wasi:http/types, and WASI preview 2 cli, clocks, io, random, and \
                 filesystem and sockets granting nothing; outgoing HTTP is disabled)"
            )));
        }
    }
    let http_export = ty
        .exports(engine)
        .map(|(name, _)| name)
        .find(|name| name.starts_with(http::INCOMING_HANDLER))
        .map(str::to_string);
    if http_export.is_none() && ty.get_export(engine, HANDLER_EXPORT).is_none() {
        return Err(DeployError::Component(format!(
            "it exports neither `{HANDLER_EXPORT}` \
             (handle: func(input: list<u8>) -> result<list<u8>, string>) \
             nor `wasi:http/incoming-handler@0.2.x`"
        )));
    }
    let bad = |e: wasmtime::Error| DeployError::Component(format!("{e:#}"));
    let pre = linker.instantiate_pre(&component).map_err(bad)?;
    let entry = match http_export {
        Some(name) => {
            let handle = component
                .get_export_index(None, &name)
                .and_then(|i| component.get_export_index(Some(&i), "handle"))
                .ok_or_else(|| {
                    DeployError::Component(format!("`{name}` has no function `handle`"))
                })?;
            Entry::Http { pre, handle }
        }
        None => Entry::Handler(FaasletPre::new(pre).map_err(bad)?),
    };
    Ok(Compiled { entry })
}

/// The data of a component's store: the ABI v1 host state (transaction,
/// write set, log budget, limiter) and what WASI needs.
pub(crate) struct ComponentState {
    host: HostState,
    wasi: WasiCtx,
    table: ResourceTable,
    http: WasiHttpCtx,
    http_hooks: http::NoOutgoing,
    /// Buckets and CAS handles alive, bounded by `kv::MAX_LIVE_HANDLES`.
    live_handles: usize,
}

impl WasiHttpView for ComponentState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.http_hooks,
        }
    }
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
/// attempt of the invocation's transaction, on the caller's thread. The
/// same inputs as the module path's `invoke::run_attempt`, plus the
/// component and the attempt's fixed clock and seed.
#[allow(clippy::too_many_arguments)]
pub(crate) fn run_attempt(
    engine: &Engine,
    f: &Arc<Function>,
    c: &Compiled,
    input: &Arc<[u8]>,
    txn: OwnedTx,
    log: &mut LogBudget,
    fixed: Fixed,
    instances: &AtomicU64,
) -> (OwnedTx, Result<Vec<u8>, Failed>) {
    let mut alive = None;
    let mut host = HostState::new(f.clone(), std::mem::take(log), txn, input.clone());
    // Host calls wait for the disk in place: a component runs on its
    // caller's thread (docs/components.md, "Async").
    host.nowait = false;
    let output = crate::wasip1::Output::default();
    let wasi = crate::wasip1::builder(f, fixed, &output).build();
    let state = ComponentState {
        host,
        wasi,
        table: ResourceTable::new(),
        http: WasiHttpCtx::new(),
        http_hooks: http::NoOutgoing,
        live_handles: 0,
    };
    let mut store = Store::new(engine, state);
    store.limiter(|s| &mut s.host.limiter);
    store.set_epoch_deadline(crate::invoke::deadline_ticks(f.config.deadline));
    store.epoch_deadline_trap();
    let mut r = match &c.entry {
        Entry::Handler(pre) => call_handler(&mut store, pre, input, f, &mut alive, instances),
        Entry::Http { pre, handle } => {
            call_http(&mut store, pre, handle, input, f, &mut alive, instances)
        }
    };
    let state = store.into_data();
    drop(alive);
    let mut host = state.host;
    // An HTTP response's body is read once the guest's end of it is gone
    // with its store: all of it is buffered by then.
    if let Ok(Outcome::Http(sent)) = r {
        r = http::collect(sent, MAX_OUTPUT_LEN)
            .map(Outcome::Done)
            .map_err(|e| Failed::Final(response_error(e)));
    }
    output.log(&mut host.log, f, true);
    *log = host.log;
    let r = r.map(|o| match o {
        Outcome::Done(output) => output,
        Outcome::Http(_) => unreachable!("collected above"),
    });
    (host.txn, r)
}

/// What a call that did not fail produced.
enum Outcome {
    Done(Vec<u8>),
    /// What the HTTP handler sent to its response-outparam.
    Http(http::Sent),
}

fn response_error(e: String) -> InvokeError {
    if e.contains("length limit exceeded") {
        return InvokeError::OutputTooLarge {
            max: MAX_OUTPUT_LEN,
        };
    }
    InvokeError::Function {
        code: rime_abi::RESULT_ERROR,
        message: e,
    }
}

/// Runs a host call into the guest, a host panic becoming its error.
fn guarded<T>(call: impl FnOnce() -> wasmtime::Result<T>) -> wasmtime::Result<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(call))
        .unwrap_or_else(|p| Err(wasmtime::Error::msg(crate::invoke::panic_text(&p))))
}

fn call_handler<'a>(
    store: &mut Store<ComponentState>,
    pre: &FaasletPre<ComponentState>,
    input: &Arc<[u8]>,
    f: &Function,
    alive: &mut Option<crate::invoke::Alive<'a>>,
    instances: &'a AtomicU64,
) -> Result<Outcome, Failed> {
    {
        let instance = pre
            .instantiate(&mut *store)
            .map_err(|e| fail(store, e, f))?;
        *alive = Some(crate::invoke::Alive::new(instances));
        let call = guarded(|| {
            instance
                .rime_faaslet_handler()
                .call_handle(&mut *store, input)
        });
        match call {
            Ok(Ok(output)) if output.len() > MAX_OUTPUT_LEN => {
                Err(Failed::Final(InvokeError::OutputTooLarge {
                    max: MAX_OUTPUT_LEN,
                }))
            }
            Ok(Ok(output)) => Ok(Outcome::Done(output)),
            Ok(Err(message)) => Err(Failed::Final(function_error(store, message))),
            Err(e) => Err(trapped(store, e, f)),
        }
    }
}

type HandleArgs = (
    Resource<HostIncomingRequest>,
    Resource<HostResponseOutparam>,
);

fn call_http<'a>(
    store: &mut Store<ComponentState>,
    pre: &wasmtime::component::InstancePre<ComponentState>,
    handle: &ComponentExportIndex,
    input: &Arc<[u8]>,
    f: &Function,
    alive: &mut Option<crate::invoke::Alive<'a>>,
    instances: &'a AtomicU64,
) -> Result<Outcome, Failed> {
    let Some(req) = http::decode_request(input) else {
        return Err(Failed::Final(InvokeError::Internal(
            "an HTTP invocation's input is not an encoded request".into(),
        )));
    };
    let instance = pre
        .instantiate(&mut *store)
        .map_err(|e| fail(store, e, f))?;
    *alive = Some(crate::invoke::Alive::new(instances));
    let (sender, mut receiver) = tokio::sync::oneshot::channel();
    let args = (|| {
        let mut view = store.data_mut().http();
        let req = view.new_incoming_request(
            wasmtime_wasi_http::p2::bindings::http::types::Scheme::Http,
            req,
        )?;
        let out = view.new_response_outparam(sender)?;
        wasmtime::Result::<HandleArgs>::Ok((req, out))
    })()
    .map_err(|e| Failed::Final(InvokeError::Internal(format!("{e:#}"))))?;
    let call = guarded(|| {
        let func = instance.get_typed_func::<HandleArgs, ()>(&mut *store, handle)?;
        func.call(&mut *store, args)
    });
    match call {
        Ok(()) => Ok(Outcome::Http(receiver.try_recv())),
        Err(e) => Err(trapped(store, e, f)),
    }
}

/// A call that trapped: the storage error that abandoned it, if any.
fn trapped(store: &mut Store<ComponentState>, e: wasmtime::Error, f: &Function) -> Failed {
    if let Some(txe) = store.data_mut().host.tx_error.take() {
        return Failed::Tx(txe);
    }
    fail(store, e, f)
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
    let denied = store.data().host.limiter.denied;
    let panic = store.data().host.panic.clone();
    Failed::Final(classify_error(e, denied, panic, f))
}

#[cfg(test)]
mod tests {
    use super::is_component;

    #[test]
    fn components_are_told_from_modules_in_both_formats() {
        assert!(is_component(b"\0asm\x0d\0\x01\0"));
        assert!(!is_component(b"\0asm\x01\0\0\0"));
        assert!(is_component(b"  (component)"));
        assert!(is_component(b";; a comment\n  ;; another\n(component)"));
        assert!(!is_component(b";; (component\n(module)"));
        assert!(!is_component(b";; only a comment"));
    }
}
