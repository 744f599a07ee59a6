//! The bearer token: which requests need it, the check on a request's
//! headers (before any byte of its body is read), and where the token
//! comes from (`--token`, `RIME_TOKEN`, or the file DATA/token).

use super::errors::ApiError;
use super::{App, LOG_TARGET, Shared};
use crate::env::{self, Result};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::io::Write;

/// Which requests need the bearer token.
#[derive(Clone, Copy, PartialEq)]
pub(super) enum Access {
    Admin,
    Invoke,
    Read,
}

impl App {
    pub(super) fn authorize(
        &self,
        headers: &HeaderMap,
        access: Access,
    ) -> std::result::Result<(), ApiError> {
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

/// Route layer: the token, always.
pub(super) async fn admin_only(State(app): State<Shared>, req: Request, next: Next) -> Response {
    gate(&app, Access::Admin, req, next).await
}

/// Route layer: the token, unless `--open-invoke`.
pub(super) async fn invoke_access(State(app): State<Shared>, req: Request, next: Next) -> Response {
    gate(&app, Access::Invoke, req, next).await
}

/// Route layer: the token, unless `--open-reads`.
pub(super) async fn read_access(State(app): State<Shared>, req: Request, next: Next) -> Response {
    gate(&app, Access::Read, req, next).await
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The token: `--token`/`RIME_TOKEN`, else the token file (`--token-file`
/// or the config file's `token_file`: it must exist), else DATA/token,
/// created if missing.
pub(super) fn resolve_token(
    given: Option<&str>,
    token_file: Option<&std::path::Path>,
    dir: &std::path::Path,
) -> Result<String> {
    if let Some(t) = given {
        if t.trim().is_empty() {
            return Err("the token must not be empty".into());
        }
        return Ok(t.trim().to_string());
    }
    if let Some(path) = token_file {
        let t = std::fs::read_to_string(path)
            .map_err(|e| format!("reading the token file {}: {e}", path.display()))?;
        if t.trim().is_empty() {
            return Err(format!("the token file {} is empty", path.display()).into());
        }
        return Ok(t.trim().to_string());
    }
    let path = dir.join("token");
    match std::fs::read_to_string(&path) {
        Ok(t) if !t.trim().is_empty() => return Ok(t.trim().to_string()),
        Ok(_) => {
            return Err(format!("{} is empty: delete it or pass --token", path.display()).into());
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
    tracing::info!(target: LOG_TARGET, path = %path.display(), "created a bearer token");
    Ok(token)
}
