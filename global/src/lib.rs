//! Rime's global tier (`docs/global.md`): namespaces whose authoritative
//! copy lives in a Redis Cluster shared by several Rime nodes.
//!
//! * `keys`: where a namespace's keys live (one hash-tagged slot each).
//! * `script`: the commit script (validate the reads, apply the writes).
//! * `tier`: the node's local copies, with versions.
//! * `invalidate`: keyspace notifications that drop stale copies.
//! * `testing`: real `redis-server` processes in cluster mode for tests.
//!
//! [`Cluster`] is the client: [`Cluster::read`] serves a key from the
//! local tier or fetches it; [`Cluster::commit`] validates an attempt's
//! reads and applies its writes in one script. Every call takes a
//! deadline and fails with [`GlobalError::Unavailable`] or
//! [`GlobalError::Timeout`] rather than wait past it.
#![forbid(unsafe_code)]

mod invalidate;
pub mod keys;
mod script;
pub mod testing;
mod tier;

/// The client library, for tests and benchmarks that talk to the cluster
/// directly (e.g. the plain round-trip rows of `faas/examples/global_bench.rs`).
pub use redis;
pub use tier::Versioned;

use redis::cluster::{ClusterClient, ClusterConnection};
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::{ErrorKind, RedisError, Script};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Why a call to the cluster failed. Nothing was committed unless the
/// error says it may have been ([`GlobalError::Unknown`]).
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum GlobalError {
    /// The cluster cannot be reached or cannot serve the slot (a master
    /// down, a failover under way, the cluster not formed).
    #[error("global store unavailable: {0}")]
    Unavailable(String),
    /// The deadline passed before the cluster answered.
    #[error("global store did not answer before the deadline")]
    Timeout,
    /// The commit script was sent and no answer came back: it may or may
    /// not have been applied.
    #[error("global commit outcome unknown (sent, no answer): {0}")]
    Unknown(String),
    #[error("namespace name {0:?} cannot be a Redis hash tag")]
    BadNamespace(String),
    #[error("bad node address {0:?}: {1}")]
    BadAddress(String, String),
    /// Redis answered with something the protocol does not expect.
    #[error("global store protocol error: {0}")]
    Protocol(String),
}

/// How a [`Cluster`] is set up.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct GlobalConfig {
    /// Seed nodes, `redis://HOST:PORT`; the client learns the rest.
    pub nodes: Vec<String>,
    /// Longest wait for one call (connect, read or commit), below any
    /// invocation's own deadline.
    pub op_timeout: Duration,
    /// Local-tier copies kept (0: no local tier).
    pub tier_entries: usize,
    /// Subscribe to the masters' keyspace notifications, dropping a copy
    /// when another node writes its key (`invalidate.rs`).
    pub invalidations: bool,
}

impl GlobalConfig {
    pub fn new(nodes: impl IntoIterator<Item = impl Into<String>>) -> GlobalConfig {
        GlobalConfig {
            nodes: nodes.into_iter().map(Into::into).collect(),
            op_timeout: Duration::from_secs(2),
            tier_entries: 1 << 20,
            invalidations: true,
        }
    }
    pub fn op_timeout(mut self, d: Duration) -> Self {
        self.op_timeout = d;
        self
    }
    pub fn tier_entries(mut self, n: usize) -> Self {
        self.tier_entries = n;
        self
    }
    pub fn invalidations(mut self, on: bool) -> Self {
        self.invalidations = on;
        self
    }
}

/// What [`Cluster::commit`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Commit {
    /// Applied (durable as the cluster's `appendfsync` says) as the
    /// namespace's commit `seq` (0 for a read-only commit).
    Committed { seq: u64 },
    /// A key read had changed: nothing was written.
    Conflict,
}

/// A read of one key inside an attempt.
#[derive(Debug, Clone)]
pub struct Read {
    pub versioned: Versioned,
    /// Served from the local tier (it may be stale), not fetched now.
    pub from_tier: bool,
}

