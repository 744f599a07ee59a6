//! `/fn/{name}/...`: HTTP-triggered components (`docs/components.md`,
//! "HTTP triggers"). Any method; the component sees the method, the path
//! after `/fn/{name}` (`/` if none) with the query, the headers and the
//! body (at most `MAX_BODY_BYTES`, the route's limit), and answers status, headers and body
//! (at most `MAX_OUTPUT_LEN`). The response is sent once the invocation
//! committed; an error is the JSON error of `/invoke`.

use super::Shared;
use super::errors::{ApiError, ApiResult, body_error, invoke_error};
use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, Request, State};
use axum::http::header::HeaderName;
use axum::response::{IntoResponse, Response};
use std::sync::atomic::Ordering;

/// The route's prefix before the function's name.
const PREFIX: &str = "/fn/";

/// The function's name and the target its component sees, from the path
/// and query of `/fn/{name}[/rest][?query]`.
fn split_target(uri: &axum::http::Uri) -> Option<(String, String)> {
    let rest = uri.path().strip_prefix(PREFIX)?;
    let (name, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let target = match uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path.to_string(),
    };
    Some((name.to_string(), target))
}

/// Any method on `/fn/{name}` and `/fn/{name}/{*rest}`.
pub(super) async fn trigger(State(app): State<Shared>, req: Request) -> ApiResult<Response> {
    let (name, target) =
        split_target(req.uri()).ok_or_else(|| ApiError::bad_request("expected /fn/{name}/..."))?;
    let (parts, body) = req.into_parts();
    let body: std::result::Result<Bytes, BytesRejection> =
        Bytes::from_request(Request::from_parts(parts.clone(), body), &()).await;
    let body = body.map_err(body_error)?;
    let mut request = axum::http::Request::new(body);
    *request.method_mut() = parts.method;
    *request.uri_mut() = target
        .parse()
        .map_err(|e| ApiError::bad_request(format!("request target {target:?}: {e}")))?;
    *request.headers_mut() = parts.headers;
    // On the executors, as `/invoke`: no thread is held while it runs.
    // If the client goes away, hyper drops this future and with it the
    // `InvokingHttp`: the invocation is cancelled unless it began to
    // commit.
    let r = app.rt.invoke_http_async(&name, &request).await;
    let m = &app.metrics;
    m.invocations.fetch_add(1, Ordering::Relaxed);
    match r {
        Ok((resp, inv)) => {
            m.invocation_micros
                .fetch_add(inv.duration.as_micros() as u64, Ordering::Relaxed);
            let mut resp = resp.map(Body::from).into_response();
            let h = resp.headers_mut();
            h.insert(
                HeaderName::from_static("x-rime-retries"),
                inv.retries.into(),
            );
            h.insert(
                HeaderName::from_static("x-rime-duration-us"),
                (inv.duration.as_micros() as u64).into(),
            );
            Ok(resp)
        }
        Err(e) => {
            let err = invoke_error(&e);
            m.count_error(err.code);
            Err(err)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::split_target;

    #[test]
    fn the_target_is_the_path_after_the_name_with_the_query() {
        let t = |s: &str| split_target(&s.parse().unwrap());
        assert_eq!(t("/fn/short"), Some(("short".into(), "/".into())));
        assert_eq!(t("/fn/short/"), Some(("short".into(), "/".into())));
        assert_eq!(
            t("/fn/short/ab/c?x=1"),
            Some(("short".into(), "/ab/c?x=1".into()))
        );
        assert_eq!(
            t("/fn/short?preview"),
            Some(("short".into(), "/?preview".into()))
        );
        assert_eq!(t("/invoke/x"), None);
    }
}
