//! The catalog: a B+tree (its root page id is in the superblock) mapping a
//! tree's name to its root page id. A tree's id is its root page id, which
//! the B+tree keeps for the tree's whole life. Catalog entries are stored
//! like every other value (version ‖ root u64 LE) and change only through
//! logged commits, so the catalog is as durable as any data.
//!
//! Create and drop hold the catalog lock (one at a time: a name's lookup
//! stays true until they log), then commit like a transaction: the apply
//! gate, the catalog's gate in `A` and the name's key stripe (`inner.rs`
//! has the order).
//! * create: `BTree::create` (logs a `Create` SMO), then one commit record
//!   adding the name. A crash between the two leaks the new tree's one
//!   page (allocated, unreferenced); nothing else is affected.
//! * drop: also holds the dropped tree's gate in `X`, so no commit is
//!   applying to it, and commits that come later find it gone (a
//!   conflict, then `NoSuchTree`). One commit record removing the name,
//!   then `BTree::destroy` (logs a `Destroy` SMO freeing every page).
//!   Recovery skips logged writes to a tree at LSNs below its last
//!   `Destroy`.

use crate::commit::{self, Held, LockPlan};
use crate::error::DbError;
use crate::inner::DbInner;
use crate::tx::VERSION_SIZE;
use crate::wal::{TreeId, Write};
use rime_btree::{BTree, MAX_KEY_LEN};
use std::ops::ControlFlow;
use std::sync::Arc;

fn check_name(name: &str) -> Result<(), DbError> {
    if name.len() > MAX_KEY_LEN {
        return Err(DbError::NameTooLong {
            len: name.len(),
            max: MAX_KEY_LEN,
        });
    }
    Ok(())
}

/// Decodes a catalog value (version ‖ root).
pub(crate) fn decode_root(v: &[u8]) -> Result<u64, DbError> {
    v.get(VERSION_SIZE..)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map(u64::from_le_bytes)
        .ok_or_else(|| {
            DbError::Corrupt(format!(
                "catalog value of {} bytes is not version ‖ page id",
                v.len()
            ))
        })
}

pub(crate) fn lookup(db: &DbInner, name: &str) -> Result<Option<TreeId>, DbError> {
    check_name(name)?;
    match db.catalog().get(name.as_bytes(), decode_root)? {
        None => Ok(None),
        Some(root) => Ok(Some(TreeId(root? as u32))),
    }
}

pub(crate) fn create(db: &DbInner, name: &str, or_open: bool) -> Result<TreeId, DbError> {
    check_name(name)?;
    let ticket = db.wal().enter_commit();
    let (lsn, id) = {
        // 1. Under the catalog lock, nobody else creates or drops.
        let _catalog = db.catalog_lock();
        db.check_poison()?;
        if let Some(id) = lookup(db, name)? {
            return if or_open {
                Ok(id)
            } else {
                Err(DbError::TreeExists(name.into()))
            };
        }
        let entry = [Write {
            tree: db.catalog_id(),
            key: name.as_bytes(),
            value: Some(&[0; 8]),
        }];
        let mut plan = LockPlan::default();
        plan.build_for(&entry, None);
        let _held = Held::acquire(db, &plan, true);
        // 2. The tree (logs its Create SMO).
        let tree =
            BTree::create(db.bm().clone(), db.hooks().clone()).inspect_err(|e| db.poison(e))?;
        let root = tree.root();
        if root > u64::from(u32::MAX) {
            return Err(DbError::Corrupt(format!(
                "root page id {root} does not fit a tree id"
            )));
        }
        // 3. The catalog entry, as a commit.
        let value = root.to_le_bytes();
        let writes = [Write {
            value: Some(&value),
            ..entry[0]
        }];
        let lsn = commit::log_and_apply(db, &writes, &[&**db.catalog()], &mut Vec::new())?;
        // 4. Visible to transactions.
        let id = TreeId(root as u32);
        db.register_tree(id, Arc::new(tree));
        (lsn, id)
    };
    // 5. Durable before acknowledged (outside the locks). The id is the
    //    one created here even if a concurrent `drop_tree` has removed the
    //    name since: no second lookup, nothing to panic on.
    ticket.wait(lsn).inspect_err(|e| db.poison(e))?;
    Ok(id)
}

pub(crate) fn drop_tree(db: &DbInner, name: &str) -> Result<bool, DbError> {
    check_name(name)?;
    let ticket = db.wal().enter_commit();
    let lsn = {
        let _catalog = db.catalog_lock();
        db.check_poison()?;
        let Some(id) = lookup(db, name)? else {
            return Ok(false);
        };
        let writes = [Write {
            tree: db.catalog_id(),
            key: name.as_bytes(),
            value: None,
        }];
        let mut plan = LockPlan::default();
        plan.build_for(&writes, Some(id));
        let _held = Held::acquire(db, &plan, true);
        // 1. Remove the name (a commit).
        let lsn = commit::log_and_apply(db, &writes, &[&**db.catalog()], &mut Vec::new())?;
        // 2. Unregister, then free every page (logs a Destroy SMO).
        db.unregister_tree(id);
        let tree = BTree::open(db.bm().clone(), u64::from(id.0), db.hooks().clone())
            .inspect_err(|e| db.poison(e))?;
        tree.destroy().inspect_err(|e| db.poison(e))?;
        lsn
    };
    ticket.wait(lsn).inspect_err(|e| db.poison(e))?;
    Ok(true)
}

pub(crate) fn list(db: &DbInner) -> Result<Vec<(String, TreeId)>, DbError> {
    entries(db.catalog())
}

/// Every (name, tree) the catalog tree `catalog` holds, in name order.
/// Also used before a Db exists (recovery's sweep).
pub(crate) fn entries(catalog: &BTree) -> Result<Vec<(String, TreeId)>, DbError> {
    let mut out = Vec::new();
    let mut bad = None;
    catalog.scan(.., rime_btree::Direction::Forward, |k, v| {
        match decode_root(v) {
            Ok(root) => out.push((String::from_utf8_lossy(k).into_owned(), TreeId(root as u32))),
            Err(e) => {
                bad = Some(e);
                return ControlFlow::Break(());
            }
        }
        ControlFlow::Continue(())
    })?;
    match bad {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

/// Opens every tree the catalog names (at open, after recovery).
pub(crate) fn register_all(db: &DbInner) -> Result<(), DbError> {
    for (_, id) in list(db)? {
        let tree = BTree::open(db.bm().clone(), u64::from(id.0), db.hooks().clone())?;
        db.register_tree(id, Arc::new(tree));
    }
    Ok(())
}

pub(crate) fn verify_all(db: &DbInner) -> Result<(), DbError> {
    db.catalog().verify()?;
    for (_, id) in list(db)? {
        db.tree(id)?.verify()?;
    }
    Ok(())
}
