//! Clients as tasks, for engines whose [`Engine::tasks`] is true
//! (`rime-tasks`): a row's thread count N is the number of clients in
//! flight, spread over one worker thread per core. Each client is a closed
//! loop over the workload, as a worker thread of [`crate::runner`] is, but
//! no operation holds a thread while it waits for a sync: the client starts
//! it with [`Engine::start`], and its next operation begins when the
//! outcome is called back (a write once durable; a read once what it read
//! is durable, at once if it already was).
//!
//! One worker thread's loop:
//! 1. Start one operation of each of its clients; every callback goes to
//!    this thread's channel.
//! 2. Take the next callback from the channel; record the operation's
//!    latency (from its start to its callback) and its outcome.
//! 3. Start that client's next operation, unless the run is over (time is
//!    up, or every operation of `Stop::Ops` is claimed).
//! 4. Once no client has an operation in flight, return what was counted.
//!
//! An operation is measured if it started while measuring (the warm-up's
//! last ones finish unmeasured), as on a worker thread; the thread's end is
//! its last measured completion.
//!
//! [`Engine::tasks`]: crate::engine::Engine::tasks
//! [`Engine::start`]: crate::engine::Engine::start

use crate::engine::{OnDone, Request, Result};
use crate::generator::Rng64;
use crate::runner::{CLAIM, Worker, WorkerOut, op_index, stamp_front};
use crate::workload::{Op, value_into};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::time::{Duration, Instant};

/// How long a worker waits for any callback before it gives up on the
/// operations still in flight (each counted as an error): a run never
/// hangs on a callback that does not come.
const CALLBACK_TIMEOUT: Duration = Duration::from_secs(60);

/// Worker threads for `clients` clients: one per core, no more than there
/// are clients.
pub fn worker_threads(clients: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    cores.min(clients.max(1))
}

/// How many of `clients` worker `t` of `workers` runs (spread evenly).
pub fn clients_of(t: usize, workers: usize, clients: usize) -> usize {
    let clients = clients.max(1);
    (t + 1) * clients / workers - t * clients / workers
}

/// An operation's callback, sent to the worker thread of its client.
struct Done {
    client: usize,
    op: Op,
    started: Instant,
    called_back: Instant,
    measured: bool,
    /// An insert's record number: acknowledged once it has an outcome.
    insert: Option<u64>,
    result: Result<bool>,
}

/// Runs `clients` clients on this worker thread (steps 1–4 above).
pub(crate) fn run_clients(w: Worker<'_>, clients: usize) -> WorkerOut {
    let (tx, rx) = channel();
    let mut c = Clients::new(w, tx);
    let mut in_flight: u64 = 0;
    for client in 0..clients {
        in_flight += u64::from(c.start_next(client));
    }
    c.drain(&rx, in_flight);
    c.shared_progress();
    c.out
}

/// One worker thread's clients and counts.
struct Clients<'a> {
    w: Worker<'a>,
    rng: Rng64,
    out: WorkerOut,
    /// Callbacks send here.
    tx: Sender<Done>,
    measuring: bool,
    /// Measured operations this thread may still start before claiming
    /// more; `exhausted` once `Stop::Ops`'s total is claimed.
    budget: u64,
    exhausted: bool,
    /// Measured operations done but not yet added to the progress count.
    pending: u64,
    key: Vec<u8>,
    value: Vec<u8>,
}

