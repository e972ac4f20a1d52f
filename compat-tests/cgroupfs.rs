//! `/sys/fs/cgroup` inside containers, through the stock docker CLI: on a
//! cgroup v1 host (this one) a read-only tmpfs holding the container's own
//! directory of each hierarchy, read-write for privileged containers; and
//! `--cgroupns host`.

mod common;

use common::{registry, TestDaemon};

fn busybox() -> String {
    format!("{}/busybox", registry())
}

fn daemon() -> TestDaemon {
    let d = TestDaemon::start();
    d.pull(&busybox());
    d
}

/// The names of the host's v1 hierarchies at `/sys/fs/cgroup`.
fn host_hierarchies() -> Vec<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let mut names: Vec<String> = info
        .lines()
        .filter(|l| l.contains(" - cgroup "))
        .filter_map(|l| l.split(' ').nth(4))
        .filter_map(|p| p.strip_prefix("/sys/fs/cgroup/"))
        .map(String::from)
        .collect();
    names.sort();
    names
}

/// `memory.limit_in_bytes` as a container run with `--memory 64m` and
/// `flags` reads it.
fn memory_limit(d: &TestDaemon, flags: &[&str]) -> String {
    let b = busybox();
    let mut args = vec!["run", "--rm", "--memory", "64m"];
    args.extend(flags);
    args.extend([
        b.as_str(),
        "cat",
        "/sys/fs/cgroup/memory/memory.limit_in_bytes",
    ]);
    d.docker_ok(&args)
}

fn is_v2() -> bool {
    std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

/// A daemon, on a cgroup v1 host only.
fn v1_daemon() -> Option<TestDaemon> {
    if is_v2() {
        eprintln!("cgroup v2 host: the v1 checks do not apply");
        return None;
    }
    Some(daemon())
}

#[test]
fn v1_hierarchies_show_the_containers_own_cgroups_read_only() {
    let Some(d) = v1_daemon() else { return };
    let b = busybox();
    assert_eq!(memory_limit(&d, &[]), "67108864\n");

    // Every hierarchy of the host, and runc's links for combined ones.
    let out = d.docker_ok(&["run", "--rm", &b, "ls", "/sys/fs/cgroup"]);
    let listed: Vec<&str> = out.lines().collect();
    let hierarchies = host_hierarchies();
    assert!(hierarchies.iter().any(|h| h == "memory"), "{hierarchies:?}");
    for h in &hierarchies {
        assert!(listed.contains(&h.as_str()), "{h} missing: {listed:?}");
        for part in h.split(',') {
            assert!(listed.contains(&part), "{part} missing: {listed:?}");
        }
    }
    assert!(!listed.contains(&"unified"), "{listed:?}");

    // The container's own cgroup: its init is in it, as PID 1.
    let out = d.docker_ok(&["run", "--rm", &b, "cat", "/sys/fs/cgroup/pids/cgroup.procs"]);
    assert_eq!(out, "1\n");

    // Read-only: neither the limits nor the tmpfs can be written.
    for cmd in [
        "echo 100 > /sys/fs/cgroup/pids/pids.max",
        "mkdir /sys/fs/cgroup/memory/sub",
        "mkdir /sys/fs/cgroup/new",
    ] {
        let out = d.docker(&["run", "--rm", &b, "sh", "-c", cmd]);
        assert_ne!(out.status.code(), Some(0), "{cmd} succeeded");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("Read-only file system"), "{cmd}: {err}");
    }
}

#[test]
fn privileged_containers_get_them_read_write() {
    let Some(d) = v1_daemon() else { return };
    let b = busybox();
    let out = d.docker_ok(&[
        "run",
        "--rm",
        "--privileged",
        "--pids-limit",
        "50",
        &b,
        "sh",
        "-c",
        "cat /sys/fs/cgroup/pids/pids.max; echo 60 > /sys/fs/cgroup/pids/pids.max; cat /sys/fs/cgroup/pids/pids.max",
    ]);
    assert_eq!(out, "50\n60\n");
}

#[test]
fn cgroupns_host_is_served() {
    let d = daemon();
    let b = busybox();
    let id = d.docker_ok(&[
        "create",
        "--cgroupns",
        "host",
        "--memory",
        "64m",
        &b,
        "true",
    ]);
    let v: serde_json::Value =
        serde_json::from_str(&d.docker_ok(&["inspect", id.trim()])).expect("inspect json");
    assert_eq!(v[0]["HostConfig"]["CgroupnsMode"], "host");
    d.docker_ok(&["rm", id.trim()]);
    if is_v2() {
        // The host's namespace: the container's cgroup is seen by its path.
        let out = d.docker_ok(&[
            "run",
            "--rm",
            "--cgroupns",
            "host",
            &b,
            "cat",
            "/proc/self/cgroup",
        ]);
        assert_ne!(out.trim(), "0::/", "{out}");
        return;
    }
    // On v1 it changes nothing: the same view as without it.
    assert_eq!(memory_limit(&d, &["--cgroupns", "host"]), "67108864\n");
}
