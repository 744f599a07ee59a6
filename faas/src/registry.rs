//! The function registry: deployed functions, stored in the Db so they
//! survive restarts.
//!
//! Tree `rime/functions` holds, per function `<name>`:
//!
//! | key | value |
//! | --- | --- |
//! | `m/<name>` | meta: format, generation, memory limit, deadline, module length, SHA-256 |
//! | `g/<name>/<grant>` | `1` writable, `0` read-only |
//! | `c/<name>/<key>` | a configuration entry: `0` plain or `1` secret, then the value |
//! | `x/<name>/<namespace>` | empty: `namespace` is global for `name` (`docs/global.md`) |
//! | `w/<name>/<generation u64 BE>/<chunk u32 BE>` | module bytes, in chunks of at most `rime_storage::MAX_VALUE_LEN` |
//!
//! A (re)deploy writes all of it in one transaction and deletes the
//! previous generation's chunks and grants in the same transaction, so a
//! crash leaves either the old function or the new one. A function's state
//! lives in tree `ns/<name>`, which undeploy keeps.
//!
//! The `c/` entries came after the others, without a new meta format: an
//! entry stored before them has none and loads with no configuration.

use crate::error::DeployError;
use crate::limits::{
    DEFAULT_DEADLINE, DEFAULT_MEMORY_BYTES, MAX_DEADLINE, MAX_OPEN_NAMESPACES, valid_name,
};
use crate::settings::{self, Setting};
use rime_storage::{Db, TreeId, Tx, TxError};
use std::ops::{Bound, ControlFlow};
use std::time::Duration;
use wasmtime::InstancePre;

pub(crate) const REGISTRY_TREE: &str = "rime/functions";
const META_FORMAT: u8 = 1;
const META_LEN: usize = 1 + 8 + 8 + 8 + 4 + 32;

/// The tree that holds namespace `name`.
pub fn namespace_tree(name: &str) -> String {
    format!("ns/{name}")
}

/// Access to another function's (or a shared) namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub namespace: String,
    /// Write implies read.
    pub writable: bool,
}

impl Grant {
    pub fn read(namespace: impl Into<String>) -> Grant {
        Grant {
            namespace: namespace.into(),
            writable: false,
        }
    }
    pub fn write(namespace: impl Into<String>) -> Grant {
        Grant {
            namespace: namespace.into(),
            writable: true,
        }
    }
}

/// A function's configuration, fixed at deploy time.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FunctionConfig {
    pub grants: Vec<Grant>,
    /// Linear-memory limit.
    pub memory_bytes: u64,
    /// Wall-clock limit of one attempt.
    pub deadline: Duration,
    /// Configuration entries the guest reads with `config_get`.
    pub settings: Vec<Setting>,
    /// Namespaces (the own one, grants) whose authoritative copy is in the
    /// node's global store (`docs/global.md`): all of the function's, or
    /// none.
    pub global: Vec<String>,
}

impl Default for FunctionConfig {
    fn default() -> Self {
        FunctionConfig {
            grants: Vec::new(),
            memory_bytes: DEFAULT_MEMORY_BYTES,
            deadline: DEFAULT_DEADLINE,
            settings: Vec::new(),
            global: Vec::new(),
        }
    }
}

impl FunctionConfig {
    pub fn grant(mut self, g: Grant) -> Self {
        self.grants.push(g);
        self
    }
    pub fn memory_bytes(mut self, bytes: u64) -> Self {
        self.memory_bytes = bytes;
        self
    }
    pub fn deadline(mut self, d: Duration) -> Self {
        self.deadline = d;
        self
    }
    pub fn setting(mut self, s: Setting) -> Self {
        self.settings.push(s);
        self
    }
    /// Declares namespace `ns` (the own one or a grant) global.
    pub fn global(mut self, ns: impl Into<String>) -> Self {
        self.global.push(ns.into());
        self
    }
    /// Whether the function's namespaces are global (all of them).
    pub fn is_global(&self) -> bool {
        !self.global.is_empty()
    }
    /// The value of configuration entry `key`.
    pub fn setting_value(&self, key: &[u8]) -> Option<&[u8]> {
        self.settings
            .iter()
            .find(|s| s.key.as_bytes() == key)
            .map(|s| &s.value[..])
    }
}

