//! A running container's published ports: bound (all or none) after its
//! endpoints are wired, recorded, served by proxies in the daemon, and
//! closed with its endpoints; re-bound at start-up for containers that
//! kept running.

use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddr};

use super::ports::{self, PortMapping};
use super::NetworkService;
use crate::error::{EngineError, EngineResult};
use crate::store::networks as rows;

impl NetworkService {
    /// Binds and serves `maps` for a container wired by [`Self::setup`];
    /// `endpoint` names it in errors.
    pub async fn publish(
        &self,
        container_id: &str,
        endpoint: &str,
        maps: &[PortMapping],
    ) -> EngineResult<Vec<PortMapping>> {
        if maps.is_empty() {
            return Ok(vec![]);
        }
        let _g = self.lock.lock().await;
        let target = self.first_address(container_id).await?;
        let bound = ports::bind_all(endpoint, maps).await?;
        let leases: Vec<rows::PortLease> = bound
            .iter()
            .map(|(m, _)| {
                (
                    container_id.to_string(),
                    m.container_port,
                    m.host_ip.to_string(),
                    m.host_port,
                )
            })
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
        let mut out = vec![];
        let mut handles = vec![];
        for (m, listener) in bound {
            let to = SocketAddr::new(target.into(), m.container_port);
            handles.push(ports::spawn_proxy(listener, to));
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
        let leases = self
            .store
            .call(move |conn| rows::leases_of(conn, &cid))
            .await?;
        let mut leases = leases;
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
        Ok(ls
            .into_iter()
            .map(|(_, cport, ip, hport)| PortMapping {
                container_port: cport,
                host_ip: ip.parse().unwrap_or(Ipv4Addr::UNSPECIFIED),
                host_port: hport,
            })
            .collect())
    }

    /// Stops the proxies and forgets the ports (lock held by the caller).
    pub(super) async fn unpublish_locked(&self, container_id: &str) {
        if let Some(hs) = self.lock_proxies().remove(container_id) {
            for h in hs {
                h.abort();
            }
        }
        let cid = container_id.to_string();
        let _ = self
            .store
            .call(move |conn| rows::delete_ports(conn, &cid))
            .await;
    }

    /// Start-up: proxies again for containers that kept running (on the
    /// ports they had), nothing for the others.
    pub(super) async fn republish(&self, running: &HashSet<String>) -> EngineResult<()> {
        let all = self.store.call(|conn| rows::ports(conn, None)).await?;
        let mut by_container: std::collections::BTreeMap<String, Vec<PortMapping>> =
            Default::default();
        for (cid, cport, ip, hport) in all {
            by_container.entry(cid).or_default().push(PortMapping {
                container_port: cport,
                host_ip: ip.parse().unwrap_or(Ipv4Addr::UNSPECIFIED),
                host_port: hport,
            });
        }
        for (cid, maps) in by_container {
            if !running.contains(&cid) {
                self.unpublish_locked(&cid).await;
                continue;
            }
            let served = async {
                let target = self.first_address(&cid).await?;
                let bound = ports::bind_all(&cid, &maps).await?;
                let hs: Vec<_> = bound
                    .into_iter()
                    .map(|(m, l)| {
                        ports::spawn_proxy(l, SocketAddr::new(target.into(), m.container_port))
                    })
                    .collect();
                self.lock_proxies().insert(cid.clone(), hs);
                Ok::<_, EngineError>(())
            };
            if let Err(e) = served.await {
                tracing::warn!(container = %cid, error = %e, "cannot serve published ports again");
            }
        }
        Ok(())
    }

    fn lock_proxies(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, Vec<tokio::task::AbortHandle>>>
    {
        self.proxies.lock().unwrap_or_else(|p| p.into_inner())
    }
}
