//! The network engine: networks and their IPAM in SQLite, the bridge
//! driver (rtnetlink), iptables chains of our own, and the container
//! endpoints wired at start and undone at exit. Nothing here knows HTTP.
//!
//! - [`subnet`] and [`ipam`]: address arithmetic, subnet choice and
//!   address allocation (pure);
//! - [`netlink`], [`netns`], [`iptables`]: the kernel side;
//! - [`ports`], [`proxy`], [`publish`]: published ports as asked, their
//!   userland proxy, and their lifecycle with a container (leases in
//!   SQLite, DNAT rules in [`iptables`]);
//! - [`model`]: the `Network` type and its JSON config;
//! - [`manage`]: create, remove, prune, list (the `/networks` verbs);
//! - [`endpoint`]: a container's attachments: planned at create, wired
//!   at start into a pinned namespace handed to the runtime, undone at
//!   exit; connect/disconnect;
//! - [`reconcile`]: start-up: predefined networks, bridges, rules, and
//!   nothing left of containers that are gone.
//!
//! Every change goes through one async mutex: allocation reads the leases
//! and writes its own in the same critical section.

pub mod dns;
pub mod endpoint;
pub mod ipam;
pub mod iptables;
pub mod manage;
pub mod model;
pub mod netlink;
pub mod netns;
pub mod ports;
pub mod proxy;
pub mod publish;
pub mod reconcile;
pub mod subnet;

use std::path::{Path, PathBuf};

use crate::config::DaemonConfig;
use crate::error::{EngineError, EngineResult};
use crate::events::{Event, EventBus};
use crate::store::networks as rows;
use crate::store::Store;
pub use model::{NetConfig, Network};
use subnet::Subnet;

/// The daemon settings the engine needs.
#[derive(Clone, Debug)]
pub struct NetSettings {
    /// Device of the default `bridge` network.
    pub bridge: String,
    /// `bip`: the default bridge's gateway address and prefix.
    pub bip: Option<(std::net::Ipv4Addr, Subnet)>,
    /// `default-address-pools` as (base, size).
    pub pools: Vec<(Subnet, u8)>,
    pub chain_prefix: String,
    /// Where embedded DNS servers forward what is not ours: the daemon's
    /// `dns`, else the host's nameservers.
    pub dns_upstream: Vec<std::net::SocketAddr>,
}

impl NetSettings {
    pub fn from_config(c: &DaemonConfig) -> NetSettings {
        NetSettings {
            bridge: c.bridge.clone(),
            bip: c.bip.as_deref().and_then(Subnet::parse),
            pools: c
                .default_address_pools
                .iter()
                .filter_map(|p| Some((Subnet::parse(&p.base)?.1, p.size)))
                .collect(),
            chain_prefix: c.iptables_chain_prefix.clone(),
            dns_upstream: dns_upstream(&c.dns),
        }
    }
}

pub struct NetworkService {
    store: Store,
    events: EventBus,
    settings: NetSettings,
    /// Pinned container namespaces: `<exec-root>/netns/<container id>`.
    netns_dir: PathBuf,
    lock: tokio::sync::Mutex<()>,
    /// The userland proxies of each container's published ports.
    proxies: std::sync::Mutex<std::collections::HashMap<String, publish::Proxies>>,
    /// The embedded DNS servers' tasks, by container.
    resolvers: std::sync::Mutex<std::collections::HashMap<String, Vec<tokio::task::AbortHandle>>>,
}

impl NetworkService {
    pub fn new(store: Store, events: EventBus, settings: NetSettings, exec_root: &Path) -> Self {
        NetworkService {
            store,
            events,
            settings,
            netns_dir: exec_root.join("netns"),
            lock: tokio::sync::Mutex::new(()),
            proxies: Default::default(),
            resolvers: Default::default(),
        }
    }

    pub fn settings(&self) -> &NetSettings {
        &self.settings
    }