/// What [`crate::Runtime::functions`] reports.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct FunctionInfo {
    pub name: String,
    pub config: FunctionConfig,
    /// SHA-256 of the module, hex.
    pub module_hash: String,
    pub module_len: usize,
    /// Deploy count of this name (1 for the first deploy).
    pub generation: u64,
}

pub(crate) struct ResolvedGrant {
    pub name: String,
    pub tree: TreeId,
    pub writable: bool,
}

/// A deployed, compiled function. 128-byte aligned, as `Inner`
/// is: a caller clones its `Arc` for every invocation it hands to an
/// executor, which reads the function as it instantiates it.
#[repr(align(128))]
pub(crate) struct Function {
    pub name: String,
    pub config: FunctionConfig,
    pub own_tree: TreeId,
    pub grants: Vec<ResolvedGrant>,
    pub code: Code,
    /// Where the guest's log lines go besides `tracing`.
    pub log_sink: Option<crate::LogSink>,
    /// The node's global store, for a global function
    /// (`FunctionConfig::global`); `None` also when the node has none.
    pub cluster: Option<std::sync::Arc<rime_global::Cluster>>,
    pub info: FunctionInfo,
}

/// A function's compiled code: a module of host ABI v1, or a component.
pub(crate) enum Code {
    Module {
        /// Linked with host calls that wait (a blocking caller's thread).
        pre: InstancePre<crate::abi::HostState>,
        /// Linked with host calls that suspend (on an executor).
        pre_suspending: InstancePre<crate::abi::HostState>,
        /// The module imports WASI preview 1 (`crate::wasip1`).
        wasi: bool,
        /// Where `memory` and `rime_invoke` are among the module's exports,
        /// found once at deploy: an invocation takes them by index, not
        /// by hashing their names again.
        exports: Exports,
    },
    Component(crate::component::Compiled),
}

/// The two exports of ABI v1 every invocation needs (`EXPORT_MEMORY`,
/// `EXPORT_INVOKE`), as indices into the module's exports.
#[derive(Clone, Copy)]
pub(crate) struct Exports {
    pub(crate) memory: wasmtime::ModuleExport,
    pub(crate) invoke: wasmtime::ModuleExport,
}

impl Exports {
    /// `None` if either export is missing (`abi::check_module` refuses
    /// such a module first).
    pub(crate) fn of(module: &wasmtime::Module) -> Option<Exports> {
        Some(Exports {
            memory: module.get_export_index(rime_abi::EXPORT_MEMORY)?,
            invoke: module.get_export_index(rime_abi::EXPORT_INVOKE)?,
        })
    }
}

impl Function {
    /// The name of namespace `grant`: an index into the grants, or
    /// `u8::MAX` for the function's own namespace.
    pub(crate) fn ns_name(&self, grant: u8) -> &str {
        match self.grants.get(usize::from(grant)) {
            Some(g) => &g.name,
            None => &self.name,
        }
    }

    /// Whether the function's attempts get a WASI context, and so the
    /// invocation a fixed clock and seed (`crate::wasip1`): a module
    /// importing WASI preview 1, or a component (preview 2).
    pub(crate) fn imports_wasi(&self) -> bool {
        matches!(
            self.code,
            Code::Module { wasi: true, .. } | Code::Component(_)
        )
    }
}

pub(crate) fn check_config(
    name: &str,
    cfg: &FunctionConfig,
    max_memory: u64,
) -> Result<(), DeployError> {
    if !valid_name(name.as_bytes()) {
        return Err(DeployError::BadName(name.into()));
    }
    if cfg.grants.len() >= MAX_OPEN_NAMESPACES {
        return Err(DeployError::TooManyGrants(cfg.grants.len()));
    }
    for (i, g) in cfg.grants.iter().enumerate() {
        let dup = cfg.grants[..i].iter().any(|o| o.namespace == g.namespace);
        if !valid_name(g.namespace.as_bytes()) || g.namespace == name || dup {
            return Err(DeployError::BadGrant(g.namespace.clone()));
        }
    }
    if cfg.memory_bytes > max_memory {
        return Err(DeployError::MemoryLimit {
            requested: cfg.memory_bytes,
            max: max_memory,
        });
    }
    if cfg.deadline.is_zero() || cfg.deadline > MAX_DEADLINE {
        return Err(DeployError::BadDeadline { max: MAX_DEADLINE });
    }
    settings::check(&cfg.settings)?;
    check_global(name, cfg)
}

