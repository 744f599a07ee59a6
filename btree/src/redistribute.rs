//! Redistribution: a full leaf moves entries to a sibling with room
//! instead of splitting (B*-tree style).
//!
//! ```text
//!   parent [.. k_{i-1} | s | k_{i+1} ..]      parent [.. k_{i-1} | s' | k_{i+1} ..]
//!                        |   |                                     |    |
//!                      left right        ==>                    left  right
//!         (k_{i-1}, s]: a b c  (s, k_{i+1}]: d      (k_{i-1}, s']: a b  (s', k_{i+1}]: c d
//! ```
//!
//! Both leaves keep their page ids; only the separator between them
//! changes, so the parent gains nothing and nothing is allocated. Under a
//! random load a leaf that a split left half full would otherwise stay so
//! until its own next split; with 1 KiB entries (three a leaf) that is the
//! difference between two entries a leaf and nearly three.
//!
//! Policy: a write that finds its leaf full (not on an ascending or
//! descending pattern: the append split already leaves full leaves there)
//! first looks at both siblings under the same parent, optimistically,
//! and takes the one with more room if it has room for at least the new
//! entry and an eighth of a page ([`MIN_SIBLING_ROOM`]). A sibling not in
//! memory or not latchable at once is skipped: the leaf splits instead.

use crate::error::{OrCorrupt, corrupt};
use crate::node::{NODE_SIZE, Node, NodeMut, copy_entries, entry_size};
use crate::split::{middle, separator_between};
use crate::{BTree, SmoKind, TreeError};
use rime_bufmgr::PageId;

/// A sibling is worth moving entries to only if it has this much room
/// (besides room for the new entry): each move then leaves both leaves
/// with some room, so a leaf does not redistribute at every insert.
pub(crate) const MIN_SIBLING_ROOM: usize = NODE_SIZE / 8;

/// How to cut the entries of two adjacent leaves (with the new one).
struct Plan {
    /// Entries `..left_count` of `left ++ right` go left.
    left_count: usize,
    separator: Vec<u8>,
}

impl BTree {
    /// Makes `needed` bytes of room for `key` in the full leaf `target`
    /// by moving entries between it and a sibling. Returns whether it did
    /// (the caller retries its write); false: the caller splits.
    ///
    /// 1. Latch parent, left and right exclusively in that order, one of
    ///    them `target`, the other its sibling with the most room
    ///    (`olc::latch_for_shift`, which never waits for a read or a
    ///    latch: a sibling not in memory or latched is skipped).
    /// 2. Under the latches, re-check that `target` still lacks room.
    /// 3. Plan the cut of both leaves' entries plus the new one at the
    ///    byte middle, and its separator ([`plan`]).
    /// 4. Build both leaves in private buffers; give up if either
    ///    overflows, if the leaf `key` now belongs to has no room for it,
    ///    or if the parent has no room for the new separator.
    /// 5. Replace the separator in the parent, install both leaves, log
    ///    one SMO ([`SmoKind::Redistribute`]) and stamp its LSN with all
    ///    three pages latched.
    pub(crate) fn redistribute(
        &self,
        key: &[u8],
        target: PageId,
        needed: usize,
    ) -> Result<bool, TreeError> {
        // Step 1.
        let Some((m, target_left)) = self.latch_for_shift(key, target, needed)? else {
            return Ok(false);
        };
        let (mut parent, mut left, mut right) = (m.parent, m.left, m.right);
        // Step 2.
        let (lview, rview) = (Node(left.payload()), Node(right.payload()));
        let tview = if target_left { lview } else { rview };
        if tview.free_after_compaction().or_corrupt(target, "header")? >= needed {
            return Ok(false);
        }
        // Step 3. The new entry's size with its whole key (prefixes differ
        // between the leaves and change with the fences).
        let target_prefix = tview.prefix_len().or_corrupt(target, "prefix")?;
        let new_full = needed + target_prefix;
        let Some(plan) = plan(lview, rview, left.pid(), key, new_full, target_left)? else {
            return Ok(false);
        };
        // Step 4.
        let mut new_left = [0u8; NODE_SIZE];
        let mut new_right = [0u8; NODE_SIZE];
        if !build_pair(lview, rview, &plan, &mut new_left, &mut new_right) {
            return Ok(false);
        }
        let side = Node(if key <= &plan.separator[..] {
            &new_left
        } else {
            &new_right
        });
        let side_prefix = side.prefix_len().or_corrupt(target, "prefix")?;
        let side_free = side.free_after_compaction().or_corrupt(target, "header")?;
        if side_free + side_prefix < new_full {
            return Ok(false);
        }
        let parent_pid = parent.pid();
        let pview = Node(parent.payload());
        let pprefix = pview.prefix_len().or_corrupt(parent_pid, "prefix")?;
        let old_sep = pview.slot(m.left_pos).or_corrupt(parent_pid, "slot")?;
        let suffix = plan
            .separator
            .get(pprefix..)
            .or_corrupt(parent_pid, "separator outside the parent's prefix")?;
        let pfree = pview
            .free_after_compaction()
            .or_corrupt(parent_pid, "header")?;
        if pfree + entry_size(old_sep.key_len, old_sep.val_len) < entry_size(suffix.len(), 8) {
            return Ok(false);
        }
        // Step 5.
        let left_pid = left.pid();
        let mut pnode = NodeMut(parent.payload_mut());
        pnode
            .remove_at(m.left_pos)
            .or_corrupt(parent_pid, "remove separator")?;
        pnode
            .insert_at(m.left_pos, suffix, &left_pid.to_le_bytes(), 0)
            .or_corrupt(parent_pid, "separator insert")?;
        left.payload_mut().copy_from_slice(&new_left);
        right.payload_mut().copy_from_slice(&new_right);
        self.log_smo(
            SmoKind::Redistribute,
            &mut [&mut parent, &mut left, &mut right],
            &[],
            &[],
        )?;
        Ok(true)
    }
}

