//! The per-container monitor: `mydockerd __monitor <bundle>`.
//!
//! It detaches from the daemon (new session, then a fork whose parent
//! exits at once, so the daemon can die without taking it along), clones
//! the container's init into new namespaces, reports the start on the
//! ready pipe, then serves one single-threaded `poll` loop: container
//! output into the json-file log, SIGCHLD through a signalfd, control
//! requests on `<bundle>/monitor.sock`. When the init exits and its output
//! is drained it writes the final `state.json` and exits; the control
//! connections closing is the daemon's exit notification.
//!
//! An `attach` request turns a control connection into a stream: the
//! container's output (stdcopy-framed without a TTY, raw with one) goes
//! to it from then on, and what the client sends goes to the container's
//! stdin. Output sent before the attach is only in the log.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sched::CloneFlags;
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{ForkResult, Pid};
use thiserror::Error;

use super::cgroups::{self, CgroupManager};
use super::clone_into_cgroup::{fork_into_cgroup, Forked};
use super::init::container_init;
use super::process::{InitFailure, EXIT_START_FAILED};
use super::protocol::{
    Attach, Ready, Request, Response, MONITOR_LOG_FILE, PID_FILE, READY_FD_ENV, SOCKET_FILE,
};
use super::pty::{receive_master, ChildIo};
use super::spec::{ContainerSpec, NetworkNs};
use super::state::{now_rfc3339, State, Status};
use crate::logs::stdcopy::{self, StreamId};
use crate::logs::{now_nanos, JsonFileWriter, LogOpts, Stream};

/// The first argument that turns `mydockerd` into a monitor.
pub const MONITOR_ARG: &str = "__monitor";

/// How long output is still drained after the init exited (its pipes may be
/// held a moment longer by processes the kernel is killing).
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

/// Stack of the cloned init; only the touched pages cost memory.
const INIT_STACK: usize = 2 << 20;

#[derive(Debug, Error)]
pub(super) enum MonitorError {
    #[error(transparent)]
    Spec(#[from] super::spec::SpecError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    #[error("{context}: {errno}")]
    Sys { context: String, errno: Errno },
    #[error("{0}")]
    Cgroup(String),
    #[error("open log: {0}")]
    Log(#[from] crate::logs::LogError),
}

pub(super) fn io_ctx(context: impl Into<String>) -> impl FnOnce(io::Error) -> MonitorError {
    let context = context.into();
    move |source| MonitorError::Io { context, source }
}

pub(super) fn sys_ctx(context: impl Into<String>) -> impl FnOnce(Errno) -> MonitorError {
    let context = context.into();
    move |errno| MonitorError::Sys { context, errno }
}

/// If this process was started as `<exe> __monitor <bundle>`, runs the
/// monitor and never returns. Call it first thing in `main`, before any
/// thread (tokio) exists.
pub fn maybe_run_monitor_from_args() {
    let mut args = std::env::args_os().skip(1);
    let Some(which) = args.next() else { return };
    let run: fn(&Path) -> ! = if which == MONITOR_ARG {
        run_monitor
    } else if which == super::exec_monitor::EXEC_ARG {
        super::exec_monitor::run_exec_monitor
    } else {
        return;
    };
    match args.next() {
        Some(dir) => run(Path::new(&dir)),
        None => {
            eprintln!("usage: mydockerd {} <dir>", which.to_string_lossy());
            std::process::exit(2)
        }
    }
}

/// The monitor's entry point (see the module docs).
pub fn run_monitor(bundle: &Path) -> ! {
    let ready = detach_from_daemon();
    let code = match Monitor::run(bundle, ready) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("monitor {}: {e}", bundle.display());
            1
        }
    };
    std::process::exit(code)
}

/// Takes the ready pipe, then leaves the daemon behind: a new session, then
/// a fork. The monitor is no session leader (it can never get a
/// controlling terminal) and its parent exits now, so it is re-parented
/// away from the daemon. Must run before any thread exists.
pub(super) fn detach_from_daemon() -> Option<File> {
    let ready = take_ready_fd();
    let _ = nix::unistd::setsid();
    // SAFETY: the monitor is single-threaded (called before any thread).
    match unsafe { nix::unistd::fork() } {
        Ok(ForkResult::Parent { .. }) => {
            // SAFETY: _exit skips destructors that belong to the child now.
            unsafe { libc::_exit(0) }
        }
        Ok(ForkResult::Child) => ready,
        Err(e) => {
            report(ready, &failure_ready(format!("monitor fork: {e}")));
            std::process::exit(1)
        }
    }
}