/// A function's namespaces are all global or all local: an invocation is
/// one transaction, committed in one place (`docs/global.md`).
fn check_global(name: &str, cfg: &FunctionConfig) -> Result<(), DeployError> {
    if cfg.global.is_empty() {
        return Ok(());
    }
    let mut all: Vec<&str> = vec![name];
    all.extend(cfg.grants.iter().map(|g| g.namespace.as_str()));
    for (i, g) in cfg.global.iter().enumerate() {
        if !all.contains(&g.as_str()) {
            return Err(DeployError::BadGlobal(format!(
                "{g:?} is neither the function's own namespace nor one of its grants"
            )));
        }
        if cfg.global[..i].contains(g) {
            return Err(DeployError::BadGlobal(format!("{g:?} declared twice")));
        }
    }
    if let Some(local) = all.iter().find(|n| !cfg.global.iter().any(|g| g == *n)) {
        return Err(DeployError::BadGlobal(format!(
            "{local:?} would stay local while {:?} is global: an invocation commits in one \
             place, so declare all of the function's namespaces global (its own, {name:?}, \
             included) or none",
            cfg.global[0]
        )));
    }
    Ok(())
}

/// Resolves (creating if needed) the trees of `name`'s namespaces.
pub(crate) fn resolve_trees(
    db: &Db,
    name: &str,
    cfg: &FunctionConfig,
) -> Result<(TreeId, Vec<ResolvedGrant>), rime_storage::DbError> {
    let own = db.open_or_create_tree(&namespace_tree(name))?;
    let grants = cfg
        .grants
        .iter()
        .map(|g| {
            Ok(ResolvedGrant {
                name: g.namespace.clone(),
                tree: db.open_or_create_tree(&namespace_tree(&g.namespace))?,
                writable: g.writable,
            })
        })
        .collect::<Result<_, rime_storage::DbError>>()?;
    Ok((own, grants))
}

fn meta_key(name: &str) -> Vec<u8> {
    format!("m/{name}").into_bytes()
}
fn grant_prefix(name: &str) -> Vec<u8> {
    format!("g/{name}/").into_bytes()
}
fn setting_prefix(name: &str) -> Vec<u8> {
    format!("c/{name}/").into_bytes()
}
/// Whether a function stored in `db`'s registry declares namespace `ns`
/// global (`x/<name>/<ns>`), read without opening a runtime (`rime state`
/// on a data directory).
pub fn declared_global(db: &Db, ns: &str) -> Result<bool, TxError> {
    let Some(reg) = db.open_tree(REGISTRY_TREE)? else {
        return Ok(false);
    };
    let declarations = db.transaction(|tx| keys_with_prefix(tx, reg, b"x/"))?;
    Ok(declarations.iter().any(|(k, _)| {
        let mut parts = k[2..].splitn(2, |&b| b == b'/');
        matches!((parts.next(), parts.next()), (Some(_), Some(n)) if n == ns.as_bytes())
    }))
}

fn global_prefix(name: &str) -> Vec<u8> {
    format!("x/{name}/").into_bytes()
}
/// Every generation's chunks of `name`.
fn chunks_prefix(name: &str) -> Vec<u8> {
    format!("w/{name}/").into_bytes()
}
fn chunk_prefix(name: &str, generation: u64) -> Vec<u8> {
    let mut k = chunks_prefix(name);
    k.extend_from_slice(&generation.to_be_bytes());
    k.push(b'/');
    k
}

struct Meta {
    generation: u64,
    memory_bytes: u64,
    deadline: Duration,
    module_len: u32,
    hash: [u8; 32],
}

impl Meta {
    fn encode(&self) -> [u8; META_LEN] {
        let mut m = [0u8; META_LEN];
        m[0] = META_FORMAT;
        m[1..9].copy_from_slice(&self.generation.to_le_bytes());
        m[9..17].copy_from_slice(&self.memory_bytes.to_le_bytes());
        m[17..25].copy_from_slice(&(self.deadline.as_micros() as u64).to_le_bytes());
        m[25..29].copy_from_slice(&self.module_len.to_le_bytes());
        m[29..61].copy_from_slice(&self.hash);
        m
    }

