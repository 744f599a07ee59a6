//! A component's stdout and stderr: captured per attempt and logged as the
//! function's (stdout at `info`, stderr at `warn`, one message a line),
//! within the invocation's log budget, like ABI v1's `log`.

use crate::abi::{LogBudget, emit_log};
use crate::registry::Function;
use rime_abi::Level;
use wasmtime_wasi::WasiCtx;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;

/// Bytes of stdout (and as many of stderr) one attempt may write. The log
/// keeps far less (`MAX_LOG_BYTES_PER_INVOCATION`); past this the stream
/// is closed, and a Rust guest's `println!` then panics (a trap), so it is
/// generous.
pub(crate) const MAX_CAPTURED_STDIO_BYTES: usize = 1 << 20;

/// The two pipes of one attempt.
pub(crate) struct Stdio {
    stdout: MemoryOutputPipe,
    stderr: MemoryOutputPipe,
}

/// A capability-less WASI context: no arguments, environment, preopened
/// directories or network (TCP, UDP and name lookup all refused); stdin
/// empty; stdout and stderr captured.
pub(crate) fn context() -> (Stdio, WasiCtx) {
    let stdio = Stdio {
        stdout: MemoryOutputPipe::new(MAX_CAPTURED_STDIO_BYTES),
        stderr: MemoryOutputPipe::new(MAX_CAPTURED_STDIO_BYTES),
    };
    let ctx = WasiCtx::builder()
        .stdout(stdio.stdout.clone())
        .stderr(stdio.stderr.clone())
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .build();
    (stdio, ctx)
}

impl Stdio {
    /// Logs what the attempt wrote, a message per line.
    pub(crate) fn log(&self, budget: &mut LogBudget, function: &Function) {
        for (pipe, level) in [(&self.stdout, Level::Info), (&self.stderr, Level::Warn)] {
            let bytes = pipe.contents();
            for line in bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                emit_log(budget, function, level, line);
            }
        }
    }
}
