//! Splits: a full node hands its lower half to a new left sibling.
//!
//! ```text
//!   parent [.. k_{i-1} | k_i ..]          parent [.. k_{i-1} | sep | k_i ..]
//!                       |                                     |     |
//!                     node          ==>                     left   node
//!            (k_{i-1}, k_i]: a..z                (k_{i-1}, sep]    (sep, k_i]
//! ```
//!
//! The existing node keeps the upper half, so the parent pointer to it
//! (slot or upper child) stays right and only one separator is added — as
//! in LeanStore. The root never moves: a root split copies both halves into
//! two new nodes and turns the root into an inner node above them.

use crate::error::{OrCorrupt, corrupt};
use crate::node::{HEADER_SIZE, NODE_SIZE, Node, NodeMut, common_prefix, copy_entries, entry_size};
use crate::{BTree, SmoKind, TreeError};
use rime_bufmgr::{ExclusiveGuard, PageId};

/// Where to cut a node and what goes up.
struct Cut {
    /// Leaves: slots `..=at` go left. Inner nodes: slots `..at` go left,
    /// slot `at`'s child becomes the left node's upper child and its key
    /// moves up.
    at: usize,
    separator: Vec<u8>,
}

impl BTree {
    /// Makes `needed` bytes of room in node `target` (on the path of
    /// `key`) by splitting it, unless someone else already did.
    ///
    /// 1. Latch parent and node exclusively, top-down (`olc`); if `target`
    ///    left the path of `key`, another thread changed it: done.
    /// 2. If the node has room now, done.
    /// 3. The root splits in place (no parent needed).
    /// 4. Choose the cut; if the parent has no room for the separator,
    ///    unlatch, split the parent first, and go back to 1.
    /// 5. Build the left node, rebuild the node as the right half, add the
    ///    separator to the parent.
    /// 6. Log the SMO and stamp its LSN with all three pages latched.
    pub(crate) fn split(&self, key: &[u8], target: PageId, needed: usize) -> Result<(), TreeError> {
        loop {
            // Step 1.
            let Some((parent, mut node)) = self.latch_for_split(key, target)? else {
                return Ok(());
            };
            // Step 2.
            let view = Node(node.payload());
            if view.free_after_compaction().or_corrupt(target, "header")? >= needed {
                return Ok(());
            }
            // Step 3.
            let Some(mut parent) = parent else {
                return self.split_root(&mut node, key);
            };
            // Step 4.
            let cut = choose_cut(view, target, key)?;
            let pview = Node(parent.payload());
            let sep_suffix = cut
                .separator
                .len()
                .saturating_sub(pview.prefix_len().or_corrupt(parent.pid(), "prefix")?);
            let parent_needed = entry_size(sep_suffix, 8);
            if pview
                .free_after_compaction()
                .or_corrupt(parent.pid(), "header")?
                < parent_needed
            {
                let parent_pid = parent.pid();
                drop((node, parent));
                self.split(key, parent_pid, parent_needed)?;
                continue;
            }
            // Step 5.
            let mut left = self.bm.alloc()?;
            build_halves(&mut left, &mut node, &cut)?;
            let (pos, _) = Node(parent.payload())
                .search(&cut.separator)
                .or_corrupt(parent.pid(), "slots")?;
            let parent_pid = parent.pid();
            let mut pnode = NodeMut(parent.payload_mut());
            let suffix = &cut.separator[cut.separator.len() - sep_suffix..];
            pnode
                .insert_at(pos, suffix, &left.pid().to_le_bytes(), 0)
                .or_corrupt(parent_pid, "separator insert")?;
            // Step 6.
            let left_pid = left.pid();
            self.log_smo(
                SmoKind::Split,
                &mut [&mut parent, &mut left, &mut node],
                &[left_pid],
                &[],
            )?;
            return Ok(());
        }
    }

    /// Root split: both halves go to new pages, the root (same id) becomes
    /// an inner node `[sep -> left] upper -> right`.
    fn split_root<'a>(
        &'a self,
        root: &mut ExclusiveGuard<'a>,
        key: &[u8],
    ) -> Result<(), TreeError> {
        let pid = root.pid();
        let cut = choose_cut(Node(root.payload()), pid, key)?;
        let mut left = self.bm.alloc()?;
        let mut right = self.bm.alloc()?;
        right.payload_mut().copy_from_slice(root.payload());
        build_halves(&mut left, &mut right, &cut)?;
        let mut node = NodeMut(root.payload_mut());
        node.init(false, None, None);
        node.set_upper_child(right.pid());
        node.insert_at(0, &cut.separator, &left.pid().to_le_bytes(), 0)
            .or_corrupt(pid, "root separator")?;
        let allocated = [left.pid(), right.pid()];
        self.log_smo(
            SmoKind::RootSplit,
            &mut [root, &mut left, &mut right],
            &allocated,
            &[],
        )?;
        Ok(())
    }
}

