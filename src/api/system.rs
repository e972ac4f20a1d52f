//! `/_ping`, `/version`, `/info` and `/events`.

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::error::ApiResult;
use super::params::{self, Query as Q};
use super::{AppState, API_VERSION, MIN_API_VERSION};
use crate::events::event_matches;

pub const SERVER_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Go's GOARCH names, which clients print and compare.
pub fn go_arch() -> &'static str {
    crate::image::manifest::host_platform().0
}

pub async fn ping(method: Method) -> Response {
    let mut h = HeaderMap::new();
    h.insert("Api-Version", HeaderValue::from_static("1.47"));
    h.insert("Ostype", HeaderValue::from_static("linux"));
    h.insert("Docker-Experimental", HeaderValue::from_static("false"));
    h.insert("Builder-Version", HeaderValue::from_static("1"));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-store, must-revalidate"),
    );
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if method == Method::HEAD {
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
        return (StatusCode::OK, h).into_response();
    }
    (StatusCode::OK, h, "OK").into_response()
}

pub async fn version(State(s): State<AppState>) -> Json<serde_json::Value> {
    let kernel = s.host.kernel_version.clone();
    Json(json!({
        "Platform": { "Name": "mydocker" },
        "Components": [{
            "Name": "Engine",
            "Version": SERVER_VERSION,
            "Details": {
                "ApiVersion": API_VERSION.to_string(),
                "Arch": go_arch(),
                "BuildTime": "",
                "Experimental": "false",
                "GitCommit": "",
                "GoVersion": "",
                "KernelVersion": kernel,
                "MinAPIVersion": MIN_API_VERSION.to_string(),
                "Os": "linux",
            }
        }],
        "Version": SERVER_VERSION,
        "ApiVersion": API_VERSION.to_string(),
        "MinAPIVersion": MIN_API_VERSION.to_string(),
        "GitCommit": "",
        "GoVersion": "",
        "Os": "linux",
        "Arch": go_arch(),
        "KernelVersion": kernel,
        "BuildTime": "",
    }))
}

