//! Published ports as a container asks for them: `PortBindings` (host IP,
//! host port or port range, tcp/udp) and, with `PublishAllPorts`, every
//! exposed port on an ephemeral host port. Checked with dockerd's words at
//! create and turned into requests at start; [`super::proxy`] binds them
//! and [`super::publish`] records and serves them.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use serde_json::Value;

use crate::error::{EngineError, EngineResult};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }

    pub fn parse(s: &str) -> Option<Proto> {
        match s {
            "tcp" => Some(Proto::Tcp),
            "udp" => Some(Proto::Udp),
            _ => None,
        }
    }
}

impl std::fmt::Display for Proto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One port to publish, as asked.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct PortRequest {
    pub container_port: u16,
    pub proto: Proto,
    pub host_ip: Ipv4Addr,
    /// The host ports to try in order, `first..=last`; `(0, 0)` is any
    /// free (ephemeral) port.
    pub host_ports: (u16, u16),
}

/// One published port, as bound.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct PortMapping {
    pub container_port: u16,
    pub proto: Proto,
    pub host_ip: Ipv4Addr,
    pub host_port: u16,
}

impl PortMapping {
    /// `80/tcp`, the key of `NetworkSettings.Ports`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.container_port, self.proto)
    }
}

fn bad_spec(spec: &str) -> EngineError {
    EngineError::InvalidParameter(format!("invalid port specification: {spec:?}"))
}

/// `80/tcp` (or `80`, tcp) to the port and protocol.
pub fn container_port(key: &str) -> EngineResult<(u16, Proto)> {
    let (port, proto) = key.split_once('/').unwrap_or((key, "tcp"));
    let proto = match proto.to_ascii_lowercase().as_str() {
        "sctp" => {
            return Err(EngineError::InvalidParameter(format!(
                "publishing sctp ports is not supported by mydocker: {key}"
            )))
        }
        p => Proto::parse(p).ok_or_else(|| bad_spec(key))?,
    };
    let port = port
        .parse::<u16>()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| bad_spec(port))?;
    Ok((port, proto))
}

/// `HostPort`: empty or `0` for an ephemeral port, `N`, or a range
/// `A-B` to pick the first free port from.
fn host_ports(spec: &str) -> EngineResult<(u16, u16)> {
    let port = |s: &str| s.parse::<u16>().map_err(|_| bad_spec(spec));
    match spec.split_once('-') {
        _ if spec.is_empty() => Ok((0, 0)),
        None => Ok((port(spec)?, port(spec)?)),
        Some((a, b)) => {
            let (a, b) = (port(a)?, port(b)?);
            if a == 0 || b < a {
                return Err(bad_spec(spec));
            }
            Ok((a, b))
        }
    }
}

fn host_ip(key: &str, ip: &str) -> EngineResult<Ipv4Addr> {
    match ip {
        "" => Ok(Ipv4Addr::UNSPECIFIED),
        ip => match ip.parse::<IpAddr>() {
            Ok(IpAddr::V4(v4)) => Ok(v4),
            _ => Err(EngineError::InvalidParameter(format!(
                "invalid host IP for port {key}: {ip:?} (IPv4 only)"
            ))),
        },
    }
}

