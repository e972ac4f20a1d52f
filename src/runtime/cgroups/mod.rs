//! Control groups for containers: create one, apply Docker's resource
//! settings to it, move the container's process in, change the settings
//! live, read usage, freeze and thaw, and remove it.
//!
//! Two implementations of [`CgroupManager`]:
//! - [`V1Manager`] for the legacy (and hybrid) layout, one hierarchy per
//!   controller under `<root>/<controller>/`;
//! - [`V2Manager`] for the unified hierarchy at `<root>/`.
//!
//! [`manager_for`] picks one by the filesystem at the root. Both take the
//! cgroupfs root as a parameter (default [`DEFAULT_ROOT`]) so tests can point
//! them at a fake tree.
//!
//! Writes go through cgroups-rs's controllers where the crate does what
//! runc does; the few places it does not (cgroup v2 `io.weight` and
//! `io.max`, multi-line rule files, controller delegation) write the
//! cgroupfs files directly. Every interface file must already exist (the
//! kernel makes them): a missing one is an error naming it, never a file
//! created by us.
//!
//! Device rules are the v1 devices controller's lists, and on v2 an eBPF
//! program made from the same rules ([`device_filter`], through the
//! [`bpf::BpfSys`] seam).
//!
//! Settings a host cannot apply are not silently dropped: `create` and
//! `update` return them as human-readable notes (swappiness on v2, kernel memory on new kernels, ...) for the caller to
//! log or warn about. [`Resources::validate`] should have warned about most
//! of them already, in dockerd's words.

pub mod bpf;
mod cgroupfs;
pub mod device_filter;
pub mod resources;
pub mod stats;
mod v1;
mod v2;

use std::fmt;
use std::io::Write;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

use cgroups_rs::fs::cpuset::CpuSetController;
use cgroups_rs::fs::pid::PidController;
use cgroups_rs::fs::MaxValue;

pub use crate::system::CgroupVersion;
pub use cgroupfs::container_cgroupfs;
pub use resources::{
    DeviceMapping, DeviceRule, HostCaps, ResourceError, Resources, ThrottleDevice, WeightDevice,
};
pub use stats::CgroupStats;
pub use v1::V1Manager;
pub use v2::V2Manager;

/// Where the kernel's cgroup filesystem is mounted.
pub const DEFAULT_ROOT: &str = "/sys/fs/cgroup";

/// How long freeze and thaw wait for the kernel to confirm.
const FREEZE_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("invalid cgroup path {0:?}: it must be relative and must not contain '..'")]
    InvalidPath(String),
    #[error("cgroup {0} does not exist")]
    NotFound(String),
    #[error("cannot remove cgroup {path}: processes {pids:?} are still in it")]
    Busy { path: String, pids: Vec<i32> },
    #[error("{path} does not exist: is the controller enabled for this cgroup?")]
    MissingFile { path: String },
    #[error("cannot write {value:?} to {path}: {reason}")]
    Write {
        path: String,
        value: String,
        reason: String,
    },
    #[error("cannot {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// A setting that cannot be applied as given (refused before any write).
    #[error("{0}")]
    Invalid(String),
    /// A request the host cannot do at all (no freezer, ...).
    #[error("{0}")]
    Unsupported(String),
    #[error("timed out waiting for cgroup {path} to become {state}")]
    Timeout { path: String, state: &'static str },
    /// The v2 device filter (an eBPF program) could not be set.
    #[error("cannot set the device filter of cgroup {path}: {reason}")]
    DeviceFilter { path: String, reason: String },
}

/// One container's cgroup. Methods take `&self`: a manager is only a path;
/// the state lives in the kernel.
pub trait CgroupManager: Send + Sync + fmt::Debug {
    fn version(&self) -> CgroupVersion;

    /// The cgroup's path below the hierarchy root(s).
    fn path(&self) -> &Path;

    /// Whether the cgroup directory exists.
    fn exists(&self) -> bool;

    /// Makes the cgroup (reusing it if it exists) and applies `res`, ready
    /// for [`CgroupManager::add_task`]. Returns the settings that could not
    /// be enforced on this host. On error, directories this call made are
    /// removed again.
    fn create(&self, res: &Resources) -> Result<Vec<String>, CgroupError>;

