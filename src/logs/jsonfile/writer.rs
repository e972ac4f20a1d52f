//! The json-file writer of the per-container monitor: plain blocking I/O,
//! one owner, no threads.
//!
//! It reproduces what dockerd's log copier and json-file driver put on
//! disk: output is cut into lines at `\n` (kept in `log`); a line reaching
//! 16 KiB without one is written as a 16 KiB entry with no `\n` and the
//! rest follows in further entries, all stamped with the time of the first
//! piece; what is left when a stream closes is written without a `\n`.
//! Rotation follows `loggerutils.LogFile`: before writing an entry, if the
//! file has reached `max-size`, `<path>.N-1` is dropped, `.i` becomes
//! `.i+1`, the live file becomes `.1`, and a fresh file is created (with
//! `max-file=1` the live file is unlinked and recreated instead, so that
//! readers holding it open can finish it).
//!
//! Readers only ever open the files, so they never slow the writer.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::codec;
use super::opts::LogOpts;
use super::reader::numbered;
use crate::logs::{LogError, Stream, UnixNanos};

/// Longest `log` piece dockerd writes for an unterminated line (its
/// copier's buffer size).
pub const MAX_LINE: usize = 16 * 1024;

/// Permissions of log files, as dockerd creates them.
const LOG_FILE_MODE: u32 = 0o640;

/// The unterminated tail of one stream.
#[derive(Default)]
struct Partial {
    buf: Vec<u8>,
    /// Time of the first 16 KiB piece already written for the current
    /// line: every later piece of that line carries it too.
    time: Option<UnixNanos>,
}

/// Appends a container's stdout/stderr to its json-file log.
pub struct JsonFileWriter {
    path: PathBuf,
    file: File,
    /// Bytes in the live file, as written (dockerd's `pos.size`).
    size: u64,
    opts: LogOpts,
    attrs: Option<Vec<u8>>,
    partial: [Partial; 2],
    /// Encoded entries not yet written: one `write(2)` per call.
    out: Vec<u8>,
}

impl JsonFileWriter {
    /// Opens (creating, mode 0640) the log at `path` for appending.
    /// `compress` is refused.
    pub fn open(path: impl Into<PathBuf>, opts: LogOpts) -> Result<Self, LogError> {
        if opts.compress {
            return Err(LogError::CompressUnsupported);
        }
        let path = path.into();
        let file = open_append(&path, false)
            .map_err(|e| LogError::io(format!("open log file {}", path.display()), e))?;
        let size = file
            .metadata()
            .map_err(|e| LogError::io(format!("stat log file {}", path.display()), e))?
            .len();
        Ok(JsonFileWriter {
            path,
            file,
            size,
            opts: LogOpts {
                max_file: opts.max_file.max(1),
                ..opts
            },
            attrs: None,
            partial: Default::default(),
            out: Vec::with_capacity(64 * 1024),
        })
    }

    /// The live file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Adds `"attrs":{...}` to every later entry (what dockerd derives from
    /// the `labels`, `env` and `tag` options); an empty map removes it.
    pub fn set_attrs(&mut self, attrs: &BTreeMap<String, String>) {
        self.attrs = (!attrs.is_empty()).then(|| codec::render_attrs(attrs));
    }

    /// Logs `bytes` read from `stream` at `now`. Complete lines are written
    /// before returning; an unterminated rest waits for its `\n`, for
    /// 16 KiB, or for [`flush_partial`](Self::flush_partial).
    ///
    /// On a write error (disk full, ...) the entries of this call are
    /// dropped and the error returned; the writer stays usable.
    pub fn write(&mut self, stream: Stream, bytes: &[u8], now: UnixNanos) -> Result<(), LogError> {
        let mut rest = bytes;
        while let Some(nl) = codec::find(rest, b'\n') {
            self.append(stream, &rest[..nl], now)?;
            let p = &mut self.partial[stream.index()];
            let time = p.time.take().unwrap_or(now);
            let mut line = std::mem::take(&mut p.buf);
            line.push(b'\n');
            let res = self.emit(stream, &line, time);
            line.clear();
            self.partial[stream.index()].buf = line;
            res?;
            rest = &rest[nl + 1..];
        }
        self.append(stream, rest, now)?;
        self.flush()
    }

    /// Writes what is buffered of `stream`'s current line, without a `\n`
    /// (call it when the stream reaches EOF, as dockerd's copier does).
    pub fn flush_partial(&mut self, stream: Stream, now: UnixNanos) -> Result<(), LogError> {
        let p = &mut self.partial[stream.index()];
        let time = p.time.take().unwrap_or(now);
        if !p.buf.is_empty() {
            let piece = std::mem::take(&mut p.buf);
            let res = self.emit(stream, &piece, time);
            self.partial[stream.index()].buf = piece;
            self.partial[stream.index()].buf.clear();
            res?;
        }
        self.flush()
    }

