//! Executors: one thread per core (by default), each running many
//! invocations as tasks, none of which holds the thread while it waits.
//!
//! An invocation is a future (`invoke::invoke`) whose guest runs on a
//! wasmtime fiber. It suspends where it would wait: a host call that needs
//! a page not in memory (`io::load`), a commit whose pages are not in
//! memory (`io::load_all`), a commit that waits for the log to
//! be durable (`rime_storage::Pending`), a guest whose epoch tick came
//! (fairness: a CPU-bound guest yields to the others every
//! [`crate::EPOCH_TICK`]). Its executor meanwhile runs the others, and
//! gives all their reads to the disk together.
//!
//! Life of a task:
//!
//! 1. **Admitted** by [`Executors::spawn`] while fewer than
//!    `max_admitted` invocations are admitted and not finished (else
//!    `Overloaded`), and queued on the executor with the fewest.
//! 2. **Started** by its executor once fewer than its share of
//!    `max_instances` run there (each running task may hold an instance).
//! 3. **Ready**: polled in the executor's next round; it runs until it
//!    finishes or suspends.
//! 4. **Suspended**: its waker is with what it waits for (a page's read,
//!    the log's sync, its own yield). Waking it makes it ready (3).
//! 5. **Finished**: its slot is freed; its result went to its
//!    [`Invoking`] (or nowhere, if that was dropped).
//!
//! One round of the executor loop:
//!
//! 1. Start queued tasks while under the share (step 2 above).
//! 2. Poll every ready task once.
//! 3. Hand the pages they asked for to the thread's `Reads` (a read per
//!    page, shared by every task that waits for it). Nothing a task does
//!    waits for these reads: scans stop at a leaf not in memory as point
//!    reads do, and a commit that latches pages has them loaded first
//!    and commits in the poll that finds them all in
//!    (`rime_storage::Reads`, step 4; `OwnedTx::commit_misses`).
//! 4. Only if a commit's pages kept being evicted before it could run
//!    (`invoke`, step 8) does a task wait to latch pages: then wait for
//!    every read of this thread to complete first, and make those tasks
//!    ready.
//! 5. Submit the new reads and reap completions in one system call: wait
//!    for one only if no task is ready; make their tasks ready.
//! 6. With nothing ready and nothing in flight, park until woken.

pub(crate) mod io;
mod park;
mod task;

pub use task::Invoking;
pub(crate) use task::{Outcome, block_on, until_cancelled};

use park::Parker;
use rime_storage::{Db, Reads};
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::JoinHandle;

/// Suspends the calling task once: it is ready again at once, and runs
/// after the tasks its executor has ready now.
pub(crate) async fn yield_once() {
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if yielded {
            return Poll::Ready(());
        }
        yielded = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    })
    .await
}

