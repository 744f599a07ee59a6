//! One invocation: a `Db::transaction` whose closure instantiates the
//! function, runs `rime_invoke` and drops the instance (the numbered states
//! are in `docs/faas.md`).

use crate::abi::{BadPointer, HostState, LogBudget, Scope};
use crate::engine::deadline_ticks;
use crate::error::InvokeError;
use crate::limits::{MAX_INPUT_LEN, MAX_OUTPUT_LEN, MAX_WRITE_SET_BYTES};
use crate::registry::Function;
use rime_storage::{Db, Tx, TxError};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
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

/// How one attempt ended, when it did not produce output to commit.
enum Failed {
    /// A storage error: hand it to `Db::transaction` (which returns it).
    Tx(TxError),
    /// The invocation's final answer (nothing commits).
    Final(InvokeError),
}

pub(crate) fn invoke(
    engine: &Engine,
    db: &Db,
    f: &Arc<Function>,
    input: &[u8],
) -> Result<Invocation, InvokeError> {
    if input.len() > MAX_INPUT_LEN {
        return Err(InvokeError::InputTooLarge {
            len: input.len(),
            max: MAX_INPUT_LEN,
        });
    }
    let start = Instant::now();
    let mut attempts = 0u32;
    let mut fail: Option<InvokeError> = None;
    // One log budget for the invocation, whatever the number of attempts.
    let mut log = LogBudget::default();
    let r = db.transaction_with_attempts(MAX_INVOKE_ATTEMPTS, |tx| {
        attempts += 1;
        let r = catch_unwind(AssertUnwindSafe(|| {
            run_attempt(engine, f, input, tx, &mut log)
        }))
        .unwrap_or_else(|p| Err(Failed::Final(InvokeError::Internal(panic_text(&p)))));
        match r {
            Ok(out) => Ok(out),
            Err(Failed::Tx(e)) => Err(e),
            Err(Failed::Final(e)) => {
                fail = Some(e);
                // The marker that makes `transaction` commit nothing.
                Err(TxError::Aborted(String::new()))
            }
        }
    });
    match r {
        Ok(output) => Ok(Invocation {
            output,
            retries: attempts.saturating_sub(1),
            duration: start.elapsed(),
        }),
        Err(TxError::Conflict { .. }) => Err(InvokeError::Conflict { attempts }),
        // `From<TxError>` makes a `CommitTooLarge` the write-set error.
        Err(e) => Err(fail.take().unwrap_or_else(|| e.into())),
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

/// Instantiate, call, collect, drop: one attempt inside the transaction.
fn run_attempt(
    engine: &Engine,
    f: &Arc<Function>,
    input: &[u8],
    tx: &mut Tx<'_>,
    log: &mut LogBudget,
) -> Result<Vec<u8>, Failed> {
    let mut store = Store::new(engine, HostState::new(f.clone(), *log));
    store.limiter(|s| &mut s.limiter);
    store.set_epoch_deadline(deadline_ticks(f.config.deadline));
    store.epoch_deadline_trap();
    let instance = f
        .pre
        .instantiate(&mut store)
        .map_err(|e| Failed::Final(classify(&mut store, e, f)))?;
    let memory = instance.get_memory(&mut store, "memory");
    let entry = instance.get_typed_func::<(), i32>(&mut store, "rime_invoke");
    let (Some(memory), Ok(entry)) = (memory, entry) else {
        // Checked at deploy; unreachable unless wasmtime changed its mind.
        return Err(Failed::Final(InvokeError::Internal(
            "module lost its exports".into(),
        )));
    };
    store.data_mut().memory = Some(memory);
    store.data_mut().scope = Some(Scope::new(tx, input));
    let r = entry.call(&mut store, ());
    // `Scope`'s invariant: cleared as soon as the call is over.
    store.data_mut().scope = None;
    *log = store.data().log;
    match r {
        Ok(0) => Ok(std::mem::take(&mut store.data_mut().output)),
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
            if let Some(txe) = store.data_mut().tx_error.take() {
                return Err(Failed::Tx(txe));
            }
            Err(Failed::Final(classify(&mut store, e, f)))
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
    {
        if let Some(name) = frame.func_name() {
            msg.push_str(&format!(" in {name}"));
        }
    }
    InvokeError::Trap(msg)
}