    fn decode(v: &[u8]) -> Option<Meta> {
        let ([format], rest) = v.split_first_chunk::<1>()?;
        let (generation, rest) = rest.split_first_chunk::<8>()?;
        let (memory_bytes, rest) = rest.split_first_chunk::<8>()?;
        let (deadline_us, rest) = rest.split_first_chunk::<8>()?;
        let (module_len, rest) = rest.split_first_chunk::<4>()?;
        let hash: [u8; 32] = rest.try_into().ok()?;
        if *format != META_FORMAT {
            return None;
        }
        Some(Meta {
            generation: u64::from_le_bytes(*generation),
            memory_bytes: u64::from_le_bytes(*memory_bytes),
            deadline: Duration::from_micros(u64::from_le_bytes(*deadline_us)),
            module_len: u32::from_le_bytes(*module_len),
            hash,
        })
    }
}

fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    // Prefixes here end in b'/', so bumping the last byte gives the bound.
    let mut e = prefix.to_vec();
    *e.last_mut().expect("non-empty prefix") += 1;
    e
}

/// A (key, value) pair copied out of the registry.
type Entry = (Vec<u8>, Vec<u8>);

fn keys_with_prefix(tx: &mut Tx<'_>, tree: TreeId, prefix: &[u8]) -> Result<Vec<Entry>, TxError> {
    let end = prefix_end(prefix);
    let mut out = Vec::new();
    tx.scan(
        tree,
        Bound::Included(prefix),
        Bound::Excluded(&end),
        |k, v| {
            out.push((k.to_vec(), v.to_vec()));
            ControlFlow::Continue(())
        },
    )?;
    Ok(out)
}

/// Deletes every trace of `name` in one transaction; returns the highest
/// generation it had (`None`: nothing was deployed under `name`).
///
/// It deletes every generation's chunks, not only the one the meta names,
/// and does not need the meta to decode: a damaged entry is removed (by
/// undeploy, or replaced by a deploy) rather than stuck.
fn remove(tx: &mut Tx<'_>, reg: TreeId, name: &str) -> Result<Option<u64>, TxError> {
    let meta = tx.get(reg, &meta_key(name), Meta::decode)?;
    let mut generation = meta.flatten().map(|m| m.generation);
    for prefix in [
        grant_prefix(name),
        setting_prefix(name),
        global_prefix(name),
    ] {
        for (k, _) in keys_with_prefix(tx, reg, &prefix)? {
            tx.delete(reg, &k)?;
        }
    }
    let chunks = chunks_prefix(name);
    for (k, _) in keys_with_prefix(tx, reg, &chunks)? {
        let g = k[chunks.len()..]
            .first_chunk::<8>()
            .map(|g| u64::from_be_bytes(*g));
        generation = generation.max(g);
        tx.delete(reg, &k)?;
    }
    let had_meta = tx.delete(reg, &meta_key(name))?;
    Ok(if had_meta {
        Some(generation.unwrap_or(0))
    } else {
        generation
    })
}

/// Stores `name` (replacing any earlier deploy) in one transaction;
/// returns the new generation.
pub(crate) fn store(
    db: &Db,
    reg: TreeId,
    name: &str,
    wasm: &[u8],
    hash: [u8; 32],
    cfg: &FunctionConfig,
) -> Result<u64, TxError> {
    let module_len = u32::try_from(wasm.len()).map_err(|_| TxError::ValueTooLarge {
        len: wasm.len(),
        max: u32::MAX as usize,
    })?;
    db.transaction(|tx| {
        let generation = remove(tx, reg, name)?.map_or(1, |g| g + 1);
        for g in &cfg.grants {
            let mut k = grant_prefix(name);
            k.extend_from_slice(g.namespace.as_bytes());
            tx.put(reg, &k, &[u8::from(g.writable)])?;
        }
        for s in &cfg.settings {
            let mut k = setting_prefix(name);
            k.extend_from_slice(s.key.as_bytes());
            tx.put(reg, &k, &s.encode_value())?;
        }
        for g in &cfg.global {
            let mut k = global_prefix(name);
            k.extend_from_slice(g.as_bytes());
            tx.put(reg, &k, &[])?;
        }
        let prefix = chunk_prefix(name, generation);
        for (i, chunk) in wasm.chunks(rime_storage::MAX_VALUE_LEN).enumerate() {
            let mut k = prefix.clone();
            k.extend_from_slice(&(i as u32).to_be_bytes());
            tx.put(reg, &k, chunk)?;
        }
        let meta = Meta {
            generation,
            memory_bytes: cfg.memory_bytes,
            deadline: cfg.deadline,
            module_len,
            hash,
        };
        tx.put(reg, &meta_key(name), &meta.encode())?;
        Ok(generation)
    })
}

