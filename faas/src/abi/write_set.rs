//! The write set's size as the commit will log it, for
//! `MAX_WRITE_SET_BYTES`, and the bytes copied into the transaction, for
//! `MAX_WRITTEN_BYTES` (`limits.rs`).
//!
//! The transaction logs the last write of each (tree, key) once, as
//! `commit_write_len(key, value)` bytes. So a rewrite of a key replaces its
//! earlier contribution instead of adding to it: the host remembers the
//! contribution of each key written (a blind `put` must not read the key to
//! find out).
//!
//! This sits on every write's path (a `put` was ~110 ns before it), so it
//! hashes (tree, key) once per write, with foldhash seeded at random per
//! set rather than SipHash, looks it up once (`admit` hands `record` the
//! entry), and copies keys into one growing arena instead of allocating
//! each: ~10 ns a rewrite, ~40 ns a new key (SipHash, a boxed key per
//! entry and two lookups cost ~20 and ~130 ns). Keys are the guest's choice, but colliding them only slows
//! the guest's own invocation, which its deadline bounds (and the `Tx`'s
//! own write index is an unseeded FNV).

use crate::limits::{MAX_WRITE_SET_BYTES, MAX_WRITTEN_BYTES};
use hashbrown::HashTable;
use rime_storage::TreeId;
use rime_storage::wal::record::commit_write_len;
use std::hash::{BuildHasher, Hasher};

/// One (tree, key) written: where its key is in the arena, and what its
/// last write adds to the commit record.
struct Entry {
    hash: u64,
    tree: TreeId,
    /// `keys[off..off + len]`; the arena holds at most `MAX_WRITTEN_BYTES`.
    off: u32,
    len: u32,
    size: u32,
}

const _: () = assert!(MAX_WRITTEN_BYTES <= u32::MAX as usize);
const _: () = assert!(MAX_WRITE_SET_BYTES <= u32::MAX as usize);

#[derive(Default)]
pub(crate) struct WriteSet {
    /// Indices into `entries`, by hash of (tree, key).
    table: HashTable<u32>,
    entries: Vec<Entry>,
    /// The keys of `entries`, back to back.
    keys: Vec<u8>,
    seed: foldhash::fast::RandomState,
    /// The sum of all sizes: the commit record's writes, in bytes.
    bytes: usize,
    /// Key and value bytes of every recorded write, replaced ones included.
    written: usize,
    /// A write was refused with `ERR_WRITE_SET_FULL`.
    pub refused: bool,
}

/// A write that fits, to be recorded once the transaction took it: its
/// hash and its entry if the key was written before, so that `record`
/// needs no second lookup.
pub(crate) struct Admitted {
    hash: u64,
    entry: Option<u32>,
    size: usize,
    copied: usize,
}

impl WriteSet {
    /// Whether a write of `key` (`value_len` bytes; 0 for a delete) keeps
    /// both limits; refusing it sets `refused`.
    pub fn admit(&mut self, tree: TreeId, key: &[u8], value_len: usize) -> Option<Admitted> {
        let mut h = self.seed.build_hasher();
        h.write_u32(tree.0);
        h.write(key);
        let hash = h.finish();
        let (entries, keys) = (&self.entries, &self.keys);
        let entry = self
            .table
            .find(hash, |&i| {
                let e = &entries[i as usize];
                e.hash == hash
                    && e.tree == tree
                    && keys[e.off as usize..(e.off + e.len) as usize] == *key
            })
            .copied();
        let old = entry.map_or(0, |i| self.entries[i as usize].size as usize);
        let size = commit_write_len(key.len(), value_len);
        let copied = key.len() + value_len;
        if self.bytes - old + size > MAX_WRITE_SET_BYTES
            || self.written + copied > MAX_WRITTEN_BYTES
        {
            self.refused = true;
            return None;
        }
        Some(Admitted {
            hash,
            entry,
            size,
            copied,
        })
    }

    /// Records a write the transaction took, as `admit(tree, key, ..)`
    /// allowed it just before (no other write recorded in between).
    pub fn record(&mut self, tree: TreeId, key: &[u8], a: Admitted) {
        // Both limits held in `admit`, so sizes and offsets fit in u32.
        let old = match a.entry {
            Some(i) => {
                let e = &mut self.entries[i as usize];
                debug_assert!(e.tree == tree && e.hash == a.hash);
                std::mem::replace(&mut e.size, a.size as u32) as usize
            }
            None => {
                let i = self.entries.len() as u32;
                self.entries.push(Entry {
                    hash: a.hash,
                    tree,
                    off: self.keys.len() as u32,
                    len: key.len() as u32,
                    size: a.size as u32,
                });
                self.keys.extend_from_slice(key);
                let entries = &self.entries;
                self.table
                    .insert_unique(a.hash, i, |&j| entries[j as usize].hash);
                0
            }
        };
        self.bytes = self.bytes - old + a.size;
        self.written += a.copied;
    }

    /// The write set's size as its commit will log it.
    #[cfg(test)]
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::{MAX_VALUE_LEN, WRITE_SET_ENTRY_OVERHEAD as O};

    fn write(w: &mut WriteSet, tree: u32, key: &[u8], len: usize) -> bool {
        match w.admit(TreeId(tree), key, len) {
            Some(a) => {
                w.record(TreeId(tree), key, a);
                true
            }
            None => false,
        }
    }

    #[test]
    fn a_rewrite_replaces_a_keys_contribution() {
        let mut w = WriteSet::default();
        for _ in 0..1000 {
            assert!(write(&mut w, 1, b"k", 100));
        }
        assert_eq!(w.bytes(), O + 1 + 100);
        assert!(write(&mut w, 1, b"k", 0)); // a delete
        assert_eq!(w.bytes(), O + 1);
        // Same key bytes in another tree: another write.
        assert!(write(&mut w, 2, b"k", 5));
        assert_eq!(w.bytes(), 2 * O + 2 + 5);
        assert!(!w.refused);
    }

    #[test]
    fn the_limit_is_the_commit_records() {
        let mut w = WriteSet::default();
        let first = MAX_VALUE_LEN;
        let rest = MAX_WRITE_SET_BYTES - (O + 1 + first) - (O + 1);
        assert!(write(&mut w, 1, b"a", first));
        assert!(!write(&mut w, 1, b"b", rest + 1));
        assert!(w.refused);
        assert!(write(&mut w, 1, b"b", rest));
        assert_eq!(w.bytes(), MAX_WRITE_SET_BYTES);
        // Shrinking a key makes room again.
        assert!(write(&mut w, 1, b"a", 0));
        assert!(write(&mut w, 1, b"c", 1000));
    }

    #[test]
    fn rewrites_are_bounded_by_the_bytes_copied() {
        let mut w = WriteSet::default();
        let n = MAX_WRITTEN_BYTES / (1 + MAX_VALUE_LEN);
        for _ in 0..n {
            assert!(write(&mut w, 1, b"k", MAX_VALUE_LEN));
        }
        assert!(!write(&mut w, 1, b"k", MAX_VALUE_LEN));
    }
}
