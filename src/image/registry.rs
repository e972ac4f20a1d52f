//! Talking to v2/OCI registries through oci-client: which host serves a
//! reference (mirrors for Docker Hub), whether it speaks plain HTTP, the
//! proxy settings, credentials from `X-Registry-Auth`, and dockerd-style
//! wording for registry errors.

use std::net::IpAddr;

use base64::Engine as _;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::secrets::RegistryAuth;
use oci_client::Client;
use serde::Deserialize;

use super::reference::Reference;
use crate::config::ProxyEnv;
use crate::error::EngineError;

/// Docker Hub's real registry host, used after the mirrors.
pub const DOCKER_HUB_REGISTRY: &str = "registry-1.docker.io";

#[derive(Debug, Clone, Default)]
pub struct RegistrySettings {
    /// Mirror URLs for docker.io (`http(s)://host[:port]`).
    pub mirrors: Vec<String>,
    /// `host[:port]` or CIDR ranges allowed to use plain HTTP.
    pub insecure: Vec<String>,
    pub proxy: ProxyEnv,
}

/// One place a reference can be fetched from.
#[derive(Debug, Clone, PartialEq)]
pub struct Endpoint {
    /// `host[:port]` as oci-client addresses it.
    pub host: String,
    pub plain_http: bool,
    /// Repository path on that host (`library/busybox`).
    pub repository: String,
}

impl RegistrySettings {
    /// Endpoints to try in order: Docker Hub names go to each mirror first.
    pub fn endpoints(&self, r: &Reference) -> Vec<Endpoint> {
        let mut out = vec![];
        if r.is_docker_hub() {
            for m in &self.mirrors {
                let (scheme, rest) = m.split_once("://").unwrap_or(("https", m));
                let host = rest.trim_end_matches('/').to_string();
                let plain_http = scheme == "http" || self.is_insecure(&host);
                out.push(Endpoint {
                    host,
                    plain_http,
                    repository: r.path.clone(),
                });
            }
            out.push(Endpoint {
                host: DOCKER_HUB_REGISTRY.into(),
                plain_http: false,
                repository: r.path.clone(),
            });
        } else {
            out.push(Endpoint {
                host: r.domain.clone(),
                plain_http: self.is_insecure(&r.domain),
                repository: r.path.clone(),
            });
        }
        out
    }

    /// dockerd treats loopback registries and `insecure-registries` as
    /// allowed to use plain HTTP.
    pub fn is_insecure(&self, host_port: &str) -> bool {
        let host = host_only(host_port);
        if host == "localhost" {
            return true;
        }
        let ip: Option<IpAddr> = host.parse().ok();
        if ip.is_some_and(|ip| ip.is_loopback()) {
            return true;
        }
        self.insecure.iter().any(|entry| {
            if entry == host_port || entry == host {
                return true;
            }
            match (ip, entry.split_once('/')) {
                (Some(ip), Some((net, bits))) => cidr_contains(net, bits, ip),
                _ => false,
            }
        })
    }

    pub fn client(&self, endpoint: &Endpoint) -> Result<Client, EngineError> {
        let protocol = if endpoint.plain_http {
            ClientProtocol::HttpsExcept(vec![endpoint.host.clone()])
        } else {
            ClientProtocol::Https
        };
        let config = ClientConfig {
            protocol,
            // Resolution to the host platform is ours (see pull.rs).
            platform_resolver: None,
            http_proxy: non_empty(&self.proxy.http_proxy),
            https_proxy: non_empty(&self.proxy.https_proxy),
            no_proxy: non_empty(&self.proxy.no_proxy),
            connect_timeout: Some(std::time::Duration::from_secs(15)),
            read_timeout: Some(std::time::Duration::from_secs(60)),
            ..Default::default()
        };
        Client::try_from(config).map_err(|e| EngineError::Internal(format!("registry client: {e}")))
    }
}

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

fn host_only(host_port: &str) -> &str {
    if let Some(rest) = host_port.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    host_port
        .rsplit_once(':')
        .map(|(h, _)| h)
        .unwrap_or(host_port)
}