    /// Writes `res` to the cgroup's files; `creating` adds what is set
    /// only once (the device rules). Returns what could not be enforced.
    fn apply(&self, res: &Resources, creating: bool) -> Result<Vec<String>, CgroupError>;

    /// Applies changed settings to the live cgroup (the device rules are
    /// left as they are). `res` is the full merged set, see
    /// [`Resources::merged_with`]. Returns what could not be enforced.
    fn update(&self, res: &Resources) -> Result<Vec<String>, CgroupError> {
        if !self.exists() {
            return Err(CgroupError::NotFound(self.path().display().to_string()));
        }
        self.apply(res, false)
    }

    /// Moves a process (all its threads) into the cgroup.
    fn add_task(&self, pid: i32) -> Result<(), CgroupError>;

    /// The one directory a new process can be born in (`CLONE_INTO_CGROUP`,
    /// cgroup v2 only) instead of being moved there.
    fn birth_dir(&self) -> Option<PathBuf> {
        None
    }

    /// The processes in the cgroup.
    fn pids(&self) -> Result<Vec<i32>, CgroupError>;

    fn stats(&self) -> Result<CgroupStats, CgroupError>;

    /// Freezes every process and waits until the kernel says it is done.
    fn freeze(&self) -> Result<(), CgroupError>;

    fn thaw(&self) -> Result<(), CgroupError>;

    /// Whether the OOM killer has struck in this cgroup.
    fn oom_killed(&self) -> bool;

    /// Removes the cgroup. Kills nothing: fails with [`CgroupError::Busy`]
    /// while processes remain. Removing a missing cgroup succeeds.
    fn remove(&self) -> Result<(), CgroupError>;
}

/// The manager for `relative` under `root`, v1 or v2 by the filesystem
/// mounted at `root` (a hybrid host counts as v1, as for dockerd).
pub fn manager_for(
    root: impl AsRef<Path>,
    relative: &str,
) -> Result<Box<dyn CgroupManager>, CgroupError> {
    let version = crate::system::detect_cgroup_version(root.as_ref());
    manager_with_version(version, root, relative)
}

/// The manager for a given cgroup version, without probing `root`.
pub fn manager_with_version(
    version: CgroupVersion,
    root: impl AsRef<Path>,
    relative: &str,
) -> Result<Box<dyn CgroupManager>, CgroupError> {
    Ok(match version {
        CgroupVersion::V1 => Box::new(V1Manager::new(root, relative)?),
        CgroupVersion::V2 => Box::new(V2Manager::new(root, relative)?),
    })
}

/// Checks a cgroup path: relative (a leading `/` is allowed and dropped),
/// made of plain names only.
fn clean_relative(relative: &str) -> Result<PathBuf, CgroupError> {
    let bad = || CgroupError::InvalidPath(relative.to_string());
    let trimmed = relative.trim_start_matches('/');
    if trimmed.is_empty() || trimmed.contains('\0') {
        return Err(bad());
    }
    let mut out = PathBuf::new();
    for c in Path::new(trimmed).components() {
        match c {
            Component::Normal(n) => out.push(n),
            _ => return Err(bad()),
        }
    }
    Ok(out)
}

/// The mount point of a v1 controller: `<root>/<name>`, or a combined
/// mount such as `<root>/cpu,cpuacct` when no symlink names it.
pub(crate) fn v1_mount(root: &Path, name: &str) -> Option<PathBuf> {
    let direct = root.join(name);
    if direct.is_dir() {
        return Some(direct);
    }
    let entries = std::fs::read_dir(root).ok()?;
    let mut found: Vec<PathBuf> = entries
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.split(',').any(|part| part == name))
        })
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    found.sort();
    found.into_iter().next()
}

