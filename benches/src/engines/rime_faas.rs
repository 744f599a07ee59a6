//! Rime through faaslets: every operation is one invocation of the `kv`
//! guest (`guests/examples/kv`, input format in its `lib.rs`) on a
//! `rime_faas::Runtime` over a `rime_storage::Db` opened exactly as the
//! `rime` engine opens it. Each invocation is one transaction; `rmw` is two
//! invocations (get, then put), as YCSB issues a read and an update. The
//! guest must be built first (`scripts/build-guests`); its path is
//! `$RIME_GUESTS_DIR/kv.wasm` or `guests/target/wasm32-unknown-unknown/release/kv.wasm`.
//!
//! `rime-faas-async` is the same runtime with every invocation run on its
//! executors (`Runtime::invoke_async`) instead of the calling thread, and
//! its reads and updates handed over in batches ([`Engine::batched`]): a
//! batch is one get (or put) invocation per key, all submitted before any
//! is waited for, so the executors keep the row's in-flight count of
//! invocations going per worker thread, give their page misses to the disk
//! together and share log syncs among their durable commits. At
//! `inflight` 1 each operation is one invocation on an executor, waited
//! for.

use crate::engine::{CommitCounters, Durability, Engine, EngineConfig, Result};
use rime_faas::{FunctionConfig, Runtime, RuntimeConfig};
use rime_storage::{Db, Options};
use std::path::{Path, PathBuf};
use std::sync::Arc;

const FUNCTION: &str = "kv";

pub struct RimeFaas {
    rt: Runtime,
    durability: Durability,
    /// `rime-faas-async`: invocations on the executors, reads batched.
    on_executors: bool,
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

/// The kv guest's answer to one get: `Some(value)` if present. Anything
/// but `0x00` or `0x01 len:u32 value` (nothing after it) is an error.
fn parse_get(o: &[u8]) -> Result<Option<&[u8]>> {
    match o.split_first() {
        Some((0, [])) => Ok(None),
        Some((1, rest)) => {
            let (len, v) = rest
                .split_first_chunk::<4>()
                .ok_or("kv: short get response")?;
            if v.len() != u32::from_le_bytes(*len) as usize {
                return Err(format!(
                    "kv: get response holds {} value bytes, says {}",
                    v.len(),
                    u32::from_le_bytes(*len)
                )
                .into());
            }
            Ok(Some(v))
        }
        _ => Err(format!("kv: bad get response ({} bytes)", o.len()).into()),
    }
}

fn get_input(k: &[u8]) -> Vec<u8> {
    let mut input = Vec::with_capacity(k.len() + 3);
    input.push(b'g');
    key(&mut input, k);
    input
}

/// The runtime of both engines: the default (executors one per core), its
/// compiled modules cached under `dir`, and admitting every worker
/// thread's batch at once twice over: a batch's invocations are delivered
/// just before the executors count them finished, so the next batch may be
/// admitted beside the tail of the last. Never `Overloaded` for the
/// harness's own load.
fn runtime_config(dir: &Path, cfg: &EngineConfig) -> RuntimeConfig {
    let rcfg = RuntimeConfig::default().cache_dir(dir.join("cache"));
    let wanted = 2 * cfg.threads.max(1) * cfg.inflight.max(1);
    let admitted = rcfg.max_admitted.max(wanted);
    rcfg.max_admitted(admitted)
}

impl RimeFaas {
    /// `rime-faas`: every invocation on the calling thread.
    pub fn open(dir: &Path, cfg: &EngineConfig) -> Result<Self> {
        Self::open_with(dir, cfg, false)
    }

    /// `rime-faas-async`: every invocation on the executors (one per
    /// core), reads in batches of the row's in-flight count.
    pub fn open_async(dir: &Path, cfg: &EngineConfig) -> Result<Self> {
        Self::open_with(dir, cfg, true)
    }

    fn open_with(dir: &Path, cfg: &EngineConfig, on_executors: bool) -> Result<Self> {
        let wasm_path = kv_wasm_path();
        let wasm = std::fs::read(&wasm_path).map_err(|e| {
            format!(
                "{}: {e} (build the guests first: scripts/build-guests)",
                wasm_path.display()
            )
        })?;
        let opts = Options::default()
            .preallocate_log() // as `rime`'s engine: full-size segments
            .pool_bytes(cfg.pool_bytes)
            .durability(super::rime::storage_durability(cfg.durability));
        let db = Arc::new(Db::open(dir.join("db"), opts)?);
        let rt = Runtime::open(db, runtime_config(dir, cfg))?;
        rt.deploy(FUNCTION, &wasm, FunctionConfig::default())?;
        Ok(RimeFaas {
            rt,
            durability: cfg.durability,
            on_executors,
        })
    }

