//! Every lock, condition variable and atomic of this crate, in one place, so
//! that `--cfg loom` can swap in loom's model-checked versions (see
//! DESIGN.md: "All atomics and locks of a crate go through one sync module").
//! No file of this crate names `std::sync`'s locks or atomics directly
//! (`Arc` aside, which loom checks through these).

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicU64, Ordering, fence};
#[cfg(loom)]
pub(crate) use loom::sync::{Condvar, Mutex, MutexGuard, RwLock};

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicBool, AtomicU64, Ordering, fence};
#[cfg(not(loom))]
pub(crate) use std::sync::{Condvar, Mutex, MutexGuard, RwLock};

/// Locks `m`, ignoring std's lock poisoning. The locks this is used for
/// guard data that stays consistent however a holder stops (scratch
/// buffers, counters, the WAL's state, which has its own explicit poisoning
/// for I/O failures: [`crate::WalError::Poisoned`]). A panic in the commit
/// path itself is caught there and poisons the Db (`commit.rs`).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Waits on `cv`, ignoring std's lock poisoning as [`lock`] does.
pub(crate) fn wait<'a, T>(cv: &Condvar, g: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
    cv.wait(g).unwrap_or_else(|p| p.into_inner())
}

/// Waits on `cv` for at most `d`, ignoring std's lock poisoning.
pub(crate) fn wait_timeout<'a, T>(
    cv: &Condvar,
    g: MutexGuard<'a, T>,
    d: std::time::Duration,
) -> MutexGuard<'a, T> {
    match cv.wait_timeout(g, d) {
        Ok((g, _)) => g,
        Err(p) => p.into_inner().0,
    }
}

/// Locks `m` as [`lock`] does, for a lock whose holder may wait for a page:
/// a thread with page reads of its own in flight (an executor's loader)
/// keeps reaping them while it waits, since the holder may be waiting for
/// one of them (`rime_bufmgr::reap_while_blocked`).
pub(crate) fn lock_reaping<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    loop {
        match m.try_lock() {
            Ok(g) => return g,
            Err(std::sync::TryLockError::Poisoned(p)) => return p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => {}
        }
        if !rime_bufmgr::reap_while_blocked() {
            return lock(m);
        }
        std::thread::sleep(rime_bufmgr::BLOCKED_REAP_INTERVAL);
    }
}