/// A task: an invocation, with its result's delivery.
pub(crate) type Task = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Stack of an executor thread: its own frames only (guests and host
/// calls run on fiber stacks from the engine's pool).
const EXECUTOR_STACK: usize = 2 << 20;

/// The executors of a runtime. Lock order: none nests (each lock below is
/// taken alone and briefly).
pub(crate) struct Executors {
    each: Vec<Arc<Shared>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// Invocations admitted and not finished, over all executors.
    admitted: Arc<AtomicUsize>,
    max_admitted: usize,
}

/// What an executor shares with other threads.
struct Shared {
    /// Admitted tasks not yet started (step 1 of a task's life).
    queue: Mutex<VecDeque<Task>>,
    /// Keys of tasks woken since the executor last looked.
    woken: Mutex<Vec<u64>>,
    /// Tasks queued or started here and not finished: placement.
    load: AtomicUsize,
    /// Wakes the executor thread (set once it is spawned).
    parker: OnceLock<Parker>,
    stop: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    fn unpark(&self) {
        if let Some(p) = self.parker.get() {
            p.notify();
        }
    }
}

impl Executors {
    /// Starts `threads` executors (0: one per core) over `db`, running at
    /// most `max_running` tasks at once over all of them.
    pub fn start(db: &Arc<Db>, threads: usize, max_running: usize, max_admitted: usize) -> Self {
        let n = match threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let share = (max_running / n).max(1);
        let admitted = Arc::new(AtomicUsize::new(0));
        let each: Vec<Arc<Shared>> = (0..n)
            .map(|_| {
                Arc::new(Shared {
                    queue: Mutex::new(VecDeque::new()),
                    woken: Mutex::new(Vec::new()),
                    load: AtomicUsize::new(0),
                    parker: OnceLock::new(),
                    stop: AtomicBool::new(false),
                })
            })
            .collect();
        let mut handles = Vec::with_capacity(n);
        for (i, shared) in each.iter().enumerate() {
            let (mine, db, admitted) = (shared.clone(), db.clone(), admitted.clone());
            let spawned = std::thread::Builder::new()
                .name(format!("rime-exec-{i}"))
                .stack_size(EXECUTOR_STACK)
                .spawn(move || Executor::new(mine, db.reads(), share, admitted).run());
            match spawned {
                Ok(h) => {
                    // Set here, not by the thread: `spawn` serves only
                    // executors whose thread is known, from the start.
                    let _ = shared.parker.set(Parker::new(h.thread().clone()));
                    handles.push(h);
                }
                // Its queue is never served: `spawn` skips it.
                Err(e) => tracing::error!(error = %e, "an executor thread did not start"),
            }
        }
        Executors {
            each,
            threads: Mutex::new(handles),
            admitted,
            max_admitted,
        }
    }

    /// Admits `task` (step 1), or says why not (the task is dropped).
    pub fn spawn(&self, task: Task) -> Result<(), Refused> {
        let was = self.admitted.fetch_add(1, Ordering::AcqRel);
        let target = self
            .each
            .iter()
            .filter(|s| s.parker.get().is_some())
            .min_by_key(|s| s.load.load(Ordering::Relaxed));
        let refused = match (was < self.max_admitted, target) {
            (true, Some(s)) => Ok(s),
            (false, _) => Err(Refused::Full(self.max_admitted)),
            (true, None) => Err(Refused::NoExecutor),
        };
        let s = match refused {
            Ok(s) => s,
            Err(r) => {
                self.admitted.fetch_sub(1, Ordering::AcqRel);
                return Err(r);
            }
        };
        s.load.fetch_add(1, Ordering::Relaxed);
        lock(&s.queue).push_back(task);
        s.unpark();
        Ok(())
    }

    /// Invocations admitted and not finished.
    pub fn admitted(&self) -> usize {
        self.admitted.load(Ordering::Relaxed)
    }

    pub fn threads(&self) -> usize {
        self.each.len()
    }
}

/// Why [`Executors::spawn`] refused a task.
#[derive(Debug)]
pub(crate) enum Refused {
    /// This many invocations are in flight already (`max_admitted`).
    Full(usize),
    /// No executor thread could be started.
    NoExecutor,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::Full(n) => write!(f, "{n} invocations in flight (max_admitted)"),
            Refused::NoExecutor => f.write_str("no executor thread could be started"),
        }
    }
}

impl Drop for Executors {
    /// Asks every executor to finish its tasks and stop, and waits for
    /// them, unless this runs on one of them (the last task held the
    /// runtime): that one stops by itself after its round.
    fn drop(&mut self) {
        for s in &self.each {
            s.stop.store(true, Ordering::Release);
            s.unpark();
        }
        let me = std::thread::current().id();
        for h in lock(&self.threads).drain(..) {
            if h.thread().id() != me {
                let _ = h.join();
            }
        }
    }
}

/// Wakes a task: its key joins its executor's woken list.
struct TaskWaker {
    key: u64,
    shared: Arc<Shared>,
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        lock(&self.shared.woken).push(self.key);
        self.shared.unpark();
    }
}

