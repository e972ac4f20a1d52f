//! Managers against a fake v2 tree (files checked after each call) and,
//! as root on a v1 host, against the real kernel in a private
//! `mydocker-test-<pid>-<random>` cgroup that a guard always removes.

use std::fs;
use std::io::Write as _;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::bpf::{BpfSys, FakeBpf, LinuxBpf};
use super::resources::default_device_rules;
use super::*;

const MB: i64 = 1024 * 1024;

/// Interface files the kernel would make in a new v2 cgroup, with their
/// initial contents.
const V2_FILES: &[(&str, &str)] = &[
    ("cgroup.controllers", "cpuset cpu io memory pids\n"),
    ("cgroup.subtree_control", ""),
    ("cgroup.procs", ""),
    ("cgroup.freeze", "0\n"),
    ("cgroup.events", "populated 0\nfrozen 0\n"),
    ("cpu.weight", "100\n"),
    ("cpu.max", "max 100000\n"),
    ("cpuset.cpus", ""),
    ("cpuset.mems", ""),
    ("memory.max", "max\n"),
    ("memory.low", "0\n"),
    ("memory.swap.max", "max\n"),
    (
        "memory.events",
        "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\noom_group_kill 0\n",
    ),
    ("pids.max", "max\n"),
    ("io.weight", "default 100\n"),
    ("io.max", ""),
];

/// A fake unified hierarchy: the root and every directory down to `rel`
/// already populated, as the kernel populates a directory on mkdir.
fn fake_v2(rel: &str) -> (tempfile::TempDir, PathBuf) {
    let t = tempfile::tempdir().unwrap();
    let mut dir = t.path().to_path_buf();
    populate(&dir);
    for part in rel.split('/') {
        dir.push(part);
        fs::create_dir(&dir).unwrap();
        populate(&dir);
    }
    (t, dir)
}

/// A v2 manager whose bpf(2) calls go to a recording fake.
fn v2(root: &Path, rel: &str) -> (V2Manager, Arc<FakeBpf>) {
    let bpf = Arc::new(FakeBpf::default());
    let m = V2Manager::new(root, rel).unwrap().with_bpf(bpf.clone());
    (m, bpf)
}

fn populate(dir: &Path) {
    for (f, text) in V2_FILES {
        fs::write(dir.join(f), text).unwrap();
    }
}

fn read(dir: &Path, file: &str) -> String {
    fs::read_to_string(dir.join(file))
        .unwrap_or_else(|e| panic!("{file}: {e}"))
        .trim()
        .to_string()
}

fn lines(dir: &Path, file: &str) -> Vec<String> {
    read(dir, file).lines().map(str::to_string).collect()
}

fn full_resources() -> Resources {
    let dev = |rate| ThrottleDevice {
        path: "/dev/null".into(),
        rate,
    };
    Resources {
        cpu_shares: 1024,
        nano_cpus: 1_500_000_000,
        cpuset_cpus: "0-1".into(),
        cpuset_mems: "0".into(),
        memory: 64 * MB,
        memory_swap: 128 * MB,
        memory_reservation: 32 * MB,
        memory_swappiness: Some(10),
        oom_kill_disable: Some(true),
        kernel_memory_tcp: 8 * MB,
        pids_limit: Some(50),
        blkio_weight: 500,
        blkio_weight_device: vec![WeightDevice {
            path: "/dev/null".into(),
            weight: 300,
        }],
        blkio_device_read_bps: vec![dev(1_048_576)],
        blkio_device_write_iops: vec![dev(100)],
        device_cgroup_rules: vec!["c 10:200 rwm".into()],
        ..Default::default()
    }
}

#[test]
fn relative_paths_are_checked() {
    for bad in ["", "/", "../x", "a/../b", "./a", "a\0b"] {
        assert!(
            matches!(clean_relative(bad), Err(CgroupError::InvalidPath(_))),
            "{bad:?}"
        );
    }
    assert_eq!(
        clean_relative("/mydocker/abc").unwrap(),
        PathBuf::from("mydocker/abc")
    );
    assert!(V2Manager::new("/sys/fs/cgroup", "../../etc").is_err());
}

