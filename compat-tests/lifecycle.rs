//! Container verbs beyond run/stop/rm, through the stock docker CLI:
//! `--rm`, restart policies (back-off, `docker stop`, daemon restart),
//! restart, pause/unpause, rename, update (live cgroup files), top, stats,
//! json-file rotation from `--log-opt`, and `-it` under `script` (a shell
//! session, exit code, detach keys).

mod common;

use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use common::{registry, TestDaemon};
use serde_json::Value;

fn busybox() -> String {
    format!("{}/busybox", registry())
}

fn daemon() -> TestDaemon {
    let d = TestDaemon::start();
    d.pull(&busybox());
    d
}

fn inspect(d: &TestDaemon, name: &str) -> Value {
    let out = d.docker_ok(&["container", "inspect", name]);
    let v: Value = serde_json::from_str(&out).expect("inspect JSON");
    v[0].clone()
}

fn cleanup(d: &TestDaemon) {
    let all = d.docker_ok(&["ps", "-aq", "--no-trunc"]);
    for id in all.lines().filter(|l| !l.is_empty()) {
        d.docker_ok(&["rm", "-f", id]);
    }
    let gone = common::wait_until(Duration::from_secs(5), || d.live_monitors().is_empty());
    assert!(gone, "monitors left: {:?}", d.live_monitors());
}

/// A v1 cgroup file of a container (this host runs cgroup v1).
fn cgroup_file(controller: &str, id: &str, file: &str) -> String {
    std::fs::read_to_string(format!("/sys/fs/cgroup/{controller}/mydocker/{id}/{file}"))
        .unwrap_or_else(|e| panic!("{controller}/{file} of {id}: {e}"))
        .trim()
        .to_string()
}

#[test]
fn rm_flag_removes_the_container_after_it_exits() {
    let d = daemon();
    let b = busybox();
    let out = d.docker_ok(&["run", "--rm", "--name", "gone", &b, "echo", "hi"]);
    assert_eq!(out, "hi\n");
    assert_eq!(d.docker_ok(&["ps", "-aq"]), "", "attached --rm left it");

    let out = d.docker(&["run", "--rm", &b, "sh", "-c", "exit 4"]);
    assert_eq!(out.status.code(), Some(4));
    // Its anonymous volumes go with it; named ones stay.
    d.docker_ok(&[
        "run",
        "--rm",
        "-v",
        "/anon",
        "-v",
        "keep:/named",
        &b,
        "true",
    ]);
    assert_eq!(d.docker_ok(&["volume", "ls", "-q"]).trim(), "keep");
    d.docker_ok(&["volume", "rm", "keep"]);

    // Detached: the daemon removes it on its own.
    let id = d.docker_ok(&["run", "-d", "--rm", &b, "sleep", "0.2"]);
    let id = id.trim();
    assert_eq!(id.len(), 64);
    let removed = common::wait_until(Duration::from_secs(10), || {
        d.docker_ok(&["ps", "-aq"]).trim().is_empty()
    });
    assert!(removed, "--rm -d container still listed");
    assert!(d.bundle_ids().is_empty(), "bundle left");

    // The CLI refuses the pair itself; other clients get dockerd's 400.
    let body = format!(
        r#"{{"Image":"{b}","Cmd":["true"],"HostConfig":{{"AutoRemove":true,"RestartPolicy":{{"Name":"always"}}}}}}"#
    );
    let r = d.raw("POST", "/containers/create", body.as_bytes());
    assert_eq!(r.status, 400, "{}", String::from_utf8_lossy(&r.body));
    assert!(String::from_utf8_lossy(&r.body)
        .contains("can't create 'AutoRemove' container with restart policy"));
    let e = d.docker_fails(&["run", "--restart", "sometimes", &b, "true"]);
    assert!(e.contains("invalid restart policy"), "{e}");
    cleanup(&d);
}

