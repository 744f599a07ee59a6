//! `GET /metrics`: the server's counters, the runtime's and the Db's, in
//! Prometheus text format.

use super::Shared;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// The server's own counters (the runtime and the Db keep theirs).
#[derive(Default)]
pub(super) struct Metrics {
    pub(super) invocations: AtomicU64,
    pub(super) invocation_errors: Mutex<BTreeMap<&'static str, u64>>,
    pub(super) invocation_micros: AtomicU64,
    pub(super) requests: AtomicU64,
}

impl Metrics {
    /// One more failed invocation with the error code `code`.
    pub(super) fn count_error(&self, code: &'static str) {
        *self
            .invocation_errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(code)
            .or_default() += 1;
    }
}

pub(super) async fn metrics(State(app): State<Shared>) -> Response {
    use std::fmt::Write;
    let s = app.rt.db().stats();
    let r = app.rt.stats();
    let m = &app.metrics;
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, value: u64| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    };
    metric(
        "rime_http_requests_total",
        "counter",
        "HTTP requests received.",
        m.requests.load(Ordering::Relaxed),
    );
    metric(
        "rime_invocations_total",
        "counter",
        "Invocations through POST /invoke.",
        m.invocations.load(Ordering::Relaxed),
    );
    metric(
        "rime_invocation_duration_microseconds_total",
        "counter",
        "Wall time of committed invocations.",
        m.invocation_micros.load(Ordering::Relaxed),
    );
    metric(
        "rime_invocations_committed_total",
        "counter",
        "Invocations that committed (runtime).",
        r.committed,
    );
    metric(
        "rime_invocations_failed_total",
        "counter",
        "Invocations that failed (runtime).",
        r.failed,
    );
    metric(
        "rime_invocation_retries_total",
        "counter",
        "Re-runs after serialization conflicts.",
        r.retries,
    );
    metric(
        "rime_traps_total",
        "counter",
        "Invocations that trapped.",
        r.traps,
    );
    metric(
        "rime_timeouts_total",
        "counter",
        "Invocations past their deadline.",
        r.timeouts,
    );
    metric(
        "rime_functions",
        "gauge",
        "Deployed functions.",
        r.functions as u64,
    );
    metric(
        "rime_module_cache_hits_total",
        "counter",
        "Modules loaded from the on-disk cache.",
        r.cache_hits,
    );
    metric(
        "rime_module_compiles_total",
        "counter",
        "Modules compiled.",
        r.compiles,
    );
    metric(
        "rime_commits_total",
        "counter",
        "Read-write transactions committed.",
        s.commits,
    );
    metric(
        "rime_read_only_total",
        "counter",
        "Read-only transactions finished.",
        s.read_only,
    );
    metric(
        "rime_conflicts_total",
        "counter",
        "Transaction validation failures.",
        s.conflicts,
    );
    metric(
        "rime_checkpoints_total",
        "counter",
        "Checkpoints taken.",
        s.checkpoints,
    );
    metric(
        "rime_log_bytes_total",
        "counter",
        "Bytes appended to the log since it was created.",
        s.log_bytes,
    );
    metric(
        "rime_durable_lsn",
        "gauge",
        "Log position known durable.",
        s.durable_lsn,
    );
    metric(
        "rime_pool_hits_total",
        "counter",
        "Page latches that found the page resident.",
        s.pool.hits,
    );
    metric(
        "rime_pool_misses_total",
        "counter",
        "Page latches that read the page from disk.",
        s.pool.misses,
    );
    metric(
        "rime_pool_evictions_total",
        "counter",
        "Frames evicted.",
        s.pool.evictions,
    );
    metric(
        "rime_pool_write_backs_total",
        "counter",
        "Frames written back.",
        s.pool.write_backs,
    );
    metric(
        "rime_pool_resident_pages",
        "gauge",
        "Pages in memory.",
        s.resident_pages,
    );
    metric(
        "rime_pool_allocated_pages",
        "gauge",
        "Pages allocated in the page file.",
        s.allocated_pages,
    );
    metric(
        "rime_db_poisoned",
        "gauge",
        "1 once the Db refuses writes after a failed write or sync (GET /health names the cause).",
        u64::from(s.poisoned.is_some()),
    );
    let c = &app.connections;
    metric(
        "rime_http_connections",
        "gauge",
        "HTTP connections open.",
        c.open.load(Ordering::Relaxed),
    );
    metric(
        "rime_http_connections_refused_total",
        "counter",
        "Connections closed at once: the connection cap was reached.",
        c.refused.load(Ordering::Relaxed),
    );
    metric(
        "rime_http_header_timeouts_total",
        "counter",
        "Connections closed: request headers not complete in time.",
        c.header_timeouts.load(Ordering::Relaxed),
    );
    metric(
        "rime_http_idle_closed_total",
        "counter",
        "Keep-alive connections closed after the idle timeout.",
        c.idle_closed.load(Ordering::Relaxed),
    );
    let _ = writeln!(
        out,
        "# HELP rime_invocation_errors_total Failed invocations by error code.\n# TYPE rime_invocation_errors_total counter"
    );
    for (code, n) in m
        .invocation_errors
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
    {
        let _ = writeln!(out, "rime_invocation_errors_total{{code=\"{code}\"}} {n}");
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}
