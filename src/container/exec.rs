//! Exec instances (`docker exec`): create, start, resize, inspect, and the
//! bookkeeping of their exits. Nothing here knows HTTP.
//!
//! An exec is a row in the `execs` table (config and state as JSON) and,
//! while it runs, an exec monitor (`mydockerd __exec <dir>`, see
//! `runtime::exec_monitor`) in `<exec-root>/execs/<id>/`. A small thread
//! per running exec waits for its monitor; the exit is then recorded in
//! the row, `exec_die` is published and the folder removed. A restarted
//! daemon finds running execs by their rows and watches them again, so an
//! exit code is reported even when the exec ended while it was down.

use std::path::PathBuf;

use bytes::Bytes;
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use super::attach::AttachSession;
use super::{Container, ContainerService};
use crate::error::{EngineError, EngineResult};
use crate::runtime::exec_spec::ExecSpec;
use crate::runtime::protocol::Attach;
use crate::runtime::spec::{CgroupSpec, ContainerSpec};
use crate::runtime::{spawn_exec, MonitorHandle, RuntimeError, Status as RtStatus};
use crate::store::execs::{self as rows, ExecRow};

/// The body of `POST /containers/{id}/exec`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct ExecConfig {
    pub attach_stdin: bool,
    pub attach_stdout: bool,
    pub attach_stderr: bool,
    pub tty: bool,
    /// `[height, width]`.
    pub console_size: Option<[u16; 2]>,
    pub detach_keys: Option<String>,
    pub env: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    pub user: Option<String>,
    pub working_dir: Option<String>,
    pub privileged: bool,
}

impl ExecConfig {
    /// Parses and checks the JSON body; errors are 400s in dockerd's words.
    pub fn parse(body: &[u8]) -> EngineResult<ExecConfig> {
        let cfg: ExecConfig = serde_json::from_slice(body)
            .map_err(|e| EngineError::InvalidParameter(format!("invalid JSON: {e}")))?;
        if cfg.cmd.as_ref().is_none_or(|c| c.is_empty()) {
            return Err(EngineError::InvalidParameter(
                "No exec command specified".into(),
            ));
        }
        if let Some(k) = cfg.detach_keys.as_deref().filter(|k| !k.is_empty()) {
            super::detach_keys::parse(k)?;
        }
        Ok(cfg)
    }

    fn args(&self) -> &[String] {
        self.cmd.as_deref().unwrap_or_default()
    }
}

/// What is known of an exec's run.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct ExecState {
    pub running: bool,
    /// `None` until it has run.
    pub exit_code: Option<i32>,
    /// The process on the host while it runs.
    pub pid: i32,
    /// Why it could not start.
    pub error: String,
    /// Seen finished by one clean-up pass: the next one deletes it.
    pub can_remove: bool,
}

/// An exec as the engine hands it out.
#[derive(Clone, Debug)]
pub struct Exec {
    pub id: String,
    pub container_id: String,
    pub config: ExecConfig,
    pub state: ExecState,
}

impl Exec {
    pub(super) fn from_row(row: ExecRow) -> Exec {
        Exec {
            config: serde_json::from_str(&row.config).unwrap_or_default(),
            state: serde_json::from_str(&row.state).unwrap_or_default(),
            id: row.id,
            container_id: row.container_id,
        }
    }

    /// `Cmd[0]` (dockerd's `ProcessConfig.entrypoint`).
    pub fn entrypoint(&self) -> &str {
        self.config.args().first().map(String::as_str).unwrap_or("")
    }

    /// The rest of `Cmd`.
    pub fn arguments(&self) -> &[String] {
        self.config.args().get(1..).unwrap_or_default()
    }

    /// The parsed detach keys, empty when none were given.
    pub fn detach_keys(&self) -> Vec<u8> {
        match self.config.detach_keys.as_deref() {
            Some(k) if !k.is_empty() => super::detach_keys::parse(k).unwrap_or_default(),
            _ => vec![],
        }
    }

    /// `exec_create: sh -c ...`, as dockerd names the event.
    fn event(&self, action: &str) -> String {
        format!(
            "{action}: {} {}",
            self.entrypoint(),
            self.arguments().join(" ")
        )
    }
}

