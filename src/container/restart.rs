//! `docker restart`, and what happens after an exit: `AutoRemove`
//! containers go away, others restart as their restart policy says, after
//! dockerd's back-off. At daemon start, stopped containers whose policy
//! asks for it are started again.

use std::time::Duration;

use serde_json::Value;

use super::restart_policy::{next_delay, RestartPolicy};
use super::start::StartCause;
use super::{Container, ContainerService};
use crate::error::{EngineError, EngineResult};

fn auto_remove(c: &Container) -> bool {
    c.host_config.get("AutoRemove").and_then(Value::as_bool) == Some(true)
}

/// How long the last run lasted (zero when the times do not parse).
fn run_time(c: &Container) -> Duration {
    let t = |s: &str| chrono::DateTime::parse_from_rfc3339(s).ok();
    match (t(&c.state.started_at), t(&c.state.finished_at)) {
        (Some(a), Some(b)) => (b - a).to_std().unwrap_or_default(),
        _ => Duration::ZERO,
    }
}

impl ContainerService {
    /// `POST /containers/{id}/restart`: stop (if running), then start.
    pub async fn restart(
        &self,
        name: &str,
        timeout: Option<i64>,
        signal: Option<&str>,
    ) -> EngineResult<()> {
        let c = self.get(name).await?;
        match self.stop(c.id(), timeout, signal).await {
            Ok(()) | Err(EngineError::NotModified) => {}
            Err(e) => return Err(e),
        }
        match self.start(c.id()).await {
            Ok(()) | Err(EngineError::NotModified) => {}
            Err(e) => return Err(e),
        }
        self.emit(&c, "restart", &[]);
        Ok(())
    }

    /// Cancels a scheduled policy restart. `None`: one was pending and is
    /// cancelled; `Some(c)`: none was, `c` being the container as it is now
    /// (a restart already under way has finished: it runs). `locked`: the
    /// caller holds the container's op lock.
    pub(super) async fn cancel_restart(
        &self,
        c: Container,
        locked: bool,
    ) -> EngineResult<Option<Container>> {
        self.with_live(c.id(), |l| l.restart_generation += 1);
        if !c.state.restarting {
            return Ok(Some(c));
        }
        let lock = self.op_lock(c.id());
        let _g = if locked {
            None
        } else {
            Some(lock.lock().await)
        };
        let c = self.get(c.id()).await?;
        if !c.state.restarting || c.state.running() {
            return Ok(Some(c));
        }
        self.update_state(c.id(), |st| {
            st.restarting = false;
            st.manually_stopped = true;
        })
        .await?;
        Ok(None)
    }

    /// Called once an exit is recorded.
    pub(super) async fn after_exit(&self, id: &str) {
        let Ok(c) = self.get(id).await else {
            return; // removed meanwhile
        };
        if c.state.running() {
            return;
        }
        if auto_remove(&c) {
            if let Err(e) = self.remove_exited(&c).await {
                tracing::warn!(id, error = %e, "cannot auto-remove container");
            }
            return;
        }
        let policy = RestartPolicy::of(&c.host_config);
        let st = &c.state;
        if !policy.should_restart(st.exit_code, st.manually_stopped, st.restart_count) {
            return;
        }
        let delay = self.with_live(id, |l| {
            l.restart_delay = next_delay(l.restart_delay, run_time(&c));
            l.restart_delay
        });
        self.schedule_restart(&c, delay).await;
    }

    /// Marks the container restarting and starts it after `delay` unless
    /// cancelled meanwhile.
    async fn schedule_restart(&self, c: &Container, delay: Duration) {
        let id = c.id().to_string();
        let generation = self.with_live(&id, |l| l.restart_generation);
        if let Err(e) = self
            .update_state(&id, |st| {
                st.restarting = true;
                st.restart_count += 1;
            })
            .await
        {
            tracing::warn!(id, error = %e, "cannot schedule restart");
            return;
        }
        let Some(svc) = self.me.upgrade() else {
            return;
        };
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            if svc.with_live(&id, |l| l.restart_generation) != generation {
                return;
            }
            if let Err(e) = svc.start_as(&id, StartCause::Policy).await {
                tracing::warn!(id, error = %e, "restart policy: start failed");
            }
        });
    }

    /// Removes an exited `AutoRemove` container (the exit path and the
    /// daemon's start).
    async fn remove_exited(&self, c: &Container) -> EngineResult<()> {
        let lock = self.op_lock(c.id());
        let _g = lock.lock().await;
        match self.get(c.id()).await {
            Ok(now) if !now.state.running() => {
                // As `docker rm -v`: anonymous volumes go with it.
                let anonymous = self.anonymous_volumes(now.id()).await?;
                self.destroy(&now, false).await?;
                self.remove_anonymous_volumes(&anonymous).await;
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// At daemon start, after [`ContainerService::reattach`]: exited
    /// `AutoRemove` containers are removed; stopped ones whose policy says
    /// so start again.
    /// `handled`: containers whose exit [`ContainerService::reattach`]
    /// just recorded (their policy was applied then).
    pub async fn apply_restart_policies(&self, handled: &[String]) -> EngineResult<()> {
        for c in self.all().await? {
            if c.state.running()
                || c.state.status == super::Status::Created
                || handled.iter().any(|h| h == c.id())
            {
                continue;
            }
            if auto_remove(&c) {
                if let Err(e) = self.remove_exited(&c).await {
                    tracing::warn!(id = %c.id(), error = %e, "cannot auto-remove container");
                }
                continue;
            }
            let st = &c.state;
            let policy = RestartPolicy::of(&c.host_config);
            let restart = st.restarting
                || policy.restart_at_daemon_start(
                    st.exit_code,
                    st.manually_stopped,
                    st.restart_count,
                );
            if restart {
                if let Err(e) = self.start_after_daemon_start(&c).await {
                    tracing::warn!(id = %c.id(), error = %e, "restart policy: start failed");
                }
            }
        }
        Ok(())
    }

    async fn start_after_daemon_start(&self, c: &Container) -> EngineResult<()> {
        if !c.state.restarting {
            self.update_state(c.id(), |st| st.restarting = true).await?;
        }
        self.start_as(c.id(), StartCause::Policy).await
    }
}
