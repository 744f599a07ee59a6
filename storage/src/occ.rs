//! Validation: optimistic concurrency control with serializable results.
//!
//! Called with the commit mutex held, so no commit changes any tree while
//! it runs. It re-reads every recorded point read (its version must be the
//! one seen, 0 standing for "absent") and re-scans every recorded range up
//! to where the scan stopped (the `(key, version)` sequence must be the one
//! seen: a new key in the range is a phantom, a changed version a
//! conflict). If all match, every value the transaction read is the value
//! in the database at this instant, so the transaction is equivalent to
//! running entirely at this instant — which is where its writes are then
//! applied (same critical section). That is the serialization point.

use crate::db::DbInner;
use crate::error::{DbError, TxError};
use crate::tx::{TxBufs, split_stored};
use rime_btree::Direction;
use std::ops::ControlFlow;

/// True if every read and scan still sees what it saw.
pub(crate) fn validate(db: &DbInner, b: &TxBufs) -> Result<bool, TxError> {
    // 1. Point reads.
    for r in &b.reads {
        let Ok(tree) = db.tree(r.tree) else {
            return Ok(false);
        };
        let now = tree.get(b.bytes(r.key), |v| split_stored(v).map(|(ver, _)| ver))?;
        let now = match now {
            None => 0,
            Some(Some(v)) => v,
            Some(None) => {
                return Err(TxError::Db(DbError::Corrupt(
                    "stored value without a version".into(),
                )));
            }
        };
        if now != r.version {
            return Ok(false);
        }
    }
    // 2. Scanned ranges, phantoms included.
    for s in &b.scans {
        let Ok(tree) = db.tree(s.tree) else {
            return Ok(false);
        };
        let seen = &b.observed[s.observed.clone()];
        let mut i = 0usize;
        let mut same = true;
        tree.scan(
            (b.bound(s.lo), b.bound(s.hi)),
            Direction::Forward,
            |k, v| {
                let ver = split_stored(v).map(|(ver, _)| ver);
                match seen.get(i) {
                    Some(o) if b.bytes(o.key) == k && Some(o.version) == ver => {
                        i += 1;
                        ControlFlow::Continue(())
                    }
                    _ => {
                        same = false;
                        ControlFlow::Break(())
                    }
                }
            },
        )?;
        if !same || i != seen.len() {
            return Ok(false);
        }
    }
    Ok(true)
}
