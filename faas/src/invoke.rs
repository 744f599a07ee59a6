//! One invocation: a `Db::transaction` whose closure instantiates the
//! function, runs `rime_invoke` and drops the instance. The numbered steps
//! are those of `docs/faas.md` ("Lifecycle of an invocation"); each is
//! marked where it happens: 1 in `Inner::invoke` (`lib.rs`), 2, 3, 8 and 9
//! in [`invoke`], 4 to 7 in `run_attempt`.

use crate::abi::{BadPointer, HostState, LogBudget};
use crate::error::InvokeError;
use crate::exec::{self, Outcome};
use crate::limits::{MAX_INPUT_LEN, MAX_OUTPUT_LEN, MAX_WRITE_SET_BYTES};
use crate::registry::{Code, Function};
use rime_abi::RESULT_OK;
use rime_storage::{Committed, Db, OwnedTx, TxError};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use wasmtime::{Engine, Store, Trap, UpdateDeadline};

/// A committed invocation.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Invocation {
    pub output: Vec<u8>,
    /// Attempts re-run after a serialization conflict.
    pub retries: u32,
    /// Wall time, all attempts and the commit included.
    pub duration: Duration,
    /// The lines the guest logged, in order, every attempt's (at most
    /// `MAX_LOG_LINES_PER_INVOCATION` lines and `MAX_LOG_BYTES_PER_INVOCATION`
    /// bytes).
    pub logs: Vec<crate::GuestLog>,
}

/// How one attempt ended, when it did not produce output to commit: the
/// error type of the invocation's `Db::transaction` closure.
pub(crate) enum Failed {
    /// A storage error (a conflict once the attempts are used up).
    Tx(TxError),
    /// The invocation's final answer (nothing commits).
    Final(InvokeError),
}

impl From<TxError> for Failed {
    fn from(e: TxError) -> Self {
        Failed::Tx(e)
    }
}

