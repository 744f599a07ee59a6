//! [`Tx`]: a transaction's operations, its read set and its write set.
//!
//! Every stored value is `version ‖ user bytes`, the version being the LSN
//! of the commit that wrote it (8 bytes, little-endian). Reads record
//! `(tree, key, version or 0 for absent)`; scans record their range and
//! the `(key, version)` sequence they observed; writes are buffered (last
//! write of a key wins) and read back by later operations of the same
//! transaction. Validation and commit: `occ.rs`, `commit.rs`.
//!
//! Allocation: keys and values are copied into one arena `Vec<u8>`, and
//! every set is a `Vec` (the write index a `HashMap`) that is cleared, not
//! dropped, between attempts and between transactions (the Db keeps a pool
//! of these buffers). Once warm, `get` and `scan` allocate nothing.

mod batch;
mod nowait;
mod owned;

pub use owned::{Committed, OwnedTx};

use crate::error::{DbError, TxError};
use crate::inner::DbInner;
use crate::locks::Gates;
use crate::reads::Miss;
use crate::wal::{TreeId, Write};
use rime_btree::{BTree, Direction, Fetch, INLINE_VALUE_MAX, LeafStamp};
use std::collections::HashMap;
use std::ops::{Bound, ControlFlow};
use std::sync::Arc;

/// Bytes of the version in front of every stored value.
pub const VERSION_SIZE: usize = 8;
/// Longest key (the B+tree's limit).
pub const MAX_KEY_LEN: usize = rime_btree::MAX_KEY_LEN;
/// Longest value: the B+tree's limit (16 MiB) less the version. Values the
/// leaf cannot hold (`rime_btree::is_inline`: slot + key + version + value
/// over 1480 bytes) live in page extents, whose allocation the tree logs
/// as an `ExtentAlloc` SMO, so recovery accounts for their pages.
pub const MAX_VALUE_LEN: usize = rime_btree::MAX_VALUE_LEN - VERSION_SIZE;

// A single write of the largest key and value always fits one commit
// record: no put the limits above admit is refused by the log.
const _: () = assert!(
    crate::wal::record::commit_write_len(MAX_KEY_LEN, MAX_VALUE_LEN)
        <= crate::wal::record::MAX_COMMIT_BYTES
);

const NONE: u32 = u32::MAX;

#[derive(Clone, Copy, Debug)]
pub(crate) struct Span {
    off: u32,
    len: u32,
}

#[derive(Clone, Copy)]
pub(crate) enum SpanBound {
    Included(Span),
    Excluded(Span),
    Unbounded,
}

/// How many of a transaction's last reads a write at commit looks through
/// for its key's leaf ([`TxBufs::read_leaf`]). A read-modify-write reads
/// its key shortly before writing it; a large transaction's writes just
/// descend, rather than search every read.
const NEAR_READS: usize = 16;

pub(crate) struct ReadRec {
    pub tree: TreeId,
    pub key: Span,
    pub version: u64,
    /// The leaf the read came from, if an optimistic lookup read it:
    /// validation skips the descent while it is unchanged.
    pub leaf: Option<LeafStamp>,
}

pub(crate) struct WriteRec {
    pub tree: TreeId,
    pub key: Span,
    pub value: Option<Span>,
    /// Previous write whose (tree, key) hashed the same.
    prev: u32,
    /// A later write of this transaction has the same (tree, key): this
    /// one is not final (set by [`TxBufs::record_write`]).
    superseded: bool,
}

pub(crate) struct ScanRec {
    pub tree: TreeId,
    pub lo: SpanBound,
    pub hi: SpanBound,
    pub observed: std::ops::Range<usize>,
    /// The tree's gate before the scan read it, if no writer of it was in
    /// progress: validation skips the second scan while none has begun
    /// since (`Gates::quiet`).
    pub quiet: Option<crate::locks::Quiet>,
    /// The pages the scan read entries from, in `TxBufs::scan_pages`:
    /// while all are unchanged, a second scan would read the same entries
    /// (`BTree::scan_stamped`), and validation skips it.
    pub pages: std::ops::Range<usize>,
}

