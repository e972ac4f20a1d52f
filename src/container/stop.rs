//! `docker stop` and `docker kill`.

use std::time::Duration;

use super::ContainerService;
use crate::error::{EngineError, EngineResult};

/// dockerd's default `docker stop` timeout.
pub const DEFAULT_STOP_TIMEOUT: i64 = 10;

impl ContainerService {
    /// `POST /containers/{id}/kill`.
    pub async fn kill(&self, name: &str, signal: Option<&str>) -> EngineResult<()> {
        let sig =
            crate::signal::parse_supported(signal.filter(|s| !s.is_empty()).unwrap_or("SIGKILL"))?;
        let found = self.get(name).await?;
        // Killing a container waiting to restart only cancels the restart.
        let Some(c) = self.cancel_restart(found.clone(), false).await? else {
            self.emit(&found, "kill", &[("signal", sig.to_string())]);
            return Ok(());
        };
        if !c.state.running() {
            return Err(c.not_running());
        }
        if sig == libc::SIGKILL {
            self.update_state(c.id(), |st| st.stopping = false).await?;
        }
        self.signal(c.id(), sig).await?;
        if c.state.paused {
            // A frozen process acts on the signal only once thawed.
            self.thaw(&c).await?;
        }
        self.emit(&c, "kill", &[("signal", sig.to_string())]);
        Ok(())
    }

    async fn signal(&self, id: &str, sig: i32) -> EngineResult<()> {
        let Some(m) = self.monitor(id) else {
            // The row said running, so the exit is being recorded right
            // now (the monitor handle goes first): as if it had exited
            // just after the signal.
            return Ok(());
        };
        match tokio::task::spawn_blocking(move || m.kill(sig))
            .await
            .map_err(EngineError::internal)?
        {
            // Exited meanwhile: the exit task records it.
            Ok(()) | Err(crate::runtime::RuntimeError::NotRunning) => Ok(()),
            Err(e) => Err(EngineError::Internal(format!(
                "cannot kill container {id}: {e}"
            ))),
        }
    }

    /// `POST /containers/{id}/stop`: the stop signal, then SIGKILL after
    /// `timeout` seconds (-1: wait forever). 304 when not running.
    pub async fn stop(
        &self,
        name: &str,
        timeout: Option<i64>,
        signal: Option<&str>,
    ) -> EngineResult<()> {
        let c = self.get(name).await?;
        let Some(c) = self.cancel_restart(c, false).await? else {
            return Ok(());
        };
        if !c.state.running() {
            return Err(EngineError::NotModified);
        }
        let sig = match signal.filter(|s| !s.is_empty()) {
            Some(s) => crate::signal::parse_supported(s)?,
            None => crate::signal::parse_supported(
                c.config.stop_signal.as_deref().unwrap_or("SIGTERM"),
            )?,
        };
        let timeout = timeout
            .or(c.config.stop_timeout)
            .unwrap_or(DEFAULT_STOP_TIMEOUT);
        let mut rx = self.subscribe(c.id());
        let exits = rx.borrow().exits;
        self.update_state(c.id(), |st| {
            st.stopping = true;
            st.manually_stopped = true;
        })
        .await?;
        self.signal(c.id(), sig).await?;
        if c.state.paused {
            self.thaw(&c).await?;
        }
        self.emit(&c, "kill", &[("signal", sig.to_string())]);
        let exited = async {
            let _ = rx.wait_for(|s| s.exits > exits || s.removed).await;
        };
        if timeout < 0 {
            exited.await;
            return Ok(());
        }
        if tokio::time::timeout(Duration::from_secs(timeout as u64), exited)
            .await
            .is_ok()
        {
            return Ok(());
        }
        self.signal(c.id(), libc::SIGKILL).await?;
        self.emit(&c, "kill", &[("signal", libc::SIGKILL.to_string())]);
        let _ = rx.wait_for(|s| s.exits > exits || s.removed).await;
        Ok(())
    }
}
