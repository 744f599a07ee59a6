//! The catalog: a B+tree (its root page id is in the superblock) mapping a
//! tree's name to its root page id. A tree's id is its root page id, which
//! the B+tree keeps for the tree's whole life. Catalog entries are stored
//! like every other value (version ‖ root u64 LE) and change only through
//! logged commits, so the catalog is as durable as any data.
//!
//! Create and drop run under the commit mutex, like commits:
//! * create: `BTree::create` (logs a `Create` SMO), then one commit record
//!   adding the name. A crash between the two leaks the new tree's one
//!   page (allocated, unreferenced); nothing else is affected.
//! * drop: one commit record removing the name, then `BTree::destroy`
//!   (logs a `Destroy` SMO freeing every page). Recovery skips logged
//!   writes to a tree at LSNs below its last `Destroy`.

use crate::commit;
use crate::db::DbInner;
use crate::error::DbError;
use crate::sync::lock;
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
    match db.catalog.get(name.as_bytes(), decode_root)? {
        None => Ok(None),
        Some(root) => Ok(Some(TreeId(root? as u32))),
    }
}

pub(crate) fn create(db: &DbInner, name: &str, or_open: bool) -> Result<TreeId, DbError> {
    check_name(name)?;
    let ticket = db.wal.enter_commit();
    let (lsn, id) = {
        let mut state = lock(&db.commit);
        // 1. Under the commit mutex, nobody else creates or drops.
        db.check_poison()?;
        if let Some(id) = lookup(db, name)? {
            return if or_open {
                Ok(id)
            } else {
                Err(DbError::TreeExists(name.into()))
            };
        }
        // 2. The tree (logs its Create SMO).
        let tree = BTree::create(db.bm.clone(), db.hooks.clone()).inspect_err(|e| db.poison(e))?;
        let root = tree.root();
        if root > u64::from(u32::MAX) {
            return Err(DbError::Corrupt(format!(
                "root page id {root} does not fit a tree id"
            )));
        }
        // 3. The catalog entry, as a commit.
        let value = root.to_le_bytes();
        let writes = [Write {
            tree: db.catalog_id(),
            key: name.as_bytes(),
            value: Some(&value),
        }];
        let lsn =
            commit::log_and_apply(db, &mut state, &writes, std::slice::from_ref(&db.catalog))?;
        // 4. Visible to transactions.
        let id = TreeId(root as u32);
        db.trees
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, Arc::new(tree));
        (lsn, id)
    };
    // 5. Durable before acknowledged (outside the mutex). The id is the
    //    one created here even if a concurrent `drop_tree` has removed the
    //    name since: no second lookup, nothing to panic on.
    ticket.wait(lsn).inspect_err(|e| db.poison(e))?;
    Ok(id)
}

pub(crate) fn drop_tree(db: &DbInner, name: &str) -> Result<bool, DbError> {
    check_name(name)?;
    let ticket = db.wal.enter_commit();
    let lsn = {
        let mut state = lock(&db.commit);
        db.check_poison()?;
        let Some(id) = lookup(db, name)? else {
            return Ok(false);
        };
        // 1. Remove the name (a commit).
        let writes = [Write {
            tree: db.catalog_id(),
            key: name.as_bytes(),
            value: None,
        }];
        let lsn =
            commit::log_and_apply(db, &mut state, &writes, std::slice::from_ref(&db.catalog))?;
        // 2. Unregister, then free every page (logs a Destroy SMO).
        db.trees
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
        let tree = BTree::open(db.bm.clone(), u64::from(id.0), db.hooks.clone())
            .inspect_err(|e| db.poison(e))?;
        tree.destroy().inspect_err(|e| db.poison(e))?;
        lsn
    };
    ticket.wait(lsn).inspect_err(|e| db.poison(e))?;
    Ok(true)
}

pub(crate) fn list(db: &DbInner) -> Result<Vec<(String, TreeId)>, DbError> {
    entries(&db.catalog)
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
    let mut trees = db.trees.write().unwrap_or_else(|p| p.into_inner());
    for (_, id) in list(db)? {
        let tree = BTree::open(db.bm.clone(), u64::from(id.0), db.hooks.clone())?;
        trees.insert(id, Arc::new(tree));
    }
    Ok(())
}

pub(crate) fn verify_all(db: &DbInner) -> Result<(), DbError> {
    db.catalog.verify()?;
    for (_, id) in list(db)? {
        db.tree(id)?.verify()?;
    }
    Ok(())
}
