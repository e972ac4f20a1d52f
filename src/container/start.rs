//! `POST /containers/{id}/start`: the bundle, the cgroup, the monitor; a
//! task per running container records its exit. Also the re-attachment to
//! running containers when the daemon starts.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::{Container, ContainerService};
use crate::error::{EngineError, EngineResult};
use crate::runtime::cgroups::{self, Resources};
use crate::runtime::spec::{CgroupSpec, ContainerSpec, EtcFiles, LogSpec, NetworkNs, RootfsSpec};
use crate::runtime::{spawn_monitor, MonitorHandle, RuntimeError};
use crate::store::containers as rows;

/// What the blocking part of a start needs from the async side.
struct StartPlan {
    spec: ContainerSpec,
    /// The image's layers, top first, to look users up in.
    layers: Vec<PathBuf>,
    user: String,
    resources: Resources,
    cgroup_root: PathBuf,
    exe: PathBuf,
    host_resolv: PathBuf,
    security: super::security::StartOptions,
    /// `/etc/hosts` lines for the container's own addresses.
    hosts_extra: String,
    /// On a user-defined network: resolv.conf names the embedded server.
    embedded_dns: bool,
}

/// Who starts a container: the user resets the restart policy's count
/// and back-off; the policy does not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartCause {
    User,
    Policy,
}

impl ContainerService {
    /// `POST /containers/{id}/start`: 304 when running (or restarting).
    pub async fn start(&self, name: &str) -> EngineResult<()> {
        let r = self.start_as(name, StartCause::User).await;
        if matches!(&r, Err(e) if !matches!(e, EngineError::NotModified | EngineError::NotFound(_)))
        {
            // dockerd removes an AutoRemove container whose start failed;
            // `docker run --rm` waits for that removal.
            if let Ok(c) = self.get(name).await {
                if c.host_config.get("AutoRemove").and_then(Value::as_bool) == Some(true) {
                    self.after_exit(c.id()).await;
                }
            }
        }
        r
    }

    pub(super) async fn start_as(&self, name: &str, cause: StartCause) -> EngineResult<()> {
        let c = self.get(name).await?;
        let lock = self.op_lock(c.id());
        let _g = lock.lock().await;
        let c = self.get(c.id()).await?;
        if c.state.running() || (cause == StartCause::User && c.state.restarting) {
            return Err(EngineError::NotModified);
        }
        if cause == StartCause::Policy && !c.state.restarting {
            // Cancelled (stopped, started or removed) meanwhile.
            return Ok(());
        }
        let image = self.images.resolve(&c.row.image_id).await?;
        // Planned before the mounts: an error here leaves nothing to undo.
        let mut plan = self.plan(&c, self.images.layer_paths(&image))?;
        if plan.security.wants_host_gateway() {
            let gateway = self.host_gateway_ip().await;
            plan.security.resolve_host_gateway(gateway)?;
        }
        let mounts = self.mount_specs(&c).await;
        let id = c.id().to_string();
        match mounts {
            Ok(m) => plan.spec.mounts = m,
            Err(e) => {
                let m = e.to_string();
                self.update_state(&id, move |st| st.mark_start_failed(128, &m))
                    .await?;
                self.release_volumes(&c, false).await;
                return Err(e);
            }
        }
        let net = match self.network_setup(&c).await {
            Ok(n) => n,
            Err(e) => {
                let m = e.to_string();
                self.update_state(&id, move |st| st.mark_start_failed(128, &m))
                    .await?;
                self.release_volumes(&c, false).await;
                return Err(e);
            }
        };
        plan.spec.network = net.ns;
        plan.hosts_extra = net.hosts;
        plan.embedded_dns = net.embedded_dns;
        let result = tokio::task::spawn_blocking(move || launch(plan))
            .await
            .map_err(EngineError::internal)?;
        if result.is_err() {
            self.network_teardown(&id).await;
        }
        match result {
            Ok((handle, started_at)) => {
                let pid = handle.pid();
                self.set_monitor(&id, Some(handle.clone()));
                self.update_state(&id, move |st| {
                    st.mark_started(pid, &started_at);
                    st.manually_stopped = false;
                    if cause == StartCause::User {
                        st.restart_count = 0;
                    }
                })
                .await?;
                if cause == StartCause::User {
                    self.with_live(&id, |l| l.restart_delay = std::time::Duration::ZERO);
                }
                self.emit_volume_mounts(&c).await;
                self.emit(&c, "start", &[]);
                self.watch_exit(c, handle);
                Ok(())
            }
            Err(LaunchError::Start { message, exit_code }) => {
                self.release_volumes(&c, false).await;
                let msg = format!("failed to create task for container: {message}: unknown");
                let m = msg.clone();
                self.update_state(&id, move |st| {
                    st.mark_start_failed(exit_code, &m);
                })
                .await?;
                // dockerd: a missing or unrunnable entrypoint is the
                // caller's mistake (400); the CLI maps it to 127/126.
                if exit_code == 127 || exit_code == 126 {
                    Err(EngineError::InvalidParameter(msg))
                } else {
                    Err(EngineError::Internal(msg))
                }
            }
            Err(LaunchError::Other(e)) => {
                self.release_volumes(&c, false).await;
                let m = e.clone();
                self.update_state(&id, move |st| st.mark_start_failed(128, &m))
                    .await?;
                Err(EngineError::Internal(e))
            }
        }
    }

