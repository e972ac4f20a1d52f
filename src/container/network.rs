//! The container engine's side of networking: which namespace a
//! container joins according to its `NetworkMode`, and the calls into the
//! network engine at create, start, exit and removal.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;

use super::{Container, ContainerService};
use crate::error::{EngineError, EngineResult};
use crate::network::endpoint::{shares_namespace, EndpointConfig, EndpointView};
use crate::network::NetworkService;
use crate::runtime::spec::NetworkNs;
use crate::store::networks::EndpointRow;

/// What a start needs from networking.
pub(super) struct NetworkPlan {
    pub ns: NetworkNs,
    /// Lines for `/etc/hosts` naming the container's own addresses.
    pub hosts: String,
    /// Its embedded DNS server runs (it is on a user-defined network).
    pub embedded_dns: bool,
}

/// `NetworkMode` as stored ("default" is the default bridge).
pub(super) fn mode_of(host_config: &Value) -> String {
    match host_config.get("NetworkMode").and_then(Value::as_str) {
        None | Some("") | Some("default") => "bridge".into(),
        Some(m) => m.to_string(),
    }
}

impl ContainerService {
    pub fn set_network(&self, n: Arc<NetworkService>) {
        let _ = self.network.set(n);
    }

    pub fn network(&self) -> Option<&Arc<NetworkService>> {
        self.network.get()
    }

