//! The raw system calls of container set-up, behind [`Sys`]: [`LinuxSys`]
//! does them, [`FakeSys`] records them so the mount plan and the process
//! set-up are unit-tested without root.

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};
use thiserror::Error;

use super::seccomp::SeccompProgram;

/// A failed system call, naming the call and its main argument.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("{call} {arg}: {errno}")]
pub struct SysError {
    pub call: &'static str,
    pub arg: String,
    pub errno: Errno,
}

impl SysError {
    pub fn new(call: &'static str, arg: impl std::fmt::Display, errno: Errno) -> SysError {
        SysError {
            call,
            arg: arg.to_string(),
            errno,
        }
    }
}

/// What a path is, for the "where it exists" rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    Dir,
    File,
}

/// The system calls of container set-up.
pub trait Sys {
    fn mount(
        &self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> Result<(), SysError>;
    fn umount2(&self, target: &Path, flags: MntFlags) -> Result<(), SysError>;
    /// Makes `new_root` the root and detaches the old one (runc's
    /// `pivot_root(".", ".")` trick: no put-old directory needed).
    fn pivot_root(&self, new_root: &Path) -> Result<(), SysError>;
    fn chdir(&self, path: &Path) -> Result<(), SysError>;
    fn mkdir_all(&self, path: &Path, mode: u32) -> Result<(), SysError>;
    /// Creates an empty file (a bind-mount target) unless one exists.
    fn create_file(&self, path: &Path) -> Result<(), SysError>;
    /// A character device with exactly `mode` (no umask), owned by root.
    fn mknod_char(&self, path: &Path, mode: u32, major: u64, minor: u64) -> Result<(), SysError>;
    /// A char (`c`) or block (`b`) device with exactly `mode`.
    fn mknod_device(
        &self,
        path: &Path,
        kind: char,
        mode: u32,
        major: u64,
        minor: u64,
    ) -> Result<(), SysError>;
    fn chown(&self, path: &Path, uid: u32, gid: u32) -> Result<(), SysError>;
    /// Writes `data` to an existing file (`/proc/sys/...`, `/proc/self/...`).
    fn write_file(&self, path: &Path, data: &str) -> Result<(), SysError>;
    /// Creates (or replaces) the symlink `link` -> `target`.
    fn symlink(&self, target: &Path, link: &Path) -> Result<(), SysError>;
    fn kind(&self, path: &Path) -> Option<FileKind>;
    /// `path` (absolute, as seen inside the container) resolved under
    /// `root`, following symlinks without ever leaving `root`.
    fn resolve_in_root(&self, root: &Path, path: &Path) -> Result<PathBuf, SysError>;
    fn sethostname(&self, name: &str) -> Result<(), SysError>;
    fn setdomainname(&self, name: &str) -> Result<(), SysError>;
    fn setgroups(&self, gids: &[u32]) -> Result<(), SysError>;
    fn setresgid(&self, gid: u32) -> Result<(), SysError>;
    fn setresuid(&self, uid: u32) -> Result<(), SysError>;
    fn set_keep_caps(&self, keep: bool) -> Result<(), SysError>;
    /// Drops `cap` from the bounding set.
    fn drop_bounding(&self, cap: u32) -> Result<(), SysError>;
    /// Sets effective, permitted and inheritable (bit masks).
    fn capset(&self, effective: u64, permitted: u64, inheritable: u64) -> Result<(), SysError>;
    fn clear_ambient(&self) -> Result<(), SysError>;
    /// This process's permitted capabilities (a mask).
    fn permitted_caps(&self) -> Result<u64, SysError>;
    fn set_no_new_privs(&self) -> Result<(), SysError>;
    fn setrlimit(&self, resource: u32, soft: u64, hard: u64) -> Result<(), SysError>;
    /// Installs a seccomp filter on this thread (inherited by children
    /// and kept across execve).
    fn load_seccomp(&self, program: &SeccompProgram) -> Result<(), SysError>;
}

/// The real thing.
pub struct LinuxSys;

/// capget(2)/capset(2)'s header, `_LINUX_CAPABILITY_VERSION_3`.
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

/// One of the two 32-bit halves of the capability sets.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const CAP_VERSION_3: u32 = 0x2008_0522;

fn cstr(p: &Path) -> Result<CString, SysError> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| SysError::new("path", p.display(), Errno::EINVAL))
}

