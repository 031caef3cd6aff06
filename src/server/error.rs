//! The API's error model: Pinpoint's seven error types (and Customer Profiles' five),
//! rendered so every SDK maps them.
//!
//! Each error carries `x-amzn-ErrorType` (what aws-sdk-rust and botocore read to choose the
//! typed error), `x-amzn-RequestId`, and the documented `{"Message","RequestID"}` body.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::api::Api;
use crate::model::MessageBody;

tokio::task_local! {
    /// The id of the request being served, set by the request-id middleware.
    pub static REQUEST_ID: String;
    /// The operation the request turned out to be, for the request log.
    pub static OPERATION: std::sync::Arc<std::sync::Mutex<&'static str>>;
}

/// Names the operation being served, for the request log.
pub fn set_operation(name: &'static str) {
    let _ = OPERATION.try_with(|op| *op.lock().unwrap_or_else(|p| p.into_inner()) = name);
}

/// The current request's id, or a fresh one outside a request scope.
pub fn current_request_id() -> String {
    REQUEST_ID
        .try_with(|id| id.clone())
        .unwrap_or_else(|_| new_request_id())
}

/// A version 4 UUID. Its random bits come from the thread's fastrand generator (seeded from
/// the OS once per thread), not from a `getrandom` system call per request: a request id
/// names a request in logs and answers, and is never a secret.
pub fn new_request_id() -> String {
    uuid::Builder::from_random_bytes(fastrand::u128(..).to_le_bytes())
        .into_uuid()
        .to_string()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    BadRequest,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    Conflict,
    PayloadTooLarge,
    TooManyRequests,
    Internal,
    /// The database is out of reach: 503, which every SDK retries.
    Unavailable,
}

impl ErrorKind {
    pub fn status(self) -> StatusCode {
        match self {
            Self::BadRequest => StatusCode::BAD_REQUEST,
            Self::Forbidden => StatusCode::FORBIDDEN,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Conflict => StatusCode::CONFLICT,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The modelled error shape name, as the SDKs expect it in `x-amzn-ErrorType`, for
    /// Pinpoint.
    pub fn code(self) -> &'static str {
        self.code_for(Api::Pinpoint)
    }

    /// The modelled error shape name for `api`. Customer Profiles models five errors; a 405,
    /// 413 or 409 there keeps its status and is named BadRequestException, so both SDKs
    /// still read it as a typed error rather than an unknown one.
    pub fn code_for(self, api: Api) -> &'static str {
        if api == Api::ConnectCampaigns {
            // Its model: ValidationException (400), AccessDeniedException,
            // ResourceNotFoundException, ConflictException, ThrottlingException,
            // InternalServerException; a 405 or 413 keeps its status, named as a 400 is.
            return match self {
                Self::BadRequest | Self::MethodNotAllowed | Self::PayloadTooLarge => {
                    "ValidationException"
                }
                Self::Conflict => "ConflictException",
                Self::Forbidden => "AccessDeniedException",
                Self::NotFound => "ResourceNotFoundException",
                Self::TooManyRequests => "ThrottlingException",
                Self::Internal | Self::Unavailable => "InternalServerException",
            };
        }
        if api == Api::CustomerProfiles {
            return match self {
                Self::BadRequest
                | Self::MethodNotAllowed
                | Self::PayloadTooLarge
                | Self::Conflict => "BadRequestException",
                Self::Forbidden => "AccessDeniedException",
                Self::NotFound => "ResourceNotFoundException",
                Self::TooManyRequests => "ThrottlingException",
                Self::Internal | Self::Unavailable => "InternalServerException",
            };
        }
        match self {
            Self::BadRequest => "BadRequestException",
            Self::Forbidden => "ForbiddenException",
            Self::NotFound => "NotFoundException",
            Self::MethodNotAllowed => "MethodNotAllowedException",
            Self::Conflict => "ConflictException",
            Self::PayloadTooLarge => "PayloadTooLargeException",
            Self::TooManyRequests => "TooManyRequestsException",
            // Pinpoint models no 503 shape: the SDKs read the modelled 500 one (and retry
            // on the status).
            Self::Internal | Self::Unavailable => "InternalServerErrorException",
        }
    }
}

/// An error answer. The message is for the caller: it never carries internals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub kind: ErrorKind,
    pub message: String,
}

impl From<crate::model::endpoint::Invalid> for ApiError {
    fn from(e: crate::model::endpoint::Invalid) -> Self {
        Self::bad_request(e.message)
    }
}

impl ApiError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::BadRequest, message)
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Forbidden, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }
    /// A failure the caller cannot act on. The cause goes to the log, not the answer.
    pub fn internal(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(
            ErrorKind::Internal,
            "Internal server error. Retry the request; if it keeps failing, check the server log.",
        )
    }
}

impl From<rusqlite::Error> for ApiError {
    fn from(e: rusqlite::Error) -> Self {
        Self::internal(&e)
    }
}

impl ApiError {
    /// The database cannot be reached just now.
    pub fn unavailable() -> Self {
        Self::new(
            ErrorKind::Unavailable,
            "The service's database is unavailable. Retry the request.",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let request_id = current_request_id();
        let body = serde_json::to_vec(&MessageBody {
            message: self.message,
            request_id: request_id.clone(),
        })
        .unwrap_or_default();
        let mut resp = (self.kind.status(), body).into_response();
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        h.insert(
            "x-amzn-ErrorType",
            HeaderValue::from_static(self.kind.code()),
        );
        if let Ok(v) = HeaderValue::from_str(&request_id) {
            h.insert("x-amzn-RequestId", v);
        }
        // For the request-id layer, which knows the path: a Customer Profiles request's error
        // is renamed there (see `name_for`).
        resp.extensions_mut().insert(self.kind);
        resp
    }
}

/// Names an error answer as `api` names it: the type header set from the kind the answer
/// carries (every [`ApiError`] answer carries one; other answers are left as they are).
pub fn name_for(api: Api, resp: &mut Response) {
    if api == Api::Pinpoint {
        return;
    }
    if let Some(kind) = resp.extensions().get::<ErrorKind>().copied() {
        resp.headers_mut().insert(
            "x-amzn-ErrorType",
            HeaderValue::from_static(kind.code_for(api)),
        );
    }
}
