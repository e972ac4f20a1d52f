//! Container logs, engine side: the `json-file` format on disk, reading it
//! back for `GET /containers/{id}/logs`, and the bytes of the logs body.
//!
//! - [`jsonfile`]: the writer used by the per-container monitor (blocking,
//!   single-threaded), its options (`max-size`, `max-file`, ...) and the
//!   readers: a blocking iterator and an async follower driven by inotify.
//! - [`stdcopy`]: Docker's 8-byte-header framing of stdout/stderr on one
//!   connection, both ways.
//! - [`format`](mod@format): a [`LogEntry`] as the logs API sends it (frames or raw TTY
//!   bytes, `timestamps`, `details`).
//!
//! Nothing here speaks HTTP. For `GET /containers/{id}/logs` the API
//! layer parses the query into [`ReadOptions`] (see
//! [`ReadOptions::parse_tail`], [`ReadOptions::parse_time`]) and
//! [`format::FormatOptions`], and sends [`format::logs_body`] as the body,
//! with [`format::content_type`]; the monitor writes with
//! [`JsonFileWriter`], configured by [`LogOpts::parse`].

pub mod format;
pub mod jsonfile;
pub mod stdcopy;

use std::io;
use std::time::{SystemTime, UNIX_EPOCH};

use thiserror::Error;

pub use jsonfile::{JsonFileWriter, LogOpts, LogReader, ReadOptions};

/// Nanoseconds since the Unix epoch, UTC: how log times travel inside the
/// crate (an `i64` spans the years 1677 to 2262).
pub type UnixNanos = i64;

/// The current time as [`UnixNanos`].
pub fn now_nanos() -> UnixNanos {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
        // A clock before 1970: negative, still ordered correctly.
        Err(e) => i64::try_from(e.duration().as_nanos()).map_or(i64::MIN, |n| -n),
    }
}

/// Which of the container's output streams a line came from. TTY
/// containers have a single stream, logged as `Stdout` (as dockerd does).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    /// The name used in the `stream` field of json-file entries.
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }

    /// The inverse of [`Stream::as_str`].
    pub fn from_name(name: &str) -> Option<Stream> {
        match name {
            "stdout" => Some(Stream::Stdout),
            "stderr" => Some(Stream::Stderr),
            _ => None,
        }
    }

    fn index(self) -> usize {
        match self {
            Stream::Stdout => 0,
            Stream::Stderr => 1,
        }
    }
}

/// One json-file entry as read back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogEntry {
    pub stream: Stream,
    /// The entry's `time`.
    pub time_nanos: UnixNanos,
    /// The `log` bytes: a line with its `\n`, or a piece of a line longer
    /// than 16 KiB (or the unterminated end of a stream) without one.
    pub line: Vec<u8>,
    /// The entry's `attrs` (from the `labels`/`env`/`tag` log options),
    /// sorted by key; empty for most containers.
    pub attrs: Vec<(String, String)>,
}

/// Errors of the logs engine.
#[derive(Debug, Error)]
pub enum LogError {
    /// A bad `--log-opt`, worded as dockerd words it. dockerd reports the
    /// value errors when it starts the container, prefixed with
    /// "failed to initialize logging driver: ".
    #[error("{0}")]
    InvalidOpt(String),
    /// `compress=true`: valid for dockerd, not implemented here.
    #[error("compress is not supported by the json-file log driver of this daemon")]
    CompressUnsupported,
    /// A file system error, with what we were doing.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    /// The blocking reader task died (a bug, or the runtime shutting down).
    #[error("log reader task failed: {0}")]
    Task(String),
}

impl LogError {
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> LogError {
        LogError::Io {
            context: context.into(),
            source,
        }
    }
}

impl From<LogError> for crate::error::EngineError {
    fn from(e: LogError) -> Self {
        match e {
            LogError::InvalidOpt(_) | LogError::CompressUnsupported => {
                crate::error::EngineError::InvalidParameter(e.to_string())
            }
            LogError::Io { .. } | LogError::Task(_) => {
                crate::error::EngineError::Internal(e.to_string())
            }
        }
    }
}

/// Throughput check, not run by default:
/// `cargo test --release --lib logs::perf -- --ignored --nocapture`.
#[cfg(test)]
mod perf {
    use super::*;
    use futures::StreamExt;
    use std::time::Instant;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore]
    async fn write_and_read_100_mb() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c-json.log");
        let mut w = JsonFileWriter::open(&path, LogOpts::default()).unwrap();
        let chunk: Vec<u8> = (0..64 * 1024)
            .map(|i| {
                if i % 80 == 79 {
                    b'\n'
                } else {
                    b'a' + (i % 26) as u8
                }
            })
            .collect();
        let started = Instant::now();
        let mut raw = 0;
        while raw < 100 << 20 {
            w.write(Stream::Stdout, &chunk, now_nanos()).unwrap();
            raw += chunk.len();
        }
        let secs = started.elapsed().as_secs_f64();
        let size = std::fs::metadata(&path).unwrap().len();
        eprintln!(
            "write: {:.0} MB/s of output ({} MB on disk)",
            raw as f64 / secs / 1e6,
            size >> 20
        );

        let started = Instant::now();
        let n = LogReader::open(&path, &ReadOptions::default())
            .unwrap()
            .count();
        let secs = started.elapsed().as_secs_f64();
        eprintln!(
            "read (iterator): {n} entries, {:.0} MB/s of file",
            size as f64 / secs / 1e6
        );

        let started = Instant::now();
        let body = format::body_stream(
            jsonfile::stream(&path, ReadOptions::default(), std::future::ready(())),
            format::FormatOptions::default(),
        );
        let bytes: usize = body
            .map(|b| b.len())
            .fold(0, |a, b| async move { a + b })
            .await;
        let secs = started.elapsed().as_secs_f64();
        eprintln!(
            "body_stream: {} MB, {:.0} MB/s of file",
            bytes >> 20,
            size as f64 / secs / 1e6
        );

        let started = Instant::now();
        let fmt = format::FormatOptions {
            timestamps: true,
            ..format::FormatOptions::default()
        };
        let body = format::logs_body(&path, ReadOptions::default(), fmt, std::future::ready(()));
        let bytes: usize = body
            .map(|b| b.len())
            .fold(0, |a, b| async move { a + b })
            .await;
        let secs = started.elapsed().as_secs_f64();
        eprintln!(
            "logs_body -t: {} MB, {:.0} MB/s of file, {:.0} MB/s of output",
            bytes >> 20,
            size as f64 / secs / 1e6,
            raw as f64 / secs / 1e6
        );
    }
}
