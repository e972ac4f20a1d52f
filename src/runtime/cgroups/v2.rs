//! [`V2Manager`]: a container's cgroup in the unified (v2) hierarchy.
//!
//! Docker's v1-shaped settings are converted as runc converts them: shares
//! to `cpu.weight`, memory+swap to `memory.swap.max`, blkio weights to
//! `io.weight` (or BFQ's `io.bfq.weight`). Device rules become an eBPF
//! program attached to the cgroup ([`super::device_filter`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cgroups_rs::fs::blkio::BlkIoController;
use cgroups_rs::fs::cpu::CpuController;
use cgroups_rs::fs::cpuset::CpuSetController;
use cgroups_rs::fs::freezer::FreezerController;
use cgroups_rs::fs::memory::MemController;
use cgroups_rs::fs::pid::PidController;
use cgroups_rs::fs::Controller;
use cgroups_rs::CgroupPid;

use super::bpf::{BpfSys, LinuxBpf};
use super::*;

/// The controllers enabled for a container's subtree on v2.
const V2_CONTROLLERS: [&str; 5] = ["cpuset", "cpu", "io", "memory", "pids"];

/// A cgroup in the unified (v2) hierarchy.
#[derive(Debug, Clone)]
pub struct V2Manager {
    root: PathBuf,
    rel: PathBuf,
    /// Loads and attaches the device filter.
    bpf: Arc<dyn BpfSys>,
}

impl V2Manager {
    pub fn new(root: impl AsRef<Path>, relative: &str) -> Result<V2Manager, CgroupError> {
        Ok(V2Manager {
            root: root.as_ref().to_path_buf(),
            rel: clean_relative(relative)?,
            bpf: Arc::new(LinuxBpf),
        })
    }

    /// The same manager with other `bpf(2)` calls (a fake in tests).
    pub fn with_bpf(mut self, bpf: Arc<dyn BpfSys>) -> V2Manager {
        self.bpf = bpf;
        self
    }

    fn dir(&self) -> PathBuf {
        self.root.join(&self.rel)
    }

    /// Delegates the controllers a container needs from `parent` to its
    /// children (`cgroup.subtree_control`), where `parent` has them. A
    /// refusal is left for the interface-file checks to report.
    fn enable_controllers(parent: &Path) {
        let available =
            std::fs::read_to_string(parent.join("cgroup.controllers")).unwrap_or_default();
        let enabled =
            std::fs::read_to_string(parent.join("cgroup.subtree_control")).unwrap_or_default();
        for c in V2_CONTROLLERS {
            let has = |text: &str| text.split_whitespace().any(|w| w == c);
            if has(&available) && !has(&enabled) {
                if let Err(e) = write_file(parent, "cgroup.subtree_control", &format!("+{c}")) {
                    tracing::debug!(controller = c, parent = %parent.display(), error = %e, "cannot enable cgroup controller");
                }
            }
        }
    }

    fn apply_cpu(&self, dir: &Path, res: &Resources, notes: &mut Notes) -> Result<(), CgroupError> {
        check_cpu_shares(res)?;
        let cpu = CpuController::new(dir.to_path_buf(), self.root.clone(), true);
        if res.cpu_shares > 0 {
            let w = resources::cpu_shares_to_weight(res.cpu_shares as u64);
            need(dir, "cpu.weight")?;
            cpu.set_shares(w).map_err(crate_err(dir, "cpu.weight", w))?;
        }
        let (quota, period) = res.cfs_quota_period();
        if quota.is_some() || period.is_some() {
            need(dir, "cpu.max")?;
            // cgroups-rs keeps whichever half is None from the current cpu.max
            // and writes "max" for a quota of -1.
            cpu.set_cfs_quota_and_period(quota, period)
                .map_err(crate_err(dir, "cpu.max", format!("{quota:?} {period:?}")))?;
        }
        if res.cpu_realtime_period != 0 || res.cpu_realtime_runtime != 0 {
            notes.add("CpuRealtimePeriod/CpuRealtimeRuntime: not available on cgroup v2");
        }
        Ok(())
    }