fn cidr_contains(net: &str, bits: &str, ip: IpAddr) -> bool {
    let (Ok(net), Ok(bits)) = (net.parse::<IpAddr>(), bits.parse::<u32>()) else {
        return false;
    };
    match (net, ip) {
        (IpAddr::V4(n), IpAddr::V4(i)) if bits <= 32 => {
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - bits)
            };
            u32::from(n) & mask == u32::from(i) & mask
        }
        (IpAddr::V6(n), IpAddr::V6(i)) if bits <= 128 => {
            let mask = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - bits)
            };
            u128::from(n) & mask == u128::from(i) & mask
        }
        _ => false,
    }
}

/// The JSON the docker CLI base64url-encodes into `X-Registry-Auth`.
#[derive(Debug, Default, Deserialize)]
struct AuthConfig {
    // Clients send unset fields as null (bollard) or leave them out (CLI).
    #[serde(default, deserialize_with = "null_as_empty")]
    username: String,
    #[serde(default, deserialize_with = "null_as_empty")]
    password: String,
    #[serde(default, deserialize_with = "null_as_empty")]
    auth: String,
    #[serde(default, rename = "registrytoken", deserialize_with = "null_as_empty")]
    registry_token: String,
    #[serde(default, rename = "identitytoken", deserialize_with = "null_as_empty")]
    identity_token: String,
}

fn null_as_empty<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(Option::<String>::deserialize(d)?.unwrap_or_default())
}

/// Decodes `X-Registry-Auth`; an absent, empty or unreadable header means
/// anonymous access, as with dockerd.
pub fn parse_registry_auth(header: Option<&str>) -> RegistryAuth {
    let Some(h) = header.map(str::trim).filter(|h| !h.is_empty()) else {
        return RegistryAuth::Anonymous;
    };
    let engines = [
        base64::engine::general_purpose::URL_SAFE,
        base64::engine::general_purpose::URL_SAFE_NO_PAD,
        base64::engine::general_purpose::STANDARD,
    ];
    let Some(bytes) = engines.iter().find_map(|e| e.decode(h).ok()) else {
        return RegistryAuth::Anonymous;
    };
    let Ok(mut cfg) = serde_json::from_slice::<AuthConfig>(&bytes) else {
        return RegistryAuth::Anonymous;
    };
    if cfg.username.is_empty() && !cfg.auth.is_empty() {
        // "auth" is base64("user:password"), as in config.json.
        if let Some((u, p)) = base64::engine::general_purpose::STANDARD
            .decode(&cfg.auth)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| {
                s.split_once(':')
                    .map(|(u, p)| (u.to_string(), p.to_string()))
            })
        {
            cfg.username = u;
            cfg.password = p;
        }
    }
    if !cfg.registry_token.is_empty() {
        RegistryAuth::Bearer(cfg.registry_token)
    } else if !cfg.identity_token.is_empty() {
        // An OAuth refresh token is exchanged like a password.
        RegistryAuth::Basic("<token>".into(), cfg.identity_token)
    } else if !cfg.username.is_empty() {
        RegistryAuth::Basic(cfg.username, cfg.password)
    } else {
        RegistryAuth::Anonymous
    }
}