/// The ready pipe named by [`READY_FD_ENV`], if any; the variable is
/// removed so the container never sees it.
fn take_ready_fd() -> Option<File> {
    let fd: RawFd = std::env::var(READY_FD_ENV).ok()?.parse().ok()?;
    std::env::remove_var(READY_FD_ENV);
    // SAFETY: F_GETFD probes whether the fd is open before we own it.
    if fd < 3 || unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return None;
    }
    // SAFETY: the daemon passed us this open fd for our exclusive use.
    let f = unsafe { File::from_raw_fd(fd) };
    // Keep it out of the container.
    // SAFETY: setting FD_CLOEXEC on our own fd.
    unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    Some(f)
}

pub(super) fn failure_ready(error: String) -> Ready {
    Ready {
        pid: 0,
        error,
        exit_code: EXIT_START_FAILED,
    }
}

pub(super) fn report(ready: Option<File>, msg: &Ready) {
    if let (Some(mut f), Ok(mut line)) = (ready, serde_json::to_vec(msg)) {
        line.push(b'\n');
        let _ = f.write_all(&line);
    }
}

/// One output stream of the container (the pty master counts as stdout).
struct Output {
    fd: OwnedFd,
    stream: Stream,
}

/// Most output an attached client may lag behind before it is dropped:
/// a slow reader never slows the container.
const MAX_CLIENT_BACKLOG: usize = 1 << 20;

/// Most stdin buffered for a container that does not read it; beyond it
/// attached clients are not read (back-pressure on the writer).
const MAX_STDIN_BACKLOG: usize = 64 * 1024;

/// A control connection.
pub(super) struct Client {
    pub(super) stream: UnixStream,
    /// Unparsed request bytes (control mode).
    pub(super) buf: Vec<u8>,
    /// Set once the client asked to attach: it now streams.
    pub(super) attach: Option<Attach>,
    /// Output not yet written to an attached client.
    pub(super) out: Vec<u8>,
    /// The client half-closed its side.
    pub(super) read_closed: bool,
}

impl Client {
    pub(super) fn new(stream: UnixStream) -> Client {
        Client {
            stream,
            buf: Vec::new(),
            attach: None,
            out: Vec::new(),
            read_closed: false,
        }
    }

    /// The next complete request line, if one is buffered; `Err(())` when
    /// the buffer holds junk too long to be a request.
    pub(super) fn next_request(&mut self) -> Result<Option<Result<Request, String>>, ()> {
        let Some(nl) = self.buf.iter().position(|&b| b == b'\n') else {
            // A request never exceeds this; anything longer is junk.
            return if self.buf.len() <= 64 * 1024 {
                Ok(None)
            } else {
                Err(())
            };
        };
        let line: Vec<u8> = self.buf.drain(..=nl).collect();
        Ok(Some(
            serde_json::from_slice::<Request>(&line).map_err(|e| format!("bad request: {e}")),
        ))
    }

    /// Queues `resp` ahead of any attached output and flushes; false if
    /// the client is gone.
    pub(super) fn reply(&mut self, resp: &Response) -> bool {
        if let Ok(mut bytes) = serde_json::to_vec(resp) {
            bytes.push(b'\n');
            self.out.splice(0..0, bytes);
            return self.flush();
        }
        true
    }

