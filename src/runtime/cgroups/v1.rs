//! [`V1Manager`]: a container's cgroup on a v1 (or hybrid) host, one
//! directory per controller under `<root>/<controller>/`.
//!
//! Writes follow runc's order where the kernel cares: memory before or
//! after memory+swap depending on the direction of the change, the CFS
//! period around the quota, the devices list from deny-all upwards.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use cgroups_rs::fs::blkio::BlkIoController;
use cgroups_rs::fs::cpu::CpuController;
use cgroups_rs::fs::cpuset::CpuSetController;
use cgroups_rs::fs::devices::{DevicePermissions, DeviceType, DevicesController};
use cgroups_rs::fs::freezer::FreezerController;
use cgroups_rs::fs::memory::MemController;
use cgroups_rs::fs::pid::PidController;
use cgroups_rs::fs::Controller;
use cgroups_rs::CgroupPid;

use super::*;

/// The controllers a container gets on a v1 host.
const V1_CONTROLLERS: [&str; 8] = [
    "cpu", "cpuacct", "cpuset", "memory", "pids", "blkio", "devices", "freezer",
];

/// A cgroup on a v1 (or hybrid) host: one directory per controller.
#[derive(Debug, Clone)]
pub struct V1Manager {
    rel: PathBuf,
    /// Controller name to its mount point; absent controllers are skipped.
    mounts: BTreeMap<&'static str, PathBuf>,
}

impl V1Manager {
    pub fn new(root: impl AsRef<Path>, relative: &str) -> Result<V1Manager, CgroupError> {
        let rel = clean_relative(relative)?;
        let mounts = V1_CONTROLLERS
            .iter()
            .filter_map(|&c| v1_mount(root.as_ref(), c).map(|m| (c, m)))
            // `cpu` and `cpuacct` are often links to one `cpu,cpuacct` mount.
            .map(|(c, m)| (c, std::fs::canonicalize(&m).unwrap_or(m)))
            .collect();
        Ok(V1Manager { rel, mounts })
    }

    /// One controller's cgroup directory and mount point.
    pub(super) fn dir(&self, controller: &str) -> Option<(PathBuf, PathBuf)> {
        let mount = self.mounts.get(controller)?;
        Some((mount.join(&self.rel), mount.clone()))
    }

    /// Every distinct cgroup directory (combined mounts share one).
    pub(super) fn all_dirs(&self) -> Vec<(PathBuf, PathBuf)> {
        let mut seen = std::collections::BTreeSet::new();
        self.mounts
            .keys()
            .filter_map(|c| self.dir(c))
            .filter(|(d, _)| seen.insert(d.clone()))
            .collect()
    }

    fn apply_cpu(&self, res: &Resources, notes: &mut Notes) -> Result<(), CgroupError> {
        check_cpu_shares(res)?;
        let (quota, period) = res.cfs_quota_period();
        let rt = res.cpu_realtime_period != 0 || res.cpu_realtime_runtime != 0;
        let Some((dir, mount)) = self.dir("cpu") else {
            if res.cpu_shares > 0 || quota.is_some() || period.is_some() || rt {
                notes.add("CPU shares, quota and realtime settings: no cpu controller is mounted");
            }
            return Ok(());
        };
        let cpu = CpuController::new(dir.clone(), mount, false);
        if res.cpu_shares > 0 {
            need(&dir, "cpu.shares")?;
            cpu.set_shares(res.cpu_shares as u64).map_err(crate_err(
                &dir,
                "cpu.shares",
                res.cpu_shares,
            ))?;
        }
        // The kernel refuses a period that makes the current quota exceed
        // the parent's bandwidth; written again after the quota it passes.
        let period_refused = match period {
            Some(p) => {
                need(&dir, "cpu.cfs_period_us")?;
                cpu.set_cfs_period(p).is_err()
            }
            None => false,
        };
        if let Some(q) = quota {
            need(&dir, "cpu.cfs_quota_us")?;
            cpu.set_cfs_quota(q)
                .map_err(crate_err(&dir, "cpu.cfs_quota_us", q))?;
        }
        if let (Some(p), true) = (period, period_refused) {
            cpu.set_cfs_period(p)
                .map_err(crate_err(&dir, "cpu.cfs_period_us", p))?;
        }
        if res.cpu_realtime_period > 0 {
            if dir.join("cpu.rt_period_us").exists() {
                let p = res.cpu_realtime_period as u64;
                cpu.set_rt_period_us(p)
                    .map_err(crate_err(&dir, "cpu.rt_period_us", p))?;
            } else {
                notes.add("CpuRealtimePeriod: the kernel has no realtime group scheduling");
            }
        }
        if res.cpu_realtime_runtime != 0 {
            if dir.join("cpu.rt_runtime_us").exists() {
                let r = res.cpu_realtime_runtime;
                cpu.set_rt_runtime(r)
                    .map_err(crate_err(&dir, "cpu.rt_runtime_us", r))?;
            } else {
                notes.add("CpuRealtimeRuntime: the kernel has no realtime group scheduling");
            }
        }
        Ok(())
    }

