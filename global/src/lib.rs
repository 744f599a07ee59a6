//! Rime's global tier (`docs/global.md`): namespaces whose authoritative
//! copy lives in a Redis Cluster shared by several Rime nodes.
//!
//! * `keys`: where a namespace's keys live (one hash-tagged slot each).
//! * `script`: the commit script (validate the reads, apply the writes).
//! * `scan`: range reads over each namespace's index of keys.
//! * `tier`: the node's local copies, with versions.
//! * `tracking`: RESP3 `CLIENT TRACKING` pushes that drop stale copies.
//! * `testing`: real `redis-server` processes in cluster mode for tests.
//!
//! * `conn`: the background runtime (one tokio thread) and its async
//!   cluster connections; `reply`: how a caller gets a call's answer.
//! * `commit`: one commit's round trips (script, then `WAIT`).
//! * `direct`: reads and writes outside invocations (`rime state`).
//!
//! [`Cluster`] is the client: [`Cluster::cached`] serves a key from the
//! local tier; [`Cluster::fetch_async`] fetches one and
//! [`Cluster::commit_async`] validates an attempt's reads and applies its
//! writes in one script, each answering with a [`Reply`] that an executor
//! awaits (its invocation suspends; no thread of the caller waits) or a
//! blocking caller waits for ([`Cluster::read`], [`Cluster::fetch`],
//! [`Cluster::commit`]). Every call takes a deadline and fails with
//! [`GlobalError::Unavailable`] or [`GlobalError::Timeout`] rather than
//! wait past it.
#![forbid(unsafe_code)]

mod commit;
mod conn;
mod direct;
pub mod keys;
mod reply;
mod scan;
mod script;
pub mod testing;
mod tier;
mod tracking;

/// The client library, for tests and benchmarks that talk to the cluster
/// directly (e.g. the plain round-trip rows of `faas/examples/global_bench.rs`).
pub use redis;
pub use reply::Reply;
pub use scan::RangeRead;

/// What a scan read: keys, ascending, with their values and versions.
pub type ScanEntries = Vec<(Vec<u8>, Versioned)>;
pub use tier::Versioned;

use conn::{Background, Lazy};
use redis::cluster::ClusterClient;
use redis::cluster_routing::{Route, SingleNodeRoutingInfo, SlotAddr};
use redis::{RedisError, Value};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
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
    /// Track the keys this node reads (RESP3 `CLIENT TRACKING`), dropping
    /// a copy when any client writes its key (`tracking.rs`).
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
/// node: the background runtime with its connections, and the local tier.
pub struct Cluster {
    cfg: GlobalConfig,
    shared: Arc<Shared>,
    /// Runs every call (`conn.rs`); stopped when the client goes.
    background: Background,
    /// The commit script's SHA1, for `EVALSHA`.
    script_sha: String,
    /// This client's part of every commit id: unique per process and
    /// client (64 random bits, the clock at creation).
    id_prefix: String,
    commits: AtomicU64,
}

