//! The handlers of `/functions`, `/invoke`, `/health` and of what no route
//! matches. The state endpoints are in `state.rs`, `/metrics` in
//! `metrics.rs`.

use super::errors::{ApiError, ApiResult, body_error, deploy_error, invoke_error, poisoned};
use super::{LOG_TARGET, Shared};
use crate::{env, query};
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use rime_faas::{
    FunctionConfig, FunctionInfo, GuestLog, InvokeError, LogSink, UndeployError, level_name,
};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

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
        // Secrets show as KEY=<secret>.
        "config": f.config.settings.iter().map(|s| s.shown()).collect::<Vec<_>>(),
        "global": f.config.global,
    })
}

/// What a module refused as not wasm (or as mangled) says when it came as
/// a form: `curl -d @f.wasm` sends `application/x-www-form-urlencoded` and
/// strips the file's newlines and carriage returns, so no binary survives.
const DATA_BINARY_HINT: &str = "the body was sent as a form (curl -d/--data strips newlines and \
     carriage returns from a file): upload the module unchanged with curl --data-binary @FILE.wasm";

/// The deploy error as the API reports it, with [`DATA_BINARY_HINT`] if
/// a module that is not wasm came as a form.
fn deploy_refusal(e: rime_faas::DeployError, headers: &HeaderMap) -> ApiError {
    use rime_faas::DeployError::{BadMagic, Malformed};
    let as_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    let bad_magic = matches!(e, BadMagic(_));
    let not_wasm = bad_magic || matches!(e, Malformed(_));
    let mut err = deploy_error(e);
    if as_form && not_wasm {
        err.message = format!("{}; {DATA_BINARY_HINT}", err.message);
    } else if bad_magic {
        err.message = format!(
            "{}; send the .wasm file's bytes unchanged, e.g. curl --data-binary @FILE.wasm",
            err.message
        );
    }
    err
}

/// `POST /functions/{name}?grant=&memory=&deadline=&env=&secret=&global=`: the
/// body is the module.
pub(super) async fn deploy(
    State(app): State<Shared>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
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
            "env" => cfg.setting(env::parse_setting(&v, false).map_err(ApiError::bad_request)?),
            "secret" => cfg.setting(env::parse_setting(&v, true).map_err(ApiError::bad_request)?),
            "global" => cfg.global(v),
            _ => {
                return Err(ApiError::bad_request(format!(
                    "unknown parameter {k:?} (grant, memory, deadline, env, secret, global)"
                )));
            }
        };
    }
    let info = app
        .blocking(move |rt| rt.deploy(&name, &wasm, cfg))
        .await?
        .map_err(|e| deploy_refusal(e, &headers))?;
    tracing::info!(target: LOG_TARGET, name = %info.name, generation = info.generation, "deployed");
    Ok((StatusCode::CREATED, Json(info_json(&info))).into_response())
}