#[test]
fn picks_the_version_by_filesystem() {
    // A tmpfs is no cgroup2 mount: v1, as on a hybrid host.
    let t = tempfile::tempdir().unwrap();
    let m = manager_for(t.path(), "x").unwrap();
    assert_eq!(m.version(), CgroupVersion::V1);
    assert_eq!(m.path(), Path::new("x"));
    let m = manager_with_version(CgroupVersion::V2, t.path(), "x/y").unwrap();
    assert_eq!(m.version(), CgroupVersion::V2);
    assert!(!m.exists());
}

#[test]
fn v2_create_writes_every_field() {
    let (t, dir) = fake_v2("mydocker/c1");
    let (m, bpf) = v2(t.path(), "mydocker/c1");
    let notes = m.create(&full_resources()).unwrap();
    // The device rules (dockerd's, then DeviceCgroupRules) as one eBPF
    // program on the container's cgroup.
    let rules = device_rules(&full_resources()).unwrap();
    assert_eq!(bpf.attached_to(&dir), [device_filter::program(&rules)]);

    assert_eq!(read(&dir, "cpu.weight"), "39");
    assert_eq!(read(&dir, "cpu.max"), "150000 100000");
    assert_eq!(read(&dir, "cpuset.cpus"), "0-1");
    assert_eq!(read(&dir, "cpuset.mems"), "0");
    assert_eq!(read(&dir, "memory.max"), (64 * MB).to_string());
    // v2 counts swap alone: 128 MB total minus 64 MB memory.
    assert_eq!(read(&dir, "memory.swap.max"), (64 * MB).to_string());
    assert_eq!(read(&dir, "memory.low"), (32 * MB).to_string());
    assert_eq!(read(&dir, "pids.max"), "50");
    assert_eq!(
        lines(&dir, "io.weight"),
        vec!["default 100", "4950", "1:3 2930"]
    );
    assert_eq!(lines(&dir, "io.max"), vec!["1:3 rbps=1048576 wiops=100"]);

    // The controllers were delegated at each level above the container.
    for parent in [t.path().to_path_buf(), t.path().join("mydocker")] {
        let enabled = read(&parent, "cgroup.subtree_control");
        for c in ["+cpuset", "+cpu", "+io", "+memory", "+pids"] {
            assert!(enabled.contains(c), "{c} in {}", parent.display());
        }
    }
    assert!(read(&dir, "cgroup.subtree_control").is_empty());

    // What v2 cannot do is reported, not dropped silently.
    let joined = notes.join("\n");
    for what in ["MemorySwappiness", "OomKillDisable", "KernelMemoryTCP"] {
        assert!(joined.contains(what), "{what} missing from {notes:?}");
    }
    assert_eq!(notes.len(), 3, "{notes:?}");

    // Created again (a cgroup reused): the program is replaced, and a
    // privileged container gets none.
    m.create(&Resources::default()).unwrap();
    assert_eq!(
        bpf.attached_to(&dir),
        [device_filter::program(&default_device_rules())]
    );
    m.create(&Resources {
        allow_all_devices: true,
        ..Default::default()
    })
    .unwrap();
    assert!(bpf.attached_to(&dir).is_empty());
    // An update leaves the device rules alone.
    m.update(&Resources {
        memory: 32 * MB,
        ..Default::default()
    })
    .unwrap();
    assert_eq!(
        bpf.calls()
            .iter()
            .filter(|c| c.starts_with("query"))
            .count(),
        3
    );
}

#[test]
fn v2_update_changes_live_values() {
    let (t, dir) = fake_v2("c2");
    let (m, _) = v2(t.path(), "c2");
    let current = Resources {
        memory: 64 * MB,
        memory_swap: 128 * MB,
        nano_cpus: 500_000_000,
        pids_limit: Some(20),
        ..Default::default()
    };
    m.create(&current).unwrap();
    assert_eq!(read(&dir, "cpu.max"), "50000 100000");

    let merged = current
        .merged_with(&Resources {
            memory: 96 * MB,
            memory_swap: -1,
            pids_limit: Some(0),
            nano_cpus: 2_000_000_000,
            cpu_shares: 2,
            ..Default::default()
        })
        .unwrap();
    let host = HostCaps::supporting_all(CgroupVersion::V2, 2);
    assert_eq!(merged.validate_update(&host), Ok(vec![]));
    let notes = m.update(&merged).unwrap();
    assert!(notes.is_empty(), "{notes:?}");
    assert_eq!(read(&dir, "memory.max"), (96 * MB).to_string());
    assert_eq!(read(&dir, "memory.swap.max"), "max");
    assert_eq!(read(&dir, "pids.max"), "max");
    assert_eq!(read(&dir, "cpu.max"), "200000 100000");
    assert_eq!(read(&dir, "cpu.weight"), "1");

    // A quota of -1 lifts the limit and keeps the period.
    m.update(&Resources {
        cpu_quota: -1,
        ..Default::default()
    })
    .unwrap();
    assert_eq!(read(&dir, "cpu.max"), "max 100000");

    let (gone, _) = v2(t.path(), "nope");
    assert!(matches!(
        gone.update(&merged),
        Err(CgroupError::NotFound(_))
    ));
}