/// Step 3 of [`BTree::redistribute`]: cut `left ++ right` with the new
/// entry (`new_full` bytes with its whole key, inserted into the target:
/// `left` if `target_left`) where the left part's bytes reach half, as
/// the middle split does. `None`: nothing useful to do (the key is
/// present, or the cut would leave a leaf with no old entry).
fn plan(
    left: Node<'_>,
    right: Node<'_>,
    left_pid: PageId,
    key: &[u8],
    new_full: usize,
    target_left: bool,
) -> Result<Option<Plan>, TreeError> {
    let bad = |what| move || corrupt(left_pid, what);
    let n_left = left.count().ok_or_else(bad("count"))?;
    let n_right = right.count().ok_or_else(bad("count"))?;
    let total = n_left + n_right;
    let mut sizes = Vec::with_capacity(total + 1);
    for (node, n) in [(left, n_left), (right, n_right)] {
        let prefix = node.prefix_len().ok_or_else(bad("prefix"))?;
        for i in 0..n {
            let s = node.slot(i).ok_or_else(bad("slot"))?;
            sizes.push(entry_size(prefix + s.key_len, s.val_len));
        }
    }
    let target = if target_left { left } else { right };
    let (pos, found) = target.search(key).ok_or_else(bad("slots"))?;
    if found {
        // A value growing in place: rare enough to leave to the split.
        return Ok(None);
    }
    let new_at = if target_left { pos } else { n_left + pos };
    sizes.insert(new_at, new_full);
    // `cut` entries of the list with the new one go left.
    let cut = (middle(&sizes) + 1).clamp(1, total);
    let (left_count, new_left) = if new_at < cut {
        (cut - 1, true)
    } else {
        (cut, false)
    };
    if left_count == 0 || left_count >= total {
        return Ok(None);
    }
    let full_key = |i: usize| -> Result<Vec<u8>, TreeError> {
        let mut k = Vec::new();
        let ok = if i < n_left {
            left.full_key_into(i, &mut k)
        } else {
            right.full_key_into(i - n_left, &mut k)
        };
        ok.ok_or_else(bad("key"))?;
        Ok(k)
    };
    let last_left = if new_left && new_at == left_count {
        key.to_vec()
    } else {
        full_key(left_count - 1)?
    };
    let first_right = if !new_left && new_at == left_count {
        key.to_vec()
    } else {
        full_key(left_count)?
    };
    let separator =
        separator_between(&last_left, &first_right).ok_or_else(bad("keys out of order"))?;
    Ok(Some(Plan {
        left_count,
        separator,
    }))
}

/// Step 4 of [`BTree::redistribute`]: the two leaves after the move, built
/// in `out_left` and `out_right`. False if either does not fit (a longer
/// key suffix under a shorter prefix can overflow the fuller side).
fn build_pair(
    left: Node<'_>,
    right: Node<'_>,
    plan: &Plan,
    out_left: &mut [u8; NODE_SIZE],
    out_right: &mut [u8; NODE_SIZE],
) -> bool {
    (|| {
        let (n_left, n_right) = (left.count()?, right.count()?);
        let k = plan.left_count;
        let sep = Some(&plan.separator[..]);
        let mut l = NodeMut(out_left);
        l.init(true, left.lower()?, sep);
        copy_entries(left, &mut l, 0..k.min(n_left))?;
        copy_entries(right, &mut l, 0..k.saturating_sub(n_left))?;
        l.make_hints();
        let mut r = NodeMut(out_right);
        r.init(true, sep, right.upper()?);
        copy_entries(left, &mut r, k.min(n_left)..n_left)?;
        copy_entries(right, &mut r, k.saturating_sub(n_left)..n_right)?;
        r.make_hints();
        Some(())
    })()
    .is_some()
}
