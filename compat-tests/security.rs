//! Security and process options through the stock docker CLI, each seen
//! from inside the container: capabilities, no_new_privs, seccomp (the
//! default profile, `unconfined`, custom profiles, execs), AppArmor
//! `unconfined`, privileged, ulimits, sysctls, devices, groups, DNS and
//! hosts files, `--init`, the OOM score and a read-only root. Bad values
//! are refused at create with dockerd's messages, leaving nothing behind.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{registry, TestDaemon};

fn busybox() -> String {
    format!("{}/busybox", registry())
}

fn daemon() -> TestDaemon {
    let d = TestDaemon::start();
    d.pull(&busybox());
    d
}

/// A fresh container name: the daemon's random names may collide within
/// the many containers one test leaves behind.
fn name() -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!("sec-{}", N.fetch_add(1, Ordering::Relaxed))
}

/// `docker run` of a shell command; its stdout.
fn sh(d: &TestDaemon, opts: &[&str], script: &str) -> String {
    let b = busybox();
    let n = name();
    let mut args = vec!["run", "--name", n.as_str()];
    args.extend_from_slice(opts);
    args.extend_from_slice(&[b.as_str(), "sh", "-c", script]);
    d.docker_ok(&args)
}

/// The value of a `/proc/self/status` line inside a container.
fn status_field(d: &TestDaemon, opts: &[&str], field: &str) -> String {
    let out = sh(d, opts, &format!("grep '^{field}:' /proc/self/status"));
    out.split_once(':')
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_else(|| panic!("no {field} in {out:?}"))
}

/// A create that must fail: the CLI's message, and no container stored.
fn refused(d: &TestDaemon, opts: &[&str], want: &str) {
    let b = busybox();
    let n = name();
    let mut args = vec!["create", "--name", n.as_str()];
    args.extend_from_slice(opts);
    args.extend_from_slice(&[b.as_str(), "true"]);
    let before = d.docker_ok(&["ps", "-aq"]);
    let e = d.docker_fails(&args);
    assert!(e.contains(want), "{opts:?}: want {want:?} in {e}");
    assert_eq!(
        d.docker_ok(&["ps", "-aq"]),
        before,
        "{opts:?} left a container"
    );
}

/// `POST /containers/create` with a raw HostConfig: status and message.
fn create_raw(d: &TestDaemon, host_config: serde_json::Value) -> (u16, String) {
    let body = serde_json::json!({"Image": busybox(), "Cmd": ["true"], "HostConfig": host_config});
    let r = d.raw(
        "POST",
        "/v1.47/containers/create",
        body.to_string().as_bytes(),
    );
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
    (
        r.status,
        v["message"].as_str().unwrap_or_default().to_string(),
    )
}

/// Whether this (root) test process holds capability `bit`.
fn has_cap(bit: u32) -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .is_some_and(|m| m & (1 << bit) != 0)
}

fn rm_all(d: &TestDaemon) {
    for id in d.docker_ok(&["ps", "-aq"]).lines() {
        d.docker_ok(&["rm", "-f", id]);
    }
}

