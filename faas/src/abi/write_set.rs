//! The write set's size as the commit will log it, for
//! `MAX_WRITE_SET_BYTES`, and the bytes copied into the transaction, for
//! `MAX_WRITTEN_BYTES` (`limits.rs`).
//!
//! The transaction logs the last write of each (tree, key) once, as
//! `commit_write_len(key, value)` bytes. So a rewrite of a key replaces its
//! earlier contribution instead of adding to it: the host remembers the
//! contribution of each key written (a blind `put` must not read the key to
//! find out), in a map keyed by tree id and key bytes with a per-process
//! random hash seed (keys are the guest's choice).

use crate::limits::{MAX_KEY_LEN, MAX_WRITE_SET_BYTES, MAX_WRITTEN_BYTES};
use rime_storage::wal::record::commit_write_len;
use rime_storage::TreeId;
use std::collections::HashMap;

#[derive(Default)]
pub(crate) struct WriteSet {
    /// (tree id BE ‖ key) → what its last write adds to the commit record.
    sizes: HashMap<Box<[u8]>, usize>,
    /// The sum of `sizes`: the commit record's writes, in bytes.
    bytes: usize,
    /// Key and value bytes of every recorded write, replaced ones included.
    written: usize,
    /// A write was refused with `ERR_WRITE_SET_FULL`.
    pub refused: bool,
}

/// A write that fits, to be recorded once the transaction took it.
pub(crate) struct Admitted {
    size: usize,
    copied: usize,
}

const ID: usize = 4;

fn map_key<'a>(buf: &'a mut [u8; ID + MAX_KEY_LEN], tree: TreeId, key: &[u8]) -> &'a [u8] {
    buf[..ID].copy_from_slice(&tree.0.to_be_bytes());
    buf[ID..ID + key.len()].copy_from_slice(key);
    &buf[..ID + key.len()]
}

impl WriteSet {
    /// Whether a write of `key` (`value_len` bytes; 0 for a delete) keeps
    /// both limits; refusing it sets `refused`. `key.len() <= MAX_KEY_LEN`.
    pub fn admit(&mut self, tree: TreeId, key: &[u8], value_len: usize) -> Option<Admitted> {
        let mut buf = [0u8; ID + MAX_KEY_LEN];
        let old = self
            .sizes
            .get(map_key(&mut buf, tree, key))
            .copied()
            .unwrap_or(0);
        let size = commit_write_len(key.len(), value_len);
        let copied = key.len() + value_len;
        if self.bytes - old + size > MAX_WRITE_SET_BYTES
            || self.written + copied > MAX_WRITTEN_BYTES
        {
            self.refused = true;
            return None;
        }
        Some(Admitted { size, copied })
    }

    /// Records a write the transaction took (as `admit` allowed it).
    pub fn record(&mut self, tree: TreeId, key: &[u8], a: Admitted) {
        let mut buf = [0u8; ID + MAX_KEY_LEN];
        let k = map_key(&mut buf, tree, key);
        let old = match self.sizes.get_mut(k) {
            Some(s) => std::mem::replace(s, a.size),
            None => {
                self.sizes.insert(k.into(), a.size);
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
