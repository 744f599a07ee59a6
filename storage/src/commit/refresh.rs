//! A read-only batch of point reads that failed validation, finished under
//! the locks of its read set instead of run again (`Db::get_many`).
//!
//! A batch of many keys that writers keep changing fails optimistic
//! validation on nearly every attempt: one changed key of 128 is enough.
//! Re-running it reads all of them again and fails again. Instead:
//!
//! 1. Plan the key stripes of every point read, ascending, once each.
//! 2. Take them ([`Held`], waiting, in the lock order of `inner.rs`; no
//!    gate: nothing is applied, and a point read needs no tree gate).
//!    From here until step 4 no committer changes a key read: writers
//!    change a key only while holding its stripe.
//! 3. Read each key's version again. A key whose version moved takes its
//!    new version (and value) into the read set; the rest stand.
//! 4. Release.
//!
//! Every key's value is the same throughout the hold of step 2, so all the
//! reads, old and new, are the database's values at any instant of it:
//! the transaction serializes there. The caller hands the new values out
//! after step 4 (its callback runs no user code under a lock) and then
//! waits for durability through the newest version read, as any
//! read-only transaction does.

use super::{Held, Wait, poison_on_panic};
use crate::error::{DbError, TxError};
use crate::inner::DbInner;
use crate::locks::KeyLocks;
use crate::tx::{TxBufs, split_stored};
use crate::wal::TreeId;
use rime_btree::BTree;
use std::sync::Arc;

/// A key whose value moved since the batch read it: its read record's
/// index and its value now (`None`: absent).
pub(crate) struct Moved {
    pub read: usize,
    pub value: Option<Vec<u8>>,
}

/// Steps 1–4 for the point reads of `b` (a read-only transaction without
/// scans): the keys that moved, and what the transaction waits for.
pub(crate) fn refresh_reads<'a>(
    db: &'a DbInner,
    b: &mut TxBufs,
) -> Result<(Vec<Moved>, Option<Wait<'a>>), TxError> {
    debug_assert!(b.writes.is_empty() && b.scans.is_empty());
    let mut cb = std::mem::take(&mut b.commit);
    let moved = poison_on_panic(db, || {
        // Step 1.
        let plan = &mut cb.plan;
        plan.build(b, &[]);
        plan.stripes.extend(
            b.reads
                .iter()
                .map(|r| KeyLocks::stripe(r.tree.0, b.bytes(r.key))),
        );
        plan.stripes.sort_unstable();
        plan.stripes.dedup();
        // Step 2 (step 4 as `_held` drops).
        let _held = Held::acquire(db, plan, false);
        // Step 3.
        reread(db, b)
    });
    b.commit = cb;
    let moved = moved?;
    db.counters().read_only.add(1);
    db.counters().read_refreshes.add(1);
    Ok((moved, super::read_only_wait(db, b.max_version)))
}

/// Step 3: the reads whose version moved get the version now.
fn reread(db: &DbInner, b: &mut TxBufs) -> Result<Vec<Moved>, TxError> {
    let mut moved = Vec::new();
    let mut tree: Option<(TreeId, Arc<BTree>)> = None;
    for i in 0..b.reads.len() {
        let (id, key, seen) = (b.reads[i].tree, b.reads[i].key, b.reads[i].version);
        let t = match &tree {
            Some((cached, t)) if *cached == id => t,
            _ => &tree.insert((id, db.tree(id)?)).1,
        };
        // The value is copied only if it moved.
        let now = t.get(b.bytes(key), |v| {
            split_stored(v).map(|(ver, user)| (ver, (ver != seen).then(|| user.to_vec())))
        })?;
        let (version, value) = match now {
            None => (0, None),
            Some(Some(now)) => now,
            Some(None) => {
                return Err(TxError::Db(DbError::Corrupt(
                    "stored value without a version".into(),
                )));
            }
        };
        if version != seen {
            b.reads[i].version = version;
            b.max_version = b.max_version.max(version);
            moved.push(Moved { read: i, value });
        }
    }
    Ok(moved)
}
