//! The wasmtime [`Engine`]: its configuration (pooling allocator, epoch
//! interruption) and the process-wide epoch ticker.

use crate::error::OpenError;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;
use wasmtime::{
    Config, Enabled, Engine, EngineWeak, InstanceAllocationStrategy, PoolingAllocationConfig,
};

/// How a [`crate::Runtime`] is set up. `RuntimeConfig::default()` is a
/// sane production setting.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RuntimeConfig {
    /// Instances alive at once (slots of the pooling allocator, each with
    /// its fiber stack): the invocations running on the executors and on
    /// blocking callers together. An invocation that finds none free
    /// fails with [`crate::InvokeError::Overloaded`].
    pub max_instances: u32,
    /// Invocations admitted to the executors and not yet finished
    /// (running or queued); past it, [`crate::InvokeError::Overloaded`].
    /// At most [`RuntimeConfig::max_instances`] of them run at once; the
    /// rest wait in the executors' queues.
    pub max_admitted: usize,
    /// Largest memory limit a function may be deployed with.
    pub max_memory_bytes: u64,
    /// Where compiled modules are cached; `None` compiles at every open.
    pub cache_dir: Option<PathBuf>,
    /// Executor threads of [`crate::Runtime::invoke_async`]; 0 = one per
    /// core.
    pub workers: usize,
    /// Wasm stack limit of one instance.
    pub max_wasm_stack: usize,
    /// Receives every guest log line (besides `tracing`); `None`: none.
    pub log_sink: Option<crate::LogSink>,
    /// The global store of global namespaces (`docs/global.md`); `None`:
    /// invocations of a global function fail with `GlobalUnavailable`.
    pub global: Option<std::sync::Arc<rime_global::Cluster>>,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            max_instances: DEFAULT_MAX_INSTANCES,
            max_admitted: DEFAULT_MAX_ADMITTED,
            max_memory_bytes: 1 << 30,
            cache_dir: None,
            workers: 0,
            max_wasm_stack: 512 << 10,
            log_sink: None,
            global: None,
        }
    }
}

impl RuntimeConfig {
    pub fn cache_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cache_dir = Some(dir.into());
        self
    }
    pub fn max_instances(mut self, n: u32) -> Self {
        self.max_instances = n;
        self
    }
    pub fn max_memory_bytes(mut self, bytes: u64) -> Self {
        self.max_memory_bytes = bytes;
        self
    }
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = n;
        self
    }
    pub fn max_admitted(mut self, n: usize) -> Self {
        self.max_admitted = n;
        self
    }
    /// Sends every guest log line to `sink` (functions deployed or loaded
    /// after this runtime opens with it: all of them).
    pub fn log_sink(mut self, sink: crate::LogSink) -> Self {
        self.log_sink = Some(sink);
        self
    }
    /// Serves global namespaces from `cluster` (`docs/global.md`).
    pub fn global(mut self, cluster: std::sync::Arc<rime_global::Cluster>) -> Self {
        self.global = Some(cluster);
        self
    }
}

/// Instances (and so invocations running) at once by default: thousands
/// in flight per core, as the async executors are built for. What one
/// costs while it waits: its fiber stack's touched pages and its guest
/// memory's (a Rust guest touches a few pages of each); the slots'
/// address space is reserved, not committed.
pub const DEFAULT_MAX_INSTANCES: u32 = 4096;

/// Invocations admitted at once by default: as many again as can run
/// wait in the executors' queues.
pub const DEFAULT_MAX_ADMITTED: usize = 2 * DEFAULT_MAX_INSTANCES as usize;

/// Native stack a fiber keeps for host calls beyond the wasm stack limit:
/// the deepest host call (a read of a large value through the B+tree and
/// the buffer manager, its eviction included) uses well under half.
const HOST_STACK_BYTES: usize = 256 << 10;

/// Period of the epoch ticker: the granularity of deadlines. 5 ms keeps
/// the ticker's cost negligible (200 wake-ups a second for the process)
/// while a 1 s deadline is met within 0.5 %.
pub const EPOCH_TICK: Duration = Duration::from_millis(5);

/// Core instances one invocation of a component may create. A
/// component's instance is one component instance over several core
/// instances, each counted by the pool: a Rust `wasm32-wasip2` guest has 3
/// (its module and wit-component's two shims), a componentize-js one 4, a
/// componentize-py one 14 (CPython, its libc and extension libraries,
/// linked dynamically, and the shims). A component with more is refused at
/// deploy (`DeployError::Component`).
pub const MAX_CORE_INSTANCES_PER_COMPONENT: u32 = 32;

/// Tables one invocation of a component may create: a guest's own
/// table and the shim's table of indirect lowerings (all five example
/// components have exactly two). A module has at most one.
pub const MAX_TABLES_PER_COMPONENT: u32 = 2;

/// Linear memories one invocation of a component may create: one, as a
/// module (the toolchains above share one memory among a component's core
/// instances). Each memory slot reserves `max_memory_bytes` of address
/// space, so this is kept at one.
pub const MAX_MEMORIES_PER_COMPONENT: u32 = 1;

pub(crate) fn new_engine(cfg: &RuntimeConfig) -> Result<Engine, OpenError> {
    let mut c = Config::new();
    c.allocation_strategy(InstanceAllocationStrategy::Pooling(pool(cfg)?));
    configure(&mut c, cfg);
    let engine = Engine::new(&c).map_err(|e| OpenError::Engine(format!("{e:#}")))?;
    register_with_ticker(&engine)?;
    Ok(engine)
}

