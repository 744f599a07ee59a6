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
//! 2. Sleeper: spin on `notified` for up to `SPIN`; then set `sleeping`,
//!    look at `notified` once more, and park unless it is set (an unpark
//!    between the two is not lost: it leaves the thread's token, so the
//!    park returns at once); on waking clear `sleeping`.

use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::thread::Thread;
use std::time::{Duration, Instant};

/// How long a thread out of work spins before it parks: about two
/// futex round trips, so a wake-up that comes this soon costs none.
const SPIN: Duration = Duration::from_micros(30);

/// One thread's wake-up flag.
pub(crate) struct Parker {
    thread: Thread,
    notified: AtomicBool,
    sleeping: AtomicBool,
}

impl Parker {
    /// A parker for `thread` (the only thread that may [`Parker::wait`]).
    pub fn new(thread: Thread) -> Parker {
        Parker {
            thread,
            notified: AtomicBool::new(false),
            sleeping: AtomicBool::new(false),
        }
    }

    /// Step 1: wakes the thread (now, or its next wait returns at once).
    pub fn notify(&self) {
        self.notified.store(true, SeqCst);
        if self.sleeping.load(SeqCst) {
            self.thread.unpark();
        }
    }

    /// Clears a notification already seen (the thread is about to look
    /// for work anyway).
    pub fn clear(&self) {
        self.notified.store(false, SeqCst);
    }

    /// Step 2: returns once notified (spinning first, then parked).
    pub fn wait(&self) {
        let start = Instant::now();
        let mut spins = 0u32;
        while !self.notified.swap(false, SeqCst) {
            spins += 1;
            if spins.is_multiple_of(64) && start.elapsed() >= SPIN {
                self.sleeping.store(true, SeqCst);
                if !self.notified.load(SeqCst) {
                    std::thread::park();
                }
                self.sleeping.store(false, SeqCst);
                spins = 0;
                continue;
            }
            std::hint::spin_loop();
        }
    }
}
