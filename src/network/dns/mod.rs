//! Name resolution between containers on user-defined networks: an
//! embedded DNS server per container at 127.0.0.11 inside its namespace
//! ([`server`]), answering for the names on that container's networks
//! ([`lookup`]) and forwarding the rest upstream. Started once the
//! container's endpoints are wired, stopped before its namespace goes, and
//! started again for running containers when the daemon starts.

pub mod lookup;
pub mod server;

use std::net::{IpAddr, SocketAddr};

use super::NetworkService;
use crate::error::{EngineError, EngineResult};
use crate::store::networks as rows;

impl NetworkService {
    /// Starts the DNS server of a running container on at least one
    /// user-defined network (a no-op if it runs already or the container
    /// is on none). `upstream`: the servers to forward to (the daemon's
    /// when empty); `search`: the container's search domains.
    pub async fn start_resolver(
        &self,
        container_id: &str,
        upstream: &[String],
        search: &[String],
    ) -> EngineResult<bool> {
        let cid = container_id.to_string();
        let names = self.store.call(|conn| rows::names(conn)).await?;
        let on_user_network = names
            .iter()
            .any(|n| n.container_id == cid && n.network_name != "bridge");
        if !on_user_network || self.lock_resolvers().contains_key(container_id) {
            return Ok(on_user_network);
        }
        let mut servers: Vec<SocketAddr> = upstream
            .iter()
            .filter_map(|s| s.parse::<IpAddr>().ok())
            .map(|ip| SocketAddr::new(ip, 53))
            .collect();
        if servers.is_empty() {
            servers = self.settings.dns_upstream.clone();
        }
        let netns = self.netns_path(container_id);
        let sockets = tokio::task::spawn_blocking(move || server::bind_in(&netns))
            .await
            .map_err(EngineError::internal)?
            .map_err(|e| EngineError::Internal(format!("embedded DNS server: {e}")))?;
        let ctx = server::Context {
            store: self.store.clone(),
            container_id: cid.clone(),
            upstream: servers,
            search: search.to_vec(),
        };
        let tasks = server::spawn(sockets, ctx)
            .map_err(|e| EngineError::Internal(format!("embedded DNS server: {e}")))?;
        if let Some(old) = self.lock_resolvers().insert(cid, tasks) {
            old.iter().for_each(|t| t.abort());
        }
        Ok(true)
    }

    /// Stops a container's DNS server (its sockets hold the namespace).
    pub fn stop_resolver(&self, container_id: &str) {
        if let Some(tasks) = self.lock_resolvers().remove(container_id) {
            tasks.iter().for_each(|t| t.abort());
        }
    }

    fn lock_resolvers(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, Vec<tokio::task::AbortHandle>>>
    {
        self.resolvers.lock().unwrap_or_else(|p| p.into_inner())
    }
}
