//! [`FaultyFile`]: a **test double for fault injection**. It exists only so
//! tests can make a real file fail in the ways disks and kernels fail; no
//! production path constructs one.
//!
//! It wraps a real [`BlockFile`] and adds:
//!
//! * failing the Nth write (counted over single transfers, from 1), every
//!   sync, or reads at chosen offsets; shortening a read (the file "ends");
//! * a crash model: with `hold_unsynced`, writes stay in memory until
//!   `sync_data` passes them to the real file and syncs it. [`FaultyFile::crash`]
//!   then drops them — exactly what a power cut does to writes not yet
//!   covered by an `fdatasync` — or, with [`FaultyFile::crash_keeping`], lets
//!   a prefix of them reach the file and tears the next one, as a disk that
//!   persisted some writes and half a sector of another would.
//!
//! For crash-point search, a [`CrashSwitch`] shared by every file of a data
//! directory stops all of them at the Nth write or sync (a process killed
//! mid-operation); [`FaultyFile::crash_with`] then decides the fate of each
//! write still unsynced — kept, dropped or torn, in any combination, as a
//! disk that reorders its cache would (ALICE, CrashMonkey).
//!
//! After a crash every call fails with [`IoError::Injected`]: a dead process
//! does no more I/O. Tests reopen the inner file to "restart".
//!
//! By default it offers no direct descriptor, so loaders read through it
//! synchronously. [`FaultyFile::set_direct`] offers the inner file's, so
//! loaders use their own rings as on the real file; the plan's read and
//! write failures then reach those transfers through
//! [`BlockFile::direct_fault`] (checked as each completes), but
//! `hold_unsynced` and the crash switch do not: direct writes go straight
//! to the file. For tests of the loader's I/O that do not crash.

use super::{AlignedBuf, BLOCK_SIZE, BlockFile, IoError, IoOp, ReadOp, WriteOp};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// What to break. Change it at any time with [`FaultyFile::set_plan`].
#[derive(Debug, Clone, Default)]
pub struct FaultPlan {
    /// Fail the Nth single write transfer from now (1 = the next one).
    pub fail_nth_write: Option<u64>,
    /// Fail every write transfer from now on.
    pub fail_all_writes: bool,
    /// Fail every `sync_data`.
    pub fail_sync: bool,
    /// Fail reads that start at one of these byte offsets.
    pub fail_reads_at: Vec<u64>,
    /// Reads that start at this offset see a file that ends there.
    pub short_read_at: Option<u64>,
    /// Keep writes in memory until `sync_data` (needed for `crash`).
    pub hold_unsynced: bool,
    /// Stops every file sharing it at the Nth write or sync.
    pub switch: Option<Arc<CrashSwitch>>,
}

/// A kill switch shared by several [`FaultyFile`]s: the write transfer or
/// sync that counts it down to zero, and every I/O after it on any file
/// sharing it, fails with [`IoError::Injected`] and changes nothing, as if
/// the process had died just before it.
#[derive(Debug, Default)]
pub struct CrashSwitch {
    countdown: AtomicU64,
    fired: AtomicBool,
}

impl CrashSwitch {
    /// Fires at the `n`th write or sync from now (1 = the next); 0 never.
    pub fn arm(&self, n: u64) {
        self.fired.store(false, Ordering::SeqCst);
        self.countdown.store(n, Ordering::SeqCst);
    }

    /// Fires now: the process is dead from here on.
    pub fn fire(&self) {
        self.fired.store(true, Ordering::SeqCst);
    }

    /// Whether it has fired.
    pub fn fired(&self) -> bool {
        self.fired.load(Ordering::SeqCst)
    }

    /// Counts one write or sync; true if the process is (now) dead.
    fn tick(&self) -> bool {
        if self.fired() {
            return true;
        }
        let hit = self
            .countdown
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            == Ok(1);
        if hit {
            self.fired.store(true, Ordering::SeqCst);
        }
        hit
    }
}

/// What a crash does to one write that was not yet synced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// It reached the disk whole.
    Keep,
    /// It never reached the disk.
    Drop,
    /// Its first `n` bytes reached the disk.
    Tear(usize),
}

struct State {
    plan: FaultPlan,
    writes_seen: u64,
    /// Writes not yet synced, in the order they were issued.
    unsynced: Vec<(u64, AlignedBuf)>,
    crashed: bool,
}

