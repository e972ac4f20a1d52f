//! Bad input is refused cleanly: unknown images, malformed references, a
//! dead registry, corrupt and hostile blobs, truncated archives, cancelled
//! and crashed pulls, and registry authentication. "Cleanly" means the
//! right error for the client and nothing half-stored on disk.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::fake_registry::{digest, FakeRegistry, ImageParts};
use common::{registry, TestDaemon};
use futures::StreamExt;

fn reg(name: &str) -> String {
    format!("{}/{name}", registry())
}

fn query_escape(s: &str) -> String {
    s.replace('/', "%2F")
        .replace(':', "%3A")
        .replace('@', "%40")
}

#[test]
fn unknown_tag_is_not_found() {
    let d = TestDaemon::start();
    let err = d.docker_fails(&["pull", &format!("{}:no-such-tag", reg("busybox"))]);
    assert!(err.contains("not found"), "{err}");
    let r = d.raw(
        "POST",
        &format!(
            "/v1.47/images/create?fromImage={}&tag=no-such-tag",
            query_escape(&reg("busybox"))
        ),
        b"",
    );
    assert_eq!(r.status, 404, "{}", r.text());
    assert!(r.message().contains("not found"), "{}", r.text());
    d.assert_nothing_stored("unknown tag");
}

#[test]
fn unknown_repository_is_not_found() {
    let d = TestDaemon::start();
    let name = reg("no-such-repo");
    let err = d.docker_fails(&["pull", &name]);
    assert!(!err.trim().is_empty());
    let r = d.raw(
        "POST",
        &format!(
            "/v1.47/images/create?fromImage={}&tag=latest",
            query_escape(&name)
        ),
        b"",
    );
    assert_eq!(r.status, 404, "{}", r.text());
    assert!(!r.message().is_empty());
    // Unknown local images are 404 as well.
    for (method, path) in [
        ("GET", "/v1.47/images/no-such-image/json"),
        ("GET", "/v1.47/images/no-such-image/history"),
        ("DELETE", "/v1.47/images/no-such-image"),
        ("POST", "/v1.47/images/no-such-image/tag?repo=x&tag=y"),
    ] {
        let r = d.raw(method, path, b"");
        assert_eq!(r.status, 404, "{method} {path}: {}", r.text());
        assert!(
            r.message().contains("No such image"),
            "{method} {path}: {}",
            r.text()
        );
    }
    d.assert_nothing_stored("unknown repository");
}

#[test]
fn malformed_reference_is_400() {
    let d = TestDaemon::start();
    // The CLI itself refuses this one before asking the daemon. (Not
    // `UPPER/x`: in Docker's grammar a first component with capitals is a
    // registry host, so that one is well-formed.)
    let err = d.docker_fails(&["pull", "Busybox"]);
    assert!(err.contains("invalid reference format"), "{err}");
    // ...so the daemon's own checks are exercised over the raw API.
    for path in [
        "/v1.47/images/create?fromImage=a//b",
        // One path component with capitals (`UPPER/x` would name a host).
        "/v1.47/images/create?fromImage=Busybox",
        "/v1.47/images/create?fromImage=busybox&tag=bad%20tag",
        "/v1.47/images/busybox/tag?repo=UPPER&tag=x",
        "/v1.47/images/busybox/tag?repo=ok&tag=-bad",
    ] {
        let r = d.raw("POST", path, b"");
        assert_eq!(r.status, 400, "{path}: {}", r.text());
        assert!(!r.message().is_empty(), "{path}");
    }
    let r = d.raw("POST", "/v1.47/images/create?fromImage=a//b", b"");
    assert!(
        r.message().contains("invalid reference format"),
        "{}",
        r.text()
    );
    d.assert_nothing_stored("malformed reference");
}

#[test]
fn registry_down_is_a_clear_error_and_stores_nothing() {
    let d = TestDaemon::start();
    let err = d.docker_fails(&["pull", "127.0.0.1:1/x"]);
    assert!(
        err.contains("127.0.0.1:1"),
        "error should name the registry: {err}"
    );
    d.assert_nothing_stored("registry down");
}

// ------------------------------------------------------------ corrupt blobs

const FILES: &[(&str, &[u8])] = &[("etc/fake", b"from the fake registry\n")];

