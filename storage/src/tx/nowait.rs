//! Point reads that do not wait for the disk (`crate::reads`): a
//! transaction made by [`crate::OwnedTx::tx_nowait`] looks a key up with
//! the tree's `probe_nowait`, and a page on the way that is not in memory
//! ends the operation with [`TxError::WouldWait`] before it has recorded
//! or buffered anything, so the caller can run it again from the start
//! once the page is in. Scans and `get_many` do the same (`Tx::scan`,
//! `batch`); [`TxBufs::commit_misses`] finds, without waiting, the pages a
//! commit would latch.

use super::{Tx, TxBufs, corrupt_value, split_stored};
use crate::error::TxError;
use crate::inner::DbInner;
use crate::reads::Miss;
use crate::wal::TreeId;
use rime_btree::{Direction, Fetch, LeafStamp, Probe};
use std::ops::ControlFlow;

/// A lookup's answer (`None`: absent; `Some(None)`: a stored value
/// without its version, corrupt; else the version and `f`'s result), with
/// the stamp of the leaf that gave it, if an optimistic read did.
pub(super) type Looked<R> = (Option<Option<(u64, R)>>, Option<LeafStamp>);

impl Tx<'_> {
    /// The stored `(version, f(user bytes))` of `key`, as the blocking
    /// `BTree::get` in `Tx::get` returns it, or `WouldWait`.
    pub(super) fn get_nowait<R>(
        &mut self,
        tree: TreeId,
        key: &[u8],
        f: impl FnOnce(&[u8]) -> R,
    ) -> Result<Looked<R>, TxError> {
        let (t, buf) = self.tree_and_scratch(tree)?;
        match t.probe_nowait(key, buf)? {
            Fetch::Missing { pid, pages } => Err(TxError::WouldWait(Miss::new(pid, pages))),
            Fetch::Ready(Probe::Absent(leaf)) => Ok((None, Some(leaf))),
            Fetch::Ready(Probe::Inline(len, leaf)) => {
                let (version, user) =
                    split_stored(&buf[..len]).ok_or_else(|| corrupt_value(tree, key))?;
                Ok((Some(Some((version, f(user)))), Some(leaf)))
            }
            // An extent: read under the leaf's latch. The path to the leaf
            // was in memory an instant ago and nothing of this thread ran
            // since, so no page on it is one of this thread's reads (the
            // rule of `crate::reads`); the extent's pages never are.
            Fetch::Ready(Probe::Large) => Ok((
                t.get(key, |v| split_stored(v).map(|(ver, user)| (ver, f(user))))?,
                None,
            )),
        }
    }
}

impl TxBufs {
    /// Steps 1-2 of [`crate::OwnedTx::commit_misses`] (the caller checked
    /// that the commit latches pages): the missing pages, each once.
    pub(crate) fn commit_misses(
        &mut self,
        db: &DbInner,
        out: &mut Vec<Miss>,
    ) -> Result<(), TxError> {
        let TxBufs {
            arena,
            reads,
            writes,
            scans,
            trees,
            ..
        } = self;
        let bytes = |s: super::Span| &arena[s.off as usize..(s.off + s.len) as usize];
        let mut add = |miss: Miss| {
            if !out.contains(&miss) {
                out.push(miss);
            }
        };
        // Step 1: the paths of the keys written and read.
        let keys = writes
            .iter()
            .map(|w| (w.tree, w.key))
            .chain(reads.iter().map(|r| (r.tree, r.key)));
        for (tree, key) in keys {
            // A tree dropped meanwhile: the commit reports it.
            let Ok(t) = trees.get(db, tree) else { continue };
            if let Fetch::Missing { pid, pages } = t.write_probe_nowait(bytes(key))? {
                add(Miss::new(pid, pages));
            }
        }
        // Step 2: the ranges scanned, as validation scans them.
        let mut ahead = Vec::new();
        for s in scans.iter() {
            let Ok(t) = trees.get(db, s.tree) else {
                continue;
            };
            let bound = |b: super::SpanBound| match b {
                super::SpanBound::Included(k) => std::ops::Bound::Included(bytes(k)),
                super::SpanBound::Excluded(k) => std::ops::Bound::Excluded(bytes(k)),
                super::SpanBound::Unbounded => std::ops::Bound::Unbounded,
            };
            let range = (bound(s.lo), bound(s.hi));
            let scanned = t.scan_nowait(range, Direction::Forward, &mut ahead, |_, _| {
                ControlFlow::Continue(())
            })?;
            if let Fetch::Missing { pid, pages } = scanned {
                add(Miss::new(pid, pages));
                ahead.iter().for_each(|&page| add(Miss::new(page, 1)));
            }
        }
        Ok(())
    }
}
