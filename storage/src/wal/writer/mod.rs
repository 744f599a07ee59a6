//! [`Wal`]: appending, group commit, durability, truncation.
//!
//! ## Group commit
//!
//! Appending only copies the encoded record into an in-memory buffer under
//! a mutex and hands back its [`Lsn`]. Durability is a separate step, and a
//! waiter need not be a thread:
//!
//! * A thread that needs its LSN durable either finds it already durable,
//!   or finds no sync in progress and becomes the **leader** (unless the
//!   flusher leads, below), or waits as a **follower**.
//! * A callback registered with [`Wal::on_durable`] (an async task's
//!   waker) is called by whoever completes the sync that covers it.
//! * The log's **flusher** ([`Wal::run_flusher`], a thread the Db runs)
//!   leads whenever callbacks wait, and for committers blocked while
//!   others commit too; a lone committer leads its own sync. A committer
//!   blocked while the flusher leads sleeps until the sync round that
//!   covers its record has ended, and is woken by that round only
//!   (`rounds.rs`).
//!
//! The leader writes every pending block of the buffer (the partial tail
//! block included, rewritten as it fills) and makes it durable with one
//! linked write + `fdatasync` (`BlockFile::write_and_sync`: one io_uring
//! submission), publishes the new durable LSN, wakes the followers and
//! the round's sleepers, and calls the callbacks it covers. Appenders keep
//! appending meanwhile: at most one sync is in flight, and the next batch
//! forms behind it. A flusher that finds that next batch waiting when its
//! sync completes submits the batch's write and sync first and only then
//! wakes the round just ended (`Owed`, `write_and_sync_meanwhile`): the
//! wake-ups (a futex call per round, a callback per task) and the threads
//! they wake no longer stand between one sync and the next.
//! Followers whose LSN is still not durable (they appended after the
//! leader took its snapshot) elect the next leader among themselves. So N
//! committers arriving during one sync share the next sync: throughput
//! scales with concurrency while each commit still waits for at most two
//! syncs.
//!
//! Invariants (under the state mutex):
//! * `buf` holds log bytes `[buf_base, append)`; `buf_base` is the start of
//!   the block holding the end of the last batch a leader took (`durable`,
//!   once its sync is done), so the head of a partial block is rewritten
//!   together with the new bytes after it. A leader takes the batch's
//!   buffer whole and leaves `buf` holding only that block (a copy of less
//!   than a block under the mutex, not of the batch, and no shifting of
//!   the bytes appended meanwhile once the sync is done).
//! * `durable` is always a record boundary: leaders only sync whole records.
//!   So "`durable > lsn`" means the whole record starting at `lsn` is durable.
//! * At most one leader at a time (`leader`), so writes never overlap.
//!
//! ## Poisoning
//!
//! If a write or `fdatasync` fails, the kernel may have dropped the dirty
//! pages and cleared the error (the "fsyncgate" lesson): retrying could
//! report success for data that is gone. So the first failure poisons the
//! log; that call and every later one return [`WalError::Poisoned`] (even
//! waits for LSNs that were durable before: a poisoned log answers nothing). The
//! process must reopen the directory, which recovers from what is really on
//! disk.
//!
//! The flusher and the leader's protocol (taking a batch, writing and
//! syncing it, ending its round) are in `lead.rs`.

mod lead;

use super::reader::LogEnd;
use super::record::Record;
use super::rounds::{Rounds, round_covering};
use super::segment::{self, Segment};
use super::waiters::{DurableCallback, Owed, Waiters};
use super::{Durability, Lsn, WalOptions, block_ceil, block_floor};
use crate::error::WalError;
use crate::sync::{AtomicBool, AtomicU64, Condvar, Mutex, MutexGuard, Ordering, lock, wait};
use rime_bufmgr::io::{AlignedBuf, BLOCK_SIZE, WriteOp};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Most log bytes that may be appended but not yet durable. An appender
/// that finds this much pending first drives (or waits for) a flush. Bounds
/// the buffer's memory, and in `NoSync` mode it is what triggers writing.
/// 8 MiB: at the ~1-2 GB/s of a commodity NVMe write this is a few ms of
/// I/O per flush, while amortising the sync over thousands of commits.
pub const MAX_BUFFERED_BYTES: u64 = 8 << 20;

/// A `Group` leader stops waiting for more committers once this much is
/// pending: past it, a bigger batch saves fewer syncs than the wait costs.
pub const GROUP_EARLY_FLUSH_BYTES: u64 = 1 << 20;