#[test]
fn v2_freeze_and_thaw() {
    let (t, dir) = fake_v2("c3");
    let (m, _) = v2(t.path(), "c3");
    m.create(&Resources::default()).unwrap();
    // Play the kernel: it reports the state in cgroup.events.
    fs::write(dir.join("cgroup.events"), "populated 1\nfrozen 1\n").unwrap();
    m.freeze().unwrap();
    assert_eq!(read(&dir, "cgroup.freeze"), "1");
    fs::write(dir.join("cgroup.events"), "populated 1\nfrozen 0\n").unwrap();
    m.thaw().unwrap();
    assert_eq!(read(&dir, "cgroup.freeze"), "0");

    // Without cgroup.freeze (no such cgroup), nothing is written anywhere.
    let (missing, _) = v2(t.path(), "absent");
    assert!(matches!(
        missing.freeze(),
        Err(CgroupError::MissingFile { .. })
    ));
    assert!(!t.path().join("absent").exists());
}

#[test]
fn v2_stats_pids_oom_and_remove() {
    let (t, dir) = fake_v2("c4");
    let (m, _) = v2(t.path(), "c4");
    m.create(&Resources {
        memory: 64 * MB,
        ..Default::default()
    })
    .unwrap();
    fs::write(dir.join("cgroup.procs"), "456\n123\n").unwrap();
    fs::write(dir.join("memory.current"), "4096\n").unwrap();
    fs::write(dir.join("pids.current"), "2\n").unwrap();
    fs::write(
        dir.join("cpu.stat"),
        "usage_usec 10\nuser_usec 6\nsystem_usec 4\n",
    )
    .unwrap();
    assert_eq!(m.pids().unwrap(), vec![123, 456]);
    let s = m.stats().unwrap();
    assert_eq!(s.memory.usage, 4096);
    assert_eq!(s.memory.limit, Some(64 * 1024 * 1024));
    assert_eq!(s.pids.current, 2);
    assert_eq!(s.pids.limit, None);
    assert_eq!(s.cpu.total_usage, 10_000);

    assert!(!m.oom_killed());
    fs::write(dir.join("memory.events"), "oom 1\noom_kill 1\n").unwrap();
    assert!(m.oom_killed());

    // Busy: nothing is killed, the error names the processes.
    match m.remove() {
        Err(CgroupError::Busy { pids, .. }) => assert_eq!(pids, vec![123, 456]),
        other => panic!("expected Busy, got {other:?}"),
    }
    assert!(dir.exists());
    // The kernel drops the interface files with the directory; a fake
    // tree's have to go first.
    for e in fs::read_dir(&dir).unwrap() {
        fs::remove_file(e.unwrap().path()).unwrap();
    }
    m.remove().unwrap();
    assert!(!dir.exists());
    m.remove().unwrap();
    assert!(matches!(m.stats(), Err(CgroupError::NotFound(_))));
    assert!(matches!(m.pids(), Err(CgroupError::NotFound(_))));
}

#[test]
fn v2_add_task_writes_cgroup_procs() {
    let (t, dir) = fake_v2("c5");
    let (m, _) = v2(t.path(), "c5");
    m.create(&Resources::default()).unwrap();
    m.add_task(4242).unwrap();
    assert_eq!(read(&dir, "cgroup.procs"), "4242");
    assert!(matches!(m.add_task(0), Err(CgroupError::Invalid(_))));
    assert!(matches!(m.add_task(-3), Err(CgroupError::Invalid(_))));
}