/// Removes `name`; whether it was deployed.
pub(crate) fn delete(db: &Db, reg: TreeId, name: &str) -> Result<bool, TxError> {
    db.transaction(|tx| Ok(remove(tx, reg, name)?.is_some()))
}

/// A stored function: name, config, module bytes, generation.
pub(crate) struct Stored {
    pub name: String,
    pub config: FunctionConfig,
    pub wasm: Vec<u8>,
    pub generation: u64,
}

/// A function the registry holds but the runtime cannot load, and why.
pub(crate) struct Unloadable {
    pub name: String,
    pub reason: String,
}

/// Every stored function, read in one transaction: each one either loads
/// or is [`Unloadable`] (a damaged entry or module). One bad function
/// leaves the others running and can be undeployed or redeployed.
pub(crate) fn load_all(db: &Db, reg: TreeId) -> Result<Vec<Result<Stored, Unloadable>>, TxError> {
    let all = db.transaction(|tx| {
        let mut out = Vec::new();
        for (k, v) in keys_with_prefix(tx, reg, b"m/")? {
            let name = String::from_utf8_lossy(&k[2..]).into_owned();
            let Some(meta) = Meta::decode(&v) else {
                out.push(Err(name));
                continue;
            };
            let mut grants = Vec::new();
            let gp = grant_prefix(&name);
            for (gk, gv) in keys_with_prefix(tx, reg, &gp)? {
                grants.push(Grant {
                    namespace: String::from_utf8_lossy(&gk[gp.len()..]).into_owned(),
                    writable: gv.first() == Some(&1),
                });
            }
            let sp = setting_prefix(&name);
            let mut settings = Vec::new();
            for (sk, sv) in keys_with_prefix(tx, reg, &sp)? {
                let key = String::from_utf8_lossy(&sk[sp.len()..]).into_owned();
                settings.push(Setting::decode(key, &sv));
            }
            let xp = global_prefix(&name);
            let global = keys_with_prefix(tx, reg, &xp)?
                .into_iter()
                .map(|(k, _)| String::from_utf8_lossy(&k[xp.len()..]).into_owned())
                .collect::<Vec<_>>();
            let mut wasm = Vec::with_capacity(meta.module_len as usize);
            for (_, chunk) in keys_with_prefix(tx, reg, &chunk_prefix(&name, meta.generation))? {
                wasm.extend_from_slice(&chunk);
            }
            out.push(Ok((name, meta, grants, settings, global, wasm)));
        }
        Ok(out)
    })?;
    Ok(all.into_iter().map(check_stored).collect())
}

/// Name, meta, grants, configuration entries (`None`: damaged), global
/// namespaces, module.
type Loaded = (
    String,
    Meta,
    Vec<Grant>,
    Vec<Option<Setting>>,
    Vec<String>,
    Vec<u8>,
);

/// A loaded entry whose module matches its recorded length and hash.
fn check_stored(entry: Result<Loaded, String>) -> Result<Stored, Unloadable> {
    use sha2::Digest;
    let (name, meta, grants, settings, global, wasm) = entry.map_err(|name| Unloadable {
        name,
        reason: "its registry entry is corrupt".into(),
    })?;
    let Some(settings) = settings.into_iter().collect::<Option<Vec<_>>>() else {
        return Err(Unloadable {
            name,
            reason: "a configuration entry of it is corrupt".into(),
        });
    };
    if wasm.len() != meta.module_len as usize || sha2::Sha256::digest(&wasm)[..] != meta.hash {
        return Err(Unloadable {
            name,
            reason: "the stored module does not match its recorded length and hash".into(),
        });
    }
    Ok(Stored {
        name,
        config: FunctionConfig {
            grants,
            memory_bytes: meta.memory_bytes,
            deadline: meta.deadline,
            settings,
            global,
        },
        wasm,
        generation: meta.generation,
    })
}