/// Once this much is appended and not durable, the flusher writes it in
/// the background (write-behind), whatever the mode: a `NoSync` appender
/// then rarely meets [`MAX_BUFFERED_BYTES`] and has to write and sync the
/// whole buffer itself, holding its commit's locks. 1 MiB: about a
/// millisecond of a commodity NVMe's writing, so the flusher's syncs stay
/// far apart while the buffer stays well under its bound.
pub const WRITE_BEHIND_BYTES: u64 = 1 << 20;

const _: () = assert!(WRITE_BEHIND_BYTES < MAX_BUFFERED_BYTES / 2);

/// The write-ahead log, open for appending. Share it between threads by
/// reference or `Arc`; every method takes `&self`.
pub struct Wal {
    dir: PathBuf,
    opts: WalOptions,
    state: Mutex<State>,
    /// Followers of a committer leader wait here for `durable` to pass
    /// their LSN.
    durable_cv: Condvar,
    /// Committers blocked while the flusher leads sleep here, by sync
    /// round (`rounds.rs`).
    rounds: Rounds,
    /// A gathering `Group` leader waits here for more committers.
    gather_cv: Condvar,
    /// The flusher waits here for callbacks to serve.
    kick: Condvar,
    /// Mirror of `State::durable`, for lock-free reads.
    durable: AtomicU64,
    /// Mirror of `State::poisoned.is_some()`, for the lock-free fast path.
    poisoned: AtomicBool,
    /// Threads inside [`Wal::commit`]. A `Group` leader gathers only when it
    /// has company: alone, waiting cannot gather anyone (PostgreSQL's
    /// `commit_siblings` rule).
    committers: AtomicU64,
    /// Of those, the ones whose record is appended (waiting to be durable).
    /// Once every committer has joined, gathering longer gains nothing.
    joined: AtomicU64,
    /// Group-commit rounds that wrote and synced the log (each one
    /// `write_batch` + one `fdatasync` per segment it touched).
    syncs: AtomicU64,
    /// Nanoseconds those rounds' writes and syncs took, summed: with
    /// `syncs`, the device's own time per round, to tell a commit's wait
    /// for the disk from its wait for the CPU. A round's time includes
    /// waking the round before it, done while its I/O is in flight
    /// (`Owed`), so it reads high only if those wake-ups outlast the I/O.
    sync_ns: AtomicU64,
    /// The leader's aligned staging buffer; only the leader locks it.
    scratch: Mutex<AlignedBuf>,
}

struct State {
    buf: Vec<u8>,
    /// The buffer of the last batch written, empty: kept for its capacity,
    /// it becomes `buf` when the next batch is taken.
    spare: Vec<u8>,
    buf_base: u64,
    append: u64,
    durable: u64,
    leader: bool,
    poisoned: Option<Arc<WalError>>,
    /// Open segments by start LSN; contiguous, ending at `segments_end`.
    segments: BTreeMap<u64, Arc<Segment>>,
    segments_end: u64,
    /// Callbacks waiting for durability (`on_durable`).
    waiters: Waiters,
    /// Set by `stop_flusher`: `run_flusher` returns.
    flusher_stop: bool,
    /// A flusher is running (`run_flusher`): committers leave leading to it.
    flusher_running: bool,
    /// The flusher sleeps on `kick`. Only then does a committer raising
    /// `blocked_target` wake it: a busy flusher finds the new target itself
    /// when its sync ends, and a futex call per commit is saved.
    flusher_idle: bool,
    /// The largest LSN the flusher was asked to make durable: one a
    /// committer blocked in `wait_durable` waits for, or write-behind's
    /// ([`WRITE_BEHIND_BYTES`]).
    blocked_target: Option<u64>,
    /// Sync rounds led so far, ended or in flight (`rounds.rs`).
    rounds_led: u64,
    /// The snapshot end of the sync in flight, if one is.
    in_flight_end: Option<u64>,
}

type Guard<'a> = MutexGuard<'a, State>;

impl Wal {
    /// Starts a new, empty log in `dir` (created if missing).
    pub fn create(dir: &Path, opts: WalOptions) -> Result<Wal, WalError> {
        std::fs::create_dir_all(dir).map_err(|source| WalError::Fs {
            path: dir.to_path_buf(),
            source,
        })?;
        if !segment::list(dir)?.is_empty() {
            return Err(WalError::NotEmpty(dir.to_path_buf()));
        }
        Self::start(
            dir,
            opts,
            super::FIRST_LSN,
            BTreeMap::new(),
            super::FIRST_LSN.0,
        )
    }