fn io_errno(e: &std::io::Error) -> Errno {
    Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))
}

impl Sys for LinuxSys {
    fn mount(
        &self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> Result<(), SysError> {
        nix::mount::mount(source, target, fstype, flags, data)
            .map_err(|e| SysError::new("mount", target.display(), e))
    }

    fn umount2(&self, target: &Path, flags: MntFlags) -> Result<(), SysError> {
        nix::mount::umount2(target, flags).map_err(|e| SysError::new("umount", target.display(), e))
    }

    fn pivot_root(&self, new_root: &Path) -> Result<(), SysError> {
        let err = |call, e| SysError::new(call, new_root.display(), e);
        nix::unistd::chdir(new_root).map_err(|e| err("chdir", e))?;
        nix::unistd::pivot_root(".", ".").map_err(|e| err("pivot_root", e))?;
        // The old root is now stacked under the new one at "/": detach it.
        nix::mount::umount2(".", MntFlags::MNT_DETACH).map_err(|e| err("umount old root", e))?;
        nix::unistd::chdir("/").map_err(|e| err("chdir", e))
    }

    fn chdir(&self, path: &Path) -> Result<(), SysError> {
        nix::unistd::chdir(path).map_err(|e| SysError::new("chdir", path.display(), e))
    }

    fn mkdir_all(&self, path: &Path, mode: u32) -> Result<(), SysError> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(mode)
            .create(path)
            .map_err(|e| SysError::new("mkdir", path.display(), io_errno(&e)))
    }

    fn create_file(&self, path: &Path) -> Result<(), SysError> {
        if path.exists() {
            return Ok(());
        }
        if let Some(parent) = path.parent() {
            self.mkdir_all(parent, 0o755)?;
        }
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .open(path)
            .map(drop)
            .map_err(|e| SysError::new("create", path.display(), io_errno(&e)))
    }

    fn mknod_char(&self, path: &Path, mode: u32, major: u64, minor: u64) -> Result<(), SysError> {
        self.mknod_device(path, 'c', mode, major, minor)
    }

    fn mknod_device(
        &self,
        path: &Path,
        kind: char,
        mode: u32,
        major: u64,
        minor: u64,
    ) -> Result<(), SysError> {
        let fmt = match kind {
            'c' => libc::S_IFCHR,
            'b' => libc::S_IFBLK,
            _ => return Err(SysError::new("mknod", path.display(), Errno::EINVAL)),
        };
        let c = cstr(path)?;
        let dev = libc::makedev(major as u32, minor as u32);
        // SAFETY: c is a valid NUL-terminated path.
        let r = unsafe { libc::mknod(c.as_ptr(), fmt | (mode & 0o7777), dev) };
        Errno::result(r).map_err(|e| SysError::new("mknod", path.display(), e))?;
        // SAFETY: as above.
        let r = unsafe { libc::chmod(c.as_ptr(), mode & 0o7777) };
        Errno::result(r).map_err(|e| SysError::new("chmod", path.display(), e))?;
        Ok(())
    }

    fn chown(&self, path: &Path, uid: u32, gid: u32) -> Result<(), SysError> {
        std::os::unix::fs::lchown(path, Some(uid), Some(gid))
            .map_err(|e| SysError::new("chown", path.display(), io_errno(&e)))
    }

    fn write_file(&self, path: &Path, data: &str) -> Result<(), SysError> {
        use std::io::Write;
        std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .and_then(|mut f| f.write_all(data.as_bytes()))
            .map_err(|e| SysError::new("write", path.display(), io_errno(&e)))
    }