#[test]
fn restart_policies_back_off_stop_and_survive_daemon_restarts() {
    let mut d = daemon();
    let b = busybox();
    // on-failure:2: two restarts, then it stays exited with its code.
    d.docker_ok(&[
        "run",
        "-d",
        "--name",
        "fail",
        "--restart",
        "on-failure:2",
        &b,
        "sh",
        "-c",
        "exit 3",
    ]);
    let done = common::wait_until(Duration::from_secs(20), || {
        let s = inspect(&d, "fail");
        s["RestartCount"] == 2 && s["State"]["Status"] == "exited"
    });
    let s = inspect(&d, "fail");
    assert!(done, "on-failure:2 did not settle: {s}");
    assert_eq!(s["State"]["ExitCode"], 3);
    assert_eq!(s["HostConfig"]["RestartPolicy"]["Name"], "on-failure");

    // always: restarts after each exit; `docker stop` ends that.
    d.docker_ok(&[
        "run",
        "-d",
        "--name",
        "loop",
        "--restart",
        "always",
        &b,
        "sh",
        "-c",
        "sleep 0.3",
    ]);
    let restarted = common::wait_until(Duration::from_secs(20), || {
        inspect(&d, "loop")["RestartCount"].as_u64().unwrap_or(0) >= 2
    });
    assert!(restarted, "always did not restart: {}", inspect(&d, "loop"));
    d.docker_ok(&["stop", "-t", "1", "loop"]);
    let s = inspect(&d, "loop");
    assert_eq!(s["State"]["Running"], false, "{s}");
    let count = s["RestartCount"].clone();
    std::thread::sleep(Duration::from_millis(800));
    let s = inspect(&d, "loop");
    assert_eq!(
        s["State"]["Status"], "exited",
        "stopped container restarted: {s}"
    );
    assert_eq!(s["RestartCount"], count);

    // unless-stopped, stopped by the user: stays down across a daemon
    // restart, while the stopped `always` one comes back.
    d.docker_ok(&[
        "run",
        "-d",
        "--name",
        "us",
        "--restart",
        "unless-stopped",
        &b,
        "sleep",
        "100",
    ]);
    d.docker_ok(&["stop", "-t", "0", "us"]);
    d.kill9_and_restart();
    let back = common::wait_until(Duration::from_secs(20), || {
        inspect(&d, "loop")["State"]["Running"] == true
    });
    assert!(back, "always container not restarted by the daemon");
    assert_eq!(inspect(&d, "us")["State"]["Status"], "exited");
    assert_eq!(inspect(&d, "fail")["State"]["Status"], "exited");
    cleanup(&d);
}

#[test]
fn pause_unpause_rename_and_restart() {
    let d = daemon();
    let b = busybox();
    let id = d.docker_ok(&["run", "-d", "--name", "p1", &b, "sleep", "100"]);
    let id = id.trim().to_string();

    d.docker_ok(&["pause", "p1"]);
    let s = inspect(&d, "p1");
    assert_eq!(s["State"]["Status"], "paused");
    assert_eq!(s["State"]["Paused"], true);
    assert_eq!(cgroup_file("freezer", &id, "freezer.state"), "FROZEN");
    let ps = d.docker_ok(&["ps", "--format", "{{.Status}}"]);
    assert!(ps.contains("(Paused)"), "{ps}");
    assert!(d
        .docker_ok(&["ps", "-q", "--filter", "status=paused"])
        .contains(&id[..12]));
    let e = d.docker_fails(&["pause", "p1"]);
    assert!(e.contains("already paused"), "{e}");
    d.docker_ok(&["unpause", "p1"]);
    assert_eq!(cgroup_file("freezer", &id, "freezer.state"), "THAWED");
    assert_eq!(inspect(&d, "p1")["State"]["Status"], "running");
    let e = d.docker_fails(&["unpause", "p1"]);
    assert!(e.contains("is not paused"), "{e}");

    d.docker_ok(&["run", "-d", "--name", "other", &b, "true"]);
    d.docker_ok(&["rename", "p1", "p2"]);
    assert_eq!(inspect(&d, &id)["Name"], "/p2");
    let e = d.docker_fails(&["rename", "p2", "other"]);
    assert!(e.contains("is already in use"), "{e}");
    let e = d.docker_fails(&["rename", "p2", "x y"]);
    assert!(e.contains("Invalid container name"), "{e}");

    let before = inspect(&d, "p2")["State"]["Pid"].clone();
    d.docker_ok(&["restart", "-t", "0", "p2"]);
    let s = inspect(&d, "p2");
    assert_eq!(s["State"]["Running"], true);
    assert_ne!(s["State"]["Pid"], before, "restart kept the same process");

    // A paused container can still be stopped.
    d.docker_ok(&["pause", "p2"]);
    d.docker_ok(&["stop", "-t", "1", "p2"]);
    assert_eq!(inspect(&d, "p2")["State"]["Status"], "exited");
    cleanup(&d);
}