    /// Flushes both streams' partial lines; the file is closed on drop.
    pub fn close(mut self, now: UnixNanos) -> Result<(), LogError> {
        let a = self.flush_partial(Stream::Stdout, now);
        let b = self.flush_partial(Stream::Stderr, now);
        a.and(b)
    }

    /// Adds line content without a newline, writing 16 KiB pieces as the
    /// buffer fills.
    fn append(&mut self, stream: Stream, mut bytes: &[u8], now: UnixNanos) -> Result<(), LogError> {
        loop {
            let p = &mut self.partial[stream.index()];
            let room = MAX_LINE - p.buf.len();
            if bytes.len() < room {
                p.buf.extend_from_slice(bytes);
                return Ok(());
            }
            p.buf.extend_from_slice(&bytes[..room]);
            bytes = &bytes[room..];
            let time = *p.time.get_or_insert(now);
            let piece = std::mem::take(&mut p.buf);
            let res = self.emit(stream, &piece, time);
            let p = &mut self.partial[stream.index()];
            p.buf = piece;
            p.buf.clear();
            res?;
        }
    }

    /// Queues one entry, rotating first if the file is full.
    fn emit(&mut self, stream: Stream, log: &[u8], time: UnixNanos) -> Result<(), LogError> {
        if let Some(max) = self.opts.max_size {
            if self.size + self.out.len() as u64 >= max {
                self.flush()?;
                self.rotate()?;
            }
        }
        codec::push_entry(&mut self.out, log, stream, time, self.attrs.as_deref());
        Ok(())
    }

    fn flush(&mut self) -> Result<(), LogError> {
        if self.out.is_empty() {
            return Ok(());
        }
        let res = self.file.write_all(&self.out);
        // On a short write part of the data is in the file; count it.
        self.size = self
            .file
            .metadata()
            .map(|m| m.len())
            .unwrap_or(self.size + self.out.len() as u64);
        self.out.clear();
        res.map_err(|e| LogError::io(format!("write log file {}", self.path.display()), e))
    }

    fn rotate(&mut self) -> Result<(), LogError> {
        if self.opts.max_file >= 2 {
            if let Err(e) = shift_rotated(&self.path, self.opts.max_file) {
                // As dockerd: warn and start an empty file anyway, so the
                // size limit holds.
                tracing::warn!(path = %self.path.display(), error = %e, "rotating log file");
            }
        } else if let Err(e) = fs::remove_file(&self.path) {
            if e.kind() != io::ErrorKind::NotFound {
                tracing::warn!(path = %self.path.display(), error = %e, "unlinking full log file");
            }
        }
        self.file = open_append(&self.path, true)
            .map_err(|e| LogError::io(format!("create log file {}", self.path.display()), e))?;
        self.size = 0;
        Ok(())
    }
}

fn open_append(path: &Path, truncate: bool) -> io::Result<File> {
    let mut o = OpenOptions::new();
    if truncate {
        o.write(true).truncate(true);
    } else {
        o.append(true);
    }
    o.create(true).mode(LOG_FILE_MODE).open(path)
}