impl<'a> Clients<'a> {
    fn new(w: Worker<'a>, tx: Sender<Done>) -> Clients<'a> {
        let value_len = w.cfg.value_len;
        Clients {
            rng: w.rng(),
            measuring: w.shared.measuring.load(Ordering::Acquire),
            w,
            out: WorkerOut::new(),
            tx,
            budget: 0,
            exhausted: false,
            pending: 0,
            key: Vec::with_capacity(32),
            value: Vec::with_capacity(value_len),
        }
    }

    /// Steps 2–4: takes callbacks until none of the `in_flight`
    /// operations is left, starting each client's next one as its last
    /// returns.
    fn drain(&mut self, rx: &Receiver<Done>, mut in_flight: u64) {
        while in_flight > 0 {
            match rx.recv_timeout(CALLBACK_TIMEOUT) {
                Ok(done) => {
                    in_flight -= 1;
                    let client = done.client;
                    self.finish(done);
                    in_flight += u64::from(self.start_next(client));
                }
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => {
                    self.out.errors += in_flight;
                    self.out.first_error.get_or_insert_with(|| {
                        format!(
                            "{in_flight} operations had no callback within {} s",
                            CALLBACK_TIMEOUT.as_secs()
                        )
                    });
                    return;
                }
            }
        }
    }

    /// Starts `client`'s next operation (true), unless the run is over.
    fn start_next(&mut self, client: usize) -> bool {
        let shared = self.w.shared;
        if self.exhausted || shared.stop.load(Ordering::Relaxed) {
            return false;
        }
        if !self.measuring && shared.measuring.load(Ordering::Acquire) {
            self.measuring = true;
        }
        if self.measuring && self.budget == 0 {
            self.shared_progress();
            match shared.claim(self.w.cfg.stop, CLAIM) {
                Some(n) => self.budget = n,
                None => {
                    self.exhausted = true;
                    return false;
                }
            }
        }
        if self.measuring {
            self.budget -= 1;
        }
        let op = self.w.ops.pick(self.rng.next_f64());
        self.start(client, op);
        true
    }

    /// Starts `client`'s operation `op`; its callback reports to this
    /// thread.
    fn start(&mut self, client: usize, op: Op) {
        let insert = (op == Op::Insert).then(|| self.w.shared.inserts.next());
        let n = match insert {
            Some(n) => n,
            None => {
                let last = self.w.shared.inserts.limit();
                self.w.keys.next_upto(&mut self.rng, last)
            }
        };
        self.w.cfg.key_format.key_into(n, &mut self.key);
        let seed = self.rng.next_u64();
        let measured = self.measuring;
        let tx = self.tx.clone();
        let started = Instant::now();
        let on_done: OnDone = Box::new(move |result| {
            let called_back = Instant::now();
            // The worker stopped listening only after giving up on this
            // operation (and counting it as an error).
            let _ = tx.send(Done {
                client,
                op,
                started,
                called_back,
                measured,
                insert,
                result,
            });
        });
        let (engine, key) = (self.w.engine, &self.key);
        match op {
            Op::Read => engine.start(Request::Read(key), on_done),
            Op::Scan => {
                let len = 1 + (seed % self.w.cfg.workload.max_scan_len as u64) as usize;
                engine.start(Request::Scan(key, len), on_done);
            }
            Op::ReadModifyWrite => {
                let stamp = seed.to_le_bytes();
                let mut modify = |old: &[u8], new: &mut Vec<u8>| stamp_front(&stamp, old, new);
                engine.start(Request::Rmw(key, &mut modify), on_done);
            }
            Op::Insert | Op::Update => {
                value_into(seed, self.w.cfg.value_len, &mut self.value);
                let req = match op {
                    Op::Insert => Request::Insert(key, &self.value),
                    _ => Request::Update(key, &self.value),
                };
                engine.start(req, on_done);
            }
        }
    }

    /// Step 2: an operation's callback.
    fn finish(&mut self, done: Done) {
        let mut result = done.result;
        if let Some(n) = done.insert {
            // A failed insert is acknowledged too (as on a worker thread).
            if let Err(e) = self.w.shared.inserts.acknowledge(n) {
                result = result.and(Err(e.into()));
            }
        }
        if done.measured {
            self.count(done.op, done.started, done.called_back, result);
        }
    }

    /// Counts one measured operation that ran from `started` to `ended`.
    fn count(&mut self, op: Op, started: Instant, ended: Instant, r: Result<bool>) {
        let ns = (ended - started).as_nanos().max(1) as u64;
        self.w.lat.record(ns, 1, op.writes());
        self.out.per_op[op_index(op)] += 1;
        self.out.ops += 1;
        self.out.end = self.out.end.max(ended);
        self.pending += 1;
        match r {
            Ok(true) => {}
            Ok(false) => self.out.not_found += 1,
            Err(e) => self.out.error(e),
        }
    }

    /// Adds the operations done since the last call to the progress count.
    fn shared_progress(&mut self) {
        let n = std::mem::take(&mut self.pending);
        self.w.shared.completed.fetch_add(n, Ordering::Relaxed);
    }
}
