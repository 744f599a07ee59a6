//! Range reads of a global namespace (`Cluster::scan_async`) and what a
//! commit needs to validate them ([`RangeRead`]).
//!
//! Every namespace keeps an index of its keys: the sorted set
//! `rime:{ns}:z` (`keys::index_key`), every member with score 0, so Redis
//! orders the members byte by byte (`ZRANGE … BYLEX`), as the local B+tree
//! orders keys. The commit script adds a key to it with every put and
//! removes it with every delete, in the same script, so the index and the
//! values never disagree.
//!
//! A scan is one script on the namespace's slot (`SCAN_LUA`), so the keys
//! and values it returns are one instant's state:
//!
//! 1. `ZRANGE index min max BYLEX LIMIT 0 limit`: the next keys.
//! 2. `HMGET v n` of each: its value and version.
//!
//! The caller records each key as a read (its version) and the range it
//! covered with the keys it saw ([`RangeRead`]); the commit script lists
//! the range again and refuses the commit if the list differs, so a key
//! inserted into or deleted from a scanned range by another commit (a
//! phantom) is a conflict, like a changed value.

use crate::{Cluster, GlobalError, Reply, ScanEntries, Versioned, conn, keys};
use std::ops::Bound;
use std::sync::Arc;
use std::time::Instant;

/// Returns `{key1, n1, v1, key2, n2, v2, ...}` for at most `ARGV[3]` keys
/// of the index `KEYS[1]` between `ARGV[1]` and `ARGV[2]` (BYLEX syntax);
/// `ARGV[4]` is the prefix that makes a key a value hash's name
/// (`keys::value_key`). A member without a hash (never written by the
/// commit script) is version 0, value "": the caller sees it absent (not
/// nil: Lua's `false` is a boolean, not a nil, to a RESP3 client).
/// The hashes are not declared keys: they are in the same slot, which
/// Redis Cluster accepts from a script.
pub(crate) const SCAN_LUA: &str = r#"
local keys = redis.call('ZRANGE', KEYS[1], ARGV[1], ARGV[2], 'BYLEX', 'LIMIT', 0, tonumber(ARGV[3]))
local out = {}
for i, k in ipairs(keys) do
  local vn = redis.call('HMGET', ARGV[4] .. k, 'v', 'n')
  out[3 * i - 2] = k
  out[3 * i - 1] = vn[2] or '0'
  out[3 * i] = vn[1] or ''
end
return out
"#;

impl Cluster {
    /// At most `limit` keys of namespace `ns` from `lo` to `hi`,
    /// ascending, with their values and versions as the cluster has them
    /// now: one script on the namespace's slot (`scan.rs`), answered by
    /// the [`Reply`]. Fewer than `limit` keys: the range holds no more.
    pub fn scan_async(
        &self,
        ns: &str,
        lo: Bound<&[u8]>,
        hi: Bound<&[u8]>,
        limit: usize,
        deadline: Instant,
    ) -> Reply<ScanEntries> {
        if let Err(e) = keys::check_namespace(ns) {
            return Reply::ready(Err(e));
        }
        let prefix = keys::value_prefix(ns);
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(SCAN_LUA)
            .arg(1)
            .arg(keys::index_key(ns))
            .arg(lex_bound(lo, b"-"))
            .arg(lex_bound(hi, b"+"))
            .arg(limit.max(1))
            .arg(&prefix);
        let shared = self.shared.clone();
        let conns = shared.reads.clone();
        let call = async move {
            let mut c = shared.reads.get().await?;
            let listed: Vec<Option<Vec<u8>>> = match cmd.query_async(&mut c).await {
                Ok(r) => r,
                Err(e) => {
                    shared.reads.failed(&e).await;
                    return Err(conn::classify(&e, false));
                }
            };
            // Not offered to the tier: the tier keeps only copies whose
            // invalidation is certain (a plain read after `CLIENT TRACKING
            // ON`, `tracking.rs`); whether Redis tracks the keys a script
            // reads is not relied on.
            entries(listed)
        };
        self.background
            .spawn(deadline, self.cfg.op_timeout, None, Some(conns), call)
    }

