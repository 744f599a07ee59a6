//! Component faaslets (`docs/components.md`): wasm components of the
//! `rime:faaslet/faaslet` world (`faas/wit/`), which export
//! `rime:faaslet/handler` and import `wasi:keyvalue` (store, atomics,
//! batch), Rime's `scan`, and WASI preview 2 without files or sockets.
//!
//! A component's invocation is the same transaction as a module's: the
//! retry loop of `crate::invoke` runs [`run_attempt`] instead of the
//! module's attempt, and the keyvalue host calls (`kv.rs`) go through the
//! attempt's `HostState` (its `OwnedTx`, write-set accounting, log budget
//! and memory limiter) exactly as the ABI v1 host calls do. A global
//! function's attempt also carries a `crate::global::Attempt`, which its
//! keyvalue calls go through and which step 8 commits in the cluster.
//!
//! * `kv.rs`: `wasi:keyvalue` and `rime:faaslet/scan` over namespaces.
//! * `kv_global.rs`: the same over a global function's namespaces, in the
//!   node's Redis Cluster (`docs/global.md`).
//! * `http.rs`: components exporting `wasi:http/incoming-handler`.
//! * `attempt.rs`: one attempt of an invocation, on a fiber (an
//!   executor's task, or a blocking caller driving its own).
//! * `blocking.rs`: the keyvalue and scan imports as synchronous host
//!   functions, for a local function on a blocking caller's thread.
//!
//! WASI preview 2 is the context WASI preview 1 modules get
//! (`crate::wasip1::builder`): the function's settings as the environment,
//! stdout and stderr into its log, the invocation's fixed clock and random
//! seed (the same in every attempt), no preopened directories, every
//! socket refused. It is built for every attempt: a component's runtime
//! (CPython, StarlingMonkey, Rust's std) reads its environment and clocks
//! as it starts.

mod attempt;
mod blocking;
pub(crate) mod http;
mod kv;
mod kv_global;

pub(crate) use attempt::run_attempt;

use crate::abi::HostState;
use crate::error::DeployError;
use wasmtime::Engine;
use wasmtime::component::{Component, ComponentExportIndex, Linker, ResourceTable};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

wasmtime::component::bindgen!({
    path: "wit",
    world: "rime:faaslet/faaslet",
    // Async host calls: a keyvalue read that needs a page not in memory
    // suspends the invocation on its executor (`kv.rs`). A blocking
    // caller's local invocations take `blocking.rs`'s synchronous ones.
    imports: { default: async | trappable },
    exports: { default: async },
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

/// The two linkers every component faaslet is linked with: WASI preview
/// 2 (async in both) and Rime's imports, async in `suspending` (the
/// executors, and global functions everywhere) and synchronous in
/// `waiting` (a local function on a blocking caller's thread;
/// `blocking.rs` says why).
pub(crate) struct Linkers {
    suspending: Linker<ComponentState>,
    waiting: Linker<ComponentState>,
}

/// Builds [`Linkers`] for `engine`.
pub(crate) fn linkers(engine: &Engine) -> Result<Linkers, wasmtime::Error> {
    type Own = wasmtime::component::HasSelf<ComponentState>;
    let wasi = || -> Result<Linker<ComponentState>, wasmtime::Error> {
        let mut l = Linker::new(engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut l)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut l)?;
        Ok(l)
    };
    let mut suspending = wasi()?;
    Faaslet::add_to_linker::<ComponentState, Own>(&mut suspending, |s| s)?;
    let mut waiting = wasi()?;
    blocking::Faaslet::add_to_linker::<ComponentState, Own>(&mut waiting, |s| s)?;
    Ok(Linkers {
        suspending,
        waiting,
    })
}

/// A compiled, linked component faaslet.
pub(crate) struct Compiled {
    entry: Entry,
}

/// How a component is invoked.
enum Entry {
    /// `rime:faaslet/handler.handle`: input bytes to output bytes.
    Handler(Linked<FaasletPre<ComponentState>>),
    /// `wasi:http/incoming-handler.handle`: a request to a response.
    Http {
        pre: Linked<wasmtime::component::InstancePre<ComponentState>>,
        handle: ComponentExportIndex,
    },
}

/// A component pre-instantiated with each of the [`Linkers`].
struct Linked<P> {
    suspending: P,
    waiting: P,
}

impl<P> Linked<P> {
    /// The one for an attempt whose keyvalue calls never suspend (a local
    /// function on a blocking caller's thread), or the async one.
    fn pick(&self, waiting: bool) -> &P {
        if waiting {
            &self.waiting
        } else {
            &self.suspending
        }
    }
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
    linkers: &Linkers,
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
    let pre = Linked {
        suspending: linkers
            .suspending
            .instantiate_pre(&component)
            .map_err(bad)?,
        waiting: linkers.waiting.instantiate_pre(&component).map_err(bad)?,
    };
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
        None => Entry::Handler(Linked {
            suspending: FaasletPre::new(pre.suspending).map_err(bad)?,
            waiting: FaasletPre::new(pre.waiting).map_err(bad)?,
        }),
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