/// Runs `f` (found in step 1 by the caller) on `input` as one transaction:
///
/// 2. **Admission**: input over `MAX_INPUT_LEN` is refused before anything runs.
/// 3. **Transaction**: an attempt starts with an empty `OwnedTx` and runs
///    steps 4–7 (`run_attempt`: instantiate, run, outcome, drop). Host
///    calls may suspend it (a page to read); the guest yields at epoch
///    ticks.
/// 8. **Commit**: an `Ok` attempt is validated (read set, scanned ranges)
///    and committed. On an executor, a commit that latches pages first
///    has them loaded (`OwnedTx::commit_misses`, suspending for their
///    reads, all in flight together) and then commits in the same poll,
///    so it never waits for its executor's reads. Then the invocation
///    waits (suspended) for the log to be durable through it →
///    [`Invocation`]. `gate` says whether the
///    caller still wants it: a cancelled invocation never commits.
/// 9. **Conflict**: an invalid attempt goes back to 3 with the same input
///    (a global function's after a random pause; a local one's at once,
///    then, past [`MAX_INVOKE_ATTEMPTS`], after letting its executor run
///    the others once), until it has made [`MAX_INVOKE_ATTEMPTS`] and its
///    deadline has passed ([`gives_up`]): then `Conflict`.
///
/// `instances` counts the instances alive (`RuntimeStats::instances`).
pub(crate) async fn invoke(
    engine: &Engine,
    db: &Db,
    f: &Arc<Function>,
    input: Arc<[u8]>,
    instances: &AtomicU64,
    gate: Option<&Outcome>,
    log_sink: Option<crate::LogSink>,
) -> Result<Invocation, InvokeError> {
    // 2. Admission.
    if input.len() > MAX_INPUT_LEN {
        return Err(InvokeError::InputTooLarge {
            len: input.len(),
            max: MAX_INPUT_LEN,
        });
    }
    let start = Instant::now();
    // One log budget for the invocation, whatever the number of attempts.
    let mut log = LogBudget {
        sink: log_sink,
        ..LogBudget::default()
    };
    // The clock and random seed of a WASI module's or a component's every
    // attempt.
    let fixed = f.imports_wasi().then(crate::wasip1::Fixed::sample);
    let mut txn = db.begin();
    let mut attempts: u32 = 0;
    loop {
        attempts += 1;
        if attempts > 1 && !exec::io::on_executor() {
            // Threads contending for a key: let the winner finish.
            std::thread::yield_now();
        }
        // 3. On an executor, at once: the conflict came from a commit this
        // thread just ran (or another executor's), and in this same poll
        // the re-run finds its pages in memory and commits without
        // waiting, before any other task here reads the key again.
        let fresh = attempts > 1;
        let (back, global, output) =
            run_attempt(engine, f, &input, txn, &mut log, fixed, instances, fresh).await;
        txn = back;
        let output = match output {
            Ok(output) => output,
            Err(Failed::Tx(e)) => return Err(e.into()),
            Err(Failed::Final(e)) => return Err(e),
        };
        // 8. Commit of a global function: its namespaces are all global
        // (its local transaction is empty), so the attempt commits in its
        // global store (`crate::global`, `docs/global.md`).
        if let Some(global) = global {
            if gate.is_some_and(|g| !g.begin_commit()) {
                return Err(InvokeError::Cancelled);
            }
            let cluster = global.cluster();
            if !global.commit().await? {
                // 9. Conflict: give up, or re-run after a random pause
                // (`global::backoff`).
                if gives_up(attempts, start, f.config.deadline) {
                    return Err(InvokeError::Conflict { attempts });
                }
                crate::global::backoff(attempts, cluster.as_deref()).await;
                continue;
            }
            return Ok(Invocation {
                output,
                retries: attempts - 1,
                duration: start.elapsed(),
                logs: log.kept,
            });
        }
        // 8. Commit. On an executor, first load the pages it latches
        // (`OwnedTx::commit_misses`), then commit in the same poll; if
        // they keep being evicted before the task runs again, commit
        // waiting for them once the thread has no reads in flight.
        if txn.commit_latches_pages() && exec::io::on_executor() {
            let mut misses = Vec::new();
            for round in 0.. {
                txn.commit_misses(&mut misses).map_err(InvokeError::from)?;
                if misses.is_empty() {
                    break;
                }
                if round == MAX_COMMIT_LOAD_ROUNDS {
                    exec::io::quiescent().await;
                    break;
                }
                exec::io::load_all(&misses)
                    .await
                    .map_err(InvokeError::from)?;
            }
        }
        if gate.is_some_and(|g| !g.begin_commit()) {
            return Err(InvokeError::Cancelled);
        }
        let pending = match txn.commit().map_err(InvokeError::from)? {
            Committed::Durable(p) => p,
            // 9. Conflict.
            Committed::Conflict if gives_up(attempts, start, f.config.deadline) => {
                return Err(InvokeError::Conflict { attempts });
            }
            Committed::Conflict => {
                if attempts >= MAX_INVOKE_ATTEMPTS && exec::io::on_executor() {
                    exec::yield_once().await;
                }
                continue;
            }
        };
        pending.await.map_err(InvokeError::from)?;
        return Ok(Invocation {
            output,
            retries: attempts - 1,
            duration: start.elapsed(),
            logs: log.kept,
        });
    }
}

/// Whether an invocation gives up after its `attempts`th conflict: once
/// it has made [`MAX_INVOKE_ATTEMPTS`] and its first attempt began
/// `deadline` ago. A writer that keeps losing a hot key under load so
/// re-runs for as long as the function may run, not a fixed count:
/// a global key has no lock to wait on and 64 attempts alone ran out in
/// ~0.2 s of backoff (`a_counter_incremented_from_three_nodes_is_exact`,
/// under load); a local invocation on an executor preempted mid-attempt
/// (more executors than cores) lost 64 in a row once in ~460k increments
/// of one counter over HTTP, and answered `409` to a client that had
/// done nothing wrong.
fn gives_up(attempts: u32, start: Instant, deadline: Duration) -> bool {
    attempts >= MAX_INVOKE_ATTEMPTS && start.elapsed() >= deadline
}