/// A started task in its slot: the key's generation tells a stale wake
/// (of an earlier task in the slot) from a real one.
struct Slot {
    generation: u32,
    task: Option<(Task, Waker)>,
}

/// One executor thread's state: only that thread touches it.
struct Executor {
    shared: Arc<Shared>,
    reads: Reads,
    share: usize,
    admitted: Arc<AtomicUsize>,
    slots: Vec<Slot>,
    free: Vec<usize>,
    running: usize,
    ready: Vec<u64>,
}

fn key(index: usize, generation: u32) -> u64 {
    (u64::from(generation) << 32) | index as u64
}

impl Executor {
    fn new(shared: Arc<Shared>, reads: Reads, share: usize, admitted: Arc<AtomicUsize>) -> Self {
        io::install();
        Executor {
            shared,
            reads,
            share,
            admitted,
            slots: Vec::new(),
            free: Vec::new(),
            running: 0,
            ready: Vec::new(),
        }
    }

    fn run(mut self) {
        loop {
            if let Some(p) = self.shared.parker.get() {
                p.clear(); // this round looks at everything
            }
            self.start_queued();
            self.ready.append(&mut lock(&self.shared.woken));
            let polled = self.poll_ready();
            // Round step 3.
            let quiesce = io::take_requests(|miss| self.reads.request(miss));
            if quiesce {
                // Round step 4.
                self.reads.drain(io::arrived);
                io::quiesced();
            }
            // Round step 5.
            let idle = lock(&self.shared.woken).is_empty() && !quiesce;
            // Waits also for pages other threads are loading that a task
            // here watches (rather than spin on them).
            let wait = idle && self.reads.pending() > 0;
            if self.reads.pending() > 0 {
                self.reads.poll(wait, io::arrived);
            }
            if !idle || polled > 0 || self.reads.pending() > 0 {
                continue;
            }
            // Round step 6.
            if self.shared.stop.load(Ordering::Acquire) && self.running == 0 {
                return;
            }
            if (lock(&self.shared.queue).is_empty() || self.running >= self.share)
                && let Some(p) = self.shared.parker.get()
            {
                p.wait();
            }
        }
    }

    /// Round step 1.
    fn start_queued(&mut self) {
        while self.running < self.share {
            let Some(task) = lock(&self.shared.queue).pop_front() else {
                return;
            };
            let index = self.free.pop().unwrap_or_else(|| {
                self.slots.push(Slot {
                    generation: 0,
                    task: None,
                });
                self.slots.len() - 1
            });
            let slot = &mut self.slots[index];
            slot.generation = slot.generation.wrapping_add(1);
            let k = key(index, slot.generation);
            let waker = Waker::from(Arc::new(TaskWaker {
                key: k,
                shared: self.shared.clone(),
            }));
            slot.task = Some((task, waker));
            self.running += 1;
            self.ready.push(k);
        }
    }

    /// Round step 2: polls each ready task once; returns how many.
    fn poll_ready(&mut self) -> usize {
        let mut polled = 0;
        let ready = std::mem::take(&mut self.ready);
        // Tasks only mail their misses: the count holds for the round.
        io::set_in_flight(self.reads.in_flight());
        for &k in &ready {
            let (index, generation) = ((k & u64::from(u32::MAX)) as usize, (k >> 32) as u32);
            let Some(slot) = self.slots.get_mut(index) else {
                continue;
            };
            if slot.generation != generation {
                continue; // a stale wake
            }
            let Some((task, waker)) = slot.task.as_mut() else {
                continue; // finished, or woken twice in this round
            };
            polled += 1;
            let mut cx = Context::from_waker(waker);
            if let Poll::Ready(()) = task.as_mut().poll(&mut cx) {
                slot.task = None;
                self.free.push(index);
                self.running -= 1;
                self.shared.load.fetch_sub(1, Ordering::Relaxed);
                self.admitted.fetch_sub(1, Ordering::AcqRel);
            }
        }
        self.ready = ready;
        self.ready.clear();
        polled
    }
}
