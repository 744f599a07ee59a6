//! [`BlockFile`] over io_uring: one submission per batch.
//!
//! Rings are kept in a small pool rather than in thread-locals: a call takes
//! a ring, submits its whole batch, waits for the completions and puts the
//! ring back. The pool grows to the number of threads doing I/O at once (so
//! each thread in effect has its own ring, with no submission-queue sharing),
//! and the rings die with the file instead of living on in every thread that
//! ever touched it.

use super::{BlockFile, IoError, IoOp, Meanwhile, ReadOp, WriteOp, check_aligned};
use io_uring::{IoUring, opcode, squeue, types};
use std::fs::File;
use std::os::fd::AsRawFd;
use std::sync::Mutex;

/// Submission-queue entries per ring. A batch larger than this is submitted
/// in chunks; 256 covers an eviction batch (64 pages) with room for extents,
/// and keeps a ring's memory (SQ + CQ arrays) near 16 KiB.
const RING_ENTRIES: u32 = 256;

/// The real block file: `O_DIRECT` + io_uring.
pub struct UringFile {
    file: File,
    rings: Mutex<Vec<IoUring>>,
}

impl UringFile {
    /// Wraps a file opened with `O_DIRECT`. Fails if the kernel refuses
    /// io_uring (seccomp, `kernel.io_uring_disabled`).
    pub fn new(file: File) -> Result<Self, IoError> {
        let probe = IoUring::new(RING_ENTRIES).map_err(|e| IoError::os(IoOp::Open, 0, e))?;
        Ok(UringFile {
            file,
            rings: Mutex::new(vec![probe]),
        })
    }

    fn with_ring<R>(
        &self,
        f: impl FnOnce(&mut IoUring) -> Result<R, IoError>,
    ) -> Result<R, IoError> {
        let pooled = self.rings.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let mut ring = match pooled {
            Some(r) => r,
            None => IoUring::new(RING_ENTRIES).map_err(|e| IoError::os(IoOp::Open, 0, e))?,
        };
        let out = f(&mut ring);
        // A ring whose submission failed half-way may still hold completions;
        // such a ring is dropped rather than reused.
        if out.is_ok() {
            self.rings
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(ring);
        }
        out
    }

    /// Drives `ops` (one transfer each: offset, pointer, remaining length)
    /// to completion, resubmitting the rest of any short transfer.
    fn run(&self, op: IoOp, ops: &mut [Transfer]) -> Result<(), IoError> {
        let fd = types::Fd(self.file.as_raw_fd());
        self.with_ring(|ring| {
            let mut pending: Vec<usize> = (0..ops.len()).collect();
            while !pending.is_empty() {
                let chunk_len = pending.len().min(RING_ENTRIES as usize);
                let chunk: Vec<usize> = pending.drain(..chunk_len).collect();
                for &i in &chunk {
                    let entry = ops[i].entry(op, fd).user_data(i as u64);
                    // SAFETY: the buffer behind the entry is borrowed by the
                    // caller's ReadOp/WriteOp for the whole call, and this
                    // function waits for every submitted entry to complete
                    // before returning, so the kernel never sees a freed buffer.
                    unsafe { ring.submission().push(&entry) }.expect("chunk fits in an empty ring");
                }
                submit_all(ring, chunk.len(), op, ops[chunk[0]].offset)?;
                for cqe in ring.completion() {
                    let i = cqe.user_data() as usize;
                    if ops[i].complete(op, cqe.result())? {
                        pending.push(i);
                    }
                }
            }
            Ok(())
        })
    }
}

/// `user_data` of the fsync that ends a linked write-and-sync chain.
const SYNC_TAG: u64 = u64::MAX;

