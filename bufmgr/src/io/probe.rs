//! A device probe: random 4 KiB reads at a fixed queue depth straight
//! through io_uring and `O_DIRECT`, with nothing of the buffer manager in
//! the way. Benchmarks report the pool's miss throughput as a ratio to
//! this, measured on the same file in the same run.

use super::{AlignedBuf, BLOCK_SIZE, IoError, IoOp, open_direct};
use io_uring::{IoUring, opcode, types};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::{Duration, Instant};

/// The result of one probe.
#[derive(Debug, Clone, Copy)]
pub struct ProbeResult {
    pub queue_depth: usize,
    pub reads: u64,
    pub elapsed: Duration,
}

impl ProbeResult {
    pub fn iops(&self) -> f64 {
        self.reads as f64 / self.elapsed.as_secs_f64()
    }
}

/// Reads random blocks among the first `blocks` of `path` with
/// `queue_depth` reads always in flight, for `duration`.
pub fn random_read_iops(
    path: &Path,
    blocks: u64,
    queue_depth: usize,
    duration: Duration,
) -> Result<ProbeResult, IoError> {
    let file = open_direct(path)?;
    let fd = types::Fd(file.as_raw_fd());
    let mut ring = IoUring::new(queue_depth.next_power_of_two() as u32)
        .map_err(|e| IoError::os(IoOp::Open, 0, e))?;
    let mut bufs: Vec<AlignedBuf> = (0..queue_depth)
        .map(|_| AlignedBuf::zeroed(BLOCK_SIZE))
        .collect();
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut next_offset = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        (rng % blocks) * BLOCK_SIZE as u64
    };
    let submit = |ring: &mut IoUring, buf: &mut AlignedBuf, slot: usize, offset: u64| {
        let entry = opcode::Read::new(fd, buf.as_mut_ptr(), BLOCK_SIZE as u32)
            .offset(offset)
            .build()
            .user_data(slot as u64);
        // SAFETY: each slot's buffer is used by one read at a time and lives
        // until the loop below has reaped every read (it drains at the end).
        unsafe { ring.submission().push(&entry) }.expect("queue depth fits the ring");
    };
    for (slot, buf) in bufs.iter_mut().enumerate() {
        submit(&mut ring, buf, slot, next_offset());
    }
    let start = Instant::now();
    let mut reads = 0u64;
    let mut in_flight = queue_depth;
    while in_flight > 0 {
        ring.submit_and_wait(1)
            .map_err(|e| IoError::os(IoOp::Read, 0, e))?;
        let done: Vec<(usize, i32)> = ring
            .completion()
            .map(|c| (c.user_data() as usize, c.result()))
            .collect();
        for (slot, result) in done {
            if result < 0 {
                return Err(IoError::os(
                    IoOp::Read,
                    0,
                    std::io::Error::from_raw_os_error(-result),
                ));
            }
            reads += 1;
            if start.elapsed() < duration {
                submit(&mut ring, &mut bufs[slot], slot, next_offset());
            } else {
                in_flight -= 1;
            }
        }
    }
    Ok(ProbeResult {
        queue_depth,
        reads,
        elapsed: start.elapsed(),
    })
}