    fn symlink(&self, target: &Path, link: &Path) -> Result<(), SysError> {
        match std::os::unix::fs::symlink(target, link) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let _ = std::fs::remove_file(link);
                std::os::unix::fs::symlink(target, link)
                    .map_err(|e| SysError::new("symlink", link.display(), io_errno(&e)))
            }
            Err(e) => Err(SysError::new("symlink", link.display(), io_errno(&e))),
        }
    }

    fn kind(&self, path: &Path) -> Option<FileKind> {
        let md = std::fs::metadata(path).ok()?;
        Some(if md.is_dir() {
            FileKind::Dir
        } else {
            FileKind::File
        })
    }

    fn resolve_in_root(&self, root: &Path, path: &Path) -> Result<PathBuf, SysError> {
        secure_join(root, path, |p| std::fs::read_link(p).ok())
            .map_err(|e| SysError::new("resolve", path.display(), e))
    }

    fn sethostname(&self, name: &str) -> Result<(), SysError> {
        nix::unistd::sethostname(name).map_err(|e| SysError::new("sethostname", name, e))
    }

    fn setdomainname(&self, name: &str) -> Result<(), SysError> {
        // SAFETY: pointer and length describe `name`'s bytes.
        let r = unsafe { libc::setdomainname(name.as_ptr().cast(), name.len()) };
        Errno::result(r)
            .map(drop)
            .map_err(|e| SysError::new("setdomainname", name, e))
    }

    fn setgroups(&self, gids: &[u32]) -> Result<(), SysError> {
        let gids: Vec<nix::unistd::Gid> = gids
            .iter()
            .map(|g| nix::unistd::Gid::from_raw(*g))
            .collect();
        nix::unistd::setgroups(&gids).map_err(|e| SysError::new("setgroups", gids.len(), e))
    }

    fn setresgid(&self, gid: u32) -> Result<(), SysError> {
        let g = nix::unistd::Gid::from_raw(gid);
        nix::unistd::setresgid(g, g, g).map_err(|e| SysError::new("setresgid", gid, e))
    }

    fn setresuid(&self, uid: u32) -> Result<(), SysError> {
        let u = nix::unistd::Uid::from_raw(uid);
        nix::unistd::setresuid(u, u, u).map_err(|e| SysError::new("setresuid", uid, e))
    }

    fn set_keep_caps(&self, keep: bool) -> Result<(), SysError> {
        nix::sys::prctl::set_keepcaps(keep).map_err(|e| SysError::new("prctl", "KEEPCAPS", e))
    }

    fn drop_bounding(&self, cap: u32) -> Result<(), SysError> {
        // SAFETY: plain prctl with integer arguments.
        let r = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
        match Errno::result(r) {
            // A capability this kernel does not know: nothing to drop.
            Ok(_) | Err(Errno::EINVAL) => Ok(()),
            Err(e) => Err(SysError::new("prctl CAPBSET_DROP", cap, e)),
        }
    }

    fn capset(&self, effective: u64, permitted: u64, inheritable: u64) -> Result<(), SysError> {
        let hdr = CapHeader {
            version: CAP_VERSION_3,
            pid: 0,
        };
        let split = |m: u64| (m as u32, (m >> 32) as u32);
        let (e0, e1) = split(effective);
        let (p0, p1) = split(permitted);
        let (i0, i1) = split(inheritable);
        let data = [
            CapData {
                effective: e0,
                permitted: p0,
                inheritable: i0,
            },
            CapData {
                effective: e1,
                permitted: p1,
                inheritable: i1,
            },
        ];
        // SAFETY: header and the two data words are the layout capset(2)
        // expects for _LINUX_CAPABILITY_VERSION_3.
        let r = unsafe { libc::syscall(libc::SYS_capset, &hdr, data.as_ptr()) };
        Errno::result(r)
            .map(drop)
            .map_err(|e| SysError::new("capset", format!("{permitted:#x}"), e))
    }

    fn clear_ambient(&self) -> Result<(), SysError> {
        // SAFETY: plain prctl with integer arguments.
        let r = unsafe {
            libc::prctl(
                libc::PR_CAP_AMBIENT,
                libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
                0,
                0,
                0,
            )
        };
        match Errno::result(r) {
            Ok(_) | Err(Errno::EINVAL) => Ok(()),
            Err(e) => Err(SysError::new("prctl", "CAP_AMBIENT_CLEAR_ALL", e)),
        }
    }

    fn permitted_caps(&self) -> Result<u64, SysError> {
        let mut hdr = CapHeader {
            version: CAP_VERSION_3,
            pid: 0,
        };
        let mut data = [CapData::default(); 2];
        // SAFETY: header and two data words, as capget(2) expects for
        // _LINUX_CAPABILITY_VERSION_3.
        let r = unsafe { libc::syscall(libc::SYS_capget, &mut hdr, data.as_mut_ptr()) };
        Errno::result(r).map_err(|e| SysError::new("capget", "", e))?;
        Ok(u64::from(data[0].permitted) | (u64::from(data[1].permitted) << 32))
    }

    fn set_no_new_privs(&self) -> Result<(), SysError> {
        nix::sys::prctl::set_no_new_privs().map_err(|e| SysError::new("prctl", "NO_NEW_PRIVS", e))
    }

    fn setrlimit(&self, resource: u32, soft: u64, hard: u64) -> Result<(), SysError> {
        let lim = libc::rlimit {
            rlim_cur: soft,
            rlim_max: hard,
        };
        // SAFETY: lim is a valid rlimit.
        let r = unsafe { libc::setrlimit(resource as _, &lim) };
        Errno::result(r)
            .map(drop)
            .map_err(|e| SysError::new("setrlimit", resource, e))
    }

    fn load_seccomp(&self, program: &SeccompProgram) -> Result<(), SysError> {
        let what = |e| SysError::new("seccomp", format!("{} instructions", program.len()), e);
        program.validate().map_err(|_| what(Errno::EINVAL))?;
        let fprog = libc::sock_fprog {
            len: program.len() as libc::c_ushort,
            filter: program.filter.as_ptr() as *mut libc::sock_filter,
        };
        // SAFETY: fprog points at `len` sock_filter structs (8 bytes each,
        // checked above) that outlive the call; the kernel copies them.
        let r = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                program.flags as libc::c_ulong,
                &fprog as *const libc::sock_fprog,
            )
        };
        Errno::result(r).map(drop).map_err(what)
    }
}

