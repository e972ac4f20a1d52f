//! A running container's published ports: bound (all or none) after its
//! endpoints are wired, recorded with the address they forward to, served
//! by the userland proxy and DNAT rules, and closed with its endpoints (or
//! with the endpoint they forward to); at start-up served again for
//! containers that kept running and forgotten for the others.

use std::collections::{BTreeMap, HashSet};
use std::net::{Ipv4Addr, SocketAddr};

use super::iptables::PortRule;
use super::ports::{PortMapping, PortRequest, Proto};
use super::proxy::{self, Listener};
use super::{Network, NetworkService};
use crate::error::{EngineError, EngineResult};
use crate::store::networks::{self as rows, PortLease};

/// The proxies serving one container's ports, by the address they
/// forward to.
pub(super) type Proxies = Vec<(Ipv4Addr, tokio::task::AbortHandle)>;

fn lease_of(container_id: &str, m: &PortMapping, target: Ipv4Addr) -> PortLease {
    PortLease {
        container_id: container_id.to_string(),
        container_port: m.container_port,
        proto: m.proto.as_str().to_string(),
        host_ip: m.host_ip.to_string(),
        host_port: m.host_port,
        target: target.to_string(),
    }
}

fn mapping_of(l: &PortLease) -> Option<(PortMapping, Ipv4Addr)> {
    Some((
        PortMapping {
            container_port: l.container_port,
            proto: Proto::parse(&l.proto)?,
            host_ip: l.host_ip.parse().ok()?,
            host_port: l.host_port,
        },
        l.target.parse().ok()?,
    ))
}

impl NetworkService {
    /// Binds and serves `reqs` for a container wired by [`Self::setup`];
    /// `endpoint` names it in errors. On failure nothing is left.
    pub async fn publish(
        &self,
        container_id: &str,
        endpoint: &str,
        reqs: &[PortRequest],
    ) -> EngineResult<Vec<PortMapping>> {
        if reqs.is_empty() {
            return Ok(vec![]);
        }
        let _g = self.lock.lock().await;
        let target = self.first_address(container_id).await?;
        let bound = proxy::bind_all(endpoint, reqs).await?;
        let leases: Vec<PortLease> = bound
            .iter()
            .map(|(m, _)| lease_of(container_id, m, target))
            .collect();
        self.store
            .call(move |conn| {
                let tx = conn.transaction()?;
                for l in &leases {
                    rows::insert_port(&tx, l)?;
                }
                tx.commit()?;
                Ok(())
            })
            .await?;
        if let Err(e) = self.reload_rules().await {
            // The listeners close as `bound` drops.
            self.forget_ports(container_id).await;
            return Err(e);
        }
        let mut out = vec![];
        let mut handles = vec![];
        for (m, listener) in bound {
            let to = SocketAddr::new(target.into(), m.container_port);
            handles.push((target, listener.serve(to)));
            out.push(m);
        }
        self.lock_proxies()
            .entry(container_id.to_string())
            .or_default()
            .extend(handles);
        Ok(out)
    }

    /// The address proxies forward to: the container's first lease.
    async fn first_address(&self, container_id: &str) -> EngineResult<Ipv4Addr> {
        let cid = container_id.to_string();
        let mut leases = self
            .store
            .call(move |conn| rows::leases_of(conn, &cid))
            .await?;
        leases.sort_by(|a, b| a.ifname.cmp(&b.ifname));
        leases
            .first()
            .and_then(|l| l.address.parse().ok())
            .ok_or_else(|| {
                EngineError::InvalidParameter(
                    "ports can only be published for containers on a bridge network".into(),
                )
            })
    }

    /// The published ports of a container (while it runs).
    pub async fn published(&self, container_id: &str) -> EngineResult<Vec<PortMapping>> {
        let cid = container_id.to_string();
        let ls = self
            .store
            .call(move |conn| rows::ports(conn, Some(&cid)))
            .await?;
        Ok(ls.iter().filter_map(mapping_of).map(|(m, _)| m).collect())
    }

    /// Deletes a container's port leases and reloads the rules (failures
    /// are logged: the caller is undoing something already).
    async fn forget_ports(&self, container_id: &str) {
        let cid = container_id.to_string();
        let _ = self
            .store
            .call(move |conn| rows::delete_ports(conn, &cid))
            .await;
        if let Err(e) = self.reload_rules().await {
            tracing::warn!(container = %container_id, error = %e, "cannot remove the port rules");
        }
    }

