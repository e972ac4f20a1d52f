//! Container endpoints: create, list, inspect, start, stop, kill, wait,
//! restart, pause, unpause, rename, update, resize, top, logs, attach,
//! remove, prune (stats in `container_stats.rs`). `/containers/{id}/{action}` goes through
//! one wildcard route (as for images) so that actions we do not serve yet
//! (changes, export, ...) still answer 501 naming themselves.

use axum::body::{Body, Bytes};
use axum::extract::{OriginalUri, Path, Query, Request, State};
use axum::http::{header, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use futures::StreamExt;
use serde_json::{json, Value};

use super::error::{ApiError, ApiResult};
use super::params::{self, Query as Q};
use super::{ApiVersion, AppState};
use crate::container::attach::{AttachOptions, AttachSession};
use crate::container::list::ListOptions;
use crate::container::mounts::MountPoint;
use crate::container::wait::WaitCondition;
use crate::container::{Container, CreateRequest};
use crate::logs::ReadOptions;

/// Largest create body accepted.
const MAX_CREATE_BODY: usize = 4 << 20;

pub async fn create(
    State(s): State<AppState>,
    Query(q): Query<Q>,
    body: Bytes,
) -> ApiResult<Response> {
    if body.len() > MAX_CREATE_BODY {
        return Err(ApiError::bad_request("request body too large"));
    }
    let req = CreateRequest::parse(params::string(&q, "name"), &body)?;
    let (c, warnings) = s.containers.create(req).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "Id": c.row.id, "Warnings": warnings })),
    )
        .into_response())
}

pub async fn list(State(s): State<AppState>, Query(q): Query<Q>) -> ApiResult<Json<Value>> {
    let limit = match params::string(&q, "limit") {
        "" => 0,
        l => l
            .parse::<i64>()
            .map_err(|_| ApiError::bad_request(format!("invalid limit: {l}")))?,
    };
    let opts = ListOptions {
        all: params::flag(&q, "all"),
        limit,
        filters: params::filters(&q)?,
    };
    let now = chrono::Utc::now();
    let with_size = params::flag(&q, "size");
    let mounts = s.containers.all_mount_points().await?;
    let mut out = vec![];
    for c in s.containers.list(&opts).await? {
        let points = mounts.get(c.id()).map(Vec::as_slice).unwrap_or(&[]);
        let mut v = summary_json(&c, now, points);
        let ports = s.containers.published_ports(&c).await;
        let exposed = exposed_while_running(&c);
        if !ports.is_empty() || !exposed.is_empty() {
            v["Ports"] = super::networks::ps_ports_json(&ports, &exposed);
        }
        if with_size {
            add_sizes(&s, &c, &mut v).await?;
        }
        out.push(v);
    }
    Ok(Json(Value::Array(out)))
}

pub async fn prune(State(s): State<AppState>, Query(q): Query<Q>) -> ApiResult<Json<Value>> {
    let report = s.containers.prune(&params::filters(&q)?).await?;
    let deleted = if report.deleted.is_empty() {
        Value::Null
    } else {
        json!(report.deleted)
    };
    Ok(Json(json!({
        "ContainersDeleted": deleted,
        "SpaceReclaimed": report.space_reclaimed,
    })))
}

