//! The API's errors: each becomes a status and a one-line JSON body `{"error": "..."}`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// What went wrong with a request.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// The request is malformed or asks for something impossible (400).
    #[error("{0}")]
    BadRequest(String),
    /// The thing asked for does not exist (404).
    #[error("{0}")]
    NotFound(String),
    /// The upload is not an image the server can read (415).
    #[error("{0}")]
    BadImage(String),
    /// The body could not be read: over the size limit (413) or cut off.
    #[error("{1}")]
    Body(StatusCode, String),
    /// Too many requests wait for the model (503).
    #[error("the model is busy: too many requests are waiting; try again")]
    Busy,
    /// A fault on the server's side (500).
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::BadImage(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Body(status, _) => *status,
            ApiError::Busy => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// A one-line JSON error with `status`.
pub fn json_error(status: StatusCode, message: impl Into<String>) -> Response {
    let message: String = message.into();
    let line = message.lines().next().unwrap_or("").to_string();
    (status, Json(serde_json::json!({ "error": line }))).into_response()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        json_error(self.status(), self.to_string())
    }
}