/// A [`BlockFile`] that fails on purpose. Test double; see the module docs.
pub struct FaultyFile {
    inner: Arc<dyn BlockFile>,
    state: Mutex<State>,
    /// Offer the inner file's descriptor to loaders.
    direct: AtomicBool,
    /// Reads failed on purpose so far (any path).
    failed_reads: AtomicU64,
}

impl FaultyFile {
    pub fn new(inner: Arc<dyn BlockFile>, plan: FaultPlan) -> Self {
        let state = State {
            plan,
            writes_seen: 0,
            unsynced: Vec::new(),
            crashed: false,
        };
        FaultyFile {
            inner,
            state: Mutex::new(state),
            direct: AtomicBool::new(false),
            failed_reads: AtomicU64::new(0),
        }
    }

    /// Whether loaders opened from now on get the inner file's descriptor
    /// (see the module docs).
    pub fn set_direct(&self, direct: bool) {
        self.direct.store(direct, Ordering::SeqCst);
    }

    /// Reads the plan has failed so far (short reads included), through
    /// [`BlockFile::read_batch`] or a loader's ring.
    pub fn failed_reads(&self) -> u64 {
        self.failed_reads.load(Ordering::SeqCst)
    }

    /// The plan's verdict on one read at `offset` of `len` bytes.
    fn read_fault(&self, s: &State, offset: u64, len: usize) -> Result<(), IoError> {
        Self::alive(s, IoOp::Read, offset)?;
        let fault = if s.plan.fail_reads_at.contains(&offset) {
            Some(IoError::Injected {
                op: IoOp::Read,
                offset,
            })
        } else if s.plan.short_read_at == Some(offset) {
            Some(IoError::ShortRead {
                offset,
                wanted: len,
                got: 0,
            })
        } else {
            None
        };
        match fault {
            Some(e) => {
                self.failed_reads.fetch_add(1, Ordering::SeqCst);
                Err(e)
            }
            None => Ok(()),
        }
    }

    /// The plan's verdict on one write transfer at `offset` (counted).
    fn write_fault(s: &mut State, offset: u64) -> Result<(), IoError> {
        Self::alive(s, IoOp::Write, offset)?;
        Self::tick(s, IoOp::Write, offset)?;
        s.writes_seen += 1;
        if s.plan.fail_all_writes || s.plan.fail_nth_write == Some(s.writes_seen) {
            return Err(IoError::Injected {
                op: IoOp::Write,
                offset,
            });
        }
        Ok(())
    }

    pub fn set_plan(&self, plan: FaultPlan) {
        let mut s = self.lock();
        s.plan = plan;
        s.writes_seen = 0;
    }

    /// Number of writes held in memory, not yet synced.
    pub fn unsynced_writes(&self) -> usize {
        self.lock().unsynced.len()
    }

    /// Power cut: every write not yet synced is lost.
    pub fn crash(&self) {
        self.crash_keeping(0, 0);
    }

    /// Power cut after the first `keep` unsynced writes reached the disk and
    /// the first `torn_bytes` bytes of the next one did.
    pub fn crash_keeping(&self, keep: usize, torn_bytes: usize) {
        self.crash_with(|i, _, _| match i {
            i if i < keep => Fate::Keep,
            i if i == keep && torn_bytes > 0 => Fate::Tear(torn_bytes),
            _ => Fate::Drop,
        });
    }

    /// Crash, deciding each unsynced write's fate with `fate(index in issue
    /// order, offset, length)`. Kept and torn writes land in issue order.
    pub fn crash_with(&self, mut fate: impl FnMut(usize, u64, usize) -> Fate) {
        let mut s = self.lock();
        let unsynced = std::mem::take(&mut s.unsynced);
        s.crashed = true;
        drop(s);
        for (i, (offset, data)) in unsynced.iter().enumerate() {
            match fate(i, *offset, data.len()) {
                Fate::Keep => {
                    let _ = self.inner.write_at(*offset, data);
                }
                Fate::Tear(n) if n > 0 => {
                    let _ = self.tear(*offset, data, n);
                }
                Fate::Tear(_) | Fate::Drop => {}
            }
        }
        let _ = self.inner.sync_data();
    }

    /// Writes the first `torn_bytes` of `data` over the old contents.
    fn tear(&self, offset: u64, data: &[u8], torn_bytes: usize) -> Result<(), IoError> {
        let mut merged = AlignedBuf::zeroed(data.len());
        let _ = self.inner.read_at(offset, &mut merged);
        let n = torn_bytes.min(data.len());
        merged[..n].copy_from_slice(&data[..n]);
        self.inner.write_at(offset, &merged)
    }

