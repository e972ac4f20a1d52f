//! Volumes and mounts through the stock docker CLI: the volume commands,
//! named volumes shared by containers, binds (rw, ro, made when missing),
//! tmpfs, first-use copy of the image's content, `rm -v`, volumes in use,
//! bad specifications, and a failed create leaving no volume behind.

mod common;

use std::fs;
use std::path::Path;

use common::{lines, registry, TestDaemon};

fn busybox() -> String {
    format!("{}/busybox", registry())
}

/// A daemon with busybox pulled.
fn daemon() -> TestDaemon {
    let d = TestDaemon::start();
    d.pull(&busybox());
    d
}

fn volume_names(d: &TestDaemon) -> Vec<String> {
    lines(&d.docker_ok(&["volume", "ls", "-q"]))
}

/// `Action Actor.ID` of the volume events so far (the daemon's history).
fn volume_events(d: &TestDaemon) -> Vec<String> {
    let now = chrono_now();
    lines(&d.docker_ok(&[
        "events",
        "--since",
        "0",
        "--until",
        &now,
        "--filter",
        "type=volume",
        "--format",
        "{{.Action}} {{.Actor.ID}}",
    ]))
}

fn chrono_now() -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock");
    format!("{}.{:09}", t.as_secs(), t.subsec_nanos())
}

fn inspect_mounts(d: &TestDaemon, c: &str) -> serde_json::Value {
    let out = d.docker_ok(&["inspect", "--format", "{{json .Mounts}}", c]);
    serde_json::from_str(out.trim()).expect("mounts json")
}