/// `DELETE /functions/{name}` (the namespace's data stays).
pub(super) async fn undeploy(
    State(app): State<Shared>,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    let n = name.clone();
    app.blocking(move |rt| rt.undeploy(&n))
        .await?
        .map_err(|e| match e {
            UndeployError::NotFound(_) => ApiError::not_found(e.to_string()),
            e => ApiError::storage(e.to_string()),
        })?;
    app.logs.forget(&name);
    app.metrics.forget_function(&name);
    tracing::info!(target: LOG_TARGET, %name, "undeployed");
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET /functions`.
pub(super) async fn list_functions(State(app): State<Shared>) -> ApiResult<Response> {
    let list: Vec<_> = app.rt.functions().iter().map(info_json).collect();
    let unloadable: Vec<_> = (app.rt.unloadable().into_iter())
        .map(|(name, reason)| serde_json::json!({ "name": name, "reason": reason }))
        .collect();
    Ok(Json(serde_json::json!({ "functions": list, "unloadable": unloadable })).into_response())
}

/// `POST /invoke/{name}[?logs=1]`: the body is the input, the response the
/// output (with `logs=1`, JSON: the output in hex and the guest's log lines).
pub(super) async fn invoke(
    State(app): State<Shared>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
    body: std::result::Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let mut with_logs = false;
    for (k, v) in query::pairs(q.as_deref()).map_err(ApiError::bad_request)? {
        match (k.as_str(), v.as_slice()) {
            ("logs", b"1" | b"true") => with_logs = true,
            ("logs", b"0" | b"false") => with_logs = false,
            _ => {
                return Err(ApiError::bad_request(format!(
                    "unknown parameter {k:?} (logs=1)"
                )));
            }
        }
    }
    let input = body.map_err(body_error)?;
    // Straight to the executors, no thread held while it runs. If the
    // client goes away, hyper drops this future and with it the
    // `Invoking`: the invocation is cancelled unless it began to commit.
    let collected = with_logs.then(Collected::default);
    let sink = collected.as_ref().map(Collected::sink);
    let r = (app.rt)
        .invoke_async_with_logs(&name, &input[..], sink)
        .await;
    let m = &app.metrics;
    m.invocations.fetch_add(1, Ordering::Relaxed);
    match r {
        Ok(inv) => {
            let micros = inv.duration.as_micros() as u64;
            m.invocation_micros.fetch_add(micros, Ordering::Relaxed);
            m.count_function(&name, Some(micros));
            let headers = [
                (
                    header::HeaderName::from_static("x-rime-retries"),
                    inv.retries.to_string(),
                ),
                (
                    header::HeaderName::from_static("x-rime-duration-us"),
                    inv.duration.as_micros().to_string(),
                ),
            ];
            if with_logs {
                return Ok((headers, output_json(&inv)).into_response());
            }
            let octets = [(header::CONTENT_TYPE, "application/octet-stream")];
            Ok((octets, headers, inv.output).into_response())
        }
        Err(e) => {
            let mut err = invoke_error(&e);
            err.logs = collected.map(|c| logs_json(&c.take()));
            m.count_error(err.code);
            // Per function only for deployed ones: the label set stays bounded.
            if !matches!(e, InvokeError::NotFound(_)) {
                m.count_function(&name, None);
            }
            Err(err)
        }
    }
}

/// The lines of one invocation, from its own sink (`?logs=1`).
#[derive(Clone, Default)]
struct Collected(Arc<Mutex<Vec<GuestLog>>>);

impl Collected {
    fn sink(&self) -> LogSink {
        let lines = self.0.clone();
        LogSink::new(move |l| {
            lines
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(l.clone());
        })
    }

    fn take(&self) -> Vec<GuestLog> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// `[{"level", "message"}, ...]`.
fn logs_json(lines: &[GuestLog]) -> serde_json::Value {
    (lines.iter())
        .map(|l| serde_json::json!({"level": level_name(l.level), "message": l.message}))
        .collect()
}

/// The answer of `POST /invoke/{name}?logs=1` that committed.
fn output_json(inv: &rime_faas::Invocation) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "output_hex": env::hex(&inv.output),
        "logs": logs_json(&inv.logs),
        "retries": inv.retries,
        "duration_us": inv.duration.as_micros() as u64,
    }))
}

/// `/health`: 200 while the Db takes writes, 503 naming the cause once it
/// is poisoned (a failed write or sync of its files).
pub(super) fn health_response(poisoned_cause: Option<String>) -> Response {
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

/// `GET /health`.
pub(super) async fn health(State(app): State<Shared>) -> Response {
    health_response(app.rt.db().poisoned())
}

/// What no route matches.
pub(super) async fn fallback() -> ApiError {
    ApiError::not_found("no such endpoint (see docs/http.md)")
}

/// A route that matches but not with this method.
pub(super) async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "method not allowed on this endpoint",
    )
}
