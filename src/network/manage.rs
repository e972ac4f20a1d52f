//! The network verbs: create, remove, prune, list and the endpoint view
//! of inspect.

use std::collections::{BTreeMap, HashSet};

use super::ipam::{self, Pool, PoolRequest};
use super::model::PREDEFINED;
use super::{blocking, netlink, new_id, NetConfig, Network, NetworkService};
use crate::error::{EngineError, EngineResult};
use crate::filters::Filters;
use crate::store::networks::{self as rows, LeaseRow};

/// `POST /networks/create`, parsed.
#[derive(Clone, Debug, Default)]
pub struct CreateNetwork {
    pub name: String,
    pub driver: String,
    pub internal: bool,
    pub attachable: bool,
    pub enable_ipv6: bool,
    pub ipam_driver: String,
    pub ipam: Vec<PoolRequest>,
    pub ipam_options: BTreeMap<String, String>,
    pub options: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
}

/// Bridge option naming the device.
pub const OPT_BRIDGE_NAME: &str = "com.docker.network.bridge.name";

/// An active endpoint as inspect shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct ActiveEndpoint {
    pub lease: LeaseRow,
    pub prefix: u8,
}

impl NetworkService {
    /// Creates a user-defined bridge network; returns it.
    pub async fn create(&self, req: CreateNetwork) -> EngineResult<Network> {
        if req.name.is_empty() {
            return Err(EngineError::InvalidParameter(
                "network name cannot be empty".into(),
            ));
        }
        let mut chars = req.name.bytes();
        let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
        if !first_ok || !chars.all(|c| c.is_ascii_alphanumeric() || b"_.-".contains(&c)) {
            return Err(EngineError::InvalidParameter(format!(
                "invalid network name {:?}, only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed",
                req.name
            )));
        }
        if PREDEFINED.contains(&req.name.as_str()) {
            return Err(EngineError::Forbidden(format!(
                "{} is a pre-defined network and cannot be created",
                req.name
            )));
        }
        match req.driver.as_str() {
            "" | "bridge" => {}
            "host" | "null" => {
                return Err(EngineError::Forbidden(format!(
                    "only one instance of \"{}\" network is allowed",
                    req.driver
                )))
            }
            other => {
                return Err(EngineError::NotFound(format!(
                    "plugin \"{other}\" not found"
                )))
            }
        }
        if !matches!(req.ipam_driver.as_str(), "" | "default") {
            return Err(EngineError::NotFound(format!(
                "plugin \"{}\" not found",
                req.ipam_driver
            )));
        }
        if req.enable_ipv6 {
            return Err(EngineError::InvalidParameter(
                "IPv6 networks are not supported by mydocker yet".into(),
            ));
        }
        if req.ipam.len() > 1 {
            return Err(EngineError::InvalidParameter(
                "only one IPv4 IPAM config is supported by mydocker".into(),
            ));
        }
        let explicit = match req.ipam.first() {
            Some(r) if !r.subnet.is_empty() => {
                Some(ipam::validate(r).map_err(EngineError::InvalidParameter)?)
            }
            Some(r) if !r.gateway.is_empty() || !r.ip_range.is_empty() => {
                return Err(EngineError::InvalidParameter(
                    "gateway and ip-range need a subnet".into(),
                ))
            }
            _ => None,
        };
        let id = new_id();
        let bridge = match req.options.get(OPT_BRIDGE_NAME) {
            Some(b) => {
                if b.is_empty()
                    || b.len() > 15
                    || !b
                        .bytes()
                        .all(|c| c.is_ascii_alphanumeric() || b"-_.".contains(&c))
                {
                    return Err(EngineError::InvalidParameter(format!(
                        "invalid bridge name {b:?}"
                    )));
                }
                b.clone()
            }
            None => format!("br-{}", &id[..12]),
        };

        let _g = self.lock.lock().await;
        let existing = self.all().await?;
        if existing.iter().any(|n| n.name == req.name) {
            return Err(EngineError::Conflict(format!(
                "network with name {} already exists",
                req.name
            )));
        }
        if existing.iter().any(|n| n.config.bridge == bridge) {
            return Err(EngineError::Conflict(format!(
                "bridge name {bridge} is already in use by another network"
            )));
        }
        let used: Vec<_> = existing
            .iter()
            .filter_map(|n| Some(n.pool()?.subnet))
            .collect();
        let pool = match explicit {
            Some(p) => {
                if used.iter().any(|u| u.overlaps(&p.subnet)) {
                    return Err(EngineError::Forbidden(
                        "invalid pool request: Pool overlaps with other one on this address space"
                            .into(),
                    ));
                }
                p
            }
            None => {
                let mut avoid = used;
                avoid.extend(blocking(netlink::host_routes).await?);
                let subnet = ipam::pick_subnet(&self.settings.pools, &avoid).ok_or_else(|| {
                    EngineError::InvalidParameter(
                        "all predefined address pools have been fully subnetted".into(),
                    )
                })?;
                Pool::on(subnet)
            }
        };
        let mut options = req.options.clone();
        options.remove(OPT_BRIDGE_NAME);
        if req.options.contains_key(OPT_BRIDGE_NAME) {
            options.insert(OPT_BRIDGE_NAME.into(), bridge.clone());
        }
        let net = Network {
            id,
            name: req.name.clone(),
            driver: "bridge".into(),
            created_at: crate::store::images::now_nanos(),
            config: NetConfig {
                bridge,
                subnet: pool.subnet.to_string(),
                gateway: pool.gateway.to_string(),
                ip_range: pool.range.map(|r| r.to_string()).unwrap_or_default(),
                internal: req.internal,
                attachable: req.attachable,
                options,
                labels: req.labels,
                ipam_options: req.ipam_options,
            },
        };
        // Row first: a crash before the bridge exists is repaired at start.
        let row = net.to_row();
        self.store
            .call(move |conn| rows::insert(conn, &row))
            .await?;
        if let Err(e) = self.wire_network(&net).await {
            let (bridge, id) = (net.config.bridge.clone(), net.id.clone());
            let _ = blocking(move || netlink::delete_link(&bridge)).await;
            let _ = self.store.call(move |conn| rows::delete(conn, &id)).await;
            let _ = self.reload_rules().await;
            return Err(e);
        }
        self.emit(&net, "create", None);
        Ok(net)
    }

