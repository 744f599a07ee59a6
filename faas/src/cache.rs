//! Compiling modules and components, with an on-disk cache of compiled
//! code.
//!
//! An entry is `<dir>/<sha256(engine fingerprint ‖ wasm)>.cwasm`, and it
//! describes itself: a header saying what it was compiled from, then the
//! artifact (the output of `Module::serialize` or `Component::serialize`).
//!
//! ```text
//!  bytes    0..8     magic: `RIMECWM` (a module) or `RIMECWC` (a
//!                    component) + format version (2)
//!           8..40    SHA-256 of the wasm module it was compiled from
//!          40..72    engine fingerprint: SHA-256 of wasmtime's
//!                    `precompile_compatibility_hash` (wasmtime version,
//!                    engine settings, target CPU features)
//!          72..80    artifact length, u64 LE
//!          80..112   SHA-256 of the artifact
//!         112..      the artifact
//! ```
//!
//! `Module::deserialize` (and `Component::deserialize`) trusts its input completely (it maps the bytes as
//! executable code), so [`ModuleCache::load`] hands it only bytes it has
//! verified, held in memory (no file that can change after the check): the
//! header names the module being loaded and this engine, the length is
//! exact, and the artifact hashes to the recorded SHA-256. Anything else —
//! a flipped bit, a truncated or empty file, another function's entry
//! under this name, an entry of another wasmtime or older format — is
//! logged (the file named), recompiled and rewritten. The directory is
//! created private (0700), and one that someone else can write to is not
//! used at all: the hashes detect damage, not a forger who recomputes them.
//!
//! Entries are written to a temporary file and renamed into place, so a
//! crash leaves no torn entry under a real name (and one that got torn
//! anyway fails its checks).
#![allow(unsafe_code)] // `deserialize` and `geteuid`, see their SAFETY comments

use crate::error::DeployError;
use sha2::{Digest, Sha256};
use std::fs::File;
use std::hash::{Hash, Hasher};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use wasmtime::component::Component;
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

type Digest32 = [u8; 32];

fn sha256(bytes: &[u8]) -> Digest32 {
    Sha256::digest(bytes).into()
}

/// The SHA-256 of `wasm` (hex), as stored with each function.
pub(crate) fn module_hash(wasm: &[u8]) -> String {
    hex(&sha256(wasm))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Magic and format version of a module's entry (version 1 was the bare
/// artifact).
const MAGIC: [u8; 8] = *b"RIMECWM\x02";
/// Magic and format version of a component's entry.
const MAGIC_COMPONENT: [u8; 8] = *b"RIMECWC\x02";

/// What the cache holds: compiled code that wasmtime can serialize and
/// load back, tagged by its own magic so that one kind is never loaded as
/// the other.
pub(crate) trait Artifact: Sized {
    const MAGIC: [u8; 8];
    fn compile(engine: &Engine, wasm: &[u8]) -> wasmtime::Result<Self>;
    fn serialize(&self) -> wasmtime::Result<Vec<u8>>;
    /// # Safety
    /// `bytes` must be what [`Artifact::serialize`] produced with an
    /// engine compatible with `engine` (wasmtime maps them as code).
    unsafe fn deserialize(engine: &Engine, bytes: &[u8]) -> wasmtime::Result<Self>;
}

impl Artifact for Module {
    const MAGIC: [u8; 8] = MAGIC;
    fn compile(engine: &Engine, wasm: &[u8]) -> wasmtime::Result<Self> {
        Module::new(engine, wasm)
    }
    fn serialize(&self) -> wasmtime::Result<Vec<u8>> {
        Module::serialize(self)
    }
    unsafe fn deserialize(engine: &Engine, bytes: &[u8]) -> wasmtime::Result<Self> {
        // SAFETY: the caller's contract is `Module::deserialize`'s.
        unsafe { Module::deserialize(engine, bytes) }
    }
}

impl Artifact for Component {
    const MAGIC: [u8; 8] = MAGIC_COMPONENT;
    fn compile(engine: &Engine, wasm: &[u8]) -> wasmtime::Result<Self> {
        Component::new(engine, wasm)
    }
    fn serialize(&self) -> wasmtime::Result<Vec<u8>> {
        Component::serialize(self)
    }
    unsafe fn deserialize(engine: &Engine, bytes: &[u8]) -> wasmtime::Result<Self> {
        // SAFETY: the caller's contract is `Component::deserialize`'s.
        unsafe { Component::deserialize(engine, bytes) }
    }
}
const OFF_MODULE: usize = 8;
const OFF_ENGINE: usize = OFF_MODULE + 32;
const OFF_LEN: usize = OFF_ENGINE + 32;
const OFF_ARTIFACT_HASH: usize = OFF_LEN + 8;
const HEADER_LEN: usize = OFF_ARTIFACT_HASH + 32;
const _: () = assert!(HEADER_LEN == 112);

fn header(
    magic: [u8; 8],
    module: &Digest32,
    engine: &Digest32,
    artifact: &[u8],
) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[..OFF_MODULE].copy_from_slice(&magic);
    h[OFF_MODULE..OFF_ENGINE].copy_from_slice(module);
    h[OFF_ENGINE..OFF_LEN].copy_from_slice(engine);
    h[OFF_LEN..OFF_ARTIFACT_HASH].copy_from_slice(&(artifact.len() as u64).to_le_bytes());
    h[OFF_ARTIFACT_HASH..].copy_from_slice(&sha256(artifact));
    h
}

