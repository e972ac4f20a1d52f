//! Usage figures read from a container's cgroup, v1 or v2, in a shape close
//! to the Engine API's `/containers/{id}/stats` objects (`cpu_stats`,
//! `memory_stats`, `pids_stats`, `blkio_stats`), so the API layer only has
//! to nest them and add host-wide figures ([`system_cpu_usage`], the online
//! CPU count, the host's memory for an unlimited container).
//!
//! All times are nanoseconds. A missing file reads as zero: a host may lack
//! a controller, and `docker stats` shows zeros for it as dockerd does.
//!
//! This reads the cgroupfs files directly rather than through cgroups-rs:
//! Docker's `memory_stats.stats` is the whole `memory.stat` key/value map,
//! which the crate folds into a fixed struct, and the crate has no v2
//! readers for CPU time or per-device I/O.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

/// `cpuacct.stat` counts in USER_HZ, which Linux fixes at 100 for userspace.
const USER_HZ: u64 = 100;
const NANOS_PER_SEC: u64 = 1_000_000_000;

/// A v1 limit at or above this is the kernel's "unlimited" (it reports
/// PAGE_COUNTER_MAX pages rounded, 9223372036854771712 on x86-64).
const V1_UNLIMITED: u64 = 1 << 62;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CgroupStats {
    pub cpu: CpuStats,
    pub memory: MemoryStats,
    pub pids: PidsStats,
    pub blkio: BlkioStats,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CpuStats {
    /// CPU time used by the cgroup's tasks.
    pub total_usage: u64,
    /// Per CPU (cgroup v1 only; v2 has no per-CPU accounting).
    pub percpu_usage: Vec<u64>,
    pub usage_in_kernelmode: u64,
    pub usage_in_usermode: u64,
    pub throttling_data: ThrottlingData,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ThrottlingData {
    pub periods: u64,
    pub throttled_periods: u64,
    pub throttled_time: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MemoryStats {
    pub usage: u64,
    /// Peak usage (v1 `max_usage_in_bytes`, v2 `memory.peak` where present).
    pub max_usage: u64,
    /// Times the limit was hit (v1 only).
    pub failcnt: u64,
    /// `None` when unlimited: the API reports the host's memory then.
    pub limit: Option<u64>,
    /// `memory.stat` as is: v1 `cache`, `rss`, `total_inactive_file`...; v2
    /// `anon`, `file`, `inactive_file`...
    pub stats: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PidsStats {
    pub current: u64,
    /// `None` when unlimited.
    pub limit: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BlkioStats {
    pub io_service_bytes_recursive: Vec<BlkioEntry>,
    pub io_serviced_recursive: Vec<BlkioEntry>,
}

/// One `{major, minor, op, value}` entry: v1 ops are the kernel's (`Read`,
/// `Write`, `Sync`, `Async`, `Discard`, `Total`), v2 ops `read`/`write` as
/// dockerd reports them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BlkioEntry {
    pub major: u64,
    pub minor: u64,
    pub op: String,
    pub value: u64,
}

/// Where a v1 cgroup's controller directories are; `None` for a controller
/// the host does not mount.
#[derive(Debug, Clone, Default)]
pub struct V1Dirs<'a> {
    pub cpu: Option<&'a Path>,
    pub cpuacct: Option<&'a Path>,
    pub memory: Option<&'a Path>,
    pub pids: Option<&'a Path>,
    pub blkio: Option<&'a Path>,
}

fn read(dir: Option<&Path>, file: &str) -> String {
    dir.and_then(|d| std::fs::read_to_string(d.join(file)).ok())
        .unwrap_or_default()
}

fn read_u64(dir: Option<&Path>, file: &str) -> u64 {
    read(dir, file).trim().parse().unwrap_or(0)
}

/// `key value` lines (`memory.stat`, `cpu.stat`, `memory.events`); lines
/// that do not parse are skipped.
pub fn parse_flat_keyed(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let k = it.next()?;
            let v = it.next()?.parse().ok()?;
            Some((k.to_string(), v))
        })
        .collect()
}

/// A limit file: `max` (v2) or a v1 value near 2^63 is unlimited.
pub fn parse_limit(text: &str) -> Option<u64> {
    let t = text.trim();
    if t.is_empty() || t == "max" {
        return None;
    }
    match t.parse::<u64>() {
        Ok(v) if v < V1_UNLIMITED => Some(v),
        // -1 (v1 written value) and the page-rounded maximum alike.
        _ => None,
    }
}

/// `cpuacct.usage_percpu`: space-separated nanoseconds.
pub fn parse_percpu(text: &str) -> Vec<u64> {
    text.split_whitespace()
        .filter_map(|v| v.parse().ok())
        .collect()
}

fn parse_major_minor(s: &str) -> Option<(u64, u64)> {
    let (a, b) = s.split_once(':')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// v1 `blkio.*_recursive`: `8:0 Read 4096` lines and a final `Total N`.
pub fn parse_blkio_v1(text: &str) -> Vec<BlkioEntry> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let [dev, op, value] = f.as_slice() else {
                return None;
            };
            let (major, minor) = parse_major_minor(dev)?;
            Some(BlkioEntry {
                major,
                minor,
                op: op.to_string(),
                value: value.parse().ok()?,
            })
        })
        .collect()
}

