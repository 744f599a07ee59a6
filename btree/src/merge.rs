//! Merges: an underfull node and a sibling become one node.
//!
//! ```text
//!   parent [.. k_{i-1} | k_i | k_{i+1} ..]      parent [.. k_{i-1} | k_{i+1} ..]
//!                        |       |                                   |
//!                      left    right     ==>                       right
//!            (k_{i-1}, k_i]  (k_i, k_{i+1}]                 (k_{i-1}, k_{i+1}]
//! ```
//!
//! The left node is merged into the right one (which keeps its page id, so
//! the parent pointer to it stays right) and freed; the parent loses the
//! left node's separator `k_i`. In inner nodes `k_i` comes down between the
//! two halves, pointing to the left node's upper child.
//!
//! Policy: a node tries to merge when a removal (or a write that shrinks
//! it) leaves it below [`MERGE_THRESHOLD`](crate::MERGE_THRESHOLD) (a third
//! of a page), with its right sibling (or its left one if it is the last
//! child), then with its left one if the first did not fit, and only if
//! the merged node fits in one page. Otherwise it stays underfull: the tree
//! remains valid, just less dense. A parent that becomes underfull merges
//! in turn; a root left with no separator absorbs its only child (root
//! collapse), keeping its page id.

use crate::error::OrCorrupt;
use crate::node::{NODE_SIZE, Node, NodeMut, copy_entries};
use crate::{BTree, MERGE_THRESHOLD, SmoKind, TreeError};
use rime_bufmgr::{ExclusiveGuard, OnMiss, PageId};

impl BTree {
    /// Tries to merge node `target` (on the path of `key`) with a sibling.
    ///
    /// 1. Latch parent, left and right exclusively, in that order (`olc`);
    ///    give up if `target` is the root, gone, or an only child.
    /// 2. Re-check under the latches that `target` is still underfull.
    /// 3. Build the merged node in a private buffer. If it does not fit
    ///    and the sibling was the right one, unlatch and go back to 1 with
    ///    the left sibling (if any); else give up. (The merged node's
    ///    prefix is what its wider fences share: merging with one side can
    ///    lengthen every key while the other side fits; an empty node left
    ///    between two such neighbours would stay forever.)
    /// 4. Remove the left node's separator from the parent, install the
    ///    merged node in the right page, log, stamp, free the left page.
    /// 5. Collapse the root if it was left without separators, else merge
    ///    the parent if it became underfull.
    ///
    /// [`OnMiss::Report`] gives up at step 1 when a node to latch is not in
    /// memory, instead of reading it ([`crate::Writer::merge_in_memory_only`]).
    pub(crate) fn try_merge(
        &self,
        key: &[u8],
        target: PageId,
        on_miss: OnMiss,
    ) -> Result<(), TreeError> {
        if !self.merge_with(key, target, false, on_miss)? {
            self.merge_with(key, target, true, on_miss)?;
        }
        Ok(())
    }

    /// Steps 1-5 of [`BTree::try_merge`] with one sibling: the left one if
    /// `left_sibling`, else the right one (the left one for a last child).
    /// Returns false only when the merged node with a right sibling did
    /// not fit (step 3's second try).
    fn merge_with(
        &self,
        key: &[u8],
        target: PageId,
        left_sibling: bool,
        on_miss: OnMiss,
    ) -> Result<bool, TreeError> {
        // Step 1.
        let Some(m) = self.latch_for_merge(key, target, left_sibling, on_miss)? else {
            return Ok(true);
        };
        let (mut parent, left, mut right) = (m.parent, m.left, m.right);
        // Step 2.
        let target_view = Node(if left.pid() == target {
            left.payload()
        } else {
            right.payload()
        });
        if target_view.used().or_corrupt(target, "header")? >= MERGE_THRESHOLD {
            return Ok(true);
        }
        // Step 3.
        let mut merged = [0u8; NODE_SIZE];
        let pview = Node(parent.payload());
        let separator = {
            let mut k = Vec::new();
            pview
                .full_key_into(m.left_pos, &mut k)
                .or_corrupt(parent.pid(), "separator")?;
            k
        };
        if !merge_into(
            Node(left.payload()),
            Node(right.payload()),
            &separator,
            &mut merged,
        )
        .or_corrupt(target, "merge")?
        {
            // A right sibling that did not fit: the caller tries the left.
            return Ok(left_sibling || left.pid() != target);
        }
        // Step 4.
        let parent_pid = parent.pid();
        NodeMut(parent.payload_mut())
            .remove_at(m.left_pos)
            .or_corrupt(parent_pid, "remove separator")?;
        right.payload_mut().copy_from_slice(&merged);
        let freed = [(left.pid(), 1)];
        self.log_smo(SmoKind::Merge, &mut [&mut parent, &mut right], &[], &freed)?;
        self.bm.free(left);
        // Step 5.
        let pview = Node(parent.payload());
        if parent_pid == self.root {
            if pview.count().or_corrupt(parent_pid, "count")? == 0 {
                self.collapse_root(&mut parent, right)?;
            }
            return Ok(true);
        }
        let parent_underfull = pview.used().or_corrupt(parent_pid, "header")? < MERGE_THRESHOLD;
        drop((right, parent));
        if parent_underfull {
            self.try_merge(key, parent_pid, on_miss)?;
        }
        Ok(true)
    }

    /// The root has no separator left: pull its only child up into it.
    fn collapse_root<'a>(
        &'a self,
        root: &mut ExclusiveGuard<'a>,
        child: ExclusiveGuard<'a>,
    ) -> Result<(), TreeError> {
        root.payload_mut().copy_from_slice(child.payload());
        let freed = [(child.pid(), 1)];
        self.log_smo(SmoKind::RootCollapse, &mut [root], &[], &freed)?;
        self.bm.free(child);
        Ok(())
    }
}

/// Builds `left ++ right` into `out` with fences (left.lower, right.upper).
/// Returns `Some(false)` if it does not fit, `None` on inconsistent bytes.
fn merge_into(
    left: Node<'_>,
    right: Node<'_>,
    separator: &[u8],
    out: &mut [u8; NODE_SIZE],
) -> Option<bool> {
    let leaf = left.is_leaf();
    let mut node = NodeMut(out);
    node.init(leaf, left.lower()?, right.upper()?);
    let fits = (|| {
        copy_entries(left, &mut node, 0..left.count()?)?;
        if !leaf {
            node.append_full(separator, &left.upper_child()?.to_le_bytes(), 0)?;
        }
        copy_entries(right, &mut node, 0..right.count()?)
    })()
    .is_some();
    if !fits {
        return Some(false);
    }
    node.set_upper_child(right.upper_child()?);
    node.make_hints();
    Some(true)
}