/// Joins `path` under `root` like filepath-securejoin: each symlink met on
/// the way is resolved as if `root` were `/`, and `..` stops at `root`.
/// `read_link` returns the target of a symlink, `None` for anything else.
pub fn secure_join(
    root: &Path,
    path: &Path,
    read_link: impl Fn(&Path) -> Option<PathBuf>,
) -> Result<PathBuf, Errno> {
    let mut pending: Vec<PathBuf> = vec![path.to_path_buf()];
    let mut current = PathBuf::new(); // relative to root
    let mut links = 0;
    while let Some(p) = pending.pop() {
        let mut comps: Vec<Component> = p.components().collect();
        comps.reverse();
        while let Some(c) = comps.pop() {
            match c {
                Component::RootDir | Component::Prefix(_) => current = PathBuf::new(),
                Component::CurDir => {}
                Component::ParentDir => {
                    current.pop();
                }
                Component::Normal(name) => {
                    let candidate = current.join(name);
                    match read_link(&root.join(&candidate)) {
                        Some(target) => {
                            links += 1;
                            if links > 255 {
                                return Err(Errno::ELOOP);
                            }
                            // Resolve the target, then what is left of `p`.
                            let rest: PathBuf = comps.iter().rev().collect();
                            comps.clear();
                            pending.push(rest);
                            if target.is_absolute() {
                                current = PathBuf::new();
                            }
                            pending.push(target);
                        }
                        None => current = candidate,
                    }
                }
            }
        }
    }
    Ok(root.join(current))
}

