//! The few `bpf(2)` calls a cgroup v2 device filter takes, behind
//! [`BpfSys`]: [`LinuxBpf`] makes them; the test fake records them, so
//! the attach/replace/detach logic of [`super::device_filter`] is tested
//! without root. The ABI numbers are the kernel's (`linux/bpf.h`); `libc`
//! has the syscall number only.

use std::fmt;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use nix::errno::Errno;
#[cfg(test)]
use std::os::fd::AsFd;

use super::device_filter::Insn;

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_DETACH: libc::c_long = 9;
const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
const BPF_PROG_QUERY: libc::c_long = 16;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
/// Several programs per cgroup, each of which must allow an access.
const BPF_F_ALLOW_MULTI: u32 = 1 << 1;

/// A failed `bpf(2)` command, with the verifier's log when it has one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BpfError {
    pub call: &'static str,
    pub errno: Errno,
    pub log: String,
}

impl fmt::Display for BpfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bpf {}: {}", self.call, self.errno)?;
        if !self.log.is_empty() {
            write!(f, " (verifier: {})", self.log.trim())?;
        }
        Ok(())
    }
}

impl std::error::Error for BpfError {}

fn err(call: &'static str) -> impl FnOnce(Errno) -> BpfError {
    move |errno| BpfError {
        call,
        errno,
        log: String::new(),
    }
}

/// The device-program commands of `bpf(2)`.
pub trait BpfSys: Send + Sync + fmt::Debug {
    /// Loads a `BPF_PROG_TYPE_CGROUP_DEVICE` program.
    fn load_device_program(&self, insns: &[Insn]) -> Result<OwnedFd, BpfError>;
    /// The IDs of the device programs attached to the cgroup itself.
    fn attached_device_programs(&self, cgroup: BorrowedFd<'_>) -> Result<Vec<u32>, BpfError>;
    /// An fd for a loaded program; `ENOENT` once it is gone.
    fn program_by_id(&self, id: u32) -> Result<OwnedFd, BpfError>;
    /// Attaches with `BPF_F_ALLOW_MULTI`.
    fn attach_device_program(
        &self,
        cgroup: BorrowedFd<'_>,
        program: BorrowedFd<'_>,
    ) -> Result<(), BpfError>;
    fn detach_device_program(
        &self,
        cgroup: BorrowedFd<'_>,
        program: BorrowedFd<'_>,
    ) -> Result<(), BpfError>;
}

/// The real calls.
#[derive(Debug, Default)]
pub struct LinuxBpf;

#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

#[repr(C)]
#[derive(Default)]
struct AttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
}

#[repr(C)]
#[derive(Default)]
struct QueryAttr {
    target_fd: u32,
    attach_type: u32,
    query_flags: u32,
    attach_flags: u32,
    prog_ids: u64,
    prog_cnt: u32,
    _pad: u32,
}

#[repr(C)]
#[derive(Default)]
struct GetIdAttr {
    prog_id: u32,
    next_id: u32,
    open_flags: u32,
}

/// `bpf(cmd, attr, sizeof attr)`.
fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> Result<libc::c_long, Errno> {
    // SAFETY: attr is a live, properly laid-out bpf_attr prefix of
    // size_of::<T>() bytes; the kernel zero-extends the rest.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T as *mut libc::c_void,
            std::mem::size_of::<T>() as libc::c_uint,
        )
    };
    Errno::result(r)
}

fn owned(fd: libc::c_long) -> OwnedFd {
    // SAFETY: a fresh fd the kernel just returned to us.
    unsafe { OwnedFd::from_raw_fd(fd as i32) }
}

impl LinuxBpf {
    fn load(&self, insns: &[Insn], log: Option<&mut [u8]>) -> Result<OwnedFd, Errno> {
        let code: Vec<u64> = insns.iter().map(|i| i.encode()).collect();
        let license = c"GPL";
        let mut name = [0u8; 16];
        name[..12].copy_from_slice(b"mydocker_dev");
        let mut attr = ProgLoadAttr {
            prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
            insn_cnt: code.len() as u32,
            insns: code.as_ptr() as u64,
            license: license.as_ptr() as u64,
            prog_name: name,
            ..Default::default()
        };
        if let Some(buf) = log {
            attr.log_level = 1;
            attr.log_size = buf.len() as u32;
            attr.log_buf = buf.as_mut_ptr() as u64;
        }
        bpf(BPF_PROG_LOAD, &mut attr).map(owned)
    }
}

