//! The container's first process, from `clone` to `execve`. It runs in the
//! new namespaces as a copy of the (single-threaded) monitor; any failure is
//! sent to the monitor over the CLOEXEC sync pipe as an [`InitFailure`],
//! while a successful `execve` closes that pipe.

use std::convert::Infallible;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::path::Path;

use nix::errno::Errno;
use nix::sched::CloneFlags;
use nix::sys::signal::{self, SigHandler, SigSet, SigmaskHow, Signal};

use super::process::{self, InitError, InitFailure};
use super::pty::{self, ChildIo};
use super::rootfs;
use super::spec::{CgroupFs, ContainerSpec, NetworkNs};
use super::sys::{LinuxSys, Sys, SysError};

/// Runs the init; returns the exit code only when it failed (after
/// reporting the failure on `sync`).
/// `go` delivers one byte once the monitor has joined the init to its
/// cgroup; EOF means the monitor failed.
pub(crate) fn container_init(
    spec: &ContainerSpec,
    io: &ChildIo,
    go: BorrowedFd<'_>,
    sync: BorrowedFd<'_>,
) -> isize {
    let err = match init(spec, io, go) {
        Ok(never) => match never {},
        Err(e) => e,
    };
    let failure = InitFailure {
        message: err.to_string(),
        exit_code: err.exit_code(),
    };
    if let Ok(bytes) = serde_json::to_vec(&failure) {
        // A short or failed write still leaves the exit code to the monitor.
        let _ = nix::unistd::write(sync, &bytes);
    }
    failure.exit_code as isize
}

fn sys_err(call: &'static str, arg: impl std::fmt::Display) -> impl FnOnce(Errno) -> SysError {
    move |e| SysError::new(call, arg, e)
}

/// Blocks until the monitor has put this process into the container's
/// cgroup (one byte on `go`; EOF: it gave up).
fn wait_for_cgroup(go_fd: BorrowedFd<'_>) -> Result<(), InitError> {
    let mut go = [0u8; 1];
    loop {
        match nix::unistd::read(go_fd, &mut go) {
            Ok(1) => return Ok(()),
            Err(Errno::EINTR) => continue,
            _ => return Err(InitError::Other("monitor gave up before the start".into())),
        }
    }
}

fn init(
    spec: &ContainerSpec,
    io: &ChildIo,
    go_fd: BorrowedFd<'_>,
) -> Result<Infallible, InitError> {
    let sys = LinuxSys;
    // The monitor blocks SIGCHLD for its signalfd and Rust ignores
    // SIGPIPE; neither may leak into the container.
    signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)
        .map_err(sys_err("sigprocmask", "clear"))?;
    for sig in [Signal::SIGPIPE, Signal::SIGCHLD] {
        // SAFETY: restoring the default disposition installs no handler.
        unsafe { signal::signal(sig, SigHandler::SigDfl) }.map_err(sys_err("signal", sig))?;
    }
    nix::unistd::setsid().map_err(sys_err("setsid", ""))?;
    if let ChildIo::Fds {
        stdin,
        stdout,
        stderr,
    } = io
    {
        for (from, to) in [(*stdin, 0), (*stdout, 1), (*stderr, 2)] {
            // SAFETY: plain dup2 of fds we own onto the standard ones.
            Errno::result(unsafe { libc::dup2(from, to) }).map_err(sys_err("dup2", to))?;
        }
    }
    let host_cgroupns = matches!(
        spec.cgroupfs,
        CgroupFs::V2 {
            host_namespace: true
        }
    );
    let own_cgroupns = spec.cgroup.is_some()
        && !host_cgroupns
        && Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    if own_cgroupns {
        // cgroup v2: a cgroup namespace rooted at the cgroup, which must be
        // joined first.
        wait_for_cgroup(go_fd)?;
        nix::sched::unshare(CloneFlags::CLONE_NEWCGROUP)
            .map_err(sys_err("unshare", "CLONE_NEWCGROUP"))?;
    }
    match &spec.network {
        NetworkNs::New => loopback_up()?,
        NetworkNs::Path(p) => {
            let f = std::fs::File::open(p)
                .map_err(|e| InitError::Other(format!("open netns {}: {e}", p.display())))?;
            nix::sched::setns(&f, CloneFlags::CLONE_NEWNET)
                .map_err(sys_err("setns", p.display()))?;
        }
        NetworkNs::Host => {}
    }
    rootfs::prepare_rootfs(&sys, spec)?;
    if let ChildIo::Pty(sock) = io {
        setup_console(&sys, *sock)?;
    }
    if !spec.hostname.is_empty() {
        sys.sethostname(&spec.hostname)?;
    }
    if !spec.domainname.is_empty() {
        sys.setdomainname(&spec.domainname)?;
    }
    let cwd = Path::new(&spec.process.cwd);
    sys.mkdir_all(cwd, 0o755)?;
    if !own_cgroupns {
        // Otherwise the mounts above ran while the monitor moved us into
        // the cgroup (on v1 a move can wait out an RCU grace period, some
        // 20 ms): nothing of the container's own runs before it is done.
        wait_for_cgroup(go_fd)?;
    }
    let exe = process::find_executable(Path::new("/"), &spec.process, spec.lookup_path())?;
    process::apply_credentials(&sys, spec)?;
    sys.chdir(cwd)?;
    close_other_fds();
    let path = process::c_path(&exe)?;
    let args = process::c_strings(&spec.process.args)?;
    let env = process::c_strings(&spec.process.env)?;
    let arg0 = spec.process.args.first().map(String::as_str).unwrap_or("");
    if spec.process.init {
        let title = super::pid1::title(&spec.process.args);
        return super::pid1::run(arg0, &path, &args, &env, spec.process.tty, &title);
    }
    let errno = match nix::unistd::execve(&path, &args, &env) {
        Ok(never) => match never {},
        Err(e) => e,
    };
    Err(process::exec_error(arg0, errno))
}

