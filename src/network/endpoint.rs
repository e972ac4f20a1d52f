//! A container's attachments. At create they are planned and stored with
//! the container row (`endpoints`); at start a namespace is pinned under
//! the exec root and each attachment gets an address (a lease, written
//! before the kernel objects so a crash leaves something to undo) and a
//! veth pair plugged into its bridge; at exit, leases, veths and the
//! namespace go.

use std::collections::{BTreeMap, HashSet};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::ipam::StaticError;
use super::netlink::{self, VethSpec};
use super::subnet::{mac_for, mac_string};
use super::{blocking, netns, new_id, not_found, Network, NetworkService};
use crate::error::{EngineError, EngineResult};
use crate::store::networks::{self as rows, EndpointRow, LeaseRow};

/// How long the kernel gets to destroy an unpinned namespace's veths
/// before we delete one that is still there.
const VETH_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

/// The `endpoints.config` column: what the client asked for.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EndpointConfig {
    pub aliases: Vec<String>,
    /// A requested static address, or empty.
    pub ipv4: String,
}

/// An attachment as inspect shows it.
#[derive(Clone, Debug)]
pub struct EndpointView {
    pub network: Network,
    pub config: EndpointConfig,
    /// Set while the container runs.
    pub lease: Option<LeaseRow>,
}

/// What a started container's namespace holds.
#[derive(Clone, Debug, Default)]
pub struct Wired {
    pub netns: PathBuf,
    pub addresses: Vec<Ipv4Addr>,
}

/// Modes that do not take endpoints of their own.
pub fn shares_namespace(mode: &str) -> bool {
    mode == "host" || mode == "none" || mode.starts_with("container:")
}

impl NetworkService {
    /// Checks a container's networks at create; returns the rows to store
    /// with it (the primary network first).
    pub async fn plan_create(
        &self,
        container_id: &str,
        mode: &str,
        endpoints: &BTreeMap<String, EndpointConfig>,
    ) -> EngineResult<Vec<EndpointRow>> {
        if shares_namespace(mode) {
            let own = mode.split(':').next().unwrap_or(mode);
            if let Some(k) = endpoints
                .keys()
                .find(|k| k.as_str() != own && k.as_str() != mode)
            {
                return Err(EngineError::InvalidParameter(format!(
                    "container sharing network namespace with another container or host cannot be connected to any other network (requested {k})"
                )));
            }
            return Ok(vec![]);
        }
        // The CLI names the default bridge "default" in EndpointsConfig.
        let is_primary = |k: &str| k == mode || (mode == "bridge" && k == "default");
        let primary = self.get(mode).await?;
        let primary_cfg = endpoints
            .iter()
            .find(|(k, _)| is_primary(k))
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        let mut plan = vec![(primary, primary_cfg)];
        for (name, cfg) in endpoints {
            if is_primary(name) {
                continue;
            }
            let net = self.get(name).await?;
            if plan.iter().any(|(n, _)| n.id == net.id) {
                continue;
            }
            plan.push((net, cfg.clone()));
        }
        let mut out = vec![];
        for (i, (net, cfg)) in plan.into_iter().enumerate() {
            check_endpoint(&net, &cfg)?;
            out.push(EndpointRow {
                container_id: container_id.to_string(),
                network_id: net.id.clone(),
                config: serde_json::to_string(&cfg)?,
                position: i as i64,
            });
        }
        Ok(out)
    }

    /// Wires a container's attachments into a new pinned namespace. On
    /// failure nothing is left.
    pub async fn setup(&self, container_id: &str) -> EngineResult<Wired> {
        let _g = self.lock.lock().await;
        // Leftovers of a previous run (a crash) first.
        self.teardown_locked(container_id, false).await;
        let path = self.netns_path(container_id);
        {
            let p = path.clone();
            tokio::task::spawn_blocking(move || netns::create(&p))
                .await
                .map_err(EngineError::internal)??;
        }
        match self.wire_all(container_id, &path).await {
            Ok(addresses) => Ok(Wired {
                netns: path,
                addresses,
            }),
            Err(e) => {
                self.teardown_locked(container_id, false).await;
                Err(e)
            }
        }
    }