fn io_err(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> CgroupError {
    let path = path.display().to_string();
    move |source| CgroupError::Io { op, path, source }
}

/// The interface file must exist: the kernel makes them, we never do.
fn need(dir: &Path, file: &str) -> Result<(), CgroupError> {
    let p = dir.join(file);
    if p.exists() {
        Ok(())
    } else {
        Err(CgroupError::MissingFile {
            path: p.display().to_string(),
        })
    }
}

/// Turns a cgroups-rs error into ours, naming the file and value.
fn crate_err(
    dir: &Path,
    file: &str,
    value: impl fmt::Display,
) -> impl FnOnce(cgroups_rs::fs::error::Error) -> CgroupError {
    let path = dir.join(file).display().to_string();
    let value = value.to_string();
    move |e| {
        let reason = std::error::Error::source(&e)
            .map(|s| s.to_string())
            .unwrap_or_else(|| e.kind().to_string());
        CgroupError::Write {
            path,
            value,
            reason,
        }
    }
}

/// Writes one value to an existing interface file. Rule files (`io.max`,
/// `devices.allow`, ...) take one rule per write; appending keeps every
/// rule visible in a fake tree too (the kernel ignores the offset).
fn write_file(dir: &Path, file: &str, value: &str) -> Result<(), CgroupError> {
    if write_file_if_supported(dir, file, value)? {
        Ok(())
    } else {
        Err(CgroupError::Write {
            path: dir.join(file).display().to_string(),
            value: value.to_string(),
            reason: std::io::Error::from_raw_os_error(libc::EOPNOTSUPP).to_string(),
        })
    }
}

/// [`write_file`], but `Ok(false)` where the kernel answers EOPNOTSUPP (a
/// per-device weight for a device whose scheduler has none, ...).
fn write_file_if_supported(dir: &Path, file: &str, value: &str) -> Result<bool, CgroupError> {
    need(dir, file)?;
    let path = dir.join(file);
    let written = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .and_then(|mut f| f.write_all(format!("{value}\n").as_bytes()));
    match written {
        Ok(()) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => Ok(false),
        Err(e) => Err(CgroupError::Write {
            path: path.display().to_string(),
            value: value.to_string(),
            reason: e.to_string(),
        }),
    }
}

fn read_file(path: &Path) -> Result<String, CgroupError> {
    std::fs::read_to_string(path).map_err(io_err("read", path))
}

/// PIDs listed in a `cgroup.procs` file.
fn read_procs(dir: &Path) -> Result<Vec<i32>, CgroupError> {
    let path = dir.join("cgroup.procs");
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(text
            .split_whitespace()
            .filter_map(|p| p.parse::<i32>().ok())
            .collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(io_err("read", &path)(e)),
    }
}

fn check_pid(pid: i32) -> Result<u64, CgroupError> {
    u64::try_from(pid)
        .ok()
        .filter(|&p| p > 0)
        .ok_or_else(|| CgroupError::Invalid(format!("invalid pid {pid}")))
}

/// Removes the directories a failed `create` made, deepest first.
fn remove_created(created: &[PathBuf]) {
    for dir in created.iter().rev() {
        if let Err(e) = std::fs::remove_dir(dir) {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot remove cgroup after failed create");
        }
    }
}

/// Makes `dir` and any missing parents below `base`, returning the ones made
/// (outermost first) so a failure can undo exactly them.
fn make_dirs(base: &Path, dir: &Path) -> Result<Vec<PathBuf>, CgroupError> {
    let mut made = Vec::new();
    let rel = dir.strip_prefix(base).unwrap_or(dir);
    let mut cur = base.to_path_buf();
    for c in rel.components() {
        cur.push(c);
        if make_dir(&cur).inspect_err(|_| remove_created(&made))? {
            made.push(cur.clone());
        }
    }
    Ok(made)
}

/// Makes one directory; `Ok(false)` if it was there already (perhaps just
/// made by a concurrent create of a sibling).
fn make_dir(dir: &Path) -> Result<bool, CgroupError> {
    match std::fs::create_dir(dir) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(io_err("create", dir)(e)),
    }
}