impl UringFile {
    /// One submission of `ops` (writes) and an `fdatasync`, each linked to
    /// the next, so the kernel starts the sync only once every write has
    /// completed in full. `Ok(true)`: all written and synced. `Ok(false)`:
    /// a write came back short, which cuts the chain (the ops after it and
    /// the sync complete with `ECANCELED`); `ops` then hold what is left.
    /// `meanwhile` runs once the chain is submitted, before waiting for it.
    fn linked_write_sync(
        &self,
        ops: &mut [Transfer],
        meanwhile: &mut Meanwhile<'_>,
    ) -> Result<bool, IoError> {
        let fd = types::Fd(self.file.as_raw_fd());
        self.with_ring(|ring| {
            for (i, t) in ops.iter().enumerate() {
                let entry = t
                    .entry(IoOp::Write, fd)
                    .user_data(i as u64)
                    .flags(squeue::Flags::IO_LINK);
                // SAFETY: as in `run`: the buffers are borrowed by the
                // caller's WriteOps for the whole call, and every entry
                // completes before this returns.
                unsafe { ring.submission().push(&entry) }
                    .expect("the caller checked the ring fits");
            }
            let sync = opcode::Fsync::new(fd)
                .flags(types::FsyncFlags::DATASYNC)
                .build()
                .user_data(SYNC_TAG);
            // SAFETY: an fsync entry references no memory.
            unsafe { ring.submission().push(&sync) }.expect("the caller checked the ring fits");
            // Hand the chain to the kernel before running `meanwhile`. A
            // failed submission is not lost: `submit_all` submits whatever
            // is still queued and reports an error that persists.
            let _ = ring.submit();
            meanwhile.run();
            submit_all(
                ring,
                ops.len() + 1,
                IoOp::Write,
                ops.first().map_or(0, |t| t.offset),
            )?;
            let mut synced = false;
            let mut rest = false;
            for cqe in ring.completion() {
                let res = cqe.result();
                if cqe.user_data() == SYNC_TAG {
                    match res {
                        r if r >= 0 => synced = true,
                        r if r == -libc::ECANCELED || r == -libc::EINTR => {}
                        r => {
                            return Err(IoError::os(
                                IoOp::Sync,
                                0,
                                std::io::Error::from_raw_os_error(-r),
                            ));
                        }
                    }
                } else if res == -libc::ECANCELED {
                    rest = true;
                } else {
                    rest |= ops[cqe.user_data() as usize].complete(IoOp::Write, res)?;
                }
            }
            Ok(synced && !rest)
        })
    }
}

/// Submits and waits until `n` completions are available, retrying `EINTR`.
fn submit_all(ring: &mut IoUring, n: usize, op: IoOp, offset: u64) -> Result<(), IoError> {
    loop {
        match ring.submit_and_wait(n) {
            Ok(_) if ring.completion().len() >= n => return Ok(()),
            Ok(_) => continue,
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
            Err(e) => return Err(IoError::os(op, offset, e)),
        }
    }
}

/// The unfinished part of one read or write.
struct Transfer {
    offset: u64,
    ptr: *mut u8,
    len: usize,
    /// Bytes already transferred (for error messages on a short read).
    done: usize,
}

impl Transfer {
    fn entry(&self, op: IoOp, fd: types::Fd) -> squeue::Entry {
        let len = self.len as u32;
        match op {
            IoOp::Read => opcode::Read::new(fd, self.ptr, len)
                .offset(self.offset)
                .build(),
            _ => opcode::Write::new(fd, self.ptr, len)
                .offset(self.offset)
                .build(),
        }
    }

    /// Applies a completion; `Ok(true)` when part of the transfer remains.
    fn complete(&mut self, op: IoOp, result: i32) -> Result<bool, IoError> {
        if result == -libc::EINTR || result == -libc::EAGAIN {
            return Ok(true);
        }
        if result < 0 {
            return Err(IoError::os(
                op,
                self.offset,
                std::io::Error::from_raw_os_error(-result),
            ));
        }
        let n = result as usize;
        if n == 0 && op == IoOp::Read {
            return Err(IoError::ShortRead {
                offset: self.offset - self.done as u64,
                wanted: self.done + self.len,
                got: self.done,
            });
        }
        self.offset += n as u64;
        // SAFETY: n <= len, so the pointer stays inside the caller's buffer.
        self.ptr = unsafe { self.ptr.add(n) };
        self.len -= n;
        self.done += n;
        Ok(self.len > 0)
    }
}

