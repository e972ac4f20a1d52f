//! The Docker Engine HTTP API. This layer only speaks HTTP: it parses and
//! validates requests, makes one engine call, and shapes dockerd's JSON.
//!
//! Every route answers under bare paths and under `/v{X.Y}/` for any
//! version from [`MIN_API_VERSION`] to [`API_VERSION`]; [`version_prefix`]
//! strips the prefix before routing and records the version.

mod body;
mod container_stats;
mod containers;
pub mod error;
mod exec;
mod images;
mod networks;
pub mod params;
#[cfg(test)]
mod spec_test;
mod system;
mod unsupported;
mod volumes;

use std::sync::Arc;

use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::Router;
use tokio::sync::watch;

use crate::config::DaemonConfig;
use crate::container::ContainerService;
use crate::events::EventBus;
use crate::image::ImageService;
use crate::system::HostInfo;

pub const API_VERSION: ApiVersion = ApiVersion(1, 47);
pub const MIN_API_VERSION: ApiVersion = ApiVersion(1, 24);

/// The API version a request speaks (from its path prefix, else ours).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ApiVersion(pub u32, pub u32);

impl std::fmt::Display for ApiVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.0, self.1)
    }
}

impl ApiVersion {
    pub fn parse(s: &str) -> Option<ApiVersion> {
        let (a, b) = s.split_once('.')?;
        let ok = |p: &str| !p.is_empty() && p.len() <= 4 && p.bytes().all(|c| c.is_ascii_digit());
        if !ok(a) || !ok(b) {
            return None;
        }
        Some(ApiVersion(a.parse().ok()?, b.parse().ok()?))
    }
}

/// Shared by all handlers; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub images: Arc<ImageService>,
    pub containers: Arc<ContainerService>,
    pub networks: Arc<crate::network::NetworkService>,
    pub events: EventBus,
    pub config: Arc<DaemonConfig>,
    pub host: Arc<HostInfo>,
    /// Flips to true when the daemon shuts down, ending long streams.
    pub shutdown: watch::Receiver<bool>,
}

/// The router, without the version prefix handling (see [`app`]).
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/_ping", get(system::ping).head(system::ping))
        .route("/version", get(system::version))
        .route("/info", get(system::info))
        .route("/events", get(system::events))
        .route("/images/json", get(images::list))
        .route("/images/create", post(images::create))
        .route("/images/prune", post(images::prune))
        .route("/images/get", get(images::save_many))
        .route("/images/load", post(images::load))
        .route("/images/search", get(unsupported::not_implemented))
        .route(
            "/images/{*rest}",
            get(images::get_dispatch)
                .post(images::post_dispatch)
                .delete(images::delete),
        )
        .route("/containers/json", get(containers::list))
        .route("/containers/create", post(containers::create))
        .route("/containers/prune", post(containers::prune))
        .route("/containers/{*rest}", any(containers::dispatch))
        .route("/networks", get(networks::list))
        .route("/networks/create", post(networks::create))
        .route("/networks/prune", post(networks::prune))
        .route(
            "/networks/{id}",
            get(networks::inspect).delete(networks::remove),
        )
        .route("/networks/{id}/connect", post(networks::connect))
        .route("/networks/{id}/disconnect", post(networks::disconnect))
        .route("/volumes", get(volumes::list))
        .route("/volumes/create", post(volumes::create))
        .route("/volumes/prune", post(volumes::prune))
        .route("/volumes/{*name}", any(volumes::dispatch))
        .route("/exec/{id}/start", post(exec::start))
        .route("/exec/{id}/resize", post(exec::resize))
        .route("/exec/{id}/json", get(exec::inspect))
        .merge(unsupported::routes())
        // dockerd answers a wrong method like an unknown path.
        .method_not_allowed_fallback(page_not_found)
        .fallback(any(page_not_found))
        .with_state(state)
}

/// The whole service: version prefixes stripped, then routed. The inner
/// router is a fallback service so that the rewrite happens before routing.
pub fn app(state: AppState) -> Router {
    Router::new()
        .fallback_service(router(state))
        .layer(axum::middleware::from_fn(version_prefix))
}

async fn page_not_found() -> Response {
    error::message(StatusCode::NOT_FOUND, "page not found")
}

/// Strips `/vX.Y` from the path, refusing versions we do not speak with
/// dockerd's messages, and stores the version in the request extensions.
pub async fn version_prefix(mut req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    let mut version = API_VERSION;
    if let Some(rest) = path.strip_prefix("/v") {
        if rest.starts_with(|c: char| c.is_ascii_digit()) {
            let (ver, tail) = match rest.find('/') {
                Some(i) => (&rest[..i], &rest[i..]),
                None => (rest, "/"),
            };
            match ApiVersion::parse(ver) {
                None => {
                    return error::message(
                        StatusCode::BAD_REQUEST,
                        format!("malformed API version: {ver}"),
                    )
                }
                Some(v) if v > API_VERSION => {
                    return error::message(
                        StatusCode::BAD_REQUEST,
                        format!(
                            "client version {v} is too new. Maximum supported API version is {API_VERSION}"
                        ),
                    )
                }
                Some(v) if v < MIN_API_VERSION => {
                    return error::message(
                        StatusCode::BAD_REQUEST,
                        format!(
                            "client version {v} is too old. Minimum supported API version is {MIN_API_VERSION}, please upgrade your client to a newer version"
                        ),
                    )
                }
                Some(v) => version = v,
            }
            let new_pq = match req.uri().query() {
                Some(q) => format!("{tail}?{q}"),
                None => tail.to_string(),
            };
            let mut parts = req.uri().clone().into_parts();
            match new_pq.parse() {
                Ok(pq) => parts.path_and_query = Some(pq),
                Err(_) => return error::message(StatusCode::BAD_REQUEST, "invalid path"),
            }
            match axum::http::Uri::from_parts(parts) {
                Ok(u) => *req.uri_mut() = u,
                Err(_) => return error::message(StatusCode::BAD_REQUEST, "invalid path"),
            }
        }
    }
    req.extensions_mut().insert(version);
    let method = req.method().clone();
    let uri = req.uri().path().to_string();
    let resp = next.run(req).await;
    tracing::debug!(%method, path = %uri, status = %resp.status(), "request");
    resp.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_and_order() {
        assert_eq!(ApiVersion::parse("1.47"), Some(ApiVersion(1, 47)));
        assert_eq!(ApiVersion::parse("1.x"), None);
        assert_eq!(ApiVersion::parse("1"), None);
        assert!(ApiVersion(1, 9) < ApiVersion(1, 24));
        assert_eq!(ApiVersion(1, 24).to_string(), "1.24");
    }
}