/// What the calls on the background runtime share with the client.
struct Shared {
    /// Reads: one retry (a MOVED after a failover); RESP3 with tracking
    /// when the tier is invalidated (`tracking.rs`).
    reads: Arc<Lazy>,
    /// The tier's invalidations, if on.
    tracking: Option<Arc<tracking::Tracking>>,
    /// Commits: no retry, so that a commit is sent once (`commit.rs`).
    commits: Arc<Lazy>,
    tier: Arc<tier::Tier>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("nodes", &self.cfg.nodes)
            .field("tier_len", &self.shared.tier.len())
            .finish_non_exhaustive()
    }
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
        let tier = Arc::new(tier::Tier::new(cfg.tier_entries));
        let tracking = (cfg.invalidations && cfg.tier_entries > 0)
            .then(|| Arc::new(tracking::Tracking::new(tier.clone())));
        let build = |retries: u32, pushes: Option<Arc<tracking::Tracking>>| {
            // A quarter of `op_timeout` to connect: a (re)built
            // connection asks every seed at once and waits for all, so
            // one seed that accepts but never answers (a stopped master)
            // must not take a whole call's time (`conn.rs`, step 4).
            let mut b = ClusterClient::builder(cfg.nodes.clone())
                .connection_timeout(cfg.op_timeout / 4)
                .response_timeout(cfg.op_timeout)
                // Reads: one retry (a MOVED after a failover, a refreshed
                // slot map), after at most 50 ms: the deadline bounds the
                // rest. Commits: none (`commit.rs`).
                .retries(retries)
                .min_retry_wait(5)
                .max_retry_wait(50);
            if let Some(t) = pushes {
                b = b.use_protocol(redis::ProtocolVersion::RESP3).push_sender(
                    move |info: redis::PushInfo| {
                        t.on_push(info);
                        Ok::<(), std::convert::Infallible>(())
                    },
                );
            }
            b.build()
                .map_err(|e| GlobalError::BadAddress(cfg.nodes.join(","), e.to_string()))
        };
        let shared = Arc::new(Shared {
            reads: Arc::new(Lazy::new(
                build(1, tracking.clone())?,
                tracking.is_some().then(|| tier.clone()),
            )),
            commits: Arc::new(Lazy::new(build(0, None)?, None)),
            tier,
            tracking,
        });
        Ok(Cluster {
            background: Background::start()?,
            shared,
            cfg,
            script_sha: redis::Script::new(script::COMMIT_LUA)
                .get_hash()
                .to_string(),
            id_prefix: commit_id_prefix(),
            commits: AtomicU64::new(0),
        })
    }

    pub fn config(&self) -> &GlobalConfig {
        &self.cfg
    }

    /// Copies in the local tier now.
    pub fn tier_len(&self) -> usize {
        self.shared.tier.len()
    }

    /// Keys named by the invalidations this client received so far
    /// (`tracking.rs`; 0 without invalidations).
    pub fn invalidated_keys(&self) -> u64 {
        self.shared.tracking.as_ref().map_or(0, |t| t.invalidated())
    }

    /// The local tier's copy of `key` of namespace `ns`, if it has one
    /// (it may be stale: the commit validates it).
    pub fn cached(&self, ns: &str, key: &[u8]) -> Option<Versioned> {
        self.shared.tier.get(&keys::value_key(ns, key))
    }

    /// `key` of namespace `ns`: from the local tier if it has a copy,
    /// else fetched from the cluster (and kept in the tier). Blocks the
    /// calling thread for the round trip.
    pub fn read(&self, ns: &str, key: &[u8], deadline: Instant) -> Result<Read, GlobalError> {
        if let Some(versioned) = self.cached(ns, key) {
            return Ok(Read {
                versioned,
                from_tier: true,
            });
        }
        let versioned = self.fetch(ns, key, deadline)?;
        Ok(Read {
            versioned,
            from_tier: false,
        })
    }

    /// [`Cluster::fetch_async`], waited for on the calling thread.
    pub fn fetch(&self, ns: &str, key: &[u8], deadline: Instant) -> Result<Versioned, GlobalError> {
        self.fetch_async(ns, key, deadline).wait()
    }

    /// `key` of namespace `ns` as the cluster has it now (the tier not
    /// consulted, but given the copy): one `HMGET` on the background
    /// runtime, answered by the [`Reply`].
    pub fn fetch_async(&self, ns: &str, key: &[u8], deadline: Instant) -> Reply<Versioned> {
        let rk = keys::value_key(ns, key);
        let shared = self.shared.clone();
        let conns = shared.reads.clone();
        let node =
            SingleNodeRoutingInfo::SpecificNode(Route::new(keys::slot(ns), SlotAddr::Master));
        let call = async move {
            let mut c = shared.reads.get().await?;
            // With tracking, `CLIENT TRACKING ON` first, on the same
            // connection: the master tracks the key read (`tracking.rs`).
            let mut pipe = redis::pipe();
            let tracked = shared.tracking.is_some();
            if tracked {
                pipe.cmd("CLIENT").arg("TRACKING").arg("ON");
            }
            pipe.cmd("HMGET").arg(&rk).arg("v").arg("n");
            let fetched: Result<(Option<Vec<u8>>, Option<u64>), _> = c
                .route_pipeline(pipe, usize::from(tracked), 1, node)
                .await
                .and_then(|vals| {
                    let reply = vals.into_iter().next().unwrap_or(Value::Nil);
                    redis::from_redis_value(reply).map_err(RedisError::from)
                });
            let (value, version) = match fetched {
                Ok(r) => r,
                Err(e) => {
                    shared.reads.failed(&e).await;
                    return Err(conn::classify(&e, false));
                }
            };
            let versioned = Versioned {
                version: version.unwrap_or(0),
                value: value.map(Arc::from),
            };
            shared.tier.offer(rk, versioned.clone());
            Ok(versioned)
        };
        self.background
            .spawn(deadline, self.cfg.op_timeout, None, Some(conns), call)
    }

    /// Ready after `pause`, timed on the background runtime: lets an
    /// executor hold back one invocation (a conflict's backoff) without
    /// holding its thread.
    pub fn sleep(&self, pause: Duration) -> Reply<()> {
        let call = async move {
            tokio::time::sleep(pause).await;
            Ok(())
        };
        let deadline = Instant::now() + pause + Duration::from_secs(1);
        self.background
            .spawn(deadline, Duration::MAX, None, None, call)
    }

    /// [`Cluster::commit_async`], waited for on the calling thread.
    pub fn commit(
        &self,
        ns: &str,
        reads: &[(&[u8], u64)],
        writes: &[(&[u8], Option<&[u8]>)],
        deadline: Instant,
    ) -> Result<Commit, GlobalError> {
        self.commit_async(ns, reads, writes, deadline).wait()
    }

    /// [`Cluster::commit_scanned_async`], waited for on the calling thread.
    pub fn commit_scanned(
        &self,
        ns: &str,
        reads: &[(&[u8], u64)],
        ranges: &[RangeRead],
        writes: &[(&[u8], Option<&[u8]>)],
        deadline: Instant,
    ) -> Result<Commit, GlobalError> {
        self.commit_scanned_async(ns, reads, ranges, writes, deadline)
            .wait()
    }

    /// Commits an attempt on namespace `ns`: `reads` are (key, version
    /// read), `writes` (key, new value or `None` to delete), each key at
    /// most once. One script, on the namespace's slot, sent once:
    ///
    /// 1. Send the script with every key read and written (`commit.rs`:
    ///    then, if it wrote and the master has replicas, `WAIT` for all of
    ///    them on the same connection: a shortfall or an error is
    ///    [`GlobalError::Unknown`], applied on the master and maybe lost by
    ///    a failover, never an acknowledgement).
    /// 2. `{0, i}`: read `i` changed. Every read's copy leaves the tier
    ///    (cheaply safe) → `Conflict`; nothing was written.
    /// 3. `{1, seq}`: applied → `Committed`. The written keys' copies
    ///    leave the tier: the next read fetches them. (Keeping the new
    ///    values there instead starved other writers of a hot key: the
    ///    last winner's next attempt needs one round trip, everyone else's
    ///    two, so they always arrive after its next commit; the global
    ///    counter benchmark gave up with 64 conflicts.)
    ///
    /// An error after the script may have been sent is
    /// [`GlobalError::Unknown`]: the written keys leave the tier, since
    /// they may have changed.
    pub fn commit_async(
        &self,
        ns: &str,
        reads: &[(&[u8], u64)],
        writes: &[(&[u8], Option<&[u8]>)],
        deadline: Instant,
    ) -> Reply<Commit> {
        self.commit_scanned_async(ns, reads, &[], writes, deadline)
    }

    /// [`Cluster::commit_async`] for an attempt that also scanned: the
    /// script refuses it (`Conflict`) unless each of `ranges` still holds
    /// exactly the keys it held when scanned (`scan.rs`).
    pub fn commit_scanned_async(
        &self,
        ns: &str,
        reads: &[(&[u8], u64)],
        ranges: &[RangeRead],
        writes: &[(&[u8], Option<&[u8]>)],
        deadline: Instant,
    ) -> Reply<Commit> {
        if let Err(e) = keys::check_namespace(ns) {
            return Reply::ready(Err(e));
        }
        let read_keys: Vec<Vec<u8>> = reads.iter().map(|(k, _)| keys::value_key(ns, k)).collect();
        let write_keys: Vec<Vec<u8>> = writes.iter().map(|(k, _)| keys::value_key(ns, k)).collect();
        let prepared = commit::Prepared {
            evalsha: self.script_call(ns, &read_keys, reads, ranges, &write_keys, writes),
            route: Route::new(keys::slot(ns), SlotAddr::Master),
            source: script::COMMIT_LUA,
        };
        let shared = self.shared.clone();
        let conns = shared.commits.clone();
        let sent = Arc::new(AtomicBool::new(false));
        let sent_here = sent.clone();
        let call = async move {
            let r = commit::run(&shared.commits, prepared, deadline, &sent_here).await;
            shared.settle(r, &read_keys, &write_keys)
        };
        // A commit that ends by the timeout (`conn.rs`) is `Unknown`, its
        // written keys still in the tier: their copies are only stale if
        // it applied, which the commit of any reader of them catches.
        self.background
            .spawn(deadline, self.cfg.op_timeout, Some(sent), Some(conns), call)
    }

    /// The script's `EVALSHA` (keys and arguments as `script.rs` says),
    /// with a fresh commit id.
    fn script_call(
        &self,
        ns: &str,
        read_keys: &[Vec<u8>],
        reads: &[(&[u8], u64)],
        ranges: &[RangeRead],
        write_keys: &[Vec<u8>],
        writes: &[(&[u8], Option<&[u8]>)],
    ) -> redis::Cmd {
        let n = self.commits.fetch_add(1, Ordering::Relaxed);
        let id = format!("{}-{n:x}", self.id_prefix);
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(&self.script_sha)
            .arg(3 + read_keys.len() + write_keys.len())
            .arg(keys::seq_key(ns))
            .arg(keys::done_key(ns, &id))
            .arg(keys::index_key(ns));
        for rk in read_keys.iter().chain(write_keys) {
            cmd.arg(rk.as_slice());
        }
        cmd.arg(reads.len())
            .arg(ranges.len())
            .arg(keys::value_prefix(ns).len());
        for (_, version) in reads {
            cmd.arg(*version);
        }
        for range in ranges {
            cmd.arg(range.lex_min())
                .arg(range.lex_max())
                .arg(range.keys.len());
            for k in &range.keys {
                cmd.arg(k.as_slice());
            }
        }
        for (_, value) in writes {
            match value {
                Some(v) => cmd.arg("p").arg(*v),
                None => cmd.arg("d").arg(""),
            };
        }
        cmd
    }
}

impl Shared {
    /// Steps 2 and 3 of `Cluster::commit_async`: the tier after the
    /// commit's answer `r`.
    fn settle(
        &self,
        r: Result<(i64, i64), GlobalError>,
        read_keys: &[Vec<u8>],
        write_keys: &[Vec<u8>],
    ) -> Result<Commit, GlobalError> {
        let (ok, n) = match r {
            Ok(r) => r,
            Err(e) => {
                for wk in write_keys {
                    self.tier.forget(wk);
                }
                return Err(e);
            }
        };
        if ok == 0 {
            for rk in read_keys {
                self.tier.forget(rk);
            }
            return Ok(Commit::Conflict);
        }
        let seq = u64::try_from(n).map_err(|_| GlobalError::Protocol(format!("seq {n}")))?;
        for wk in write_keys {
            self.tier.forget(wk);
        }
        Ok(Commit::Committed { seq })
    }
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
