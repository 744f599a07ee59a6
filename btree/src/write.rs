//! Data changes on a latched leaf: insert, upsert, update, rmw, remove.
//!
//! Every write follows the same protocol ([`Writer::on_leaf`]):
//!
//! 1. Descend optimistically and upgrade the leaf to an exclusive latch
//!    (restarting on any conflict; see `olc`).
//! 2. Search the leaf. If writers keep taking it from each other (their
//!    latches contended, `contention`), unlatch, split it between their
//!    keys and start over at 1. Else run the operation's step on it.
//! 3. If the entry does not fit, unlatch, make room (entries move to a
//!    sibling with room, `redistribute`, unless the leaf is on an
//!    ascending or descending run; else the leaf splits, `split`), and
//!    start over at 1: the operation never holds more than the leaf.
//! 4. Otherwise stamp the writer's LSN, unlatch, and if the write shrank
//!    the leaf below [`MERGE_THRESHOLD`] try to merge it (`merge`).

use crate::error::{OrCorrupt, corrupt};
use crate::large::NewExtent;
use crate::node::{LargeRef, Node, NodeMut, SLOT_LARGE, entry_size};
use crate::split::{Edge, sequential_pattern};
use crate::{BTree, LeafStamp, MAX_VALUE_LEN, MERGE_THRESHOLD, TreeError, check_key, is_inline};
use rime_bufmgr::{ExclusiveGuard, OnMiss};

/// Writes to a tree, stamping `lsn` on what they change (0: no stamp).
/// Made by [`BTree::at_lsn`].
pub struct Writer<'t> {
    pub(crate) tree: &'t BTree,
    pub(crate) lsn: u64,
    /// Merges and redistributions may read a sibling that is not in
    /// memory (the default, [`OnMiss::Load`]); [`OnMiss::Report`]: they
    /// skip such a sibling ([`Writer::merge_in_memory_only`]).
    pub(crate) merge_on_miss: OnMiss,
    /// The leaf a lookup of the key written found ([`Writer::near`]).
    pub(crate) near: Option<LeafStamp>,
}

/// What a step did to the latched leaf.
pub(crate) enum Step<R> {
    /// Finished; `changed` says whether the leaf was written.
    Done { result: R, changed: bool },
    /// The entry needs `needed` free bytes the leaf does not have.
    Split { needed: usize },
}

/// A value as stored in a leaf: inline bytes or a reference to an extent.
pub(crate) enum Stored<'v> {
    Inline(&'v [u8]),
    Large(NewExtent),
}

impl Stored<'_> {
    fn len(&self) -> usize {
        match self {
            Stored::Inline(v) => v.len(),
            Stored::Large(_) => LargeRef::SIZE,
        }
    }
}

