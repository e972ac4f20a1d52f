//! The engine's error kinds. Engine modules return [`EngineError`]; the API
//! layer maps each kind to one HTTP status (see `api::error`), so the wording
//! here is what docker CLI users read.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum EngineError {
    /// 404: the named object does not exist.
    #[error("{0}")]
    NotFound(String),
    /// 409: a name or state conflict.
    #[error("{0}")]
    Conflict(String),
    /// 403: an operation refused by policy (predefined networks, pool
    /// overlaps), as dockerd's `errdefs.Forbidden`.
    #[error("{0}")]
    Forbidden(String),
    /// 400: bad parameter or value.
    #[error("{0}")]
    InvalidParameter(String),
    /// 304: nothing to do (start of a running container, ...).
    #[error("not modified")]
    NotModified,
    /// 501: a feature we do not serve.
    #[error("{0}")]
    NotImplemented(String),
    /// 500: anything else.
    #[error("{0}")]
    Internal(String),
}

pub type EngineResult<T> = Result<T, EngineError>;

impl EngineError {
    pub fn internal(e: impl std::fmt::Display) -> Self {
        EngineError::Internal(e.to_string())
    }
}

impl From<std::io::Error> for EngineError {
    fn from(e: std::io::Error) -> Self {
        EngineError::Internal(e.to_string())
    }
}

impl From<rusqlite::Error> for EngineError {
    fn from(e: rusqlite::Error) -> Self {
        EngineError::Internal(format!("database error: {e}"))
    }
}

impl From<serde_json::Error> for EngineError {
    fn from(e: serde_json::Error) -> Self {
        EngineError::Internal(format!("json error: {e}"))
    }
}
