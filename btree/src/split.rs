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
//!
//! Where to cut ([`choose_cut`]): in the middle, except for ascending and
//! descending inserts, where an *append split* keeps the old entries
//! together in one full node and sends the new key alone to the other.
//! With entries of ~1 KiB a leaf holds three; a middle split leaves two
//! on each side, so an ascending load (every split at the right end) would
//! leave every leaf two-thirds of its capacity used, forever.

use crate::error::{OrCorrupt, corrupt};
use crate::node::{
    Fences, HEADER_SIZE, LastInsert, NODE_SIZE, Node, NodeMut, common_prefix, copy_entries,
    entry_size, fence_prefix,
};
use crate::{BTree, SmoKind, TreeError};
use rime_bufmgr::{ExclusiveGuard, PageId};

/// Where to cut a node and what goes up.
struct Cut {
    /// Slots `..left_end` go left. Leaves: slots `left_end..` go right;
    /// either side may be empty (an append split: the key being inserted
    /// goes alone to the empty side). Inner nodes: slot `left_end`'s child
    /// becomes the left node's upper child, its key moves up, slots
    /// `left_end + 1..` go right.
    left_end: usize,
    separator: Vec<u8>,
}

/// Why a node splits.
#[derive(Clone, Copy)]
enum Why {
    /// To make `needed` bytes of room.
    Room { needed: usize },
    /// For contention: at `left_end`, whatever its room.
    Contention { left_end: usize },
}