#[test]
fn capabilities_security_opts_and_privileged() {
    let d = daemon();
    // dockerd's default set, as CapEff shows it under dockerd.
    assert_eq!(status_field(&d, &[], "CapEff"), "00000000a80425fb");
    assert_eq!(
        status_field(
            &d,
            &["--cap-drop", "chown", "--cap-add", "NET_ADMIN"],
            "CapEff"
        ),
        format!("{:016x}", 0xa804_25fbu64 - 1 + (1 << 12))
    );
    assert_eq!(
        status_field(
            &d,
            &["--cap-drop", "ALL", "--cap-add", "cap_kill"],
            "CapEff"
        ),
        "0000000000000020"
    );
    // "All" is what the daemon holds (this host may lack some).
    let all = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:").map(|v| v.trim().to_string()))
        })
        .expect("CapEff of the test");
    assert_eq!(status_field(&d, &["--cap-add", "ALL"], "CapEff"), all);
    refused(
        &d,
        &["--cap-add", "bogus"],
        "invalid CapAdd: unknown capability: \"CAP_BOGUS\"",
    );

    assert_eq!(status_field(&d, &[], "NoNewPrivs"), "0");
    for opt in [
        "no-new-privileges",
        "no-new-privileges:true",
        "no-new-privileges=true",
    ] {
        assert_eq!(
            status_field(&d, &["--security-opt", opt], "NoNewPrivs"),
            "1",
            "{opt}"
        );
    }
    assert_eq!(
        status_field(&d, &["--security-opt", "apparmor=unconfined"], "NoNewPrivs"),
        "0"
    );
    // Privileged: every capability, the host's devices, no masked or
    // read-only paths, /sys writable.
    assert_eq!(status_field(&d, &["--privileged"], "CapEff"), all);
    let mounts = sh(&d, &["--privileged"], "cat /proc/mounts; ls /dev");
    assert!(!mounts.contains(" /proc/sys "), "{mounts}");
    assert!(!mounts.contains(" /proc/kcore "), "{mounts}");
    assert!(
        mounts
            .lines()
            .any(|l| l.starts_with("sysfs /sys sysfs rw,")),
        "{mounts}"
    );
    for dev in ["fuse", "kmsg", "loop0"] {
        if std::path::Path::new("/dev").join(dev).exists() {
            assert!(mounts.lines().any(|l| l == dev), "/dev/{dev}: {mounts}");
        }
    }
    let plain = sh(&d, &[], "cat /proc/mounts; ls /dev");
    assert!(plain.contains(" /proc/sys proc ro,"), "{plain}");
    assert!(!plain.lines().any(|l| l == "kmsg"), "{plain}");

    // Sharing the host's namespaces is not served yet: named 400s.
    for (flag, key) in [
        ("--pid=host", "PidMode"),
        ("--ipc=host", "IpcMode"),
        ("--uts=host", "UTSMode"),
        ("--userns=host", "UsernsMode"),
    ] {
        refused(&d, &[flag], key);
    }

    let id = d.docker_ok(&[
        "create",
        "--name",
        &name(),
        "--cap-add",
        "net_admin",
        "--security-opt",
        "no-new-privileges",
        &busybox(),
        "true",
    ]);
    let v: serde_json::Value =
        serde_json::from_str(&d.docker_ok(&["inspect", id.trim()])).expect("inspect json");
    // The CLI sends the normalised name; inspect shows what was sent.
    assert_eq!(
        v[0]["HostConfig"]["CapAdd"],
        serde_json::json!(["CAP_NET_ADMIN"])
    );
    assert_eq!(
        v[0]["HostConfig"]["SecurityOpt"],
        serde_json::json!(["no-new-privileges"])
    );
    rm_all(&d);
}