/// TTY mode, once in the new root: a pty from the container's own devpts
/// (so `tty` names `/dev/pts/0`), its slave bound over `/dev/console` and
/// made our controlling terminal and stdio, its master sent to the monitor
/// over `sock`.
fn setup_console(sys: &dyn Sys, sock: RawFd) -> Result<(), InitError> {
    let (master, slave) = pty::open(Path::new(pty::CONTAINER_PTMX), None)?;
    let slave_path = pty::slave_path(Path::new("/dev/pts"), &master)?;
    rootfs::mount_console(sys, &slave_path)?;
    pty::send_master(sock, &master)?;
    drop(master);
    pty::make_controlling(&slave)
}

/// Marks every fd above 2 close-on-exec, so nothing of the monitor
/// (pty master, log file, socket) reaches the container.
pub(super) fn close_other_fds() {
    const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
    // SAFETY: close_range only changes fd flags.
    let r = unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, CLOSE_RANGE_CLOEXEC) };
    if r == 0 {
        return;
    }
    // Older kernels: walk /proc/self/fd (this is the container's /proc).
    if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
        let fds: Vec<RawFd> = dir
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .filter(|fd| *fd > 2)
            .collect();
        for fd in fds {
            // SAFETY: setting FD_CLOEXEC on a possibly stale fd is harmless.
            unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
        }
    }
}

/// Brings `lo` up in the fresh network namespace.
fn loopback_up() -> Result<(), InitError> {
    #[repr(C)]
    struct IfreqFlags {
        name: [u8; 16],
        flags: libc::c_short,
        _pad: [u8; 22],
    }
    let sock = nix::sys::socket::socket(
        nix::sys::socket::AddressFamily::Inet,
        nix::sys::socket::SockType::Datagram,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(sys_err("socket", "AF_INET"))?;
    let mut req = IfreqFlags {
        name: [0; 16],
        flags: 0,
        _pad: [0; 22],
    };
    req.name[..2].copy_from_slice(b"lo");
    // SAFETY: req has the layout of struct ifreq for the flags ioctls.
    Errno::result(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) })
        .map_err(sys_err("ioctl", "SIOCGIFFLAGS lo"))?;
    req.flags |= libc::IFF_UP as libc::c_short;
    // SAFETY: as above.
    Errno::result(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) })
        .map_err(sys_err("ioctl", "SIOCSIFFLAGS lo"))?;
    Ok(())
}