/// The transfers of `writes`, each checked for `O_DIRECT` alignment.
fn transfers(writes: &[WriteOp<'_>]) -> Result<Vec<Transfer>, IoError> {
    let mut ops = Vec::with_capacity(writes.len());
    for w in writes {
        check_aligned(IoOp::Write, w.offset, w.data.as_ptr(), w.data.len())?;
        // The kernel only reads through this pointer (IORING_OP_WRITE).
        ops.push(Transfer {
            offset: w.offset,
            ptr: w.data.as_ptr() as *mut u8,
            len: w.data.len(),
            done: 0,
        });
    }
    Ok(ops)
}

impl BlockFile for UringFile {
    fn read_batch(&self, reads: &mut [ReadOp<'_>]) -> Result<(), IoError> {
        let mut ops = Vec::with_capacity(reads.len());
        for r in reads.iter_mut() {
            check_aligned(IoOp::Read, r.offset, r.buf.as_ptr(), r.buf.len())?;
            ops.push(Transfer {
                offset: r.offset,
                ptr: r.buf.as_mut_ptr(),
                len: r.buf.len(),
                done: 0,
            });
        }
        self.run(IoOp::Read, &mut ops)
    }

    fn write_batch(&self, writes: &[WriteOp<'_>]) -> Result<(), IoError> {
        let mut ops = transfers(writes)?;
        self.run(IoOp::Write, &mut ops)
    }

    fn sync_data(&self) -> Result<(), IoError> {
        let fd = types::Fd(self.file.as_raw_fd());
        self.with_ring(|ring| {
            loop {
                let entry = opcode::Fsync::new(fd)
                    .flags(types::FsyncFlags::DATASYNC)
                    .build();
                // SAFETY: an fsync entry references no memory.
                unsafe { ring.submission().push(&entry) }.expect("empty ring has room");
                submit_all(ring, 1, IoOp::Sync, 0)?;
                let res = ring.completion().next().map_or(-libc::EIO, |c| c.result());
                match res {
                    r if r == -libc::EINTR => continue,
                    r if r < 0 => {
                        return Err(IoError::os(
                            IoOp::Sync,
                            0,
                            std::io::Error::from_raw_os_error(-r),
                        ));
                    }
                    _ => return Ok(()),
                }
            }
        })
    }

    fn write_and_sync(&self, writes: &[WriteOp<'_>]) -> Result<(), IoError> {
        self.write_and_sync_meanwhile(writes, &mut || {})
    }

    fn write_and_sync_meanwhile(
        &self,
        writes: &[WriteOp<'_>],
        meanwhile: &mut dyn FnMut(),
    ) -> Result<(), IoError> {
        let mut meanwhile = Meanwhile::new(meanwhile);
        let mut ops = transfers(writes)?;
        if ops.len() < RING_ENTRIES as usize && self.linked_write_sync(&mut ops, &mut meanwhile)? {
            return Ok(());
        }
        meanwhile.run();
        // A batch too big for one ring, or a chain cut by a short write:
        // finish the writes, then sync on its own.
        let mut rest: Vec<Transfer> = ops.into_iter().filter(|t| t.len > 0).collect();
        self.run(IoOp::Write, &mut rest)?;
        self.sync_data()
    }

    fn len_bytes(&self) -> Result<u64, IoError> {
        super::file_len(&self.file)
    }

    fn direct_fd(&self) -> Option<std::os::fd::RawFd> {
        Some(self.file.as_raw_fd())
    }

    fn set_len(&self, len: u64) -> Result<(), IoError> {
        super::file_set_len(&self.file, len)
    }
}
