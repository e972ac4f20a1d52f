//! The native container runtime: the per-container monitor process and
//! everything between `clone` and the entrypoint's `execve`.
//!
//! - [`spec`]: [`ContainerSpec`], the daemon's complete description of one
//!   container, written to `<bundle>/spec.json`.
//! - [`monitor`]: `mydockerd __monitor <bundle>`, the single-threaded
//!   process that owns the container: namespaces, stdio, logs, exit code,
//!   and the control socket `<bundle>/monitor.sock`.
//! - [`init`] (private), [`rootfs`], [`process`]: the container's init:
//!   mounts and `pivot_root`, user and capabilities, entrypoint look-up.
//! - [`pid1`]: `--init`, our small PID 1 that forwards signals and reaps.
//! - [`exec_spec`], [`exec_monitor`], `exec_init`: `mydockerd __exec
//!   <dir>`, one monitor per exec process run inside a running container;
//!   the daemon drives it through the same [`MonitorHandle`].
//! - [`sys`]: the raw system calls behind a trait, with a recording fake.
//! - [`state`], [`protocol`]: the files and messages the daemon reads.
//! - [`cgroups`]: cgroup v1/v2 resources, validation, stats, freezer.
//!
//! The daemon side is this file: [`spawn_monitor`] starts a monitor and
//! waits until the entrypoint was exec'd (or failed, with dockerd's
//! message and 126/127 exit code); [`MonitorHandle`] signals, inspects and
//! waits for it, also from a restarted daemon ([`MonitorHandle::open`]).
//! All calls block: run them off the async threads.

pub mod cgroups;
mod clone_into_cgroup;
mod exec_init;
pub mod exec_monitor;
pub mod exec_spec;
mod init;
pub mod monitor;
pub mod pid1;
pub mod process;
pub mod protocol;
mod pty;
pub mod rootfs;
pub mod seccomp;
pub mod spec;
pub mod state;
pub mod sys;

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use nix::errno::Errno;
use nix::fcntl::OFlag;
use thiserror::Error;

pub use monitor::{maybe_run_monitor_from_args, run_monitor, MONITOR_ARG};
pub use spec::ContainerSpec;
pub use state::{State, Status};

use protocol::{Ready, Request, Response, READY_FD_ENV, SOCKET_FILE};

/// Longest wait for a monitor to report the start (rootfs set-up of a
/// large image on a slow disk included).
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Longest wait for a control reply.
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// Errors of the daemon-side runtime API.
#[derive(Debug, Error)]
pub enum RuntimeError {
    /// The container could not start; `exit_code` is 127 for a missing
    /// entrypoint, 126 for one that cannot run, else 128.
    #[error("{message}")]
    StartFailed { message: String, exit_code: i32 },
    #[error("container is not running")]
    NotRunning,
    #[error("timed out waiting for the container monitor")]
    Timeout,
    #[error("monitor: {0}")]
    Monitor(String),
    #[error(transparent)]
    State(#[from] state::StateError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
}

fn io_err(context: &str) -> impl FnOnce(io::Error) -> RuntimeError + '_ {
    move |source| RuntimeError::Io {
        context: context.to_string(),
        source,
    }
}

/// Starts `<exe> __monitor <bundle>` (the spec must be in the bundle) and
/// blocks until the container's entrypoint was exec'd or failed.
pub fn spawn_monitor(exe: &Path, bundle: &Path) -> Result<MonitorHandle, RuntimeError> {
    spawn(exe, MONITOR_ARG, bundle)
}

/// Starts `<exe> __exec <dir>` (the exec spec must be in `dir`) and blocks
/// until the exec process was exec'd or failed.
pub fn spawn_exec(exe: &Path, dir: &Path) -> Result<MonitorHandle, RuntimeError> {
    spawn(exe, exec_monitor::EXEC_ARG, dir)
}

