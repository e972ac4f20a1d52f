//! The resource half of Docker's `HostConfig`, the host facts it is checked
//! against, and dockerd's validation with its exact messages.
//!
//! [`Resources`] deserializes straight from a `HostConfig` JSON object (the
//! API layer may flatten it into its own HostConfig type). Field names and
//! shapes follow the Engine API: PascalCase, `null` accepted anywhere a zero
//! value is, `BlkioWeightDevice` as `[{"Path","Weight"}]` and so on.
//!
//! [`Resources::validate`] reproduces dockerd's checks in dockerd's order
//! (`runconfig` decode-time checks, then `verifyPlatformContainerResources`):
//! errors become 400s with dockerd's wording, discarded settings become the
//! `Warnings` of the create response. [`HostCaps`] is what dockerd keeps in
//! its `sysinfo`: which cgroup files this host has.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer, Serialize};

use crate::error::EngineError;
use crate::system::CgroupVersion;

/// dockerd refuses memory limits under 6 MiB: a container needs that much to
/// start at all.
pub const MIN_MEMORY: i64 = 6 * 1024 * 1024;

/// The CFS period dockerd uses to turn `NanoCpus` into a quota (100 ms).
pub const DEFAULT_CFS_PERIOD: u64 = 100_000;

/// Linux's usual maximum CPU count; cpuset lists naming CPUs above it (and
/// above the host's own highest CPU) are refused before they are expanded,
/// so `0-9223372036854775807` cannot exhaust memory (CVE-2018-20699).
const DEFAULT_MAX_CPUS: u64 = 8192;

/// Decodes `null` as the type's default, as Go's encoding/json does for the
/// zero value of a non-pointer field.
fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// `{"Path": "/dev/sda", "Weight": 500}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct WeightDevice {
    #[serde(deserialize_with = "null_default")]
    pub path: String,
    #[serde(deserialize_with = "null_default")]
    pub weight: u16,
}

/// `{"Path": "/dev/sda", "Rate": 1048576}` (bytes or IO operations per second).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ThrottleDevice {
    #[serde(deserialize_with = "null_default")]
    pub path: String,
    #[serde(deserialize_with = "null_default")]
    pub rate: u64,
}

/// `{"PathOnHost": "/dev/fuse", "PathInContainer": "/dev/fuse", "CgroupPermissions": "rwm"}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct DeviceMapping {
    #[serde(deserialize_with = "null_default")]
    pub path_on_host: String,
    #[serde(deserialize_with = "null_default")]
    pub path_in_container: String,
    #[serde(deserialize_with = "null_default")]
    pub cgroup_permissions: String,
}

/// The resource fields of Docker's `HostConfig` (Go's `container.Resources`),
/// in the Engine API's JSON shape. Zero means "not set" for the plain
/// numbers, as in Docker; the `Option`s distinguish unset from zero where
/// Docker uses pointers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Resources {
    /// CFS period in microseconds (`--cpu-period`).
    #[serde(deserialize_with = "null_default")]
    pub cpu_period: i64,
    /// CFS quota in microseconds; -1 removes the limit (`--cpu-quota`).
    #[serde(deserialize_with = "null_default")]
    pub cpu_quota: i64,
    /// CPUs in billionths (`--cpus 1.5` is 1500000000).
    #[serde(deserialize_with = "null_default")]
    pub nano_cpus: i64,
    #[serde(deserialize_with = "null_default")]
    pub cpu_realtime_period: i64,
    #[serde(deserialize_with = "null_default")]
    pub cpu_realtime_runtime: i64,
    /// Relative CPU weight, cgroup v1 scale (2..262144, default 1024).
    #[serde(deserialize_with = "null_default")]
    pub cpu_shares: i64,
    /// `0-3,5`.
    #[serde(deserialize_with = "null_default")]
    pub cpuset_cpus: String,
    #[serde(deserialize_with = "null_default")]
    pub cpuset_mems: String,
    /// Memory limit in bytes.
    #[serde(deserialize_with = "null_default")]
    pub memory: i64,
    /// Soft limit in bytes.
    #[serde(deserialize_with = "null_default")]
    pub memory_reservation: i64,
    /// Memory plus swap in bytes; -1 is unlimited swap.
    #[serde(deserialize_with = "null_default")]
    pub memory_swap: i64,
    /// 0..=100; `None` or -1 leaves the kernel's default.
    pub memory_swappiness: Option<i64>,
    pub oom_kill_disable: Option<bool>,
    /// Deprecated by the kernel (v1 only, gone in 5.16).
    #[serde(deserialize_with = "null_default")]
    pub kernel_memory: i64,
    #[serde(rename = "KernelMemoryTCP", deserialize_with = "null_default")]
    pub kernel_memory_tcp: i64,
    /// `None` leaves it alone; 0 or -1 means unlimited.
    pub pids_limit: Option<i64>,
    /// 10..=1000, 0 is unset.
    #[serde(deserialize_with = "null_default")]
    pub blkio_weight: u16,
    #[serde(deserialize_with = "null_default")]
    pub blkio_weight_device: Vec<WeightDevice>,
    #[serde(deserialize_with = "null_default")]
    pub blkio_device_read_bps: Vec<ThrottleDevice>,
    #[serde(deserialize_with = "null_default")]
    pub blkio_device_write_bps: Vec<ThrottleDevice>,
    #[serde(rename = "BlkioDeviceReadIOps", deserialize_with = "null_default")]
    pub blkio_device_read_iops: Vec<ThrottleDevice>,
    #[serde(rename = "BlkioDeviceWriteIOps", deserialize_with = "null_default")]
    pub blkio_device_write_iops: Vec<ThrottleDevice>,
    /// Host devices made available (and allowed in the devices cgroup).
    #[serde(deserialize_with = "null_default")]
    pub devices: Vec<DeviceMapping>,
    /// Extra devices-cgroup rules, `c 1:3 rwm` / `a *:* m`.
    #[serde(deserialize_with = "null_default")]
    pub device_cgroup_rules: Vec<String>,
    /// Not a Docker resource field: set from `HostConfig.Privileged`, it
    /// turns the devices cgroup to allow-all.
    #[serde(skip)]
    pub allow_all_devices: bool,
}

/// A refused resource setting. The text is dockerd's, for the API to send.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResourceError {
    /// 400 Bad Request in dockerd.
    #[error("{0}")]
    Invalid(String),
    /// 409 Conflict in dockerd (`docker update` against the current settings).
    #[error("{0}")]
    Conflict(String),
}

impl From<ResourceError> for EngineError {
    fn from(e: ResourceError) -> Self {
        match e {
            ResourceError::Invalid(m) => EngineError::InvalidParameter(m),
            ResourceError::Conflict(m) => EngineError::Conflict(m),
        }
    }
}

fn invalid(msg: impl Into<String>) -> ResourceError {
    ResourceError::Invalid(msg.into())
}

/// What the host's cgroups support, as dockerd's `sysinfo` records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostCaps {
    pub cgroup_version: CgroupVersion,
    /// CPUs this process may run on (dockerd's `runtime.NumCPU()`).
    pub ncpu: usize,
    /// The CPUs and memory nodes a cpuset may name (`0-3`).
    pub cpus: String,
    pub mems: String,
    pub memory_limit: bool,
    pub swap_limit: bool,
    pub memory_reservation: bool,
    pub oom_kill_disable: bool,
    pub memory_swappiness: bool,
    pub kernel_memory: bool,
    pub kernel_memory_tcp: bool,
    pub cpu_shares: bool,
    pub cpu_cfs: bool,
    pub cpu_realtime: bool,
    pub cpuset: bool,
    pub pids_limit: bool,
    pub blkio_weight: bool,
    pub blkio_weight_device: bool,
    pub blkio_read_bps_device: bool,
    pub blkio_write_bps_device: bool,
    pub blkio_read_iops_device: bool,
    pub blkio_write_iops_device: bool,
}

