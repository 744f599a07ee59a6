//! Where a committer blocked on durability sleeps while the flusher leads:
//! one bell per sync round, so a sync wakes only the committers it made
//! durable, and they wake on a lock of their own rather than the log's
//! state mutex.
//!
//! Before, every blocked committer slept on one condition variable of the
//! state mutex, and each sync woke all of them: those that had appended
//! after the sync's snapshot woke for nothing and slept again (about one
//! such wake per commit at 32 committers), and all of them contended for
//! the state mutex that appenders and the flusher need.
//!
//! 1. Under the state mutex a committer whose record is not durable works
//!    out the round that will cover it ([`round_covering`]): the sync in
//!    flight if its snapshot holds the record, else the one after it.
//! 2. It releases the state mutex and sleeps until that round has ended
//!    ([`Rounds::wait_for`]).
//! 3. The leader of a sync, after publishing its outcome (durable LSN or
//!    poison) under the state mutex, ends its round: it marks it ended
//!    ([`Rounds::mark_ended`]) and, once it has released the state mutex,
//!    wakes that round's sleepers only ([`Rounds::ring`]). A flusher that
//!    has the next batch to write rings only after submitting that batch's
//!    write and sync, so the next sync does not wait behind the wake-ups.
//!    A sync that poisons the log ends every round ([`Rounds::end_all`]):
//!    no later round will be led. Rounds take turns on three condition
//!    variables: a sleeper waits for the round after the one in flight at
//!    most, and a round is rung before the round after it ends, so one
//!    variable never holds two rounds' sleepers.
//! 4. A woken committer checks the state again (its record is durable, or
//!    the log is poisoned or stopping).

use crate::sync::{Condvar, Mutex, lock, wait};

/// Sync rounds ended, and their sleepers.
pub(super) struct Rounds {
    ended: Mutex<u64>,
    /// Round `r`'s sleepers wait on `bells[r % 3]` (step 3).
    bells: [Condvar; 3],
}

/// A round marked ended whose sleepers are still to be woken
/// ([`Rounds::ring`]).
#[must_use = "the round's sleepers sleep until it is rung"]
pub(super) struct Ring(u64);

/// Step 1: the round whose end makes `lsn` durable, given the rounds ended
/// so far and the snapshot end of the sync in flight (if any). Every sync
/// snapshots every record appended before it starts.
pub(super) fn round_covering(lsn: u64, ended: u64, in_flight_end: Option<u64>) -> u64 {
    match in_flight_end {
        Some(end) if lsn >= end => ended + 2,
        _ => ended + 1,
    }
}

impl Rounds {
    pub fn new() -> Self {
        Rounds {
            ended: Mutex::new(0),
            bells: [Condvar::new(), Condvar::new(), Condvar::new()],
        }
    }

    /// Step 2: sleeps until round `round` has ended.
    pub fn wait_for(&self, round: u64) {
        let mut ended = lock(&self.ended);
        while *ended < round {
            ended = wait(self.bell(round), ended);
        }
    }

    fn bell(&self, round: u64) -> &Condvar {
        &self.bells[(round % 3) as usize]
    }

    /// Step 3: round `round` has ended (its outcome is published). A
    /// sleeper that comes now does not sleep; those asleep wake at
    /// [`Rounds::ring`].
    pub fn mark_ended(&self, round: u64) -> Ring {
        let mut ended = lock(&self.ended);
        *ended = (*ended).max(round);
        Ring(round)
    }

    /// Step 3: wakes the sleepers of a round marked ended.
    pub fn ring(&self, ring: Ring) {
        self.bell(ring.0).notify_all();
    }

    /// Wakes every sleeper for good (the flusher stops, or the log is
    /// poisoned: the rounds they wait for may never come).
    pub fn end_all(&self) {
        *lock(&self.ended) = u64::MAX;
        for b in &self.bells {
            b.notify_all();
        }
    }
}

/// `RUSTFLAGS="--cfg loom" cargo test -p rime-storage --lib --release loom`
#[cfg(all(test, loom))]
mod tests {
    use super::*;
    use loom::sync::Arc;
    use loom::thread;

    /// Sleepers of three rounds against a flusher that rings each round
    /// late, as it does with the next batch waiting: round 1 is marked
    /// ended, then (its sleepers still asleep) the flusher goes on, and
    /// rings it only before round 2 ends. Nobody sleeps through its round
    /// (a lost wake-up would deadlock, which loom reports), and nobody
    /// returns before its round has ended. Round 1's and round 3's
    /// sleepers would share a bell with two bells; with three they never
    /// do.
    #[test]
    fn loom_a_round_rung_late_wakes_its_sleepers_and_only_after_it_ended() {
        loom::model(|| {
            let rounds = Arc::new(Rounds::new());
            let ended = Arc::new(crate::sync::AtomicU64::new(0));
            let sleepers: Vec<_> = [1u64, 3]
                .into_iter()
                .map(|round| {
                    let (rounds, ended) = (rounds.clone(), ended.clone());
                    thread::spawn(move || {
                        rounds.wait_for(round);
                        assert!(ended.load(crate::sync::Ordering::Acquire) >= round);
                    })
                })
                .collect();
            let mut owed = None;
            for round in [1u64, 2, 3] {
                if let Some(ring) = owed.take() {
                    rounds.ring(ring);
                }
                ended.store(round, crate::sync::Ordering::Release);
                owed = Some(rounds.mark_ended(round));
                thread::yield_now();
            }
            rounds.ring(owed.take().unwrap());
            for s in sleepers {
                s.join().unwrap();
            }
        });
    }
}
