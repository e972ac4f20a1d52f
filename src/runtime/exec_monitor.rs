//! The exec monitor: `mydockerd __exec <exec dir>`, one per exec process.
//!
//! Like the container monitor it leaves the daemon behind (new session,
//! fork), so an exec outlives a daemon crash and its exit code stays in
//! `<exec dir>/state.json`. It joins the container's pid namespace for its
//! children, forks the exec process (see `exec_init`), puts it into the
//! container's cgroup, reports the start on the ready pipe and then serves
//! a single-threaded `poll` loop: output to the attached clients, client
//! input to the process, SIGCHLD through a signalfd, control requests on
//! `<exec dir>/monitor.sock` (the container monitor's protocol).
//!
//! Output is not logged: it goes to attached clients with back-pressure.
//! It waits in the pipes (or the pty) until the first client attaches,
//! and is read only while every attached client has taken what it was
//! given, so a slow reader slows the process and no byte is lost. Once
//! the clients are gone (detached or killed) output is read and dropped,
//! so the process never blocks on it. A TTY session whose client input
//! ends (its terminal is gone) is hung up: closing the pty master sends
//! the session SIGHUP, as a terminal does.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixListener;
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

use super::cgroups;
use super::clone_into_cgroup::{fork_into_cgroup, Forked};
use super::exec_init::exec_init;
use super::exec_spec::ExecSpec;
use super::monitor::{
    bind_socket, detach_from_daemon, fail_early, io_ctx, read_failure, redirect_stdio, report,
    set_flags, sys_ctx, Client, MonitorError,
};
use super::protocol::{Attach, Ready, Request, Response, PID_FILE, SOCKET_FILE};
use super::pty::{receive_master, ChildIo};
use super::state::{now_rfc3339, State, Status};
use crate::logs::stdcopy::{self, StreamId};
use crate::logs::Stream;

/// The first argument that turns `mydockerd` into an exec monitor.
pub const EXEC_ARG: &str = "__exec";

/// Most output queued for an attached client before the process's output
/// is left unread (the back-pressure threshold).
const HIGH_WATER: usize = 256 * 1024;

/// How long output waits for the first client; past it (the daemon died
/// before attaching) output is dropped so the process cannot block.
const ATTACH_TIMEOUT: Duration = Duration::from_secs(30);

/// How long output may stay silent after the exit before it is given up
/// (a background child may hold the pipes open).
const DRAIN_IDLE: Duration = Duration::from_secs(2);

/// How long a finished exec waits for its clients to take the last output.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(30);

/// The exec monitor's entry point (see the module docs).
pub fn run_exec_monitor(dir: &Path) -> ! {
    let ready = detach_from_daemon();
    let code = match ExecMonitor::run(dir, ready) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("exec monitor {}: {e}", dir.display());
            1
        }
    };
    std::process::exit(code)
}

/// One output stream of the process (the pty master counts as stdout).
struct Output {
    fd: OwnedFd,
    stream: Stream,
}

struct ExecMonitor {
    dir: PathBuf,
    state: State,
    pid: Pid,
    tty: bool,
    outputs: Vec<Output>,
    /// Non-TTY: the write end of the process's stdin pipe.
    stdin: Option<OwnedFd>,
    /// TTY with stdin: input goes to the pty master.
    tty_stdin: bool,
    stdin_buf: Vec<u8>,
    close_stdin: bool,
    /// Output waits for the first attached client until this instant.
    hold_until: Option<Instant>,
    listener: UnixListener,
    clients: Vec<Client>,
    sigfd: SignalFd,
}

/// Namespaces joined by the exec process, in order: mount last, as it
/// changes the meaning of paths.
const NAMESPACES: [(&str, CloneFlags); 5] = [
    ("ipc", CloneFlags::CLONE_NEWIPC),
    ("uts", CloneFlags::CLONE_NEWUTS),
    ("net", CloneFlags::CLONE_NEWNET),
    ("cgroup", CloneFlags::CLONE_NEWCGROUP),
    ("mnt", CloneFlags::CLONE_NEWNS),
];