    /// Stops the proxies and forgets the ports (lock held by the caller).
    pub(super) async fn unpublish_locked(&self, container_id: &str) {
        let had_proxies = self.lock_proxies().remove(container_id);
        for (_, h) in had_proxies.iter().flatten() {
            h.abort();
        }
        let cid = container_id.to_string();
        let leases = self
            .store
            .call(move |conn| rows::ports(conn, Some(&cid)))
            .await
            .unwrap_or_default();
        if had_proxies.is_some() || !leases.is_empty() {
            self.forget_ports(container_id).await;
        }
    }

    /// Closes the ports that forward to `address`, an endpoint being
    /// disconnected (lock held by the caller).
    pub(super) async fn unpublish_to(&self, container_id: &str, address: &str) {
        let Ok(target) = address.parse::<Ipv4Addr>() else {
            return;
        };
        if let Some(hs) = self.lock_proxies().get_mut(container_id) {
            hs.retain(|(to, h)| {
                if *to == target {
                    h.abort();
                }
                *to != target
            });
        }
        let (cid, addr) = (container_id.to_string(), address.to_string());
        let gone = self
            .store
            .call(move |conn| rows::delete_ports_to(conn, &cid, &addr))
            .await
            .unwrap_or(0);
        if gone > 0 {
            if let Err(e) = self.reload_rules().await {
                tracing::warn!(container = %container_id, error = %e, "cannot remove the port rules");
            }
        }
    }

    /// Start-up: the proxies again for containers that kept running (on
    /// the ports they had), the leases of the others forgotten. The
    /// caller reloads the rules afterwards.
    pub(super) async fn republish(&self, running: &HashSet<String>) -> EngineResult<()> {
        let all = self.store.call(|conn| rows::ports(conn, None)).await?;
        let mut by_container: BTreeMap<String, Vec<PortLease>> = Default::default();
        for l in all {
            by_container
                .entry(l.container_id.clone())
                .or_default()
                .push(l);
        }
        for (cid, leases) in by_container {
            if !running.contains(&cid) {
                let c = cid.clone();
                self.store
                    .call(move |conn| rows::delete_ports(conn, &c))
                    .await?;
                continue;
            }
            let mut handles = vec![];
            for l in leases {
                match self.serve_again(&cid, &l).await {
                    Ok(h) => handles.push(h),
                    Err(e) => {
                        tracing::warn!(container = %cid, port = l.host_port, error = %e, "cannot serve a published port again");
                        self.store
                            .call(move |conn| rows::delete_port(conn, &l))
                            .await?;
                    }
                }
            }
            self.lock_proxies().insert(cid, handles);
        }
        Ok(())
    }

    /// Binds a recorded port again and serves it.
    async fn serve_again(
        &self,
        container_id: &str,
        l: &PortLease,
    ) -> EngineResult<(Ipv4Addr, tokio::task::AbortHandle)> {
        let (m, target) =
            mapping_of(l).ok_or_else(|| EngineError::Internal(format!("bad port lease: {l:?}")))?;
        let req = PortRequest {
            container_port: m.container_port,
            proto: m.proto,
            host_ip: m.host_ip,
            host_ports: (m.host_port, m.host_port),
        };
        let mut bound = proxy::bind_all(container_id, &[req]).await?;
        let (_, listener): (PortMapping, Listener) = bound
            .pop()
            .ok_or_else(|| EngineError::Internal("nothing bound".into()))?;
        let to = SocketAddr::new(target.into(), m.container_port);
        Ok((target, listener.serve(to)))
    }

    /// The DNAT and ACCEPT rules of every recorded port whose target is
    /// still a live address on one of `nets`.
    pub(super) async fn port_rules(&self, nets: &[Network]) -> EngineResult<Vec<PortRule>> {
        let (ports, leases) = self
            .store
            .call(|conn| Ok((rows::ports(conn, None)?, rows::all_leases(conn)?)))
            .await?;
        let mut out = vec![];
        for p in &ports {
            let Some((m, target)) = mapping_of(p) else {
                continue;
            };
            let bridge = leases
                .iter()
                .find(|l| l.container_id == p.container_id && l.address == p.target)
                .and_then(|l| nets.iter().find(|n| n.id == l.network_id))
                .map(|n| n.config.bridge.clone())
                .filter(|b| !b.is_empty());
            if let Some(bridge) = bridge {
                out.push(PortRule {
                    proto: m.proto,
                    host_ip: m.host_ip,
                    host_port: m.host_port,
                    container_ip: target,
                    container_port: m.container_port,
                    bridge,
                });
            }
        }
        Ok(out)
    }

    fn lock_proxies(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, Proxies>> {
        self.proxies.lock().unwrap_or_else(|p| p.into_inner())
    }
}
