//! Point reads that do not wait for the disk (`crate::reads`): a
//! transaction made by [`crate::OwnedTx::tx_nowait`] looks a key up with
//! the tree's `probe_nowait`, and a page on the way that is not in memory
//! ends the operation with [`TxError::WouldWait`] before it has recorded
//! or buffered anything, so the caller can run it again from the start
//! once the page is in.

use super::{Tx, corrupt_value, split_stored};
use crate::error::TxError;
use crate::reads::Miss;
use crate::wal::TreeId;
use rime_btree::{Fetch, INLINE_VALUE_MAX, Probe};

impl Tx<'_> {
    /// The stored `(version, f(user bytes))` of `key`, as the blocking
    /// `BTree::get` in `Tx::get` returns it, or `WouldWait`.
    pub(super) fn get_nowait<R>(
        &mut self,
        tree: TreeId,
        key: &[u8],
        f: impl FnOnce(&[u8]) -> R,
    ) -> Result<Option<Option<(u64, R)>>, TxError> {
        let mut buf = [0u8; INLINE_VALUE_MAX];
        let t = self.cached_tree(tree)?;
        match t.probe_nowait(key, &mut buf)? {
            Fetch::Missing { pid, pages } => Err(TxError::WouldWait(Miss::new(pid, pages))),
            Fetch::Ready(Probe::Absent) => Ok(None),
            Fetch::Ready(Probe::Inline(len)) => {
                let (version, user) =
                    split_stored(&buf[..len]).ok_or_else(|| corrupt_value(tree, key))?;
                Ok(Some(Some((version, f(user)))))
            }
            // An extent: read under the leaf's latch. The path to the leaf
            // was in memory an instant ago and nothing of this thread ran
            // since, so no page on it is one of this thread's reads (the
            // rule of `crate::reads`); the extent's pages never are.
            Fetch::Ready(Probe::Large) => {
                Ok(t.get(key, |v| split_stored(v).map(|(ver, user)| (ver, f(user))))?)
            }
        }
    }
}