/// Rounds of loading a commit's pages (`OwnedTx::commit_misses`) before
/// it gives up on finding them all in memory at once (a pool too small
/// for the pages in flight evicts some before the task runs again) and
/// commits waiting for them, once its thread has no reads in flight.
const MAX_COMMIT_LOAD_ROUNDS: u32 = 4;

/// Attempts an invocation makes at least before it gives up with a
/// conflict (it also waits for its deadline, [`gives_up`]), and the
/// attempts a local one re-runs at once before it lets its executor run
/// the others between attempts: 64, four times the Db's default.
const MAX_INVOKE_ATTEMPTS: u32 = 64;

pub(crate) fn panic_text(p: &Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "host panic".into())
}

/// An instance counted in `RuntimeStats::instances` until dropped.
pub(crate) struct Alive<'a>(&'a AtomicU64);

impl<'a> Alive<'a> {
    pub(crate) fn new(count: &'a AtomicU64) -> Alive<'a> {
        count.fetch_add(1, Ordering::Relaxed);
        Alive(count)
    }
}

impl Drop for Alive<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A global function's attempt (`crate::global`), to commit.
type GlobalAttempt = Option<Box<crate::global::Attempt>>;

/// Steps 4–7 of the lifecycle: one attempt of the transaction. The store
/// owns `txn` (and a global function's attempt) while the guest runs; they
/// come back with the outcome. `fresh`: a re-run, whose global reads skip
/// the local tier (`global::Attempt`).
#[allow(clippy::too_many_arguments)]
async fn run_attempt(
    engine: &Engine,
    f: &Arc<Function>,
    input: &Arc<[u8]>,
    txn: OwnedTx,
    log: &mut LogBudget,
    fixed: Option<crate::wasip1::Fixed>,
    instances: &AtomicU64,
    fresh: bool,
) -> (OwnedTx, GlobalAttempt, Result<Vec<u8>, Failed>) {
    let (pre, pre_suspending, exports) = match &f.code {
        Code::Module {
            pre,
            pre_suspending,
            exports,
            ..
        } => (pre, pre_suspending, *exports),
        // A component: its own store and host state (`crate::component`).
        Code::Component(c) => {
            let fixed = fixed.unwrap_or_else(crate::wasip1::Fixed::sample);
            let global = crate::global::Attempt::of(f, fresh);
            return crate::component::run_attempt(
                engine, f, c, input, txn, global, log, fixed, instances,
            )
            .await;
        }
    };
    // Declared before the store, so that on every path it is dropped after
    // it: the count never shows a slot free that is not yet back.
    let mut alive: Option<Alive<'_>> = None;
    // 4. Instantiate: a store with the per-instance `HostState` (limiter,
    // namespace handles, transaction, output buffer) and the deadline; the
    // instance takes a slot of the pooling allocator (none free:
    // `Overloaded`).
    let mut store = Store::new(
        engine,
        HostState::new(f.clone(), std::mem::take(log), txn, input.clone()),
    );
    store.limiter(|s| &mut s.limiter);
    if let Some(fixed) = fixed {
        store.data_mut().wasi = crate::wasip1::Wasi::new(fixed);
    }
    store.data_mut().global = crate::global::Attempt::of(f, fresh);
    // On an executor the guest runs on a fiber and yields at every epoch
    // tick, so others on its executor run; past its deadline it traps
    // (`Timeout`). On a blocking caller's thread it runs on that thread's
    // stack (no fiber to switch to: its host calls wait for the disk in
    // place) and only traps at its deadline, counted in ticks.
    let on_fiber = store.data().nowait;
    set_deadline(&mut store, f.config.deadline, on_fiber);
    let r = async {
        let instance = if on_fiber {
            pre_suspending.instantiate_async(&mut store).await
        } else {
            pre.instantiate(&mut store)
        };
        let instance = instance.map_err(|e| Failed::Final(classify(&mut store, e, f)))?;
        alive = Some(Alive::new(instances));
        let memory = instance
            .get_module_export(&mut store, &exports.memory)
            .and_then(wasmtime::Extern::into_memory);
        let entry = instance
            .get_module_export(&mut store, &exports.invoke)
            .and_then(wasmtime::Extern::into_func)
            .map(|func| func.typed::<(), i32>(&store));
        let (Some(memory), Some(Ok(entry))) = (memory, entry) else {
            // Checked at deploy; unreachable unless wasmtime changed its mind.
            return Err(Failed::Final(InvokeError::Internal(
                "module lost its exports".into(),
            )));
        };
        // 5. Run: host calls read and write through the attempt's
        // transaction, which buffers the writes and shows them to later
        // reads.
        store.data_mut().memory = Some(memory);
        // A WASI reactor's constructors run first, in every instance.
        let init = f
            .imports_wasi()
            .then(|| crate::wasip1::initializer(&instance, &mut store))
            .flatten();
        let r = if on_fiber {
            CatchUnwind(Box::pin(async {
                if let Some(init) = init {
                    init.call_async(&mut store, ()).await?;
                }
                entry.call_async(&mut store, ()).await
            }))
            .await
        } else {
            std::panic::catch_unwind(AssertUnwindSafe(|| {
                if let Some(init) = init {
                    init.call(&mut store, ())?;
                }
                entry.call(&mut store, ())
            }))
        }
        .unwrap_or_else(|p| Err(wasmtime::Error::msg(panic_text(&p))));
        // 6. Outcome: only `RESULT_OK` is `Ok`; anything else commits nothing.
        outcome(&mut store, r, f)
    }
    .await;
    // 7. Drop: the store and its instance go, and the slot returns to the
    // pool, before the commit (and its wait for the log).
    let mut state = store.into_data();
    drop(alive);
    // What a WASI guest wrote to stdout/stderr and did not log yet.
    state.wasi.finish(&mut state.log, &state.function);
    *log = state.log;
    (state.txn, state.global, r)
}

/// Arms an attempt's deadline. On an executor (`yielding`) the guest
/// yields at every epoch tick, so others on its executor run, and traps
/// past its deadline (`Timeout`); elsewhere it traps at its deadline,
/// counted in ticks, and never yields (nothing else runs on that thread).
pub(crate) fn set_deadline<T: 'static>(store: &mut Store<T>, deadline: Duration, yielding: bool) {
    if yielding {
        let deadline = Instant::now() + deadline;
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            Ok(if Instant::now() >= deadline {
                UpdateDeadline::Interrupt
            } else {
                UpdateDeadline::Yield(1)
            })
        });
    } else {
        store.set_epoch_deadline(deadline_ticks(deadline));
        store.epoch_deadline_trap();
    }
}

