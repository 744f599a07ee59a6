//! Key-value state: [`Namespace`] handles and their operations.

use crate::abi::{self, MAX_KEY_LEN, MAX_NAMESPACE_LEN, MAX_VALUE_LEN, OWN_NAMESPACE};
use crate::error::Error;
use crate::raw;
use crate::scan::Scan;
use alloc::vec;
use alloc::vec::Vec;
use core::ops::Bound;

/// First buffer `get` offers the host. Most values are small, so one call
/// usually suffices; larger ones cost exactly one more call.
const GET_FIRST_BUFFER: usize = 256;

/// Result of [`Namespace::get_into`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fetched {
    /// The key is absent.
    Absent,
    /// The value, this many bytes, was copied to the front of the buffer.
    Copied(usize),
    /// The value needs this many bytes; nothing was copied.
    BufferTooSmall {
        /// The value's length.
        needed: usize,
    },
}

/// A handle to a namespace open in this invocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Namespace(i32);

impl Default for Namespace {
    fn default() -> Self {
        Namespace::OWN
    }
}

pub(crate) fn check_key(key: &[u8]) -> Result<(), Error> {
    if key.len() > MAX_KEY_LEN {
        return Err(Error::KeyTooLarge);
    }
    Ok(())
}

fn check_value(value: &[u8]) -> Result<(), Error> {
    if value.len() > MAX_VALUE_LEN {
        return Err(Error::ValueTooLarge);
    }
    Ok(())
}

impl Namespace {
    /// The function's own namespace (handle 0), always open.
    pub const OWN: Namespace = Namespace(OWN_NAMESPACE);

    /// Opens a namespace granted to this function at deploy time.
    pub fn open(name: &str) -> Result<Namespace, Error> {
        if name.is_empty() || name.len() > MAX_NAMESPACE_LEN {
            return Err(Error::Invalid);
        }
        let code = raw::ns_open(name.as_bytes());
        Error::check(code).map(|()| Namespace(code))
    }

    /// The raw ABI handle.
    pub const fn handle(self) -> i32 {
        self.0
    }

    /// Copies the value of `key` into `buf` if it fits (the host copies from
    /// the storage page straight into `buf`; no guest allocation).
    pub fn get_into(self, key: &[u8], buf: &mut [u8]) -> Result<Fetched, Error> {
        check_key(key)?;
        let code = raw::get(self.0, key, buf);
        if code == abi::ERR_NOT_FOUND {
            return Ok(Fetched::Absent);
        }
        Error::check(code)?;
        let n = code as usize; // non-negative i32: lossless
        Ok(if n <= buf.len() {
            Fetched::Copied(n)
        } else {
            Fetched::BufferTooSmall { needed: n }
        })
    }

    /// The value of `key`, or `None` if absent.
    pub fn get(self, key: &[u8]) -> Result<Option<Vec<u8>>, Error> {
        let mut buf = vec![0u8; GET_FIRST_BUFFER];
        // Reads are repeatable within an attempt (docs/abi.md), so a second
        // call with a buffer of the announced size always fits.
        for _ in 0..2 {
            match self.get_into(key, &mut buf)? {
                Fetched::Absent => return Ok(None),
                Fetched::Copied(n) => {
                    buf.truncate(n);
                    return Ok(Some(buf));
                }
                Fetched::BufferTooSmall { needed } => buf.resize(needed, 0),
            }
        }
        Err(Error::Protocol)
    }

    /// Stores `value` under `key` (buffered until commit).
    pub fn put(self, key: &[u8], value: &[u8]) -> Result<(), Error> {
        check_key(key)?;
        check_value(value)?;
        Error::check(raw::put(self.0, key, value))
    }

    /// Removes `key` if present. A blind write: it adds nothing to the read
    /// set, so it never causes a conflict by itself.
    pub fn delete(self, key: &[u8]) -> Result<(), Error> {
        check_key(key)?;
        Error::check(raw::delete(self.0, key))
    }

    /// Adds `delta` to the i64 counter at `key` (absent counts as 0) and
    /// returns the new value. Fails with [`Error::NotI64`] if the stored value
    /// is not 8 bytes and [`Error::Overflow`] on overflow, changing nothing.
    pub fn add(self, key: &[u8], delta: i64) -> Result<i64, Error> {
        check_key(key)?;
        let mut out = [0u8; 8];
        Error::check(raw::add(self.0, key, delta, &mut out))?;
        Ok(i64::from_le_bytes(out))
    }

    /// Compare-and-swap: if the current value equals `expected` (`None`:
    /// absent), sets it to `new` (`None`: delete). Returns whether it swapped.
    pub fn cas(
        self,
        key: &[u8],
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<bool, Error> {
        check_key(key)?;
        for v in [new, expected].into_iter().flatten() {
            check_value(v)?;
        }
        match raw::cas(self.0, key, expected, new) {
            abi::CAS_OK => Ok(true),
            abi::CAS_MISMATCH => Ok(false),
            code if code < 0 => Err(Error::from_code(code)),
            _ => Err(Error::Protocol),
        }
    }

    /// Entries with keys in (`lo`, `hi`), ascending.
    pub fn scan(self, lo: Bound<&[u8]>, hi: Bound<&[u8]>) -> Scan {
        Scan::new(self, lo, hi)
    }

    /// Entries whose key starts with `prefix`, ascending.
    pub fn scan_prefix(self, prefix: &[u8]) -> Scan {
        match crate::codec::prefix_end(prefix) {
            Some(end) => Scan::new(self, Bound::Included(prefix), Bound::Excluded(&end)),
            None => Scan::new(self, Bound::Included(prefix), Bound::Unbounded),
        }
    }
}