/// Pulls `repo` from a fake registry serving `parts`; returns the registry
/// (for its request log) and the pull's stderr if it failed.
fn pull_from_fake(d: &TestDaemon, parts: &ImageParts) -> (FakeRegistry, Result<String, String>) {
    let fake = FakeRegistry::start(parts.routes("corrupt"));
    let out = d.docker(&["pull", &format!("{}/corrupt", fake.addr())]);
    let res = if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    };
    (fake, res)
}

#[test]
fn fake_registry_control_pull_succeeds() {
    // Proves the fake registry is good enough, so the corrupt cases below
    // fail for their corruption and nothing else.
    let d = TestDaemon::start();
    let parts = ImageParts::honest(FILES);
    let (fake, res) = pull_from_fake(&d, &parts);
    res.unwrap_or_else(|e| panic!("honest fake image did not pull: {e}\n{}", d.log_tail(30)));
    let i = d.inspect(&format!("{}/corrupt", fake.addr()));
    assert_eq!(i["RootFS"]["Layers"][0], parts.diff_id.as_str());
}

#[test]
fn corrupt_layer_blob_is_refused() {
    let d = TestDaemon::start();
    // A perfectly valid gzip tar, but not the blob the manifest names.
    let mut parts = ImageParts::honest(FILES);
    parts.layer_digest = digest(b"some other blob");
    let (fake, res) = pull_from_fake(&d, &parts);
    let err = res.expect_err("pull of a blob with the wrong digest succeeded");
    let hex = &parts.layer_digest["sha256:".len()..];
    assert!(
        err.contains("verification failed") || err.contains(&hex[..12]),
        "error should say which blob failed verification: {err}"
    );
    assert!(
        fake.requests()
            .contains(&format!("GET /v2/corrupt/blobs/{}", parts.layer_digest)),
        "the daemon never fetched the layer: {:?}",
        fake.requests()
    );
    d.assert_nothing_stored("corrupt layer blob");
}

#[test]
fn layer_with_wrong_diff_id_is_refused() {
    let d = TestDaemon::start();
    // The blob matches its digest; its uncompressed content does not match
    // the config's diff ID.
    let mut parts = ImageParts::honest(FILES);
    parts.diff_id = digest(b"some other tar");
    let (fake, res) = pull_from_fake(&d, &parts);
    let err = res.expect_err("pull with a wrong diff ID succeeded");
    assert!(!err.trim().is_empty());
    assert!(
        fake.requests()
            .contains(&format!("GET /v2/corrupt/blobs/{}", parts.layer_digest)),
        "the daemon never fetched the layer: {:?}",
        fake.requests()
    );
    d.assert_nothing_stored("wrong diff ID");
}

#[test]
fn corrupt_config_blob_is_refused() {
    let d = TestDaemon::start();
    let mut parts = ImageParts::honest(FILES);
    parts.lie_about_config = true;
    let (_fake, res) = pull_from_fake(&d, &parts);
    let err = res.expect_err("pull with a config that does not match its digest succeeded");
    assert!(!err.trim().is_empty());
    d.assert_nothing_stored("corrupt config");
}

// ---------------------------------------------------------- hostile layers

/// Files under `dir` whose name starts with `prefix` (symlinks not followed).
fn find_named(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut found = vec![];
    let Ok(rd) = std::fs::read_dir(dir) else {
        return found;
    };
    for e in rd.flatten() {
        let p = e.path();
        if e.file_name().to_string_lossy().starts_with(prefix) {
            found.push(p.clone());
        }
        if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            found.extend(find_named(&p, prefix));
        }
    }
    found
}

/// Pulls a hostile image and checks it was refused without writing anything
/// outside the layer dir, and without keeping anything.
fn assert_hostile_refused(image: &str) {
    // evil-dotdot and evil-symlink aim at /tmp/mydocker-<image>; leftovers
    // of an earlier broken run would make the check meaningless.
    let marker = format!("/tmp/mydocker-{image}");
    let _ = std::fs::remove_file(&marker);
    let passwd = Path::new("/etc/passwd");
    let passwd_before = (
        std::fs::read(passwd).unwrap(),
        std::fs::metadata(passwd).unwrap(),
    );

    let d = TestDaemon::start();
    let err = d.docker_fails(&["pull", &reg(image)]);
    assert!(!err.trim().is_empty(), "{image}: no error message");
    assert!(
        !Path::new(&marker).exists(),
        "{image}: {marker} was written"
    );
    let (content, md) = (
        std::fs::read(passwd).unwrap(),
        std::fs::metadata(passwd).unwrap(),
    );
    assert!(content == passwd_before.0, "{image}: /etc/passwd changed");
    assert_eq!(
        md.nlink(),
        passwd_before.1.nlink(),
        "{image}: /etc/passwd got a hard link"
    );
    assert_eq!(
        md.mtime(),
        passwd_before.1.mtime(),
        "{image}: /etc/passwd touched"
    );
    // Nor anywhere else in the daemon's own tree (`..` from a layer dir
    // lands in the data root).
    let leaked = find_named(d.root(), "mydocker-evil");
    assert!(leaked.is_empty(), "{image}: wrote {leaked:?}");
    d.assert_nothing_stored(image);
    // The shared busybox layer was not poisoned: a good image still pulls.
    d.pull(&reg("busybox"));
}

