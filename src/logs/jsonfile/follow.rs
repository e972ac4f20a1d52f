//! `docker logs -f`: the existing entries, then new ones as the monitor
//! appends them, across rotations, until the container stops.
//!
//! Waiting is inotify on the log's directory (registered with tokio's
//! reactor, no polling): a write, create or rename of the log or of its
//! rotated files wakes us. The watch exists before the first read, so no
//! write can fall between reading to the end and starting to wait. Only
//! when the kernel's inotify limits are exhausted do we fall back to
//! re-reading every 200 ms, as dockerd falls back to its poller.
//! Reading happens in batches on tokio's blocking pool, one batch ahead.
//!
//! Rotation: when the live path no longer names the file we are reading,
//! that file is complete (the writer renames only after its last write),
//! so we read it to its end once more through our still-open descriptor,
//! then look for the files that came after it: the rotated ones newer
//! than it (found by inode among `.1`, `.2`, ...) and the new live file.
//! Only a file both created and dropped between two of our wake-ups can be
//! missed (dockerd has the same window).

use std::future::Future;
use std::io;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::{Stream as FuturesStream, StreamExt};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::time::Instant;

use super::reader::{file_id, for_each_rotated, open_file, Cursor, FileId, ReadOptions, Step};
use crate::logs::{now_nanos, LogEntry, LogError};

/// Most entries handed over per trip to the blocking pool.
const BATCH_ENTRIES: usize = 4096;
/// Most `log` bytes per trip.
const BATCH_BYTES: usize = 1 << 20;

/// Streams the log at `path`: the entries `opts` selects, then, if
/// `opts.follow`, new ones as they are written, until `stop` completes
/// (then what is left in the files is still sent), `opts.until` passes,
/// or the log's directory is removed.
///
/// `stop` is any future that completes when the container has stopped
/// and its monitor has flushed the log, e.g.
/// `token.clone().cancelled_owned()` for a
/// `tokio_util::sync::CancellationToken`, or
/// `async move { let _ = rx.wait_for(|stopped| *stopped).await; }` for a
/// `tokio::sync::watch::Receiver<bool>`. For a container that is not
/// running, pass `std::future::ready(())`.
///
/// Nothing happens until the stream is first polled (then `tail=0`
/// starts from the end as it is at that moment). Errors (unreadable
/// files) are yielded once and end the stream; the logs endpoint shows
/// them as dockerd does ("Error grabbing logs: ...", see
/// [`crate::logs::format`]). Dropping the stream stops everything.
pub fn stream<F>(
    path: impl Into<PathBuf>,
    opts: ReadOptions,
    stop: F,
) -> impl FuturesStream<Item = Result<LogEntry, LogError>> + Send + 'static
where
    F: Future<Output = ()> + Send + 'static,
{
    stream_batches(path, opts, stop, |batch| batch).flat_map(|item| {
        let items: Vec<Result<LogEntry, LogError>> = match item {
            Ok(batch) => batch.into_iter().map(Ok).collect(),
            Err(e) => vec![Err(e)],
        };
        futures::stream::iter(items)
    })
}

