//! `GET /containers/{id}/logs`: the json-file log through
//! [`crate::logs::format::logs_body`]; following ends when the container
//! stops.

use bytes::Bytes;
use futures::stream::{self, BoxStream};
use futures::StreamExt;

use super::ContainerService;
use crate::error::{EngineError, EngineResult};
use crate::logs::format::{logs_body, FormatOptions};
use crate::logs::ReadOptions;

impl ContainerService {
    /// The body and whether the container has a TTY (raw, not framed).
    pub async fn logs(
        &self,
        name: &str,
        read: ReadOptions,
        details: bool,
    ) -> EngineResult<(BoxStream<'static, Bytes>, bool)> {
        if !read.stdout && !read.stderr {
            return Err(EngineError::InvalidParameter(
                "You must choose at least one stream".into(),
            ));
        }
        let c = self.get(name).await?;
        let tty = c.config.tty;
        let fmt = FormatOptions {
            tty,
            timestamps: read.timestamps,
            details,
        };
        let mut rx = self.subscribe(c.id());
        let running = c.state.running();
        // The monitor has flushed the log once its exit is recorded.
        let stop = async move {
            if running {
                let _ = rx.wait_for(|s| !s.running || s.removed).await;
            }
        };
        let path = self.log_path(c.id());
        if !running && !tokio::fs::try_exists(&path).await.unwrap_or(false) {
            // Never started: no log yet, nothing to say.
            return Ok((stream::empty().boxed(), tty));
        }
        Ok((logs_body(path, read, fmt, stop).boxed(), tty))
    }
}
