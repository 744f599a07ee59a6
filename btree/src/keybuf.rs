//! Keys on the stack.
//!
//! Every key is at most [`MAX_KEY_LEN`] bytes, and so is every fence; a
//! scan bound may be one byte longer (the "past every key" probe). So a
//! fixed array holds any of them, and scans, which move from leaf to leaf
//! by copying fences and rebuilding prefix-truncated keys, need no heap:
//! a faaslet's `scan` host call allocates nothing.

use crate::{MAX_KEY_LEN, TreeError};
use std::ops::{Bound, Deref};

/// Capacity: the longest key, plus one byte for a bound past every key.
pub(crate) const KEY_BUF_LEN: usize = MAX_KEY_LEN + 1;

#[derive(Clone)]
pub(crate) struct KeyBuf {
    len: usize,
    bytes: [u8; KEY_BUF_LEN],
}

impl KeyBuf {
    pub(crate) const fn new() -> Self {
        KeyBuf {
            len: 0,
            bytes: [0; KEY_BUF_LEN],
        }
    }

    /// `a` followed by `b` (a prefix and a suffix); `None` if too long,
    /// which a valid node never produces.
    pub(crate) fn set_concat(&mut self, a: &[u8], b: &[u8]) -> Option<()> {
        let len = a.len() + b.len();
        if len > KEY_BUF_LEN {
            return None;
        }
        self.bytes[..a.len()].copy_from_slice(a);
        self.bytes[a.len()..len].copy_from_slice(b);
        self.len = len;
        Some(())
    }

    /// A copy of `key`, or `KeyTooLarge` for a caller's bound longer than
    /// any key can be.
    pub(crate) fn try_from_slice(key: &[u8]) -> Result<Self, TreeError> {
        let mut buf = KeyBuf::new();
        buf.set_concat(key, &[]).ok_or(TreeError::KeyTooLarge {
            len: key.len(),
            max: KEY_BUF_LEN,
        })?;
        Ok(buf)
    }
}

impl Deref for KeyBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// A scan position or end: a bound over a stack key.
pub(crate) type KeyBound = Bound<KeyBuf>;

pub(crate) fn key_bound(b: Bound<&[u8]>) -> Result<KeyBound, TreeError> {
    Ok(match b {
        Bound::Included(k) => Bound::Included(KeyBuf::try_from_slice(k)?),
        Bound::Excluded(k) => Bound::Excluded(KeyBuf::try_from_slice(k)?),
        Bound::Unbounded => Bound::Unbounded,
    })
}