/// [`stream`] by batches, each turned into a `T` by `map` on tokio's
/// blocking pool (where the files are read): the logs body encodes its
/// bytes there, off the async threads. Batches are never empty.
pub fn stream_batches<F, M, T>(
    path: impl Into<PathBuf>,
    opts: ReadOptions,
    stop: F,
    map: M,
) -> impl FuturesStream<Item = Result<T, LogError>> + Send + 'static
where
    F: Future<Output = ()> + Send + 'static,
    M: FnMut(Vec<LogEntry>) -> T + Send + 'static,
    T: Send + 'static,
{
    let path = path.into();
    async_stream::stream! {
        let follow = opts.follow;
        let watcher = if follow {
            match DirWatcher::new(&path) {
                Ok(w) => Some(w),
                Err(e) => {
                    yield Err(e);
                    return;
                }
            }
        } else {
            None
        };
        let opened = {
            let (path, opts) = (path.clone(), opts.clone());
            blocking(move || Cursor::open(&path, &opts).map(Follower::new)).await
        };
        let state = match opened.and_then(|r| r) {
            Ok(s) => s,
            Err(e) => {
                yield Err(e);
                return;
            }
        };
        let mut stop = Box::pin(stop);
        // After `until` no entry can match: stop waiting then.
        let deadline = opts.until.map(|u| {
            let ahead = u.saturating_sub(now_nanos()).max(0);
            Instant::now() + Duration::from_nanos(ahead as u64)
        });
        let mut stopping = !follow;
        // While a full batch is being sent, the next one is already read
        // (one batch ahead at most).
        let mut parked = Some((state, map));
        let mut inflight = None;
        loop {
            if inflight.is_none() {
                if let Some((s, m)) = parked.take() {
                    inflight = Some(spawn_batch(s, m, follow));
                }
            }
            let Some(handle) = inflight.take() else {
                return;
            };
            let (s, m, mapped, end) = match handle.await {
                Ok(r) => r,
                Err(e) => {
                    yield Err(LogError::Task(e.to_string()));
                    return;
                }
            };
            if matches!(end, BatchEnd::More) {
                inflight = Some(spawn_batch(s, m, follow));
            } else {
                parked = Some((s, m));
            }
            if let Some(t) = mapped {
                yield Ok(t);
            }
            match end {
                BatchEnd::More => continue,
                BatchEnd::Done => return,
                BatchEnd::Failed(e) => {
                    yield Err(e);
                    return;
                }
                BatchEnd::CaughtUp => {}
            }
            if stopping {
                return; // drained after the stop: done
            }
            let Some(w) = watcher.as_ref() else {
                return;
            };
            let wake = tokio::select! {
                _ = &mut stop => Ok(Wake::Stop),
                _ = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => Ok(Wake::Stop),
                w = w.wait() => w,
            };
            match wake {
                Ok(Wake::Changed) => {}
                Ok(Wake::Stop) | Ok(Wake::Gone) => stopping = true,
                Err(e) => {
                    yield Err(e);
                    return;
                }
            }
        }
    }
}

/// [`stream`] with `follow` forced on.
pub fn follow<F>(
    path: impl Into<PathBuf>,
    opts: ReadOptions,
    stop: F,
) -> impl FuturesStream<Item = Result<LogEntry, LogError>> + Send + 'static
where
    F: Future<Output = ()> + Send + 'static,
{
    stream(
        path,
        ReadOptions {
            follow: true,
            ..opts
        },
        stop,
    )
}

/// Reads (and maps) one batch on the blocking pool.
fn spawn_batch<M, T>(
    mut state: Follower,
    mut map: M,
    follow: bool,
) -> tokio::task::JoinHandle<(Follower, M, Option<T>, BatchEnd)>
where
    M: FnMut(Vec<LogEntry>) -> T + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(move || {
        let (batch, end) = state.read_batch(follow);
        let mapped = (!batch.is_empty()).then(|| map(batch));
        (state, map, mapped, end)
    })
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, LogError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| LogError::Task(e.to_string()))
}

enum BatchEnd {
    /// The batch is full; there may be more right away.
    More,
    /// At the end of the newest file.
    CaughtUp,
    /// `until` passed, or everything read without following.
    Done,
    Failed(LogError),
}

/// The cursor plus rotation tracking; lives on the blocking pool between
/// batches.
struct Follower {
    cursor: Cursor,
    /// The live path named another file at the last check: read ours to
    /// its end once more before switching.
    rotation_seen: bool,
}

enum Check {
    /// Something changed: read again now.
    Retry,
    /// Nothing to read until the next wake-up.
    Wait,
    /// The log's directory is gone: nothing will ever come.
    Gone,
}

impl Follower {
    fn new(cursor: Cursor) -> Follower {
        Follower {
            cursor,
            rotation_seen: false,
        }
    }

    fn read_batch(&mut self, follow: bool) -> (Vec<LogEntry>, BatchEnd) {
        let mut out = Vec::new();
        let mut bytes = 0;
        loop {
            if out.len() >= BATCH_ENTRIES || bytes >= BATCH_BYTES {
                return (out, BatchEnd::More);
            }
            match self.cursor.step() {
                Ok(Step::Entry(e)) => {
                    bytes += e.line.len();
                    out.push(e);
                }
                Ok(Step::Done) => return (out, BatchEnd::Done),
                Ok(Step::Eof) if !follow => return (out, BatchEnd::Done),
                Ok(Step::Eof) => match self.check_rotation() {
                    Ok(Check::Retry) => {}
                    Ok(Check::Wait) => return (out, BatchEnd::CaughtUp),
                    Ok(Check::Gone) => return (out, BatchEnd::Done),
                    Err(e) => {
                        let e = LogError::io(
                            format!("follow log file {}", self.cursor.path.display()),
                            e,
                        );
                        return (out, BatchEnd::Failed(e));
                    }
                },
                Err(e) => return (out, BatchEnd::Failed(e)),
            }
        }
    }