#[test]
fn update_changes_the_live_cgroup() {
    let d = daemon();
    let b = busybox();
    let id = d.docker_ok(&["run", "-d", "--memory", "64m", &b, "sleep", "100"]);
    let id = id.trim().to_string();
    assert_eq!(
        cgroup_file("memory", &id, "memory.limit_in_bytes"),
        (64u64 << 20).to_string()
    );
    d.docker_ok(&[
        "update",
        "--memory",
        "128m",
        "--memory-swap",
        "256m",
        "--cpu-shares",
        "512",
        "--pids-limit",
        "50",
        "--restart",
        "on-failure:3",
        &id,
    ]);
    assert_eq!(
        cgroup_file("memory", &id, "memory.limit_in_bytes"),
        (128u64 << 20).to_string()
    );
    assert_eq!(cgroup_file("cpu", &id, "cpu.shares"), "512");
    assert_eq!(cgroup_file("pids", &id, "pids.max"), "50");
    let s = inspect(&d, &id);
    assert_eq!(s["HostConfig"]["Memory"], 128u64 << 20);
    assert_eq!(s["HostConfig"]["CpuShares"], 512);
    assert_eq!(s["HostConfig"]["RestartPolicy"]["MaximumRetryCount"], 3);

    let e = d.docker_fails(&["update", "--memory", "1m", &id]);
    assert!(e.contains("Minimum memory limit allowed is 6MB"), "{e}");
    assert_eq!(
        cgroup_file("memory", &id, "memory.limit_in_bytes"),
        (128u64 << 20).to_string()
    );
    cleanup(&d);
}

#[test]
fn top_and_stats() {
    let d = daemon();
    let b = busybox();
    d.docker_ok(&["run", "-d", "--name", "t1", &b, "sleep", "123"]);
    let top = d.docker_ok(&["top", "t1"]);
    assert!(top.contains("sleep 123"), "{top}");
    assert!(top.lines().next().unwrap_or("").contains("PID"), "{top}");
    let top = d.docker_ok(&["top", "t1", "-o", "pid,comm"]);
    assert!(top.contains("sleep"), "{top}");
    assert_eq!(
        top.lines().count(),
        2,
        "only the container's process: {top}"
    );

    let out = d.docker_ok(&[
        "stats",
        "--no-stream",
        "--format",
        "{{.Name}}|{{.PIDs}}|{{.MemUsage}}",
        "t1",
    ]);
    let fields: Vec<&str> = out.trim().split('|').collect();
    assert_eq!(fields[0], "t1", "{out}");
    assert_eq!(fields[1], "1", "{out}");
    assert!(!fields[2].starts_with("0B"), "no memory usage: {out}");

    // The API's shape, for other clients.
    let r = d.raw("GET", "/containers/t1/stats?stream=false", b"");
    assert_eq!(r.status, 200);
    let v: Value = serde_json::from_slice(&r.body).expect("stats JSON");
    assert!(
        v["cpu_stats"]["cpu_usage"]["total_usage"]
            .as_u64()
            .is_some(),
        "{v}"
    );
    assert!(
        v["precpu_stats"]["system_cpu_usage"].as_u64().unwrap_or(0) > 0,
        "{v}"
    );
    assert_eq!(v["pids_stats"]["current"], 1);
    cleanup(&d);
}

