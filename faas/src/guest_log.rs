//! Guest log lines as the embedder sees them. The host `log` call sends
//! each line to `tracing` (target `rime::faaslet`), to the runtime's
//! [`LogSink`] if one is set (`RuntimeConfig::log_sink`: the server keeps
//! a ring per function, the CLI prints to stderr), and keeps it in the
//! invocation's [`crate::Invocation::logs`]. No transport here: the sink
//! is a plain callback.

use std::sync::Arc;

/// The level of a guest log line (the `log` import's `level`, clamped).
pub use rime_abi::Level as LogLevel;

/// One line a guest logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestLog {
    /// The function that logged it.
    pub function: String,
    pub level: LogLevel,
    /// The text (invalid UTF-8 replaced, cut to the ABI's limits).
    pub message: String,
}

/// A callback for every guest log line, called on the thread running the
/// invocation: it must be quick and must not block (copy the line and
/// return). Lines of attempts that are later re-run after a conflict are
/// sent too, as they were logged.
#[derive(Clone)]
pub struct LogSink(Arc<dyn Fn(&GuestLog) + Send + Sync>);

impl LogSink {
    pub fn new(f: impl Fn(&GuestLog) + Send + Sync + 'static) -> LogSink {
        LogSink(Arc::new(f))
    }

    pub(crate) fn send(&self, line: &GuestLog) {
        (self.0)(line)
    }
}

impl std::fmt::Debug for LogSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LogSink(..)")
    }
}

/// The lower-case name of `level`: `error`, `warn`, `info`, `debug`, `trace`.
pub fn level_name(level: LogLevel) -> &'static str {
    match level {
        LogLevel::Error => "error",
        LogLevel::Warn => "warn",
        LogLevel::Info => "info",
        LogLevel::Debug => "debug",
        LogLevel::Trace => "trace",
    }
}