/// The pooling allocator's slots, sized so that `max_instances`
/// invocations fit at once whether each is a module or a component: every
/// invocation may take up to the per-component maxima above (the pool's
/// counts are of core instances, memories and tables, not invocations; a
/// component's three core instances and two tables would otherwise use
/// three and two invocations' slots).
fn pool(cfg: &RuntimeConfig) -> Result<PoolingAllocationConfig, OpenError> {
    let n = cfg.max_instances;
    let times = |per: u32| {
        n.checked_mul(per).ok_or_else(|| {
            OpenError::Engine(format!(
                "max_instances {n} is too large (at most {})",
                u32::MAX / per
            ))
        })
    };
    let mut pool = PoolingAllocationConfig::default();
    pool.total_core_instances(times(MAX_CORE_INSTANCES_PER_COMPONENT)?)
        .total_memories(times(MAX_MEMORIES_PER_COMPONENT)?)
        .total_tables(times(MAX_TABLES_PER_COMPONENT)?)
        .max_core_instances_per_component(MAX_CORE_INSTANCES_PER_COMPONENT)
        .max_memories_per_component(MAX_MEMORIES_PER_COMPONENT)
        .max_tables_per_component(MAX_TABLES_PER_COMPONENT)
        .total_component_instances(n)
        .max_memories_per_module(1)
        .max_memory_size(cfg.max_memory_bytes as usize)
        // Keep up to 1 MiB of a freed slot's pages resident, reset in place
        // rather than decommitted.
        .linear_memory_keep_resident(1 << 20)
        // With PAGEMAP_SCAN (Linux >= 6.7) only the pages the last instance
        // actually dirtied are reset (memset / image copy), and no madvise
        // is needed while they fit in the 1 MiB above. Without it, every
        // instance of a Rust guest (17 pages: 1 MiB stack + data) memsets
        // the whole first MiB and madvises the rest (a TLB shootdown that
        // interrupts every other thread of the process), then page-faults
        // it all back in: ~20 of ~28 µs of a `kv` get, and the reason two
        // threads were slower than one. Falls back to memset + madvise
        // where the ioctl is missing.
        .pagemap_scan(Enabled::Auto)
        // Likewise reset a freed table's first 64 KiB in place (a guest's
        // table is a page or two) instead of one madvise per invocation.
        .table_keep_resident(64 << 10)
        .table_elements(64 << 10)
        // One fiber stack per instance, from the pool: nothing is mapped
        // or unmapped per invocation.
        .total_stacks(n);
    Ok(pool)
}

/// Everything of the engine but its allocator.
fn configure(c: &mut Config, cfg: &RuntimeConfig) {
    c.epoch_interruption(true)
        // Explicit bounds checks instead of guard pages: then a slot's
        // pages stay read/write between instances (still reset, and out of
        // the guest's reach beyond its current size), so an instance that
        // grows its memory (every Rust guest's allocator does) costs no
        // mprotect to grow and another to shrink at the next instantiate.
        // Each such mprotect took the process's mmap lock for writing and
        // flushed the TLB of every CPU running it: with both, a `kv` get
        // went from ~11 to ~6 µs, and 2 threads from 0.6× to 1.05× one.
        .signals_based_traps(false)
        .memory_guard_size(0)
        .max_wasm_stack(cfg.max_wasm_stack)
        // Every call runs on a fiber (`call_async`), so that a host call
        // can suspend the invocation (a page to read, a log sync to wait
        // for) and its thread run others; a blocking caller drives its own
        // fiber. Fiber stacks: the wasm limit plus the host's share.
        .async_stack_size(cfg.max_wasm_stack + HOST_STACK_BYTES)
        .parallel_compilation(true);
}

/// The engines the ticker serves, and whether its thread runs. One thread
/// for the whole process bumps every live engine's epoch each
/// [`EPOCH_TICK`]; dead engines drop out.
struct Ticked {
    engines: Vec<EngineWeak>,
    running: bool,
}

static TICKED: Mutex<Ticked> = Mutex::new(Ticked {
    engines: Vec::new(),
    running: false,
});

fn ticked() -> std::sync::MutexGuard<'static, Ticked> {
    TICKED.lock().unwrap_or_else(|p| p.into_inner())
}

/// Adds `engine` to the ticker's, starting its thread if none runs. A
/// thread that cannot start is an error (no deadline would ever fire), and
/// the next engine tries again.
fn register_with_ticker(engine: &Engine) -> Result<(), OpenError> {
    let mut t = ticked();
    if !t.running {
        std::thread::Builder::new()
            .name("rime-epoch".into())
            .spawn(|| {
                loop {
                    std::thread::sleep(EPOCH_TICK);
                    ticked().engines.retain(|w| match w.upgrade() {
                        Some(e) => {
                            e.increment_epoch();
                            true
                        }
                        None => false,
                    });
                }
            })
            .map_err(|e| OpenError::Engine(format!("cannot start the epoch ticker thread: {e}")))?;
        t.running = true;
    }
    t.engines.push(engine.weak());
    Ok(())
}

/// Whether the epoch ticker thread is running (for tests).
pub fn ticker_running() -> bool {
    ticked().running
}
