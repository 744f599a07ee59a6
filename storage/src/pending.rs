//! [`Pending`]: a transaction that has committed (its record is logged and
//! its writes are visible) but whose durability is still to come. It hands
//! out the transaction's result only once the log is durable through it,
//! so nothing is acknowledged that a crash could take back, and waiting for
//! it needs no thread: block ([`Pending::wait`]), register a callback
//! ([`Pending::on_durable`]), or `.await` it (it is a `Future`).
//!
//! Life cycle:
//! 1. Made by `Db::transaction_pending` after steps 1–7 of the commit.
//! 2. Unregistered: `is_durable` may be polled; the first `poll` (or
//!    `on_durable`) registers a callback with the log.
//! 3. Registered: the sync that covers the record completes it (`Ok`), or
//!    the log's failure does (an error, and the Db is poisoned).
//! 4. Done: the result has been handed out once.

use crate::error::{DbError, TxError, WalError};
use crate::inner::DbInner;
use crate::sync::{Mutex, lock};
use crate::wal::Lsn;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

/// A committed transaction's result, released once it is durable.
#[must_use = "a Pending hands out its result only when awaited or waited for"]
pub struct Pending<R> {
    db: Arc<DbInner>,
    /// The log must be durable through this record (`None`: it is, or the
    /// mode does not wait).
    lsn: Option<Lsn>,
    value: Option<R>,
    /// Shared with the log's callback once registered (state 3).
    slot: Option<Arc<Mutex<Slot>>>,
}

#[derive(Default)]
struct Slot {
    done: Option<Result<(), WalError>>,
    waker: Option<Waker>,
}

impl<R> Pending<R> {
    pub(crate) fn new(db: Arc<DbInner>, lsn: Option<Lsn>, value: R) -> Self {
        Pending {
            db,
            lsn,
            value: Some(value),
            slot: None,
        }
    }

    /// The log position this waits for, if any.
    pub fn lsn(&self) -> Option<Lsn> {
        self.lsn
    }

    /// Whether the transaction is durable now (never blocks).
    pub fn is_durable(&self) -> bool {
        self.lsn
            .is_none_or(|lsn| self.db.wal().durable_lsn() > lsn && self.db.check_poison().is_ok())
    }

    /// Blocks until durable, then hands out the result.
    pub fn wait(mut self) -> Result<R, TxError> {
        if let Some(lsn) = self.lsn {
            self.db
                .wal()
                .wait_durable(lsn)
                .map_err(|e| self.failed(e))?;
        }
        self.take()
    }

    /// Calls `f` with the result once durable (or with the error that
    /// means it never will be), on the thread that completes the sync:
    /// keep `f` short. Never blocks.
    pub fn on_durable(mut self, f: impl FnOnce(Result<R, TxError>) + Send + 'static)
    where
        R: Send + 'static,
    {
        let Some(lsn) = self.lsn else {
            return f(self.take());
        };
        let db = self.db.clone();
        let value = self.value.take();
        self.db.wal().on_durable(
            lsn,
            Box::new(move |r| {
                f(match (r, value) {
                    (Ok(()), Some(v)) => Ok(v),
                    (Ok(()), None) => Err(handed_out()),
                    (Err(e), _) => Err(fail(&db, e)),
                })
            }),
        );
    }

    fn take(&mut self) -> Result<R, TxError> {
        self.value.take().ok_or_else(handed_out)
    }

    fn failed(&self, e: WalError) -> TxError {
        fail(&self.db, e)
    }
}

fn fail(db: &DbInner, e: WalError) -> TxError {
    db.poison(&e);
    TxError::Db(DbError::Wal(e))
}

fn handed_out() -> TxError {
    TxError::Aborted("this Pending already handed out its result".into())
}

impl<R: Unpin> Future for Pending<R> {
    type Output = Result<R, TxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if this.value.is_none() {
            return Poll::Ready(Err(handed_out()));
        }
        let Some(lsn) = this.lsn else {
            return Poll::Ready(this.take());
        };
        if this.slot.is_none() {
            // State 2 → 3: register once, then look at the slot.
            if this.is_durable() {
                return Poll::Ready(this.take());
            }
            let slot = Arc::new(Mutex::new(Slot {
                done: None,
                waker: Some(cx.waker().clone()),
            }));
            let theirs = slot.clone();
            this.slot = Some(slot);
            this.db.wal().on_durable(
                lsn,
                Box::new(move |r| {
                    let waker = {
                        let mut s = lock(&theirs);
                        s.done = Some(r);
                        s.waker.take()
                    };
                    if let Some(w) = waker {
                        w.wake();
                    }
                }),
            );
        }
        this.poll_slot(cx)
    }
}

impl<R> Pending<R> {
    fn poll_slot(&mut self, cx: &mut Context<'_>) -> Poll<Result<R, TxError>> {
        let Some(slot) = &self.slot else {
            return Poll::Pending;
        };
        let done = {
            let mut s = lock(slot);
            match s.done.take() {
                Some(d) => d,
                None => {
                    s.waker = Some(cx.waker().clone());
                    return Poll::Pending;
                }
            }
        };
        Poll::Ready(match done {
            Ok(()) => self.take(),
            Err(e) => Err(self.failed(e)),
        })
    }
}
