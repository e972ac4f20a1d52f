//! The body of `GET /containers/{id}/logs`, as dockerd's
//! `httputils.WriteLogStream` builds it, but for the framing: without a
//! TTY, consecutive entries of one stream share a stdcopy frame (stream 1
//! or 2; dockerd sends a frame per entry, which demultiplexes the same but
//! costs clients far more per line), with a TTY the raw bytes. `details` puts the entry's attrs first
//! (`k=v,k2=v2 `, query-escaped, sorted); `timestamps` then puts the time
//! first, always with nine fractional digits (`jsonmessage.RFC3339NanoFixed`,
//! which is what `docker logs -t` prints: `2026-11-27T22:44:30.932718950Z`,
//! zeros kept). A read error becomes `Error grabbing logs: <err>\n`, on the
//! system-error stream (3) when framed.

use std::fmt::Display;
use std::future::Future;
use std::path::PathBuf;

use bytes::{BufMut, Bytes, BytesMut};
use futures::{Stream as FuturesStream, StreamExt};

use super::jsonfile::{format_time, stream_batches, ReadOptions};
use super::stdcopy::{self, FrameJoiner, StreamId};
use super::{LogEntry, LogError};

/// How entries are rendered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FormatOptions {
    /// The container has a TTY: raw bytes, no framing.
    pub tty: bool,
    /// `timestamps=1`.
    pub timestamps: bool,
    /// `details=1`.
    pub details: bool,
}

/// The response's `Content-Type`, as dockerd picks it: the multiplexed
/// type only without a TTY and for API 1.42 and later.
pub fn content_type(tty: bool, api_at_least_1_42: bool) -> &'static str {
    if !tty && api_at_least_1_42 {
        "application/vnd.docker.multiplexed-stream"
    } else {
        "application/vnd.docker.raw-stream"
    }
}

/// Appends one entry to `out` as a frame of its own.
pub fn encode_entry(entry: &LogEntry, opts: &FormatOptions, out: &mut BytesMut) {
    append_entry(entry, opts, &mut FrameJoiner::default(), out);
}

/// Appends one entry to `out`, joined to the previous frame when it is of
/// the same stream (see [`FrameJoiner`]).
pub fn append_entry(
    entry: &LogEntry,
    opts: &FormatOptions,
    frames: &mut FrameJoiner,
    out: &mut BytesMut,
) {
    // Built without intermediate buffers: this runs once per log line.
    let ts = opts.timestamps.then(|| format_time(entry.time_nanos, true));
    let ts: &[u8] = ts.as_ref().map_or(&[], |t| t.as_bytes());
    let sep: &[u8] = if opts.timestamps { b" " } else { b"" };
    if opts.details && !entry.attrs.is_empty() {
        let mut details = Vec::new();
        for (i, (k, v)) in entry.attrs.iter().enumerate() {
            if i > 0 {
                details.push(b',');
            }
            query_escape(&mut details, k.as_bytes());
            details.push(b'=');
            query_escape(&mut details, v.as_bytes());
        }
        details.push(b' ');
        put(entry, opts, frames, &[ts, sep, &details, &entry.line], out);
    } else if opts.details {
        put(entry, opts, frames, &[ts, sep, b" ", &entry.line], out);
    } else {
        put(entry, opts, frames, &[ts, sep, &entry.line], out);
    }
}

fn put(
    entry: &LogEntry,
    opts: &FormatOptions,
    frames: &mut FrameJoiner,
    parts: &[&[u8]],
    out: &mut BytesMut,
) {
    if opts.tty {
        for p in parts {
            out.put_slice(p);
        }
    } else {
        frames.push_parts(StreamId::from(entry.stream), parts, out);
    }
}

/// Appends dockerd's report of a read error.
pub fn encode_error(err: &dyn Display, opts: &FormatOptions, out: &mut BytesMut) {
    let msg = format!("Error grabbing logs: {err}\n");
    if opts.tty {
        out.put_slice(msg.as_bytes());
    } else {
        stdcopy::encode_into(StreamId::Systemerr, msg.as_bytes(), out);
    }
}

