//! Compiling modules, with an on-disk cache of compiled code.
//!
//! A cache entry is `<dir>/<sha256(engine compatibility hash ‖ wasm)>.cwasm`,
//! the output of `Module::serialize`. The key covers everything that
//! decides the machine code (wasmtime's version, the engine's settings and
//! the host CPU features, all in `precompile_compatibility_hash`, and the
//! module bytes), so a restart with the same binary finds every deployed
//! module compiled, and any change of binary or settings misses instead of
//! loading stale code. Entries are written to a temporary file and renamed
//! into place, so a crash never leaves a torn entry under a real name.
#![allow(unsafe_code)] // `Module::deserialize_file`, see its SAFETY comment

use crate::error::DeployError;
use sha2::{Digest, Sha256};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use wasmtime::{Engine, Module};

/// Feeds `Hash` output into SHA-256.
struct ShaHasher(Sha256);

impl Hasher for ShaHasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
    fn finish(&self) -> u64 {
        unreachable!("only used as a sink for Hash")
    }
}

/// The SHA-256 of `wasm` (hex), as stored with each function.
pub(crate) fn module_hash(wasm: &[u8]) -> String {
    hex(&Sha256::digest(wasm))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) struct ModuleCache {
    engine: Engine,
    dir: Option<PathBuf>,
    engine_key: Sha256,
    pub hits: AtomicU64,
    pub compiles: AtomicU64,
}

impl ModuleCache {
    pub fn new(engine: Engine, dir: Option<PathBuf>) -> std::io::Result<Self> {
        if let Some(d) = &dir {
            std::fs::create_dir_all(d)?;
        }
        let mut h = ShaHasher(Sha256::new());
        engine.precompile_compatibility_hash().hash(&mut h);
        Ok(ModuleCache {
            engine,
            dir,
            engine_key: h.0,
            hits: AtomicU64::new(0),
            compiles: AtomicU64::new(0),
        })
    }

    fn path(&self, wasm: &[u8]) -> Option<PathBuf> {
        let dir = self.dir.as_ref()?;
        let mut h = self.engine_key.clone();
        h.update(wasm);
        Some(dir.join(format!("{}.cwasm", hex(&h.finalize()))))
    }

    /// The compiled `wasm`: from the cache, or compiled (and cached).
    pub fn load(&self, wasm: &[u8]) -> Result<Module, DeployError> {
        let path = self.path(wasm);
        if let Some(p) = path.as_deref().filter(|p| p.exists()) {
            // SAFETY: `deserialize_file` trusts the file to be the output of
            // `Module::serialize` by a compatible engine. Files in the cache
            // directory are written only by `store` below, atomically, under
            // the hash of their source and engine; wasmtime itself rejects a
            // file from another version or configuration. The directory is
            // the runtime's own and must not be writable by untrusted users.
            match unsafe { Module::deserialize_file(&self.engine, p) } {
                Ok(m) => {
                    self.hits.fetch_add(1, Ordering::Relaxed);
                    return Ok(m);
                }
                Err(e) => {
                    tracing::warn!(path = %p.display(), error = %e, "ignoring an unusable module cache entry");
                }
            }
        }
        let module = Module::new(&self.engine, wasm)
            .map_err(|e| DeployError::Malformed(format!("{e:#}")))?;
        self.compiles.fetch_add(1, Ordering::Relaxed);
        if let Some(p) = path {
            if let Err(e) = store(&module, &p) {
                tracing::warn!(path = %p.display(), error = %e, "could not write a module cache entry");
            }
        }
        Ok(module)
    }
}

fn store(module: &Module, path: &Path) -> std::io::Result<()> {
    let bytes = module.serialize().map_err(std::io::Error::other)?;
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    let tmp = path.with_extension(format!("tmp.{}.{seq}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}