    /// Counts an operation on the crash switch; fails it if that killed us.
    fn tick(s: &State, op: IoOp, offset: u64) -> Result<(), IoError> {
        match &s.plan.switch {
            Some(k) if k.tick() => Err(IoError::Injected { op, offset }),
            _ => Ok(()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn alive(s: &State, op: IoOp, offset: u64) -> Result<(), IoError> {
        if s.crashed || s.plan.switch.as_ref().is_some_and(|k| k.fired()) {
            Err(IoError::Injected { op, offset })
        } else {
            Ok(())
        }
    }
}

impl BlockFile for FaultyFile {
    fn read_batch(&self, reads: &mut [ReadOp<'_>]) -> Result<(), IoError> {
        let s = self.lock();
        for r in reads.iter_mut() {
            self.read_fault(&s, r.offset, r.buf.len())?;
            match self.inner.read_at(r.offset, r.buf) {
                Ok(()) => {}
                // A region that exists only in unsynced writes is still readable.
                Err(IoError::ShortRead { .. }) if !s.unsynced.is_empty() => r.buf.fill(0),
                Err(e) => return Err(e),
            }
            overlay(&s.unsynced, r.offset, r.buf);
        }
        Ok(())
    }

    fn write_batch(&self, writes: &[WriteOp<'_>]) -> Result<(), IoError> {
        let mut s = self.lock();
        for w in writes {
            Self::write_fault(&mut s, w.offset)?;
            if s.plan.hold_unsynced {
                let mut copy = AlignedBuf::zeroed(w.data.len());
                copy[..w.data.len()].copy_from_slice(w.data);
                s.unsynced.push((w.offset, copy));
            } else {
                self.inner.write_at(w.offset, w.data)?;
            }
        }
        Ok(())
    }

    fn sync_data(&self) -> Result<(), IoError> {
        let mut s = self.lock();
        Self::alive(&s, IoOp::Sync, 0)?;
        Self::tick(&s, IoOp::Sync, 0)?;
        if s.plan.fail_sync {
            return Err(IoError::Injected {
                op: IoOp::Sync,
                offset: 0,
            });
        }
        for (offset, data) in &s.unsynced {
            self.inner.write_at(*offset, &data[..])?;
        }
        s.unsynced.clear();
        self.inner.sync_data()
    }

    fn len_bytes(&self) -> Result<u64, IoError> {
        let s = self.lock();
        Self::alive(&s, IoOp::Resize, 0)?;
        let held_end = s
            .unsynced
            .iter()
            .map(|(o, d)| o + d.len() as u64)
            .max()
            .unwrap_or(0);
        Ok(self.inner.len_bytes()?.max(held_end))
    }

    fn set_len(&self, len: u64) -> Result<(), IoError> {
        let s = self.lock();
        Self::alive(&s, IoOp::Resize, len)?;
        self.inner.set_len(len)
    }

    fn direct_fd(&self) -> Option<std::os::fd::RawFd> {
        if self.direct.load(Ordering::SeqCst) {
            self.inner.direct_fd()
        } else {
            None
        }
    }

    fn direct_fault(&self, op: IoOp, offset: u64, len: usize) -> Option<IoError> {
        let mut s = self.lock();
        match op {
            IoOp::Read => self.read_fault(&s, offset, len).err(),
            IoOp::Write => Self::write_fault(&mut s, offset).err(),
            _ => None,
        }
    }
}

/// Copies the parts of unsynced writes that fall inside `[offset, offset+len)`
/// over `buf`, oldest first so the newest write wins.
fn overlay(unsynced: &[(u64, AlignedBuf)], offset: u64, buf: &mut [u8]) {
    let end = offset + buf.len() as u64;
    for (w_off, data) in unsynced {
        let w_end = w_off + data.len() as u64;
        let lo = offset.max(*w_off);
        let hi = end.min(w_end);
        if lo < hi {
            let dst = (lo - offset) as usize..(hi - offset) as usize;
            let src = (lo - w_off) as usize..(hi - w_off) as usize;
            buf[dst].copy_from_slice(&data[src]);
        }
    }
    debug_assert!(buf.len().is_multiple_of(BLOCK_SIZE));
}