    /// Reopens the log for appending where recovery found its end.
    ///
    /// `end` comes from a [`super::WalReader`] that read the log to its end,
    /// which is what proves that nothing valid lies beyond it.
    pub fn open(dir: &Path, opts: WalOptions, end: LogEnd) -> Result<Wal, WalError> {
        opts.validate()?;
        let end_lsn = end.lsn().0;
        if end.wal_dir() != dir {
            return Err(WalError::Config(
                "the LogEnd was produced for a different log directory",
            ));
        }

        // 1. Segments wholly after the end hold nothing valid (recovery just
        //    proved it); remove them so the log continues contiguously, the
        //    newest first: a crash part way leaves the survivors contiguous
        //    (removing the oldest first left a gap the next open refused as
        //    "log segment missing").
        let found = segment::list(dir)?;
        let (keep, drop): (Vec<_>, Vec<_>) = found.into_iter().partition(|s| s.start.0 <= end_lsn);
        let mut doomed: Vec<_> = drop.iter().map(|s| (s.start.0, s.path.clone())).collect();
        doomed.sort_unstable_by_key(|d| std::cmp::Reverse(d.0));
        for (_, path) in doomed {
            segment::remove(dir, std::slice::from_ref(&path))?;
        }

        // 2. Open the rest.
        let mut segments = BTreeMap::new();
        for info in &keep {
            segments.insert(info.start.0, Arc::new(segment::open(info, &opts.opener)?));
        }
        let segments_end = keep.last().map_or(end_lsn, |s| s.end().0);
        let first_start = keep.first().map_or(end_lsn, |s| s.start.0);
        if end_lsn < first_start || end_lsn > segments_end {
            return Err(WalError::Corrupt {
                lsn: end.lsn(),
                reason: "log end lies outside the segments on disk".into(),
            });
        }
        Self::start(dir, opts, end.lsn(), segments, segments_end)
    }

    fn start(
        dir: &Path,
        opts: WalOptions,
        end: Lsn,
        mut segments: BTreeMap<u64, Arc<Segment>>,
        mut segments_end: u64,
    ) -> Result<Wal, WalError> {
        opts.validate()?;
        // 1. A segment to write into: preallocated now rather than on the
        //    first commit's critical path.
        if end.0 == segments_end {
            let size = opts.next_segment_size(newest_size(&segments));
            let seg = segment::create(dir, Lsn(segments_end), size, &opts.opener)?;
            segments_end = seg.end().0;
            segments.insert(seg.start.0, Arc::new(seg));
        }

        // 2. The durable head of the tail block, so the next flush rewrites
        //    the block with it intact. Bytes after `end` (a torn tail) are
        //    dropped here and overwritten with zeros by that flush.
        let buf_base = block_floor(end.0);
        let mut buf = Vec::new();
        if end.0 > buf_base {
            let seg = segments
                .range(..=buf_base)
                .next_back()
                .map(|(_, s)| Arc::clone(s))
                .filter(|s| s.contains(buf_base))
                .ok_or_else(|| WalError::Corrupt {
                    lsn: end,
                    reason: "no segment holds the tail block".into(),
                })?;
            let mut block = AlignedBuf::zeroed(BLOCK_SIZE);
            seg.file
                .read_at(buf_base - seg.start.0, &mut block)
                .map_err(|source| WalError::Io {
                    path: seg.path.clone(),
                    source,
                })?;
            buf.extend_from_slice(&block[..(end.0 - buf_base) as usize]);
        }

        let state = State {
            buf,
            spare: Vec::new(),
            buf_base,
            append: end.0,
            durable: end.0,
            leader: false,
            poisoned: None,
            segments,
            segments_end,
            waiters: Waiters::default(),
            flusher_stop: false,
            flusher_running: false,
            flusher_idle: false,
            blocked_target: None,
            rounds_led: 0,
            in_flight_end: None,
        };
        Ok(Wal {
            dir: dir.to_path_buf(),
            opts,
            state: Mutex::new(state),
            durable_cv: Condvar::new(),
            rounds: Rounds::new(),
            gather_cv: Condvar::new(),
            kick: Condvar::new(),
            durable: AtomicU64::new(end.0),
            poisoned: AtomicBool::new(false),
            committers: AtomicU64::new(0),
            joined: AtomicU64::new(0),
            syncs: AtomicU64::new(0),
            sync_ns: AtomicU64::new(0),
            scratch: Mutex::new(AlignedBuf::zeroed(BLOCK_SIZE)),
        })
    }