    /// At the end of everything we hold: has the live path moved on?
    fn check_rotation(&mut self) -> io::Result<Check> {
        let c = &mut self.cursor;
        let live = match std::fs::metadata(&c.path) {
            Ok(m) => Some(file_id(&m)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let ours = c.segments.back().map(|s| s.id);
        if live.is_some() && live == ours {
            self.rotation_seen = false;
            return Ok(if c.restart_if_truncated()? {
                Check::Retry
            } else {
                Check::Wait
            });
        }
        if live.is_none() && ours.is_none() {
            return dir_gone(&c.path);
        }
        if !self.rotation_seen {
            self.rotation_seen = true;
            return Ok(Check::Retry);
        }
        if live.is_none() {
            // Renamed and not yet recreated, or the container is removed
            // (the directory's own inotify event waits until we close the
            // deleted file, which pins it: look instead).
            return dir_gone(&c.path);
        }
        self.rotation_seen = false;
        let anchor = ours.or(c.newest_known);
        let next = successors(&c.path, anchor)?;
        if let Some(old) = c.segments.pop_back() {
            c.newest_known = Some(old.id);
        }
        c.reset_line();
        if let Some((_, id)) = next.last() {
            c.newest_known = Some(*id);
        }
        c.push_files(next)?;
        Ok(Check::Retry)
    }
}

/// `Gone` if the log's directory no longer exists, else `Wait`.
fn dir_gone(path: &Path) -> io::Result<Check> {
    match std::fs::metadata(log_dir(path)) {
        Ok(_) => Ok(Check::Wait),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Check::Gone),
        Err(e) => Err(e),
    }
}

/// The files written after `anchor`, oldest first: the rotated files newer
/// than it, then the live one. If `anchor` is gone (dropped as the oldest,
/// or unlinked with `max-file=1`) every rotated file is newer than it.
fn successors(path: &Path, anchor: Option<FileId>) -> io::Result<Vec<(std::fs::File, FileId)>> {
    let live = open_file(path)?;
    let mut newer = Vec::new();
    for_each_rotated(path, |(f, id, _)| {
        if Some(id) == anchor {
            return false;
        }
        if !newer.iter().any(|(_, i)| *i == id) {
            newer.push((f, id));
        }
        true
    })?;
    newer.reverse();
    if let Some((f, id, _)) = live {
        if Some(id) != anchor && !newer.iter().any(|(_, i)| *i == id) {
            newer.push((f, id));
        }
    }
    Ok(newer)
}

/// The inotify descriptor, for tokio's reactor.
struct InotifyFd(Inotify);

impl AsRawFd for InotifyFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

enum Wake {
    /// The log or a rotated file changed.
    Changed,
    /// The directory is gone (container removed).
    Gone,
    /// Told to stop, or `until` passed.
    Stop,
}

/// Re-reads of a log whose directory could not be watched.
const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// An inotify watch on the log's directory, filtered to the log's files;
/// or, when the kernel's inotify limits are reached (`max_user_instances`
/// is 128 by default), a timer, as dockerd falls back to its file poller.
enum DirWatcher {
    Inotify {
        fd: AsyncFd<InotifyFd>,
        name: Vec<u8>,
    },
    Poll,
}

/// The directory holding the log.
fn log_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

impl DirWatcher {
    fn new(path: &Path) -> Result<DirWatcher, LogError> {
        let ctx = |e: io::Error| LogError::io(format!("watch log file {}", path.display()), e);
        let name = path
            .file_name()
            .ok_or_else(|| ctx(io::Error::new(io::ErrorKind::InvalidInput, "no file name")))?
            .as_encoded_bytes()
            .to_vec();
        let watched =
            Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC).and_then(|ino| {
                ino.add_watch(
                    log_dir(path),
                    AddWatchFlags::IN_MODIFY
                        | AddWatchFlags::IN_CREATE
                        | AddWatchFlags::IN_MOVED_FROM
                        | AddWatchFlags::IN_MOVED_TO
                        | AddWatchFlags::IN_DELETE
                        | AddWatchFlags::IN_DELETE_SELF
                        | AddWatchFlags::IN_MOVE_SELF
                        | AddWatchFlags::IN_ONLYDIR,
                )
                .map(|_| ino)
            });
        let ino = match watched {
            Ok(ino) => ino,
            Err(
                e @ (nix::errno::Errno::EMFILE
                | nix::errno::Errno::ENFILE
                | nix::errno::Errno::ENOSPC),
            ) => {
                tracing::warn!(path = %path.display(), error = %e, "inotify limit reached, polling the log file");
                return Ok(DirWatcher::Poll);
            }
            Err(e) => return Err(ctx(e.into())),
        };
        // SAFETY: `Inotify` owns its descriptor (an `OwnedFd`), so it stays
        // open, and `as_raw_fd` returns it unchanged, for as long as the
        // `AsyncFd` owns the `InotifyFd`.
        let fd = unsafe { AsyncFd::register_with_interest(InotifyFd(ino), Interest::READABLE) }
            .map_err(|e| ctx(e.into()))?;
        Ok(DirWatcher::Inotify { fd, name })
    }

