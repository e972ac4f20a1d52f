//! Bridges between HTTP bodies and the blocking readers and writers that
//! tar code wants: request bodies become `Read`, `Write` output becomes a
//! streamed response body with back-pressure.

use std::io::{Read, Write};

use axum::body::Body;
use bytes::Bytes;
use futures::TryStreamExt;
use tokio::sync::mpsc;
use tokio_util::io::{StreamReader, SyncIoBridge};

use crate::error::EngineResult;

/// A blocking reader over a request body; use it on a blocking thread.
pub fn blocking_reader(body: Body) -> Box<dyn Read + Send> {
    let stream = body.into_data_stream().map_err(std::io::Error::other);
    Box::new(SyncIoBridge::new(StreamReader::new(stream)))
}

/// Runs `produce` on a blocking thread, streaming what it writes as the
/// response body. A slow client slows the producer; a gone client stops it.
pub fn blocking_writer<F>(produce: F) -> Body
where
    F: FnOnce(&mut dyn Write) -> EngineResult<()> + Send + 'static,
{
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(8);
    tokio::task::spawn_blocking(move || {
        let mut w = std::io::BufWriter::with_capacity(1 << 16, ChannelWriter { tx: tx.clone() });
        let res = produce(&mut w).and_then(|_| w.flush().map_err(Into::into));
        if let Err(e) = res {
            tracing::warn!(error = %e, "streamed response failed");
            let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
        }
    });
    Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx))
}

struct ChannelWriter {
    tx: mpsc::Sender<Result<Bytes, std::io::Error>>,
}

impl Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.tx
            .blocking_send(Ok(Bytes::copy_from_slice(buf)))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "client went away"))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