/// Drops `<path>.<max_file-1>`, renames `.i` to `.i+1` and the live file
/// to `.1`. Only indexes that exist are visited, so a huge `max-file`
/// costs nothing.
fn shift_rotated(path: &Path, max_file: u32) -> io::Result<()> {
    let last = u64::from(max_file) - 1;
    let highest = highest_rotated(path)?;
    match fs::remove_file(numbered(path, last)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    // Renaming .i-1 -> .i for i in (2..=last).rev(); above highest+1 there
    // is nothing to move.
    let top = last.min(highest + 1);
    for i in (2..=top).rev() {
        match fs::rename(numbered(path, i - 1), numbered(path, i)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    match fs::rename(path, numbered(path, 1)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// The largest N for which `<path>.N` exists (0 if none).
fn highest_rotated(path: &Path) -> io::Result<u64> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Ok(0);
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let mut prefix = name.as_encoded_bytes().to_vec();
    prefix.push(b'.');
    let mut highest = 0;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let file_name = entry.file_name();
        let Some(rest) = file_name.as_encoded_bytes().strip_prefix(&prefix[..]) else {
            continue;
        };
        if let Some(n) = std::str::from_utf8(rest)
            .ok()
            .filter(|r| r.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|r| r.parse::<u64>().ok())
        {
            highest = highest.max(n);
        }
    }
    Ok(highest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    const T0: UnixNanos = 1_795_819_470_932_718_959; // 2026-11-27T22:44:30.932718959Z

    fn read(path: &Path) -> String {
        String::from_utf8(fs::read(path).unwrap()).unwrap()
    }

    fn writer(dir: &tempfile::TempDir, opts: LogOpts) -> JsonFileWriter {
        JsonFileWriter::open(dir.path().join("c-json.log"), opts).unwrap()
    }

    #[test]
    fn writes_dockerd_lines_byte_for_byte() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = writer(&dir, LogOpts::default());
        w.write(Stream::Stdout, b"hello world\n", T0).unwrap();
        w.write(
            Stream::Stderr,
            b"say \"hi\" \\ <b>&\ttab\x1b[31mred\x00\n",
            T0 + 41,
        )
        .unwrap();
        let mut third = "caf\u{e9} \u{2028}".as_bytes().to_vec();
        third.push(0xff);
        w.write(Stream::Stdout, &third, T0 + 1_000).unwrap();
        w.write(Stream::Stdout, b"\xfe\r\n\n", T0 + 41_041).unwrap();
        w.write(Stream::Stdout, b"x\n", 1_795_819_470_000_000_000)
            .unwrap();
        // Times as Go's RFC3339Nano prints them: trailing zeros trimmed.
        let expected = concat!(
            "{\"log\":\"hello world\\n\",\"stream\":\"stdout\",\"time\":\"2026-11-27T22:44:30.932718959Z\"}\n",
            "{\"log\":\"say \\\"hi\\\" \\\\ \\u003cb\\u003e\\u0026\\u0009tab\\u001b[31mred\\u0000\\n\",\"stream\":\"stderr\",\"time\":\"2026-11-27T22:44:30.932719Z\"}\n",
            "{\"log\":\"caf\u{e9} \\u2028\\ufffd\\ufffd\\r\\n\",\"stream\":\"stdout\",\"time\":\"2026-11-27T22:44:30.93276Z\"}\n",
            "{\"log\":\"\\n\",\"stream\":\"stdout\",\"time\":\"2026-11-27T22:44:30.93276Z\"}\n",
            "{\"log\":\"x\\n\",\"stream\":\"stdout\",\"time\":\"2026-11-27T22:44:30Z\"}\n",
        );
        assert_eq!(read(w.path()), expected);
        let mode = fs::metadata(w.path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640);
    }

    #[test]
    fn partial_lines_wait_per_stream_then_flush() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = writer(&dir, LogOpts::default());
        w.write(Stream::Stdout, b"par", T0).unwrap();
        w.write(Stream::Stderr, b"err", T0).unwrap();
        assert_eq!(read(w.path()), "");
        w.write(Stream::Stdout, b"tial\nnext", T0 + 1).unwrap();
        w.flush_partial(Stream::Stdout, T0 + 2).unwrap();
        w.flush_partial(Stream::Stdout, T0 + 3).unwrap(); // nothing left
        w.close(T0 + 4).unwrap();
        let lines: Vec<String> = read(&dir.path().join("c-json.log"))
            .lines()
            .map(str::to_string)
            .collect();
        assert_eq!(
            lines,
            [
                r#"{"log":"partial\n","stream":"stdout","time":"2026-11-27T22:44:30.93271896Z"}"#,
                r#"{"log":"next","stream":"stdout","time":"2026-11-27T22:44:30.932718961Z"}"#,
                r#"{"log":"err","stream":"stderr","time":"2026-11-27T22:44:30.932718963Z"}"#,
            ]
        );
    }

    #[test]
    fn long_lines_split_at_16k_with_first_piece_time() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = writer(&dir, LogOpts::default());
        let mut line = vec![b'a'; MAX_LINE * 2 + 10];
        line.push(b'\n');
        // Fed in small chunks at increasing times.
        for (i, chunk) in line.chunks(1000).enumerate() {
            w.write(Stream::Stdout, chunk, T0 + i as i64).unwrap();
        }
        // Exactly 16 KiB then newline: a full piece, then a bare "\n".
        let mut exact = vec![b'b'; MAX_LINE];
        exact.push(b'\n');
        w.write(Stream::Stderr, &exact, T0 + 100).unwrap();
        // One byte short of 16 KiB: a single entry.
        let mut short = vec![b'c'; MAX_LINE - 1];
        short.push(b'\n');
        w.write(Stream::Stderr, &short, T0 + 200).unwrap();
        let text = read(w.path());
        let entries: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let logs: Vec<(usize, bool, &str)> = entries
            .iter()
            .map(|e| {
                let log = e["log"].as_str().unwrap();
                (log.len(), log.ends_with('\n'), e["time"].as_str().unwrap())
            })
            .collect();
        // The first piece is cut when the 17th chunk fills the buffer.
        let t_first = "2026-11-27T22:44:30.932718975Z";
        assert_eq!(
            logs,
            [
                (MAX_LINE, false, t_first),
                (MAX_LINE, false, t_first),
                (11, true, t_first),
                (MAX_LINE, false, "2026-11-27T22:44:30.932719059Z"),
                (1, true, "2026-11-27T22:44:30.932719059Z"),
                (MAX_LINE, true, "2026-11-27T22:44:30.932719159Z"),
            ]
        );
    }

    #[test]
    fn rotates_like_dockerd() {
        let dir = tempfile::tempdir().unwrap();
        let opts = LogOpts {
            max_size: Some(200),
            max_file: 3,
            ..LogOpts::default()
        };
        let mut w = writer(&dir, opts);
        let p = w.path().to_path_buf();
        let entry_len = {
            let mut v = Vec::new();
            codec::push_entry(&mut v, b"line 00\n", Stream::Stdout, T0, None);
            v.len()
        };
        assert_eq!(entry_len, 78);
        // 78-byte entries, limit 200: a file takes 3 entries (written at
        // sizes 0, 78, 156 < 200), the 4th goes to a new file.
        for i in 0..10 {
            w.write(Stream::Stdout, format!("line {i:02}\n").as_bytes(), T0)
                .unwrap();
        }
        let count = |path: &Path| read(path).lines().count();
        let first = |path: &Path| {
            let t = read(path);
            let e: serde_json::Value = serde_json::from_str(t.lines().next().unwrap()).unwrap();
            e["log"].as_str().unwrap().to_string()
        };
        assert_eq!(count(&p), 1);
        assert_eq!(first(&p), "line 09\n");
        assert_eq!(count(&numbered(&p, 1)), 3);
        assert_eq!(first(&numbered(&p, 1)), "line 06\n");
        assert_eq!(first(&numbered(&p, 2)), "line 03\n");
        assert!(!numbered(&p, 3).exists(), "oldest dropped");
        assert_eq!(fs::metadata(&p).unwrap().len(), 78);
    }

    #[test]
    fn max_file_one_replaces_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let opts = LogOpts {
            max_size: Some(100),
            ..LogOpts::default()
        };
        let mut w = writer(&dir, opts);
        w.write(Stream::Stdout, b"line 00\nline 01\n", T0).unwrap();
        let ino_before = std::os::unix::fs::MetadataExt::ino(&fs::metadata(w.path()).unwrap());
        w.write(Stream::Stdout, b"line 02\n", T0).unwrap();
        let text = read(w.path());
        assert_eq!(text.lines().count(), 1);
        assert!(text.contains("line 02"));
        assert!(!numbered(w.path(), 1).exists());
        let ino_after = std::os::unix::fs::MetadataExt::ino(&fs::metadata(w.path()).unwrap());
        assert_ne!(ino_before, ino_after, "a new file, not a truncation");
    }

    #[test]
    fn reopen_appends_and_counts_existing_size() {
        let dir = tempfile::tempdir().unwrap();
        let opts = LogOpts {
            max_size: Some(100),
            max_file: 2,
            ..LogOpts::default()
        };
        let mut w = writer(&dir, opts.clone());
        w.write(Stream::Stdout, b"line 00\nline 01\n", T0).unwrap();
        drop(w);
        let mut w = writer(&dir, opts);
        w.write(Stream::Stdout, b"line 02\n", T0).unwrap();
        assert_eq!(read(&numbered(w.path(), 1)).lines().count(), 2);
        assert_eq!(read(w.path()).lines().count(), 1);
    }

    #[test]
    fn attrs_and_compress() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = writer(&dir, LogOpts::default());
        let mut attrs = BTreeMap::new();
        attrs.insert("tag".to_string(), "web".to_string());
        w.set_attrs(&attrs);
        w.write(Stream::Stdout, b"x\n", 1_000_000_000).unwrap();
        assert_eq!(
            read(w.path()),
            "{\"log\":\"x\\n\",\"stream\":\"stdout\",\"attrs\":{\"tag\":\"web\"},\"time\":\"1970-01-01T00:00:01Z\"}\n"
        );
        let opts = LogOpts {
            compress: true,
            ..LogOpts::default()
        };
        assert!(matches!(
            JsonFileWriter::open(dir.path().join("other.log"), opts),
            Err(LogError::CompressUnsupported)
        ));
    }

    #[test]
    fn huge_max_file_is_cheap() {
        let dir = tempfile::tempdir().unwrap();
        let opts = LogOpts {
            max_size: Some(1),
            max_file: u32::MAX,
            ..LogOpts::default()
        };
        let mut w = writer(&dir, opts);
        for i in 0..5 {
            w.write(Stream::Stdout, format!("{i}\n").as_bytes(), T0)
                .unwrap();
        }
        assert!(numbered(w.path(), 4).exists());
        assert!(!numbered(w.path(), 5).exists());
        assert!(read(&numbered(w.path(), 4)).contains("\"0\\n\""));
    }
}
