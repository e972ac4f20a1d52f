//! `POST /containers/{id}/wait`.

use super::ContainerService;
use crate::error::{EngineError, EngineResult};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitCondition {
    /// Return at once if not running, else at the next exit.
    NotRunning,
    NextExit,
    Removed,
}

impl WaitCondition {
    pub fn parse(s: &str) -> EngineResult<WaitCondition> {
        match s {
            "" | "not-running" => Ok(WaitCondition::NotRunning),
            "next-exit" => Ok(WaitCondition::NextExit),
            "removed" => Ok(WaitCondition::Removed),
            other => Err(EngineError::InvalidParameter(format!(
                "invalid condition: \"{other}\""
            ))),
        }
    }
}

/// What wait returns: the exit code and dockerd's `Error` (null when none).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WaitResult {
    pub status_code: i64,
    pub error: Option<String>,
}

impl ContainerService {
    /// Resolves the container now (404 before any waiting), then returns a
    /// future for the condition.
    pub async fn wait(
        &self,
        name: &str,
        cond: WaitCondition,
    ) -> EngineResult<impl std::future::Future<Output = WaitResult> + Send + 'static> {
        let c = self.get(name).await?;
        let mut rx = self.subscribe(c.id());
        // The row is the truth for "not running" before any exit was seen.
        let running = c.state.running();
        let exit_code = c.state.exit_code;
        let start = rx.borrow().exits;
        Ok(async move {
            let result = |s: &super::Snapshot| WaitResult {
                status_code: s.exit_code as i64,
                error: (!s.error.is_empty()).then(|| s.error.clone()),
            };
            match cond {
                WaitCondition::NotRunning if !running => WaitResult {
                    status_code: exit_code as i64,
                    error: None,
                },
                WaitCondition::NotRunning | WaitCondition::NextExit => {
                    match rx.wait_for(|s| s.exits > start || s.removed).await {
                        Ok(s) => result(&s),
                        Err(_) => WaitResult {
                            status_code: -1,
                            error: Some("daemon shutting down".into()),
                        },
                    }
                }
                WaitCondition::Removed => match rx.wait_for(|s| s.removed).await {
                    Ok(s) => result(&s),
                    Err(_) => WaitResult {
                        status_code: -1,
                        error: Some("daemon shutting down".into()),
                    },
                },
            }
        })
    }
}
