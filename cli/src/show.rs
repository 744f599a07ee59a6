//! What the administrative commands print, in one place: both the local
//! commands (on a data directory) and client mode (`--server`, over the
//! HTTP API) fill these structs and print them here, so the two print the
//! same thing.

use crate::env;
use rime_faas::{FunctionInfo, GuestLog, RuntimeStats, level_name};
use rime_storage::DbStats;
use std::time::Duration;

/// A deployed function as `deploy` and `functions` print it.
#[derive(Debug, Clone, PartialEq)]
pub struct Function {
    pub name: String,
    pub generation: u64,
    pub module_len: u64,
    pub sha256: String,
    pub memory_bytes: u64,
    pub deadline_ms: u64,
    /// `(namespace, writable)`.
    pub grants: Vec<(String, bool)>,
    /// Configuration entries as shown: `KEY=VALUE`, a secret `KEY=<secret>`.
    pub config: Vec<String>,
}

impl From<&FunctionInfo> for Function {
    fn from(f: &FunctionInfo) -> Function {
        Function {
            name: f.name.clone(),
            generation: f.generation,
            module_len: f.module_len as u64,
            sha256: f.module_hash.to_string(),
            memory_bytes: f.config.memory_bytes,
            deadline_ms: f.config.deadline.as_millis() as u64,
            grants: (f.config.grants.iter())
                .map(|g| (g.namespace.clone(), g.writable))
                .collect(),
            config: f.config.settings.iter().map(|s| s.shown()).collect(),
        }
    }
}

pub fn deployed(f: &Function) -> String {
    format!(
        "deployed {} (generation {}, {} bytes, sha256 {})",
        f.name, f.generation, f.module_len, f.sha256
    )
}

pub fn undeployed(name: &str) -> String {
    format!("undeployed {name} (its namespace's data stays)")
}

/// One line of `functions`.
pub fn function_line(f: &Function) -> String {
    let grants: Vec<String> = (f.grants.iter())
        .map(|(ns, w)| format!("{ns}{}", if *w { ":rw" } else { "" }))
        .collect();
    format!(
        "{}\tgeneration {}\t{} bytes\tmemory {} MiB\tdeadline {:?}\tgrants [{}]\tconfig [{}]\tsha256 {}",
        f.name,
        f.generation,
        f.module_len,
        f.memory_bytes >> 20,
        Duration::from_millis(f.deadline_ms),
        grants.join(" "),
        f.config.join(" "),
        f.sha256
    )
}

pub fn unloadable_line(name: &str, reason: &str) -> String {
    format!("{name}\tUNLOADABLE: {reason} (undeploy or redeploy it)")
}

/// `state get` or `state del` of a key that is not there.
pub fn no_key(ns: &str, key: &str) -> String {
    format!("{ns}/{key}: not found")
}

/// One `key<TAB>value` line of `state scan`.
pub fn pair_line(key: &[u8], value: &[u8]) -> String {
    format!("{}\t{}", env::show_bytes(key), env::show_bytes(value))
}

/// A guest log line as `rime invoke` prints it on stderr.
pub fn invoke_log_line(level: &str, message: &str) -> String {
    format!("log {level}: {message}")
}

pub fn guest_log_line(l: &GuestLog) -> String {
    invoke_log_line(level_name(l.level), &l.message)
}

/// What `stats` prints: the Db's counters and the runtime's.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stats {
    pub data_dir: String,
    pub poisoned: Option<String>,
    pub allocated_pages: u64,
    pub resident_pages: u64,
    pub pool_hits: u64,
    pub pool_misses: u64,
    pub pool_evictions: u64,
    pub pool_write_backs: u64,
    pub log_bytes: u64,
    pub durable_lsn: u64,
    pub recovered_records: u64,
    pub commits: u64,
    pub read_only: u64,
    pub conflicts: u64,
    pub checkpoints: u64,
    pub functions: u64,
    pub cache_hits: u64,
    pub compiles: u64,
    /// `(committed, failed, retries)` of a server process; a command on a
    /// directory has run none.
    pub invocations: Option<(u64, u64, u64)>,
}

impl Stats {
    pub fn new(data_dir: String, s: &DbStats, r: &RuntimeStats) -> Stats {
        let p = &s.pool;
        Stats {
            data_dir,
            poisoned: s.poisoned.clone(),
            allocated_pages: s.allocated_pages,
            resident_pages: s.resident_pages,
            pool_hits: p.hits,
            pool_misses: p.misses,
            pool_evictions: p.evictions,
            pool_write_backs: p.write_backs,
            log_bytes: s.log_bytes,
            durable_lsn: s.durable_lsn,
            recovered_records: s.recovered_records,
            commits: s.commits,
            read_only: s.read_only,
            conflicts: s.conflicts,
            checkpoints: s.checkpoints,
            functions: r.functions as u64,
            cache_hits: r.cache_hits,
            compiles: r.compiles,
            invocations: None,
        }
    }

    /// The lines of `stats`.
    pub fn lines(&self) -> Vec<String> {
        let mut out = vec![format!("data directory   {}", self.data_dir)];
        out.push(match &self.poisoned {
            None => "health           ok".to_string(),
            Some(cause) => format!("health           POISONED: {cause} (writes refused)"),
        });
        out.push(format!(
            "pages            {} allocated ({} MiB), {} resident",
            self.allocated_pages,
            (self.allocated_pages * 4096) >> 20,
            self.resident_pages
        ));
        out.push(format!(
            "pool             {} hits, {} misses, {} evictions, {} write-backs",
            self.pool_hits, self.pool_misses, self.pool_evictions, self.pool_write_backs
        ));
        out.push(format!(
            "log              {} bytes written in total, durable to LSN {}, {} records replayed at this open",
            self.log_bytes, self.durable_lsn, self.recovered_records
        ));
        out.push(format!(
            "commits          {} read-write, {} read-only, {} conflicts, {} checkpoints (this process)",
            self.commits, self.read_only, self.conflicts, self.checkpoints
        ));
        out.push(format!(
            "functions        {} deployed ({} loaded from the module cache, {} compiled)",
            self.functions, self.cache_hits, self.compiles
        ));
        out.push(match self.invocations {
            None => "invocations      counted per process: see `rime serve`'s GET /metrics".into(),
            Some((ok, failed, retries)) => format!(
                "invocations      {ok} committed, {failed} failed, {retries} conflict re-runs (this process)"
            ),
        });
        out
    }
}
