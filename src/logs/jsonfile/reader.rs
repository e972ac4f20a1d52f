//! Reading a json-file log back, across its rotated files, oldest first.
//!
//! The rules are dockerd's (`loggerutils.LogFile.ReadLogs` plus the logs
//! endpoint): `tail` counts the last N entries of both streams together
//! (finding them by scanning backwards from the end, file by file, so
//! `--tail 10` of a huge log reads a few KiB); `since` then skips entries
//! older than it, the first entry newer than `until` ends the read, and
//! last the stdout/stderr choice drops the other stream. So `tail=5` with
//! only `stdout` can return fewer than 5 lines, as with dockerd.
//!
//! [`Cursor`] holds the open files and is shared with the async follower,
//! which adds rotation tracking: see `follow.rs`.

use std::collections::VecDeque;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Seek, SeekFrom};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::codec::{decode_line, find};
use crate::logs::{LogEntry, LogError, Stream, UnixNanos};

/// What `GET /containers/{id}/logs` asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadOptions {
    pub stdout: bool,
    pub stderr: bool,
    /// Skip entries older than this (inclusive bound).
    pub since: Option<UnixNanos>,
    /// Stop at the first entry newer than this (inclusive bound).
    pub until: Option<UnixNanos>,
    /// Only the last N entries; `None` for all (`tail=all`).
    pub tail: Option<usize>,
    /// Keep streaming new entries (used by [`super::stream`]).
    pub follow: bool,
    /// Prefix lines with their time (used by [`crate::logs::format`]).
    pub timestamps: bool,
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions {
            stdout: true,
            stderr: true,
            since: None,
            until: None,
            tail: None,
            follow: false,
            timestamps: false,
        }
    }
}

impl ReadOptions {
    /// The `tail` query value as dockerd reads it (`strconv.Atoi`, and
    /// anything that fails, like `all`, or is negative means everything).
    pub fn parse_tail(value: &str) -> Option<usize> {
        let digits = value.strip_prefix('+').unwrap_or(value);
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        // Out of range for Atoi is an error there too: all lines.
        digits
            .parse::<i64>()
            .ok()
            .and_then(|n| usize::try_from(n).ok())
    }

    /// A `since`/`until` query value: Unix seconds with an optional
    /// fraction (`1700000000.5`), as dockerd's `timetypes.ParseTimestamps`
    /// reads it; the error is its `strconv` message (a 400 there).
    pub fn parse_time(value: &str) -> Result<UnixNanos, String> {
        let (secs, frac) = match value.split_once('.') {
            Some((s, f)) => (s, Some(f)),
            None => (value, None),
        };
        let secs = go_parse_int(secs)?;
        let nanos = match frac {
            None => 0,
            Some(f) => {
                let n = go_parse_int(f)?;
                // As Go: scale by 10^(9-len) in floating point.
                (n as f64 * 10f64.powi(9 - f.len() as i32)) as i64
            }
        };
        Ok(secs.saturating_mul(1_000_000_000).saturating_add(nanos))
    }
}

/// Go's `strconv.ParseInt(s, 10, 64)` with its error text.
fn go_parse_int(s: &str) -> Result<i64, String> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("strconv.ParseInt: parsing {s:?}: invalid syntax"));
    }
    s.parse::<i64>()
        .map_err(|_| format!("strconv.ParseInt: parsing {s:?}: value out of range"))
}

/// Longest raw line we buffer; longer ones cannot be ours and are skipped.
const MAX_RAW_LINE: usize = 4 << 20;
const READ_BUF: usize = 64 * 1024;

/// (device, inode): how we recognise a file across renames.
pub(crate) type FileId = (u64, u64);

pub(crate) fn file_id(m: &fs::Metadata) -> FileId {
    (m.dev(), m.ino())
}

/// An open file with its identity and length at opening.
pub(crate) type Opened = (File, FileId, u64);

pub(crate) fn numbered(path: &Path, i: u64) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{i}"));
    PathBuf::from(s)
}

/// One open log file being read from `pos`.
pub(crate) struct Segment {
    reader: BufReader<File>,
    pub(crate) id: FileId,
    /// Offset of the next byte to consume.
    pos: u64,
}

impl Segment {
    fn new(file: File, id: FileId, start: u64) -> io::Result<Segment> {
        let mut reader = BufReader::with_capacity(READ_BUF, file);
        // Always: the descriptor's offset may have moved (`last_time`).
        reader.seek(SeekFrom::Start(start))?;
        Ok(Segment {
            reader,
            id,
            pos: start,
        })
    }
}