/// `/proc/<pid>/ns/<name>`, unless it is the namespace we are in already.
fn open_ns(pid: i32, name: &str) -> Result<Option<OwnedFd>, MonitorError> {
    let path = format!("/proc/{pid}/ns/{name}");
    let f = File::open(&path).map_err(io_ctx(format!("open {path}")))?;
    let theirs = f.metadata().map_err(io_ctx(format!("stat {path}")))?;
    let ours = fs::metadata(format!("/proc/self/ns/{name}"));
    if ours.is_ok_and(|o| o.ino() == theirs.ino() && o.dev() == theirs.dev()) {
        return Ok(None);
    }
    Ok(Some(OwnedFd::from(f)))
}

/// What the process gets as stdio, and the monitor's ends.
struct Stdio {
    io: ChildIo,
    outputs: Vec<Output>,
    stdin: Option<OwnedFd>,
    /// TTY: the monitor's end of the socket the master arrives on.
    pty_sock: Option<OwnedFd>,
    /// The child's ends, closed by the monitor after the fork.
    child_fds: Vec<OwnedFd>,
}

fn make_stdio(spec: &ExecSpec) -> Result<Stdio, MonitorError> {
    if spec.process.tty {
        let (ours, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .map_err(sys_ctx("socketpair"))?;
        return Ok(Stdio {
            io: ChildIo::Pty(theirs.as_raw_fd()),
            outputs: vec![],
            stdin: None,
            pty_sock: Some(ours),
            child_fds: vec![theirs],
        });
    }
    let null = || -> Result<OwnedFd, MonitorError> {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/null")
            .map_err(io_ctx("open /dev/null"))?;
        Ok(OwnedFd::from(f))
    };
    let mut outputs = vec![];
    let mut child_fds = vec![];
    let mut out_fd = |wanted: bool, stream: Stream| -> Result<RawFd, MonitorError> {
        let child = if wanted {
            let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(sys_ctx("pipe"))?;
            set_flags(&r)?;
            outputs.push(Output { fd: r, stream });
            w
        } else {
            null()?
        };
        let raw = child.as_raw_fd();
        child_fds.push(child);
        Ok(raw)
    };
    let stdout = out_fd(spec.stdout, Stream::Stdout)?;
    let stderr = out_fd(spec.stderr, Stream::Stderr)?;
    let (stdin_child, stdin) = if spec.stdin {
        let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(sys_ctx("pipe"))?;
        set_flags(&w)?;
        (r, Some(w))
    } else {
        (null()?, None)
    };
    let io = ChildIo::Fds {
        stdin: stdin_child.as_raw_fd(),
        stdout,
        stderr,
    };
    child_fds.push(stdin_child);
    Ok(Stdio {
        io,
        outputs,
        stdin,
        pty_sock: None,
        child_fds,
    })
}

impl ExecMonitor {
    fn run(dir: &Path, ready: Option<File>) -> Result<(), MonitorError> {
        let mut state = State {
            monitor_pid: std::process::id() as i32,
            ..Default::default()
        };
        let spec = match ExecSpec::load(dir) {
            Ok(s) => s,
            Err(e) => {
                fail_early(dir, &mut state, ready, e.to_string());
                return Err(e.into());
            }
        };
        match ExecMonitor::start(dir, &spec, state.clone(), ready) {
            Ok(Some(mut m)) => m.serve(),
            Ok(None) => Ok(()),
            Err((e, ready)) => {
                fail_early(dir, &mut state, ready, e.to_string());
                Err(e)
            }
        }
    }

    /// Joins, forks and starts the exec process. `Ok(None)`: it failed and
    /// the failure is recorded and reported.
    fn start(
        dir: &Path,
        spec: &ExecSpec,
        mut state: State,
        ready: Option<File>,
    ) -> Result<Option<ExecMonitor>, (MonitorError, Option<File>)> {
        macro_rules! tri {
            ($e:expr) => {
                match $e {
                    Ok(v) => v,
                    Err(e) => return Err((e.into(), ready)),
                }
            };
        }
        tri!(redirect_stdio(dir));
        tri!(fs::write(dir.join(PID_FILE), state.monitor_pid.to_string())
            .map_err(io_ctx("write monitor.pid")));
        tri!(state.save(dir).map_err(io_ctx("write state")));

        let mut mask = SigSet::empty();
        mask.add(Signal::SIGCHLD);
        tri!(mask.thread_set_mask().map_err(sys_ctx("block SIGCHLD")));
        let sigfd = tri!(SignalFd::with_flags(
            &mask,
            SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC
        )
        .map_err(sys_ctx("signalfd")));

        // Open every namespace before joining any: /proc paths are the
        // host's only until then.
        let mut namespaces = vec![];
        for (name, kind) in NAMESPACES {
            if let Some(fd) = tri!(open_ns(spec.init_pid, name)) {
                namespaces.push((fd, kind));
            }
        }
        if let Some(pidns) = tri!(open_ns(spec.init_pid, "pid")) {
            // Our children are born in the container's pid namespace; we
            // stay in the host's.
            tri!(nix::sched::setns(&pidns, CloneFlags::CLONE_NEWPID).map_err(sys_ctx("setns pid")));
        }
        let cgroup = match &spec.cgroup {
            Some(c) => Some(tri!(cgroups::manager_for(&c.root, &c.path)
                .map_err(|e| MonitorError::Cgroup(e.to_string())))),
            None => None,
        };
        let stdio = tri!(make_stdio(spec));
        let (sync_r, sync_w) = tri!(nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(sys_ctx("pipe")));
        let (go_r, go_w) = tri!(nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(sys_ctx("pipe")));
        let listener = tri!(bind_socket(dir));

        // On cgroup v2 the child is born in the container's cgroup (no
        // move, see `clone_into_cgroup`); else it is moved after the fork.
        let birth = cgroup
            .as_ref()
            .and_then(|cg| cg.birth_dir())
            .and_then(|d| File::open(d).ok());
        // SAFETY: the monitor is single-threaded; the child only runs
        // `exec_init`, which ends in execve or _exit.
        let forked = birth
            .and_then(|dir| unsafe { fork_into_cgroup(CloneFlags::empty(), dir.as_fd()) }.ok());
        let (forked, joined) = match forked {
            Some(Forked::Child) => (ForkResult::Child, true),
            Some(Forked::Parent(child)) => (ForkResult::Parent { child }, true),
            // SAFETY: as above.
            None => (
                tri!(unsafe { nix::unistd::fork() }.map_err(sys_ctx("fork"))),
                false,
            ),
        };
        let pid = match forked {
            ForkResult::Child => {
                let code = exec_init(spec, &namespaces, &stdio.io, go_r.as_fd(), sync_w.as_fd());
                // SAFETY: _exit skips the monitor's destructors.
                unsafe { libc::_exit(code) }
            }
            ForkResult::Parent { child } => child,
        };
        let Stdio {
            outputs,
            stdin,
            pty_sock,
            child_fds,
            ..
        } = stdio;
        drop(child_fds);
        drop(namespaces);
        drop(sync_w);
        drop(go_r);
        if let Some(cg) = cgroup.as_ref().filter(|_| !joined) {
            if let Err(e) = cg.add_task(pid.as_raw()) {
                // Closing `go` without a byte makes the child give up.
                drop(go_w);
                let _ = waitpid(pid, None);
                return Err((MonitorError::Cgroup(format!("join cgroup: {e}")), ready));
            }
        }
        tri!(nix::unistd::write(&go_w, b"g").map_err(sys_ctx("start exec")));
        drop(go_w);
        let mut outputs = outputs;
        if let Some(sock) = pty_sock {
            if let Some(master) = receive_master(&sock) {
                tri!(set_flags(&master));
                outputs.push(Output {
                    fd: master,
                    stream: Stream::Stdout,
                });
            }
        }

        let failure = read_failure(sync_r);
        state.pid = pid.as_raw();
        if let Some(failure) = failure {
            let _ = waitpid(pid, None);
            state.status = Status::Exited;
            state.exit_code = failure.exit_code;
            state.error = failure.message.clone();
            state.finished_at = now_rfc3339();
            state.pid = 0;
            if let Err(e) = state.save(dir) {
                eprintln!("exec monitor: write state: {e}");
            }
            drop(listener);
            let _ = fs::remove_file(dir.join(SOCKET_FILE));
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
        if let Err(e) = state.save(dir) {
            eprintln!("exec monitor: write state: {e}");
        }
        report(
            ready,
            &Ready {
                pid: pid.as_raw(),
                ..Default::default()
            },
        );
        let attached = spec.stdout || spec.stderr;
        Ok(Some(ExecMonitor {
            dir: dir.to_path_buf(),
            state,
            pid,
            tty: spec.process.tty,
            outputs,
            stdin,
            tty_stdin: spec.process.tty && spec.stdin,
            stdin_buf: Vec::new(),
            close_stdin: false,
            hold_until: attached.then(|| Instant::now() + ATTACH_TIMEOUT),
            listener,
            clients: Vec::new(),
            sigfd,
        }))
    }

    /// Whether output may be read now: no client is behind, and the first
    /// one has come (or will not).
    fn may_read_output(&mut self) -> bool {
        if let Some(until) = self.hold_until {
            if Instant::now() < until {
                return false;
            }
            self.hold_until = None;
        }
        !self
            .clients
            .iter()
            .any(|c| wants_output(c) && c.out.len() >= HIGH_WATER)
    }

    /// The poll loop, until the process exited, its output is drained and
    /// the clients have it.
    fn serve(&mut self) -> Result<(), MonitorError> {
        let mut exited_at: Option<Instant> = None;
        let mut last_output = Instant::now();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let reading = self.may_read_output();
            if let Some(at) = exited_at {
                let drained =
                    self.outputs.is_empty() || (reading && last_output.elapsed() >= DRAIN_IDLE);
                let flushed = self.clients.iter().all(|c| c.out.is_empty());
                if drained && (flushed || at.elapsed() >= FLUSH_TIMEOUT) {
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
            let stdin_fd = match self.stdin_target() {
                Some(fd) if !self.stdin_buf.is_empty() => fd,
                _ => -1,
            };
            fds.push(poll(stdin_fd, libc::POLLOUT));
            fds.extend(self.outputs.iter().map(|o| {
                // fd -1 is ignored by poll: output waits in the pipe.
                poll(if reading { o.fd.as_raw_fd() } else { -1 }, libc::POLLIN)
            }));
            let stdin_full = self.stdin_buf.len() >= 64 * 1024;
            fds.extend(self.clients.iter().map(|c| {
                let mut ev = 0;
                let paused = stdin_full && c.attach.as_ref().is_some_and(|a| a.stdin);
                if !c.read_closed && !paused {
                    ev |= libc::POLLIN;
                }
                if !c.out.is_empty() {
                    ev |= libc::POLLOUT;
                }
                poll(c.stream.as_raw_fd(), ev)
            }));
            // Wake up for the end of the attach wait or of the drain.
            let mut timeout: Option<Duration> = self
                .hold_until
                .map(|u| u.saturating_duration_since(Instant::now()));
            if exited_at.is_some() {
                let t = DRAIN_IDLE.saturating_sub(last_output.elapsed());
                timeout = Some(timeout.map_or(t, |x| x.min(t)));
            }
            let timeout = timeout.map_or(-1, |d| d.as_millis() as libc::c_int + 1);
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
            let revents = |i: usize| fds.get(i).map_or(0, |p| p.revents);
            let n_out = self.outputs.len();
            let mut closed = Vec::new();
            for i in 0..n_out {
                if revents(3 + i) != 0 {
                    last_output = Instant::now();
                    if !self.read_output(i, &mut buf) {
                        closed.push(i);
                    }
                }
            }
            if revents(0) != 0 && self.reap() {
                exited_at = Some(Instant::now());
                last_output = Instant::now();
            }
            if revents(1) != 0 {
                self.accept();
            }
            if revents(2) != 0 {
                self.flush_stdin();
            }
            let mut gone = Vec::new();
            for i in 0..self.clients.len() {
                let ev = revents(3 + n_out + i);
                if ev != 0 && !self.serve_client(i, ev, &mut buf) {
                    gone.push(i);
                }
            }
            for i in closed.into_iter().rev() {
                // A hang-up may have closed them all meanwhile.
                if i < self.outputs.len() {
                    self.outputs.remove(i);
                }
            }
            for i in gone.into_iter().rev() {
                self.clients.remove(i);
            }
        }
        self.finish()
    }

    fn stdin_target(&self) -> Option<RawFd> {
        match &self.stdin {
            Some(fd) => Some(fd.as_raw_fd()),
            None if self.tty_stdin => self.outputs.first().map(|o| o.fd.as_raw_fd()),
            None => None,
        }
    }

    /// Writes buffered input without blocking; closes the process's stdin
    /// once drained if the client ended its input.
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
                    self.stdin_buf.clear();
                    self.stdin = None;
                }
            }
        }
        if self.close_stdin {
            self.stdin = None;
        }
    }

    /// Closes the pty master: the session loses its terminal (SIGHUP).
    fn hang_up(&mut self) {
        if self.tty {
            self.outputs.clear();
            self.tty_stdin = false;
            self.stdin_buf.clear();
        }
    }

    /// Reads once from output `i` and queues it for the clients that want
    /// it (none: dropped); false at EOF (or EIO: pty closed).
    fn read_output(&mut self, i: usize, buf: &mut [u8]) -> bool {
        let Some(out) = self.outputs.get(i) else {
            return false;
        };
        let stream = out.stream;
        let n = match nix::unistd::read(&out.fd, buf) {
            Ok(0) => return false,
            Ok(n) => n,
            Err(Errno::EAGAIN) | Err(Errno::EINTR) => return true,
            Err(_) => return false,
        };
        let bytes = &buf[..n];
        for c in &mut self.clients {
            let Some(a) = &c.attach else { continue };
            let wanted = match stream {
                Stream::Stdout => a.stdout,
                Stream::Stderr => a.stderr,
            };
            if !wanted {
                continue;
            }
            if self.tty {
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
                c.attach = None;
                c.read_closed = true;
                c.out.clear();
                let _ = c.stream.shutdown(std::net::Shutdown::Both);
            }
        }
        true
    }

    /// Drains the signalfd and reaps; true once the process has exited.
    fn reap(&mut self) -> bool {
        while let Ok(Some(_)) = self.sigfd.read_signal() {}
        let mut exited = false;
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) if pid == self.pid => {
                    self.state.exit_code = code;
                    exited = true;
                }
                Ok(WaitStatus::Signaled(pid, sig, _)) if pid == self.pid => {
                    self.state.exit_code = 128 + sig as i32;
                    exited = true;
                }
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(_) => {}
            }
        }
        if exited {
            self.state.finished_at = now_rfc3339();
            self.state.status = Status::Exited;
        }
        exited
    }

    fn accept(&mut self) {
        while let Ok((stream, _)) = self.listener.accept() {
            if stream.set_nonblocking(true).is_ok() {
                self.clients.push(Client::new(stream));
            }
        }
    }

    /// Serves client `i` for the poll events `ev`; false to drop it.
    fn serve_client(&mut self, i: usize, ev: libc::c_short, buf: &mut [u8]) -> bool {
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
        if let Some(a) = c.attach {
            if n == 0 {
                c.read_closed = true;
                // A half-close ends the input; a full close (POLLHUP) is a
                // client leaving without ending it (detach keys).
                let hung_up = ev & libc::POLLHUP != 0;
                if a.stdin && !hung_up {
                    if self.tty {
                        self.hang_up();
                    } else {
                        self.close_stdin = true;
                        self.flush_stdin();
                    }
                }
                return !hung_up;
            }
            if a.stdin {
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

    fn process_requests(&mut self, i: usize) -> bool {
        loop {
            let Some(c) = self.clients.get_mut(i) else {
                return false;
            };
            if let Some(a) = c.attach {
                let rest = std::mem::take(&mut c.buf);
                if a.stdin && !rest.is_empty() {
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
            let replied = self.clients.get_mut(i).is_some_and(|c| c.reply(&resp));
            if !replied {
                return false;
            }
        }
    }

    fn attach(&mut self, i: usize, a: Attach) -> Response {
        if a.stdin && self.stdin_target().is_none() {
            return Response::error("exec has no open stdin");
        }
        if a.stdout || a.stderr {
            self.hold_until = None;
        }
        if let Some(c) = self.clients.get_mut(i) {
            c.attach = Some(a);
        }
        Response::ok()
    }

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
                let master = match self.outputs.first() {
                    Some(o) if self.tty => o.fd.as_raw_fd(),
                    _ => return Response::error("exec has no tty"),
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
        let saved = self.state.save(&self.dir).map_err(io_ctx("write state"));
        let _ = fs::remove_file(self.dir.join(SOCKET_FILE));
        saved
    }
}

fn wants_output(c: &Client) -> bool {
    c.attach.is_some_and(|a| a.stdout || a.stderr)
}
