//! `POST /containers/{id}/attach`, engine side.
//!
//! The CLI attaches before it starts the container, so output cannot come
//! from a monitor connection made later: it would miss what the process
//! wrote before we connected. Output is therefore the json-file log,
//! followed from the attach (after a replay of the old log with `logs`)
//! until the container's next exit. Only stdin goes through the monitor,
//! once the container runs. Detach keys are not implemented.

use std::future::Future;

use bytes::Bytes;
use futures::stream::{self, BoxStream};
use futures::StreamExt;

use super::ContainerService;
use crate::error::{EngineError, EngineResult};
use crate::logs::format::{logs_body, FormatOptions};
use crate::logs::{now_nanos, ReadOptions};
use crate::runtime::protocol::Attach;

/// The query of an attach.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AttachOptions {
    /// Follow output until the container exits.
    pub stream: bool,
    /// Replay the existing log first.
    pub logs: bool,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
}

/// What the API layer pumps between the client and the container.
pub struct AttachSession {
    /// The container has a TTY: output is raw, not stdcopy-framed.
    pub tty: bool,
    /// The bytes to send to the client; ends after the container exits.
    pub output: BoxStream<'static, Bytes>,
    /// When the client's input is wanted: resolves to the monitor
    /// connection taking the container's stdin once it runs (`None` if it
    /// exited or was removed first, or the monitor is gone).
    pub stdin: Option<futures::future::BoxFuture<'static, Option<tokio::net::UnixStream>>>,
}

impl ContainerService {
    pub async fn attach(&self, name: &str, opts: AttachOptions) -> EngineResult<AttachSession> {
        let c = self.get(name).await?;
        let id = c.id().to_string();
        let tty = c.config.tty;
        let mut rx = self.subscribe(&id);
        // Output and input both concern the next exit (or the current run).
        let exits = rx.borrow().exits;
        let attached_at = now_nanos();
        self.emit(&c, "attach", &[]);

        let output = if opts.stream || opts.logs {
            let mut stop_rx = rx.clone();
            let stream_mode = opts.stream;
            // The monitor has flushed the log once its exit is recorded.
            let stop = async move {
                if stream_mode {
                    let _ = stop_rx.wait_for(|s| s.exits > exits || s.removed).await;
                }
            };
            let read = ReadOptions {
                stdout: opts.stdout,
                stderr: opts.stderr,
                // Without `logs`, only what is written from now on.
                since: (!opts.logs).then_some(attached_at),
                until: None,
                tail: None,
                follow: opts.stream,
                timestamps: false,
            };
            let fmt = FormatOptions {
                tty,
                timestamps: false,
                details: false,
            };
            logs_body(self.log_path(&id), read, fmt, stop).boxed()
        } else {
            stream::empty().boxed()
        };

        let stdin = if opts.stdin && opts.stream && c.config.open_stdin {
            let me = self.me.upgrade().ok_or_else(|| {
                EngineError::Internal("container service is shutting down".into())
            })?;
            let close_stdin = c.config.stdin_once;
            let fut: std::pin::Pin<Box<dyn Future<Output = _> + Send>> = Box::pin(async move {
                let running = rx
                    .wait_for(|s| s.running || s.exits > exits || s.removed)
                    .await
                    .ok()
                    .is_some_and(|s| s.running && s.exits == exits && !s.removed);
                if !running {
                    return None;
                }
                let monitor = me.monitor(&id)?;
                let conn = tokio::task::spawn_blocking(move || {
                    monitor.attach(Attach {
                        stdin: true,
                        stdout: false,
                        stderr: false,
                        close_stdin,
                    })
                })
                .await
                .ok()?;
                let conn = match conn {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::debug!(container = %id, error = %e, "attach stdin");
                        return None;
                    }
                };
                conn.set_nonblocking(true).ok()?;
                tokio::net::UnixStream::from_std(conn).ok()
            });
            Some(fut)
        } else {
            None
        };

        Ok(AttachSession { tty, output, stdin })
    }
}
