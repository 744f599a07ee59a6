//! WASI preview 1 for `wasm32-wasip1` modules (`docs/abi.md`, "WASI
//! preview 1 modules"): a module may import `wasi_snapshot_preview1`
//! beside `rime`. The functions are wasmtime-wasi's own (`p1`), linked in
//! the same two linkers as the `rime` calls (the waiting one for a
//! blocking caller's thread, the async one for the executors), so an ABI
//! v1 module's instantiation and calls are untouched: a WASI context is
//! built only when a WASI module makes its first WASI call in an attempt.
//!
//! * `check.rs`: which WASI functions are granted; the deploy-time
//!   messages for modules Rime cannot run.
//! * `fixed.rs`: the clock and random seed sampled once per invocation.
//! * `stdio.rs`: the guest's stdout and stderr, into the function's log.
//!
//! The context is capability-less: no preopened directories (every path
//! call fails with `EBADF`/`ENOTDIR`), no sockets (refused at deploy),
//! no inherited environment; argv is the function's name, the
//! environment is the function's configuration (`--env`, `--secret`:
//! what `rime.config_get` reads); stdin is empty. Components get the same
//! context for WASI preview 2 ([`builder`], `crate::component`).

mod check;
mod fixed;
mod stdio;

pub(crate) use check::{MODULE as WASI_MODULE, check_import, command_module_hint};
pub(crate) use fixed::Fixed;

use crate::abi::{HostCalls, HostState, LogBudget};
use crate::registry::Function;
use std::sync::{Arc, Mutex};
use wasmtime::{AsContextMut, Caller, Instance, Linker, TypedFunc};
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::p1::{self, WasiP1Ctx};

/// The export a WASI reactor (a Rust `cdylib`, a C module built with
/// `-mexec-model=reactor`) needs called once before any other: it runs the
/// module's constructors.
const EXPORT_INITIALIZE: &str = "_initialize";

/// WASI errno `NOTSUP`: what `poll_oneoff` returns (below).
const ERRNO_NOTSUP: i32 = 58;

/// One instance's WASI state: nothing for an ABI v1 module (one word in
/// its `HostState`, never allocated); for a WASI module, the invocation's
/// fixed clock and seed, and the context once its first WASI call built it.
#[derive(Default)]
pub(crate) struct Wasi(Option<Box<Attempt>>);

/// A WASI module's attempt.
struct Attempt {
    fixed: Fixed,
    guest: Option<Guest>,
}

/// A built context and the guest's stdout/stderr not yet logged.
struct Guest {
    ctx: WasiP1Ctx,
    stdio: Output,
}

/// What a guest wrote to stdout and stderr, not yet logged.
#[derive(Clone, Default)]
pub(crate) struct Output(Arc<Mutex<stdio::Captured>>);

impl Output {
    /// Logs what the guest wrote: its complete lines, and its unfinished
    /// ones too if `all` (at the end of an attempt).
    pub(crate) fn log(&self, budget: &mut LogBudget, function: &Function, all: bool) {
        stdio::drain(&self.0, budget, function, all);
    }
}

/// The context every WASI guest of Rime gets (preview 1 modules and
/// preview 2 components alike): argv is the function's name, the
/// environment its configuration, the clocks and random generators
/// `fixed`, stdout and stderr into `output` (the function's log). No
/// preopened directories, no inherited environment, stdin empty, and no
/// network: TCP, UDP and name lookups are refused.
pub(crate) fn builder(function: &Function, fixed: Fixed, output: &Output) -> WasiCtxBuilder {
    let mut b = WasiCtxBuilder::new();
    for s in &function.config.settings {
        b.env(&s.key, String::from_utf8_lossy(&s.value));
    }
    b.arg(&function.name)
        .stdout(stdio::LogPipe::stdout(output.0.clone()))
        .stderr(stdio::LogPipe::stderr(output.0.clone()))
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false);
    fixed.configure(&mut b);
    b
}

