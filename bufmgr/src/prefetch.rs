//! Prefetch: start reading pages that will be needed soon, without waiting.
//!
//! [`BufferManager::prefetch`] filters the ids down to evicted pages and
//! hands them to the pool's prefetch thread (started on first use), which
//! latches them, reads them in one submission and publishes them exactly as
//! a miss would. A thread that touches such a page meanwhile finds it
//! LOADING and sleeps until it is in. Errors are not reported to the caller
//! (it has moved on); the page stays evicted and the next real access reads
//! it again and gets the error itself.

use crate::PageId;
use crate::manager::{BufferManager, Inner};
use crate::state::EVICTED;
use crate::stats::Counter;
use std::sync::mpsc::{Sender, channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Requests a prefetch thread gathers into one submission at most: a ring's
/// worth (see the io_uring file's ring size), so one batch is one submit.
const MAX_PREFETCH_BATCH: usize = 256;

/// The prefetch thread and the channel that feeds it.
type Worker = (Sender<Vec<PageId>>, JoinHandle<()>);

#[derive(Default)]
pub(crate) struct Prefetcher {
    worker: Mutex<Option<Worker>>,
}

impl Prefetcher {
    pub(crate) fn stop(&self) {
        let worker = self.worker.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some((tx, handle)) = worker {
            drop(tx);
            let _ = handle.join();
        }
    }
}

impl BufferManager {
    /// Starts loading the given pages in the background; returns at once.
    /// Ids that are out of range or already resident are skipped.
    pub fn prefetch(&self, pids: &[PageId]) {
        let inner = &self.inner;
        let todo: Vec<PageId> = pids
            .iter()
            .copied()
            .filter(|&p| {
                inner.check_pid(p, 1).is_ok() && inner.meta(p).state.load().state() == EVICTED
            })
            .collect();
        if todo.is_empty() {
            return;
        }
        let mut worker = self
            .prefetcher
            .worker
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if worker.is_none() {
            let (tx, rx) = channel::<Vec<PageId>>();
            let inner = Arc::clone(&self.inner);
            let spawned = std::thread::Builder::new()
                .name("rime-prefetch".into())
                .spawn(move || {
                    while let Ok(pids) = rx.recv() {
                        for chunk in pids.chunks(MAX_PREFETCH_BATCH) {
                            prefetch_batch(&inner, chunk);
                        }
                    }
                });
            match spawned {
                Ok(handle) => *worker = Some((tx, handle)),
                Err(e) => {
                    tracing::warn!(error = %e, "could not start the prefetch thread; prefetch is off");
                    return;
                }
            }
        }
        if let Some((tx, _)) = worker.as_ref() {
            let _ = tx.send(todo);
        }
    }
}

fn prefetch_batch(inner: &Inner, pids: &[PageId]) {
    let mut frames = Vec::with_capacity(pids.len());
    for &pid in pids {
        let meta = inner.meta(pid);
        let seen = meta.state.load();
        if meta.state.try_lock_evicted(seen) {
            meta.set_loading(true);
            frames.push((pid, 1));
        }
    }
    if frames.is_empty() {
        return;
    }
    match inner.load_locked(&frames) {
        Ok(()) => inner.count(Counter::Prefetched, frames.len() as u64),
        Err(e) => tracing::debug!(error = %e, "prefetch failed; the next access will retry"),
    }
}