impl<'t> Writer<'t> {
    /// This writer's merges (step 4 of the module protocol) and
    /// redistributions (step 3) latch only nodes in memory: a merge that
    /// needs a node that is not (the sibling, say) is skipped, leaving the
    /// leaf underfull (valid, a little less dense; a later write that
    /// shrinks it tries again); a full leaf whose siblings are not in
    /// memory splits instead of moving entries to them. For
    /// a thread with reads of its own loader in flight, which must never
    /// wait for one of them (`BTree::write_probe_nowait`, step 4).
    pub fn merge_in_memory_only(self) -> Writer<'t> {
        Writer {
            merge_on_miss: OnMiss::Report,
            ..self
        }
    }

    /// The next write's key was looked up in the leaf of `stamp` (a
    /// read-modify-write): if that leaf is unchanged and unlatched, the
    /// write latches it directly instead of descending from the root.
    /// Otherwise, or if the write needs a split, it descends as usual.
    pub fn near(self, stamp: Option<LeafStamp>) -> Writer<'t> {
        Writer {
            near: stamp,
            ..self
        }
    }

    /// Steps 1-4 of the module protocol around `step`.
    pub(crate) fn on_leaf<R>(
        &self,
        key: &[u8],
        mut step: impl FnMut(&mut ExclusiveGuard<'t>, usize, bool) -> Result<Step<R>, TreeError>,
    ) -> Result<R, TreeError> {
        let tree = self.tree;
        let mut near = self.near;
        loop {
            // Step 1: the leaf found for the key, or the one the key was
            // read from if it is unchanged since (the same bytes, so the
            // same key range).
            let hinted = near.take().and_then(|s| tree.bm.lock_if_unchanged(s.0));
            let from_hint = hinted.is_some();
            let (mut leaf, contended) = match hinted {
                Some(leaf) => (leaf, false),
                None => tree.leaf_exclusive(key)?,
            };
            let pid = leaf.pid();
            // Step 2.
            let view = Node(leaf.payload());
            if !view.covers(key).or_corrupt(pid, "fences")? {
                if from_hint {
                    continue;
                }
                return Err(corrupt(
                    pid,
                    "descent reached a leaf whose fences exclude the key",
                ));
            }
            let (pos, found) = view.search(key).or_corrupt(pid, "slots")?;
            // A leaf writers keep taking from each other splits between
            // their keys first (`contention.rs`); then the write goes on in
            // the half that holds its key.
            if let Some(left_end) = tree.contention.note(pid, pos, contended) {
                drop(leaf);
                tree.split_for_contention(key, pid, left_end)?;
                continue;
            }
            let used_before = view.used().unwrap_or(0);
            match step(&mut leaf, pos, found)? {
                // Step 3.
                Step::Split { needed } => {
                    // An ascending or descending run goes to the append
                    // split (the edge case, a first or last child, is
                    // checked by `redistribute` under its latches): no
                    // descent for a redistribution that would not be made.
                    let view = Node(leaf.payload());
                    let count = view.count().or_corrupt(pid, "count")?;
                    let no_edge = Edge {
                        first: false,
                        last: false,
                    };
                    let appending = sequential_pattern(view, pos, count, no_edge);
                    drop(leaf);
                    if appending || !tree.redistribute(key, pid, needed, self.merge_on_miss)? {
                        tree.split(key, pid, needed)?;
                    }
                }
                // Step 4.
                Step::Done { result, changed } => {
                    let mut underfull = false;
                    if changed {
                        if self.lsn != 0 {
                            let lsn = self.lsn.max(leaf.lsn());
                            leaf.set_lsn(lsn);
                        }
                        // Only a write that shrank the leaf tries a merge:
                        // a growing leaf (the new right half of an append
                        // split takes its first keys) is not worth the
                        // three latches of an attempt that cannot fit.
                        let used = Node(leaf.payload()).used().unwrap_or(0);
                        underfull =
                            pid != tree.root && used < MERGE_THRESHOLD && used < used_before;
                    }
                    drop(leaf);
                    if underfull {
                        tree.try_merge(key, pid, self.merge_on_miss)?;
                    }
                    return Ok(result);
                }
            }
        }
    }

    /// Inserts `key -> value`; [`TreeError::Exists`] if `key` is present.
    pub fn insert(&self, key: &[u8], value: &[u8]) -> Result<(), TreeError> {
        match self.put(key, value, false)? {
            true => Err(TreeError::Exists),
            false => Ok(()),
        }
    }

    /// Inserts or replaces `key -> value`; returns whether it was present.
    pub fn upsert(&self, key: &[u8], value: &[u8]) -> Result<bool, TreeError> {
        self.put(key, value, true)
    }

    /// Insert or upsert. A large value is written to its extent first,
    /// outside any leaf latch, and handed back if it is not installed.
    fn put(&self, key: &[u8], value: &[u8], replace: bool) -> Result<bool, TreeError> {
        check_key(key)?;
        check_value(value)?;
        let large = if !is_inline(key.len(), value.len()) {
            Some(self.tree.write_large(value, self.lsn)?)
        } else {
            None
        };
        let stored = match large {
            Some(e) => Stored::Large(e),
            None => Stored::Inline(value),
        };
        let existed = self.on_leaf(key, |leaf, pos, found| {
            if found && !replace {
                return Ok(Step::Done {
                    result: true,
                    changed: false,
                });
            }
            self.install(leaf, key, pos, found, &stored)
        });
        // An insert that found the key did not install the extent: free it.
        // (After an error the extent may or may not be in the leaf: it is
        // leaked rather than risk a dangling reference.)
        if let (Some(e), false, Ok(true)) = (large, replace, &existed) {
            self.tree.free_large(e.r)?;
        }
        existed
    }

    /// Puts `stored` at `pos` of the latched leaf (replacing the entry
    /// there if `found`), or asks for a split. Frees a replaced extent.
    pub(crate) fn install<R: From<bool>>(
        &self,
        leaf: &mut ExclusiveGuard<'_>,
        key: &[u8],
        pos: usize,
        found: bool,
        stored: &Stored<'_>,
    ) -> Result<Step<R>, TreeError> {
        let pid = leaf.pid();
        let view = Node(leaf.payload());
        let suffix_len = key.len() - view.prefix_len().or_corrupt(pid, "prefix")?;
        let needed = entry_size(suffix_len, stored.len());
        let mut free = view.free_after_compaction().or_corrupt(pid, "header")?;
        let mut old_large = None;
        if found {
            let slot = view.slot(pos).or_corrupt(pid, "slot")?;
            if let (Stored::Inline(v), 0) = (stored, slot.flags & SLOT_LARGE)
                && v.len() == slot.val_len
            {
                return overwrite_in_place(leaf, pos, v);
            }
            free += entry_size(slot.key_len, slot.val_len);
            if slot.flags & SLOT_LARGE != 0 {
                old_large = Some(crate::olc::large_ref(view, pos).or_corrupt(pid, "large ref")?);
            }
        }
        if free < needed {
            return Ok(Step::Split { needed });
        }
        let count = view.count().or_corrupt(pid, "count")?;
        let mut node = NodeMut(leaf.payload_mut());
        if found {
            node.remove_at(pos).or_corrupt(pid, "remove")?;
        }
        let suffix = &key[key.len() - suffix_len..];
        match stored {
            Stored::Inline(v) => node.insert_at(pos, suffix, v, 0),
            Stored::Large(e) => node.insert_at(pos, suffix, &e.r.encode(), SLOT_LARGE),
        }
        .or_corrupt(pid, "insert")?;
        if !found {
            // The split rule's evidence of a sequential pattern (`split`).
            node.note_new_key(pos, count);
        }
        // The leaf now points to the extent: it may reach the disk only
        // after the extent's allocation is durable (see `large`).
        if let Stored::Large(NewExtent { alloc_lsn, .. }) = stored
            && *alloc_lsn != 0
        {
            let lsn = leaf.lsn().max(*alloc_lsn);
            leaf.set_lsn(lsn);
        }
        if let Some(r) = old_large {
            self.tree.free_large(r)?;
        }
        Ok(Step::Done {
            result: R::from(found),
            changed: true,
        })
    }

    /// Runs `f` on the value of `key` in place (the length cannot change);
    /// returns `None` if `key` is absent.
    pub fn update<R>(
        &self,
        key: &[u8],
        f: impl FnOnce(&mut [u8]) -> R,
    ) -> Result<Option<R>, TreeError> {
        check_key(key)?;
        let mut f = Some(f);
        self.on_leaf(key, |leaf, pos, found| {
            let Some(f) = f.take().filter(|_| found) else {
                return Ok(Step::Done {
                    result: None,
                    changed: false,
                });
            };
            let pid = leaf.pid();
            let view = Node(leaf.payload());
            if view.is_large(pos).or_corrupt(pid, "slot")? {
                let r = crate::olc::large_ref(view, pos).or_corrupt(pid, "large ref")?;
                let result = self.tree.update_large(r, self.lsn, f)?;
                return Ok(Step::Done {
                    result: Some(result),
                    changed: false,
                });
            }
            let mut node = NodeMut(leaf.payload_mut());
            let value = node.value_mut(pos).or_corrupt(pid, "slot")?;
            Ok(Step::Done {
                result: Some(f(value)),
                changed: true,
            })
        })
    }

    /// Read-modify-write, atomic for this key: `f` sees the current value
    /// (`None` if absent) and returns the new one (`None`: remove). `f` may
    /// run more than once (again after a split), always on the then-current
    /// value, like a transaction body.
    pub fn rmw(
        &self,
        key: &[u8],
        mut f: impl FnMut(Option<&[u8]>) -> Option<Vec<u8>>,
    ) -> Result<(), TreeError> {
        check_key(key)?;
        self.on_leaf(key, |leaf, pos, found| {
            let pid = leaf.pid();
            let view = Node(leaf.payload());
            let new = if !found {
                f(None)
            } else if view.is_large(pos).or_corrupt(pid, "slot")? {
                let r = crate::olc::large_ref(view, pos).or_corrupt(pid, "large ref")?;
                self.tree.read_large(r, |v| f(Some(v)))?
            } else {
                f(Some(view.value(pos).or_corrupt(pid, "slot")?))
            };
            match new {
                None if found => self.delete_at(leaf, pos),
                None => Ok(Step::Done {
                    result: (),
                    changed: false,
                }),
                Some(v) => {
                    check_value(&v)?;
                    if is_inline(key.len(), v.len()) {
                        return Ok(
                            match self.install::<bool>(
                                leaf,
                                key,
                                pos,
                                found,
                                &Stored::Inline(&v),
                            )? {
                                Step::Done { changed, .. } => Step::Done {
                                    result: (),
                                    changed,
                                },
                                Step::Split { needed } => Step::Split { needed },
                            },
                        );
                    }
                    let e = self.tree.write_large(&v, self.lsn)?;
                    match self.install::<bool>(leaf, key, pos, found, &Stored::Large(e))? {
                        Step::Done { changed, .. } => Ok(Step::Done {
                            result: (),
                            changed,
                        }),
                        Step::Split { needed } => {
                            self.tree.free_large(e.r)?;
                            Ok(Step::Split { needed })
                        }
                    }
                }
            }
        })
    }

    /// Removes `key`; returns whether it was present.
    pub fn remove(&self, key: &[u8]) -> Result<bool, TreeError> {
        check_key(key)?;
        self.on_leaf(key, |leaf, pos, found| {
            if !found {
                return Ok(Step::Done {
                    result: false,
                    changed: false,
                });
            }
            Ok(match self.delete_at(leaf, pos)? {
                Step::Done { changed, .. } => Step::Done {
                    result: true,
                    changed,
                },
                Step::Split { needed } => Step::Split { needed },
            })
        })
    }

    /// Removes slot `pos` of the latched leaf, freeing its extent.
    fn delete_at(&self, leaf: &mut ExclusiveGuard<'_>, pos: usize) -> Result<Step<()>, TreeError> {
        let pid = leaf.pid();
        let view = Node(leaf.payload());
        let old = if view.is_large(pos).or_corrupt(pid, "slot")? {
            Some(crate::olc::large_ref(view, pos).or_corrupt(pid, "large ref")?)
        } else {
            None
        };
        NodeMut(leaf.payload_mut())
            .remove_at(pos)
            .or_corrupt(pid, "remove")?;
        if let Some(r) = old {
            self.tree.free_large(r)?;
        }
        Ok(Step::Done {
            result: (),
            changed: true,
        })
    }
}