#[test]
fn v2_without_swap_accounting_says_so() {
    let (t, dir) = fake_v2("c6");
    fs::remove_file(dir.join("memory.swap.max")).unwrap();
    let (m, _) = v2(t.path(), "c6");
    let notes = m
        .create(&Resources {
            memory: 64 * MB,
            memory_swap: 128 * MB,
            allow_all_devices: true,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(notes[0].starts_with("MemorySwap"), "{notes:?}");
    assert!(!dir.join("memory.swap.max").exists());
}

#[test]
fn v2_failed_create_leaves_nothing() {
    let (t, _) = fake_v2("existing");
    // New directories get no interface files in a fake tree, so the first
    // write fails like a kernel without the memory controller would.
    let (m, _) = v2(t.path(), "mydocker/fresh");
    let e = m
        .create(&Resources {
            memory: 64 * MB,
            ..Default::default()
        })
        .unwrap_err();
    assert!(
        matches!(&e, CgroupError::MissingFile { path } if path.ends_with("memory.max")),
        "{e}"
    );
    assert!(!t.path().join("mydocker").exists());

    // Bad device rules are refused on v2 as well, and cleaned up after.
    let (m, _) = v2(t.path(), "mydocker/bad");
    let e = m
        .create(&Resources {
            device_cgroup_rules: vec!["c 1:3 rwx".into()],
            ..Default::default()
        })
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid device cgroup rule format: 'c 1:3 rwx'"
    );
    assert!(!t.path().join("mydocker").exists());

    // An existing directory is reused and kept on failure.
    let (m, _) = v2(t.path(), "existing");
    let e = m.create(&Resources {
        cpu_shares: -1,
        ..Default::default()
    });
    assert_eq!(
        e.unwrap_err().to_string(),
        "invalid CPU shares (-1): value must be a positive integer"
    );
    assert!(t.path().join("existing").exists());
}

#[test]
fn device_rules_order() {
    let res = Resources {
        device_cgroup_rules: vec!["b 8:0 r".into()],
        ..Default::default()
    };
    let rules: Vec<String> = device_rules(&res)
        .unwrap()
        .iter()
        .map(|r| format!("{} {}", if r.allow { "allow" } else { "deny" }, r.to_line()))
        .collect();
    assert_eq!(rules[0], "deny a");
    let fuse = rules.iter().position(|r| r == "deny c 10:229 rwm").unwrap();
    let user = rules.iter().position(|r| r == "allow b 8:0 r").unwrap();
    let mknod = rules.iter().position(|r| r == "allow c *:* m").unwrap();
    assert!(fuse < user && user < mknod, "{rules:?}");
    let privileged = Resources {
        allow_all_devices: true,
        ..Default::default()
    };
    let all = device_rules(&privileged).unwrap();
    assert_eq!(all.len(), 1);
    assert!(all[0].allow && all[0].to_line() == "a");
}

// ---------------------------------------------------------------------------
// cgroup v1, live

/// Serializes the live test with the leftover check.
static LIVE: Mutex<()> = Mutex::new(());

const TEST_PREFIX: &str = "mydocker-test-";

/// Owns a live test cgroup and the test's child process; dropping it (also
/// on a failed assertion) thaws, kills the child and removes the cgroup.
struct LiveCgroup {
    mgr: V1Manager,
    child: Option<Child>,
}

impl LiveCgroup {
    fn spawn(&mut self, cmd: &mut Command) -> u32 {
        let child = cmd.spawn().expect("spawn test child");
        let pid = child.id();
        self.child = Some(child);
        pid
    }

    fn kill_child(&mut self) -> Option<std::process::ExitStatus> {
        let mut c = self.child.take()?;
        let _ = c.kill();
        c.wait().ok()
    }
}

impl Drop for LiveCgroup {
    fn drop(&mut self) {
        // A frozen task cannot die: thaw first (errors mean nothing to thaw).
        if self.mgr.dir("freezer").is_some_and(|(d, _)| d.exists()) {
            let _ = self.mgr.thaw();
        }
        self.kill_child();
        for _ in 0..100 {
            if self.mgr.remove().is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        for (d, _) in self.mgr.all_dirs() {
            let _ = fs::remove_dir(&d);
        }
    }
}

/// Why the live test cannot run here, if it cannot.
fn live_v1_unavailable() -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("not root".into());
    }
    let root = Path::new(DEFAULT_ROOT);
    if crate::system::detect_cgroup_version(root) != CgroupVersion::V1 {
        return Some("the host runs cgroup v2".into());
    }
    for c in [
        "memory", "cpu", "cpuacct", "pids", "cpuset", "freezer", "devices",
    ] {
        if v1_mount(root, c).is_none() {
            return Some(format!("no {c} controller mounted"));
        }
    }
    None
}