    async fn wire_all(&self, container_id: &str, netns: &Path) -> EngineResult<Vec<Ipv4Addr>> {
        let cid = container_id.to_string();
        let eps = self
            .store
            .call(move |conn| rows::endpoints_of(conn, &cid))
            .await?;
        if eps.is_empty() {
            let p = netns.to_path_buf();
            blocking(move || netlink::loopback_up(&p)).await?;
            return Ok(vec![]);
        }
        let mut addresses = vec![];
        for (i, ep) in eps.iter().enumerate() {
            let net = self.get(&ep.network_id).await.map_err(|_| {
                EngineError::NotFound(format!("network {} not found", ep.network_id))
            })?;
            let cfg: EndpointConfig = serde_json::from_str(&ep.config).unwrap_or_default();
            let lease = self
                .attach_one(container_id, &net, &cfg, &format!("eth{i}"), i == 0, netns)
                .await?;
            addresses.push(lease.address.parse().unwrap_or(Ipv4Addr::UNSPECIFIED));
        }
        Ok(addresses)
    }

    /// One lease and one veth pair; the lease is dropped again if the
    /// kernel side fails.
    async fn attach_one(
        &self,
        container_id: &str,
        net: &Network,
        cfg: &EndpointConfig,
        ifname: &str,
        default_route: bool,
        netns: &Path,
    ) -> EngineResult<LeaseRow> {
        let pool = net.pool().ok_or_else(|| {
            EngineError::InvalidParameter(format!("network {} cannot take endpoints", net.name))
        })?;
        let requested: Option<Ipv4Addr> = if cfg.ipv4.is_empty() {
            None
        } else {
            Some(cfg.ipv4.parse().map_err(|_| {
                EngineError::InvalidParameter(format!("invalid IPv4 address: {}", cfg.ipv4))
            })?)
        };
        let endpoint_id = new_id();
        let veth = format!("veth{}", &endpoint_id[..7]);
        let (nid, cid, eid, ifn, vn) = (
            net.id.clone(),
            container_id.to_string(),
            endpoint_id.clone(),
            ifname.to_string(),
            veth.clone(),
        );
        let p = pool.clone();
        let lease = self
            .store
            .call(move |conn| {
                let taken: HashSet<Ipv4Addr> = rows::leases_on(conn, &nid)?
                    .iter()
                    .filter_map(|l| l.address.parse().ok())
                    .collect();
                let ip = match requested {
                    Some(ip) => match p.check_static(ip, &taken) {
                        Ok(()) => ip,
                        Err(StaticError::Taken) => {
                            return Err(EngineError::Conflict(format!(
                                "Address already in use: {ip}"
                            )))
                        }
                        Err(StaticError::Outside) => {
                            return Err(EngineError::InvalidParameter(format!(
                                "no configured subnet or ip-range contain the IP address {ip}"
                            )))
                        }
                    },
                    None => p.allocate(&taken).ok_or_else(|| {
                        EngineError::InvalidParameter(format!(
                            "no available IPv4 addresses on this network's address pools: {} ({})",
                            p.subnet, nid
                        ))
                    })?,
                };
                let lease = LeaseRow {
                    network_id: nid,
                    address: ip.to_string(),
                    container_id: cid,
                    endpoint_id: eid,
                    mac: mac_string(&mac_for(ip)),
                    ifname: ifn,
                    veth: vn,
                };
                rows::insert_lease(conn, &lease)?;
                Ok(lease)
            })
            .await?;
        let ip: Ipv4Addr = lease.address.parse().map_err(EngineError::internal)?;
        let spec = VethSpec {
            bridge: net.config.bridge.clone(),
            host: veth,
            ifname: ifname.to_string(),
            address: ip,
            prefix: pool.subnet.prefix(),
            mac: mac_for(ip),
            gateway: default_route.then_some(pool.gateway),
        };
        let ns = netns.to_path_buf();
        let gw = pool.gateway;
        let prefix = pool.subnet.prefix();
        let wired = blocking(move || netlink::add_veth(&spec, &ns, (gw, prefix))).await;
        if let Err(e) = wired {
            let (cid, nid) = (container_id.to_string(), net.id.clone());
            let _ = self
                .store
                .call(move |conn| rows::delete_lease(conn, &cid, &nid))
                .await;
            return Err(e);
        }
        self.emit(net, "connect", Some(container_id));
        Ok(lease)
    }

    /// Undoes a container's wiring: veths, leases, the pinned namespace.
    pub async fn teardown(&self, container_id: &str) {
        let _g = self.lock.lock().await;
        self.teardown_locked(container_id, true).await;
    }