/// Turns an oci-client error into dockerd's kind and wording. `what` is the
/// familiar reference being fetched; `anonymous` says whether the client
/// sent no credentials. Authentication failures are not 401s: the docker
/// CLI answers a 401 from the daemon with a login prompt, so dockerd (and
/// we) report them as server errors.
pub fn map_error(e: OciDistributionError, what: &str, repo: &str, anonymous: bool) -> EngineError {
    let auth_failed = || {
        EngineError::Internal(if anonymous {
            format!("pulling {what}: no basic auth credentials")
        } else {
            format!("pulling {what}: unauthorized: authentication required")
        })
    };
    match e {
        OciDistributionError::RegistryError { envelope, .. } => {
            let first = envelope.errors.first();
            let msg = first.map(|e| e.message.clone()).unwrap_or_default();
            match first.map(|e| &e.code) {
                Some(OciErrorCode::ManifestUnknown) => EngineError::NotFound(format!(
                    "manifest for {what} not found: manifest unknown: {msg}"
                )),
                Some(OciErrorCode::NameUnknown) | Some(OciErrorCode::NotFound) => {
                    EngineError::NotFound(format!(
                        "pull access denied for {repo}, repository does not exist or may require 'docker login': name unknown: {msg}"
                    ))
                }
                Some(OciErrorCode::BlobUnknown) => {
                    EngineError::NotFound(format!("blob unknown to registry: {msg}"))
                }
                Some(OciErrorCode::Denied) => EngineError::NotFound(format!(
                    "pull access denied for {repo}, repository does not exist or may require 'docker login': denied: {msg}"
                )),
                Some(OciErrorCode::Unauthorized) => auth_failed(),
                _ => EngineError::Internal(format!("error from registry: {msg}")),
            }
        }
        OciDistributionError::UnauthorizedError { .. }
        | OciDistributionError::AuthenticationFailure(_) => auth_failed(),
        OciDistributionError::ImageManifestNotFoundError(m) => {
            EngineError::NotFound(format!("manifest for {what} not found: {m}"))
        }
        OciDistributionError::ServerError { code: 404, .. } => {
            EngineError::NotFound(format!("manifest for {what} not found: manifest unknown"))
        }
        OciDistributionError::DigestError(d) => {
            EngineError::InvalidParameter(format!("digest verification failed: {d}"))
        }
        OciDistributionError::RequestError(r) => {
            let mut msg = r.to_string();
            let mut src: Option<&dyn std::error::Error> = std::error::Error::source(&r);
            while let Some(s) = src {
                msg.push_str(": ");
                msg.push_str(&s.to_string());
                src = s.source();
            }
            EngineError::Internal(msg)
        }
        other => EngineError::Internal(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> RegistrySettings {
        RegistrySettings {
            mirrors: vec!["http://127.0.0.1:5000/".into()],
            insecure: vec!["10.1.0.0/16".into(), "myreg:5000".into()],
            proxy: ProxyEnv::default(),
        }
    }

    #[test]
    fn docker_hub_names_go_to_mirrors_first() {
        let r = Reference::parse_normalized("busybox").unwrap();
        let eps = settings().endpoints(&r);
        assert_eq!(eps[0].host, "127.0.0.1:5000");
        assert!(eps[0].plain_http);
        assert_eq!(eps[0].repository, "library/busybox");
        assert_eq!(eps[1].host, DOCKER_HUB_REGISTRY);
        let r = Reference::parse_normalized("quay.io/a/b").unwrap();
        assert_eq!(settings().endpoints(&r).len(), 1);
    }

    #[test]
    fn insecure_rules() {
        let s = settings();
        assert!(s.is_insecure("127.0.0.1:5000"));
        assert!(s.is_insecure("localhost:5000"));
        assert!(s.is_insecure("10.1.2.3:443"));
        assert!(s.is_insecure("myreg:5000"));
        assert!(!s.is_insecure("10.2.0.1"));
        assert!(!s.is_insecure("quay.io"));
        assert!(s.is_insecure("[::1]:5000"));
    }

    #[test]
    fn registry_auth_header() {
        let enc = |j: &str| base64::engine::general_purpose::URL_SAFE.encode(j);
        assert!(matches!(parse_registry_auth(None), RegistryAuth::Anonymous));
        assert!(matches!(
            parse_registry_auth(Some(&enc(r#"{"username":"u","password":"p"}"#))),
            RegistryAuth::Basic(u, p) if u == "u" && p == "p"
        ));
        assert!(matches!(
            parse_registry_auth(Some(&enc(r#"{"registrytoken":"t"}"#))),
            RegistryAuth::Bearer(t) if t == "t"
        ));
        assert!(matches!(
            parse_registry_auth(Some("!!!")),
            RegistryAuth::Anonymous
        ));
    }
}