/// The requests of `HostConfig` (`PortBindings`, `PublishAllPorts`) over
/// the container's exposed ports, as dockerd reads them: a binding list
/// publishes each of its entries; with `PublishAllPorts`, exposed ports
/// without bindings get an ephemeral port.
pub fn requests(
    host_config: &Value,
    exposed: &BTreeMap<String, Value>,
) -> EngineResult<Vec<PortRequest>> {
    let mut out = vec![];
    let bindings = host_config
        .get("PortBindings")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let mut bound = std::collections::HashSet::new();
    for (key, list) in &bindings {
        let (container_port, proto) = container_port(key)?;
        let list = list.as_array().cloned().unwrap_or_default();
        if !list.is_empty() {
            bound.insert((container_port, proto));
        }
        for b in list {
            let ip = b.get("HostIp").and_then(Value::as_str).unwrap_or("");
            let port = b.get("HostPort").and_then(Value::as_str).unwrap_or("");
            out.push(PortRequest {
                container_port,
                proto,
                host_ip: host_ip(key, ip)?,
                host_ports: host_ports(port)?,
            });
        }
    }
    if host_config.get("PublishAllPorts").and_then(Value::as_bool) == Some(true) {
        for key in exposed.keys() {
            let (container_port, proto) = container_port(key)?;
            if bound.contains(&(container_port, proto)) {
                continue;
            }
            out.push(PortRequest {
                container_port,
                proto,
                host_ip: Ipv4Addr::UNSPECIFIED,
                host_ports: (0, 0),
            });
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn r(port: u16, proto: Proto, ip: Ipv4Addr, ports: (u16, u16)) -> PortRequest {
        PortRequest {
            container_port: port,
            proto,
            host_ip: ip,
            host_ports: ports,
        }
    }

    #[test]
    fn bindings_ranges_udp_and_publish_all() {
        let hc = json!({
            "PortBindings": {
                "80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "18080"}],
                "443/tcp": [{"HostIp": "", "HostPort": ""}],
                "53/udp": [{"HostIp": "127.0.0.1", "HostPort": "15353"}],
                "8080/tcp": [{"HostPort": "18000-18010"}],
                "9999/tcp": [],
            },
            "PublishAllPorts": true,
        });
        let exposed: BTreeMap<String, Value> = [
            ("80/tcp".to_string(), json!({})),
            ("9000/tcp".to_string(), json!({})),
            ("9000/udp".to_string(), json!({})),
            ("9999/tcp".to_string(), json!({})),
        ]
        .into();
        let (any, lo) = (Ipv4Addr::UNSPECIFIED, Ipv4Addr::LOCALHOST);
        use Proto::*;
        assert_eq!(
            requests(&hc, &exposed).unwrap(),
            vec![
                r(53, Udp, lo, (15353, 15353)),
                r(80, Tcp, lo, (18080, 18080)),
                r(443, Tcp, any, (0, 0)),
                r(8080, Tcp, any, (18000, 18010)),
                r(9000, Tcp, any, (0, 0)),
                r(9000, Udp, any, (0, 0)),
                // An empty binding list publishes only with -P.
                r(9999, Tcp, any, (0, 0)),
            ]
        );
        assert!(requests(&json!({}), &exposed).unwrap().is_empty());
        let empty_list = json!({"PortBindings": {"80/tcp": []}});
        assert!(requests(&empty_list, &exposed).unwrap().is_empty());
    }

    #[test]
    fn bad_bindings_are_refused_in_dockerds_words() {
        let e = BTreeMap::new();
        for (hc, want) in [
            (
                json!({"PortBindings": {"x/tcp": [{}]}}),
                r#"invalid port specification: "x""#,
            ),
            (
                json!({"PortBindings": {"0/tcp": [{}]}}),
                r#"invalid port specification: "0""#,
            ),
            (
                json!({"PortBindings": {"80/tcp": [{"HostPort": "99999"}]}}),
                r#"invalid port specification: "99999""#,
            ),
            (
                json!({"PortBindings": {"80/tcp": [{"HostPort": "18010-18000"}]}}),
                r#"invalid port specification: "18010-18000""#,
            ),
            (
                json!({"PortBindings": {"80/tcp": [{"HostPort": "1-x"}]}}),
                r#"invalid port specification: "1-x""#,
            ),
            (
                json!({"PortBindings": {"80/tcp": [{"HostIp": "::1"}]}}),
                "IPv4 only",
            ),
            (json!({"PortBindings": {"80/sctp": [{}]}}), "sctp"),
            (
                json!({"PortBindings": {"80/xyz": [{}]}}),
                "invalid port specification",
            ),
        ] {
            let err = requests(&hc, &e).unwrap_err();
            assert!(matches!(err, EngineError::InvalidParameter(_)), "{hc}");
            assert!(err.to_string().contains(want), "{hc}: {err}");
        }
    }
}
