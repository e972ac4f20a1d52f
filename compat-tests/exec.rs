//! `docker exec` through the stock CLI, docker-py and bollard: commands,
//! exit codes, stdin, TTY sessions under `script`, user/workdir/env,
//! `-d`, `--privileged`, the exec API's errors and events, output with
//! back-pressure, and execs across a daemon `kill -9` + restart.

mod common;

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{registry, TestDaemon};
use futures::StreamExt;
use serde_json::{json, Value};

fn busybox() -> String {
    format!("{}/busybox", registry())
}

fn daemon() -> TestDaemon {
    let d = TestDaemon::start();
    d.pull(&busybox());
    d
}

/// `docker run -d --name NAME busybox sleep 1000` plus `extra` run flags.
fn run_sleeper(d: &TestDaemon, name: &str, extra: &[&str]) -> String {
    let b = busybox();
    let mut args = vec!["run", "-d", "--name", name];
    args.extend_from_slice(extra);
    args.extend_from_slice(&[b.as_str(), "sleep", "1000"]);
    d.docker_ok(&args).trim().to_string()
}

fn exec_dirs(d: &TestDaemon) -> Vec<PathBuf> {
    match std::fs::read_dir(d.exec_root().join("execs")) {
        Ok(rd) => rd.flatten().map(|e| e.path()).collect(),
        Err(_) => vec![],
    }
}

/// Exec monitors of this daemon still alive.
fn live_exec_monitors(d: &TestDaemon) -> Vec<i32> {
    exec_dirs(d)
        .iter()
        .filter_map(|p| std::fs::read_to_string(p.join("monitor.pid")).ok())
        .filter_map(|s| s.trim().parse().ok())
        .filter(|&p| common::process_alive(p))
        .collect()
}

