//! Volume endpoints: list, create, inspect, remove, prune. Volume names
//! never contain slashes, but `/volumes/{name}` goes through one wildcard
//! route so that a path with more segments still reaches a handler (and
//! gets dockerd's "no such volume").

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{OriginalUri, Path, Query, Request, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::{ApiError, ApiResult};
use super::params::{self, Query as Q};
use super::{ApiVersion, AppState};
use crate::volume::{CreateOptions, Volume};

/// dockerd's `Volume` object.
fn volume_json(v: &Volume) -> Value {
    json!({
        "CreatedAt": v.created_at_rfc3339(),
        "Driver": v.row.driver,
        "Labels": v.row.labels,
        "Mountpoint": v.mountpoint,
        "Name": v.row.name,
        "Options": v.row.options,
        "Scope": "local",
    })
}

pub async fn list(State(s): State<AppState>, Query(q): Query<Q>) -> ApiResult<Json<Value>> {
    let vols = s.containers.volumes.list(&params::filters(&q)?).await?;
    let out: Vec<Value> = vols.iter().map(volume_json).collect();
    Ok(Json(json!({ "Volumes": out, "Warnings": null })))
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct CreateBody {
    name: Option<String>,
    driver: Option<String>,
    driver_opts: Option<BTreeMap<String, String>>,
    labels: Option<BTreeMap<String, String>>,
    cluster_volume_spec: Option<Value>,
}

pub async fn create(State(s): State<AppState>, body: Bytes) -> ApiResult<Response> {
    let b: CreateBody = if body.iter().all(u8::is_ascii_whitespace) {
        CreateBody::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("invalid JSON: {e}")))?
    };
    if b.cluster_volume_spec.as_ref().is_some_and(|c| !c.is_null()) {
        return Err(ApiError::bad_request(
            "cluster volumes are not supported by mydocker",
        ));
    }
    let (v, _) = s
        .containers
        .volumes
        .create(CreateOptions {
            name: b.name.unwrap_or_default(),
            driver: b.driver.unwrap_or_default(),
            labels: b.labels,
            options: b.driver_opts,
        })
        .await?;
    Ok((StatusCode::CREATED, Json(volume_json(&v))).into_response())
}

pub async fn prune(
    State(s): State<AppState>,
    Extension(version): Extension<ApiVersion>,
    Query(q): Query<Q>,
) -> ApiResult<Json<Value>> {
    let mut filters = params::filters(&q)?;
    // Before API 1.42 prune took every unused volume, named ones too.
    if version < ApiVersion(1, 42) {
        filters = crate::filters::Filters::parse(&with_all(params::string(&q, "filters"))?)?;
    }
    let report = s.containers.volumes.prune(&filters).await?;
    let deleted = if report.deleted.is_empty() {
        Value::Null
    } else {
        json!(report.deleted)
    };
    Ok(Json(json!({
        "VolumesDeleted": deleted,
        "SpaceReclaimed": report.space_reclaimed,
    })))
}

/// The `filters` JSON with `all=true` added.
fn with_all(raw: &str) -> ApiResult<String> {
    let mut v: Value = if raw.trim().is_empty() {
        json!({})
    } else {
        serde_json::from_str(raw)
            .map_err(|e| ApiError::bad_request(format!("invalid filter: {e}")))?
    };
    match v.as_object_mut() {
        Some(m) => {
            m.insert("all".into(), json!(["true"]));
        }
        None => return Err(ApiError::bad_request("invalid filter: not an object")),
    }
    Ok(v.to_string())
}

/// `GET` and `DELETE /volumes/{name}`; `PUT` (cluster volumes) is not
/// served.
pub async fn dispatch(
    State(s): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<Q>,
    OriginalUri(uri): OriginalUri,
    req: Request,
) -> ApiResult<Response> {
    match *req.method() {
        Method::GET => {
            let v = s.containers.volumes.get(&name).await?;
            Ok(Json(volume_json(&v)).into_response())
        }
        Method::DELETE => {
            s.containers
                .volumes
                .remove(&name, params::flag(&q, "force"))
                .await?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        Method::PUT => Ok(super::unsupported::not_implemented(OriginalUri(uri), req).await),
        _ => Ok(super::error::message(
            StatusCode::NOT_FOUND,
            "page not found",
        )),
    }
}