/// The body of `POST /exec/{id}/start`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExecStartOptions {
    pub detach: bool,
    /// `[height, width]`, overriding the create's.
    pub console_size: Option<[u16; 2]>,
}

/// An exec marked running whose process is not started yet.
pub struct ClaimedExec {
    exec: Exec,
    container: Container,
}

/// How a start went.
pub enum ExecStarted {
    /// `Detach`: running, nothing attached.
    Detached,
    /// The streams to pump; the output ends when the process has exited.
    Attached(AttachSession),
    /// The command could not run: dockerd writes this message into the
    /// stream and reports the exit code (126/127) through inspect.
    Failed { message: String, exit_code: i32 },
}

fn no_such_exec(id: &str) -> EngineError {
    EngineError::NotFound(format!("No such exec instance: {id}"))
}

/// `KEY=value` entries of `over` replace those of `env` with the same key
/// or are appended; a bare `KEY` removes it (dockerd's rule).
fn replace_or_append(env: &mut Vec<String>, over: &[String]) {
    for o in over {
        let key = o.split('=').next().unwrap_or_default();
        let pos = env.iter().position(|e| e.split('=').next() == Some(key));
        match (o.contains('='), pos) {
            (true, Some(i)) => env[i] = o.clone(),
            (true, None) => env.push(o.clone()),
            (false, Some(i)) => {
                env.remove(i);
            }
            (false, None) => {}
        }
    }
}

impl ContainerService {
    /// `<exec-root>/execs/<id>`: the exec monitor's folder.
    pub fn exec_dir(&self, id: &str) -> PathBuf {
        self.bundles_dir.with_file_name("execs").join(id)
    }

    /// `POST /containers/{id}/exec`.
    pub async fn exec_create(&self, name: &str, cfg: ExecConfig) -> EngineResult<String> {
        let c = self.get(name).await?;
        running_check(&c)?;
        let exec = Exec {
            id: hex::encode(rand::random::<[u8; 32]>()),
            container_id: c.id().to_string(),
            config: cfg,
            state: ExecState::default(),
        };
        let row = ExecRow {
            id: exec.id.clone(),
            container_id: exec.container_id.clone(),
            config: serde_json::to_string(&exec.config)?,
            state: serde_json::to_string(&exec.state)?,
            created_at: crate::logs::now_nanos(),
        };
        self.store
            .call(move |conn| rows::insert(conn, &row))
            .await?;
        self.emit(
            &c,
            &exec.event("exec_create"),
            &[("execID", exec.id.clone())],
        );
        Ok(exec.id)
    }

    async fn exec_row(&self, id: &str) -> EngineResult<Exec> {
        let i = id.to_string();
        self.store
            .call(move |conn| rows::get(conn, &i))
            .await?
            .map(Exec::from_row)
            .ok_or_else(|| no_such_exec(id))
    }

    /// `GET /exec/{id}/json`: the row, brought up to date with the monitor
    /// if it says running (the exit may not be recorded yet).
    pub async fn exec_inspect(&self, id: &str) -> EngineResult<Exec> {
        let e = self.exec_row(id).await?;
        if !e.state.running {
            return Ok(e);
        }
        let dir = self.exec_dir(&e.id);
        let st = tokio::task::spawn_blocking(move || MonitorHandle::open(&dir)?.state())
            .await
            .map_err(EngineError::internal)?;
        match st {
            Ok(st) if st.status != RtStatus::Exited => Ok(e),
            Ok(st) => {
                self.record_exec_exit(&e, st.exit_code, st.error).await;
                self.exec_row(id).await
            }
            // The folder is gone: the watcher is recording the exit.
            Err(_) => Ok(e),
        }
    }

    /// The execs of a container that have not finished (`ExecIDs`).
    pub async fn exec_ids(&self, container_id: &str) -> EngineResult<Vec<String>> {
        let cid = container_id.to_string();
        let all = self
            .store
            .call(move |conn| rows::of_container(conn, &cid))
            .await?;
        Ok(all
            .into_iter()
            .map(Exec::from_row)
            .filter(|e| e.state.exit_code.is_none())
            .map(|e| e.id)
            .collect())
    }