    fn plan(&self, c: &Container, layers: Vec<PathBuf>) -> EngineResult<StartPlan> {
        let id = c.id();
        let dir = self.container_dir(id);
        let bundle = self.bundle_dir(id);
        let hc = &c.host_config;
        let mut resources: Resources =
            serde_json::from_value(hc.clone()).map_err(EngineError::internal)?;
        let privileged = hc.get("Privileged").and_then(Value::as_bool) == Some(true);
        resources.allow_all_devices = privileged;
        let (_, log_opts) = super::log_config::parse(hc.get("LogConfig"))?;
        let cfg = &c.config;
        let mut args = cfg.entrypoint.clone().unwrap_or_default();
        args.extend(cfg.cmd.clone().unwrap_or_default());
        let mut env = cfg.env.clone().unwrap_or_default();
        let has = |env: &[String], k: &str| env.iter().any(|e| e.split('=').next() == Some(k));
        if !has(&env, "PATH") {
            env.insert(0, format!("PATH={}", crate::runtime::spec::DEFAULT_PATH));
        }
        if !has(&env, "HOSTNAME") {
            env.push(format!("HOSTNAME={}", cfg.hostname));
        }
        if cfg.tty && !has(&env, "TERM") {
            env.push("TERM=xterm".into());
        }
        let mut spec = ContainerSpec {
            id: id.to_string(),
            bundle: bundle.clone(),
            rootfs: RootfsSpec {
                lowerdirs: layers.clone(),
                upperdir: dir.join("upper"),
                workdir: dir.join("work"),
                mountpoint: bundle.join("rootfs"),
                readonly: hc.get("ReadonlyRootfs").and_then(Value::as_bool) == Some(true),
            },
            hostname: cfg.hostname.clone(),
            domainname: cfg.domainname.clone(),
            etc_files: EtcFiles {
                hostname: Some(dir.join("hostname")),
                hosts: Some(dir.join("hosts")),
                resolv_conf: Some(dir.join("resolv.conf")),
            },
            privileged,
            network: NetworkNs::New,
            cgroup: Some(CgroupSpec {
                root: self.cgroup_root.clone(),
                path: Self::cgroup_path(id),
            }),
            log: Some(LogSpec {
                path: self.log_path(id),
                max_size: log_opts.max_size,
                max_file: log_opts.max_file,
            }),
            stop_signal: cfg.stop_signal.clone().unwrap_or_else(|| "SIGTERM".into()),
            ..Default::default()
        };
        if let Some(cg) = &spec.cgroup {
            let host_ns = hc.get("CgroupnsMode").and_then(Value::as_str) == Some("host");
            spec.cgroupfs = cgroups::container_cgroupfs(&cg.root, &cg.path, host_ns)
                .map_err(EngineError::internal)?;
        }
        if let Some(shm) = hc.get("ShmSize").and_then(Value::as_u64).filter(|s| *s > 0) {
            spec.shm_size = shm;
        }
        spec.process.args = args;
        spec.process.env = env;
        spec.process.cwd = if cfg.working_dir.is_empty() {
            "/".into()
        } else {
            cfg.working_dir.clone()
        };
        spec.process.tty = cfg.tty;
        spec.process.open_stdin = cfg.open_stdin;
        if privileged {
            spec.process.capabilities = crate::runtime::process::CAPABILITIES
                .iter()
                .map(|s| s.to_string())
                .collect();
        }
        let hc = self.with_defaults(hc);
        let security = super::security::plan(&hc, &mut spec)?;
        let mut user_layers = vec![dir.join("upper")];
        user_layers.extend(layers);
        Ok(StartPlan {
            spec,
            layers: user_layers,
            user: cfg.user.clone(),
            resources,
            cgroup_root: self.cgroup_root.clone(),
            exe: self.exe.clone(),
            host_resolv: PathBuf::from("/etc/resolv.conf"),
            security,
            hosts_extra: String::new(),
            embedded_dns: false,
        })
    }

