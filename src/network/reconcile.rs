//! Start-up: the predefined networks exist (the default bridge on the
//! configured device and subnet), every bridge network has its device,
//! nothing is left of containers that no longer run (their leases, port
//! leases, veths and pinned namespaces go, as do veths on our bridges
//! that no lease names), the ports of those that kept running are served
//! again, and the iptables chains then match the networks and ports.

use std::collections::HashSet;

use super::ipam::{self, Pool};
use super::model::NetConfig;
use super::{blocking, netlink, netns, new_id, Network, NetworkService};
use crate::error::EngineResult;
use crate::store::networks as rows;

/// What start-up found and fixed.
#[derive(Debug, Default)]
pub struct ReconcileReport {
    pub released_leases: usize,
    pub removed_netns: usize,
    pub removed_veths: usize,
}

impl NetworkService {
    /// `running`: containers still running after re-attachment.
    pub async fn reconcile(&self, running: &HashSet<String>) -> EngineResult<ReconcileReport> {
        let _g = self.lock.lock().await;
        self.ensure_predefined().await?;
        for net in self.all().await? {
            if let Err(e) = self.wire_bridge(&net).await {
                tracing::warn!(network = %net.name, error = %e, "cannot set up the bridge");
            }
        }

        let mut report = ReconcileReport::default();
        let leases = self.store.call(|conn| rows::all_leases(conn)).await?;
        let mut kept = HashSet::new();
        for l in leases {
            if running.contains(&l.container_id) {
                kept.insert(l.veth.clone());
            } else {
                self.release(&l, false).await;
                report.released_leases += 1;
            }
        }
        self.republish(running).await?;
        // Rendered from what is left: exactly the rules of the networks
        // and of the ports still published, whatever a crash left behind.
        if let Err(e) = self.reload_rules().await {
            // Containers still get addresses; only NAT and isolation lack.
            tracing::warn!(error = %e, "cannot load the iptables rules");
        }
        let dir = self.netns_dir.clone();
        let running2 = running.clone();
        report.removed_netns = tokio::task::spawn_blocking(move || {
            let mut n = 0;
            if let Ok(rd) = std::fs::read_dir(&dir) {
                for e in rd.flatten() {
                    let id = e.file_name().to_string_lossy().into_owned();
                    if !running2.contains(&id) {
                        netns::remove(&e.path());
                        n += 1;
                    }
                }
            }
            n
        })
        .await
        .unwrap_or(0);
        let bridges: HashSet<String> = self
            .all()
            .await?
            .into_iter()
            .map(|n| n.config.bridge)
            .filter(|b| !b.is_empty())
            .collect();
        for link in blocking(netlink::host_links).await? {
            let ours = link.master.as_ref().is_some_and(|m| bridges.contains(m));
            if ours && !kept.contains(&link.name) {
                let name = link.name.clone();
                if blocking(move || netlink::delete_link(&name)).await.is_ok() {
                    report.removed_veths += 1;
                }
            }
        }
        Ok(report)
    }

    async fn wire_bridge(&self, net: &Network) -> EngineResult<()> {
        if let Some(pool) = net.pool() {
            let bridge = net.config.bridge.clone();
            blocking(move || netlink::ensure_bridge(&bridge, pool.gateway, pool.subnet.prefix()))
                .await?;
        }
        Ok(())
    }

    /// `bridge`, `host` and `none`; the default bridge follows `bridge`
    /// and `bip` when no container uses it.
    async fn ensure_predefined(&self) -> EngineResult<()> {
        let existing = self.all().await?;
        for (name, driver) in [("bridge", "bridge"), ("host", "host"), ("none", "null")] {
            let current = existing.iter().find(|n| n.name == name);
            if driver != "bridge" {
                if current.is_none() {
                    self.insert_predefined(name, driver, NetConfig::default())
                        .await?;
                }
                continue;
            }
            let pool = match current.and_then(|n| n.pool()) {
                Some(p) if self.bip_matches(&p) => p,
                _ => self.default_bridge_pool(&existing).await?,
            };
            let mut config = NetConfig {
                bridge: self.settings.bridge.clone(),
                subnet: pool.subnet.to_string(),
                gateway: pool.gateway.to_string(),
                ..Default::default()
            };
            for (k, v) in [
                ("com.docker.network.bridge.default_bridge", "true"),
                ("com.docker.network.bridge.enable_icc", "true"),
                ("com.docker.network.bridge.enable_ip_masquerade", "true"),
                ("com.docker.network.bridge.host_binding_ipv4", "0.0.0.0"),
                ("com.docker.network.bridge.name", &self.settings.bridge),
                ("com.docker.network.driver.mtu", "1500"),
            ] {
                config.options.insert(k.into(), v.into());
            }
            match current {
                None => self.insert_predefined(name, driver, config).await?,
                Some(n) if n.config != config => {
                    let id = n.id.clone();
                    let busy = !self
                        .store
                        .call(move |conn| rows::leases_on(conn, &id))
                        .await?
                        .is_empty();
                    if busy {
                        tracing::warn!("default bridge settings changed while containers use it; keeping the old ones");
                        continue;
                    }
                    if n.config.bridge != config.bridge {
                        let old = n.config.bridge.clone();
                        let _ = blocking(move || netlink::delete_link(&old)).await;
                    }
                    let (id, text) = (n.id.clone(), serde_json::to_string(&config)?);
                    self.store
                        .call(move |conn| rows::set_config(conn, &id, &text))
                        .await?;
                }
                Some(_) => {}
            }
        }
        Ok(())
    }

    fn bip_matches(&self, p: &Pool) -> bool {
        match self.settings.bip {
            Some((gw, subnet)) => p.subnet == subnet && p.gateway == gw,
            None => true,
        }
    }

    /// `bip` when set, else the first pool subnet free of other networks
    /// and of the host's routes.
    async fn default_bridge_pool(&self, existing: &[Network]) -> EngineResult<Pool> {
        if let Some((gateway, subnet)) = self.settings.bip {
            return Ok(Pool {
                subnet,
                gateway,
                range: None,
            });
        }
        let mut avoid: Vec<_> = existing
            .iter()
            .filter(|n| n.name != "bridge")
            .filter_map(|n| Some(n.pool()?.subnet))
            .collect();
        let own = existing
            .iter()
            .find(|n| n.name == "bridge")
            .and_then(|n| n.pool());
        let routes = blocking(netlink::host_routes).await?;
        // Our own bridge's route is not a reason to move it.
        avoid.extend(
            routes
                .into_iter()
                .filter(|r| own.as_ref().is_none_or(|p| p.subnet != *r)),
        );
        if let Some(p) = own.filter(|p| !avoid.iter().any(|a| a.overlaps(&p.subnet))) {
            return Ok(p);
        }
        let subnet = ipam::pick_subnet(&self.settings.pools, &avoid).ok_or_else(|| {
            crate::error::EngineError::Internal(
                "no free subnet in the default address pools for the default bridge".into(),
            )
        })?;
        Ok(Pool::on(subnet))
    }

    async fn insert_predefined(
        &self,
        name: &str,
        driver: &str,
        config: NetConfig,
    ) -> EngineResult<()> {
        let net = Network {
            id: new_id(),
            name: name.into(),
            driver: driver.into(),
            created_at: crate::store::images::now_nanos(),
            config,
        };
        let row = net.to_row();
        self.store.call(move |conn| rows::insert(conn, &row)).await
    }
}