    fn apply_memory(
        &self,
        dir: &Path,
        res: &Resources,
        notes: &mut Notes,
    ) -> Result<(), CgroupError> {
        let mem = MemController::new(dir.to_path_buf(), self.root.clone(), true);
        if res.memory != 0 {
            need(dir, "memory.max")?;
            mem.set_limit(res.memory)
                .map_err(crate_err(dir, "memory.max", res.memory))?;
        }
        let swap = resources::memory_swap_to_v2(res.memory_swap, res.memory)
            .map_err(CgroupError::Invalid)?;
        if swap != 0 {
            if dir.join("memory.swap.max").exists() {
                mem.set_memswap_limit(swap)
                    .map_err(crate_err(dir, "memory.swap.max", swap))?;
            } else if swap != -1 {
                notes.add("MemorySwap: the kernel has no swap accounting (memory.swap.max); memory is limited without swap");
            }
        }
        if res.memory_reservation != 0 {
            need(dir, "memory.low")?;
            mem.set_soft_limit(res.memory_reservation)
                .map_err(crate_err(dir, "memory.low", res.memory_reservation))?;
        }
        if res.memory_swappiness.is_some_and(|s| s != -1) {
            notes.add("MemorySwappiness: not available on cgroup v2");
        }
        if res.oom_kill_disable == Some(true) {
            notes.add("OomKillDisable: not available on cgroup v2");
        }
        if res.kernel_memory != 0 {
            notes.add("KernelMemory: not available on cgroup v2");
        }
        if res.kernel_memory_tcp != 0 {
            notes.add("KernelMemoryTCP: not available on cgroup v2");
        }
        Ok(())
    }

    fn apply_io(&self, dir: &Path, res: &Resources) -> Result<(), CgroupError> {
        let bfq = dir.join("io.bfq.weight").exists();
        if res.blkio_weight != 0 {
            if bfq {
                // BFQ takes the blkio scale (1..1000) as is.
                BlkIoController::new(dir.to_path_buf(), self.root.clone(), true)
                    .set_weight(u64::from(res.blkio_weight))
                    .map_err(crate_err(dir, "io.bfq.weight", res.blkio_weight))?;
            } else {
                // cgroups-rs only knows io.bfq.weight; io.weight is 1..10000.
                let w = resources::blkio_weight_to_io_weight(res.blkio_weight);
                write_file(dir, "io.weight", &w.to_string())?;
            }
        }
        for wd in &res.blkio_weight_device {
            let (maj, min) = device_numbers(&wd.path)?;
            if bfq {
                write_file(dir, "io.bfq.weight", &format!("{maj}:{min} {}", wd.weight))?;
            } else {
                let w = resources::blkio_weight_to_io_weight(wd.weight);
                write_file(dir, "io.weight", &format!("{maj}:{min} {w}"))?;
            }
        }
        // One io.max line per device with all its limits; 0 clears a limit,
        // as it does on v1.
        let mut per_device: BTreeMap<(u64, u64), Vec<String>> = BTreeMap::new();
        for (key, _, td) in throttle_devices(res) {
            let nums = device_numbers(&td.path)?;
            let v = if td.rate == 0 {
                "max".to_string()
            } else {
                td.rate.to_string()
            };
            per_device
                .entry(nums)
                .or_default()
                .push(format!("{key}={v}"));
        }
        for ((maj, min), limits) in per_device {
            write_file(dir, "io.max", &format!("{maj}:{min} {}", limits.join(" ")))?;
        }
        Ok(())
    }

    /// Waits for `cgroup.events` to report `frozen` as wanted; a kernel
    /// without the file (before 5.2) cannot tell, so the write stands.
    fn wait_frozen(&self, frozen: bool) -> bool {
        let events = self.dir().join("cgroup.events");
        if !events.exists() {
            return true;
        }
        let want = u64::from(frozen);
        wait_until(|| {
            let text = std::fs::read_to_string(&events).unwrap_or_default();
            stats::parse_flat_keyed(&text).get("frozen") == Some(&want)
        })
    }
}

impl CgroupManager for V2Manager {
    fn version(&self) -> CgroupVersion {
        CgroupVersion::V2
    }

    fn path(&self) -> &Path {
        &self.rel
    }

    fn exists(&self) -> bool {
        self.dir().is_dir()
    }

