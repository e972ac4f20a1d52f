//! `docker rm` and `docker container prune`.

use super::{Container, ContainerService};
use crate::disk_usage::dir_size;
use crate::error::{EngineError, EngineResult};
use crate::filters::Filters;
use crate::store::containers as rows;

pub struct PruneReport {
    pub deleted: Vec<String>,
    pub space_reclaimed: u64,
}

impl ContainerService {
    /// `DELETE /containers/{id}`; `force` kills a running container first,
    /// `volumes` (`-v`, and AutoRemove) removes its anonymous volumes too.
    pub async fn remove(&self, name: &str, force: bool, volumes: bool) -> EngineResult<()> {
        let c = self.get(name).await?;
        let lock = self.op_lock(c.id());
        let _g = lock.lock().await;
        let mut c = self.get(c.id()).await?;
        if c.state.restarting && !c.state.running() {
            if !force {
                return Err(EngineError::Conflict(format!(
                    "You cannot remove a restarting container {}. Stop the container before attempting removal or force remove",
                    c.id()
                )));
            }
            let id = c.id().to_string();
            self.cancel_restart(c, true).await?;
            c = self.get(&id).await?;
        }
        if c.state.running() {
            if !force {
                return Err(EngineError::Conflict(format!(
                    "You cannot remove a running container {}. Stop the container before attempting removal or force remove",
                    c.id()
                )));
            }
            let mut rx = self.subscribe(c.id());
            let exits = rx.borrow().exits;
            // No restart policy brings it back meanwhile.
            self.update_state(c.id(), |st| st.manually_stopped = true)
                .await?;
            self.kill(c.id(), Some("SIGKILL")).await?;
            let _ = rx.wait_for(|s| s.exits > exits || !s.running).await;
        }
        // Read before the mount rows go with the container.
        let anonymous = if volumes {
            self.anonymous_volumes(c.id()).await?
        } else {
            vec![]
        };
        self.destroy(&c, false).await?;
        self.remove_anonymous_volumes(&anonymous).await;
        Ok(())
    }

    /// Row first, then files: a crash in between leaves files only, which
    /// start-up removes. Returns the bytes freed when `measure` (prune
    /// reports them; a plain removal need not walk the tree).
    pub(super) async fn destroy(&self, c: &Container, measure: bool) -> EngineResult<u64> {
        let id = c.id().to_string();
        // Normally done at exit already; a no-op then.
        self.network_teardown(&id).await;
        let i = id.clone();
        self.store.call(move |conn| rows::delete(conn, &i)).await?;
        let dir = self.container_dir(&id);
        let bundle = self.bundle_dir(&id);
        let size = tokio::task::spawn_blocking(move || {
            let size = if measure { dir_size(&dir) } else { 0 };
            let _ = std::fs::remove_dir_all(&dir);
            let _ = std::fs::remove_dir_all(&bundle);
            size
        })
        .await
        .map_err(EngineError::internal)?;
        self.sender(&id).send_modify(|s| {
            s.removed = true;
            s.running = false;
        });
        self.live
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
        self.emit(c, "destroy", &[]);
        Ok(size)
    }

    /// `POST /containers/prune`: every container that is not running.
    pub async fn prune(&self, filters: &Filters) -> EngineResult<PruneReport> {
        filters.accept_only(&["label", "label!", "until"])?;
        let until = match filters.get("until").first() {
            Some(u) => Some(crate::image::remove::parse_until(u)?),
            None => None,
        };
        let mut report = PruneReport {
            deleted: vec![],
            space_reclaimed: 0,
        };
        for c in self.all().await? {
            let labels = c.config.labels.clone().unwrap_or_default();
            if c.state.running_or_restarting() || !filters.labels_match("label", &labels) {
                continue;
            }
            let excluded = filters
                .get("label!")
                .iter()
                .any(|l| match l.split_once('=') {
                    Some((k, v)) => labels.get(k).is_some_and(|x| x == v),
                    None => labels.contains_key(l.as_str()),
                });
            if excluded || until.is_some_and(|u| c.row.created_at / 1_000_000_000 >= u) {
                continue;
            }
            let lock = self.op_lock(c.id());
            let _g = lock.lock().await;
            match self.get(c.id()).await {
                Ok(now) if !now.state.running_or_restarting() => {
                    report.space_reclaimed += self.destroy(&now, true).await?;
                    report.deleted.push(now.row.id.clone());
                }
                _ => {}
            }
        }
        self.events.publish(crate::events::Event::new(
            "container",
            "prune",
            "",
            [("reclaimed".to_string(), report.space_reclaimed.to_string())].into(),
        ));
        Ok(report)
    }
}
