//! Test rig shared by every compat suite: the local test registry, a private
//! `mydockerd` per test, and ways to talk to it (stock docker CLI, bollard,
//! and a raw HTTP/1.1 client for exact status and header checks).
//!
//! Each suite does `mod common;`, so not every helper is used by every suite.
#![allow(dead_code)]

pub mod fake_registry;
pub mod http;
pub mod netslot;
pub mod servers;

use std::ffi::OsStr;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub use http::RawResponse;

/// The stock docker CLI the suites drive.
pub const DOCKER_CLI: &str = "/usr/local/bin/docker";
/// How long the daemon gets to answer `/_ping` after being started.
const START_TIMEOUT: Duration = Duration::from_secs(15);
/// How long the daemon gets to exit after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);
/// Upper bound for any single docker CLI invocation, so a hung daemon fails
/// the test instead of hanging the whole run.
const CLI_TIMEOUT: Duration = Duration::from_secs(180);
/// A closed port: outbound traffic that ignores NO_PROXY goes nowhere.
const DEAD_PROXY: &str = "http://127.0.0.1:9";
const NO_PROXY: &str = "127.0.0.0/8,localhost";

// ------------------------------------------------------------------ registry

/// `host:port` of the local test registry (busybox, layers, bench100, ...).
///
/// `MYDOCKER_TEST_REGISTRY` wins when set (contrib/test.sh sets it);
/// otherwise `contrib/registry/ensure.sh` builds the images and starts the
/// registry once per process. A file lock keeps parallel test binaries from
/// racing each other through ensure.sh.
pub fn registry() -> String {
    static REG: OnceLock<String> = OnceLock::new();
    REG.get_or_init(|| {
        if let Ok(r) = std::env::var("MYDOCKER_TEST_REGISTRY") {
            if !r.trim().is_empty() {
                return r.trim().to_string();
            }
        }
        let _lock = FileLock::acquire(Path::new("/tmp/mydocker-test-registry.lock"));
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/registry/ensure.sh");
        let out = Command::new(&script)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{} failed ({}):\nstdout:\n{stdout}\nstderr:\n{}",
            script.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let last = stdout.lines().rev().find(|l| !l.trim().is_empty());
        let reg = last.unwrap_or_default().trim().to_string();
        assert!(
            reg.starts_with("127.0.0.1:"),
            "ensure.sh did not end with 127.0.0.1:PORT; stdout:\n{stdout}"
        );
        reg
    })
    .clone()
}

/// An exclusive `flock` held until dropped.
struct FileLock(fs::File);

impl FileLock {
    fn acquire(path: &Path) -> FileLock {
        let f = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
        use std::os::fd::AsRawFd;
        // SAFETY: plain syscall on a descriptor we own.
        let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) };
        assert_eq!(rc, 0, "flock {}", path.display());
        FileLock(f)
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        use std::os::fd::AsRawFd;
        // SAFETY: as above.
        unsafe { libc::flock(self.0.as_raw_fd(), libc::LOCK_UN) };
    }
}

/// Docker-style name of the host architecture (what `Architecture` shows).
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm",
        "s390x" => "s390x",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// The manifest digest the test registry serves for `repo:reference`
/// (asked directly over HTTP, independently of the daemon).
pub fn registry_digest(repo: &str, reference: &str) -> String {
    let reg = registry();
    let accept = "application/vnd.docker.distribution.manifest.v2+json, \
                  application/vnd.docker.distribution.manifest.list.v2+json, \
                  application/vnd.oci.image.manifest.v1+json, \
                  application/vnd.oci.image.index.v1+json";
    let resp = http::tcp_request(
        &reg,
        "HEAD",
        &format!("/v2/{repo}/manifests/{reference}"),
        &[("Accept", accept)],
        b"",
    );
    assert_eq!(resp.status, 200, "registry HEAD {repo}:{reference}");
    resp.header("Docker-Content-Digest")
        .expect("registry sent no Docker-Content-Digest")
        .to_string()
}

// ------------------------------------------------------------------ daemon

/// How to start a test daemon.
#[derive(Clone, Debug)]
pub struct DaemonOptions {
    /// Extra flags; a default flag (`--host`, `--data-root`, ...) given here
    /// replaces the harness's own value instead of being passed twice.
    pub args: Vec<String>,
    /// Contents of the daemon.json passed with `--config-file`.
    pub daemon_json: String,
    /// Pass `--registry-mirror http://<test registry>`.
    pub mirror: bool,
}

