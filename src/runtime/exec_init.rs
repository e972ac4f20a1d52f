//! The exec process, from `fork` to `execve`. It is a child of the exec
//! monitor, already in the container's pid namespace (the monitor joined
//! it for its children); it joins the other namespaces, takes a pty from
//! the container's own devpts for TTY sessions, resolves the user in the
//! container's `/etc/passwd`, drops to the container's credentials and
//! execs. Failures go to the monitor over the CLOEXEC sync pipe as an
//! [`InitFailure`], as for the container's init.

use std::convert::Infallible;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::sched::CloneFlags;
use nix::sys::signal::{self, SigHandler, SigSet, SigmaskHow, Signal};

use super::exec_spec::ExecSpec;
use super::process::{self, InitError, InitFailure, EXIT_CANNOT_EXEC};
use super::pty::{self, ChildIo};
use super::spec::ContainerSpec;
use super::sys::{LinuxSys, Sys, SysError};

/// Runs the exec process; returns an exit code only when it failed (after
/// reporting the failure on `sync`). `go` delivers one byte once the
/// monitor put us into the container's cgroup; `namespaces` are open
/// `/proc/<init>/ns/*` files, joined in order (mount last).
pub(crate) fn exec_init(
    spec: &ExecSpec,
    namespaces: &[(OwnedFd, CloneFlags)],
    io: &ChildIo,
    go: BorrowedFd<'_>,
    sync: BorrowedFd<'_>,
) -> i32 {
    let err = match run(spec, namespaces, io, go) {
        Ok(never) => match never {},
        Err(e) => e,
    };
    let failure = InitFailure {
        message: err.to_string(),
        // dockerd gives every exec start failure 126 unless the command
        // was not found.
        exit_code: match &err {
            InitError::Exec { exit_code, .. } => *exit_code,
            _ => EXIT_CANNOT_EXEC,
        },
    };
    if let Ok(bytes) = serde_json::to_vec(&failure) {
        let _ = nix::unistd::write(sync, &bytes);
    }
    failure.exit_code
}

fn sys_err(call: &'static str, arg: impl std::fmt::Display) -> impl FnOnce(Errno) -> SysError {
    move |e| SysError::new(call, arg, e)
}

fn run(
    spec: &ExecSpec,
    namespaces: &[(OwnedFd, CloneFlags)],
    io: &ChildIo,
    go_fd: BorrowedFd<'_>,
) -> Result<Infallible, InitError> {
    let sys = LinuxSys;
    signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)
        .map_err(sys_err("sigprocmask", "clear"))?;
    for sig in [Signal::SIGPIPE, Signal::SIGCHLD] {
        // SAFETY: restoring the default disposition installs no handler.
        unsafe { signal::signal(sig, SigHandler::SigDfl) }.map_err(sys_err("signal", sig))?;
    }
    let mut go = [0u8; 1];
    loop {
        match nix::unistd::read(go_fd, &mut go) {
            Ok(1) => break,
            Err(Errno::EINTR) => continue,
            _ => {
                return Err(InitError::Other(
                    "exec monitor gave up before the start".into(),
                ))
            }
        }
    }
    for (fd, kind) in namespaces {
        nix::sched::setns(fd, *kind).map_err(sys_err("setns", format!("{kind:?}")))?;
    }
    nix::unistd::setsid().map_err(sys_err("setsid", ""))?;
    match io {
        ChildIo::Fds {
            stdin,
            stdout,
            stderr,
        } => {
            for (from, to) in [(*stdin, 0), (*stdout, 1), (*stderr, 2)] {
                // SAFETY: plain dup2 of fds we own onto the standard ones.
                Errno::result(unsafe { libc::dup2(from, to) }).map_err(sys_err("dup2", to))?;
            }
        }
        ChildIo::Pty(sock) => {
            let (master, slave) = pty::open(Path::new(pty::CONTAINER_PTMX), spec.console_size)?;
            pty::send_master(*sock, &master)?;
            drop(master);
            pty::make_controlling(&slave)?;
        }
    }

    // Inside the container's mount namespace now: `/` is its root.
    let (uid, gid, home) = crate::container::start::resolve_user(&[PathBuf::from("/")], &spec.user)
        .map_err(InitError::Other)?;
    let mut cspec = ContainerSpec {
        process: spec.process.clone(),
        ..Default::default()
    };
    if spec.privileged {
        // Every capability we hold (a host may withhold some).
        cspec.process.capabilities = permitted_capabilities()?;
    }
    cspec.process.uid = uid;
    cspec.process.gid = gid;
    if !cspec.process.env.iter().any(|e| e.starts_with("HOME=")) {
        cspec.process.env.push(format!("HOME={home}"));
    }
    let cwd = Path::new(&cspec.process.cwd).to_path_buf();
    sys.chdir(&cwd).map_err(|e| {
        InitError::Other(format!(
            "chdir to cwd (\"{}\") set in config.json failed: {}",
            cwd.display(),
            e.errno.desc().to_lowercase()
        ))
    })?;
    let exe = process::find_executable(Path::new("/"), &cspec.process, spec.lookup_path())?;
    process::apply_credentials(&sys, &cspec)?;
    super::init::close_other_fds();
    let path = process::c_path(&exe)?;
    let args = process::c_strings(&cspec.process.args)?;
    let env = process::c_strings(&cspec.process.env)?;
    let errno = match nix::unistd::execve(&path, &args, &env) {
        Ok(never) => match never {},
        Err(e) => e,
    };
    let arg0 = cspec.process.args.first().map(String::as_str).unwrap_or("");
    Err(process::exec_error(arg0, errno))
}

/// The names of the capabilities in our permitted set.
fn permitted_capabilities() -> Result<Vec<String>, InitError> {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const VERSION_3: u32 = 0x2008_0522;
    let mut header = Header {
        version: VERSION_3,
        pid: 0,
    };
    let mut data = [Data::default(); 2];
    // SAFETY: capget fills two Data structs for version 3.
    let r = unsafe { libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) };
    Errno::result(r).map_err(sys_err("capget", "self"))?;
    let mask = u64::from(data[0].permitted) | (u64::from(data[1].permitted) << 32);
    Ok(process::CAPABILITIES
        .iter()
        .enumerate()
        .filter(|(bit, _)| mask & (1 << bit) != 0)
        .map(|(_, name)| name.to_string())
        .collect())
}