    /// The durability mode chosen at open.
    pub fn durability(&self) -> Durability {
        self.opts.durability
    }

    /// Every record starting below this LSN is durable.
    pub fn durable_lsn(&self) -> Lsn {
        Lsn(self.durable.load(Ordering::Acquire))
    }

    /// Flushes that made the log durable so far (group-commit rounds):
    /// commits divided by this is how many commits shared each sync.
    pub fn syncs(&self) -> u64 {
        self.syncs.load(Ordering::Relaxed)
    }

    /// Nanoseconds the log's durable rounds spent writing and syncing,
    /// summed (rounds that failed are not counted).
    pub fn sync_ns(&self) -> u64 {
        self.sync_ns.load(Ordering::Relaxed)
    }

    /// The LSN the next record will get.
    pub fn end_lsn(&self) -> Lsn {
        Lsn(lock(&self.state).append)
    }

    /// Appends a record and returns its LSN. Does not wait for durability
    /// (unless the buffer is full, see [`MAX_BUFFERED_BYTES`]).
    pub fn append(&self, rec: &Record<'_>) -> Result<Lsn, WalError> {
        self.append_as(rec, false).map(|(lsn, _)| lsn)
    }

    /// [`Wal::append`] for a committer that will wait for its record with
    /// [`CommitTicket::wait_queued`]: if the flusher will lead that wait,
    /// the record is queued for it in the same critical section as the
    /// append (the state mutex is taken once per commit, not twice), and
    /// the round to sleep for comes back with the LSN.
    pub(crate) fn append_queued(&self, rec: &Record<'_>) -> Result<(Lsn, Option<u64>), WalError> {
        self.append_as(rec, true)
    }

    fn append_as(&self, rec: &Record<'_>, queue: bool) -> Result<(Lsn, Option<u64>), WalError> {
        let mut st = lock(&self.state);
        // 1. A poisoned log takes no more records.
        check_poison(&st)?;
        // 2. Backpressure: bound what is buffered but not durable.
        while st.append - st.durable >= MAX_BUFFERED_BYTES {
            st = self.make_progress(st, None)?;
            check_poison(&st)?;
        }
        // 3. Encode at the end of the log.
        let lsn = st.append;
        let durable = Lsn(st.durable);
        let n = rec.encode_into(Lsn(lsn), durable, &mut st.buf)?;
        st.append += n as u64;
        // 4. Let a gathering Group leader go once its batch is big enough,
        //    and have the flusher write behind once enough is pending.
        if st.append - st.durable >= GROUP_EARLY_FLUSH_BYTES {
            self.wake_gatherer();
        }
        if st.append - st.durable >= WRITE_BEHIND_BYTES && st.flusher_running {
            self.ask_flusher(&mut st, lsn);
        }
        // 5. Queue a committer's wait with the flusher (`Sync` only: a
        //    `Group` wait gathers first, and a `NoSync` commit never waits).
        let round = (queue && self.opts.durability == Durability::Sync && self.flusher_leads(&st))
            .then(|| self.queue_for_flusher(&mut st, lsn));
        Ok((Lsn(lsn), round))
    }

    /// Whether the flusher leads the syncs a blocked committer waits for:
    /// it runs, and other committers commit too.
    fn flusher_leads(&self, st: &State) -> bool {
        st.flusher_running && !st.flusher_stop && self.committers.load(Ordering::Relaxed) > 1
    }

    /// Asks the flusher to make the record at `lsn` durable; returns the
    /// round whose end makes it so (`rounds.rs`).
    fn queue_for_flusher(&self, st: &mut State, lsn: u64) -> u64 {
        self.ask_flusher(st, lsn);
        let ended = st.rounds_led - u64::from(st.in_flight_end.is_some());
        round_covering(lsn, ended, st.in_flight_end)
    }

    /// Asks the flusher to make the record at `lsn` durable, waking it only
    /// if it sleeps (a busy one finds the new target when its sync ends).
    fn ask_flusher(&self, st: &mut State, lsn: u64) {
        if st.blocked_target.is_none_or(|t| t < lsn) {
            st.blocked_target = Some(lsn);
            self.kick_if_idle(st);
        }
    }