fn check_value(value: &[u8]) -> Result<(), TreeError> {
    if value.len() > MAX_VALUE_LEN {
        return Err(TreeError::ValueTooLarge {
            len: value.len(),
            max: MAX_VALUE_LEN,
        });
    }
    Ok(())
}

/// Replaces the inline value at `pos` of the latched leaf with `value`, of
/// the same length, where it lies: no slot moves and the hints stay valid.
/// Removing the entry and inserting it again (the general path) found no
/// room for a second copy in a leaf of three 1 KiB values, and compacted
/// the whole leaf through a scratch page on every such update, holding the
/// latch meanwhile (YCSB A at 2 threads spent a quarter of its commits
/// waiting for it).
fn overwrite_in_place<R: From<bool>>(
    leaf: &mut ExclusiveGuard<'_>,
    pos: usize,
    value: &[u8],
) -> Result<Step<R>, TreeError> {
    let pid = leaf.pid();
    NodeMut(leaf.payload_mut())
        .value_mut(pos)
        .or_corrupt(pid, "value")?
        .copy_from_slice(value);
    Ok(Step::Done {
        result: R::from(true),
        changed: true,
    })
}

#[cfg(test)]
mod tests {
    use crate::BTree;
    use crate::node::Node;

    /// Where `key`'s entry lies in its leaf: (leaf, heap offset).
    fn place(tree: &BTree, key: &[u8]) -> (u64, usize) {
        let w = tree.at_lsn(0);
        w.on_leaf(key, |leaf, pos, found| {
            assert!(found);
            let off = Node(leaf.payload()).slot(pos).unwrap().off;
            Ok(super::Step::Done {
                result: (leaf.pid(), off),
                changed: false,
            })
        })
        .unwrap()
    }