/// A recording [`Sys`]: every call is logged as one line; paths listed in
/// `existing` are reported as existing; a call whose line starts with
/// `fail_on` fails with `EPERM`.
#[derive(Default)]
pub struct FakeSys {
    pub calls: RefCell<Vec<String>>,
    pub existing: HashMap<PathBuf, FileKind>,
    pub fail_on: Option<String>,
}

impl FakeSys {
    pub fn new() -> FakeSys {
        FakeSys::default()
    }

    /// Declares `path` as existing.
    pub fn with(mut self, path: &str, kind: FileKind) -> FakeSys {
        self.existing.insert(PathBuf::from(path), kind);
        self
    }

    pub fn calls(&self) -> Vec<String> {
        self.calls.borrow().clone()
    }

    /// The recorded `mount` lines only.
    pub fn mounts(&self) -> Vec<String> {
        self.calls()
            .into_iter()
            .filter(|c| c.starts_with("mount ") || c.starts_with("pivot_root "))
            .collect()
    }

    fn record(&self, line: String) -> Result<(), SysError> {
        let fail = self
            .fail_on
            .as_deref()
            .is_some_and(|prefix| line.starts_with(prefix));
        self.calls.borrow_mut().push(line.clone());
        if fail {
            Err(SysError::new("fake", line, Errno::EPERM))
        } else {
            Ok(())
        }
    }
}

/// `MS_*` names of a flag set, for readable recorded calls.
pub fn flag_names(flags: MsFlags) -> String {
    let names: Vec<&str> = flags.iter_names().map(|(n, _)| n).collect();
    names.join("|")
}