    async fn wait(&self) -> Result<Wake, LogError> {
        let (fd, name) = match self {
            DirWatcher::Inotify { fd, name } => (fd, name),
            DirWatcher::Poll => {
                tokio::time::sleep(POLL_INTERVAL).await;
                return Ok(Wake::Changed);
            }
        };
        // `<name>` itself or `<name>.<anything>`.
        let concerns = |file: &[u8]| {
            file.strip_prefix(&name[..])
                .is_some_and(|rest| rest.is_empty() || rest[0] == b'.')
        };
        let ctx = |e: io::Error| LogError::io("read inotify events", e);
        loop {
            let mut guard = fd.readable().await.map_err(ctx)?;
            let events =
                match guard.try_io(|fd| fd.get_ref().0.read_events().map_err(io::Error::from)) {
                    Ok(Ok(events)) => events,
                    Ok(Err(e)) => return Err(ctx(e)),
                    Err(_would_block) => continue,
                };
            let mut changed = false;
            for ev in events {
                if ev.mask.intersects(
                    AddWatchFlags::IN_DELETE_SELF
                        | AddWatchFlags::IN_MOVE_SELF
                        | AddWatchFlags::IN_IGNORED
                        | AddWatchFlags::IN_UNMOUNT,
                ) {
                    return Ok(Wake::Gone);
                }
                if ev.mask.contains(AddWatchFlags::IN_Q_OVERFLOW) {
                    changed = true;
                }
                if let Some(n) = &ev.name {
                    changed |= concerns(n.as_encoded_bytes());
                }
            }
            if changed {
                return Ok(Wake::Changed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::jsonfile::{JsonFileWriter, LogOpts, LogReader};
    use crate::logs::Stream;
    use futures::StreamExt;
    use std::pin::Pin;
    use tokio_util::sync::CancellationToken;

    type Entries = Pin<Box<dyn FuturesStream<Item = Result<LogEntry, LogError>> + Send>>;

    const LIMIT: Duration = Duration::from_secs(20);

    fn text(e: &LogEntry) -> String {
        String::from_utf8(e.line.clone())
            .unwrap()
            .trim_end()
            .to_string()
    }

    async fn take(s: &mut Entries, n: usize) -> Vec<String> {
        let mut out = Vec::new();
        while out.len() < n {
            let e = tokio::time::timeout(LIMIT, s.next())
                .await
                .expect("timed out waiting for a log entry")
                .expect("stream ended early")
                .unwrap();
            out.push(text(&e));
        }
        out
    }

    async fn rest(s: &mut Entries) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(e) = tokio::time::timeout(LIMIT, s.next())
            .await
            .expect("stream did not end")
        {
            out.push(text(&e.unwrap()));
        }
        out
    }

    fn nums(range: std::ops::Range<usize>) -> Vec<String> {
        range.map(|i| format!("line {i}")).collect()
    }

    fn write_lines(w: &mut JsonFileWriter, range: std::ops::Range<usize>) {
        for i in range {
            w.write(
                Stream::Stdout,
                format!("line {i}\n").as_bytes(),
                now_nanos(),
            )
            .unwrap();
        }
    }

    /// Runs `s` in its own task, as the API's body would be polled, so it
    /// starts before the test's next write.
    fn eager(s: impl FuturesStream<Item = Result<LogEntry, LogError>> + Send + 'static) -> Entries {
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        tokio::spawn(async move {
            let mut s = Box::pin(s);
            while let Some(e) = s.next().await {
                if tx.send(e).await.is_err() {
                    break;
                }
            }
        });
        Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
    }

    fn start(path: &Path, opts: ReadOptions, token: &CancellationToken) -> Entries {
        eager(follow(path, opts, token.clone().cancelled_owned()))
    }

    #[tokio::test]
    async fn follows_appended_lines_then_ends_when_told() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c-json.log");
        let mut w = JsonFileWriter::open(&path, LogOpts::default()).unwrap();
        write_lines(&mut w, 0..5);
        let token = CancellationToken::new();
        let mut s = start(&path, ReadOptions::default(), &token);
        assert_eq!(take(&mut s, 5).await, nums(0..5));
        let writer = std::thread::spawn(move || {
            for i in 5..50 {
                write_lines(&mut w, i..i + 1);
                std::thread::sleep(Duration::from_millis(2));
            }
            w
        });
        assert_eq!(take(&mut s, 45).await, nums(5..50));
        let mut w = writer.join().unwrap();
        // Lines written before the stop are still delivered.
        write_lines(&mut w, 50..53);
        token.cancel();
        assert_eq!(rest(&mut s).await, nums(50..53));
    }

    #[tokio::test]
    async fn stop_first_still_drains_everything() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c-json.log");
        let mut w = JsonFileWriter::open(&path, LogOpts::default()).unwrap();
        write_lines(&mut w, 0..3000);
        let token = CancellationToken::new();
        token.cancel();
        let mut s = start(&path, ReadOptions::default(), &token);
        assert_eq!(rest(&mut s).await, nums(0..3000));
    }

    async fn follow_through_rotation(max_file: u32) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c-json.log");
        // About 20 entries per file, written over ~10 ms: a follower that
        // falls more than a file behind (max-file=1) loses lines, by
        // design as with dockerd, so give it room on a busy machine.
        let opts = LogOpts {
            max_size: Some(1500),
            max_file,
            ..LogOpts::default()
        };
        let mut w = JsonFileWriter::open(&path, opts).unwrap();
        write_lines(&mut w, 0..2);
        let token = CancellationToken::new();
        let mut s = start(&path, ReadOptions::default(), &token);
        assert_eq!(take(&mut s, 2).await, nums(0..2));
        let writer = std::thread::spawn(move || {
            for i in 2..300 {
                write_lines(&mut w, i..i + 1);
                std::thread::sleep(Duration::from_micros(500));
            }
        });
        assert_eq!(take(&mut s, 298).await, nums(2..300));
        writer.join().unwrap();
        assert_eq!(
            super::super::reader::numbered(&path, 1).exists(),
            max_file > 1
        );
        token.cancel();
        assert!(rest(&mut s).await.is_empty());
    }