    /// dockerd's checks before a start: 404 for an unknown exec, 409 when
    /// it runs or has run, or its container is not running or is paused.
    pub async fn exec_start_check(&self, id: &str) -> EngineResult<(Exec, Container)> {
        let e = self.exec_row(id).await?;
        check_startable(&e.id, &e.state)?;
        let c = self
            .get(&e.container_id)
            .await
            .map_err(|_| no_such_exec(id))?;
        running_check(&c)?;
        Ok((e, c))
    }

    /// `POST /exec/{id}/start`: [`Self::exec_claim`], then
    /// [`Self::exec_run`].
    pub async fn exec_start(&self, id: &str, opts: ExecStartOptions) -> EngineResult<ExecStarted> {
        let claimed = self.exec_claim(id).await?;
        self.exec_run(claimed, opts).await
    }

    /// Checks and marks an exec as running in one step, so that two starts
    /// cannot both run it and a resize sent right after the start waits
    /// for the process.
    pub async fn exec_claim(&self, id: &str) -> EngineResult<ClaimedExec> {
        let (e, c) = self.exec_start_check(id).await?;
        let i = e.id.clone();
        self.store
            .call(move |conn| {
                let row = rows::get(conn, &i)?.ok_or_else(|| no_such_exec(&i))?;
                let mut st: ExecState = serde_json::from_str(&row.state).unwrap_or_default();
                check_startable(&i, &st)?;
                st.running = true;
                rows::set_state(conn, &i, &serde_json::to_string(&st)?)
            })
            .await?;
        Ok(ClaimedExec {
            exec: e,
            container: c,
        })
    }

    /// Starts a claimed exec; a failure is recorded as its exit (126).
    pub async fn exec_run(
        &self,
        claimed: ClaimedExec,
        opts: ExecStartOptions,
    ) -> EngineResult<ExecStarted> {
        let ClaimedExec {
            exec: e,
            container: c,
        } = claimed;
        let started = self.exec_launch(&e, &c, opts).await;
        if let Err(err) = &started {
            let state = ExecState {
                running: false,
                exit_code: Some(126),
                error: err.to_string(),
                ..Default::default()
            };
            self.set_exec_state(&e.id, &state).await?;
        }
        started
    }