pub async fn info(State(s): State<AppState>) -> ApiResult<Json<serde_json::Value>> {
    let images = s.images.count().await?;
    let (containers, running, stopped) = s.containers.counts().await?;
    let c = &s.config;
    let cgroup_v2 = s.host.cgroup_version == crate::system::CgroupVersion::V2;
    let mirrors: Vec<String> = c
        .registry_mirrors
        .iter()
        .map(|m| format!("{}/", m.trim_end_matches('/')))
        .collect();
    let mut insecure_cidrs = vec!["127.0.0.0/8".to_string()];
    let mut index_configs = serde_json::Map::new();
    index_configs.insert(
        "docker.io".into(),
        json!({"Name": "docker.io", "Mirrors": mirrors, "Secure": true, "Official": true}),
    );
    for r in &c.insecure_registries {
        if r.contains('/') {
            insecure_cidrs.push(r.clone());
        } else {
            index_configs.insert(
                r.clone(),
                json!({"Name": r, "Mirrors": [], "Secure": false, "Official": false}),
            );
        }
    }
    let proxy = crate::config::proxy_env().masked();
    Ok(Json(json!({
        "ID": s.host.hostname.clone() + "-mydocker",
        "Containers": containers,
        "ContainersRunning": running,
        "ContainersPaused": 0,
        "ContainersStopped": stopped,
        "Images": images,
        "Driver": "overlay2",
        "DriverStatus": [["Backing Filesystem", "extfs"], ["Supports d_type", "true"], ["Using metacopy", "false"], ["Native Overlay Diff", "true"], ["userxattr", "false"]],
        "Plugins": {
            "Volume": ["local"],
            "Network": ["bridge", "host", "none"],
            "Authorization": null,
            "Log": ["json-file"],
        },
        "MemoryLimit": true,
        "SwapLimit": false,
        "CpuCfsPeriod": true,
        "CpuCfsQuota": true,
        "CPUShares": true,
        "CPUSet": true,
        "PidsLimit": true,
        "IPv4Forwarding": true,
        "BridgeNfIptables": true,
        "BridgeNfIp6tables": true,
        "Debug": c.debug,
        "NFd": count_fds(),
        "OomKillDisable": !cgroup_v2,
        "NGoroutines": 0,
        "SystemTime": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        "LoggingDriver": "json-file",
        "CgroupDriver": "cgroupfs",
        "CgroupVersion": s.host.cgroup_version.as_str(),
        "NEventsListener": 0,
        "KernelVersion": s.host.kernel_version,
        "OperatingSystem": s.host.operating_system,
        "OSVersion": s.host.os_version,
        "OSType": "linux",
        "Architecture": std::env::consts::ARCH,
        "IndexServerAddress": "https://index.docker.io/v1/",
        "RegistryConfig": {
            "AllowNondistributableArtifactsCIDRs": null,
            "AllowNondistributableArtifactsHostnames": null,
            "InsecureRegistryCIDRs": insecure_cidrs,
            "IndexConfigs": index_configs,
            "Mirrors": mirrors,
        },
        "NCPU": s.host.ncpu,
        "MemTotal": s.host.mem_total,
        "GenericResources": null,
        "DockerRootDir": c.data_root,
        "HttpProxy": proxy.http_proxy,
        "HttpsProxy": proxy.https_proxy,
        "NoProxy": proxy.no_proxy,
        "Name": s.host.hostname,
        "Labels": [],
        "ExperimentalBuild": false,
        "ServerVersion": SERVER_VERSION,
        "Runtimes": { "mydocker": { "path": "mydockerd" } },
        "DefaultRuntime": "mydocker",
        "Swarm": {
            "NodeID": "",
            "NodeAddr": "",
            "LocalNodeState": "inactive",
            "ControlAvailable": false,
            "Error": "",
            "RemoteManagers": null,
        },
        "LiveRestoreEnabled": true,
        "Isolation": "",
        "InitBinary": "",
        "ContainerdCommit": { "ID": "" },
        "RuncCommit": { "ID": "" },
        "InitCommit": { "ID": "" },
        // As dockerd lists them: the default seccomp profile is ours.
        "SecurityOptions": if crate::runtime::seccomp::supported() {
            vec!["name=seccomp,profile=builtin"]
        } else {
            vec![]
        },
        "Warnings": [],
    })))
}

fn count_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0)
}

/// `GET /events`: past events from `since`, then live ones until `until`
/// (or until the client or the daemon goes away), one JSON object a line.
pub async fn events(State(s): State<AppState>, Query(q): Query<Q>) -> ApiResult<Response> {
    let filters = params::filters(&q)?;
    filters.accept_only(&[
        "config",
        "container",
        "daemon",
        "event",
        "image",
        "label",
        "network",
        "node",
        "plugin",
        "scope",
        "secret",
        "service",
        "type",
        "volume",
    ])?;
    let since = params::time_nanos(&q, "since")?;
    let until = params::time_nanos(&q, "until")?;
    let (history, mut rx) = s.events.subscribe();
    let mut shutdown = s.shutdown.clone();
    let stream = async_stream::stream! {
        for e in history {
            let in_range = since.is_some_and(|t| e.time_nano >= t)
                && until.is_none_or(|u| e.time_nano <= u);
            if in_range && event_matches(&e, &filters) {
                yield Ok::<_, std::io::Error>(line(&e));
            }
        }
        let deadline = until.map(|u| {
            let now = crate::store::images::now_nanos();
            tokio::time::Instant::now() + std::time::Duration::from_nanos(u.saturating_sub(now).max(0) as u64)
        });
        loop {
            let sleep = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = sleep => break,
                _ = shutdown.changed() => break,
                r = rx.recv() => match r {
                    Ok(e) => {
                        if event_matches(&e, &filters) {
                            yield Ok(line(&e));
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(_) => break,
                }
            }
        }
    };
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(stream),
    )
        .into_response())
}

fn line(e: &crate::events::Event) -> bytes::Bytes {
    let mut v = serde_json::to_vec(e).unwrap_or_default();
    v.push(b'\n');
    v.into()
}