/// v2 `io.stat`: `8:0 rbytes=1 wbytes=2 rios=3 wios=4 dbytes=0 dios=0`,
/// turned into (bytes, operations) entries as dockerd does.
pub fn parse_io_stat(text: &str) -> (Vec<BlkioEntry>, Vec<BlkioEntry>) {
    let mut bytes = Vec::new();
    let mut ios = Vec::new();
    for line in text.lines() {
        let mut it = line.split_whitespace();
        let Some((major, minor)) = it.next().and_then(parse_major_minor) else {
            continue;
        };
        let kv: BTreeMap<&str, u64> = it
            .filter_map(|f| {
                let (k, v) = f.split_once('=')?;
                Some((k, v.parse().ok()?))
            })
            .collect();
        let entry = |op: &str, key: &str| BlkioEntry {
            major,
            minor,
            op: op.to_string(),
            value: kv.get(key).copied().unwrap_or(0),
        };
        bytes.push(entry("read", "rbytes"));
        bytes.push(entry("write", "wbytes"));
        ios.push(entry("read", "rios"));
        ios.push(entry("write", "wios"));
    }
    (bytes, ios)
}

/// Reads a v1 cgroup's figures from its controller directories.
pub fn read_v1(dirs: &V1Dirs<'_>) -> CgroupStats {
    let acct = parse_flat_keyed(&read(dirs.cpuacct, "cpuacct.stat"));
    let ticks = |k: &str| {
        acct.get(k)
            .copied()
            .unwrap_or(0)
            .saturating_mul(NANOS_PER_SEC / USER_HZ)
    };
    let cpu_stat = parse_flat_keyed(&read(dirs.cpu, "cpu.stat"));
    let get = |m: &BTreeMap<String, u64>, k: &str| m.get(k).copied().unwrap_or(0);
    let cpu = CpuStats {
        total_usage: read_u64(dirs.cpuacct, "cpuacct.usage"),
        percpu_usage: parse_percpu(&read(dirs.cpuacct, "cpuacct.usage_percpu")),
        usage_in_kernelmode: ticks("system"),
        usage_in_usermode: ticks("user"),
        throttling_data: ThrottlingData {
            periods: get(&cpu_stat, "nr_periods"),
            throttled_periods: get(&cpu_stat, "nr_throttled"),
            throttled_time: get(&cpu_stat, "throttled_time"),
        },
    };
    let memory = MemoryStats {
        usage: read_u64(dirs.memory, "memory.usage_in_bytes"),
        max_usage: read_u64(dirs.memory, "memory.max_usage_in_bytes"),
        failcnt: read_u64(dirs.memory, "memory.failcnt"),
        limit: parse_limit(&read(dirs.memory, "memory.limit_in_bytes")),
        stats: parse_flat_keyed(&read(dirs.memory, "memory.stat")),
    };
    let pids = PidsStats {
        current: read_u64(dirs.pids, "pids.current"),
        limit: parse_limit(&read(dirs.pids, "pids.max")),
    };
    // The throttle files count I/O under every scheduler; CFQ's own files
    // are the fallback on old kernels.
    let blkio_file = |throttle: &str, cfq: &str| {
        let t = parse_blkio_v1(&read(dirs.blkio, throttle));
        if t.is_empty() {
            parse_blkio_v1(&read(dirs.blkio, cfq))
        } else {
            t
        }
    };
    let blkio = BlkioStats {
        io_service_bytes_recursive: blkio_file(
            "blkio.throttle.io_service_bytes_recursive",
            "blkio.io_service_bytes_recursive",
        ),
        io_serviced_recursive: blkio_file(
            "blkio.throttle.io_serviced_recursive",
            "blkio.io_serviced_recursive",
        ),
    };
    CgroupStats {
        cpu,
        memory,
        pids,
        blkio,
    }
}