    async fn exec_launch(
        &self,
        e: &Exec,
        c: &Container,
        opts: ExecStartOptions,
    ) -> EngineResult<ExecStarted> {
        let spec = self.exec_spec(c, e, opts)?;
        let exe = self.exe.clone();
        let launched = tokio::task::spawn_blocking(move || launch(&exe, spec))
            .await
            .map_err(EngineError::internal)?;
        let handle = match launched {
            Ok(h) => h,
            Err(RuntimeError::StartFailed { message, exit_code }) => {
                let state = ExecState {
                    running: false,
                    exit_code: Some(exit_code),
                    error: message.clone(),
                    ..Default::default()
                };
                self.set_exec_state(&e.id, &state).await?;
                let message = format!(
                    "OCI runtime exec failed: exec failed: unable to start container process: {message}: unknown"
                );
                if opts.detach {
                    return Err(if exit_code == 126 || exit_code == 127 {
                        EngineError::InvalidParameter(message)
                    } else {
                        EngineError::Internal(message)
                    });
                }
                return Ok(ExecStarted::Failed { message, exit_code });
            }
            Err(err) => return Err(EngineError::Internal(format!("cannot start exec: {err}"))),
        };
        let state = ExecState {
            running: true,
            pid: handle.pid(),
            ..Default::default()
        };
        self.set_exec_state(&e.id, &state).await?;
        self.emit(c, &e.event("exec_start"), &[("execID", e.id.clone())]);
        self.watch_exec(e.clone(), handle.clone());
        if opts.detach {
            return Ok(ExecStarted::Detached);
        }
        let cfg = e.config.clone();
        let conns = tokio::task::spawn_blocking(move || {
            // Input first: output attached releases the held output, after
            // which the process may end before a second attach.
            let input = if cfg.attach_stdin {
                Some(handle.attach(Attach {
                    stdin: true,
                    close_stdin: true,
                    ..Default::default()
                })?)
            } else {
                None
            };
            let output = handle.attach(Attach {
                stdout: cfg.attach_stdout,
                stderr: cfg.attach_stderr,
                ..Default::default()
            })?;
            Ok::<_, RuntimeError>((output, input))
        })
        .await
        .map_err(EngineError::internal)?;
        let (output, input) = match conns {
            Ok(c) => c,
            Err(err) => {
                // Gone already (an instant exit without output to hold):
                // nothing to stream.
                tracing::debug!(exec = %e.id, error = %err, "attach to exec");
                return Ok(ExecStarted::Attached(AttachSession {
                    tty: e.config.tty,
                    output: futures::stream::empty().boxed(),
                    stdin: None,
                }));
            }
        };
        let tokio_conn = |s: std::os::unix::net::UnixStream| {
            s.set_nonblocking(true)?;
            tokio::net::UnixStream::from_std(s)
        };
        let output = tokio_conn(output)?;
        let input = input.map(tokio_conn).transpose()?;
        // Read only as fast as the client takes it: the monitor then leaves
        // the process's output unread (back-pressure).
        let output = tokio_util::io::ReaderStream::with_capacity(output, 64 * 1024)
            .take_while(|r| std::future::ready(r.is_ok()))
            .filter_map(|r| std::future::ready(r.ok()))
            .map(Bytes::from)
            .boxed();
        let stdin = input.map(|conn| {
            let fut: futures::future::BoxFuture<'static, Option<tokio::net::UnixStream>> =
                Box::pin(std::future::ready(Some(conn)));
            fut
        });
        Ok(ExecStarted::Attached(AttachSession {
            tty: e.config.tty,
            output,
            stdin,
        }))
    }

