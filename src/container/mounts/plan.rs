//! At create: the volumes a container's mounts need, made now and filled
//! from the image on first use, and the mounts to store.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::{Map, Value};

use super::{parse, MountPlan, MountPoint, MountType, StoredMount, Wanted};
use crate::container::ContainerService;
use crate::error::{EngineError, EngineResult};
use crate::volume::{self, Backing, CreateOptions, LOCAL_DRIVER};

impl ContainerService {
    /// Resolves a create request's mounts: volumes-from, then binds,
    /// mounts and tmpfs (which win over volumes-from), then anonymous
    /// volumes where nothing else is mounted. Creates the volumes needed
    /// and fills new ones from the image (`layers`, top first). On error,
    /// volumes created here are removed again.
    pub(crate) async fn plan_mounts(
        &self,
        hc: &Map<String, Value>,
        config_volumes: &[String],
        layers: Vec<PathBuf>,
    ) -> EngineResult<MountPlan> {
        let req = parse(hc, config_volumes)?;
        let mut wanted: BTreeMap<String, Wanted> = BTreeMap::new();
        for (name, rw) in &req.volumes_from {
            let other = self.get(name).await?;
            for mut m in self.stored_mounts(other.id()).await? {
                if m.hidden {
                    continue;
                }
                m.point.rw &= rw;
                m.point.mode = String::new();
                m.create_source = false;
                wanted.insert(
                    m.point.destination.clone(),
                    Wanted {
                        mount: m,
                        ..Default::default()
                    },
                );
            }
        }
        for w in req.explicit {
            wanted.insert(w.mount.point.destination.clone(), w);
        }
        for d in req.anonymous {
            wanted.entry(d.clone()).or_insert_with(|| Wanted {
                mount: StoredMount {
                    point: MountPoint {
                        kind: MountType::Volume,
                        destination: d,
                        driver: LOCAL_DRIVER.into(),
                        rw: true,
                        ..Default::default()
                    },
                    ..Default::default()
                },
                copy: true,
                ..Default::default()
            });
        }
        let mut plan = MountPlan::default();
        let result = self.make_volumes(wanted, &layers, &mut plan).await;
        if let Err(e) = result {
            self.volumes.remove_if_unused(&plan.created).await;
            return Err(e);
        }
        Ok(plan)
    }

    async fn make_volumes(
        &self,
        wanted: BTreeMap<String, Wanted>,
        layers: &[PathBuf],
        plan: &mut MountPlan,
    ) -> EngineResult<()> {
        for (_, mut w) in wanted {
            let p = &mut w.mount.point;
            // Volumes from another container exist already.
            if p.kind == MountType::Volume && p.source.is_empty() {
                let (v, created) = self
                    .volumes
                    .create(CreateOptions {
                        name: p.name.clone(),
                        driver: LOCAL_DRIVER.into(),
                        labels: w.labels.clone(),
                        options: w.driver_opts.clone(),
                    })
                    .await?;
                if created {
                    plan.created.push(v.name().to_string());
                }
                p.name = v.name().to_string();
                p.source = v.mountpoint.display().to_string();
                if w.copy && v.backing()? == Backing::Dir {
                    let (layers, dest, dir) =
                        (layers.to_vec(), p.destination.clone(), v.mountpoint.clone());
                    tokio::task::spawn_blocking(move || {
                        volume::copy::copy_image_path(&layers, &dest, &dir)
                    })
                    .await
                    .map_err(EngineError::internal)?
                    .map_err(|e| {
                        EngineError::Internal(format!(
                            "copying the image's content into volume {}: {e}",
                            v.name()
                        ))
                    })?;
                }
            }
            plan.mounts.push(w.mount);
        }
        Ok(())
    }
}