#[test]
fn hostile_dotdot_layer_refused() {
    assert_hostile_refused("evil-dotdot");
}

#[test]
fn hostile_symlink_layer_refused() {
    assert_hostile_refused("evil-symlink");
}

#[test]
fn hostile_hardlink_layer_refused() {
    assert_hostile_refused("evil-hardlink");
}

// ----------------------------------------------------------- broken archives

#[test]
fn truncated_load_is_400_and_loads_nothing() {
    let source = TestDaemon::start();
    source.pull(&reg("busybox"));
    let saved = source.docker(&["save", &reg("busybox")]);
    assert!(saved.status.success());
    let tar = saved.stdout;
    drop(source);
    let cut = &tar[..tar.len() / 2];

    let d = TestDaemon::start();
    let out = d.docker_stdin(&["load"], cut);
    assert!(!out.status.success(), "docker load of half a tar succeeded");
    d.assert_nothing_stored("truncated docker load");

    let r = d.raw_with(
        "POST",
        "/v1.47/images/load?quiet=1",
        &[("Content-Type", "application/x-tar")],
        cut,
    );
    assert_eq!(r.status, 400, "{}", r.text());
    let garbage = d.raw_with(
        "POST",
        "/v1.47/images/load",
        &[("Content-Type", "application/x-tar")],
        b"this is not a tar archive at all",
    );
    assert_eq!(garbage.status, 400, "{}", garbage.text());
    d.assert_nothing_stored("truncated load over the raw API");

    // The whole archive still loads afterwards.
    let out = d.docker_stdin_ok(&["load"], &tar);
    assert!(out.contains("Loaded image:"), "{out}");
}

// ----------------------------------------------------- interrupted pulls

/// Starts a bollard pull of `name` and returns once the first `Downloading`
/// progress message arrives, dropping (closing) the stream.
fn pull_until_first_download(d: &TestDaemon, name: &str) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let docker = d.bollard();
        let opts = bollard::query_parameters::CreateImageOptionsBuilder::new()
            .from_image(name)
            .tag("latest")
            .build();
        let mut stream = docker.create_image(Some(opts), None, None);
        let mut statuses = vec![];
        while let Some(msg) = stream.next().await {
            let msg = msg.unwrap_or_else(|e| panic!("pull failed: {e}; so far {statuses:?}"));
            let status = msg.status.unwrap_or_default();
            if status == "Downloading" {
                return;
            }
            statuses.push(status);
        }
        panic!("pull ended without a Downloading message: {statuses:?}");
    });
}

#[test]
fn cancelled_pull_leaves_no_image_and_next_pull_completes() {
    let d = TestDaemon::start();
    let name = reg("bench100");
    pull_until_first_download(&d, &name);
    // Give the daemon a moment to notice the client went away.
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        d.images(&["-a", "-q"], "{{.ID}}").is_empty(),
        "a cancelled pull left an image"
    );
    let clean = common::wait_until(Duration::from_secs(10), || d.tmp_entries().is_empty());
    assert!(clean, "scratch files left: {:?}", d.tmp_entries());

    let out = d.pull(&name);
    assert!(out.contains("Status: Downloaded newer image"), "{out}");
    assert_eq!(
        d.inspect(&name)["RootFS"]["Layers"]
            .as_array()
            .unwrap()
            .len(),
        6
    );
    assert_eq!(d.layer_dirs().len(), 6, "{:?}", d.layer_dirs());
}

