//! `GET /metrics`: the server's counters, the runtime's and the Db's, in
//! Prometheus text format. What is reported is one table, [`METRICS`]
//! (name, type, help, where the value comes from), rendered by one loop;
//! the labelled families follow it: failed invocations by error code, and
//! invocations by function. `GET /stats` (what `rime stats` prints) is
//! here too.

use super::Shared;
use crate::conn::ConnStats;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use rime_faas::RuntimeStats;
use rime_storage::DbStats;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// The server's own counters (the runtime and the Db keep theirs).
#[derive(Default)]
pub(super) struct Metrics {
    pub(super) invocations: AtomicU64,
    pub(super) invocation_errors: Mutex<BTreeMap<&'static str, u64>>,
    pub(super) invocation_micros: AtomicU64,
    pub(super) requests: AtomicU64,
    /// By function name: deployed functions only (an undeploy drops its
    /// entry), so the label set is bounded by what is deployed.
    pub(super) per_function: Mutex<BTreeMap<String, FunctionCounts>>,
}

/// Invocations of one function.
#[derive(Clone, Copy, Default)]
pub(super) struct FunctionCounts {
    invocations: u64,
    errors: u64,
    micros: u64,
}

impl Metrics {
    /// One more failed invocation with the error code `code`.
    pub(super) fn count_error(&self, code: &'static str) {
        *self.errors().entry(code).or_default() += 1;
    }

    /// One more invocation of `function`: committed in `micros`, or failed
    /// (`None`).
    pub(super) fn count_function(&self, function: &str, micros: Option<u64>) {
        let mut map = self.functions();
        let c = match map.get_mut(function) {
            Some(c) => c,
            None => map.entry(function.to_string()).or_default(),
        };
        c.invocations += 1;
        match micros {
            Some(us) => c.micros += us,
            None => c.errors += 1,
        }
    }

    /// Drops the counts of an undeployed function.
    pub(super) fn forget_function(&self, function: &str) {
        self.functions().remove(function);
    }

