//! Rime's faaslet runtime: wasm functions ("faaslets") that read and write
//! the database through host ABI v1 (`docs/abi.md`), each invocation one
//! serializable transaction. Overview and invocation lifecycle:
//! `docs/faas.md`.
//!
//! * `engine`: the wasmtime engine (pooling allocator, epoch interruption)
//!   and the process-wide epoch ticker.
//! * `cache`: compiling modules, cached on disk by module and engine hash.
//! * `registry`: deployed functions, stored in the Db.
//! * `abi`: the `rime` imports, with bounds-checked guest memory access.
//! * `invoke`: an invocation as a transaction (a future).
//! * `exec`: the executors that run thousands of invocations per core,
//!   none holding a thread while it waits for a page or a log sync.
//! * `guest_log`: guest log lines and the sink that receives them.
//! * `limits`: the ABI's limits and the per-instance `ResourceLimiter`.
//! * `wasip1`: WASI preview 1 for `wasm32-wasip1` modules, beside `rime`.
//! * `global`: an attempt on global namespaces, committed in the node's
//!   Redis Cluster (`docs/global.md`).
#![deny(unsafe_code)]

mod abi;
mod cache;
mod checks;
mod component;
mod engine;
mod error;
mod exec;
mod global;
mod guest_log;
mod invoke;
pub mod limits;
mod registry;
mod settings;
mod wasip1;

pub use component::http::InvokingHttp;
pub use engine::{
    DEFAULT_MAX_ADMITTED, DEFAULT_MAX_INSTANCES, EPOCH_TICK, MAX_CORE_INSTANCES_PER_COMPONENT,
    MAX_MEMORIES_PER_COMPONENT, MAX_TABLES_PER_COMPONENT, RuntimeConfig, ticker_running,
};
pub use error::{DeployError, InvokeError, OpenError, UndeployError};
pub use exec::Invoking;
pub use guest_log::{GuestLog, LogLevel, LogSink, level_name};
pub use invoke::Invocation;
pub use registry::{FunctionConfig, FunctionInfo, Grant, declared_global, namespace_tree};
pub use settings::{SECRET_SHOWN, Setting};

use registry::Function;
use rime_storage::{Db, TreeId};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use wasmtime::{Engine, Linker};

/// Counters of [`Runtime::stats`].
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct RuntimeStats {
    pub functions: usize,
    /// Invocations that committed.
    pub committed: u64,
    /// Invocations that ended in an error of any kind.
    pub failed: u64,
    /// Re-runs after serialization conflicts, over all invocations.
    pub retries: u64,
    pub traps: u64,
    pub timeouts: u64,
    /// Invocations whose caller went away before they began to commit
    /// (they committed nothing; not counted in `failed`).
    pub cancelled: u64,
    /// Invocations admitted to the executors and not finished (running or
    /// queued): [`Runtime::in_flight`].
    pub in_flight: u64,
    /// Instances alive now: slots of the pooling allocator in use, at most
    /// [`RuntimeConfig::max_instances`]. One per running attempt.
    pub instances: u64,
    /// Modules loaded from the on-disk cache / compiled.
    pub cache_hits: u64,
    pub compiles: u64,
}

/// Written by whichever thread ran an invocation: on a line of their own,
/// away from what a spawning caller reads of `Inner`.
#[derive(Default)]
#[repr(align(128))]
struct Counters {
    committed: AtomicU64,
    failed: AtomicU64,
    retries: AtomicU64,
    traps: AtomicU64,
    timeouts: AtomicU64,
    cancelled: AtomicU64,
    /// A gauge, not a counter: instances instantiated and not yet dropped.
    instances: AtomicU64,
}