#[test]
fn volume_commands_create_ls_inspect_rm_prune() {
    let d = TestDaemon::start();
    assert_eq!(
        d.docker_ok(&["volume", "create", "--label", "team=a", "data"])
            .trim(),
        "data"
    );
    let v: serde_json::Value =
        serde_json::from_str(&d.docker_ok(&["volume", "inspect", "data"])).expect("json");
    let v = &v[0];
    assert_eq!(v["Name"], "data");
    assert_eq!(v["Driver"], "local");
    assert_eq!(v["Scope"], "local");
    assert_eq!(v["Labels"]["team"], "a");
    let mp = d.data_root().join("volumes/data/_data");
    assert_eq!(v["Mountpoint"], mp.display().to_string());
    assert!(mp.is_dir());
    assert!(
        v["CreatedAt"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{v}"
    );
    // An existing name comes back as it is.
    d.docker_ok(&["volume", "create", "data"]);
    assert_eq!(volume_names(&d), ["data"]);

    // An anonymous volume (API: empty name) gets 64 hex and dockerd's label.
    let r = d.raw("POST", "/v1.47/volumes/create", b"{}");
    assert_eq!(r.status, 201, "{}", r.text());
    let anon = r.json()["Name"].as_str().expect("name").to_string();
    assert_eq!(anon.len(), 64);
    assert!(r.json()["Labels"]
        .as_object()
        .is_some_and(|l| l.contains_key("com.docker.volume.anonymous")));

    let f = d.docker_ok(&["volume", "ls", "-q", "--filter", "label=team=a"]);
    assert_eq!(lines(&f), ["data"]);
    let f = d.docker_ok(&["volume", "ls", "-q", "--filter", "dangling=true"]);
    assert_eq!(lines(&f).len(), 2);
    let r = d.raw("GET", "/v1.47/volumes", b"");
    assert_eq!(r.status, 200);
    assert!(r.json()["Warnings"].is_null());
    assert_eq!(r.json()["Volumes"].as_array().map(Vec::len), Some(2));

    // Errors in dockerd's words.
    let e = d.docker_fails(&["volume", "inspect", "nope"]);
    assert!(e.contains("get nope: no such volume"), "{e}");
    let r = d.raw("GET", "/v1.47/volumes/nope", b"");
    assert_eq!(r.status, 404);
    let r = d.raw("POST", "/v1.47/volumes/create", br#"{"Name":"a/b"}"#);
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(
        r.text()
            .contains("create a/b: \\\"a/b\\\" includes invalid characters"),
        "{}",
        r.text()
    );
    let e = d.docker_fails(&[
        "volume",
        "create",
        "-o",
        "type=nfs",
        "-o",
        "device=:/x",
        "nv",
    ]);
    assert!(e.contains("type=nfs"), "{e}");
    let e = d.docker_fails(&["volume", "create", "-o", "foo=1", "nv"]);
    assert!(e.contains("invalid option: \"foo\""), "{e}");
    assert_eq!(volume_names(&d).len(), 2, "refused creates leave nothing");

    // Prune takes anonymous volumes only, unless --all.
    let out = d.docker_ok(&["volume", "prune", "-f"]);
    assert!(out.contains(&anon), "{out}");
    assert_eq!(volume_names(&d), ["data"]);
    let out = d.docker_ok(&["volume", "prune", "-f", "--all", "--filter", "label=team=b"]);
    assert!(!out.contains("data"), "{out}");
    d.docker_ok(&["volume", "prune", "-f", "--all"]);
    assert!(volume_names(&d).is_empty());
    assert!(!d.data_root().join("volumes/data").exists());

    d.docker_ok(&["volume", "create", "gone"]);
    d.docker_ok(&["volume", "rm", "gone"]);
    let e = d.docker_fails(&["volume", "rm", "gone"]);
    assert!(e.contains("no such volume"), "{e}");
    d.docker_ok(&["volume", "rm", "-f", "gone"]);

    let ev = volume_events(&d);
    for want in [
        "create data".to_string(),
        format!("create {anon}"),
        format!("destroy {anon}"),
        "destroy data".into(),
        "destroy gone".into(),
    ] {
        assert!(ev.contains(&want), "{want:?} not in {ev:?}");
    }
}

#[test]
fn named_volume_is_shared_and_in_use_volumes_stay() {
    let d = daemon();
    let b = busybox();
    d.docker_ok(&[
        "run",
        "--name",
        "wr",
        "-v",
        "shared:/data",
        &b,
        "sh",
        "-c",
        "echo hi > /data/f",
    ]);
    let out = d.docker_ok(&[
        "run",
        "--name",
        "rd",
        "-v",
        "shared:/data:ro",
        &b,
        "cat",
        "/data/f",
    ]);
    assert_eq!(out, "hi\n");
    let out = d.docker_ok(&[
        "run",
        "--name",
        "fr",
        "--volumes-from",
        "wr:ro",
        &b,
        "cat",
        "/data/f",
    ]);
    assert_eq!(out, "hi\n");

    let m = inspect_mounts(&d, "wr");
    let m = &m[0];
    assert_eq!(m["Type"], "volume");
    assert_eq!(m["Name"], "shared");
    assert_eq!(m["Destination"], "/data");
    assert_eq!(m["Driver"], "local");
    assert_eq!(m["Mode"], "z");
    assert_eq!(m["RW"], true);
    assert_eq!(
        m["Source"],
        d.data_root()
            .join("volumes/shared/_data")
            .display()
            .to_string()
    );
    assert_eq!(inspect_mounts(&d, "rd")[0]["RW"], false);
    assert_eq!(inspect_mounts(&d, "fr")[0]["RW"], false);
    let binds = d.docker_ok(&["inspect", "--format", "{{json .HostConfig.Binds}}", "rd"]);
    assert_eq!(binds.trim(), r#"["shared:/data:ro"]"#);

    // docker ps: the volume filter and the Mounts column.
    let ps = d.docker_ok(&[
        "ps",
        "-a",
        "--filter",
        "volume=shared",
        "--format",
        "{{.Names}}",
    ]);
    let mut names = lines(&ps);
    names.sort();
    assert_eq!(names, ["fr", "rd", "wr"]);
    let ps = d.docker_ok(&[
        "ps",
        "-a",
        "--filter",
        "name=^wr$",
        "--format",
        "{{.Mounts}}",
    ]);
    assert_eq!(ps.trim(), "shared");
    let ps = d.docker_ok(&["ps", "-a", "--filter", "volume=/data", "-q"]);
    assert_eq!(lines(&ps).len(), 3);

    // In use by a container (even a stopped one): 409.
    let r = d.raw("DELETE", "/v1.47/volumes/shared", b"");
    assert_eq!(r.status, 409, "{}", r.text());
    let ids = lines(&d.docker_ok(&["ps", "-aq", "--no-trunc", "--filter", "name=^wr$"]));
    assert!(
        r.text()
            .contains(&format!("remove shared: volume is in use - [{}", ids[0])),
        "{}",
        r.text()
    );
    let e = d.docker_fails(&["volume", "rm", "-f", "shared"]);
    assert!(e.contains("volume is in use"), "{e}");
    assert!(d
        .docker_ok(&["volume", "ls", "-q", "--filter", "dangling=true"])
        .trim()
        .is_empty());
    d.docker_ok(&["rm", "-v", "wr", "rd", "fr"]);
    // Named volumes survive rm -v.
    assert_eq!(volume_names(&d), ["shared"]);
    d.docker_ok(&["volume", "rm", "shared"]);

    let ev = volume_events(&d);
    assert!(ev.contains(&"mount shared".to_string()), "{ev:?}");
    assert!(ev.contains(&"unmount shared".to_string()), "{ev:?}");
}

#[test]
fn bind_mounts_rw_ro_and_missing_sources() {
    let d = daemon();
    let b = busybox();
    let host = d.root().join("host");
    fs::create_dir_all(&host).unwrap();
    fs::write(host.join("in"), "from host\n").unwrap();
    let hs = host.display().to_string();
    let out = d.docker_ok(&[
        "run",
        "-v",
        &format!("{hs}:/x"),
        &b,
        "sh",
        "-c",
        "cat /x/in; echo out > /x/out",
    ]);
    assert_eq!(out, "from host\n");
    assert_eq!(fs::read_to_string(host.join("out")).unwrap(), "out\n");

    let out = d.docker(&[
        "run",
        "-v",
        &format!("{hs}:/x:ro"),
        &b,
        "sh",
        "-c",
        "echo no > /x/ro",
    ]);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Read-only file system"),
        "{out:?}"
    );
    assert!(!host.join("ro").exists());
    let out = d.docker_ok(&[
        "run",
        "--mount",
        &format!("type=bind,source={hs},target=/y,readonly"),
        &b,
        "grep",
        " /y ",
        "/proc/mounts",
    ]);
    assert!(out.contains(" ro,"), "{out}");

    // -v makes a missing host directory; --mount refuses it.
    let made = d.root().join("made/deep");
    let ms = made.display().to_string();
    d.docker_ok(&["run", "-v", &format!("{ms}:/m"), &b, "true"]);
    assert!(made.is_dir());
    let missing = d.root().join("missing").display().to_string();
    let e = d.docker_fails(&[
        "run",
        "--mount",
        &format!("type=bind,source={missing},target=/m"),
        &b,
        "true",
    ]);
    assert!(
        e.contains(&format!(
            "invalid mount config for type \"bind\": bind source path does not exist: {missing}"
        )),
        "{e}"
    );
    assert!(!Path::new(&missing).exists());

    let m = d.docker_ok(&["ps", "-aq"]);
    let first = lines(&m).pop().expect("a container");
    let mounts = inspect_mounts(&d, &first);
    assert_eq!(mounts[0]["Type"], "bind");
    assert_eq!(mounts[0]["Source"], hs.as_str());
    assert_eq!(mounts[0]["Propagation"], "rprivate");
    assert!(mounts[0].get("Name").is_none(), "{mounts}");
}

#[test]
fn tmpfs_mounts_show_in_proc_mounts() {
    let d = daemon();
    let b = busybox();
    let out = d.docker_ok(&[
        "run",
        "--tmpfs",
        "/run:size=1m",
        &b,
        "grep",
        " /run ",
        "/proc/mounts",
    ]);
    assert!(out.starts_with("tmpfs /run tmpfs "), "{out}");
    for opt in ["nosuid", "nodev", "noexec", "size=1024k"] {
        assert!(out.contains(opt), "{opt} missing: {out}");
    }
    let out = d.docker_ok(&[
        "run",
        "--mount",
        "type=tmpfs,destination=/t,tmpfs-size=2m",
        &b,
        "sh",
        "-c",
        "grep ' /t ' /proc/mounts; echo x > /t/f && cat /t/f",
    ]);
    assert!(
        out.contains("tmpfs /t tmpfs rw,") && out.contains("size=2048k"),
        "{out}"
    );
    assert!(out.ends_with("x\n"), "{out}");
    // --tmpfs mounts are not listed, --mount ones are.
    let ids = lines(&d.docker_ok(&["ps", "-aq"]));
    assert_eq!(inspect_mounts(&d, &ids[0])[0]["Type"], "tmpfs");
    assert_eq!(inspect_mounts(&d, &ids[1]), serde_json::json!([]));

    // A tmpfs volume is shared while in use and empty afterwards.
    d.docker_ok(&[
        "volume",
        "create",
        "-o",
        "type=tmpfs",
        "-o",
        "device=tmpfs",
        "-o",
        "o=size=1m",
        "tv",
    ]);
    let out = d.docker_ok(&[
        "run",
        "-v",
        "tv:/v",
        &b,
        "sh",
        "-c",
        "grep ' /v ' /proc/mounts; echo t > /v/f; cat /v/f",
    ]);
    assert!(
        out.contains("tmpfs /v tmpfs") && out.contains("size=1024k"),
        "{out}"
    );
    let data = d.data_root().join("volumes/tv/_data");
    assert!(!data.join("f").exists(), "unmounted once no container runs");
}

#[test]
fn new_volumes_get_the_image_content_unless_nocopy() {
    let d = daemon();
    let b = busybox();
    let out = d.docker_ok(&["run", "-v", "etc:/etc", &b, "cat", "/etc/passwd"]);
    assert!(out.starts_with("root:x:0:0:"), "{out}");
    let data = d.data_root().join("volumes/etc/_data");
    assert!(data.join("passwd").is_file());
    let ls = d.docker_ok(&["run", "-v", "etc:/e", &b, "ls", "/e"]);
    assert!(lines(&ls).contains(&"group".to_string()), "{ls}");
    // Modes and owners come along.
    let img = d.docker_ok(&["run", &b, "stat", "-c", "%a %u", "/etc", "/etc/passwd"]);
    let vol = d.docker_ok(&[
        "run",
        "-v",
        "etc:/etc",
        &b,
        "stat",
        "-c",
        "%a %u",
        "/etc",
        "/etc/passwd",
    ]);
    assert_eq!(img, vol);

    // An anonymous volume on /bin keeps the shell working.
    let out = d.docker_ok(&["run", "-v", "/bin", &b, "sh", "-c", "ls /bin | grep -c ."]);
    assert!(out.trim().parse::<u32>().is_ok_and(|n| n > 100), "{out}");

    let out = d.docker(&["run", "-v", "blank:/etc:nocopy", &b, "cat", "/etc/passwd"]);
    assert_ne!(out.status.code(), Some(0), "{out:?}");
    assert!(!d.data_root().join("volumes/blank/_data/passwd").exists());
}

#[test]
fn rm_v_removes_anonymous_volumes_only() {
    let d = daemon();
    let b = busybox();
    let id = d.docker_ok(&["create", "-v", "/anon", "-v", "keep:/keep", &b, "true"]);
    let id = id.trim();
    let mounts = inspect_mounts(&d, id);
    let anon = mounts
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["Destination"] == "/anon")
        .expect("anonymous mount");
    let anon_name = anon["Name"].as_str().unwrap().to_string();
    assert_eq!(anon_name.len(), 64);
    assert_eq!(anon["Mode"], "");
    let vols = volume_names(&d);
    assert!(
        vols.contains(&anon_name) && vols.contains(&"keep".to_string()),
        "{vols:?}"
    );
    d.docker_ok(&["rm", "-v", id]);
    assert_eq!(volume_names(&d), ["keep"]);
    assert!(!d.data_root().join("volumes").join(&anon_name).exists());

    // Without -v the anonymous volume stays (prune finds it).
    let id = d.docker_ok(&["create", "-v", "/anon", &b, "true"]);
    d.docker_ok(&["rm", id.trim()]);
    assert_eq!(volume_names(&d).len(), 2);
    d.docker_ok(&["volume", "prune", "-f"]);
    assert_eq!(volume_names(&d), ["keep"]);
}

/// An image that declares `VOLUME /data` over content of its own.
#[test]
fn image_volumes_become_anonymous_volumes_with_the_image_content() {
    let d = daemon();
    let img = format!("{}/volume", registry());
    d.pull(&img);
    let id = d.docker_ok(&[
        "create",
        &img,
        "sh",
        "-c",
        "cat /data/seed.txt; echo more > /data/added",
    ]);
    let id = id.trim();
    let mounts = inspect_mounts(&d, id);
    let m = &mounts[0];
    assert_eq!(mounts.as_array().map(Vec::len), Some(1), "{mounts}");
    assert_eq!(
        (&m["Type"], &m["Destination"]),
        (&"volume".into(), &"/data".into())
    );
    let name = m["Name"].as_str().expect("Name").to_string();
    assert_eq!(name.len(), 64, "{m}");
    assert!(volume_names(&d).contains(&name));
    let out = d.docker_ok(&["start", "-a", id]);
    assert_eq!(out, "seeded\n");
    let data = d.data_root().join("volumes").join(&name).join("_data");
    assert_eq!(fs::read_to_string(data.join("added")).unwrap(), "more\n");

    // A named volume on the same path takes the image's content instead,
    // and no anonymous volume is made for it.
    let before = volume_names(&d).len();
    let out = d.docker_ok(&[
        "run",
        "--rm",
        "-v",
        "named:/data",
        &img,
        "cat",
        "/data/seed.txt",
    ]);
    assert_eq!(out, "seeded\n");
    let after = volume_names(&d);
    assert_eq!(after.len(), before + 1, "{after:?}");
    assert!(after.contains(&"named".to_string()));

    // `--rm` takes the anonymous one along; `rm -v` too.
    let out = d.docker_ok(&["run", "--rm", &img, "ls", "/data"]);
    assert_eq!(out, "seed.txt\n");
    assert_eq!(volume_names(&d).len(), before + 1);
    d.docker_ok(&["rm", "-v", id]);
    assert!(!volume_names(&d).contains(&name));
    assert!(!data.exists());
}

#[test]
fn bad_specs_are_400_and_failed_creates_leave_no_volume() {
    let d = daemon();
    let b = busybox();
    for (args, want) in [
        (vec!["-v", "/a:/b:bogus"], "invalid mode: bogus".to_string()),
        (
            vec!["-v", "/a:/"],
            "invalid volume specification: '/a:/': invalid mount config for type \"bind\": invalid specification: destination can't be '/'".into(),
        ),
        (vec!["-v", "/a:/x", "-v", "/c:/x"], "Duplicate mount point: /x".into()),
        (
            vec!["-v", "a/b:/x"],
            "create a/b: \"a/b\" includes invalid characters for a local volume name".into(),
        ),
        (vec!["--tmpfs", "/t:bogus"], "invalid tmpfs options for /t".into()),
        (vec!["--volumes-from", "nosuch"], "No such container: nosuch".into()),
    ] {
        let mut full = vec!["create"];
        full.extend(args.iter().copied());
        full.extend([b.as_str(), "true"]);
        let e = d.docker_fails(&full);
        assert!(e.contains(&want), "{args:?}: {e}");
    }
    let body = br#"{"Image":"IMG","HostConfig":{"Binds":["/a:/b:bogus"]}}"#;
    let body = String::from_utf8_lossy(body).replace("IMG", &b);
    let r = d.raw("POST", "/v1.47/containers/create", body.as_bytes());
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("invalid mode: bogus"));

    // A name conflict after the volumes were made: they go again.
    d.docker_ok(&["create", "--name", "taken", &b, "true"]);
    let e = d.docker_fails(&[
        "create", "--name", "taken", "-v", "/anon", "-v", "fresh:/f", &b, "true",
    ]);
    assert!(e.contains("is already in use"), "{e}");
    assert!(volume_names(&d).is_empty(), "{:?}", volume_names(&d));
    assert_eq!(lines(&d.docker_ok(&["ps", "-aq"])).len(), 1);
    let dirs = fs::read_dir(d.data_root().join("volumes"))
        .map(|r| r.count())
        .unwrap_or(0);
    assert_eq!(dirs, 0, "volume folders left");
}