#[test]
fn log_options_rotate_the_json_file() {
    let d = daemon();
    let b = busybox();
    let id = d.docker_ok(&[
        "run",
        "-d",
        "--log-opt",
        "max-size=2k",
        "--log-opt",
        "max-file=2",
        &b,
        "sh",
        "-c",
        "i=0; while [ $i -lt 300 ]; do echo line-$i; i=$((i+1)); done",
    ]);
    let id = id.trim().to_string();
    assert_eq!(d.docker_ok(&["wait", &id]).trim(), "0");
    let dir = d.data_root().join("containers").join(&id);
    let log = dir.join(format!("{id}-json.log"));
    let size = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
    assert!(size <= 2048 + 200, "live file is {size} bytes");
    assert!(
        dir.join(format!("{id}-json.log.1")).exists(),
        "no rotated file"
    );
    assert!(
        !dir.join(format!("{id}-json.log.2")).exists(),
        "max-file=2 kept 3"
    );
    let out = d.docker_ok(&["logs", "--tail", "1", &id]);
    assert_eq!(out, "line-299\n");
    let s = inspect(&d, &id);
    assert_eq!(s["HostConfig"]["LogConfig"]["Config"]["max-size"], "2k");

    let e = d.docker_fails(&["run", "--log-opt", "max-size=lots", &b, "true"]);
    assert!(e.contains("max-size"), "{e}");
    let e = d.docker_fails(&["run", "--log-opt", "colour=blue", &b, "true"]);
    assert!(e.contains("unknown log opt 'colour'"), "{e}");
    cleanup(&d);
}

#[test]
fn interactive_tty_session_and_detach_keys() {
    let d = daemon();
    let b = busybox();
    let mut child = d
        .docker_in_terminal(&format!("run -it --rm {b} sh"))
        .spawn()
        .expect("script");
    {
        let mut stdin = child.stdin.take().expect("stdin");
        stdin
            .write_all(b"echo sum-$((40+2)); tty; exit 3\n")
            .expect("write");
        // Keep the terminal open until the shell has exited.
        let status = common::wait_timeout(&mut child, Duration::from_secs(30));
        drop(stdin);
        assert!(status.is_some(), "the -it session did not end");
    }
    let out = child.wait_with_output().expect("output");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("sum-42"), "{text}");
    // The container's own pty, as dockerd/runc give it.
    assert!(
        text.lines().any(|l| l.trim() == "/dev/pts/0"),
        "tty is not /dev/pts/0: {text}"
    );
    assert_eq!(out.status.code(), Some(3), "{text}");

    // ctrl-p ctrl-q leaves the container running.
    let mut child = d
        .docker_in_terminal(&format!("run -it --name dt {b} sh"))
        .spawn()
        .expect("script");
    let mut stdin = child.stdin.take().expect("stdin");
    let started = common::wait_until(Duration::from_secs(20), || {
        d.docker_ok(&["ps", "-q", "--filter", "name=dt"])
            .trim()
            .len()
            == 12
    });
    assert!(started, "dt not running");
    stdin.write_all(b"echo before\n\x10\x11").expect("write");
    let status = common::wait_timeout(&mut child, Duration::from_secs(20));
    drop(stdin);
    assert!(status.is_some(), "detach keys did not end the CLI");
    assert_eq!(inspect(&d, "dt")["State"]["Running"], true);
    d.docker_ok(&["rm", "-f", "dt"]);
    cleanup(&d);
}

#[test]
fn sizes_of_the_writable_layer() {
    let d = daemon();
    let b = busybox();
    d.docker_ok(&[
        "run",
        "--name",
        "sz",
        &b,
        "sh",
        "-c",
        "head -c 300000 /dev/zero > /big",
    ]);
    let r = d.raw("GET", "/containers/json?all=1&size=1", b"");
    let v: Value = serde_json::from_slice(&r.body).expect("list JSON");
    let rw = v[0]["SizeRw"].as_u64().expect("SizeRw");
    assert!((300_000..400_000).contains(&rw), "SizeRw {rw}");
    assert!(
        v[0]["SizeRootFs"].as_u64().unwrap_or(0) > rw + 500_000,
        "{v}"
    );
    let ps = d.docker_ok(&["ps", "-a", "-s", "--format", "{{.Size}}"]);
    assert!(ps.contains("300kB") && ps.contains("virtual"), "{ps}");
    let s = d.docker_ok(&["container", "inspect", "--size", "-f", "{{.SizeRw}}", "sz"]);
    assert_eq!(s.trim(), rw.to_string());
    cleanup(&d);
}

