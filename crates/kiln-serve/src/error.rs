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
    /// A stable name for the error, for a program (the OpenAPI document lists them: [`ErrorCode`]).
    pub code: String,
}

/// Every error a client can get: a stable name, and the one status it is
/// answered with. The handlers name a code; its status, and the list the
/// OpenAPI document gives, come from here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    MalformedJson,
    BadRequest,
    Unauthorized,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    RequestTimeout,
    PayloadTooLarge,
    BatchTooLarge,
    UnsupportedMediaType,
    InvalidRequest,
    UnknownRequestId,
    ModelInvalid,
    QueueFull,
    RateLimited,
    Internal,
    NotReady,
    ShuttingDown,
    WorkerStopped,
    LogDisabled,
}

impl ErrorCode {
    pub const ALL: [Self; 20] = [
        Self::MalformedJson,
        Self::BadRequest,
        Self::Unauthorized,
        Self::Forbidden,
        Self::NotFound,
        Self::MethodNotAllowed,
        Self::RequestTimeout,
        Self::PayloadTooLarge,
        Self::BatchTooLarge,
        Self::UnsupportedMediaType,
        Self::InvalidRequest,
        Self::UnknownRequestId,
        Self::ModelInvalid,
        Self::QueueFull,
        Self::RateLimited,
        Self::Internal,
        Self::NotReady,
        Self::ShuttingDown,
        Self::WorkerStopped,
        Self::LogDisabled,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::MalformedJson => "malformed_json",
            Self::BadRequest => "bad_request",
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::RequestTimeout => "request_timeout",
            Self::PayloadTooLarge => "payload_too_large",
            Self::BatchTooLarge => "batch_too_large",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::InvalidRequest => "invalid_request",
            Self::UnknownRequestId => "unknown_request_id",
            Self::ModelInvalid => "model_invalid",
            Self::QueueFull => "queue_full",
            Self::RateLimited => "rate_limited",
            Self::Internal => "internal",
            Self::NotReady => "not_ready",
            Self::ShuttingDown => "shutting_down",
            Self::WorkerStopped => "worker_stopped",
            Self::LogDisabled => "log_disabled",
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            Self::MalformedJson | Self::BadRequest => StatusCode::BAD_REQUEST,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Forbidden => StatusCode::FORBIDDEN,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::PayloadTooLarge | Self::BatchTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::InvalidRequest | Self::UnknownRequestId | Self::ModelInvalid => StatusCode::UNPROCESSABLE_ENTITY,
            Self::QueueFull | Self::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            Self::NotReady | Self::ShuttingDown | Self::WorkerStopped | Self::LogDisabled => {
                StatusCode::SERVICE_UNAVAILABLE
            }
        }
    }
}

impl PartialEq<&str> for ErrorCode {
    fn eq(&self, other: &&str) -> bool {
        self.name() == *other
    }
}

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: ErrorCode,
    pub message: String,
    /// Seconds a client should wait before retrying (429, 503): 1 unless set.
    pub retry_after_s: Option<u64>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { status: code.status(), code, message: message.into(), retry_after_s: None }
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Forbidden, message)
    }

    /// Over the client's rate: retry after `wait` (rounded up to whole seconds, as `Retry-After` counts).
    pub fn rate_limited(wait: std::time::Duration) -> Self {
        let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        let mut error = Self::new(
            ErrorCode::RateLimited,
            format!(
                "this client is over its rate limit (serve.predict_rate_limit / feedback_rate_limit); retry in {seconds} s"
            ),
        );
        error.retry_after_s = Some(seconds.max(1));
        error
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidRequest, message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unauthorized, message)
    }

    pub fn not_ready() -> Self {
        Self::new(ErrorCode::NotReady, "the model is still loading; retry shortly")
    }

    pub fn shutting_down() -> Self {
        Self::new(ErrorCode::ShuttingDown, "the server is shutting down")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let unauthorized = self.status == StatusCode::UNAUTHORIZED;
        let retry_later = matches!(self.status, StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE);
        let retry_after_s = self.retry_after_s;
        let mut response =
            (self.status, Json(ErrorBody { error: self.message, code: self.code.name().to_owned() })).into_response();
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
            JsonRejection::JsonDataError(_) => ErrorCode::InvalidRequest,
            JsonRejection::JsonSyntaxError(_) => ErrorCode::MalformedJson,
            JsonRejection::MissingJsonContentType(_) => ErrorCode::UnsupportedMediaType,
            _ if status == StatusCode::PAYLOAD_TOO_LARGE => ErrorCode::PayloadTooLarge,
            _ => ErrorCode::BadRequest,
        };
        let message = if status == StatusCode::PAYLOAD_TOO_LARGE {
            "the request body is larger than the server accepts (serve.max_body_bytes)".to_owned()
        } else {
            rejection.body_text()
        };
        Self::new(code, message)
    }
}

impl From<SubmitError> for ApiError {
    fn from(error: SubmitError) -> Self {
        match error {
            SubmitError::Full | SubmitError::FullBytes => Self::new(ErrorCode::QueueFull, error.to_string()),
            SubmitError::Closed => Self::shutting_down(),
            SubmitError::WorkerStopped => Self::new(ErrorCode::WorkerStopped, error.to_string()),
        }
    }
}

impl From<BatchError> for ApiError {
    fn from(error: BatchError) -> Self {
        match error {
            BatchError::NotReady => Self::not_ready(),
            BatchError::Tokenize(_) => Self::invalid(error.to_string()),
            BatchError::Inference(_) | BatchError::Panicked(_) => Self::new(ErrorCode::Internal, error.to_string()),
        }
    }
}
