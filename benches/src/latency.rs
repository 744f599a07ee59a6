//! Latency recording for many worker threads. A histogram of 1 ns to 120 s
//! at 3 significant digits takes ~230 KiB, so one per worker (two, with the
//! commit latencies) would cost ~0.5 GB at 1024 threads. Instead each
//! worker buffers its samples and hands them, a chunk at a time, to one of
//! at most [`MAX_SHARDS`] shared histograms; up to that many workers, each
//! has a shard of its own and never waits for another.

use hdrhistogram::Histogram;
use std::sync::Mutex;

/// Shared histograms at most (and so shards a worker may share).
pub const MAX_SHARDS: usize = 16;
/// Samples a worker buffers before it takes its shard's lock.
const CHUNK: usize = 256;

/// The histograms of one run phase: every operation's latency, and the
/// writing operations' (each one commit).
pub struct Latencies {
    pub all_ns: Histogram<u64>,
    pub commit_ns: Histogram<u64>,
}

impl Latencies {
    pub fn new() -> Latencies {
        Latencies {
            all_ns: new_hist(),
            commit_ns: new_hist(),
        }
    }
    fn add(&mut self, other: &Latencies) {
        self.all_ns.add(&other.all_ns).expect("same bounds");
        self.commit_ns.add(&other.commit_ns).expect("same bounds");
    }
}

impl Default for Latencies {
    fn default() -> Self {
        Latencies::new()
    }
}

fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 120_000_000_000, 3).expect("histogram bounds")
}

/// The shared histograms of a run phase with `workers` threads.
pub struct LatencyShards {
    shards: Vec<Mutex<Latencies>>,
}

impl LatencyShards {
    pub fn new(workers: usize) -> LatencyShards {
        let n = workers.clamp(1, MAX_SHARDS);
        LatencyShards {
            shards: (0..n).map(|_| Mutex::new(Latencies::new())).collect(),
        }
    }
    /// Worker `worker`'s recorder.
    pub fn recorder(&self, worker: usize) -> LatencyRecorder<'_> {
        LatencyRecorder {
            shard: &self.shards[worker % self.shards.len()],
            samples: Vec::with_capacity(CHUNK),
        }
    }
    /// Every shard's samples together (every recorder must have been
    /// dropped, which flushes it).
    pub fn merged(self) -> Latencies {
        let mut out = Latencies::new();
        for s in self.shards {
            out.add(&s.into_inner().expect("a recorder panicked"));
        }
        out
    }
}

/// One latency: `count` operations of `ns` each (a batch's keys share its
/// time); `commit` if they wrote.
#[derive(Clone, Copy)]
struct Sample {
    ns: u64,
    count: u64,
    commit: bool,
}

/// A worker's buffer in front of its shard; flushes when full and when
/// dropped.
pub struct LatencyRecorder<'a> {
    shard: &'a Mutex<Latencies>,
    samples: Vec<Sample>,
}

impl LatencyRecorder<'_> {
    /// Records `count` operations that took `ns` each.
    pub fn record(&mut self, ns: u64, count: u64, commit: bool) {
        self.samples.push(Sample { ns, count, commit });
        if self.samples.len() == CHUNK {
            self.flush();
        }
    }
    fn flush(&mut self) {
        if self.samples.is_empty() {
            return;
        }
        let mut h = self.shard.lock().expect("a recorder panicked");
        for s in self.samples.drain(..) {
            h.all_ns.saturating_record_n(s.ns, s.count);
            if s.commit {
                h.commit_ns.saturating_record_n(s.ns, s.count);
            }
        }
    }
}

impl Drop for LatencyRecorder<'_> {
    fn drop(&mut self) {
        self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_sharing_shards_lose_no_sample() {
        let workers = MAX_SHARDS * 3 + 1;
        let shards = LatencyShards::new(workers);
        std::thread::scope(|s| {
            for w in 0..workers {
                let shards = &shards;
                s.spawn(move || {
                    let mut r = shards.recorder(w);
                    for i in 0..1000u64 {
                        r.record(1000 + i, 1 + i % 2, i % 4 == 0);
                    }
                });
            }
        });
        let l = shards.merged();
        // Per worker: 500 samples of count 1 and 500 of count 2; a quarter
        // of the samples (all of count 1) wrote.
        assert_eq!(l.all_ns.len(), workers as u64 * 1500);
        assert_eq!(l.commit_ns.len(), workers as u64 * 250);
        assert_eq!(l.all_ns.min(), 1000);
    }
}