    /// `POST /exec/{id}/resize`.
    pub async fn exec_resize(&self, id: &str, height: u16, width: u16) -> EngineResult<()> {
        let mut e = self.exec_row(id).await?;
        let c = self
            .get(&e.container_id)
            .await
            .map_err(|_| no_such_exec(id))?;
        running_check(&c)?;
        // Started but not running yet (a client resizing right after its
        // start): wait for it, as dockerd does, for a while.
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        while e.state.running && e.state.pid == 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            e = self.exec_row(id).await?;
        }
        if !e.state.running || !e.config.tty {
            // Finished, or no pty to size: nothing to do.
            return Ok(());
        }
        let dir = self.exec_dir(&e.id);
        let r =
            tokio::task::spawn_blocking(move || MonitorHandle::open(&dir)?.resize(height, width))
                .await
                .map_err(EngineError::internal)?;
        match r {
            Ok(()) | Err(RuntimeError::NotRunning) | Err(RuntimeError::State(_)) => Ok(()),
            Err(err) => Err(EngineError::Internal(format!("cannot resize exec: {err}"))),
        }
    }

    /// At daemon start: execs recorded as running either still are (watch
    /// them again) or ended while we were away (record it now). Folders
    /// without a running exec are leftovers.
    pub async fn reattach_execs(&self) -> EngineResult<()> {
        let all = self.store.call(|conn| rows::list(conn)).await?;
        let execs: Vec<Exec> = all.into_iter().map(Exec::from_row).collect();
        let running: Vec<String> = execs
            .iter()
            .filter(|e| e.state.running)
            .map(|e| e.id.clone())
            .collect();
        let root = self.exec_dir("x").with_file_name("");
        tokio::task::spawn_blocking(move || {
            let Ok(rd) = std::fs::read_dir(&root) else {
                return;
            };
            for d in rd.flatten() {
                let name = d.file_name().to_string_lossy().into_owned();
                if !running.contains(&name) {
                    let _ = std::fs::remove_dir_all(d.path());
                }
            }
        })
        .await
        .map_err(EngineError::internal)?;
        for e in execs.into_iter().filter(|e| e.state.running) {
            let dir = self.exec_dir(&e.id);
            let opened = tokio::task::spawn_blocking(move || {
                let h = MonitorHandle::open(&dir)?;
                let st = h.state()?;
                Ok::<_, RuntimeError>((h, st))
            })
            .await
            .map_err(EngineError::internal)?;
            match opened {
                Ok((h, st)) if st.status != RtStatus::Exited => self.watch_exec(e, h),
                Ok((_, st)) => self.record_exec_exit(&e, st.exit_code, st.error).await,
                Err(err) => self.record_exec_exit(&e, 128, err.to_string()).await,
            }
        }
        Ok(())
    }

    async fn set_exec_state(&self, id: &str, st: &ExecState) -> EngineResult<()> {
        let (i, s) = (id.to_string(), serde_json::to_string(st)?);
        self.store
            .call(move |conn| rows::set_state(conn, &i, &s))
            .await
    }

    /// The spec of exec `e` in container `c`: the container's namespaces,
    /// cgroup, environment, capabilities and limits, plus the exec's own.
    fn exec_spec(&self, c: &Container, e: &Exec, opts: ExecStartOptions) -> EngineResult<ExecSpec> {
        let cspec = ContainerSpec::load(&self.bundle_dir(c.id()))
            .map_err(|err| EngineError::Internal(format!("container spec: {err}")))?;
        let cfg = &c.config;
        let mut env = vec![
            format!("PATH={}", crate::runtime::spec::DEFAULT_PATH),
            format!("HOSTNAME={}", cfg.hostname),
        ];
        if e.config.tty {
            env.push("TERM=xterm".into());
        }
        replace_or_append(&mut env, cfg.env.as_deref().unwrap_or_default());
        replace_or_append(&mut env, e.config.env.as_deref().unwrap_or_default());
        let mut process = cspec.process.clone();
        process.args = e.config.args().to_vec();
        process.env = env;
        process.cwd = match e.config.working_dir.as_deref() {
            Some(w) if !w.is_empty() => w.to_string(),
            _ if !cfg.working_dir.is_empty() => cfg.working_dir.clone(),
            _ => "/".into(),
        };
        process.tty = e.config.tty;
        process.open_stdin = e.config.attach_stdin;
        // `--init` concerns the container's PID 1 only.
        process.init = false;
        let privileged = e.config.privileged || cspec.privileged;
        let user = match e.config.user.as_deref() {
            Some(u) if !u.is_empty() => u.to_string(),
            _ => cfg.user.clone(),
        };
        let attached = !opts.detach;
        Ok(ExecSpec {
            id: e.id.clone(),
            container_id: c.id().to_string(),
            dir: self.exec_dir(&e.id),
            init_pid: c.state.pid,
            cgroup: Some(CgroupSpec {
                root: self.cgroup_root.clone(),
                path: Self::cgroup_path(c.id()),
            }),
            process,
            user,
            privileged,
            console_size: opts.console_size.or(e.config.console_size),
            stdin: attached && e.config.attach_stdin,
            stdout: attached && e.config.attach_stdout,
            stderr: attached && e.config.attach_stderr,
        })
    }

    /// Waits for the exec monitor on a small thread of its own (as for
    /// containers), then records the exit.
    fn watch_exec(&self, e: Exec, handle: MonitorHandle) {
        let Some(svc) = self.me.upgrade() else {
            return;
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        let spawned = std::thread::Builder::new()
            .name(format!("exec-{}", &e.id[..e.id.len().min(12)]))
            .stack_size(128 * 1024)
            .spawn(move || {
                let _ = tx.send(handle.wait());
            });
        if let Err(err) = spawned {
            tracing::error!(exec = %e.id, error = %err, "cannot watch the exec's exit");
            return;
        }
        tokio::spawn(async move {
            let (code, error) = match rx.await {
                Ok(Ok(st)) => (st.exit_code, st.error),
                Ok(Err(err)) => (128, err.to_string()),
                Err(err) => (128, err.to_string()),
            };
            svc.record_exec_exit(&e, code, error).await;
        });
    }

    /// Records an exit once (the watcher and inspect may both see it),
    /// publishes `exec_die` and removes the exec's folder.
    async fn record_exec_exit(&self, e: &Exec, code: i32, error: String) {
        let id = e.id.clone();
        let recorded = self
            .store
            .call(move |conn| {
                let Some(row) = rows::get(conn, &id)? else {
                    return Ok(false);
                };
                let mut st: ExecState = serde_json::from_str(&row.state).unwrap_or_default();
                if !st.running {
                    return Ok(false);
                }
                st.running = false;
                st.exit_code = Some(code);
                st.error = error;
                rows::set_state(conn, &id, &serde_json::to_string(&st)?)?;
                Ok(true)
            })
            .await
            .unwrap_or(false);
        if recorded {
            if let Ok(c) = self.get(&e.container_id).await {
                self.emit(
                    &c,
                    "exec_die",
                    &[("execID", e.id.clone()), ("exitCode", code.to_string())],
                );
            }
        }
        let dir = self.exec_dir(&e.id);
        let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(dir)).await;
    }
}