    fn create(&self, res: &Resources) -> Result<Vec<String>, CgroupError> {
        if !self.root.is_dir() {
            return Err(CgroupError::NotFound(self.root.display().to_string()));
        }
        let dir = self.dir();
        // Delegate controllers at every level, making the levels as we go.
        let mut made = Vec::new();
        let mut cur = self.root.clone();
        for c in self.rel.components() {
            Self::enable_controllers(&cur);
            cur.push(c);
            if make_dir(&cur).inspect_err(|_| remove_created(&made))? {
                made.push(cur.clone());
            }
        }
        debug_assert_eq!(cur, dir);
        // A create that fails half-way leaves no directories behind.
        self.apply(res, true).inspect_err(|_| remove_created(&made))
    }

    fn apply(&self, res: &Resources, creating: bool) -> Result<Vec<String>, CgroupError> {
        let dir = self.dir();
        let mut notes = Notes::default();
        self.apply_cpu(&dir, res, &mut notes)?;
        if !res.cpuset_cpus.is_empty() || !res.cpuset_mems.is_empty() {
            let cs = CpuSetController::new(dir.clone(), self.root.clone(), true);
            set_cpuset(&cs, &dir, res)?;
        }
        self.apply_memory(&dir, res, &mut notes)?;
        if let Some(limit) = res.pids_limit {
            set_pids_max(
                &PidController::new(dir.clone(), self.root.clone(), true),
                &dir,
                limit,
            )?;
        }
        self.apply_io(&dir, res)?;
        if creating {
            // Privileged: no filter (and none left from a cgroup reused).
            let rules = device_rules(res)?;
            let filter = (!res.allow_all_devices).then_some(rules.as_slice());
            device_filter::set(self.bpf.as_ref(), &dir, filter)?;
        }
        Ok(notes.0)
    }

    fn add_task(&self, pid: i32) -> Result<(), CgroupError> {
        let p = CgroupPid::from(check_pid(pid)?);
        let dir = self.dir();
        need(&dir, "cgroup.procs")?;
        PidController::new(dir.clone(), self.root.clone(), true)
            .add_task_by_tgid(&p)
            .map_err(crate_err(&dir, "cgroup.procs", pid))
    }

    fn birth_dir(&self) -> Option<PathBuf> {
        Some(self.dir())
    }

    fn pids(&self) -> Result<Vec<i32>, CgroupError> {
        if !self.exists() {
            return Err(CgroupError::NotFound(self.rel.display().to_string()));
        }
        let mut pids = read_procs(&self.dir())?;
        pids.sort_unstable();
        Ok(pids)
    }

    fn stats(&self) -> Result<CgroupStats, CgroupError> {
        if !self.exists() {
            return Err(CgroupError::NotFound(self.rel.display().to_string()));
        }
        Ok(stats::read_v2(&self.dir()))
    }

    fn freeze(&self) -> Result<(), CgroupError> {
        let dir = self.dir();
        need(&dir, "cgroup.freeze")?;
        let ctl = FreezerController::new(dir.clone(), self.root.clone(), true);
        ctl.freeze().map_err(crate_err(&dir, "cgroup.freeze", 1))?;
        if self.wait_frozen(true) {
            return Ok(());
        }
        let _ = ctl.thaw();
        Err(CgroupError::Timeout {
            path: dir.display().to_string(),
            state: "frozen",
        })
    }

    fn thaw(&self) -> Result<(), CgroupError> {
        let dir = self.dir();
        need(&dir, "cgroup.freeze")?;
        FreezerController::new(dir.clone(), self.root.clone(), true)
            .thaw()
            .map_err(crate_err(&dir, "cgroup.freeze", 0))?;
        if self.wait_frozen(false) {
            Ok(())
        } else {
            Err(CgroupError::Timeout {
                path: dir.display().to_string(),
                state: "thawed",
            })
        }
    }

    fn oom_killed(&self) -> bool {
        let text = std::fs::read_to_string(self.dir().join("memory.events")).unwrap_or_default();
        stats::parse_flat_keyed(&text)
            .get("oom_kill")
            .is_some_and(|&n| n > 0)
    }

    fn remove(&self) -> Result<(), CgroupError> {
        let dir = self.dir();
        if !dir.is_dir() {
            return Ok(());
        }
        refuse_busy(self)?;
        PidController::new(dir.clone(), self.root.clone(), true)
            .delete()
            .map_err(|e| CgroupError::Io {
                op: "remove",
                path: dir.display().to_string(),
                source: std::io::Error::other(e.to_string()),
            })
    }
}