impl HostCaps {
    /// A host that supports everything its cgroup version can: every v1
    /// knob, or on v2 what the unified hierarchy offers (no swappiness, OOM
    /// killer switch, kernel memory or realtime CPU). For tests and fakes.
    pub fn supporting_all(version: CgroupVersion, ncpu: usize) -> HostCaps {
        let v1 = version == CgroupVersion::V1;
        let last = ncpu.saturating_sub(1);
        HostCaps {
            cgroup_version: version,
            ncpu,
            cpus: if last == 0 {
                "0".into()
            } else {
                format!("0-{last}")
            },
            mems: "0".into(),
            memory_limit: true,
            swap_limit: true,
            memory_reservation: true,
            oom_kill_disable: v1,
            memory_swappiness: v1,
            kernel_memory: v1,
            kernel_memory_tcp: v1,
            cpu_shares: true,
            cpu_cfs: true,
            cpu_realtime: v1,
            cpuset: true,
            pids_limit: true,
            blkio_weight: true,
            blkio_weight_device: true,
            blkio_read_bps_device: true,
            blkio_write_bps_device: true,
            blkio_read_iops_device: true,
            blkio_write_iops_device: true,
        }
    }

    /// A host with no cgroup controller at all.
    pub fn supporting_nothing(version: CgroupVersion, ncpu: usize) -> HostCaps {
        HostCaps {
            cgroup_version: version,
            ncpu,
            cpus: String::new(),
            mems: String::new(),
            memory_limit: false,
            swap_limit: false,
            memory_reservation: false,
            oom_kill_disable: false,
            memory_swappiness: false,
            kernel_memory: false,
            kernel_memory_tcp: false,
            cpu_shares: false,
            cpu_cfs: false,
            cpu_realtime: false,
            cpuset: false,
            pids_limit: false,
            blkio_weight: false,
            blkio_weight_device: false,
            blkio_read_bps_device: false,
            blkio_write_bps_device: false,
            blkio_read_iops_device: false,
            blkio_write_iops_device: false,
        }
    }

    /// Probes the real host under `/sys/fs/cgroup`.
    pub fn probe() -> HostCaps {
        let root = Path::new(super::DEFAULT_ROOT);
        HostCaps::probe_at(root, crate::system::detect_cgroup_version(root))
    }

    /// Probes a cgroupfs tree rooted at `root` (a fake one in tests), the way
    /// dockerd's sysinfo does: v1 by the files in each controller's mount,
    /// v2 by the controllers the root offers.
    pub fn probe_at(root: &Path, version: CgroupVersion) -> HostCaps {
        let mut caps = HostCaps::supporting_nothing(version, online_cpu_count());
        match version {
            CgroupVersion::V1 => probe_v1(root, &mut caps),
            CgroupVersion::V2 => probe_v2(root, &mut caps),
        }
        caps
    }
}

fn has(dir: &Path, file: &str) -> bool {
    dir.join(file).exists()
}

fn read_trim(path: &Path) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn probe_v1(root: &Path, caps: &mut HostCaps) {
    if let Some(mem) = super::v1_mount(root, "memory") {
        caps.memory_limit = true;
        caps.swap_limit = has(&mem, "memory.memsw.limit_in_bytes");
        caps.memory_reservation = has(&mem, "memory.soft_limit_in_bytes");
        caps.oom_kill_disable = has(&mem, "memory.oom_control");
        caps.memory_swappiness = has(&mem, "memory.swappiness");
        // The file lingers after 5.16 but writes fail: dockerd checks both.
        caps.kernel_memory = has(&mem, "memory.kmem.limit_in_bytes") && kernel_older_than(5, 16);
        caps.kernel_memory_tcp = has(&mem, "memory.kmem.tcp.limit_in_bytes");
    }
    if let Some(cpu) = super::v1_mount(root, "cpu") {
        caps.cpu_shares = has(&cpu, "cpu.shares");
        caps.cpu_cfs = has(&cpu, "cpu.cfs_quota_us");
        caps.cpu_realtime = has(&cpu, "cpu.rt_period_us") && has(&cpu, "cpu.rt_runtime_us");
    }
    if let Some(blkio) = super::v1_mount(root, "blkio") {
        // BFQ replaced CFQ's files with blkio.bfq.*. dockerd looks for the
        // weight files in the hierarchy's root, where BFQ never shows them
        // (they exist in every child); BFQ's statistics files do show there,
        // so they count too, or BFQ-only hosts could never set a weight.
        let bfq = std::fs::read_dir(&blkio)
            .map(|rd| {
                rd.flatten()
                    .any(|e| e.file_name().to_string_lossy().starts_with("blkio.bfq."))
            })
            .unwrap_or(false);
        caps.blkio_weight = has(&blkio, "blkio.weight") || bfq;
        caps.blkio_weight_device = has(&blkio, "blkio.weight_device") || bfq;
        caps.blkio_read_bps_device = has(&blkio, "blkio.throttle.read_bps_device");
        caps.blkio_write_bps_device = has(&blkio, "blkio.throttle.write_bps_device");
        caps.blkio_read_iops_device = has(&blkio, "blkio.throttle.read_iops_device");
        caps.blkio_write_iops_device = has(&blkio, "blkio.throttle.write_iops_device");
    }
    if let Some(cpuset) = super::v1_mount(root, "cpuset") {
        caps.cpuset = true;
        caps.cpus = read_trim(&cpuset.join("cpuset.cpus"));
        caps.mems = read_trim(&cpuset.join("cpuset.mems"));
    }
    caps.pids_limit = super::v1_mount(root, "pids").is_some();
}

fn probe_v2(root: &Path, caps: &mut HostCaps) {
    let controllers: BTreeSet<String> = read_trim(&root.join("cgroup.controllers"))
        .split_whitespace()
        .map(str::to_string)
        .collect();
    if controllers.contains("memory") {
        caps.memory_limit = true;
        caps.memory_reservation = true;
        caps.swap_limit = v2_swap_accounting(root);
    }
    if controllers.contains("cpu") {
        caps.cpu_shares = true;
        caps.cpu_cfs = true;
    }
    if controllers.contains("cpuset") {
        caps.cpuset = true;
        caps.cpus = read_trim(&root.join("cpuset.cpus.effective"));
        caps.mems = read_trim(&root.join("cpuset.mems.effective"));
    }
    if controllers.contains("io") {
        caps.blkio_weight = true;
        caps.blkio_weight_device = true;
        caps.blkio_read_bps_device = true;
        caps.blkio_write_bps_device = true;
        caps.blkio_read_iops_device = true;
        caps.blkio_write_iops_device = true;
    }
    caps.pids_limit = controllers.contains("pids");
}

/// The root cgroup has no `memory.swap.max`; look in our own cgroup, then in
/// the root's children, as swap accounting shows only below the root.
fn v2_swap_accounting(root: &Path) -> bool {
    let own = std::fs::read_to_string("/proc/self/cgroup")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("0::").map(|p| p.trim().to_string()))
        })
        .unwrap_or_default();
    let own = own.trim_start_matches('/');
    if !own.is_empty() && has(&root.join(own), "memory.swap.max") {
        return true;
    }
    std::fs::read_dir(root)
        .map(|rd| {
            rd.flatten()
                .any(|e| e.path().is_dir() && has(&e.path(), "memory.swap.max"))
        })
        .unwrap_or(false)
}

/// CPUs in our affinity mask, as Go's `runtime.NumCPU` counts them.
fn online_cpu_count() -> usize {
    use nix::sched::{sched_getaffinity, CpuSet};
    use nix::unistd::Pid;
    match sched_getaffinity(Pid::from_raw(0)) {
        Ok(set) => {
            let n = (0..CpuSet::count())
                .filter(|&i| set.is_set(i).unwrap_or(false))
                .count();
            n.max(1)
        }
        Err(_) => std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
    }
}

/// `uname -r` below `major.minor`; an unparsable release counts as new.
pub(crate) fn kernel_older_than(major: u32, minor: u32) -> bool {
    let Ok(uts) = nix::sys::utsname::uname() else {
        return false;
    };
    let release = uts.release().to_string_lossy().to_string();
    parse_kernel_version(&release)
        .map(|v| v < (major, minor))
        .unwrap_or(false)
}