/// Reads a v2 cgroup's figures from its directory.
pub fn read_v2(dir: &Path) -> CgroupStats {
    let d = Some(dir);
    let cpu_stat = parse_flat_keyed(&read(d, "cpu.stat"));
    let usec = |k: &str| cpu_stat.get(k).copied().unwrap_or(0).saturating_mul(1000);
    let cpu = CpuStats {
        total_usage: usec("usage_usec"),
        percpu_usage: Vec::new(),
        usage_in_kernelmode: usec("system_usec"),
        usage_in_usermode: usec("user_usec"),
        throttling_data: ThrottlingData {
            periods: cpu_stat.get("nr_periods").copied().unwrap_or(0),
            throttled_periods: cpu_stat.get("nr_throttled").copied().unwrap_or(0),
            throttled_time: usec("throttled_usec"),
        },
    };
    let memory = MemoryStats {
        usage: read_u64(d, "memory.current"),
        max_usage: read_u64(d, "memory.peak"),
        failcnt: 0,
        limit: parse_limit(&read(d, "memory.max")),
        stats: parse_flat_keyed(&read(d, "memory.stat")),
    };
    let pids = PidsStats {
        current: read_u64(d, "pids.current"),
        limit: parse_limit(&read(d, "pids.max")),
    };
    let (bytes, ios) = parse_io_stat(&read(d, "io.stat"));
    CgroupStats {
        cpu,
        memory,
        pids,
        blkio: BlkioStats {
            io_service_bytes_recursive: bytes,
            io_serviced_recursive: ios,
        },
    }
}

/// The host's total CPU time in nanoseconds from `/proc/stat` text (the
/// first `cpu` line's user..softirq), as dockerd's `system_cpu_usage`.
pub fn system_cpu_usage(proc_stat: &str) -> Option<u64> {
    let line = proc_stat.lines().find(|l| l.starts_with("cpu "))?;
    let ticks: u64 = line
        .split_whitespace()
        .skip(1)
        .take(7)
        .map(|f| f.parse::<u64>().unwrap_or(0))
        .sum();
    Some(ticks.saturating_mul(NANOS_PER_SEC / USER_HZ))
}

