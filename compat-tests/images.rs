//! The image side through the stock docker CLI: pull (tags, digests, mirror,
//! OCI, zstd, multi-arch), images/inspect/history, tag/rmi/prune,
//! save/load, import, events, and persistence across restarts.

mod common;

use std::collections::BTreeSet;

use common::{lines, pull_digest, registry, TestDaemon};
use serde_json::Value;

fn reg(name: &str) -> String {
    format!("{}/{name}", registry())
}

fn set(v: Vec<String>) -> BTreeSet<String> {
    v.into_iter().collect()
}

#[test]
fn pull_shows_progress_digest_and_status() {
    let d = TestDaemon::start();
    let name = reg("busybox");
    let out = d.pull(&name);
    assert!(out.contains("Pulling fs layer"), "pull output:\n{out}");
    assert!(out.contains("Pull complete"), "pull output:\n{out}");
    let digest = pull_digest(&out);
    assert!(
        digest.starts_with("sha256:") && digest.len() == 71,
        "{digest}"
    );
    // The digest is the registry's manifest digest, not something made up.
    assert_eq!(digest, common::registry_digest("busybox", "latest"));
    assert!(
        out.contains(&format!("Status: Downloaded newer image for {name}:latest")),
        "pull output:\n{out}"
    );

    let again = d.pull(&name);
    assert!(
        again.contains(&format!("Status: Image is up to date for {name}:latest")),
        "second pull:\n{again}"
    );
    assert!(
        !again.contains("Pull complete"),
        "second pull fetched again:\n{again}"
    );
}

