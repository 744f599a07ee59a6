//! The worker pool behind [`crate::Runtime::invoke_async`]: one thread per
//! core (by default) taking invocations from a shared queue.

use crate::error::InvokeError;
use crate::invoke::Invocation;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

type Job = Box<dyn FnOnce() + Send>;

/// Stack of a worker: room for the wasm stack limit plus the host's frames.
const WORKER_STACK: usize = 8 << 20;

pub(crate) struct Pool {
    tx: Mutex<Option<Sender<Job>>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Pool {
    pub fn new(workers: usize) -> Pool {
        let n = if workers == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            workers
        };
        let (tx, rx) = channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let threads = (0..n)
            .map(|i| {
                let rx = rx.clone();
                std::thread::Builder::new()
                    .name(format!("rime-faas-{i}"))
                    .stack_size(WORKER_STACK)
                    .spawn(move || {
                        loop {
                            let job = rx.lock().unwrap_or_else(|p| p.into_inner()).recv();
                            match job {
                                Ok(job) => job(),
                                Err(_) => return, // the pool is gone
                            }
                        }
                    })
                    .expect("spawning a faaslet worker")
            })
            .collect();
        Pool {
            tx: Mutex::new(Some(tx)),
            threads: Mutex::new(threads),
        }
    }

    pub fn submit(&self, job: Job) -> bool {
        match &*self.tx.lock().unwrap_or_else(|p| p.into_inner()) {
            Some(tx) => tx.send(job).is_ok(),
            None => false,
        }
    }

    pub fn workers(&self) -> usize {
        self.threads.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.tx.lock().unwrap_or_else(|p| p.into_inner()).take();
        let me = std::thread::current().id();
        for t in self
            .threads
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            if t.thread().id() != me {
                let _ = t.join();
            }
        }
    }
}

/// An invocation running on the pool.
#[must_use = "wait() for the result"]
pub struct Pending {
    pub(crate) rx: Receiver<Result<Invocation, InvokeError>>,
}

impl Pending {
    /// Blocks until the invocation finishes.
    pub fn wait(self) -> Result<Invocation, InvokeError> {
        self.rx
            .recv()
            .unwrap_or_else(|_| Err(InvokeError::Internal("worker pool shut down".into())))
    }
}