    fn apply_cpuset(&self, res: &Resources, notes: &mut Notes) -> Result<(), CgroupError> {
        if res.cpuset_cpus.is_empty() && res.cpuset_mems.is_empty() {
            return Ok(());
        }
        let Some((dir, mount)) = self.dir("cpuset") else {
            notes.add("CpusetCpus/CpusetMems: no cpuset controller is mounted");
            return Ok(());
        };
        set_cpuset(&CpuSetController::new(dir.clone(), mount, false), &dir, res)
    }

    fn apply_memory(&self, res: &Resources, notes: &mut Notes) -> Result<(), CgroupError> {
        let wanted = res.memory != 0
            || res.memory_swap != 0
            || res.memory_reservation != 0
            || res.kernel_memory != 0
            || res.kernel_memory_tcp != 0
            || res.memory_swappiness.is_some_and(|s| s != -1)
            || res.oom_kill_disable == Some(true);
        let Some((dir, mount)) = self.dir("memory") else {
            if wanted {
                notes.add("memory settings: no memory controller is mounted");
            }
            return Ok(());
        };
        let mem = MemController::new(dir.clone(), mount, false);
        let has_swap = dir.join("memory.memsw.limit_in_bytes").exists();
        let mut swap = res.memory_swap;
        // Unlimited memory with swap unset means unlimited swap as well.
        if res.memory == -1 && swap == 0 && has_swap {
            swap = -1;
        }
        if !has_swap && swap != 0 {
            if swap != -1 {
                notes.add("MemorySwap: the kernel has no swap accounting (memory.memsw.limit_in_bytes); memory is limited without swap");
            }
            swap = 0;
        }
        let set_mem = |v: i64| -> Result<(), CgroupError> {
            need(&dir, "memory.limit_in_bytes")?;
            mem.set_limit(v)
                .map_err(crate_err(&dir, "memory.limit_in_bytes", v))
        };
        let set_swap = |v: i64| -> Result<(), CgroupError> {
            mem.set_memswap_limit(v)
                .map_err(crate_err(&dir, "memory.memsw.limit_in_bytes", v))
        };
        if res.memory != 0 && swap != 0 {
            // The kernel keeps memory <= memory+swap at every step: when the
            // new total is above the current memory limit, raise it first.
            let current: u64 = read_file(&dir.join("memory.limit_in_bytes"))?
                .trim()
                .parse()
                .unwrap_or(u64::MAX);
            if swap == -1 || current < swap as u64 {
                set_swap(swap)?;
                set_mem(res.memory)?;
            } else {
                set_mem(res.memory)?;
                set_swap(swap)?;
            }
        } else {
            if res.memory != 0 {
                set_mem(res.memory)?;
            }
            if swap != 0 {
                set_swap(swap)?;
            }
        }
        if res.memory_reservation != 0 {
            need(&dir, "memory.soft_limit_in_bytes")?;
            mem.set_soft_limit(res.memory_reservation)
                .map_err(crate_err(
                    &dir,
                    "memory.soft_limit_in_bytes",
                    res.memory_reservation,
                ))?;
        }
        if res.kernel_memory != 0 && !resources::kernel_older_than(5, 16) {
            // The file is still there, but writes are ignored since 5.16.
            notes.add("KernelMemory: not enforced by kernels since 5.16");
        } else if res.kernel_memory != 0 {
            self.write_optional_memory(
                &dir,
                "memory.kmem.limit_in_bytes",
                res.kernel_memory,
                "KernelMemory",
                notes,
            )?;
        }
        if res.kernel_memory_tcp != 0 {
            self.write_optional_memory(
                &dir,
                "memory.kmem.tcp.limit_in_bytes",
                res.kernel_memory_tcp,
                "KernelMemoryTCP",
                notes,
            )?;
        }
        if let Some(s) = res.memory_swappiness.filter(|&s| s != -1) {
            let s = u64::try_from(s).ok().filter(|&s| s <= 100).ok_or_else(|| {
                CgroupError::Invalid(format!(
                    "Invalid value: {s}, valid memory swappiness range is 0-100"
                ))
            })?;
            need(&dir, "memory.swappiness")?;
            mem.set_swappiness(s)
                .map_err(crate_err(&dir, "memory.swappiness", s))?;
        }
        if res.oom_kill_disable == Some(true) {
            need(&dir, "memory.oom_control")?;
            mem.disable_oom_killer()
                .map_err(crate_err(&dir, "memory.oom_control", 1))?;
        }
        Ok(())
    }