    fn functions(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, FunctionCounts>> {
        self.per_function.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn errors(&self) -> std::sync::MutexGuard<'_, BTreeMap<&'static str, u64>> {
        self.invocation_errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }
}

/// Where the values come from: the server's counters, its connections',
/// and one snapshot each of the runtime's and the Db's.
struct Sources<'a> {
    http: &'a Metrics,
    conns: &'a ConnStats,
    rt: &'a RuntimeStats,
    db: &'a DbStats,
}

/// A metric with one unlabelled sample.
struct Metric {
    name: &'static str,
    /// `counter` or `gauge`.
    kind: &'static str,
    help: &'static str,
    value: fn(&Sources) -> u64,
}

const fn counter(name: &'static str, help: &'static str, value: fn(&Sources) -> u64) -> Metric {
    Metric {
        name,
        kind: "counter",
        help,
        value,
    }
}

const fn gauge(name: &'static str, help: &'static str, value: fn(&Sources) -> u64) -> Metric {
    Metric {
        name,
        kind: "gauge",
        help,
        value,
    }
}

fn load(a: &AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

/// Every unlabelled metric, in the order `GET /metrics` reports them.
/// `docs/http.md` lists them (a test below keeps the two in step).
#[rustfmt::skip]
static METRICS: &[Metric] = &[
    counter("rime_http_requests_total", "HTTP requests received.",
        |s| load(&s.http.requests)),
    counter("rime_invocations_total", "Invocations through POST /invoke.",
        |s| load(&s.http.invocations)),
    counter("rime_invocation_duration_microseconds_total", "Wall time of committed invocations.",
        |s| load(&s.http.invocation_micros)),
    counter("rime_invocations_committed_total", "Invocations that committed (runtime).",
        |s| s.rt.committed),
    counter("rime_invocations_failed_total", "Invocations that failed (runtime).",
        |s| s.rt.failed),
    counter("rime_invocation_retries_total", "Re-runs after serialization conflicts.",
        |s| s.rt.retries),
    counter("rime_traps_total", "Invocations that trapped.",
        |s| s.rt.traps),
    counter("rime_timeouts_total", "Invocations past their deadline.",
        |s| s.rt.timeouts),
    counter("rime_invocations_cancelled_total",
        "Invocations whose client went away before they began to commit (nothing committed).",
        |s| s.rt.cancelled),
    gauge("rime_invocations_in_flight", "Invocations admitted to the executors, running or queued.",
        |s| s.rt.in_flight),
    gauge("rime_functions", "Deployed functions.",
        |s| s.rt.functions as u64),
    counter("rime_module_cache_hits_total", "Modules loaded from the on-disk cache.",
        |s| s.rt.cache_hits),
    counter("rime_module_compiles_total", "Modules compiled.",
        |s| s.rt.compiles),
    counter("rime_commits_total", "Read-write transactions committed.",
        |s| s.db.commits),
    counter("rime_read_only_total", "Read-only transactions finished.",
        |s| s.db.read_only),
    counter("rime_conflicts_total", "Transaction validation failures.",
        |s| s.db.conflicts),
    counter("rime_checkpoints_total", "Checkpoints taken.",
        |s| s.db.checkpoints),
    counter("rime_log_bytes_total", "Bytes appended to the log since it was created.",
        |s| s.db.log_bytes),
    counter("rime_log_syncs_total", "Log write + fdatasync rounds since the server started (commits per sync: their ratio to rime_commits_total).",
        |s| s.db.log_syncs),
    gauge("rime_durable_lsn", "Log position known durable.",
        |s| s.db.durable_lsn),
    counter("rime_pool_hits_total", "Page latches that found the page resident.",
        |s| s.db.pool.hits),
    counter("rime_pool_misses_total", "Page latches that read the page from disk.",
        |s| s.db.pool.misses),
    counter("rime_pool_evictions_total", "Frames evicted.",
        |s| s.db.pool.evictions),
    counter("rime_pool_write_backs_total", "Frames written back.",
        |s| s.db.pool.write_backs),
    gauge("rime_pool_resident_pages", "Pages in memory.",
        |s| s.db.resident_pages),
    gauge("rime_pool_allocated_pages", "Pages allocated in the page file.",
        |s| s.db.allocated_pages),
    gauge("rime_db_poisoned",
        "1 once the Db refuses writes after a failed write or sync (GET /health names the cause).",
        |s| u64::from(s.db.poisoned.is_some())),
    gauge("rime_http_connections", "HTTP connections open.",
        |s| load(&s.conns.open)),
    counter("rime_http_connections_refused_total",
        "Connections closed at once: the connection cap was reached.",
        |s| load(&s.conns.refused)),
    counter("rime_http_header_timeouts_total",
        "Connections closed: request headers not complete in time.",
        |s| load(&s.conns.header_timeouts)),
    counter("rime_http_idle_closed_total", "Keep-alive connections closed after the idle timeout.",
        |s| load(&s.conns.idle_closed)),
];

/// The labelled family after the table: one sample per error code seen.
const ERRORS_NAME: &str = "rime_invocation_errors_total";
const ERRORS_HELP: &str = "Failed invocations by error code.";

/// A family labelled by function: name, help, the value of one function.
type PerFunction = (&'static str, &'static str, fn(&FunctionCounts) -> u64);

/// The families labelled `function="NAME"`, one sample per deployed
/// function invoked: name, help, the value.
#[rustfmt::skip]
static PER_FUNCTION: &[PerFunction] = &[
    ("rime_function_invocations_total", "Invocations through POST /invoke, by function.",
        |c| c.invocations),
    ("rime_function_invocation_errors_total", "Failed invocations, by function.",
        |c| c.errors),
    ("rime_function_invocation_duration_microseconds_total",
        "Wall time of committed invocations, by function.", |c| c.micros),
];

/// The page: each metric of [`METRICS`] as `# HELP`, `# TYPE` and its
/// sample, then the failed invocations by code.
fn render(
    src: &Sources,
    errors: &BTreeMap<&'static str, u64>,
    functions: &BTreeMap<String, FunctionCounts>,
) -> String {
    let mut out = String::new();
    for m in METRICS {
        let (name, kind, help, value) = (m.name, m.kind, m.help, (m.value)(src));
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    }
    let name = ERRORS_NAME;
    let _ = writeln!(out, "# HELP {name} {ERRORS_HELP}\n# TYPE {name} counter");
    for (code, n) in errors {
        let _ = writeln!(out, "{name}{{code=\"{code}\"}} {n}");
    }
    // Function names are [a-z0-9_.-]: nothing to escape in the label.
    for (name, help, value) in PER_FUNCTION {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        for (f, c) in functions {
            let _ = writeln!(out, "{name}{{function=\"{f}\"}} {}", value(c));
        }
    }
    out
}

/// `GET /metrics`.
pub(super) async fn metrics(State(app): State<Shared>) -> Response {
    let (db, rt) = (app.rt.db().stats(), app.rt.stats());
    let src = Sources {
        http: &app.metrics,
        conns: &app.connections,
        rt: &rt,
        db: &db,
    };
    let functions = app.metrics.functions().clone();
    let out = render(&src, &app.metrics.errors(), &functions);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}

/// `GET /stats`: what `rime stats` prints, as JSON.
pub(super) async fn stats(State(app): State<Shared>) -> Response {
    let (db, rt) = (app.rt.db().stats(), app.rt.stats());
    let p = &db.pool;
    axum::Json(serde_json::json!({
        "data_dir": app.data_dir.display().to_string(),
        "poisoned": db.poisoned,
        "allocated_pages": db.allocated_pages,
        "resident_pages": db.resident_pages,
        "pool_hits": p.hits,
        "pool_misses": p.misses,
        "pool_evictions": p.evictions,
        "pool_write_backs": p.write_backs,
        "log_bytes": db.log_bytes,
        "durable_lsn": db.durable_lsn,
        "recovered_records": db.recovered_records,
        "commits": db.commits,
        "read_only": db.read_only,
        "conflicts": db.conflicts,
        "checkpoints": db.checkpoints,
        "functions": rt.functions,
        "cache_hits": rt.cache_hits,
        "compiles": rt.compiles,
        "invocations": {"committed": rt.committed, "failed": rt.failed, "retries": rt.retries},
    }))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// The metrics `docs/http.md` names are the ones served, each once.
    #[test]
    fn the_table_matches_the_docs() {
        let mut served = BTreeSet::new();
        let labelled = PER_FUNCTION.iter().map(|(n, _, _)| *n).chain([ERRORS_NAME]);
        for name in METRICS.iter().map(|m| m.name).chain(labelled) {
            assert!(served.insert(name), "{name} twice");
        }
        let docs = include_str!("../../../docs/http.md");
        let section = docs
            .split("\n## Metrics\n")
            .nth(1)
            .expect("a Metrics section");
        let section = section.split("\n## ").next().unwrap();
        let documented: BTreeSet<&str> = section
            .split('`')
            .skip(1)
            .step_by(2)
            .filter(|s| s.starts_with("rime_"))
            .map(|s| s.split('{').next().unwrap())
            .collect();
        assert_eq!(served, documented);
    }

    /// Each metric is `# HELP`, `# TYPE` and one sample, in table order,
    /// then the error family's head and one line per code.
    #[test]
    fn the_page_is_prometheus_text() {
        let http = Metrics::default();
        http.requests.store(7, Ordering::Relaxed);
        http.count_error("trap");
        http.count_error("timeout");
        http.count_error("trap");
        let (conns, rt, db) = (
            ConnStats::default(),
            RuntimeStats::default(),
            DbStats::default(),
        );
        let src = Sources {
            http: &http,
            conns: &conns,
            rt: &rt,
            db: &db,
        };
        http.count_function("kv", Some(10));
        http.count_function("kv", None);
        let page = render(&src, &http.errors(), &http.functions());
        let lines: Vec<&str> = page.lines().collect();
        assert_eq!(lines.len(), 3 * METRICS.len() + 2 + 2 + 3 * 3);
        assert_eq!(
            lines[..3],
            [
                "# HELP rime_http_requests_total HTTP requests received.",
                "# TYPE rime_http_requests_total counter",
                "rime_http_requests_total 7",
            ]
        );
        for (m, l) in METRICS.iter().zip(lines.chunks(3)) {
            assert!(l[0].starts_with(&format!("# HELP {} ", m.name)), "{l:?}");
            assert_eq!(l[1], format!("# TYPE {} {}", m.name, m.kind));
            assert!(l[2].starts_with(&format!("{} ", m.name)), "{l:?}");
        }
        assert_eq!(
            lines[3 * METRICS.len()..3 * METRICS.len() + 4],
            [
                "# HELP rime_invocation_errors_total Failed invocations by error code.",
                "# TYPE rime_invocation_errors_total counter",
                "rime_invocation_errors_total{code=\"timeout\"} 1",
                "rime_invocation_errors_total{code=\"trap\"} 2",
            ]
        );
        let samples: Vec<&str> = (lines[3 * METRICS.len() + 4..].iter())
            .filter(|l| !l.starts_with('#'))
            .copied()
            .collect();
        assert_eq!(
            samples,
            [
                "rime_function_invocations_total{function=\"kv\"} 2",
                "rime_function_invocation_errors_total{function=\"kv\"} 1",
                "rime_function_invocation_duration_microseconds_total{function=\"kv\"} 10",
            ]
        );
        http.forget_function("kv");
        assert!(http.functions().is_empty());
        assert!(page.ends_with('\n'));
    }
}