/// Picks the cut: the slot where the left half's bytes first reach half of
/// the total, kept inside the node; leaves truncate the separator to the
/// shortest key between the two halves (suffix truncation).
///
/// Sequential inserts (the key that needs room sorts after every key in the
/// node, or before all of them) cut next to that end instead, so ascending
/// and descending loads leave full nodes behind rather than half-full ones
/// — unless that cut's halves would not fit their pages: the separator
/// becomes a fence of both halves, and a long one (a 200-byte key before a
/// 7-byte one cannot be shortened) can outgrow the one entry that moves.
/// Then the balanced cut is taken.
fn choose_cut(view: Node<'_>, pid: PageId, key: &[u8]) -> Result<Cut, TreeError> {
    let count = view.count().or_corrupt(pid, "count")?;
    let leaf = view.is_leaf();
    if count < 2 {
        return Err(corrupt(
            pid,
            "a node with fewer than two entries cannot need a split",
        ));
    }
    let mut sizes = Vec::with_capacity(count);
    for i in 0..count {
        let s = view.slot(i).or_corrupt(pid, "slot")?;
        sizes.push(entry_size(s.key_len, s.val_len));
    }
    let total: usize = sizes.iter().sum();
    let mut acc = 0;
    let mut balanced = 0;
    while balanced < count && acc + sizes[balanced] < total / 2 {
        acc += sizes[balanced];
        balanced += 1;
    }
    let balanced = if leaf {
        balanced.min(count - 2)
    } else {
        balanced.clamp(1, count - 1)
    };
    let sequential = match view.search(key).map(|(pos, _)| pos) {
        Some(pos) if pos == count => Some(count - 2 + !leaf as usize),
        Some(0) => Some(0),
        _ => None,
    };
    let fences = (
        view.lower()
            .or_corrupt(pid, "fence")?
            .map_or(0, <[u8]>::len),
        view.upper()
            .or_corrupt(pid, "fence")?
            .map_or(0, <[u8]>::len),
    );
    if let Some(at) = sequential {
        let cut = cut_at(view, pid, at)?;
        if halves_fit(&sizes, leaf, fences, &cut) {
            return Ok(cut);
        }
    }
    cut_at(view, pid, balanced)
}

/// The cut at slot `at`, with its separator.
fn cut_at(view: Node<'_>, pid: PageId, at: usize) -> Result<Cut, TreeError> {
    let key = |i: usize| -> Result<Vec<u8>, TreeError> {
        let mut k = Vec::new();
        view.full_key_into(i, &mut k).or_corrupt(pid, "key")?;
        Ok(k)
    };
    let separator = if view.is_leaf() {
        let (last_left, first_right) = (key(at)?, key(at + 1)?);
        let shared = common_prefix(&last_left, &first_right);
        if shared + 1 < first_right.len() {
            first_right[..shared + 1].to_vec()
        } else {
            last_left
        }
    } else {
        key(at)?
    };
    Ok(Cut { at, separator })
}

/// Whether both halves of `cut` fit a node. An upper bound: a half's
/// prefix (the common prefix of its fences) is at least the node's, so its
/// key suffixes are no longer than they are now.
fn halves_fit(sizes: &[usize], leaf: bool, (lower, upper): (usize, usize), cut: &Cut) -> bool {
    let left_end = if leaf { cut.at + 1 } else { cut.at };
    let sep = cut.separator.len();
    let bytes =
        |entries: &[usize], fences: usize| HEADER_SIZE + entries.iter().sum::<usize>() + fences;
    bytes(&sizes[..left_end], lower + sep) <= NODE_SIZE
        && bytes(&sizes[cut.at + 1..], sep + upper) <= NODE_SIZE
}

/// Writes the left half into `left` (a fresh page) and rebuilds `node` as
/// the right half.
fn build_halves(
    left: &mut ExclusiveGuard<'_>,
    node: &mut ExclusiveGuard<'_>,
    cut: &Cut,
) -> Result<(), TreeError> {
    let pid = node.pid();
    let view = Node(node.payload());
    let count = view.count().or_corrupt(pid, "count")?;
    let leaf = view.is_leaf();
    let (lower, upper) = (
        view.lower().or_corrupt(pid, "fence")?,
        view.upper().or_corrupt(pid, "fence")?,
    );
    let sep = Some(&cut.separator[..]);

    let mut l = NodeMut(left.payload_mut());
    l.init(leaf, lower, sep);
    let left_end = if leaf { cut.at + 1 } else { cut.at };
    copy_entries(view, &mut l, 0..left_end).or_corrupt(pid, "left half")?;
    if !leaf {
        l.set_upper_child(view.child(cut.at).or_corrupt(pid, "child")?);
    }
    l.make_hints();

    let mut tmp = [0u8; NODE_SIZE];
    let mut r = NodeMut(&mut tmp);
    r.init(leaf, sep, upper);
    copy_entries(view, &mut r, cut.at + 1..count).or_corrupt(pid, "right half")?;
    r.set_upper_child(view.upper_child().or_corrupt(pid, "upper")?);
    r.make_hints();
    node.payload_mut().copy_from_slice(&tmp);
    Ok(())
}
