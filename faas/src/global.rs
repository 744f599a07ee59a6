//! Global namespaces (`docs/global.md`): one attempt's reads and writes of
//! namespaces whose authoritative copy is in the node's Redis Cluster
//! (`rime_global`), and their commit.
//!
//! A global function's namespaces are all global (checked at deploy), so
//! its attempt touches no local tree: its host calls (`abi/global.rs`)
//! read through an [`Attempt`], which records the version of every key it
//! read and buffers every write, and step 8 of the invocation commits the
//! attempt with one script on the namespace's slot instead of the local
//! transaction. A conflict re-runs the invocation, as locally.
//!
//! Nothing here blocks a thread for Redis: a read the local tier cannot
//! serve ends its host call with a [`Fetch`] (the call of `rime_global`
//! in flight on its background thread), which the host call awaits (on an
//! executor: the invocation suspends, the executor runs others) or waits
//! for (a blocking caller's own thread), records with
//! [`Attempt::fetched`], and then runs again from the start, as a page
//! miss does (`abi/mod.rs`). The commit is awaited the same way.

use crate::error::InvokeError;
use rime_global::{Cluster, Commit, GlobalError, RangeRead, Reply, ScanEntries, Versioned};
use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::Arc;
use std::time::Instant;

/// What one attempt read (first read of each key, with its version) and
/// wrote (last write of each key) in its one global namespace.
pub(crate) struct Attempt {
    cluster: Option<Arc<Cluster>>,
    /// The attempt's wall-clock deadline: no call to the cluster waits
    /// past it.
    deadline: Instant,
    /// The global namespace the attempt touched: one, so that its commit
    /// is one script on one slot.
    ns: Option<String>,
    reads: HashMap<Vec<u8>, Seen>,
    writes: BTreeMap<Vec<u8>, Option<Arc<[u8]>>>,
    /// The ranges scanned, each with the keys the cluster held in it: the
    /// commit refuses the attempt if one holds other keys then (a phantom).
    ranges: Vec<RangeRead>,
    /// Read from the cluster, not the local tier: a re-run after a
    /// conflict. (From the tier, a hot key's copy is often stale again
    /// by then, refilled by another thread's slow fetch: writers of a hot
    /// key gave up after 64 conflicts in the counter benchmark.)
    fresh: bool,
    /// The error that ended the attempt inside a host call.
    pub error: Option<InvokeError>,
}

struct Seen {
    version: u64,
    value: Option<Arc<[u8]>>,
    from_tier: bool,
}

impl Attempt {
    pub(crate) fn new(cluster: Option<Arc<Cluster>>, deadline: Instant, fresh: bool) -> Attempt {
        Attempt {
            cluster,
            deadline,
            fresh,
            ns: None,
            reads: HashMap::new(),
            writes: BTreeMap::new(),
            ranges: Vec::new(),
            error: None,
        }
    }

    /// The attempt of a global function `f` (none for a local one), its
    /// deadline `f`'s from now. `fresh`: a re-run, whose reads skip the
    /// local tier.
    pub(crate) fn of(f: &crate::registry::Function, fresh: bool) -> Option<Box<Attempt>> {
        f.config.is_global().then(|| {
            let deadline = Instant::now() + f.config.deadline;
            Box::new(Attempt::new(f.cluster.clone(), deadline, fresh))
        })
    }

    /// Enters namespace `ns`: the attempt's first, or the one it is in.
    fn enter(&mut self, ns: &str) -> Result<Arc<Cluster>, InvokeError> {
        let Some(cluster) = self.cluster.clone() else {
            return Err(InvokeError::GlobalUnavailable(format!(
                "namespace {ns:?} is global and this node has no global store \
                 (start it with `rime serve --global redis://HOST:PORT`)"
            )));
        };
        match &self.ns {
            None => self.ns = Some(ns.to_string()),
            Some(cur) if cur == ns => {}
            Some(cur) => {
                return Err(InvokeError::GlobalUnsupported(format!(
                    "one invocation used global namespaces {cur:?} and {ns:?}: each lives \
                     in its own Redis Cluster slot, and a commit is one script on one slot"
                )));
            }
        }
        Ok(cluster)
    }