/// Go's `url.QueryEscape`: unreserved bytes as they are, space as `+`,
/// the rest as `%XX`.
fn query_escape(out: &mut Vec<u8>, s: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in s {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(b),
            b' ' => out.push(b'+'),
            _ => out.extend_from_slice(&[b'%', HEX[(b >> 4) as usize], HEX[(b & 0xf) as usize]]),
        }
    }
}

/// The response body for a stream of entries (see
/// [`crate::logs::jsonfile::stream`]): entries that are ready together go
/// out as one chunk, so a large log is not sent a line per write.
pub fn body_stream<S>(entries: S, opts: FormatOptions) -> impl FuturesStream<Item = Bytes> + Send
where
    S: FuturesStream<Item = Result<LogEntry, LogError>> + Send,
{
    entries.ready_chunks(256).map(move |items| {
        let mut out = BytesMut::new();
        let mut frames = FrameJoiner::default();
        for item in items {
            match item {
                Ok(entry) => append_entry(&entry, &opts, &mut frames, &mut out),
                Err(e) => encode_error(&e, &opts, &mut out),
            }
        }
        out.freeze()
    })
}

/// The whole logs response body for the log at `path`: reads, filters
/// and encodes on tokio's blocking pool, batch by batch, so the async
/// side only forwards chunks. Arguments as for
/// [`crate::logs::jsonfile::stream`].
pub fn logs_body<F>(
    path: impl Into<PathBuf>,
    read: ReadOptions,
    fmt: FormatOptions,
    stop: F,
) -> impl FuturesStream<Item = Bytes> + Send + 'static
where
    F: Future<Output = ()> + Send + 'static,
{
    let encode = move |batch: Vec<LogEntry>| {
        let bytes: usize = batch.iter().map(|e| e.line.len() + 48).sum();
        let mut out = BytesMut::with_capacity(bytes);
        let mut frames = FrameJoiner::default();
        for entry in &batch {
            append_entry(entry, &fmt, &mut frames, &mut out);
        }
        out.freeze()
    };
    stream_batches(path, read, stop, encode).map(move |item| match item {
        Ok(bytes) => bytes,
        Err(e) => {
            let mut out = BytesMut::new();
            encode_error(&e, &fmt, &mut out);
            out.freeze()
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::jsonfile::ReadOptions;
    use crate::logs::stdcopy::decode_all;
    use crate::logs::Stream;

    fn entry(stream: Stream, line: &[u8]) -> LogEntry {
        LogEntry {
            stream,
            time_nanos: 1_795_819_470_932_718_950,
            line: line.to_vec(),
            attrs: Vec::new(),
        }
    }

    fn render(e: &LogEntry, opts: FormatOptions) -> Vec<u8> {
        let mut out = BytesMut::new();
        encode_entry(e, &opts, &mut out);
        out.to_vec()
    }

    #[test]
    fn framed_without_tty() {
        let out = render(&entry(Stream::Stderr, b"oops\n"), FormatOptions::default());
        assert_eq!(out, b"\x02\x00\x00\x00\x00\x00\x00\x05oops\n");
        let out = render(&entry(Stream::Stdout, b"hi\n"), FormatOptions::default());
        assert_eq!(out, b"\x01\x00\x00\x00\x00\x00\x00\x03hi\n");
    }

    #[test]
    fn timestamps_keep_nine_digits() {
        let opts = FormatOptions {
            timestamps: true,
            ..FormatOptions::default()
        };
        let frames = decode_all(&render(&entry(Stream::Stdout, b"hi\n"), opts)).unwrap();
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0].stream, StreamId::Stdout);
        assert_eq!(
            &frames[0].payload[..],
            b"2026-11-27T22:44:30.932718950Z hi\n"
        );
    }

    #[test]
    fn tty_is_raw() {
        let opts = FormatOptions {
            tty: true,
            ..FormatOptions::default()
        };
        assert_eq!(render(&entry(Stream::Stdout, b"a\r\n"), opts), b"a\r\n");
        let opts = FormatOptions {
            tty: true,
            timestamps: true,
            ..FormatOptions::default()
        };
        assert_eq!(
            render(&entry(Stream::Stdout, b"a\r\n"), opts),
            b"2026-11-27T22:44:30.932718950Z a\r\n"
        );
    }

    #[test]
    fn details_then_timestamps() {
        let mut e = entry(Stream::Stdout, b"x\n");
        e.attrs = vec![("a b".into(), "1&2".into()), ("tag".into(), "web/1".into())];
        let opts = FormatOptions {
            tty: true,
            timestamps: true,
            details: true,
        };
        assert_eq!(
            String::from_utf8(render(&e, opts)).unwrap(),
            "2026-11-27T22:44:30.932718950Z a+b=1%262,tag=web%2F1 x\n"
        );
        e.attrs.clear();
        let opts = FormatOptions {
            tty: true,
            details: true,
            ..FormatOptions::default()
        };
        assert_eq!(render(&e, opts), b" x\n");
    }

    #[tokio::test]
    async fn logs_body_from_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c-json.log");
        let mut w = crate::logs::JsonFileWriter::open(&path, Default::default()).unwrap();
        w.write(Stream::Stdout, b"out\n", 1_000_000_000).unwrap();
        w.write(Stream::Stderr, b"err\n", 2_500_000_000).unwrap();
        let read = ReadOptions {
            stdout: false,
            ..ReadOptions::default()
        };
        let fmt = FormatOptions {
            timestamps: true,
            ..FormatOptions::default()
        };
        let body: Vec<u8> = logs_body(&path, read, fmt, std::future::ready(()))
            .map(|b| b.to_vec())
            .concat()
            .await;
        let frames = decode_all(&body).unwrap();
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0].stream, StreamId::Stderr);
        assert_eq!(
            &frames[0].payload[..],
            b"1970-01-01T00:00:02.500000000Z err\n"
        );
        // A log in a directory that does not exist: dockerd's error text.
        let missing = dir.path().join("gone/c-json.log");
        let read = ReadOptions {
            follow: true,
            ..ReadOptions::default()
        };
        let body: Vec<u8> = logs_body(&missing, read, fmt, std::future::ready(()))
            .map(|b| b.to_vec())
            .concat()
            .await;
        let frames = decode_all(&body).unwrap();
        assert_eq!(frames[0].stream, StreamId::Systemerr);
        assert!(frames[0]
            .payload
            .starts_with(b"Error grabbing logs: watch log file"));
    }

    #[tokio::test]
    async fn body_batches_and_reports_errors() {
        let items: Vec<Result<LogEntry, LogError>> = vec![
            Ok(entry(Stream::Stdout, b"1\n")),
            Ok(entry(Stream::Stderr, b"2\n")),
            Err(LogError::Task("boom".into())),
        ];
        let chunks: Vec<Bytes> =
            body_stream(futures::stream::iter(items), FormatOptions::default())
                .collect()
                .await;
        assert_eq!(chunks.len(), 1, "ready entries share a chunk");
        let frames = decode_all(&chunks[0]).unwrap();
        let got: Vec<(StreamId, &[u8])> =
            frames.iter().map(|f| (f.stream, &f.payload[..])).collect();
        assert_eq!(
            got,
            [
                (StreamId::Stdout, &b"1\n"[..]),
                (StreamId::Stderr, &b"2\n"[..]),
                (
                    StreamId::Systemerr,
                    &b"Error grabbing logs: log reader task failed: boom\n"[..]
                ),
            ]
        );
        assert_eq!(
            content_type(false, true),
            "application/vnd.docker.multiplexed-stream"
        );
        assert_eq!(
            content_type(false, false),
            "application/vnd.docker.raw-stream"
        );
        assert_eq!(
            content_type(true, true),
            "application/vnd.docker.raw-stream"
        );
    }
}
