//! `rime serve`: the HTTP API of `docs/http.md` (axum on a small tokio
//! runtime; invocations and storage calls run on tokio's blocking pool, off
//! the async worker threads).

use crate::conn::{self, ConnStats};
use crate::env::{self, default_data_dir, Result};
use crate::query;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, RawQuery, Request, State};
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::middleware::{from_fn_with_state, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use rime_faas::{
    namespace_tree, DeployError, FunctionConfig, FunctionInfo, InvokeError, Runtime, RuntimeConfig,
    UndeployError,
};
use rime_storage::{DbError, TxError};
use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Semaphore;

/// Largest module `POST /functions/{name}` accepts.
pub const MAX_WASM_BYTES: usize = 16 << 20;
/// Largest body of every other request: the ABI's input limit.
pub const MAX_BODY_BYTES: usize = rime_faas::limits::MAX_INPUT_LEN;

#[derive(clap::Args)]
pub struct Args {
    /// Data directory (created if missing).
    #[arg(long, default_value_os_t = default_data_dir())]
    data: PathBuf,
    /// Address to listen on; port 0 picks a free port. The first line on
    /// standard output is `listening on http://ADDR`.
    #[arg(long, default_value = "127.0.0.1:7878")]
    listen: SocketAddr,
    /// The bearer token. Default: read from DATA/token, which the first
    /// start creates (32 random bytes, hex, mode 0600).
    #[arg(long, env = "RIME_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Let `POST /invoke/{name}` through without the token.
    #[arg(long)]
    open_invoke: bool,
    /// Let reads (`GET /state/...`, `GET /functions`) through without the token.
    #[arg(long)]
    open_reads: bool,
    /// Async worker threads (HTTP parsing only; faaslets run elsewhere).
    #[arg(long, default_value_t = 2)]
    http_threads: usize,
    /// Invocations running at once; more wait for a slot.
    #[arg(long, default_value_t = 64)]
    max_concurrent: usize,
    /// Buffer-pool size in MiB (default: the storage default).
    #[arg(long)]
    pool_mib: Option<usize>,
    /// Open connections at most; more are sent a 503 and closed at once.
    /// Lowered to fit the open-files limit (less 64 for the Db's files).
    #[arg(long, default_value_t = 512, value_parser = clap::value_parser!(u32).range(1..))]
    max_connections: u32,
    /// Time a client has to send a request's headers, from the accept or
    /// from the request's first byte; then the connection is closed.
    #[arg(long, default_value = "10s", value_parser = env::parse_timeout)]
    header_timeout: Duration,
    /// A keep-alive connection with no request in progress and no traffic
    /// for this long is closed.
    #[arg(long, default_value = "60s", value_parser = env::parse_timeout)]
    idle_timeout: Duration,
}

#[derive(Default)]
struct Metrics {
    invocations: AtomicU64,
    invocation_errors: Mutex<BTreeMap<&'static str, u64>>,
    invocation_micros: AtomicU64,
    requests: AtomicU64,
}

struct App {
    rt: Runtime,
    token: String,
    open_invoke: bool,
    open_reads: bool,
    slots: Semaphore,
    inflight: Arc<AtomicUsize>,
    metrics: Metrics,
    connections: Arc<ConnStats>,
}

type Shared = Arc<App>;

/// An error response: `{"error": {"code": CODE, "message": MESSAGE}}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }
    fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }
    fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }
    fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(code = self.code, "{}", self.message);
        } else {
            tracing::debug!(code = self.code, "{}", self.message);
        }
        let body = serde_json::json!({"error": {"code": self.code, "message": self.message}});
        (self.status, Json(body)).into_response()
    }
}

fn body_error(r: BytesRejection) -> ApiError {
    let status = r.status();
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(
            status,
            "too_large",
            format!("request body too large: {}", r.body_text()),
        )
    } else {
        ApiError::new(status, "bad_request", r.body_text())
    }
}

/// The Db refuses writes: a write or sync of its files failed.
fn poisoned(cause: &str) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "poisoned",
        format!(
            "the database is poisoned ({cause}): it refuses writes until the server is \
             restarted on the directory (recovery then replays the log)"
        ),
    )
}

