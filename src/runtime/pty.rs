//! Ptys taken from a container's own devpts, shared by the container's
//! init and exec processes (as runc does): the process opens the master
//! inside the container, gets the slave with `TIOCGPTPEER`, makes it its
//! controlling terminal and sends the master to its monitor over a unix
//! socket (`SCM_RIGHTS`). Inside the container `tty` then names
//! `/dev/pts/N`.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};

use super::process::{self, InitError};
use super::sys::SysError;

/// The `ptmx` of the container's devpts instance (the path the init and
/// exec processes open once inside the container's mount namespace).
pub(crate) const CONTAINER_PTMX: &str = "/dev/pts/ptmx";

/// Where a container process's standard streams come from.
pub(crate) enum ChildIo {
    /// Pipes or /dev/null, already open in the monitor.
    Fds {
        stdin: RawFd,
        stdout: RawFd,
        stderr: RawFd,
    },
    /// A pty allocated inside the container; its master goes back to the
    /// monitor over this socket.
    Pty(RawFd),
}

fn sys_err(call: &'static str, arg: impl std::fmt::Display) -> impl FnOnce(Errno) -> SysError {
    move |e| SysError::new(call, arg, e)
}

/// Opens a new pty at `ptmx`, unlocked and sized `[rows, cols]` if given;
/// returns the master and the slave (opened through `TIOCGPTPEER`, no path
/// look-up a container could redirect). Both are close-on-exec.
pub(crate) fn open(ptmx: &Path, size: Option<[u16; 2]>) -> Result<(OwnedFd, OwnedFd), InitError> {
    let flags = libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC;
    let c = process::c_path(ptmx)?;
    // SAFETY: c is a valid NUL-terminated path.
    let master = Errno::result(unsafe { libc::open(c.as_ptr(), flags) })
        .map_err(sys_err("open", ptmx.display()))?;
    // SAFETY: open returned a new fd that we own.
    let master = unsafe { OwnedFd::from_raw_fd(master) };
    let unlock: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK reads an int.
    Errno::result(unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &unlock) })
        .map_err(sys_err("ioctl", "TIOCSPTLCK"))?;
    // SAFETY: TIOCGPTPEER opens the slave of this master.
    let slave = Errno::result(unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCGPTPEER, flags) })
        .map_err(sys_err("ioctl", "TIOCGPTPEER"))?;
    // SAFETY: as above.
    let slave = unsafe { OwnedFd::from_raw_fd(slave) };
    if let Some([rows, cols]) = size {
        let ws = libc::winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ reads a winsize.
        Errno::result(unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws) })
            .map_err(sys_err("ioctl", "TIOCSWINSZ"))?;
    }
    Ok((master, slave))
}

/// The slave's path in the devpts instance `master` came from
/// (`<devpts>/N`, `TIOCGPTN`).
pub(crate) fn slave_path(devpts: &Path, master: &OwnedFd) -> Result<PathBuf, InitError> {
    let mut n: libc::c_uint = 0;
    // SAFETY: TIOCGPTN writes an unsigned int.
    Errno::result(unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCGPTN, &mut n) })
        .map_err(sys_err("ioctl", "TIOCGPTN"))?;
    Ok(devpts.join(n.to_string()))
}

/// Makes `slave` the standard streams and the controlling terminal of this
/// process, which must be a session leader without one (`setsid`).
pub(crate) fn make_controlling(slave: &OwnedFd) -> Result<(), InitError> {
    for to in 0..3 {
        // SAFETY: plain dup2 of an fd we own onto the standard ones.
        Errno::result(unsafe { libc::dup2(slave.as_raw_fd(), to) }).map_err(sys_err("dup2", to))?;
    }
    // SAFETY: TIOCSCTTY takes an int argument.
    Errno::result(unsafe { libc::ioctl(0, libc::TIOCSCTTY, 0) })
        .map_err(sys_err("ioctl", "TIOCSCTTY"))?;
    Ok(())
}

/// Sends the pty master to the monitor.
pub(crate) fn send_master(sock: RawFd, master: &OwnedFd) -> Result<(), InitError> {
    let fds = [master.as_raw_fd()];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    loop {
        match sendmsg::<()>(sock, &[IoSlice::new(b"m")], &cmsg, MsgFlags::empty(), None) {
            Err(Errno::EINTR) => continue,
            r => {
                r.map_err(sys_err("sendmsg", "pty master"))?;
                return Ok(());
            }
        }
    }
}

/// Receives the pty master the container process sends; `None` if it
/// failed (or exited) before sending one, or sent something other than a
/// character device (a container could try to).
pub(crate) fn receive_master(sock: &OwnedFd) -> Option<OwnedFd> {
    let mut byte = [0u8; 1];
    let mut iov = [IoSliceMut::new(&mut byte)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let msg = loop {
        match recvmsg::<()>(
            sock.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Err(Errno::EINTR) => continue,
            Err(_) => return None,
            Ok(m) => break m,
        }
    };
    let cmsgs = msg.cmsgs().ok()?;
    for c in cmsgs {
        if let ControlMessageOwned::ScmRights(fds) = c {
            let mut owned: Vec<OwnedFd> = fds
                .into_iter()
                // SAFETY: SCM_RIGHTS installed these fds for us.
                .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) })
                .collect();
            if owned.len() == 1 {
                return owned.pop().filter(is_char_device);
            }
        }
    }
    None
}

/// A pty master is a character device.
fn is_char_device(fd: &OwnedFd) -> bool {
    nix::sys::stat::fstat(fd).is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFCHR)
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};

    fn pair() -> (OwnedFd, OwnedFd) {
        socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .expect("socketpair")
    }

    #[test]
    fn opens_sized_pty_and_passes_the_master() {
        let (master, slave) = open(Path::new("/dev/ptmx"), Some([24, 80])).expect("pty");
        let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
        // SAFETY: TIOCGWINSZ writes a winsize.
        Errno::result(unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) })
            .expect("winsize");
        assert_eq!((ws.ws_row, ws.ws_col), (24, 80));
        let name = slave_path(Path::new("/dev/pts"), &master).expect("name");
        let link = std::fs::read_link(format!("/proc/self/fd/{}", slave.as_raw_fd()));
        assert_eq!(link.expect("readlink"), name);

        let (ours, theirs) = pair();
        send_master(theirs.as_raw_fd(), &master).expect("send");
        let got = receive_master(&ours).expect("master");
        // The same pty: what goes into the received master reaches the slave.
        nix::unistd::write(&got, b"x\n").expect("write");
        let mut buf = [0u8; 8];
        let n = nix::unistd::read(&slave, &mut buf).expect("read");
        assert_eq!(&buf[..n], b"x\n");
    }

    #[test]
    fn no_master_or_not_a_device_is_none() {
        let (ours, theirs) = pair();
        drop(theirs);
        assert!(receive_master(&ours).is_none());

        let (ours, theirs) = pair();
        let (r, _w) = nix::unistd::pipe().expect("pipe");
        send_master(theirs.as_raw_fd(), &r).expect("send");
        assert!(receive_master(&ours).is_none());
    }

    #[test]
    fn open_failure_names_the_path() {
        let err = open(Path::new("/nonexistent/ptmx"), None).expect_err("fails");
        assert!(err.to_string().contains("/nonexistent/ptmx"), "{err}");
    }
}