    /// [`Cluster::scan_async`], waited for on the calling thread.
    pub fn scan(
        &self,
        ns: &str,
        lo: Bound<&[u8]>,
        hi: Bound<&[u8]>,
        limit: usize,
        deadline: Instant,
    ) -> Result<ScanEntries, GlobalError> {
        self.scan_async(ns, lo, hi, limit, deadline).wait()
    }
}

/// A range a transaction scanned, and the keys the index held in it then:
/// the commit is refused unless the index holds exactly these keys in it
/// when the commit script runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeRead {
    pub lo: Bound<Vec<u8>>,
    pub hi: Bound<Vec<u8>>,
    /// Ascending, as the index listed them.
    pub keys: Vec<Vec<u8>>,
}

impl RangeRead {
    /// `ZRANGE … BYLEX`'s `min` for the range's lower end.
    pub(crate) fn lex_min(&self) -> Vec<u8> {
        lex_bound(self.lo.as_ref().map(Vec::as_slice), b"-")
    }

    /// `ZRANGE … BYLEX`'s `max` for the range's upper end.
    pub(crate) fn lex_max(&self) -> Vec<u8> {
        lex_bound(self.hi.as_ref().map(Vec::as_slice), b"+")
    }
}

/// One end of a range in `ZRANGE … BYLEX` syntax: `[key` (included),
/// `(key` (excluded), or `-`/`+` (`unbounded`) for no end.
pub(crate) fn lex_bound(b: Bound<&[u8]>, unbounded: &[u8]) -> Vec<u8> {
    let (mark, key) = match b {
        Bound::Unbounded => return unbounded.to_vec(),
        Bound::Included(k) => (b'[', k),
        Bound::Excluded(k) => (b'(', k),
    };
    let mut out = Vec::with_capacity(1 + key.len());
    out.push(mark);
    out.extend_from_slice(key);
    out
}

/// `SCAN_LUA`'s reply as (key, value with version) pairs.
pub(crate) fn entries(listed: Vec<Option<Vec<u8>>>) -> Result<ScanEntries, GlobalError> {
    let bad = |what: &str| GlobalError::Protocol(format!("scan reply: {what}"));
    if !listed.len().is_multiple_of(3) {
        return Err(bad("not key, version, value triples"));
    }
    let mut out = Vec::with_capacity(listed.len() / 3);
    let mut it = listed.into_iter();
    while let (Some(key), Some(version), Some(value)) = (it.next(), it.next(), it.next()) {
        let key = key.ok_or_else(|| bad("nil key"))?;
        let version = version
            .as_deref()
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or_else(|| bad("version not a number"))?;
        let value = value.filter(|_| version > 0).map(Arc::from);
        out.push((key, Versioned { version, value }));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_bylex_syntax() {
        let r = RangeRead {
            lo: Bound::Excluded(b"a".to_vec()),
            hi: Bound::Included(b"z".to_vec()),
            keys: vec![],
        };
        assert_eq!(r.lex_min(), b"(a");
        assert_eq!(r.lex_max(), b"[z");
        let all = RangeRead {
            lo: Bound::Unbounded,
            hi: Bound::Unbounded,
            keys: vec![],
        };
        assert_eq!(all.lex_min(), b"-");
        assert_eq!(all.lex_max(), b"+");
        // A key that starts with a bound mark keeps it after the mark.
        assert_eq!(lex_bound(Bound::Included(b"(x"), b"-"), b"[(x");
        assert_eq!(lex_bound(Bound::Included(b""), b"-"), b"[");
    }

    #[test]
    fn replies_become_entries() {
        let listed = vec![
            Some(b"a".to_vec()),
            Some(b"7".to_vec()),
            Some(b"x".to_vec()),
            Some(b"b".to_vec()),
            Some(b"0".to_vec()),
            None,
        ];
        let e = entries(listed).unwrap();
        assert_eq!(e[0].0, b"a");
        assert_eq!(e[0].1.version, 7);
        assert_eq!(e[0].1.value.as_deref(), Some(&b"x"[..]));
        assert_eq!((e[1].1.version, e[1].1.value.clone()), (0, None));
        assert!(entries(vec![None, None]).is_err());
        assert!(entries(vec![Some(b"a".to_vec()), Some(b"x".to_vec()), None]).is_err());
    }
}
