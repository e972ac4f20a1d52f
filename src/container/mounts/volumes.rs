//! A container's use of volumes: `mount`/`unmount` events, tmpfs volumes
//! unmounted when no running container needs them, anonymous volumes
//! removed with it.

use super::MountType;
use crate::container::{Container, ContainerService};
use crate::error::EngineResult;
use crate::volume::{self, Backing};

impl ContainerService {
    /// Volume `mount` events once a container started.
    pub(crate) async fn emit_volume_mounts(&self, c: &Container) {
        for m in self.stored_mounts(c.id()).await.unwrap_or_default() {
            let p = &m.point;
            if p.kind == MountType::Volume {
                self.volumes.emit_use(
                    "mount",
                    &p.name,
                    &[
                        ("container", c.id().to_string()),
                        ("destination", p.destination.clone()),
                        ("driver", p.driver.clone()),
                        ("propagation", p.propagation.clone()),
                        ("read/write", p.rw.to_string()),
                    ],
                );
            }
        }
    }

    /// After a container stopped (or failed to start): tmpfs volumes that
    /// no running container uses any more are unmounted; `events` sends
    /// the volume `unmount` events of a container that ran.
    pub(crate) async fn release_volumes(&self, c: &Container, events: bool) {
        for m in self.stored_mounts(c.id()).await.unwrap_or_default() {
            let p = &m.point;
            if p.kind != MountType::Volume {
                continue;
            }
            if events {
                self.volumes.emit_use(
                    "unmount",
                    &p.name,
                    &[
                        ("container", c.id().to_string()),
                        ("driver", p.driver.clone()),
                    ],
                );
            }
            let Ok(v) = self.volumes.get(&p.name).await else {
                continue;
            };
            if !matches!(v.backing(), Ok(Backing::Tmpfs { .. })) {
                continue;
            }
            let mut still_used = false;
            for id in self.volumes.users(v.name()).await.unwrap_or_default() {
                if id != c.id() && self.get(&id).await.is_ok_and(|o| o.state.running()) {
                    still_used = true;
                }
            }
            if !still_used {
                let dir = v.mountpoint.clone();
                let _ =
                    tokio::task::spawn_blocking(move || volume::local::unmount_tmpfs(&dir)).await;
            }
        }
    }

    /// Names of the anonymous volumes a container mounts (`docker rm -v`).
    pub async fn anonymous_volumes(&self, id: &str) -> EngineResult<Vec<String>> {
        let mut out = vec![];
        for m in self.stored_mounts(id).await? {
            if m.point.kind != MountType::Volume {
                continue;
            }
            if let Ok(v) = self.volumes.get(&m.point.name).await {
                if v.is_anonymous() {
                    out.push(m.point.name.clone());
                }
            }
        }
        Ok(out)
    }

    /// Removes the given anonymous volumes once their container is gone;
    /// one still used by another container stays (dockerd logs it too).
    /// For `docker rm -v` and `--rm`: take the names with
    /// [`Self::anonymous_volumes`] before removing the container.
    pub async fn remove_anonymous_volumes(&self, names: &[String]) {
        self.volumes.remove_if_unused(names).await;
    }
}