    /// The pinned namespace of a running container.
    pub fn netns_path(&self, container_id: &str) -> PathBuf {
        netns::path(&self.netns_dir, container_id)
    }

    /// Finds a network like dockerd: full ID, name, then a unique ID prefix.
    pub async fn get(&self, name: &str) -> EngineResult<Network> {
        let n = name.to_string();
        let found = self
            .store
            .call(move |conn| {
                if n.is_empty() {
                    return Ok(Err(false));
                }
                if let Some(r) = rows::get(conn, &n)? {
                    return Ok(Ok(r));
                }
                if let Some(r) = rows::by_name(conn, &n)? {
                    return Ok(Ok(r));
                }
                if n.bytes().all(|b| b.is_ascii_hexdigit()) {
                    let mut m = rows::with_id_prefix(conn, &n.to_ascii_lowercase())?;
                    if m.len() > 1 {
                        return Ok(Err(true));
                    }
                    if let Some(r) = m.pop() {
                        return Ok(Ok(r));
                    }
                }
                Ok(Err(false))
            })
            .await?;
        match found {
            Ok(row) => Ok(Network::from_row(row)),
            Err(true) => Err(EngineError::NotFound(format!(
                "network {name} is ambiguous"
            ))),
            Err(false) => Err(not_found(name)),
        }
    }

    pub async fn all(&self) -> EngineResult<Vec<Network>> {
        let rs = self.store.call(|conn| rows::list(conn)).await?;
        Ok(rs.into_iter().map(Network::from_row).collect())
    }

    fn emit(&self, n: &Network, action: &str, container: Option<&str>) {
        let mut attrs = std::collections::BTreeMap::new();
        attrs.insert("name".to_string(), n.name.clone());
        attrs.insert("type".to_string(), n.driver.clone());
        if let Some(c) = container {
            attrs.insert("container".to_string(), c.to_string());
        }
        self.events
            .publish(Event::new("network", action, &n.id, attrs));
    }

    /// The bridge networks and published ports as the iptables rules see
    /// them, loaded.
    async fn reload_rules(&self) -> EngineResult<()> {
        let nets = self.all().await?;
        let rules: Vec<iptables::BridgeRules> = nets
            .iter()
            .filter_map(|n| {
                Some(iptables::BridgeRules {
                    bridge: n.config.bridge.clone(),
                    subnet: n.pool()?.subnet,
                    internal: n.config.internal,
                })
            })
            .collect();
        let ports = self.port_rules(&nets).await?;
        let prefix = self.settings.chain_prefix.clone();
        tokio::task::spawn_blocking(move || iptables::apply(&prefix, &rules, &ports))
            .await
            .map_err(EngineError::internal)?
            .map_err(|e| EngineError::Internal(format!("iptables: {e}")))
    }
}

/// `dns` servers, else the nameservers of the host's /etc/resolv.conf, on
/// port 53.
fn dns_upstream(dns: &[String]) -> Vec<std::net::SocketAddr> {
    let host;
    let servers: Vec<&str> = if dns.is_empty() {
        host = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        host.lines()
            .filter_map(|l| l.strip_prefix("nameserver"))
            .map(str::trim)
            .collect()
    } else {
        dns.iter().map(String::as_str).collect()
    };
    servers
        .iter()
        .filter_map(|s| s.parse::<std::net::IpAddr>().ok())
        .map(|ip| std::net::SocketAddr::new(ip, 53))
        .collect()
}

pub fn not_found(name: &str) -> EngineError {
    EngineError::NotFound(format!("network {name} not found"))
}

/// A random 64-hex ID.
pub(crate) fn new_id() -> String {
    use rand::RngCore;
    let mut b = [0u8; 32];
    rand::rng().fill_bytes(&mut b);
    hex::encode(b)
}

/// Runs a blocking kernel call off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, netlink::NetlinkError> + Send + 'static,
) -> EngineResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(EngineError::internal)?
        .map_err(EngineError::internal)
}
