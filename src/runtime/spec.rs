//! The container spec: everything the monitor needs to start one container,
//! written by the daemon as `<bundle>/spec.json` and read by the monitor.
//!
//! The daemon resolves images, users, environment and paths; the spec holds
//! only final values (numbers, absolute paths), so the monitor never needs
//! the database. Defaults follow dockerd + runc.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::seccomp::SeccompProgram;

/// Name of the spec file inside a bundle.
pub const SPEC_FILE: &str = "spec.json";

/// PATH used for the entrypoint look-up when the environment has none.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// dockerd's default capability set.
pub const DEFAULT_CAPABILITIES: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// dockerd's masked paths (masked only where they exist).
pub const DEFAULT_MASKED_PATHS: [&str; 10] = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
];

/// dockerd's read-only paths.
pub const DEFAULT_READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// dockerd's default `/dev/shm` size (64 MiB).
pub const DEFAULT_SHM_SIZE: u64 = 64 * 1024 * 1024;

/// Errors reading or writing a spec.
#[derive(Debug, Error)]
pub enum SpecError {
    #[error("read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("parse {path}: {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid spec: {0}")]
    Invalid(String),
}

/// One container, as the monitor starts it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct ContainerSpec {
    pub id: String,
    /// The container's state folder: spec, state, socket, etc files.
    pub bundle: PathBuf,
    pub rootfs: RootfsSpec,
    pub process: ProcessSpec,
    pub hostname: String,
    pub domainname: String,
    pub etc_files: EtcFiles,
    /// Extra mounts, applied in order after the standard ones (the daemon
    /// sorts them so that parents come first, as dockerd does).
    pub mounts: Vec<MountSpec>,
    pub masked_paths: Vec<String>,
    pub readonly_paths: Vec<String>,
    pub shm_size: u64,
    pub privileged: bool,
    pub network: NetworkNs,
    /// The cgroup (made and configured by the daemon) that the monitor
    /// moves the container's init into before it runs anything.
    pub cgroup: Option<CgroupSpec>,
    /// What the container sees at `/sys/fs/cgroup`.
    pub cgroupfs: CgroupFs,
    /// `None`: log driver `none`.
    pub log: Option<LogSpec>,
    /// Signal name or number for `docker stop` (the daemon's business; kept
    /// here so a restarted daemon finds it).
    pub stop_signal: String,
    /// Namespaced sysctls (`kernel.shmmax` -> value), written below
    /// `/proc/sys` inside the container before it is made read-only.
    pub sysctls: BTreeMap<String, String>,
    /// Device nodes made in the container's `/dev` (`Devices`, and every
    /// host device when privileged), after the standard ones.
    pub devices: Vec<DeviceNode>,
}

impl Default for ContainerSpec {
    fn default() -> Self {
        ContainerSpec {
            id: String::new(),
            bundle: PathBuf::new(),
            rootfs: RootfsSpec::default(),
            process: ProcessSpec::default(),
            hostname: String::new(),
            domainname: String::new(),
            etc_files: EtcFiles::default(),
            mounts: Vec::new(),
            masked_paths: DEFAULT_MASKED_PATHS.iter().map(|s| s.to_string()).collect(),
            readonly_paths: DEFAULT_READONLY_PATHS
                .iter()
                .map(|s| s.to_string())
                .collect(),
            shm_size: DEFAULT_SHM_SIZE,
            privileged: false,
            network: NetworkNs::default(),
            cgroup: None,
            cgroupfs: CgroupFs::default(),
            log: None,
            stop_signal: "SIGTERM".to_string(),
            sysctls: BTreeMap::new(),
            devices: Vec::new(),
        }
    }
}

/// The overlay2 root file system.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct RootfsSpec {
    /// Image layers, top first (overlay's `lowerdir` order).
    pub lowerdirs: Vec<PathBuf>,
    pub upperdir: PathBuf,
    pub workdir: PathBuf,
    /// Where the merged tree is mounted (inside the container's mount
    /// namespace only).
    pub mountpoint: PathBuf,
    /// `ReadonlyRootfs`.
    pub readonly: bool,
}

/// The container's process.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct ProcessSpec {
    pub args: Vec<String>,
    /// `KEY=value` entries, complete (the daemon adds PATH, HOSTNAME, HOME).
    pub env: Vec<String>,
    /// Created if missing.
    pub cwd: String,
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub tty: bool,
    pub open_stdin: bool,
    /// Capability names such as `CAP_CHOWN`; ignored when privileged.
    pub capabilities: Vec<String>,
    pub no_new_privileges: bool,
    pub rlimits: Vec<Rlimit>,
    /// Written to `/proc/self/oom_score_adj` before the user switch.
    pub oom_score_adj: Option<i32>,
    /// `--init`: PID 1 is our small init, which runs the command as its
    /// child, forwards signals to it and reaps zombies.
    pub init: bool,
    /// The seccomp filter (`None`: unconfined). Part of the process so
    /// that every exec into the container gets the container's filter,
    /// as runc gives it.
    pub seccomp: Option<SeccompProgram>,
}