/// Why an entry was not used.
#[derive(Debug, thiserror::Error)]
enum Rejected {
    #[error("unreadable: {0}")]
    Io(#[from] std::io::Error),
    #[error("shorter than its header (truncated or empty)")]
    Short,
    #[error("not a cache entry of this format")]
    Magic,
    #[error("compiled from another module")]
    OtherModule,
    #[error("compiled by another engine (wasmtime version, settings or CPU)")]
    OtherEngine,
    #[error("artifact is {actual} bytes, the header says {recorded} (truncated or extended)")]
    Length { recorded: u64, actual: u64 },
    #[error("artifact does not match its SHA-256 (damaged)")]
    Checksum,
}

pub(crate) struct ModuleCache {
    engine: Engine,
    dir: Option<PathBuf>,
    /// SHA-256 state after the engine's compatibility hash: the prefix of
    /// every entry's file name.
    engine_key: Sha256,
    /// The engine fingerprint recorded in (and required of) every entry.
    engine_fingerprint: Digest32,
    pub hits: AtomicU64,
    pub compiles: AtomicU64,
}

impl ModuleCache {
    pub fn new(engine: Engine, dir: Option<PathBuf>) -> std::io::Result<Self> {
        let mut dir = dir;
        if let Some(d) = &dir {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(d)?;
            if let Some(why) = untrusted(d)? {
                tracing::warn!(
                    path = %d.display(),
                    "not using the module cache directory: {why}; compiled code is loaded from \
                     it without further checks of its origin, so only this user may write it"
                );
                dir = None;
            }
        }
        let mut h = ShaHasher(Sha256::new());
        engine.precompile_compatibility_hash().hash(&mut h);
        let engine_key = h.0;
        let engine_fingerprint = engine_key.clone().finalize().into();
        Ok(ModuleCache {
            engine,
            dir,
            engine_key,
            engine_fingerprint,
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

    /// The compiled `wasm` (a [`Module`] or a [`Component`]): from the
    /// cache, or compiled (and cached).
    pub fn load<A: Artifact>(&self, wasm: &[u8]) -> Result<A, DeployError> {
        let path = self.path(wasm);
        let wasm_hash = sha256(wasm);
        if let Some(p) = &path {
            match self.read_verified(p, A::MAGIC, &wasm_hash) {
                Ok(None) => {}
                Ok(Some(entry)) => {
                    // SAFETY: `deserialize` requires bytes produced by
                    // `A::serialize` of a compatible engine. These are in
                    // memory (they cannot change after the checks), and
                    // `read_verified` checked that the entry's header has
                    // `A`'s magic (a module's entry is never loaded as a
                    // component, nor the reverse), names
                    // this module (SHA-256 of `wasm`) and this engine's
                    // fingerprint, that the artifact has the recorded
                    // length, and that it hashes to the recorded SHA-256:
                    // so it is the artifact `store` wrote after compiling
                    // this very module with this very engine configuration.
                    // Only this user can write the directory (checked in
                    // `new`), so nobody forged header and hash together.
                    match unsafe { A::deserialize(&self.engine, &entry[HEADER_LEN..]) } {
                        Ok(m) => {
                            self.hits.fetch_add(1, Ordering::Relaxed);
                            return Ok(m);
                        }
                        Err(e) => tracing::warn!(
                            path = %p.display(), error = %e,
                            "wasmtime refused a verified module cache entry; recompiling"
                        ),
                    }
                }
                Err(why) => tracing::warn!(
                    path = %p.display(),
                    "module cache entry rejected ({why}); recompiling and rewriting it"
                ),
            }
        }
        let module =
            A::compile(&self.engine, wasm).map_err(|e| DeployError::Malformed(format!("{e:#}")))?;
        self.compiles.fetch_add(1, Ordering::Relaxed);
        if let Some(p) = path
            && let Err(e) = self.store(&module, &wasm_hash, &p)
        {
            tracing::warn!(path = %p.display(), error = %e, "could not write a module cache entry");
        }
        Ok(module)
    }

    /// The whole entry at `path`, once its header matches `wasm_hash` and
    /// this engine and its artifact matches its length and SHA-256;
    /// `None` if there is no entry.
    fn read_verified(
        &self,
        path: &Path,
        magic: [u8; 8],
        wasm_hash: &Digest32,
    ) -> Result<Option<Vec<u8>>, Rejected> {
        let mut f = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        // The header first: a foreign or stale entry is not read in full.
        let mut head = [0u8; HEADER_LEN];
        let got = read_up_to(&mut f, &mut head)?;
        if got < HEADER_LEN {
            return Err(Rejected::Short);
        }
        if head[..OFF_MODULE] != magic {
            return Err(Rejected::Magic);
        }
        if head[OFF_MODULE..OFF_ENGINE] != wasm_hash[..] {
            return Err(Rejected::OtherModule);
        }
        if head[OFF_ENGINE..OFF_LEN] != self.engine_fingerprint[..] {
            return Err(Rejected::OtherEngine);
        }
        let recorded = u64::from_le_bytes(head[OFF_LEN..OFF_ARTIFACT_HASH].try_into().unwrap());
        let actual = f.metadata()?.len().saturating_sub(HEADER_LEN as u64);
        if recorded != actual {
            return Err(Rejected::Length { recorded, actual });
        }
        let mut entry = Vec::with_capacity(HEADER_LEN + actual as usize);
        entry.extend_from_slice(&head);
        f.read_to_end(&mut entry)?;
        // Re-checked on the bytes actually read (the file may have changed).
        let artifact = &entry[HEADER_LEN..];
        if artifact.len() as u64 != recorded {
            return Err(Rejected::Length {
                recorded,
                actual: artifact.len() as u64,
            });
        }
        if sha256(artifact)[..] != head[OFF_ARTIFACT_HASH..] {
            return Err(Rejected::Checksum);
        }
        Ok(Some(entry))
    }

    fn store<A: Artifact>(
        &self,
        module: &A,
        wasm_hash: &Digest32,
        path: &Path,
    ) -> std::io::Result<()> {
        use std::io::Write;
        let artifact = module.serialize().map_err(std::io::Error::other)?;
        let head = header(A::MAGIC, wasm_hash, &self.engine_fingerprint, &artifact);
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        let tmp = path.with_extension(format!("tmp.{}.{seq}", std::process::id()));
        let r = (|| {
            let mut f = File::create(&tmp)?;
            f.write_all(&head)?;
            f.write_all(&artifact)?;
            drop(f);
            std::fs::rename(&tmp, path)
        })();
        if r.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        r
    }
}

/// Reads until `buf` is full or the file ends; the bytes read.
fn read_up_to(f: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Why `dir` may hold entries someone else wrote, if it may.
fn untrusted(dir: &Path) -> std::io::Result<Option<String>> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(dir)?;
    // SAFETY: `geteuid` has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    Ok(if !m.is_dir() {
        Some("not a directory".into())
    } else if m.uid() != me {
        Some(format!("owned by uid {}, not this process's {me}", m.uid()))
    } else if m.mode() & 0o022 != 0 {
        Some(format!(
            "writable by group or others (mode {:o})",
            m.mode() & 0o7777
        ))
    } else {
        None
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const WAT: &str = r#"(module (memory (export "memory") 1)
        (func (export "rime_invoke") (result i32) (i32.const 7)))"#;

    fn cache(dir: &Path) -> ModuleCache {
        let engine = Engine::new(&wasmtime::Config::new()).unwrap();
        ModuleCache::new(engine, Some(dir.to_path_buf())).unwrap()
    }

    #[test]
    fn every_damaged_or_foreign_entry_is_rejected_and_rewritten() {
        let dir = tempfile::TempDir::new().unwrap();
        let c = cache(dir.path());
        let wasm = WAT.as_bytes(); // `Module::new` takes the text format too
        c.load::<Module>(wasm).unwrap();
        let path = c.path(wasm).unwrap();
        let good = std::fs::read(&path).unwrap();
        let hash = sha256(wasm);
        assert!(c.read_verified(&path, MAGIC, &hash).unwrap().is_some());
        // Every header byte, then a spread of artifact bytes.
        let positions = (0..HEADER_LEN).chain((HEADER_LEN..good.len()).step_by(97));
        for at in positions.chain([good.len() - 1]) {
            let mut bad = good.clone();
            bad[at] ^= 1;
            std::fs::write(&path, &bad).unwrap();
            assert!(
                c.read_verified(&path, MAGIC, &hash).is_err(),
                "byte {at} flipped went unnoticed"
            );
        }
        // Another module's hash: the entry is not this module's.
        std::fs::write(&path, &good).unwrap();
        assert!(matches!(
            c.read_verified(&path, MAGIC, &sha256(b"other")),
            Err(Rejected::OtherModule)
        ));
        // Another engine (different settings): another fingerprint.
        let mut cfg = wasmtime::Config::new();
        cfg.cranelift_opt_level(wasmtime::OptLevel::None);
        let other = ModuleCache::new(Engine::new(&cfg).unwrap(), Some(dir.path().into())).unwrap();
        assert!(matches!(
            other.read_verified(&path, MAGIC, &hash),
            Err(Rejected::OtherEngine)
        ));
        // A damaged entry is recompiled and rewritten by `load`.
        let mut bad = good.clone();
        *bad.last_mut().unwrap() ^= 1;
        std::fs::write(&path, &bad).unwrap();
        let compiles = c.compiles.load(Ordering::Relaxed);
        c.load::<Module>(wasm).unwrap();
        assert_eq!(c.compiles.load(Ordering::Relaxed), compiles + 1);
        assert!(c.read_verified(&path, MAGIC, &hash).unwrap().is_some());
        c.load::<Module>(wasm).unwrap();
        assert_eq!(c.hits.load(Ordering::Relaxed), 1);
        // A module's entry is not a component's: another magic.
        assert!(matches!(
            c.read_verified(&path, MAGIC_COMPONENT, &hash),
            Err(Rejected::Magic)
        ));
    }

    #[test]
    fn a_component_is_cached_and_loaded_back() {
        let dir = tempfile::TempDir::new().unwrap();
        let c = cache(dir.path());
        let wasm = b"(component (core module))";
        c.load::<Component>(wasm).unwrap();
        c.load::<Component>(wasm).unwrap();
        assert_eq!(c.compiles.load(Ordering::Relaxed), 1);
        assert_eq!(c.hits.load(Ordering::Relaxed), 1);
        let entry = std::fs::read(c.path(wasm).unwrap()).unwrap();
        assert_eq!(&entry[..8], b"RIMECWC\x02");
    }

    #[test]
    fn header_layout() {
        let h = header(MAGIC, &[1; 32], &[2; 32], b"abc");
        assert_eq!(&h[..8], b"RIMECWM\x02");
        assert_eq!(h[8..40], [1; 32]);
        assert_eq!(h[40..72], [2; 32]);
        assert_eq!(h[72..80], 3u64.to_le_bytes());
        assert_eq!(h[80..112], sha256(b"abc"));
    }
}