fn tx_error(e: TxError) -> ApiError {
    match e {
        TxError::Db(DbError::Poisoned(cause)) => poisoned(&cause),
        TxError::KeyTooLarge { .. } | TxError::ValueTooLarge { .. } => {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", e.to_string())
        }
        TxError::Conflict { .. } => ApiError::new(StatusCode::CONFLICT, "conflict", e.to_string()),
        e => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "storage", e.to_string()),
    }
}

fn deploy_error(e: DeployError) -> ApiError {
    let (status, code) = match &e {
        DeployError::Malformed(_) => (StatusCode::BAD_REQUEST, "malformed_module"),
        DeployError::Abi(_) => (StatusCode::BAD_REQUEST, "abi_violation"),
        DeployError::BadName(_) => (StatusCode::BAD_REQUEST, "bad_name"),
        DeployError::Storage(TxError::Db(DbError::Poisoned(cause))) => return poisoned(cause),
        DeployError::Storage(_) => (StatusCode::INTERNAL_SERVER_ERROR, "storage"),
        _ => (StatusCode::BAD_REQUEST, "bad_config"),
    };
    ApiError::new(status, code, e.to_string())
}

fn invoke_error(e: &InvokeError) -> ApiError {
    let (status, code) = match e {
        InvokeError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
        InvokeError::InputTooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
        InvokeError::Function { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "function_error"),
        InvokeError::Trap(_) => (StatusCode::UNPROCESSABLE_ENTITY, "trap"),
        InvokeError::Timeout(_) => (StatusCode::GATEWAY_TIMEOUT, "timeout"),
        InvokeError::MemoryLimit { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "memory_limit"),
        InvokeError::OutputTooLarge { .. } => {
            (StatusCode::UNPROCESSABLE_ENTITY, "output_too_large")
        }
        InvokeError::WriteSetFull { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "write_set_full"),
        InvokeError::Conflict { .. } => (StatusCode::CONFLICT, "conflict"),
        InvokeError::Overloaded(_) => (StatusCode::SERVICE_UNAVAILABLE, "overloaded"),
        InvokeError::Storage(TxError::Db(DbError::Poisoned(cause))) => return poisoned(cause),
        InvokeError::Storage(_) => (StatusCode::INTERNAL_SERVER_ERROR, "storage"),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
    };
    let message = match e {
        // The guest's own message, unadorned.
        InvokeError::Function { message, .. } => message.clone(),
        e => e.to_string(),
    };
    ApiError::new(status, code, message)
}

/// Which requests need the bearer token.
#[derive(Clone, Copy, PartialEq)]
enum Access {
    Admin,
    Invoke,
    Read,
}

impl App {
    fn authorize(&self, headers: &HeaderMap, access: Access) -> std::result::Result<(), ApiError> {
        let open = match access {
            Access::Admin => false,
            Access::Invoke => self.open_invoke,
            Access::Read => self.open_reads,
        };
        if open {
            return Ok(());
        }
        let unauthorized = |m: &str| ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", m);
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return Err(unauthorized("missing Authorization: Bearer <token> header"));
        };
        let given = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| unauthorized("the Authorization header is not `Bearer <token>`"))?;
        if constant_time_eq(given.trim().as_bytes(), self.token.as_bytes()) {
            Ok(())
        } else {
            Err(unauthorized("wrong token"))
        }
    }

    /// Runs `f` on tokio's blocking pool, counted as in flight until it
    /// returns (even if the client has gone).
    async fn blocking<R: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&Runtime) -> R + Send + 'static,
    ) -> std::result::Result<R, ApiError> {
        struct InFlight(Arc<AtomicUsize>);
        impl Drop for InFlight {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::SeqCst);
            }
        }
        self.inflight.fetch_add(1, Ordering::SeqCst);
        let guard = InFlight(self.inflight.clone());
        let app = self.clone();
        tokio::task::spawn_blocking(move || {
            let _guard = guard;
            f(&app.rt)
        })
        .await
        .map_err(|e| ApiError::internal(format!("worker failed: {e}")))
    }
}

