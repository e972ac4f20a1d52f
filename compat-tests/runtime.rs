//! Live tests of the native runtime: real containers from a busybox rootfs,
//! started through the real `__monitor` path.
//!
//! This suite has its own `main` (`harness = false`): the test binary is
//! also the monitor, as `mydockerd` is (`<test binary> __monitor <bundle>`
//! goes straight to `runtime::run_monitor`). One test also drives
//! `mydockerd __monitor` itself, once `main.rs` has the hook.
//!
//! Needs root; prints a note and skips otherwise. Every test removes what
//! it made: it kills and waits for its container, checks that no mount of
//! its temp dir is left in the host's mount table and that the monitor is
//! gone, and deletes the temp dir.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::time::Instant;

use mydocker::runtime::spec::{ContainerSpec, LogSpec, RootfsSpec};
use mydocker::runtime::{spawn_monitor, MonitorHandle, RuntimeError, State, Status};

const APPLETS: &[&str] = &[
    "sh", "echo", "cat", "ls", "wc", "mount", "hostname", "sleep", "true", "id", "test", "grep",
    "pwd", "touch", "tail", "stty",
];

/// A container's bundle and rootfs in a temp dir, cleaned up on drop.
struct Fixture {
    dir: tempfile::TempDir,
    spec: ContainerSpec,
    handle: Option<MonitorHandle>,
}

impl Fixture {
    /// A busybox rootfs of `extra_layers + 1` layers running `args`.
    fn new(args: &[&str], extra_layers: usize) -> Fixture {
        let dir = tempfile::Builder::new()
            .prefix("rt-")
            .tempdir()
            .expect("tempdir");
        let root = dir.path();
        let top = root.join("layers/top");
        fs::create_dir_all(top.join("bin")).expect("mkdir");
        fs::copy("/bin/busybox", top.join("bin/busybox")).expect("copy busybox");
        for a in APPLETS {
            symlink("busybox", top.join("bin").join(a)).expect("symlink");
        }
        fs::create_dir_all(top.join("etc")).expect("mkdir");
        let mut lowerdirs = vec![top];
        for i in 0..extra_layers {
            // Long names, like dockerd's 64-hex layer dirs, so that the
            // lowerdir list cannot fit in one page.
            let l = root.join(format!("layers/{i:064}/diff"));
            fs::create_dir_all(&l).expect("mkdir");
            fs::write(l.join(format!("layer-{i}")), b"").expect("write");
            lowerdirs.push(l);
        }
        let bundle = root.join("bundle");
        for d in ["upper", "work", "merged"] {
            fs::create_dir_all(bundle.join(d)).expect("mkdir");
        }
        fs::write(bundle.join("hostname"), "box\n").expect("write");
        let mut spec = ContainerSpec {
            id: "test".into(),
            bundle: bundle.clone(),
            rootfs: RootfsSpec {
                lowerdirs,
                upperdir: bundle.join("upper"),
                workdir: bundle.join("work"),
                mountpoint: bundle.join("merged"),
                readonly: false,
            },
            hostname: "box".into(),
            log: Some(LogSpec {
                path: bundle.join("test-json.log"),
                ..Default::default()
            }),
            ..Default::default()
        };
        spec.etc_files.hostname = Some(bundle.join("hostname"));
        spec.process.args = args.iter().map(|s| s.to_string()).collect();
        spec.process.env = vec!["PATH=/bin".into(), "HOSTNAME=box".into()];
        Fixture {
            dir,
            spec,
            handle: None,
        }
    }

    fn start_with(&mut self, exe: &Path) -> Result<&MonitorHandle, RuntimeError> {
        self.spec.save().expect("save spec");
        let h = spawn_monitor(exe, &self.spec.bundle)?;
        Ok(self.handle.insert(h))
    }

    fn start(&mut self) -> Result<&MonitorHandle, RuntimeError> {
        let exe = std::env::current_exe().expect("current exe");
        self.start_with(&exe)
    }

    fn run(&mut self) -> State {
        self.start().expect("start");
        self.wait()
    }

    fn wait(&self) -> State {
        self.handle.as_ref().expect("started").wait().expect("wait")
    }

