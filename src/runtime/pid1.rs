//! `--init`: our own small init as the container's PID 1, in the spirit of
//! tini (dockerd's `docker-init`). It is the container init itself, after
//! all set-up: it forks, the child execs the command, and PID 1 (still our
//! single-threaded code, no host binary bound in) forwards every signal it
//! receives to the child, reaps every process that ends up as its child,
//! and exits with the command's status (128 + signal when it was killed).
//!
//! Its `/proc/1/cmdline` reads `mydocker-init -- <command>`: truthful, and
//! what `ps` inside the container shows.

use std::convert::Infallible;
use std::ffi::CString;

use nix::errno::Errno;
use nix::unistd::ForkResult;

use super::process::{self, InitError};

/// The name PID 1 shows in `ps` (its `comm` and the head of its cmdline).
pub const INIT_NAME: &str = "mydocker-init";

/// Signals PID 1 never forwards: job-control stops from the terminal, which
/// would otherwise stop the init itself.
const NOT_FORWARDED: [libc::c_int; 3] = [libc::SIGCHLD, libc::SIGTTIN, libc::SIGTTOU];

/// The exit code of a child's wait status, shell style.
pub fn exit_code(status: libc::c_int) -> i32 {
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        // Stopped or continued: not an end.
        -1
    }
}

/// The title written over PID 1's argument area.
pub fn title(args: &[String]) -> String {
    let mut t = format!("{INIT_NAME} --");
    for a in args {
        t.push(' ');
        t.push_str(a);
    }
    t
}

/// Runs `path` with `args`/`env` as the child of this process, which then
/// serves as PID 1 until the child exits. Returns only when the child
/// could not be started (its `execve` failed); the caller reports that
/// like any init failure.
pub(crate) fn run(
    arg0: &str,
    path: &CString,
    args: &[CString],
    env: &[CString],
    tty: bool,
    title_text: &str,
) -> Result<Infallible, InitError> {
    let sys = |call: &'static str| move |e: Errno| super::sys::SysError::new(call, INIT_NAME, e);
    // Everything blocked from here on: PID 1 takes signals with
    // sigwaitinfo, the child unblocks them right before its execve.
    // SAFETY: plain sigset manipulation on a local.
    let all = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut set);
        set
    };
    // SAFETY: as above.
    Errno::result(unsafe { libc::sigprocmask(libc::SIG_SETMASK, &all, std::ptr::null_mut()) })
        .map_err(sys("sigprocmask"))?;
    // Before the fork, so nothing in the container ever sees PID 1 under
    // the monitor's name (the child's execve replaces both for itself).
    set_title(title_text);
    // Closed by the child's successful execve; carries its errno otherwise.
    let (exec_r, exec_w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(sys("pipe2"))?;
    // SAFETY: this process is single-threaded (the monitor's clone).
    match unsafe { nix::unistd::fork() }.map_err(sys("fork"))? {
        ForkResult::Child => {
            drop(exec_r);
            // A process group of its own, in the terminal's foreground (as
            // tini does); SIGTTOU is blocked so this cannot stop us.
            // SAFETY: plain syscalls on our own process.
            unsafe {
                libc::setpgid(0, 0);
                if tty {
                    libc::tcsetpgrp(0, libc::getpgrp());
                }
                let mut empty: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut empty);
                libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
            }
            let errno = match nix::unistd::execve(path, args, env) {
                Ok(never) => match never {},
                Err(e) => e as i32,
            };
            let _ = nix::unistd::write(&exec_w, &errno.to_ne_bytes());
            // SAFETY: _exit skips destructors that belong to PID 1.
            unsafe { libc::_exit(process::EXIT_CANNOT_EXEC) }
        }
        ForkResult::Parent { child } => {
            drop(exec_w);
            let mut buf = [0u8; 4];
            let n = loop {
                match nix::unistd::read(&exec_r, &mut buf) {
                    Err(Errno::EINTR) => continue,
                    other => break other.unwrap_or(0),
                }
            };
            if n == 4 {
                let _ = nix::sys::wait::waitpid(child, None);
                return Err(process::exec_error(
                    arg0,
                    Errno::from_raw(i32::from_ne_bytes(buf)),
                ));
            }
            // Nothing of the monitor stays open in PID 1: closing the sync
            // pipe is also what tells the monitor the start succeeded.
            // SAFETY: PID 1 never returns into code owning these fds; it
            // ends in _exit below.
            unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) };
            serve(child.as_raw(), &all)
        }
    }
}

/// PID 1's loop: forward, reap, and exit with the child's status.
fn serve(child: libc::pid_t, set: &libc::sigset_t) -> ! {
    loop {
        // SAFETY: set is a valid sigset; siginfo is not needed.
        let sig = unsafe { libc::sigwaitinfo(set, std::ptr::null_mut()) };
        if sig < 0 {
            continue; // EINTR
        }
        if sig == libc::SIGCHLD {
            loop {
                let mut status = 0;
                // SAFETY: plain waitpid on any child.
                let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
                if pid <= 0 {
                    break;
                }
                if pid == child {
                    let code = exit_code(status);
                    if code >= 0 {
                        // SAFETY: nothing to clean up; the kernel kills
                        // what is left of the container with us.
                        unsafe { libc::_exit(code) }
                    }
                }
            }
        } else if !NOT_FORWARDED.contains(&sig) {
            // SAFETY: plain kill; ESRCH (child already gone) is fine.
            unsafe { libc::kill(child, sig) };
        }
    }
}

/// Rewrites this process's command line (as `/proc/self/cmdline` and `ps`
/// show it) and its `comm`. Best effort: a failure changes nothing else.
fn set_title(title: &str) {
    if let Ok(name) = CString::new(INIT_NAME) {
        // SAFETY: PR_SET_NAME reads a NUL-terminated string.
        unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr() as libc::c_ulong, 0, 0, 0) };
    }
    let Some((start, end)) = arg_area() else {
        return;
    };
    let len = end - start;
    if len < 2 {
        return;
    }
    let bytes = title.as_bytes();
    let n = bytes.len().min(len - 2);
    // SAFETY: [start, end) is this process's own argument area (from
    // /proc/self/stat), mapped and writable; nothing reads the old
    // arguments any more.
    unsafe {
        let p = start as *mut u8;
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), p, n);
        std::ptr::write_bytes(p.add(n), 0, len - n);
        // A non-NUL last byte tells the kernel the area holds a title that
        // ends at its first NUL (setproctitle's convention).
        *p.add(len - 1) = b' ';
    }
}

/// `arg_start` and `arg_end` of this process (fields 48 and 49 of
/// `/proc/self/stat`).
fn arg_area() -> Option<(usize, usize)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3.
    let start: usize = fields.get(48 - 3)?.parse().ok()?;
    let end: usize = fields.get(49 - 3)?.parse().ok()?;
    (start != 0 && end > start).then_some((start, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_and_title() {
        assert_eq!(exit_code(3 << 8), 3);
        assert_eq!(exit_code(libc::SIGTERM), 143);
        assert_eq!(exit_code(libc::SIGKILL), 137);
        assert_eq!(
            title(&["sleep".into(), "100".into()]),
            "mydocker-init -- sleep 100"
        );
        let (s, e) = arg_area().expect("this process has an argument area");
        assert!(e > s);
    }
}