impl Default for ProcessSpec {
    fn default() -> Self {
        ProcessSpec {
            args: Vec::new(),
            env: Vec::new(),
            cwd: "/".to_string(),
            uid: 0,
            gid: 0,
            additional_gids: Vec::new(),
            tty: false,
            open_stdin: false,
            capabilities: DEFAULT_CAPABILITIES.iter().map(|s| s.to_string()).collect(),
            no_new_privileges: false,
            rlimits: Vec::new(),
            oom_score_adj: None,
            init: false,
            seccomp: None,
        }
    }
}

/// One `--ulimit`, by Docker's name (`nofile`, `nproc`, ...).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Rlimit {
    pub name: String,
    pub soft: u64,
    pub hard: u64,
}

/// A device node of the container's `/dev`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct DeviceNode {
    /// Absolute path inside the container.
    pub path: String,
    /// `c` or `b`.
    pub kind: char,
    pub major: u64,
    pub minor: u64,
    /// Permission bits of the node.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// Files of the bundle bind-mounted over the container's `/etc` entries.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct EtcFiles {
    pub hostname: Option<PathBuf>,
    pub hosts: Option<PathBuf>,
    pub resolv_conf: Option<PathBuf>,
}

/// Kinds of user mounts.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum MountKind {
    Bind,
    Tmpfs,
}

/// A user mount (`Binds`, `Mounts`, `Tmpfs`, volumes resolved to binds).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct MountSpec {
    /// Host path for binds; ignored for tmpfs.
    #[serde(default)]
    pub source: PathBuf,
    /// Path inside the container.
    pub destination: String,
    #[serde(rename = "type")]
    pub kind: MountKind,
    /// Flags (`nosuid`, `nodev`, `noexec`, `rprivate`, ...) and data
    /// options (`size=`, `mode=`) as in `mount -o`.
    #[serde(default)]
    pub options: Vec<String>,
    #[serde(default)]
    pub readonly: bool,
}

/// The network namespace of the container.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "lowercase")]
pub enum NetworkNs {
    /// A fresh namespace with only `lo`, brought up (`--network none`).
    #[default]
    New,
    /// Join a namespace prepared by the network module (a bind-mounted
    /// `/proc/<pid>/ns/net` or `/run/netns/<name>`).
    Path(PathBuf),
    /// `--network host`.
    Host,
}

/// A cgroup as [`crate::runtime::cgroups::manager_for`] takes it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct CgroupSpec {
    /// The cgroupfs root, normally `/sys/fs/cgroup`.
    pub root: PathBuf,
    /// The container's cgroup below the root (in every v1 hierarchy).
    pub path: String,
}

/// The container's `/sys/fs/cgroup`, as runc mounts it for dockerd:
/// read-only unless the container is privileged.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "lowercase")]
pub enum CgroupFs {
    /// Nothing is mounted there (sysfs shows an empty directory).
    #[default]
    None,
    /// cgroup v1, where containers share the host's cgroup namespace: a
    /// tmpfs holding, for each hierarchy, the container's own directory.
    V1(Vec<CgroupHierarchy>),
    /// cgroup v2: the cgroup2 filesystem itself, seen from the container's
    /// own cgroup namespace (the init makes it once it joined its cgroup),
    /// or from the host's one with `--cgroupns host`.
    V2 { host_namespace: bool },
}

/// One v1 hierarchy of a container's `/sys/fs/cgroup`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct CgroupHierarchy {
    /// The name of its mount point on the host, such as `memory`,
    /// `cpu,cpuacct` or `systemd`.
    pub name: String,
    /// The host directory of the cgroup the container is in.
    pub source: PathBuf,
}

/// The json-file log of the container.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct LogSpec {
    pub path: PathBuf,
    pub max_size: Option<u64>,
    pub max_file: Option<u32>,
}