#[cfg(all(test, not(loom)))]
impl ScanRec {
    /// A scan of all of `tree` that observed nothing (plan tests).
    pub(crate) fn unbounded(tree: TreeId) -> Self {
        ScanRec {
            tree,
            lo: SpanBound::Unbounded,
            hi: SpanBound::Unbounded,
            observed: 0..0,
            quiet: None,
            pages: 0..0,
        }
    }
}

pub(crate) struct ObsRec {
    pub key: Span,
    pub version: u64,
}

/// The reusable buffers of one transaction.
#[derive(Default)]
pub struct TxBufs {
    pub(crate) arena: Vec<u8>,
    pub(crate) reads: Vec<ReadRec>,
    pub(crate) writes: Vec<WriteRec>,
    index: HashMap<u64, u32, PreHashed>,
    pub(crate) scans: Vec<ScanRec>,
    pub(crate) observed: Vec<ObsRec>,
    /// Stamps of the pages scans read from (`ScanRec::pages`).
    pub(crate) scan_pages: Vec<rime_btree::LeafStamp>,
    merge: Vec<u32>,
    /// Newest version read (for the read-only durability wait).
    pub(crate) max_version: u64,
    /// Scratch of the commit protocol (locks, validation, apply).
    pub(crate) commit: crate::commit::CommitBufs,
    /// The trees this thread's transactions use (`local.rs`).
    trees: crate::local::TreeCache,
    /// Pages to load with the last [`TxError::WouldWait`]'s own
    /// (`OwnedTx::read_ahead`): a non-waiting scan's read-ahead, a
    /// non-waiting `get_many`'s other misses.
    pub(crate) read_ahead: Vec<crate::reads::Miss>,
    /// Where a point read copies an inline value before it knows the copy
    /// is consistent.
    pub(crate) value_scratch: ValueScratch,
}

/// An inline value's worth of bytes, kept with a thread's buffers so that a
/// read does not zero 1.4 KiB of stack first (~100 of a YCSB read's ~2,500
/// instructions).
pub(crate) struct ValueScratch(pub(crate) Box<[u8; INLINE_VALUE_MAX]>);

impl Default for ValueScratch {
    fn default() -> Self {
        ValueScratch(Box::new([0; INLINE_VALUE_MAX]))
    }
}

/// How far a transaction's records reached, to forget what an operation
/// recorded before it stopped at a page not in memory ([`TxBufs::rewind`]).
#[derive(Clone, Copy)]
struct Mark {
    arena: usize,
    reads: usize,
    observed: usize,
    scan_pages: usize,
    max_version: u64,
}