/// Checks the token before the handler runs, so before any byte of the
/// body is read: an unauthenticated upload costs its headers, not its
/// body. A refused request that announced a body also gets
/// `Connection: close`, so the server does not read the body to keep the
/// connection.
async fn gate(app: &App, access: Access, req: Request, next: Next) -> Response {
    match app.authorize(req.headers(), access) {
        Ok(()) => next.run(req).await,
        Err(e) => {
            let mut response = e.into_response();
            let h = req.headers();
            let has_body = h.contains_key(header::TRANSFER_ENCODING)
                || h.get(header::CONTENT_LENGTH)
                    .is_some_and(|v| v.as_bytes() != b"0");
            if has_body {
                response.headers_mut().insert(
                    header::CONNECTION,
                    header::HeaderValue::from_static("close"),
                );
            }
            response
        }
    }
}

async fn admin_only(State(app): State<Shared>, req: Request, next: Next) -> Response {
    gate(&app, Access::Admin, req, next).await
}

async fn invoke_access(State(app): State<Shared>, req: Request, next: Next) -> Response {
    gate(&app, Access::Invoke, req, next).await
}

async fn read_access(State(app): State<Shared>, req: Request, next: Next) -> Response {
    gate(&app, Access::Read, req, next).await
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn info_json(f: &FunctionInfo) -> serde_json::Value {
    serde_json::json!({
        "name": f.name,
        "generation": f.generation,
        "module_len": f.module_len,
        "sha256": f.module_hash,
        "memory_bytes": f.config.memory_bytes,
        "deadline_ms": f.config.deadline.as_millis() as u64,
        "grants": f.config.grants.iter().map(|g| serde_json::json!({
            "namespace": g.namespace, "writable": g.writable
        })).collect::<Vec<_>>(),
    })
}

type ApiResult<T> = std::result::Result<T, ApiError>;

async fn deploy(
    State(app): State<Shared>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
    body: std::result::Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let wasm = body.map_err(body_error)?;
    let mut cfg = FunctionConfig::default();
    for (k, v) in query::pairs(q.as_deref()).map_err(ApiError::bad_request)? {
        let v = query::text(&k, v).map_err(ApiError::bad_request)?;
        cfg = match k.as_str() {
            "grant" => cfg.grant(env::parse_grant(&v).map_err(ApiError::bad_request)?),
            "memory" => cfg.memory_bytes(env::parse_size(&v).map_err(ApiError::bad_request)?),
            "deadline" => cfg.deadline(env::parse_duration(&v).map_err(ApiError::bad_request)?),
            _ => {
                return Err(ApiError::bad_request(format!(
                    "unknown parameter {k:?} (grant, memory, deadline)"
                )))
            }
        };
    }
    let info = app
        .blocking(move |rt| rt.deploy(&name, &wasm, cfg))
        .await?
        .map_err(deploy_error)?;
    tracing::info!(name = %info.name, generation = info.generation, "deployed");
    Ok((StatusCode::CREATED, Json(info_json(&info))).into_response())
}

async fn undeploy(State(app): State<Shared>, Path(name): Path<String>) -> ApiResult<Response> {
    let n = name.clone();
    app.blocking(move |rt| rt.undeploy(&n))
        .await?
        .map_err(|e| match e {
            UndeployError::NotFound(_) => ApiError::not_found(e.to_string()),
            e => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "storage", e.to_string()),
        })?;
    tracing::info!(%name, "undeployed");
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn list_functions(State(app): State<Shared>) -> ApiResult<Response> {
    let list: Vec<_> = app.rt.functions().iter().map(info_json).collect();
    Ok(Json(serde_json::json!({ "functions": list })).into_response())
}

async fn invoke(
    State(app): State<Shared>,
    Path(name): Path<String>,
    body: std::result::Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let input = body.map_err(body_error)?;
    let _slot = app.slots.acquire().await.map_err(|_| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "the server is stopping",
        )
    })?;
    let r = app.blocking(move |rt| rt.invoke(&name, &input)).await?;
    let m = &app.metrics;
    m.invocations.fetch_add(1, Ordering::Relaxed);
    match r {
        Ok(inv) => {
            m.invocation_micros
                .fetch_add(inv.duration.as_micros() as u64, Ordering::Relaxed);
            Ok((
                [
                    (header::CONTENT_TYPE, "application/octet-stream".to_string()),
                    (
                        header::HeaderName::from_static("x-rime-retries"),
                        inv.retries.to_string(),
                    ),
                    (
                        header::HeaderName::from_static("x-rime-duration-us"),
                        inv.duration.as_micros().to_string(),
                    ),
                ],
                inv.output,
            )
                .into_response())
        }
        Err(e) => {
            let err = invoke_error(&e);
            *m.invocation_errors
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .entry(err.code)
                .or_default() += 1;
            Err(err)
        }
    }
}