fn parse_kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// Parses a cpuset list (`0-2,4`) as dockerd does: empty is the empty set,
/// duplicates are fine, a value above `maximum` is refused before ranges are
/// expanded.
pub fn parse_cpu_list(val: &str, maximum: u64) -> Result<BTreeSet<u64>, String> {
    let mut out = BTreeSet::new();
    if val.is_empty() {
        return Ok(out);
    }
    let bad = || format!("invalid format: {val}");
    let out_of_range = || format!("value of out range, maximum is {maximum}");
    // Go's Atoi: optional sign, decimal digits only.
    let num = |s: &str| -> Option<i64> {
        let digits = s.strip_prefix('+').unwrap_or(s);
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        digits.parse::<i64>().ok()
    };
    for part in val.split(',') {
        match part.split_once('-') {
            None => {
                let v = num(part).ok_or_else(bad)? as u64;
                if maximum != 0 && v > maximum {
                    return Err(out_of_range());
                }
                out.insert(v);
            }
            Some((lo, hi)) => {
                let lo = num(lo).ok_or_else(bad)?;
                let hi = num(hi).ok_or_else(bad)?;
                if hi < lo {
                    return Err(bad());
                }
                if maximum != 0 && hi as u64 > maximum {
                    return Err(out_of_range());
                }
                out.extend(lo as u64..=hi as u64);
            }
        }
    }
    Ok(out)
}

/// Is every CPU (or memory node) of `requested` in `available`?
fn cpuset_available(requested: &str, available: &str) -> Result<bool, String> {
    let avail = parse_cpu_list(available, 0).unwrap_or_default();
    let max = avail
        .iter()
        .next_back()
        .copied()
        .unwrap_or(0)
        .max(DEFAULT_MAX_CPUS);
    let req = parse_cpu_list(requested, max)?;
    Ok(req.is_subset(&avail))
}

impl Resources {
    /// dockerd's create-time checks. Returns the warnings for the create
    /// response; an `Err` is the 400 dockerd would send.
    pub fn validate(&self, host: &HostCaps) -> Result<Vec<String>, ResourceError> {
        self.clone().validate_and_adjust(host, false)
    }

    /// The same checks for `POST /containers/{id}/update`, where a swap limit
    /// without a memory limit is allowed (the memory limit already set
    /// applies).
    pub fn validate_update(&self, host: &HostCaps) -> Result<Vec<String>, ResourceError> {
        self.clone().validate_and_adjust(host, true)
    }

    /// The checks, also dropping what the host cannot do exactly as dockerd
    /// does (so the stored HostConfig matches dockerd's).
    pub fn validate_and_adjust(
        &mut self,
        host: &HostCaps,
        update: bool,
    ) -> Result<Vec<String>, ResourceError> {
        self.check_realtime(host)?;
        let mut warnings = Vec::new();
        self.check_memory(host, update, &mut warnings)?;
        self.check_cpu(host, &mut warnings)?;
        self.check_cpuset(host, &mut warnings)?;
        self.check_blkio(host, &mut warnings)?;
        Ok(warnings)
    }

    /// dockerd checks these while decoding the request, before anything else.
    fn check_realtime(&self, host: &HostCaps) -> Result<(), ResourceError> {
        if self.cpu_realtime_period > 0 && !host.cpu_realtime {
            return Err(invalid(
                "Your kernel does not support cgroup cpu real-time period",
            ));
        }
        if self.cpu_realtime_runtime > 0 && !host.cpu_realtime {
            return Err(invalid(
                "Your kernel does not support cgroup cpu real-time runtime",
            ));
        }
        if self.cpu_realtime_period != 0
            && self.cpu_realtime_runtime != 0
            && self.cpu_realtime_runtime > self.cpu_realtime_period
        {
            return Err(invalid(
                "cpu real-time runtime cannot be higher than cpu real-time period",
            ));
        }
        Ok(())
    }

    fn check_memory(
        &mut self,
        host: &HostCaps,
        update: bool,
        warnings: &mut Vec<String>,
    ) -> Result<(), ResourceError> {
        // The CLI sends -1 for "leave swappiness alone".
        if self.memory_swappiness == Some(-1) {
            self.memory_swappiness = None;
        }
        if self.memory != 0 && self.memory < MIN_MEMORY {
            return Err(invalid("Minimum memory limit allowed is 6MB"));
        }
        if self.memory > 0 && !host.memory_limit {
            warnings.push("Your kernel does not support memory limit capabilities or the cgroup is not mounted. Limitation discarded.".into());
            self.memory = 0;
            self.memory_swap = -1;
        }
        if self.memory > 0 && self.memory_swap != -1 && !host.swap_limit {
            warnings.push("Your kernel does not support swap limit capabilities or the cgroup is not mounted. Memory limited without swap.".into());
            self.memory_swap = -1;
        }
        if self.memory > 0 && self.memory_swap > 0 && self.memory_swap < self.memory {
            return Err(invalid(
                "Minimum memoryswap limit should be larger than memory limit, see usage",
            ));
        }
        if self.memory == 0 && self.memory_swap > 0 && !update {
            return Err(invalid(
                "You should always set the Memory limit when using Memoryswap limit, see usage",
            ));
        }
        if self.memory_swappiness.is_some() && !host.memory_swappiness {
            warnings.push("Your kernel does not support memory swappiness capabilities or the cgroup is not mounted. Memory swappiness discarded.".into());
            self.memory_swappiness = None;
        }
        if let Some(s) = self.memory_swappiness {
            if !(0..=100).contains(&s) {
                return Err(invalid(format!(
                    "Invalid value: {s}, valid memory swappiness range is 0-100"
                )));
            }
        }
        if self.memory_reservation > 0 && !host.memory_reservation {
            warnings.push("Your kernel does not support memory soft limit capabilities or the cgroup is not mounted. Limitation discarded.".into());
            self.memory_reservation = 0;
        }
        if self.memory_reservation > 0 && self.memory_reservation < MIN_MEMORY {
            return Err(invalid("Minimum memory reservation allowed is 6MB"));
        }
        if self.memory > 0 && self.memory_reservation > 0 && self.memory < self.memory_reservation {
            return Err(invalid(
                "Minimum memory limit can not be less than memory reservation limit, see usage",
            ));
        }
        if self.kernel_memory > 0 {
            if !host.kernel_memory {
                warnings.push("Your kernel does not support kernel memory limit capabilities or the cgroup is not mounted. Limitation discarded.".into());
                self.kernel_memory = 0;
            }
            if self.kernel_memory > 0 && self.kernel_memory < MIN_MEMORY {
                return Err(invalid("Minimum kernel memory limit allowed is 6MB"));
            }
        }
        // dockerd passes this through and lets the runtime fail; we warn and
        // drop it instead, in the style of the other memory warnings.
        if self.kernel_memory_tcp != 0 && !host.kernel_memory_tcp {
            warnings.push(match host.cgroup_version {
                CgroupVersion::V2 => {
                    "Kernel memory TCP limit is not supported with cgroups v2. Limitation discarded."
                        .into()
                }
                CgroupVersion::V1 => "Your kernel does not support kernel memory TCP limit capabilities or the cgroup is not mounted. Limitation discarded.".into(),
            });
            self.kernel_memory_tcp = 0;
        }
        if self.oom_kill_disable.is_some() && !host.oom_kill_disable {
            // Only worth a warning if they asked for the killer to be off.
            if self.oom_kill_disable == Some(true) {
                warnings.push(
                    "Your kernel does not support OomKillDisable. OomKillDisable discarded.".into(),
                );
            }
            self.oom_kill_disable = None;
        }
        if self.oom_kill_disable == Some(true) && self.memory == 0 {
            warnings.push("OOM killer is disabled for the container, but no memory limit is set, this can result in the system running out of resources.".into());
        }
        if self.pids_limit.is_some() && !host.pids_limit {
            if self.pids_limit.unwrap_or(0) > 0 {
                warnings.push("Your kernel does not support PIDs limit capabilities or the cgroup is not mounted. PIDs limit discarded.".into());
            }
            self.pids_limit = None;
        }
        Ok(())
    }

