//! One invocation: a `Db::transaction` whose closure instantiates the
//! function, runs `rime_invoke` and drops the instance. The numbered steps
//! are those of `docs/faas.md` ("Lifecycle of an invocation"); each is
//! marked where it happens: 1 in `Inner::invoke` (`lib.rs`), 2, 3, 8 and 9
//! in [`invoke`], 4 to 7 in `run_attempt`.

use crate::abi::{BadPointer, HostState, LogBudget, Scope};
use crate::engine::deadline_ticks;
use crate::error::InvokeError;
use crate::limits::{MAX_INPUT_LEN, MAX_OUTPUT_LEN, MAX_WRITE_SET_BYTES};
use crate::registry::Function;
use rime_abi::{EXPORT_INVOKE, EXPORT_MEMORY, RESULT_OK};
use rime_storage::{Db, Tx, TxError};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use wasmtime::{Engine, Store, Trap};

/// A committed invocation.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Invocation {
    pub output: Vec<u8>,
    /// Attempts re-run after a serialization conflict.
    pub retries: u32,
    /// Wall time, all attempts and the commit included.
    pub duration: Duration,
}

/// How one attempt ended, when it did not produce output to commit: the
/// error type of the invocation's `Db::transaction` closure.
enum Failed {
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
/// 3. **Transaction**: `Db::transaction_with_attempts` starts an attempt with
///    empty buffers and calls the closure, which runs steps 4–7
///    (`run_attempt`: instantiate, run, outcome, drop).
/// 8. **Commit**: an `Ok` closure result is validated (read set, scanned
///    ranges) and committed by the Db → [`Invocation`].
/// 9. **Conflict**: an invalid attempt goes back to 3 with the same input,
///    up to [`MAX_INVOKE_ATTEMPTS`], then `Conflict`.
///
/// `instances` counts the instances alive (`RuntimeStats::instances`).
pub(crate) fn invoke(
    engine: &Engine,
    db: &Db,
    f: &Arc<Function>,
    input: &[u8],
    instances: &AtomicU64,
) -> Result<Invocation, InvokeError> {
    // 2. Admission.
    if input.len() > MAX_INPUT_LEN {
        return Err(InvokeError::InputTooLarge {
            len: input.len(),
            max: MAX_INPUT_LEN,
        });
    }
    let start = Instant::now();
    let mut attempts = 0u32;
    // One log budget for the invocation, whatever the number of attempts.
    let mut log = LogBudget::default();
    // 3. Transaction: the Db calls the closure once per attempt, with a
    // fresh `Tx`; it commits (8) what an `Ok` attempt wrote, or re-runs the
    // closure after a conflict (9). An `Err` ends the transaction with
    // nothing committed.
    let r = db.transaction_with_attempts(MAX_INVOKE_ATTEMPTS, |tx| {
        attempts += 1;
        catch_unwind(AssertUnwindSafe(|| {
            run_attempt(engine, f, input, tx, &mut log, instances)
        }))
        .unwrap_or_else(|p| Err(Failed::Final(InvokeError::Internal(panic_text(&p)))))
    });
    // 8. Commit (done by the Db: `Ok` here means durable per its mode), or
    // 9. Conflict once the attempts are used up.
    match r {
        Ok(output) => Ok(Invocation {
            output,
            retries: attempts.saturating_sub(1),
            duration: start.elapsed(),
        }),
        Err(Failed::Tx(TxError::Conflict { .. })) => Err(InvokeError::Conflict { attempts }),
        // `From<TxError>` makes a `CommitTooLarge` the write-set error.
        Err(Failed::Tx(e)) => Err(e.into()),
        Err(Failed::Final(e)) => Err(e),
    }
}

/// Attempts before an invocation gives up with a conflict: 64 (four times
/// the Db's default) lets every increment of a hot counter land under heavy
/// contention on many cores, while still bounding what one invocation can
/// cost (backoff is capped at 1 ms an attempt).
const MAX_INVOKE_ATTEMPTS: u32 = 64;

fn panic_text(p: &Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "host panic".into())
}

/// An instance counted in `RuntimeStats::instances` until dropped.
struct Alive<'a>(&'a AtomicU64);

impl<'a> Alive<'a> {
    fn new(count: &'a AtomicU64) -> Alive<'a> {
        count.fetch_add(1, Ordering::Relaxed);
        Alive(count)
    }
}

impl Drop for Alive<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Steps 4–7 of the lifecycle: one attempt inside the transaction.
fn run_attempt(
    engine: &Engine,
    f: &Arc<Function>,
    input: &[u8],
    tx: &mut Tx<'_>,
    log: &mut LogBudget,
    instances: &AtomicU64,
) -> Result<Vec<u8>, Failed> {
    // Declared before the store, so that on every path it is dropped after
    // it: the count never shows a slot free that is not yet back.
    let _alive: Alive<'_>;
    // 4. Instantiate: a store with the per-instance `HostState` (limiter,
    // namespace handles, output buffer) and the epoch deadline; the
    // instance takes a slot of the pooling allocator (none free: `Overloaded`).
    let mut store = Store::new(engine, HostState::new(f.clone(), *log));
    store.limiter(|s| &mut s.limiter);
    store.set_epoch_deadline(deadline_ticks(f.config.deadline));
    store.epoch_deadline_trap();
    let instance = f
        .pre
        .instantiate(&mut store)
        .map_err(|e| Failed::Final(classify(&mut store, e, f)))?;
    _alive = Alive::new(instances);
    let memory = instance.get_memory(&mut store, EXPORT_MEMORY);
    let entry = instance.get_typed_func::<(), i32>(&mut store, EXPORT_INVOKE);
    let (Some(memory), Ok(entry)) = (memory, entry) else {
        // Checked at deploy; unreachable unless wasmtime changed its mind.
        return Err(Failed::Final(InvokeError::Internal(
            "module lost its exports".into(),
        )));
    };
    // 5. Run: host calls read and write through the attempt's `Tx`, which
    // buffers the writes and shows them to later reads.
    store.data_mut().memory = Some(memory);
    store.data_mut().scope = Some(Scope::new(tx, input));
    let r = entry.call(&mut store, ());
    // `Scope`'s invariant: cleared as soon as the call is over.
    store.data_mut().scope = None;
    *log = store.data().log;
    // 6. Outcome: only `RESULT_OK` returns `Ok` from the closure; anything
    // else is an `Err`, so nothing commits.
    let outcome = outcome(&mut store, r, f);
    // 7. Drop: the store and its instance go, and the slot returns to the
    // pool, before the closure returns (and before a commit waits on the log).
    drop(store);
    outcome
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
            // A storage error inside a host call goes to the Db.
            if let Some(txe) = store.data_mut().tx_error.take() {
                return Err(Failed::Tx(txe));
            }
            Err(Failed::Final(classify(store, e, f)))
        }
    }
}

fn classify(store: &mut Store<HostState>, e: wasmtime::Error, f: &Function) -> InvokeError {
    if let Some(Trap::Interrupt) = e.downcast_ref::<Trap>() {
        return InvokeError::Timeout(f.config.deadline);
    }
    if let Some(b) = e.downcast_ref::<BadPointer>() {
        return InvokeError::Trap(b.to_string());
    }
    if store.data().limiter.denied {
        return InvokeError::MemoryLimit {
            limit: f.config.memory_bytes,
        };
    }
    if let Some(p) = e.downcast_ref::<wasmtime::PoolConcurrencyLimitError>() {
        return InvokeError::Overloaded(p.to_string());
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