/// Polls `check` until it returns true or the freeze timeout passes.
fn wait_until(mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + FREEZE_TIMEOUT;
    let mut pause = Duration::from_millis(1);
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// What one create/update could not enforce.
#[derive(Default)]
struct Notes(Vec<String>);

impl Notes {
    fn add(&mut self, s: impl Into<String>) {
        self.0.push(s.into());
    }
}

/// The device rules for a container: allow-all when privileged, otherwise
/// dockerd's defaults with the `Devices` and `DeviceCgroupRules` entries
/// before runc's always-allowed ones. Checked on both versions, so bad
/// input fails alike everywhere.
fn device_rules(res: &Resources) -> Result<Vec<DeviceRule>, CgroupError> {
    let mut extra = resources::device_mapping_rules(&res.devices).map_err(CgroupError::Invalid)?;
    for r in &res.device_cgroup_rules {
        extra.push(DeviceRule::parse(r).map_err(CgroupError::Invalid)?);
    }
    if res.allow_all_devices {
        return Ok(vec![DeviceRule {
            allow: true,
            kind: 'a',
            major: None,
            minor: None,
            read: true,
            write: true,
            mknod: true,
        }]);
    }
    let mut rules = resources::default_device_rules();
    // dockerd's own rules end with the /dev/fuse deny; user rules follow it.
    let runc_start = rules
        .iter()
        .position(|r| !r.allow && r.kind == 'c')
        .map(|i| i + 1)
        .unwrap_or(rules.len());
    rules.splice(runc_start..runc_start, extra);
    Ok(rules)
}

fn throttle_devices<'a>(
    res: &'a Resources,
) -> impl Iterator<Item = (&'static str, &'static str, &'a ThrottleDevice)> {
    let kinds: [(&'static str, &'static str, &'a Vec<ThrottleDevice>); 4] = [
        (
            "rbps",
            "blkio.throttle.read_bps_device",
            &res.blkio_device_read_bps,
        ),
        (
            "wbps",
            "blkio.throttle.write_bps_device",
            &res.blkio_device_write_bps,
        ),
        (
            "riops",
            "blkio.throttle.read_iops_device",
            &res.blkio_device_read_iops,
        ),
        (
            "wiops",
            "blkio.throttle.write_iops_device",
            &res.blkio_device_write_iops,
        ),
    ];
    kinds
        .into_iter()
        .flat_map(|(key, file, list)| list.iter().map(move |d| (key, file, d)))
}

fn device_numbers(path: &str) -> Result<(u64, u64), CgroupError> {
    resources::block_device_numbers(path).map_err(CgroupError::Invalid)
}

/// Docker refuses negative CPU shares on both versions, in these words.
fn check_cpu_shares(res: &Resources) -> Result<(), CgroupError> {
    if res.cpu_shares < 0 {
        return Err(CgroupError::Invalid(format!(
            "invalid CPU shares ({}): value must be a positive integer",
            res.cpu_shares
        )));
    }
    Ok(())
}

/// `cpuset.cpus` and `cpuset.mems`, those that are set.
fn set_cpuset(cs: &CpuSetController, dir: &Path, res: &Resources) -> Result<(), CgroupError> {
    if !res.cpuset_cpus.is_empty() {
        need(dir, "cpuset.cpus")?;
        cs.set_cpus(&res.cpuset_cpus)
            .map_err(crate_err(dir, "cpuset.cpus", &res.cpuset_cpus))?;
    }
    if !res.cpuset_mems.is_empty() {
        need(dir, "cpuset.mems")?;
        cs.set_mems(&res.cpuset_mems)
            .map_err(crate_err(dir, "cpuset.mems", &res.cpuset_mems))?;
    }
    Ok(())
}

/// `remove` leaves a cgroup with processes in it alone.
fn refuse_busy(m: &dyn CgroupManager) -> Result<(), CgroupError> {
    let pids = m.pids()?;
    if pids.is_empty() {
        return Ok(());
    }
    Err(CgroupError::Busy {
        path: m.path().display().to_string(),
        pids,
    })
}

/// `pids.max`: a positive limit, or `max` for Docker's 0 / -1.
fn set_pids_max(ctl: &PidController, dir: &Path, limit: i64) -> Result<(), CgroupError> {
    need(dir, "pids.max")?;
    let v = if limit > 0 {
        MaxValue::Value(limit)
    } else {
        MaxValue::Max
    };
    ctl.set_pid_max(v).map_err(crate_err(dir, "pids.max", v))
}

#[cfg(test)]
mod tests;
