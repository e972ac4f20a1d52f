//! Docker's `json-file` log driver: one JSON object per line,
//! `{"log":"...","stream":"stdout","time":"<RFC 3339 nanos>"}`, in
//! `<container dir>/<id>-json.log`, rotated to `.1`, `.2`, ... by size.
//!
//! The monitor process writes with [`JsonFileWriter`]; the daemon reads with
//! [`LogReader`] (blocking) or [`stream`]/[`follow`] (async, inotify). Both
//! sides only share the files, so a reader never slows the container and
//! `docker logs -f` survives a daemon restart.

mod codec;
mod follow;
mod opts;
mod reader;
mod writer;

pub use follow::{follow, stream, stream_batches};
pub use opts::LogOpts;
pub use reader::{LogReader, ReadOptions};
pub use writer::{JsonFileWriter, MAX_LINE};

pub(crate) use codec::format_time;

/// A time as `docker logs -t` prints it: RFC 3339 in UTC with exactly
/// nine fractional digits (Go's `jsonmessage.RFC3339NanoFixed`).
pub fn format_timestamp_fixed(nanos: crate::logs::UnixNanos) -> String {
    String::from_utf8_lossy(format_time(nanos, true).as_bytes()).into_owned()
}

/// A time as json-file stores it: Go's `time.RFC3339Nano`, which drops
/// trailing zeros of the fraction (and the dot when it is all zeros).
pub fn format_timestamp(nanos: crate::logs::UnixNanos) -> String {
    String::from_utf8_lossy(format_time(nanos, false).as_bytes()).into_owned()
}
