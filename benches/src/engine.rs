//! The `Engine` trait every system under test implements, and the
//! registry that builds them by name.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

pub type Error = Box<dyn std::error::Error + Send + Sync>;
pub type Result<T> = std::result::Result<T, Error>;

/// When a write is acknowledged; every engine of a row gets the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// No fsync on commit (a crash may lose acknowledged writes).
    NoSync,
    /// Durable at acknowledgement; concurrent commits may share one fsync
    /// (Rime `Group`, others: their group-commit setting or per-commit sync).
    Group,
    /// fsync (or fdatasync) before every acknowledgement.
    Sync,
}

impl FromStr for Durability {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "nosync" => Ok(Durability::NoSync),
            "group" => Ok(Durability::Group),
            "sync" => Ok(Durability::Sync),
            _ => Err(format!("unknown durability {s:?} (nosync|group|sync)")),
        }
    }
}

impl fmt::Display for Durability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Durability::NoSync => "nosync",
            Durability::Group => "group",
            Durability::Sync => "sync",
        })
    }
}

/// What an engine is opened with.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Cache / pool budget in bytes (Rime's buffer pool, RocksDB's block
    /// cache, redb/fjall/sled cache sizes; LMDB and Redis have none).
    pub pool_bytes: usize,
    pub durability: Durability,
    /// Expected records and value size (for sizing map sizes).
    pub expected_bytes: u64,
    /// Most worker threads of the runs on this engine.
    pub threads: usize,
    /// Most lookups one worker thread hands over at once: the largest
    /// in-flight count the engine runs at (1 if it is not batched).
    pub inflight: usize,
}

/// An engine's own count of commits and of the log syncs they shared,
/// since it opened ([`Engine::commit_counters`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CommitCounters {
    /// Write transactions / batches committed.
    pub commits: u64,
    /// Syncs (`fdatasync`) of the log.
    pub log_syncs: u64,
}

impl CommitCounters {
    /// Commits per log sync between `before` and `self` (`None` if the log
    /// did not sync in between).
    pub fn commits_per_sync_since(&self, before: &CommitCounters) -> Option<f64> {
        let syncs = self.log_syncs.saturating_sub(before.log_syncs);
        let commits = self.commits.saturating_sub(before.commits);
        (syncs > 0).then(|| commits as f64 / syncs as f64)
    }
}