/// 128-byte aligned, so that in its `Arc` the reference count (which a
/// caller increments and an executor decrements for every invocation it
/// hands over) sits on a line of its own, not on the fields both read.
#[repr(align(128))]
struct Inner {
    db: Arc<Db>,
    cfg: RuntimeConfig,
    engine: Engine,
    /// Host calls that wait / that suspend (`abi::HostCalls`).
    linker: Linker<abi::HostState>,
    linker_suspending: Linker<abi::HostState>,
    /// Host calls of global functions (`abi::linker_global`).
    linker_global: Linker<abi::HostState>,
    linker_global_suspending: Linker<abi::HostState>,
    /// Host calls of components (`component`).
    component_linkers: component::Linkers,
    cache: cache::ModuleCache,
    registry: TreeId,
    functions: RwLock<HashMap<String, Arc<Function>>>,
    /// Functions the registry holds that did not load at open, with why:
    /// invoking one says so; a deploy or undeploy of the name clears it.
    unloadable: RwLock<HashMap<String, String>>,
    /// Serializes deploys and undeploys so the in-memory maps change in
    /// the same order as the registry. Lock order: `deploy_lock`, then
    /// `functions`, then `unloadable` (never two of the maps at once).
    deploy_lock: Mutex<()>,
    /// Started at the first [`Runtime::invoke_async`].
    executors: OnceLock<exec::Executors>,
    counters: Counters,
}

/// The faaslet runtime. Cheap to clone (shared); `Send + Sync`.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<Inner>,
}

impl Runtime {
    /// Opens the runtime over `db`, loading every deployed function (from
    /// the module cache when it has them).
    pub fn open(db: Arc<Db>, cfg: RuntimeConfig) -> Result<Runtime, OpenError> {
        let engine = engine::new_engine(&cfg)?;
        let link =
            |calls| abi::linker(&engine, calls).map_err(|e| OpenError::Engine(format!("{e:#}")));
        let linker = link(abi::HostCalls::Waiting)?;
        let linker_suspending = link(abi::HostCalls::Suspending)?;
        let link_global = |calls| {
            abi::linker_global(&engine, calls).map_err(|e| OpenError::Engine(format!("{e:#}")))
        };
        let linker_global = link_global(abi::HostCalls::Waiting)?;
        let linker_global_suspending = link_global(abi::HostCalls::Suspending)?;
        let component_linkers =
            component::linkers(&engine).map_err(|e| OpenError::Engine(format!("{e:#}")))?;
        let cache =
            cache::ModuleCache::new(engine.clone(), cfg.cache_dir.clone()).map_err(|source| {
                OpenError::Cache {
                    path: cfg.cache_dir.clone().unwrap_or_default(),
                    source,
                }
            })?;
        let registry = db.open_or_create_tree(registry::REGISTRY_TREE)?;
        let inner = Inner {
            db,
            cfg,
            engine,
            linker,
            linker_suspending,
            linker_global,
            linker_global_suspending,
            component_linkers,
            cache,
            registry,
            functions: RwLock::new(HashMap::new()),
            unloadable: RwLock::new(HashMap::new()),
            deploy_lock: Mutex::new(()),
            executors: OnceLock::new(),
            counters: Counters::default(),
        };
        let (mut map, mut unloadable) = (HashMap::new(), HashMap::new());
        for stored in registry::load_all(&inner.db, registry)? {
            let built =
                stored.and_then(
                    |s| match inner.build(&s.name, &s.wasm, s.config, s.generation) {
                        Ok(f) => Ok((s.name, f)),
                        Err(e) => Err(registry::Unloadable {
                            name: s.name,
                            reason: e.to_string(),
                        }),
                    },
                );
            match built {
                Ok((name, f)) => {
                    map.insert(name, Arc::new(f));
                }
                Err(u) => {
                    tracing::warn!(function = %u.name, reason = %u.reason,
                        "a deployed function does not load; undeploy or redeploy it");
                    unloadable.insert(u.name, u.reason);
                }
            }
        }
        *inner.functions.write().unwrap_or_else(|p| p.into_inner()) = map;
        *inner.unloadable.write().unwrap_or_else(|p| p.into_inner()) = unloadable;
        Ok(Runtime {
            inner: Arc::new(inner),
        })
    }