/// The client of one Redis Cluster, shared by every invocation of a
/// node: a pool of synchronous cluster connections and the local tier.
pub struct Cluster {
    cfg: GlobalConfig,
    /// Reads: one retry (a MOVED after a failover).
    client: ClusterClient,
    pool: Mutex<Vec<Conn>>,
    /// Commits: no retry, so that a commit is sent once and its `WAIT`
    /// goes over the connection that sent it (`commit`).
    commit_client: ClusterClient,
    commit_pool: Mutex<Vec<Conn>>,
    tier: Arc<tier::Tier>,
    /// Stops the invalidation threads when the client goes.
    _invalidator: Option<invalidate::Invalidator>,
    script: Script,
    /// This client's part of every commit id: unique per process and
    /// client (pid, the clock at creation, the client's address).
    id_prefix: String,
    commits: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("nodes", &self.cfg.nodes)
            .field("tier_len", &self.tier.len())
            .finish_non_exhaustive()
    }
}

/// A pooled connection and the read timeout last set on it.
struct Conn {
    conn: ClusterConnection,
    timeout: Duration,
}

impl Cluster {
    /// A client for the cluster at `cfg.nodes`. Connects lazily: a
    /// cluster down now fails the first call, not this.
    pub fn new(cfg: GlobalConfig) -> Result<Cluster, GlobalError> {
        for n in &cfg.nodes {
            redis::IntoConnectionInfo::into_connection_info(n.as_str())
                .map_err(|e| GlobalError::BadAddress(n.clone(), e.to_string()))?;
        }
        if cfg.nodes.is_empty() {
            return Err(GlobalError::BadAddress(String::new(), "no nodes".into()));
        }
        let build = |retries: u32| {
            ClusterClient::builder(cfg.nodes.clone())
                .connection_timeout(cfg.op_timeout)
                .response_timeout(cfg.op_timeout)
                // Reads: one retry (a MOVED after a failover, a refreshed
                // slot map), after at most 50 ms: the deadline bounds the
                // rest. Commits: none (`commit`).
                .retries(retries)
                .min_retry_wait(5)
                .max_retry_wait(50)
                .build()
                .map_err(|e| GlobalError::BadAddress(cfg.nodes.join(","), e.to_string()))
        };
        let client = build(1)?;
        let commit_client = build(0)?;
        let tier = Arc::new(tier::Tier::new(cfg.tier_entries));
        let invalidator = (cfg.invalidations && cfg.tier_entries > 0)
            .then(|| invalidate::start(cfg.nodes.clone(), tier.clone()));
        Ok(Cluster {
            tier,
            _invalidator: invalidator,
            cfg,
            client,
            pool: Mutex::new(Vec::new()),
            commit_client,
            commit_pool: Mutex::new(Vec::new()),
            script: Script::new(script::COMMIT_LUA),
            id_prefix: commit_id_prefix(),
            commits: std::sync::atomic::AtomicU64::new(0),
        })
    }

    pub fn config(&self) -> &GlobalConfig {
        &self.cfg
    }

    /// Copies in the local tier now.
    pub fn tier_len(&self) -> usize {
        self.tier.len()
    }

    /// `key` of namespace `ns`: from the local tier if it has a copy,
    /// else fetched from the cluster (and kept in the tier).
    pub fn read(&self, ns: &str, key: &[u8], deadline: Instant) -> Result<Read, GlobalError> {
        let rk = keys::value_key(ns, key);
        if let Some(versioned) = self.tier.get(&rk) {
            return Ok(Read {
                versioned,
                from_tier: true,
            });
        }
        let versioned = self.fetch_key(&rk, deadline)?;
        self.tier.offer(rk, versioned.clone());
        Ok(Read {
            versioned,
            from_tier: false,
        })
    }

    /// `key` of namespace `ns` as the cluster has it now (the tier not
    /// consulted, but given the copy).
    pub fn fetch(&self, ns: &str, key: &[u8], deadline: Instant) -> Result<Versioned, GlobalError> {
        let rk = keys::value_key(ns, key);
        let versioned = self.fetch_key(&rk, deadline)?;
        self.tier.offer(rk, versioned.clone());
        Ok(versioned)
    }

    fn fetch_key(&self, rk: &[u8], deadline: Instant) -> Result<Versioned, GlobalError> {
        let (value, version): (Option<Vec<u8>>, Option<u64>) =
            self.call(&self.client, &self.pool, deadline, false, |c, _| {
                redis::cmd("HMGET")
                    .arg(rk)
                    .arg("v")
                    .arg("n")
                    .query(c)
                    .map_err(Ended::Redis)
            })?;
        Ok(Versioned {
            version: version.unwrap_or(0),
            value: value.map(Arc::from),
        })
    }

