//! `docker pause` / `docker unpause`: the cgroup freezer.

use super::{Container, ContainerService};
use crate::error::{EngineError, EngineResult};
use crate::runtime::cgroups;

impl ContainerService {
    pub async fn pause(&self, name: &str) -> EngineResult<()> {
        let c = self.get(name).await?;
        if c.state.restarting && !c.state.running() {
            return Err(c.restarting());
        }
        if !c.state.running() {
            return Err(c.not_running());
        }
        if c.state.paused {
            return Err(EngineError::Conflict(format!(
                "Container {} is already paused",
                c.id()
            )));
        }
        self.freezer(&c, true).await?;
        self.update_state(c.id(), |st| st.paused = true).await?;
        self.emit(&c, "pause", &[]);
        Ok(())
    }

    pub async fn unpause(&self, name: &str) -> EngineResult<()> {
        let c = self.get(name).await?;
        if !c.state.running() || !c.state.paused {
            return Err(EngineError::Conflict(format!(
                "Container {} is not paused",
                c.id()
            )));
        }
        self.thaw(&c).await?;
        self.emit(&c, "unpause", &[]);
        Ok(())
    }

    /// Thaws a paused container (also before it is stopped or killed, so
    /// that it can act on the signal).
    pub(super) async fn thaw(&self, c: &Container) -> EngineResult<()> {
        self.freezer(c, false).await?;
        self.update_state(c.id(), |st| st.paused = false).await?;
        Ok(())
    }

    async fn freezer(&self, c: &Container, freeze: bool) -> EngineResult<()> {
        let root = self.cgroup_root.clone();
        let path = Self::cgroup_path(c.id());
        tokio::task::spawn_blocking(move || {
            let cg = cgroups::manager_for(&root, &path)?;
            if freeze {
                cg.freeze()
            } else {
                cg.thaw()
            }
        })
        .await
        .map_err(EngineError::internal)?
        .map_err(|e| EngineError::Internal(e.to_string()))
    }
}
