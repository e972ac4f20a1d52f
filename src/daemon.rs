//! Start-up, serving and shutdown of `mydockerd`.
//!
//! Start-up order matters: the pidfile guards against a second daemon on
//! the same data root, the database is opened and reconciled with the disk
//! before any request is served, and only then are sockets bound.
//! Shutdown (SIGTERM/SIGINT) stops accepting, ends long streams, lets
//! in-flight requests finish within a bound, and never touches containers.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use tokio::net::UnixListener;
use tokio::sync::watch;

use crate::api::{self, AppState};
use crate::config::DaemonConfig;
use crate::container::ContainerService;
use crate::events::EventBus;
use crate::image::layout::Layout;
use crate::image::registry::RegistrySettings;
use crate::image::ImageService;
use crate::network::{NetSettings, NetworkService};
use crate::store::Store;
use crate::system::HostInfo;

/// How long in-flight requests get after a shutdown signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

pub async fn run(config: DaemonConfig) -> anyhow::Result<()> {
    let defaults = crate::container::defaults::ContainerDefaults::from_config(&config);
    defaults.validate().map_err(|e| anyhow::anyhow!(e))?;
    create_private_dir(&config.data_root)?;
    create_private_dir(&config.exec_root)?;
    let _pidfile = PidFile::create(&config.pidfile)?;

    let store = Store::open(&config.data_root.join("mydocker.db"))
        .with_context(|| format!("opening the database in {}", config.data_root.display()))?;
    let layout = Layout::new(&config.data_root);
    {
        let (store, layout) = (store.clone(), layout.clone());
        let report =
            tokio::task::spawn_blocking(move || crate::image::gc::reconcile(&store, &layout))
                .await??;
        tracing::info!(?report, "state reconciled with disk");
    }

    let events = EventBus::new();
    let registry = RegistrySettings {
        mirrors: config.registry_mirrors.clone(),
        insecure: config.insecure_registries.clone(),
        proxy: crate::config::proxy_env(),
    };
    let images = Arc::new(ImageService::new(
        store.clone(),
        layout,
        events.clone(),
        registry,
    ));
    let exe = std::env::current_exe().context("finding the mydockerd binary")?;
    let containers = ContainerService::new(
        store,
        images.clone(),
        events.clone(),
        &config.data_root,
        &config.exec_root,
        exe,
    );
    {
        // rmi and image prune ask the container engine who uses an image.
        let c = Arc::downgrade(&containers);
        images.set_users_hook(Arc::new(move |image_id: String| {
            let c = c.clone();
            Box::pin(async move {
                let Some(c) = c.upgrade() else {
                    return Ok(None);
                };
                Ok(c.image_user(&image_id)
                    .await?
                    .map(|(container_id, running)| crate::image::remove::ImageUser {
                        container_id,
                        running,
                    }))
            })
        }));
    }
    let networks = Arc::new(NetworkService::new(
        containers.store.clone(),
        events.clone(),
        NetSettings::from_config(&config),
        &config.exec_root,
    ));
    containers.set_network(networks.clone());
    containers.set_defaults(defaults);
    containers.reconcile_dirs().await?;
    containers.volumes.reconcile_dirs().await?;
    let exited = containers.reattach().await?;
    containers.reattach_execs().await?;
    {
        let running = containers
            .all()
            .await?
            .into_iter()
            .filter(|c| c.state.running())
            .map(|c| c.id().to_string())
            .collect();
        let report = networks.reconcile(&running).await?;
        tracing::info!(?report, "networks reconciled");
        containers.restart_resolvers().await?;
    }
    {
        let containers = containers.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(crate::container::exec_gc::EXEC_GC_INTERVAL);
            tick.tick().await; // the first tick is immediate
            loop {
                tick.tick().await;
                if let Err(e) = containers.exec_gc_pass().await {
                    tracing::warn!(error = %e, "exec clean-up failed");
                }
            }
        });
    }
    {
        // Restarts can take a while: the API does not wait for them.
        let containers = containers.clone();
        tokio::spawn(async move {
            if let Err(e) = containers.apply_restart_policies(&exited).await {
                tracing::warn!(error = %e, "cannot apply restart policies");
            }
        });
    }
    // The default profile for the default capabilities, compiled off the
    // API's path so that the first `docker run` finds it cached.
    if crate::runtime::seccomp::supported() {
        tokio::task::spawn_blocking(|| {
            let caps: Vec<String> = crate::runtime::spec::DEFAULT_CAPABILITIES
                .iter()
                .map(|c| c.to_string())
                .collect();
            if let Err(e) = crate::runtime::seccomp::program_for(None, &caps) {
                tracing::error!(error = %e, "the default seccomp profile does not compile");
            }
        });
    }
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let state = AppState {
        images,
        containers,
        networks,
        events,
        config: Arc::new(config.clone()),
        host: Arc::new(HostInfo::probe()),
        shutdown: shutdown_rx,
    };

    let mut servers = tokio::task::JoinSet::new();
    let mut sockets = vec![];
    for host in &config.hosts {
        let path = unix_socket_path(host)?;
        let listener = bind_socket(&path, config.group.as_deref())?;
        tracing::info!(socket = %path.display(), "API listening");
        sockets.push(path);
        let app = api::app(state.clone());
        let mut rx = state.shutdown.clone();
        servers.spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = rx.wait_for(|v| *v).await;
                })
                .await
        });
    }
    tracing::info!(version = env!("CARGO_PKG_VERSION"), "daemon ready");

    shutdown_signal().await;
    tracing::info!("shutting down: no longer accepting requests");
    let _ = shutdown_tx.send(true);
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while servers.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!("in-flight requests did not finish in time; exiting anyway");
    }
    for s in sockets {
        let _ = std::fs::remove_file(s);
    }
    tracing::info!("daemon stopped");
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
}

