//! Forgetting execs, as dockerd does: when a container stops, its execs
//! that never ran (or were still running) go at once; finished ones stay
//! inspectable until a clean-up pass every five minutes has seen them
//! twice (the first pass sets `CanRemove`, the next deletes them).

use std::time::Duration;

use super::exec::{Exec, ExecState};
use super::ContainerService;
use crate::error::EngineResult;
use crate::store::execs as rows;

/// dockerd's period for the exec clean-up.
pub const EXEC_GC_INTERVAL: Duration = Duration::from_secs(5 * 60);

/// What one clean-up pass does with an exec.
#[derive(Debug, PartialEq, Eq)]
pub enum GcStep {
    Keep,
    /// Finished: mark it `CanRemove`.
    Mark,
    Delete,
}

/// Only finished execs age out; a live or never-started one belongs to its
/// running container (and goes when it stops).
pub fn gc_step(st: &ExecState) -> GcStep {
    if st.running || st.exit_code.is_none() {
        GcStep::Keep
    } else if st.can_remove {
        GcStep::Delete
    } else {
        GcStep::Mark
    }
}

impl ContainerService {
    /// One clean-up pass over every exec.
    pub async fn exec_gc_pass(&self) -> EngineResult<()> {
        let gone = self
            .store
            .call(|conn| {
                let mut gone = vec![];
                for row in rows::list(conn)? {
                    let id = row.id.clone();
                    let mut e = Exec::from_row(row);
                    match gc_step(&e.state) {
                        GcStep::Keep => {}
                        GcStep::Mark => {
                            e.state.can_remove = true;
                            rows::set_state(conn, &id, &serde_json::to_string(&e.state)?)?;
                        }
                        GcStep::Delete => {
                            rows::delete(conn, &id)?;
                            gone.push(id);
                        }
                    }
                }
                Ok(gone)
            })
            .await?;
        self.remove_exec_dirs(gone).await;
        Ok(())
    }

    /// At a container's exit: its execs that have not finished are
    /// forgotten (their processes died with it, or never ran).
    pub(super) async fn forget_unfinished_execs(&self, container_id: &str) {
        let cid = container_id.to_string();
        let gone = self
            .store
            .call(move |conn| {
                let mut gone = vec![];
                for row in rows::of_container(conn, &cid)? {
                    let e = Exec::from_row(row);
                    if e.state.exit_code.is_none() {
                        rows::delete(conn, &e.id)?;
                        gone.push(e.id);
                    }
                }
                Ok(gone)
            })
            .await;
        match gone {
            Ok(gone) => self.remove_exec_dirs(gone).await,
            Err(e) => tracing::warn!(id = container_id, error = %e, "cannot forget execs"),
        }
    }

    async fn remove_exec_dirs(&self, ids: Vec<String>) {
        if ids.is_empty() {
            return;
        }
        let dirs: Vec<_> = ids.iter().map(|id| self.exec_dir(id)).collect();
        let _ = tokio::task::spawn_blocking(move || {
            for d in dirs {
                let _ = std::fs::remove_dir_all(d);
            }
        })
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(running: bool, exit_code: Option<i32>, can_remove: bool) -> ExecState {
        ExecState {
            running,
            exit_code,
            can_remove,
            ..Default::default()
        }
    }

    #[test]
    fn finished_execs_age_out_in_two_passes() {
        assert_eq!(gc_step(&st(false, Some(0), false)), GcStep::Mark);
        assert_eq!(gc_step(&st(false, Some(3), true)), GcStep::Delete);
    }

    #[test]
    fn live_and_unstarted_execs_stay() {
        assert_eq!(gc_step(&st(true, None, false)), GcStep::Keep);
        assert_eq!(gc_step(&st(false, None, false)), GcStep::Keep);
    }
}
