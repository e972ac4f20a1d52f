//! The container engine: create, start, stop/kill, wait, logs, list,
//! inspect data and remove, one verb per file. Nothing here knows HTTP.
//!
//! On disk, per container:
//! - `<data-root>/containers/<id>/`: `upper/` and `work/` (the overlay's
//!   writable layer), `<id>-json.log`, and the `hostname`, `hosts` and
//!   `resolv.conf` files bind-mounted into it;
//! - `<exec-root>/containers/<id>/`: the runtime bundle (`spec.json`,
//!   `state.json`, the monitor's socket and pid file), rewritten at each
//!   start;
//! - its mounts as rows of `container_mounts` (see `mounts/`);
//! - the cgroup `mydocker/<id>` (under each controller on v1), made at
//!   start and removed once the container has exited.
//!
//! The database row is the truth for inspect and list; while a container
//! runs, a small thread per container waits for its monitor and a tokio
//! task records the exit. Waiters subscribe to a `watch` channel per
//! container, so nothing polls. Networking: `network.rs` asks the network
//! engine for a wired namespace at start and undoes it at exit.

pub mod attach;
pub mod create;
pub mod defaults;
pub mod detach_keys;
pub mod exec;
pub mod exec_gc;
pub mod list;
pub mod log_config;
pub mod logs;
pub mod mounts;
pub mod network;
pub mod pause;
pub mod remove;
pub mod rename;
pub mod resize;
pub mod restart;
pub mod restart_policy;
pub mod security;
pub mod size;
pub mod start;
pub mod state;
pub mod stats;
pub mod stop;
pub mod top;
pub mod update;
pub mod wait;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use crate::error::{EngineError, EngineResult};
use crate::events::{Event, EventBus};
use crate::image::ImageService;
use crate::runtime::cgroups::HostCaps;
use crate::runtime::MonitorHandle;
use crate::store::containers::{self as rows, ContainerRow};
use crate::store::Store;
use crate::volume::VolumeService;
pub use create::{ContainerConfig, CreateRequest};
pub use state::{ContainerState, Status};

/// What waiters watch: changes at each exit and at removal.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub running: bool,
    /// How many exits were recorded since the daemon started.
    pub exits: u64,
    pub exit_code: i32,
    pub error: String,
    pub removed: bool,
}

/// In-memory companion of a container row.
struct Live {
    tx: watch::Sender<Snapshot>,
    monitor: Option<MonitorHandle>,
    /// Serialises start and remove of one container.
    op: Arc<tokio::sync::Mutex<()>>,
    /// The restart policy's last back-off delay.
    restart_delay: std::time::Duration,
    /// Bumped to cancel a scheduled policy restart.
    restart_generation: u64,
}

pub struct ContainerService {
    pub store: Store,
    pub images: Arc<ImageService>,
    pub events: EventBus,
    /// The volume engine; containers mount its volumes.
    pub volumes: Arc<VolumeService>,
    containers_dir: PathBuf,
    bundles_dir: PathBuf,
    /// The `mydockerd` binary, started as `mydockerd __monitor <bundle>`.
    exe: PathBuf,
    cgroup_root: PathBuf,
    host: HostCaps,
    live: Mutex<HashMap<String, Live>>,
    /// Lets tasks spawned by the service (exit watchers) hold it.
    me: std::sync::Weak<ContainerService>,
    /// The network engine, once the daemon has set it (see `network.rs`);
    /// without it containers get a namespace with only loopback.
    network: std::sync::OnceLock<Arc<crate::network::NetworkService>>,
    /// Daemon-wide defaults merged in at start (none until the daemon sets them).
    defaults: std::sync::OnceLock<defaults::ContainerDefaults>,
}

/// A container as the engine hands it out: its row with parsed columns.
#[derive(Clone, Debug)]
pub struct Container {
    pub row: ContainerRow,
    pub config: ContainerConfig,
    pub host_config: serde_json::Value,
    pub state: ContainerState,
}