    fn call(&self, input: &[u8]) -> Result<Vec<u8>> {
        let done = if self.on_executors {
            self.rt.invoke_async(FUNCTION, input).wait()
        } else {
            self.rt.invoke(FUNCTION, input)
        };
        Ok(done?.output)
    }
}

impl Engine for RimeFaas {
    fn name(&self) -> &str {
        if self.on_executors {
            "rime-faas-async"
        } else {
            "rime-faas"
        }
    }
    fn describe(&self) -> String {
        let executors = if self.on_executors {
            format!(
                "; every invocation on the runtime's {} executors (invoke_async); reads \
                 and updates in batches of the row's in-flight count, one get or put \
                 invocation per key, all in flight together; latency columns are per \
                 batch, not per operation",
                self.rt.workers()
            )
        } else {
            String::new()
        };
        format!(
            "rime_faas::Runtime, `kv` guest, one invocation (= one transaction) per op; durability {:?}; rmw = 2 invocations{executors}",
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
        let o = self.call(&get_input(k))?;
        Ok(super::copy_value(parse_get(&o)?, out))
    }
    /// One get invocation per key, all submitted to the executors before
    /// the first is waited for (`rime-faas-async`; `rime-faas` is never
    /// handed a batch, but would run them the same way).
    fn read_many(&self, keys: &[Vec<u8>]) -> Result<u64> {
        let invoking: Vec<_> = keys
            .iter()
            .map(|k| self.rt.invoke_async(FUNCTION, get_input(k)))
            .collect();
        let mut found = 0;
        let mut first_error = None;
        // Every invocation is waited for, even after one failed: none is
        // left running (or cancelled) behind the next batch.
        for (k, i) in keys.iter().zip(invoking) {
            let r: Result<bool> = match i.wait() {
                Ok(done) => parse_get(&done.output).map(|v| {
                    v.inspect(|v| {
                        super::consume(k, v);
                    })
                    .is_some()
                }),
                Err(e) => Err(e.into()),
            };
            match r {
                Ok(hit) => found += u64::from(hit),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(found),
        }
    }
    /// One put invocation per update (each its own transaction), all
    /// submitted to the executors before the first is waited for: their
    /// durable commits are in flight together (`rime-faas-async`).
    fn update_many(&self, keys: &[Vec<u8>], values: &[Vec<u8>]) -> Result<()> {
        let invoking: Vec<_> = keys
            .iter()
            .zip(values)
            .map(|(k, v)| {
                let mut input = Vec::with_capacity(k.len() + v.len() + 8);
                input.push(b'p');
                key(&mut input, k);
                value(&mut input, v);
                self.rt.invoke_async(FUNCTION, input)
            })
            .collect();
        // Every invocation is waited for, even after one failed.
        let mut first_error = None;
        for i in invoking {
            if let Err(e) = i.wait() {
                first_error.get_or_insert(e);
            }
        }
        match first_error {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    }
    fn batched(&self) -> bool {
        self.on_executors
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_responses_must_be_exactly_well_formed() {
        assert_eq!(parse_get(&[0]).unwrap(), None);
        assert_eq!(
            parse_get(&[1, 2, 0, 0, 0, 7, 8]).unwrap(),
            Some(&[7, 8][..])
        );
        assert_eq!(parse_get(&[1, 0, 0, 0, 0]).unwrap(), Some(&[][..]));
        for bad in [
            &[][..],
            &[0, 0],
            &[2],
            &[1, 2, 0, 0],
            &[1, 2, 0, 0, 0, 7],
            &[1, 2, 0, 0, 0, 7, 8, 9],
        ] {
            assert!(parse_get(bad).is_err(), "{bad:?}");
        }
    }

    fn config(threads: usize, inflight: usize) -> EngineConfig {
        EngineConfig {
            pool_bytes: 64 << 20,
            durability: Durability::NoSync,
            expected_bytes: 1 << 20,
            threads,
            inflight,
        }
    }

    #[test]
    fn the_runtime_admits_every_threads_batch_twice_over() {
        let default = RuntimeConfig::default().max_admitted;
        let dir = Path::new("/nowhere");
        assert_eq!(runtime_config(dir, &config(2, 1)).max_admitted, default);
        assert_eq!(runtime_config(dir, &config(2, 1024)).max_admitted, default);
        assert_eq!(runtime_config(dir, &config(8, 1024)).max_admitted, 16384);
        let rcfg = runtime_config(dir, &config(1, 1));
        assert_eq!(rcfg.workers, 0, "executors: one per core");
        assert_eq!(rcfg.cache_dir, Some(dir.join("cache")));
    }

    /// A batch of a thousand keys, every fifth one absent: each is
    /// answered, the found ones counted. (Not many more: an invocation's
    /// 1 s deadline runs from its instantiation, and a debug build's
    /// executors take that long to go round a few thousand running at once.)
    #[test]
    fn async_reads_a_thousand_in_flight() {
        let n = 1000;
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(1, n);
        let e = match RimeFaas::open_async(dir.path(), &cfg) {
            Ok(e) => e,
            Err(err) if !kv_wasm_path().exists() => {
                eprintln!("skipped: {err}");
                return;
            }
            Err(err) => panic!("{err}"),
        };
        assert_eq!(e.name(), "rime-faas-async");
        assert!(e.batched() && crate::engine::batched(e.name()));
        let records: Vec<(Vec<u8>, Vec<u8>)> = (0..100u64)
            .map(|i| (i.to_be_bytes().to_vec(), vec![i as u8; 20]))
            .collect();
        e.insert_batch(&records).unwrap();
        let mut v = Vec::new();
        assert!(e.read(&7u64.to_be_bytes(), &mut v).unwrap());
        assert_eq!(v, vec![7u8; 20]);
        assert!(!e.read(&1000u64.to_be_bytes(), &mut v).unwrap());
        // Every fifth key absent.
        let keys: Vec<Vec<u8>> = (0..n as u64)
            .map(|i| {
                (if i % 5 == 0 { 1000 + i } else { i % 100 })
                    .to_be_bytes()
                    .to_vec()
            })
            .collect();
        let absent = n as u64 / 5 + u64::from(n % 5 != 0);
        assert_eq!(e.read_many(&keys).unwrap(), n as u64 - absent);
        e.close().unwrap();
    }
}
