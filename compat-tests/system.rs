//! System endpoints and daemon lifecycle: `docker version`, `docker info`,
//! `/_ping`, API version prefixes, error shapes, flags vs daemon.json,
//! pidfile and socket handling, graceful and crash shutdowns.

mod common;

use std::os::unix::fs::{FileTypeExt, MetadataExt};

use common::{registry, DaemonOptions, TestDaemon};
use serde_json::Value;

#[test]
fn docker_version_reports_api_versions() {
    let d = TestDaemon::start();
    let v: Value =
        serde_json::from_str(&d.docker_ok(&["version", "--format", "{{json .}}"])).unwrap();
    let server = &v["Server"];
    assert_eq!(server["ApiVersion"], "1.47", "Server: {server}");
    assert_eq!(server["MinAPIVersion"], "1.24", "Server: {server}");
    assert_eq!(server["Os"], "linux");
    assert_eq!(server["Arch"], common::host_arch());
    assert!(
        server["KernelVersion"]
            .as_str()
            .is_some_and(|k| !k.is_empty()),
        "KernelVersion: {server}"
    );
    assert!(
        server["Components"]
            .as_array()
            .is_some_and(|c| !c.is_empty()),
        "Components: {server}"
    );
    // The human view the CLI prints (it negotiated down to 1.47).
    let text = d.docker_ok(&["version"]);
    assert!(
        text.contains("API version:") && text.contains("1.47 (minimum version 1.24)"),
        "docker version:\n{text}"
    );
}

#[test]
fn docker_info_reports_real_state() {
    let d = TestDaemon::start();
    let info = |d: &TestDaemon| -> Value {
        serde_json::from_str(&d.docker_ok(&["info", "--format", "{{json .}}"])).unwrap()
    };
    let before = info(&d);
    assert_eq!(before["Images"], 0, "fresh daemon: {before}");
    assert_eq!(before["Driver"], "overlay2");
    let cg = before["CgroupVersion"].as_str().unwrap_or_default();
    assert!(cg == "1" || cg == "2", "CgroupVersion {cg:?}");
    assert!(before["CgroupDriver"]
        .as_str()
        .is_some_and(|s| !s.is_empty()));
    assert!(before["NCPU"].as_u64().is_some_and(|n| n >= 1));
    assert!(before["MemTotal"].as_u64().is_some_and(|n| n > 0));
    assert_eq!(
        before["DockerRootDir"].as_str().unwrap(),
        d.data_root().to_str().unwrap()
    );
    let mirrors = before["RegistryConfig"]["Mirrors"].to_string();
    assert!(
        mirrors.contains(&format!("http://{}", registry())),
        "RegistryConfig.Mirrors: {mirrors}"
    );

    // Counts are real: one pull later, one image.
    d.pull(&format!("{}/busybox", registry()));
    assert_eq!(info(&d)["Images"], 1);

    let text = d.docker_ok(&["info"]);
    for want in [
        "Images: 1".to_string(),
        "Storage Driver: overlay2".to_string(),
        format!("Cgroup Version: {cg}"),
        format!("Docker Root Dir: {}", d.data_root().display()),
        "Registry Mirrors:".to_string(),
        format!("http://{}", registry()),
    ] {
        assert!(text.contains(&want), "docker info lacks {want:?}:\n{text}");
    }
}

#[test]
fn debug_flag_shows_in_info() {
    let d = TestDaemon::start_with(&["--debug"], "{}");
    let dbg = d.docker_ok(&["info", "--format", "{{.Debug}}"]);
    assert_eq!(dbg.trim(), "true");
}

/// dockerd's `/_ping` headers, for GET and HEAD alike.
fn assert_ping_headers(r: &common::RawResponse) {
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("Api-Version"), Some("1.47"), "{r:?}");
    assert_eq!(r.header("Ostype"), Some("linux"), "{r:?}");
    assert_eq!(r.header("Docker-Experimental"), Some("false"), "{r:?}");
    assert!(
        r.header("Builder-Version").is_some_and(|v| !v.is_empty()),
        "Builder-Version: {r:?}"
    );
    assert_eq!(
        r.header("Cache-Control"),
        Some("no-cache, no-store, must-revalidate"),
        "{r:?}"
    );
    assert_eq!(r.header("Pragma"), Some("no-cache"), "{r:?}");
}

#[test]
fn ping_get_and_head() {
    let d = TestDaemon::start();
    let get = d.raw("GET", "/_ping", b"");
    assert_ping_headers(&get);
    assert_eq!(get.text(), "OK");
    let head = d.raw("HEAD", "/_ping", b"");
    assert_ping_headers(&head);
    assert!(head.body.is_empty(), "HEAD must have no body: {head:?}");
    // Versioned too.
    assert_ping_headers(&d.raw("GET", "/v1.47/_ping", b""));
}

#[test]
fn versioned_paths() {
    let d = TestDaemon::start();
    for v in ["1.24", "1.40", "1.47"] {
        let r = d.raw("GET", &format!("/v{v}/version"), b"");
        assert_eq!(r.status, 200, "/v{v}/version: {}", r.text());
        assert_eq!(r.json()["ApiVersion"], "1.47");
    }

    let too_new = d.raw("GET", "/v1.99/version", b"");
    assert_eq!(too_new.status, 400, "{}", too_new.text());
    assert_eq!(
        too_new.message(),
        "client version 1.99 is too new. Maximum supported API version is 1.47"
    );

    let too_old = d.raw("GET", "/v1.12/version", b"");
    assert_eq!(too_old.status, 400, "{}", too_old.text());
    let msg = too_old.message();
    assert!(
        msg.contains("1.12") && msg.contains("too old") && msg.contains("1.24"),
        "too-old message: {msg}"
    );

    let malformed = d.raw("GET", "/v1.x/version", b"");
    assert_eq!(malformed.status, 400, "{}", malformed.text());
    assert!(!malformed.message().is_empty());
}