    /// Writes what is pending without blocking; false if the client is
    /// broken or too far behind.
    pub(super) fn flush(&mut self) -> bool {
        while !self.out.is_empty() {
            match self.stream.write(&self.out) {
                Ok(0) => return false,
                Ok(n) => {
                    self.out.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
        self.out.len() <= MAX_CLIENT_BACKLOG
    }
}

struct Monitor {
    bundle: PathBuf,
    state: State,
    pid: Pid,
    outputs: Vec<Output>,
    /// The pty master, for resizes (also among `outputs` while open).
    pty: Option<RawFd>,
    /// The write end of the container's stdin pipe (`OpenStdin` without
    /// TTY); kept open so that reads block rather than see EOF.
    stdin: Option<OwnedFd>,
    /// TTY with `OpenStdin`: attached input goes to the pty master.
    tty_stdin: bool,
    /// Attached input not yet taken by the container.
    stdin_buf: Vec<u8>,
    /// Close the container's stdin once `stdin_buf` is written.
    close_stdin: bool,
    tty: bool,
    log: Option<JsonFileWriter>,
    listener: UnixListener,
    clients: Vec<Client>,
    sigfd: SignalFd,
    cgroup: Option<Box<dyn CgroupManager>>,
}

impl Monitor {
    fn run(bundle: &Path, ready: Option<File>) -> Result<(), MonitorError> {
        let mut state = State {
            monitor_pid: std::process::id() as i32,
            ..Default::default()
        };
        let spec = match ContainerSpec::load(bundle) {
            Ok(s) => s,
            Err(e) => {
                fail_early(bundle, &mut state, ready, e.to_string());
                return Err(e.into());
            }
        };
        match Monitor::start(bundle, spec, state.clone(), ready) {
            Ok(Some(mut m)) => m.serve(),
            Ok(None) => Ok(()),
            Err((e, ready)) => {
                fail_early(bundle, &mut state, ready, e.to_string());
                Err(e)
            }
        }
    }

    /// Sets everything up and starts the container. `Ok(None)`: the init
    /// failed and the failure is recorded and reported.
    fn start(
        bundle: &Path,
        spec: ContainerSpec,
        mut state: State,
        ready: Option<File>,
    ) -> Result<Option<Monitor>, (MonitorError, Option<File>)> {
        macro_rules! tri {
            ($e:expr) => {
                match $e {
                    Ok(v) => v,
                    Err(e) => return Err((e.into(), ready)),
                }
            };
        }
        tri!(redirect_stdio(bundle));
        tri!(
            fs::write(bundle.join(PID_FILE), state.monitor_pid.to_string())
                .map_err(io_ctx("write monitor.pid"))
        );
        tri!(state.save(bundle).map_err(io_ctx("write state")));

        let mut mask = SigSet::empty();
        mask.add(Signal::SIGCHLD);
        tri!(mask.thread_set_mask().map_err(sys_ctx("block SIGCHLD")));
        let sigfd = tri!(SignalFd::with_flags(
            &mask,
            SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC
        )
        .map_err(sys_ctx("signalfd")));

        let (io, mut outputs, pty_sock, stdin, child_fds) = tri!(make_stdio(&spec));
        let (sync_r, sync_w) = tri!(nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(sys_ctx("pipe")));
        let listener = tri!(bind_socket(bundle));
        let log = match &spec.log {
            Some(l) => {
                let opts = LogOpts {
                    max_size: l.max_size,
                    max_file: l.max_file.unwrap_or(1),
                    ..LogOpts::default()
                };
                Some(tri!(JsonFileWriter::open(&l.path, opts)))
            }
            None => None,
        };
        let cgroup = match &spec.cgroup {
            Some(c) => Some(tri!(cgroups::manager_for(&c.root, &c.path)
                .map_err(|e| MonitorError::Cgroup(e.to_string())))),
            None => None,
        };
        let (go_r, go_w) = tri!(nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(sys_ctx("pipe")));

        let mut flags = CloneFlags::CLONE_NEWPID
            | CloneFlags::CLONE_NEWNS
            | CloneFlags::CLONE_NEWUTS
            | CloneFlags::CLONE_NEWIPC;
        if spec.network == NetworkNs::New {
            flags |= CloneFlags::CLONE_NEWNET;
        }
        let sync_fd = sync_w.as_fd();
        let go_fd = go_r.as_fd();
        let (pid, joined) = tri!(clone_init(
            &spec,
            &io,
            cgroup.as_deref(),
            flags,
            go_fd,
            sync_fd
        ));
        // Our copies of the container's ends: without closing them we would
        // never see EOF on its output.
        drop(child_fds);
        drop(sync_w);
        drop(go_r);
        if let Some(cg) = cgroup.as_ref().filter(|_| !joined) {
            if let Err(e) = cg.add_task(pid.as_raw()) {
                // Closing `go` without a byte makes the init give up.
                drop(go_w);
                let _ = waitpid(pid, None);
                return Err((MonitorError::Cgroup(format!("join cgroup: {e}")), ready));
            }
        }
        tri!(nix::unistd::write(&go_w, b"g").map_err(sys_ctx("start init")));
        drop(go_w);
        // TTY: the master arrives before the init execs (EOF if it failed
        // first; its failure then comes on the sync pipe).
        let mut pty = None;
        let mut no_master = false;
        if let Some(sock) = pty_sock {
            match receive_master(&sock) {
                Some(master) => {
                    tri!(set_flags(&master));
                    pty = Some(master.as_raw_fd());
                    outputs.push(Output {
                        fd: master,
                        stream: Stream::Stdout,
                    });
                }
                None => no_master = true,
            }
        }

        let mut failure = read_failure(sync_r);
        if failure.is_none() && no_master {
            // It ran without sending a terminal: not a container we start.
            let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
            failure = Some(InitFailure {
                message: "container init sent no pty master".into(),
                exit_code: EXIT_START_FAILED,
            });
        }
        state.pid = pid.as_raw();
        if let Some(failure) = failure {
            // The init reported and exited: reap it.
            let _ = waitpid(pid, None);
            state.status = Status::Exited;
            state.exit_code = failure.exit_code;
            state.error = failure.message.clone();
            state.finished_at = now_rfc3339();
            state.pid = 0;
            if let Err(e) = state.save(bundle) {
                eprintln!("monitor: write state: {e}");
            }
            drop(listener);
            let _ = fs::remove_file(bundle.join(SOCKET_FILE));
            report(
                ready,
                &Ready {
                    pid: 0,
                    error: failure.message,
                    exit_code: failure.exit_code,
                },
            );
            return Ok(None);
        }
        state.status = Status::Running;
        state.started_at = now_rfc3339();
        if let Err(e) = state.save(bundle) {
            eprintln!("monitor: write state: {e}");
        }
        report(
            ready,
            &Ready {
                pid: pid.as_raw(),
                ..Default::default()
            },
        );
        Ok(Some(Monitor {
            bundle: bundle.to_path_buf(),
            state,
            pid,
            outputs,
            pty,
            stdin,
            tty_stdin: spec.process.tty && spec.process.open_stdin,
            stdin_buf: Vec::new(),
            close_stdin: false,
            tty: spec.process.tty,
            log,
            listener,
            clients: Vec::new(),
            sigfd,
            cgroup,
        }))
    }

    /// The poll loop, until the container exited and its output is drained.
    fn serve(&mut self) -> Result<(), MonitorError> {
        let mut drain_deadline: Option<Instant> = None;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            if let Some(deadline) = drain_deadline {
                if self.outputs.is_empty() || Instant::now() >= deadline {
                    break;
                }
            }
            let poll = |fd: RawFd, events: libc::c_short| libc::pollfd {
                fd,
                events,
                revents: 0,
            };
            let mut fds = Vec::with_capacity(3 + self.outputs.len() + self.clients.len());
            fds.push(poll(self.sigfd.as_fd().as_raw_fd(), libc::POLLIN));
            fds.push(poll(self.listener.as_raw_fd(), libc::POLLIN));
            // Slot 2: the container's stdin while input waits for it
            // (fd -1 is ignored by poll).
            let stdin_fd = match self.stdin_target() {
                Some(fd) if !self.stdin_buf.is_empty() => fd,
                _ => -1,
            };
            fds.push(poll(stdin_fd, libc::POLLOUT));
            fds.extend(
                self.outputs
                    .iter()
                    .map(|o| poll(o.fd.as_raw_fd(), libc::POLLIN)),
            );
            let stdin_full = self.stdin_buf.len() >= MAX_STDIN_BACKLOG;
            fds.extend(self.clients.iter().map(|c| {
                let mut ev = 0;
                // Input waits while the container has not taken the last.
                let paused = stdin_full && c.attach.as_ref().is_some_and(|a| a.stdin);
                if !c.read_closed && !paused {
                    ev |= libc::POLLIN;
                }
                if !c.out.is_empty() {
                    ev |= libc::POLLOUT;
                }
                poll(c.stream.as_raw_fd(), ev)
            }));
            let timeout = drain_deadline.map_or(-1, |d| {
                d.saturating_duration_since(Instant::now()).as_millis() as libc::c_int + 1
            });
            // SAFETY: fds is a valid array of pollfd of the given length.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
            if n < 0 {
                let e = Errno::last();
                if e == Errno::EINTR {
                    continue;
                }
                return Err(MonitorError::Sys {
                    context: "poll".into(),
                    errno: e,
                });
            }
            let ready = |i: usize| fds.get(i).is_some_and(|p| p.revents != 0);
            let n_out = self.outputs.len();
            // Output first, so a dying container's last words are logged.
            let mut closed = Vec::new();
            for i in 0..n_out {
                if ready(3 + i) && !self.read_output(i, &mut buf) {
                    closed.push(i);
                }
            }
            if ready(0) && self.reap() {
                drain_deadline = Some(Instant::now() + DRAIN_TIMEOUT);
            }
            if ready(1) {
                self.accept();
            }
            if ready(2) {
                self.flush_stdin();
            }
            let mut gone = Vec::new();
            for i in 0..self.clients.len() {
                if ready(3 + n_out + i) && !self.serve_client(i, &mut buf) {
                    gone.push(i);
                }
            }
            for i in closed.into_iter().rev() {
                let o = self.outputs.remove(i);
                if self.pty == Some(o.fd.as_raw_fd()) {
                    self.pty = None;
                }
                if let Some(log) = &mut self.log {
                    let _ = log.flush_partial(o.stream, now_nanos());
                }
            }
            for i in gone.into_iter().rev() {
                self.clients.remove(i);
            }
        }
        // Let attached clients have the last output before they see EOF.
        for c in &mut self.clients {
            if !c.out.is_empty() && c.stream.set_nonblocking(false).is_ok() {
                let _ = c.stream.set_write_timeout(Some(Duration::from_secs(1)));
                let _ = c.stream.write_all(&c.out);
            }
        }
        self.finish()
    }

    /// Where attached input goes, if the container has an open stdin.
    fn stdin_target(&self) -> Option<RawFd> {
        match &self.stdin {
            Some(fd) => Some(fd.as_raw_fd()),
            None if self.tty_stdin => self.pty,
            None => None,
        }
    }

    /// Writes buffered input to the container without blocking; closes its
    /// stdin once drained if a client asked for it.
    fn flush_stdin(&mut self) {
        let Some(fd) = self.stdin_target() else {
            self.stdin_buf.clear();
            return;
        };
        while !self.stdin_buf.is_empty() {
            // SAFETY: writing from our buffer to an fd we own.
            let r =
                unsafe { libc::write(fd, self.stdin_buf.as_ptr().cast(), self.stdin_buf.len()) };
            match Errno::result(r) {
                Ok(n) => {
                    self.stdin_buf.drain(..n as usize);
                }
                Err(Errno::EINTR) => {}
                Err(Errno::EAGAIN) => return,
                Err(_) => {
                    // The container closed its stdin: input goes nowhere.
                    self.stdin_buf.clear();
                    self.stdin = None;
                }
            }
        }
        if self.close_stdin && !self.tty_stdin {
            self.stdin = None;
        }
    }

    /// Copies container output to the attached clients that want it.
    fn fan_out(&mut self, stream: Stream, bytes: &[u8]) {
        let tty = self.tty;
        for c in &mut self.clients {
            let Some(a) = &c.attach else { continue };
            let wanted = match stream {
                Stream::Stdout => a.stdout,
                Stream::Stderr => a.stderr,
            };
            if !wanted {
                continue;
            }
            if tty {
                c.out.extend_from_slice(bytes);
            } else {
                let id = match stream {
                    Stream::Stdout => StreamId::Stdout,
                    Stream::Stderr => StreamId::Stderr,
                };
                let mut frame = bytes::BytesMut::new();
                stdcopy::encode_into(id, bytes, &mut frame);
                c.out.extend_from_slice(&frame);
            }
            if !c.flush() {
                // Too slow or gone: cut it off rather than wait for it.
                c.attach = None;
                c.read_closed = true;
                c.out.clear();
                let _ = c.stream.shutdown(std::net::Shutdown::Both);
            }
        }
    }

    /// Reads once from output `i`; false at EOF (or EIO: pty closed).
    fn read_output(&mut self, i: usize, buf: &mut [u8]) -> bool {
        let Some(out) = self.outputs.get(i) else {
            return false;
        };
        match nix::unistd::read(&out.fd, buf) {
            Ok(0) => false,
            Ok(n) => {
                let stream = out.stream;
                if let Some(log) = &mut self.log {
                    if let Err(e) = log.write(stream, &buf[..n], now_nanos()) {
                        eprintln!("monitor: log: {e}");
                    }
                }
                self.fan_out(stream, &buf[..n]);
                true
            }
            Err(Errno::EAGAIN) | Err(Errno::EINTR) => true,
            Err(_) => false,
        }
    }

    /// Drains the signalfd and reaps; true once the init has exited.
    fn reap(&mut self) -> bool {
        while let Ok(Some(_)) = self.sigfd.read_signal() {}
        let mut init_exited = false;
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) if pid == self.pid => {
                    self.state.exit_code = code;
                    init_exited = true;
                }
                Ok(WaitStatus::Signaled(pid, sig, _)) if pid == self.pid => {
                    self.state.exit_code = 128 + sig as i32;
                    init_exited = true;
                }
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(_) => {}
            }
        }
        if init_exited {
            self.state.finished_at = now_rfc3339();
            self.state.status = Status::Exited;
        }
        init_exited
    }

    fn accept(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    if stream.set_nonblocking(true).is_ok() {
                        self.clients.push(Client::new(stream));
                    }
                }
                Err(_) => return,
            }
        }
    }

    /// Serves client `i` (readable or writable); false to drop it.
    fn serve_client(&mut self, i: usize, buf: &mut [u8]) -> bool {
        let Some(c) = self.clients.get_mut(i) else {
            return false;
        };
        if !c.out.is_empty() && !c.flush() {
            return false;
        }
        if c.read_closed {
            return true;
        }
        let n = match c.stream.read(buf) {
            Ok(n) => n,
            Err(e)
                if e.kind() == io::ErrorKind::WouldBlock
                    || e.kind() == io::ErrorKind::Interrupted =>
            {
                return true
            }
            Err(_) => return false,
        };
        if let Some(a) = &c.attach {
            let wants_stdin = a.stdin;
            let close = a.close_stdin;
            if n == 0 {
                // Half-closed: no more input, output still flows.
                c.read_closed = true;
                if wants_stdin && close {
                    self.close_stdin = true;
                    self.flush_stdin();
                }
            } else if wants_stdin {
                self.stdin_buf.extend_from_slice(&buf[..n]);
                self.flush_stdin();
            }
            return true;
        }
        if n == 0 {
            return false;
        }
        c.buf.extend_from_slice(&buf[..n]);
        self.process_requests(i)
    }

    /// Answers the complete request lines of control client `i`.
    fn process_requests(&mut self, i: usize) -> bool {
        loop {
            let Some(c) = self.clients.get_mut(i) else {
                return false;
            };
            if c.attach.is_some() {
                // Whatever followed the attach request is input.
                let rest = std::mem::take(&mut c.buf);
                if c.attach.as_ref().is_some_and(|a| a.stdin) && !rest.is_empty() {
                    self.stdin_buf.extend_from_slice(&rest);
                    self.flush_stdin();
                }
                return true;
            }
            let resp = match c.next_request() {
                Err(()) => return false,
                Ok(None) => return true,
                Ok(Some(Ok(req))) => self.handle(i, req),
                Ok(Some(Err(e))) => Response::error(e),
            };
            let Some(c) = self.clients.get_mut(i) else {
                return false;
            };
            // Replies go ahead of any attached output.
            if !c.reply(&resp) {
                return false;
            }
        }
    }

    /// Turns client `i` into an attached stream.
    fn attach(&mut self, i: usize, a: Attach) -> Response {
        if a.stdin && self.stdin_target().is_none() {
            return Response::error("container has no open stdin");
        }
        if let Some(c) = self.clients.get_mut(i) {
            c.attach = Some(a);
        }
        Response::ok()
    }

    /// Answers one request of client `i`.
    fn handle(&mut self, i: usize, req: Request) -> Response {
        match req {
            Request::Attach(a) => self.attach(i, a),
            Request::State => Response {
                ok: true,
                state: Some(self.state.clone()),
                ..Default::default()
            },
            Request::Kill(sig) => {
                if self.state.status != Status::Running {
                    return Response::error("container is not running");
                }
                // SAFETY: plain kill(2) of our own child.
                let r = unsafe { libc::kill(self.pid.as_raw(), sig) };
                match Errno::result(r) {
                    Ok(_) => Response::ok(),
                    Err(e) => Response::error(format!("kill: {e}")),
                }
            }
            Request::Resize([rows, cols]) => {
                let Some(master) = self.pty else {
                    return Response::error("container has no tty");
                };
                let ws = libc::winsize {
                    ws_row: rows,
                    ws_col: cols,
                    ws_xpixel: 0,
                    ws_ypixel: 0,
                };
                // SAFETY: TIOCSWINSZ reads a winsize.
                let r = unsafe { libc::ioctl(master, libc::TIOCSWINSZ, &ws) };
                match Errno::result(r) {
                    Ok(_) => Response::ok(),
                    Err(e) => Response::error(format!("resize: {e}")),
                }
            }
        }
    }

    /// Final state, then exit (closing every waiter's connection).
    fn finish(&mut self) -> Result<(), MonitorError> {
        if let Some(log) = self.log.take() {
            if let Err(e) = log.close(now_nanos()) {
                eprintln!("monitor: log: {e}");
            }
        }
        self.state.oom_killed = self.cgroup.as_ref().is_some_and(|c| c.oom_killed());
        // State first: a client that finds no socket reads a final state.
        let saved = self.state.save(&self.bundle).map_err(io_ctx("write state"));
        let _ = fs::remove_file(self.bundle.join(SOCKET_FILE));
        saved
    }
}