fn spawn(exe: &Path, arg: &str, bundle: &Path) -> Result<MonitorHandle, RuntimeError> {
    let (ready_r, ready_w) =
        nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| RuntimeError::Io {
            context: "pipe".into(),
            source: e.into(),
        })?;
    let w = ready_w.as_raw_fd();
    let mut cmd = Command::new(exe);
    cmd.arg(arg)
        .arg(bundle)
        .env(READY_FD_ENV, w.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: only fcntl (async-signal-safe) runs between fork and exec:
    // it lets the ready pipe's write end, and only it, cross the exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::fcntl(w, libc::F_SETFD, 0) < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(io_err("start monitor"))?;
    drop(ready_w);
    // The intermediate process exits as soon as the monitor forked.
    let status = child.wait().map_err(io_err("wait for monitor"))?;
    let ready = read_ready(ready_r)?;
    match ready {
        Some(r) if r.error.is_empty() && r.pid > 0 => Ok(MonitorHandle {
            bundle: bundle.to_path_buf(),
            pid: r.pid,
        }),
        Some(r) => Err(RuntimeError::StartFailed {
            message: r.error,
            exit_code: r.exit_code,
        }),
        None => Err(RuntimeError::Monitor(format!(
            "exited without reporting ({status}); see {}",
            bundle.join(protocol::MONITOR_LOG_FILE).display()
        ))),
    }
}

/// Reads the monitor's one-line report, waiting at most [`START_TIMEOUT`].
fn read_ready(fd: OwnedFd) -> Result<Option<Ready>, RuntimeError> {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    let n = unsafe { libc::poll(&mut pfd, 1, START_TIMEOUT.as_millis() as libc::c_int) };
    if n == 0 {
        return Err(RuntimeError::Timeout);
    }
    if n < 0 {
        return Err(RuntimeError::Io {
            context: "poll ready pipe".into(),
            source: Errno::last().into(),
        });
    }
    let mut line = String::new();
    BufReader::new(File::from(fd).take(64 * 1024))
        .read_line(&mut line)
        .map_err(io_err("read ready pipe"))?;
    if line.trim().is_empty() {
        return Ok(None);
    }
    serde_json::from_str(&line)
        .map(Some)
        .map_err(|e| RuntimeError::Monitor(format!("bad ready message: {e}")))
}

/// The daemon's handle on one running (or finished) container monitor.
#[derive(Clone, Debug)]
pub struct MonitorHandle {
    bundle: PathBuf,
    pid: i32,
}

impl MonitorHandle {
    /// Re-attaches to the monitor of `bundle` (after a daemon restart).
    pub fn open(bundle: &Path) -> Result<MonitorHandle, RuntimeError> {
        let st = State::load(bundle)?;
        Ok(MonitorHandle {
            bundle: bundle.to_path_buf(),
            pid: st.pid,
        })
    }