    /// Deploys (or atomically redeploys) `name`. Invocations already
    /// running finish with the old version; later ones get the new one.
    pub fn deploy(
        &self,
        name: &str,
        wasm: &[u8],
        config: FunctionConfig,
    ) -> Result<FunctionInfo, DeployError> {
        let i = &*self.inner;
        registry::check_config(name, &config, i.cfg.max_memory_bytes)?;
        let _g = i.deploy_lock.lock().unwrap_or_else(|p| p.into_inner());
        // Compile and check before storing anything: a bad module changes nothing.
        checks::check_magic(wasm)?;
        i.check_global_use(name, &config)?;
        let code = i.compile(wasm, config.is_global())?;
        if let registry::Code::Module { pre, .. } = &code {
            checks::check_memory(pre.module(), config.memory_bytes)?;
        }
        let hash: [u8; 32] = {
            use sha2::Digest;
            sha2::Sha256::digest(wasm).into()
        };
        let generation = registry::store(&i.db, i.registry, name, wasm, hash, &config)?;
        let f = i.function(name, wasm, code, config, generation)?;
        let info = f.info.clone();
        i.functions
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_string(), Arc::new(f));
        i.forget_unloadable(name);
        Ok(info)
    }

    /// Removes `name`. Its namespace's data stays (tree `ns/<name>`).
    pub fn undeploy(&self, name: &str) -> Result<(), UndeployError> {
        let i = &*self.inner;
        let _g = i.deploy_lock.lock().unwrap_or_else(|p| p.into_inner());
        if !registry::delete(&i.db, i.registry, name)? {
            return Err(UndeployError::NotFound(name.to_string()));
        }
        i.functions
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
        i.forget_unloadable(name);
        Ok(())
    }

    /// Functions the registry holds that did not load when the runtime
    /// opened (a damaged entry or module), by name, with the reason. Each
    /// stays stored, untouched, until it is undeployed or redeployed.
    pub fn unloadable(&self) -> Vec<(String, String)> {
        let mut v: Vec<_> = self
            .inner
            .unloadable
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(n, r)| (n.clone(), r.clone()))
            .collect();
        v.sort();
        v
    }

    /// Every deployed function, by name.
    pub fn functions(&self) -> Vec<FunctionInfo> {
        let mut v: Vec<_> = self
            .inner
            .functions
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .map(|f| f.info.clone())
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// Where namespace `ns`'s data lives, for reads and writes outside
    /// invocations (`rime state`, HTTP `/state`): `Ok(None)` if no deployed
    /// function declares it global (the node's own tree), the node's
    /// global store if one does (`docs/global.md`, "State commands"), and
    /// `GlobalUnavailable` if one does and the node has no global store.
    pub fn global_store_of(
        &self,
        ns: &str,
    ) -> Result<Option<Arc<rime_global::Cluster>>, InvokeError> {
        let functions = self
            .inner
            .functions
            .read()
            .unwrap_or_else(|p| p.into_inner());
        if !functions
            .values()
            .any(|f| f.config.global.iter().any(|g| g == ns))
        {
            return Ok(None);
        }
        match &self.inner.cfg.global {
            Some(c) => Ok(Some(c.clone())),
            None => Err(InvokeError::GlobalUnavailable(format!(
                "namespace {ns:?} is global and this node has no global store \
                 (start it with `rime serve --global redis://HOST:PORT`)"
            ))),
        }
    }

    /// Runs `name` on `input` in the calling thread, as one transaction;
    /// the thread waits for the invocation's reads and its log sync.
    pub fn invoke(&self, name: &str, input: &[u8]) -> Result<Invocation, InvokeError> {
        let f = self.inner.lookup(name)?;
        refuse_http(&f)?;
        self.inner.invoke_blocking(&f, Arc::from(input))
    }

    /// Runs `name` on `input` on the executors (one thread per core unless
    /// [`RuntimeConfig::workers`] says otherwise), thousands at once, none
    /// holding a thread while it waits. The [`Invoking`] is a future of the
    /// result (or [`Invoking::wait`] blocks); dropping it before the
    /// invocation begins to commit cancels it. Past
    /// [`RuntimeConfig::max_admitted`] invocations in flight, the result is
    /// `Overloaded` at once. Modules and components (`docs/components.md`)
    /// alike.
    pub fn invoke_async(&self, name: &str, input: impl Into<Arc<[u8]>>) -> Invoking {
        self.invoke_async_with_logs(name, input, None)
    }

    /// [`Runtime::invoke_async`], with this invocation's guest log lines
    /// also sent to `logs` (whatever its outcome; besides the runtime's
    /// sink): how a caller gets the lines of its own failed invocation.
    pub fn invoke_async_with_logs(
        &self,
        name: &str,
        input: impl Into<Arc<[u8]>>,
        logs: Option<LogSink>,
    ) -> Invoking {
        let f = match self.inner.lookup(name) {
            Ok(f) => f,
            // Not counted, as a blocking `invoke` of a missing name is not.
            Err(e) => return Invoking::done(Err(e)),
        };
        if let Err(e) = refuse_http(&f) {
            return Invoking::done(Err(e));
        }
        self.spawn(f, input.into(), logs)
    }

    /// Step 1 done (`f` found and its trigger checked): runs `f` on
    /// `input` as a task of the executors.
    fn spawn(&self, f: Arc<Function>, input: Arc<[u8]>, logs: Option<LogSink>) -> Invoking {
        let (invoking, outcome) = Invoking::new();
        let inner = self.inner.clone();
        let task = Box::pin(async move {
            let i = &*inner;
            let run = i.invocation(&f, input, Some(&outcome), logs);
            // A caller that goes away before the commit begins ends it here
            // (`Cancelled`, nothing committed).
            let r = exec::until_cancelled(&outcome, run).await;
            i.count(&r);
            outcome.deliver(r);
        });
        if let Err(refused) = self.executors().spawn(task) {
            let r = Err(InvokeError::Overloaded(refused.to_string()));
            self.inner.count(&r);
            return Invoking::done(r);
        }
        invoking
    }

    /// Runs HTTP-triggered component `name` (one exporting
    /// `wasi:http/incoming-handler`) on `request` as one transaction, on
    /// the calling thread: the request's target is the path and query the
    /// guest sees. The encoded request counts against `MAX_INPUT_LEN`, the
    /// response against `MAX_OUTPUT_LEN`. Where the calling thread is in a
    /// tokio runtime, it must be one that may block (`spawn_blocking`).
    pub fn invoke_http(
        &self,
        name: &str,
        request: &http::Request<bytes::Bytes>,
    ) -> Result<(http::Response<bytes::Bytes>, Invocation), InvokeError> {
        let f = self.inner.lookup_http(name)?;
        let input = component::http::encode_request(request);
        let inv = self.inner.invoke_blocking(&f, Arc::from(input))?;
        component::http::response_of(inv)
    }

    /// [`Runtime::invoke_http`] on the executors, as
    /// [`Runtime::invoke_async`] runs an invocation: no thread is held
    /// while it runs or waits, dropping the [`InvokingHttp`] before the
    /// commit begins cancels it, and past
    /// [`RuntimeConfig::max_admitted`] invocations in flight it is
    /// `Overloaded` at once.
    pub fn invoke_http_async(
        &self,
        name: &str,
        request: &http::Request<bytes::Bytes>,
    ) -> InvokingHttp {
        let invoking = match self.inner.lookup_http(name) {
            Ok(f) => {
                let input = component::http::encode_request(request);
                self.spawn(f, Arc::from(input), None)
            }
            Err(e) => Invoking::done(Err(e)),
        };
        InvokingHttp::new(invoking)
    }

    /// Runs every request on the executors; results in request order. At
    /// most half of [`RuntimeConfig::max_admitted`] are in flight at once
    /// (the oldest is waited for before the next is submitted), so a batch
    /// of any size is never refused as `Overloaded` for its own size.
    pub fn invoke_many<'a>(
        &self,
        requests: impl IntoIterator<Item = (&'a str, Vec<u8>)>,
    ) -> Vec<Result<Invocation, InvokeError>> {
        let window = (self.inner.cfg.max_admitted / 2).max(1);
        let mut results = Vec::new();
        let mut in_flight = std::collections::VecDeque::with_capacity(window);
        for (name, input) in requests {
            if in_flight.len() == window
                && let Some(oldest) = in_flight.pop_front()
            {
                results.push(Invoking::wait(oldest));
            }
            in_flight.push_back(self.invoke_async(name, input));
        }
        results.extend(in_flight.into_iter().map(Invoking::wait));
        results
    }

    fn executors(&self) -> &exec::Executors {
        let i = &*self.inner;
        i.executors.get_or_init(|| {
            exec::Executors::start(
                &i.db,
                i.cfg.workers,
                i.cfg.max_instances as usize,
                i.cfg.max_admitted,
            )
        })
    }

    /// Executor threads (started on first use).
    pub fn workers(&self) -> usize {
        self.executors().threads()
    }

    /// Invocations admitted to the executors and not finished.
    pub fn in_flight(&self) -> usize {
        self.inner
            .executors
            .get()
            .map_or(0, exec::Executors::admitted)
    }

    pub fn db(&self) -> &Arc<Db> {
        &self.inner.db
    }

    pub fn stats(&self) -> RuntimeStats {
        let i = &*self.inner;
        let c = &i.counters;
        RuntimeStats {
            functions: i.functions.read().unwrap_or_else(|p| p.into_inner()).len(),
            committed: c.committed.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
            retries: c.retries.load(Ordering::Relaxed),
            traps: c.traps.load(Ordering::Relaxed),
            timeouts: c.timeouts.load(Ordering::Relaxed),
            cancelled: c.cancelled.load(Ordering::Relaxed),
            in_flight: i.executors.get().map_or(0, exec::Executors::admitted) as u64,
            instances: c.instances.load(Ordering::Relaxed),
            cache_hits: i.cache.hits.load(Ordering::Relaxed),
            compiles: i.cache.compiles.load(Ordering::Relaxed),
        }
    }
}