    async fn teardown_locked(&self, container_id: &str, announce: bool) {
        self.stop_resolver(container_id);
        self.unpublish_locked(container_id).await;
        let cid = container_id.to_string();
        let leases = self
            .store
            .call(move |conn| rows::leases_of(conn, &cid))
            .await
            .unwrap_or_default();
        // Unpinning the namespace first lets the kernel destroy it with
        // its ends of the veths (and so the host ends) in the background:
        // deleting a veth ourselves waits out an RCU grace period, the
        // largest cost of a container's exit.
        let path = self.netns_path(container_id);
        let _ = tokio::task::spawn_blocking(move || netns::remove(&path)).await;
        for l in leases {
            self.forget_lease(&l, announce).await;
            // Still there a moment later only if something else holds the
            // namespace (a `container:` sharer): delete it then, off the
            // exit path (and not racing the kernel for its lock).
            let veth = l.veth.clone();
            tokio::spawn(async move {
                tokio::time::sleep(VETH_GRACE).await;
                if let Err(e) = blocking(move || netlink::delete_link(&veth)).await {
                    tracing::warn!(error = %e, "cannot delete veth");
                }
            });
        }
    }

    /// Deletes a lease's veth, then the lease (disconnecting a running
    /// container, whose namespace stays).
    pub(super) async fn release(&self, l: &LeaseRow, announce: bool) {
        let veth = l.veth.clone();
        if let Err(e) = blocking(move || netlink::delete_link(&veth)).await {
            tracing::warn!(veth = %l.veth, error = %e, "cannot delete veth");
        }
        self.forget_lease(l, announce).await;
    }

    /// Drops a lease from the database and announces the disconnect.
    async fn forget_lease(&self, l: &LeaseRow, announce: bool) {
        let (cid, nid) = (l.container_id.clone(), l.network_id.clone());
        let _ = self
            .store
            .call(move |conn| rows::delete_lease(conn, &cid, &nid))
            .await;
        if announce {
            if let Ok(net) = self.get(&l.network_id).await {
                self.emit(&net, "disconnect", Some(&l.container_id));
            }
        }
    }

    /// `POST /networks/{id}/connect`; `running` containers get the
    /// interface at once.
    pub async fn connect(
        &self,
        container_id: &str,
        network: &str,
        cfg: EndpointConfig,
        running: bool,
    ) -> EngineResult<()> {
        let net = self.get(network).await?;
        if net.driver != "bridge" {
            return Err(EngineError::Forbidden(format!(
                "container cannot be disconnected from {0} network or connected to {0} network",
                net.name
            )));
        }
        check_endpoint(&net, &cfg)?;
        let _g = self.lock.lock().await;
        let cid = container_id.to_string();
        let eps = self
            .store
            .call(move |conn| rows::endpoints_of(conn, &cid))
            .await?;
        if eps.iter().any(|e| e.network_id == net.id) {
            return Err(EngineError::Forbidden(format!(
                "endpoint with name {} already exists in network {}",
                container_id, net.name
            )));
        }
        let row = EndpointRow {
            container_id: container_id.to_string(),
            network_id: net.id.clone(),
            config: serde_json::to_string(&cfg)?,
            position: eps.iter().map(|e| e.position + 1).max().unwrap_or(0),
        };
        let r = row.clone();
        self.store
            .call(move |conn| rows::insert_endpoint(conn, &r))
            .await?;
        if !running {
            return Ok(());
        }
        let cid = container_id.to_string();
        let leases = self
            .store
            .call(move |conn| rows::leases_of(conn, &cid))
            .await?;
        let used: HashSet<String> = leases.iter().map(|l| l.ifname.clone()).collect();
        let ifname = (0..)
            .map(|i| format!("eth{i}"))
            .find(|n| !used.contains(n))
            .unwrap_or_default();
        let netns = self.netns_path(container_id);
        let attached = self
            .attach_one(container_id, &net, &cfg, &ifname, leases.is_empty(), &netns)
            .await;
        if let Err(e) = attached {
            let (cid, nid) = (container_id.to_string(), net.id.clone());
            let _ = self
                .store
                .call(move |conn| rows::delete_endpoint(conn, &cid, &nid))
                .await;
            return Err(e);
        }
        Ok(())
    }

