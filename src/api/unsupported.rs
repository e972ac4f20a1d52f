//! Docker Engine endpoints mydocker does not serve yet. Each answers 501
//! with a message naming it, never a silent 200: clients then fail loudly.
//! Container actions we do not serve yet (changes, export, ...) reach
//! [`not_implemented`] through `api::containers::dispatch`.

use axum::extract::{OriginalUri, Request};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{any, MethodRouter};
use axum::Router;

use super::error::message;
use super::AppState;

/// Path patterns of the Engine API that we know and do not serve.
const NOT_SERVED: &[&str] = &[
    "/build",
    "/build/{*rest}",
    "/commit",
    "/auth",
    "/system/df",
    "/distribution/{*rest}",
    "/session",
    "/swarm",
    "/swarm/{*rest}",
    "/services",
    "/services/{*rest}",
    "/tasks",
    "/tasks/{*rest}",
    "/nodes",
    "/nodes/{*rest}",
    "/secrets",
    "/secrets/{*rest}",
    "/configs",
    "/configs/{*rest}",
    "/plugins",
    "/plugins/{*rest}",
    "/grpc",
];

pub fn routes() -> Router<AppState> {
    NOT_SERVED.iter().fold(Router::new(), |r, p| {
        let h: MethodRouter<AppState> = any(not_implemented);
        r.route(p, h)
    })
}

pub async fn not_implemented(OriginalUri(uri): OriginalUri, req: Request) -> Response {
    message(
        StatusCode::NOT_IMPLEMENTED,
        format!(
            "{} {} is not implemented by mydocker yet",
            req.method(),
            uri.path()
        ),
    )
}
