//! One attempt of a component's invocation: steps 4–7 of the lifecycle
//! (`docs/faas.md`), the counterpart of the module path's
//! `invoke::run_attempt`.
//!
//! The guest runs on a wasmtime fiber (`instantiate_async`, `call_async`)
//! wherever the attempt runs:
//!
//! * on an executor (`Runtime::invoke_async`, `invoke_http_async`): a
//!   keyvalue read that needs a page suspends the invocation (`kv.rs`),
//!   the guest yields to the executor's other tasks at every epoch tick
//!   and traps at its deadline, as a module's does; no thread is held
//!   while it waits;
//! * on a blocking caller's thread (`Runtime::invoke`, `invoke_http`):
//!   that thread drives the fiber (`exec::block_on`); reads wait for the
//!   disk in place and the guest traps at its deadline without yielding.
//!
//! A guest can also wait inside WASI itself (a `wasi:io/poll` on a
//! timer, a stream): wasmtime-wasi's futures need a tokio context, so
//! every poll of the attempt runs in wasmtime-wasi's runtime ([`Guarded`]),
//! and an attempt that is still waiting when its deadline passes ends as
//! `Timeout` (a timer armed at its first suspension) rather than holding
//! its instance forever.

use super::{Compiled, ComponentState, Entry, FaasletPre, http};
use crate::abi::{HostState, LogBudget};
use crate::error::InvokeError;
use crate::invoke::{Alive, Failed, classify_error, panic_text};
use crate::limits::MAX_OUTPUT_LEN;
use crate::registry::Function;
use crate::wasip1::Fixed;
use rime_storage::OwnedTx;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use wasmtime::component::{ComponentExportIndex, InstancePre, Resource, ResourceTable};
use wasmtime::{Engine, Store};
use wasmtime_wasi_http::p2::types::{HostIncomingRequest, HostResponseOutparam};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpView};

/// Steps 4–7 for a component: one attempt of the invocation's
/// transaction. The same inputs as the module path's
/// `invoke::run_attempt`, plus the component and the attempt's fixed
/// clock and seed; `global` is a global function's attempt
/// (`crate::global`), which its keyvalue calls use instead of `txn` and
/// which comes back with the outcome for step 8.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn run_attempt(
    engine: &Engine,
    f: &Arc<Function>,
    c: &Compiled,
    input: &Arc<[u8]>,
    txn: OwnedTx,
    global: Option<Box<crate::global::Attempt>>,
    log: &mut LogBudget,
    fixed: Fixed,
    instances: &AtomicU64,
) -> (
    OwnedTx,
    Option<Box<crate::global::Attempt>>,
    Result<Vec<u8>, Failed>,
) {
    // Declared before the store: dropped after it on every path, so the
    // count never shows a slot free that is not back yet.
    let mut alive = None;
    // `nowait` (reads that do not wait) exactly when on an executor.
    let mut host = HostState::new(f.clone(), std::mem::take(log), txn, input.clone());
    host.global = global;
    let yielding = host.nowait;
    // Rime's imports synchronous (`blocking.rs`) when none of them can
    // suspend: reads wait in place and there is no cluster to wait for.
    let waiting = !host.nowait && host.global.is_none();
    let output = crate::wasip1::Output::default();
    let state = ComponentState {
        host,
        wasi: crate::wasip1::builder(f, fixed, &output).build(),
        table: ResourceTable::new(),
        http: WasiHttpCtx::new(),
        http_hooks: http::NoOutgoing,
        live_handles: 0,
    };
    let mut store = Store::new(engine, state);
    store.limiter(|s| &mut s.host.limiter);
    crate::invoke::set_deadline(&mut store, f.config.deadline, yielding);
    // 4–6: instantiate, run, outcome.
    let call = async {
        match &c.entry {
            Entry::Handler(pre) => {
                let pre = pre.pick(waiting);
                call_handler(&mut store, pre, input, f, &mut alive, instances).await
            }
            Entry::Http { pre, handle } => {
                let pre = pre.pick(waiting);
                call_http(&mut store, pre, handle, input, f, &mut alive, instances).await
            }
        }
    };
    let r = Guarded::new(call, f.config.deadline).await;
    let mut r = match r {
        Ok(r) => r,
        Err(Stopped::Panicked(p)) => Err(Failed::Final(InvokeError::Trap(p))),
        Err(Stopped::Expired) => Err(Failed::Final(InvokeError::Timeout(f.config.deadline))),
    };
    // 7. Drop: the store and its instance go, and the slots return to the
    // pool, before the commit.
    let state = store.into_data();
    drop(alive);
    let mut host = state.host;
    // An HTTP response's body is read once the guest's end of it is gone
    // with its store: all of it is buffered by then.
    if let Ok(Outcome::Http(sent)) = r {
        r = http::collect(sent, MAX_OUTPUT_LEN)
            .await
            .map(Outcome::Done)
            .map_err(|e| Failed::Final(response_error(e)));
    }
    output.log(&mut host.log, f, true);
    *log = host.log;
    let r = r.map(|o| match o {
        Outcome::Done(output) => output,
        Outcome::Http(_) => unreachable!("collected above"),
    });
    (host.txn, host.global, r)
}