/// Epoch ticks for a deadline: rounded up, plus one because the current
/// tick is already partly gone.
pub(crate) fn deadline_ticks(deadline: Duration) -> u64 {
    (deadline.as_nanos().div_ceil(crate::EPOCH_TICK.as_nanos()) as u64).saturating_add(1)
}

/// A host panic (a bug) as an error of the attempt, never unwinding into
/// the executor: wasmtime carries a panic of a host call on the fiber out
/// through the call's poll.
pub(crate) struct CatchUnwind<F>(pub(crate) Pin<Box<F>>);

impl<F: Future> Future for CatchUnwind<F> {
    type Output = Result<F::Output, Box<dyn std::any::Any + Send>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match std::panic::catch_unwind(AssertUnwindSafe(|| self.0.as_mut().poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(r)) => Poll::Ready(Ok(r)),
            Err(p) => Poll::Ready(Err(p)),
        }
    }
}

/// Step 6: what `rime_invoke`'s result (or trap) means for the attempt.
fn outcome(
    store: &mut Store<HostState>,
    r: Result<i32, wasmtime::Error>,
    f: &Function,
) -> Result<Vec<u8>, Failed> {
    match r {
        Ok(RESULT_OK) => Ok(std::mem::take(&mut store.data_mut().output)),
        Ok(code) => {
            let st = store.data_mut();
            if st.output_refused {
                return Err(Failed::Final(InvokeError::OutputTooLarge {
                    max: MAX_OUTPUT_LEN,
                }));
            }
            if st.writes.refused {
                return Err(Failed::Final(InvokeError::WriteSetFull {
                    max: MAX_WRITE_SET_BYTES,
                }));
            }
            Err(Failed::Final(InvokeError::Function {
                code,
                message: String::from_utf8_lossy(&st.output).into_owned(),
            }))
        }
        Err(e) => {
            // A global store's error inside a host call ends the invocation.
            if let Some(ge) = store
                .data_mut()
                .global
                .as_mut()
                .and_then(|g| g.error.take())
            {
                return Err(Failed::Final(ge));
            }
            // A storage error inside a host call goes to the Db.
            if let Some(txe) = store.data_mut().tx_error.take() {
                return Err(Failed::Tx(txe));
            }
            Err(Failed::Final(classify(store, e, f)))
        }
    }
}