fn check_startable(id: &str, st: &ExecState) -> EngineResult<()> {
    if st.running {
        return Err(EngineError::Conflict(format!(
            "Error: Exec command {id} is already running"
        )));
    }
    if st.exit_code.is_some() {
        return Err(EngineError::Conflict(format!(
            "Error: Exec command {id} has already run"
        )));
    }
    Ok(())
}

/// dockerd's checks before an exec is created or started.
fn running_check(c: &Container) -> EngineResult<()> {
    if c.state.paused && c.state.running() {
        return Err(EngineError::Conflict(format!(
            "Container {} is paused, unpause the container before exec",
            c.id()
        )));
    }
    if c.state.restarting && !c.state.running() {
        return Err(c.restarting());
    }
    if !c.state.running() {
        return Err(c.not_running());
    }
    Ok(())
}

/// The blocking part of a start: a fresh folder, the spec, the monitor.
/// A failed start leaves no folder behind.
fn launch(exe: &std::path::Path, spec: ExecSpec) -> Result<MonitorHandle, RuntimeError> {
    let dir = spec.dir.clone();
    let io = |context: &str| {
        let context = context.to_string();
        move |source| RuntimeError::Io { context, source }
    };
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(io("create exec dir"))?;
    let res = spec
        .save()
        .map_err(|e| RuntimeError::Monitor(e.to_string()))
        .and_then(|()| spawn_exec(exe, &dir));
    if res.is_err() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_parses_and_checks_the_command() {
        let cfg = ExecConfig::parse(
            br#"{"AttachStdout":true,"Tty":true,"ConsoleSize":[24,80],"Cmd":["sh","-c","id"],"Env":null,"User":"","DetachKeys":""}"#,
        )
        .expect("parses");
        assert!(cfg.attach_stdout && cfg.tty);
        assert_eq!(cfg.console_size, Some([24, 80]));
        let e = Exec {
            id: "e".into(),
            container_id: "c".into(),
            config: cfg,
            state: ExecState::default(),
        };
        assert_eq!(e.entrypoint(), "sh");
        assert_eq!(e.arguments(), ["-c".to_string(), "id".into()]);
        assert_eq!(e.event("exec_start"), "exec_start: sh -c id");
        for body in [&br#"{"Cmd":[]}"#[..], br#"{"Cmd":null}"#, b"{}"] {
            let err = ExecConfig::parse(body).expect_err("no command");
            assert_eq!(err.to_string(), "No exec command specified");
        }
        assert!(ExecConfig::parse(b"[").is_err());
        assert!(ExecConfig::parse(br#"{"Cmd":["x"],"DetachKeys":"ctrl-"}"#).is_err());
    }

    #[test]
    fn env_overrides_like_dockerd() {
        let mut env = vec!["PATH=/bin".to_string(), "HOSTNAME=h".into()];
        replace_or_append(
            &mut env,
            &["PATH=/x".into(), "A=1".into(), "HOSTNAME".into()],
        );
        assert_eq!(env, vec!["PATH=/x".to_string(), "A=1".into()]);
    }
}