#[test]
fn seccomp_default_unconfined_custom_and_exec() {
    let d = daemon();
    // dockerd's default profile, in mode 2 (filter); none when asked or
    // privileged.
    assert_eq!(status_field(&d, &[], "Seccomp"), "2");
    assert_eq!(
        d.docker_ok(&["info", "--format", "{{json .SecurityOptions}}"])
            .trim(),
        r#"["name=seccomp,profile=builtin"]"#
    );
    assert_eq!(
        status_field(&d, &["--security-opt", "seccomp=builtin"], "Seccomp"),
        "2"
    );
    assert_eq!(
        status_field(&d, &["--security-opt", "seccomp=unconfined"], "Seccomp"),
        "0"
    );
    assert_eq!(status_field(&d, &["--privileged"], "Seccomp"), "0");
    // It bites: unshare needs CAP_SYS_ADMIN's rules (EPERM), and with
    // CAP_SYS_ADMIN added the profile lets it through.
    let out = sh(
        &d,
        &[],
        "unshare -u true 2>&1 && echo unshared || echo refused",
    );
    assert!(out.contains("Operation not permitted"), "{out}");
    assert!(out.ends_with("refused\n"), "{out}");
    let out = sh(
        &d,
        &["--cap-add", "SYS_ADMIN"],
        "unshare -u true 2>&1 && echo unshared || echo refused",
    );
    assert_eq!(out, "unshared\n");
    // The common things still work under it: a shell, files, --init.
    assert_eq!(
        sh(&d, &["--init"], "mkdir /tmp/a && ls /tmp && id -u"),
        "a\n0\n"
    );
    assert_eq!(
        status_field(&d, &["--security-opt", "no-new-privileges"], "Seccomp"),
        "2"
    );

    // Execs get the container's filter, privileged or not.
    let b = busybox();
    let id = d.docker_ok(&["run", "-d", "--name", &name(), &b, "sleep", "60"]);
    let id = id.trim();
    let field = |out: String| {
        out.split_whitespace()
            .nth(1)
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(
        field(d.docker_ok(&["exec", id, "grep", "^Seccomp:", "/proc/self/status"])),
        "2"
    );
    assert_eq!(
        field(d.docker_ok(&[
            "exec",
            "--privileged",
            id,
            "grep",
            "^Seccomp:",
            "/proc/self/status"
        ])),
        "2"
    );
    let free = d.docker_ok(&[
        "run",
        "-d",
        "--name",
        &name(),
        "--security-opt",
        "seccomp=unconfined",
        &b,
        "sleep",
        "60",
    ]);
    assert_eq!(
        field(d.docker_ok(&[
            "exec",
            free.trim(),
            "grep",
            "^Seccomp:",
            "/proc/self/status"
        ])),
        "0"
    );

    // A custom profile from a file: mkdir denied with EPERM, the rest
    // allowed. The CLI sends its (compacted) JSON, and inspect shows it.
    let dir = tempfile::tempdir().expect("tempdir");
    let profile = dir.path().join("profile.json");
    std::fs::write(
        &profile,
        r#"{
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [
                {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}
            ]
        }"#,
    )
    .expect("write");
    let opt = format!("seccomp={}", profile.display());
    let out = sh(
        &d,
        &["--security-opt", &opt],
        "touch /tmp/f && echo touched; mkdir /x 2>&1 || echo no-mkdir; grep ^Seccomp: /proc/self/status",
    );
    assert!(out.starts_with("touched\n"), "{out}");
    assert!(out.contains("Operation not permitted"), "{out}");
    assert!(out.contains("no-mkdir\nSeccomp:\t2\n"), "{out}");
    let id = d.docker_ok(&[
        "create",
        "--name",
        &name(),
        "--security-opt",
        &opt,
        &b,
        "true",
    ]);
    let v: serde_json::Value =
        serde_json::from_str(&d.docker_ok(&["inspect", id.trim()])).expect("inspect json");
    assert_eq!(
        v[0]["HostConfig"]["SecurityOpt"],
        serde_json::json!([
            r#"seccomp={"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir","mkdirat"],"action":"SCMP_ACT_ERRNO","errnoRet":1}]}"#
        ])
    );
    // A default container's SecurityOpt stays null, as under dockerd.
    let id = d.docker_ok(&["create", "--name", &name(), &b, "true"]);
    let v: serde_json::Value =
        serde_json::from_str(&d.docker_ok(&["inspect", id.trim()])).expect("inspect json");
    assert!(v[0]["HostConfig"]["SecurityOpt"].is_null(), "{v}");

    // Bad profiles: a 400 at create naming the problem, nothing stored.
    std::fs::write(&profile, r#"{"defaultAction": "SCMP_ACT_BOGUS"}"#).expect("write");
    refused(
        &d,
        &["--security-opt", &opt],
        "invalid seccomp profile: defaultAction: unknown action \"SCMP_ACT_BOGUS\"",
    );
    let before = d.docker_ok(&["ps", "-aq"]);
    let (status, msg) = create_raw(
        &d,
        serde_json::json!({"SecurityOpt": ["seccomp={\"defaultAction\": "]}),
    );
    assert_eq!(status, 400, "{msg}");
    assert!(
        msg.starts_with("Decoding seccomp profile failed: "),
        "{msg}"
    );
    assert_eq!(d.docker_ok(&["ps", "-aq"]), before, "nothing created");
    rm_all(&d);
}

#[test]
fn ulimits_sysctls_oom_score_and_read_only() {
    let d = daemon();
    let out = sh(&d, &["--ulimit", "nofile=100:200"], "ulimit -n; ulimit -Hn");
    assert_eq!(out, "100\n200\n");
    refused(
        &d,
        &["--ulimit", "nofile=300:200"],
        "ulimit soft limit must be less than or equal to hard limit: 300 > 200",
    );
    let (status, msg) = create_raw(
        &d,
        serde_json::json!({"Ulimits": [{"Name": "nofile", "Soft": 300, "Hard": 200}]}),
    );
    assert_eq!(
        (status, msg.as_str()),
        (
            400,
            "ulimit soft limit must be less than or equal to hard limit: 300 > 200"
        )
    );

    let host_shmmax = std::fs::read_to_string("/proc/sys/kernel/shmmax").expect("host shmmax");
    let out = sh(
        &d,
        &[
            "--sysctl",
            "kernel.shmmax=1073741824",
            "--sysctl",
            "net.core.somaxconn=1234",
        ],
        "cat /proc/sys/kernel/shmmax /proc/sys/net/core/somaxconn; echo 1 > /proc/sys/kernel/shmmax || echo read-only",
    );
    assert_eq!(out, "1073741824\n1234\nread-only\n");
    assert_eq!(
        std::fs::read_to_string("/proc/sys/kernel/shmmax").expect("host shmmax"),
        host_shmmax,
        "the host's value is untouched"
    );
    // The CLI refuses a host-wide sysctl itself; the API refuses it too.
    refused(&d, &["--sysctl", "vm.swappiness=1"], "vm.swappiness");
    let (status, msg) = create_raw(&d, serde_json::json!({"Sysctls": {"vm.swappiness": "1"}}));
    assert_eq!(
        (status, msg.as_str()),
        (
            400,
            "sysctl \"vm.swappiness\" is not in a separate kernel namespace"
        )
    );

    assert_eq!(
        sh(
            &d,
            &["--oom-score-adj", "500"],
            "cat /proc/self/oom_score_adj"
        ),
        "500\n"
    );
    // A negative score needs CAP_SYS_RESOURCE, which the init holds
    // before it drops capabilities (when the daemon has it at all).
    if has_cap(24) {
        assert_eq!(
            sh(
                &d,
                &["--oom-score-adj", "-300"],
                "cat /proc/self/oom_score_adj"
            ),
            "-300\n"
        );
    }
    let (status, msg) = create_raw(&d, serde_json::json!({"OomScoreAdj": 1001}));
    assert_eq!(
        (status, msg.as_str()),
        (
            400,
            "Invalid value 1001, range for oom score adj is [-1000, 1000]"
        )
    );

    let out = sh(
        &d,
        &["--read-only"],
        "touch /tmp/x 2>&1 || echo no-tmp; echo ok > /dev/null && echo dev-ok; touch /dev/shm/x && echo shm-ok",
    );
    assert!(out.contains("Read-only file system"), "{out}");
    assert!(out.contains("no-tmp\ndev-ok\nshm-ok\n"), "{out}");
    assert_eq!(sh(&d, &[], "touch /tmp/x && echo rw"), "rw\n");
    assert!(d.docker_ok(&["ps", "-aq"]).lines().count() >= 1);
    rm_all(&d);
}

#[test]
fn devices_groups_dns_and_hosts() {
    let d = daemon();
    // Without --device, /dev/fuse is refused by the devices cgroup even
    // when the node is made by hand; with it, the node is there and opens.
    if std::path::Path::new("/dev/fuse").exists()
        && std::path::Path::new("/sys/fs/cgroup/devices").exists()
    {
        let out = sh(
            &d,
            &[],
            "mknod /tmp/fuse c 10 229; (exec 3<>/tmp/fuse) && echo opened || echo denied",
        );
        assert!(out.contains("denied"), "{out}");
        let out = sh(
            &d,
            &["--device", "/dev/fuse:/dev/fuse:rwm"],
            "ls -l /dev/fuse; exec 3<>/dev/fuse && echo opened",
        );
        assert!(out.starts_with("crw"), "{out}");
        assert!(out.contains("10, 229"), "{out}");
        assert!(out.ends_with("opened\n"), "{out}");
    }
    let out = sh(
        &d,
        &["--device", "/dev/null:/dev/extra/null2"],
        "ls -l /dev/extra/null2; echo x > /dev/extra/null2 && echo written",
    );
    assert!(out.starts_with("crw"), "{out}");
    assert!(out.ends_with("written\n"), "{out}");
    refused(
        &d,
        &["--device", "/dev/no-such-device"],
        "error gathering device information while adding custom device \"/dev/no-such-device\"",
    );

    // --group-add by name (the test image's /etc/group has `app:x:1000:`)
    // or number.
    let ids = sh(&d, &["--group-add", "app", "--group-add", "4242"], "id -G");
    let ids: Vec<&str> = ids.split_whitespace().collect();
    for g in ["0", "1000", "4242"] {
        assert!(ids.contains(&g), "{g} in {ids:?}");
    }
    assert_eq!(
        sh(&d, &["--user", "1000:1000"], "id -u; id -g"),
        "1000\n1000\n"
    );
    let nobody = sh(&d, &["--user", "nobody"], "id -un");
    assert_eq!(nobody, "nobody\n");
    let b = busybox();
    let e = d.docker_fails(&[
        "run",
        "--name",
        &name(),
        "--group-add",
        "no-such-group",
        &b,
        "true",
    ]);
    assert!(
        e.contains("Unable to find group no-such-group: no matching entries in group file"),
        "{e}"
    );
    rm_all(&d);

    let out = sh(
        &d,
        &[
            "--dns",
            "192.0.2.53",
            "--dns-search",
            "example.test",
            "--dns-option",
            "ndots:2",
            "--add-host",
            "db.local:192.0.2.10",
            "--add-host",
            "v6host:2001:db8::1",
            "--hostname",
            "web",
            "--domainname",
            "example.org",
        ],
        "cat /etc/resolv.conf; echo ---; cat /etc/hosts; echo ---; hostname; cat /proc/sys/kernel/domainname",
    );
    let mut parts = out.split("---\n");
    let resolv = parts.next().unwrap_or_default();
    let hosts = parts.next().unwrap_or_default();
    let names = parts.next().unwrap_or_default();
    assert_eq!(
        resolv,
        "nameserver 192.0.2.53\nsearch example.test\noptions ndots:2\n"
    );
    assert!(hosts.starts_with("127.0.0.1\tlocalhost\n"), "{hosts}");
    assert!(hosts.contains("\n192.0.2.10\tdb.local\n"), "{hosts}");
    assert!(hosts.contains("\n2001:db8::1\tv6host\n"), "{hosts}");
    assert_eq!(names, "web\nexample.org\n");
    let (status, msg) = create_raw(&d, serde_json::json!({"Dns": ["not-an-ip"]}));
    assert_eq!(
        (status, msg.as_str()),
        (400, "IP address is not correctly formatted: not-an-ip")
    );
    rm_all(&d);
}

#[test]
fn init_is_pid_1_forwards_signals_and_reaps() {
    let d = daemon();
    let b = busybox();
    let ps = d.docker_ok(&[
        "run",
        "--name",
        &name(),
        "--init",
        &b,
        "ps",
        "-o",
        "pid,args",
    ]);
    let lines: Vec<&str> = ps.lines().map(str::trim).collect();
    assert_eq!(
        lines,
        [
            "PID   COMMAND",
            "1 mydocker-init -- ps -o pid,args",
            "2 ps -o pid,args"
        ],
        "{ps}"
    );
    // Without --init the command is PID 1.
    let ps = d.docker_ok(&["run", "--name", &name(), &b, "ps", "-o", "pid,args"]);
    let lines: Vec<&str> = ps.lines().map(str::trim).collect();
    assert_eq!(lines, ["PID   COMMAND", "1 ps -o pid,args"], "{ps}");

    // Exit codes pass through.
    let out = d.docker(&["run", "--name", &name(), "--init", &b, "sh", "-c", "exit 7"]);
    assert_eq!(out.status.code(), Some(7));

    // Orphans are reaped: no zombie is left once the orphan exited.
    let out = sh(
        &d,
        &["--init"],
        "(sleep 0.2 &) ; sleep 1; ps -o stat,args | grep '^Z' || echo no-zombies",
    );
    assert_eq!(out, "no-zombies\n");

    // sleep ignores SIGTERM as PID 1; under the init it is PID 2 and
    // dies of it at once: stop is quick, the status 143.
    let id = d.docker_ok(&["run", "--name", &name(), "-d", "--init", &b, "sleep", "100"]);
    let id = id.trim();
    let t0 = Instant::now();
    d.docker_ok(&["stop", id]);
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    assert_eq!(d.docker_ok(&["wait", id]).trim(), "143");

    // Other signals are forwarded too.
    let id = d.docker_ok(&[
        "run",
        "--name",
        &name(),
        "-d",
        "--init",
        &b,
        "sh",
        "-c",
        "trap 'echo got-usr1; exit 3' USR1; echo ready; while :; do sleep 0.1; done",
    ]);
    let id = id.trim();
    let ready = common::wait_until(Duration::from_secs(10), || {
        d.docker_ok(&["logs", id]).contains("ready")
    });
    assert!(ready, "the container never got ready");
    d.docker_ok(&["kill", "-s", "USR1", id]);
    assert_eq!(d.docker_ok(&["wait", id]).trim(), "3");
    assert!(d.docker_ok(&["logs", id]).contains("got-usr1"));
    let v: serde_json::Value =
        serde_json::from_str(&d.docker_ok(&["inspect", id])).expect("inspect json");
    assert_eq!(v[0]["HostConfig"]["Init"], true);
    rm_all(&d);
    let gone = common::wait_until(Duration::from_secs(5), || d.live_monitors().is_empty());
    assert!(gone, "monitors left: {:?}", d.live_monitors());
}

/// Daemon-wide `--default-ulimit` and `--no-new-privileges` (flags or
/// daemon.json): every container gets them unless it says otherwise; a
/// bad default stops the daemon at start.
#[test]
fn daemon_default_ulimits_and_no_new_privileges() {
    let d = TestDaemon::start_with(
        &[
            "--default-ulimit",
            "nofile=1234:2345",
            "--default-ulimit",
            "nproc=500",
            "--no-new-privileges",
        ],
        "{}",
    );
    d.pull(&busybox());
    assert_eq!(
        sh(&d, &[], "ulimit -n; ulimit -Hn; ulimit -u"),
        "1234\n2345\n500\n"
    );
    assert_eq!(status_field(&d, &[], "NoNewPrivs"), "1");
    // The container's own settings win, by name.
    assert_eq!(
        sh(&d, &["--ulimit", "nofile=100:200"], "ulimit -n; ulimit -u"),
        "100\n500\n"
    );
    assert_eq!(
        status_field(
            &d,
            &["--security-opt", "no-new-privileges=false"],
            "NoNewPrivs"
        ),
        "0"
    );
    drop(d);

    let d = TestDaemon::start_with(
        &[],
        r#"{"default-ulimits": {"nofile": {"Name": "nofile", "Soft": 321, "Hard": 654}}, "no-new-privileges": true}"#,
    );
    d.pull(&busybox());
    assert_eq!(sh(&d, &[], "ulimit -n; ulimit -Hn"), "321\n654\n");
    assert_eq!(status_field(&d, &[], "NoNewPrivs"), "1");
    drop(d);

    for args in [
        vec!["--default-ulimit", "bogus=1:2"],
        vec!["--default-ulimit", "nofile=20:10"],
    ] {
        let (st, log) = TestDaemon::start_expecting_failure(common::DaemonOptions {
            args: args.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        });
        assert!(!st.success(), "{args:?}");
        assert!(
            log.contains("invalid ulimit type: bogus")
                || log.contains("soft limit must be less than or equal to hard limit: 20 > 10"),
            "{args:?}: {log}"
        );
    }
}