impl Container {
    fn from_row(row: ContainerRow) -> Container {
        let config = serde_json::from_str(&row.config).unwrap_or_default();
        let host_config = serde_json::from_str(&row.host_config).unwrap_or_default();
        let state = ContainerState::parse(&row.state);
        Container {
            row,
            config,
            host_config,
            state,
        }
    }

    pub fn id(&self) -> &str {
        &self.row.id
    }

    /// `/name`, as dockerd shows it.
    pub fn slash_name(&self) -> String {
        format!("/{}", self.row.name)
    }

    /// dockerd's 409 for an action that needs a running container.
    pub(crate) fn not_running(&self) -> EngineError {
        EngineError::Conflict(format!("Container {} is not running", self.id()))
    }

    /// dockerd's 409 for an action on a container waiting to restart.
    pub(crate) fn restarting(&self) -> EngineError {
        EngineError::Conflict(format!(
            "Container {} is restarting, wait until the container is running",
            self.id()
        ))
    }
}

fn hex_prefix(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

impl ContainerService {
    pub fn new(
        store: Store,
        images: Arc<ImageService>,
        events: EventBus,
        data_root: &Path,
        exec_root: &Path,
        exe: PathBuf,
    ) -> Arc<ContainerService> {
        let cgroup_root = PathBuf::from(crate::runtime::cgroups::DEFAULT_ROOT);
        let host = HostCaps::probe();
        Arc::new_cyclic(|me| ContainerService {
            me: me.clone(),
            volumes: Arc::new(VolumeService::new(store.clone(), events.clone(), data_root)),
            store,
            images,
            events,
            containers_dir: data_root.join("containers"),
            bundles_dir: exec_root.join("containers"),
            exe,
            cgroup_root,
            host,
            live: Mutex::new(HashMap::new()),
            network: std::sync::OnceLock::new(),
            defaults: std::sync::OnceLock::new(),
        })
    }

    /// Sets the daemon-wide defaults (once, at daemon start).
    pub fn set_defaults(&self, d: defaults::ContainerDefaults) {
        let _ = self.defaults.set(d);
    }

    /// A container's `HostConfig` with the daemon's defaults merged in.
    pub(crate) fn with_defaults(&self, hc: &serde_json::Value) -> serde_json::Value {
        match self.defaults.get() {
            Some(d) => d.apply(hc),
            None => hc.clone(),
        }
    }

    pub fn container_dir(&self, id: &str) -> PathBuf {
        self.containers_dir.join(id)
    }

    pub fn bundle_dir(&self, id: &str) -> PathBuf {
        self.bundles_dir.join(id)
    }

    pub fn log_path(&self, id: &str) -> PathBuf {
        self.container_dir(id).join(format!("{id}-json.log"))
    }

    /// The cgroup of a container, relative to the hierarchy root(s).
    pub fn cgroup_path(id: &str) -> String {
        format!("mydocker/{id}")
    }

    /// Finds a container like dockerd: full ID, then name, then a unique
    /// ID prefix.
    pub async fn get(&self, name: &str) -> EngineResult<Container> {
        let n = name.to_string();
        let found = self
            .store
            .call(move |conn| {
                if n.is_empty() {
                    return Ok(Err(false));
                }
                if n.len() == 64 {
                    if let Some(r) = rows::get(conn, &n)? {
                        return Ok(Ok(r));
                    }
                }
                if let Some(r) = rows::by_name(conn, n.strip_prefix('/').unwrap_or(&n))? {
                    return Ok(Ok(r));
                }
                if hex_prefix(&n) {
                    let ids = rows::ids_with_prefix(conn, &n.to_ascii_lowercase())?;
                    if ids.len() > 1 {
                        return Ok(Err(true));
                    }
                    if let Some(id) = ids.first() {
                        return Ok(rows::get(conn, id)?.ok_or(false));
                    }
                }
                Ok(Err(false))
            })
            .await?;
        match found {
            Ok(row) => Ok(Container::from_row(row)),
            Err(true) => Err(EngineError::InvalidParameter(format!(
                "multiple IDs found with provided prefix: {name}"
            ))),
            Err(false) => Err(EngineError::NotFound(format!("No such container: {name}"))),
        }
    }

    pub async fn all(&self) -> EngineResult<Vec<Container>> {
        let rows = self.store.call(|conn| rows::list(conn)).await?;
        Ok(rows.into_iter().map(Container::from_row).collect())
    }

    /// Rewrites a container's state with `f`, in the database and for its
    /// waiters; returns the new state.
    async fn update_state(
        &self,
        id: &str,
        f: impl FnOnce(&mut ContainerState) + Send + 'static,
    ) -> EngineResult<ContainerState> {
        let i = id.to_string();
        let st = self
            .store
            .call(move |conn| {
                let row = rows::get(conn, &i)?
                    .ok_or_else(|| EngineError::NotFound(format!("No such container: {i}")))?;
                let mut st = ContainerState::parse(&row.state);
                f(&mut st);
                rows::set_state(conn, &i, &st.to_json())?;
                Ok(st)
            })
            .await?;
        self.notify(id, &st, false);
        Ok(st)
    }

    /// Tells waiters about a new state; an exit counts when the state goes
    /// from running to not running.
    fn notify(&self, id: &str, st: &ContainerState, exited: bool) {
        let tx = self.sender(id);
        tx.send_modify(|s| {
            if exited {
                s.exits += 1;
            }
            s.running = st.running();
            s.exit_code = st.exit_code;
            s.error = st.error.clone();
        });
    }

    fn with_live<R>(&self, id: &str, f: impl FnOnce(&mut Live) -> R) -> R {
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        let entry = live.entry(id.to_string()).or_insert_with(|| Live {
            tx: watch::channel(Snapshot::default()).0,
            monitor: None,
            op: Arc::new(tokio::sync::Mutex::new(())),
            restart_delay: std::time::Duration::ZERO,
            restart_generation: 0,
        });
        f(entry)
    }

    fn sender(&self, id: &str) -> watch::Sender<Snapshot> {
        self.with_live(id, |l| l.tx.clone())
    }

    pub fn subscribe(&self, id: &str) -> watch::Receiver<Snapshot> {
        self.with_live(id, |l| l.tx.subscribe())
    }

    fn op_lock(&self, id: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.with_live(id, |l| l.op.clone())
    }

    fn monitor(&self, id: &str) -> Option<MonitorHandle> {
        self.with_live(id, |l| l.monitor.clone())
    }

    fn set_monitor(&self, id: &str, m: Option<MonitorHandle>) {
        self.with_live(id, |l| l.monitor = m);
    }

    /// Publishes a container event with dockerd's attributes: the labels,
    /// `image`, `name`, plus `extra`.
    pub fn emit(&self, c: &Container, action: &str, extra: &[(&str, String)]) {
        let mut attrs: BTreeMap<String, String> = c
            .config
            .labels
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect();
        attrs.insert("image".into(), c.row.image.clone());
        attrs.insert("name".into(), c.row.name.clone());
        for (k, v) in extra {
            attrs.insert(k.to_string(), v.clone());
        }
        self.events
            .publish(Event::new("container", action, &c.row.id, attrs));
    }

    /// (total, running, stopped) for `/info`.
    pub async fn counts(&self) -> EngineResult<(usize, usize, usize)> {
        let all = self.all().await?;
        let running = all.iter().filter(|c| c.state.running()).count();
        Ok((all.len(), running, all.len() - running))
    }

    /// A container using `image_id` (a running one first), for `docker rmi`.
    pub async fn image_user(&self, image_id: &str) -> EngineResult<Option<(String, bool)>> {
        let i = image_id.to_string();
        let users = self
            .store
            .call(move |conn| rows::using_image(conn, &i))
            .await?;
        let users: Vec<Container> = users.into_iter().map(Container::from_row).collect();
        Ok(users
            .iter()
            .find(|c| c.state.running())
            .or(users.first())
            .map(|c| (c.row.id.clone(), c.state.running())))
    }
}