/// Records a failure that happened before the container existed.
pub(super) fn fail_early(bundle: &Path, state: &mut State, ready: Option<File>, error: String) {
    state.status = Status::Exited;
    state.exit_code = EXIT_START_FAILED;
    state.error = error.clone();
    state.finished_at = now_rfc3339();
    let _ = state.save(bundle);
    let _ = fs::remove_file(bundle.join(SOCKET_FILE));
    report(ready, &failure_ready(error));
}

/// Starts the container's init in new namespaces `flags`: born in its
/// cgroup where the kernel allows (`joined`: no move needed), else by a
/// plain `clone` that the caller then moves. The child only runs
/// [`container_init`], which ends in execve or returns its exit code.
fn clone_init(
    spec: &ContainerSpec,
    io: &ChildIo,
    cgroup: Option<&dyn CgroupManager>,
    flags: CloneFlags,
    go: BorrowedFd<'_>,
    sync: BorrowedFd<'_>,
) -> Result<(Pid, bool), MonitorError> {
    let birth = cgroup
        .and_then(|cg| cg.birth_dir())
        .and_then(|d| File::open(d).ok());
    if let Some(dir) = birth {
        // SAFETY: the monitor is single-threaded; the child runs only
        // container_init and leaves by _exit.
        match unsafe { fork_into_cgroup(flags, dir.as_fd()) } {
            Ok(Forked::Child) => {
                let code = container_init(spec, io, go, sync);
                // SAFETY: _exit skips destructors that are the monitor's.
                unsafe { libc::_exit(code as i32) }
            }
            Ok(Forked::Parent(pid)) => return Ok((pid, true)),
            // Older kernel, or a cgroup the kernel refuses to start in:
            // the classic way reports the real problem if there is one.
            Err(_) => {}
        }
    }
    let mut stack = vec![0u8; INIT_STACK];
    // SAFETY: the monitor is single-threaded, so the child's copy of
    // memory is consistent; the child only runs `container_init`, which
    // ends in execve or returns its exit code.
    let pid = unsafe {
        nix::sched::clone(
            Box::new(move || container_init(spec, io, go, sync)),
            &mut stack,
            flags,
            Some(libc::SIGCHLD),
        )
    }
    .map_err(sys_ctx("clone"))?;
    Ok((pid, false))
}