#[test]
fn pull_killed_by_daemon_crash_leaves_no_half_image() {
    let mut d = TestDaemon::start();
    let name = reg("bench100");
    pull_until_first_download(&d, &name);
    d.kill9();
    d.start_again();
    assert!(
        d.images(&["-a", "-q"], "{{.ID}}").is_empty(),
        "a crashed pull left an image"
    );
    assert!(
        d.tmp_entries().is_empty(),
        "start-up left scratch files: {:?}",
        d.tmp_entries()
    );

    let out = d.pull(&name);
    assert!(out.contains("Status: Downloaded newer image"), "{out}");
    assert_eq!(
        d.inspect(&name)["RootFS"]["Layers"]
            .as_array()
            .unwrap()
            .len(),
        6
    );
    // Exactly the image's layers: nothing orphaned from the first attempt.
    assert_eq!(d.layer_dirs().len(), 6, "{:?}", d.layer_dirs());
    d.restart();
    assert_eq!(d.layer_dirs().len(), 6, "{:?}", d.layer_dirs());
}

// ------------------------------------------------------------------ auth

/// A basic-auth registry (testuser/testpass) stopped on drop.
struct AuthRegistry {
    state: tempfile::TempDir,
    addr: String,
}

impl AuthRegistry {
    fn start() -> AuthRegistry {
        let state = tempfile::Builder::new()
            .prefix("mydocker-test-authreg-")
            .tempdir_in("/tmp")
            .unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/registry/start-auth.sh");
        let out = std::process::Command::new(&script)
            .arg(state.path())
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("{}: {e}", script.display()));
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "start-auth.sh failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let addr = stdout.lines().last().unwrap_or_default().trim().to_string();
        assert!(
            addr.starts_with("127.0.0.1:"),
            "start-auth.sh printed {stdout:?}"
        );
        AuthRegistry { state, addr }
    }
}

impl Drop for AuthRegistry {
    fn drop(&mut self) {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/registry/stop.sh");
        let _ = std::process::Command::new(script)
            .arg(self.state.path())
            .output();
    }
}

fn looks_like_auth_failure(msg: &str) -> bool {
    let m = msg.to_lowercase();
    [
        "401",
        "unauthorized",
        "authentication required",
        "no basic auth credentials",
    ]
    .iter()
    .any(|w| m.contains(w))
}

/// Pulls `name:latest` with bollard and optional credentials.
fn bollard_pull(d: &TestDaemon, name: &str, creds: Option<(&str, &str)>) -> Result<(), String> {
    let server = name.split('/').next().unwrap().to_string();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let docker = d.bollard();
        let opts = bollard::query_parameters::CreateImageOptionsBuilder::new()
            .from_image(name)
            .tag("latest")
            .build();
        let creds = creds.map(|(u, p)| bollard::auth::DockerCredentials {
            username: Some(u.into()),
            password: Some(p.into()),
            serveraddress: Some(server),
            ..Default::default()
        });
        let mut stream = docker.create_image(Some(opts), None, creds);
        while let Some(msg) = stream.next().await {
            msg.map_err(|e| e.to_string())?;
        }
        Ok(())
    })
}

#[test]
fn auth_registry_needs_the_right_credentials() {
    let auth = AuthRegistry::start();
    let d = TestDaemon::start();
    let name = format!("{}/busybox", auth.addr);

    let none = bollard_pull(&d, &name, None).expect_err("pull without credentials succeeded");
    assert!(looks_like_auth_failure(&none), "{none}");
    let wrong = bollard_pull(&d, &name, Some(("testuser", "wrong-password")))
        .expect_err("wrong password accepted");
    assert!(looks_like_auth_failure(&wrong), "{wrong}");
    d.assert_nothing_stored("failed authenticated pulls");

    bollard_pull(&d, &name, Some(("testuser", "testpass"))).unwrap_or_else(|e| {
        panic!(
            "pull with the right credentials failed: {e}\n{}",
            d.log_tail(30)
        )
    });
    let i = d.inspect(&name);
    assert_eq!(i["RepoTags"], serde_json::json!([format!("{name}:latest")]));
}

#[test]
fn auth_registry_cli_pull_without_login_fails_at_once() {
    // dockerd answers "no basic auth credentials" here; had it answered 401,
    // the CLI would prompt for a login instead, and a script would hang.
    let auth = AuthRegistry::start();
    let d = TestDaemon::start();
    let name = format!("{}/busybox", auth.addr);
    let out = d
        .docker_timeout(&["pull", &name], Duration::from_secs(30))
        .expect("docker pull hung (waiting at a login prompt?)");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(looks_like_auth_failure(&err), "{err}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("Login prior to pull"));
    d.assert_nothing_stored("CLI pull without login");
}
