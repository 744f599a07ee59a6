//! The handlers of `/state/{ns}/{key}` (get, put, delete) and
//! `/state/{ns}` (scan): a namespace's keys, read and written directly,
//! each request a transaction of its own. A namespace a deployed function
//! declares global is read and written in the node's global store
//! (`crate::global_state`), not in the node's tree of the same name.

use super::Shared;
use super::errors::{ApiError, ApiResult, body_error, global_error, invoke_error, tx_error};
use crate::global_state;
use crate::{env, query};
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use rime_faas::{Runtime, namespace_tree};
use rime_global::Cluster;
use rime_storage::TxError;
use std::sync::Arc;

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

/// The global store of `ns` if a deployed function declares it global.
fn global_of(rt: &Runtime, ns: &str) -> ApiResult<Option<Arc<Cluster>>> {
    rt.global_store_of(ns).map_err(|e| invoke_error(&e))
}

fn no_such_key(ns: &str, key: &[u8]) -> ApiError {
    ApiError::not_found(format!("no key \"{}\" in namespace {ns:?}", show_key(key)))
}

/// `GET /state/{ns}/{key}`: the value's bytes.
pub(super) async fn state_get(State(app): State<Shared>, uri: Uri) -> ApiResult<Response> {
    let (ns, key) = state_key(&uri)?;
    let (n, k) = (ns.clone(), key.clone());
    let v = app
        .blocking(move |rt| -> ApiResult<Option<Vec<u8>>> {
            if let Some(c) = global_of(rt, &n)? {
                return global_state::get(&c, &n, &k).map_err(global_error);
            }
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
        None => Err(no_such_key(&ns, &key)),
    }
}

/// `PUT /state/{ns}/{key}`: the body is the value.
pub(super) async fn state_put(
    State(app): State<Shared>,
    uri: Uri,
    body: std::result::Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let (ns, key) = state_key(&uri)?;
    let value = body.map_err(body_error)?;
    app.blocking(move |rt| -> ApiResult<()> {
        if let Some(c) = global_of(rt, &ns)? {
            return global_state::put(&c, &ns, &key, &value).map_err(global_error);
        }
        let db = rt.db();
        let t = db
            .open_or_create_tree(&namespace_tree(&ns))
            .map_err(|e| tx_error(e.into()))?;
        db.put(t, &key, &value).map_err(tx_error)
    })
    .await??;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `DELETE /state/{ns}/{key}`.
pub(super) async fn state_delete(State(app): State<Shared>, uri: Uri) -> ApiResult<Response> {
    let (ns, key) = state_key(&uri)?;
    let (n, k) = (ns.clone(), key.clone());
    let deleted = app
        .blocking(move |rt| -> ApiResult<bool> {
            if let Some(c) = global_of(rt, &n)? {
                return global_state::delete(&c, &n, &k).map_err(global_error);
            }
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
        Err(no_such_key(&ns, &key))
    }
}

/// Bytes as a JSON string if they are UTF-8, else `null`.
fn bytes_json(b: &[u8]) -> serde_json::Value {
    match std::str::from_utf8(b) {
        Ok(s) => serde_json::Value::String(s.to_string()),
        Err(_) => serde_json::Value::Null,
    }
}

/// `GET /state/{ns}?start=&end=&limit=`: keys in `[start, end)`, and the
/// key to start the next page at.
pub(super) async fn state_scan(
    State(app): State<Shared>,
    Path(ns): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    check_ns(&ns)?;
    let p = query::scan_params(q.as_deref()).map_err(ApiError::bad_request)?;
    let limit = p.limit;
    let pairs = app
        .blocking(move |rt| -> ApiResult<Vec<(Vec<u8>, Vec<u8>)>> {
            if let Some(c) = global_of(rt, &ns)? {
                let (start, end) = (p.start.as_deref(), p.end.as_deref());
                return global_state::scan(&c, &ns, start, end, limit + 1).map_err(global_error);
            }
            let db = rt.db();
            match db
                .open_tree(&namespace_tree(&ns))
                .map_err(|e| tx_error(e.into()))?
            {
                Some(t) => crate::cmd::scan(db, t, p.start.as_deref(), p.end.as_deref(), limit + 1)
                    .map_err(|e| match e.downcast::<TxError>() {
                        Ok(e) => tx_error(*e),
                        Err(e) => ApiError::storage(e.to_string()),
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