fn create_private_dir(p: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o711)
        .create(p)
        .with_context(|| format!("creating {}", p.display()))
}

pub fn unix_socket_path(host: &str) -> anyhow::Result<PathBuf> {
    match host.strip_prefix("unix://") {
        Some(p) if !p.is_empty() => Ok(PathBuf::from(p)),
        _ => bail!("unsupported host {host:?}: mydockerd serves unix:// sockets only"),
    }
}

/// Binds the API socket, replacing a stale file from a crashed daemon but
/// refusing to steal a live one; mode 0660, group `docker` when it exists.
fn bind_socket(path: &Path, group: Option<&str>) -> anyhow::Result<UnixListener> {
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            bail!("{} is in use by another daemon", path.display());
        }
        std::fs::remove_file(path).with_context(|| format!("removing stale {}", path.display()))?;
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let listener =
        UnixListener::bind(path).with_context(|| format!("binding {}", path.display()))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
    let group_name = group.unwrap_or("docker");
    match nix::unistd::Group::from_name(group_name) {
        Ok(Some(g)) => {
            nix::unistd::chown(path, Some(nix::unistd::Uid::from_raw(0)), Some(g.gid))
                .with_context(|| format!("chown {}", path.display()))?;
        }
        _ if group.is_some() => bail!("group {group_name:?} not found for the API socket"),
        _ => {}
    }
    Ok(listener)
}

/// The pidfile, removed on drop; a live daemon's pidfile stops start-up.
struct PidFile(PathBuf);

impl PidFile {
    fn create(path: &Path) -> anyhow::Result<PidFile> {
        if let Ok(old) = std::fs::read_to_string(path) {
            if let Ok(pid) = old.trim().parse::<i32>() {
                let alive = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok();
                if alive && pid != std::process::id() as i32 {
                    bail!(
                        "pid file found, ensure mydockerd is not running or delete {}",
                        path.display()
                    );
                }
            }
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, format!("{}\n", std::process::id()))
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(PidFile(path.to_path_buf()))
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