    /// Kernel memory files: absent or refused (EOPNOTSUPP) is a note, not a
    /// failure, as dockerd only warns about them.
    fn write_optional_memory(
        &self,
        dir: &Path,
        file: &str,
        value: i64,
        name: &str,
        notes: &mut Notes,
    ) -> Result<(), CgroupError> {
        if !dir.join(file).exists() {
            notes.add(format!(
                "{name}: not supported by this kernel ({file} missing)"
            ));
        } else if !write_file_if_supported(dir, file, &value.to_string())? {
            notes.add(format!("{name}: not supported by this kernel"));
        }
        Ok(())
    }

    fn apply_pids(&self, res: &Resources, notes: &mut Notes) -> Result<(), CgroupError> {
        let Some(limit) = res.pids_limit else {
            return Ok(());
        };
        let Some((dir, mount)) = self.dir("pids") else {
            if limit > 0 {
                notes.add("PidsLimit: no pids controller is mounted");
            }
            return Ok(());
        };
        set_pids_max(&PidController::new(dir.clone(), mount, false), &dir, limit)
    }

    fn apply_blkio(&self, res: &Resources, notes: &mut Notes) -> Result<(), CgroupError> {
        let wanted = res.blkio_weight != 0
            || !res.blkio_weight_device.is_empty()
            || throttle_devices(res).next().is_some();
        if !wanted {
            return Ok(());
        }
        let Some((dir, mount)) = self.dir("blkio") else {
            notes.add("Blkio settings: no blkio controller is mounted");
            return Ok(());
        };
        let blkio = BlkIoController::new(dir.clone(), mount, false);
        // CFQ's files, or BFQ's where CFQ is gone.
        let (weight_file, device_file) = if dir.join("blkio.weight").exists() {
            ("blkio.weight", "blkio.weight_device")
        } else {
            ("blkio.bfq.weight", "blkio.bfq.weight_device")
        };
        if res.blkio_weight != 0 {
            if weight_file == "blkio.weight" {
                blkio
                    .set_weight(u64::from(res.blkio_weight))
                    .map_err(crate_err(&dir, weight_file, res.blkio_weight))?;
            } else if dir.join(weight_file).exists() {
                write_file(&dir, weight_file, &res.blkio_weight.to_string())?;
            } else {
                notes.add("BlkioWeight: no proportional I/O scheduler (CFQ or BFQ) on this host");
            }
        }
        for wd in &res.blkio_weight_device {
            let (maj, min) = device_numbers(&wd.path)?;
            if dir.join(device_file).exists() {
                let rule = format!("{maj}:{min} {}", wd.weight);
                if !write_file_if_supported(&dir, device_file, &rule)? {
                    notes.add(format!(
                        "BlkioWeightDevice {}: the device's I/O scheduler takes no weights",
                        wd.path
                    ));
                }
            } else {
                notes.add(format!(
                    "BlkioWeightDevice {}: no proportional I/O scheduler on this host",
                    wd.path
                ));
            }
        }
        for (_, file, td) in throttle_devices(res) {
            let (maj, min) = device_numbers(&td.path)?;
            need(&dir, file)?;
            let r = match file {
                "blkio.throttle.read_bps_device" => {
                    blkio.throttle_read_bps_for_device(maj, min, td.rate)
                }
                "blkio.throttle.write_bps_device" => {
                    blkio.throttle_write_bps_for_device(maj, min, td.rate)
                }
                "blkio.throttle.read_iops_device" => {
                    blkio.throttle_read_iops_for_device(maj, min, td.rate)
                }
                _ => blkio.throttle_write_iops_for_device(maj, min, td.rate),
            };
            r.map_err(crate_err(&dir, file, format!("{maj}:{min} {}", td.rate)))?;
        }
        Ok(())
    }

