//! The device's durable-write rate, measured in the same run as the
//! engines (row `device-fsync`): 4 KiB writes, each followed by
//! `fdatasync`, one at a time, to a file in the engines' data directory,
//! through Rime's block file (O_DIRECT, as Rime's log writes). The blocks
//! are written and synced once before timing, so every timed sync is a
//! plain overwrite, as in the log's preallocated segments.

use hdrhistogram::Histogram;
use rime_bufmgr::io::{AlignedBuf, BLOCK_SIZE, IoBackend, open_block_file};
use std::path::Path;
use std::time::{Duration, Instant};

/// Blocks the probe cycles over.
const PROBE_BLOCKS: usize = 16;

/// What [`fdatasync_rate`] measured.
pub struct FsyncProbe {
    pub syncs: u64,
    pub elapsed: Duration,
    /// Write + `fdatasync` latency, ns.
    pub latency_ns: Histogram<u64>,
}

impl FsyncProbe {
    pub fn syncs_per_sec(&self) -> f64 {
        self.syncs as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
    /// Latency at `q` (0..1) in microseconds.
    pub fn latency_us(&self, q: f64) -> f64 {
        self.latency_ns.value_at_quantile(q) as f64 / 1000.0
    }
}

/// Writes and syncs 4 KiB blocks of a new file in `dir` for `duration`;
/// the file is removed afterwards.
pub fn fdatasync_rate(dir: &Path, duration: Duration) -> Result<FsyncProbe, String> {
    let tmp = tempfile::Builder::new()
        .prefix("fsync-probe-")
        .tempdir_in(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    let path = tmp.path().join("probe");
    let err = |e: rime_bufmgr::io::IoError| format!("{}: {e}", path.display());
    let f = open_block_file(&path, IoBackend::Auto).map_err(err)?;
    f.set_len((PROBE_BLOCKS * BLOCK_SIZE) as u64).map_err(err)?;
    let buf = AlignedBuf::zeroed(BLOCK_SIZE);
    for i in 0..PROBE_BLOCKS {
        f.write_at((i * BLOCK_SIZE) as u64, &buf).map_err(err)?;
    }
    f.sync_data().map_err(err)?;
    let mut latency_ns =
        Histogram::new_with_bounds(1, 120_000_000_000, 3).map_err(|e| e.to_string())?;
    let started = Instant::now();
    let mut syncs = 0u64;
    while started.elapsed() < duration {
        let t = Instant::now();
        let offset = (syncs as usize % PROBE_BLOCKS * BLOCK_SIZE) as u64;
        f.write_at(offset, &buf).map_err(err)?;
        f.sync_data().map_err(err)?;
        latency_ns.saturating_record(t.elapsed().as_nanos().max(1) as u64);
        syncs += 1;
    }
    Ok(FsyncProbe {
        syncs,
        elapsed: started.elapsed(),
        latency_ns,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probe_syncs_and_leaves_no_file_behind() {
        let dir = tempfile::tempdir().unwrap();
        let p = fdatasync_rate(dir.path(), Duration::from_millis(20)).unwrap();
        assert!(p.syncs > 0);
        assert_eq!(p.latency_ns.len(), p.syncs);
        assert!(p.syncs_per_sec() > 0.0 && p.latency_us(0.5) > 0.0);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
