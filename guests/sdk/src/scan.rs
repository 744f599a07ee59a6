//! [`Scan`]: a range scan that refills a guest buffer through the `scan`
//! import and resumes after the last key it returned (`docs/abi.md`).

use crate::abi::{SCAN_HI_INCLUSIVE, SCAN_LO_EXCLUSIVE};
use crate::codec::{self, Record};
use crate::error::Error;
use crate::namespace::{Namespace, check_key};
use crate::raw;
use alloc::vec;
use alloc::vec::Vec;
use core::ops::{Bound, Range};

/// First scan buffer: dozens of typical entries per host call, while staying
/// small next to a faaslet's memory. Grows to fit an entry that is larger.
pub const SCAN_FIRST_BUFFER: usize = 16 << 10;

/// An entry borrowed from the scan buffer: `(key, value)`.
pub type EntryRef<'a> = (&'a [u8], &'a [u8]);

/// Where an entry's key and value lie in the scan buffer.
type EntrySpans = (Range<usize>, Range<usize>);

/// Entries of a key range, ascending. Use [`Scan::next_entry`] to borrow
/// entries straight from the buffer the host filled (no copies), or iterate
/// to get owned `(key, value)` pairs.
pub struct Scan {
    ns: Namespace,
    /// Lower bound of the next host call: the start, then the last key seen.
    lo: Vec<u8>,
    flags: u32,
    hi: Option<Vec<u8>>,
    buf: Vec<u8>,
    /// Bytes of `buf` the last host call filled.
    filled: usize,
    /// Offset of the next record to decode.
    pos: usize,
    /// Where the key of the last entry handed out lies in `buf`.
    last_key: Option<Range<usize>>,
    /// An argument error found at construction, reported by the first `next`.
    pending: Option<Error>,
    done: bool,
}

impl Scan {
    pub(crate) fn new(ns: Namespace, lo: Bound<&[u8]>, hi: Bound<&[u8]>) -> Scan {
        let mut flags = 0;
        let lo = match lo {
            Bound::Included(k) => k.to_vec(),
            Bound::Excluded(k) => {
                flags |= SCAN_LO_EXCLUSIVE;
                k.to_vec()
            }
            // The empty key is the smallest key: an inclusive "" is no bound.
            Bound::Unbounded => Vec::new(),
        };
        let hi = match hi {
            Bound::Included(k) => {
                flags |= SCAN_HI_INCLUSIVE;
                Some(k.to_vec())
            }
            Bound::Excluded(k) => Some(k.to_vec()),
            Bound::Unbounded => None,
        };
        let pending = check_key(&lo)
            .and_then(|()| hi.as_deref().map_or(Ok(()), check_key))
            .err();
        Scan {
            ns,
            lo,
            flags,
            hi,
            buf: vec![0; SCAN_FIRST_BUFFER],
            filled: 0,
            pos: 0,
            last_key: None,
            pending,
            done: false,
        }
    }

    /// Uses a first buffer of `bytes` instead of [`SCAN_FIRST_BUFFER`]: larger
    /// means fewer host calls for long scans. Any size works; it grows to fit.
    pub fn with_buffer_capacity(mut self, bytes: usize) -> Scan {
        self.buf = vec![0; bytes];
        self
    }

    /// The next entry as `(key, value)` borrowed from the scan buffer.
    pub fn next_entry(&mut self) -> Option<Result<EntryRef<'_>, Error>> {
        match self.advance() {
            // The ranges come from `codec::decode` over `buf[..filled]`, so
            // they are in bounds and indexing cannot panic.
            Ok(Some((key, value))) => Some(Ok((&self.buf[key], &self.buf[value]))),
            Ok(None) => None,
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }

    fn advance(&mut self) -> Result<Option<EntrySpans>, Error> {
        if let Some(e) = self.pending.take() {
            return Err(e);
        }
        while !self.done {
            if self.pos < self.filled {
                let (record, next) = codec::decode(&self.buf[..self.filled], self.pos)
                    .map_err(|_| Error::Protocol)?;
                self.pos = next;
                match record {
                    Record::End => self.done = true,
                    Record::Entry { key, value } => {
                        self.last_key = Some(key.clone());
                        return Ok(Some((key, value)));
                    }
                }
            } else {
                self.refill()?;
            }
        }
        Ok(None)
    }

    /// Asks the host for the next batch, resuming after the last key seen.
    fn refill(&mut self) -> Result<(), Error> {
        if let Some(key) = self.last_key.take() {
            let key = self.buf.get(key).ok_or(Error::Protocol)?;
            self.lo.clear();
            self.lo.extend_from_slice(key);
            self.flags |= SCAN_LO_EXCLUSIVE;
        }
        // A too-small buffer is answered with the size needed; reads are
        // repeatable, so the second call fits.
        for _ in 0..2 {
            let code = raw::scan(
                self.ns.handle(),
                &self.lo,
                self.hi.as_deref(),
                self.flags,
                &mut self.buf,
            );
            Error::check(code)?;
            let n = code as usize; // non-negative i32: lossless
            if n == 0 {
                return Err(Error::Protocol); // the host must write at least END
            }
            if n <= self.buf.len() {
                self.filled = n;
                self.pos = 0;
                return Ok(());
            }
            self.buf.resize(n, 0);
        }
        Err(Error::Protocol)
    }
}

impl Iterator for Scan {
    type Item = Result<(Vec<u8>, Vec<u8>), Error>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_entry()
            .map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())))
    }
}

impl core::iter::FusedIterator for Scan {}