/// An HTTP-triggered component is not invoked with bytes.
fn refuse_http(f: &Function) -> Result<(), InvokeError> {
    match &f.code {
        registry::Code::Component(c) if c.is_http() => Err(InvokeError::WrongTrigger(format!(
            "function {:?} is HTTP-triggered (it exports wasi:http/incoming-handler): \
             call it over HTTP at /fn/{}/",
            f.name, f.name
        ))),
        _ => Ok(()),
    }
}

impl Inner {
    fn build(
        &self,
        name: &str,
        wasm: &[u8],
        config: FunctionConfig,
        generation: u64,
    ) -> Result<Function, DeployError> {
        let code = self.compile(wasm, config.is_global())?;
        self.function(name, wasm, code, config, generation)
    }

    /// Compiles and links `wasm`: a component (`component`), or a module
    /// of host ABI v1 (`global`: with the host calls of a global function;
    /// a component's are the same either way).
    fn compile(&self, wasm: &[u8], global: bool) -> Result<registry::Code, DeployError> {
        if component::is_component(wasm) {
            // Global or not, the same two linkers; each attempt picks one
            // (`component::Linked::pick`: synchronous keyvalue imports only
            // for a local function on a blocking caller's thread).
            let compiled = self.cache.load(wasm).map_err(component::too_large)?;
            let c = component::link(&self.engine, &self.component_linkers, compiled)?;
            return Ok(registry::Code::Component(c));
        }
        let module = self.cache.load(wasm)?;
        let wasi = abi::check_module(&module).map_err(DeployError::Abi)?;
        let link = |linker: &Linker<abi::HostState>| {
            linker
                .instantiate_pre(&module)
                .map_err(|e| DeployError::Abi(format!("{e:#}")))
        };
        let exports = registry::Exports::of(&module)
            .ok_or_else(|| DeployError::Abi("the module lost its exports".into()))?;
        let (waiting, suspending) = match global {
            true => (&self.linker_global, &self.linker_global_suspending),
            false => (&self.linker, &self.linker_suspending),
        };
        Ok(registry::Code::Module {
            pre: link(waiting)?,
            pre_suspending: link(suspending)?,
            wasi,
            exports,
        })
    }