    fn log(&self) -> String {
        fs::read_to_string(self.spec.bundle.join("test-json.log")).unwrap_or_default()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let mut monitor_pid = 0;
        if let Some(h) = &self.handle {
            let _ = h.kill(9);
            if let Ok(st) = h.wait() {
                monitor_pid = st.monitor_pid;
            }
        }
        let path = self.dir.path().to_string_lossy().into_owned();
        let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let leaked: Vec<&str> = mountinfo.lines().filter(|l| l.contains(&path)).collect();
        let alive = monitor_pid > 0 && !exits_soon(monitor_pid);
        if !std::thread::panicking() {
            assert!(leaked.is_empty(), "mounts left behind: {leaked:#?}");
            assert!(!alive, "monitor {monitor_pid} still running");
        }
    }
}

/// Whether `pid` exits within 5 s. The monitor's waiters see EOF while it
/// is still in exit(2), a moment before it is gone: a pidfd tells when.
fn exits_soon(pid: i32) -> bool {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return true; // already gone (reaped)
    }
    let mut pfd = libc::pollfd {
        fd: fd as i32,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd; then closing the fd we opened.
    let n = unsafe { libc::poll(&mut pfd, 1, 5000) };
    unsafe { libc::close(fd as i32) };
    n == 1
}

/// Running, not a zombie waiting for init to reap it.
fn process_running(pid: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit(')')
                .next()
                .map(|r| r.trim_start().starts_with(|c| c != 'Z'))
        })
        .unwrap_or(false)
}