    fn check_cpu(
        &mut self,
        host: &HostCaps,
        warnings: &mut Vec<String>,
    ) -> Result<(), ResourceError> {
        if self.nano_cpus > 0 && self.cpu_period > 0 {
            return Err(invalid(
                "Conflicting options: Nano CPUs and CPU Period cannot both be set",
            ));
        }
        if self.nano_cpus > 0 && self.cpu_quota > 0 {
            return Err(invalid(
                "Conflicting options: Nano CPUs and CPU Quota cannot both be set",
            ));
        }
        if self.nano_cpus > 0 && !host.cpu_cfs {
            return Err(invalid("NanoCPUs can not be set, as your kernel does not support CPU CFS scheduler or the cgroup is not mounted"));
        }
        if self.nano_cpus != 0 {
            let n = host.ncpu;
            if self.nano_cpus < 0 || self.nano_cpus as i128 > n as i128 * 1_000_000_000 {
                // Current dockerd's wording (lower-case since Engine 25).
                return Err(invalid(format!(
                    "range of CPUs is from 0.01 to {n}.00, as there are only {n} CPUs available"
                )));
            }
        }
        if self.cpu_shares > 0 && !host.cpu_shares {
            warnings.push(
                "Your kernel does not support CPU shares or the cgroup is not mounted. Shares discarded."
                    .into(),
            );
            self.cpu_shares = 0;
        }
        if (self.cpu_period != 0 || self.cpu_quota != 0) && !host.cpu_cfs {
            warnings.push(
                "Your kernel does not support CPU CFS scheduler. CPU period/quota discarded."
                    .into(),
            );
            self.cpu_period = 0;
            self.cpu_quota = 0;
        }
        if self.cpu_period != 0 && !(1000..=1_000_000).contains(&self.cpu_period) {
            return Err(invalid(
                "CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1s (i.e. 1000000)",
            ));
        }
        if self.cpu_quota > 0 && self.cpu_quota < 1000 {
            return Err(invalid(
                "CPU cfs quota can not be less than 1ms (i.e. 1000)",
            ));
        }
        Ok(())
    }

    fn check_cpuset(
        &mut self,
        host: &HostCaps,
        warnings: &mut Vec<String>,
    ) -> Result<(), ResourceError> {
        if (!self.cpuset_cpus.is_empty() || !self.cpuset_mems.is_empty()) && !host.cpuset {
            warnings.push(
                "Your kernel does not support cpuset or the cgroup is not mounted. Cpuset discarded."
                    .into(),
            );
            self.cpuset_cpus.clear();
            self.cpuset_mems.clear();
        }
        match cpuset_available(&self.cpuset_cpus, &host.cpus) {
            Err(e) => {
                return Err(invalid(format!(
                    "Invalid value {} for cpuset cpus: {e}",
                    self.cpuset_cpus
                )))
            }
            Ok(false) => {
                return Err(invalid(format!(
                    "Requested CPUs are not available - requested {}, available: {}",
                    self.cpuset_cpus, host.cpus
                )))
            }
            Ok(true) => {}
        }
        match cpuset_available(&self.cpuset_mems, &host.mems) {
            Err(e) => {
                return Err(invalid(format!(
                    "Invalid value {} for cpuset mems: {e}",
                    self.cpuset_mems
                )))
            }
            Ok(false) => {
                return Err(invalid(format!(
                    "Requested memory nodes are not available - requested {}, available: {}",
                    self.cpuset_mems, host.mems
                )))
            }
            Ok(true) => {}
        }
        Ok(())
    }

    fn check_blkio(
        &mut self,
        host: &HostCaps,
        warnings: &mut Vec<String>,
    ) -> Result<(), ResourceError> {
        if self.blkio_weight > 0 && !host.blkio_weight {
            warnings.push("Your kernel does not support Block I/O weight or the cgroup is not mounted. Weight discarded.".into());
            self.blkio_weight = 0;
        }
        if self.blkio_weight > 0 && !(10..=1000).contains(&self.blkio_weight) {
            return Err(invalid("Range of blkio weight is from 10 to 1000"));
        }
        if !self.blkio_weight_device.is_empty() && !host.blkio_weight_device {
            warnings.push("Your kernel does not support Block I/O weight_device or the cgroup is not mounted. Weight-device discarded.".into());
            self.blkio_weight_device.clear();
        }
        if !self.blkio_device_read_bps.is_empty() && !host.blkio_read_bps_device {
            warnings.push("Your kernel does not support BPS Block I/O read limit or the cgroup is not mounted. Block I/O BPS read limit discarded.".into());
            self.blkio_device_read_bps.clear();
        }
        if !self.blkio_device_write_bps.is_empty() && !host.blkio_write_bps_device {
            warnings.push("Your kernel does not support BPS Block I/O write limit or the cgroup is not mounted. Block I/O BPS write limit discarded.".into());
            self.blkio_device_write_bps.clear();
        }
        if !self.blkio_device_read_iops.is_empty() && !host.blkio_read_iops_device {
            warnings.push("Your kernel does not support IOPS Block read limit or the cgroup is not mounted. Block I/O IOPS read limit discarded.".into());
            self.blkio_device_read_iops.clear();
        }
        if !self.blkio_device_write_iops.is_empty() && !host.blkio_write_iops_device {
            warnings.push("Your kernel does not support IOPS Block write limit or the cgroup is not mounted. Block I/O IOPS write limit discarded.".into());
            self.blkio_device_write_iops.clear();
        }
        Ok(())
    }

    /// dockerd's create-time defaults, applied after validation: swap
    /// defaults to twice the memory limit, and `OomKillDisable` to false.
    pub fn adapt_for_create(&mut self) {
        if self.memory > 0 && self.memory_swap == 0 {
            self.memory_swap = self.memory.saturating_mul(2);
        }
        if self.oom_kill_disable.is_none() {
            self.oom_kill_disable = Some(false);
        }
    }

    /// `docker update`: the settings in `update` that are set, laid over
    /// `self` (the container's current ones), refused where they clash in
    /// dockerd's words. Validate the result with [`Resources::validate_update`].
    pub fn merged_with(&self, update: &Resources) -> Result<Resources, ResourceError> {
        let conflict = |m: &str| Err(ResourceError::Conflict(m.to_string()));
        // NanoCpus writes period and quota itself, so they exclude each other.
        if update.nano_cpus > 0 && self.cpu_period > 0 {
            return conflict("Conflicting options: Nano CPUs cannot be updated as CPU Period has already been set");
        }
        if update.nano_cpus > 0 && self.cpu_quota > 0 {
            return conflict("Conflicting options: Nano CPUs cannot be updated as CPU Quota has already been set");
        }
        if update.cpu_period > 0 && self.nano_cpus > 0 {
            return conflict("Conflicting options: CPU Period cannot be updated as NanoCPUs has already been set");
        }
        if update.cpu_quota > 0 && self.nano_cpus > 0 {
            return conflict(
                "Conflicting options: CPU Quota cannot be updated as NanoCPUs has already been set",
            );
        }
        let mut r = self.clone();
        if update.blkio_weight != 0 {
            r.blkio_weight = update.blkio_weight;
        }
        if update.cpu_shares != 0 {
            r.cpu_shares = update.cpu_shares;
        }
        if update.nano_cpus != 0 {
            r.nano_cpus = update.nano_cpus;
        }
        if update.cpu_period != 0 {
            r.cpu_period = update.cpu_period;
        }
        if update.cpu_quota != 0 {
            r.cpu_quota = update.cpu_quota;
        }
        if !update.cpuset_cpus.is_empty() {
            r.cpuset_cpus.clone_from(&update.cpuset_cpus);
        }
        if !update.cpuset_mems.is_empty() {
            r.cpuset_mems.clone_from(&update.cpuset_mems);
        }
        if update.memory != 0 {
            if update.memory > self.memory_swap && update.memory_swap == 0 {
                return conflict("Memory limit should be smaller than already set memoryswap limit, update the memoryswap at the same time");
            }
            r.memory = update.memory;
        }
        if update.memory_swap != 0 {
            r.memory_swap = update.memory_swap;
        }
        if update.memory_reservation != 0 {
            r.memory_reservation = update.memory_reservation;
        }
        if update.kernel_memory != 0 {
            r.kernel_memory = update.kernel_memory;
        }
        if update.cpu_realtime_period != 0 {
            r.cpu_realtime_period = update.cpu_realtime_period;
        }
        if update.cpu_realtime_runtime != 0 {
            r.cpu_realtime_runtime = update.cpu_realtime_runtime;
        }
        if update.pids_limit.is_some() {
            r.pids_limit = update.pids_limit;
        }
        Ok(r)
    }