/// A whole-disk block device for the throttle rules, if the host has one.
fn some_block_device() -> Option<String> {
    let mut names: Vec<String> = fs::read_dir("/sys/block")
        .ok()?
        .flatten()
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .filter(|n| !n.starts_with("loop") && !n.starts_with("ram") && !n.starts_with("zram"))
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|n| format!("/dev/{n}"))
        .find(|p| Path::new(p).exists())
}

fn cgroup_file(mgr: &V1Manager, controller: &str, file: &str) -> String {
    let (dir, _) = mgr.dir(controller).unwrap();
    read(&dir, file)
}

/// Test cgroups named for this process, or for a process that is gone.
fn leftover_test_cgroups() -> Vec<PathBuf> {
    let mine = std::process::id();
    let mut found = Vec::new();
    let mut dirs = vec![PathBuf::from(DEFAULT_ROOT)];
    if let Ok(rd) = fs::read_dir(DEFAULT_ROOT) {
        dirs.extend(rd.flatten().map(|e| e.path()).filter(|p| p.is_dir()));
    }
    for d in dirs {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            let Some(rest) = name.strip_prefix(TEST_PREFIX) else {
                continue;
            };
            let pid: u32 = rest
                .split('-')
                .next()
                .and_then(|p| p.parse().ok())
                .unwrap_or(0);
            if pid == mine || !Path::new(&format!("/proc/{pid}")).exists() {
                found.push(e.path());
            }
        }
    }
    found
}