impl BpfSys for LinuxBpf {
    fn load_device_program(&self, insns: &[Insn]) -> Result<OwnedFd, BpfError> {
        match self.load(insns, None) {
            Ok(fd) => Ok(fd),
            // The verifier said no: load again with its log, to say why.
            Err(errno @ (Errno::EINVAL | Errno::EACCES)) => {
                let mut log = vec![0u8; 64 * 1024];
                let second = self.load(insns, Some(&mut log));
                let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
                let text = String::from_utf8_lossy(&log[..end]);
                let tail: Vec<&str> = text.lines().rev().take(5).collect();
                match second {
                    Ok(fd) => Ok(fd),
                    Err(_) => Err(BpfError {
                        call: "BPF_PROG_LOAD",
                        errno,
                        log: tail.into_iter().rev().collect::<Vec<_>>().join("; "),
                    }),
                }
            }
            Err(e) => Err(err("BPF_PROG_LOAD")(e)),
        }
    }

    fn attached_device_programs(&self, cgroup: BorrowedFd<'_>) -> Result<Vec<u32>, BpfError> {
        let mut ids = vec![0u32; 64];
        loop {
            let mut attr = QueryAttr {
                target_fd: cgroup.as_raw_fd() as u32,
                attach_type: BPF_CGROUP_DEVICE,
                prog_ids: ids.as_mut_ptr() as u64,
                prog_cnt: ids.len() as u32,
                ..Default::default()
            };
            match bpf(BPF_PROG_QUERY, &mut attr) {
                Ok(_) => {
                    ids.truncate(attr.prog_cnt as usize);
                    return Ok(ids);
                }
                // More programs than room: the kernel said how many.
                Err(Errno::ENOSPC) if attr.prog_cnt as usize > ids.len() => {
                    ids = vec![0; attr.prog_cnt as usize];
                }
                Err(e) => return Err(err("BPF_PROG_QUERY")(e)),
            }
        }
    }

    fn program_by_id(&self, id: u32) -> Result<OwnedFd, BpfError> {
        let mut attr = GetIdAttr {
            prog_id: id,
            ..Default::default()
        };
        bpf(BPF_PROG_GET_FD_BY_ID, &mut attr)
            .map(owned)
            .map_err(err("BPF_PROG_GET_FD_BY_ID"))
    }

    fn attach_device_program(
        &self,
        cgroup: BorrowedFd<'_>,
        program: BorrowedFd<'_>,
    ) -> Result<(), BpfError> {
        let mut attr = AttachAttr {
            target_fd: cgroup.as_raw_fd() as u32,
            attach_bpf_fd: program.as_raw_fd() as u32,
            attach_type: BPF_CGROUP_DEVICE,
            attach_flags: BPF_F_ALLOW_MULTI,
            ..Default::default()
        };
        bpf(BPF_PROG_ATTACH, &mut attr)
            .map(drop)
            .map_err(err("BPF_PROG_ATTACH"))
    }

    fn detach_device_program(
        &self,
        cgroup: BorrowedFd<'_>,
        program: BorrowedFd<'_>,
    ) -> Result<(), BpfError> {
        let mut attr = AttachAttr {
            target_fd: cgroup.as_raw_fd() as u32,
            attach_bpf_fd: program.as_raw_fd() as u32,
            attach_type: BPF_CGROUP_DEVICE,
            ..Default::default()
        };
        bpf(BPF_PROG_DETACH, &mut attr)
            .map(drop)
            .map_err(err("BPF_PROG_DETACH"))
    }
}

/// A recording stand-in: programs are memfds (an fd of their own each),
/// cgroups are told apart by inode, and every call is logged.
#[cfg(test)]
#[derive(Debug, Default)]
pub struct FakeBpf {
    state: std::sync::Mutex<FakeState>,
}

#[cfg(test)]
#[derive(Debug, Default)]
struct FakeState {
    next_id: u32,
    /// Program inode -> (id, instructions).
    programs: std::collections::HashMap<u64, (u32, Vec<Insn>)>,
    /// Cgroup inode -> attached program IDs.
    attached: std::collections::HashMap<u64, Vec<u32>>,
    calls: Vec<String>,
    fail_load: bool,
}

