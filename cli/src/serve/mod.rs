//! `rime serve`: the HTTP API of `docs/http.md` (axum on a small tokio
//! runtime; invocations, `/invoke` and `/fn` alike, run on the runtime's
//! executors; deploys and storage calls on tokio's blocking pool, off the
//! async worker threads).
//!
//! * `mod.rs`: the options, the server's state, the routes, startup.
//! * `auth.rs`: the bearer token, checked before a request's body is read.
//! * `errors.rs`: error responses, and which error is which code and status.
//! * `handlers.rs`: `/functions`, `/invoke`, `/health`; `state.rs`: `/state`.
//! * `trigger.rs`: `/fn/{name}/...`, HTTP-triggered components.
//! * `metrics.rs`: `/metrics`, one table of what is reported; `/stats`.
//! * `logs.rs`: guest log lines kept per function, `/functions/{name}/logs`.
//! * `access.rs`: the request log line of every request.
//! * `shutdown.rs`: the signals, and the order things stop in.
//!
//! The connection loop (caps, timeouts) is `crate::conn`, the parsing of
//! query strings and state paths `crate::query`.

mod access;
mod auth;
mod errors;
mod handlers;
mod logs;
mod metrics;
mod shutdown;
mod state;
mod trigger;

use crate::config::Settings;
use crate::conn::{self, ConnStats};
use crate::env::{self, Result};
use auth::{admin_only, invoke_access, read_access, resolve_token};
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware::from_fn_with_state;
use axum::routing::{any, get, post, put};
use errors::ApiError;
use handlers::{deploy, fallback, health, invoke, list_functions, method_not_allowed, undeploy};
use logs::Logs;
use metrics::Metrics;
use rime_faas::{Runtime, RuntimeConfig};
use state::{state_delete, state_get, state_put, state_scan};
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// The target of the server's log lines, in every file of the module: the
/// one they had before it was split (log filters and searches name it).
const LOG_TARGET: &str = "rime::serve";

/// Largest module `POST /functions/{name}` accepts.
pub const MAX_WASM_BYTES: usize = 16 << 20;
/// Largest body of every other request: the ABI's input limit.
pub const MAX_BODY_BYTES: usize = rime_faas::limits::MAX_INPUT_LEN;

#[derive(clap::Args)]
pub struct Args {
    /// Address to listen on; port 0 picks a free port. The first line on
    /// standard output is `listening on http://ADDR`. Default: `listen` of
    /// the config file, else 127.0.0.1:7878.
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// The bearer token. Default: read from --token-file, else DATA/token,
    /// which the first start creates (32 random bytes, hex, mode 0600).
    #[arg(long, env = "RIME_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// A file holding the bearer token (it must exist and not be empty).
    /// Default: `token_file` of the config file, else DATA/token.
    #[arg(long, value_name = "PATH")]
    token_file: Option<PathBuf>,
    /// Let `POST /invoke/{name}` through without the token.
    #[arg(long)]
    open_invoke: bool,
    /// Let reads (`GET /state/...`, `GET /functions`) through without the token.
    #[arg(long)]
    open_reads: bool,
    /// Async worker threads (HTTP parsing only; faaslets run elsewhere).
    #[arg(long, default_value_t = 2)]
    http_threads: usize,
    /// Invocations admitted at once (running, or queued on the
    /// executors); more are answered `503 overloaded` with `Retry-After`.
    #[arg(long, default_value_t = rime_faas::DEFAULT_MAX_ADMITTED)]
    max_concurrent: usize,
    /// Executor threads running the invocations (0: one per core).
    #[arg(long, default_value_t = 0)]
    executors: usize,
    /// Buffer-pool size, e.g. `256MiB`. Default: `pool` of the config
    /// file, else 256 MiB.
    #[arg(long, value_parser = crate::config::parse_pool)]
    pool: Option<usize>,
    /// When a commit is acknowledged: `sync`, `group`, `group:2ms` or
    /// `nosync` (benchmarks only). Default: `durability` of the config
    /// file, else `sync`.
    #[arg(long, value_parser = crate::config::parse_durability)]
    durability: Option<rime_storage::Durability>,
    /// Preallocate every new log segment at full size (64 MiB, zero-filled)
    /// instead of starting at 64 KiB and doubling: 64 MiB of disk up front,
    /// and no commit ever waits for a segment to be created.
    #[arg(long)]
    wal_preallocate: bool,
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
    /// The Redis Cluster of global namespaces (docs/global.md): seed nodes
    /// `redis://HOST:PORT[,redis://HOST:PORT...]`. Without it, invoking a
    /// function deployed with `--global` answers 503.
    #[arg(long, value_name = "URLS", value_delimiter = ',')]
    global: Vec<String>,
    /// Longest wait for one call to the global store (below each
    /// function's own deadline).
    #[arg(long, default_value = "2s", value_parser = env::parse_timeout)]
    global_timeout: Duration,
}

