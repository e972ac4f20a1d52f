//! Network endpoints: list, inspect, create, remove, connect, disconnect,
//! prune. Bodies are parsed here into engine requests; the JSON shapes are
//! dockerd's.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};

use super::error::{ApiError, ApiResult};
use super::params::{self, Query as Q};
use super::AppState;
use crate::network::endpoint::{EndpointConfig, EndpointView};
use crate::network::ipam::PoolRequest;
use crate::network::manage::CreateNetwork;
use crate::network::ports::PortMapping;
use crate::network::Network;

fn parse_body(body: &Bytes) -> ApiResult<Map<String, Value>> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(ApiError::bad_request(
            "invalid JSON: the body must be an object",
        )),
        Err(e) => Err(ApiError::bad_request(format!("invalid JSON: {e}"))),
    }
}

fn str_of(m: &Map<String, Value>, k: &str) -> String {
    m.get(k).and_then(Value::as_str).unwrap_or("").to_string()
}

fn bool_of(m: &Map<String, Value>, k: &str) -> bool {
    m.get(k).and_then(Value::as_bool).unwrap_or(false)
}

fn map_of(v: Option<&Value>) -> BTreeMap<String, String> {
    v.and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

pub async fn create(State(s): State<AppState>, body: Bytes) -> ApiResult<Response> {
    let m = parse_body(&body)?;
    let ipam = m
        .get("IPAM")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let pools = ipam
        .get("Config")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_object)
                .map(|c| PoolRequest {
                    subnet: str_of(c, "Subnet"),
                    gateway: str_of(c, "Gateway"),
                    ip_range: str_of(c, "IPRange"),
                })
                .collect()
        })
        .unwrap_or_default();
    let req = CreateNetwork {
        name: str_of(&m, "Name"),
        driver: str_of(&m, "Driver"),
        internal: bool_of(&m, "Internal"),
        attachable: bool_of(&m, "Attachable"),
        enable_ipv6: bool_of(&m, "EnableIPv6"),
        ipam_driver: str_of(&ipam, "Driver"),
        ipam: pools,
        ipam_options: map_of(ipam.get("Options")),
        options: map_of(m.get("Options")),
        labels: map_of(m.get("Labels")),
    };
    let net = s.networks.create(req).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "Id": net.id, "Warning": "" })),
    )
        .into_response())
}

pub async fn list(State(s): State<AppState>, Query(q): Query<Q>) -> ApiResult<Json<Value>> {
    let nets = s.networks.list(&params::filters(&q)?).await?;
    Ok(Json(Value::Array(
        nets.iter().map(|n| network_json(n, json!({}))).collect(),
    )))
}

pub async fn inspect(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let net = s.networks.get(&id).await?;
    let mut containers = Map::new();
    for ep in s.networks.active_endpoints(&net).await? {
        let l = &ep.lease;
        let name = match s.containers.get(&l.container_id).await {
            Ok(c) => c.row.name,
            Err(_) => String::new(),
        };
        containers.insert(
            l.container_id.clone(),
            json!({
                "Name": name,
                "EndpointID": l.endpoint_id,
                "MacAddress": l.mac,
                "IPv4Address": format!("{}/{}", l.address, ep.prefix),
                "IPv6Address": "",
            }),
        );
    }
    Ok(Json(network_json(&net, Value::Object(containers))))
}

