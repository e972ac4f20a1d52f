//! Image endpoints: list, pull/import, inspect, history, tag, remove,
//! prune, save and load. Names may contain slashes
//! (`/images/127.0.0.1:5000/busybox/json`), so everything under `/images/`
//! goes through one wildcard route and is split by its last segment.

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::StreamExt;
use serde_json::{json, Value};

use super::body;
use super::error::{ApiError, ApiResult};
use super::params::{self, Query as Q};
use super::AppState;
use crate::error::EngineError;
use crate::image::progress::{Message, Progress};
use crate::image::reference;
use crate::image::registry::parse_registry_auth;
use crate::image::ImageInfo;

fn short_created(info: &ImageInfo) -> i64 {
    info.config.created_unix()
}

pub async fn list(State(s): State<AppState>, Query(q): Query<Q>) -> ApiResult<Json<Value>> {
    let filters = params::filters(&q)?;
    filters.accept_only(&["reference", "dangling", "label", "before", "since", "until"])?;
    let dangling = filters.bool_value("dangling")?;
    let before = match filters.get("before").first() {
        Some(b) => Some(short_created(&s.images.resolve(b).await?)),
        None => None,
    };
    let since = match filters.get("since").first() {
        Some(b) => Some(short_created(&s.images.resolve(b).await?)),
        None => None,
    };
    let until = match filters.get("until").first() {
        Some(u) => Some(crate::image::remove::parse_until(u)?),
        None => None,
    };
    let patterns = filters.get("reference");
    let mut out = vec![];
    for info in s.images.list().await? {
        let tags = info.familiar_tags();
        let created = short_created(&info);
        if let Some(d) = dangling {
            if d != tags.is_empty() {
                continue;
            }
        }
        if !filters.labels_match("label", &info.config.labels()) {
            continue;
        }
        if before.is_some_and(|b| created >= b) || since.is_some_and(|x| created <= x) {
            continue;
        }
        if until.is_some_and(|u| created >= u) {
            continue;
        }
        let mut repo_tags = tags.clone();
        let mut repo_digests = info.familiar_digests();
        if !patterns.is_empty() {
            let keep = |r: &String| patterns.iter().any(|p| reference_matches(p, r));
            repo_tags.retain(keep);
            repo_digests.retain(keep);
            if repo_tags.is_empty() && repo_digests.is_empty() {
                continue;
            }
        }
        let labels = info.config.labels();
        out.push(json!({
            "Id": info.row.id,
            "ParentId": "",
            "RepoTags": repo_tags,
            "RepoDigests": repo_digests,
            "Created": created,
            "Size": info.row.size,
            "SharedSize": -1,
            "VirtualSize": info.row.size,
            "Labels": if labels.is_empty() { Value::Null } else { json!(labels) },
            "Containers": -1,
        }));
    }
    Ok(Json(Value::Array(out)))
}

/// dockerd's `reference` filter: a glob matched against the familiar
/// reference and against its name alone.
fn reference_matches(pattern: &str, familiar_ref: &str) -> bool {
    let name = familiar_ref
        .split('@')
        .next()
        .map(|n| match n.rfind(':') {
            Some(i) if !n[i..].contains('/') => &n[..i],
            _ => n,
        })
        .unwrap_or(familiar_ref);
    glob_match(pattern.as_bytes(), familiar_ref.as_bytes())
        || glob_match(pattern.as_bytes(), name.as_bytes())
}

/// Go's path.Match: `*` and `?` do not cross `/`; `[...]` classes.
fn glob_match(p: &[u8], s: &[u8]) -> bool {
    match p.first() {
        None => s.is_empty(),
        Some(b'*') => (0..=s.len())
            .take_while(|&i| i == 0 || s[i - 1] != b'/')
            .any(|i| glob_match(&p[1..], &s[i..])),
        Some(b'?') => !s.is_empty() && s[0] != b'/' && glob_match(&p[1..], &s[1..]),
        Some(b'[') => {
            let Some(end) = p.iter().position(|&c| c == b']') else {
                return false;
            };
            let Some(&c) = s.first() else { return false };
            let class = &p[1..end];
            let (neg, class) = match class.first() {
                Some(b'^') => (true, &class[1..]),
                _ => (false, class),
            };
            let mut hit = false;
            let mut i = 0;
            while i < class.len() {
                if i + 2 < class.len() && class[i + 1] == b'-' {
                    hit |= class[i] <= c && c <= class[i + 2];
                    i += 3;
                } else {
                    hit |= class[i] == c;
                    i += 1;
                }
            }
            hit != neg && glob_match(&p[end + 1..], &s[1..])
        }
        Some(&c) => s.first() == Some(&c) && glob_match(&p[1..], &s[1..]),
    }
}

