//! `clone3(2)` with fork semantics (the child goes on with a copy of the
//! caller's stack, as after `fork`) and `CLONE_INTO_CGROUP`: on cgroup v2
//! (Linux 5.7+) the container's init is born in its cgroup, so nobody
//! writes to `cgroup.procs`, a write that waits out an RCU grace period
//! (10-20 ms) on the start path. Callers fall back to `clone` plus a move
//! when this fails (older kernels, v1).

use std::os::fd::{AsRawFd, BorrowedFd};

use nix::errno::Errno;
use nix::sched::CloneFlags;
use nix::unistd::Pid;

/// Not in the libc crate yet (linux/sched.h).
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

pub enum Forked {
    Parent(Pid),
    Child,
}

/// Forks into new namespaces (`flags`) and the cgroup v2 directory open
/// at `cgroup`; the child gets SIGCHLD semantics like `fork`.
///
/// # Safety
/// As `fork`: the caller must be single-threaded, and the child must only
/// run code that is safe after a fork before it execs or exits.
pub unsafe fn fork_into_cgroup(flags: CloneFlags, cgroup: BorrowedFd<'_>) -> Result<Forked, Errno> {
    // SAFETY: clone_args is plain integers; all zero is "nothing asked".
    let mut args: libc::clone_args = unsafe { std::mem::zeroed() };
    args.flags = flags.bits() as u64 | CLONE_INTO_CGROUP;
    args.exit_signal = libc::SIGCHLD as u64;
    args.cgroup = cgroup.as_raw_fd() as u64;
    // SAFETY: a valid clone_args of the size passed; no stack is given, so
    // the child returns here on its copy of ours, as after fork.
    let r = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &mut args as *mut libc::clone_args,
            std::mem::size_of::<libc::clone_args>(),
        )
    };
    match r {
        -1 => Err(Errno::last()),
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(Pid::from_raw(pid as i32))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;
    use std::path::{Path, PathBuf};

    /// A cgroup2 mount to try on: the unified one of a v2 or hybrid host.
    fn cgroup2_mount() -> Option<PathBuf> {
        ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| {
                nix::sys::statfs::statfs(p.as_path())
                    .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC)
            })
    }

    /// Live: needs root and a cgroup2 mount (skipped otherwise).
    #[test]
    fn the_child_is_born_in_the_cgroup() {
        let Some(mount) = cgroup2_mount().filter(|_| nix::unistd::geteuid().is_root()) else {
            eprintln!("skipped: needs root and a cgroup2 mount");
            return;
        };
        let name = format!("mydocker-clone3-test-{}", std::process::id());
        let dir = mount.join(&name);
        std::fs::create_dir(&dir).expect("mkdir cgroup");
        let fd = std::fs::File::open(&dir).expect("open cgroup");
        let want = format!("0::/{name}\n");
        // SAFETY: the child only reads a file and calls _exit.
        let forked = unsafe { fork_into_cgroup(CloneFlags::empty(), fd.as_fd()) };
        let pid = match forked {
            Ok(Forked::Child) => {
                let ok = std::fs::read_to_string("/proc/self/cgroup")
                    .is_ok_and(|c| c.lines().any(|l| format!("{l}\n") == want));
                // SAFETY: _exit skips the parent's destructors.
                unsafe { libc::_exit(if ok { 0 } else { 1 }) }
            }
            Ok(Forked::Parent(pid)) => pid,
            Err(e) => {
                let _ = std::fs::remove_dir(&dir);
                panic!("clone3: {e}");
            }
        };
        let status = nix::sys::wait::waitpid(pid, None).expect("waitpid");
        std::fs::remove_dir(&dir).expect("rmdir cgroup");
        assert_eq!(status, nix::sys::wait::WaitStatus::Exited(pid, 0));
        assert!(!Path::new(&dir).exists());
    }
}