fn echo_hi_is_logged() {
    let mut f = Fixture::new(&["echo", "hi"], 0);
    let st = f.run();
    assert_eq!(st.status, Status::Exited);
    assert_eq!(st.exit_code, 0, "{st:?}");
    assert!(!st.started_at.is_empty() && !st.finished_at.is_empty());
    let log = f.log();
    assert!(
        log.starts_with(r#"{"log":"hi\n","stream":"stdout","time":""#),
        "{log}"
    );
    assert_eq!(log.lines().count(), 1, "{log}");
    // A restart on the same upper/work dirs: the first overlay is gone
    // with the first container's mount namespace.
    assert_eq!(f.run().exit_code, 0);
    assert_eq!(stdout_lines(&f), vec!["hi", "hi"]);
}

fn exit_code_passes_through() {
    let mut f = Fixture::new(&["sh", "-c", "echo oops >&2; exit 3"], 0);
    assert_eq!(f.run().exit_code, 3);
    assert!(
        f.log().contains(r#"{"log":"oops\n","stream":"stderr""#),
        "{}",
        f.log()
    );
}

fn kill_gives_137_and_state_is_served() {
    let mut f = Fixture::new(&["sleep", "100"], 0);
    let h = f.start().expect("start").clone();
    let st = h.state().expect("state");
    assert_eq!(st.status, Status::Running);
    assert_eq!(st.pid, h.pid());
    assert!(process_running(h.pid()));
    // The monitor was re-parented away from its starter.
    let stat = fs::read_to_string(format!("/proc/{}/stat", st.monitor_pid)).expect("stat");
    let ppid: u32 = stat
        .rsplit(')')
        .next()
        .and_then(|r| r.split_whitespace().nth(1))
        .and_then(|p| p.parse().ok())
        .expect("ppid");
    assert_ne!(ppid, std::process::id());
    let t = Instant::now();
    h.kill(9).expect("kill");
    let st = f.wait();
    assert_eq!(st.exit_code, 137, "{st:?}");
    assert!(t.elapsed().as_secs() < 10);
    assert!(matches!(h.kill(9), Err(RuntimeError::NotRunning)));
    assert_eq!(h.state().expect("final state").status, Status::Exited);
}

fn missing_binary_fails_start_with_127() {
    let mut f = Fixture::new(&["nope"], 0);
    match f.start() {
        Err(RuntimeError::StartFailed { message, exit_code }) => {
            assert_eq!(
                message,
                "exec: \"nope\": executable file not found in $PATH"
            );
            assert_eq!(exit_code, 127);
        }
        other => panic!("expected a start failure, got {other:?}"),
    }
    let st = State::load(&f.spec.bundle).expect("state");
    assert_eq!((st.status, st.exit_code), (Status::Exited, 127));
    assert!(st.error.contains("executable file not found"), "{st:?}");
    let mut f = Fixture::new(&["/etc"], 0);
    match f.start() {
        Err(RuntimeError::StartFailed { exit_code, .. }) => assert_eq!(exit_code, 126),
        other => panic!("expected a start failure, got {other:?}"),
    }
}

fn namespaces_and_mounts() {
    let script = "hostname; echo pid=$$; cat /etc/hostname; \
                  ls -d /proc/[0-9]* | wc -l; \
                  test -c /dev/null && test -L /dev/ptmx && echo devok; \
                  grep -c ' /dev/shm ' /proc/mounts; grep ' /sys ' /proc/mounts | grep -c ro, ; \
                  echo x > /proc/sys/kernel/hostname || echo rosys; \
                  cat /proc/kcore | wc -c; id -u";
    let mut f = Fixture::new(&["sh", "-c", script], 0);
    let st = f.run();
    assert_eq!(st.exit_code, 0, "{st:?}\n{}", f.log());
    let out = stdout_lines(&f);
    // Host processes are invisible: only sh and one child (ls) at most.
    let procs: usize = out[3].parse().expect("count");
    assert!(procs <= 3, "{out:?}");
    assert_eq!(
        out,
        vec![
            "box".to_string(),
            "pid=1".into(),
            "box".into(),
            procs.to_string(),
            "devok".into(),
            "1".into(),
            "1".into(),
            "rosys".into(),
            "0".into(),
            "0".into(),
        ]
    );
}

fn mount_is_refused_without_cap_sys_admin() {
    let mut f = Fixture::new(&["sh", "-c", "mount -t tmpfs none /bin"], 0);
    let st = f.run();
    let log = f.log();
    assert_ne!(st.exit_code, 0, "{log}");
    assert!(
        log.contains("stderr") && log.to_lowercase().contains("permission denied"),
        "{log}"
    );
}

fn tty_output_goes_through_the_pty() {
    let mut f = Fixture::new(
        &[
            "sh",
            "-c",
            "test -t 1 && echo tty-ok; test -c /dev/console && echo console",
        ],
        0,
    );
    f.spec.process.tty = true;
    let st = f.run();
    assert_eq!(st.exit_code, 0);
    let log = f.log();
    assert!(
        log.contains(r#"{"log":"tty-ok\r\n","stream":"stdout""#),
        "{log}"
    );
    assert!(log.contains(r#""console\r\n""#), "{log}");
}

fn many_layers_mount() {
    let mut f = Fixture::new(&["sh", "-c", "ls / | grep -c layer-"], 120);
    let st = f.run();
    assert_eq!(st.exit_code, 0, "{st:?} {}", f.log());
    assert!(f.log().contains(r#"{"log":"120\n""#), "{}", f.log());
}

/// Lines the container wrote to stdout.
fn stdout_lines(f: &Fixture) -> Vec<String> {
    f.log()
        .lines()
        .filter(|l| l.contains(r#""stream":"stdout""#))
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["log"].as_str().map(|s| s.trim_end().to_string()))
        .collect()
}

fn credentials_and_limits() {
    let script = "grep CapBnd /proc/self/status; ulimit -n";
    let mut f = Fixture::new(&["sh", "-c", script], 0);
    f.spec.process.rlimits = vec![mydocker::runtime::spec::Rlimit {
        name: "nofile".into(),
        soft: 1000,
        hard: 1000,
    }];
    let st = f.run();
    assert_eq!(st.exit_code, 0, "{}", f.log());
    // dockerd's default bounding set.
    assert_eq!(
        stdout_lines(&f),
        vec!["CapBnd:\t00000000a80425fb".to_string(), "1000".into()]
    );

    let script = "id -u; id -G; pwd; grep CapEff /proc/self/status";
    let mut f = Fixture::new(&["sh", "-c", script], 0);
    f.spec.process.uid = 1000;
    f.spec.process.gid = 1000;
    f.spec.process.additional_gids = vec![10];
    f.spec.process.cwd = "/work/dir".into();
    let st = f.run();
    assert_eq!(st.exit_code, 0, "{}", f.log());
    assert_eq!(
        stdout_lines(&f),
        vec![
            "1000".to_string(),
            "1000 10".into(),
            "/work/dir".into(),
            "CapEff:\t0000000000000000".into()
        ]
    );
}

fn readonly_rootfs_and_user_mounts() {
    use mydocker::runtime::spec::{MountKind, MountSpec};
    let script = "touch /x 2>/dev/null || echo ro-root; cat /data/f; \
                  touch /data/g 2>/dev/null || echo ro-bind; touch /scratch/y && echo tmpfs-rw";
    let mut f = Fixture::new(&["sh", "-c", script], 0);
    let data = f.dir.path().join("data");
    fs::create_dir_all(&data).expect("mkdir");
    fs::write(data.join("f"), "from-host\n").expect("write");
    f.spec.rootfs.readonly = true;
    f.spec.mounts = vec![
        MountSpec {
            source: data,
            destination: "/data".into(),
            kind: MountKind::Bind,
            options: vec!["rprivate".into()],
            readonly: true,
        },
        MountSpec {
            source: Default::default(),
            destination: "/scratch".into(),
            kind: MountKind::Tmpfs,
            options: vec!["size=1m".into()],
            readonly: false,
        },
    ];
    // A read-only root cannot get new mount points: make them first.
    fs::create_dir_all(f.spec.rootfs.lowerdirs[0].join("data")).expect("mkdir");
    fs::create_dir_all(f.spec.rootfs.lowerdirs[0].join("scratch")).expect("mkdir");
    let st = f.run();
    assert_eq!(st.exit_code, 0, "{}", f.log());
    assert_eq!(
        stdout_lines(&f),
        vec![
            "ro-root".to_string(),
            "from-host".into(),
            "ro-bind".into(),
            "tmpfs-rw".into()
        ]
    );
    assert!(!f.dir.path().join("data/g").exists());
}

/// Removes a test cgroup on drop (after its container is gone).
struct CgroupGuard(Box<dyn mydocker::runtime::cgroups::CgroupManager>);

impl Drop for CgroupGuard {
    fn drop(&mut self) {
        let _ = self.0.remove();
        if !std::thread::panicking() {
            assert!(!self.0.exists(), "cgroup left behind");
        }
    }
}

fn cgroup_joined_and_oom_reported() {
    use mydocker::runtime::cgroups::{self, resources::Resources};
    let rel = format!("mydocker-rt-test-{}", std::process::id());
    let res = Resources {
        memory: 32 << 20,
        memory_swap: 32 << 20,
        ..Default::default()
    };
    let cg = CgroupGuard(cgroups::manager_for("/sys/fs/cgroup", &rel).expect("manager"));
    cg.0.create(&res).expect("create cgroup");
    {
        let mut f = Fixture::new(&["sh", "-c", "grep memory /proc/self/cgroup"], 0);
        f.spec.cgroup = Some(mydocker::runtime::spec::CgroupSpec {
            root: "/sys/fs/cgroup".into(),
            path: rel.clone(),
        });
        let st = f.run();
        assert_eq!(st.exit_code, 0, "{}", f.log());
        assert!(!st.oom_killed);
        let out = stdout_lines(&f);
        assert!(
            out.len() == 1 && out[0].ends_with(&format!(":memory:/{rel}")),
            "{out:?}"
        );

        // tail keeps an unterminated line in memory: the OOM killer ends it.
        f.spec.process.args = vec!["tail".into(), "/dev/zero".into()];
        let st = f.run();
        assert_eq!(st.exit_code, 137, "{st:?}");
        assert!(st.oom_killed, "{st:?}");
    }
}

fn attach_streams_both_ways() {
    use mydocker::logs::stdcopy;
    use mydocker::runtime::protocol::Attach;
    use std::io::{Read, Write};
    let all = Attach {
        stdin: true,
        stdout: true,
        stderr: true,
        close_stdin: true,
    };
    // Without a TTY: stdcopy frames out, raw bytes in, EOF closes stdin.
    let mut f = Fixture::new(&["sh", "-c", "cat; echo done >&2"], 0);
    f.spec.process.open_stdin = true;
    let h = f.start().expect("start").clone();
    let mut conn = h.attach(all).expect("attach");
    conn.write_all(b"hello\n").expect("write");
    conn.shutdown(std::net::Shutdown::Write)
        .expect("half-close");
    let mut got = Vec::new();
    conn.read_to_end(&mut got).expect("read");
    let frames = stdcopy::decode_all(&got).expect("frames");
    let text: Vec<(u8, String)> = frames
        .iter()
        .map(|fr| {
            (
                fr.stream as u8,
                String::from_utf8_lossy(&fr.payload).into_owned(),
            )
        })
        .collect();
    assert_eq!(text, vec![(1, "hello\n".to_string()), (2, "done\n".into())]);
    assert_eq!(f.wait().exit_code, 0);
    assert!(f.log().contains(r#"{"log":"hello\n","stream":"stdout""#));

    // With a TTY: raw bytes both ways, and resize reaches the pty.
    let mut f = Fixture::new(&["sh"], 0);
    f.spec.process.tty = true;
    f.spec.process.open_stdin = true;
    let h = f.start().expect("start").clone();
    h.resize(33, 101).expect("resize");
    let mut conn = h.attach(all).expect("attach");
    conn.write_all(b"stty size; exit 5\n").expect("write");
    let mut got = Vec::new();
    conn.read_to_end(&mut got).expect("read");
    let got = String::from_utf8_lossy(&got);
    assert!(got.contains("33 101\r\n"), "{got:?}");
    assert_eq!(f.wait().exit_code, 5);
    // No TTY, no resize; no open stdin, no attached input.
    let mut f = Fixture::new(&["sleep", "100"], 0);
    let h = f.start().expect("start").clone();
    assert!(matches!(h.resize(1, 1), Err(RuntimeError::Monitor(_))));
    assert!(matches!(h.attach(all), Err(RuntimeError::Monitor(_))));
}

fn mydockerd_monitor_hook() {
    // MYDOCKER_TEST_MONITOR_EXE: another build of mydockerd to try.
    let exe = std::env::var_os("MYDOCKER_TEST_MONITOR_EXE")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_mydockerd").into());
    let exe = exe.as_path();
    let mut f = Fixture::new(&["echo", "hi"], 0);
    f.start_with(exe)
        .expect("mydockerd __monitor starts the container");
    assert_eq!(f.wait().exit_code, 0);
    assert!(f.log().contains(r#""log":"hi\n""#));
}

fn main() {
    // The monitor re-exec of this very binary.
    mydocker::runtime::maybe_run_monitor_from_args();

    let tests: &[(&str, fn())] = &[
        ("echo_hi_is_logged", echo_hi_is_logged),
        ("exit_code_passes_through", exit_code_passes_through),
        (
            "kill_gives_137_and_state_is_served",
            kill_gives_137_and_state_is_served,
        ),
        (
            "missing_binary_fails_start_with_127",
            missing_binary_fails_start_with_127,
        ),
        ("namespaces_and_mounts", namespaces_and_mounts),
        (
            "mount_is_refused_without_cap_sys_admin",
            mount_is_refused_without_cap_sys_admin,
        ),
        (
            "tty_output_goes_through_the_pty",
            tty_output_goes_through_the_pty,
        ),
        ("many_layers_mount", many_layers_mount),
        ("credentials_and_limits", credentials_and_limits),
        (
            "readonly_rootfs_and_user_mounts",
            readonly_rootfs_and_user_mounts,
        ),
        (
            "cgroup_joined_and_oom_reported",
            cgroup_joined_and_oom_reported,
        ),
        ("attach_streams_both_ways", attach_streams_both_ways),
        ("mydockerd_monitor_hook", mydockerd_monitor_hook),
    ];
    // libtest-like: positional arguments filter by substring; flags such as
    // --test-threads are accepted and ignored (tests run one by one).
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let selected: Vec<_> = tests
        .iter()
        .filter(|(name, _)| filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str())))
        .collect();
    let root = nix::unistd::Uid::effective().is_root();
    println!("\nrunning {} tests", selected.len());
    if !root {
        println!("note: the runtime tests need root; skipped");
        println!(
            "\ntest result: ok. 0 passed; 0 failed; {} ignored; 0 measured; 0 filtered out\n",
            selected.len()
        );
        return;
    }
    let (mut passed, mut failed) = (0, Vec::new());
    for (name, test) in &selected {
        let ok = std::panic::catch_unwind(test).is_ok();
        println!("test {name} ... {}", if ok { "ok" } else { "FAILED" });
        if ok {
            passed += 1;
        } else {
            failed.push(*name);
        }
    }
    let filtered = tests.len() - selected.len();
    if !failed.is_empty() {
        println!("\nfailures:\n    {}", failed.join("\n    "));
    }
    println!(
        "\ntest result: {}. {passed} passed; {} failed; 0 ignored; 0 measured; {filtered} filtered out\n",
        if failed.is_empty() { "ok" } else { "FAILED" },
        failed.len()
    );
    if !failed.is_empty() {
        std::process::exit(101);
    }
}
