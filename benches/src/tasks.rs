//! Clients as tasks, for engines whose [`Engine::tasks`] is true
//! (`rime-tasks`): a row's thread count N is the number of clients in
//! flight, spread over one worker thread per core. Each client is a closed
//! loop over the workload, as a worker thread of [`crate::runner`] is, but
//! a write does not hold a thread while it waits for its sync: the client
//! starts it with [`Engine::write_then`], and its next operation begins
//! when the write's durability is called back.
//!
//! One worker thread's loop:
//! 1. Start each of its clients. A client runs reads and scans on the spot
//!    (they wait for no sync) until it picks a write, which it starts and
//!    leaves in flight; its callback goes to this thread's channel.
//! 2. Take the next callback from the channel; record the write's latency
//!    (from its start to its callback) and its outcome.
//! 3. Start that client's next operations as in 1, unless the run is over
//!    (time is up, or every operation of `Stop::Ops` is claimed).
//! 4. Once no client has a write in flight, return what was counted.
//!
//! An operation is measured if it started while measuring (the warm-up's
//! last writes finish unmeasured), exactly as on a worker thread; the
//! thread's end is its last measured completion.
//!
//! [`Engine::tasks`]: crate::engine::Engine::tasks
//! [`Engine::write_then`]: crate::engine::Engine::write_then

use crate::engine::{OnDurable, Result, Write};
use crate::generator::Rng64;
use crate::runner::{CLAIM, Worker, WorkerOut, op_index, stamp_front};
use crate::workload::{Op, value_into};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::time::{Duration, Instant};

/// How long a worker waits for any callback before it gives up on the
/// writes still in flight (each counted as an error): a run never hangs on
/// a callback that does not come.
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

/// A write's callback, sent to the worker thread of its client.
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
    read_buf: Vec<u8>,
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
            read_buf: Vec::with_capacity(value_len),
        }
    }

    /// Steps 2–4: takes callbacks until none of the `in_flight` writes is
    /// left, starting each client's next operations as its write returns.
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
                            "{in_flight} writes had no durability callback within {} s",
                            CALLBACK_TIMEOUT.as_secs()
                        )
                    });
                    return;
                }
            }
        }
    }

    /// Runs `client`'s reads and scans until it starts a write (true), or
    /// the run is over (false).
    fn start_next(&mut self, client: usize) -> bool {
        loop {
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
            let op = self.w.ops.pick(self.rng.next_f64());
            if self.measuring {
                self.budget -= 1;
            }
            if op.writes() {
                self.start_write(client, op);
                return true;
            }
            self.read(op);
        }
    }

    /// The key of the next operation on an existing record.
    fn choose_key(&mut self) {
        let n = self
            .w
            .keys
            .next_upto(&mut self.rng, self.w.shared.inserts.limit());
        self.w.cfg.key_format.key_into(n, &mut self.key);
    }

    /// A read or a scan, done and counted now.
    fn read(&mut self, op: Op) {
        self.choose_key();
        let engine = self.w.engine;
        let started = Instant::now();
        let r = match op {
            Op::Scan => {
                let max = self.w.cfg.workload.max_scan_len as u64;
                let len = 1 + self.rng.below(max) as usize;
                engine.scan(&self.key, len).map(|n| n > 0)
            }
            _ => engine.read(&self.key, &mut self.read_buf),
        };
        if self.measuring {
            self.count(op, started, Instant::now(), r);
        }
    }

    /// Starts `client`'s write `op`; its callback reports to this thread.
    fn start_write(&mut self, client: usize, op: Op) {
        let insert = (op == Op::Insert).then(|| self.w.shared.inserts.next());
        match insert {
            Some(n) => self.w.cfg.key_format.key_into(n, &mut self.key),
            None => self.choose_key(),
        }
        let seed = self.rng.next_u64();
        let measured = self.measuring;
        let tx = self.tx.clone();
        let started = Instant::now();
        let on_durable: OnDurable = Box::new(move |result| {
            let called_back = Instant::now();
            // The worker stopped listening only after giving up on this
            // write (and counting it as an error).
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
        let engine = self.w.engine;
        if op == Op::ReadModifyWrite {
            let stamp = seed.to_le_bytes();
            let mut modify = |old: &[u8], new: &mut Vec<u8>| stamp_front(&stamp, old, new);
            engine.write_then(Write::Rmw(&self.key, &mut modify), on_durable);
            return;
        }
        value_into(seed, self.w.cfg.value_len, &mut self.value);
        let write = match op {
            Op::Insert => Write::Insert(&self.key, &self.value),
            _ => Write::Update(&self.key, &self.value),
        };
        engine.write_then(write, on_durable);
    }

    /// Step 2: a write's callback.
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
