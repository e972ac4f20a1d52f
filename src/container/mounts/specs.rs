//! At start: a container's stored mounts as the runtime's [`MountSpec`]s.

use std::path::PathBuf;

use super::MountType;
use crate::container::{Container, ContainerService};
use crate::error::{EngineError, EngineResult};
use crate::runtime::spec::{MountKind, MountSpec};
use crate::volume::{self, Backing};

/// Path depth, to mount parents before children (dockerd sorts the same).
fn depth(dest: &str) -> usize {
    dest.split('/').filter(|s| !s.is_empty()).count()
}

impl ContainerService {
    /// The runtime mounts of a container, parents first; makes missing
    /// bind sources of `Binds` and mounts tmpfs volumes on the host.
    pub(crate) async fn mount_specs(&self, c: &Container) -> EngineResult<Vec<MountSpec>> {
        let mut specs = vec![];
        for m in self.stored_mounts(c.id()).await? {
            let p = &m.point;
            let propagation = if p.propagation.is_empty() {
                "rprivate".to_string()
            } else {
                p.propagation.clone()
            };
            let source = match p.kind {
                MountType::Tmpfs => {
                    specs.push(MountSpec {
                        source: PathBuf::new(),
                        destination: p.destination.clone(),
                        kind: MountKind::Tmpfs,
                        options: m.tmpfs_options.clone(),
                        readonly: !p.rw,
                    });
                    continue;
                }
                MountType::Bind => {
                    let src = PathBuf::from(&p.source);
                    if m.create_source && !src.exists() {
                        std::fs::create_dir_all(&src)?;
                    }
                    src
                }
                MountType::Volume => {
                    let v = self.volumes.get(&p.name).await?;
                    match v.backing()? {
                        Backing::Dir => v.mountpoint.clone(),
                        Backing::Bind { device } => device,
                        Backing::Tmpfs { options } => {
                            let dir = v.mountpoint.clone();
                            tokio::task::spawn_blocking(move || {
                                volume::local::mount_tmpfs(&dir, &options)
                            })
                            .await
                            .map_err(EngineError::internal)?
                            .map_err(|e| {
                                EngineError::Internal(format!(
                                    "failed to mount local volume {}: {e}",
                                    v.name()
                                ))
                            })?;
                            v.mountpoint.clone()
                        }
                    }
                }
            };
            if !source.exists() {
                return Err(EngineError::InvalidParameter(format!(
                    "invalid mount config for type \"bind\": bind source path does not exist: {}",
                    source.display()
                )));
            }
            specs.push(MountSpec {
                source,
                destination: p.destination.clone(),
                kind: MountKind::Bind,
                options: vec![propagation],
                readonly: !p.rw,
            });
        }
        specs.sort_by_key(|s| depth(&s.destination));
        Ok(specs)
    }
}
