//! Redistribution: a full leaf moves entries towards a sibling with room
//! instead of splitting (B*-tree style).
//!
//! ```text
//!   parent [.. s1 | s2 ..]                  parent [.. s1' | s2' ..]
//!               |    |    \                             |     |     \
//!          full   full   room         ==>            leaf   leaf   leaf
//!         a b c   d e f   g h                        a b c  d e    f g h
//! ```
//!
//! The leaves keep their page ids; only the separators between them
//! change, so nothing is allocated and the parent gains no entry. Under a
//! random load a leaf that a split left half full would otherwise stay so
//! until its own next split; with 1 KiB entries (three a leaf) that is the
//! difference between two entries a leaf and nearly three.
//!
//! Policy: a write that finds its leaf full (not on an ascending or
//! descending pattern: the append split already leaves full leaves there)
//! looks for the nearest leaf under the same parent, at most [`MAX_SHIFT`]
//! away, with room for the new entry and at least [`MIN_SIBLING_ROOM`], and
//! spreads the entries of the leaves from the full one to that one (with
//! the new entry) evenly over them. A leaf that changed since it was read
//! or is latched exclusively gives up (the leaf splits instead; a shared
//! holder is waited out); one not in memory is read, as a
//! merge's sibling is, except by writers that must not wait for reads
//! ([`Writer::merge_in_memory_only`](crate::Writer::merge_in_memory_only)),
//! for which it ends the search.

use crate::error::{OrCorrupt, corrupt};
use crate::node::{NODE_SIZE, Node, NodeMut, copy_entries, entry_size};
use crate::split::separator_between;
use crate::{BTree, SmoKind, TreeError};
use rime_bufmgr::{ExclusiveGuard, OnMiss, PageId};

/// A leaf is worth moving entries to only if it has this much room (and
/// room for the new entry): each move then leaves every leaf it rewrites
/// with some room, so a leaf of small entries does not redistribute at
/// every insert. A quarter, not an eighth: 100 B entries then fill leaves
/// to 83% rather than 87% with a quarter fewer instructions per insert
/// (`probe insert`); 1 KiB entries are unaffected (the new entry's own
/// size is the larger bound).
pub(crate) const MIN_SIBLING_ROOM: usize = NODE_SIZE / 4;

/// The farthest sibling (in leaves from the full one) entries move to:
/// one SMO rewrites at most `MAX_SHIFT + 1` leaves and the parent. Three:
/// a YCSB-order load of 1 KiB entries fills leaves to 2.84 entries (2:
/// 2.79; 1: 2.66, 8: 2.93 with an eighth-page minimum) for 2.4x the
/// instructions per insert of splits only (1: 1.8x, 8: 3.8x); the table
/// is in docs/btree.md ("Split rule").
pub(crate) const MAX_SHIFT: usize = 3;

/// How to spread the old entries of `k` adjacent leaves over them.
struct Plan {
    /// `bounds[i]`: old entries (of all leaves, in key order) before leaf
    /// `i + 1`; `k - 1` of them, increasing.
    bounds: Vec<usize>,
    /// The separator above each bound: leaf `i`'s new upper fence.
    separators: Vec<Vec<u8>>,
}