    /// The container's init as seen from the host.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    pub fn bundle(&self) -> &Path {
        &self.bundle
    }

    /// Sends signal `sig` to the container's init.
    pub fn kill(&self, sig: i32) -> Result<(), RuntimeError> {
        self.request(&Request::Kill(sig)).map(drop)
    }

    /// Resizes the container's pty.
    pub fn resize(&self, rows: u16, cols: u16) -> Result<(), RuntimeError> {
        self.request(&Request::Resize([rows, cols])).map(drop)
    }

    /// Attaches to the container's streams (see [`protocol::Attach`]): the
    /// returned socket carries its output from now on and takes its input.
    pub fn attach(&self, opts: protocol::Attach) -> Result<UnixStream, RuntimeError> {
        let mut conn = connect(&self.bundle).map_err(|_| RuntimeError::NotRunning)?;
        conn.set_read_timeout(Some(REPLY_TIMEOUT))
            .map_err(io_err("monitor socket"))?;
        let mut line = serde_json::to_vec(&Request::Attach(opts))
            .map_err(|e| RuntimeError::Monitor(e.to_string()))?;
        line.push(b'\n');
        conn.write_all(&line).map_err(io_err("monitor request"))?;
        // Byte by byte: what follows the reply is the stream itself.
        let mut reply = Vec::new();
        let mut byte = [0u8; 1];
        while reply.len() < 64 * 1024 {
            match conn.read(&mut byte) {
                Ok(0) => return Err(RuntimeError::NotRunning),
                Ok(_) if byte[0] == b'\n' => break,
                Ok(_) => reply.push(byte[0]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(io_err("monitor reply")(e)),
            }
        }
        let resp: Response =
            serde_json::from_slice(&reply).map_err(|e| RuntimeError::Monitor(e.to_string()))?;
        if !resp.ok {
            return Err(RuntimeError::Monitor(resp.error));
        }
        conn.set_read_timeout(None)
            .map_err(io_err("monitor socket"))?;
        Ok(conn)
    }

    /// The current state: from the monitor while it runs, else the file.
    pub fn state(&self) -> Result<State, RuntimeError> {
        match self.request(&Request::State) {
            Ok(Response { state: Some(s), .. }) => Ok(s),
            Ok(_) => Err(RuntimeError::Monitor("state reply without state".into())),
            Err(RuntimeError::NotRunning) => self.final_state(),
            Err(e) => Err(e),
        }
    }

    /// Blocks until the container has exited and its monitor is done;
    /// returns the final state.
    pub fn wait(&self) -> Result<State, RuntimeError> {
        match connect(&self.bundle) {
            Ok(conn) => drain(conn),
            Err(_) => {
                // No socket: the monitor is finishing or gone. Its state is
                // final once it has exited.
                let st = State::load(&self.bundle)?;
                if st.status != Status::Exited {
                    wait_process_exit(st.monitor_pid);
                }
            }
        }
        self.final_state()
    }

    /// `state.json`, marked as exited with an error if its monitor died
    /// without writing the final state.
    fn final_state(&self) -> Result<State, RuntimeError> {
        let mut st = State::load(&self.bundle)?;
        if st.status != Status::Exited && !process_alive(st.monitor_pid) {
            st.status = Status::Exited;
            st.exit_code = process::EXIT_START_FAILED;
            if st.error.is_empty() {
                st.error = "container monitor died".into();
            }
        }
        Ok(st)
    }

    fn request(&self, req: &Request) -> Result<Response, RuntimeError> {
        let mut conn = connect(&self.bundle).map_err(|_| RuntimeError::NotRunning)?;
        conn.set_read_timeout(Some(REPLY_TIMEOUT))
            .map_err(io_err("monitor socket"))?;
        let mut line = serde_json::to_vec(req).map_err(|e| RuntimeError::Monitor(e.to_string()))?;
        line.push(b'\n');
        conn.write_all(&line).map_err(io_err("monitor request"))?;
        let mut reply = String::new();
        BufReader::new(conn.take(1 << 20))
            .read_line(&mut reply)
            .map_err(io_err("monitor reply"))?;
        if reply.is_empty() {
            return Err(RuntimeError::NotRunning);
        }
        let resp: Response =
            serde_json::from_str(&reply).map_err(|e| RuntimeError::Monitor(e.to_string()))?;
        if resp.ok {
            Ok(resp)
        } else if resp.error == "container is not running" {
            Err(RuntimeError::NotRunning)
        } else {
            Err(RuntimeError::Monitor(resp.error))
        }
    }
}

/// Connects to `<bundle>/monitor.sock`, through `/proc/self/fd` when the
/// path is too long for `sun_path`.
fn connect(bundle: &Path) -> io::Result<UnixStream> {
    let path = bundle.join(SOCKET_FILE);
    if path.as_os_str().len() < 100 {
        return UnixStream::connect(path);
    }
    let dir = File::open(bundle)?;
    UnixStream::connect(format!("/proc/self/fd/{}/{SOCKET_FILE}", dir.as_raw_fd()))
}

/// Reads until EOF: the monitor keeps waiters open until it exits.
fn drain(mut conn: UnixStream) {
    let mut sink = [0u8; 256];
    loop {
        match conn.read(&mut sink) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
}

/// Blocks until process `pid` has exited, through a pidfd (no polling).
fn wait_process_exit(pid: i32) {
    if pid <= 0 {
        return;
    }
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    let Ok(fd) = i32::try_from(fd) else { return };
    if fd < 0 {
        return; // gone already
    }
    // SAFETY: fd is the pidfd just opened and owned here.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    loop {
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut pfd, 1, -1) };
        if n >= 0 || Errno::last() != Errno::EINTR {
            return;
        }
    }
}

fn process_alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks for existence.
    pid > 0 && (unsafe { libc::kill(pid, 0) } == 0 || Errno::last() == Errno::EPERM)
}