/// Whether the node being split is its parent's first or last child (the
/// root is both): the ends of a level, where ascending and descending
/// loads insert.
#[derive(Clone, Copy)]
pub(crate) struct Edge {
    pub first: bool,
    pub last: bool,
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
        self.split_for(key, target, Why::Room { needed })
    }

    /// Splits leaf `target` (on the path of `key`) at `left_end` for
    /// contention (`contention.rs`), however full it is: entries
    /// `..left_end` go left. Nothing happens if the leaf is the root, or
    /// now has too few entries for that cut. Steps as in [`BTree::split`].
    pub(crate) fn split_for_contention(
        &self,
        key: &[u8],
        target: PageId,
        left_end: usize,
    ) -> Result<(), TreeError> {
        self.split_for(key, target, Why::Contention { left_end })
    }

    fn split_for(&self, key: &[u8], target: PageId, why: Why) -> Result<(), TreeError> {
        loop {
            // Step 1.
            let Some((parent, mut node)) = self.latch_for_split(key, target)? else {
                return Ok(());
            };
            // Step 2.
            let view = Node(node.payload());
            let done = match why {
                Why::Room { needed } => {
                    view.free_after_compaction().or_corrupt(target, "header")? >= needed
                }
                Why::Contention { left_end } => {
                    let count = view.count().or_corrupt(target, "count")?;
                    !view.is_leaf() || left_end == 0 || left_end >= count
                }
            };
            if done {
                return Ok(());
            }
            // Step 3.
            let Some(mut parent) = parent else {
                return match why {
                    Why::Room { needed } => self.split_root(&mut node, key, needed),
                    Why::Contention { .. } => Ok(()),
                };
            };
            // Step 4.
            let pview = Node(parent.payload());
            let cut = match why {
                Why::Room { needed } => {
                    let edge = Edge {
                        first: pview.child(0) == Some(target),
                        last: pview.upper_child() == Some(target),
                    };
                    choose_cut(view, target, key, needed, edge)?
                }
                Why::Contention { left_end } => {
                    match contention_cut(view, target, left_end, key)? {
                        Some(cut) => cut,
                        None => return Ok(()),
                    }
                }
            };
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
            if let Why::Contention { .. } = why {
                self.contention.split_made();
            }
            return Ok(());
        }
    }

    /// Root split: both halves go to new pages, the root (same id) becomes
    /// an inner node `[sep -> left] upper -> right`.
    fn split_root<'a>(
        &'a self,
        root: &mut ExclusiveGuard<'a>,
        key: &[u8],
        needed: usize,
    ) -> Result<(), TreeError> {
        let pid = root.pid();
        let edge = Edge {
            first: true,
            last: true,
        };
        let cut = choose_cut(Node(root.payload()), pid, key, needed, edge)?;
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

/// Picks the cut for inserting `key` (an entry of `needed` bytes).
///
/// * **Append split** (leaves): `key` sorts after every key in the leaf,
///   and either the leaf is its parent's last child or the leaf's previous
///   new key also went past its last slot ([`LastInsert::Last`]): an
///   ascending pattern. Every entry stays left and `key` goes alone to the
///   (empty) right node, so ascending loads leave full leaves behind, not
///   half-full ones. Symmetrically a new minimum in a first child, or
///   after a [`LastInsert::First`], keeps every entry right and sends
///   `key` left (descending loads).
/// * **Middle split** (leaves, otherwise: random inserts): the entries
///   *with the new one* are cut where the left half's bytes reach half of
///   the total. Counting the new entry matters for large entries: a leaf
///   of three 1 KiB entries receiving a fourth splits 2 + 2 wherever the
///   fourth goes (cutting the three old ones alone gives 3 + 1 when the
///   new key falls on the side of the larger half, and that full half
///   splits again at its next insert).
/// * **Inner nodes**: when the key's path goes through the last child (or
///   the first), the cut is next to that end, so the level above leaves
///   filled by append splits is full in turn; otherwise the byte middle.
///
/// A cut is taken only if its halves fit (see [`halves_fit`]): the
/// separator becomes a fence of both halves, and a long one may not fit
/// the full half of an append split. Failing that, the middle of the old
/// entries, which leaves at least one on each side (the progress argument
/// on [`MAX_LEAF_ENTRY`](crate::MAX_LEAF_ENTRY)). Every cut above also
/// sends `key` to a half with fewer old entries than the node had, so a
/// retry that still lacks room splits a smaller node.
fn choose_cut(
    view: Node<'_>,
    pid: PageId,
    key: &[u8],
    needed: usize,
    edge: Edge,
) -> Result<Cut, TreeError> {
    let count = view.count().or_corrupt(pid, "count")?;
    let leaf = view.is_leaf();
    if count < 2 {
        return Err(corrupt(
            pid,
            "a node with fewer than two entries cannot need a split",
        ));
    }
    let Shape {
        sizes,
        fences,
        prefix,
    } = shape(view, pid)?;
    // Leaves: the slot that crosses the half goes left; inner nodes: its
    // key moves up. Both sides keep at least one slot.
    let old_middle = if leaf {
        middle(&sizes) + 1
    } else {
        middle(&sizes)
    }
    .clamp(1, count - 1);
    let (pos, found) = view.search(key).or_corrupt(pid, "slots")?;
    if leaf && !found && insert_point_pattern(view, pos, count) {
        // The new key ends the left half if it fits there, so that the
        // run's next keys go past the left leaf's last slot (append
        // splits from then on) and the entries above the insert point
        // stay behind in the right one; else it starts the right half.
        let left = cut_at(view, pid, pos, key, Some(NewKey { pos, left: true }))?;
        let mut with_new = sizes.clone();
        with_new.insert(pos, needed);
        let counted = Cut {
            left_end: pos + 1,
            separator: left.separator,
        };
        if halves_fit(&with_new, leaf, fences, prefix, &counted) {
            return Ok(Cut {
                left_end: pos,
                separator: counted.separator,
            });
        }
        let right = cut_at(view, pid, pos, key, Some(NewKey { pos, left: false }))?;
        if halves_fit(&sizes, leaf, fences, prefix, &right) {
            return Ok(right);
        }
    }
    let first = if leaf {
        match pos {
            _ if found => {
                let mut with_new = sizes.clone();
                with_new[pos] = needed;
                Some(((middle(&with_new) + 1).clamp(1, count - 1), None))
            }
            _ if append_pattern(view, pos, count, edge) => Some(if pos == count {
                (count, Some(NewKey { pos, left: false }))
            } else {
                (0, Some(NewKey { pos, left: true }))
            }),
            _ => {
                // The middle of the entries after the insert: `split` of
                // them go left, the new one (at `pos`) among them.
                let mut with_new = sizes.clone();
                with_new.insert(pos, needed);
                let split = (middle(&with_new) + 1).clamp(1, count);
                Some(if pos < split {
                    (split - 1, Some(NewKey { pos, left: true }))
                } else {
                    (split, Some(NewKey { pos, left: false }))
                })
            }
        }
    } else {
        match pos {
            p if p == count => Some((count - 1, None)),
            0 => Some((0, None)),
            _ => None,
        }
    };
    if let Some((left_end, new)) = first {
        let cut = cut_at(view, pid, left_end, key, new)?;
        if halves_fit(&sizes, leaf, fences, prefix, &cut) {
            return Ok(cut);
        }
    }
    cut_at(view, pid, old_middle, key, None)
}

/// The cut of a contention split at `left_end`, if both halves fit with
/// their new fences (`None`: the leaf stays whole).
fn contention_cut(
    view: Node<'_>,
    pid: PageId,
    left_end: usize,
    key: &[u8],
) -> Result<Option<Cut>, TreeError> {
    let Shape {
        sizes,
        fences,
        prefix,
    } = shape(view, pid)?;
    let cut = cut_at(view, pid, left_end, key, None)?;
    Ok(halves_fit(&sizes, true, fences, prefix, &cut).then_some(cut))
}

/// What the cut choosers need of a node: its entries' sizes (with room
/// for one more), its fences and its key prefix's length.
struct Shape<'a> {
    sizes: Vec<usize>,
    fences: Fences<'a>,
    prefix: usize,
}