    /// The CFS `(quota, period)` to write: `NanoCpus` first (period 100 ms),
    /// then explicit `CpuPeriod`/`CpuQuota` override, as dockerd builds the
    /// OCI spec. `None` leaves the value alone; quota -1 is unlimited.
    pub fn cfs_quota_period(&self) -> (Option<i64>, Option<u64>) {
        let mut quota = None;
        let mut period = None;
        if self.nano_cpus > 0 {
            period = Some(DEFAULT_CFS_PERIOD);
            // i128: NanoCpus is user input and may be huge.
            let q = self.nano_cpus as i128 * DEFAULT_CFS_PERIOD as i128 / 1_000_000_000;
            quota = Some(q.clamp(1, i64::MAX as i128) as i64);
        }
        if self.cpu_period > 0 {
            period = Some(self.cpu_period as u64);
        }
        if self.cpu_quota != 0 {
            quota = Some(self.cpu_quota);
        }
        (quota, period)
    }
}

/// cgroup v2 `cpu.weight` for v1 shares, with runc's formula: shares 2..262144
/// map linearly onto weights 1..10000. 0 means unset.
pub fn cpu_shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 0;
    }
    let shares = shares.clamp(2, 262_144);
    1 + ((shares - 2) * 9999) / 262_142
}

/// cgroup v2 `io.weight` (1..10000) for a blkio weight (10..1000), runc's
/// formula. 0 means unset.
pub fn blkio_weight_to_io_weight(weight: u16) -> u64 {
    if weight == 0 {
        return 0;
    }
    let w = u64::from(weight.clamp(10, 1000));
    1 + (w - 10) * 9999 / 990
}

/// cgroup v2 `memory.swap.max` from Docker's memory+swap total: swap alone.
/// `Ok(0)` means leave unset, `Ok(-1)` means `max`.
pub fn memory_swap_to_v2(memory_swap: i64, memory: i64) -> Result<i64, String> {
    // Unlimited memory with swap unset: unlimited swap too, as on v1.
    if memory == -1 && memory_swap == 0 {
        return Ok(-1);
    }
    if memory_swap == -1 || memory_swap == 0 {
        return Ok(memory_swap);
    }
    if memory == 0 || memory == -1 {
        return Err("unable to set swap limit without memory limit".into());
    }
    if memory < 0 {
        return Err(format!("invalid memory value: {memory}"));
    }
    if memory_swap < memory {
        return Err("memory+swap limit should be >= memory limit".into());
    }
    Ok(memory_swap - memory)
}

/// One device-cgroup rule: `c 1:3 rwm`. Major/minor `None` is `*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceRule {
    pub allow: bool,
    /// `a`, `b` or `c`.
    pub kind: char,
    pub major: Option<u64>,
    pub minor: Option<u64>,
    pub read: bool,
    pub write: bool,
    pub mknod: bool,
}

impl DeviceRule {
    pub const fn allow_char(major: u64, minor: Option<u64>) -> DeviceRule {
        DeviceRule {
            allow: true,
            kind: 'c',
            major: Some(major),
            minor,
            read: true,
            write: true,
            mknod: true,
        }
    }

    /// Whether it grants (or denies) read, write and mknod alike.
    pub fn all_access(&self) -> bool {
        self.read && self.write && self.mknod
    }

    /// The same rule in the forms the kernel reads as meant: it takes any
    /// `a` rule as "every device, every access", so a partial `a` rule (or
    /// one with numbers) becomes a char and a block rule, as runc does.
    pub fn expanded(&self) -> Vec<DeviceRule> {
        if self.kind != 'a' || (self.all_access() && self.major.is_none() && self.minor.is_none()) {
            return vec![*self];
        }
        ['c', 'b']
            .into_iter()
            .map(|kind| DeviceRule { kind, ..*self })
            .collect()
    }

    /// The line the v1 devices controller takes, without allow/deny. Call
    /// on [`DeviceRule::expanded`] rules.
    pub fn to_line(&self) -> String {
        let num = |n: Option<u64>| n.map(|v| v.to_string()).unwrap_or_else(|| "*".into());
        let mut perms = String::new();
        if self.read {
            perms.push('r');
        }
        if self.write {
            perms.push('w');
        }
        if self.mknod {
            perms.push('m');
        }
        if self.kind == 'a' {
            // The kernel reads a bare `a` as "all devices, all access".
            return "a".into();
        }
        format!(
            "{} {}:{} {}",
            self.kind,
            num(self.major),
            num(self.minor),
            perms
        )
    }

    /// Parses a `DeviceCgroupRules` entry (`c 1:3 rwm`, `a *:* m`), refused
    /// in dockerd's words.
    pub fn parse(rule: &str) -> Result<DeviceRule, String> {
        let bad = || format!("invalid device cgroup rule format: '{rule}'");
        let fields: Vec<&str> = rule.split(' ').collect();
        let [kind, nums, perms] = fields.as_slice() else {
            return Err(bad());
        };
        let kind = match *kind {
            "a" => 'a',
            "b" => 'b',
            "c" => 'c',
            _ => return Err(bad()),
        };
        let (maj, min) = nums.split_once(':').ok_or_else(bad)?;
        let num = |s: &str| -> Result<Option<u64>, String> {
            if s == "*" {
                return Ok(None);
            }
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            s.parse().map(Some).map_err(|_| bad())
        };
        let (major, minor) = (num(maj)?, num(min)?);
        if perms.is_empty() || perms.len() > 3 || !perms.chars().all(|c| "rwm".contains(c)) {
            return Err(bad());
        }
        Ok(DeviceRule {
            allow: true,
            kind,
            major,
            minor,
            read: perms.contains('r'),
            write: perms.contains('w'),
            mknod: perms.contains('m'),
        })
    }
}

/// dockerd's default devices-cgroup rules, then runc's always-allowed ones,
/// in the order they are written: deny everything, allow the standard
/// nodes, keep `/dev/fuse` out.
pub fn default_device_rules() -> Vec<DeviceRule> {
    let deny_all = DeviceRule {
        allow: false,
        kind: 'a',
        major: None,
        minor: None,
        read: true,
        write: true,
        mknod: true,
    };
    let mknod_any = |kind| DeviceRule {
        allow: true,
        kind,
        major: None,
        minor: None,
        read: false,
        write: false,
        mknod: true,
    };
    let mut fuse = DeviceRule::allow_char(10, Some(229));
    fuse.allow = false;
    vec![
        deny_all,
        // dockerd's spec: zero, null, urandom, random, tty, console.
        DeviceRule::allow_char(1, Some(5)),
        DeviceRule::allow_char(1, Some(3)),
        DeviceRule::allow_char(1, Some(9)),
        DeviceRule::allow_char(1, Some(8)),
        DeviceRule::allow_char(5, Some(0)),
        DeviceRule::allow_char(5, Some(1)),
        fuse,
        // runc's allow-list: mknod of anything, full, pts, ptmx, tun.
        mknod_any('c'),
        mknod_any('b'),
        DeviceRule::allow_char(1, Some(7)),
        DeviceRule::allow_char(136, None),
        DeviceRule::allow_char(5, Some(2)),
        DeviceRule::allow_char(10, Some(200)),
    ]
}

/// The rules for `Devices` entries: each host device node (or every node
/// below a host directory) with its `CgroupPermissions` (default `rwm`).
pub fn device_mapping_rules(devices: &[DeviceMapping]) -> Result<Vec<DeviceRule>, String> {
    let mut rules = Vec::new();
    for d in devices {
        let perms = if d.cgroup_permissions.is_empty() {
            "rwm"
        } else {
            d.cgroup_permissions.as_str()
        };
        if perms.len() > 3 || !perms.chars().all(|c| "rwm".contains(c)) {
            return Err(format!("invalid device mode: {perms}"));
        }
        let mut nodes = Vec::new();
        collect_device_nodes(Path::new(&d.path_on_host), &mut nodes, 0).map_err(|e| {
            format!(
                "error gathering device information while adding custom device \"{}\": {e}",
                d.path_on_host
            )
        })?;
        if nodes.is_empty() {
            return Err(format!(
                "error gathering device information while adding custom device \"{}\": not a device node",
                d.path_on_host
            ));
        }
        for (kind, major, minor) in nodes {
            rules.push(DeviceRule {
                allow: true,
                kind,
                major: Some(major),
                minor: Some(minor),
                read: perms.contains('r'),
                write: perms.contains('w'),
                mknod: perms.contains('m'),
            });
        }
    }
    Ok(rules)
}

