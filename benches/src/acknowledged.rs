//! YCSB's `AcknowledgedCounterGenerator`: the highest record number below
//! which every insert has been acknowledged.
//!
//! Workload D reads "the latest" records and E scans from zipfian-chosen
//! ones while other threads insert new records. A reader must only pick a
//! record whose insert has *returned*: picking one still in flight reads
//! "not found", which is the generator's fault, not the engine's. A plain
//! `fetch_max` of finished insert numbers is not enough: with two threads,
//! insert 101 can finish while 100 is still in flight, and 100 becomes
//! choosable too early.
//!
//! As in YCSB, finished numbers are marked in a window of
//! [`WINDOW`] slots; whoever takes the (try-)lock slides [`limit`] over
//! the marked prefix. A thread that loses the race for the lock leaves its
//! mark for the next winner, so the limit may lag for an insert but never
//! runs ahead of an unacknowledged one.
//!
//! [`limit`]: AcknowledgedCounter::limit

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Slots in the window: how far inserts may finish ahead of the oldest one
/// still in flight. YCSB uses 2^20; inserts here are at most a few per
/// thread in flight, so 2^16 leaves ample room at 1/16 the memory.
pub const WINDOW: u64 = 1 << 16;

/// Handing out record numbers, and the acknowledged limit over them.
pub struct AcknowledgedCounter {
    /// The next record number an insert takes.
    next: AtomicU64,
    /// Every record number `<= limit` has been acknowledged.
    limit: AtomicU64,
    /// `window[n % WINDOW]`: number `n` (> limit) has been acknowledged.
    window: Box<[AtomicBool]>,
    /// Held while sliding `limit`; taken with `try_lock` only.
    slide: Mutex<()>,
}

/// Acknowledging more than [`WINDOW`] numbers past the oldest one still in
/// flight: a slot would be reused before it was consumed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowFull {
    pub number: u64,
    pub limit: u64,
}

impl std::fmt::Display for WindowFull {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "insert {} acknowledged {} numbers past the acknowledged limit {} \
             (window {WINDOW}): an older insert never finished",
            self.number,
            self.number - self.limit,
            self.limit
        )
    }
}

impl std::error::Error for WindowFull {}

impl AcknowledgedCounter {
    /// Records `0..loaded` already exist; inserts take `loaded, loaded+1, …`.
    pub fn new(loaded: u64) -> Self {
        assert!(loaded > 0, "the load phase inserts at least one record");
        AcknowledgedCounter {
            next: AtomicU64::new(loaded),
            limit: AtomicU64::new(loaded - 1),
            window: (0..WINDOW).map(|_| AtomicBool::new(false)).collect(),
            slide: Mutex::new(()),
        }
    }

    /// The record number for the next insert.
    pub fn next(&self) -> u64 {
        self.next.fetch_add(1, Ordering::Relaxed)
    }

    /// Every record number up to and including this one is acknowledged.
    pub fn limit(&self) -> u64 {
        self.limit.load(Ordering::Acquire)
    }

    /// Insert `n` (from [`next`](Self::next)) has returned.
    pub fn acknowledge(&self, n: u64) -> Result<(), WindowFull> {
        // 1. Refuse to lap the window: slot n % WINDOW would still hold an
        //    older, unconsumed mark.
        let limit = self.limit();
        if n > limit + WINDOW {
            return Err(WindowFull { number: n, limit });
        }
        // 2. Mark n. Release: a slider that sees the mark also sees the
        //    insert's effects happened-before (the caller's insert returned).
        self.window[(n % WINDOW) as usize].store(true, Ordering::Release);
        // 3. Whoever gets the lock slides the limit over the marked prefix,
        //    clearing each slot it consumes. A loser's mark stays for the
        //    next winner.
        if let Ok(_g) = self.slide.try_lock() {
            let mut limit = self.limit.load(Ordering::Relaxed);
            loop {
                let slot = &self.window[((limit + 1) % WINDOW) as usize];
                if !slot.swap(false, Ordering::Acquire) {
                    break;
                }
                limit += 1;
            }
            // 4. Publish: readers that see the new limit see every insert
            //    up to it.
            self.limit.store(limit, Ordering::Release);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_waits_for_the_oldest_insert_in_flight() {
        let c = AcknowledgedCounter::new(100);
        assert_eq!(c.limit(), 99);
        let (a, b, d) = (c.next(), c.next(), c.next());
        assert_eq!((a, b, d), (100, 101, 102));
        c.acknowledge(b).unwrap();
        c.acknowledge(d).unwrap();
        assert_eq!(c.limit(), 99, "100 is still in flight");
        c.acknowledge(a).unwrap();
        assert_eq!(c.limit(), 102);
    }

    #[test]
    fn lapping_the_window_is_an_error_not_a_wrong_limit() {
        let c = AcknowledgedCounter::new(1);
        let stuck = c.next();
        for _ in 0..WINDOW - 1 {
            let n = c.next();
            c.acknowledge(n).unwrap();
        }
        let n = c.next();
        assert_eq!(c.acknowledge(n).unwrap_err().number, n);
        assert_eq!(c.limit(), 0, "never past the insert still in flight");
        c.acknowledge(stuck).unwrap();
        assert_eq!(c.limit(), WINDOW, "1 and the WINDOW - 1 after it");
    }

    #[test]
    fn concurrent_inserts_never_expose_an_unfinished_number() {
        use std::sync::atomic::AtomicU64;
        const PER_THREAD: u64 = 20_000;
        const THREADS: u64 = 4;
        let c = AcknowledgedCounter::new(1);
        // done[n]: insert n has "returned" (set before acknowledging).
        let done: Vec<AtomicBool> = (0..=THREADS * PER_THREAD + 1)
            .map(|_| AtomicBool::new(false))
            .collect();
        let checked = AtomicU64::new(0);
        std::thread::scope(|s| {
            for _ in 0..THREADS {
                s.spawn(|| {
                    for i in 0..PER_THREAD {
                        let n = c.next();
                        done[n as usize].store(true, Ordering::Release);
                        c.acknowledge(n).unwrap();
                        if i % 7 == 0 {
                            let limit = c.limit();
                            for m in limit.saturating_sub(8).max(1)..=limit {
                                assert!(done[m as usize].load(Ordering::Acquire), "{m} <= {limit}");
                            }
                            checked.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        assert!(checked.into_inner() > 0);
        // A late winner may be needed for the last marks; one more
        // acknowledgement of a fresh number slides over all of them.
        let last = c.next();
        c.acknowledge(last).unwrap();
        assert_eq!(c.limit(), last);
    }
}