    /// Wakes the flusher if it sleeps on `kick` (`State::flusher_idle`): a
    /// busy one finds new work when its sync ends, and std's futex
    /// `notify_one` is a system call whether or not anyone waits.
    fn kick_if_idle(&self, st: &State) {
        if st.flusher_idle {
            self.kick.notify_one();
        }
    }

    /// Sleeps until `round` has ended (if one is given), then waits as
    /// [`Wal::wait_durable`] does: at once, unless the round ended without
    /// making `lsn` durable (the log failed, or the flusher stopped).
    fn wait_round(&self, lsn: Lsn, round: Option<u64>) -> Result<(), WalError> {
        if let Some(round) = round
            && self.durable.load(Ordering::Acquire) <= lsn.0
        {
            self.rounds.wait_for(round);
        }
        self.wait_durable(lsn)
    }

    /// Appends a record and waits as the durability mode says: until it is
    /// durable (`Sync`, `Group`), or not at all (`NoSync`).
    pub fn commit(&self, rec: &Record<'_>) -> Result<Lsn, WalError> {
        self.committers.fetch_add(1, Ordering::SeqCst);
        let result = self.append(rec).and_then(|lsn| match self.opts.durability {
            Durability::Sync | Durability::Group { .. } => {
                self.joined.fetch_add(1, Ordering::SeqCst);
                self.wake_gatherer();
                let waited = self.wait_durable(lsn).map(|()| lsn);
                self.joined.fetch_sub(1, Ordering::SeqCst);
                waited
            }
            Durability::NoSync => Ok(lsn),
        });
        self.committers.fetch_sub(1, Ordering::SeqCst);
        result
    }

    /// Registers a committer that will [`Wal::append`] under its own lock
    /// and wait for durability afterwards (the Db's commit protocol). While
    /// the ticket lives, a `Group` leader counts it as a committer still to
    /// join, exactly as it counts a thread inside [`Wal::commit`]. A
    /// `NoSync` log counts nobody: no leader gathers there, and the count
    /// is a line every committer would write.
    pub fn enter_commit(&self) -> CommitTicket<'_> {
        let counted = self.opts.durability != Durability::NoSync;
        if counted {
            self.committers.fetch_add(1, Ordering::SeqCst);
        }
        CommitTicket { wal: self, counted }
    }

    /// Waits until the record at `lsn` is durable. In `Group` mode a thread
    /// that leads the sync first gathers more committers for up to
    /// `max_delay`. Works in every mode (in `NoSync` it forces a sync).
    pub fn wait_durable(&self, lsn: Lsn) -> Result<(), WalError> {
        self.wait_until(lsn, self.gather())
    }

    /// Tells a gathering `Group` leader that a committer joined or left.
    /// Only `Group` leaders gather: in the other modes this saves a futex
    /// system call per commit.
    fn wake_gatherer(&self) {
        if self.gather().is_some() {
            self.gather_cv.notify_one();
        }
    }

    /// How long a leader waits for more committers: `Group`'s delay.
    fn gather(&self) -> Option<Duration> {
        match self.opts.durability {
            Durability::Group { max_delay } => Some(max_delay),
            Durability::Sync | Durability::NoSync => None,
        }
    }

    /// Calls `f` once the record at `lsn` is durable (`Ok`), or with the
    /// error that means it never will be. Never blocks: if it is durable
    /// already (or can never be), `f` runs now, on this thread; otherwise
    /// the sync that covers it calls `f` (see [`DurableCallback`]), led by
    /// the flusher if no thread leads one.
    pub fn on_durable(&self, lsn: Lsn, f: DurableCallback) {
        let mut st = lock(&self.state);
        let now = if let Err(e) = check_poison(&st) {
            Err(e)
        } else if st.durable > lsn.0 {
            Ok(())
        } else if lsn.0 >= st.append {
            Err(WalError::BeyondEnd {
                requested: lsn,
                end: Lsn(st.append),
            })
        } else {
            st.waiters.push(lsn.0, f);
            self.kick_if_idle(&st);
            return;
        };
        drop(st);
        f(now);
    }

    /// Makes [`Wal::run_flusher`] return.
    pub fn stop_flusher(&self) {
        lock(&self.state).flusher_stop = true;
        self.kick.notify_all();
    }

    /// Makes the log durable up to and including the record at `lsn`, at
    /// once (no gathering delay). The buffer manager calls this before
    /// writing back a page whose LSN is `lsn`: WAL before data.
    pub fn flush_to(&self, lsn: Lsn) -> Result<(), WalError> {
        self.wait_until(lsn, None)
    }

    /// Makes everything appended so far durable.
    pub fn flush(&self) -> Result<(), WalError> {
        let end = self.end_lsn();
        match end.0.checked_sub(1) {
            Some(last) if last >= self.durable_lsn().0 => self.flush_to(Lsn(last)),
            _ => {
                let st = lock(&self.state);
                check_poison(&st)
            }
        }
    }

    /// Flushes and closes the log, reporting any failure (dropping a `Wal`
    /// flushes too, but can only log a failure).
    pub fn close(self) -> Result<(), WalError> {
        self.flush()
    }

    /// Deletes segments that lie wholly below `lsn` (a checkpoint's redo
    /// LSN) and wholly durable. The newest segment is always kept. Returns
    /// how many segments were deleted.
    pub fn truncate_before(&self, lsn: Lsn) -> Result<usize, WalError> {
        let doomed: Vec<Arc<Segment>> = {
            let mut st = lock(&self.state);
            check_poison(&st)?;
            // 1. Never remove what is not durable, nor the newest segment.
            let limit = lsn.0.min(st.durable);
            let newest = st.segments.keys().next_back().copied();
            let starts: Vec<u64> = st
                .segments
                .values()
                .filter(|s| s.end().0 <= limit && Some(s.start.0) != newest)
                .map(|s| s.start.0)
                .collect();
            // 2. Forget them under the lock, so no flush can pick them.
            starts
                .iter()
                .filter_map(|k| st.segments.remove(k))
                .collect()
        };
        // 3. Unlink outside the lock; the directory sync makes it stick.
        let paths: Vec<PathBuf> = doomed.iter().map(|s| s.path.clone()).collect();
        segment::remove(&self.dir, &paths)?;
        Ok(doomed.len())
    }

    /// Paths of the current segment files, oldest first.
    pub fn segment_paths(&self) -> Vec<PathBuf> {
        lock(&self.state)
            .segments
            .values()
            .map(|s| s.path.clone())
            .collect()
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        let unflushed = {
            let st = lock(&self.state);
            st.poisoned.is_none() && st.append > st.durable
        };
        if unflushed && let Err(e) = self.flush() {
            tracing::warn!(error = %e, "log flush at close failed; unflushed records are lost");
        }
        // Callbacks the last flush did not cover (registered after it, or
        // the log is poisoned) learn that they never will be.
        let left = lock(&self.state).waiters.take_all();
        for (lsn, f) in left {
            f(Err(WalError::Closed { lsn: Lsn(lsn) }));
        }
    }
}

