//! Guest log lines kept by the server: a bounded ring per deployed
//! function, filled by the runtime's log sink, read by `GET
//! /functions/{name}/logs` and streamed to followers (`?follow=1`).

use super::Shared;
use super::errors::{ApiError, ApiResult};
use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use rime_faas::{GuestLog, LogSink, level_name};
use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use tokio::sync::{broadcast, watch};

/// Lines kept per function: the last thousand cover the recent history of
/// a function while debugging it, and bound the memory a chatty function
/// can hold (with [`RING_BYTES`]).
pub(super) const RING_LINES: usize = 1000;
/// Bytes of text kept per function: 256 KiB, so that a thousand lines of
/// the ABI's longest message (4 KiB) cannot hold 4 MiB per function.
pub(super) const RING_BYTES: usize = 256 << 10;
/// Lines a follower may fall behind before it misses some (and is told).
const FOLLOW_BACKLOG: usize = 1024;

#[derive(Default)]
struct Ring {
    lines: VecDeque<Arc<str>>,
    bytes: usize,
}

impl Ring {
    fn push(&mut self, line: Arc<str>) {
        self.bytes += line.len();
        self.lines.push_back(line);
        while self.lines.len() > RING_LINES || self.bytes > RING_BYTES {
            match self.lines.pop_front() {
                Some(old) => self.bytes -= old.len(),
                None => break,
            }
        }
    }
}

/// `(function, line)` of every new line, as a follower receives them.
type NewLines = broadcast::Receiver<(Arc<str>, Arc<str>)>;

/// The rings, by function name, and the channel to followers.
pub(super) struct Logs {
    rings: Mutex<HashMap<String, Ring>>,
    /// `(function, line)` of every line, for followers.
    new_lines: broadcast::Sender<(Arc<str>, Arc<str>)>,
}

impl Logs {
    pub(super) fn new() -> Arc<Logs> {
        Arc::new(Logs {
            rings: Mutex::default(),
            new_lines: broadcast::channel(FOLLOW_BACKLOG).0,
        })
    }

    fn rings(&self) -> std::sync::MutexGuard<'_, HashMap<String, Ring>> {
        self.rings.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The sink to give the runtime: every guest line lands here.
    pub(super) fn sink(self: &Arc<Self>) -> LogSink {
        let logs = self.clone();
        LogSink::new(move |l| logs.push(l))
    }

    fn push(&self, l: &GuestLog) {
        let line: Arc<str> = format_line(l).into();
        let mut rings = self.rings();
        let ring = rings.entry(l.function.clone()).or_default();
        ring.push(line.clone());
        // Under the lock, so a follower's snapshot and its subscription
        // neither miss nor repeat a line.
        let _ = self.new_lines.send((l.function.as_str().into(), line));
    }

    /// Drops the ring of an undeployed function (the names kept are the
    /// deployed functions').
    pub(super) fn forget(&self, function: &str) {
        self.rings().remove(function);
    }

    /// The lines kept for `function`, and (to follow) the lines after them.
    fn snapshot(&self, function: &str) -> (Vec<Arc<str>>, NewLines) {
        let rings = self.rings();
        let lines = rings
            .get(function)
            .map(|r| r.lines.iter().cloned().collect())
            .unwrap_or_default();
        (lines, self.new_lines.subscribe())
    }
}

/// `2026-12-05T03:04:05.678Z INFO message`: one line, whatever the message
/// holds (its line breaks escaped as `\n`).
fn format_line(l: &GuestLog) -> String {
    let message = l
        .message
        .replace('\\', "\\\\")
        .replace('\n', "\\n")
        .replace('\r', "\\r");
    format!(
        "{} {:5} {message}\n",
        utc_now(),
        level_name(l.level).to_ascii_uppercase()
    )
}

/// Now, as RFC 3339 in UTC with milliseconds.
fn utc_now() -> String {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    rfc3339(since.as_millis() as u64)
}

fn rfc3339(unix_ms: u64) -> String {
    let (secs, ms) = (unix_ms / 1000, unix_ms % 1000);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{ms:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// `GET /functions/{name}/logs[?follow=1]`: the kept lines as text; with
/// `follow`, then every new line as it is logged, until the client goes
/// or the server stops.
pub(super) async fn function_logs(
    State(app): State<Shared>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    let mut follow = false;
    for (k, v) in crate::query::pairs(q.as_deref()).map_err(ApiError::bad_request)? {
        match (k.as_str(), v.as_slice()) {
            ("follow", b"1" | b"true") => follow = true,
            ("follow", b"0" | b"false") => follow = false,
            _ => {
                return Err(ApiError::bad_request(format!(
                    "unknown parameter {k:?} (follow=1)"
                )));
            }
        }
    }
    if !app.rt.functions().iter().any(|f| f.name == name) {
        return Err(ApiError::not_found(format!("no function named {name:?}")));
    }
    let (kept, rx) = app.logs.snapshot(&name);
    let text = [(header::CONTENT_TYPE, "text/plain; charset=utf-8")];
    if !follow {
        return Ok((text, kept.concat()).into_response());
    }
    use futures_util::StreamExt;
    let head = futures_util::stream::iter(kept.into_iter().map(|l| Ok(Bytes::from(l.to_string()))));
    let tail = futures_util::stream::unfold(
        (rx, app.stopping.subscribe(), Arc::<str>::from(name)),
        next_line,
    );
    Ok((text, Body::from_stream(head.chain(tail))).into_response())
}

/// A follower's state: the new lines, the server's stop, the function.
type Follow = (NewLines, watch::Receiver<bool>, Arc<str>);

/// The next line of the followed function; `None` (the end of the
/// stream) once the server stops.
async fn next_line(
    (mut rx, mut stop, name): Follow,
) -> Option<(Result<Bytes, Infallible>, Follow)> {
    loop {
        if *stop.borrow() {
            return None;
        }
        let got = tokio::select! {
            r = rx.recv() => r,
            _ = stop.changed() => return None,
        };
        let text = match got {
            Ok((f, line)) if f == name => line.to_string(),
            Ok(_) => continue,
            Err(broadcast::error::RecvError::Lagged(n)) => {
                format!("... {n} lines of all functions skipped: this reader fell behind\n")
            }
            Err(broadcast::error::RecvError::Closed) => return None,
        };
        return Some((Ok(Bytes::from(text)), (rx, stop, name)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rime_faas::LogLevel;

    #[test]
    fn dates_are_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(rfc3339(1_796_440_245_678), "2026-12-05T03:10:45.678Z");
    }

    #[test]
    fn the_ring_keeps_the_last_lines_within_its_bounds() {
        let logs = Logs::new();
        let line = |m: &str| GuestLog {
            function: "f".into(),
            level: LogLevel::Info,
            message: m.into(),
        };
        for i in 0..RING_LINES + 5 {
            logs.push(&line(&format!("n{i}")));
        }
        let (kept, _) = logs.snapshot("f");
        assert_eq!(kept.len(), RING_LINES);
        assert!(kept[0].ends_with("INFO  n5\n"), "{}", kept[0]);
        logs.push(&line(&"x".repeat(4096)));
        let (kept, _) = logs.snapshot("f");
        assert!(kept.iter().map(|l| l.len()).sum::<usize>() <= RING_BYTES);
        assert!(kept.last().unwrap().contains(&"x".repeat(4096)));
        logs.push(&line("a\nb"));
        assert!(logs.snapshot("f").0.last().unwrap().ends_with("a\\nb\n"));
        logs.forget("f");
        assert!(logs.snapshot("f").0.is_empty());
    }
}