impl BTree {
    /// Makes `needed` bytes of room for `key` in the full leaf `target`
    /// by moving entries towards a sibling with room. Returns whether it
    /// did (the caller retries its write); false: the caller splits.
    ///
    /// 1. Latch the parent and the leaves from `target` to the nearest one
    ///    with room, left to right (`olc::latch_for_shift`, which never
    ///    waits for an exclusive holder, and for a read only with
    ///    [`OnMiss::Load`]).
    /// 2. Under the latches, re-check that `target` still lacks room.
    /// 3. Plan even cuts of all their entries plus the new one by bytes,
    ///    and their separators ([`plan`]).
    /// 4. Build the leaves in private buffers; give up if one overflows,
    ///    if the leaf `key` now belongs to has no room for it, or if the
    ///    parent has no room for the new separators.
    /// 5. Replace the separators in the parent, install the leaves, log
    ///    one SMO ([`SmoKind::Redistribute`]) and stamp its LSN with every
    ///    page still latched.
    pub(crate) fn redistribute(
        &self,
        key: &[u8],
        target: PageId,
        needed: usize,
        on_miss: OnMiss,
    ) -> Result<bool, TreeError> {
        // Step 1.
        let Some(m) = self.latch_for_shift(key, target, needed, on_miss)? else {
            return Ok(false);
        };
        let (mut parent, mut leaves, first) = (m.parent, m.leaves, m.first);
        let views: Vec<Node<'_>> = leaves.iter().map(|g| Node(g.payload())).collect();
        let t = leaves
            .iter()
            .position(|g| g.pid() == target)
            .or_corrupt(target, "latched leaves without the target")?;
        // Step 2.
        if views[t]
            .free_after_compaction()
            .or_corrupt(target, "header")?
            >= needed
        {
            return Ok(false);
        }
        // Step 3. The new entry's size with its whole key (prefixes differ
        // between the leaves and change with the fences).
        let new_full = needed + views[t].prefix_len().or_corrupt(target, "prefix")?;
        let Some(plan) = plan(&views, t, key, new_full, target)? else {
            return Ok(false);
        };
        // Step 4.
        let Some(built) = build(&views, &plan) else {
            return Ok(false);
        };
        let side = plan
            .separators
            .iter()
            .position(|s| key <= &s[..])
            .unwrap_or(plan.separators.len());
        let side = Node(&built[side]);
        let side_prefix = side.prefix_len().or_corrupt(target, "prefix")?;
        let side_free = side.free_after_compaction().or_corrupt(target, "header")?;
        if side_free + side_prefix < new_full {
            return Ok(false);
        }
        let Some(suffixes) = parent_room(Node(parent.payload()), parent.pid(), first, &plan)?
        else {
            return Ok(false);
        };
        drop(views);
        // Step 5.
        let parent_pid = parent.pid();
        let mut pnode = NodeMut(parent.payload_mut());
        for _ in &suffixes {
            pnode
                .remove_at(first)
                .or_corrupt(parent_pid, "remove separator")?;
        }
        for (i, suffix) in suffixes.iter().enumerate() {
            let child = leaves[i].pid().to_le_bytes();
            pnode
                .insert_at(first + i, suffix, &child, 0)
                .or_corrupt(parent_pid, "separator insert")?;
        }
        for (leaf, image) in leaves.iter_mut().zip(&built) {
            leaf.payload_mut().copy_from_slice(image);
        }
        let mut pages: Vec<&mut ExclusiveGuard<'_>> = Vec::with_capacity(leaves.len() + 1);
        pages.push(&mut parent);
        pages.extend(leaves.iter_mut());
        self.log_smo(SmoKind::Redistribute, &mut pages, &[], &[])
            .map(|()| true)
    }
}

