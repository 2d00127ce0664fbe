//! The one error type of the HTTP API, mapped exhaustively to status codes, stable `code`s and
//! `application/problem+json` bodies. 5xx bodies never carry internals: those go to the log.

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use pipeline::engine::EngineError;
use pipeline::queue::QueueError;
use pipeline::spec::SpecError;
use pipeline::storage::StorageError;
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The spec (or a query parameter standing for it) is invalid: `detail` names the field.
    #[error("{0}")]
    BadSpec(SpecError),
    #[error("{0}")]
    BadRequest(String),
    #[error("missing or wrong API key")]
    Unauthorized,
    /// A signed output URL that is altered, expired or malformed.
    #[error("{0}")]
    BadSignature(pipeline::signing::SignatureError),
    /// Unknown job, or another key's job (never 403: existence is not revealed).
    #[error("{0}")]
    NotFound(String),
    /// A known path asked with a method it does not take.
    #[error("this path takes {allow}")]
    MethodNotAllowed { allow: &'static str },
    /// An `Idempotency-Key` reused with a different request.
    #[error("{0}")]
    Conflict(String),
    #[error("the upload is larger than the {limit}-byte limit")]
    TooLarge { limit: u64 },
    /// Not an image we read, judged by its bytes.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// An image we cannot decode, or over the pixel limit.
    #[error("{0}")]
    Unprocessable(String),
    #[error("the queue is full ({depth} jobs waiting); retry later")]
    QueueFull { depth: u64, retry_after: u64 },
    /// This API key is over its quota of unfinished jobs or its upload rate.
    #[error("{reason}; retry later")]
    KeyLimited {
        reason: &'static str,
        retry_after: u64,
    },
    /// Too many uploads in progress at once on this gateway.
    #[error("{limit} uploads are already in progress here; retry later")]
    RateLimited { limit: usize, retry_after: u64 },
    #[error("{0} is unavailable")]
    Unavailable(&'static str),
    /// A bug or an unexpected failure; the message is logged, never sent.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    /// Stable machine-readable code (also the last segment of `type`).
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadSpec(_) => "bad_spec",
            ApiError::BadRequest(_) => "bad_request",
            ApiError::Unauthorized | ApiError::BadSignature(_) => "unauthorized",
            ApiError::NotFound(_) => "not_found",
            ApiError::MethodNotAllowed { .. } => "method_not_allowed",
            ApiError::Conflict(_) => "conflict",
            ApiError::TooLarge { .. } => "too_large",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::Unprocessable(_) => "unprocessable_image",
            ApiError::QueueFull { .. } => "queue_full",
            ApiError::RateLimited { .. } | ApiError::KeyLimited { .. } => "rate_limited",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Internal(_) => "internal",
        }
    }

    pub fn not_found() -> ApiError {
        ApiError::NotFound("no such job".into())
    }
}

#[derive(Serialize)]
struct Problem<'a> {
    #[serde(rename = "type")]
    kind: String,
    title: &'a str,
    status: u16,
    detail: String,
    code: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadSpec(_) | ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized | ApiError::BadSignature(_) => StatusCode::UNAUTHORIZED,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::QueueFull { .. }
            | ApiError::RateLimited { .. }
            | ApiError::KeyLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        let detail = match self {
            ApiError::Internal(message) => {
                tracing::error!(error = %message, "internal error");
                "an internal error occurred; it has been logged".to_owned()
            }
            other => other.to_string(),
        };
        let field = match self {
            ApiError::BadSpec(e) if !e.field.is_empty() => Some(e.field.as_str()),
            _ => None,
        };
        let problem = Problem {
            kind: format!("https://imagepipe.dev/problems/{}", self.code()),
            title: status.canonical_reason().unwrap_or("Error"),
            status: status.as_u16(),
            detail,
            code: self.code(),
            field,
        };
        let mut response = HttpResponse::build(status);
        response.content_type("application/problem+json");
        // Refusals of uploads come before their body was read: closing the connection is the
        // only way to tell a client that is still sending that the rest is not wanted.
        if matches!(
            self,
            ApiError::TooLarge { .. }
                | ApiError::UnsupportedMediaType(_)
                | ApiError::Unprocessable(_)
                | ApiError::BadSpec(_)
                | ApiError::BadRequest(_)
                | ApiError::QueueFull { .. }
                | ApiError::RateLimited { .. }
                | ApiError::KeyLimited { .. }
        ) {
            response.force_close();
        }
        match self {
            ApiError::QueueFull { retry_after, .. }
            | ApiError::RateLimited { retry_after, .. }
            | ApiError::KeyLimited { retry_after, .. } => {
                response.insert_header((header::RETRY_AFTER, retry_after.to_string()));
            }
            ApiError::Unavailable(_) => {
                response.insert_header((header::RETRY_AFTER, "5"));
            }
            ApiError::Unauthorized | ApiError::BadSignature(_) => {
                response
                    .insert_header((header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer")));
            }
            ApiError::MethodNotAllowed { allow } => {
                response.insert_header((header::ALLOW, *allow));
            }
            _ => {}
        }
        response.json(problem)
    }
}

impl From<SpecError> for ApiError {
    fn from(e: SpecError) -> Self {
        ApiError::BadSpec(e)
    }
}

impl From<QueueError> for ApiError {
    fn from(e: QueueError) -> Self {
        if e.is_unavailable() {
            tracing::warn!(error = %e, "redis unavailable");
            ApiError::Unavailable("Redis")
        } else {
            ApiError::Internal(e.to_string())
        }
    }
}

impl From<StorageError> for ApiError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::Body(body) => match body.downcast::<ApiError>() {
                Ok(api) => *api,
                Err(other) => {
                    ApiError::BadRequest(format!("reading the request body failed: {other}"))
                }
            },
            StorageError::Unavailable(_) | StorageError::Refused(_) => {
                tracing::warn!(error = %e, "storage unavailable");
                ApiError::Unavailable("storage")
            }
            StorageError::NotFound(_) => ApiError::NotFound("no such object".into()),
            StorageError::InvalidKey(_) | StorageError::Config(_) => {
                ApiError::Internal(e.to_string())
            }
        }
    }
}

/// What the engine says about an upload's header, as the API answers it.
pub fn from_probe(e: EngineError) -> ApiError {
    match e {
        EngineError::NotAnImage | EngineError::UnsupportedFormat(_) => {
            ApiError::UnsupportedMediaType(e.to_string())
        }
        EngineError::PixelLimit { .. }
        | EngineError::OutputTooLarge { .. }
        | EngineError::FrameLimit { .. }
        | EngineError::Decode { .. }
        | EngineError::BadFrames(_) => ApiError::Unprocessable(e.to_string()),
        EngineError::Video(video) => match video.code() {
            pipeline::failure::FailureCode::UnsupportedFormat => {
                ApiError::UnsupportedMediaType(video.to_string())
            }
            _ => ApiError::Unprocessable(video.to_string()),
        },
        EngineError::Encode { .. }
        | EngineError::Cancelled
        | EngineError::TimedOut
        | EngineError::Internal(_) => ApiError::Internal(e.to_string()),
    }
}