impl Wasi {
    /// The state of an attempt of a WASI module's invocation (`fixed`
    /// sampled once for all its attempts).
    pub(crate) fn new(fixed: Fixed) -> Wasi {
        Wasi(Some(Box::new(Attempt { fixed, guest: None })))
    }

    /// The context, built at the first WASI call of the attempt.
    fn ctx(&mut self, function: &Function) -> &mut WasiP1Ctx {
        let attempt = self.0.get_or_insert_with(|| {
            Box::new(Attempt {
                fixed: Fixed::sample(),
                guest: None,
            })
        });
        let fixed = attempt.fixed;
        &mut attempt
            .guest
            .get_or_insert_with(|| Guest::new(function, fixed))
            .ctx
    }

    fn guest(&self) -> Option<&Guest> {
        self.0.as_ref()?.guest.as_ref()
    }

    /// Logs the guest's complete stdout/stderr lines written so far
    /// (before a `rime.log` message, so the log keeps the guest's order).
    pub(crate) fn log_lines(&self, budget: &mut LogBudget, function: &Function) {
        if let Some(g) = self.guest() {
            g.stdio.log(budget, function, false);
        }
    }

    /// End of an attempt: logs everything the guest wrote and did not
    /// log yet, unfinished lines included.
    pub(crate) fn finish(&self, budget: &mut LogBudget, function: &Function) {
        if let Some(g) = self.guest() {
            g.stdio.log(budget, function, true);
        }
    }
}

impl Guest {
    fn new(function: &Function, fixed: Fixed) -> Guest {
        let stdio = Output::default();
        Guest {
            ctx: builder(function, fixed, &stdio).build_p1(),
            stdio,
        }
    }
}

/// The projection wasmtime-wasi calls at every WASI call.
fn ctx(st: &mut HostState) -> &mut WasiP1Ctx {
    st.wasi.ctx(&st.function)
}

/// Adds `wasi_snapshot_preview1` to `l`: waiting calls (wasmtime-wasi
/// runs them to completion in place) or async ones (on an executor's
/// fiber; with no files and no sockets none of them ever pends).
pub(crate) fn add_to_linker(
    l: &mut Linker<HostState>,
    calls: HostCalls,
) -> Result<(), wasmtime::Error> {
    match calls {
        HostCalls::Waiting => p1::add_to_linker_sync(l, ctx)?,
        HostCalls::Suspending => p1::add_to_linker_async(l, ctx)?,
    }
    // An attempt does not wait for time to pass (its clocks are fixed,
    // `fixed.rs`) nor for files or sockets it cannot have: `poll_oneoff`
    // (what `sleep` calls) says so instead of blocking a thread.
    l.allow_shadowing(true);
    l.func_wrap(
        WASI_MODULE,
        "poll_oneoff",
        |_: Caller<'_, HostState>, _subs: i32, _events: i32, _n: i32, _out: i32| ERRNO_NOTSUP,
    )?;
    l.allow_shadowing(false);
    Ok(())
}

/// A WASI reactor's `_initialize`, if it exports one: called before
/// `rime_invoke` in every instance.
pub(crate) fn initializer(
    instance: &Instance,
    store: impl AsContextMut<Data = HostState>,
) -> Option<TypedFunc<(), ()>> {
    instance
        .get_typed_func::<(), ()>(store, EXPORT_INITIALIZE)
        .ok()
}

/// What to tell the caller when the guest called `proc_exit` (C's `exit`,
/// Rust's `std::process::exit`) instead of returning from `rime_invoke`.
pub(crate) fn exit_message(e: &wasmtime::Error) -> Option<String> {
    let code = e.downcast_ref::<wasmtime_wasi::I32Exit>()?.0;
    Some(format!(
        "the function called proc_exit({code}) (exit) instead of returning from \
         `rime_invoke`; nothing was committed"
    ))
}
