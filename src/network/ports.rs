//! Published ports: the mappings a container asks for (`PortBindings`,
//! and with `PublishAllPorts` every exposed port on an ephemeral host
//! port), and the userland proxy that serves them: a listener per mapping
//! in the daemon, forwarding each connection to the container's address.
//! Listeners are bound before anything is recorded, so a port in use
//! fails the start with nothing half-wired; the bound ports are kept in
//! SQLite (`port_leases`) so that a restarted daemon binds the same ones
//! again for containers that kept running.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use serde_json::Value;

use crate::error::{EngineError, EngineResult};

/// One published TCP port.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct PortMapping {
    pub container_port: u16,
    pub host_ip: Ipv4Addr,
    /// 0: any free port.
    pub host_port: u16,
}

/// `80/tcp` (or `80`) to the port; other protocols are refused.
fn container_port(key: &str) -> EngineResult<u16> {
    let (port, proto) = key.split_once('/').unwrap_or((key, "tcp"));
    if proto != "tcp" {
        return Err(EngineError::InvalidParameter(format!(
            "publishing {proto} ports is not supported by mydocker yet"
        )));
    }
    port.parse::<u16>()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| EngineError::InvalidParameter(format!("invalid port: {key}")))
}

/// The mappings of `HostConfig` (`PortBindings`, `PublishAllPorts`) over
/// the container's exposed ports.
pub fn mappings(
    host_config: &Value,
    exposed: &BTreeMap<String, Value>,
) -> EngineResult<Vec<PortMapping>> {
    let mut out = vec![];
    let bindings = host_config
        .get("PortBindings")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    for (key, list) in &bindings {
        let cport = container_port(key)?;
        let list = list.as_array().cloned().unwrap_or_default();
        let list = if list.is_empty() {
            vec![Value::Null]
        } else {
            list
        };
        for b in list {
            let ip = b.get("HostIp").and_then(Value::as_str).unwrap_or("");
            let port = b.get("HostPort").and_then(Value::as_str).unwrap_or("");
            let host_ip = match ip {
                "" => Ipv4Addr::UNSPECIFIED,
                ip => match ip.parse::<IpAddr>() {
                    Ok(IpAddr::V4(v4)) => v4,
                    _ => {
                        return Err(EngineError::InvalidParameter(format!(
                            "invalid host IP for port {key}: {ip:?} (IPv4 only)"
                        )))
                    }
                },
            };
            let host_port = match port {
                "" | "0" => 0,
                p => p.parse::<u16>().map_err(|_| {
                    EngineError::InvalidParameter(format!("invalid host port for {key}: {p:?}"))
                })?,
            };
            out.push(PortMapping {
                container_port: cport,
                host_ip,
                host_port,
            });
        }
    }
    if host_config.get("PublishAllPorts").and_then(Value::as_bool) == Some(true) {
        for key in exposed.keys() {
            if bindings.contains_key(key) || key.ends_with("/udp") || key.ends_with("/sctp") {
                continue;
            }
            out.push(PortMapping {
                container_port: container_port(key)?,
                host_ip: Ipv4Addr::UNSPECIFIED,
                host_port: 0,
            });
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// Binds every mapping, all or none; errors in dockerd's words.
pub async fn bind_all(
    endpoint: &str,
    maps: &[PortMapping],
) -> EngineResult<Vec<(PortMapping, tokio::net::TcpListener)>> {
    let mut bound = vec![];
    for m in maps {
        let addr = SocketAddr::new(IpAddr::V4(m.host_ip), m.host_port);
        match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => {
                let port = l.local_addr().map(|a| a.port()).unwrap_or(m.host_port);
                bound.push((
                    PortMapping {
                        host_port: port,
                        ..m.clone()
                    },
                    l,
                ));
            }
            Err(e) => {
                let why = if e.kind() == std::io::ErrorKind::AddrInUse {
                    "bind: address already in use".to_string()
                } else {
                    e.to_string()
                };
                return Err(EngineError::Internal(format!(
                    "driver failed programming external connectivity on endpoint {endpoint}: Error starting userland proxy: listen tcp4 {addr}: {why}"
                )));
            }
        }
    }
    Ok(bound)
}

/// Serves one listener: each connection is piped to `target`.
pub fn spawn_proxy(
    listener: tokio::net::TcpListener,
    target: SocketAddr,
) -> tokio::task::AbortHandle {
    tokio::spawn(async move {
        loop {
            let Ok((mut client, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                if let Ok(mut upstream) = tokio::net::TcpStream::connect(target).await {
                    let _ = client.set_nodelay(true);
                    let _ = upstream.set_nodelay(true);
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                }
            });
        }
    })
    .abort_handle()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn m(container_port: u16, host_ip: Ipv4Addr, host_port: u16) -> PortMapping {
        PortMapping {
            container_port,
            host_ip,
            host_port,
        }
    }

    #[test]
    fn bindings_and_publish_all() {
        let hc = json!({
            "PortBindings": {
                "80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "18080"}],
                "443/tcp": [{"HostIp": "", "HostPort": ""}],
            },
            "PublishAllPorts": true,
        });
        let exposed: BTreeMap<String, Value> = [
            ("80/tcp".to_string(), json!({})),
            ("9000/tcp".to_string(), json!({})),
        ]
        .into();
        let any = Ipv4Addr::UNSPECIFIED;
        assert_eq!(
            mappings(&hc, &exposed).unwrap(),
            vec![
                m(80, Ipv4Addr::LOCALHOST, 18080),
                m(443, any, 0),
                m(9000, any, 0)
            ]
        );
        assert!(mappings(&json!({}), &exposed).unwrap().is_empty());
    }

    #[test]
    fn bad_bindings_are_refused() {
        let e = BTreeMap::new();
        for hc in [
            json!({"PortBindings": {"53/udp": [{}]}}),
            json!({"PortBindings": {"x/tcp": [{}]}}),
            json!({"PortBindings": {"80/tcp": [{"HostPort": "99999"}]}}),
            json!({"PortBindings": {"80/tcp": [{"HostIp": "::1"}]}}),
        ] {
            assert!(mappings(&hc, &e).is_err(), "{hc}");
        }
    }

    #[tokio::test]
    async fn a_taken_port_fails_the_whole_set() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        let maps = [
            m(1, Ipv4Addr::LOCALHOST, 0),
            m(2, Ipv4Addr::LOCALHOST, port),
        ];
        let e = bind_all("web", &maps).await.unwrap_err().to_string();
        assert!(e.contains("address already in use"), "{e}");
        assert!(e.contains(&format!("127.0.0.1:{port}")), "{e}");
    }
}