/// What the handlers share.
struct App {
    rt: Runtime,
    token: String,
    open_invoke: bool,
    open_reads: bool,
    /// Requests on tokio's blocking pool (deploys, state calls), counted
    /// until they return even if their client has gone.
    inflight: Arc<AtomicUsize>,
    metrics: Metrics,
    connections: Arc<ConnStats>,
    /// Guest log lines by function (filled by the runtime's log sink).
    logs: Arc<Logs>,
    /// Becomes `true` when the server begins to stop: log followers end
    /// their streams then, so their connections can close.
    stopping: tokio::sync::watch::Sender<bool>,
    /// The data directory, as `GET /stats` names it.
    data_dir: PathBuf,
}

type Shared = Arc<App>;

impl App {
    /// Runs `f` on tokio's blocking pool, counted as in flight until it
    /// returns (even if the client has gone).
    async fn blocking<R: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&Runtime) -> R + Send + 'static,
    ) -> errors::ApiResult<R> {
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

/// The endpoints of `docs/http.md`, each behind its token check and body
/// limit, and every request counted.
fn router(app: Shared) -> Router {
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
            "/functions/{name}/logs",
            get(logs::function_logs).route_layer(read.clone()),
        )
        .route("/stats", get(metrics::stats).route_layer(read.clone()))
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
        .route(
            "/fn/{name}",
            any(trigger::trigger)
                .layer(small)
                // `layer`, not `route_layer`: `any` has no method routes.
                // The token is still checked before the body is read.
                .layer(from_fn_with_state(app.clone(), invoke_access)),
        )
        .route(
            "/fn/{name}/{*rest}",
            any(trigger::trigger)
                .layer(small)
                // `layer`, not `route_layer`: `any` has no method routes.
                // The token is still checked before the body is read.
                .layer(from_fn_with_state(app.clone(), invoke_access)),
        )
        .route("/metrics", get(metrics::metrics))
        .route("/health", get(health))
        .fallback(fallback)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(tower_http::limit::RequestBodyLimitLayer::new(
            MAX_WASM_BYTES + (64 << 10),
        ))
        .layer(from_fn_with_state(app.clone(), access::log_request))
        .with_state(app)
}

/// `--max-connections`, lowered to fit the open-files limit once that is
/// raised as far as it goes (before anything opens files: connections
/// need descriptors), and the timeouts.
fn connection_limits(a: &Args) -> conn::Limits {
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
    conn::Limits {
        max_connections,
        header_timeout: a.header_timeout,
        idle_timeout: a.idle_timeout,
    }
}

/// The first line on standard output, which scripts read the port from.
fn announce(addr: SocketAddr) -> Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "listening on http://{addr}")?;
    out.flush()?;
    Ok(())
}

/// Where `rime serve` listens without `--listen` or a config file.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7878";

pub fn run(a: &Args, s: &Settings) -> Result<()> {
    let limits = connection_limits(a);
    let mut opts = s.db_options(a.pool, a.durability);
    if a.wal_preallocate {
        opts = opts.preallocate_log();
    }
    let db = env::open_db(&s.data, opts)?;
    let cfg = RuntimeConfig::default()
        .workers(a.executors)
        .max_admitted(a.max_concurrent.max(1));
    let cfg = match a.global.is_empty() {
        true => cfg,
        false => {
            let g = rime_global::GlobalConfig::new(a.global.iter().cloned())
                .op_timeout(a.global_timeout);
            let cluster = rime_global::Cluster::new(g).map_err(|e| format!("--global: {e}"))?;
            cfg.global(Arc::new(cluster))
        }
    };
    let logs = Logs::new();
    let cfg = cfg.log_sink(logs.sink());
    let rt = env::open_runtime(&s.data, db, cfg)?;
    let token_file = a.token_file.as_deref().or(s.file.token_file.as_deref());
    let token = resolve_token(a.token.as_deref(), token_file, &s.data)?;
    let listen = match a.listen.or(s.file.listen) {
        Some(addr) => addr,
        None => DEFAULT_LISTEN.parse()?,
    };
    let listener =
        std::net::TcpListener::bind(listen).map_err(|e| format!("listening on {listen}: {e}"))?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let app = Arc::new(App {
        rt,
        token,
        open_invoke: a.open_invoke,
        open_reads: a.open_reads,
        inflight: Arc::new(AtomicUsize::new(0)),
        metrics: Metrics::default(),
        connections: Arc::default(),
        logs,
        stopping: tokio::sync::watch::Sender::new(false),
        data_dir: s.data.clone(),
    });
    let tokio_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(a.http_threads.max(1))
        .thread_name("rime-http")
        .enable_all()
        .build()?;
    let shutdown = shutdown::catch_signals(&tokio_rt)?;
    announce(addr)?;
    tracing::info!(%addr, functions = app.rt.functions().len(), open_invoke = a.open_invoke,
        max_connections = limits.max_connections, header_timeout = ?a.header_timeout,
        idle_timeout = ?a.idle_timeout, "serving");
    let served = tokio_rt.block_on(async {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let stats = app.connections.clone();
        let stopping = app.clone();
        let shutdown = async move {
            shutdown.await;
            stopping.stopping.send_replace(true);
        };
        conn::serve(listener, router(app.clone()), limits, stats, shutdown).await;
        std::io::Result::Ok(())
    });
    // Invocations whose clients went away may still run: let them finish.
    shutdown::finish_and_close(app, tokio_rt)?;
    served.map_err(|e| format!("serving: {e}").into())
}

#[cfg(test)]
mod tests;