    /// A namespace is global for every function that names it or for
    /// none: `name` deployed with `cfg` must not name as local a namespace
    /// another deployed function has global, nor the other way round.
    fn check_global_use(&self, name: &str, cfg: &FunctionConfig) -> Result<(), DeployError> {
        let names = |n: &str, c: &FunctionConfig| -> Vec<String> {
            let mut v = vec![n.to_string()];
            v.extend(c.grants.iter().map(|g| g.namespace.clone()));
            v
        };
        let mine = names(name, cfg);
        let functions = self.functions.read().unwrap_or_else(|p| p.into_inner());
        for (other, f) in functions.iter().filter(|(n, _)| *n != name) {
            if let Some(ns) = names(other, &f.config)
                .into_iter()
                .find(|ns| mine.contains(ns) && cfg.is_global() != f.config.is_global())
            {
                let (g, l) = match cfg.is_global() {
                    true => (name, other.as_str()),
                    false => (other.as_str(), name),
                };
                return Err(DeployError::BadGlobal(format!(
                    "namespace {ns:?} would be global for {g:?} and local for {l:?}"
                )));
            }
        }
        Ok(())
    }

    /// Runs `f` on `input` on the calling thread (`Runtime::invoke`), and
    /// counts the outcome.
    fn invoke_blocking(
        &self,
        f: &Arc<Function>,
        input: Arc<[u8]>,
    ) -> Result<Invocation, InvokeError> {
        let r = exec::block_on(self.invocation(f, input, None, None));
        self.count(&r);
        r
    }