/// Parses the counter lines of a container's log; panics on a gap.
fn counted_lines(d: &TestDaemon, name: &str) -> u64 {
    let out = d.docker_ok(&["logs", name]);
    let mut next = 0u64;
    for line in out.lines() {
        let n: u64 = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}: odd line {line:?}"));
        assert_eq!(n, next, "{name}: log gap or repeat before {line:?}");
        next += 1;
    }
    next
}

#[test]
fn ten_containers_keep_running_and_logging_across_a_daemon_crash() {
    let mut d = daemon();
    let b = busybox();
    let names: Vec<String> = (0..10).map(|i| format!("c{i}")).collect();
    for n in &names {
        d.docker_ok(&[
            "run",
            "-d",
            "--name",
            n,
            &b,
            "sh",
            "-c",
            "i=0; while true; do echo $i; i=$((i+1)); sleep 0.05; done",
        ]);
    }
    let before: Vec<u64> = names.iter().map(|n| counted_lines(&d, n)).collect();
    d.kill9();
    // They log on while no daemon runs.
    std::thread::sleep(Duration::from_millis(500));
    d.start_again();
    let ps = d.docker_ok(&["ps", "--format", "{{.Names}} {{.State}}"]);
    let mut running: Vec<&str> = ps.lines().collect();
    running.sort();
    let mut want: Vec<String> = names.iter().map(|n| format!("{n} running")).collect();
    want.sort();
    assert_eq!(running, want);
    for (n, b) in names.iter().zip(&before) {
        let after = counted_lines(&d, n);
        assert!(after > b + 5, "{n}: {b} lines before, {after} after");
    }
    // A follower started after the restart sees new lines arrive.
    let mut f = d
        .docker_cmd(&["logs", "-f", "--tail", "0", "c0"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("logs -f");
    let mut out = f.stdout.take().expect("stdout");
    let mut buf = [0u8; 64];
    let n = std::io::Read::read(&mut out, &mut buf).expect("read");
    assert!(n > 0, "logs -f printed nothing");
    let _ = f.kill();
    let _ = f.wait();
    cleanup(&d);
}

#[test]
fn every_container_action_is_an_event() {
    let d = daemon();
    let b = busybox();
    let t0 = chrono_now_secs();
    d.docker_ok(&["run", "-d", "--name", "ev", &b, "sleep", "100"]);
    d.docker_ok(&["pause", "ev"]);
    d.docker_ok(&["unpause", "ev"]);
    d.docker_ok(&["rename", "ev", "ev2"]);
    d.docker_ok(&["update", "--cpu-shares", "512", "ev2"]);
    d.docker_ok(&["top", "ev2"]);
    d.docker_ok(&["restart", "-t", "0", "ev2"]);
    d.docker_ok(&["rm", "-f", "ev2"]);
    let t1 = chrono_now_secs() + 1;
    let out = d.docker_ok(&[
        "events",
        "--since",
        &t0.to_string(),
        "--until",
        &t1.to_string(),
        "--filter",
        "type=container",
        "--format",
        "{{.Action}}",
    ]);
    let actions: Vec<&str> = out
        .lines()
        .map(|l| l.split(':').next().unwrap_or(l))
        .collect();
    let want = [
        "create", "start", "pause", "unpause", "rename", "update", "top", "kill", "die", "stop",
        "start", "restart", "kill", "die", "destroy",
    ];
    let mut it = actions.iter();
    for w in want {
        assert!(
            it.any(|a| *a == w),
            "event {w} missing or out of order in {actions:?}"
        );
    }
    cleanup(&d);
}

fn chrono_now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[test]
fn every_resource_flag_reaches_the_cgroup_and_limits_hold() {
    let d = daemon();
    let b = busybox();
    let disk = block_device();
    let id = d.docker_ok(&[
        "run",
        "-d",
        "--cpu-period",
        "100000",
        "--cpu-quota",
        "50000",
        "--cpu-shares",
        "512",
        "--cpuset-cpus",
        "0",
        "--cpuset-mems",
        "0",
        "--memory",
        "64m",
        "--memory-reservation",
        "32m",
        "--memory-swap",
        "128m",
        "--memory-swappiness",
        "10",
        "--oom-kill-disable",
        "--pids-limit",
        "20",
        "--device-read-bps",
        &format!("{disk}:1mb"),
        "--device-write-iops",
        &format!("{disk}:200"),
        &b,
        "sleep",
        "100",
    ]);
    let id = id.trim().to_string();
    for (ctrl, file, want) in [
        ("cpu", "cpu.cfs_period_us", "100000"),
        ("cpu", "cpu.cfs_quota_us", "50000"),
        ("cpu", "cpu.shares", "512"),
        ("cpuset", "cpuset.cpus", "0"),
        ("cpuset", "cpuset.mems", "0"),
        ("memory", "memory.limit_in_bytes", "67108864"),
        ("memory", "memory.soft_limit_in_bytes", "33554432"),
        ("memory", "memory.memsw.limit_in_bytes", "134217728"),
        ("memory", "memory.swappiness", "10"),
        ("pids", "pids.max", "20"),
    ] {
        assert_eq!(cgroup_file(ctrl, &id, file), want, "{ctrl}/{file}");
    }
    assert!(cgroup_file("memory", &id, "memory.oom_control").contains("oom_kill_disable 1"));
    let (major, minor) = {
        use std::os::unix::fs::MetadataExt;
        let rdev = std::fs::metadata(&disk).map(|m| m.rdev()).unwrap_or(0);
        (libc::major(rdev), libc::minor(rdev))
    };
    assert_eq!(
        cgroup_file("blkio", &id, "blkio.throttle.read_bps_device"),
        format!("{major}:{minor} 1048576")
    );
    assert_eq!(
        cgroup_file("blkio", &id, "blkio.throttle.write_iops_device"),
        format!("{major}:{minor} 200")
    );
    // --cpus is NanoCpus: period and quota written by the daemon.
    let id2 = d.docker_ok(&["run", "-d", "--cpus", "1.5", &b, "sleep", "100"]);
    let id2 = id2.trim().to_string();
    assert_eq!(cgroup_file("cpu", &id2, "cpu.cfs_period_us"), "100000");
    assert_eq!(cgroup_file("cpu", &id2, "cpu.cfs_quota_us"), "150000");

    // The OOM killer strikes and is reported.
    let out = d.docker(&[
        "run",
        "--name",
        "oom",
        "--memory",
        "16m",
        "--memory-swap",
        "16m",
        &b,
        "sh",
        "-c",
        "tail /dev/zero",
    ]);
    assert_eq!(out.status.code(), Some(137));
    let s = inspect(&d, "oom");
    assert_eq!(s["State"]["OOMKilled"], true, "{s}");
    assert_eq!(s["State"]["ExitCode"], 137);

    // The pids limit holds.
    let out = d.docker(&[
        "run",
        "--pids-limit",
        "5",
        &b,
        "sh",
        "-c",
        "for i in 1 2 3 4 5 6 7 8; do sleep 2 & done; wait",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("fork"),
        "no fork failure under --pids-limit 5: {err}"
    );
    cleanup(&d);
}

/// A whole-disk block device of this host (`/dev/vda`, `/dev/sda`, ...)
/// for the device throttles.
fn block_device() -> String {
    let mut names: Vec<String> = std::fs::read_dir("/sys/block")
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.starts_with("loop") && !n.starts_with("ram"))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
        .into_iter()
        .map(|n| format!("/dev/{n}"))
        .find(|p| std::path::Path::new(p).exists())
        .expect("a block device in /sys/block with a node in /dev")
}