/// A committer registered with [`Wal::enter_commit`].
pub struct CommitTicket<'a> {
    wal: &'a Wal,
    /// In the log's count of committers (not in `NoSync`).
    counted: bool,
}

impl CommitTicket<'_> {
    /// Waits as the durability mode says for the record at `lsn`, which
    /// this committer appended.
    pub fn wait(self, lsn: Lsn) -> Result<(), WalError> {
        self.wait_queued(lsn, None)
    }

    /// [`CommitTicket::wait`] for a record appended with
    /// [`Wal::append_queued`], with the round it returned.
    pub(crate) fn wait_queued(self, lsn: Lsn, round: Option<u64>) -> Result<(), WalError> {
        let wal = self.wal;
        match wal.opts.durability {
            Durability::Sync | Durability::Group { .. } => {
                wal.joined.fetch_add(1, Ordering::SeqCst);
                wal.wake_gatherer();
                let waited = wal.wait_round(lsn, round);
                wal.joined.fetch_sub(1, Ordering::SeqCst);
                waited
            }
            Durability::NoSync => Ok(()),
        }
    }
}

impl Drop for CommitTicket<'_> {
    fn drop(&mut self) {
        if self.counted {
            self.wal.committers.fetch_sub(1, Ordering::SeqCst);
            // A gathering leader may be waiting for this committer to join.
            self.wal.wake_gatherer();
        }
    }
}

/// Size of the newest segment, which the next one doubles.
fn newest_size(segments: &BTreeMap<u64, Arc<Segment>>) -> Option<u64> {
    segments.values().next_back().map(|s| s.size)
}

fn check_poison(st: &State) -> Result<(), WalError> {
    match &st.poisoned {
        Some(cause) => Err(WalError::Poisoned {
            cause: Arc::clone(cause),
        }),
        None => Ok(()),
    }
}