fn classify(store: &mut Store<HostState>, e: wasmtime::Error, f: &Function) -> InvokeError {
    let denied = store.data().limiter.denied;
    classify_error(e, denied, store.data_mut().panic.take(), f)
}

/// What a failed instantiation or call means: `denied` says whether the
/// memory limiter refused a growth, `panic` is the message of a panic the
/// SDK reported before trapping.
pub(crate) fn classify_error(
    e: wasmtime::Error,
    denied: bool,
    panic: Option<String>,
    f: &Function,
) -> InvokeError {
    if let Some(Trap::Interrupt) = e.downcast_ref::<Trap>() {
        return InvokeError::Timeout(f.config.deadline);
    }
    if let Some(b) = e.downcast_ref::<BadPointer>() {
        return InvokeError::Trap(b.to_string());
    }
    if let Some(exit) = crate::wasip1::exit_message(&e) {
        return InvokeError::Trap(exit);
    }
    if denied {
        return InvokeError::MemoryLimit {
            limit: f.config.memory_bytes,
        };
    }
    if let Some(p) = e.downcast_ref::<wasmtime::PoolConcurrencyLimitError>() {
        return InvokeError::Overloaded(p.to_string());
    }
    // A panic the SDK reported: its message says more than `unreachable`.
    if let Some(panic) = panic {
        return InvokeError::Trap(format!("panicked: {panic}"));
    }
    // The trap itself and the innermost guest frame, not the whole backtrace.
    let mut msg = e.root_cause().to_string();
    if let Some(frame) = e
        .downcast_ref::<wasmtime::WasmBacktrace>()
        .and_then(|bt| bt.frames().first())
        && let Some(name) = frame.func_name()
    {
        msg.push_str(&format!(" in {name}"));
    }
    InvokeError::Trap(msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_invocation_gives_up_only_after_64_attempts_and_its_deadline() {
        let deadline = Duration::from_millis(50);
        let now = Instant::now();
        let long_ago = now - Duration::from_secs(1);
        assert!(!gives_up(MAX_INVOKE_ATTEMPTS, now, deadline));
        assert!(!gives_up(MAX_INVOKE_ATTEMPTS - 1, long_ago, deadline));
        assert!(gives_up(MAX_INVOKE_ATTEMPTS, long_ago, deadline));
        assert!(gives_up(MAX_INVOKE_ATTEMPTS + 100, long_ago, deadline));
    }
}
