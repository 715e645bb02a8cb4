//! Every error a client sees: JSON `{"error": ..., "code": ...}` with the
//! status that says whose fault it is and whether retrying can help.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::batcher::{BatchError, SubmitError};

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong, for a person.
    pub error: String,
    /// A stable name for the error, for a program: `invalid_request`, `malformed_json`,
    /// `unsupported_media_type`, `unauthorized`, `payload_too_large`, `batch_too_large`, `not_found`,
    /// `method_not_allowed`, `queue_full`, `not_ready`, `shutting_down`, `model_invalid`, `log_disabled`,
    /// `internal`, `forbidden`, `rate_limited`, `unknown_request_id`, `request_timeout`, `worker_stopped`.
    pub code: String,
}

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Seconds a client should wait before retrying (429, 503): 1 unless set.
    pub retry_after_s: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), retry_after_s: None }
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// Over the client's rate: retry after `wait` (rounded up to whole seconds, as `Retry-After` counts).
    pub fn rate_limited(wait: std::time::Duration) -> Self {
        let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        let mut error = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!(
                "this client is over its rate limit (serve.predict_rate_limit / feedback_rate_limit); retry in {seconds} s"
            ),
        );
        error.retry_after_s = Some(seconds.max(1));
        error
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request", message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub fn not_ready() -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "not_ready", "the model is still loading; retry shortly")
    }

    pub fn shutting_down() -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "shutting_down", "the server is shutting down")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let unauthorized = self.status == StatusCode::UNAUTHORIZED;
        let retry_later = matches!(self.status, StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE);
        let retry_after_s = self.retry_after_s;
        let mut response =
            (self.status, Json(ErrorBody { error: self.message, code: self.code.to_owned() })).into_response();
        if unauthorized {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if retry_later {
            let seconds = HeaderValue::from(retry_after_s.unwrap_or(1));
            response.headers_mut().insert(header::RETRY_AFTER, seconds);
        }
        response
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        let status = rejection.status();
        let code = match &rejection {
            JsonRejection::JsonDataError(_) => "invalid_request",
            JsonRejection::JsonSyntaxError(_) => "malformed_json",
            JsonRejection::MissingJsonContentType(_) => "unsupported_media_type",
            _ if status == StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
            _ => "bad_request",
        };
        let message = if status == StatusCode::PAYLOAD_TOO_LARGE {
            "the request body is larger than the server accepts (serve.max_body_bytes)".to_owned()
        } else {
            rejection.body_text()
        };
        Self::new(status, code, message)
    }
}

impl From<SubmitError> for ApiError {
    fn from(error: SubmitError) -> Self {
        match error {
            SubmitError::Full | SubmitError::FullBytes => {
                Self::new(StatusCode::TOO_MANY_REQUESTS, "queue_full", error.to_string())
            }
            SubmitError::Closed => Self::shutting_down(),
            SubmitError::WorkerStopped => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "worker_stopped", error.to_string())
            }
        }
    }
}

impl From<BatchError> for ApiError {
    fn from(error: BatchError) -> Self {
        match error {
            BatchError::NotReady => Self::not_ready(),
            BatchError::Tokenize(_) => Self::invalid(error.to_string()),
            BatchError::Inference(_) | BatchError::Panicked(_) => {
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", error.to_string())
            }
        }
    }
}
