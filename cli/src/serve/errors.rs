//! Error responses: `{"error": {"code": CODE, "message": MESSAGE}}`, and
//! the mapping of the runtime's and the storage layer's errors onto codes
//! and statuses (the table of `docs/http.md`).

use super::LOG_TARGET;
use axum::Json;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use rime_faas::{DeployError, InvokeError};
use rime_storage::{DbError, TxError};

/// An error response: `{"error": {"code": CODE, "message": MESSAGE}}`.
#[derive(Debug)]
pub struct ApiError {
    pub(super) status: StatusCode,
    pub(super) code: &'static str,
    pub(super) message: String,
    /// The guest's error code, for `function_error` (`function_code` in
    /// the JSON).
    pub(super) function_code: Option<i32>,
    /// The failed invocation's guest log lines, for `?logs=1` (`logs`
    /// beside `error` in the JSON).
    pub(super) logs: Option<serde_json::Value>,
}

pub(super) type ApiResult<T> = std::result::Result<T, ApiError>;

impl ApiError {
    pub(super) fn new(
        status: StatusCode,
        code: &'static str,
        message: impl Into<String>,
    ) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            function_code: None,
            logs: None,
        }
    }
    pub(super) fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }
    pub(super) fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }
    pub(super) fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }
    /// A `500 storage`: the storage layer failed.
    pub(super) fn storage(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "storage", message)
    }
}

/// `Retry-After` of a `503 overloaded`, in seconds.
const OVERLOADED_RETRY_AFTER_S: &str = "1";

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(target: LOG_TARGET, code = self.code, "{}", self.message);
        } else {
            tracing::debug!(target: LOG_TARGET, code = self.code, "{}", self.message);
        }
        let overloaded =
            self.status == StatusCode::SERVICE_UNAVAILABLE && self.code == "overloaded";
        let mut body = serde_json::json!({"error": {"code": self.code, "message": self.message}});
        if let Some(c) = self.function_code {
            body["error"]["function_code"] = c.into();
        }
        if let Some(logs) = self.logs {
            body["logs"] = logs;
        }
        let mut response = (self.status, Json(body)).into_response();
        if overloaded {
            // Admission refused at once: a second is long enough for the
            // invocations in flight to make room.
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static(OVERLOADED_RETRY_AFTER_S),
            );
        }
        response
    }
}

/// A body that could not be read: over its limit (`413 too_large`), or
/// broken (`400 bad_request`).
pub(super) fn body_error(r: BytesRejection) -> ApiError {
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
pub(super) fn poisoned(cause: &str) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "poisoned",
        format!(
            "the database is poisoned ({cause}): it refuses writes until the server is \
             restarted on the directory (recovery then replays the log)"
        ),
    )
}

pub(super) fn tx_error(e: TxError) -> ApiError {
    match e {
        TxError::Db(DbError::Poisoned(cause)) => poisoned(&cause),
        TxError::KeyTooLarge { .. } | TxError::ValueTooLarge { .. } => {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", e.to_string())
        }
        TxError::Conflict { .. } => ApiError::new(StatusCode::CONFLICT, "conflict", e.to_string()),
        e => ApiError::storage(e.to_string()),
    }
}

pub(super) fn deploy_error(e: DeployError) -> ApiError {
    let (status, code) = match &e {
        DeployError::Malformed(_) | DeployError::BadMagic(_) => {
            (StatusCode::BAD_REQUEST, "malformed_module")
        }
        DeployError::Abi(_) => (StatusCode::BAD_REQUEST, "abi_violation"),
        DeployError::Component(_) => (StatusCode::BAD_REQUEST, "unsupported_component"),
        DeployError::BadName(_) => (StatusCode::BAD_REQUEST, "bad_name"),
        DeployError::Storage(TxError::Db(DbError::Poisoned(cause))) => return poisoned(cause),
        DeployError::Storage(_) => (StatusCode::INTERNAL_SERVER_ERROR, "storage"),
        _ => (StatusCode::BAD_REQUEST, "bad_config"),
    };
    ApiError::new(status, code, e.to_string())
}

/// A failed call to the global store outside an invocation (`/state` on a
/// global namespace): as an invocation's (`invoke_error`).
pub(super) fn global_error(e: rime_global::GlobalError) -> ApiError {
    let e = match e {
        rime_global::GlobalError::Unknown(m) => InvokeError::GlobalUnknown(m),
        e => InvokeError::GlobalUnavailable(e.to_string()),
    };
    invoke_error(&e)
}

pub(super) fn invoke_error(e: &InvokeError) -> ApiError {
    let (status, code) = match e {
        InvokeError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
        InvokeError::Unloadable { .. } => (StatusCode::INTERNAL_SERVER_ERROR, "unloadable"),
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
        InvokeError::WrongTrigger(_) => (StatusCode::BAD_REQUEST, "wrong_trigger"),
        InvokeError::Overloaded(_) => (StatusCode::SERVICE_UNAVAILABLE, "overloaded"),
        InvokeError::GlobalUnavailable(_) => {
            (StatusCode::SERVICE_UNAVAILABLE, "global_unavailable")
        }
        InvokeError::GlobalUnknown(_) => (StatusCode::SERVICE_UNAVAILABLE, "global_unknown"),
        InvokeError::GlobalUnsupported(_) => {
            (StatusCode::UNPROCESSABLE_ENTITY, "global_unsupported")
        }
        InvokeError::Storage(TxError::Db(DbError::Poisoned(cause))) => return poisoned(cause),
        InvokeError::Storage(_) => (StatusCode::INTERNAL_SERVER_ERROR, "storage"),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
    };
    match e {
        // The guest's own message, unadorned, and its code.
        InvokeError::Function { code: c, message } => ApiError {
            function_code: Some(*c),
            ..ApiError::new(status, code, message.clone())
        },
        e => ApiError::new(status, code, e.to_string()),
    }
}