/// Step 3 of [`BTree::redistribute`]: cut the entries of `leaves` (in
/// order) with the new one (`new_full` bytes with its whole key, going
/// into leaf `t`) into `leaves.len()` runs of about equal bytes. `None`:
/// nothing to do (the key is present: a value growing in place is left to
/// the split; or a run would hold no old entry).
fn plan(
    leaves: &[Node<'_>],
    t: usize,
    key: &[u8],
    new_full: usize,
    target: PageId,
) -> Result<Option<Plan>, TreeError> {
    let bad = |what| move || corrupt(target, what);
    let mut sizes = Vec::new();
    let mut new_at = 0;
    for (i, node) in leaves.iter().enumerate() {
        let prefix = node.prefix_len().ok_or_else(bad("prefix"))?;
        if i == t {
            let (pos, found) = node.search(key).ok_or_else(bad("slots"))?;
            if found {
                return Ok(None);
            }
            new_at = sizes.len() + pos;
        }
        for j in 0..node.count().ok_or_else(bad("count"))? {
            let s = node.slot(j).ok_or_else(bad("slot"))?;
            sizes.push(entry_size(prefix + s.key_len, s.val_len));
        }
    }
    let old = sizes.len();
    sizes.insert(new_at, new_full);
    let total: usize = sizes.iter().sum();
    let k = leaves.len();
    let (mut bounds, mut separators) = (Vec::with_capacity(k - 1), Vec::with_capacity(k - 1));
    let (mut acc, mut j) = (0, 0);
    for i in 1..k {
        let share = total * i / k;
        while j < sizes.len() && acc + sizes[j] < share {
            acc += sizes[j];
            j += 1;
        }
        // Entries `..cut` of the list with the new one go before leaf i:
        // the entry crossing the share too if that brings the run nearer
        // to it (a tie goes to the next run). Whether each run fits is
        // checked when it is built.
        let cut = match sizes.get(j) {
            Some(&s) if (acc + s).saturating_sub(share) < share.saturating_sub(acc) => {
                acc += s;
                j += 1;
                j
            }
            _ => j,
        };
        let new_before = new_at < cut;
        let bound = if new_before { cut - 1 } else { cut };
        if bound == 0 || bound >= old || bounds.last().is_some_and(|&b| b >= bound) {
            return Ok(None);
        }
        let at_cut = new_at == bound;
        let last_left = if at_cut && new_before {
            key.to_vec()
        } else {
            full_key(leaves, bound - 1).ok_or_else(bad("key"))?
        };
        let first_right = if at_cut && !new_before {
            key.to_vec()
        } else {
            full_key(leaves, bound).ok_or_else(bad("key"))?
        };
        separators.push(
            separator_between(&last_left, &first_right).ok_or_else(bad("keys out of order"))?,
        );
        bounds.push(bound);
    }
    Ok(Some(Plan { bounds, separators }))
}

/// The whole key of old entry `i` of `leaves` (counted across them).
fn full_key(leaves: &[Node<'_>], mut i: usize) -> Option<Vec<u8>> {
    for node in leaves {
        let n = node.count()?;
        if i < n {
            let mut k = Vec::new();
            node.full_key_into(i, &mut k)?;
            return Some(k);
        }
        i -= n;
    }
    None
}

/// Step 4 of [`BTree::redistribute`]: the leaves after the move, in
/// private buffers. `None` if one does not fit (a longer key suffix under
/// a shorter prefix can overflow a full run).
fn build(leaves: &[Node<'_>], plan: &Plan) -> Option<Vec<[u8; NODE_SIZE]>> {
    let k = leaves.len();
    let old: usize = leaves.iter().map(|n| n.count()).sum::<Option<usize>>()?;
    let mut out = vec![[0u8; NODE_SIZE]; k];
    for (i, buf) in out.iter_mut().enumerate() {
        let lower = match i {
            0 => leaves[0].lower()?,
            _ => Some(&plan.separators[i - 1][..]),
        };
        let upper = match plan.separators.get(i) {
            Some(s) => Some(&s[..]),
            None => leaves[k - 1].upper()?,
        };
        let start = if i == 0 { 0 } else { plan.bounds[i - 1] };
        let end = plan.bounds.get(i).copied().unwrap_or(old);
        let mut node = NodeMut(buf);
        node.init(true, lower, upper);
        let mut base = 0;
        for src in leaves {
            let n = src.count()?;
            let (lo, hi) = (start.clamp(base, base + n), end.clamp(base, base + n));
            copy_entries(*src, &mut node, lo - base..hi - base)?;
            base += n;
        }
        node.make_hints();
    }
    Some(out)
}

/// Step 4's parent check: the new separators' suffixes (under the
/// parent's prefix), if the parent has room for them in place of the old
/// ones (slots `first..`); `None` if not.
fn parent_room(
    parent: Node<'_>,
    pid: PageId,
    first: usize,
    plan: &Plan,
) -> Result<Option<Vec<Vec<u8>>>, TreeError> {
    let prefix = parent.prefix_len().or_corrupt(pid, "prefix")?;
    let mut room = parent.free_after_compaction().or_corrupt(pid, "header")?;
    let mut suffixes = Vec::with_capacity(plan.separators.len());
    for (i, sep) in plan.separators.iter().enumerate() {
        let old = parent.slot(first + i).or_corrupt(pid, "slot")?;
        room += entry_size(old.key_len, old.val_len);
        let suffix = sep
            .get(prefix..)
            .or_corrupt(pid, "separator outside the parent's prefix")?;
        suffixes.push(suffix.to_vec());
    }
    let needed: usize = suffixes.iter().map(|s| entry_size(s.len(), 8)).sum();
    Ok((needed <= room).then_some(suffixes))
}