/// One operation a task engine starts without waiting for durability
/// ([`Engine::start`]).
pub enum Request<'a> {
    Read(&'a [u8]),
    /// Up to `n` records from the key on.
    Scan(&'a [u8], usize),
    Insert(&'a [u8], &'a [u8]),
    Update(&'a [u8], &'a [u8]),
    /// Read the key, let the function turn the value into the new one,
    /// write it.
    Rmw(&'a [u8], &'a mut dyn FnMut(&[u8], &mut Vec<u8>)),
}

/// Called once with a started operation's outcome when it may be
/// acknowledged (a write: committed and durable; a read: what it read is
/// durable): `Ok(true)` done, `Ok(false)` nothing found (a read or scan
/// that found nothing, an rmw of an absent record: nothing written),
/// `Err` it failed. It may run on any thread (Rime: the one that completed
/// the sync), so it must be short.
pub type OnDone = Box<dyn FnOnce(Result<bool>) + Send + 'static>;

/// A key-value store under test. Shared by all worker threads (`&self`).
///
/// YCSB's semantics: `update` overwrites an existing record, `insert` adds
/// a new one, `rmw` reads then writes the record (YCSB issues a read and
/// an update; engines with transactions may do both in one, and say so in
/// [`Engine::describe`]), `scan` reads up to `n` records from `start` on in
/// key order.
pub trait Engine: Send + Sync {
    fn name(&self) -> &str;
    /// Settings that matter for reading the numbers (durability mapping,
    /// caches, transaction use).
    fn describe(&self) -> String;
    fn insert(&self, key: &[u8], value: &[u8]) -> Result<()>;
    /// Bulk load: one batch/transaction where the engine has one.
    fn insert_batch(&self, batch: &[(Vec<u8>, Vec<u8>)]) -> Result<()> {
        for (k, v) in batch {
            self.insert(k, v)?;
        }
        Ok(())
    }
    /// Copies the value into `out`; false if absent.
    fn read(&self, key: &[u8], out: &mut Vec<u8>) -> Result<bool>;
    /// Looks up every key of `keys`; returns how many were found. A batched
    /// engine ([`Engine::batched`]) has the lookups in flight together;
    /// the default reads one after another.
    fn read_many(&self, keys: &[Vec<u8>]) -> Result<u64> {
        let mut out = Vec::new();
        let mut found = 0;
        for k in keys {
            found += u64::from(self.read(k, &mut out)?);
        }
        Ok(found)
    }
    /// Whether the runner should hand this engine its reads and updates in
    /// batches ([`Engine::read_many`], [`Engine::update_many`]), one row per
    /// in-flight count.
    fn batched(&self) -> bool {
        false
    }
    /// Replaces the value of an existing record: for most engines the same
    /// write as `insert`.
    fn update(&self, key: &[u8], value: &[u8]) -> Result<()> {
        self.insert(key, value)
    }
    /// Updates `keys[i]` to `values[i]`, each its own transaction. A
    /// batched engine ([`Engine::batched`]) has the commits in flight
    /// together (their durability waited for together: the concurrency of
    /// `inflight` committers without a thread each); the default updates
    /// one after another.
    fn update_many(&self, keys: &[Vec<u8>], values: &[Vec<u8>]) -> Result<()> {
        for (k, v) in keys.iter().zip(values) {
            self.update(k, v)?;
        }
        Ok(())
    }
    /// Reads `key`, lets `modify` turn the value into the new one, writes
    /// it. False (nothing written) if absent.
    fn rmw(&self, key: &[u8], modify: &mut dyn FnMut(&[u8], &mut Vec<u8>)) -> Result<bool> {
        let mut cur = Vec::new();
        if !self.read(key, &mut cur)? {
            return Ok(false);
        }
        let mut new = Vec::with_capacity(cur.len());
        modify(&cur, &mut new);
        self.update(key, &new)?;
        Ok(true)
    }
    /// Whether the runner drives this engine's clients as tasks
    /// ([`crate::tasks`]): a row's thread count is then the number of
    /// clients in flight, spread over one worker thread per core, each
    /// keeping its clients' operations in flight with [`Engine::start`].
    fn tasks(&self) -> bool {
        false
    }
    /// Runs `req` and calls `on_done` exactly once with its outcome. A
    /// task engine returns once the operation has run (a write committed)
    /// and calls back when it is durable; the default runs it through the
    /// blocking API and calls back before returning.
    fn start(&self, req: Request<'_>, on_done: OnDone) {
        let r = match req {
            Request::Read(k) => self.read(k, &mut Vec::new()),
            Request::Scan(k, n) => self.scan(k, n).map(|found| found > 0),
            Request::Insert(k, v) => self.insert(k, v).map(|()| true),
            Request::Update(k, v) => self.update(k, v).map(|()| true),
            Request::Rmw(k, modify) => self.rmw(k, modify),
        };
        on_done(r)
    }
    /// Reads up to `n` records with keys `>= start`; returns how many.
    fn scan(&self, start: &[u8], n: usize) -> Result<usize>;
    /// Commits and log syncs so far, where the engine counts them (Rime:
    /// `DbStats`; RocksDB: its statistics in durable modes); the runner
    /// reports commits per sync over the measured part of a run.
    fn commit_counters(&self) -> Option<CommitCounters> {
        None
    }
    /// What a reader of this engine's rows should know about the build
    /// under test (which library links, say); shown beside its rows.
    fn note(&self) -> Option<String> {
        None
    }
    /// Makes everything durable and releases resources (after the run).
    fn close(&self) -> Result<()> {
        Ok(())
    }
}

/// Engines this build knows, in report order (the first is the baseline
/// ratios are taken against when present).
pub fn available() -> Vec<&'static str> {
    let mut v = vec!["rime", "rime-batched", "rime-tasks"];
    if cfg!(feature = "rime-faas") {
        v.push("rime-faas");
        v.push("rime-faas-async");
    }
    v.push("rime-btree");
    if cfg!(feature = "peers-lmdb") {
        v.push("lmdb");
    }
    if cfg!(feature = "peers-rocksdb") {
        v.push("rocksdb");
    }
    if cfg!(feature = "peers-redb") {
        v.push("redb");
    }
    if cfg!(feature = "peers-fjall") {
        v.push("fjall");
    }
    if cfg!(feature = "peers-sled") {
        v.push("sled");
    }
    if cfg!(feature = "peers-redis") {
        v.push("redis");
    }
    v
}

