//! Containers through the stock docker CLI: run -d, logs, wait, stop,
//! kill, start, rm, ps, inspect, prune, a failed start, a daemon crash
//! with a running container, and rmi of an image in use. Every test
//! checks that no monitor process or cgroup is left behind.

mod common;

use std::time::{Duration, Instant};

use common::{registry, TestDaemon};

fn busybox() -> String {
    format!("{}/busybox", registry())
}

/// A daemon with busybox pulled.
fn daemon() -> TestDaemon {
    let d = TestDaemon::start();
    d.pull(&busybox());
    d
}

/// Removes every container, then asserts nothing of them is left: no
/// monitor, no cgroup, no container folder, no bundle.
fn assert_clean(d: &TestDaemon, ids: &[String]) {
    let all = d.docker_ok(&["ps", "-aq", "--no-trunc"]);
    for id in all.lines().filter(|l| !l.is_empty()) {
        d.docker_ok(&["rm", "-f", id]);
    }
    let gone = common::wait_until(Duration::from_secs(5), || d.live_monitors().is_empty());
    assert!(gone, "monitors left: {:?}", d.live_monitors());
    for id in ids {
        assert!(
            TestDaemon::container_cgroups(id).is_empty(),
            "cgroups left for {id}: {:?}",
            TestDaemon::container_cgroups(id)
        );
    }
    assert!(
        d.bundle_ids().is_empty(),
        "bundles left: {:?}",
        d.bundle_ids()
    );
    let dirs = std::fs::read_dir(d.data_root().join("containers"))
        .map(|rd| rd.count())
        .unwrap_or(0);
    assert_eq!(dirs, 0, "container folders left");
}