pub async fn remove(State(s): State<AppState>, Path(id): Path<String>) -> ApiResult<StatusCode> {
    s.networks.remove(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn connect(
    State(s): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    let m = parse_body(&body)?;
    let container = str_of(&m, "Container");
    if container.is_empty() {
        return Err(ApiError::bad_request("no container specified"));
    }
    let cfg = m
        .get("EndpointConfig")
        .map(EndpointConfig::from_json)
        .unwrap_or_default();
    s.containers.connect_network(&id, &container, cfg).await?;
    Ok(StatusCode::OK)
}

pub async fn disconnect(
    State(s): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    let m = parse_body(&body)?;
    let container = str_of(&m, "Container");
    if container.is_empty() {
        return Err(ApiError::bad_request("no container specified"));
    }
    let force = m.get("Force").and_then(Value::as_bool).unwrap_or(false);
    s.containers
        .disconnect_network(&id, &container, force)
        .await?;
    Ok(StatusCode::OK)
}

pub async fn prune(State(s): State<AppState>, Query(q): Query<Q>) -> ApiResult<Json<Value>> {
    let removed = s.networks.prune(&params::filters(&q)?).await?;
    let removed = if removed.is_empty() {
        Value::Null
    } else {
        json!(removed)
    };
    Ok(Json(json!({ "NetworksDeleted": removed })))
}

/// dockerd's network object; `containers` is `{}` in lists.
fn network_json(n: &Network, containers: Value) -> Value {
    let config: Vec<Value> = match n.pool() {
        Some(p) => {
            let mut c = json!({ "Subnet": p.subnet.to_string(), "Gateway": p.gateway.to_string() });
            if let Some(r) = p.range {
                c["IPRange"] = json!(r.to_string());
            }
            vec![c]
        }
        None => vec![],
    };
    let created = chrono::DateTime::from_timestamp_nanos(n.created_at)
        .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    json!({
        "Name": n.name,
        "Id": n.id,
        "Created": created,
        "Scope": "local",
        "Driver": n.driver,
        "EnableIPv4": true,
        "EnableIPv6": false,
        "IPAM": {
            "Driver": "default",
            "Options": if n.config.ipam_options.is_empty() { Value::Null } else { json!(n.config.ipam_options) },
            "Config": config,
        },
        "Internal": n.config.internal,
        "Attachable": n.config.attachable,
        "Ingress": false,
        "ConfigFrom": { "Network": "" },
        "ConfigOnly": false,
        "Containers": containers,
        "Options": n.config.options,
        "Labels": n.config.labels,
    })
}

/// A container's `NetworkSettings` (inspect): per-network entries, and the
/// top-level fields from the default bridge like dockerd.
pub fn settings_json(endpoints: &[EndpointView], sandbox_key: &str) -> Value {
    let mut networks = Map::new();
    let mut top = json!({
        "Gateway": "", "IPAddress": "", "IPPrefixLen": 0, "MacAddress": "",
        "EndpointID": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0, "IPv6Gateway": "",
    });
    for ep in endpoints {
        let pool = ep.network.pool();
        let (ip, mac, eid, gw, len) = match (&ep.lease, &pool) {
            (Some(l), Some(p)) => (
                l.address.clone(),
                l.mac.clone(),
                l.endpoint_id.clone(),
                p.gateway.to_string(),
                p.subnet.prefix(),
            ),
            _ => Default::default(),
        };
        let ipam = if ep.config.ipv4.is_empty() {
            Value::Null
        } else {
            json!({ "IPv4Address": ep.config.ipv4 })
        };
        let aliases = if ep.config.aliases.is_empty() {
            Value::Null
        } else {
            json!(ep.config.aliases)
        };
        if ep.network.name == "bridge" {
            top = json!({
                "Gateway": gw, "IPAddress": ip, "IPPrefixLen": len, "MacAddress": mac,
                "EndpointID": eid, "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0, "IPv6Gateway": "",
            });
        }
        networks.insert(
            ep.network.name.clone(),
            json!({
                "IPAMConfig": ipam,
                "Links": null,
                "Aliases": aliases,
                "MacAddress": mac,
                "DriverOpts": null,
                "NetworkID": ep.network.id,
                "EndpointID": eid,
                "Gateway": gw,
                "IPAddress": ip,
                "IPPrefixLen": len,
                "IPv6Gateway": "",
                "GlobalIPv6Address": "",
                "GlobalIPv6PrefixLen": 0,
                "DNSNames": null,
            }),
        );
    }
    let mut out = json!({
        "Bridge": "",
        "SandboxID": "",
        "SandboxKey": sandbox_key,
        "Ports": {},
        "HairpinMode": false,
        "LinkLocalIPv6Address": "",
        "LinkLocalIPv6PrefixLen": 0,
        "Networks": networks,
    });
    if let (Value::Object(o), Value::Object(t)) = (&mut out, top) {
        o.extend(t);
    }
    out
}

/// `NetworkSettings.Ports` of a running container:
/// `{"80/tcp": [{"HostIp", "HostPort"}]}`, and `null` for an exposed port
/// that is not published.
pub fn ports_json(ports: &[PortMapping], exposed: &[String]) -> Value {
    let mut out = Map::new();
    for key in exposed {
        out.insert(key.clone(), Value::Null);
    }
    for p in ports {
        let entry = out.entry(p.key()).or_insert(Value::Null);
        if entry.is_null() {
            *entry = json!([]);
        }
        if let Value::Array(a) = entry {
            a.push(json!({ "HostIp": p.host_ip.to_string(), "HostPort": p.host_port.to_string() }));
        }
    }
    Value::Object(out)
}

/// `Ports` of `docker ps`: `[{"IP", "PrivatePort", "PublicPort", "Type"}]`,
/// exposed ports that are not published with only `PrivatePort` and `Type`.
pub fn ps_ports_json(ports: &[PortMapping], exposed: &[String]) -> Value {
    let mut out: Vec<Value> = ports
        .iter()
        .map(|p| {
            json!({
                "IP": p.host_ip.to_string(),
                "PrivatePort": p.container_port,
                "PublicPort": p.host_port,
                "Type": p.proto.as_str(),
            })
        })
        .collect();
    for key in exposed {
        if ports.iter().any(|p| p.key() == *key) {
            continue;
        }
        let Ok((port, proto)) = crate::network::ports::container_port(key) else {
            continue;
        };
        out.push(json!({ "PrivatePort": port, "Type": proto.as_str() }));
    }
    Value::Array(out)
}