    /// The value of `key` as this attempt sees it: its own write, else its
    /// earlier read (reads repeat within an attempt), else the local
    /// tier's copy (recorded with its version), else [`Stop::Fetch`]: the
    /// caller gets the key from the cluster, records it
    /// ([`Attempt::fetched`]) and asks again.
    pub(crate) fn value(&mut self, ns: &str, key: &[u8]) -> Result<Option<Arc<[u8]>>, Stop> {
        let cluster = self.enter(ns).map_err(Stop::Failed)?;
        if let Some(w) = self.writes.get(key) {
            return Ok(w.clone());
        }
        if let Some(s) = self.reads.get(key) {
            return Ok(s.value.clone());
        }
        if let Some(copy) = cluster.cached(ns, key).filter(|_| !self.fresh) {
            return Ok(self.record(key.to_vec(), copy, true));
        }
        Err(Stop::Fetch(Fetch {
            key: key.to_vec(),
            reply: cluster.fetch_async(ns, key, self.deadline),
        }))
    }

    /// What the cluster answered for a [`Fetch`]: the key's read, or the
    /// error that ends the attempt.
    pub(crate) fn fetched(
        &mut self,
        key: Vec<u8>,
        r: Result<Versioned, GlobalError>,
    ) -> Result<(), wasmtime::Error> {
        match r {
            Ok(v) => {
                self.record(key, v, false);
                Ok(())
            }
            Err(e) => Err(self.fail(global_error(e))),
        }
    }

    /// Records the first read of `key` (a later one repeats it).
    fn record(&mut self, key: Vec<u8>, v: Versioned, from_tier: bool) -> Option<Arc<[u8]>> {
        let seen = self.reads.entry(key).or_insert(Seen {
            version: v.version,
            value: v.value,
            from_tier,
        });
        seen.value.clone()
    }

    /// Starts reading at most `limit` keys of namespace `ns` from `lo` to
    /// `hi` from the cluster (a scan has no local tier): the caller waits
    /// for the reply, shows the guest [`Attempt::merged`] and records
    /// what the guest saw with [`Attempt::scanned`].
    pub(crate) fn scan_fetch(
        &mut self,
        ns: &str,
        lo: &Bound<Vec<u8>>,
        hi: &Bound<Vec<u8>>,
        limit: usize,
    ) -> Result<Reply<ScanEntries>, InvokeError> {
        let cluster = self.enter(ns)?;
        Ok(cluster.scan_async(ns, bound_ref(lo), bound_ref(hi), limit, self.deadline))
    }

    /// The entries a scan shows the guest from `fetched` (the cluster's
    /// keys from `lo` to `fetched_hi`, ascending): the attempt's own
    /// writes in that range win (a delete hides the key, a put of a new
    /// key appears), and a key read before shows the value read then
    /// (reads repeat; if it changed since, the commit fails anyway).
    pub(crate) fn merged(
        &self,
        lo: &Bound<Vec<u8>>,
        fetched_hi: &Bound<Vec<u8>>,
        fetched: &[(Vec<u8>, Versioned)],
    ) -> Vec<(Vec<u8>, Arc<[u8]>)> {
        let mut shown: BTreeMap<&[u8], Option<Arc<[u8]>>> = BTreeMap::new();
        for (k, v) in fetched {
            let value = match self.reads.get(k) {
                Some(seen) => seen.value.clone(),
                None => v.value.clone(),
            };
            shown.insert(k, value);
        }
        let written = self
            .writes
            .iter()
            .filter(|(k, _)| within(k, lo, fetched_hi));
        for (k, w) in written {
            shown.insert(k, w.clone());
        }
        shown
            .into_iter()
            .filter_map(|(k, v)| Some((k.to_vec(), v?)))
            .collect()
    }

    /// Records what a scan showed the guest: the range from `lo` to
    /// `covered_hi`, with the keys `fetched` holds in it, and each of
    /// them as a read with its version (a key read before keeps its first
    /// version).
    pub(crate) fn scanned(
        &mut self,
        lo: Bound<Vec<u8>>,
        covered_hi: Bound<Vec<u8>>,
        fetched: ScanEntries,
    ) {
        let mut keys = Vec::with_capacity(fetched.len());
        for (k, v) in fetched {
            if !within(&k, &lo, &covered_hi) {
                break; // ascending: the rest are beyond too
            }
            keys.push(k.clone());
            self.record(k, v, false);
        }
        self.ranges.push(RangeRead {
            lo,
            hi: covered_hi,
            keys,
        });
    }

    /// Buffers a write of `key` (`None`: delete).
    pub(crate) fn write(
        &mut self,
        ns: &str,
        key: &[u8],
        value: Option<&[u8]>,
    ) -> Result<(), InvokeError> {
        self.enter(ns)?;
        self.writes.insert(key.to_vec(), value.map(Arc::from));
        Ok(())
    }

    /// The client of the cluster, for [`backoff`].
    pub(crate) fn cluster(&self) -> Option<Arc<Cluster>> {
        self.cluster.clone()
    }

