//! The request log: one `info` line per HTTP request (method, path,
//! status, duration, and for a function's endpoints its name and the
//! invocation's conflict re-runs), and the request counter.

use super::{LOG_TARGET, Shared};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use std::sync::atomic::Ordering;
use std::time::Instant;

/// The function a path names: `/invoke/{name}`, `/functions/{name}` and
/// `/functions/{name}/logs`; `None` for the others, and for a name that is
/// not valid (the log line shows the path).
fn function_of(path: &str) -> Option<&str> {
    let rest = (path.strip_prefix("/invoke/")).or_else(|| path.strip_prefix("/functions/"))?;
    let name = rest.strip_suffix("/logs").unwrap_or(rest);
    rime_faas::limits::valid_name(name.as_bytes()).then_some(name)
}

/// Middleware: counts the request, runs it, logs it. The log line's
/// fields (the path copied, the retries header parsed) are gathered only
/// when `info` lines of this target are on: a server run at `--log warn`
/// pays for the counter alone.
pub(super) async fn log_request(State(app): State<Shared>, req: Request, next: Next) -> Response {
    app.metrics.requests.fetch_add(1, Ordering::Relaxed);
    if !tracing::enabled!(target: LOG_TARGET, tracing::Level::INFO) {
        return next.run(req).await;
    }
    let start = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let response = next.run(req).await;
    let retries = (response.headers().get("x-rime-retries"))
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u32>().ok());
    tracing::info!(
        target: LOG_TARGET,
        %method,
        path = ?path,
        status = response.status().as_u16(),
        duration_us = start.elapsed().as_micros() as u64,
        function = function_of(&path),
        retries,
        "request"
    );
    response
}

#[cfg(test)]
mod tests {
    use super::function_of;

    #[test]
    fn functions_of_paths() {
        assert_eq!(function_of("/invoke/kv"), Some("kv"));
        assert_eq!(function_of("/functions/kv"), Some("kv"));
        assert_eq!(function_of("/functions/kv/logs"), Some("kv"));
        assert_eq!(function_of("/functions"), None);
        assert_eq!(function_of("/invoke/Bad%20Name"), None);
        assert_eq!(function_of("/state/kv/a"), None);
    }
}