    /// Waits for the monitor to finish, then records the exit and tells
    /// waiters. The blocking wait runs on a small thread of its own rather
    /// than tokio's blocking pool, which many long-running containers would
    /// otherwise fill (starving SQLite and file work).
    fn watch_exit(&self, c: Container, handle: MonitorHandle) {
        let Some(svc) = self.me.upgrade() else {
            return; // the daemon is going away
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        let spawned = std::thread::Builder::new()
            .name(format!("wait-{}", &c.row.id[..c.row.id.len().min(12)]))
            .stack_size(128 * 1024)
            .spawn(move || {
                let _ = tx.send(handle.wait());
            });
        if let Err(e) = spawned {
            tracing::error!(id = %c.row.id, error = %e, "cannot watch the container's exit");
            return;
        }
        tokio::spawn(async move {
            let (code, finished, oom, err) = match rx.await {
                Ok(Ok(s)) => (s.exit_code, s.finished_at, s.oom_killed, s.error),
                Ok(Err(e)) => (128, String::new(), false, e.to_string()),
                Err(e) => (128, String::new(), false, e.to_string()),
            };
            svc.record_exit(&c, code, finished, oom, err).await;
        });
    }

    async fn record_exit(
        &self,
        c: &Container,
        code: i32,
        finished: String,
        oom: bool,
        err: String,
    ) {
        let id = c.id().to_string();
        let path = Self::cgroup_path(&id);
        let root = self.cgroup_root.clone();
        let _ = tokio::task::spawn_blocking(move || remove_cgroup(&root, &path)).await;
        self.network_teardown(&id).await;
        self.forget_unfinished_execs(&id).await;
        self.set_monitor(&id, None);
        // Before waiters hear of the exit: a tmpfs volume is unmounted
        // when `docker run` returns.
        self.release_volumes(c, true).await;
        let stopping = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let s2 = stopping.clone();
        let res = self
            .update_state(&id, move |st| {
                s2.store(st.stopping, std::sync::atomic::Ordering::Relaxed);
                st.mark_exited(code, &finished, oom, &err);
                st.stopping = false;
            })
            .await;
        if let Ok(st) = &res {
            self.notify(&id, st, true);
        } else {
            // The row is gone (removed meanwhile): still wake waiters.
            self.sender(&id).send_modify(|s| {
                s.running = false;
                s.exits += 1;
                s.exit_code = code;
            });
        }
        if oom {
            self.emit(c, "oom", &[]);
        }
        self.emit(c, "die", &[("exitCode", code.to_string())]);
        if stopping.load(std::sync::atomic::Ordering::Relaxed) {
            self.emit(c, "stop", &[]);
        }
        self.after_exit(&id).await;
    }

    /// At daemon start: containers recorded as running either still are
    /// (watch their monitors again) or exited while we were away (record
    /// it now).
    /// Returns the containers that were found exited.
    pub async fn reattach(&self) -> EngineResult<Vec<String>> {
        let mut exited = vec![];
        for c in self.all().await? {
            if !c.state.running() {
                continue;
            }
            let bundle = self.bundle_dir(c.id());
            let opened = tokio::task::spawn_blocking(move || {
                let h = MonitorHandle::open(&bundle)?;
                let st = h.state()?;
                Ok::<_, RuntimeError>((h, st))
            })
            .await
            .map_err(EngineError::internal)?;
            match opened {
                Ok((h, st)) if st.status != crate::runtime::Status::Exited => {
                    tracing::info!(id = %c.id(), "re-attached to running container");
                    self.set_monitor(c.id(), Some(h.clone()));
                    self.notify(c.id(), &c.state, false);
                    self.watch_exit(c, h);
                }
                Ok((_, st)) => {
                    exited.push(c.id().to_string());
                    self.record_exit(&c, st.exit_code, st.finished_at, st.oom_killed, st.error)
                        .await
                }
                Err(e) => {
                    tracing::warn!(id = %c.id(), error = %e, "container monitor lost");
                    exited.push(c.id().to_string());
                    self.record_exit(&c, 128, String::new(), false, e.to_string())
                        .await
                }
            }
        }
        Ok(exited)
    }

    /// Rows whose folder is missing cannot run; folders and bundles with no
    /// row are leftovers of a crash between the two.
    pub async fn reconcile_dirs(&self) -> EngineResult<()> {
        let ids: Vec<String> = self
            .store
            .call(|conn| Ok(rows::list(conn)?.into_iter().map(|r| r.id).collect()))
            .await?;
        for dir in [self.containers_dir.clone(), self.bundles_dir.clone()] {
            let ids = ids.clone();
            tokio::task::spawn_blocking(move || {
                let Ok(rd) = fs::read_dir(&dir) else { return };
                for e in rd.flatten() {
                    let name = e.file_name().to_string_lossy().into_owned();
                    if !ids.contains(&name) {
                        tracing::info!(path = %e.path().display(), "removing leftover container files");
                        let _ = fs::remove_dir_all(e.path());
                    }
                }
            })
            .await
            .map_err(EngineError::internal)?;
        }
        Ok(())
    }
}

#[derive(Debug)]
enum LaunchError {
    Start { message: String, exit_code: i32 },
    Other(String),
}

/// The blocking part of a start: files, user, cgroup, monitor. Undoes its
/// cgroup on failure.
fn launch(mut plan: StartPlan) -> Result<(MonitorHandle, String), LaunchError> {
    let other = |e: &dyn std::fmt::Display| LaunchError::Other(e.to_string());
    let bundle = plan.spec.bundle.clone();
    // A previous run's state must not be read as this run's.
    let _ = fs::remove_dir_all(&bundle);
    fs::create_dir_all(bundle.join("rootfs")).map_err(|e| other(&e))?;
    let (uid, gid, home) =
        resolve_user(&plan.layers, &plan.user).map_err(|e| LaunchError::Start {
            message: e,
            exit_code: 128,
        })?;
    plan.spec.process.uid = uid;
    plan.spec.process.gid = gid;
    if !plan.spec.process.env.iter().any(|e| e.starts_with("HOME=")) {
        plan.spec.process.env.push(format!("HOME={home}"));
    }
    plan.security
        .apply(&mut plan.spec, &plan.layers, &plan.user)
        .map_err(|message| LaunchError::Start {
            message,
            exit_code: 128,
        })?;
    write_etc_files(&plan).map_err(|e| other(&e))?;
    plan.spec.save().map_err(|e| other(&e))?;
    let cg_path = plan
        .spec
        .cgroup
        .as_ref()
        .map(|c| c.path.clone())
        .unwrap_or_default();
    let cg = cgroups::manager_for(&plan.cgroup_root, &cg_path).map_err(|e| other(&e))?;
    for note in cg.create(&plan.resources).map_err(|e| other(&e))? {
        tracing::warn!(cgroup = %cg_path, "{note}");
    }
    match spawn_monitor(&plan.exe, &bundle) {
        Ok(h) => {
            let started = crate::runtime::State::load(&bundle)
                .map(|s| s.started_at)
                .unwrap_or_default();
            let started = if started.is_empty() {
                crate::runtime::state::now_rfc3339()
            } else {
                started
            };
            Ok((h, started))
        }
        Err(e) => {
            remove_cgroup(&plan.cgroup_root, &cg_path);
            Err(match e {
                RuntimeError::StartFailed { message, exit_code } => {
                    LaunchError::Start { message, exit_code }
                }
                e => LaunchError::Other(e.to_string()),
            })
        }
    }
}

/// Removes a container's cgroup, waiting briefly for the kernel to let the
/// last processes go (they are exiting when this runs).
pub(crate) fn remove_cgroup(root: &Path, path: &str) {
    let Ok(cg) = cgroups::manager_for(root, path) else {
        return;
    };
    for _ in 0..50 {
        match cg.remove() {
            Ok(()) => return,
            Err(cgroups::CgroupError::Busy { .. }) => {
                std::thread::sleep(std::time::Duration::from_millis(20))
            }
            Err(e) => {
                tracing::warn!(cgroup = %path, error = %e, "cannot remove cgroup");
                return;
            }
        }
    }
}

fn write_etc_files(plan: &StartPlan) -> std::io::Result<()> {
    let files = &plan.spec.etc_files;
    if let Some(p) = &files.hostname {
        fs::write(p, format!("{}\n", plan.spec.hostname))?;
    }
    if let Some(p) = &files.hosts {
        fs::write(
            p,
            format!("{}{}", plan.security.hosts_file(), plan.hosts_extra),
        )?;
    }
    if let Some(p) = &files.resolv_conf {
        let host = fs::read_to_string(&plan.host_resolv).unwrap_or_default();
        let conf = if plan.embedded_dns {
            plan.security.resolv_conf_embedded(&host)
        } else {
            plan.security.resolv_conf(&host)
        };
        fs::write(p, conf)?;
    }
    Ok(())
}

/// The first `etc/<name>` found through the layers (top first).
pub(super) fn read_layered(layers: &[PathBuf], name: &str) -> String {
    layers
        .iter()
        .find_map(|l| fs::read_to_string(l.join("etc").join(name)).ok())
        .unwrap_or_default()
}

/// `User` as uid, gid and home: `uid[:gid]` numbers, or names from the
/// image's `/etc/passwd` and `/etc/group`; errors in dockerd's words.
pub fn resolve_user(layers: &[PathBuf], user: &str) -> Result<(u32, u32, String), String> {
    if user.is_empty() {
        return Ok((0, 0, "/root".into()));
    }
    let (u, g) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let passwd = read_layered(layers, "passwd");
    let entry = passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() >= 6 && (f[0] == u || f[2] == u)).then(|| {
            (
                f[2].parse::<u32>().ok(),
                f[3].parse::<u32>().ok(),
                f[5].to_string(),
            )
        })
    });
    let (uid, mut gid, home) = match (u.parse::<u32>(), entry) {
        (_, Some((Some(uid), Some(gid), home))) => (uid, gid, home),
        (Ok(uid), _) => (uid, 0, "/".to_string()),
        _ => {
            return Err(format!(
                "unable to find user {u}: no matching entries in passwd file"
            ))
        }
    };
    if let Some(g) = g {
        gid = match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => read_layered(layers, "group")
                .lines()
                .find_map(|l| {
                    let f: Vec<&str> = l.split(':').collect();
                    (f.len() >= 3 && f[0] == g).then(|| f[2].parse::<u32>().ok())?
                })
                .ok_or_else(|| {
                    format!("unable to find group {g}: no matching entries in group file")
                })?,
        };
    }
    Ok((uid, gid, if home.is_empty() { "/".into() } else { home }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_resolve_through_layers() {
        let dir = tempfile::tempdir().expect("tempdir");
        let top = dir.path().join("top");
        let low = dir.path().join("low");
        fs::create_dir_all(low.join("etc")).unwrap();
        fs::create_dir_all(&top).unwrap();
        fs::write(
            low.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nwww:x:33:34:www:/var/www:/bin/false\n",
        )
        .unwrap();
        fs::write(low.join("etc/group"), "root:x:0:\nstaff:x:50:\n").unwrap();
        let layers = vec![top, low];
        assert_eq!(resolve_user(&layers, "").unwrap(), (0, 0, "/root".into()));
        assert_eq!(
            resolve_user(&layers, "www").unwrap(),
            (33, 34, "/var/www".into())
        );
        assert_eq!(
            resolve_user(&layers, "www:staff").unwrap(),
            (33, 50, "/var/www".into())
        );
        assert_eq!(
            resolve_user(&layers, "1000:7").unwrap(),
            (1000, 7, "/".into())
        );
        assert!(resolve_user(&layers, "nobody")
            .unwrap_err()
            .contains("no matching entries in passwd file"));
        assert!(resolve_user(&layers, "www:nogroup").is_err());
    }
}
