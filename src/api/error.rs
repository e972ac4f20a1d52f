//! The one place engine errors become HTTP responses: dockerd's status
//! codes and its `{"message": "..."}` body.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::error::EngineError;

#[derive(Debug)]
pub struct ApiError(pub EngineError);

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        ApiError(e)
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn bad_request(msg: impl Into<String>) -> ApiError {
        ApiError(EngineError::InvalidParameter(msg.into()))
    }

    pub fn status(&self) -> StatusCode {
        match &self.0 {
            EngineError::NotFound(_) => StatusCode::NOT_FOUND,
            EngineError::Conflict(_) => StatusCode::CONFLICT,
            EngineError::Forbidden(_) => StatusCode::FORBIDDEN,
            EngineError::InvalidParameter(_) => StatusCode::BAD_REQUEST,
            EngineError::NotModified => StatusCode::NOT_MODIFIED,
            EngineError::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
            EngineError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// A JSON error body with the given status.
pub fn message(status: StatusCode, msg: impl Into<String>) -> Response {
    let body = serde_json::json!({ "message": msg.into() });
    (status, Json(body)).into_response()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status == StatusCode::NOT_MODIFIED {
            return status.into_response();
        }
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(error = %self.0, "request failed");
        } else {
            tracing::debug!(status = %status, error = %self.0, "request refused");
        }
        message(status, self.0.to_string())
    }
}