fn shape<'a>(view: Node<'a>, pid: PageId) -> Result<Shape<'a>, TreeError> {
    let count = view.count().or_corrupt(pid, "count")?;
    let mut sizes = Vec::with_capacity(count + 1);
    for i in 0..count {
        let s = view.slot(i).or_corrupt(pid, "slot")?;
        sizes.push(entry_size(s.key_len, s.val_len));
    }
    Ok(Shape {
        sizes,
        fences: (
            view.lower().or_corrupt(pid, "fence")?,
            view.upper().or_corrupt(pid, "fence")?,
        ),
        prefix: view.prefix_len().or_corrupt(pid, "prefix")?,
    })
}

/// Whether inserting a new key at slot `pos` of leaf `view` (of `count`
/// entries) follows an ascending or descending pattern, for which the
/// append split keeps the leaf full: past the last slot of its parent's
/// last child or after a previous insert past the last slot; or before
/// the first slot of a first child or after a previous such insert.
pub(crate) fn append_pattern(view: Node<'_>, pos: usize, count: usize, edge: Edge) -> bool {
    let trend = view.last_insert();
    (pos == count && (edge.last || trend == LastInsert::Last))
        || (pos == 0 && (edge.first || trend == LastInsert::First))
}

/// New keys in a row, each placed right after the one before, that make
/// a leaf's insert pattern ascending inside the leaf. Two: one such step
/// happens by chance to a third of random inserts into a leaf of three
/// 1 KiB entries, two in a row to about a ninth, and only with at least
/// half the leaf below the insert point is the cut taken there at all.
pub(crate) const INSERT_RUN: u8 = 2;

/// Whether inserting a new key at slot `pos` of leaf `view` (of `count`
/// entries) continues an ascending run *inside* the leaf: the last
/// [`INSERT_RUN`] or more new keys each went right after the one before,
/// this one goes right after the last, and at least half the old entries
/// lie below it. Several writers appending to their own key ranges (a
/// log per user, per device) insert so: each one's newest leaf also holds
/// the first keys of the range after it, so its new keys never go past
/// the last slot and [`append_pattern`] does not see them. The cut at the
/// insert point leaves the old entries below it in a full left leaf and
/// starts the right one with the new key (InnoDB splits the same way
/// after consecutive inserts at `PAGE_LAST_INSERT`); a middle split would
/// leave every one of those leaves half empty, and moving entries to a
/// sibling instead (`redistribute`) logs three pages for every few
/// inserts.
pub(crate) fn insert_point_pattern(view: Node<'_>, pos: usize, count: usize) -> bool {
    let (last, run) = view.insert_run();
    0 < pos && pos < count && 2 * pos >= count && run >= INSERT_RUN && last + 1 == pos
}

/// Whether a full leaf inserting at `pos` splits by a sequential pattern
/// ([`append_pattern`] or [`insert_point_pattern`]) rather than moving
/// entries to a sibling.
pub(crate) fn sequential_pattern(view: Node<'_>, pos: usize, count: usize, edge: Edge) -> bool {
    append_pattern(view, pos, count, edge) || insert_point_pattern(view, pos, count)
}

/// The index of the entry (of `sizes`, in order) where the running total
/// first reaches half of the whole.
pub(crate) fn middle(sizes: &[usize]) -> usize {
    let total: usize = sizes.iter().sum();
    let mut acc = 0;
    let mut i = 0;
    while i < sizes.len() && acc + sizes[i] < total / 2 {
        acc += sizes[i];
        i += 1;
    }
    i
}

