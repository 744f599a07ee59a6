//! `rime state` and HTTP `/state` on a namespace declared global
//! (`docs/global.md`, "State commands"): its data is in the Redis
//! Cluster, not in the node's tree of the same name (which a global
//! function never writes), so these go to the cluster. Each is one
//! transaction of its own, as locally: a read is one round trip, a write
//! one commit script.

use rime_global::{Cluster, GlobalConfig, GlobalError};
use std::ops::Bound;
use std::time::Instant;

/// Keys and values, ascending.
pub type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

/// The deadline of one state operation: the client's own timeout.
fn deadline(c: &Cluster) -> Instant {
    Instant::now() + c.config().op_timeout
}

pub fn get(c: &Cluster, ns: &str, key: &[u8]) -> Result<Option<Vec<u8>>, GlobalError> {
    c.get_now(ns, key, deadline(c))
}

pub fn put(c: &Cluster, ns: &str, key: &[u8], value: &[u8]) -> Result<(), GlobalError> {
    c.put_now(ns, key, value, deadline(c))
}

/// Whether the key existed.
pub fn delete(c: &Cluster, ns: &str, key: &[u8]) -> Result<bool, GlobalError> {
    c.delete_now(ns, key, deadline(c))
}

/// Up to `limit` pairs of `ns` in [start, end), as `cmd::scan` gives the
/// local ones.
pub fn scan(
    c: &Cluster,
    ns: &str,
    start: Option<&[u8]>,
    end: Option<&[u8]>,
    limit: usize,
) -> Result<Pairs, GlobalError> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    let lo = start.map_or(Bound::Unbounded, Bound::Included);
    let hi = end.map_or(Bound::Unbounded, Bound::Excluded);
    if let (Some(s), Some(e)) = (start, end)
        && s >= e
    {
        return Ok(Vec::new()); // an empty range: nothing to ask
    }
    let found = c.scan(ns, lo, hi, limit, deadline(c))?;
    Ok(found
        .into_iter()
        .filter_map(|(k, v)| Some((k, v.value?.to_vec())))
        .collect())
}

/// A client of the cluster at `nodes` (`rime state --global`), without a
/// local tier or invalidations: one operation, then the process ends.
pub fn connect(nodes: &[String]) -> Result<Cluster, GlobalError> {
    Cluster::new(
        GlobalConfig::new(nodes.iter().cloned())
            .tier_entries(0)
            .invalidations(false),
    )
}