    fn apply_devices(&self, res: &Resources, notes: &mut Notes) -> Result<(), CgroupError> {
        let rules = device_rules(res)?;
        let Some((dir, mount)) = self.dir("devices") else {
            notes.add(
                "device access rules: no devices controller is mounted, so they are not enforced",
            );
            return Ok(());
        };
        need(&dir, "devices.allow")?;
        let ctl = DevicesController::new(dir.clone(), mount);
        for rule in rules.iter().flat_map(DeviceRule::expanded) {
            let (kind, maj, min) = match rule.kind {
                'a' => (DeviceType::All, -1, -1),
                'b' => (DeviceType::Block, wild(rule.major), wild(rule.minor)),
                _ => (DeviceType::Char, wild(rule.major), wild(rule.minor)),
            };
            let mut perms = Vec::new();
            if rule.read {
                perms.push(DevicePermissions::Read);
            }
            if rule.write {
                perms.push(DevicePermissions::Write);
            }
            if rule.mknod {
                perms.push(DevicePermissions::MkNod);
            }
            let (file, r) = if rule.allow {
                ("devices.allow", ctl.allow_device(kind, maj, min, &perms))
            } else {
                ("devices.deny", ctl.deny_device(kind, maj, min, &perms))
            };
            r.map_err(crate_err(&dir, file, rule.to_line()))?;
        }
        Ok(())
    }
}

/// Copies `cpuset.cpus` and `cpuset.mems` down from the parent into each
/// still-empty directory between `mount` and `dir`. cgroups-rs's `create`
/// does this; it only logs a failure, so the result is checked after it.
fn populate_cpuset(mount: &Path, dir: &Path) -> Result<(), CgroupError> {
    let cs = CpuSetController::new(dir.to_path_buf(), mount.to_path_buf(), false);
    if let Err(e) = cs.create() {
        tracing::debug!(dir = %dir.display(), error = %e, "cgroups-rs cpuset create");
    }
    let rel = dir.strip_prefix(mount).unwrap_or(Path::new(""));
    let mut parent = mount.to_path_buf();
    for c in rel.components() {
        let cur = parent.join(c);
        for file in ["cpuset.cpus", "cpuset.mems"] {
            let mine = read_file(&cur.join(file))?;
            if mine.trim().is_empty() {
                let theirs = read_file(&parent.join(file))?;
                if !theirs.trim().is_empty() {
                    write_file(&cur, file, theirs.trim())?;
                }
            }
        }
        parent = cur;
    }
    Ok(())
}

/// cgroups-rs spells "any" major or minor as -1.
fn wild(n: Option<u64>) -> i64 {
    n.and_then(|v| i64::try_from(v).ok()).unwrap_or(-1)
}

impl CgroupManager for V1Manager {
    fn version(&self) -> CgroupVersion {
        CgroupVersion::V1
    }

    fn path(&self) -> &Path {
        &self.rel
    }

    fn exists(&self) -> bool {
        self.all_dirs().iter().any(|(d, _)| d.is_dir())
    }

    fn create(&self, res: &Resources) -> Result<Vec<String>, CgroupError> {
        if self.mounts.is_empty() {
            return Err(CgroupError::Unsupported(
                "no cgroup v1 controller is mounted".into(),
            ));
        }
        let mut made = Vec::new();
        for (dir, mount) in self.all_dirs() {
            match make_dirs(&mount, &dir) {
                Ok(new_dirs) => made.extend(new_dirs),
                Err(e) => {
                    remove_created(&made);
                    return Err(e);
                }
            }
            if self.dir("cpuset").is_some_and(|(d, _)| d == dir) {
                // New cpuset groups start with no CPUs and no memory nodes,
                // and take no task until they have some.
                if let Err(e) = populate_cpuset(&mount, &dir) {
                    remove_created(&made);
                    return Err(e);
                }
            }
        }
        // A create that fails half-way leaves no directories behind.
        self.apply(res, true).inspect_err(|_| remove_created(&made))
    }

    fn apply(&self, res: &Resources, creating: bool) -> Result<Vec<String>, CgroupError> {
        let mut notes = Notes::default();
        self.apply_cpu(res, &mut notes)?;
        self.apply_cpuset(res, &mut notes)?;
        self.apply_memory(res, &mut notes)?;
        self.apply_pids(res, &mut notes)?;
        self.apply_blkio(res, &mut notes)?;
        if creating {
            self.apply_devices(res, &mut notes)?;
        }
        Ok(notes.0)
    }