fn check_ns(ns: &str) -> ApiResult<()> {
    if rime_faas::limits::valid_name(ns.as_bytes()) {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "invalid namespace {ns:?}: names are 1..=64 bytes of [a-z0-9_.-]"
        )))
    }
}

/// The namespace and key of `/state/{ns}/{*key}`, the key's
/// percent-escapes decoded to bytes.
fn state_key(uri: &Uri) -> ApiResult<(String, Vec<u8>)> {
    match query::state_path(uri.path()).map_err(ApiError::bad_request)? {
        Some((ns, key)) => {
            check_ns(&ns)?;
            Ok((ns, key))
        }
        None => Err(ApiError::not_found("no such endpoint (see docs/http.md)")),
    }
}

/// A key in messages: its bytes, non-printable ones escaped.
fn show_key(key: &[u8]) -> String {
    key.escape_ascii().to_string()
}

async fn state_get(State(app): State<Shared>, uri: Uri) -> ApiResult<Response> {
    let (ns, key) = state_key(&uri)?;
    let (n, k) = (ns.clone(), key.clone());
    let v = app
        .blocking(move |rt| -> ApiResult<Option<Vec<u8>>> {
            let db = rt.db();
            match db
                .open_tree(&namespace_tree(&n))
                .map_err(|e| tx_error(e.into()))?
            {
                Some(t) => db.get(t, &k).map_err(tx_error),
                None => Ok(None),
            }
        })
        .await??;
    match v {
        Some(v) => Ok(([(header::CONTENT_TYPE, "application/octet-stream")], v).into_response()),
        None => Err(ApiError::not_found(format!(
            "no key \"{}\" in namespace {ns:?}",
            show_key(&key)
        ))),
    }
}

async fn state_put(
    State(app): State<Shared>,
    uri: Uri,
    body: std::result::Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let (ns, key) = state_key(&uri)?;
    let value = body.map_err(body_error)?;
    app.blocking(move |rt| -> ApiResult<()> {
        let db = rt.db();
        let t = db
            .open_or_create_tree(&namespace_tree(&ns))
            .map_err(|e| tx_error(e.into()))?;
        db.put(t, &key, &value).map_err(tx_error)
    })
    .await??;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn state_delete(State(app): State<Shared>, uri: Uri) -> ApiResult<Response> {
    let (ns, key) = state_key(&uri)?;
    let (n, k) = (ns.clone(), key.clone());
    let deleted = app
        .blocking(move |rt| -> ApiResult<bool> {
            let db = rt.db();
            match db
                .open_tree(&namespace_tree(&n))
                .map_err(|e| tx_error(e.into()))?
            {
                Some(t) => db.delete(t, &k).map_err(tx_error),
                None => Ok(false),
            }
        })
        .await??;
    if deleted {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::not_found(format!(
            "no key \"{}\" in namespace {ns:?}",
            show_key(&key)
        )))
    }
}

fn bytes_json(b: &[u8]) -> serde_json::Value {
    match std::str::from_utf8(b) {
        Ok(s) => serde_json::Value::String(s.to_string()),
        Err(_) => serde_json::Value::Null,
    }
}

