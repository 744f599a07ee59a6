//! Batched point reads: many lookups of one transaction run interleaved
//! on the calling thread, their misses overlapped by a [`Loader`].
//!
//! 1. Every key starts ready. A ready key is answered from the
//!    transaction's own writes, or looked up with `probe_nowait`.
//! 2. A lookup that reaches a frame not in memory hands the frame to the
//!    loader (whose read starts at once, or joins a read already running)
//!    and waits; the next ready key runs meanwhile.
//! 3. When nothing is ready, the loader's poll submits the new reads in one
//!    call and reports the frames that arrived; their keys are ready again
//!    and look up from the root (a page may have split meanwhile).
//! 4. A found key's version joins the read set, as `get` records it, so
//!    the transaction stays serializable.

use super::{Tx, check_key, corrupt_value, split_stored};
use crate::error::TxError;
use crate::reads::Miss;
use crate::wal::TreeId;
use rime_btree::{Fetch, INLINE_VALUE_MAX, Probe, TreeError};
use rime_bufmgr::{Loader, PageError, PageId};
use std::collections::HashMap;

impl Tx<'_> {
    /// Hands `f(i, value)` the value of `keys[i]` (`None`: absent) for every
    /// `i`, in the order the keys' pages arrive rather than the keys'
    /// order, with the lookups' misses in flight together (up to
    /// [`rime_bufmgr::MAX_LOADER_READS`] reads; see the module docs). The
    /// value's bytes are lent, straight from the page or the transaction's
    /// own writes: nothing is allocated per key. Like any read of a
    /// transaction, a conflict runs the closure again, and `f` then sees
    /// every key again.
    pub fn get_many<K: AsRef<[u8]>>(
        &mut self,
        tree: TreeId,
        keys: &[K],
        mut f: impl FnMut(usize, Option<&[u8]>),
    ) -> Result<(), TxError> {
        keys.iter().try_for_each(|k| check_key(k.as_ref()))?;
        if self.nowait {
            return self.get_many_nowait(tree, keys, f);
        }
        let t = self.tree(tree)?;
        let mut loader: Option<Loader<'_>> = None;
        // Keys waiting, by the frame each waits for.
        let mut waiting: HashMap<PageId, Vec<usize>> = HashMap::new();
        let mut failed: Option<PageError> = None;
        let mut ready: Vec<usize> = (0..keys.len()).rev().collect();
        let mut buf = [0u8; INLINE_VALUE_MAX];
        loop {
            // Steps 1, 2 and 4.
            while let Some(i) = ready.pop() {
                let key = keys[i].as_ref();
                if let Some(w) = self.b.find_write(tree, key) {
                    f(i, self.b.writes[w].value.map(|s| self.b.bytes(s)));
                    continue;
                }
                match t.probe_nowait(key, &mut buf)? {
                    Fetch::Missing { pid, pages } => {
                        let l = loader.get_or_insert_with(|| Loader::new(t.buffer_manager()));
                        l.request(pid, pages);
                        waiting.entry(pid).or_default().push(i);
                    }
                    Fetch::Ready(Probe::Absent(leaf)) => {
                        self.b.record_read(tree, key, 0, Some(leaf));
                        f(i, None);
                    }
                    Fetch::Ready(Probe::Inline(len, leaf)) => {
                        let (version, user) =
                            split_stored(&buf[..len]).ok_or_else(|| corrupt_value(tree, key))?;
                        self.b.record_read(tree, key, version, Some(leaf));
                        f(i, Some(user));
                    }
                    // An extent: read under the leaf's latch (blocking).
                    Fetch::Ready(Probe::Large) => self.get_large(tree, key, i, &mut f)?,
                }
            }
            if waiting.is_empty() {
                return Ok(());
            }
            // Step 3.
            let l = loader.as_mut().expect("a waiting key requested a frame");
            l.poll(true, |pid, r| match r {
                Ok(()) => ready.extend(waiting.remove(&pid).unwrap_or_default()),
                Err(e) => failed = failed.take().or(Some(e)),
            });
            if let Some(e) = failed.take() {
                return Err(TreeError::from(e).into());
            }
        }
    }

    /// A key whose value lives in an extent: read under the leaf's latch.
    fn get_large(
        &mut self,
        tree: TreeId,
        key: &[u8],
        i: usize,
        f: &mut impl FnMut(usize, Option<&[u8]>),
    ) -> Result<(), TxError> {
        if self.get(tree, key, |v| f(i, Some(v)))?.is_none() {
            f(i, None);
        }
        Ok(())
    }

    /// [`Tx::get_many`] in a non-waiting transaction (`crate::reads`): no
    /// loader of its own, whose waits would stall the caller's thread.
    ///
    /// 1. Look every key up in key order (own writes first, else
    ///    `probe_nowait`), handing values to `f` and recording reads as
    ///    `get_many` does, until a key's path meets a page not in memory.
    /// 2. From that key on, only probe, to collect every page missing (one
    ///    per key, at most), without calling `f`.
    /// 3. If any was missing: forget what step 1 recorded and fail with
    ///    [`TxError::WouldWait`] naming the first; the others are in
    ///    [`crate::OwnedTx::read_ahead`], so the caller loads them all at
    ///    once and runs the call again (exact, since nothing was
    ///    recorded; `f`, which saw some keys, must drop what it kept).
    fn get_many_nowait<K: AsRef<[u8]>>(
        &mut self,
        tree: TreeId,
        keys: &[K],
        mut f: impl FnMut(usize, Option<&[u8]>),
    ) -> Result<(), TxError> {
        let mark = self.b.mark();
        let mut first: Option<Miss> = None;
        let mut buf = [0u8; INLINE_VALUE_MAX];
        self.b.read_ahead.clear();
        for (i, key) in keys.iter().enumerate() {
            let key = key.as_ref();
            if let Some(w) = self.b.find_write(tree, key) {
                if first.is_none() {
                    f(i, self.b.writes[w].value.map(|s| self.b.bytes(s)));
                }
                continue;
            }
            let t = self.cached_tree(tree)?;
            let probe = match t.probe_nowait(key, &mut buf)? {
                // Step 2.
                Fetch::Missing { pid, pages } => {
                    let miss = Miss::new(pid, pages);
                    match first {
                        None => first = Some(miss),
                        Some(m) if m != miss && !self.b.read_ahead.contains(&miss) => {
                            self.b.read_ahead.push(miss)
                        }
                        Some(_) => {}
                    }
                    continue;
                }
                Fetch::Ready(_) if first.is_some() => continue,
                Fetch::Ready(probe) => probe,
            };
            // Step 1.
            match probe {
                Probe::Absent(leaf) => {
                    self.b.record_read(tree, key, 0, Some(leaf));
                    f(i, None);
                }
                Probe::Inline(len, leaf) => {
                    let (version, user) =
                        split_stored(&buf[..len]).ok_or_else(|| corrupt_value(tree, key))?;
                    self.b.record_read(tree, key, version, Some(leaf));
                    f(i, Some(user));
                }
                // The path is in memory; the extent is never a read of this
                // thread's loader (`nowait::get_nowait`).
                Probe::Large => self.get_large(tree, key, i, &mut f)?,
            }
        }
        // Step 3.
        match first {
            None => Ok(()),
            Some(miss) => {
                self.b.rewind(mark);
                Err(TxError::WouldWait(miss))
            }
        }
    }
}
