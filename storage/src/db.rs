//! [`Db`]: the durable database. Open/close, the tree registry, single-key
//! convenience methods, stats. The protocols live next door: `commit`,
//! `checkpoint`, `recovery`; the catalog in `catalog`; transactions in `tx`.

use crate::commit::{GATED_AFTER, Outcome, ScanGates, Wait};
use crate::error::{DbError, OpenError, TxError};
use crate::inner::DbInner;
use crate::options::Options;
use crate::pending::Pending;
use crate::reads::Reads;
use crate::tx::{OwnedTx, Tx, TxBufs};
use crate::wal::{Lsn, TreeId};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;

/// Transaction attempts before [`TxError::Conflict`]: 16 re-runs is far
/// beyond what any non-pathological contention needs (each retry waits a
/// little longer, see `commit::backoff`), and bounds the work a hot key can
/// cost one caller.
pub const MAX_TX_ATTEMPTS: u32 = 16;

/// Counters of [`Db::stats`].
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct DbStats {
    pub pool: rime_bufmgr::Stats,
    pub resident_pages: u64,
    pub allocated_pages: u64,
    /// Read-write transactions committed.
    pub commits: u64,
    /// Read-only transactions finished.
    pub read_only: u64,
    /// Read-only batches ([`Db::get_many`]) that failed validation and
    /// finished under the locks of their keys (each also counts as a
    /// conflict).
    pub read_refreshes: u64,
    /// Read-only transactions whose scans had lost validation twice in a
    /// row and that then finished holding their scanned trees' gates, so
    /// that writers could not keep invalidating them (`commit/gated.rs`).
    pub gated_reads: u64,
    /// Scanned ranges that validation scanned a second time because a
    /// writer of their tree had been at work since the scan began; the
    /// others were proven unchanged without it (`docs/transactions.md`).
    pub scan_rescans: u64,
    /// Validation failures (each caused a re-run, a read-only batch's
    /// refresh, or a `Conflict` error).
    pub conflicts: u64,
    /// Bytes appended to the log since it was created (the end LSN).
    pub log_bytes: u64,
    pub durable_lsn: u64,
    /// Group-commit rounds of the log (write + `fdatasync`): `commits /
    /// log_syncs` is how many commits shared one sync.
    pub log_syncs: u64,
    /// Nanoseconds those rounds spent writing and syncing, summed:
    /// `log_sync_ns / log_syncs` is the device's time per round.
    pub log_sync_ns: u64,
    pub checkpoints: u64,
    /// Checkpoints that failed without poisoning (retried with backoff).
    pub checkpoint_failures: u64,
    /// Records replayed by the recovery at open.
    pub recovered_records: u64,
    /// Why the Db refuses writes, if it is poisoned (see
    /// [`Db::poisoned`]).
    pub poisoned: Option<String>,
}

/// The database. `Send + Sync`: share it by reference or `Arc`.
pub struct Db {
    pub(crate) inner: Arc<DbInner>,
    pub(crate) checkpointer: Option<JoinHandle<()>>,
    /// Leads log syncs for durability callbacks ([`Pending`]).
    flusher: Option<JoinHandle<()>>,
}

impl Db {
    /// Opens (creating if needed) the database in `dir`, recovering from
    /// the log if the last run did not close cleanly.
    pub fn open(dir: impl AsRef<Path>, opts: Options) -> Result<Db, OpenError> {
        crate::recovery::open(dir.as_ref(), opts)
    }

    pub(crate) fn start(inner: Arc<DbInner>) -> Db {
        let checkpointer = inner.opts().checkpoint_interval.map(|_| {
            let inner = inner.clone();
            std::thread::Builder::new()
                .name("rime-checkpoint".into())
                .spawn(move || crate::checkpoint::background(&inner))
                .expect("spawning the checkpoint thread")
        });
        let wal = inner.wal().clone();
        let flusher = std::thread::Builder::new()
            .name("rime-log-flusher".into())
            .spawn(move || wal.run_flusher())
            .expect("spawning the log flusher thread");
        Db {
            inner,
            checkpointer,
            flusher: Some(flusher),
        }
    }