#[test]
fn run_logs_wait_ps_inspect_prune() {
    let d = daemon();
    let b = busybox();
    let id = d.docker_ok(&[
        "run",
        "-d",
        "--name",
        "hello",
        "--label",
        "app=web",
        &b,
        "sh",
        "-c",
        "echo hi; echo oops >&2; sleep 1",
    ]);
    let id = id.trim().to_string();
    assert_eq!(id.len(), 64, "run -d prints the full ID: {id:?}");
    assert!(d.docker_ok(&["ps", "-q"]).contains(&id[..12]));
    assert_eq!(d.docker_ok(&["wait", "hello"]).trim(), "0");

    let out = d.docker(&["logs", "hello"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hi\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "oops\n");
    let out = d.docker(&["logs", "--tail", "1", "hello"]);
    assert_eq!(
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        "oops\n"
    );
    let ts = d.docker_ok(&["logs", "-t", "hello"]);
    let (t, line) = ts.trim_end().split_once(' ').expect("timestamp and line");
    assert_eq!(line, "hi");
    assert!(t.ends_with('Z') && t.len() == 30, "{t}");
    // Following a stopped container returns at once.
    let out = d
        .docker_timeout(&["logs", "-f", "hello"], Duration::from_secs(10))
        .expect("logs -f of an exited container returns");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hi\n");

    let three = d.docker_ok(&["run", "-d", &b, "sh", "-c", "exit 3"]);
    assert_eq!(d.docker_ok(&["wait", three.trim()]).trim(), "3");

    // ps: running only by default; -a, filters.
    assert!(d.docker_ok(&["ps", "-q"]).trim().is_empty());
    let all = d.docker_ok(&["ps", "-aq"]);
    assert_eq!(all.lines().count(), 2, "{all}");
    let f = d.docker_ok(&[
        "ps",
        "-a",
        "--filter",
        "label=app=web",
        "--format",
        "{{.Names}}",
    ]);
    assert_eq!(f.trim(), "hello");
    let f = d.docker_ok(&["ps", "-a", "--filter", "exited=3", "-q", "--no-trunc"]);
    assert_eq!(f.trim(), three.trim());
    let f = d.docker_ok(&[
        "ps",
        "-a",
        "--filter",
        "status=exited",
        "--filter",
        "name=hel",
        "-q",
    ]);
    assert_eq!(f.trim(), &id[..12]);
    let f = d.docker_ok(&["ps", "-a", "--filter", &format!("ancestor={b}"), "-q"]);
    assert_eq!(f.lines().count(), 2);
    let bad = d.docker_fails(&["ps", "--filter", "status=bogus"]);
    assert!(bad.contains("invalid filter 'status=bogus'"), "{bad}");
    let st = d.docker_ok(&[
        "ps",
        "-a",
        "--filter",
        "name=hello",
        "--format",
        "{{.Status}}",
    ]);
    assert!(st.starts_with("Exited (0) "), "{st}");

    let v = &d.docker_ok(&["inspect", "hello"]);
    let v: serde_json::Value = serde_json::from_str(v).expect("inspect json");
    let c = &v[0];
    assert_eq!(c["Id"], id.as_str());
    assert_eq!(c["Name"], "/hello");
    assert_eq!(c["Path"], "sh");
    assert_eq!(c["Args"][0], "-c");
    assert_eq!(c["State"]["Status"], "exited");
    assert_eq!(c["State"]["Running"], false);
    assert_eq!(c["State"]["ExitCode"], 0);
    assert_eq!(c["Driver"], "overlay2");
    assert_eq!(c["Platform"], "linux");
    assert_eq!(c["Config"]["Labels"]["app"], "web");
    assert_eq!(c["Config"]["Hostname"], &id[..12]);
    assert!(c["ExecIDs"].is_null());
    assert_eq!(c["Image"], d.image_id(&b).as_str());
    assert_eq!(c["HostConfig"]["NetworkMode"], "bridge");
    assert!(c["State"]["StartedAt"]
        .as_str()
        .unwrap_or("")
        .starts_with("20"));

    let info = d.docker_ok(&["info", "--format", "{{.Containers}} {{.ContainersStopped}}"]);
    assert_eq!(info.trim(), "2 2");

    // Name conflicts are dockerd's 409.
    let e = d.docker_fails(&["create", "--name", "hello", &b, "true"]);
    assert!(
        e.contains("Conflict. The container name \"/hello\" is already in use by container"),
        "{e}"
    );
    // Options we do not serve are named.
    let e = d.docker_fails(&["create", "-p", "53:53/sctp", &b, "true"]);
    assert!(e.contains("publishing sctp ports is not supported"), "{e}");
    let e = d.docker_fails(&["create", "-m", "1m", &b, "true"]);
    assert!(e.contains("Minimum memory limit allowed is 6MB"), "{e}");

    let pruned = d.docker_ok(&["container", "prune", "-f"]);
    assert!(pruned.contains(&id), "{pruned}");
    assert!(d.docker_ok(&["ps", "-aq"]).trim().is_empty());
    assert_clean(&d, &[id, three.trim().to_string()]);
}

#[test]
fn stop_kill_start_and_rm() {
    let d = daemon();
    let b = busybox();
    let id = d.docker_ok(&["run", "-d", "--name", "sleeper", &b, "sleep", "300"]);
    let id = id.trim().to_string();

    // Start of a running container: 304.
    let r = d.raw("POST", "/v1.47/containers/sleeper/start", b"");
    assert_eq!(r.status, 304);

    // rm of a running container: dockerd's 409.
    let e = d.docker_fails(&["rm", "sleeper"]);
    assert!(
        e.contains(&format!("You cannot remove a running container {id}. Stop the container before attempting removal or force remove")),
        "{e}"
    );

    // sleep as PID 1 has no SIGTERM handler, so the kernel ignores
    // SIGTERM: stop waits -t seconds, then SIGKILL (137), as with dockerd.
    let t0 = Instant::now();
    d.docker_ok(&["stop", "-t", "1", "sleeper"]);
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    let st = &d.docker_ok(&["inspect", "sleeper"]);
    let st: serde_json::Value = serde_json::from_str(st).expect("json");
    assert_eq!(st[0]["State"]["ExitCode"], 137);
    assert_eq!(st[0]["State"]["Status"], "exited");
    assert!(TestDaemon::container_cgroups(&id).is_empty());
    // Stop of a stopped container: 304.
    let r = d.raw("POST", "/v1.47/containers/sleeper/stop", b"");
    assert_eq!(r.status, 304);

    d.docker_ok(&["start", "sleeper"]);
    assert_eq!(d.docker_ok(&["ps", "-q", "--no-trunc"]).trim(), id);
    d.docker_ok(&["kill", "sleeper"]);
    assert_eq!(d.docker_ok(&["wait", "sleeper"]).trim(), "137");
    let e = d.docker_fails(&["kill", "sleeper"]);
    assert!(e.contains(&format!("Container {id} is not running")), "{e}");

    // A shell that traps TERM exits at once, with its own status.
    let term = d.docker_ok(&[
        "run",
        "-d",
        &b,
        "sh",
        "-c",
        "trap 'exit 143' TERM; while true; do sleep 0.1; done",
    ]);
    std::thread::sleep(Duration::from_millis(300));
    let t0 = Instant::now();
    d.docker_ok(&["stop", term.trim()]);
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    assert_eq!(d.docker_ok(&["wait", term.trim()]).trim(), "143");

    let e = d.docker_fails(&["kill", "-s", "NOPE", term.trim()]);
    assert!(e.contains("Invalid signal: NOPE"), "{e}");

    d.docker_ok(&["start", "sleeper"]);
    // A waiter for removal is answered when rm -f kills and removes it.
    let sock = d.socket();
    let waiter = std::thread::spawn(move || {
        let s = std::os::unix::net::UnixStream::connect(sock).expect("connect");
        common::http::request(
            s,
            "POST",
            "/v1.47/containers/sleeper/wait?condition=removed",
            &[],
            b"",
        )
        .expect("wait")
    });
    std::thread::sleep(Duration::from_millis(300));
    d.docker_ok(&["rm", "-f", "sleeper"]);
    let r = waiter.join().expect("waiter");
    assert_eq!(r.status, 200);
    let body: serde_json::Value = serde_json::from_slice(&r.body).expect("wait json");
    assert_eq!(body, serde_json::json!({"StatusCode": 137, "Error": null}));
    let e = d.docker_fails(&["container", "inspect", "sleeper"]);
    assert!(e.contains("No such container: sleeper"), "{e}");
    assert_clean(&d, &[id, term.trim().to_string()]);
}

#[test]
fn missing_entrypoint_fails_with_127_and_leaves_nothing() {
    let d = daemon();
    let b = busybox();
    let out = d.docker(&["run", "-d", "--name", "broken", &b, "nonexistent"]);
    assert_eq!(out.status.code(), Some(127), "{out:?}");
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        e.contains("exec: \"nonexistent\": executable file not found in $PATH"),
        "{e}"
    );
    let st = &d.docker_ok(&["inspect", "broken"]);
    let st: serde_json::Value = serde_json::from_str(st).expect("json");
    assert_eq!(st[0]["State"]["Status"], "created");
    assert_eq!(st[0]["State"]["ExitCode"], 127);
    let id = st[0]["Id"].as_str().unwrap_or_default().to_string();
    assert!(d.live_monitors().is_empty());
    assert!(TestDaemon::container_cgroups(&id).is_empty());
    let root = d.root().to_string_lossy().into_owned();
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    assert!(!mounts.contains(&root), "mounts left under {root}");
    assert_clean(&d, &[id]);
}

