//! `rime-tasks`' operations: each one transaction run with
//! `Db::transaction_pending`, so it returns once the transaction has
//! committed (a read: validated) and hands its outcome to a
//! `Pending::on_durable` callback once the log is durable through it. A
//! write waits for its own commit record; a read waits only if it saw a
//! version not yet durable (`docs/transactions.md`, read-only
//! transactions), otherwise it is called back at once.

use super::RimeEngine;
use crate::engine::Request;
use rime_storage::{Pending, TreeId, Tx, TxError};
use std::ops::{Bound, ControlFlow};

impl RimeEngine {
    /// Runs `req` as one transaction without waiting for durability; the
    /// `Pending`'s value is [`crate::engine::OnDone`]'s `bool`.
    pub(super) fn start_pending(&self, req: Request<'_>) -> Result<Pending<bool>, TxError> {
        let t = self.tree;
        match req {
            Request::Read(k) => self.db.transaction_pending(|tx| {
                let found = tx.get(t, k, |v| crate::engines::consume(k, v))?;
                Ok(found.is_some())
            }),
            Request::Scan(k, n) => self
                .db
                .transaction_pending(|tx| scan_in(tx, t, k, n).map(|found| found > 0)),
            Request::Insert(k, v) | Request::Update(k, v) => self.db.transaction_pending(|tx| {
                tx.put(t, k, v)?;
                Ok(true)
            }),
            Request::Rmw(k, modify) => {
                let mut new = Vec::new();
                self.db.transaction_pending(|tx| {
                    if tx.get(t, k, |v| modify(v, &mut new))?.is_none() {
                        return Ok(false);
                    }
                    tx.put(t, k, &new)?;
                    Ok(true)
                })
            }
        }
    }
}

/// Reads up to `n` records of `tree` from `start` on, inside `tx`; how
/// many there were.
pub(super) fn scan_in(
    tx: &mut Tx<'_>,
    tree: TreeId,
    start: &[u8],
    n: usize,
) -> Result<usize, TxError> {
    let mut count = 0;
    tx.scan(tree, Bound::Included(start), Bound::Unbounded, |k, v| {
        crate::engines::consume(k, v);
        count += 1;
        if count >= n {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })?;
    Ok(count)
}