/// `POST /images/create`: pull (`fromImage`) or import (`fromSrc`).
pub async fn create(
    State(s): State<AppState>,
    Query(pairs): Query<Vec<(String, String)>>,
    headers: HeaderMap,
    request_body: Body,
) -> ApiResult<Response> {
    let q: Q = pairs.iter().cloned().collect();
    let platform = params::string(&q, "platform");
    if !platform.is_empty() {
        check_platform(platform)?;
    }
    let from_image = params::string(&q, "fromImage");
    let from_src = params::string(&q, "fromSrc");
    if !from_image.is_empty() {
        let r = reference::parse_from_image_and_tag(from_image, params::string(&q, "tag"))
            .map_err(|e| ApiError::bad_request(e.to_string()))?
            .with_default_tag();
        let auth =
            parse_registry_auth(headers.get("X-Registry-Auth").and_then(|v| v.to_str().ok()));
        let plan = s.images.resolve_pull(&r, &auth).await?;
        let images = s.images.clone();
        return Ok(progress_response(move |progress| async move {
            images.fetch(plan, &progress).await
        }));
    }
    if from_src.is_empty() {
        return Err(ApiError::bad_request(
            "either fromImage or fromSrc must be given",
        ));
    }
    if from_src != "-" {
        return Err(ApiError::bad_request(format!(
            "importing from a URL (fromSrc={from_src}) is not supported: send the archive in the request body with fromSrc=-"
        )));
    }
    let repo = params::string(&q, "repo");
    let target = if repo.is_empty() {
        None
    } else {
        Some(
            reference::parse_repo_and_tag(repo, params::string(&q, "tag"))
                .map_err(|e| ApiError::bad_request(e.to_string()))?
                .with_default_tag(),
        )
    };
    // The CLI sends one `changes` per --change; each may hold several lines.
    let changes: Vec<String> = pairs
        .iter()
        .filter(|(k, _)| k == "changes")
        .flat_map(|(_, c)| c.split('\n'))
        .filter(|l| !l.trim().is_empty())
        .map(String::from)
        .collect();
    let parsed_changes = crate::image::archive::parse_changes(&changes)?;
    let message = params::string(&q, "message").to_string();
    let images = s.images.clone();
    let reader = body::blocking_reader(request_body);
    Ok(progress_response(move |progress| async move {
        let id = images
            .import(reader, target, parsed_changes, message)
            .await?;
        progress.send(Message::status(id)).await
    }))
}

fn check_platform(p: &str) -> ApiResult<()> {
    let (arch, _) = crate::image::manifest::host_platform();
    let mut parts = p.split('/');
    let os = parts.next().unwrap_or("");
    let a = parts.next().unwrap_or(arch);
    if os != "linux" || a != arch {
        return Err(ApiError::bad_request(format!(
            "platform {p} is not supported: this daemon runs linux/{arch} images"
        )));
    }
    Ok(())
}

/// Runs `work` with a progress sink and streams its messages as dockerd's
/// JSON lines; an error after the stream began becomes an error message.
fn progress_response<F, Fut>(work: F) -> Response
where
    F: FnOnce(Progress) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<(), EngineError>> + Send + 'static,
{
    let (progress, rx) = Progress::channel(64);
    tokio::spawn(async move {
        let p2 = progress.clone();
        if let Err(e) = work(progress).await {
            tracing::info!(error = %e, "streamed operation failed");
            let _ = p2.send(Message::error(e.to_string())).await;
        }
    });
    let stream = tokio_stream::wrappers::ReceiverStream::new(rx).map(|m| {
        let mut v = serde_json::to_vec(&m).unwrap_or_default();
        v.extend_from_slice(b"\r\n");
        Ok::<_, std::io::Error>(bytes::Bytes::from(v))
    });
    (
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(stream),
    )
        .into_response()
}