#[test]
fn pull_streams_dockerd_progress_messages() {
    // The raw stream the CLI draws its bars from.
    let d = TestDaemon::start();
    let r = d.raw(
        "POST",
        &format!(
            "/v1.47/images/create?fromImage={}&tag=latest",
            reg("layers")
        ),
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let msgs = r.json_stream();
    let status_of = |m: &Value| m["status"].as_str().unwrap_or_default().to_string();
    let count = |s: &str| msgs.iter().filter(|m| status_of(m) == s).count();
    assert!(
        msgs.iter().all(|m| m.get("error").is_none()),
        "{}",
        r.text()
    );
    assert_eq!(count("Pulling fs layer"), 4, "{}", r.text());
    assert_eq!(count("Pull complete"), 4, "{}", r.text());
    for s in ["Verifying Checksum", "Download complete", "Extracting"] {
        assert!(count(s) >= 1, "no {s:?} message:\n{}", r.text());
    }
    // Downloading carries progressDetail the CLI turns into bars.
    let dl = msgs
        .iter()
        .find(|m| status_of(m) == "Downloading")
        .unwrap_or_else(|| panic!("no Downloading message:\n{}", r.text()));
    assert!(dl["progressDetail"]["current"].as_u64().is_some(), "{dl}");
    assert!(
        dl["progressDetail"]["total"]
            .as_u64()
            .is_some_and(|t| t > 0),
        "{dl}"
    );
    assert!(dl["id"].as_str().is_some_and(|id| id.len() == 12), "{dl}");
    let tail: Vec<String> = msgs.iter().map(status_of).collect();
    assert!(
        tail.iter().any(|s| s.starts_with("Digest: sha256:")),
        "{tail:?}"
    );
    assert_eq!(
        tail.last().unwrap(),
        &format!(
            "Status: Downloaded newer image for {}:latest",
            reg("layers")
        )
    );
}

#[test]
fn pull_through_mirror_as_docker_hub_name() {
    let d = TestDaemon::start();
    let out = d.pull("busybox");
    assert!(
        out.contains("Status: Downloaded newer image for busybox:latest"),
        "{out}"
    );
    let names = d.images(&[], "{{.Repository}}:{{.Tag}}");
    assert_eq!(names, vec!["busybox:latest"]);
    // Every spelling of the Hub name is the same image.
    let id = d.image_id("busybox");
    assert_eq!(d.image_id("docker.io/library/busybox:latest"), id);
    assert_eq!(d.image_id("library/busybox"), id);
    let again = d.pull("docker.io/library/busybox");
    assert!(again.contains("Image is up to date"), "{again}");
    let inspect = d.inspect("busybox");
    assert_eq!(inspect["RepoTags"], serde_json::json!(["busybox:latest"]));
    let digests = inspect["RepoDigests"].to_string();
    assert!(digests.contains("busybox@sha256:"), "{digests}");
}

#[test]
fn pull_by_digest() {
    let d = TestDaemon::start();
    let name = reg("busybox");
    let digest = pull_digest(&d.pull(&name));
    let id = d.image_id(&name);
    d.docker_ok(&["rmi", &name]);
    assert!(d.images(&["-q"], "{{.ID}}").is_empty());

    let by_digest = format!("{name}@{digest}");
    let out = d.pull(&by_digest);
    assert!(out.contains(&format!("Digest: {digest}")), "{out}");
    assert!(
        out.contains(&format!("Status: Downloaded newer image for {by_digest}")),
        "{out}"
    );
    assert_eq!(d.image_id(&by_digest), id);
    let inspect = d.inspect(&by_digest);
    assert_eq!(inspect["RepoDigests"], serde_json::json!([by_digest]));
    assert_eq!(inspect["RepoTags"], serde_json::json!([]));
    // A digest pull adds no tag: `docker images --digests` shows <none> + digest.
    let rows = d.images(&["--digests"], "{{.Repository}} {{.Tag}} {{.Digest}}");
    assert_eq!(rows, vec![format!("{name} <none> {digest}")]);
}

#[test]
fn pull_oci_zstd_and_multiarch() {
    let d = TestDaemon::start();
    for (image, layers) in [
        ("busybox-oci", 1),
        ("busybox-zstd", 1),
        ("multiarch", 2),
        ("multiarch-docker", 2),
    ] {
        let name = reg(image);
        d.pull(&name);
        let i = d.inspect(&name);
        assert_eq!(i["Architecture"], common::host_arch(), "{image}: {i}");
        assert_eq!(i["Os"], "linux", "{image}");
        // The host variant of the multi-arch images has 2 layers, the other 1.
        assert_eq!(
            i["RootFS"]["Layers"].as_array().unwrap().len(),
            layers,
            "{image}: {}",
            i["RootFS"]
        );
        if image.starts_with("multiarch") {
            // The unpacked top layer is the host's.
            let upper = i["GraphDriver"]["Data"]["UpperDir"].as_str().unwrap();
            let platform = std::fs::read_to_string(format!("{upper}/etc/platform")).unwrap();
            assert_eq!(platform.trim(), common::host_arch(), "{image}");
        }
    }
    // The OCI config's label made it through.
    let oci = d.inspect(&reg("busybox-oci"));
    assert_eq!(
        oci["Config"]["Labels"]["org.opencontainers.image.title"],
        "busybox-oci"
    );
    // busybox-oci and busybox-zstd unpack to the same diff as the multi-arch
    // images' first layer, and both multi-arch images share their second:
    // two chain IDs in all, each unpacked once.
    assert_eq!(d.layer_dirs().len(), 2, "{:?}", d.layer_dirs());
}

#[test]
fn images_filters_format_and_flags() {
    let d = TestDaemon::start();
    for image in ["busybox", "busybox-oci", "layers"] {
        d.pull(&reg(image));
    }
    // A dangling image: import twice under the same tag.
    let first = d
        .docker_stdin_ok(&["import", "-", "imp:1"], &common::tar_of(&[("a", b"one")]))
        .trim()
        .to_string();
    d.docker_stdin_ok(&["import", "-", "imp:1"], &common::tar_of(&[("a", b"two")]));

    let all = set(d.images(&[], "{{.Repository}}:{{.Tag}}"));
    let want: BTreeSet<String> = [
        format!("{}:latest", reg("busybox")),
        format!("{}:latest", reg("busybox-oci")),
        format!("{}:latest", reg("layers")),
        "imp:1".to_string(),
        "<none>:<none>".to_string(),
    ]
    .into();
    assert_eq!(all, want);

    let by_ref = d.images(
        &["--filter", &format!("reference={}", reg("busybox"))],
        "{{.Repository}}:{{.Tag}}",
    );
    assert_eq!(by_ref, vec![format!("{}:latest", reg("busybox"))]);
    let by_glob = set(d.images(
        &["--filter", &format!("reference={}*", reg("busybox"))],
        "{{.Repository}}",
    ));
    assert_eq!(by_glob, set(vec![reg("busybox"), reg("busybox-oci")]));
    let by_tag = d.images(&["--filter", "reference=imp:1"], "{{.Repository}}:{{.Tag}}");
    assert_eq!(by_tag, vec!["imp:1"]);

    let dangling = d.images(&["--filter", "dangling=true", "--no-trunc"], "{{.ID}}");
    assert_eq!(dangling, vec![first.clone()]);
    let not_dangling = d.images(&["--filter", "dangling=false"], "{{.Repository}}");
    assert_eq!(not_dangling.len(), 4, "{not_dangling:?}");

    let labelled = d.images(&["--filter", "label=test.layers=yes"], "{{.Repository}}");
    assert_eq!(labelled, vec![reg("layers")]);
    let labelled_key = d.images(&["--filter", "label=test.layers"], "{{.Repository}}");
    assert_eq!(labelled_key, vec![reg("layers")]);

    // -q: short IDs of every listed image; --no-trunc: full ones.
    let ids: BTreeSet<String> = set(d.images(&["-q", "--no-trunc"], "{{.ID}}"));
    assert_eq!(ids.len(), 5, "{ids:?}");
    let q = lines(&d.docker_ok(&["images", "-q"]));
    for short in &q {
        assert_eq!(short.len(), 12, "{q:?}");
        assert!(ids
            .iter()
            .any(|id| id["sha256:".len()..].starts_with(short.as_str())));
    }
    assert_eq!(set(q).len(), 5);
    // -a lists everything the plain listing does (we have no intermediates).
    let all_ids = set(lines(&d.docker_ok(&["images", "-a", "-q", "--no-trunc"])));
    assert!(all_ids.is_superset(&ids), "{all_ids:?} vs {ids:?}");

    // --digests shows the registry digest for pulled images, <none> for imports.
    let dig = lines(&d.docker_ok(&["images", "--digests"]));
    assert!(dig[0].contains("DIGEST"), "{dig:?}");
    let bb_digest = common::registry_digest("busybox", "latest");
    let rows = d.images(&["--digests"], "{{.Repository}}:{{.Tag}} {{.Digest}}");
    assert!(
        rows.contains(&format!("{}:latest {bb_digest}", reg("busybox"))),
        "{rows:?}"
    );
    assert!(rows.contains(&"imp:1 <none>".to_string()), "{rows:?}");
}

#[test]
fn image_inspect_fields() {
    let d = TestDaemon::start();
    let name = reg("layers");
    let digest = pull_digest(&d.pull(&name));
    let i = d.inspect(&name);
    let id = i["Id"].as_str().unwrap();
    assert!(id.starts_with("sha256:") && id.len() == 71, "{id}");
    assert_eq!(i["RepoTags"], serde_json::json!([format!("{name}:latest")]));
    assert_eq!(
        i["RepoDigests"],
        serde_json::json!([format!("{name}@{digest}")])
    );
    assert_eq!(i["Config"]["Cmd"], serde_json::json!(["sh"]));
    assert_eq!(i["Config"]["Labels"]["test.layers"], "yes");
    assert_eq!(i["RootFS"]["Type"], "layers");
    assert_eq!(i["RootFS"]["Layers"].as_array().unwrap().len(), 4);
    assert_eq!(i["GraphDriver"]["Name"], "overlay2");
    assert_eq!(i["Created"], "2026-01-01T00:00:00Z");
    // busybox plus a 1 MiB file: certainly more than 1 MiB unpacked.
    assert!(i["Size"].as_u64().unwrap() > 1 << 20, "Size {}", i["Size"]);
    // Short-ID and full-ID lookups find the same image.
    let short = &id["sha256:".len().."sha256:".len() + 12];
    assert_eq!(d.image_id(short), id);
    assert_eq!(d.image_id(id), id);
    // Unknown names fail with dockerd's wording.
    let err = d.docker_fails(&["image", "inspect", "no-such-image"]);
    assert!(err.contains("No such image"), "{err}");
}

#[test]
fn history_of_layers_image() {
    let d = TestDaemon::start();
    let name = reg("layers");
    d.pull(&name);
    let id = d.image_id(&name);
    let rows = lines(&d.docker_ok(&[
        "history",
        "--no-trunc",
        "--format",
        "{{.ID}}|{{.CreatedBy}}",
        &name,
    ]));
    // 4 layers + 3 empty-layer steps, newest first.
    assert_eq!(rows.len(), 7, "{rows:#?}");
    assert_eq!(rows[0], format!("{id}|/bin/sh -c #(nop)  CMD [\"sh\"]"));
    assert!(
        rows[1..].iter().all(|r| r.starts_with("<missing>|")),
        "{rows:#?}"
    );
    assert!(
        rows.iter()
            .any(|r| r.contains("rm /data/remove.txt && rm -rf /data/dir /opq/*")),
        "{rows:#?}"
    );
    assert!(
        rows.iter().any(|r| r.contains("LABEL test.layers=yes")),
        "{rows:#?}"
    );
    assert!(rows[6].contains("ADD file:"), "{rows:#?}");
    // The default table has the header and the sizes column.
    let table = d.docker_ok(&["history", &name]);
    assert!(table.starts_with("IMAGE"), "{table}");
    assert!(
        table.contains("CREATED BY") && table.contains("SIZE"),
        "{table}"
    );
}

#[test]
fn tag_and_rmi() {
    let d = TestDaemon::start();
    let name = reg("busybox");
    let digest = pull_digest(&d.pull(&name));
    let id = d.image_id(&name);
    d.docker_ok(&["tag", &name, "mytag:v1"]);
    // Tagging by short ID works as well.
    d.docker_ok(&[
        "tag",
        &id["sha256:".len().."sha256:".len() + 12],
        "other/name",
    ]);
    assert_eq!(d.image_id("mytag:v1"), id);
    assert_eq!(d.image_id("other/name:latest"), id);
    let tags = set(d.inspect(&name)["RepoTags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .collect());
    assert_eq!(
        tags,
        set(vec![
            format!("{name}:latest"),
            "mytag:v1".into(),
            "other/name:latest".into()
        ])
    );

    // One of several tags: untag only.
    let out = lines(&d.docker_ok(&["rmi", "mytag:v1"]));
    assert_eq!(out, vec!["Untagged: mytag:v1"]);
    let out = lines(&d.docker_ok(&["rmi", "other/name"]));
    assert_eq!(out, vec!["Untagged: other/name:latest"]);
    assert_eq!(d.image_id(&name), id);

    // The last tag: untag (tag and digest reference) and delete.
    let out = lines(&d.docker_ok(&["rmi", &name]));
    assert_eq!(out[0], format!("Untagged: {name}:latest"), "{out:?}");
    assert!(
        out.contains(&format!("Untagged: {name}@{digest}")),
        "{out:?}"
    );
    assert!(out.contains(&format!("Deleted: {id}")), "{out:?}");
    assert!(d.images(&["-a", "-q"], "{{.ID}}").is_empty());
    assert!(
        d.layer_dirs().is_empty(),
        "layers left: {:?}",
        d.layer_dirs()
    );
    let err = d.docker_fails(&["rmi", &name]);
    assert!(err.contains("No such image"), "{err}");
}

#[test]
fn rmi_by_id_with_two_repositories_needs_force() {
    let d = TestDaemon::start();
    let name = reg("busybox");
    d.pull(&name);
    let id = d.image_id(&name);
    d.docker_ok(&["tag", &name, "second/repo:x"]);
    let short = &id["sha256:".len().."sha256:".len() + 12];

    let err = d.docker_fails(&["rmi", short]);
    assert!(
        err.contains("image is referenced in multiple repositories"),
        "{err}"
    );
    assert!(err.contains("(must be forced)"), "{err}");
    let raw = d.raw("DELETE", &format!("/v1.47/images/{short}"), b"");
    assert_eq!(raw.status, 409, "{}", raw.text());
    assert!(raw
        .message()
        .contains("image is referenced in multiple repositories"));
    // Nothing was removed by the refused attempts.
    assert_eq!(d.image_id("second/repo:x"), id);

    let out = lines(&d.docker_ok(&["rmi", "-f", short]));
    assert!(out.contains(&format!("Untagged: {name}:latest")), "{out:?}");
    assert!(
        out.contains(&"Untagged: second/repo:x".to_string()),
        "{out:?}"
    );
    assert!(out.contains(&format!("Deleted: {id}")), "{out:?}");
    assert!(d.images(&["-a", "-q"], "{{.ID}}").is_empty());
}

#[test]
fn image_prune_dangling_then_all() {
    let d = TestDaemon::start();
    d.pull(&reg("busybox"));
    let old = d
        .docker_stdin_ok(&["import", "-", "imp:1"], &common::tar_of(&[("f", b"old")]))
        .trim()
        .to_string();
    let new = d
        .docker_stdin_ok(&["import", "-", "imp:1"], &common::tar_of(&[("f", b"new")]))
        .trim()
        .to_string();
    assert_ne!(old, new);
    assert_eq!(
        d.images(&["--filter", "dangling=true", "--no-trunc"], "{{.ID}}"),
        vec![old.clone()]
    );

    let out = d.docker_ok(&["image", "prune", "-f"]);
    assert!(out.contains(&format!("deleted: {old}")), "{out}");
    assert!(out.contains("Total reclaimed space:"), "{out}");
    assert!(d
        .images(&["--filter", "dangling=true"], "{{.ID}}")
        .is_empty());
    // Tagged images survive a plain prune.
    assert_eq!(d.images(&[], "{{.ID}}").len(), 2);

    let out = d.docker_ok(&["image", "prune", "-a", "-f"]);
    assert!(
        out.contains(&format!("untagged: {}:latest", reg("busybox"))),
        "{out}"
    );
    assert!(out.contains(&format!("deleted: {new}")), "{out}");
    assert!(d.images(&["-a", "-q"], "{{.ID}}").is_empty());
    assert!(d.layer_dirs().is_empty(), "{:?}", d.layer_dirs());
}

#[test]
fn save_load_round_trip_through_pipe() {
    let d = TestDaemon::start();
    let bb = reg("busybox");
    let layers = reg("layers");
    d.pull(&bb);
    d.pull(&layers);
    d.docker_ok(&["tag", &bb, "mytag:v1"]);
    let bb_id = d.image_id(&bb);
    let layers_inspect = d.inspect(&layers);

    let saved = d.docker(&["save", &bb, "mytag:v1", &layers]);
    assert!(
        saved.status.success(),
        "{}",
        String::from_utf8_lossy(&saved.stderr)
    );
    let tar = saved.stdout;
    // A docker-archive: manifest.json lists the repo tags.
    let manifest = tar_entry(&tar, "manifest.json").expect("manifest.json in the save tar");
    let manifest: Value = serde_json::from_slice(&manifest).unwrap();
    let repo_tags = manifest.to_string();
    assert!(
        repo_tags.contains("mytag:v1") && repo_tags.contains(&format!("{layers}:latest")),
        "{repo_tags}"
    );

    d.docker_ok(&["rmi", "-f", &bb_id]);
    d.docker_ok(&["rmi", &layers]);
    assert!(d.images(&["-a", "-q"], "{{.ID}}").is_empty());

    let out = d.docker_stdin_ok(&["load"], &tar);
    for want in [
        format!("Loaded image: {bb}:latest"),
        "Loaded image: mytag:v1".into(),
        format!("Loaded image: {layers}:latest"),
    ] {
        assert!(out.contains(&want), "load output lacks {want:?}:\n{out}");
    }
    assert_eq!(d.image_id(&bb), bb_id);
    assert_eq!(d.image_id("mytag:v1"), bb_id);
    let again = d.inspect(&layers);
    assert_eq!(again["Id"], layers_inspect["Id"]);
    assert_eq!(again["RootFS"], layers_inspect["RootFS"]);
    assert_eq!(again["Config"], layers_inspect["Config"]);
}

#[test]
fn save_to_file_and_load_from_file() {
    let d = TestDaemon::start();
    let name = reg("busybox-oci");
    d.pull(&name);
    let id = d.image_id(&name);
    let file = d.root().join("saved.tar");
    let file = file.to_str().unwrap();
    d.docker_ok(&["save", "-o", file, &name]);
    assert!(std::fs::metadata(file).unwrap().len() > 500_000);
    d.docker_ok(&["rmi", &name]);
    assert!(d.images(&["-q"], "{{.ID}}").is_empty());
    let out = d.docker_ok(&["load", "-i", file]);
    assert!(
        out.contains(&format!("Loaded image: {name}:latest")),
        "{out}"
    );
    assert_eq!(d.image_id(&name), id);
    // Loading the same archive again is harmless.
    d.docker_ok(&["load", "-i", file]);
    assert_eq!(d.images(&["-q"], "{{.ID}}").len(), 1);
}

#[test]
fn import_with_changes() {
    let d = TestDaemon::start();
    let tar = common::tar_of(&[("etc/hello", b"hi\n"), ("bin/tool", b"#!/bin/sh\n")]);
    let out = d.docker_stdin_ok(
        &[
            "import",
            "--change",
            r#"CMD ["/bin/sh"]"#,
            "--change",
            "ENV A=B",
            "-m",
            "imported for a test",
            "-",
            "imported:v1",
        ],
        &tar,
    );
    let id = out.trim();
    assert!(id.starts_with("sha256:") && id.len() == 71, "{out}");
    let i = d.inspect("imported:v1");
    assert_eq!(i["Id"], id);
    assert_eq!(i["Config"]["Cmd"], serde_json::json!(["/bin/sh"]));
    let env = i["Config"]["Env"].to_string();
    assert!(env.contains("A=B"), "Env: {env}");
    assert_eq!(i["RootFS"]["Layers"].as_array().unwrap().len(), 1);
    assert_eq!(i["Architecture"], common::host_arch());
    assert_eq!(i["RepoTags"], serde_json::json!(["imported:v1"]));
    let upper = i["GraphDriver"]["Data"]["UpperDir"].as_str().unwrap();
    assert_eq!(
        std::fs::read(format!("{upper}/etc/hello")).unwrap(),
        b"hi\n"
    );
    let hist = d.docker_ok(&["history", "--format", "{{.Comment}}", "imported:v1"]);
    assert!(hist.contains("imported for a test"), "{hist}");

    // From a file path too (the CLI streams it the same way).
    let path = d.root().join("rootfs.tar");
    std::fs::write(&path, common::tar_of(&[("x", b"y")])).unwrap();
    d.docker_ok(&["import", path.to_str().unwrap(), "fromfile:1"]);
    assert_eq!(
        d.inspect("fromfile:1")["RepoTags"],
        serde_json::json!(["fromfile:1"])
    );
}

#[test]
fn events_show_pull_tag_untag_delete() {
    let d = TestDaemon::start();
    let name = reg("busybox");
    let t0 = common::unix_now();
    d.pull(&name);
    let id = d.image_id(&name);
    d.docker_ok(&["tag", &name, "evtag:1"]);
    d.docker_ok(&["rmi", "evtag:1"]);
    d.docker_ok(&["rmi", &name]);
    // --until in the near future: the stream ends by itself.
    let t1 = common::unix_now() + 1;
    let since = t0.to_string();
    let until = t1.to_string();
    let out = d.docker_ok(&[
        "events",
        "--since",
        &since,
        "--until",
        &until,
        "--format",
        "{{json .}}",
    ]);
    let events: Vec<Value> = lines(&out)
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let actions: Vec<&str> = events
        .iter()
        .map(|e| e["Action"].as_str().unwrap_or_default())
        .collect();
    assert!(events.iter().all(|e| e["Type"] == "image"), "{out}");
    let pos = |a: &str| {
        actions
            .iter()
            .position(|x| *x == a)
            .unwrap_or_else(|| panic!("no {a:?} event in:\n{out}"))
    };
    assert!(pos("pull") < pos("tag"), "{actions:?}");
    assert!(pos("tag") < pos("untag"), "{actions:?}");
    assert!(pos("untag") < pos("delete"), "{actions:?}");
    let pull = &events[pos("pull")];
    assert_eq!(pull["Actor"]["ID"], format!("{name}:latest"), "{pull}");
    let tag = &events[pos("tag")];
    assert_eq!(tag["Actor"]["ID"], id, "{tag}");
    assert_eq!(tag["Actor"]["Attributes"]["name"], "evtag:1", "{tag}");
    // dockerd (overlay2 store) reports untag and delete by image ID.
    let untag = &events[pos("untag")];
    assert_eq!(untag["Actor"]["ID"], id, "{untag}");
    let delete = &events[pos("delete")];
    assert_eq!(delete["Actor"]["ID"], id, "{delete}");
    assert!(events
        .iter()
        .all(|e| e["time"].as_u64().is_some_and(|t| t >= t0 && t <= t1)));

    // Filters narrow the stream.
    let untags = lines(&d.docker_ok(&[
        "events",
        "--since",
        &since,
        "--until",
        &until,
        "--filter",
        "event=untag",
        "--format",
        "{{.Action}} {{.Actor.ID}}",
    ]));
    // One for `rmi evtag:1`; the last rmi untags the tag and the digest.
    assert!(untags.len() >= 2, "{untags:?}");
    assert!(
        untags.iter().all(|l| *l == format!("untag {id}")),
        "{untags:?}"
    );
}

#[test]
fn restart_keeps_images_tags_and_digests() {
    let mut d = TestDaemon::start();
    d.pull(&reg("busybox"));
    d.pull(&reg("layers"));
    d.docker_ok(&["tag", &reg("busybox"), "kept:1"]);
    let fmt = "{{.Repository}}:{{.Tag}} {{.ID}} {{.Digest}}";
    let snapshot = |d: &TestDaemon| set(d.images(&["--digests", "--no-trunc"], fmt));
    let before = snapshot(&d);
    assert_eq!(before.len(), 3);
    let inspect_before = d.inspect(&reg("layers"));
    let layer_dirs = d.layer_dirs();

    d.restart();
    assert_eq!(snapshot(&d), before, "after graceful restart");
    assert_eq!(d.inspect(&reg("layers")), inspect_before);

    d.kill9_and_restart();
    assert_eq!(snapshot(&d), before, "after kill -9");
    assert_eq!(d.inspect(&reg("layers")), inspect_before);
    assert_eq!(
        d.layer_dirs(),
        layer_dirs,
        "reconcile must keep used layers"
    );
    let again = d.pull(&reg("layers"));
    assert!(again.contains("Image is up to date"), "{again}");
}

#[test]
fn shared_layer_stored_once() {
    let d = TestDaemon::start();
    d.pull(&reg("busybox"));
    assert_eq!(d.layer_dirs().len(), 1, "{:?}", d.layer_dirs());
    // layers = busybox's layer + 3 more; the shared one is neither fetched
    // nor unpacked again.
    let out = d.pull(&reg("layers"));
    assert!(out.contains("Already exists"), "{out}");
    assert_eq!(d.layer_dirs().len(), 4, "{:?}", d.layer_dirs());
    let bb = d.inspect(&reg("busybox"));
    let ly = d.inspect(&reg("layers"));
    assert_eq!(bb["RootFS"]["Layers"][0], ly["RootFS"]["Layers"][0]);
    // Removing one image keeps the layer the other still uses.
    d.docker_ok(&["rmi", &reg("busybox")]);
    assert_eq!(d.layer_dirs().len(), 4, "{:?}", d.layer_dirs());
    let lower = ly["GraphDriver"]["Data"]["LowerDir"].as_str().unwrap();
    let bottom = lower.split(':').next_back().unwrap();
    assert!(std::path::Path::new(bottom).join("bin/busybox").exists());
}

/// The contents of `name` in an uncompressed tar.
fn tar_entry(tar: &[u8], name: &str) -> Option<Vec<u8>> {
    use std::io::Read;
    let mut a = tar::Archive::new(tar);
    for e in a.entries().ok()? {
        let mut e = e.ok()?;
        if e.path().ok()?.to_str() == Some(name) {
            let mut v = vec![];
            e.read_to_end(&mut v).ok()?;
            return Some(v);
        }
    }
    None
}