/// Device nodes at `path`, or under it when it is a directory (as
/// `--device /dev/snd` adds every sound device).
fn collect_device_nodes(
    path: &Path,
    out: &mut Vec<(char, u64, u64)>,
    depth: usize,
) -> Result<(), String> {
    use nix::sys::stat::{major, minor, stat, SFlag};
    let st = stat(path).map_err(|e| e.desc().to_string())?;
    let fmt = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
    if fmt == SFlag::S_IFCHR || fmt == SFlag::S_IFBLK {
        let kind = if fmt == SFlag::S_IFCHR { 'c' } else { 'b' };
        out.push((kind, major(st.st_rdev), minor(st.st_rdev)));
    } else if fmt == SFlag::S_IFDIR && depth < 8 {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(|e| e.to_string())?
            .flatten()
            .map(|e| e.path())
            .collect();
        entries.sort();
        for p in entries {
            // Unreadable entries inside a directory are skipped, like dockerd.
            let _ = collect_device_nodes(&p, out, depth + 1);
        }
    }
    Ok(())
}

/// `major:minor` of a block device path, for the blkio weight and throttle
/// entries.
pub fn block_device_numbers(path: &str) -> Result<(u64, u64), String> {
    use nix::sys::stat::{major, minor, stat};
    let st = stat(Path::new(path)).map_err(|e| format!("stat {path}: {}", e.desc()))?;
    Ok((major(st.st_rdev), minor(st.st_rdev)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v1_host() -> HostCaps {
        HostCaps::supporting_all(CgroupVersion::V1, 2)
    }

    fn err(r: &Resources, host: &HostCaps) -> String {
        r.validate(host).unwrap_err().to_string()
    }

    #[test]
    fn deserializes_docker_hostconfig_shapes() {
        let r: Resources = serde_json::from_str(
            r#"{"CpuPeriod":100000,"CpuQuota":50000,"NanoCpus":0,"CpuShares":512,
            "CpusetCpus":"0-1","CpusetMems":"","Memory":67108864,"MemorySwap":-1,
            "MemoryReservation":0,"MemorySwappiness":null,"OomKillDisable":false,
            "KernelMemory":0,"KernelMemoryTCP":0,"PidsLimit":null,"BlkioWeight":300,
            "BlkioWeightDevice":[{"Path":"/dev/sda","Weight":200}],
            "BlkioDeviceReadBps":[{"Path":"/dev/sda","Rate":1048576}],
            "BlkioDeviceWriteBps":null,"BlkioDeviceReadIOps":[],"BlkioDeviceWriteIOps":null,
            "Devices":[{"PathOnHost":"/dev/null","PathInContainer":"/dev/xnull","CgroupPermissions":"rw"}],
            "DeviceCgroupRules":null,"CpuRealtimePeriod":null,"Binds":null,"Privileged":true}"#,
        )
        .unwrap();
        assert_eq!(r.cpu_quota, 50000);
        assert_eq!(r.memory_swap, -1);
        assert_eq!(r.memory_swappiness, None);
        assert_eq!(r.oom_kill_disable, Some(false));
        assert_eq!(r.blkio_weight_device[0].weight, 200);
        assert_eq!(r.blkio_device_read_bps[0].rate, 1_048_576);
        assert!(r.blkio_device_write_bps.is_empty());
        assert_eq!(r.devices[0].cgroup_permissions, "rw");
        // Privileged is the API layer's to copy; it is not read here.
        assert!(!r.allow_all_devices);
        let back = serde_json::to_value(&r).unwrap();
        assert_eq!(back["KernelMemoryTCP"], 0);
        assert_eq!(back["BlkioDeviceReadIOps"], serde_json::json!([]));
        assert_eq!(back["NanoCpus"], 0);
        // Bad types are refused, as dockerd refuses them.
        assert!(serde_json::from_str::<Resources>(r#"{"Memory":"lots"}"#).is_err());
        assert!(serde_json::from_str::<Resources>(r#"{"BlkioWeight":70000}"#).is_err());
    }

    #[test]
    fn memory_messages() {
        let host = v1_host();
        let r = Resources {
            memory: 1024,
            ..Default::default()
        };
        assert_eq!(err(&r, &host), "Minimum memory limit allowed is 6MB");
        let r = Resources {
            memory: MIN_MEMORY * 2,
            memory_swap: MIN_MEMORY,
            ..Default::default()
        };
        assert_eq!(
            err(&r, &host),
            "Minimum memoryswap limit should be larger than memory limit, see usage"
        );
        let r = Resources {
            memory_swap: MIN_MEMORY,
            ..Default::default()
        };
        assert_eq!(
            err(&r, &host),
            "You should always set the Memory limit when using Memoryswap limit, see usage"
        );
        // ... but on update the container's memory limit already applies.
        assert!(r.validate_update(&host).is_ok());
        let r = Resources {
            memory_swappiness: Some(101),
            ..Default::default()
        };
        assert_eq!(
            err(&r, &host),
            "Invalid value: 101, valid memory swappiness range is 0-100"
        );
        let r = Resources {
            memory_swappiness: Some(-1),
            ..Default::default()
        };
        assert_eq!(r.validate(&host), Ok(vec![]));
        let r = Resources {
            memory_reservation: 4096,
            ..Default::default()
        };
        assert_eq!(err(&r, &host), "Minimum memory reservation allowed is 6MB");
        let r = Resources {
            memory: MIN_MEMORY,
            memory_reservation: MIN_MEMORY * 2,
            ..Default::default()
        };
        assert_eq!(
            err(&r, &host),
            "Minimum memory limit can not be less than memory reservation limit, see usage"
        );
        let r = Resources {
            kernel_memory: 4096,
            ..Default::default()
        };
        assert_eq!(err(&r, &host), "Minimum kernel memory limit allowed is 6MB");
    }

    #[test]
    fn memory_warnings() {
        let mut host = v1_host();
        host.swap_limit = false;
        let r = Resources {
            memory: 64 << 20,
            ..Default::default()
        };
        assert_eq!(
            r.validate(&host).unwrap(),
            vec!["Your kernel does not support swap limit capabilities or the cgroup is not mounted. Memory limited without swap."]
        );
        let mut adjusted = r.clone();
        adjusted.validate_and_adjust(&host, false).unwrap();
        assert_eq!(adjusted.memory_swap, -1);

        // Without swap accounting a too-small swap is dropped, not refused.
        let r = Resources {
            memory: 64 << 20,
            memory_swap: 32 << 20,
            ..Default::default()
        };
        assert_eq!(r.validate(&host).unwrap().len(), 1);

        let r = Resources {
            oom_kill_disable: Some(true),
            ..Default::default()
        };
        assert_eq!(
            r.validate(&v1_host()).unwrap(),
            vec!["OOM killer is disabled for the container, but no memory limit is set, this can result in the system running out of resources."]
        );

        let v2 = HostCaps::supporting_all(CgroupVersion::V2, 2);
        let r = Resources {
            kernel_memory: 64 << 20,
            kernel_memory_tcp: 64 << 20,
            memory_swappiness: Some(10),
            oom_kill_disable: Some(true),
            memory: 64 << 20,
            ..Default::default()
        };
        assert_eq!(
            r.validate(&v2).unwrap(),
            vec![
                "Your kernel does not support memory swappiness capabilities or the cgroup is not mounted. Memory swappiness discarded.",
                "Your kernel does not support kernel memory limit capabilities or the cgroup is not mounted. Limitation discarded.",
                "Kernel memory TCP limit is not supported with cgroups v2. Limitation discarded.",
                "Your kernel does not support OomKillDisable. OomKillDisable discarded.",
            ]
        );
        // OomKillDisable=false on a host without the switch: dropped quietly.
        let r = Resources {
            oom_kill_disable: Some(false),
            ..Default::default()
        };
        assert_eq!(r.validate(&v2).unwrap(), Vec::<String>::new());

        let none = HostCaps::supporting_nothing(CgroupVersion::V1, 2);
        let r = Resources {
            memory: 64 << 20,
            memory_reservation: 32 << 20,
            pids_limit: Some(10),
            cpu_shares: 512,
            cpu_quota: 50000,
            blkio_weight: 300,
            ..Default::default()
        };
        assert_eq!(
            r.validate(&none).unwrap(),
            vec![
                "Your kernel does not support memory limit capabilities or the cgroup is not mounted. Limitation discarded.",
                "Your kernel does not support memory soft limit capabilities or the cgroup is not mounted. Limitation discarded.",
                "Your kernel does not support PIDs limit capabilities or the cgroup is not mounted. PIDs limit discarded.",
                "Your kernel does not support CPU shares or the cgroup is not mounted. Shares discarded.",
                "Your kernel does not support CPU CFS scheduler. CPU period/quota discarded.",
                "Your kernel does not support Block I/O weight or the cgroup is not mounted. Weight discarded.",
            ]
        );
    }

    #[test]
    fn cpu_messages() {
        let host = v1_host();
        let r = Resources {
            nano_cpus: 1_000_000_000,
            cpu_period: 100_000,
            ..Default::default()
        };
        assert_eq!(
            err(&r, &host),
            "Conflicting options: Nano CPUs and CPU Period cannot both be set"
        );
        let r = Resources {
            nano_cpus: 1_000_000_000,
            cpu_quota: 100_000,
            ..Default::default()
        };
        assert_eq!(
            err(&r, &host),
            "Conflicting options: Nano CPUs and CPU Quota cannot both be set"
        );
        let r = Resources {
            nano_cpus: 3_000_000_000,
            ..Default::default()
        };
        assert_eq!(
            err(&r, &host),
            "range of CPUs is from 0.01 to 2.00, as there are only 2 CPUs available"
        );
        let r = Resources {
            nano_cpus: -5,
            ..Default::default()
        };
        assert!(err(&r, &host).starts_with("range of CPUs"));
        for p in [999, 1_000_001] {
            let r = Resources {
                cpu_period: p,
                ..Default::default()
            };
            assert_eq!(
                err(&r, &host),
                "CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1s (i.e. 1000000)"
            );
        }
        let r = Resources {
            cpu_quota: 999,
            ..Default::default()
        };
        assert_eq!(
            err(&r, &host),
            "CPU cfs quota can not be less than 1ms (i.e. 1000)"
        );
        // -1 is "unlimited" and fine.
        let r = Resources {
            cpu_quota: -1,
            ..Default::default()
        };
        assert!(r.validate(&host).is_ok());
        let mut no_cfs = v1_host();
        no_cfs.cpu_cfs = false;
        let r = Resources {
            nano_cpus: 500_000_000,
            ..Default::default()
        };
        assert_eq!(err(&r, &no_cfs), "NanoCPUs can not be set, as your kernel does not support CPU CFS scheduler or the cgroup is not mounted");
    }

    #[test]
    fn realtime_messages() {
        let v2 = HostCaps::supporting_all(CgroupVersion::V2, 2);
        let r = Resources {
            cpu_realtime_period: 1_000_000,
            ..Default::default()
        };
        assert_eq!(
            err(&r, &v2),
            "Your kernel does not support cgroup cpu real-time period"
        );
        let r = Resources {
            cpu_realtime_runtime: 1000,
            ..Default::default()
        };
        assert_eq!(
            err(&r, &v2),
            "Your kernel does not support cgroup cpu real-time runtime"
        );
        let r = Resources {
            cpu_realtime_period: 1000,
            cpu_realtime_runtime: 2000,
            ..Default::default()
        };
        assert_eq!(
            err(&r, &v1_host()),
            "cpu real-time runtime cannot be higher than cpu real-time period"
        );
    }

    #[test]
    fn cpuset_messages() {
        let host = v1_host();
        let r = Resources {
            cpuset_cpus: "0-3".into(),
            ..Default::default()
        };
        assert_eq!(
            err(&r, &host),
            "Requested CPUs are not available - requested 0-3, available: 0-1"
        );
        let r = Resources {
            cpuset_cpus: "1-a".into(),
            ..Default::default()
        };
        assert_eq!(
            err(&r, &host),
            "Invalid value 1-a for cpuset cpus: invalid format: 1-a"
        );
        let r = Resources {
            cpuset_cpus: "3-1".into(),
            ..Default::default()
        };
        assert_eq!(
            err(&r, &host),
            "Invalid value 3-1 for cpuset cpus: invalid format: 3-1"
        );
        let r = Resources {
            cpuset_cpus: "0-9223372036854775807".into(),
            ..Default::default()
        };
        assert_eq!(
            err(&r, &host),
            "Invalid value 0-9223372036854775807 for cpuset cpus: value of out range, maximum is 8192"
        );
        let r = Resources {
            cpuset_mems: "1".into(),
            ..Default::default()
        };
        assert_eq!(
            err(&r, &host),
            "Requested memory nodes are not available - requested 1, available: 0"
        );
        let r = Resources {
            cpuset_mems: ",".into(),
            ..Default::default()
        };
        assert_eq!(
            err(&r, &host),
            "Invalid value , for cpuset mems: invalid format: ,"
        );
        let r = Resources {
            cpuset_cpus: "1,0,0-1".into(),
            cpuset_mems: "0".into(),
            ..Default::default()
        };
        assert_eq!(r.validate(&host), Ok(vec![]));
        let mut no_cpuset = v1_host();
        no_cpuset.cpuset = false;
        let r = Resources {
            cpuset_cpus: "7".into(),
            ..Default::default()
        };
        assert_eq!(
            r.validate(&no_cpuset).unwrap(),
            vec!["Your kernel does not support cpuset or the cgroup is not mounted. Cpuset discarded."]
        );
    }

    #[test]
    fn blkio_messages() {
        let host = v1_host();
        for w in [5u16, 1001] {
            let r = Resources {
                blkio_weight: w,
                ..Default::default()
            };
            assert_eq!(err(&r, &host), "Range of blkio weight is from 10 to 1000");
        }
        let none = HostCaps::supporting_nothing(CgroupVersion::V1, 2);
        let dev = ThrottleDevice {
            path: "/dev/sda".into(),
            rate: 1,
        };
        let r = Resources {
            blkio_weight_device: vec![WeightDevice {
                path: "/dev/sda".into(),
                weight: 100,
            }],
            blkio_device_read_bps: vec![dev.clone()],
            blkio_device_write_bps: vec![dev.clone()],
            blkio_device_read_iops: vec![dev.clone()],
            blkio_device_write_iops: vec![dev],
            ..Default::default()
        };
        assert_eq!(
            r.validate(&none).unwrap(),
            vec![
                "Your kernel does not support Block I/O weight_device or the cgroup is not mounted. Weight-device discarded.",
                "Your kernel does not support BPS Block I/O read limit or the cgroup is not mounted. Block I/O BPS read limit discarded.",
                "Your kernel does not support BPS Block I/O write limit or the cgroup is not mounted. Block I/O BPS write limit discarded.",
                "Your kernel does not support IOPS Block read limit or the cgroup is not mounted. Block I/O IOPS read limit discarded.",
                "Your kernel does not support IOPS Block write limit or the cgroup is not mounted. Block I/O IOPS write limit discarded.",
            ]
        );
    }

    #[test]
    fn errors_come_in_dockerds_order() {
        // Memory is checked before CPU, CPU before cpuset, cpuset before blkio.
        let r = Resources {
            memory: 1,
            nano_cpus: -1,
            cpuset_cpus: "x".into(),
            blkio_weight: 1,
            ..Default::default()
        };
        assert_eq!(err(&r, &v1_host()), "Minimum memory limit allowed is 6MB");
        let r = Resources {
            nano_cpus: -1,
            cpuset_cpus: "x".into(),
            ..Default::default()
        };
        assert!(err(&r, &v1_host()).starts_with("range of CPUs"));
        let e: EngineError = ResourceError::Invalid("x".into()).into();
        assert!(matches!(e, EngineError::InvalidParameter(_)));
    }

    #[test]
    fn update_merge() {
        let current = Resources {
            nano_cpus: 1_000_000_000,
            memory: 64 << 20,
            memory_swap: 128 << 20,
            ..Default::default()
        };
        let e = current
            .merged_with(&Resources {
                cpu_period: 50_000,
                ..Default::default()
            })
            .unwrap_err();
        assert_eq!(
            e,
            ResourceError::Conflict(
                "Conflicting options: CPU Period cannot be updated as NanoCPUs has already been set"
                    .into()
            )
        );
        let e = current
            .merged_with(&Resources {
                memory: 256 << 20,
                ..Default::default()
            })
            .unwrap_err();
        assert_eq!(e.to_string(), "Memory limit should be smaller than already set memoryswap limit, update the memoryswap at the same time");
        let merged = current
            .merged_with(&Resources {
                memory: 96 << 20,
                pids_limit: Some(50),
                cpuset_cpus: "1".into(),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(merged.memory, 96 << 20);
        assert_eq!(merged.memory_swap, 128 << 20);
        assert_eq!(merged.nano_cpus, 1_000_000_000);
        assert_eq!(merged.pids_limit, Some(50));
        assert_eq!(merged.cpuset_cpus, "1");
    }

    #[test]
    fn create_defaults_and_cfs() {
        let mut r = Resources {
            memory: 64 << 20,
            ..Default::default()
        };
        r.adapt_for_create();
        assert_eq!(r.memory_swap, 128 << 20);
        assert_eq!(r.oom_kill_disable, Some(false));

        let r = Resources {
            nano_cpus: 1_500_000_000,
            ..Default::default()
        };
        assert_eq!(r.cfs_quota_period(), (Some(150_000), Some(100_000)));
        let r = Resources {
            nano_cpus: 1,
            ..Default::default()
        };
        // Far below 1 µs per period still yields a valid (minimal) quota.
        assert_eq!(r.cfs_quota_period().0, Some(1));
        let r = Resources {
            cpu_quota: -1,
            ..Default::default()
        };
        assert_eq!(r.cfs_quota_period(), (Some(-1), None));
        assert_eq!(Resources::default().cfs_quota_period(), (None, None));
    }

    #[test]
    fn conversions() {
        assert_eq!(cpu_shares_to_weight(0), 0);
        assert_eq!(cpu_shares_to_weight(2), 1);
        assert_eq!(cpu_shares_to_weight(1024), 39);
        assert_eq!(cpu_shares_to_weight(262_144), 10_000);
        assert_eq!(cpu_shares_to_weight(1), 1);
        assert_eq!(cpu_shares_to_weight(u64::MAX), 10_000);
        assert_eq!(blkio_weight_to_io_weight(10), 1);
        assert_eq!(blkio_weight_to_io_weight(500), 4950);
        assert_eq!(blkio_weight_to_io_weight(1000), 10_000);
        assert_eq!(memory_swap_to_v2(128 << 20, 64 << 20), Ok(64 << 20));
        assert_eq!(memory_swap_to_v2(-1, 64 << 20), Ok(-1));
        assert_eq!(memory_swap_to_v2(0, 64 << 20), Ok(0));
        assert_eq!(memory_swap_to_v2(0, -1), Ok(-1));
        assert!(memory_swap_to_v2(64, 128).is_err());
        assert!(memory_swap_to_v2(64, 0).is_err());
    }

    #[test]
    fn cpu_lists() {
        let s = parse_cpu_list("0-2,5,+7", 0).unwrap();
        assert_eq!(s.into_iter().collect::<Vec<_>>(), vec![0, 1, 2, 5, 7]);
        assert!(parse_cpu_list("", 0).unwrap().is_empty());
        assert!(parse_cpu_list("-1", 0).is_err());
        assert!(parse_cpu_list("1-", 0).is_err());
        assert!(parse_cpu_list("1 ", 0).is_err());
        assert_eq!(parse_kernel_version("6.18.44-fc-v669"), Some((6, 18)));
        assert_eq!(parse_kernel_version("5.4.0"), Some((5, 4)));
        assert_eq!(parse_kernel_version("x"), None);
    }

    #[test]
    fn device_rules() {
        let r = DeviceRule::parse("c 1:3 rwm").unwrap();
        assert_eq!(r.to_line(), "c 1:3 rwm");
        assert_eq!(DeviceRule::parse("c *:* m").unwrap().to_line(), "c *:* m");
        assert_eq!(DeviceRule::parse("a *:* rwm").unwrap().to_line(), "a");
        let partial: Vec<String> = DeviceRule::parse("a *:* m")
            .unwrap()
            .expanded()
            .iter()
            .map(DeviceRule::to_line)
            .collect();
        assert_eq!(partial, vec!["c *:* m", "b *:* m"]);
        for bad in [
            "c 1:3",
            "x 1:3 rwm",
            "c 1:3 rwx",
            "c a:3 r",
            "c 1-3 r",
            "c 1:3  r",
            "",
        ] {
            assert_eq!(
                DeviceRule::parse(bad).unwrap_err(),
                format!("invalid device cgroup rule format: '{bad}'")
            );
        }
        let lines: Vec<(bool, String)> = default_device_rules()
            .iter()
            .map(|r| (r.allow, r.to_line()))
            .collect();
        assert_eq!(lines[0], (false, "a".to_string()));
        for want in [
            "c 1:3 rwm",
            "c 1:5 rwm",
            "c 1:7 rwm",
            "c 1:8 rwm",
            "c 1:9 rwm",
            "c 5:0 rwm",
            "c 5:1 rwm",
            "c 5:2 rwm",
            "c 136:* rwm",
            "c 10:200 rwm",
            "c *:* m",
            "b *:* m",
        ] {
            assert!(lines.contains(&(true, want.to_string())), "{want}");
        }
        assert!(lines.contains(&(false, "c 10:229 rwm".to_string())));

        let rules = device_mapping_rules(&[DeviceMapping {
            path_on_host: "/dev/null".into(),
            path_in_container: "/dev/null".into(),
            cgroup_permissions: "rw".into(),
        }])
        .unwrap();
        assert_eq!(rules[0].to_line(), "c 1:3 rw");
        let e = device_mapping_rules(&[DeviceMapping {
            path_on_host: "/nonexistent-device".into(),
            ..Default::default()
        }])
        .unwrap_err();
        assert!(e.contains("/nonexistent-device"), "{e}");
        let e = device_mapping_rules(&[DeviceMapping {
            path_on_host: "/dev/null".into(),
            cgroup_permissions: "rwx".into(),
            ..Default::default()
        }])
        .unwrap_err();
        assert_eq!(e, "invalid device mode: rwx");
    }

    #[test]
    fn probes_a_fake_v2_tree() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::write(
            root.join("cgroup.controllers"),
            "cpuset cpu io memory pids\n",
        )
        .unwrap();
        std::fs::write(root.join("cpuset.cpus.effective"), "0-3\n").unwrap();
        std::fs::write(root.join("cpuset.mems.effective"), "0\n").unwrap();
        std::fs::create_dir(root.join("system.slice")).unwrap();
        std::fs::write(root.join("system.slice/memory.swap.max"), "max\n").unwrap();
        let caps = HostCaps::probe_at(root, CgroupVersion::V2);
        assert!(caps.memory_limit && caps.swap_limit && caps.cpu_cfs && caps.cpuset);
        assert!(caps.pids_limit && caps.blkio_weight);
        assert!(!caps.kernel_memory && !caps.memory_swappiness && !caps.oom_kill_disable);
        assert!(!caps.cpu_realtime && !caps.kernel_memory_tcp);
        assert_eq!(caps.cpus, "0-3");
        assert_eq!(caps.mems, "0");

        let empty = tempfile::tempdir().unwrap();
        let caps = HostCaps::probe_at(empty.path(), CgroupVersion::V2);
        assert!(!caps.memory_limit && !caps.cpuset && !caps.pids_limit);
    }

    #[test]
    fn probes_this_host() {
        // Whatever the host is, probing must not panic and must count CPUs.
        let caps = HostCaps::probe();
        assert!(caps.ncpu >= 1);
        if caps.cpuset {
            assert!(parse_cpu_list(&caps.cpus, 0).is_ok(), "{}", caps.cpus);
        }
    }
}
