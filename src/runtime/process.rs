//! The container's init, between `clone` and `execve`: user, groups,
//! capabilities, `no_new_privs`, rlimits, working directory and the
//! entrypoint look-up, each step through [`Sys`].
//!
//! Order follows runc: the seccomp filter first unless `no_new_privs` is
//! set (installing it then needs CAP_SYS_ADMIN), bounding set (needs
//! CAP_SETPCAP), the user switch with KEEPCAPS, the remaining sets,
//! `no_new_privs`, and there the filter when it waited for it.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::spec::{ContainerSpec, ProcessSpec};
use super::sys::{Sys, SysError};

/// Capability names in kernel order (`CAP_CHOWN` is 0).
pub const CAPABILITIES: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// Exit code of a container whose entrypoint is not found.
pub const EXIT_NOT_FOUND: i32 = 127;
/// Exit code of a container whose entrypoint cannot be executed.
pub const EXIT_CANNOT_EXEC: i32 = 126;
/// Exit code dockerd gives any other start failure.
pub const EXIT_START_FAILED: i32 = 128;

#[derive(Debug, Error)]
pub enum InitError {
    #[error(transparent)]
    Sys(#[from] SysError),
    #[error(transparent)]
    Rootfs(#[from] super::rootfs::RootfsError),
    #[error("unknown capability {0:?}")]
    UnknownCapability(String),
    #[error("unknown ulimit {0:?}")]
    UnknownRlimit(String),
    /// The entrypoint could not be found or run, in runc's words.
    #[error("{message}")]
    Exec { message: String, exit_code: i32 },
    #[error("{0}")]
    Other(String),
}

impl InitError {
    /// The container's exit code for this failure, as dockerd reports it.
    pub fn exit_code(&self) -> i32 {
        match self {
            InitError::Exec { exit_code, .. } => *exit_code,
            _ => EXIT_START_FAILED,
        }
    }
}

/// What the init sends the monitor over the sync pipe when it fails.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct InitFailure {
    pub message: String,
    pub exit_code: i32,
}

/// The capability set named by `names` as a bit mask.
pub fn capability_mask(names: &[String]) -> Result<u64, InitError> {
    let mut mask = 0u64;
    for name in names {
        let upper = name.to_ascii_uppercase();
        let full = if upper.starts_with("CAP_") {
            upper
        } else {
            format!("CAP_{upper}")
        };
        if full == "CAP_ALL" {
            return Ok(all_capabilities());
        }
        let bit = CAPABILITIES
            .iter()
            .position(|c| *c == full)
            .ok_or_else(|| InitError::UnknownCapability(name.clone()))?;
        mask |= 1 << bit;
    }
    Ok(mask)
}

/// Every capability this kernel knows (from `cap_last_cap`), capped to the
/// names we know.
pub fn all_capabilities() -> u64 {
    let last = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .unwrap_or(CAPABILITIES.len() as u32 - 1)
        .min(63);
    if last == 63 {
        u64::MAX
    } else {
        (1u64 << (last + 1)) - 1
    }
}

/// `RLIMIT_*` number of a Docker ulimit name.
pub fn rlimit_resource(name: &str) -> Option<u32> {
    let name = name.to_ascii_lowercase();
    let name = name.strip_prefix("rlimit_").unwrap_or(&name);
    Some(match name {
        "cpu" => 0,
        "fsize" => 1,
        "data" => 2,
        "stack" => 3,
        "core" => 4,
        "rss" => 5,
        "nproc" => 6,
        "nofile" => 7,
        "memlock" => 8,
        "as" => 9,
        "locks" => 10,
        "sigpending" => 11,
        "msgqueue" => 12,
        "nice" => 13,
        "rtprio" => 14,
        "rttime" => 15,
        _ => return None,
    })
}

/// Applies rlimits, user, groups, capabilities and `no_new_privs`, in
/// runc's order.
pub fn apply_credentials(sys: &dyn Sys, spec: &ContainerSpec) -> Result<(), InitError> {
    let p = &spec.process;
    if let Some(adj) = p.oom_score_adj {
        // Lowering it needs CAP_SYS_RESOURCE: before any capability goes.
        sys.write_file(Path::new("/proc/self/oom_score_adj"), &adj.to_string())?;
    }
    for r in &p.rlimits {
        let res =
            rlimit_resource(&r.name).ok_or_else(|| InitError::UnknownRlimit(r.name.clone()))?;
        sys.setrlimit(res, r.soft, r.hard)?;
    }
    // Without no_new_privs, installing a filter takes CAP_SYS_ADMIN: now,
    // before any capability goes (runc's order). The filter must then
    // allow the calls below, which the default profile does.
    if !p.no_new_privileges {
        if let Some(filter) = &p.seccomp {
            sys.load_seccomp(filter)?;
        }
    }
    // Never more than we hold: a daemon running without some capability
    // (a restricted host) cannot grant it.
    let held = all_capabilities() & sys.permitted_caps()?;
    let caps = if spec.privileged {
        held
    } else {
        capability_mask(&p.capabilities)? & held
    };
    let last = 63 - all_capabilities().leading_zeros();
    for cap in 0..=last {
        if caps & (1 << cap) == 0 {
            sys.drop_bounding(cap)?;
        }
    }
    sys.set_keep_caps(true)?;
    sys.setgroups(&p.additional_gids)?;
    sys.setresgid(p.gid)?;
    sys.setresuid(p.uid)?;
    sys.set_keep_caps(false)?;
    // dockerd leaves inheritable and ambient empty; root gets the rest
    // back from the bounding set at execve, other users keep none.
    sys.capset(caps, caps, 0)?;
    sys.clear_ambient()?;
    if p.no_new_privileges {
        sys.set_no_new_privs()?;
        // With no_new_privs no privilege is needed: as late as possible.
        if let Some(filter) = &p.seccomp {
            sys.load_seccomp(filter)?;
        }
    }
    Ok(())
}

/// Finds the entrypoint like Go's `exec.LookPath` in runc, with dockerd's
/// messages; `root` prefixes every path (empty once pivoted).
pub fn find_executable(root: &Path, p: &ProcessSpec, path_var: &str) -> Result<PathBuf, InitError> {
    let arg0 = p.args.first().map(String::as_str).unwrap_or_default();
    let inside = |p: &Path| root.join(p.strip_prefix("/").unwrap_or(p));
    let check = |candidate: &Path| -> Result<(), Errno> {
        let md = std::fs::metadata(inside(candidate))
            .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::ENOENT)))?;
        if md.is_dir() || md.permissions().mode() & 0o111 == 0 {
            return Err(Errno::EACCES);
        }
        Ok(())
    };
    if arg0.contains('/') {
        let cand = if Path::new(arg0).is_absolute() {
            PathBuf::from(arg0)
        } else {
            Path::new(&p.cwd).join(arg0)
        };
        return match check(&cand) {
            Ok(()) => Ok(PathBuf::from(arg0)),
            Err(Errno::EACCES) => Err(InitError::Exec {
                message: format!("exec: \"{arg0}\": permission denied"),
                exit_code: EXIT_CANNOT_EXEC,
            }),
            Err(e) => Err(InitError::Exec {
                message: format!("exec: \"{arg0}\": stat {arg0}: {}", e.desc().to_lowercase()),
                exit_code: EXIT_NOT_FOUND,
            }),
        };
    }
    for dir in path_var.split(':') {
        let dir = if dir.is_empty() { "." } else { dir };
        let cand = Path::new(dir).join(arg0);
        if !arg0.is_empty() && check(&cand).is_ok() {
            return Ok(cand);
        }
    }
    Err(InitError::Exec {
        message: format!("exec: \"{arg0}\": executable file not found in $PATH"),
        exit_code: EXIT_NOT_FOUND,
    })
}