    /// Regression: replacing a value by one of the same length removed
    /// and re-inserted the entry, which in a leaf of three 1 KiB values
    /// always compacted the whole leaf (the slow update of YCSB A). It now
    /// stays where it was; a value of another length still moves.
    #[test]
    fn a_value_of_the_same_length_is_overwritten_where_it_lies() {
        let (_dir, _bm, tree) = crate::test_tree::small_tree();
        for k in [b"a", b"b", b"c"] {
            tree.upsert(k, &[k[0]; 1024]).unwrap();
        }
        let before = place(&tree, b"b");
        assert!(tree.upsert(b"b", &[7; 1024]).unwrap(), "b existed");
        assert_eq!(place(&tree, b"b"), before, "same leaf, same bytes");
        let mut out = Vec::new();
        assert!(tree.get_into(b"b", &mut out).unwrap());
        assert_eq!(out, [7; 1024]);
        assert!(tree.upsert(b"b", &[8; 1000]).unwrap());
        assert_ne!(place(&tree, b"b").1, before.1, "another length moves");
        assert!(tree.get_into(b"b", &mut out).unwrap());
        assert_eq!(out, [8; 1000]);
        for k in [b"a", b"c"] {
            assert!(tree.get_into(k, &mut out).unwrap() && out == [k[0]; 1024]);
        }
        tree.verify().unwrap();
    }
}