pub async fn get_dispatch(
    State(s): State<AppState>,
    Path(rest): Path<String>,
) -> ApiResult<Response> {
    if let Some(name) = rest.strip_suffix("/json") {
        return Ok(Json(inspect_json(&s, &s.images.resolve(name).await?)).into_response());
    }
    if let Some(name) = rest.strip_suffix("/history") {
        let info = s.images.resolve(name).await?;
        let sizes = s.images.layer_sizes(&info).await?;
        return Ok(Json(history_json(&info, &sizes)).into_response());
    }
    if let Some(name) = rest.strip_suffix("/get") {
        return save(&s, vec![name.to_string()]).await;
    }
    Err(ApiError(EngineError::NotFound("page not found".into())))
}

pub async fn post_dispatch(
    State(s): State<AppState>,
    Path(rest): Path<String>,
    Query(q): Query<Q>,
) -> ApiResult<Response> {
    if let Some(name) = rest.strip_suffix("/tag") {
        let target =
            reference::parse_repo_and_tag(params::string(&q, "repo"), params::string(&q, "tag"))
                .map_err(|e| ApiError::bad_request(e.to_string()))?;
        s.images.tag(name, target).await?;
        return Ok(StatusCode::CREATED.into_response());
    }
    if rest.ends_with("/push") {
        return Err(ApiError(EngineError::NotImplemented(
            "image push (POST /images/{name}/push) is not supported by mydocker yet".into(),
        )));
    }
    Err(ApiError(EngineError::NotFound("page not found".into())))
}

pub async fn delete(
    State(s): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<Q>,
) -> ApiResult<Json<Value>> {
    let items = s
        .images
        .remove(
            &name,
            params::flag(&q, "force"),
            params::flag(&q, "noprune"),
        )
        .await?;
    Ok(Json(Value::Array(
        items.iter().map(|i| i.to_json()).collect(),
    )))
}

pub async fn prune(State(s): State<AppState>, Query(q): Query<Q>) -> ApiResult<Json<Value>> {
    let filters = params::filters(&q)?;
    let report = s.images.prune(&filters).await?;
    let deleted: Value = if report.deleted.is_empty() {
        Value::Null
    } else {
        Value::Array(report.deleted.iter().map(|i| i.to_json()).collect())
    };
    Ok(Json(json!({
        "ImagesDeleted": deleted,
        "SpaceReclaimed": report.space_reclaimed,
    })))
}

pub async fn save_many(
    State(s): State<AppState>,
    Query(q): Query<Vec<(String, String)>>,
) -> ApiResult<Response> {
    let names: Vec<String> = q
        .into_iter()
        .filter(|(k, _)| k == "names")
        .map(|(_, v)| v)
        .collect();
    if names.is_empty() {
        return Err(ApiError::bad_request(
            "no images named: give at least one names= parameter",
        ));
    }
    save(&s, names).await
}

async fn save(s: &AppState, names: Vec<String>) -> ApiResult<Response> {
    let plan = s.images.save_plan(&names).await?;
    let images = s.images.clone();
    let stream = body::blocking_writer(move |w| images.write_save(&plan, w));
    Ok(([(header::CONTENT_TYPE, "application/x-tar")], stream).into_response())
}

pub async fn load(
    State(s): State<AppState>,
    Query(q): Query<Q>,
    request_body: Body,
) -> ApiResult<Response> {
    // dockerd's quiet only drops progress bars; a load prints none anyway.
    let _quiet = params::flag(&q, "quiet");
    let reader = body::blocking_reader(request_body);
    // Errors in the archive are the client's: answer 400 before streaming.
    let loaded = s.images.load(reader).await?;
    let mut lines = vec![];
    for l in loaded {
        let m = Message::stream(format!("{l}\n"));
        let mut v = serde_json::to_vec(&m).map_err(EngineError::from)?;
        v.extend_from_slice(b"\r\n");
        lines.extend(v);
    }
    Ok(([(header::CONTENT_TYPE, "application/json")], lines).into_response())
}