/// Engines that hold every record in RAM (Redis): a larger-than-memory
/// row does not apply to them.
pub fn keeps_all_data_in_memory(name: &str) -> bool {
    name == "redis"
}

/// Engines that read and write around the OS page cache (Rime's, with
/// O_DIRECT): all the memory they cache in is their own pool.
pub fn bypasses_page_cache(name: &str) -> bool {
    matches!(
        name,
        "rime" | "rime-batched" | "rime-tasks" | "rime-faas" | "rime-faas-async" | "rime-btree"
    )
}

/// Engines whose [`Engine::batched`] is true, known by name before one is
/// opened (for the rows of an engine that failed to open or ran in a child
/// process that died).
pub fn batched(name: &str) -> bool {
    matches!(name, "rime-batched" | "rime-faas-async")
}

/// Every peer adapter, built or not.
pub const PEERS: [&str; 6] = ["lmdb", "rocksdb", "redb", "fjall", "sled", "redis"];

/// Opens engine `name` in the (empty) directory `dir`.
pub fn open(name: &str, dir: &Path, cfg: &EngineConfig) -> Result<Box<dyn Engine>> {
    match name {
        "rime" => Ok(Box::new(crate::engines::rime::RimeEngine::open(dir, cfg)?)),
        "rime-batched" => Ok(Box::new(
            crate::engines::rime::RimeEngine::open(dir, cfg)?.batched(),
        )),
        "rime-tasks" => Ok(Box::new(
            crate::engines::rime::RimeEngine::open(dir, cfg)?.tasks(),
        )),
        "rime-btree" => Ok(Box::new(crate::engines::btree::BTreeEngine::open(
            dir, cfg,
        )?)),
        #[cfg(feature = "rime-faas")]
        "rime-faas" => Ok(Box::new(crate::engines::rime_faas::RimeFaas::open(
            dir, cfg,
        )?)),
        #[cfg(feature = "rime-faas")]
        "rime-faas-async" => Ok(Box::new(crate::engines::rime_faas::RimeFaas::open_async(
            dir, cfg,
        )?)),
        #[cfg(not(feature = "rime-faas"))]
        "rime-faas" | "rime-faas-async" => Err(format!(
            "engine {name} is not in this build: add `--features rime-faas` (or `peers`)"
        )
        .into()),
        #[cfg(feature = "peers-lmdb")]
        "lmdb" => Ok(Box::new(crate::engines::lmdb::Lmdb::open(dir, cfg)?)),
        #[cfg(feature = "peers-rocksdb")]
        "rocksdb" => Ok(Box::new(crate::engines::rocksdb::Rocks::open(dir, cfg)?)),
        #[cfg(feature = "peers-redb")]
        "redb" => Ok(Box::new(crate::engines::redb::Redb::open(dir, cfg)?)),
        #[cfg(feature = "peers-fjall")]
        "fjall" => Ok(Box::new(crate::engines::fjall::Fjall::open(dir, cfg)?)),
        #[cfg(feature = "peers-sled")]
        "sled" => Ok(Box::new(crate::engines::sled::Sled::open(dir, cfg)?)),
        #[cfg(feature = "peers-redis")]
        "redis" => Ok(Box::new(crate::engines::redis::Redis::open(dir, cfg)?)),
        peer if PEERS.contains(&peer) => Err(format!(
            "engine {name} is not in this build: add `--features peers-{}` (or `peers`)",
            name
        )
        .into()),
        _ => Err(format!("unknown engine {name:?}; this build has {:?}", available()).into()),
    }
}