    /// `POST /networks/{id}/disconnect`.
    pub async fn disconnect(&self, container_id: &str, network: &str) -> EngineResult<()> {
        let net = self.get(network).await?;
        let _g = self.lock.lock().await;
        let (cid, nid) = (container_id.to_string(), net.id.clone());
        let (had, leases) = self
            .store
            .call(move |conn| {
                let leases = rows::leases_of(conn, &cid)?;
                Ok((rows::delete_endpoint(conn, &cid, &nid)?, leases))
            })
            .await?;
        for l in leases.iter().filter(|l| l.network_id == net.id) {
            self.unpublish_to(container_id, &l.address).await;
            self.release(l, true).await;
        }
        if !had {
            return Err(EngineError::Forbidden(format!(
                "container {container_id} is not connected to network {}",
                net.name
            )));
        }
        Ok(())
    }

    /// `POST /networks/{id}/disconnect` with `Force` naming a container
    /// that no longer exists: what it left on the network (its address,
    /// veth and published ports) goes, like dockerd's forced endpoint
    /// delete. `name` is its full ID or a prefix unique on the network.
    pub async fn force_endpoint_delete(&self, name: &str, network: &str) -> EngineResult<()> {
        let net = self.get(network).await?;
        let _g = self.lock.lock().await;
        let nid = net.id.clone();
        let leases = self
            .store
            .call(move |conn| rows::leases_on(conn, &nid))
            .await?;
        let owners: HashSet<&str> = leases
            .iter()
            .map(|l| l.container_id.as_str())
            .filter(|id| !name.is_empty() && id.starts_with(name))
            .collect();
        let [owner] = owners.into_iter().collect::<Vec<_>>()[..] else {
            return Err(EngineError::NotFound(format!("endpoint {name} not found")));
        };
        for l in leases.iter().filter(|l| l.container_id == owner) {
            self.unpublish_to(owner, &l.address).await;
            self.release(l, true).await;
        }
        Ok(())
    }

    /// A container's attachments with their leases, in order.
    pub async fn endpoints_of(&self, container_id: &str) -> EngineResult<Vec<EndpointView>> {
        let cid = container_id.to_string();
        let (eps, leases) = self
            .store
            .call(move |conn| {
                Ok((
                    rows::endpoints_of(conn, &cid)?,
                    rows::leases_of(conn, &cid)?,
                ))
            })
            .await?;
        let mut out = vec![];
        for ep in eps {
            let Ok(network) = self.get(&ep.network_id).await else {
                continue;
            };
            out.push(EndpointView {
                lease: leases.iter().find(|l| l.network_id == network.id).cloned(),
                config: serde_json::from_str(&ep.config).unwrap_or_default(),
                network,
            });
        }
        Ok(out)
    }

    /// Validates a container's network mode name exists.
    pub async fn require(&self, name: &str) -> EngineResult<Network> {
        self.get(name).await.map_err(|_| not_found(name))
    }
}

/// What dockerd refuses before any address is handed out.
fn check_endpoint(net: &Network, cfg: &EndpointConfig) -> EngineResult<()> {
    if net.driver != "bridge" {
        return Ok(());
    }
    if !net.is_user_defined() {
        if !cfg.ipv4.is_empty() {
            return Err(EngineError::InvalidParameter(
                "user specified IP address is supported on user defined networks only".into(),
            ));
        }
        if !cfg.aliases.is_empty() {
            return Err(EngineError::InvalidParameter(
                "network-scoped alias is supported only for containers in user defined networks"
                    .into(),
            ));
        }
    }
    if !cfg.ipv4.is_empty() {
        let ip: Ipv4Addr = cfg.ipv4.parse().map_err(|_| {
            EngineError::InvalidParameter(format!("invalid IPv4 address: {}", cfg.ipv4))
        })?;
        let pool = net
            .pool()
            .ok_or_else(|| EngineError::InvalidParameter("network has no IPv4 subnet".into()))?;
        if pool.check_static(ip, &HashSet::new()).is_err() {
            return Err(EngineError::InvalidParameter(format!(
                "no configured subnet or ip-range contain the IP address {ip}"
            )));
        }
    }
    Ok(())
}

impl EndpointConfig {
    /// From an Engine API `EndpointSettings` object (create's
    /// `NetworkingConfig.EndpointsConfig` values, connect's `EndpointConfig`).
    pub fn from_json(v: &serde_json::Value) -> EndpointConfig {
        let s =
            |x: Option<&serde_json::Value>| x.and_then(|x| x.as_str()).unwrap_or("").to_string();
        EndpointConfig {
            aliases: v
                .get("Aliases")
                .and_then(|a| a.as_array())
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default(),
            ipv4: s(v.get("IPAMConfig").and_then(|i| i.get("IPv4Address"))),
        }
    }
}