    /// The invocation of `f` on `input` (`invoke::invoke` over this
    /// runtime's engine, Db and instance count), as a future: `gate` is
    /// the caller's outcome slot (cancellation), `logs` its own sink.
    fn invocation<'a>(
        &'a self,
        f: &'a Arc<Function>,
        input: Arc<[u8]>,
        gate: Option<&'a exec::Outcome>,
        logs: Option<LogSink>,
    ) -> impl Future<Output = Result<Invocation, InvokeError>> + 'a {
        invoke::invoke(
            &self.engine,
            &self.db,
            f,
            input,
            &self.counters.instances,
            gate,
            logs,
        )
    }

    fn function(
        &self,
        name: &str,
        wasm: &[u8],
        code: registry::Code,
        config: FunctionConfig,
        generation: u64,
    ) -> Result<Function, DeployError> {
        let (own_tree, grants) = registry::resolve_trees(&self.db, name, &config)?;
        Ok(Function {
            name: name.to_string(),
            own_tree,
            grants,
            code,
            log_sink: self.cfg.log_sink.clone(),
            cluster: config
                .is_global()
                .then(|| self.cfg.global.clone())
                .flatten(),
            info: FunctionInfo {
                name: name.to_string(),
                config: config.clone(),
                module_hash: cache::module_hash(wasm),
                module_len: wasm.len(),
                generation,
            },
            config,
        })
    }

    /// The error for a name with no loaded function.
    fn not_found(&self, name: &str) -> InvokeError {
        let unloadable = self.unloadable.read().unwrap_or_else(|p| p.into_inner());
        match unloadable.get(name) {
            Some(reason) => InvokeError::Unloadable {
                name: name.to_string(),
                reason: reason.clone(),
            },
            None => InvokeError::NotFound(name.to_string()),
        }
    }

    /// Called under `deploy_lock` once the registry no longer holds the
    /// damaged entry of `name`.
    fn forget_unloadable(&self, name: &str) {
        self.unloadable
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
    }

    /// Step 1 of an invocation (`docs/faas.md`, "Lifecycle of an
    /// invocation"; steps 2–9 are in `invoke.rs`): the function's `Arc` is
    /// cloned out of the map, so a redeploy that swaps the entry leaves
    /// this invocation with the version it found.
    fn lookup(&self, name: &str) -> Result<Arc<Function>, InvokeError> {
        self.functions
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
            .ok_or_else(|| self.not_found(name))
    }

    /// Step 1 for an HTTP trigger: `name` must be an HTTP-triggered
    /// component.
    fn lookup_http(&self, name: &str) -> Result<Arc<Function>, InvokeError> {
        let f = self.lookup(name)?;
        if !matches!(&f.code, registry::Code::Component(c) if c.is_http()) {
            return Err(InvokeError::WrongTrigger(format!(
                "function {name:?} does not export wasi:http/incoming-handler: \
                 invoke it with bytes (POST /invoke/{name})"
            )));
        }
        Ok(f)
    }

    /// Counts an invocation's end in [`RuntimeStats`].
    fn count(&self, r: &Result<Invocation, InvokeError>) {
        let c = &self.counters;
        match r {
            Ok(inv) => {
                c.committed.fetch_add(1, Ordering::Relaxed);
                c.retries
                    .fetch_add(u64::from(inv.retries), Ordering::Relaxed);
            }
            Err(InvokeError::Cancelled) => {
                c.cancelled.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                c.failed.fetch_add(1, Ordering::Relaxed);
                match e {
                    InvokeError::Trap(_) | InvokeError::MemoryLimit { .. } => {
                        c.traps.fetch_add(1, Ordering::Relaxed);
                    }
                    InvokeError::Timeout(_) => {
                        c.timeouts.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {}
                }
            }
        }
    }
}