/// Turns an `execve` failure into dockerd's message and exit code.
pub fn exec_error(arg0: &str, errno: Errno) -> InitError {
    let exit_code = match errno {
        Errno::ENOENT => EXIT_NOT_FOUND,
        _ => EXIT_CANNOT_EXEC,
    };
    InitError::Exec {
        message: format!("exec: \"{arg0}\": {}", errno.desc().to_lowercase()),
        exit_code,
    }
}

/// NUL-terminated copies for `execve`.
pub fn c_strings(items: &[String]) -> Result<Vec<CString>, InitError> {
    items
        .iter()
        .map(|s| {
            CString::new(s.as_bytes()).map_err(|_| InitError::Other("NUL byte in argument".into()))
        })
        .collect()
}

/// `path` as a C string.
pub fn c_path(path: &Path) -> Result<CString, InitError> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| InitError::Other("NUL byte in path".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::spec::Rlimit;
    use crate::runtime::sys::FakeSys;

    #[test]
    fn default_capabilities_mask() {
        let spec = ContainerSpec::default();
        let mask = capability_mask(&spec.process.capabilities).expect("known");
        assert_eq!(mask.count_ones(), 14);
        assert_eq!(mask & (1 << 21), 0, "no CAP_SYS_ADMIN");
        assert_ne!(mask & (1 << 0), 0, "CAP_CHOWN");
        assert_eq!(
            capability_mask(&["net_admin".into()]).expect("short"),
            1 << 12
        );
        assert!(capability_mask(&["CAP_BOGUS".into()]).is_err());
    }

    #[test]
    fn credentials_order() {
        let sys = FakeSys::new();
        let mut spec = ContainerSpec::default();
        spec.process.uid = 1000;
        spec.process.gid = 100;
        spec.process.additional_gids = vec![10, 20];
        spec.process.no_new_privileges = true;
        spec.process.oom_score_adj = Some(-500);
        spec.process.rlimits = vec![Rlimit {
            name: "nofile".into(),
            soft: 1024,
            hard: 2048,
        }];
        apply_credentials(&sys, &spec).expect("applies");
        let calls = sys.calls();
        let pos = |s: &str| {
            calls
                .iter()
                .position(|c| c.starts_with(s))
                .unwrap_or_else(|| panic!("{s} missing in {calls:#?}"))
        };
        assert!(calls.contains(&"setrlimit 7 1024 2048".to_string()));
        assert_eq!(calls[0], "write /proc/self/oom_score_adj -500");
        assert!(calls.contains(&"drop_bounding 21".to_string()));
        assert!(!calls.contains(&"drop_bounding 0".to_string()));
        assert!(pos("drop_bounding") < pos("keepcaps true"));
        assert!(pos("keepcaps true") < pos("setgroups [10, 20]"));
        assert!(pos("setgroups") < pos("setresgid 100"));
        assert!(pos("setresgid") < pos("setresuid 1000"));
        assert!(pos("setresuid") < pos("keepcaps false"));
        assert!(pos("keepcaps false") < pos("capset"));
        assert_eq!(calls.last().map(String::as_str), Some("no_new_privs"));

        // A filter: with no_new_privs, right after it; without, before
        // any capability is dropped (it needs CAP_SYS_ADMIN then).
        let filter = crate::runtime::seccomp::SeccompProgram {
            filter: vec![0; 16],
            flags: 0,
        };
        spec.process.seccomp = Some(filter);
        let sys = FakeSys::new();
        apply_credentials(&sys, &spec).expect("applies");
        let calls = sys.calls();
        assert_eq!(
            calls[calls.len() - 2..],
            ["no_new_privs", "seccomp 2 flags 0"]
        );
        spec.process.no_new_privileges = false;
        let sys = FakeSys::new();
        apply_credentials(&sys, &spec).expect("applies");
        let calls = sys.calls();
        let at = |s: &str| calls.iter().position(|c| c.starts_with(s)).unwrap();
        assert!(at("setrlimit") < at("seccomp") && at("seccomp") < at("drop_bounding"));
        assert!(!calls.contains(&"no_new_privs".to_string()));
        let bad = ContainerSpec {
            process: ProcessSpec {
                rlimits: vec![Rlimit {
                    name: "bogus".into(),
                    soft: 1,
                    hard: 1,
                }],
                ..Default::default()
            },
            ..Default::default()
        };
        assert!(matches!(
            apply_credentials(&FakeSys::new(), &bad),
            Err(InitError::UnknownRlimit(_))
        ));
    }

    #[test]
    fn executable_lookup() {
        let root = tempfile::tempdir().expect("tempdir");
        let bin = root.path().join("bin");
        std::fs::create_dir(&bin).expect("mkdir");
        std::fs::write(bin.join("tool"), b"").expect("write");
        std::fs::set_permissions(bin.join("tool"), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        std::fs::write(bin.join("data"), b"").expect("write");
        let p = |arg: &str| ProcessSpec {
            args: vec![arg.into()],
            ..Default::default()
        };
        let find = |arg: &str| find_executable(root.path(), &p(arg), "/usr/bin:/bin");
        assert_eq!(find("tool").expect("found"), PathBuf::from("/bin/tool"));
        assert_eq!(
            find("/bin/tool").expect("found"),
            PathBuf::from("/bin/tool")
        );
        let e = find("nope").expect_err("missing");
        assert_eq!(
            e.to_string(),
            "exec: \"nope\": executable file not found in $PATH"
        );
        assert_eq!(e.exit_code(), 127);
        let e = find("/bin/data").expect_err("not executable");
        assert_eq!(e.exit_code(), 126);
        assert_eq!(e.to_string(), "exec: \"/bin/data\": permission denied");
        let e = find("/bin").expect_err("dir");
        assert_eq!(e.exit_code(), 126);
        let e = find("/nope").expect_err("missing");
        assert_eq!(e.exit_code(), 127);
        assert!(e.to_string().contains("no such file or directory"), "{e}");
        assert_eq!(exec_error("x", Errno::ENOENT).exit_code(), 127);
        assert_eq!(exec_error("x", Errno::EACCES).exit_code(), 126);
    }
}