fn inspect_json(s: &AppState, info: &ImageInfo) -> Value {
    let c = &info.config;
    let rc = c.config.clone().unwrap_or_default();
    let paths = s.images.layer_paths(info);
    let graph = if paths.is_empty() {
        json!({})
    } else {
        let upper = paths[0].display().to_string();
        let lower: Vec<String> = paths[1..].iter().map(|p| p.display().to_string()).collect();
        let mut d = serde_json::Map::new();
        if !lower.is_empty() {
            d.insert("LowerDir".into(), json!(lower.join(":")));
        }
        d.insert("MergedDir".into(), json!(upper.replace("/diff", "/merged")));
        d.insert("UpperDir".into(), json!(upper));
        d.insert("WorkDir".into(), json!(upper.replace("/diff", "/work")));
        Value::Object(d)
    };
    let last_tag = info
        .row
        .last_tag_at
        .map(|n| {
            chrono::DateTime::from_timestamp_nanos(n)
                .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
        })
        .unwrap_or_else(|| "0001-01-01T00:00:00Z".into());
    json!({
        "Id": info.row.id,
        "RepoTags": info.familiar_tags(),
        "RepoDigests": info.familiar_digests(),
        "Parent": "",
        "Comment": c.comment.clone().unwrap_or_default(),
        "Created": c.created.clone().unwrap_or_default(),
        "DockerVersion": c.docker_version.clone().unwrap_or_default(),
        "Author": c.author.clone().unwrap_or_default(),
        "Config": run_config_json(&rc),
        "Architecture": c.architecture,
        "Variant": c.variant,
        "Os": c.os,
        "Size": info.row.size,
        "VirtualSize": info.row.size,
        "GraphDriver": { "Name": "overlay2", "Data": graph },
        "RootFS": { "Type": "layers", "Layers": c.rootfs.diff_ids },
        "Metadata": { "LastTagTime": last_tag },
    })
}

/// dockerd shows the image's run config in container-config shape.
fn run_config_json(rc: &crate::image::config::RunConfig) -> Value {
    let empty_map = || Value::Null;
    json!({
        "Hostname": rc.hostname.clone().unwrap_or_default(),
        "Domainname": rc.domainname.clone().unwrap_or_default(),
        "User": rc.user.clone().unwrap_or_default(),
        "AttachStdin": false,
        "AttachStdout": false,
        "AttachStderr": false,
        "ExposedPorts": rc.exposed_ports.as_ref().map(|p| json!(p)).unwrap_or_else(empty_map),
        "Tty": false,
        "OpenStdin": false,
        "StdinOnce": false,
        "Env": rc.env,
        "Cmd": rc.cmd,
        "Healthcheck": rc.healthcheck,
        "ArgsEscaped": rc.args_escaped,
        "Image": "",
        "Volumes": rc.volumes.as_ref().map(|p| json!(p)).unwrap_or_else(empty_map),
        "WorkingDir": rc.working_dir.clone().unwrap_or_default(),
        "Entrypoint": rc.entrypoint,
        "OnBuild": rc.on_build,
        "Labels": rc.labels,
        "StopSignal": rc.stop_signal,
        "Shell": rc.shell,
    })
}

/// `docker history`: newest first; layers map to non-empty history entries
/// in order, and only the newest entry carries the image ID.
fn history_json(info: &ImageInfo, sizes: &[i64]) -> Value {
    let c = &info.config;
    let mut out = vec![];
    let mut layer_index = 0usize;
    let entries: Vec<_> = if c.history.is_empty() {
        // Images without history (docker import of old tools): one per layer.
        c.rootfs
            .diff_ids
            .iter()
            .map(|_| crate::image::config::HistoryEntry::default())
            .collect()
    } else {
        c.history.clone()
    };
    for h in &entries {
        let size = if h.empty_layer {
            0
        } else {
            let s = sizes.get(layer_index).copied().unwrap_or(0);
            layer_index += 1;
            s
        };
        let created = h
            .created
            .as_deref()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.timestamp())
            .unwrap_or(0);
        out.push(json!({
            "Id": "<missing>",
            "Created": created,
            "CreatedBy": h.created_by.clone().unwrap_or_default(),
            "Tags": Value::Null,
            "Size": size,
            "Comment": h.comment.clone().unwrap_or_default(),
        }));
    }
    out.reverse();
    if let Some(first) = out.first_mut() {
        first["Id"] = json!(info.row.id);
        let tags = info.familiar_tags();
        if !tags.is_empty() {
            first["Tags"] = json!(tags);
        }
    }
    Value::Array(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_filter_globs() {
        assert!(reference_matches("busybox", "busybox:latest"));
        assert!(reference_matches("busy*", "busybox:latest"));
        assert!(reference_matches("busybox:lat*", "busybox:latest"));
        assert!(!reference_matches("alpine", "busybox:latest"));
        assert!(reference_matches(
            "127.0.0.1:5000/*",
            "127.0.0.1:5000/busybox:latest"
        ));
        assert!(!reference_matches("*", "127.0.0.1:5000/busybox:latest"));
        assert!(glob_match(b"b[a-u]sybox", b"busybox"));
        assert!(!glob_match(b"b[^u]sybox", b"busybox"));
    }
}