/// `/containers/{id}/{action}` and `DELETE /containers/{id}`.
pub async fn dispatch(
    State(s): State<AppState>,
    Path(rest): Path<String>,
    Query(q): Query<Q>,
    Extension(version): Extension<ApiVersion>,
    uri: OriginalUri,
    req: Request,
) -> ApiResult<Response> {
    let method = req.method().clone();
    let (id, action) = match rest.split_once('/') {
        Some((id, action)) => (id, action),
        None => (rest.as_str(), ""),
    };
    match (&method, action) {
        (&Method::GET, "json") => {
            let c = s.containers.get(id).await?;
            let mounts = s.containers.mount_points(c.id()).await?;
            let mut v = inspect_json(&s, &c, &mounts);
            v["ExecIDs"] = super::exec::exec_ids_json(&s, c.id()).await?;
            let eps = s.containers.network_endpoints(&c).await?;
            if !eps.is_empty() {
                let key = if c.state.running() {
                    s.networks.netns_path(c.id()).display().to_string()
                } else {
                    String::new()
                };
                v["NetworkSettings"] = super::networks::settings_json(&eps, &key);
            }
            let ports = s.containers.published_ports(&c).await;
            v["NetworkSettings"]["Ports"] =
                super::networks::ports_json(&ports, &exposed_while_running(&c));
            if params::flag(&q, "size") {
                add_sizes(&s, &c, &mut v).await?;
            }
            Ok(Json(v).into_response())
        }
        (&Method::POST, "start") => {
            s.containers.start(id).await?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        (&Method::POST, "stop") => {
            let t = int_param(&q, "t")?;
            let signal = q.get("signal").map(String::as_str);
            s.containers.stop(id, t, signal).await?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        (&Method::POST, "kill") => {
            s.containers
                .kill(id, q.get("signal").map(String::as_str))
                .await?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        (&Method::POST, "wait") => {
            let cond = WaitCondition::parse(params::string(&q, "condition"))?;
            let fut = s.containers.wait(id, cond).await?;
            // dockerd sends the headers at once and the body at the exit,
            // so clients know the wait is registered.
            let mut shutdown = s.shutdown.clone();
            let body = futures::stream::once(async move {
                // A daemon going down ends the stream without a result (the
                // client reports the cut) rather than holding the shutdown
                // or inventing an exit code: the container keeps running.
                let r = tokio::select! {
                    r = fut => r,
                    _ = shutdown.wait_for(|v| *v) => return None,
                };
                let err = match r.error {
                    Some(m) => json!({ "Message": m }),
                    None => Value::Null,
                };
                let mut line = json!({ "StatusCode": r.status_code, "Error": err }).to_string();
                line.push('\n');
                Some(Ok::<_, std::convert::Infallible>(Bytes::from(line)))
            })
            .filter_map(std::future::ready);
            Ok((
                [(header::CONTENT_TYPE, "application/json")],
                Body::from_stream(body),
            )
                .into_response())
        }
        (&Method::POST, "restart") => {
            let t = int_param(&q, "t")?;
            let signal = q.get("signal").map(String::as_str);
            s.containers.restart(id, t, signal).await?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        (&Method::POST, "pause") => {
            s.containers.pause(id).await?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        (&Method::POST, "unpause") => {
            s.containers.unpause(id).await?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        (&Method::POST, "rename") => {
            s.containers.rename(id, params::string(&q, "name")).await?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        (&Method::POST, "update") => {
            let body = axum::body::to_bytes(req.into_body(), MAX_CREATE_BODY)
                .await
                .map_err(|_| ApiError::bad_request("request body too large"))?;
            let body: Value = serde_json::from_slice(&body)
                .map_err(|e| ApiError::bad_request(format!("invalid JSON: {e}")))?;
            let warnings = s.containers.update(id, &body).await?;
            let warnings = if warnings.is_empty() {
                Value::Null
            } else {
                json!(warnings)
            };
            Ok(Json(json!({ "Warnings": warnings })).into_response())
        }
        (&Method::POST, "resize") => {
            let dim = |name: &str| -> ApiResult<u16> {
                let v = params::string(&q, name);
                v.parse::<u16>()
                    .map_err(|_| ApiError::bad_request(format!("invalid value for {name}: {v:?}")))
            };
            let (h, w) = (dim("h")?, dim("w")?);
            s.containers.resize(id, h, w).await?;
            Ok(StatusCode::OK.into_response())
        }
        (&Method::GET, "top") => {
            let top = s.containers.top(id, params::string(&q, "ps_args")).await?;
            Ok(Json(json!({ "Titles": top.titles, "Processes": top.processes })).into_response())
        }
        (&Method::GET, "stats") => super::container_stats::stats(&s, id, &q).await,
        (&Method::GET, "logs") => logs(&s, id, &q, version).await,
        (&Method::POST, "attach") => attach(&s, id, &q, version, req).await,
        (&Method::POST, "exec") => super::exec::create(&s, id, req).await,
        (&Method::DELETE, "") => {
            if params::flag(&q, "link") {
                return Err(ApiError::bad_request("links are not supported by mydocker"));
            }
            s.containers
                .remove(id, params::flag(&q, "force"), params::flag(&q, "v"))
                .await?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        _ => Ok(super::unsupported::not_implemented(uri, req).await),
    }
}

/// `SizeRw` and `SizeRootFs`, asked for with `size=1`.
async fn add_sizes(s: &AppState, c: &Container, v: &mut Value) -> ApiResult<()> {
    let (rw, root) = s.containers.sizes(c).await?;
    v["SizeRw"] = json!(rw);
    v["SizeRootFs"] = json!(root);
    Ok(())
}

fn int_param(q: &Q, name: &str) -> ApiResult<Option<i64>> {
    match q.get(name).map(String::as_str) {
        None | Some("") => Ok(None),
        Some(v) => v
            .parse::<i64>()
            .map(Some)
            .map_err(|_| ApiError::bad_request(format!("invalid value for {name}: {v}"))),
    }
}

async fn logs(s: &AppState, id: &str, q: &Q, version: ApiVersion) -> ApiResult<Response> {
    let time = |name: &str| -> ApiResult<Option<i64>> {
        match params::string(q, name) {
            "" => Ok(None),
            v => ReadOptions::parse_time(v)
                .map(Some)
                .map_err(ApiError::bad_request),
        }
    };
    let read = ReadOptions {
        stdout: params::flag(q, "stdout"),
        stderr: params::flag(q, "stderr"),
        since: time("since")?.filter(|t| *t != 0),
        until: time("until")?.filter(|t| *t != 0),
        tail: ReadOptions::parse_tail(params::string(q, "tail")),
        follow: params::flag(q, "follow"),
        timestamps: params::flag(q, "timestamps"),
    };
    let (body, tty) = s
        .containers
        .logs(id, read, params::flag(q, "details"))
        .await?;
    let ct = crate::logs::format::content_type(tty, version >= ApiVersion(1, 42));
    // Following ends with the daemon too.
    let mut shutdown = s.shutdown.clone();
    let body = body
        .take_until(async move {
            let _ = shutdown.wait_for(|v| *v).await;
        })
        .map(Ok::<_, std::convert::Infallible>);
    Ok(([(header::CONTENT_TYPE, ct)], Body::from_stream(body)).into_response())
}

/// Whether the client asks for dockerd's hijack (`Connection: Upgrade`
/// with an `Upgrade` header).
pub(super) fn wants_upgrade(req: &Request) -> bool {
    let connection_upgrade = req
        .headers()
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    connection_upgrade && req.headers().contains_key(header::UPGRADE)
}

/// `POST /containers/{id}/attach`: `101` and a raw two-way pipe when the
/// client asks to upgrade (as the CLI does), else `200` with the output
/// as the body and no input. Detach keys are not implemented.
async fn attach(
    s: &AppState,
    id: &str,
    q: &Q,
    version: ApiVersion,
    mut req: Request,
) -> ApiResult<Response> {
    let opts = AttachOptions {
        stream: params::flag(q, "stream"),
        logs: params::flag(q, "logs"),
        stdin: params::flag(q, "stdin"),
        stdout: params::flag(q, "stdout"),
        stderr: params::flag(q, "stderr"),
    };
    let detach_keys = match params::string(q, "detachKeys") {
        "" => crate::container::detach_keys::DEFAULT,
        k => k,
    };
    let detach_keys = crate::container::detach_keys::parse(detach_keys)?;
    let upgrade = wants_upgrade(&req);
    // No input without the hijack: a plain response has no way back.
    let opts = AttachOptions {
        stdin: opts.stdin && upgrade,
        ..opts
    };
    let session = s.containers.attach(id, opts).await?;
    let ct = crate::logs::format::content_type(session.tty, version >= ApiVersion(1, 42));
    let mut shutdown = s.shutdown.clone();
    let shutdown = async move {
        let _ = shutdown.wait_for(|v| *v).await;
    };
    if !upgrade {
        let body = session
            .output
            .take_until(shutdown)
            .map(Ok::<_, std::convert::Infallible>);
        return Ok(([(header::CONTENT_TYPE, ct)], Body::from_stream(body)).into_response());
    }
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                let io = hyper_util::rt::TokioIo::new(upgraded);
                pump(io, session, detach_keys, shutdown).await
            }
            Err(e) => tracing::debug!(error = %e, "attach: upgrade failed"),
        }
    });
    Ok(Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, "tcp")
        .header(header::CONTENT_TYPE, ct)
        .body(Body::empty())
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response()))
}

/// Moves bytes over a hijacked connection: output to the client until the
/// container exits, client input to the container's stdin meanwhile. With
/// a TTY, the detach keys end the session and leave the container running.
pub(super) async fn pump<IO>(
    io: IO,
    session: AttachSession,
    detach_keys: Vec<u8>,
    shutdown: impl std::future::Future<Output = ()>,
) where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
{
    use crate::container::detach_keys::{DetachScanner, Scan};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut client_rd, mut client_wr) = tokio::io::split(io);
    let (detached_tx, detached_rx) = tokio::sync::oneshot::channel::<()>();
    let mut scanner = session.tty.then(|| DetachScanner::new(detach_keys));
    let input = session.stdin.map(|target| {
        tokio::spawn(async move {
            // Until the container runs, input waits in the socket.
            let Some(conn) = target.await else {
                return;
            };
            let (_monitor_rd, mut monitor_wr) = conn.into_split();
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                let n = match client_rd.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                let (bytes, detach) = match scanner.as_mut().map(|s| s.scan(&buf[..n])) {
                    None => (buf[..n].to_vec(), false),
                    Some(Scan::Forward(b)) => (b, false),
                    Some(Scan::Detach(b)) => (b, true),
                };
                if monitor_wr.write_all(&bytes).await.is_err() {
                    break;
                }
                if detach {
                    let _ = detached_tx.send(());
                    return;
                }
            }
            // The client half-closed: end the process's stdin (the monitor
            // closes it for StdinOnce containers).
            let _ = monitor_wr.shutdown().await;
            // Hold the connection open until the output side is done.
            std::future::pending::<()>().await;
        })
    });
    let detached = async move {
        if detached_rx.await.is_err() {
            // The input side ended without detaching.
            std::future::pending::<()>().await;
        }
    };
    let mut output = std::pin::pin!(session.output.take_until(shutdown).take_until(detached));
    while let Some(chunk) = output.next().await {
        if client_wr.write_all(&chunk).await.is_err() {
            break;
        }
    }
    let _ = client_wr.shutdown().await;
    if let Some(task) = input {
        task.abort();
    }
}