impl Sys for FakeSys {
    fn mount(
        &self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> Result<(), SysError> {
        self.record(format!(
            "mount {} {} {} {} {}",
            source.map_or("-".into(), |s| s.display().to_string()),
            target.display(),
            fstype.unwrap_or("-"),
            flag_names(flags),
            data.unwrap_or("-"),
        ))
    }
    fn umount2(&self, target: &Path, _flags: MntFlags) -> Result<(), SysError> {
        self.record(format!("umount {}", target.display()))
    }
    fn pivot_root(&self, new_root: &Path) -> Result<(), SysError> {
        self.record(format!("pivot_root {}", new_root.display()))
    }
    fn chdir(&self, path: &Path) -> Result<(), SysError> {
        self.record(format!("chdir {}", path.display()))
    }
    fn mkdir_all(&self, path: &Path, mode: u32) -> Result<(), SysError> {
        self.record(format!("mkdir {} {mode:o}", path.display()))
    }
    fn create_file(&self, path: &Path) -> Result<(), SysError> {
        self.record(format!("create {}", path.display()))
    }
    fn mknod_char(&self, path: &Path, mode: u32, major: u64, minor: u64) -> Result<(), SysError> {
        self.record(format!("mknod {} {mode:o} {major}:{minor}", path.display()))
    }
    fn mknod_device(
        &self,
        path: &Path,
        kind: char,
        mode: u32,
        major: u64,
        minor: u64,
    ) -> Result<(), SysError> {
        self.record(format!(
            "mknod {} {kind} {mode:o} {major}:{minor}",
            path.display()
        ))
    }
    fn chown(&self, path: &Path, uid: u32, gid: u32) -> Result<(), SysError> {
        self.record(format!("chown {} {uid}:{gid}", path.display()))
    }
    fn write_file(&self, path: &Path, data: &str) -> Result<(), SysError> {
        self.record(format!("write {} {data}", path.display()))
    }
    fn symlink(&self, target: &Path, link: &Path) -> Result<(), SysError> {
        self.record(format!(
            "symlink {} -> {}",
            link.display(),
            target.display()
        ))
    }
    fn kind(&self, path: &Path) -> Option<FileKind> {
        self.existing.get(path).copied()
    }
    fn resolve_in_root(&self, root: &Path, path: &Path) -> Result<PathBuf, SysError> {
        secure_join(root, path, |_| None).map_err(|e| SysError::new("resolve", path.display(), e))
    }
    fn sethostname(&self, name: &str) -> Result<(), SysError> {
        self.record(format!("sethostname {name}"))
    }
    fn setdomainname(&self, name: &str) -> Result<(), SysError> {
        self.record(format!("setdomainname {name}"))
    }
    fn setgroups(&self, gids: &[u32]) -> Result<(), SysError> {
        self.record(format!("setgroups {gids:?}"))
    }
    fn setresgid(&self, gid: u32) -> Result<(), SysError> {
        self.record(format!("setresgid {gid}"))
    }
    fn setresuid(&self, uid: u32) -> Result<(), SysError> {
        self.record(format!("setresuid {uid}"))
    }
    fn set_keep_caps(&self, keep: bool) -> Result<(), SysError> {
        self.record(format!("keepcaps {keep}"))
    }
    fn drop_bounding(&self, cap: u32) -> Result<(), SysError> {
        self.record(format!("drop_bounding {cap}"))
    }
    fn capset(&self, effective: u64, permitted: u64, inheritable: u64) -> Result<(), SysError> {
        self.record(format!(
            "capset e={effective:#x} p={permitted:#x} i={inheritable:#x}"
        ))
    }
    fn clear_ambient(&self) -> Result<(), SysError> {
        self.record("clear_ambient".into())
    }
    fn permitted_caps(&self) -> Result<u64, SysError> {
        Ok(u64::MAX)
    }
    fn set_no_new_privs(&self) -> Result<(), SysError> {
        self.record("no_new_privs".into())
    }
    fn setrlimit(&self, resource: u32, soft: u64, hard: u64) -> Result<(), SysError> {
        self.record(format!("setrlimit {resource} {soft} {hard}"))
    }
    fn load_seccomp(&self, program: &SeccompProgram) -> Result<(), SysError> {
        self.record(format!("seccomp {} flags {}", program.len(), program.flags))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secure_join_stays_in_root() {
        let links: HashMap<PathBuf, PathBuf> = [
            ("/r/evil", "/etc"),
            ("/r/up", "../../.."),
            ("/r/a/rel", "b"),
        ]
        .into_iter()
        .map(|(a, b)| (PathBuf::from(a), PathBuf::from(b)))
        .collect();
        let rl = |p: &Path| links.get(p).cloned();
        let j = |p: &str| secure_join(Path::new("/r"), Path::new(p), rl).expect("joins");
        assert_eq!(j("/evil/passwd"), PathBuf::from("/r/etc/passwd"));
        assert_eq!(j("/up/x"), PathBuf::from("/r/x"));
        assert_eq!(j("/../../x"), PathBuf::from("/r/x"));
        assert_eq!(j("/a/rel/c"), PathBuf::from("/r/a/b/c"));
        assert_eq!(j("/"), PathBuf::from("/r"));
    }

    #[test]
    fn secure_join_detects_loops() {
        let rl = |p: &Path| (p == Path::new("/r/l")).then(|| PathBuf::from("/l"));
        assert_eq!(
            secure_join(Path::new("/r"), Path::new("/l"), rl),
            Err(Errno::ELOOP)
        );
    }

    #[test]
    fn fake_records_and_fails_on_demand() {
        let sys = FakeSys {
            fail_on: Some("sethostname".into()),
            ..FakeSys::default()
        };
        sys.chdir(Path::new("/x")).expect("chdir ok");
        assert!(sys.sethostname("h").is_err());
        assert_eq!(sys.calls(), vec!["chdir /x", "sethostname h"]);
    }
}