/// Removes every container and checks that nothing is left: no container
/// or exec monitor, no exec folder, no cgroup.
fn cleanup(d: &TestDaemon) {
    let all = d.docker_ok(&["ps", "-aq", "--no-trunc"]);
    let ids: Vec<&str> = all.lines().filter(|l| !l.is_empty()).collect();
    for id in &ids {
        d.docker_ok(&["rm", "-f", id]);
    }
    let gone = common::wait_until(Duration::from_secs(10), || {
        d.live_monitors().is_empty() && exec_dirs(d).is_empty()
    });
    assert!(
        gone,
        "left: monitors {:?}, exec monitors {:?}, exec dirs {:?}",
        d.live_monitors(),
        live_exec_monitors(d),
        exec_dirs(d)
    );
    for id in ids {
        assert!(
            TestDaemon::container_cgroups(id).is_empty(),
            "cgroups of {id} left"
        );
    }
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `GET /exec/{id}/json`.
fn exec_inspect(d: &TestDaemon, id: &str) -> Value {
    let r = d.raw("GET", &format!("/exec/{id}/json"), b"");
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    serde_json::from_slice(&r.body).expect("exec inspect JSON")
}

fn exec_ids(d: &TestDaemon, container: &str) -> Vec<String> {
    let out = d.docker_ok(&["inspect", "-f", "{{json .ExecIDs}}", container]);
    serde_json::from_str::<Option<Vec<String>>>(out.trim())
        .expect("ExecIDs JSON")
        .unwrap_or_default()
}

#[test]
fn exec_commands_exit_codes_stdin_user_workdir_env_privileged() {
    let d = daemon();
    let id = run_sleeper(&d, "box", &["-e", "BASE=from-run", "--hostname", "boxhost"]);

    assert_eq!(d.docker_ok(&["exec", "box", "echo", "hello"]), "hello\n");
    // stdout and stderr kept apart, the exit code passed through.
    let out = d.docker(&["exec", "box", "sh", "-c", "echo out; echo err >&2; exit 5"]);
    assert_eq!(out.status.code(), Some(5));
    assert_eq!(stdout(&out), "out\n");
    assert_eq!(stderr(&out), "err\n");
    // Not found: 127; not executable: 126; dockerd's message either way.
    let out = d.docker(&["exec", "box", "nosuch"]);
    assert_eq!(out.status.code(), Some(127), "{out:?}");
    let text = stdout(&out) + &stderr(&out);
    assert!(
        text.contains("exec: \"nosuch\": executable file not found in $PATH"),
        "{text}"
    );
    let out = d.docker(&["exec", "box", "/etc/passwd"]);
    assert_eq!(out.status.code(), Some(126), "{out:?}");

    // -i with piped stdin: its end ends the process's stdin.
    assert_eq!(
        d.docker_stdin_ok(&["exec", "-i", "box", "cat"], b"hi\n"),
        "hi\n"
    );
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let out = d.docker_stdin(&["exec", "-i", "box", "md5sum"], &big);
    let local = Command::new("md5sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            c.stdin.take().expect("stdin").write_all(&big)?;
            c.wait_with_output()
        })
        .expect("md5sum");
    assert_eq!(
        stdout(&out).split_whitespace().next(),
        stdout(&local).split_whitespace().next(),
        "stdin bytes changed on the way"
    );

    // The container's namespaces, environment and cgroup.
    assert_eq!(d.docker_ok(&["exec", "box", "hostname"]), "boxhost\n");
    let env = d.docker_ok(&["exec", "-e", "FOO=bar", "box", "env"]);
    for want in ["BASE=from-run", "FOO=bar", "HOSTNAME=boxhost", "HOME=/root"] {
        assert!(env.lines().any(|l| l == want), "{want} missing in {env}");
    }
    let ps = d.docker_ok(&["exec", "box", "cat", "/proc/1/cmdline"]);
    assert!(
        ps.starts_with("sleep"),
        "pid 1 is not the container's: {ps}"
    );
    let cg = d.docker_ok(&["exec", "box", "cat", "/proc/self/cgroup"]);
    assert!(cg.contains(&id), "not in the container's cgroup: {cg}");

    // -u, -w.
    assert_eq!(
        d.docker_ok(&[
            "exec",
            "-u",
            "nobody",
            "box",
            "sh",
            "-c",
            "id -u; echo $HOME"
        ]),
        "65534\n/home\n"
    );
    assert_eq!(
        d.docker_ok(&["exec", "-u", "1234:5", "box", "id", "-u"]),
        "1234\n"
    );
    let out = d.docker(&["exec", "-u", "ghost", "box", "true"]);
    assert_eq!(out.status.code(), Some(126));
    assert!(
        (stdout(&out) + &stderr(&out)).contains("unable to find user ghost"),
        "{out:?}"
    );
    assert_eq!(d.docker_ok(&["exec", "-w", "/tmp", "box", "pwd"]), "/tmp\n");

    // Capabilities: the container's set, all of them with --privileged.
    let caps = |args: &[&str]| {
        let mut a = vec!["exec"];
        a.extend_from_slice(args);
        a.extend_from_slice(&["box", "grep", "CapEff", "/proc/self/status"]);
        d.docker_ok(&a)
    };
    assert_eq!(caps(&[]), "CapEff:\t00000000a80425fb\n");
    let all = caps(&["--privileged"]);
    let mask = u64::from_str_radix(all.trim().trim_start_matches("CapEff:\t"), 16).expect("hex");
    assert!(mask & (1 << 21) != 0, "no CAP_SYS_ADMIN with --privileged");

    // -d returns at once and the process runs on.
    d.docker_ok(&["exec", "-d", "box", "sh", "-c", "echo done > /tmp/flag"]);
    let done = common::wait_until(Duration::from_secs(10), || {
        d.docker(&["exec", "box", "cat", "/tmp/flag"])
            .status
            .success()
    });
    assert!(done, "detached exec did not run");

    cleanup(&d);
}