async fn state_scan(
    State(app): State<Shared>,
    Path(ns): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    check_ns(&ns)?;
    let p = query::scan_params(q.as_deref()).map_err(ApiError::bad_request)?;
    let limit = p.limit;
    let pairs = app
        .blocking(move |rt| -> ApiResult<Vec<(Vec<u8>, Vec<u8>)>> {
            let db = rt.db();
            match db
                .open_tree(&namespace_tree(&ns))
                .map_err(|e| tx_error(e.into()))?
            {
                Some(t) => crate::cmd::scan(db, t, p.start.as_deref(), p.end.as_deref(), limit + 1)
                    .map_err(|e| match e.downcast::<TxError>() {
                        Ok(e) => tx_error(*e),
                        Err(e) => ApiError::new(
                            StatusCode::INTERNAL_SERVER_ERROR,
                            "storage",
                            e.to_string(),
                        ),
                    }),
                None => Ok(Vec::new()),
            }
        })
        .await??;
    let next = pairs.get(limit).map(|(k, _)| k.as_slice());
    let items: Vec<_> = pairs
        .iter()
        .take(limit)
        .map(|(k, v)| {
            serde_json::json!({
                "key": bytes_json(k), "key_hex": env::hex(k),
                "value": bytes_json(v), "value_hex": env::hex(v),
            })
        })
        .collect();
    Ok(Json(serde_json::json!({
        "items": items,
        "next": next.map(bytes_json),
        "next_hex": next.map(env::hex),
    }))
    .into_response())
}

/// `/health`: 200 while the Db takes writes, 503 naming the cause once it
/// is poisoned (a failed write or sync of its files).
fn health_response(poisoned_cause: Option<String>) -> Response {
    match poisoned_cause {
        None => Json(serde_json::json!({"status": "ok"})).into_response(),
        Some(cause) => {
            let e = poisoned(&cause);
            let body = serde_json::json!({
                "status": "poisoned",
                "error": {"code": e.code, "message": e.message},
            });
            (e.status, Json(body)).into_response()
        }
    }
}

async fn health(State(app): State<Shared>) -> Response {
    health_response(app.rt.db().poisoned())
}

async fn metrics(State(app): State<Shared>) -> Response {
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

async fn fallback() -> ApiError {
    ApiError::not_found("no such endpoint (see docs/http.md)")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "method not allowed on this endpoint",
    )
}

fn router(app: Shared) -> Router {
    let count = app.clone();
    let small = DefaultBodyLimit::max(MAX_BODY_BYTES);
    // Route layers run after routing and before the handler's extractors:
    // the token is checked before any body byte is read.
    let admin = from_fn_with_state(app.clone(), admin_only);
    let read = from_fn_with_state(app.clone(), read_access);
    Router::new()
        .route(
            "/functions/{name}",
            post(deploy)
                .layer(DefaultBodyLimit::max(MAX_WASM_BYTES))
                .delete(undeploy)
                .route_layer(admin.clone()),
        )
        .route("/functions", get(list_functions).route_layer(read.clone()))
        .route(
            "/invoke/{name}",
            post(invoke)
                .layer(small)
                .route_layer(from_fn_with_state(app.clone(), invoke_access)),
        )
        .route(
            "/state/{ns}/{*key}",
            get(state_get).route_layer(read.clone()).merge(
                put(state_put)
                    .layer(small)
                    .delete(state_delete)
                    .route_layer(admin),
            ),
        )
        .route("/state/{ns}", get(state_scan).route_layer(read))
        .route("/metrics", get(metrics))
        .route("/health", get(health))
        .fallback(fallback)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(tower_http::limit::RequestBodyLimitLayer::new(
            MAX_WASM_BYTES + (64 << 10),
        ))
        .layer(axum::middleware::from_fn(
            move |req, next: axum::middleware::Next| {
                count.metrics.requests.fetch_add(1, Ordering::Relaxed);
                async move { next.run(req).await }
            },
        ))
        .with_state(app)
}

