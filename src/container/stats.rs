//! `docker stats`: usage read from the container's cgroup, plus the
//! host-wide figures dockerd puts beside it.

use super::ContainerService;
use crate::error::{EngineError, EngineResult};
use crate::runtime::cgroups::{self, stats, CgroupStats};

/// One reading.
#[derive(Debug, Clone, Default)]
pub struct StatsSample {
    /// RFC 3339 time of the reading.
    pub read: String,
    pub cgroup: CgroupStats,
    /// The host's CPU time (ns), for the CPU percentage.
    pub system_cpu_usage: Option<u64>,
    pub online_cpus: u32,
}

impl ContainerService {
    /// A reading of a running container; `None` when it does not run.
    pub async fn stats_sample(&self, id: &str) -> EngineResult<Option<StatsSample>> {
        let c = self.get(id).await?;
        if !c.state.running() {
            return Ok(None);
        }
        let root = self.cgroup_root.clone();
        let path = Self::cgroup_path(c.id());
        let sample = tokio::task::spawn_blocking(move || {
            let cg = cgroups::manager_for(&root, &path)?;
            let cgroup = cg.stats()?;
            let online = cgroup.cpu.percpu_usage.len() as u32;
            Ok::<_, cgroups::CgroupError>(StatsSample {
                read: crate::runtime::state::now_rfc3339(),
                system_cpu_usage: stats::read_system_cpu_usage(),
                online_cpus: if online > 0 {
                    online
                } else {
                    std::thread::available_parallelism()
                        .map(|n| n.get() as u32)
                        .unwrap_or(1)
                },
                cgroup,
            })
        })
        .await
        .map_err(EngineError::internal)?;
        match sample {
            Ok(s) => Ok(Some(s)),
            // Exited meanwhile: the cgroup is gone.
            Err(cgroups::CgroupError::NotFound(_)) => Ok(None),
            Err(e) => Err(EngineError::Internal(e.to_string())),
        }
    }
}