/// [`system_cpu_usage`] of this host.
pub fn read_system_cpu_usage() -> Option<u64> {
    system_cpu_usage(&std::fs::read_to_string("/proc/stat").ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, file: &str, text: &str) {
        std::fs::write(dir.join(file), text).unwrap();
    }

    #[test]
    fn parses_pieces() {
        assert_eq!(parse_limit("max\n"), None);
        assert_eq!(parse_limit("9223372036854771712\n"), None);
        assert_eq!(parse_limit("-1"), None);
        assert_eq!(parse_limit("67108864\n"), Some(67_108_864));
        assert_eq!(parse_percpu("10 20 \n"), vec![10, 20]);
        let m = parse_flat_keyed("cache 4096\nrss 8192\nbad\nodd x\n");
        assert_eq!(m.len(), 2);
        assert_eq!(m["rss"], 8192);
        let e = parse_blkio_v1("8:0 Read 4096\n8:0 Write 512\n8:0 Total 4608\nTotal 4608\n");
        assert_eq!(e.len(), 3);
        assert_eq!(
            e[1],
            BlkioEntry {
                major: 8,
                minor: 0,
                op: "Write".into(),
                value: 512
            }
        );
        assert_eq!(
            system_cpu_usage("cpu  100 0 50 850 0 0 0 7 0 0\ncpu0 1 2 3\n"),
            Some(1000 * 10_000_000)
        );
        assert_eq!(system_cpu_usage("intr 1\n"), None);
    }

    #[test]
    fn reads_a_fake_v2_cgroup() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        write(
            d,
            "cpu.stat",
            "usage_usec 2500\nuser_usec 2000\nsystem_usec 500\nnr_periods 10\nnr_throttled 3\nthrottled_usec 40\n",
        );
        write(d, "memory.current", "1048576\n");
        write(d, "memory.peak", "2097152\n");
        write(d, "memory.max", "67108864\n");
        write(
            d,
            "memory.stat",
            "anon 524288\nfile 262144\ninactive_file 131072\n",
        );
        write(d, "pids.current", "3\n");
        write(d, "pids.max", "max\n");
        write(
            d,
            "io.stat",
            "8:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\n",
        );
        let s = read_v2(d);
        assert_eq!(s.cpu.total_usage, 2_500_000);
        assert_eq!(s.cpu.usage_in_usermode, 2_000_000);
        assert_eq!(s.cpu.usage_in_kernelmode, 500_000);
        assert_eq!(
            s.cpu.throttling_data,
            ThrottlingData {
                periods: 10,
                throttled_periods: 3,
                throttled_time: 40_000
            }
        );
        assert!(s.cpu.percpu_usage.is_empty());
        assert_eq!(s.memory.usage, 1_048_576);
        assert_eq!(s.memory.max_usage, 2_097_152);
        assert_eq!(s.memory.limit, Some(67_108_864));
        assert_eq!(s.memory.stats["inactive_file"], 131_072);
        assert_eq!(s.pids.current, 3);
        assert_eq!(s.pids.limit, None);
        let ops: Vec<(String, u64)> = s
            .blkio
            .io_service_bytes_recursive
            .iter()
            .map(|e| (e.op.clone(), e.value))
            .collect();
        assert_eq!(ops, vec![("read".into(), 4096), ("write".into(), 8192)]);
        assert_eq!(s.blkio.io_serviced_recursive[1].value, 2);

        // An empty directory reads as zeros, not an error.
        let empty = tempfile::tempdir().unwrap();
        assert_eq!(read_v2(empty.path()), CgroupStats::default());
    }

    #[test]
    fn reads_fake_v1_cgroups() {
        let t = tempfile::tempdir().unwrap();
        let mk = |name: &str| {
            let p = t.path().join(name);
            std::fs::create_dir(&p).unwrap();
            p
        };
        let (cpu, acct, mem, pids, blkio) = (
            mk("cpu"),
            mk("cpuacct"),
            mk("memory"),
            mk("pids"),
            mk("blkio"),
        );
        write(&acct, "cpuacct.usage", "123456789\n");
        write(&acct, "cpuacct.usage_percpu", "100000000 23456789 \n");
        write(&acct, "cpuacct.stat", "user 7\nsystem 3\n");
        write(
            &cpu,
            "cpu.stat",
            "nr_periods 5\nnr_throttled 1\nthrottled_time 999\n",
        );
        write(&mem, "memory.usage_in_bytes", "4096\n");
        write(&mem, "memory.max_usage_in_bytes", "8192\n");
        write(&mem, "memory.failcnt", "2\n");
        write(&mem, "memory.limit_in_bytes", "9223372036854771712\n");
        write(
            &mem,
            "memory.stat",
            "cache 1024\nrss 2048\ntotal_inactive_file 512\n",
        );
        write(&pids, "pids.current", "1\n");
        write(&pids, "pids.max", "50\n");
        write(
            &blkio,
            "blkio.throttle.io_service_bytes_recursive",
            "Total 0\n",
        );
        write(
            &blkio,
            "blkio.io_service_bytes_recursive",
            "8:16 Read 10\nTotal 10\n",
        );
        write(
            &blkio,
            "blkio.throttle.io_serviced_recursive",
            "8:16 Read 1\n8:16 Total 1\n",
        );
        let s = read_v1(&V1Dirs {
            cpu: Some(&cpu),
            cpuacct: Some(&acct),
            memory: Some(&mem),
            pids: Some(&pids),
            blkio: Some(&blkio),
        });
        assert_eq!(s.cpu.total_usage, 123_456_789);
        assert_eq!(s.cpu.percpu_usage, vec![100_000_000, 23_456_789]);
        assert_eq!(s.cpu.usage_in_usermode, 70_000_000);
        assert_eq!(s.cpu.usage_in_kernelmode, 30_000_000);
        assert_eq!(s.cpu.throttling_data.throttled_time, 999);
        assert_eq!(s.memory.limit, None);
        assert_eq!(s.memory.failcnt, 2);
        assert_eq!(s.memory.stats["cache"], 1024);
        assert_eq!(s.pids.limit, Some(50));
        // Empty throttle data falls back to CFQ's files.
        assert_eq!(s.blkio.io_service_bytes_recursive[0].value, 10);
        assert_eq!(s.blkio.io_serviced_recursive.len(), 2);
        assert_eq!(read_v1(&V1Dirs::default()), CgroupStats::default());
    }
}