/// FNV-1a of `(tree, key)`: the write index's hash, and the key stripe's
/// (`locks/mod.rs`).
pub(crate) fn hash(tree: TreeId, key: &[u8]) -> u64 {
    // FNV-1a: short keys, no allocation, no per-process seed needed (the
    // index only speeds up lookups; collisions are resolved by comparing).
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ u64::from(tree.0);
    for &b in key {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The write index's hasher: its keys are [`hash`]es already, so it only
/// folds and spreads them (hashbrown takes the bucket from the low bits and
/// a tag from the top seven), where std's default would SipHash them again
/// (~70 instructions per lookup, three lookups per write before the
/// `superseded` flag).
#[derive(Clone, Copy, Default)]
pub(crate) struct PreHashed;

impl std::hash::BuildHasher for PreHashed {
    type Hasher = PreHashedHasher;
    fn build_hasher(&self) -> PreHashedHasher {
        PreHashedHasher(0)
    }
}

#[derive(Default)]
pub(crate) struct PreHashedHasher(u64);

impl std::hash::Hasher for PreHashedHasher {
    fn finish(&self) -> u64 {
        (self.0 ^ (self.0 >> 29)).wrapping_mul(0x9E37_79B9_7F4A_7C15)
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, h: u64) {
        self.0 = h;
    }
}

impl TxBufs {
    pub(crate) fn clear(&mut self) {
        self.arena.clear();
        self.reads.clear();
        self.writes.clear();
        self.index.clear();
        self.scans.clear();
        self.observed.clear();
        self.scan_pages.clear();
        self.merge.clear();
        self.max_version = 0;
        self.read_ahead.clear();
    }

    fn mark(&self) -> Mark {
        Mark {
            arena: self.arena.len(),
            reads: self.reads.len(),
            observed: self.observed.len(),
            scan_pages: self.scan_pages.len(),
            max_version: self.max_version,
        }
    }

    /// Forgets the reads, observations and bytes recorded since `m`.
    fn rewind(&mut self, m: Mark) {
        self.arena.truncate(m.arena);
        self.reads.truncate(m.reads);
        self.observed.truncate(m.observed);
        self.scan_pages.truncate(m.scan_pages);
        self.max_version = m.max_version;
    }

    /// The stamps of the pages scan `s` read from.
    pub(crate) fn pages_of(&self, s: &ScanRec) -> &[rime_btree::LeafStamp] {
        &self.scan_pages[s.pages.clone()]
    }

    pub(crate) fn bytes(&self, s: Span) -> &[u8] {
        &self.arena[s.off as usize..(s.off + s.len) as usize]
    }

    fn push(&mut self, bytes: &[u8]) -> Span {
        let off = self.arena.len() as u32;
        self.arena.extend_from_slice(bytes);
        Span {
            off,
            len: bytes.len() as u32,
        }
    }

    pub(crate) fn bound(&self, b: SpanBound) -> Bound<&[u8]> {
        match b {
            SpanBound::Included(s) => Bound::Included(self.bytes(s)),
            SpanBound::Excluded(s) => Bound::Excluded(self.bytes(s)),
            SpanBound::Unbounded => Bound::Unbounded,
        }
    }

    fn push_bound(&mut self, b: Bound<&[u8]>) -> SpanBound {
        match b {
            Bound::Included(k) => SpanBound::Included(self.push(k)),
            Bound::Excluded(k) => SpanBound::Excluded(self.push(k)),
            Bound::Unbounded => SpanBound::Unbounded,
        }
    }

    /// The latest write of (tree, key) in this transaction.
    fn find_write(&self, tree: TreeId, key: &[u8]) -> Option<usize> {
        // Most reads are in transactions that wrote nothing yet: no hash.
        if self.writes.is_empty() {
            return None;
        }
        self.in_chain(*self.index.get(&hash(tree, key))?, tree, key)
    }

    /// The first write of (tree, key) along the hash chain from `i`
    /// (newest first).
    fn in_chain(&self, mut i: u32, tree: TreeId, key: &[u8]) -> Option<usize> {
        while i != NONE {
            let w = &self.writes[i as usize];
            if w.tree == tree && self.bytes(w.key) == key {
                return Some(i as usize);
            }
            i = w.prev;
        }
        None
    }

    fn record_write(&mut self, tree: TreeId, key: &[u8], value: Option<&[u8]>) {
        let h = hash(tree, key);
        let prev = match self.writes.is_empty() {
            true => NONE,
            false => self.index.get(&h).copied().unwrap_or(NONE),
        };
        // The key's earlier write, if any, is no longer final.
        if let Some(i) = self.in_chain(prev, tree, key) {
            self.writes[i].superseded = true;
        }
        let key = self.push(key);
        let value = value.map(|v| self.push(v));
        self.index.insert(h, self.writes.len() as u32);
        self.writes.push(WriteRec {
            tree,
            key,
            value,
            prev,
            superseded: false,
        });
    }

    /// The leaf this transaction read `key` of `tree` from, if one of its
    /// last [`NEAR_READS`] reads was of that key: where the commit's write
    /// of it starts (`Writer::near`).
    pub(crate) fn read_leaf(&self, tree: TreeId, key: &[u8]) -> Option<LeafStamp> {
        self.reads
            .iter()
            .rev()
            .take(NEAR_READS)
            .find(|r| r.tree == tree && self.bytes(r.key) == key)
            .and_then(|r| r.leaf)
    }

    fn record_read(&mut self, tree: TreeId, key: &[u8], version: u64, leaf: Option<LeafStamp>) {
        let key = self.push(key);
        self.reads.push(ReadRec {
            tree,
            key,
            version,
            leaf,
        });
        self.max_version = self.max_version.max(version);
    }

    /// Indices of this transaction's last write of each key of `tree` in
    /// `(lo, hi)`, sorted by key, into `merge` (cleared first).
    fn own_writes_in(
        &self,
        tree: TreeId,
        lo: Bound<&[u8]>,
        hi: Bound<&[u8]>,
        merge: &mut Vec<u32>,
    ) {
        merge.clear();
        for (i, w) in self.writes.iter().enumerate() {
            let k = self.bytes(w.key);
            if w.tree == tree && !w.superseded && in_range(k, lo, hi) {
                merge.push(i as u32);
            }
        }
        merge.sort_unstable_by(|&x, &y| {
            self.bytes(self.writes[x as usize].key)
                .cmp(self.bytes(self.writes[y as usize].key))
        });
    }

    /// Passes `f` the own writes `merge[*next..]` whose keys sort before
    /// `until` (all of them if `None`), skipping deletions; returns the key
    /// at which `f` stopped, if it did.
    fn emit_own_writes(
        &self,
        merge: &[u32],
        next: &mut usize,
        until: Option<&[u8]>,
        f: &mut impl FnMut(&[u8], &[u8]) -> ControlFlow<()>,
    ) -> Option<Span> {
        while let Some(&i) = merge.get(*next) {
            let w = &self.writes[i as usize];
            if until.is_some_and(|k| self.bytes(w.key) >= k) {
                break;
            }
            *next += 1;
            if let Some(val) = w.value
                && f(self.bytes(w.key), self.bytes(val)).is_break()
            {
                return Some(w.key);
            }
        }
        None
    }

    /// Tree `id` as this thread's cache holds it, if the Db has opened or
    /// dropped no tree since (`TreeCache::current`).
    pub(crate) fn current_tree(&self, db: &DbInner, id: TreeId) -> Option<&BTree> {
        self.trees.current(db, id)
    }

    /// Resolves every tree this transaction wrote (the commit's step 2),
    /// for [`TxBufs::final_writes`]; returns the tree generation they are
    /// valid for.
    pub(crate) fn hold_written_trees(&mut self, db: &DbInner) -> Result<u64, DbError> {
        self.trees.hold(db, self.writes.iter().map(|w| w.tree))
    }

    /// The final write of every key, in first-write order, with its tree
    /// (held by [`TxBufs::hold_written_trees`]).
    pub(crate) fn final_writes(&self) -> Result<(Vec<Write<'_>>, Vec<&BTree>), TxError> {
        let mut writes = Vec::with_capacity(self.writes.len());
        let mut trees = Vec::with_capacity(self.writes.len());
        for w in self.writes.iter().filter(|w| !w.superseded) {
            let key = self.bytes(w.key);
            let tree = self
                .trees
                .peek(w.tree)
                .ok_or(TxError::Db(DbError::NoSuchTree(w.tree)))?;
            trees.push(tree);
            writes.push(Write {
                tree: w.tree,
                key,
                value: w.value.map(|s| self.bytes(s)),
            });
        }
        Ok((writes, trees))
    }
}

/// Splits a stored value into (version, user bytes).
pub(crate) fn split_stored(v: &[u8]) -> Option<(u64, &[u8])> {
    let (ver, user) = v.split_at_checked(VERSION_SIZE)?;
    Some((u64::from_le_bytes(ver.try_into().ok()?), user))
}

fn corrupt_value(tree: TreeId, key: &[u8]) -> TxError {
    TxError::Db(DbError::Corrupt(format!(
        "value of key {key:?} in tree {} has no version",
        tree.0
    )))
}

fn check_key(key: &[u8]) -> Result<(), TxError> {
    if key.len() > MAX_KEY_LEN {
        return Err(TxError::KeyTooLarge {
            len: key.len(),
            max: MAX_KEY_LEN,
        });
    }
    Ok(())
}

/// One run of a transaction closure. See the module docs.
pub struct Tx<'a> {
    db: &'a DbInner,
    b: &'a mut TxBufs,
    /// Reads stop at a page not in memory with [`TxError::WouldWait`]
    /// instead of reading it (`crate::reads`).
    nowait: bool,
}

impl<'a> Tx<'a> {
    pub(crate) fn new(db: &'a DbInner, b: &'a mut TxBufs) -> Self {
        Tx {
            db,
            b,
            nowait: false,
        }
    }

    pub(crate) fn new_nowait(db: &'a DbInner, b: &'a mut TxBufs) -> Self {
        Tx {
            db,
            b,
            nowait: true,
        }
    }

    /// Refuses the catalog: a transaction reads and writes user trees
    /// only (the catalog changes only through `create_tree`/`drop_tree`).
    fn user_tree(&self, tree: TreeId) -> Result<(), TxError> {
        match tree == self.db.catalog_id() {
            true => Err(TxError::Db(DbError::NoSuchTree(tree))),
            false => Ok(()),
        }
    }

    /// A user tree ([`Tx::user_tree`]), through the Db's map.
    fn tree(&self, tree: TreeId) -> Result<Arc<BTree>, TxError> {
        self.user_tree(tree)?;
        Ok(self.db.tree(tree)?)
    }

    /// [`Tx::tree`] from this thread's cache: no lock, no reference count.
    fn cached_tree(&mut self, tree: TreeId) -> Result<&BTree, TxError> {
        Ok(self.tree_and_scratch(tree)?.0)
    }

    /// [`Tx::cached_tree`], with the buffers' value scratch beside it.
    fn tree_and_scratch(
        &mut self,
        tree: TreeId,
    ) -> Result<(&BTree, &mut [u8; INLINE_VALUE_MAX]), TxError> {
        self.user_tree(tree)?;
        let TxBufs {
            trees,
            value_scratch,
            ..
        } = &mut *self.b;
        Ok((trees.get(self.db, tree)?, &mut value_scratch.0))
    }

    /// Hands the value of `key` to `f` (straight from the page, or from
    /// this transaction's own writes); `None` if absent.
    pub fn get<R>(
        &mut self,
        tree: TreeId,
        key: &[u8],
        f: impl FnOnce(&[u8]) -> R,
    ) -> Result<Option<R>, TxError> {
        check_key(key)?;
        if let Some(i) = self.b.find_write(tree, key) {
            return Ok(self.b.writes[i].value.map(|s| f(self.b.bytes(s))));
        }
        let (got, leaf) = if self.nowait {
            self.get_nowait(tree, key, f)?
        } else {
            let (t, scratch) = self.tree_and_scratch(tree)?;
            t.get_copied_stamped_in(key, scratch, |v| {
                split_stored(v).map(|(ver, user)| (ver, f(user)))
            })?
        };
        match got {
            None => {
                self.b.record_read(tree, key, 0, leaf);
                Ok(None)
            }
            Some(None) => Err(corrupt_value(tree, key)),
            Some(Some((ver, r))) => {
                self.b.record_read(tree, key, ver, leaf);
                Ok(Some(r))
            }
        }
    }

    /// Sets `key` to `value` (visible to this transaction at once, to
    /// others at commit).
    pub fn put(&mut self, tree: TreeId, key: &[u8], value: &[u8]) -> Result<(), TxError> {
        check_key(key)?;
        if value.len() > MAX_VALUE_LEN {
            return Err(TxError::ValueTooLarge {
                len: value.len(),
                max: MAX_VALUE_LEN,
            });
        }
        self.cached_tree(tree)?;
        self.b.record_write(tree, key, Some(value));
        Ok(())
    }

    /// Removes `key`; returns whether it was present (a read of `key`).
    pub fn delete(&mut self, tree: TreeId, key: &[u8]) -> Result<bool, TxError> {
        let existed = self.get(tree, key, |_| ())?.is_some();
        if existed {
            self.b.record_write(tree, key, None);
        }
        Ok(existed)
    }

    /// Adds `delta` to the i64 (8 bytes, little-endian) at `key`; a missing
    /// key counts as 0. Returns the new value.
    pub fn add(&mut self, tree: TreeId, key: &[u8], delta: i64) -> Result<i64, TxError> {
        let cur = self.get(tree, key, |v| {
            <[u8; 8]>::try_from(v)
                .map(i64::from_le_bytes)
                .map_err(|_| v.len())
        })?;
        let cur = match cur {
            None => 0,
            Some(Ok(n)) => n,
            Some(Err(len)) => return Err(TxError::NotI64 { len }),
        };
        let new = cur.checked_add(delta).ok_or(TxError::Overflow)?;
        self.put(tree, key, &new.to_le_bytes())?;
        Ok(new)
    }

    /// Compare-and-swap: if the value of `key` is `expected` (`None`:
    /// absent), sets it to `new` (`None`: delete) and returns true.
    pub fn cas(
        &mut self,
        tree: TreeId,
        key: &[u8],
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<bool, TxError> {
        let matches = match self.get(tree, key, |v| Some(v) == expected)? {
            None => expected.is_none(),
            Some(eq) => eq,
        };
        if matches {
            match new {
                Some(v) => self.put(tree, key, v)?,
                None => {
                    self.cached_tree(tree)?;
                    self.b.record_write(tree, key, None);
                }
            }
        }
        Ok(matches)
    }

    /// Calls `f(key, value)` for every entry in `[lo, hi]` (per the bounds),
    /// ascending, this transaction's writes merged in, until `f` breaks.
    /// The range up to where `f` stopped is validated at commit (phantoms
    /// included).
    ///
    /// In a non-waiting transaction ([`crate::OwnedTx::tx_nowait`]), a leaf
    /// not in memory ends the scan with [`TxError::WouldWait`] naming it,
    /// the pages to read with it in [`crate::OwnedTx::read_ahead`]. The
    /// scan then records nothing (what it had observed is forgotten), so
    /// running it again once the pages are in is exact; but `f` may have
    /// seen the entries before that leaf, and must drop them.
    pub fn scan(
        &mut self,
        tree: TreeId,
        lo: Bound<&[u8]>,
        hi: Bound<&[u8]>,
        f: impl FnMut(&[u8], &[u8]) -> ControlFlow<()>,
    ) -> Result<(), TxError> {
        self.scan_inner(tree, lo, hi, false, f).map(drop)
    }

    /// [`Tx::scan`] for a caller that can resume a scan from the last key
    /// it was handed (the host's `scan` call). In a non-waiting
    /// transaction, a leaf not in memory met after `f` was handed at least
    /// one entry ends the scan there as if `f` had broken after the last
    /// tree entry visited: recorded up to it, [`ScanEnd::Paused`] naming
    /// the page the rest needs (worth requesting: the resumed scan reads
    /// it next). Met before any entry, it is [`TxError::WouldWait`] as in
    /// `scan`. So every call makes progress with one leaf in memory at a
    /// time, however small the pool and however many scans run.
    pub fn scan_resumable(
        &mut self,
        tree: TreeId,
        lo: Bound<&[u8]>,
        hi: Bound<&[u8]>,
        f: impl FnMut(&[u8], &[u8]) -> ControlFlow<()>,
    ) -> Result<ScanEnd, TxError> {
        self.scan_inner(tree, lo, hi, true, f)
    }

    /// Steps 1-4 of `scan`; `pause`: as in [`Tx::scan_resumable`]. The
    /// tree comes from this thread's cache, taken out of the buffers while
    /// the scan runs (its visitor borrows them all): no lock of the Db's
    /// tree map and no reference count, lines the other cores write.
    fn scan_inner(
        &mut self,
        tree: TreeId,
        lo: Bound<&[u8]>,
        hi: Bound<&[u8]>,
        pause: bool,
        f: impl FnMut(&[u8], &[u8]) -> ControlFlow<()>,
    ) -> Result<ScanEnd, TxError> {
        self.user_tree(tree)?;
        let mut trees = std::mem::take(&mut self.b.trees);
        let scanned = match trees.get(self.db, tree) {
            Ok(t) => self.scan_tree(t, tree, lo, hi, pause, f),
            Err(e) => Err(e.into()),
        };
        self.b.trees = trees;
        scanned
    }

    /// [`Tx::scan_inner`] on `t`, the open tree `tree`.
    fn scan_tree(
        &mut self,
        t: &BTree,
        tree: TreeId,
        lo: Bound<&[u8]>,
        hi: Bound<&[u8]>,
        pause: bool,
        mut f: impl FnMut(&[u8], &[u8]) -> ControlFlow<()>,
    ) -> Result<ScanEnd, TxError> {
        let handed = std::cell::Cell::new(0usize);
        let mut f = |k: &[u8], v: &[u8]| {
            handed.set(handed.get() + 1);
            f(k, v)
        };
        let nowait = self.nowait;
        let b = &mut *self.b;
        let mark = b.mark();
        let mut ahead = Vec::new();
        // 1. This transaction's writes in the range, sorted, last write per key.
        let mut merge = std::mem::take(&mut b.merge);
        b.own_writes_in(tree, lo, hi, &mut merge);
        // 2. Merge with the tree scan, recording what the tree showed (and
        //    whether the tree's writers were all done before it).
        let quiet = self.db.gates().quiet(Gates::of_tree(tree.0));
        let lo_s = b.push_bound(lo);
        let obs_start = b.observed.len();
        // Out of `b` while the scan runs: `visit` borrows all of `b`.
        let mut pages = std::mem::take(&mut b.scan_pages);
        let pages_start = pages.len();
        let mut next = 0usize;
        let mut stopped_at: Option<Span> = None;
        let mut last_visited: Option<Span> = None;
        let mut unversioned = false;
        let visit = |k: &[u8], v: &[u8]| {
            stopped_at = b.emit_own_writes(&merge, &mut next, Some(k), &mut f);
            if stopped_at.is_some() {
                return ControlFlow::Break(());
            }
            let Some((ver, user)) = split_stored(v) else {
                unversioned = true;
                return ControlFlow::Break(());
            };
            let key = b.push(k);
            b.observed.push(ObsRec { key, version: ver });
            b.max_version = b.max_version.max(ver);
            // An own write of this very key hides the stored value.
            let own = merge.get(next).map(|&i| &b.writes[i as usize]);
            let flow = match own.filter(|w| b.bytes(w.key) == k) {
                Some(w) => {
                    next += 1;
                    w.value
                        .map_or(ControlFlow::Continue(()), |val| f(k, b.bytes(val)))
                }
                None => f(k, user),
            };
            if flow.is_break() {
                stopped_at = Some(key);
            }
            last_visited = Some(key);
            flow
        };
        let mut end = ScanEnd::Finished;
        let scanned = if !nowait {
            t.scan_stamped((lo, hi), Direction::Forward, &mut pages, visit)
                .map(Fetch::Ready)
        } else {
            t.scan_nowait_stamped((lo, hi), Direction::Forward, &mut ahead, &mut pages, visit)
        };
        b.scan_pages = pages;
        if let Fetch::Missing { pid, pages } = scanned? {
            let miss = Miss::new(pid, pages);
            b.read_ahead.clear();
            b.read_ahead
                .extend(ahead.iter().map(|&page| Miss::new(page, 1)));
            match last_visited.filter(|_| pause && handed.get() > 0) {
                // Paused: recorded up to the last entry visited.
                Some(last) => {
                    stopped_at = Some(last);
                    end = ScanEnd::Paused(miss);
                }
                // Stopped at a leaf not in memory: forget what it recorded.
                None => {
                    b.rewind(mark);
                    b.merge = merge;
                    return Err(TxError::WouldWait(miss));
                }
            }
        }
        if unversioned {
            b.merge = merge;
            return Err(TxError::Db(DbError::Corrupt(format!(
                "a value in tree {} has no version",
                tree.0
            ))));
        }
        // 3. Own writes after the last tree entry.
        if stopped_at.is_none() {
            stopped_at = b.emit_own_writes(&merge, &mut next, None, &mut f);
        }
        // 4. The range actually observed: up to where f stopped.
        let hi_s = match stopped_at {
            Some(k) => SpanBound::Included(k),
            None => b.push_bound(hi),
        };
        let observed = obs_start..b.observed.len();
        b.scans.push(ScanRec {
            tree,
            lo: lo_s,
            hi: hi_s,
            observed,
            quiet,
            pages: pages_start..b.scan_pages.len(),
        });
        b.merge = merge;
        Ok(end)
    }

    /// An error to return from the closure to abort: nothing is committed.
    pub fn abort(&mut self, reason: impl Into<String>) -> TxError {
        TxError::Aborted(reason.into())
    }
}

/// How a [`Tx::scan_resumable`] ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub enum ScanEnd {
    /// The range was exhausted, or `f` broke.
    Finished,
    /// Stopped before a leaf not in memory, after the last entry handed
    /// out: resume after that key once the page is in.
    Paused(Miss),
}

fn in_range(k: &[u8], lo: Bound<&[u8]>, hi: Bound<&[u8]>) -> bool {
    let above = match lo {
        Bound::Included(l) => k >= l,
        Bound::Excluded(l) => k > l,
        Bound::Unbounded => true,
    };
    let below = match hi {
        Bound::Included(h) => k <= h,
        Bound::Excluded(h) => k < h,
        Bound::Unbounded => true,
    };
    above && below
}