#[test]
fn v1_live_cgroup() {
    let _serial = LIVE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(why) = live_v1_unavailable() {
        eprintln!("skipping the live cgroup v1 test: {why}");
        return;
    }
    let name = format!(
        "{TEST_PREFIX}{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    );
    {
        let mut cg = LiveCgroup {
            mgr: V1Manager::new(DEFAULT_ROOT, &name).unwrap(),
            child: None,
        };
        run_live_v1(&mut cg);
    }
    let left: Vec<_> = leftover_test_cgroups()
        .into_iter()
        .filter(|p| p.ends_with(&name))
        .collect();
    assert!(left.is_empty(), "test cgroups left behind: {left:?}");
}

fn run_live_v1(cg: &mut LiveCgroup) {
    let caps = HostCaps::probe();
    assert_eq!(caps.cgroup_version, CgroupVersion::V1);
    let disk = some_block_device();
    let mut res = Resources {
        memory: 64 * MB,
        memory_swap: 128 * MB,
        memory_reservation: 32 * MB,
        memory_swappiness: Some(10),
        cpu_quota: 50_000,
        cpu_period: 100_000,
        cpu_shares: 512,
        pids_limit: Some(50),
        cpuset_cpus: "0".into(),
        cpuset_mems: "0".into(),
        blkio_weight: if caps.blkio_weight { 300 } else { 0 },
        blkio_weight_device: disk
            .iter()
            .filter(|_| caps.blkio_weight_device)
            .map(|d| WeightDevice {
                path: d.clone(),
                weight: 200,
            })
            .collect(),
        blkio_device_read_bps: disk
            .iter()
            .map(|d| ThrottleDevice {
                path: d.clone(),
                rate: 1_048_576,
            })
            .collect(),
        ..Default::default()
    };
    if caps.cpu_realtime {
        res.cpu_realtime_period = 1_000_000;
        res.cpu_realtime_runtime = 1000;
    }
    if caps.kernel_memory_tcp {
        res.kernel_memory_tcp = 32 * MB;
    }
    let warnings = res.validate_and_adjust(&caps, false).unwrap();
    eprintln!("validation warnings: {warnings:?}");
    res.adapt_for_create();
    let notes = cg.mgr.create(&res).unwrap();
    eprintln!("not enforced here: {notes:?}");

    let mgr = cg.mgr.clone();
    assert_eq!(
        cgroup_file(&mgr, "memory", "memory.limit_in_bytes"),
        (64 * MB).to_string()
    );
    if caps.swap_limit {
        assert_eq!(
            cgroup_file(&mgr, "memory", "memory.memsw.limit_in_bytes"),
            (128 * MB).to_string()
        );
    }
    assert_eq!(
        cgroup_file(&mgr, "memory", "memory.soft_limit_in_bytes"),
        (32 * MB).to_string()
    );
    assert_eq!(cgroup_file(&mgr, "memory", "memory.swappiness"), "10");
    if caps.kernel_memory_tcp {
        assert_eq!(
            cgroup_file(&mgr, "memory", "memory.kmem.tcp.limit_in_bytes"),
            (32 * MB).to_string()
        );
    }
    assert_eq!(cgroup_file(&mgr, "cpu", "cpu.cfs_quota_us"), "50000");
    assert_eq!(cgroup_file(&mgr, "cpu", "cpu.cfs_period_us"), "100000");
    assert_eq!(cgroup_file(&mgr, "cpu", "cpu.shares"), "512");
    if caps.cpu_realtime {
        assert_eq!(cgroup_file(&mgr, "cpu", "cpu.rt_runtime_us"), "1000");
    }
    assert_eq!(cgroup_file(&mgr, "pids", "pids.max"), "50");
    assert_eq!(cgroup_file(&mgr, "cpuset", "cpuset.cpus"), "0");
    assert_eq!(cgroup_file(&mgr, "cpuset", "cpuset.mems"), "0");
    if caps.blkio_weight {
        let (dir, _) = mgr.dir("blkio").unwrap();
        let file = if dir.join("blkio.weight").exists() {
            "blkio.weight"
        } else {
            "blkio.bfq.weight"
        };
        // BFQ shows "default 300"; CFQ a bare "300".
        assert!(read(&dir, file).ends_with("300"), "{}", read(&dir, file));
    }
    if let Some(disk) = &disk {
        let (maj, min) = resources::block_device_numbers(disk).unwrap();
        let rules = cgroup_file(&mgr, "blkio", "blkio.throttle.read_bps_device");
        assert!(rules.contains(&format!("{maj}:{min} 1048576")), "{rules}");
    }
    let devices = cgroup_file(&mgr, "devices", "devices.list");
    for want in [
        "c 1:3 rwm",
        "c 1:9 rwm",
        "c 136:* rwm",
        "c *:* m",
        "b *:* m",
    ] {
        assert!(devices.lines().any(|l| l == want), "{want} in {devices}");
    }
    assert!(!devices.contains("a *:* rwm"), "{devices}");

    // The test's own child goes in.
    let pid = cg.spawn(Command::new("sleep").arg("30").stdin(Stdio::null()));
    let pid_i32 = i32::try_from(pid).unwrap();
    mgr.add_task(pid_i32).unwrap();
    assert_eq!(mgr.pids().unwrap(), vec![pid_i32]);
    let own = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let rel = mgr.path().display().to_string();
    assert!(
        own.lines()
            .any(|l| l.contains(":memory:") && l.ends_with(&rel)),
        "{own}"
    );

    let s = mgr.stats().unwrap();
    assert_eq!(s.memory.limit, Some(64 * 1024 * 1024));
    assert_eq!(s.pids.current, 1);
    assert_eq!(s.pids.limit, Some(50));
    assert!(!s.cpu.percpu_usage.is_empty());

    mgr.freeze().unwrap();
    assert_eq!(cgroup_file(&mgr, "freezer", "freezer.state"), "FROZEN");
    mgr.thaw().unwrap();
    assert_eq!(cgroup_file(&mgr, "freezer", "freezer.state"), "THAWED");

    // Live update: raise memory and swap together, change the pids limit.
    let merged = res
        .merged_with(&Resources {
            memory: 96 * MB,
            memory_swap: 192 * MB,
            pids_limit: Some(60),
            ..Default::default()
        })
        .unwrap();
    merged.validate_update(&caps).unwrap();
    mgr.update(&merged).unwrap();
    assert_eq!(
        cgroup_file(&mgr, "memory", "memory.limit_in_bytes"),
        (96 * MB).to_string()
    );
    if caps.swap_limit {
        assert_eq!(
            cgroup_file(&mgr, "memory", "memory.memsw.limit_in_bytes"),
            (192 * MB).to_string()
        );
    }
    assert_eq!(cgroup_file(&mgr, "pids", "pids.max"), "60");

    // Kernel memory past 5.16: validation drops it with dockerd's warning;
    // forced through anyway, the manager reports it instead of failing.
    if !caps.kernel_memory {
        let kmem = Resources {
            kernel_memory: 64 * MB,
            ..Default::default()
        };
        assert_eq!(
            kmem.validate(&caps).unwrap(),
            vec!["Your kernel does not support kernel memory limit capabilities or the cgroup is not mounted. Limitation discarded."]
        );
        let notes = mgr.update(&kmem).unwrap();
        assert!(
            notes.iter().any(|n| n.starts_with("KernelMemory")),
            "{notes:?}"
        );
    }

    // Removal refuses while the child lives, and kills nothing.
    match mgr.remove() {
        Err(CgroupError::Busy { pids, .. }) => assert_eq!(pids, vec![pid_i32]),
        other => panic!("expected Busy, got {other:?}"),
    }
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    cg.kill_child();

    // The OOM killer: 16 MB and no swap, then a process that wants 64 MB.
    // It waits on stdin until it is in the cgroup, so the allocation is
    // charged here.
    let small = merged
        .merged_with(&Resources {
            memory: 16 * MB,
            memory_swap: 16 * MB,
            ..Default::default()
        })
        .unwrap();
    mgr.update(&small).unwrap();
    assert!(!mgr.oom_killed());
    cg.spawn(
        Command::new("sh")
            .args([
                "-c",
                "read go; exec dd if=/dev/zero of=/dev/null bs=64M count=1",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    let hog = cg.child.as_mut().unwrap();
    mgr.add_task(i32::try_from(hog.id()).unwrap()).unwrap();
    hog.stdin.take().unwrap().write_all(b"go\n").unwrap();
    let status = hog.wait().unwrap();
    cg.child = None;
    if caps.swap_limit {
        assert_eq!(status.signal(), Some(9), "{status:?}");
        assert!(mgr.oom_killed());
    }

    mgr.remove().unwrap();
    for (d, _) in mgr.all_dirs() {
        assert!(!d.exists(), "{} still exists", d.display());
    }
}

#[test]
fn v1_live_failed_create_leaves_nothing() {
    let _serial = LIVE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(why) = live_v1_unavailable() {
        eprintln!("skipping the live cgroup v1 test: {why}");
        return;
    }
    let name = format!(
        "{TEST_PREFIX}{}-{:08x}/nested",
        std::process::id(),
        rand::random::<u32>()
    );
    let cg = LiveCgroup {
        mgr: V1Manager::new(DEFAULT_ROOT, &name).unwrap(),
        child: None,
    };
    // The limits go in, then the device rule is refused: every directory
    // made on the way, in every controller, is removed again.
    let e = cg
        .mgr
        .create(&Resources {
            memory: 64 * MB,
            pids_limit: Some(10),
            devices: vec![DeviceMapping {
                path_on_host: "/dev/no-such-device".into(),
                path_in_container: "/dev/x".into(),
                cgroup_permissions: "rwm".into(),
            }],
            ..Default::default()
        })
        .unwrap_err();
    assert!(e.to_string().contains("/dev/no-such-device"), "{e}");
    assert!(!cg.mgr.exists());
    for (d, _) in cg.mgr.all_dirs() {
        assert!(!d.parent().unwrap().exists(), "{}", d.display());
    }
}

// ---------------------------------------------------------------------------
// cgroup v2 device filter, live

/// The host's cgroup2 mount (`/sys/fs/cgroup` on a v2 host, often
/// `/sys/fs/cgroup/unified` on a hybrid one).
fn cgroup2_mount() -> Option<PathBuf> {
    let mounts = fs::read_to_string("/proc/self/mounts").ok()?;
    mounts
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| f.len() > 2 && f[2] == "cgroup2")
        .map(|f| PathBuf::from(f[1]))
}

/// A live v2 test cgroup and the processes in it; dropping it (also on a
/// failed assertion) kills them and removes the cgroup, which releases
/// the attached programs.
struct LiveV2 {
    mgr: V2Manager,
    dir: PathBuf,
    children: Vec<Child>,
}

impl Drop for LiveV2 {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for _ in 0..100 {
            if fs::remove_dir(&self.dir).is_ok() || !self.dir.exists() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl LiveV2 {
    /// Runs `script` with sh in the cgroup: the child is moved in while
    /// it waits on its stdin, then let go. Its stdout and stderr.
    fn run(&mut self, script: &str) -> (String, String) {
        let mut child = Command::new("/bin/sh")
            .args(["-c", &format!("read go; {script}")])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn sh");
        let pid = child.id() as i32;
        let mut stdin = child.stdin.take().expect("stdin");
        self.children.push(child);
        self.mgr
            .add_task(pid)
            .expect("move the child into the cgroup");
        assert!(self.mgr.pids().unwrap().contains(&pid));
        writeln!(stdin, "go").expect("let the child go");
        drop(stdin);
        let child = self.children.pop().expect("child");
        let out = child.wait_with_output().expect("wait");
        (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn attached(&self) -> usize {
        let f = fs::File::open(&self.dir).unwrap();
        LinuxBpf
            .attached_device_programs(std::os::fd::AsFd::as_fd(&f))
            .unwrap()
            .len()
    }
}

#[test]
fn v2_live_device_filter() {
    let _serial = LIVE.lock().unwrap_or_else(|e| e.into_inner());
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipping the live cgroup v2 device filter test: not root");
        return;
    }
    let Some(root) = cgroup2_mount() else {
        eprintln!("skipping the live cgroup v2 device filter test: no cgroup2 mount");
        return;
    };
    let name = format!(
        "{TEST_PREFIX}{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    );
    let mgr = V2Manager::new(&root, &name).unwrap();
    fs::create_dir(root.join(&name)).expect("make the test cgroup");
    let mut cg = LiveV2 {
        mgr,
        dir: root.join(&name),
        children: Vec::new(),
    };
    let open_both = ": < /dev/null && echo null-ok; : < /dev/zero && echo zero-ok";

    // Deny everything but /dev/null read-write.
    let rules = [
        DeviceRule {
            allow: false,
            kind: 'a',
            major: None,
            minor: None,
            read: true,
            write: true,
            mknod: true,
        },
        DeviceRule {
            mknod: false,
            ..DeviceRule::allow_char(1, Some(3))
        },
    ];
    device_filter::set(&LinuxBpf, &cg.dir, Some(&rules)).expect("attach");
    assert_eq!(cg.attached(), 1);
    let (out, err) = cg.run(open_both);
    assert_eq!(out, "null-ok\n", "{err}");
    assert!(
        err.contains("/dev/zero") && err.contains("Operation not permitted"),
        "{err}"
    );

    // Replaced by dockerd's defaults through the manager: /dev/zero opens,
    // /dev/kmsg (1:11) does not, and one program is attached.
    cg.mgr
        .create(&Resources::default())
        .expect("create over it");
    assert_eq!(cg.attached(), 1);
    let (out, err) = cg.run(&format!("{open_both}; : < /dev/kmsg && echo kmsg-ok"));
    assert_eq!(out, "null-ok\nzero-ok\n", "{err}");
    assert!(err.contains("Operation not permitted"), "{err}");

    // Privileged: no program, everything opens.
    cg.mgr
        .create(&Resources {
            allow_all_devices: true,
            ..Default::default()
        })
        .expect("allow all");
    assert_eq!(cg.attached(), 0);
    let (out, err) = cg.run(&format!("{open_both}; : < /dev/kmsg && echo kmsg-ok"));
    assert_eq!(out, "null-ok\nzero-ok\nkmsg-ok\n", "{err}");
    drop(cg);
    assert!(!root.join(&name).exists(), "the test cgroup is gone");
}

#[test]
fn no_test_cgroups_left_behind() {
    let _serial = LIVE.lock().unwrap_or_else(|e| e.into_inner());
    // Cgroups of a test run that died: empty ones are cleaned here; one
    // that cannot be removed fails the test.
    let mut stuck = Vec::new();
    for p in leftover_test_cgroups() {
        if fs::remove_dir(&p).is_err() {
            stuck.push(p);
        }
    }
    assert!(stuck.is_empty(), "test cgroups left behind: {stuck:?}");
}
