//! Rime through faaslets: every operation is one invocation of the `kv`
//! guest (`guests/examples/kv`, input format in its `lib.rs`) on a
//! `rime_faas::Runtime` over a `rime_storage::Db` opened exactly as the
//! `rime` engine opens it. Each invocation is one transaction; `rmw` is two
//! invocations (get, then put), as YCSB issues a read and an update. The
//! guest must be built first (`scripts/build-guests`); its path is
//! `$RIME_GUESTS_DIR/kv.wasm` or `guests/target/wasm32-unknown-unknown/release/kv.wasm`.

use crate::engine::{CommitCounters, Durability, Engine, EngineConfig, Result};
use rime_faas::{FunctionConfig, Runtime, RuntimeConfig};
use rime_storage::{Db, Options};
use std::path::{Path, PathBuf};
use std::sync::Arc;

const FUNCTION: &str = "kv";

pub struct RimeFaas {
    rt: Runtime,
    durability: Durability,
}

pub fn kv_wasm_path() -> PathBuf {
    std::env::var_os("RIME_GUESTS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../guests/target/wasm32-unknown-unknown/release")
        })
        .join("kv.wasm")
}

fn key(out: &mut Vec<u8>, k: &[u8]) {
    out.extend_from_slice(&(k.len() as u16).to_le_bytes());
    out.extend_from_slice(k);
}

fn value(out: &mut Vec<u8>, v: &[u8]) {
    out.extend_from_slice(&(v.len() as u32).to_le_bytes());
    out.extend_from_slice(v);
}

impl RimeFaas {
    pub fn open(dir: &Path, cfg: &EngineConfig) -> Result<Self> {
        let wasm_path = kv_wasm_path();
        let wasm = std::fs::read(&wasm_path).map_err(|e| {
            format!(
                "{}: {e} (build the guests first: scripts/build-guests)",
                wasm_path.display()
            )
        })?;
        let opts = Options::default()
            .pool_bytes(cfg.pool_bytes)
            .durability(super::rime::storage_durability(cfg.durability));
        let db = Arc::new(Db::open(dir.join("db"), opts)?);
        let rt = Runtime::open(db, RuntimeConfig::default().cache_dir(dir.join("cache")))?;
        rt.deploy(FUNCTION, &wasm, FunctionConfig::default())?;
        Ok(RimeFaas {
            rt,
            durability: cfg.durability,
        })
    }

    fn call(&self, input: &[u8]) -> Result<Vec<u8>> {
        Ok(self.rt.invoke(FUNCTION, input)?.output)
    }
}

impl Engine for RimeFaas {
    fn name(&self) -> &str {
        "rime-faas"
    }
    fn describe(&self) -> String {
        format!(
            "rime_faas::Runtime, `kv` guest, one invocation (= one transaction) per op; durability {:?}; rmw = 2 invocations",
            super::rime::storage_durability(self.durability)
        )
    }
    fn insert(&self, k: &[u8], v: &[u8]) -> Result<()> {
        let mut input = Vec::with_capacity(k.len() + v.len() + 8);
        input.push(b'p');
        key(&mut input, k);
        value(&mut input, v);
        self.call(&input)?;
        Ok(())
    }
    fn insert_batch(&self, batch: &[(Vec<u8>, Vec<u8>)]) -> Result<()> {
        let mut input = Vec::new();
        for (k, v) in batch {
            input.push(b'p');
            key(&mut input, k);
            value(&mut input, v);
        }
        self.call(&input)?;
        Ok(())
    }
    fn read(&self, k: &[u8], out: &mut Vec<u8>) -> Result<bool> {
        let mut input = Vec::with_capacity(k.len() + 3);
        input.push(b'g');
        key(&mut input, k);
        let o = self.call(&input)?;
        match o.first() {
            Some(1) => {
                let len = o
                    .get(1..5)
                    .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize)
                    .ok_or("kv: short get response")?;
                let v = o.get(5..5 + len).ok_or("kv: short get value")?;
                out.clear();
                out.extend_from_slice(v);
                Ok(true)
            }
            Some(0) => Ok(false),
            _ => Err("kv: bad get response".into()),
        }
    }
    fn scan(&self, start: &[u8], n: usize) -> Result<usize> {
        let mut input = Vec::with_capacity(start.len() + 7);
        input.push(b's');
        key(&mut input, start);
        input.extend_from_slice(&(n as u32).to_le_bytes());
        let o = self.call(&input)?;
        let count = o
            .get(..4)
            .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
            .ok_or("kv: short scan response")?;
        super::consume(&o, &[]);
        Ok(count as usize)
    }
    fn commit_counters(&self) -> Option<CommitCounters> {
        Some(super::rime::commit_counters(self.rt.db()))
    }
    fn close(&self) -> Result<()> {
        self.rt.db().checkpoint()?;
        Ok(())
    }
}