impl Default for DaemonOptions {
    fn default() -> Self {
        DaemonOptions {
            args: vec![],
            daemon_json: "{}".into(),
            mirror: true,
        }
    }
}

/// A private `mydockerd` with its own socket, data root, exec root, pidfile
/// and config, all under one temp dir that is removed on drop.
pub struct TestDaemon {
    root: PathBuf,
    opts: DaemonOptions,
    child: Option<Child>,
    /// Own bridge, subnets and iptables chains; cleaned up on drop.
    pub net: netslot::NetSlot,
}

impl TestDaemon {
    /// A daemon with default options (mirror on the test registry).
    pub fn start() -> TestDaemon {
        Self::start_opts(DaemonOptions::default())
    }

    pub fn start_with(extra_args: &[&str], daemon_json: &str) -> TestDaemon {
        Self::start_opts(DaemonOptions {
            args: extra_args.iter().map(|s| s.to_string()).collect(),
            daemon_json: daemon_json.into(),
            mirror: true,
        })
    }

    pub fn start_opts(opts: DaemonOptions) -> TestDaemon {
        let mut d = Self::prepare(opts);
        d.spawn_and_wait();
        d
    }

    /// Runs a daemon that is expected to refuse to start; returns its exit
    /// status and its output. Panics if it starts serving instead.
    pub fn start_expecting_failure(opts: DaemonOptions) -> (ExitStatus, String) {
        let mut d = Self::prepare(opts);
        let mut child = d.spawn();
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(st) = child.try_wait().expect("try_wait") {
                return (st, d.log());
            }
            if d.ping_ok() || Instant::now() > deadline {
                // Hand it to `d` so Drop kills it.
                d.child = Some(child);
                panic!(
                    "daemon started although it should have refused to; log:\n{}",
                    d.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Creates the temp root and config without starting anything.
    fn prepare(opts: DaemonOptions) -> TestDaemon {
        let root = tempfile::Builder::new()
            .prefix("mydocker-test-")
            .tempdir_in("/tmp")
            .expect("temp dir")
            .keep();
        let mut d = TestDaemon {
            root,
            opts,
            child: None,
            net: netslot::NetSlot::acquire(),
        };
        // The slot's address pools, unless the test set its own (or
        // wrote a file that is not a JSON object on purpose).
        if let Ok(serde_json::Value::Object(mut m)) =
            serde_json::from_str::<serde_json::Value>(&d.opts.daemon_json)
        {
            m.entry("default-address-pools")
                .or_insert_with(|| d.net.pools_json());
            d.opts.daemon_json = serde_json::Value::Object(m).to_string();
        }
        fs::create_dir_all(d.docker_config()).unwrap();
        fs::write(d.config_file(), &d.opts.daemon_json).unwrap();
        d
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn socket(&self) -> PathBuf {
        self.root.join("mydocker.sock")
    }
    pub fn data_root(&self) -> PathBuf {
        self.root.join("data")
    }
    pub fn exec_root(&self) -> PathBuf {
        self.root.join("exec")
    }
    pub fn pidfile(&self) -> PathBuf {
        self.root.join("mydockerd.pid")
    }
    pub fn config_file(&self) -> PathBuf {
        self.root.join("daemon.json")
    }
    pub fn log_path(&self) -> PathBuf {
        self.root.join("daemon.log")
    }
    pub fn docker_config(&self) -> PathBuf {
        self.root.join("docker-config")
    }
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }
    pub fn host(&self) -> String {
        format!("unix://{}", self.socket().display())
    }

    /// The full daemon command line (flags only) this daemon runs with.
    pub fn daemon_args(&self) -> Vec<String> {
        let given = |flag: &str| {
            self.opts
                .args
                .iter()
                .any(|a| a == flag || a.starts_with(&format!("{flag}=")))
        };
        let mut args = vec![];
        let defaults = [
            ("--host", self.host()),
            ("--data-root", self.data_root().display().to_string()),
            ("--exec-root", self.exec_root().display().to_string()),
            ("--pidfile", self.pidfile().display().to_string()),
            ("--config-file", self.config_file().display().to_string()),
        ];
        for (flag, value) in defaults {
            if !given(flag) {
                args.push(flag.to_string());
                args.push(value);
            }
        }
        // Network isolation per daemon, unless the test chose (by flag or
        // in its daemon.json, which must not conflict with a flag).
        let in_file = |key: &str| self.opts.daemon_json.contains(&format!("\"{key}\""));
        for (flag, key, value) in [
            ("--bridge", "bridge", self.net.bridge()),
            ("--bip", "bip", self.net.bip()),
            (
                "--iptables-chain-prefix",
                "iptables-chain-prefix",
                self.net.chain_prefix(),
            ),
            ("--dns", "dns", self.net.dns()),
        ] {
            if !given(flag) && !in_file(key) {
                args.push(flag.to_string());
                args.push(value);
            }
        }
        if self.opts.mirror {
            args.push("--registry-mirror".into());
            args.push(format!("http://{}", registry()));
        }
        args.extend(self.opts.args.iter().cloned());
        args
    }

    fn spawn(&self) -> Child {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("daemon log");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_mydockerd"));
        cmd.args(self.daemon_args())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        for (k, v) in [
            ("HTTP_PROXY", DEAD_PROXY),
            ("HTTPS_PROXY", DEAD_PROXY),
            ("NO_PROXY", NO_PROXY),
            ("http_proxy", DEAD_PROXY),
            ("https_proxy", DEAD_PROXY),
            ("no_proxy", NO_PROXY),
        ] {
            cmd.env(k, v);
        }
        cmd.env_remove("ALL_PROXY").env_remove("all_proxy");
        cmd.spawn().expect("spawn mydockerd")
    }

    fn spawn_and_wait(&mut self) {
        assert!(self.child.is_none(), "daemon already running");
        self.child = Some(self.spawn());
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if self.ping_ok() {
                return;
            }
            let exited = self.child.as_mut().unwrap().try_wait().expect("try_wait");
            if let Some(st) = exited {
                self.child = None;
                panic!(
                    "mydockerd exited during start-up ({st}); log:\n{}",
                    self.log()
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "mydockerd did not answer /_ping within {START_TIMEOUT:?}; log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn ping_ok(&self) -> bool {
        let Ok(s) = UnixStream::connect(self.socket()) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        http::request(s, "GET", "/_ping", &[], b"")
            .map(|r| r.status == 200)
            .unwrap_or(false)
    }

    /// SIGTERM, then wait for the exit; returns its status.
    pub fn stop(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("daemon not running");
        signal(&child, nix::sys::signal::Signal::SIGTERM);
        match wait_timeout(&mut child, STOP_TIMEOUT) {
            Some(st) => st,
            None => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "mydockerd did not exit within {STOP_TIMEOUT:?} of SIGTERM; log:\n{}",
                    self.log()
                );
            }
        }
    }

    /// Graceful restart on the same directories.
    pub fn restart(&mut self) {
        let st = self.stop();
        assert!(
            st.success(),
            "graceful stop failed: {st}; log:\n{}",
            self.log_tail(40)
        );
        self.spawn_and_wait();
    }

    /// Crash (SIGKILL) and start again on the same directories.
    pub fn kill9(&mut self) {
        let mut child = self.child.take().expect("daemon not running");
        let _ = child.kill();
        let _ = child.wait();
    }

    pub fn kill9_and_restart(&mut self) {
        self.kill9();
        self.spawn_and_wait();
    }

    /// Starts the daemon again after `stop()` or `kill9()`.
    pub fn start_again(&mut self) {
        self.spawn_and_wait();
    }

    /// Everything the daemon wrote to stdout/stderr so far.
    pub fn log(&self) -> String {
        fs::read(self.log_path())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    pub fn log_tail(&self, lines: usize) -> String {
        let log = self.log();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    // -------------------------------------------------------------- clients

    /// The docker CLI, pointed at this daemon with an isolated config dir.
    pub fn docker_cmd<S: AsRef<OsStr>>(&self, args: &[S]) -> Command {
        let mut cmd = Command::new(DOCKER_CLI);
        cmd.args(args)
            .env("DOCKER_HOST", self.host())
            .env("DOCKER_CONFIG", self.docker_config())
            .env("DOCKER_CLI_HINTS", "false");
        for k in [
            "DOCKER_CONTEXT",
            "DOCKER_TLS_VERIFY",
            "DOCKER_CERT_PATH",
            "DOCKER_API_VERSION",
            "DOCKER_DEFAULT_PLATFORM",
            "DOCKER_CONTENT_TRUST",
        ] {
            cmd.env_remove(k);
        }
        cmd
    }

    /// The CLI in a real terminal (`script -qec`), as a person at a shell
    /// would run it, with this daemon's environment; stdio piped.
    pub fn docker_in_terminal(&self, docker_args: &str) -> Command {
        let probe = self.docker_cmd(&["version"]);
        let mut cmd = Command::new("script");
        cmd.args(["-qec", &format!("{DOCKER_CLI} {docker_args}"), "/dev/null"]);
        for (k, v) in probe.get_envs() {
            match v {
                Some(v) => cmd.env(k, v),
                None => cmd.env_remove(k),
            };
        }
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    pub fn docker(&self, args: &[&str]) -> Output {
        run_timeout(self.docker_cmd(args), None, CLI_TIMEOUT)
    }

    /// Like `docker`, but `None` (the CLI killed) when it runs longer than
    /// `t`: for commands that may wait on a prompt instead of failing.
    pub fn docker_timeout(&self, args: &[&str], t: Duration) -> Option<Output> {
        try_run_timeout(self.docker_cmd(args), None, t)
    }

    pub fn docker_stdin(&self, args: &[&str], input: &[u8]) -> Output {
        run_timeout(self.docker_cmd(args), Some(input), CLI_TIMEOUT)
    }

    /// Runs docker, asserts success, returns stdout.
    pub fn docker_ok(&self, args: &[&str]) -> String {
        let out = self.docker(args);
        self.check_ok(args, &out);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn docker_stdin_ok(&self, args: &[&str], input: &[u8]) -> String {
        let out = self.docker_stdin(args, input);
        self.check_ok(args, &out);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs docker, asserts failure, returns stderr (what users read).
    pub fn docker_fails(&self, args: &[&str]) -> String {
        let out = self.docker(args);
        assert!(
            !out.status.success(),
            "docker {args:?} should have failed but succeeded; stdout:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    fn check_ok(&self, args: &[&str], out: &Output) {
        if !out.status.success() {
            panic!(
                "docker {args:?} failed ({})\n--- stdout:\n{}\n--- stderr:\n{}\n--- daemon log (tail):\n{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                self.log_tail(40)
            );
        }
    }

    /// `docker image inspect NAME` parsed (first element).
    pub fn inspect(&self, name: &str) -> serde_json::Value {
        let out = self.docker_ok(&["image", "inspect", name]);
        let v: serde_json::Value = serde_json::from_str(&out).expect("inspect JSON");
        v[0].clone()
    }

    /// Full image ID (`sha256:...`) of NAME.
    pub fn image_id(&self, name: &str) -> String {
        self.docker_ok(&["image", "inspect", "--format", "{{.Id}}", name])
            .trim()
            .to_string()
    }

    /// `docker pull NAME`, asserting success; returns stdout.
    pub fn pull(&self, name: &str) -> String {
        self.docker_ok(&["pull", name])
    }

    /// Lines of `docker images` with the given extra args and format.
    pub fn images(&self, extra: &[&str], format: &str) -> Vec<String> {
        let mut args = vec!["images", "--format", format];
        args.extend_from_slice(extra);
        lines(&self.docker_ok(&args))
    }

    /// A bollard client on this daemon, pinned to API 1.47 (what we announce;
    /// bollard's own default is newer and would get a 400).
    pub fn bollard(&self) -> bollard::Docker {
        bollard::Docker::connect_with_unix(
            &self.socket().display().to_string(),
            120,
            &bollard::ClientVersion {
                major_version: 1,
                minor_version: 47,
            },
        )
        .expect("bollard connect")
    }

    /// One raw HTTP/1.1 request on the socket (`Connection: close`), for
    /// exact status and header checks.
    pub fn raw(&self, method: &str, path: &str, body: &[u8]) -> RawResponse {
        let ct: &[(&str, &str)] = if body.is_empty() {
            &[]
        } else {
            &[("Content-Type", "application/json")]
        };
        self.raw_with(method, path, ct, body)
    }

    pub fn raw_with(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> RawResponse {
        let s = UnixStream::connect(self.socket())
            .unwrap_or_else(|e| panic!("connect {}: {e}", self.socket().display()));
        s.set_read_timeout(Some(Duration::from_secs(300))).unwrap();
        http::request(s, method, path, headers, body)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}; log:\n{}", self.log_tail(40)))
    }

    // ---------------------------------------------------------- state on disk

    /// Unpacked layer dirs (`image/layers/<chain id>`).
    pub fn layer_dirs(&self) -> Vec<PathBuf> {
        hex_entries(&self.data_root().join("image/layers"))
    }

    /// Content-addressed blobs (`image/blobs/sha256/*`).
    pub fn blobs(&self) -> Vec<PathBuf> {
        hex_entries(&self.data_root().join("image/blobs/sha256"))
    }

    /// Whatever is left in the daemon's scratch dir.
    pub fn tmp_entries(&self) -> Vec<PathBuf> {
        match fs::read_dir(self.data_root().join("tmp")) {
            Ok(rd) => rd.map(|e| e.unwrap().path()).collect(),
            Err(_) => vec![],
        }
    }

    /// Asserts the daemon holds no image, no layer, no blob and no scratch
    /// file. Cleanup may run just after an error reached the client, so the
    /// disk gets a few seconds to settle.
    pub fn assert_nothing_stored(&self, what: &str) {
        let ids = self.images(&["-a", "--no-trunc"], "{{.ID}} {{.Repository}}:{{.Tag}}");
        assert!(ids.is_empty(), "{what}: images left behind: {ids:?}");
        let settled = wait_until(Duration::from_secs(5), || {
            self.layer_dirs().is_empty() && self.blobs().is_empty() && self.tmp_entries().is_empty()
        });
        assert!(
            settled,
            "{what}: files left behind:\nlayers: {:?}\nblobs: {:?}\ntmp: {:?}\ndaemon log (tail):\n{}",
            self.layer_dirs(),
            self.blobs(),
            self.tmp_entries(),
            self.log_tail(30)
        );
    }
}

impl Drop for TestDaemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.kill_containers();
        if std::thread::panicking() {
            eprintln!(
                "===== mydockerd log tail ({}) =====\n{}\n=====",
                self.log_path().display(),
                self.log_tail(60)
            );
        }
        unmount_under(&self.root);
        if let Err(e) = fs::remove_dir_all(&self.root) {
            eprintln!("warning: cannot remove {}: {e}", self.root.display());
        }
    }
}

// ---------------------------------------------------------- containers

impl TestDaemon {
    /// IDs of the containers with a bundle under this daemon's exec root.
    pub fn bundle_ids(&self) -> Vec<String> {
        match fs::read_dir(self.exec_root().join("containers")) {
            Ok(rd) => rd
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect(),
            Err(_) => vec![],
        }
    }

    /// The monitor and container init pids a bundle's state names.
    fn bundle_pids(&self, id: &str) -> (i32, i32) {
        let path = self
            .exec_root()
            .join("containers")
            .join(id)
            .join("state.json");
        let st: serde_json::Value = fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let pid = |k: &str| st[k].as_i64().unwrap_or(0) as i32;
        (pid("monitor_pid"), pid("pid"))
    }

    /// Monitors of this daemon's containers that are still alive.
    pub fn live_monitors(&self) -> Vec<i32> {
        self.bundle_ids()
            .iter()
            .map(|id| self.bundle_pids(id).0)
            .filter(|&p| p > 0 && process_alive(p))
            .collect()
    }

    /// Cgroup dirs (any hierarchy) of `id` that exist.
    pub fn container_cgroups(id: &str) -> Vec<PathBuf> {
        let root = Path::new("/sys/fs/cgroup");
        let mut dirs = vec![root.join("mydocker").join(id)];
        if let Ok(rd) = fs::read_dir(root) {
            for e in rd.flatten() {
                dirs.push(e.path().join("mydocker").join(id));
            }
        }
        dirs.into_iter().filter(|d| d.is_dir()).collect()
    }

    /// Kills every container this daemon started (by the pids in their
    /// bundles: the init, whose death ends its pid namespace, then the
    /// monitor) and removes their cgroups.
    pub fn kill_containers(&self) {
        for id in self.bundle_ids() {
            let (monitor, init) = self.bundle_pids(&id);
            for p in [init, monitor] {
                if p > 0 {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(p),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
            if monitor > 0 {
                wait_until(Duration::from_secs(5), || !process_alive(monitor));
            }
            for d in Self::container_cgroups(&id) {
                wait_until(Duration::from_secs(5), || {
                    fs::remove_dir(&d).is_ok() || !d.exists()
                });
            }
        }
    }
}

/// Alive and not a zombie.
pub fn process_alive(pid: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit(')')
                .next()
                .map(|r| !r.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

// ------------------------------------------------------------------ helpers

fn signal(child: &Child, sig: nix::sys::signal::Signal) {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::kill(pid, sig);
}

/// Waits for `child` at most `t`.
pub fn wait_timeout(child: &mut Child, t: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + t;
    loop {
        if let Some(st) = child.try_wait().expect("try_wait") {
            return Some(st);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Polls `f` every 100 ms until it holds or `t` passes.
pub fn wait_until(t: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + t;
    loop {
        if f() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Runs `cmd` with optional stdin, capturing output; panics after `t`.
pub fn run_timeout(cmd: Command, input: Option<&[u8]>, t: Duration) -> Output {
    let desc = format!("{cmd:?}");
    try_run_timeout(cmd, input, t).unwrap_or_else(|| panic!("{desc} did not finish within {t:?}"))
}

/// Runs `cmd` with optional stdin, capturing output; kills it and returns
/// `None` after `t`.
pub fn try_run_timeout(mut cmd: Command, input: Option<&[u8]>, t: Duration) -> Option<Output> {
    cmd.stdin(if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let writer = input.map(|data| {
        let mut stdin = child.stdin.take().unwrap();
        let data = data.to_vec();
        // A writer thread: a big stdin must not deadlock against full pipes.
        std::thread::spawn(move || {
            let _ = stdin.write_all(&data);
        })
    });
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out_t = std::thread::spawn(move || {
        let mut b = vec![];
        let _ = out.read_to_end(&mut b);
        b
    });
    let err_t = std::thread::spawn(move || {
        let mut b = vec![];
        let _ = err.read_to_end(&mut b);
        b
    });
    let Some(status) = wait_timeout(&mut child, t) else {
        let _ = child.kill();
        let _ = child.wait();
        return None;
    };
    if let Some(w) = writer {
        let _ = w.join();
    }
    Some(Output {
        status,
        stdout: out_t.join().unwrap(),
        stderr: err_t.join().unwrap(),
    })
}

/// Non-empty trimmed lines.
pub fn lines(s: &str) -> Vec<String> {
    s.lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

/// `sha256:<hex>` from a `Digest: sha256:...` line of `docker pull` output.
pub fn pull_digest(pull_output: &str) -> String {
    pull_output
        .lines()
        .find_map(|l| l.trim().strip_prefix("Digest: "))
        .unwrap_or_else(|| panic!("no Digest: line in pull output:\n{pull_output}"))
        .trim()
        .to_string()
}

/// Entries of `dir` whose names are 64 hex digits (missing dir = none).
fn hex_entries(dir: &Path) -> Vec<PathBuf> {
    let Ok(rd) = fs::read_dir(dir) else {
        return vec![];
    };
    let mut v: Vec<PathBuf> = rd
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            n.len() == 64 && n.chars().all(|c| c.is_ascii_hexdigit())
        })
        .collect();
    v.sort();
    v
}

/// Unmounts (lazily, deepest first) every mount point under `root`.
pub fn unmount_under(root: &Path) {
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let prefix = root.to_string_lossy().into_owned();
    let mut points: Vec<String> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape_mountinfo)
        .filter(|p| p == &prefix || p.starts_with(&format!("{prefix}/")))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in points {
        let _ = nix::mount::umount2(p.as_str(), nix::mount::MntFlags::MNT_DETACH);
    }
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| c.is_ascii_digit()) {
            let v = u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 4]).unwrap(), 8)
                .unwrap_or(b'?');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A tar archive (uncompressed) with the given regular files, for
/// `docker import` and friends.
pub fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(1_767_225_600);
        h.set_uid(0);
        h.set_gid(0);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, name, *data).unwrap();
    }
    b.into_inner().unwrap()
}

/// Seconds since the epoch (what `docker events --since/--until` take).
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}