/// `Command` of `docker ps`: the path and arguments joined by spaces.
fn command(c: &Container) -> String {
    let mut args = c.config.entrypoint.clone().unwrap_or_default();
    args.extend(c.config.cmd.clone().unwrap_or_default());
    args.join(" ")
}

fn labels_json(c: &Container) -> Value {
    json!(c.config.labels.clone().unwrap_or_default())
}

fn network_mode(c: &Container) -> String {
    c.host_config
        .get("NetworkMode")
        .and_then(Value::as_str)
        .unwrap_or("bridge")
        .to_string()
}

fn summary_json(c: &Container, now: chrono::DateTime<chrono::Utc>, mounts: &[MountPoint]) -> Value {
    json!({
        "Id": c.row.id,
        "Names": [c.slash_name()],
        "Image": c.row.image,
        "ImageID": c.row.image_id,
        "Command": command(c),
        "Created": c.row.created_at / 1_000_000_000,
        "Ports": [],
        "Labels": labels_json(c),
        "State": c.state.status_str(),
        "Status": c.state.human_status(now),
        "HostConfig": { "NetworkMode": network_mode(c) },
        "NetworkSettings": { "Networks": {} },
        "Mounts": mounts,
    })
}

fn inspect_json(s: &AppState, c: &Container, mounts: &[MountPoint]) -> Value {
    let st = &c.state;
    let mut args = c.config.entrypoint.clone().unwrap_or_default();
    args.extend(c.config.cmd.clone().unwrap_or_default());
    let (path, args) = match args.split_first() {
        Some((p, rest)) => (p.clone(), rest.to_vec()),
        None => (String::new(), vec![]),
    };
    let created = chrono::DateTime::from_timestamp_nanos(c.row.created_at)
        .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    let dir = s.containers.container_dir(c.id());
    let bundle = s.containers.bundle_dir(c.id());
    let mut host_config = c.host_config.clone();
    if let Value::Object(m) = &mut host_config {
        m.entry("LogConfig")
            .or_insert(json!({"Type": "json-file", "Config": {}}));
        m.entry("Binds").or_insert(Value::Null);
        m.entry("AutoRemove").or_insert(json!(false));
        m.entry("Privileged").or_insert(json!(false));
        m.entry("ReadonlyRootfs").or_insert(json!(false));
        m.entry("RestartPolicy")
            .or_insert(json!({"Name": "no", "MaximumRetryCount": 0}));
    }
    let mut config = serde_json::to_value(&c.config).unwrap_or_default();
    if let Value::Object(m) = &mut config {
        if m.get("Labels").is_some_and(Value::is_null) {
            m.insert("Labels".into(), json!({}));
        }
    }
    let mode = network_mode(c);
    json!({
        "Id": c.row.id,
        "Created": created,
        "Path": path,
        "Args": args,
        "State": {
            "Status": st.status_str(),
            "Running": st.running_or_restarting(),
            "Paused": st.paused && st.running(),
            "Restarting": st.restarting && !st.running(),
            "OOMKilled": st.oom_killed,
            "Dead": st.status == crate::container::Status::Dead,
            "Pid": st.pid,
            "ExitCode": st.exit_code,
            "Error": st.error,
            "StartedAt": st.started_at,
            "FinishedAt": st.finished_at,
        },
        "Image": c.row.image_id,
        "ResolvConfPath": dir.join("resolv.conf"),
        "HostnamePath": dir.join("hostname"),
        "HostsPath": dir.join("hosts"),
        "LogPath": s.containers.log_path(c.id()),
        "Name": c.slash_name(),
        "RestartCount": st.restart_count,
        "Driver": "overlay2",
        "Platform": "linux",
        "MountLabel": "",
        "ProcessLabel": "",
        "AppArmorProfile": "",
        "ExecIDs": null,
        "HostConfig": host_config,
        "GraphDriver": {
            "Name": "overlay2",
            "Data": {
                "UpperDir": dir.join("upper"),
                "WorkDir": dir.join("work"),
                "MergedDir": bundle.join("rootfs"),
            },
        },
        "Mounts": mounts,
        "Config": config,
        "NetworkSettings": {
            "Bridge": "",
            "SandboxID": "",
            "SandboxKey": "",
            "Ports": {},
            "HairpinMode": false,
            "LinkLocalIPv6Address": "",
            "LinkLocalIPv6PrefixLen": 0,
            "Gateway": "",
            "IPAddress": "",
            "IPPrefixLen": 0,
            "MacAddress": "",
            "Networks": { mode: {
                "NetworkID": "",
                "EndpointID": "",
                "Gateway": "",
                "IPAddress": "",
                "IPPrefixLen": 0,
                "MacAddress": "",
            }},
        },
    })
}

/// The exposed ports dockerd lists beside the published ones, which it
/// does while the container runs.
fn exposed_while_running(c: &crate::container::Container) -> Vec<String> {
    match &c.config.exposed_ports {
        Some(p) if c.state.running() => p.keys().cloned().collect(),
        _ => vec![],
    }
}