#[cfg(test)]
impl FakeBpf {
    pub fn calls(&self) -> Vec<String> {
        self.state.lock().unwrap().calls.clone()
    }

    /// The programs attached to the cgroup at `dir`.
    pub fn attached_to(&self, dir: &std::path::Path) -> Vec<Vec<Insn>> {
        use std::os::unix::fs::MetadataExt;
        let ino = std::fs::metadata(dir).map(|m| m.ino()).unwrap_or(0);
        let st = self.state.lock().unwrap();
        let ids = st.attached.get(&ino).cloned().unwrap_or_default();
        ids.iter()
            .filter_map(|id| st.programs.values().find(|(i, _)| i == id))
            .map(|(_, insns)| insns.clone())
            .collect()
    }

    /// The next loads fail as a verifier refusal would.
    pub fn fail_loads(&self) {
        self.state.lock().unwrap().fail_load = true;
    }

    fn ino(fd: BorrowedFd<'_>) -> u64 {
        nix::sys::stat::fstat(fd).map(|s| s.st_ino).unwrap_or(0)
    }

    fn memfd() -> OwnedFd {
        // SAFETY: a plain memfd_create call.
        let fd = unsafe { libc::memfd_create(c"fake-bpf".as_ptr(), libc::MFD_CLOEXEC) };
        assert!(fd >= 0, "memfd_create");
        owned(fd as libc::c_long)
    }
}

#[cfg(test)]
impl BpfSys for FakeBpf {
    fn load_device_program(&self, insns: &[Insn]) -> Result<OwnedFd, BpfError> {
        let mut st = self.state.lock().unwrap();
        if st.fail_load {
            st.calls.push("load failed".into());
            return Err(BpfError {
                call: "BPF_PROG_LOAD",
                errno: Errno::EACCES,
                log: "R0 !read_ok".into(),
            });
        }
        st.next_id += 1;
        let id = st.next_id;
        let fd = Self::memfd();
        st.programs
            .insert(Self::ino(fd.as_fd()), (id, insns.to_vec()));
        st.calls.push(format!("load {id} ({} insns)", insns.len()));
        Ok(fd)
    }

    fn attached_device_programs(&self, cgroup: BorrowedFd<'_>) -> Result<Vec<u32>, BpfError> {
        let mut st = self.state.lock().unwrap();
        let ids = st
            .attached
            .get(&Self::ino(cgroup))
            .cloned()
            .unwrap_or_default();
        st.calls.push(format!("query {ids:?}"));
        Ok(ids)
    }

    fn program_by_id(&self, id: u32) -> Result<OwnedFd, BpfError> {
        let mut st = self.state.lock().unwrap();
        let Some(insns) = st
            .programs
            .values()
            .find(|(i, _)| *i == id)
            .map(|(_, p)| p.clone())
        else {
            return Err(err("BPF_PROG_GET_FD_BY_ID")(Errno::ENOENT));
        };
        // Another fd for the same program: a new memfd, mapped to its id.
        let fd = Self::memfd();
        st.programs.insert(Self::ino(fd.as_fd()), (id, insns));
        Ok(fd)
    }

    fn attach_device_program(
        &self,
        cgroup: BorrowedFd<'_>,
        program: BorrowedFd<'_>,
    ) -> Result<(), BpfError> {
        let mut st = self.state.lock().unwrap();
        let id = st.programs[&Self::ino(program)].0;
        st.attached.entry(Self::ino(cgroup)).or_default().push(id);
        st.calls.push(format!("attach {id}"));
        Ok(())
    }

    fn detach_device_program(
        &self,
        cgroup: BorrowedFd<'_>,
        program: BorrowedFd<'_>,
    ) -> Result<(), BpfError> {
        let mut st = self.state.lock().unwrap();
        let id = st.programs[&Self::ino(program)].0;
        let list = st.attached.entry(Self::ino(cgroup)).or_default();
        let Some(at) = list.iter().position(|i| *i == id) else {
            return Err(err("BPF_PROG_DETACH")(Errno::ENOENT));
        };
        list.remove(at);
        st.calls.push(format!("detach {id}"));
        Ok(())
    }
}