    /// Checks the network mode and endpoints of a new container; returns
    /// the rows stored with it.
    pub(super) async fn plan_networks(
        &self,
        id: &str,
        host_config: &serde_json::Map<String, Value>,
        raw: &serde_json::Map<String, Value>,
        exposed: &BTreeMap<String, Value>,
    ) -> EngineResult<Vec<EndpointRow>> {
        let mode = mode_of(&Value::Object(host_config.clone()));
        if let Some(target) = mode.strip_prefix("container:") {
            self.get(target).await?;
        }
        let Some(net) = self.network() else {
            return Ok(vec![]);
        };
        // Bad port bindings are the caller's mistake, refused now.
        crate::network::ports::requests(&Value::Object(host_config.clone()), exposed)?;
        let endpoints: BTreeMap<String, EndpointConfig> = raw
            .get("NetworkingConfig")
            .and_then(|n| n.get("EndpointsConfig"))
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), EndpointConfig::from_json(v)))
                    .collect()
            })
            .unwrap_or_default();
        net.plan_create(id, &mode, &endpoints).await
    }

    /// The namespace a starting container joins, wired.
    pub(super) async fn network_setup(&self, c: &Container) -> EngineResult<NetworkPlan> {
        let mode = mode_of(&c.host_config);
        let plain = |ns| NetworkPlan {
            ns,
            hosts: String::new(),
            embedded_dns: false,
        };
        match mode.as_str() {
            "none" => return Ok(plain(NetworkNs::New)),
            "host" => return Ok(plain(NetworkNs::Host)),
            _ => {}
        }
        if let Some(target) = mode.strip_prefix("container:") {
            let other = self.get(target).await?;
            if !other.state.running() || other.state.pid <= 0 {
                return Err(EngineError::Conflict(format!(
                    "cannot join network namespace of a non running container: {}",
                    other.id()
                )));
            }
            return Ok(plain(NetworkNs::Path(
                format!("/proc/{}/ns/net", other.state.pid).into(),
            )));
        }
        let Some(net) = self.network() else {
            return Ok(plain(NetworkNs::New));
        };
        let wired = net.setup(c.id()).await?;
        let exposed = c.config.exposed_ports.clone().unwrap_or_default();
        let published = match crate::network::ports::requests(&c.host_config, &exposed) {
            Ok(maps) => net.publish(c.id(), &c.row.name, &maps).await,
            Err(e) => Err(e),
        };
        let embedded_dns = match published {
            Ok(_) => self.start_resolver(net, c).await,
            Err(e) => Err(e),
        };
        let embedded_dns = match embedded_dns {
            Ok(on) => on,
            Err(e) => {
                net.teardown(c.id()).await;
                return Err(e);
            }
        };
        let hosts = wired
            .addresses
            .iter()
            .map(|ip| format!("{ip}\t{}\n", c.config.hostname))
            .collect();
        Ok(NetworkPlan {
            ns: NetworkNs::Path(wired.netns),
            hosts,
            embedded_dns,
        })
    }

    /// Starts the container's embedded DNS server if it is on a
    /// user-defined network, forwarding to its own resolvers.
    async fn start_resolver(&self, net: &NetworkService, c: &Container) -> EngineResult<bool> {
        let host = tokio::fs::read_to_string("/etc/resolv.conf")
            .await
            .unwrap_or_default();
        let r = super::security::resolver_of(&self.with_defaults(&c.host_config), &host);
        net.start_resolver(c.id(), &r.servers, &r.search).await
    }

    /// At daemon start: the DNS servers of the containers that kept
    /// running (they died with the previous daemon).
    pub async fn restart_resolvers(&self) -> EngineResult<()> {
        let Some(net) = self.network() else {
            return Ok(());
        };
        for c in self.all().await? {
            if c.state.running() && !shares_namespace(&mode_of(&c.host_config)) {
                if let Err(e) = self.start_resolver(net, &c).await {
                    tracing::warn!(id = %c.id(), error = %e, "cannot start the embedded DNS server");
                }
            }
        }
        Ok(())
    }

    /// Undoes what [`Self::network_setup`] wired (nothing for shared modes).
    pub(super) async fn network_teardown(&self, id: &str) {
        if let Some(net) = self.network() {
            net.teardown(id).await;
        }
    }

    /// `POST /networks/{id}/connect`.
    pub async fn connect_network(
        &self,
        network: &str,
        container: &str,
        cfg: EndpointConfig,
    ) -> EngineResult<()> {
        let net = self.require_network()?;
        let c = self.get(container).await?;
        let mode = mode_of(&c.host_config);
        if shares_namespace(&mode) {
            return Err(EngineError::Forbidden(
                "container sharing network namespace with another container or host cannot be connected to any other network".into(),
            ));
        }
        net.connect(c.id(), network, cfg, c.state.running()).await?;
        if c.state.running() {
            // Names on the new network (already serving: a no-op).
            self.start_resolver(net, &c).await?;
        }
        Ok(())
    }

    /// `POST /networks/{id}/disconnect`; with `force`, a container that
    /// is gone may still have its leftovers on the network removed.
    pub async fn disconnect_network(
        &self,
        network: &str,
        container: &str,
        force: bool,
    ) -> EngineResult<()> {
        let net = self.require_network()?;
        let c = match self.get(container).await {
            Ok(c) => c,
            Err(EngineError::NotFound(_)) if force => {
                return net.force_endpoint_delete(container, network).await
            }
            Err(e) => return Err(e),
        };
        net.disconnect(c.id(), network).await
    }

    /// What `host-gateway` in `ExtraHosts` stands for: the default
    /// bridge's gateway address, as dockerd has it.
    pub(super) async fn host_gateway_ip(&self) -> Option<std::net::IpAddr> {
        let net = self.network()?.get("bridge").await.ok()?;
        Some(net.pool()?.gateway.into())
    }

    /// A running container's published ports.
    pub async fn published_ports(&self, c: &Container) -> Vec<crate::network::ports::PortMapping> {
        match self.network() {
            Some(n) if c.state.running() => n.published(c.id()).await.unwrap_or_default(),
            _ => vec![],
        }
    }

    /// A container's attachments for inspect.
    pub async fn network_endpoints(&self, c: &Container) -> EngineResult<Vec<EndpointView>> {
        match self.network() {
            Some(n) => n.endpoints_of(c.id()).await,
            None => Ok(vec![]),
        }
    }

    fn require_network(&self) -> EngineResult<&Arc<NetworkService>> {
        self.network()
            .ok_or_else(|| EngineError::NotImplemented("networking is not enabled".into()))
    }
}