/// stdin and stdout to /dev/null, stderr to `<bundle>/monitor.log`: the
/// daemon's pipes must not be held open by the monitor.
pub(super) fn redirect_stdio(bundle: &Path) -> Result<(), MonitorError> {
    let null = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map_err(io_ctx("open /dev/null"))?;
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(bundle.join(MONITOR_LOG_FILE))
        .map_err(io_ctx("open monitor.log"))?;
    for (from, to) in [
        (null.as_raw_fd(), 0),
        (null.as_raw_fd(), 1),
        (log.as_raw_fd(), 2),
    ] {
        // SAFETY: dup2 onto the standard fds.
        Errno::result(unsafe { libc::dup2(from, to) }).map_err(sys_ctx("dup2"))?;
    }
    Ok(())
}

type Stdio = (
    ChildIo,
    Vec<Output>,
    Option<OwnedFd>,
    Option<OwnedFd>,
    Vec<OwnedFd>,
);

/// The container's standard streams: a pty in TTY mode, else pipes for
/// stdout/stderr and a pipe (`OpenStdin`) or /dev/null for stdin. Returns
/// the child's view, the monitor's outputs, the socket the pty master
/// arrives on, the stdin writer and the child's fds the monitor must close
/// after the clone.
fn make_stdio(spec: &ContainerSpec) -> Result<Stdio, MonitorError> {
    if spec.process.tty {
        // The init opens the pty in the container's devpts and sends the
        // master back over this socket.
        let (ours, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .map_err(sys_ctx("socketpair"))?;
        let io = ChildIo::Pty(theirs.as_raw_fd());
        return Ok((io, vec![], Some(ours), None, vec![theirs]));
    }
    let (out_r, out_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(sys_ctx("pipe"))?;
    let (err_r, err_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(sys_ctx("pipe"))?;
    set_flags(&out_r)?;
    set_flags(&err_r)?;
    let (stdin_child, stdin_keep): (OwnedFd, Option<OwnedFd>) = if spec.process.open_stdin {
        let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(sys_ctx("pipe"))?;
        set_flags(&w)?;
        (r, Some(w))
    } else {
        let null = File::open("/dev/null").map_err(io_ctx("open /dev/null"))?;
        (OwnedFd::from(null), None)
    };
    let io = ChildIo::Fds {
        stdin: stdin_child.as_raw_fd(),
        stdout: out_w.as_raw_fd(),
        stderr: err_w.as_raw_fd(),
    };
    let outputs = vec![
        Output {
            fd: out_r,
            stream: Stream::Stdout,
        },
        Output {
            fd: err_r,
            stream: Stream::Stderr,
        },
    ];
    Ok((
        io,
        outputs,
        None,
        stdin_keep,
        vec![stdin_child, out_w, err_w],
    ))
}

/// Non-blocking and close-on-exec, for fds the monitor polls.
pub(super) fn set_flags(fd: &OwnedFd) -> Result<(), MonitorError> {
    let raw = fd.as_raw_fd();
    // SAFETY: fcntl flag changes on an fd we own.
    unsafe {
        let fl = libc::fcntl(raw, libc::F_GETFL);
        Errno::result(libc::fcntl(raw, libc::F_SETFL, fl | libc::O_NONBLOCK))
            .map_err(sys_ctx("fcntl"))?;
        Errno::result(libc::fcntl(raw, libc::F_SETFD, libc::FD_CLOEXEC))
            .map_err(sys_ctx("fcntl"))?;
    }
    Ok(())
}

/// Binds `<bundle>/monitor.sock`. The bind goes through a relative path
/// from the bundle, as a deep bundle path may exceed `sun_path`.
pub(super) fn bind_socket(bundle: &Path) -> Result<UnixListener, MonitorError> {
    let _ = fs::remove_file(bundle.join(SOCKET_FILE));
    nix::unistd::chdir(bundle).map_err(sys_ctx("chdir bundle"))?;
    let res = UnixListener::bind(SOCKET_FILE);
    let _ = nix::unistd::chdir("/");
    let l = res.map_err(io_ctx("bind monitor.sock"))?;
    l.set_nonblocking(true).map_err(io_ctx("monitor.sock"))?;
    Ok(l)
}

/// Blocks until the init's sync pipe closes; a message means it failed.
pub(super) fn read_failure(sync_r: OwnedFd) -> Option<InitFailure> {
    let mut f = File::from(sync_r);
    let mut bytes = Vec::new();
    let _ = f.read_to_end(&mut bytes);
    if bytes.is_empty() {
        return None;
    }
    Some(
        serde_json::from_slice(&bytes).unwrap_or_else(|_| InitFailure {
            message: String::from_utf8_lossy(&bytes).into_owned(),
            exit_code: EXIT_START_FAILED,
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_message_parsing() {
        let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).expect("pipe");
        let mut wf = File::from(w);
        wf.write_all(
            br#"{"message":"exec: \"x\": executable file not found in $PATH","exit_code":127}"#,
        )
        .expect("write");
        drop(wf);
        let f = read_failure(r).expect("failure");
        assert_eq!(f.exit_code, 127);
        let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).expect("pipe");
        drop(w);
        assert!(read_failure(r).is_none());
    }
}