#[test]
fn exec_api_errors_inspect_and_events() {
    let d = daemon();
    let b = busybox();
    let since = common::unix_now().to_string();
    let id = run_sleeper(&d, "apibox", &[]);

    // Errors in dockerd's words.
    let e = d.docker_fails(&["exec", "nosuchbox", "true"]);
    assert!(e.contains("No such container: nosuchbox"), "{e}");
    let r = d.raw("POST", "/containers/apibox/exec", br#"{"Cmd":[]}"#);
    assert_eq!(r.status, 400);
    assert!(String::from_utf8_lossy(&r.body).contains("No exec command specified"));
    let r = d.raw("GET", "/exec/0123abc/json", b"");
    assert_eq!(r.status, 404);
    assert!(String::from_utf8_lossy(&r.body).contains("No such exec instance: 0123abc"));
    let r = d.raw("POST", "/exec/0123abc/start", br#"{"Detach":true}"#);
    assert_eq!(r.status, 404);
    d.docker_ok(&["pause", "apibox"]);
    let e = d.docker_fails(&["exec", "apibox", "true"]);
    assert!(
        e.contains(&format!(
            "Container {id} is paused, unpause the container before exec"
        )),
        "{e}"
    );
    d.docker_ok(&["unpause", "apibox"]);
    d.docker_ok(&["create", "--name", "idle", &b, "true"]);
    let e = d.docker_fails(&["exec", "idle", "true"]);
    assert!(e.contains("is not running"), "{e}");

    // An exec's life through inspect; ExecIDs while it has not finished.
    assert!(exec_ids(&d, "apibox").is_empty());
    let r = d.raw(
        "POST",
        "/containers/apibox/exec",
        br#"{"Cmd":["sh","-c","read x; exit 4"],"AttachStdin":true,"AttachStdout":true,"User":"nobody"}"#,
    );
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let v: Value = serde_json::from_slice(&r.body).expect("json");
    let eid = v["Id"].as_str().expect("Id").to_string();
    let ins = exec_inspect(&d, &eid);
    assert_eq!(ins["Running"], false);
    assert_eq!(ins["ExitCode"], Value::Null);
    assert_eq!(ins["ContainerID"], id.as_str());
    assert_eq!(ins["OpenStdin"], true);
    assert_eq!(ins["OpenStderr"], false);
    assert_eq!(ins["ProcessConfig"]["entrypoint"], "sh");
    assert_eq!(ins["ProcessConfig"]["arguments"][1], "read x; exit 4");
    assert_eq!(ins["ProcessConfig"]["user"], "nobody");
    assert_eq!(exec_ids(&d, "apibox"), vec![eid.clone()]);
    // Started detached: stdin is then /dev/null, so `read` ends at once.
    let r = d.raw("POST", &format!("/exec/{eid}/start"), br#"{"Detach":true}"#);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let ended = common::wait_until(Duration::from_secs(10), || {
        exec_inspect(&d, &eid)["ExitCode"] == 4
    });
    assert!(ended, "{}", exec_inspect(&d, &eid));
    let ins = exec_inspect(&d, &eid);
    assert_eq!(ins["Running"], false);
    assert_eq!(ins["Pid"], 0);
    assert!(exec_ids(&d, "apibox").is_empty());
    let r = d.raw("POST", &format!("/exec/{eid}/start"), br#"{"Detach":true}"#);
    assert_eq!(r.status, 409, "{}", String::from_utf8_lossy(&r.body));

    // A running exec: Running, Pid on the host, a second start refused.
    let r = d.raw(
        "POST",
        "/containers/apibox/exec",
        br#"{"Cmd":["sleep","1000"]}"#,
    );
    let v: Value = serde_json::from_slice(&r.body).expect("json");
    let long = v["Id"].as_str().expect("Id").to_string();
    let r = d.raw(
        "POST",
        &format!("/exec/{long}/start"),
        br#"{"Detach":true}"#,
    );
    assert_eq!(r.status, 200);
    let ins = exec_inspect(&d, &long);
    assert_eq!(ins["Running"], true, "{ins}");
    let pid = ins["Pid"].as_i64().expect("Pid") as i32;
    assert!(common::process_alive(pid), "exec pid {pid} not alive");
    let r = d.raw(
        "POST",
        &format!("/exec/{long}/start"),
        br#"{"Detach":true}"#,
    );
    assert_eq!(r.status, 409);
    assert!(String::from_utf8_lossy(&r.body)
        .contains(&format!("Error: Exec command {long} is already running")));
    let r = d.raw("POST", &format!("/exec/{long}/resize?h=10&w=20"), b"");
    assert_eq!(r.status, 200);
    assert_eq!(exec_ids(&d, "apibox"), vec![long.clone()]);

    // Events: exec_create, exec_start, exec_die with the exit code.
    let until = (common::unix_now() + 1).to_string();
    let ev = d.docker_ok(&[
        "events",
        "--since",
        &since,
        "--until",
        &until,
        "--filter",
        "container=apibox",
        "--format",
        "{{.Action}}|{{index .Actor.Attributes \"execID\"}}|{{index .Actor.Attributes \"exitCode\"}}",
    ]);
    for want in [
        format!("exec_create: sh -c read x; exit 4|{eid}|"),
        format!("exec_start: sh -c read x; exit 4|{eid}|"),
        format!("exec_die|{eid}|4"),
        format!("exec_start: sleep 1000|{long}|"),
    ] {
        assert!(ev.lines().any(|l| l == want), "{want} missing in:\n{ev}");
    }

    // When the container stops, as with dockerd: execs that never ran or
    // were still running are forgotten (404); a finished one stays
    // inspectable (until the five-minute clean-up has seen it twice).
    let r = d.raw("POST", "/containers/apibox/exec", br#"{"Cmd":["true"]}"#);
    let v: Value = serde_json::from_slice(&r.body).expect("json");
    let unstarted = v["Id"].as_str().expect("Id").to_string();
    assert_eq!(exec_inspect(&d, &unstarted)["CanRemove"], false);
    d.docker_ok(&["stop", "-t", "0", "apibox"]);
    let r = d.raw("GET", &format!("/exec/{unstarted}/json"), b"");
    assert_eq!(r.status, 404, "{}", String::from_utf8_lossy(&r.body));
    // The running one was killed with the container: its exit is
    // recorded if its monitor saw it first, else it is forgotten.
    let r = d.raw("GET", &format!("/exec/{long}/json"), b"");
    if r.status == 200 {
        let ins: Value = serde_json::from_slice(&r.body).expect("json");
        assert_eq!(
            (&ins["Running"], &ins["ExitCode"]),
            (&json!(false), &json!(137))
        );
    } else {
        assert_eq!(r.status, 404, "{}", String::from_utf8_lossy(&r.body));
    }
    let ins = exec_inspect(&d, &eid);
    assert_eq!(ins["ExitCode"], 4, "{ins}");
    assert_eq!(ins["CanRemove"], false, "{ins}");
    assert!(
        !exec_dirs(&d)
            .iter()
            .any(|p| p.ends_with(&long) || p.ends_with(&unstarted)),
        "{:?}",
        exec_dirs(&d)
    );

    // The exec goes with its container; so does its process.
    d.docker_ok(&["rm", "-f", "apibox"]);
    assert!(
        !common::process_alive(pid) || {
            common::wait_until(Duration::from_secs(5), || !common::process_alive(pid))
        }
    );
    let r = d.raw("GET", &format!("/exec/{eid}/json"), b"");
    assert_eq!(r.status, 404);
    cleanup(&d);
}

#[test]
fn interactive_tty_session_and_client_loss() {
    let d = daemon();
    run_sleeper(&d, "ttybox", &[]);
    let mut child = d
        .docker_in_terminal("exec -it ttybox sh")
        .spawn()
        .expect("script");
    {
        let mut stdin = child.stdin.take().expect("stdin");
        stdin
            .write_all(b"echo sum-$((40+2)); tty; exit 3\n")
            .expect("write");
        let status = common::wait_timeout(&mut child, Duration::from_secs(30));
        drop(stdin);
        assert!(status.is_some(), "the -it session did not end");
    }
    let out = child.wait_with_output().expect("output");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("sum-42"), "{text}");
    // A prompt, and a pty of the container's own devpts.
    assert!(text.contains("/ # "), "no prompt: {text}");
    assert!(
        text.lines().any(|l| l.trim().starts_with("/dev/pts/")),
        "no pty: {text}"
    );
    assert_eq!(out.status.code(), Some(3), "{text}");

    // Without -i the CLI still gets a TTY (no framing, one stream).
    let out = d.docker(&["exec", "-t", "ttybox", "sh", "-c", "echo err >&2"]);
    assert_eq!(stdout(&out), "err\r\n");

    // A TTY session that loses its client is hung up (SIGHUP).
    let mut child = d
        .docker_in_terminal("exec -it ttybox sh -c 'echo ready; exec sleep 1000'")
        .spawn()
        .expect("script");
    let mut so = child.stdout.take().expect("stdout");
    let mut seen = Vec::new();
    let mut buf = [0u8; 256];
    while !String::from_utf8_lossy(&seen).contains("ready") {
        let n = so.read(&mut buf).expect("read");
        assert!(
            n > 0,
            "session ended early: {}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buf[..n]);
    }
    let ids = exec_ids(&d, "ttybox");
    assert_eq!(ids.len(), 1, "{ids:?}");
    let _ = child.kill();
    let _ = child.wait();
    let hung_up = common::wait_until(Duration::from_secs(10), || {
        exec_inspect(&d, &ids[0])["Running"] == false
    });
    assert!(hung_up, "{}", exec_inspect(&d, &ids[0]));
    assert_eq!(exec_inspect(&d, &ids[0])["ExitCode"], 129, "SIGHUP");

    // Without a TTY, losing the client does not end the process.
    let mut cli = d
        .docker_cmd(&[
            "exec",
            "ttybox",
            "sh",
            "-c",
            "echo ready; while [ ! -e /tmp/go ]; do sleep 0.1; done; echo ok > /tmp/survived",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("docker exec");
    let mut line = [0u8; 6];
    cli.stdout
        .take()
        .expect("stdout")
        .read_exact(&mut line)
        .expect("ready");
    let _ = cli.kill();
    let _ = cli.wait();
    d.docker_ok(&["exec", "ttybox", "touch", "/tmp/go"]);
    let survived = common::wait_until(Duration::from_secs(10), || {
        d.docker(&["exec", "ttybox", "cat", "/tmp/survived"])
            .status
            .success()
    });
    assert!(survived, "the process died with its client");
    cleanup(&d);
}

#[test]
fn output_streams_with_back_pressure_and_flat_daemon_memory() {
    let d = daemon();
    run_sleeper(&d, "bigbox", &[]);
    let pid = d.pid().expect("daemon pid");
    let hwm = || -> u64 {
        let st = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
        st.lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .expect("VmHWM")
    };
    // Warm up (threads, buffers), then measure the peak's growth.
    d.docker_ok(&["exec", "bigbox", "head", "-c", "1000000", "/dev/zero"]);
    let before = hwm();
    const SIZE: u64 = 200 << 20;
    let mut cli = d
        .docker_cmd(&[
            "exec",
            "bigbox",
            "head",
            "-c",
            &SIZE.to_string(),
            "/dev/zero",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("docker exec");
    let mut so = cli.stdout.take().expect("stdout");
    let mut total = 0u64;
    let mut buf = vec![0u8; 1 << 16];
    // A slow start: the process waits for us meanwhile, nothing is lost.
    let mut first = vec![0u8; 10];
    so.read_exact(&mut first).expect("first bytes");
    total += 10;
    loop {
        let n = so.read(&mut buf).expect("read");
        if n == 0 {
            break;
        }
        assert!(buf[..n].iter().all(|&b| b == 0), "corrupted output");
        total += n as u64;
    }
    assert!(cli.wait().expect("wait").success());
    assert_eq!(total, SIZE, "bytes lost or added");
    let growth_kb = hwm().saturating_sub(before);
    assert!(
        growth_kb < 10 * 1024,
        "daemon peak RSS grew by {growth_kb} KiB"
    );
    cleanup(&d);
}

#[test]
fn execs_survive_a_daemon_kill_and_report_their_exit() {
    let mut d = daemon();
    let cid = run_sleeper(&d, "crashbox", &[]);
    // Two detached execs waiting for a file each.
    let waiter = |file: &str, code: u8| {
        format!("while [ ! -e /tmp/{file} ]; do sleep 0.05; done; exit {code}")
    };
    d.docker_ok(&["exec", "-d", "crashbox", "sh", "-c", &waiter("one", 7)]);
    let first = exec_ids(&d, "crashbox");
    assert_eq!(first.len(), 1);
    d.docker_ok(&["exec", "-d", "crashbox", "sh", "-c", &waiter("two", 9)]);
    let second: Vec<String> = exec_ids(&d, "crashbox")
        .into_iter()
        .filter(|i| !first.contains(i))
        .collect();
    assert_eq!(second.len(), 1);
    let (one, two) = (first[0].clone(), second[0].clone());
    let monitor_of = |id: &str| -> i32 {
        std::fs::read_to_string(d.exec_root().join("execs").join(id).join("monitor.pid"))
            .expect("exec monitor.pid")
            .trim()
            .parse()
            .expect("pid")
    };
    let two_monitor = monitor_of(&two);

    let init = d.docker_ok(&["inspect", "-f", "{{.State.Pid}}", &cid]);
    d.kill9();
    // `two` ends while the daemon is down (its file written through the
    // container's root as the host sees it).
    std::fs::write(format!("/proc/{}/root/tmp/two", init.trim()), b"").expect("write");
    let ended = common::wait_until(Duration::from_secs(10), || {
        !common::process_alive(two_monitor)
    });
    assert!(ended, "exec two did not end");
    d.start_again();

    // Exec into the container started before the crash; that ends `one`.
    assert_eq!(
        d.docker_ok(&["exec", "crashbox", "echo", "still"]),
        "still\n"
    );
    d.docker_ok(&["exec", "crashbox", "touch", "/tmp/one"]);
    let done = common::wait_until(Duration::from_secs(10), || {
        exec_inspect(&d, &one)["ExitCode"] == 7
    });
    assert!(done, "{}", exec_inspect(&d, &one));
    let ins = exec_inspect(&d, &two);
    assert_eq!(ins["ExitCode"], 9, "{ins}");
    assert_eq!(ins["Running"], false);
    cleanup(&d);
}

#[tokio::test]
async fn bollard_exec_with_output_console_size_and_exit_code() {
    use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
    let d = daemon();
    run_sleeper(&d, "bolbox", &[]);
    let docker = d.bollard();
    let exec = docker
        .create_exec(
            "bolbox",
            CreateExecOptions {
                cmd: Some(vec!["sh", "-c", "echo out; echo err >&2; exit 6"]),
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                ..Default::default()
            },
        )
        .await
        .expect("create_exec");
    let (mut out, mut err) = (String::new(), String::new());
    match docker
        .start_exec(&exec.id, None::<StartExecOptions>)
        .await
        .expect("start_exec")
    {
        StartExecResults::Attached { mut output, .. } => {
            while let Some(msg) = output.next().await {
                match msg.expect("frame") {
                    bollard::container::LogOutput::StdOut { message } => {
                        out.push_str(&String::from_utf8_lossy(&message))
                    }
                    bollard::container::LogOutput::StdErr { message } => {
                        err.push_str(&String::from_utf8_lossy(&message))
                    }
                    other => panic!("unexpected frame {other:?}"),
                }
            }
        }
        StartExecResults::Detached => panic!("not attached"),
    }
    assert_eq!((out.as_str(), err.as_str()), ("out\n", "err\n"));
    let ins = docker.inspect_exec(&exec.id).await.expect("inspect_exec");
    assert_eq!(ins.exit_code, Some(6));
    assert_eq!(ins.running, Some(false));

    // A TTY exec resized while it runs.
    let exec = docker
        .create_exec(
            "bolbox",
            CreateExecOptions {
                cmd: Some(vec!["sh", "-c", "read x; stty size"]),
                attach_stdin: Some(true),
                attach_stdout: Some(true),
                tty: Some(true),
                ..Default::default()
            },
        )
        .await
        .expect("create_exec");
    let opts = StartExecOptions {
        tty: true,
        ..Default::default()
    };
    let StartExecResults::Attached {
        mut output,
        mut input,
    } = docker
        .start_exec(&exec.id, Some(opts))
        .await
        .expect("start_exec")
    else {
        panic!("not attached");
    };
    docker
        .resize_exec(
            &exec.id,
            bollard::query_parameters::ResizeExecOptionsBuilder::new()
                .h(30)
                .w(100)
                .build(),
        )
        .await
        .expect("resize_exec");
    use tokio::io::AsyncWriteExt;
    input.write_all(b"go\n").await.expect("input");
    let mut text = String::new();
    while let Some(Ok(msg)) = output.next().await {
        text.push_str(&msg.to_string());
    }
    assert!(text.contains("30 100"), "{text:?}");
    cleanup(&d);
}

/// The Python venv with docker-py (made by `contrib/test.sh`).
fn python() -> PathBuf {
    let py = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/pyvenv/bin/python");
    assert!(
        py.exists(),
        "{} missing: run contrib/test.sh (it installs docker-py into target/pyvenv)",
        py.display()
    );
    py
}

#[test]
fn docker_py_exec_run_stream_demux_and_socket() {
    let d = daemon();
    run_sleeper(&d, "pybox", &[]);
    let script = r#"
import socket, sys, docker
c = docker.DockerClient(base_url=sys.argv[1], version="1.47").containers.get("pybox")
res = c.exec_run(["sh", "-c", "echo out; echo err >&2; echo out2"], stream=True, demux=True)
out, err = b"", b""
for o, e in res.output:
    out += o or b""
    err += e or b""
print("demux", repr(out), repr(err))
r = c.exec_run(["sh", "-c", "exit 3"])
print("code", r.exit_code)
sock = c.exec_run(["cat"], stdin=True, socket=True).output
raw = sock._sock
raw.sendall(b"ping\n")
raw.shutdown(socket.SHUT_WR)
data = b""
while True:
    chunk = raw.recv(4096)
    if not chunk:
        break
    data += chunk
# stdcopy: an 8-byte header per frame.
payload = b""
while data:
    size = int.from_bytes(data[4:8], "big")
    payload += data[8:8 + size]
    data = data[8 + size:]
print("socket", repr(payload))
"#;
    let out = common::run_timeout(
        {
            let mut c = Command::new(python());
            c.arg("-c").arg(script).arg(d.host());
            c
        },
        None,
        Duration::from_secs(60),
    );
    let text = stdout(&out);
    assert!(out.status.success(), "{text}\n{}", stderr(&out));
    assert!(text.contains("demux b'out\\nout2\\n' b'err\\n'"), "{text}");
    assert!(text.contains("code 3"), "{text}");
    assert!(text.contains("socket b'ping\\n'"), "{text}");
    cleanup(&d);
}

/// A reader that stops reading holds the process up: while it pauses, the
/// bytes the process has written but the reader has not read stay bounded
/// (pipes and socket buffers, not the whole output), and once it reads on,
/// every line comes, in order.
#[test]
fn a_slow_reader_slows_the_process_and_loses_nothing() {
    let d = daemon();
    run_sleeper(&d, "slowbox", &[]);
    const LINES: u64 = 6_000_000;
    let mut cli = d
        .docker_cmd(&["exec", "slowbox", "seq", "1", &LINES.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("docker exec");
    let so = cli.stdout.take().expect("stdout");
    let mut reader = std::io::BufReader::with_capacity(1 << 16, so);
    let mut read_bytes = 0u64;
    let mut next = 1u64;
    let mut line = String::new();
    let mut read_line = |reader: &mut std::io::BufReader<_>, read_bytes: &mut u64| -> bool {
        line.clear();
        let n = std::io::BufRead::read_line(reader, &mut line).expect("read");
        if n == 0 {
            return false;
        }
        *read_bytes += n as u64;
        assert_eq!(
            line.trim_end(),
            next.to_string(),
            "lost or reordered output"
        );
        next += 1;
        true
    };
    while read_bytes < 1 << 20 {
        assert!(read_line(&mut reader, &mut read_bytes));
    }
    // Pause. Without back-pressure `seq` would be done (~47 MB) by now.
    std::thread::sleep(Duration::from_secs(3));
    let top = d.docker_ok(&["top", "slowbox", "-eo", "pid,comm"]);
    let pid = top
        .lines()
        .find_map(|l| {
            let mut w = l.split_whitespace();
            let pid = w.next()?;
            (w.next()? == "seq").then(|| pid.to_string())
        })
        .unwrap_or_else(|| panic!("seq finished while nobody read its output:\n{top}"));
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).expect("/proc/pid/io");
    let written: u64 = io
        .lines()
        .find_map(|l| l.strip_prefix("wchar:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("wchar");
    let in_flight = written.saturating_sub(read_bytes + reader.buffer().len() as u64);
    assert!(
        in_flight < 16 << 20,
        "{in_flight} bytes written but unread while the reader paused"
    );
    while read_line(&mut reader, &mut read_bytes) {}
    assert_eq!(next, LINES + 1, "lines lost");
    assert!(cli.wait().expect("wait").success());
    cleanup(&d);
}