/// Where the key being inserted goes in a leaf cut: its slot position
/// among the old entries and its side. When it falls right at the cut
/// (`pos == left_end`), the separator is taken between it and its
/// neighbour on the other side, so it lands where it was counted.
#[derive(Clone, Copy)]
struct NewKey {
    pos: usize,
    left: bool,
}

/// The cut before slot `left_end`, with its separator. Leaves: the
/// separator is the shortest key between the last key on the left and the
/// first on the right, which is `key` itself when `new` puts it there
/// (and must be, for a side that has no old entry).
fn cut_at(
    view: Node<'_>,
    pid: PageId,
    left_end: usize,
    key: &[u8],
    new: Option<NewKey>,
) -> Result<Cut, TreeError> {
    let full_key = |i: usize| -> Result<Vec<u8>, TreeError> {
        let mut k = Vec::new();
        view.full_key_into(i, &mut k).or_corrupt(pid, "key")?;
        Ok(k)
    };
    let count = view.count().or_corrupt(pid, "count")?;
    let separator = if view.is_leaf() {
        let at_cut = |left: bool| new.is_some_and(|n| n.pos == left_end && n.left == left);
        let last_left = if at_cut(true) {
            key.to_vec()
        } else {
            full_key(left_end.checked_sub(1).or_corrupt(pid, "empty left half")?)?
        };
        let first_right = if at_cut(false) {
            key.to_vec()
        } else if left_end < count {
            full_key(left_end)?
        } else {
            return Err(corrupt(pid, "empty right half"));
        };
        separator_between(&last_left, &first_right)
            .ok_or_else(|| corrupt(pid, "split keys out of order"))?
    } else {
        full_key(left_end)?
    };
    Ok(Cut {
        left_end,
        separator,
    })
}

/// The shortest key `s` with `last_left < s <= first_right`: the separator
/// of a leaf cut between those keys (suffix truncation). `None` if the
/// keys are out of order.
pub(crate) fn separator_between(last_left: &[u8], first_right: &[u8]) -> Option<Vec<u8>> {
    if last_left >= first_right {
        return None;
    }
    let shared = common_prefix(last_left, first_right);
    Some(if shared + 1 < first_right.len() {
        first_right[..shared + 1].to_vec()
    } else {
        last_left.to_vec()
    })
}

/// Whether both halves of `cut` fit a node, exactly: each half's key
/// suffixes lose what its prefix (the common prefix of its new fences)
/// adds to the node's `prefix` bytes. (An estimate that kept today's
/// suffixes would refuse the append split of a leaf between two key
/// ranges: its separator, longer than the old fence, would seem to
/// overflow the full half by a few bytes, while the half's longer prefix
/// saves several per entry.)
fn halves_fit(sizes: &[usize], leaf: bool, fences: Fences<'_>, prefix: usize, cut: &Cut) -> bool {
    let right_start = cut.left_end + !leaf as usize;
    let sep = Some(&cut.separator[..]);
    let bytes = |entries: &[usize], (lower, upper): Fences<'_>| {
        let shorter = fence_prefix(lower, upper).saturating_sub(prefix);
        let len = |f: Option<&[u8]>| f.map_or(0, <[u8]>::len);
        HEADER_SIZE
            + entries
                .iter()
                .map(|s| s.saturating_sub(shorter))
                .sum::<usize>()
            + len(lower)
            + len(upper)
    };
    bytes(&sizes[..cut.left_end], (fences.0, sep)) <= NODE_SIZE
        && bytes(&sizes[right_start..], (sep, fences.1)) <= NODE_SIZE
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
    copy_entries(view, &mut l, 0..cut.left_end).or_corrupt(pid, "left half")?;
    if !leaf {
        l.set_upper_child(view.child(cut.left_end).or_corrupt(pid, "child")?);
    }
    l.make_hints();

    let mut tmp = [0u8; NODE_SIZE];
    let mut r = NodeMut(&mut tmp);
    r.init(leaf, sep, upper);
    let right_start = cut.left_end + !leaf as usize;
    copy_entries(view, &mut r, right_start..count).or_corrupt(pid, "right half")?;
    r.set_upper_child(view.upper_child().or_corrupt(pid, "upper")?);
    r.make_hints();
    node.payload_mut().copy_from_slice(&tmp);
    Ok(())
}
