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
//! * `invoke`: an invocation as a transaction; `pool`: the worker pool.
//! * `limits`: the ABI's limits and the per-instance `ResourceLimiter`.
#![deny(unsafe_code)]

mod abi;
mod cache;
mod engine;
mod error;
mod invoke;
pub mod limits;
mod pool;
mod registry;

pub use engine::{EPOCH_TICK, RuntimeConfig, ticker_running};
pub use error::{DeployError, InvokeError, OpenError, UndeployError};
pub use invoke::Invocation;
pub use pool::Pending;
pub use registry::{FunctionConfig, FunctionInfo, Grant, namespace_tree};

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
    /// Instances alive now: slots of the pooling allocator in use, at most
    /// [`RuntimeConfig::max_instances`]. One per running attempt.
    pub instances: u64,
    /// Modules loaded from the on-disk cache / compiled.
    pub cache_hits: u64,
    pub compiles: u64,
}

#[derive(Default)]
struct Counters {
    committed: AtomicU64,
    failed: AtomicU64,
    retries: AtomicU64,
    traps: AtomicU64,
    timeouts: AtomicU64,
    /// A gauge, not a counter: instances instantiated and not yet dropped.
    instances: AtomicU64,
}

struct Inner {
    db: Arc<Db>,
    cfg: RuntimeConfig,
    engine: Engine,
    linker: Linker<abi::HostState>,
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
    pool: OnceLock<pool::Pool>,
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
        let linker = abi::linker(&engine).map_err(|e| OpenError::Engine(format!("{e:#}")))?;
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
            cache,
            registry,
            functions: RwLock::new(HashMap::new()),
            unloadable: RwLock::new(HashMap::new()),
            deploy_lock: Mutex::new(()),
            pool: OnceLock::new(),
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
        let module = i.cache.load(wasm)?;
        abi::check_module(&module).map_err(DeployError::Abi)?;
        let hash: [u8; 32] = {
            use sha2::Digest;
            sha2::Sha256::digest(wasm).into()
        };
        let generation = registry::store(&i.db, i.registry, name, wasm, hash, &config)?;
        let f = i.build(name, wasm, config, generation)?;
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

    /// Runs `name` on `input` in the calling thread, as one transaction.
    pub fn invoke(&self, name: &str, input: &[u8]) -> Result<Invocation, InvokeError> {
        self.inner.invoke(name, input)
    }

    /// Runs `name` on `input` on the worker pool (one thread per core
    /// unless [`RuntimeConfig::workers`] says otherwise).
    pub fn invoke_async(&self, name: &str, input: Vec<u8>) -> Pending {
        let (tx, rx) = std::sync::mpsc::channel();
        let inner = self.inner.clone();
        let name = name.to_string();
        let pool = self.pool();
        let job = Box::new(move || {
            let _ = tx.send(inner.invoke(&name, &input));
        });
        if !pool.submit(job) {
            // Unreachable while `self` is alive; `Pending::wait` reports it.
        }
        Pending { rx }
    }

    /// Runs every request on the worker pool; results in request order.
    pub fn invoke_many<'a>(
        &self,
        requests: impl IntoIterator<Item = (&'a str, Vec<u8>)>,
    ) -> Vec<Result<Invocation, InvokeError>> {
        let pending: Vec<Pending> = requests
            .into_iter()
            .map(|(name, input)| self.invoke_async(name, input))
            .collect();
        pending.into_iter().map(Pending::wait).collect()
    }

    fn pool(&self) -> &pool::Pool {
        self.inner
            .pool
            .get_or_init(|| pool::Pool::new(self.inner.cfg.workers))
    }

    /// Worker threads of the pool (started on first use).
    pub fn workers(&self) -> usize {
        self.pool().workers()
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
            instances: c.instances.load(Ordering::Relaxed),
            cache_hits: i.cache.hits.load(Ordering::Relaxed),
            compiles: i.cache.compiles.load(Ordering::Relaxed),
        }
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
        let module = self.cache.load(wasm)?;
        abi::check_module(&module).map_err(DeployError::Abi)?;
        let pre = self
            .linker
            .instantiate_pre(&module)
            .map_err(|e| DeployError::Abi(format!("{e:#}")))?;
        let (own_tree, grants) = registry::resolve_trees(&self.db, name, &config)?;
        Ok(Function {
            name: name.to_string(),
            own_tree,
            grants,
            pre,
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

    fn invoke(&self, name: &str, input: &[u8]) -> Result<Invocation, InvokeError> {
        // 1. Lookup (`docs/faas.md`, "Lifecycle of an invocation"; steps 2–9
        // are in `invoke.rs`): the function's `Arc` is cloned out of the
        // map, so a redeploy that swaps the entry leaves this invocation
        // with the version it found.
        let f = self
            .functions
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
            .ok_or_else(|| self.not_found(name))?;
        let c = &self.counters;
        let r = invoke::invoke(&self.engine, &self.db, &f, input, &c.instances);
        match &r {
            Ok(inv) => {
                c.committed.fetch_add(1, Ordering::Relaxed);
                c.retries
                    .fetch_add(u64::from(inv.retries), Ordering::Relaxed);
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
        r
    }
}