pub(crate) fn open_file(path: &Path) -> io::Result<Option<Opened>> {
    match File::open(path) {
        Ok(f) => {
            let m = f.metadata()?;
            Ok(Some((f, file_id(&m), m.len())))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Opens `<path>.1`, `<path>.2`, ... in turn, newest first, until `visit`
/// says stop or two indexes in a row are missing (a rotation renames
/// them one at a time, so a single gap can be transient).
pub(crate) fn for_each_rotated(
    path: &Path,
    mut visit: impl FnMut(Opened) -> bool,
) -> io::Result<()> {
    let mut misses = 0;
    for i in 1.. {
        match open_file(&numbered(path, i))? {
            Some(f) => {
                misses = 0;
                if !visit(f) {
                    break;
                }
            }
            None if misses == 0 => misses = 1,
            None => break,
        }
    }
    Ok(())
}

/// Opens the live file and its rotated predecessors, oldest first. The
/// live file is opened first and duplicates (a file rotated while we were
/// opening the others) are dropped by inode, so a concurrent rotation
/// cannot make us read a file twice.
pub(crate) fn open_all(path: &Path) -> io::Result<(Vec<Opened>, bool)> {
    let live = open_file(path)?;
    let has_live = live.is_some();
    let mut newest_first: Vec<Opened> = live.into_iter().collect();
    for_each_rotated(path, |f| {
        if !newest_first.iter().any(|g| g.1 == f.1) {
            newest_first.push(f);
        }
        true
    })?;
    if has_live && newest_first.len() > 1 {
        // The live file must stay last even if it was rotated meanwhile.
        let live = newest_first.remove(0);
        newest_first.reverse();
        newest_first.push(live);
        return Ok((newest_first, true));
    }
    newest_first.reverse();
    Ok((newest_first, has_live))
}

/// Where the last `n` complete lines of `file[..end]` start, and how many
/// were found (fewer when the file is shorter). Reads backwards in blocks;
/// an unterminated fragment at the end is not a line.
pub(crate) fn tail_start(file: &File, end: u64, n: usize) -> io::Result<(u64, usize)> {
    let mut buf = vec![0u8; READ_BUF];
    let mut hi = end;
    // Newlines seen; the first one ends the last complete line.
    let mut seen = 0usize;
    while hi > 0 {
        let lo = hi.saturating_sub(READ_BUF as u64);
        let chunk = &mut buf[..(hi - lo) as usize];
        file.read_exact_at(chunk, lo)?;
        for (i, &b) in chunk.iter().enumerate().rev() {
            if b == b'\n' {
                seen += 1;
                if seen == n + 1 {
                    return Ok((lo + i as u64 + 1, n));
                }
            }
        }
        hi = lo;
    }
    Ok((0, seen))
}

/// Offset just past the last `\n` before `end` (0 if none).
fn complete_end(file: &File, end: u64) -> io::Result<u64> {
    Ok(tail_start(file, end, 0)?.0)
}

/// Time of the last complete entry of a file, if it parses.
fn last_time(file: &File, end: u64) -> io::Result<Option<UnixNanos>> {
    let (start, found) = tail_start(file, end, 1)?;
    if found == 0 {
        return Ok(None);
    }
    let mut line = Vec::new();
    let mut r = BufReader::new(file);
    r.seek(SeekFrom::Start(start))?;
    r.read_until(b'\n', &mut line)?;
    Ok(decode_line(&line).map(|e| e.time_nanos))
}

/// Outcome of one [`Cursor::step`].
pub(crate) enum Step {
    Entry(LogEntry),
    /// Every file is read to its end (for now).
    Eof,
    /// `until` was passed: nothing more will match.
    Done,
}

/// The read position across a log's files, with the entry filters.
pub(crate) struct Cursor {
    pub(crate) path: PathBuf,
    /// Files still to read, oldest first. The back one is the newest we
    /// know; only it can still grow.
    pub(crate) segments: VecDeque<Segment>,
    /// The newest file seen so far, even if `tail`/`since` left it out:
    /// where the follower looks for successors when `segments` is empty.
    pub(crate) newest_known: Option<FileId>,
    line: Vec<u8>,
    /// Inside an over-long line: drop bytes up to the next newline.
    skipping: bool,
    opts: ReadOptions,
}

impl Cursor {
    /// Opens the files and positions for `opts.tail`/`opts.since`.
    pub(crate) fn open(path: &Path, opts: &ReadOptions) -> Result<Cursor, LogError> {
        let ctx = |e| LogError::io(format!("read log file {}", path.display()), e);
        let (files, has_live) = open_all(path).map_err(ctx)?;
        let count = files.len();
        let newest_known = files.last().map(|f| f.1);
        let mut plan: Vec<Opened> = Vec::with_capacity(count);
        match opts.tail {
            None => {
                for (idx, (file, id, len)) in files.into_iter().enumerate() {
                    let is_live = has_live && idx + 1 == count;
                    // A rotated file ending before `since` holds nothing for us.
                    if let (Some(since), false) = (opts.since, is_live) {
                        if matches!(last_time(&file, len).map_err(ctx)?, Some(t) if t < since) {
                            continue;
                        }
                    }
                    plan.push((file, id, 0));
                }
            }
            Some(n) => {
                let mut remaining = n;
                for (idx, (file, id, len)) in files.into_iter().enumerate().rev() {
                    let is_live = has_live && idx + 1 == count;
                    if remaining == 0 {
                        if is_live {
                            // tail=0: nothing old, but follow from the end.
                            let start = complete_end(&file, len).map_err(ctx)?;
                            plan.push((file, id, start));
                        }
                        break;
                    }
                    let (start, found) = tail_start(&file, len, remaining).map_err(ctx)?;
                    remaining -= found;
                    if found > 0 || is_live {
                        plan.push((file, id, start));
                    }
                }
                plan.reverse();
            }
        }
        let mut segments = VecDeque::with_capacity(plan.len());
        for (file, id, start) in plan {
            segments.push_back(Segment::new(file, id, start).map_err(ctx)?);
        }
        Ok(Cursor {
            path: path.to_path_buf(),
            segments,
            newest_known,
            line: Vec::new(),
            skipping: false,
            opts: opts.clone(),
        })
    }

    /// Reads the next complete raw line into `self.line`. At the end of a
    /// file that is not the newest, moves on (dropping a torn fragment);
    /// at the end of the newest returns false, keeping a fragment for when
    /// the rest arrives.
    fn next_raw(&mut self) -> io::Result<bool> {
        loop {
            let Some(seg) = self.segments.front_mut() else {
                return Ok(false);
            };
            let buf = seg.reader.fill_buf()?;
            if buf.is_empty() {
                if self.segments.len() > 1 {
                    self.segments.pop_front();
                    self.line.clear();
                    self.skipping = false;
                    continue;
                }
                return Ok(false);
            }
            let (take, complete) = match find(buf, b'\n') {
                Some(i) => (i + 1, true),
                None => (buf.len(), false),
            };
            if !self.skipping {
                self.line.extend_from_slice(&buf[..take]);
            }
            seg.reader.consume(take);
            seg.pos += take as u64;
            if complete {
                if self.skipping {
                    self.skipping = false;
                    continue;
                }
                return Ok(true);
            }
            if self.line.len() > MAX_RAW_LINE {
                tracing::warn!(path = %self.path.display(), "skipping an over-long log line");
                self.line.clear();
                self.skipping = true;
            }
        }
    }

    /// The next entry that passes the filters, or where reading stands.
    pub(crate) fn step(&mut self) -> Result<Step, LogError> {
        loop {
            let complete = self
                .next_raw()
                .map_err(|e| LogError::io(format!("read log file {}", self.path.display()), e))?;
            if !complete {
                return Ok(Step::Eof);
            }
            let entry = decode_line(&self.line);
            self.line.clear();
            let Some(entry) = entry else {
                continue; // torn or foreign line: dockerd would stop; we skip
            };
            if matches!(self.opts.since, Some(s) if entry.time_nanos < s) {
                continue;
            }
            if matches!(self.opts.until, Some(u) if entry.time_nanos > u) {
                return Ok(Step::Done);
            }
            let wanted = match entry.stream {
                Stream::Stdout => self.opts.stdout,
                Stream::Stderr => self.opts.stderr,
            };
            if wanted {
                return Ok(Step::Entry(entry));
            }
        }
    }

    /// Forgets a torn fragment (when the file it came from is left).
    pub(crate) fn reset_line(&mut self) {
        self.line.clear();
        self.skipping = false;
    }

    /// For the follower: if the newest file shrank (truncated in place by
    /// some other writer), start it over. Returns whether it did.
    pub(crate) fn restart_if_truncated(&mut self) -> io::Result<bool> {
        let Some(seg) = self.segments.back_mut() else {
            return Ok(false);
        };
        let len = seg.reader.get_ref().metadata()?.len();
        if len >= seg.pos {
            return Ok(false);
        }
        seg.reader.seek(SeekFrom::Start(0))?;
        seg.pos = 0;
        self.line.clear();
        self.skipping = false;
        Ok(true)
    }

    /// For the follower: appends files (oldest first) after the current
    /// ones.
    pub(crate) fn push_files(&mut self, files: Vec<(File, FileId)>) -> io::Result<()> {
        for (file, id) in files {
            self.segments.push_back(Segment::new(file, id, 0)?);
        }
        Ok(())
    }
}

/// A blocking iterator over a log's entries (oldest first), for callers
/// that do not follow. It reads each file to the end it has when reached.
pub struct LogReader {
    cursor: Cursor,
    finished: bool,
}

impl LogReader {
    /// Opens the log at `path` (the live file; rotated ones are found
    /// next to it). A missing log reads as empty.
    pub fn open(path: impl AsRef<Path>, opts: &ReadOptions) -> Result<LogReader, LogError> {
        Ok(LogReader {
            cursor: Cursor::open(path.as_ref(), opts)?,
            finished: false,
        })
    }
}

impl Iterator for LogReader {
    type Item = Result<LogEntry, LogError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.finished {
            return None;
        }
        match self.cursor.step() {
            Ok(Step::Entry(e)) => Some(Ok(e)),
            Ok(Step::Eof | Step::Done) => {
                self.finished = true;
                None
            }
            Err(e) => {
                self.finished = true;
                Some(Err(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::jsonfile::{JsonFileWriter, LogOpts};
    use std::io::Write;

    const S: UnixNanos = 1_000_000_000;

    /// Writes `n` lines "line i" (stdout for even i, stderr for odd) at
    /// time i seconds, rotating every `per_file` lines, keeping
    /// `max_file` files.
    fn make_log(dir: &Path, n: usize, per_file: usize, max_file: u32) -> PathBuf {
        let path = dir.join("c-json.log");
        // Entries are 65-66 bytes; pick a limit so that `per_file` fit.
        let opts = LogOpts {
            max_size: Some(per_file as u64 * 60 + 1),
            max_file,
            ..LogOpts::default()
        };
        let mut w = JsonFileWriter::open(&path, opts).unwrap();
        for i in 0..n {
            let stream = if i % 2 == 0 {
                Stream::Stdout
            } else {
                Stream::Stderr
            };
            w.write(stream, format!("line {i}\n").as_bytes(), i as i64 * S)
                .unwrap();
        }
        path
    }

    fn lines(path: &Path, opts: &ReadOptions) -> Vec<String> {
        LogReader::open(path, opts)
            .unwrap()
            .map(|e| {
                String::from_utf8(e.unwrap().line)
                    .unwrap()
                    .trim_end()
                    .to_string()
            })
            .collect()
    }

    fn nums(range: impl Iterator<Item = usize>) -> Vec<String> {
        range.map(|i| format!("line {i}")).collect()
    }

    #[test]
    fn reads_all_across_rotation_oldest_first() {
        let dir = tempfile::tempdir().unwrap();
        let path = make_log(dir.path(), 20, 4, 4);
        assert!(numbered(&path, 3).exists() && !numbered(&path, 4).exists());
        // 4 files of 4 lines kept: lines 4..20 (0..4 dropped).
        assert_eq!(lines(&path, &ReadOptions::default()), nums(4..20));
        let e = LogReader::open(&path, &ReadOptions::default())
            .unwrap()
            .next()
            .unwrap()
            .unwrap();
        assert_eq!(e.stream, Stream::Stdout);
        assert_eq!(e.time_nanos, 4 * S);
    }

    #[test]
    fn tail_across_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = make_log(dir.path(), 20, 4, 4);
        let tail = |n| ReadOptions {
            tail: Some(n),
            ..ReadOptions::default()
        };
        assert_eq!(lines(&path, &tail(0)), nums(0..0));
        assert_eq!(lines(&path, &tail(1)), nums(19..20));
        assert_eq!(lines(&path, &tail(3)), nums(17..20));
        assert_eq!(lines(&path, &tail(4)), nums(16..20));
        assert_eq!(lines(&path, &tail(6)), nums(14..20));
        assert_eq!(lines(&path, &tail(13)), nums(7..20));
        assert_eq!(lines(&path, &tail(16)), nums(4..20));
        assert_eq!(lines(&path, &tail(100)), nums(4..20));
    }

    #[test]
    fn tail_counts_both_streams_then_filters() {
        let dir = tempfile::tempdir().unwrap();
        let path = make_log(dir.path(), 10, 100, 1);
        let opts = ReadOptions {
            tail: Some(4),
            stderr: false,
            ..ReadOptions::default()
        };
        // Last 4 are 6,7,8,9; stdout among them: 6, 8 (as dockerd).
        assert_eq!(lines(&path, &opts), ["line 6", "line 8"]);
        let opts = ReadOptions {
            stdout: false,
            ..ReadOptions::default()
        };
        assert_eq!(lines(&path, &opts), nums((1..10).step_by(2)));
    }

    #[test]
    fn since_and_until() {
        let dir = tempfile::tempdir().unwrap();
        let path = make_log(dir.path(), 20, 4, 10);
        let opts = ReadOptions {
            since: Some(9 * S),
            until: Some(12 * S),
            ..ReadOptions::default()
        };
        assert_eq!(lines(&path, &opts), nums(9..13));
        let opts = ReadOptions {
            since: Some(9 * S + 1),
            ..ReadOptions::default()
        };
        assert_eq!(lines(&path, &opts), nums(10..20));
        let opts = ReadOptions {
            until: Some(2 * S - 1),
            ..ReadOptions::default()
        };
        assert_eq!(lines(&path, &opts), nums(0..2));
        // tail first, then since.
        let opts = ReadOptions {
            tail: Some(5),
            since: Some(17 * S),
            ..ReadOptions::default()
        };
        assert_eq!(lines(&path, &opts), nums(17..20));
        // Rotated files entirely before `since` are not even read.
        let c = Cursor::open(
            &path,
            &ReadOptions {
                since: Some(17 * S),
                ..ReadOptions::default()
            },
        )
        .unwrap();
        assert_eq!(c.segments.len(), 1);
    }

    #[test]
    fn missing_log_is_empty_and_garbage_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        assert!(lines(&dir.path().join("none.log"), &ReadOptions::default()).is_empty());
        let path = dir.path().join("x.log");
        let mut f = File::create(&path).unwrap();
        f.write_all(b"{\"log\":\"a\\n\",\"stream\":\"stdout\",\"time\":\"1970-01-01T00:00:01Z\"}\nnot json\n\n{\"log\":\"b\\n\",\"stream\":\"stderr\",\"time\":\"1970-01-01T00:00:02Z\"}\n{\"log\":\"torn").unwrap();
        assert_eq!(lines(&path, &ReadOptions::default()), ["a", "b"]);
        let opts = ReadOptions {
            tail: Some(1),
            ..ReadOptions::default()
        };
        assert_eq!(lines(&path, &opts), ["b"]);
    }

    #[test]
    fn query_values_parse_like_dockerd() {
        assert_eq!(ReadOptions::parse_tail("all"), None);
        assert_eq!(ReadOptions::parse_tail(""), None);
        assert_eq!(ReadOptions::parse_tail("-1"), None);
        assert_eq!(ReadOptions::parse_tail("0"), Some(0));
        assert_eq!(ReadOptions::parse_tail("+25"), Some(25));
        assert_eq!(ReadOptions::parse_time("0"), Ok(0));
        assert_eq!(ReadOptions::parse_time("1700000000"), Ok(1_700_000_000 * S));
        assert_eq!(ReadOptions::parse_time("1.5"), Ok(1_500_000_000));
        assert_eq!(ReadOptions::parse_time("1.000000001"), Ok(1_000_000_001));
        assert_eq!(ReadOptions::parse_time("1.1234567891"), Ok(1_123_456_789));
        assert_eq!(ReadOptions::parse_time("-1.5"), Ok(-500_000_000));
        assert_eq!(
            ReadOptions::parse_time("yesterday"),
            Err("strconv.ParseInt: parsing \"yesterday\": invalid syntax".to_string())
        );
        assert_eq!(
            ReadOptions::parse_time("1.x"),
            Err("strconv.ParseInt: parsing \"x\": invalid syntax".to_string())
        );
    }

    #[test]
    fn tail_scans_backwards_over_big_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.log");
        let mut w = JsonFileWriter::open(&path, LogOpts::default()).unwrap();
        let long = vec![b'x'; 3000];
        for i in 0..2000 {
            let mut l = format!("{i} ").into_bytes();
            l.extend_from_slice(&long);
            l.push(b'\n');
            w.write(Stream::Stdout, &l, i * S).unwrap();
        }
        let file = File::open(&path).unwrap();
        let len = file.metadata().unwrap().len();
        let (start, found) = tail_start(&file, len, 3).unwrap();
        assert_eq!(found, 3);
        assert!(len - start < 10_000);
        let opts = ReadOptions {
            tail: Some(2),
            ..ReadOptions::default()
        };
        let got: Vec<String> = lines(&path, &opts)
            .into_iter()
            .map(|l| l.split(' ').next().unwrap().to_string())
            .collect();
        assert_eq!(got, ["1998", "1999"]);
    }
}