    /// Remembers `e` as the attempt's end and returns the trap that
    /// unwinds the guest (`invoke::outcome` reports `e`).
    pub(crate) fn fail(&mut self, e: InvokeError) -> wasmtime::Error {
        let msg = e.to_string();
        self.error = Some(e);
        wasmtime::Error::msg(msg)
    }

    /// Step 8 for a global attempt: whether it committed (`false`: a
    /// conflict, re-run it). An attempt that read one key fresh from the
    /// cluster and wrote nothing needs no commit: that read was the
    /// cluster's state when it was made. Any other reads are validated
    /// with the writes in one script; the commit may wait `op_timeout`
    /// whatever is left of the attempt's deadline. Awaited: on an
    /// executor the invocation suspends until the cluster answers.
    pub(crate) async fn commit(self) -> Result<bool, InvokeError> {
        let (Some(ns), Some(cluster)) = (&self.ns, &self.cluster) else {
            return Ok(true);
        };
        if self.writes.is_empty()
            && self.ranges.is_empty()
            && self.reads.len() == 1
            && self.reads.values().all(|s| !s.from_tier)
        {
            return Ok(true);
        }
        let deadline = Instant::now() + cluster.config().op_timeout;
        let reads: Vec<(&[u8], u64)> = self
            .reads
            .iter()
            .map(|(k, s)| (&k[..], s.version))
            .collect();
        let writes: Vec<(&[u8], Option<&[u8]>)> = self
            .writes
            .iter()
            .map(|(k, v)| (&k[..], v.as_deref()))
            .collect();
        let reply = cluster.commit_scanned_async(ns, &reads, &self.ranges, &writes, deadline);
        match reply.await {
            Ok(Commit::Committed { .. }) => Ok(true),
            Ok(Commit::Conflict) => Ok(false),
            Err(e) => Err(global_error(e)),
        }
    }
}

fn bound_ref(b: &Bound<Vec<u8>>) -> Bound<&[u8]> {
    b.as_ref().map(Vec::as_slice)
}

/// Whether `key` is between `lo` and `hi`.
pub(crate) fn within(key: &[u8], lo: &Bound<Vec<u8>>, hi: &Bound<Vec<u8>>) -> bool {
    use std::ops::RangeBounds;
    RangeBounds::<[u8]>::contains(&(bound_ref(lo), bound_ref(hi)), key)
}

/// Why [`Attempt::value`] has no value yet.
pub(crate) enum Stop {
    /// The key is being fetched: record the answer, then ask again.
    Fetch(Fetch),
    /// The attempt ends with this error.
    Failed(InvokeError),
}

/// A fetch in flight on `rime_global`'s background thread.
#[derive(Debug)]
pub(crate) struct Fetch {
    pub key: Vec<u8>,
    pub reply: Reply<Versioned>,
}

/// Waits before re-running an attempt whose global commit conflicted: a
/// random time below `50 µs · 2^(attempts-1)`, at most 5 ms. Without it
/// a writer of a hot key whose every attempt takes two round trips can
/// lose 64 times in a row to one whose copy is in the tier (seen: the
/// global counter benchmark, 4 threads on one key, `Conflict` after 64
/// attempts). Redis-side there is no lock to wait on; spreading the
/// re-runs is the contention manager. On an executor the invocation
/// suspends for it (timed by `cluster`'s background runtime): there many
/// invocations of one node contend at once (their reads and commits
/// suspend too), and re-running at once gave `Conflict` after 64 attempts
/// in the counter test. Elsewhere the caller's thread sleeps.
pub(crate) async fn backoff(attempts: u32, cluster: Option<&Cluster>) {
    use std::hash::{BuildHasher, Hasher};
    let cap_us = (50u64 << attempts.saturating_sub(1).min(7)).min(5_000);
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    let pause = std::time::Duration::from_micros(random % cap_us);
    match cluster {
        Some(c) if crate::exec::io::on_executor() => {
            // Early or refused (the client stopping): the re-run runs sooner.
            let _ = c.sleep(pause).await;
        }
        _ => std::thread::sleep(pause),
    }
}

/// The invocation's error for a failed call to the global store.
pub(crate) fn global_error(e: GlobalError) -> InvokeError {
    match e {
        GlobalError::Unknown(m) => InvokeError::GlobalUnknown(m),
        GlobalError::Timeout => InvokeError::GlobalUnavailable(
            "the global store did not answer before the deadline".into(),
        ),
        e => InvokeError::GlobalUnavailable(e.to_string()),
    }
}
