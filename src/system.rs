//! Facts about the host that `/version` and `/info` report: kernel, OS,
//! CPUs, memory, cgroup version. Read from /proc and /sys, no HTTP here.

use std::path::Path;

#[derive(Debug, Clone, PartialEq)]
pub struct HostInfo {
    pub kernel_version: String,
    pub operating_system: String,
    pub os_version: String,
    pub hostname: String,
    pub ncpu: usize,
    pub mem_total: u64,
    pub cgroup_version: CgroupVersion,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupVersion {
    V1,
    V2,
}

impl CgroupVersion {
    pub fn as_str(self) -> &'static str {
        match self {
            CgroupVersion::V1 => "1",
            CgroupVersion::V2 => "2",
        }
    }
}

/// cgroup v2 when /sys/fs/cgroup itself is the unified hierarchy; a hybrid
/// host (v1 controllers plus a `unified` mount) counts as v1, as for dockerd.
pub fn detect_cgroup_version(cgroup_root: &Path) -> CgroupVersion {
    match nix::sys::statfs::statfs(cgroup_root) {
        Ok(s) if s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC => CgroupVersion::V2,
        _ => CgroupVersion::V1,
    }
}

/// `PRETTY_NAME` and `VERSION_ID` from an os-release file.
pub fn parse_os_release(text: &str) -> (String, String) {
    let mut pretty = String::from("Linux");
    let mut version = String::new();
    for line in text.lines() {
        if let Some((k, v)) = line.split_once('=') {
            let v = v.trim().trim_matches('"').to_string();
            match k.trim() {
                "PRETTY_NAME" => pretty = v,
                "VERSION_ID" => version = v,
                _ => {}
            }
        }
    }
    (pretty, version)
}

/// `MemTotal` from /proc/meminfo, in bytes.
pub fn parse_mem_total(meminfo: &str) -> u64 {
    meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

impl HostInfo {
    pub fn probe() -> HostInfo {
        let uts = nix::sys::utsname::uname().ok();
        let kernel_version = uts
            .as_ref()
            .map(|u| u.release().to_string_lossy().to_string())
            .unwrap_or_default();
        let hostname = nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().to_string())
            .unwrap_or_default();
        let os_release = std::fs::read_to_string("/etc/os-release")
            .or_else(|_| std::fs::read_to_string("/usr/lib/os-release"))
            .unwrap_or_default();
        let (operating_system, os_version) = parse_os_release(&os_release);
        let ncpu = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        let mem_total =
            parse_mem_total(&std::fs::read_to_string("/proc/meminfo").unwrap_or_default());
        HostInfo {
            kernel_version,
            operating_system,
            os_version,
            hostname,
            ncpu,
            mem_total,
            cgroup_version: detect_cgroup_version(Path::new("/sys/fs/cgroup")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_files() {
        let (p, v) = parse_os_release(
            "NAME=\"Debian\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nVERSION_ID=\"12\"\n",
        );
        assert_eq!(p, "Debian GNU/Linux 12 (bookworm)");
        assert_eq!(v, "12");
        assert_eq!(
            parse_mem_total("MemTotal:       1000 kB\nMemFree: 1 kB\n"),
            1_024_000
        );
        assert_eq!(parse_mem_total(""), 0);
    }
}