/// What a call that did not fail produced.
enum Outcome {
    Done(Vec<u8>),
    /// What the HTTP handler sent to its response-outparam.
    Http(http::Sent),
}

/// Why [`Guarded`] ended an attempt early.
enum Stopped {
    /// A host call panicked (a bug): the attempt's error, never an unwind
    /// into the executor.
    Panicked(String),
    /// The deadline passed while the attempt waited inside WASI.
    Expired,
}

/// An attempt's future, polled inside wasmtime-wasi's ambient tokio
/// runtime (its pollables are tokio timers and streams; an executor
/// thread has no runtime of its own), with host panics caught and a
/// deadline for an attempt that stops being woken: at its first
/// suspension a timer is armed at the deadline, so an attempt waiting on
/// a pollable that never becomes ready ends instead of holding its
/// instance. The common attempt, which never suspends, arms none.
struct Guarded<F> {
    call: Pin<Box<F>>,
    deadline: Instant,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<F: Future> Guarded<F> {
    fn new(call: F, deadline: Duration) -> Self {
        Guarded {
            call: Box::pin(call),
            deadline: Instant::now() + deadline,
            timer: None,
        }
    }
}

impl<F: Future> Future for Guarded<F> {
    type Output = Result<F::Output, Stopped>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let _entered = wasi_runtime().enter();
        {
            let polled = std::panic::catch_unwind(AssertUnwindSafe(|| this.call.as_mut().poll(cx)));
            match polled {
                Ok(Poll::Ready(r)) => return Poll::Ready(Ok(r)),
                Err(p) => return Poll::Ready(Err(Stopped::Panicked(panic_text(&p)))),
                Ok(Poll::Pending) => {}
            }
            let deadline = this.deadline;
            let timer = this
                .timer
                .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline.into())));
            match timer.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Err(Stopped::Expired)),
                Poll::Pending => Poll::Pending,
            }
        }
    }
}

/// wasmtime-wasi's own tokio runtime (a multi-threaded one with timers and
/// I/O): what its functions use on a thread outside any runtime, as an
/// executor's is. Entered explicitly even on a thread inside another
/// runtime (a caller's), whose timers may be disabled. Its handle is
/// taken once, on a thread of its own, where no other runtime is current
/// (if no thread can start, on this one: the ambient runtime here).
fn wasi_runtime() -> &'static tokio::runtime::Handle {
    static HANDLE: std::sync::OnceLock<tokio::runtime::Handle> = std::sync::OnceLock::new();
    let ambient =
        || wasmtime_wasi::runtime::with_ambient_tokio_runtime(tokio::runtime::Handle::current);
    HANDLE.get_or_init(|| {
        std::thread::scope(|s| {
            std::thread::Builder::new()
                .name("rime-wasi-rt".into())
                .spawn_scoped(s, ambient)
                .ok()
                .and_then(|t| t.join().ok())
                .unwrap_or_else(ambient)
        })
    })
}