    /// The bridge device and the rules of a bridge network.
    pub(super) async fn wire_network(&self, net: &Network) -> EngineResult<()> {
        if let Some(pool) = net.pool() {
            let bridge = net.config.bridge.clone();
            blocking(move || netlink::ensure_bridge(&bridge, pool.gateway, pool.subnet.prefix()))
                .await?;
        }
        self.reload_rules().await
    }

    /// `DELETE /networks/{id}`.
    pub async fn remove(&self, name: &str) -> EngineResult<()> {
        let net = self.get(name).await?;
        if net.is_predefined() {
            return Err(EngineError::Forbidden(format!(
                "{} is a pre-defined network and cannot be removed",
                net.name
            )));
        }
        let _g = self.lock.lock().await;
        self.remove_locked(&net).await
    }

    async fn remove_locked(&self, net: &Network) -> EngineResult<()> {
        let id = net.id.clone();
        let active = self
            .store
            .call(move |conn| rows::leases_on(conn, &id))
            .await?;
        if !active.is_empty() {
            return Err(EngineError::Forbidden(format!(
                "error while removing network: network {} id {} has active endpoints",
                net.name, net.id
            )));
        }
        // Device first: a crash before the row goes recreates it at start.
        let bridge = net.config.bridge.clone();
        if !bridge.is_empty() {
            blocking(move || netlink::delete_link(&bridge)).await?;
        }
        let id = net.id.clone();
        self.store.call(move |conn| rows::delete(conn, &id)).await?;
        self.reload_rules().await?;
        self.emit(net, "destroy", None);
        Ok(())
    }

    /// `GET /networks` with dockerd's filters.
    pub async fn list(&self, f: &Filters) -> EngineResult<Vec<Network>> {
        f.accept_only(&["name", "id", "label", "driver", "type", "dangling", "scope"])?;
        for t in f.get("type") {
            if t != "custom" && t != "builtin" {
                return Err(EngineError::InvalidParameter(format!(
                    "invalid filter: 'type'='{t}'"
                )));
            }
        }
        let dangling = f.bool_value("dangling")?;
        let in_use = self.networks_in_use().await?;
        Ok(self
            .all()
            .await?
            .into_iter()
            .filter(|n| {
                f.any_or_absent("name", |v| n.name.contains(v))
                    && f.any_or_absent("id", |v| n.id.starts_with(v))
                    && f.any_or_absent("driver", |v| n.driver == v)
                    && f.any_or_absent("scope", |v| v == "local")
                    && f.any_or_absent("type", |v| (v == "builtin") == n.is_predefined())
                    && f.labels_match("label", &n.config.labels)
                    && dangling.is_none_or(|d| d == (!n.is_predefined() && !in_use.contains(&n.id)))
            })
            .collect())
    }

    /// Networks with a container attached (running or not).
    async fn networks_in_use(&self) -> EngineResult<HashSet<String>> {
        self.store
            .call(|conn| {
                let mut s = HashSet::new();
                for n in rows::list(conn)? {
                    if !rows::endpoints_on(conn, &n.id)?.is_empty() {
                        s.insert(n.id);
                    }
                }
                Ok(s)
            })
            .await
    }

    /// `POST /networks/prune`: user-defined networks nobody is attached to.
    pub async fn prune(&self, f: &Filters) -> EngineResult<Vec<String>> {
        f.accept_only(&["label", "label!", "until"])?;
        let until = match f.get("until").first() {
            Some(u) => Some(crate::image::remove::parse_until(u)?),
            None => None,
        };
        let in_use = self.networks_in_use().await?;
        let mut removed = vec![];
        let _g = self.lock.lock().await;
        for n in self.all().await? {
            if n.is_predefined() || in_use.contains(&n.id) {
                continue;
            }
            if !f.labels_match("label", &n.config.labels) {
                continue;
            }
            let labels = &n.config.labels;
            let excluded = f.get("label!").iter().any(|l| match l.split_once('=') {
                Some((k, v)) => labels.get(k).is_some_and(|x| x == v),
                None => labels.contains_key(l.as_str()),
            });
            if excluded || until.is_some_and(|u| n.created_at / 1_000_000_000 >= u) {
                continue;
            }
            match self.remove_locked(&n).await {
                Ok(()) => removed.push(n.name.clone()),
                Err(e) => tracing::warn!(network = %n.name, error = %e, "prune: cannot remove"),
            }
        }
        if !removed.is_empty() {
            let mut attrs = BTreeMap::new();
            attrs.insert("reclaimed".to_string(), "0".to_string());
            self.events
                .publish(crate::events::Event::new("network", "prune", "", attrs));
        }
        Ok(removed)
    }

    /// The running containers on a network (inspect's `Containers`).
    pub async fn active_endpoints(&self, net: &Network) -> EngineResult<Vec<ActiveEndpoint>> {
        let id = net.id.clone();
        let prefix = net.pool().map(|p| p.subnet.prefix()).unwrap_or(0);
        let leases = self
            .store
            .call(move |conn| rows::leases_on(conn, &id))
            .await?;
        Ok(leases
            .into_iter()
            .map(|lease| ActiveEndpoint { lease, prefix })
            .collect())
    }
}