    /// Creates the tree `name`; [`DbError::TreeExists`] if it exists.
    pub fn create_tree(&self, name: &str) -> Result<TreeId, DbError> {
        crate::catalog::create(&self.inner, name, false)
    }

    /// The tree `name`, if it exists.
    pub fn open_tree(&self, name: &str) -> Result<Option<TreeId>, DbError> {
        crate::catalog::lookup(&self.inner, name)
    }

    pub fn open_or_create_tree(&self, name: &str) -> Result<TreeId, DbError> {
        crate::catalog::create(&self.inner, name, true)
    }

    /// Drops the tree `name` and frees its pages; returns whether it
    /// existed. Transactions still using it fail (conflict or error).
    pub fn drop_tree(&self, name: &str) -> Result<bool, DbError> {
        crate::catalog::drop_tree(&self.inner, name)
    }

    /// Every tree, by name.
    pub fn list_trees(&self) -> Result<Vec<(String, TreeId)>, DbError> {
        crate::catalog::list(&self.inner)
    }

    /// Runs `f` as a serializable transaction, re-running it on conflict
    /// (at most [`MAX_TX_ATTEMPTS`] times). `f` returning `Err` commits
    /// nothing and returns that error. See `docs/transactions.md`.
    ///
    /// A read-only transaction whose scans lost validation twice in a row
    /// runs again holding its scanned trees' gates, so that writers of
    /// those trees wait for it and it finishes; `f` must then not start
    /// another transaction (its contract anyway: no side effects outside
    /// its `Tx`), which fails with [`TxError::Nested`].
    pub fn transaction<R>(
        &self,
        f: impl FnMut(&mut Tx<'_>) -> Result<R, TxError>,
    ) -> Result<R, TxError> {
        self.transaction_with_attempts(MAX_TX_ATTEMPTS, f)
    }

    /// [`Db::transaction`] whose closure fails with the caller's own error
    /// type, anything a [`TxError`] converts into: an application aborts
    /// with an error it can match on afterwards, rather than a string. A
    /// conflict on the last attempt arrives as `E::from(TxError::Conflict)`.
    pub fn try_transaction<R, E: From<TxError>>(
        &self,
        f: impl FnMut(&mut Tx<'_>) -> Result<R, E>,
    ) -> Result<R, E> {
        self.transaction_with_attempts(MAX_TX_ATTEMPTS, f)
    }

    /// [`Db::try_transaction`] with the caller's bound on attempts (at
    /// least one): for callers that re-run contended transactions more
    /// patiently than the default, such as the faaslet runtime.
    pub fn transaction_with_attempts<R, E: From<TxError>>(
        &self,
        max_attempts: u32,
        mut f: impl FnMut(&mut Tx<'_>) -> Result<R, E>,
    ) -> Result<R, E> {
        let mut bufs = self.inner.take_tx_bufs();
        let result = self
            .run(max_attempts.max(1), &mut bufs, &mut f)
            .and_then(|(r, wait)| match wait {
                Some(w) => w.block(&self.inner).map(|()| r).map_err(E::from),
                None => Ok(r),
            });
        self.inner.return_tx_bufs(bufs);
        result
    }

    /// [`Db::try_transaction`] that does not wait for durability: it
    /// returns once the transaction has committed (logged, its writes
    /// visible) with a [`Pending`] that hands out `f`'s result when the log
    /// is durable through it — by blocking, by a callback, or as a
    /// `Future`. One thread can so keep many commits waiting for the same
    /// `fdatasync`. Nothing is acknowledged early: a crash before the sync
    /// may lose the transaction, and then its result was never handed out.
    pub fn transaction_pending<R, E: From<TxError>>(
        &self,
        mut f: impl FnMut(&mut Tx<'_>) -> Result<R, E>,
    ) -> Result<Pending<R>, E> {
        let mut bufs = self.inner.take_tx_bufs();
        let result = self
            .run(MAX_TX_ATTEMPTS, &mut bufs, &mut f)
            .map(|(r, wait)| Pending::new(self.inner.clone(), wait.map(|w| w.lsn), r));
        self.inner.return_tx_bufs(bufs);
        result
    }

    /// A transaction its caller drives attempt by attempt
    /// ([`OwnedTx`]): for an async caller holding it across suspensions.
    pub fn begin(&self) -> OwnedTx {
        OwnedTx::new(&self.inner)
    }

    /// This thread's context for reads in flight of many [`OwnedTx`]
    /// ([`Reads`], with its protocol).
    pub fn reads(&self) -> Reads {
        Reads::new(&self.inner)
    }

    /// Runs and commits `f`, re-running it on conflict; the committed
    /// result and what it still waits for to be durable.
    fn run<R, E: From<TxError>>(
        &self,
        max_attempts: u32,
        bufs: &mut TxBufs,
        f: &mut impl FnMut(&mut Tx<'_>) -> Result<R, E>,
    ) -> Result<(R, Option<Wait<'_>>), E> {
        // Read-only attempts with scans that failed in a row (`commit/gated.rs`).
        let mut losing = 0;
        for attempt in 0..max_attempts {
            if attempt > 0 {
                crate::commit::backoff(attempt);
            }
            // Step 1 of `gated.rs`, with the trees the last attempt scanned.
            let gates = (losing >= GATED_AFTER)
                .then(|| ScanGates::acquire(&self.inner, &bufs.scans))
                .flatten();
            bufs.clear();
            let mut tx = Tx::new(&self.inner, bufs);
            let r = match &gates {
                Some(g) => g.run(|| f(&mut tx))?,
                None => f(&mut tx)?,
            };
            match crate::commit::commit_holding(&self.inner, bufs, gates)? {
                Outcome::Committed(wait) => return Ok((r, wait)),
                Outcome::Conflict => {
                    self.inner.counters().conflicts.add(1);
                    let read_only_scan = bufs.writes.is_empty() && !bufs.scans.is_empty();
                    losing = if read_only_scan { losing + 1 } else { 0 };
                }
            }
        }
        Err(TxError::Conflict {
            attempts: max_attempts,
        }
        .into())
    }

    /// One-operation transaction: the value of `key`.
    pub fn get(&self, tree: TreeId, key: &[u8]) -> Result<Option<Vec<u8>>, TxError> {
        self.transaction(|tx| tx.get(tree, key, <[u8]>::to_vec))
    }

    /// A read-only transaction of many lookups in `tree`, their misses in
    /// flight together: [`Tx::get_many`]. `f` may see a key more than
    /// once; the last value it sees for a key is the transaction's.
    ///
    /// 1. The lookups run and validate as any transaction's.
    /// 2. Should validation fail (writers changed a key meanwhile), the
    ///    batch does not run again: it finishes under the locks of its
    ///    keys, reading again only the keys that moved, and `f` sees those
    ///    again (`commit::refresh_reads`, where the argument is). So a
    ///    large batch over keys that writers keep changing still finishes.
    /// 3. It waits until the log is durable through the newest version read.
    pub fn get_many<K: AsRef<[u8]>>(
        &self,
        tree: TreeId,
        keys: &[K],
        mut f: impl FnMut(usize, Option<&[u8]>),
    ) -> Result<(), TxError> {
        let mut bufs = self.inner.take_tx_bufs();
        let result = self.get_many_in(&mut bufs, tree, keys, &mut f);
        self.inner.return_tx_bufs(bufs);
        result
    }

    fn get_many_in<K: AsRef<[u8]>>(
        &self,
        bufs: &mut TxBufs,
        tree: TreeId,
        keys: &[K],
        f: &mut impl FnMut(usize, Option<&[u8]>),
    ) -> Result<(), TxError> {
        // Step 1.
        bufs.clear();
        Tx::new(&self.inner, bufs).get_many(tree, keys, &mut *f)?;
        let wait = match crate::commit::commit(&self.inner, bufs)? {
            Outcome::Committed(wait) => wait,
            // Step 2.
            Outcome::Conflict => {
                self.inner.counters().conflicts.add(1);
                let (moved, wait) = crate::commit::refresh_reads(&self.inner, bufs)?;
                hand_out_moved(bufs, keys, &moved, f);
                wait
            }
        };
        // Step 3.
        match wait {
            Some(w) => w.block(&self.inner),
            None => Ok(()),
        }
    }

    /// One-operation transaction: sets `key`.
    pub fn put(&self, tree: TreeId, key: &[u8], value: &[u8]) -> Result<(), TxError> {
        self.transaction(|tx| tx.put(tree, key, value))
    }

    /// One-operation transaction: removes `key`; returns whether it existed.
    pub fn delete(&self, tree: TreeId, key: &[u8]) -> Result<bool, TxError> {
        self.transaction(|tx| tx.delete(tree, key))
    }

    /// A checkpoint now (see `checkpoint.rs`).
    pub fn checkpoint(&self) -> Result<(), DbError> {
        crate::checkpoint::checkpoint(&self.inner)
    }

    /// Flushes, checkpoints and closes, reporting any failure.
    pub fn close(mut self) -> Result<(), DbError> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<(), DbError> {
        self.inner.request_shutdown();
        if let Some(h) = self.checkpointer.take() {
            let _ = h.join();
        }
        let closed = crate::checkpoint::checkpoint(&self.inner)
            .and_then(|()| self.inner.wal().flush().map_err(DbError::from));
        self.inner.wal().stop_flusher();
        if let Some(h) = self.flusher.take() {
            let _ = h.join();
        }
        closed
    }

    pub fn stats(&self) -> DbStats {
        let i = &self.inner;
        let c = i.counters();
        DbStats {
            pool: i.bm().stats(),
            resident_pages: i.bm().resident_pages(),
            allocated_pages: i.bm().allocated_pages(),
            commits: c.commits.get(),
            read_only: c.read_only.get(),
            read_refreshes: c.read_refreshes.get(),
            gated_reads: c.gated_reads.get(),
            scan_rescans: c.scan_rescans.get(),
            conflicts: c.conflicts.get(),
            log_bytes: i.wal().end_lsn().0,
            durable_lsn: i.wal().durable_lsn().0,
            log_syncs: i.wal().syncs(),
            log_sync_ns: i.wal().sync_ns(),
            checkpoints: c.checkpoints.get(),
            checkpoint_failures: c.checkpoint_failures.get(),
            recovered_records: c.recovered_records.get(),
            poisoned: self.poisoned(),
        }
    }

    /// `Some(cause)` once the Db is poisoned: a write or sync of the log or
    /// of the page file failed, so what is on disk can no longer be
    /// trusted to match memory. Every later write fails; reopen the
    /// directory to recover. Health checks should report it.
    pub fn poisoned(&self) -> Option<String> {
        self.inner.poisoned_cause()
    }

    /// Checks every tree (the catalog included) with `BTree::verify`.
    /// Latches top-down; concurrent writers are delayed, not excluded.
    pub fn verify(&self) -> Result<(), DbError> {
        crate::catalog::verify_all(&self.inner)
    }

    /// The LSN the log will give its next record (for tests and tools).
    pub fn end_lsn(&self) -> Lsn {
        self.inner.wal().end_lsn()
    }
}

/// The faaslet runtime shares one `Db` between threads.
const _: fn() = || {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Db>();
};

impl Drop for Db {
    /// Best-effort clean close: checkpoint and flush, logging failures.
    fn drop(&mut self) {
        if self.inner.shutting_down() {
            return;
        }
        if let Err(e) = self.shutdown() {
            tracing::warn!(error = %e, "closing the database on drop failed; the next open recovers from the log");
        }
    }
}

/// Hands `f(i, value)` the new value of every `keys[i]` that moved.
fn hand_out_moved<K: AsRef<[u8]>>(
    bufs: &TxBufs,
    keys: &[K],
    moved: &[crate::commit::Moved],
    f: &mut impl FnMut(usize, Option<&[u8]>),
) {
    if moved.is_empty() {
        return;
    }
    let mut at: HashMap<&[u8], Vec<usize>> = HashMap::new();
    for (i, k) in keys.iter().enumerate() {
        at.entry(k.as_ref()).or_default().push(i);
    }
    for m in moved {
        let key = bufs.bytes(bufs.reads[m.read].key);
        for &i in at.get(key).map_or(&[][..], Vec::as_slice) {
            f(i, m.value.as_deref());
        }
    }
}