#[test]
fn unknown_route_is_404_json() {
    let d = TestDaemon::start();
    for path in ["/no/such/route", "/v1.47/no/such/route"] {
        let r = d.raw("GET", path, b"");
        assert_eq!(r.status, 404, "{path}: {}", r.text());
        assert!(!r.message().is_empty(), "{path}: {}", r.text());
        assert!(
            r.header("Content-Type")
                .is_some_and(|c| c.contains("application/json")),
            "{path}: {r:?}"
        );
    }
}

#[test]
fn unserved_endpoint_is_501_naming_it() {
    let d = TestDaemon::start();
    let r = d.raw("GET", "/plugins", b"");
    assert_eq!(r.status, 501, "{}", r.text());
    let msg = r.message();
    assert!(
        msg.contains("/plugins"),
        "message should name the endpoint: {msg}"
    );
    // Container actions not served yet answer the same way.
    let r = d.raw("GET", "/v1.47/containers/abc/changes", b"");
    assert_eq!(r.status, 501, "{}", r.text());
    assert!(
        r.message().contains("/containers/abc/changes"),
        "{}",
        r.text()
    );
    // And the CLI surfaces it instead of showing an empty list.
    let err = d.docker_fails(&["plugin", "ls"]);
    assert!(err.contains("plugins"), "docker plugin ls stderr: {err}");
}

#[test]
fn socket_is_mode_0660() {
    let d = TestDaemon::start();
    let md = std::fs::metadata(d.socket()).unwrap();
    assert!(md.file_type().is_socket());
    assert_eq!(
        md.mode() & 0o7777,
        0o660,
        "socket mode {:o}",
        md.mode() & 0o7777
    );
    // Group `docker` when that group exists, else root's.
    let want_gid = nix::unistd::Group::from_name("docker")
        .ok()
        .flatten()
        .map(|g| g.gid.as_raw())
        .unwrap_or(0);
    assert_eq!(md.gid(), want_gid);
}

#[test]
fn flag_and_config_file_conflict_names_the_key() {
    // The harness always passes --registry-mirror and --data-root as flags.
    for (json, extra, key) in [
        (
            r#"{"registry-mirrors": ["http://127.0.0.1:5/"]}"#,
            vec![],
            "registry-mirrors",
        ),
        (r#"{"data-root": "/tmp/elsewhere"}"#, vec![], "data-root"),
        (r#"{"debug": true}"#, vec!["--debug".to_string()], "debug"),
    ] {
        let (st, log) = TestDaemon::start_expecting_failure(DaemonOptions {
            args: extra,
            daemon_json: json.into(),
            mirror: true,
        });
        assert!(!st.success(), "{json}: exit {st}");
        assert!(
            log.contains(key),
            "{json}: message should name {key:?}:\n{log}"
        );
        assert!(
            log.contains("both as a flag and in the configuration file"),
            "{json}: dockerd's wording expected:\n{log}"
        );
    }
}

#[test]
fn unknown_config_key_refused() {
    let (st, log) = TestDaemon::start_expecting_failure(DaemonOptions {
        daemon_json: r#"{"no-such-option": 1}"#.into(),
        ..Default::default()
    });
    assert!(!st.success());
    assert!(log.contains("no-such-option"), "{log}");
}

#[test]
fn invalid_config_json_refused() {
    let (st, log) = TestDaemon::start_expecting_failure(DaemonOptions {
        daemon_json: "{not json".into(),
        ..Default::default()
    });
    assert!(!st.success());
    assert!(!log.trim().is_empty(), "no message at all");
}

#[test]
fn second_daemon_on_same_pidfile_refused() {
    let first = TestDaemon::start();
    let pidfile = first.pidfile();
    let recorded = std::fs::read_to_string(&pidfile).expect("pidfile written");
    assert_eq!(recorded.trim(), first.pid().unwrap().to_string());

    // Own socket and data root, same pidfile.
    let (st, log) = TestDaemon::start_expecting_failure(DaemonOptions {
        args: vec!["--pidfile".into(), pidfile.display().to_string()],
        ..Default::default()
    });
    assert!(!st.success(), "second daemon exit {st}");
    assert!(
        log.contains("pid"),
        "message should mention the pidfile:\n{log}"
    );
    // The first daemon is untouched and its pidfile still names it.
    assert_eq!(first.raw("GET", "/_ping", b"").status, 200);
    assert_eq!(std::fs::read_to_string(&pidfile).unwrap(), recorded);
}

#[test]
fn sigterm_stops_gracefully() {
    let mut d = TestDaemon::start();
    assert!(d.socket().exists() && d.pidfile().exists());
    let st = d.stop();
    assert!(
        st.success(),
        "exit status after SIGTERM: {st}\n{}",
        d.log_tail(20)
    );
    assert!(!d.socket().exists(), "socket left behind");
    assert!(!d.pidfile().exists(), "pidfile left behind");
}

#[test]
fn stale_socket_and_pidfile_after_kill9_do_not_block_start() {
    let mut d = TestDaemon::start();
    d.kill9();
    // A crash leaves both behind: the case the next start must handle.
    assert!(d.socket().exists(), "expected a stale socket after kill -9");
    assert!(
        d.pidfile().exists(),
        "expected a stale pidfile after kill -9"
    );
    d.start_again();
    assert_eq!(d.raw("GET", "/_ping", b"").status, 200);
    assert_eq!(
        std::fs::read_to_string(d.pidfile()).unwrap().trim(),
        d.pid().unwrap().to_string()
    );
    d.docker_ok(&["version"]);
}