    fn add_task(&self, pid: i32) -> Result<(), CgroupError> {
        let p = CgroupPid::from(check_pid(pid)?);
        for (dir, mount) in self.all_dirs() {
            need(&dir, "cgroup.procs")?;
            // Any v1 controller type writes cgroup.procs the same way.
            PidController::new(dir.clone(), mount, false)
                .add_task_by_tgid(&p)
                .map_err(crate_err(&dir, "cgroup.procs", pid))?;
        }
        Ok(())
    }

    fn pids(&self) -> Result<Vec<i32>, CgroupError> {
        let dirs = self.all_dirs();
        if !dirs.iter().any(|(d, _)| d.is_dir()) {
            return Err(CgroupError::NotFound(self.rel.display().to_string()));
        }
        let mut pids = std::collections::BTreeSet::new();
        for (dir, _) in dirs {
            pids.extend(read_procs(&dir)?);
        }
        Ok(pids.into_iter().collect())
    }

    fn stats(&self) -> Result<CgroupStats, CgroupError> {
        if !self.exists() {
            return Err(CgroupError::NotFound(self.rel.display().to_string()));
        }
        let d = |c: &str| self.dir(c).map(|(d, _)| d).filter(|d| d.is_dir());
        let (cpu, cpuacct, memory, pids, blkio) =
            (d("cpu"), d("cpuacct"), d("memory"), d("pids"), d("blkio"));
        Ok(stats::read_v1(&stats::V1Dirs {
            cpu: cpu.as_deref(),
            cpuacct: cpuacct.as_deref(),
            memory: memory.as_deref(),
            pids: pids.as_deref(),
            blkio: blkio.as_deref(),
        }))
    }

    fn freeze(&self) -> Result<(), CgroupError> {
        let (dir, mount) = self
            .dir("freezer")
            .ok_or_else(|| CgroupError::Unsupported("no freezer controller is mounted".into()))?;
        need(&dir, "freezer.state")?;
        let ctl = FreezerController::new(dir.clone(), mount, false);
        let state = || read_file(&dir.join("freezer.state")).unwrap_or_default();
        // A group can sit in FREEZING while a task is busy in the kernel;
        // asking again is what gets it there (runc does the same).
        let frozen = wait_until(|| {
            let _ = ctl.freeze();
            state().trim() == "FROZEN"
        });
        if !frozen {
            let _ = ctl.thaw();
            return Err(CgroupError::Timeout {
                path: dir.display().to_string(),
                state: "FROZEN",
            });
        }
        Ok(())
    }

    fn thaw(&self) -> Result<(), CgroupError> {
        let (dir, mount) = self
            .dir("freezer")
            .ok_or_else(|| CgroupError::Unsupported("no freezer controller is mounted".into()))?;
        need(&dir, "freezer.state")?;
        let ctl = FreezerController::new(dir.clone(), mount, false);
        ctl.thaw()
            .map_err(crate_err(&dir, "freezer.state", "THAWED"))?;
        if wait_until(|| read_file(&dir.join("freezer.state")).is_ok_and(|s| s.trim() == "THAWED"))
        {
            Ok(())
        } else {
            Err(CgroupError::Timeout {
                path: dir.display().to_string(),
                state: "THAWED",
            })
        }
    }

    fn oom_killed(&self) -> bool {
        let Some((dir, _)) = self.dir("memory") else {
            return false;
        };
        let ctl = stats::parse_flat_keyed(
            &std::fs::read_to_string(dir.join("memory.oom_control")).unwrap_or_default(),
        );
        // `oom_kill` counts kills (4.13+); `under_oom` catches a group whose
        // killer is disabled and is stuck at its limit.
        ctl.get("oom_kill").is_some_and(|&n| n > 0) || ctl.get("under_oom") == Some(&1)
    }

    fn remove(&self) -> Result<(), CgroupError> {
        let dirs: Vec<_> = self
            .all_dirs()
            .into_iter()
            .filter(|(d, _)| d.is_dir())
            .collect();
        if dirs.is_empty() {
            return Ok(());
        }
        refuse_busy(self)?;
        let mut first_err = None;
        for (dir, mount) in dirs {
            // cgroups-rs retries rmdir with back-off, as runc does: the
            // kernel can report EBUSY briefly after the last task exits.
            if let Err(e) = PidController::new(dir.clone(), mount, false).delete() {
                first_err.get_or_insert_with(|| CgroupError::Io {
                    op: "remove",
                    path: dir.display().to_string(),
                    source: std::io::Error::other(e.to_string()),
                });
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}