    /// Commits an attempt on namespace `ns`: `reads` are (key, version
    /// read), `writes` (key, new value or `None` to delete), each key at
    /// most once. One script, on the namespace's slot:
    ///
    /// 1. Send the script (EVALSHA; SCRIPT LOAD first if the master does
    ///    not have it) with every key read and written, once (the commit
    ///    client never resends). If it wrote and the master has replicas
    ///    (the count the script returns, `script.rs`), `WAIT` for all of
    ///    them on the same connection: a shortfall or an error is
    ///    [`GlobalError::Unknown`] (applied on the master, maybe lost by a
    ///    failover), never an acknowledgement.
    /// 2. `{0, i}`: read `i` changed. Its copy leaves the tier (and every
    ///    other read's, cheaply safe) → `Conflict`; nothing was written.
    /// 3. `{1, seq}`: applied → `Committed`. The written keys' copies
    ///    leave the tier: the next read fetches them. (Keeping the new
    ///    values there instead starved other writers of a hot key: the
    ///    last winner's next attempt needs one round trip, everyone else's
    ///    two, so they always arrive after its next commit; the global
    ///    counter benchmark gave up with 64 conflicts.)
    ///
    /// An error after the script was sent is [`GlobalError::Unknown`]: the
    /// written keys leave the tier, since they may have changed.
    pub fn commit(
        &self,
        ns: &str,
        reads: &[(&[u8], u64)],
        writes: &[(&[u8], Option<&[u8]>)],
        deadline: Instant,
    ) -> Result<Commit, GlobalError> {
        keys::check_namespace(ns)?;
        // 1. The script's keys and arguments (`script.rs`).
        let n = self
            .commits
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let id = format!("{}-{n:x}", self.id_prefix);
        let mut inv = self.script.prepare_invoke();
        inv.key(keys::seq_key(ns))
            .key(keys::done_key(ns, &id))
            .arg(reads.len());
        let read_keys: Vec<Vec<u8>> = reads.iter().map(|(k, _)| keys::value_key(ns, k)).collect();
        for (rk, (_, version)) in read_keys.iter().zip(reads) {
            inv.key(rk.as_slice()).arg(*version);
        }
        let write_keys: Vec<Vec<u8>> = writes.iter().map(|(k, _)| keys::value_key(ns, k)).collect();
        for (wk, (_, value)) in write_keys.iter().zip(writes) {
            inv.key(wk.as_slice());
            match value {
                Some(v) => inv.arg("p").arg(*v),
                None => inv.arg("d").arg(""),
            };
        }
        // The script, then (a commit that wrote, on a master with
        // replicas) `WAIT` on the same connection: acknowledged only once
        // every replica a failover may promote has it.
        let route = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(Route::new(
            keys::slot(ns),
            SlotAddr::Master,
        )));
        let reply = self.call(
            &self.commit_client,
            &self.commit_pool,
            deadline,
            true,
            |c, timeout| {
                let reply: Vec<i64> = inv.invoke(c).map_err(Ended::Redis)?;
                let (ok, n, replicas) = match reply[..] {
                    [ok, n] => (ok, n, 0),
                    [ok, n, r] => (ok, n, r),
                    _ => return Err(Ended::Redis((ErrorKind::TypeError, "script reply").into())),
                };
                if ok == 1 && n > 0 && replicas > 0 {
                    // WAIT answers by its timeout, before the socket's.
                    let left = deadline
                        .saturating_duration_since(Instant::now())
                        .min(timeout);
                    let ms = (left.as_millis() as u64 * 3 / 4).max(1);
                    let acked = c
                        .route_command(redis::cmd("WAIT").arg(replicas).arg(ms), route.clone())
                        .and_then(|v| redis::from_redis_value::<i64>(&v))
                        .map_err(|e| Ended::Unknown(format!("WAIT after the script: {e}")))?;
                    if acked < replicas {
                        return Err(Ended::Unknown(format!(
                            "applied on the master, confirmed by {acked} of its {replicas} \
                             replicas in {ms} ms: a failover may lose it"
                        )));
                    }
                }
                Ok((ok, n))
            },
        );
        let (ok, n) = match reply {
            Ok(r) => r,
            Err(e) => {
                for wk in &write_keys {
                    self.tier.forget(wk);
                }
                return Err(e);
            }
        };
        if ok == 0 {
            // 2. Conflict.
            for rk in &read_keys {
                self.tier.forget(rk);
            }
            return Ok(Commit::Conflict);
        }
        // 3. Committed: the written keys' copies go (see above).
        let seq = u64::try_from(n).map_err(|_| GlobalError::Protocol(format!("seq {n}")))?;
        for wk in &write_keys {
            self.tier.forget(wk);
        }
        Ok(Commit::Committed { seq })
    }

    /// Runs `f` on a connection of `pool` (or a new one of `client`), its
    /// reads bounded by `deadline` (and `op_timeout`), which `f` gets.
    /// `sent_effects` (a commit): an error once the command may have been
    /// sent is [`GlobalError::Unknown`], not `Unavailable`, and the call
    /// has the whole budget (a read has half: it may retry). A connection that
    /// failed is not pooled again.
    fn call<T>(
        &self,
        client: &ClusterClient,
        pool: &Mutex<Vec<Conn>>,
        deadline: Instant,
        sent_effects: bool,
        f: impl FnOnce(&mut ClusterConnection, Duration) -> Result<T, Ended>,
    ) -> Result<T, GlobalError> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(GlobalError::Timeout);
        }
        // The read client's retry (see `new`) may take a second read:
        // half each. A commit is sent once (its `WAIT` included), so it
        // has the whole budget: a `WAIT` cut to half of it failed under a
        // loaded CI machine with the replica merely slow.
        let budget = left.min(self.cfg.op_timeout);
        let timeout = if sent_effects { budget } else { budget / 2 };
        let mut conn = match pool.lock().unwrap_or_else(|p| p.into_inner()).pop() {
            Some(c) => c,
            None => Conn {
                conn: client.get_connection().map_err(|e| unavailable(&e))?,
                timeout: Duration::ZERO,
            },
        };
        // Set when it must shrink (a call ends by its deadline), or when
        // it may grow by more than a quarter: a pooled connection kept the
        // shortest timeout it ever had, which starved later commits' `WAIT`.
        let grows = timeout > conn.timeout + conn.timeout / 4;
        if timeout < conn.timeout || grows || conn.timeout.is_zero() {
            conn.conn
                .set_read_timeout(Some(timeout.max(Duration::from_millis(1))))
                .and_then(|()| {
                    conn.conn
                        .set_write_timeout(Some(timeout.max(Duration::from_millis(1))))
                })
                .map_err(|e| unavailable(&e))?;
            conn.timeout = timeout;
        }
        match f(&mut conn.conn, conn.timeout) {
            Ok(v) => {
                pool.lock().unwrap_or_else(|p| p.into_inner()).push(conn);
                Ok(v)
            }
            Err(Ended::Redis(e)) => Err(classify(&e, sent_effects, deadline)),
            Err(Ended::Unknown(m)) => Err(GlobalError::Unknown(m)),
        }
    }
}