    #[tokio::test]
    async fn follow_survives_rotation() {
        follow_through_rotation(3).await;
    }

    #[tokio::test]
    async fn follow_survives_max_file_one() {
        follow_through_rotation(1).await;
    }

    #[tokio::test]
    async fn rotation_between_wakeups_loses_nothing() {
        // Several rotations while the follower is not looking: it finds
        // the files after its own by inode.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c-json.log");
        let opts = LogOpts {
            max_size: Some(300),
            max_file: 10,
            ..LogOpts::default()
        };
        let mut w = JsonFileWriter::open(&path, opts).unwrap();
        write_lines(&mut w, 0..2);
        let token = CancellationToken::new();
        let mut s = start(&path, ReadOptions::default(), &token);
        assert_eq!(take(&mut s, 2).await, nums(0..2));
        write_lines(&mut w, 2..20); // ~6 rotations in one go
        assert_eq!(take(&mut s, 18).await, nums(2..20));
        token.cancel();
        assert!(rest(&mut s).await.is_empty());
    }

    #[tokio::test]
    async fn tail_zero_follows_only_new_lines_and_watch_stops() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c-json.log");
        let mut w = JsonFileWriter::open(&path, LogOpts::default()).unwrap();
        write_lines(&mut w, 0..10);
        let (tx, mut rx) = tokio::sync::watch::channel(false);
        let opts = ReadOptions {
            tail: Some(0),
            ..ReadOptions::default()
        };
        let stop = async move {
            let _ = rx.wait_for(|stopped| *stopped).await;
        };
        let mut s = eager(follow(&path, opts, stop));
        // Give the follower time to reach the end before writing.
        tokio::time::sleep(Duration::from_millis(50)).await;
        write_lines(&mut w, 10..12);
        assert_eq!(take(&mut s, 2).await, nums(10..12));
        tx.send(true).unwrap();
        assert!(rest(&mut s).await.is_empty());
    }

    #[tokio::test]
    async fn waits_for_the_file_to_appear() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c-json.log");
        let token = CancellationToken::new();
        let mut s = start(&path, ReadOptions::default(), &token);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut w = JsonFileWriter::open(&path, LogOpts::default()).unwrap();
        write_lines(&mut w, 0..3);
        assert_eq!(take(&mut s, 3).await, nums(0..3));
        token.cancel();
        assert!(rest(&mut s).await.is_empty());
    }

    #[tokio::test]
    async fn until_in_the_future_ends_the_follow() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c-json.log");
        let mut w = JsonFileWriter::open(&path, LogOpts::default()).unwrap();
        write_lines(&mut w, 0..2);
        let token = CancellationToken::new();
        let opts = ReadOptions {
            until: Some(now_nanos() + 200_000_000),
            ..ReadOptions::default()
        };
        let mut s = start(&path, opts, &token);
        let started = std::time::Instant::now();
        assert_eq!(rest(&mut s).await, nums(0..2));
        assert!(started.elapsed() >= Duration::from_millis(150));
    }

    #[tokio::test]
    async fn unterminated_line_waits_for_its_end() {
        // A reader can see half of an entry being appended: it must wait
        // for the rest, not drop or mangle it.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c-json.log");
        let full = "{\"log\":\"x\\n\",\"stream\":\"stderr\",\"time\":\"2026-11-27T22:44:30Z\"}\n";
        std::fs::write(&path, &full[..20]).unwrap();
        let token = CancellationToken::new();
        let mut s = start(&path, ReadOptions::default(), &token);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        std::io::Write::write_all(&mut f, &full.as_bytes()[20..]).unwrap();
        let e = tokio::time::timeout(LIMIT, s.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(e.stream, Stream::Stderr);
        assert_eq!(e.line, b"x\n");
        token.cancel();
        assert!(rest(&mut s).await.is_empty());
    }

    #[tokio::test]
    async fn without_follow_matches_the_blocking_reader() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c-json.log");
        let opts = LogOpts {
            max_size: Some(1000),
            max_file: 5,
            ..LogOpts::default()
        };
        let mut w = JsonFileWriter::open(&path, opts).unwrap();
        write_lines(&mut w, 0..2500);
        let ro = ReadOptions {
            tail: Some(40),
            ..ReadOptions::default()
        };
        let expected: Vec<String> = LogReader::open(&path, &ro)
            .unwrap()
            .map(|e| text(&e.unwrap()))
            .collect();
        assert_eq!(expected.len(), 40);
        // Never stops by itself: the stream must end on its own.
        let mut s: Entries = Box::pin(stream(&path, ro, std::future::pending()));
        assert_eq!(rest(&mut s).await, expected);
    }

    #[tokio::test]
    async fn removed_directory_ends_the_follow() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("container");
        std::fs::create_dir(&sub).unwrap();
        let path = sub.join("c-json.log");
        let mut w = JsonFileWriter::open(&path, LogOpts::default()).unwrap();
        write_lines(&mut w, 0..1);
        drop(w);
        let mut s = eager(follow(
            &path,
            ReadOptions::default(),
            std::future::pending(),
        ));
        assert_eq!(take(&mut s, 1).await, nums(0..1));
        std::fs::remove_dir_all(&sub).unwrap();
        assert!(rest(&mut s).await.is_empty());
    }
}
