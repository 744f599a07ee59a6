//! Every lock, condition variable and atomic of this crate, in one place, so
//! that `--cfg loom` can swap in loom's model-checked versions (see
//! DESIGN.md: "All atomics and locks of a crate go through one sync module").

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicU64, Ordering};
#[cfg(loom)]
pub(crate) use loom::sync::{Condvar, Mutex, MutexGuard};

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
#[cfg(not(loom))]
pub(crate) use std::sync::{Condvar, Mutex, MutexGuard};

/// Locks `m`, ignoring std's lock poisoning: no code in this crate panics
/// while holding a lock, and the WAL has its own, explicit poisoning for
/// I/O failures ([`crate::WalError::Poisoned`]).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