/// A spec file read and decoded (not yet validated).
pub(super) fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, SpecError> {
    let bytes = fs::read(path).map_err(|source| SpecError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_slice(&bytes).map_err(|source| SpecError::Parse {
        path: path.to_path_buf(),
        source,
    })
}

impl ContainerSpec {
    /// Reads `<bundle>/spec.json`.
    pub fn load(bundle: &Path) -> Result<ContainerSpec, SpecError> {
        let spec: ContainerSpec = read_json(&bundle.join(SPEC_FILE))?;
        spec.validate()?;
        Ok(spec)
    }

    /// Writes `<bundle>/spec.json` (tmp + rename).
    pub fn save(&self) -> Result<(), SpecError> {
        self.validate()?;
        let path = self.bundle.join(SPEC_FILE);
        let bytes = serde_json::to_vec_pretty(self)
            .map_err(|e| SpecError::Invalid(format!("cannot encode spec: {e}")))?;
        super::state::write_atomic(&path, &bytes)
            .map_err(|source| SpecError::Write { path, source })
    }

    /// Checks what the monitor relies on, so bad input is refused before
    /// any namespace exists.
    pub fn validate(&self) -> Result<(), SpecError> {
        if self.process.args.is_empty() {
            return Err(SpecError::Invalid("no command specified".into()));
        }
        if !self.bundle.is_absolute() {
            return Err(SpecError::Invalid("bundle must be an absolute path".into()));
        }
        if self.rootfs.lowerdirs.is_empty() && self.rootfs.upperdir.as_os_str().is_empty() {
            return Err(SpecError::Invalid("rootfs has no layers".into()));
        }
        if !self.rootfs.mountpoint.is_absolute() {
            return Err(SpecError::Invalid(
                "rootfs mountpoint must be an absolute path".into(),
            ));
        }
        if !self.process.cwd.starts_with('/') {
            return Err(SpecError::Invalid(format!(
                "the working directory '{}' is invalid, it needs to be an absolute path",
                self.process.cwd
            )));
        }
        for d in &self.devices {
            if !d.path.starts_with("/dev/") || !matches!(d.kind, 'c' | 'b') {
                return Err(SpecError::Invalid(format!(
                    "device {} ({}) must be a char or block node below /dev",
                    d.path, d.kind
                )));
            }
        }
        if let Some(p) = &self.process.seccomp {
            p.validate().map_err(SpecError::Invalid)?;
        }
        for k in self.sysctls.keys() {
            if k.contains(['/', '\0']) || k.split('.').any(str::is_empty) {
                return Err(SpecError::Invalid(format!("invalid sysctl name {k:?}")));
            }
        }
        if let CgroupFs::V1(hierarchies) = &self.cgroupfs {
            for h in hierarchies {
                if h.name.is_empty() || h.name.contains(['/', '\0']) || h.name.starts_with('.') {
                    return Err(SpecError::Invalid(format!(
                        "invalid cgroup hierarchy name {:?}",
                        h.name
                    )));
                }
            }
        }
        for m in &self.mounts {
            if !m.destination.starts_with('/') {
                return Err(SpecError::Invalid(format!(
                    "mount destination {} is not an absolute path",
                    m.destination
                )));
            }
        }
        if self.process.args.iter().any(|a| a.contains('\0'))
            || self.process.env.iter().any(|a| a.contains('\0'))
        {
            return Err(SpecError::Invalid(
                "NUL byte in command or environment".into(),
            ));
        }
        Ok(())
    }

    /// The PATH the entrypoint is looked up in.
    pub fn lookup_path(&self) -> &str {
        self.process
            .env
            .iter()
            .find_map(|e| e.strip_prefix("PATH="))
            .unwrap_or(DEFAULT_PATH)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_dockerd() {
        let spec: ContainerSpec = serde_json::from_str("{}").expect("empty spec parses");
        assert_eq!(spec.process.capabilities.len(), 14);
        assert!(spec.masked_paths.iter().any(|p| p == "/proc/kcore"));
        assert!(spec.readonly_paths.iter().any(|p| p == "/proc/sys"));
        assert_eq!(spec.shm_size, 64 << 20);
        assert_eq!(spec.network, NetworkNs::New);
        assert_eq!(spec.process.cwd, "/");
        assert_eq!(spec.lookup_path(), DEFAULT_PATH);
    }

    #[test]
    fn round_trips_and_validates() {
        let mut spec = ContainerSpec {
            bundle: "/b".into(),
            ..Default::default()
        };
        assert!(spec.validate().is_err(), "no args");
        spec.process.args = vec!["sh".into()];
        spec.rootfs.lowerdirs = vec!["/l".into()];
        spec.rootfs.mountpoint = "/m".into();
        spec.network = NetworkNs::Path("/run/netns/x".into());
        spec.mounts.push(MountSpec {
            source: "/src".into(),
            destination: "/dst".into(),
            kind: MountKind::Bind,
            options: vec!["rprivate".into()],
            readonly: true,
        });
        spec.validate().expect("valid");
        let json = serde_json::to_string(&spec).expect("encodes");
        assert!(
            json.contains(r#""network":{"path":"/run/netns/x"}"#),
            "{json}"
        );
        assert!(json.contains(r#""type":"bind""#), "{json}");
        let back: ContainerSpec = serde_json::from_str(&json).expect("decodes");
        assert_eq!(back, spec);
        spec.mounts[0].destination = "rel".into();
        assert!(spec.validate().is_err());
        spec.mounts.clear();
        spec.cgroupfs = CgroupFs::V1(vec![CgroupHierarchy {
            name: "../etc".into(),
            source: "/sys/fs/cgroup/memory".into(),
        }]);
        assert!(spec.validate().is_err());
    }

    #[test]
    fn lookup_path_from_env() {
        let mut spec = ContainerSpec::default();
        spec.process.env = vec!["A=1".into(), "PATH=/x:/y".into()];
        assert_eq!(spec.lookup_path(), "/x:/y");
    }
}
