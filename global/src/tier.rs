//! The local tier: this node's copies of global keys, each with the
//! version it had in Redis. A copy may be stale (another node committed
//! since); a read served from it is recorded with the copy's version, so
//! the commit script refuses it and the invocation re-runs with the key
//! fetched again. Staleness costs a re-run, never a wrong commit.
//!
//! Copies enter when read from Redis (not when this node writes: see
//! `Cluster::commit`);
//! they leave when a commit finds them stale, when a `CLIENT TRACKING`
//! push says the key was written (`tracking.rs`), and all at once when
//! pushes may have been missed. The map is bounded: at
//! `max_entries` it is emptied (a cache, not a store).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// A key's value and version, as Redis had them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Versioned {
    /// 0: the key has never been written, or was deleted.
    pub version: u64,
    pub value: Option<Arc<[u8]>>,
}

pub(crate) struct Tier {
    /// By the key's Redis name (`keys::value_key`).
    map: Mutex<HashMap<Vec<u8>, Versioned>>,
    max_entries: usize,
}

impl Tier {
    pub(crate) fn new(max_entries: usize) -> Tier {
        Tier {
            map: Mutex::new(HashMap::new()),
            max_entries,
        }
    }

    pub(crate) fn get(&self, redis_key: &[u8]) -> Option<Versioned> {
        self.lock().get(redis_key).cloned()
    }

    /// Keeps `v` unless the tier already has a newer version of the key.
    pub(crate) fn offer(&self, redis_key: Vec<u8>, v: Versioned) {
        if self.max_entries == 0 {
            return;
        }
        let mut map = self.lock();
        if map.len() >= self.max_entries && !map.contains_key(&redis_key) {
            map.clear();
        }
        match map.get_mut(&redis_key) {
            Some(old) if old.version > v.version && v.version != 0 => {}
            Some(old) => *old = v,
            None => {
                map.insert(redis_key, v);
            }
        }
    }

    pub(crate) fn forget(&self, redis_key: &[u8]) {
        self.lock().remove(redis_key);
    }

    /// Drops every copy (invalidations may have been missed).
    pub(crate) fn clear(&self) {
        self.lock().clear();
    }

    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Vec<u8>, Versioned>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }
}