/// How a call on a connection failed.
enum Ended {
    Redis(RedisError),
    /// After the commit script ran: its outcome for a failover is unknown.
    Unknown(String),
}

/// 64 random bits (std's `RandomState` keys, from the OS's randomness)
/// and the clock in nanoseconds, in hex: distinct for two clients, of one
/// process or of two on any hosts, but with chance 2^-64.
fn commit_id_prefix() -> String {
    use std::hash::{BuildHasher, Hasher};
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    format!("{random:x}.{nanos:x}")
}

fn unavailable(e: &RedisError) -> GlobalError {
    GlobalError::Unavailable(e.to_string())
}

/// What a failed call means for the caller.
fn classify(e: &RedisError, sent_effects: bool, deadline: Instant) -> GlobalError {
    let refused_before_running = e.is_connection_refusal()
        || matches!(
            e.kind(),
            ErrorKind::ClusterDown
                | ErrorKind::MasterDown
                | ErrorKind::TryAgain
                | ErrorKind::Moved
                | ErrorKind::Ask
        );
    if refused_before_running {
        return GlobalError::Unavailable(e.to_string());
    }
    if e.kind() == ErrorKind::ResponseError || e.kind() == ErrorKind::TypeError {
        return GlobalError::Protocol(e.to_string());
    }
    if sent_effects {
        return GlobalError::Unknown(e.to_string());
    }
    if e.is_timeout() || Instant::now() >= deadline {
        return GlobalError::Timeout;
    }
    GlobalError::Unavailable(e.to_string())
}
