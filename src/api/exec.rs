//! Exec endpoints: `POST /containers/{id}/exec` (reached through the
//! containers dispatcher), `POST /exec/{id}/start`, `POST /exec/{id}/resize`
//! and `GET /exec/{id}/json`.

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use base64::Engine as _;
use futures::StreamExt;
use serde_json::{json, Value};

use super::containers::{pump, wants_upgrade};
use super::error::{ApiError, ApiResult};
use super::params::Query as Q;
use super::{ApiVersion, AppState};
use crate::container::attach::AttachSession;
use crate::container::exec::{ExecConfig, ExecStartOptions, ExecStarted};

/// Largest exec body accepted.
const MAX_BODY: usize = 1 << 20;

async fn body_bytes(req: Request) -> ApiResult<Bytes> {
    axum::body::to_bytes(req.into_body(), MAX_BODY)
        .await
        .map_err(|_| ApiError::bad_request("request body too large"))
}

/// `POST /containers/{id}/exec`.
pub async fn create(s: &AppState, id: &str, req: Request) -> ApiResult<Response> {
    let cfg = ExecConfig::parse(&body_bytes(req).await?)?;
    let exec_id = s.containers.exec_create(id, cfg).await?;
    Ok((StatusCode::CREATED, Json(json!({ "Id": exec_id }))).into_response())
}

/// `ExecIDs` of a container's inspect: its unfinished execs, or null.
pub async fn exec_ids_json(s: &AppState, container_id: &str) -> ApiResult<Value> {
    let ids = s.containers.exec_ids(container_id).await?;
    Ok(if ids.is_empty() {
        Value::Null
    } else {
        json!(ids)
    })
}

/// `GET /exec/{id}/json`.
pub async fn inspect(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let e = s.containers.exec_inspect(&id).await?;
    let mut process = json!({
        "tty": e.config.tty,
        "entrypoint": e.entrypoint(),
        "arguments": e.arguments(),
        "privileged": e.config.privileged,
    });
    if let Some(u) = e.config.user.as_deref().filter(|u| !u.is_empty()) {
        process["user"] = json!(u);
    }
    Ok(Json(json!({
        "ID": e.id,
        "Running": e.state.running,
        "ExitCode": e.state.exit_code,
        "ProcessConfig": process,
        "OpenStdin": e.config.attach_stdin,
        "OpenStderr": e.config.attach_stderr,
        "OpenStdout": e.config.attach_stdout,
        "CanRemove": e.state.can_remove,
        "ContainerID": e.container_id,
        // Go's []byte: base64.
        "DetachKeys": base64::engine::general_purpose::STANDARD.encode(e.detach_keys()),
        "Pid": if e.state.running { e.state.pid } else { 0 },
    })))
}

/// `POST /exec/{id}/resize?h=&w=`.
pub async fn resize(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<Q>,
) -> ApiResult<StatusCode> {
    let dim = |name: &str| -> ApiResult<u16> {
        let v = super::params::string(&q, name);
        v.parse::<u16>()
            .map_err(|_| ApiError::bad_request(format!("invalid value for {name}: {v:?}")))
    };
    let (h, w) = (dim("h")?, dim("w")?);
    s.containers.exec_resize(&id, h, w).await?;
    Ok(StatusCode::OK)
}

/// The body of a start: `Detach`, `Tty`, `ConsoleSize`.
#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct StartBody {
    detach: bool,
    console_size: Option<[u16; 2]>,
}

/// `POST /exec/{id}/start`: with `Detach`, `200` at once; else the
/// hijack (`101`, a raw two-way pipe) when the client asks to upgrade,
/// or `200` with the output as the body.
pub async fn start(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Extension(version): Extension<ApiVersion>,
    mut req: Request,
) -> ApiResult<Response> {
    let upgrade = wants_upgrade(&req);
    let on_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let body = body_bytes(req).await?;
    let b: StartBody = if body.iter().all(u8::is_ascii_whitespace) {
        StartBody::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("invalid JSON: {e}")))?
    };
    let (e, _) = s.containers.exec_start_check(&id).await?;
    let detach_keys = match e.detach_keys() {
        k if k.is_empty() => {
            crate::container::detach_keys::parse(crate::container::detach_keys::DEFAULT)?
        }
        k => k,
    };
    let opts = ExecStartOptions {
        detach: b.detach,
        console_size: b.console_size,
    };
    let tty = e.config.tty;
    let ct = crate::logs::format::content_type(tty, version >= ApiVersion(1, 42));
    let mut shutdown = s.shutdown.clone();
    let shutdown = async move {
        let _ = shutdown.wait_for(|v| *v).await;
    };
    let Some(on_upgrade) = on_upgrade.filter(|_| !b.detach) else {
        let session = match s.containers.exec_start(&id, opts).await? {
            ExecStarted::Detached => {
                return Ok(([(header::CONTENT_TYPE, "application/json")], "").into_response())
            }
            started => session_of(started, tty),
        };
        let body = session
            .output
            .take_until(shutdown)
            .map(Ok::<_, std::convert::Infallible>);
        return Ok(([(header::CONTENT_TYPE, ct)], Body::from_stream(body)).into_response());
    };
    // As dockerd: the process starts once the client has the 101, so that
    // no output arrives along with the response head (clients that read
    // the head through a buffer would lose it).
    let claimed = s.containers.exec_claim(&id).await?;
    tokio::spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(u) => u,
            Err(e) => {
                // The client is gone: run it detached, as it was started.
                tracing::debug!(error = %e, "exec start: upgrade failed");
                let detached = ExecStartOptions {
                    detach: true,
                    ..opts
                };
                let _ = s.containers.exec_run(claimed, detached).await;
                return;
            }
        };
        let session = match s.containers.exec_run(claimed, opts).await {
            Ok(started) => session_of(started, tty),
            Err(e) => failure_session(&e.to_string(), tty),
        };
        let io = hyper_util::rt::TokioIo::new(upgraded);
        pump(io, session, detach_keys, shutdown).await
    });
    Ok(Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, "tcp")
        .header(header::CONTENT_TYPE, ct)
        .body(Body::empty())
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response()))
}

/// The streams of a start that did not detach.
fn session_of(started: ExecStarted, tty: bool) -> AttachSession {
    match started {
        ExecStarted::Attached(session) => session,
        ExecStarted::Failed { message, .. } => failure_session(&message, tty),
        ExecStarted::Detached => AttachSession {
            tty,
            output: futures::stream::empty().boxed(),
            stdin: None,
        },
    }
}

/// dockerd writes a failed start's message into the stream, as stdout.
fn failure_session(message: &str, tty: bool) -> AttachSession {
    let text = format!("{message}\r\n");
    let bytes = if tty {
        Bytes::from(text)
    } else {
        let mut b = bytes::BytesMut::new();
        crate::logs::stdcopy::encode_into(
            crate::logs::stdcopy::StreamId::Stdout,
            text.as_bytes(),
            &mut b,
        );
        b.freeze()
    };
    AttachSession {
        tty,
        output: futures::stream::once(std::future::ready(bytes)).boxed(),
        stdin: None,
    }
}