#[test]
fn running_container_survives_a_daemon_crash() {
    let mut d = daemon();
    let b = busybox();
    let id = d.docker_ok(&["run", "-d", "--name", "survivor", &b, "sleep", "300"]);
    let id = id.trim().to_string();
    d.kill9_and_restart();
    let ps = d.docker_ok(&["ps", "--format", "{{.Names}} {{.State}}"]);
    assert_eq!(ps.trim(), "survivor running");
    // A graceful restart neither waits for nor stops the container.
    let t0 = Instant::now();
    d.restart();
    assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
    let ps = d.docker_ok(&["ps", "--format", "{{.Names}} {{.State}}"]);
    assert_eq!(ps.trim(), "survivor running");
    d.docker_ok(&["stop", "-t", "1", "survivor"]);
    assert_eq!(d.docker_ok(&["wait", "survivor"]).trim(), "137");

    // An exit while the daemon is down is recorded at the next start.
    d.docker_ok(&["start", "survivor"]);
    d.kill9();
    let (monitor, _) = {
        let st = std::fs::read(
            d.exec_root()
                .join("containers")
                .join(&id)
                .join("state.json"),
        )
        .expect("state");
        let st: serde_json::Value = serde_json::from_slice(&st).expect("json");
        (st["monitor_pid"].as_i64().unwrap_or(0) as i32, ())
    };
    let init: i32 = {
        let st = std::fs::read(
            d.exec_root()
                .join("containers")
                .join(&id)
                .join("state.json"),
        )
        .expect("state");
        let st: serde_json::Value = serde_json::from_slice(&st).expect("json");
        st["pid"].as_i64().unwrap_or(0) as i32
    };
    assert!(init > 0);
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(init),
        nix::sys::signal::Signal::SIGKILL,
    );
    common::wait_until(Duration::from_secs(5), || !common::process_alive(monitor));
    d.start_again();
    let st = d.docker_ok(&[
        "inspect",
        "-f",
        "{{.State.Status}} {{.State.ExitCode}}",
        "survivor",
    ]);
    assert_eq!(st.trim(), "exited 137");
    assert_clean(&d, &[id]);
}