/// The token: `--token`/`RIME_TOKEN`, else DATA/token, created if missing.
fn resolve_token(given: Option<&str>, dir: &std::path::Path) -> Result<String> {
    if let Some(t) = given {
        if t.trim().is_empty() {
            return Err("the token must not be empty".into());
        }
        return Ok(t.trim().to_string());
    }
    let path = dir.join("token");
    match std::fs::read_to_string(&path) {
        Ok(t) if !t.trim().is_empty() => return Ok(t.trim().to_string()),
        Ok(_) => {
            return Err(format!("{} is empty: delete it or pass --token", path.display()).into())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("reading {}: {e}", path.display()).into()),
    }
    let mut raw = [0u8; 32];
    getrandom::getrandom(&mut raw).map_err(|e| format!("random token: {e}"))?;
    let token = env::hex(&raw);
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| format!("creating {}: {e}", path.display()))?;
    f.write_all(format!("{token}\n").as_bytes())?;
    f.sync_all()?;
    tracing::info!(path = %path.display(), "created a bearer token");
    Ok(token)
}

/// SIGTERM and SIGINT, caught from now on (from before the server says it
/// is listening: a SIGTERM right after that line must not kill it).
fn catch_signals(rt: &tokio::runtime::Runtime) -> Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let _in_rt = rt.enter();
    let term = signal(SignalKind::terminate()).map_err(|e| format!("SIGTERM handler: {e}"))?;
    let int = signal(SignalKind::interrupt()).map_err(|e| format!("SIGINT handler: {e}"))?;
    Ok(shutdown_signal(term, int))
}

async fn shutdown_signal(
    mut term: tokio::signal::unix::Signal,
    mut int: tokio::signal::unix::Signal,
) {
    let which = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    tracing::info!("{which}: no new connections; finishing requests in flight");
}

pub fn run(a: &Args) -> Result<()> {
    // Before anything opens files: connections need descriptors.
    let nofile = conn::raise_nofile_limit();
    let max_connections = conn::fit_cap(a.max_connections, nofile);
    if max_connections < a.max_connections {
        tracing::warn!(
            wanted = a.max_connections,
            max_connections,
            nofile,
            "--max-connections lowered to fit the open-files limit"
        );
    }
    let limits = conn::Limits {
        max_connections,
        header_timeout: a.header_timeout,
        idle_timeout: a.idle_timeout,
    };
    let db = env::open_db(&a.data, env::db_options(a.pool_mib))?;
    let rt = env::open_runtime(&a.data, db, RuntimeConfig::default())?;
    let token = resolve_token(a.token.as_deref(), &a.data)?;
    let listener = std::net::TcpListener::bind(a.listen)
        .map_err(|e| format!("listening on {}: {e}", a.listen))?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let app = Arc::new(App {
        rt,
        token,
        open_invoke: a.open_invoke,
        open_reads: a.open_reads,
        slots: Semaphore::new(a.max_concurrent.max(1)),
        inflight: Arc::new(AtomicUsize::new(0)),
        metrics: Metrics::default(),
        connections: Arc::default(),
    });
    let tokio_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(a.http_threads.max(1))
        .thread_name("rime-http")
        .enable_all()
        .build()?;
    let shutdown = catch_signals(&tokio_rt)?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on http://{addr}")?;
        out.flush()?;
    }
    tracing::info!(%addr, functions = app.rt.functions().len(), open_invoke = a.open_invoke,
        max_connections, header_timeout = ?a.header_timeout, idle_timeout = ?a.idle_timeout, "serving");
    let served = tokio_rt.block_on(async {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let stats = app.connections.clone();
        conn::serve(listener, router(app.clone()), limits, stats, shutdown).await;
        std::io::Result::Ok(())
    });
    // Invocations whose clients went away may still run: let them finish.
    while app.inflight.load(Ordering::SeqCst) > 0 {
        std::thread::sleep(Duration::from_millis(10));
    }
    tokio_rt.shutdown_timeout(Duration::from_secs(10));
    let app =
        Arc::try_unwrap(app).map_err(|_| "the server state is still shared after shutdown")?;
    env::close(app.rt)?;
    tracing::info!("checkpointed and closed; bye");
    served.map_err(|e| format!("serving: {e}").into())
}

#[cfg(test)]
#[path = "serve_tests.rs"]
mod tests;
