//! `POST /containers/{id}/resize`: the TTY's window size.

use super::ContainerService;
use crate::error::{EngineError, EngineResult};

impl ContainerService {
    pub async fn resize(&self, name: &str, height: u16, width: u16) -> EngineResult<()> {
        let c = self.get(name).await?;
        let Some(m) = self.monitor(c.id()).filter(|_| c.state.running()) else {
            return Err(c.not_running());
        };
        if !c.config.tty {
            // dockerd passes it on and the runtime ignores it.
            return Ok(());
        }
        tokio::task::spawn_blocking(move || m.resize(height, width))
            .await
            .map_err(EngineError::internal)?
            .map_err(|e| EngineError::Internal(format!("cannot resize container: {e}")))?;
        self.emit(
            &c,
            "resize",
            &[("height", height.to_string()), ("width", width.to_string())],
        );
        Ok(())
    }
}