#[test]
fn rmi_of_an_image_in_use_is_refused() {
    let d = daemon();
    let b = busybox();
    let image = d.image_id(&b);
    let short = &image.trim_start_matches("sha256:")[..12];
    let stopped = d.docker_ok(&["create", &b, "true"]);
    let e = d.docker_fails(&["rmi", short]);
    assert!(
        e.contains(&format!(
            "conflict: unable to delete {short} (must be forced) - image is being used by stopped container {}",
            &stopped.trim()[..12]
        )),
        "{e}"
    );
    let e = d.docker_fails(&["rmi", &b]);
    assert!(e.contains("(must force) - container"), "{e}");
    let running = d.docker_ok(&["run", "-d", &b, "sleep", "300"]);
    let e = d.docker_fails(&["rmi", "-f", short]);
    assert!(
        e.contains(&format!(
            "conflict: unable to delete {short} (cannot be forced) - image is being used by running container {}",
            &running.trim()[..12]
        )),
        "{e}"
    );
    d.docker_ok(&["rm", "-f", running.trim(), stopped.trim()]);
    d.docker_ok(&["rmi", &b]);
    assert_clean(
        &d,
        &[stopped.trim().to_string(), running.trim().to_string()],
    );
}

#[test]
fn run_attached_prints_output_and_exit_code() {
    let d = daemon();
    let b = busybox();
    let out = d.docker(&["run", "--name", "hi", &b, "echo", "hi"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hi\n");

    // stdout and stderr stay apart; the exit code comes through.
    let out = d.docker(&["run", &b, "sh", "-c", "echo out; echo err >&2; exit 3"]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "err\n");

    // stdin reaches the process and its end closes the process's stdin.
    let out = d.docker_stdin(&["run", "-i", &b, "cat"], b"hi\n");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hi\n");

    // Without Upgrade headers: 200 and stdcopy frames in the body.
    let r = d.raw(
        "POST",
        "/v1.47/containers/hi/attach?logs=1&stdout=1&stderr=1",
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.header("Content-Type"),
        Some("application/vnd.docker.multiplexed-stream")
    );
    assert_eq!(r.body, b"\x01\x00\x00\x00\x00\x00\x00\x03hi\n");

    let r = d.raw("POST", "/containers/nope/attach?stream=1", b"");
    assert_eq!(r.status, 404, "{}", r.text());
    assert_clean(&d, &[]);
}
