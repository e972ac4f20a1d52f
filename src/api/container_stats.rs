//! `GET /containers/{id}/stats`: one JSON object per second (`stream`,
//! the default), or one object (`stream=false`, after a second reading so
//! that the CPU delta is real; `one-shot=true` skips that wait), in
//! dockerd's shape so that `docker stats` computes the same figures.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde_json::{json, Value};

use super::error::ApiResult;
use super::params::{self, Query as Q};
use super::AppState;
use crate::container::state::ZERO_TIME;
use crate::container::stats::StatsSample;

/// dockerd's collection interval.
const INTERVAL: Duration = Duration::from_secs(1);

fn flag_or(q: &Q, name: &str, default: bool) -> bool {
    match q.get(name) {
        None => default,
        Some(_) => params::flag(q, name),
    }
}

fn cpu_json(s: Option<&StatsSample>) -> Value {
    let Some(s) = s else {
        return json!({
            "cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0},
            "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0},
        });
    };
    let c = &s.cgroup.cpu;
    let mut usage = json!({
        "total_usage": c.total_usage,
        "usage_in_kernelmode": c.usage_in_kernelmode,
        "usage_in_usermode": c.usage_in_usermode,
    });
    if !c.percpu_usage.is_empty() {
        usage["percpu_usage"] = json!(c.percpu_usage);
    }
    json!({
        "cpu_usage": usage,
        "system_cpu_usage": s.system_cpu_usage.unwrap_or(0),
        "online_cpus": s.online_cpus,
        "throttling_data": {
            "periods": c.throttling_data.periods,
            "throttled_periods": c.throttling_data.throttled_periods,
            "throttled_time": c.throttling_data.throttled_time,
        },
    })
}

fn blkio_json(s: Option<&StatsSample>) -> Value {
    let entries = |v: &[crate::runtime::cgroups::stats::BlkioEntry]| {
        if v.is_empty() {
            Value::Null
        } else {
            json!(v)
        }
    };
    let (bytes, ops) = match s {
        Some(s) => (
            entries(&s.cgroup.blkio.io_service_bytes_recursive),
            entries(&s.cgroup.blkio.io_serviced_recursive),
        ),
        None => (Value::Null, Value::Null),
    };
    json!({
        "io_service_bytes_recursive": bytes,
        "io_serviced_recursive": ops,
        "io_queue_recursive": null,
        "io_service_time_recursive": null,
        "io_wait_time_recursive": null,
        "io_merged_recursive": null,
        "io_time_recursive": null,
        "sectors_recursive": null,
    })
}

fn memory_json(s: Option<&StatsSample>, host_memory: u64) -> Value {
    let Some(s) = s else {
        return json!({});
    };
    let m = &s.cgroup.memory;
    let mut out = json!({
        "usage": m.usage,
        "stats": m.stats,
        "limit": m.limit.unwrap_or(host_memory),
    });
    // v1 only (per-CPU figures exist only there too).
    if !s.cgroup.cpu.percpu_usage.is_empty() {
        out["max_usage"] = json!(m.max_usage);
        out["failcnt"] = json!(m.failcnt);
    }
    out
}

fn pids_json(s: Option<&StatsSample>) -> Value {
    match s {
        None => json!({}),
        Some(s) => {
            let mut p = json!({ "current": s.cgroup.pids.current });
            if let Some(l) = s.cgroup.pids.limit {
                p["limit"] = json!(l);
            }
            p
        }
    }
}

/// One stats object: `now` with `pre` as the previous reading.
fn stats_json(
    name: &str,
    id: &str,
    now: Option<&StatsSample>,
    pre: Option<&StatsSample>,
    host_memory: u64,
) -> Value {
    json!({
        "read": now.map_or(ZERO_TIME, |s| s.read.as_str()),
        "preread": pre.map_or(ZERO_TIME, |s| s.read.as_str()),
        "pids_stats": pids_json(now),
        "blkio_stats": blkio_json(now),
        "num_procs": 0,
        "storage_stats": {},
        "cpu_stats": cpu_json(now),
        "precpu_stats": cpu_json(pre),
        "memory_stats": memory_json(now, host_memory),
        "name": name,
        "id": id,
    })
}

fn line(v: &Value) -> Bytes {
    let mut s = v.to_string();
    s.push('\n');
    Bytes::from(s)
}

pub async fn stats(s: &AppState, id: &str, q: &Q) -> ApiResult<Response> {
    let stream = flag_or(q, "stream", true);
    let one_shot = params::flag(q, "one-shot");
    if one_shot && stream {
        return Err(super::error::ApiError::bad_request(
            "cannot have stream=true and one-shot=true",
        ));
    }
    let c = s.containers.get(id).await?;
    let (name, id) = (c.slash_name(), c.id().to_string());
    let mem = s.host.mem_total;
    let ct = [(header::CONTENT_TYPE, "application/json")];
    let first = s.containers.stats_sample(&id).await?;
    if !stream {
        let (now, pre) = match first {
            Some(f) if !one_shot => {
                tokio::time::sleep(INTERVAL).await;
                match s.containers.stats_sample(&id).await? {
                    Some(second) => (Some(second), Some(f)),
                    None => (None, None),
                }
            }
            other => (other, None),
        };
        let body = line(&stats_json(&name, &id, now.as_ref(), pre.as_ref(), mem));
        return Ok((ct, body).into_response());
    }
    let containers = s.containers.clone();
    let mut shutdown = s.shutdown.clone();
    let body = futures::stream::unfold(Step::First(first), move |step| {
        let containers = containers.clone();
        let (name, id) = (name.clone(), id.clone());
        async move {
            let (now, pre) = match step {
                Step::Done => return None,
                // Not running: one empty object, as dockerd sends.
                Step::First(None) => {
                    return Some((line(&stats_json(&name, &id, None, None, mem)), Step::Done))
                }
                Step::First(Some(now)) => (now, None),
                Step::Next(pre) => {
                    tokio::time::sleep(INTERVAL).await;
                    match containers.stats_sample(&id).await {
                        Ok(Some(now)) => (now, Some(pre)),
                        // Stopped or removed: the stream ends.
                        _ => return None,
                    }
                }
            };
            let v = stats_json(&name, &id, Some(&now), pre.as_ref(), mem);
            Some((line(&v), Step::Next(now)))
        }
    })
    .take_until(async move {
        let _ = shutdown.wait_for(|v| *v).await;
    })
    .map(Ok::<_, std::convert::Infallible>);
    Ok((ct, Body::from_stream(body)).into_response())
}

enum Step {
    First(Option<StatsSample>),
    Next(StatsSample),
    Done,
}
