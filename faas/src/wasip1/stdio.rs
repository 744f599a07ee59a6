//! A WASI guest's stdout and stderr, into the function's log: the place
//! `rime.log` writes (tracing target `rime::faaslet`, field `function`),
//! under the same per-invocation budget. A stdout line is an `info`
//! message, a stderr line a `warn`. Lines are logged when the guest next
//! calls `rime.log` and when the attempt ends, so the two keep the order
//! the guest wrote them in.

use crate::abi::{LogBudget, emit_log, log_truncated};
use crate::limits::{MAX_LOG_BYTES_PER_INVOCATION, MAX_LOG_LEN};
use crate::registry::Function;
use bytes::Bytes;
use rime_abi::Level;
use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// How much one write may carry (WASI's usual permit): the guest's libc
/// splits larger writes.
const WRITE_PERMIT_BYTES: usize = 64 << 10;

/// What the guest wrote and the log has not yet taken.
#[derive(Default)]
pub(super) struct Captured {
    /// Whole lines, in the order written, with their level.
    lines: VecDeque<(Level, Vec<u8>)>,
    /// The unfinished line of stdout, of stderr.
    partial: [Vec<u8>; 2],
    /// Bytes the guest wrote in this attempt, at most the invocation's
    /// log budget (which bounds what this holds).
    written_bytes: usize,
    /// Output was dropped: more than the invocation may log.
    dropped: bool,
}

impl Captured {
    fn write(&mut self, stream: usize, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            // Nothing past the log budget would ever be logged: drop it
            // here rather than hold it.
            if self.written_bytes >= MAX_LOG_BYTES_PER_INVOCATION {
                self.dropped = true;
                return;
            }
            let room = MAX_LOG_BYTES_PER_INVOCATION - self.written_bytes;
            let line_end = bytes.iter().position(|&b| b == b'\n');
            let take = line_end.map_or(bytes.len(), |i| i + 1).min(room);
            let (chunk, rest) = bytes.split_at(take);
            bytes = rest;
            let text = chunk.strip_suffix(b"\n");
            let partial = &mut self.partial[stream];
            partial.extend_from_slice(text.unwrap_or(chunk));
            self.written_bytes += chunk.len();
            // A line ends at its newline, or when it reaches the longest
            // message the log takes.
            if text.is_some() || partial.len() >= MAX_LOG_LEN {
                let line = std::mem::take(partial);
                self.lines.push_back((LEVELS[stream], line));
            }
        }
    }
}

/// The level of each stream's lines.
const LEVELS: [Level; 2] = [Level::Info, Level::Warn];

/// Logs what `captured` holds, through the invocation's budget: its
/// whole lines, and its unfinished ones too if `all`.
pub(super) fn drain(
    captured: &Mutex<Captured>,
    budget: &mut LogBudget,
    function: &Function,
    all: bool,
) {
    let mut c = lock(captured);
    if all {
        for (stream, level) in LEVELS.into_iter().enumerate() {
            let line = std::mem::take(&mut c.partial[stream]);
            if !line.is_empty() {
                c.lines.push_back((level, line));
            }
        }
    }
    while let Some((level, line)) = c.lines.pop_front() {
        emit_log(budget, function, level, &line);
    }
    if c.dropped && !budget.truncated {
        log_truncated(budget, &function.name);
    }
}

fn lock(c: &Mutex<Captured>) -> MutexGuard<'_, Captured> {
    c.lock().unwrap_or_else(|p| p.into_inner())
}

/// One of the guest's output streams: always ready, never failing (past
/// the budget, output is dropped as `rime.log`'s is), never waiting.
#[derive(Clone)]
pub(super) struct LogPipe {
    captured: Arc<Mutex<Captured>>,
    /// 0 stdout, 1 stderr.
    stream: usize,
}

impl LogPipe {
    pub(super) fn stdout(captured: Arc<Mutex<Captured>>) -> LogPipe {
        LogPipe {
            captured,
            stream: 0,
        }
    }
    pub(super) fn stderr(captured: Arc<Mutex<Captured>>) -> LogPipe {
        LogPipe {
            captured,
            stream: 1,
        }
    }
}

impl IsTerminal for LogPipe {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LogPipe {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl OutputStream for LogPipe {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        lock(&self.captured).write(self.stream, &bytes);
        Ok(())
    }
    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }
    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(WRITE_PERMIT_BYTES)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for LogPipe {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for LogPipe {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        lock(&self.captured).write(self.stream, buf);
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
