//! Waiting for a wake-up without a system call when it comes soon: a
//! thread that runs out of work spins for [`SPIN`] before it parks, and a
//! waker unparks it (a futex wake, ~5–20 µs on a VM, for both sides) only
//! if it really sleeps. An invocation at one in flight crosses threads
//! twice (caller → executor → caller); both ends wait here.
//!
//! The protocol (both flags `SeqCst`, so that either the waker sees
//! `sleeping` or the sleeper sees `notified`):
//!
//! 1. Waker: set `notified`; if `sleeping`, unpark the thread.
//! 2. Sleeper: spin on `notified` for up to its spin budget; then set
//!    `sleeping`, look at `notified` once more, and park unless it is set
//!    (an unpark between the two is not lost: it leaves the thread's token,
//!    so the park returns at once); on waking clear `sleeping`.
//! 3. Sleeper, after the wait: sets the next wait's budget from this one
//!    ([`next_spin_ns`]). A thread whose wake-ups come within `SPIN` (one
//!    invocation at a time) keeps spinning; one whose waits are longer (an
//!    executor waiting for a log sync under load) halves its budget each
//!    time, so it stops burning a core another thread could use, and gets
//!    the whole budget back at the first wait that spinning would have
//!    saved.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed, Ordering::SeqCst};
use std::thread::Thread;
use std::time::{Duration, Instant};

/// How long a thread out of work spins before it parks: about two
/// futex round trips, so a wake-up that comes this soon costs none.
const SPIN: Duration = Duration::from_micros(30);

/// One thread's wake-up flag.
pub(crate) struct Parker {
    /// Alone on their line (and its prefetch pair): the owner spins on it
    /// while the waker writes it, and a write to anything sharing the
    /// line would pull it from under the spinning reader. Beside an
    /// executor's queue and load count, the spin made each hand-off's
    /// writes to them bounce the line once more (see `docs/faas.md`,
    /// "One at a time through the executors").
    flags: Flags,
    /// Read by a waker only to unpark a sleeper: off the flags' line.
    thread: Thread,
}

/// Steps 1 and 2's flags, 128-byte aligned: the adjacent-line prefetcher
/// pairs lines.
#[repr(align(128))]
struct Flags {
    notified: AtomicBool,
    sleeping: AtomicBool,
    /// How long the next wait spins, in ns (step 3; only the owning
    /// thread reads or writes it, right after taking the line to clear
    /// `notified`, so keeping it here costs no transfer).
    spin_ns: AtomicU64,
}

const _: () = assert!(std::mem::size_of::<Flags>() == 128);

impl Parker {
    /// A parker for `thread` (the only thread that may [`Parker::wait`]).
    pub fn new(thread: Thread) -> Parker {
        Parker {
            flags: Flags {
                notified: AtomicBool::new(false),
                sleeping: AtomicBool::new(false),
                spin_ns: AtomicU64::new(SPIN.as_nanos() as u64),
            },
            thread,
        }
    }

    /// Step 1: wakes the thread (now, or its next wait returns at once).
    pub fn notify(&self) {
        self.flags.notified.store(true, SeqCst);
        if self.flags.sleeping.load(SeqCst) {
            self.thread.unpark();
        }
    }

    /// Clears a notification already seen (the thread is about to look
    /// for work anyway).
    pub fn clear(&self) {
        // Written only if set: an executor clears at every round, and a
        // store would take the line from a waker about to set it.
        if self.flags.notified.load(SeqCst) {
            self.flags.notified.store(false, SeqCst);
        }
    }

    /// Step 2: returns once notified (spinning first, then parked).
    pub fn wait(&self) {
        let start = Instant::now();
        let spin = Duration::from_nanos(self.flags.spin_ns.load(Relaxed));
        let mut spins = 0u32;
        // Looks before it swaps, so a spinning thread only reads the line
        // the waker writes.
        while !(self.flags.notified.load(SeqCst) && self.flags.notified.swap(false, SeqCst)) {
            spins += 1;
            if spins.is_multiple_of(64) && start.elapsed() >= spin {
                self.flags.sleeping.store(true, SeqCst);
                if !self.flags.notified.load(SeqCst) {
                    std::thread::park();
                }
                self.flags.sleeping.store(false, SeqCst);
                spins = 0;
                continue;
            }
            std::hint::spin_loop();
        }
        // 3. The next wait's budget.
        let waited_ns = start.elapsed().as_nanos().min(u64::MAX as u128) as u64;
        self.flags
            .spin_ns
            .store(next_spin_ns(spin.as_nanos() as u64, waited_ns), Relaxed);
    }
}

/// Step 3: the spin budget after a wait of `waited_ns` that had `spin_ns`
/// to spin. A wait shorter than [`SPIN`] is one spinning pays for: the
/// whole budget. A longer one halves it (down to nothing: the thread
/// parks at once, and the next short wait restores it).
fn next_spin_ns(spin_ns: u64, waited_ns: u64) -> u64 {
    let full_ns = SPIN.as_nanos() as u64;
    if waited_ns < full_ns {
        full_ns
    } else {
        spin_ns / 2
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL_NS: u64 = SPIN.as_nanos() as u64;

    #[test]
    fn long_waits_halve_the_spin_until_the_thread_parks_at_once() {
        let mut spin_ns = FULL_NS;
        for _ in 0..16 {
            spin_ns = next_spin_ns(spin_ns, 200_000);
        }
        assert_eq!(
            spin_ns, 0,
            "a thread that always waits 200 µs stops spinning"
        );
    }

    #[test]
    fn one_short_wait_restores_the_whole_spin() {
        assert_eq!(next_spin_ns(0, 4_000), FULL_NS);
        assert_eq!(next_spin_ns(FULL_NS, 4_000), FULL_NS);
        assert_eq!(next_spin_ns(FULL_NS, FULL_NS), FULL_NS / 2);
    }

    #[test]
    fn a_notified_thread_returns_without_parking_and_a_parked_one_wakes() {
        let parker = std::sync::Arc::new(Parker::new(std::thread::current()));
        parker.notify();
        parker.wait(); // returns at once: the flag was set
        let p = parker.clone();
        let waker = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            p.notify();
        });
        parker.wait(); // parks past its spin, woken by the notify
        waker.join().unwrap();
        assert!(
            parker.flags.spin_ns.load(Relaxed) < FULL_NS,
            "a 20 ms wait shrinks the spin"
        );
    }
}