fn response_error(e: String) -> InvokeError {
    if e.contains("length limit exceeded") {
        return InvokeError::OutputTooLarge {
            max: MAX_OUTPUT_LEN,
        };
    }
    InvokeError::Function {
        code: rime_abi::RESULT_ERROR,
        message: e,
    }
}

async fn call_handler<'a>(
    store: &mut Store<ComponentState>,
    pre: &FaasletPre<ComponentState>,
    input: &Arc<[u8]>,
    f: &Function,
    alive: &mut Option<Alive<'a>>,
    instances: &'a AtomicU64,
) -> Result<Outcome, Failed> {
    let instance = pre
        .instantiate_async(&mut *store)
        .await
        .map_err(|e| fail(store, e, f))?;
    *alive = Some(Alive::new(instances));
    let call = instance
        .rime_faaslet_handler()
        .call_handle(&mut *store, input)
        .await;
    match call {
        Ok(Ok(output)) if output.len() > MAX_OUTPUT_LEN => {
            Err(Failed::Final(InvokeError::OutputTooLarge {
                max: MAX_OUTPUT_LEN,
            }))
        }
        Ok(Ok(output)) => Ok(Outcome::Done(output)),
        Ok(Err(message)) => Err(Failed::Final(function_error(store, message))),
        Err(e) => Err(trapped(store, e, f)),
    }
}

type HandleArgs = (
    Resource<HostIncomingRequest>,
    Resource<HostResponseOutparam>,
);

async fn call_http<'a>(
    store: &mut Store<ComponentState>,
    pre: &InstancePre<ComponentState>,
    handle: &ComponentExportIndex,
    input: &Arc<[u8]>,
    f: &Function,
    alive: &mut Option<Alive<'a>>,
    instances: &'a AtomicU64,
) -> Result<Outcome, Failed> {
    let Some(req) = http::decode_request(input) else {
        return Err(Failed::Final(InvokeError::Internal(
            "an HTTP invocation's input is not an encoded request".into(),
        )));
    };
    let instance = pre
        .instantiate_async(&mut *store)
        .await
        .map_err(|e| fail(store, e, f))?;
    *alive = Some(Alive::new(instances));
    let (sender, mut receiver) = tokio::sync::oneshot::channel();
    let args = (|| {
        let mut view = store.data_mut().http();
        let req = view.new_incoming_request(
            wasmtime_wasi_http::p2::bindings::http::types::Scheme::Http,
            req,
        )?;
        let out = view.new_response_outparam(sender)?;
        wasmtime::Result::<HandleArgs>::Ok((req, out))
    })()
    .map_err(|e| Failed::Final(InvokeError::Internal(format!("{e:#}"))))?;
    let func = instance
        .get_typed_func::<HandleArgs, ()>(&mut *store, handle)
        .map_err(|e| fail(store, e, f))?;
    match func.call_async(&mut *store, args).await {
        Ok(()) => Ok(Outcome::Http(receiver.try_recv())),
        Err(e) => Err(trapped(store, e, f)),
    }
}

/// A call that trapped: the global store's error that ended it, or the
/// storage error that abandoned it, if any.
fn trapped(store: &mut Store<ComponentState>, e: wasmtime::Error, f: &Function) -> Failed {
    let host = &mut store.data_mut().host;
    if let Some(ge) = host.global.as_mut().and_then(|g| g.error.take()) {
        return Failed::Final(ge);
    }
    if let Some(txe) = host.tx_error.take() {
        return Failed::Tx(txe);
    }
    fail(store, e, f)
}

/// The handler's `err`: the function's error, or the write set's if a
/// write was refused for it (as for a module).
fn function_error(store: &Store<ComponentState>, message: String) -> InvokeError {
    if store.data().host.writes.refused {
        return InvokeError::WriteSetFull {
            max: crate::limits::MAX_WRITE_SET_BYTES,
        };
    }
    InvokeError::Function {
        code: rime_abi::RESULT_ERROR,
        message,
    }
}

fn fail(store: &Store<ComponentState>, e: wasmtime::Error, f: &Function) -> Failed {
    let denied = store.data().host.limiter.denied;
    let panic = store.data().host.panic.clone();
    Failed::Final(classify_error(e, denied, panic, f))
}
