//! A container's mounts: `HostConfig.Binds`, `Mounts`, `Tmpfs`,
//! `VolumesFrom` and the anonymous volumes of `Config.Volumes` (the
//! image's `VOLUME`s included). Parsed and checked at create with
//! dockerd's rules and messages, turned into volumes (created on first
//! use, filled from the image) and stored as mount rows; resolved into
//! the runtime's [`MountSpec`]s at each start.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{Container, ContainerService};
use crate::error::{EngineError, EngineResult};
use crate::runtime::spec::{MountKind, MountSpec};
use crate::store::mounts as rows;
use crate::volume::{self, Backing, CreateOptions, LOCAL_DRIVER};

#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum MountType {
    #[default]
    Bind,
    Volume,
    Tmpfs,
}

impl MountType {
    fn as_str(self) -> &'static str {
        match self {
            MountType::Bind => "bind",
            MountType::Volume => "volume",
            MountType::Tmpfs => "tmpfs",
        }
    }
}

/// dockerd's `MountPoint`, as inspect and `docker ps` show it.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct MountPoint {
    #[serde(rename = "Type")]
    pub kind: MountType,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default)]
    pub source: String,
    pub destination: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub driver: String,
    #[serde(default)]
    pub mode: String,
    #[serde(rename = "RW", default)]
    pub rw: bool,
    #[serde(default)]
    pub propagation: String,
}

/// A mount as stored: what inspect shows plus what start needs.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct StoredMount {
    pub point: MountPoint,
    /// tmpfs: the `mount -o` words.
    #[serde(default)]
    pub tmpfs_options: Vec<String>,
    /// `Binds`: a missing host directory is made at start, like dockerd.
    #[serde(default)]
    pub create_source: bool,
    /// `HostConfig.Tmpfs` entries are mounted but not listed, as in dockerd.
    #[serde(default)]
    pub hidden: bool,
}

/// One mount asked for, before its volume exists.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Wanted {
    pub mount: StoredMount,
    /// For a volume made now.
    pub labels: Option<BTreeMap<String, String>>,
    pub driver_opts: Option<BTreeMap<String, String>>,
    /// First-use copy of the image's content.
    pub copy: bool,
}

/// The mounts of a create request, checked.
#[derive(Debug, Default)]
pub struct Requested {
    /// `(container, read-write)`.
    pub volumes_from: Vec<(String, bool)>,
    /// Binds, Mounts and Tmpfs, in that order; destinations unique.
    pub explicit: Vec<Wanted>,
    /// `Config.Volumes` destinations, cleaned.
    pub anonymous: Vec<String>,
}

/// What create made: the mounts to store and the volumes created for
/// them (removed again if the create fails).
#[derive(Debug, Default)]
pub struct MountPlan {
    pub mounts: Vec<StoredMount>,
    pub created: Vec<String>,
}

fn invalid(msg: impl Into<String>) -> EngineError {
    EngineError::InvalidParameter(msg.into())
}

const PROPAGATIONS: &[&str] = &[
    "private", "rprivate", "shared", "rshared", "slave", "rslave",
];

/// Go's `path.Clean` for the paths we take.
pub fn clean_path(p: &str) -> String {
    let abs = p.starts_with('/');
    let mut out: Vec<&str> = vec![];
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                if out.last().is_some_and(|l| *l != "..") {
                    out.pop();
                } else if !abs {
                    out.push("..");
                }
            }
            c => out.push(c),
        }
    }
    let joined = out.join("/");
    match (abs, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".into(),
        (false, false) => joined,
    }
}

/// dockerd's check of a `-v` mode: known words, at most one of a kind.
fn valid_mode(mode: &str) -> bool {
    if mode.is_empty() {
        return true;
    }
    let mut counts = [0; 5];
    for o in mode.split(',') {
        let kind = match o {
            "rw" | "ro" => 0,
            "z" | "Z" => 1,
            o if PROPAGATIONS.contains(&o) => 2,
            "nocopy" => 3,
            "consistent" | "cached" | "delegated" => 4,
            _ => return false,
        };
        counts[kind] += 1;
    }
    counts.iter().all(|c| *c <= 1)
}

/// The checks of a mount target, in dockerd's words (unwrapped).
fn check_target(target: &str) -> Result<(), String> {
    if target.is_empty() {
        return Err("field Target must not be empty".into());
    }
    if clean_path(target) == "/" {
        return Err("invalid specification: destination can't be '/'".into());
    }
    if !target.starts_with('/') {
        return Err(format!(
            "invalid mount path: '{target}' mount path must be absolute"
        ));
    }
    Ok(())
}

fn mount_config_error(kind: &str, e: impl std::fmt::Display) -> EngineError {
    invalid(format!("invalid mount config for type {kind:?}: {e}"))
}

fn check_driver(driver: &str) -> EngineResult<()> {
    if driver.is_empty() || driver == LOCAL_DRIVER {
        return Ok(());
    }
    Err(EngineError::NotFound(format!(
        "error looking up volume plugin {driver}: plugin \"{driver}\" not found"
    )))
}

/// One `Binds` entry: `src:dst[:mode]`, src an absolute host path (bind)
/// or a volume name.
pub fn parse_bind(raw: &str, volume_driver: &str) -> EngineResult<Wanted> {
    let spec_err = || invalid(format!("invalid volume specification: '{raw}'"));
    let parts: Vec<&str> = raw.splitn(4, ':').collect();
    if parts[0].is_empty() {
        return Err(spec_err());
    }
    let (src, dst, mode) = match parts[..] {
        [dst] => ("", dst, ""),
        [_, m] if valid_mode(m) => return Err(spec_err()),
        [src, dst] => (src, dst, ""),
        [src, dst, mode] => (src, dst, mode),
        _ => return Err(spec_err()),
    };
    if !valid_mode(mode) {
        return Err(invalid(format!("invalid mode: {mode}")));
    }
    let words: Vec<&str> = mode.split(',').collect();
    let kind = if src.starts_with('/') {
        MountType::Bind
    } else {
        MountType::Volume
    };
    let rw = !words.contains(&"ro");
    let propagation = words.iter().find(|w| PROPAGATIONS.contains(w)).copied();
    let wrap = |e: String| {
        invalid(format!(
            "invalid volume specification: '{raw}': invalid mount config for type \"{}\": {e}",
            kind.as_str()
        ))
    };
    check_target(dst).map_err(wrap)?;
    let mut point = MountPoint {
        kind,
        destination: clean_path(dst),
        mode: mode.to_string(),
        rw,
        ..Default::default()
    };
    match kind {
        MountType::Bind => {
            point.source = clean_path(src);
            point.propagation = propagation.unwrap_or("rprivate").to_string();
        }
        _ => {
            if propagation.is_some() {
                return Err(wrap("field BindOptions must not be specified".into()));
            }
            if src.is_empty() && !rw {
                return Err(wrap(
                    "must not set ReadOnly mode when using anonymous volumes".into(),
                ));
            }
            check_driver(volume_driver)?;
            point.name = src.to_string();
            point.driver = LOCAL_DRIVER.into();
            if point.mode.is_empty() {
                point.mode = "z".into();
            }
        }
    }
    Ok(Wanted {
        mount: StoredMount {
            point,
            create_source: kind == MountType::Bind,
            ..Default::default()
        },
        copy: !words.contains(&"nocopy"),
        ..Default::default()
    })
}

/// `HostConfig.Mounts[]` in the API's shape.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ApiMount {
    #[serde(rename = "Type")]
    pub kind: String,
    pub source: String,
    pub target: String,
    pub read_only: bool,
    pub consistency: String,
    pub bind_options: Option<BindOptions>,
    pub volume_options: Option<VolumeOptions>,
    pub tmpfs_options: Option<TmpfsOptions>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct BindOptions {
    pub propagation: String,
    pub non_recursive: bool,
    pub create_mountpoint: bool,
    pub read_only_non_recursive: bool,
    pub read_only_force_recursive: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct VolumeOptions {
    pub no_copy: bool,
    pub labels: Option<BTreeMap<String, String>>,
    pub driver_config: Option<DriverConfig>,
    pub subpath: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct DriverConfig {
    pub name: String,
    pub options: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct TmpfsOptions {
    pub size_bytes: i64,
    pub mode: u32,
    pub options: Option<Vec<Vec<String>>>,
}

/// `TmpfsOptions` as `mount -o` words, like dockerd's conversion.
fn tmpfs_data(o: Option<&TmpfsOptions>, read_only: bool) -> Result<Vec<String>, String> {
    let mut out = vec![];
    if read_only {
        out.push("ro".to_string());
    }
    let Some(o) = o else { return Ok(out) };
    if o.mode != 0 {
        out.push(format!("mode={:o}", o.mode));
    }
    if o.size_bytes < 0 {
        return Err(format!("invalid tmpfs size: {}", o.size_bytes));
    }
    if o.size_bytes != 0 {
        let (mut size, mut suffix) = (o.size_bytes, "");
        for (s, d) in [("g", 1i64 << 30), ("m", 1 << 20), ("k", 1 << 10)] {
            if size % d == 0 {
                size /= d;
                suffix = s;
                break;
            }
        }
        out.push(format!("size={size}{suffix}"));
    }
    for opt in o.options.iter().flatten() {
        match opt.as_slice() {
            [k] | [k, _] if !matches!(k.as_str(), "exec" | "noexec") => {
                return Err(format!("invalid option: {k}"))
            }
            [k] => out.push(k.clone()),
            [k, v] => out.push(format!("{k}={v}")),
            _ => return Err("invalid option array length".into()),
        }
    }
    Ok(out)
}

/// dockerd's defaults for tmpfs mounts, then the user's words; a later
/// word wins over an earlier one of its kind (`exec` over `noexec`, the
/// last `size=`).
fn merge_tmpfs_options(user: &[String]) -> Vec<String> {
    fn kind(o: &str) -> &str {
        match o {
            "ro" | "rw" => "rw",
            "exec" | "noexec" => "exec",
            "suid" | "nosuid" => "suid",
            "dev" | "nodev" => "dev",
            "atime" | "noatime" => "atime",
            "diratime" | "nodiratime" => "diratime",
            o if PROPAGATIONS.contains(&o) => "propagation",
            o => o.split_once('=').map(|(k, _)| k).unwrap_or(o),
        }
    }
    let all: Vec<&str> = ["noexec", "nosuid", "nodev", "rprivate"]
        .into_iter()
        .chain(user.iter().map(String::as_str))
        .filter(|o| !o.is_empty())
        .collect();
    let mut out: Vec<String> = vec![];
    for o in all.iter().rev() {
        if !out.iter().any(|x| kind(x) == kind(o)) {
            out.push(o.to_string());
        }
    }
    out.reverse();
    out
}

fn tmpfs_mount(dest: &str, user: &[String]) -> Result<StoredMount, String> {
    let options = merge_tmpfs_options(user);
    crate::runtime::rootfs::parse_options(&options).map_err(|e| e.to_string())?;
    Ok(StoredMount {
        point: MountPoint {
            kind: MountType::Tmpfs,
            destination: clean_path(dest),
            rw: !options.iter().any(|o| o == "ro"),
            ..Default::default()
        },
        tmpfs_options: options,
        ..Default::default()
    })
}

/// One `Mounts` entry, checked like dockerd's `ValidateMountConfig`.
pub fn parse_mount(m: &ApiMount, volume_driver: &str) -> EngineResult<Wanted> {
    let kind = m.kind.as_str();
    let err = |e: &str| mount_config_error(kind, e);
    check_target(&m.target).map_err(|e| err(&e))?;
    let destination = clean_path(&m.target);
    match kind {
        "bind" => {
            if m.source.is_empty() {
                return Err(err("field Source must not be empty"));
            }
            let b = m.bind_options.as_ref();
            let propagation = b.map(|b| b.propagation.as_str()).unwrap_or("");
            if !propagation.is_empty() && !PROPAGATIONS.contains(&propagation) {
                return Err(err(&format!("invalid propagation mode: {propagation}")));
            }
            if m.volume_options.is_some() {
                return Err(err("field VolumeOptions must not be specified"));
            }
            if !m.source.starts_with('/') {
                return Err(err(&format!(
                    "invalid mount path: '{}' mount path must be absolute",
                    m.source
                )));
            }
            if b.is_some_and(|b| {
                b.non_recursive || b.read_only_non_recursive || b.read_only_force_recursive
            }) {
                return Err(invalid(
                    "BindOptions.NonRecursive and the ReadOnly*Recursive options are not supported by mydocker yet",
                ));
            }
            let create = b.is_some_and(|b| b.create_mountpoint);
            if !create && std::fs::symlink_metadata(&m.source).is_err() {
                return Err(err(&format!(
                    "bind source path does not exist: {}",
                    m.source
                )));
            }
            Ok(Wanted {
                mount: StoredMount {
                    point: MountPoint {
                        kind: MountType::Bind,
                        source: clean_path(&m.source),
                        destination,
                        rw: !m.read_only,
                        propagation: if propagation.is_empty() {
                            "rprivate".into()
                        } else {
                            propagation.into()
                        },
                        ..Default::default()
                    },
                    create_source: create,
                    ..Default::default()
                },
                ..Default::default()
            })
        }
        "volume" => {
            if m.bind_options.is_some() {
                return Err(err("field BindOptions must not be specified"));
            }
            let vo = m.volume_options.as_ref();
            if vo.is_some_and(|v| !v.subpath.is_empty()) {
                return Err(invalid(
                    "VolumeOptions.Subpath is not supported by mydocker yet",
                ));
            }
            if m.read_only && m.source.is_empty() {
                return Err(err(
                    "must not set ReadOnly mode when using anonymous volumes",
                ));
            }
            let dc = vo.and_then(|v| v.driver_config.as_ref());
            check_driver(dc.map(|d| d.name.as_str()).unwrap_or(volume_driver))?;
            Ok(Wanted {
                mount: StoredMount {
                    point: MountPoint {
                        kind: MountType::Volume,
                        name: m.source.clone(),
                        destination,
                        driver: LOCAL_DRIVER.into(),
                        mode: "z".into(),
                        rw: !m.read_only,
                        ..Default::default()
                    },
                    ..Default::default()
                },
                labels: vo.and_then(|v| v.labels.clone()),
                driver_opts: dc.and_then(|d| d.options.clone()),
                copy: !vo.is_some_and(|v| v.no_copy),
            })
        }
        "tmpfs" => {
            if m.bind_options.is_some() {
                return Err(err("field BindOptions must not be specified"));
            }
            if !m.source.is_empty() {
                return Err(err("field Source must not be specified"));
            }
            let data = tmpfs_data(m.tmpfs_options.as_ref(), m.read_only).map_err(|e| err(&e))?;
            let mount = tmpfs_mount(&m.target, &data).map_err(|e| err(&e))?;
            Ok(Wanted {
                mount,
                ..Default::default()
            })
        }
        _ => Err(err("mount type unknown")),
    }
}

fn strings(hc: &Map<String, Value>, key: &str) -> EngineResult<Vec<String>> {
    match hc.get(key) {
        None | Some(Value::Null) => Ok(vec![]),
        Some(v) => serde_json::from_value(v.clone())
            .map_err(|e| invalid(format!("invalid HostConfig.{key}: {e}"))),
    }
}

/// Parses and checks the mount options of a create request.
pub fn parse(hc: &Map<String, Value>, config_volumes: &[String]) -> EngineResult<Requested> {
    let driver = hc
        .get("VolumeDriver")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let tmpfs: BTreeMap<String, String> = match hc.get("Tmpfs") {
        None | Some(Value::Null) => BTreeMap::new(),
        Some(v) => serde_json::from_value(v.clone())
            .map_err(|e| invalid(format!("invalid HostConfig.Tmpfs: {e}")))?,
    };
    let mounts: Vec<ApiMount> = match hc.get("Mounts") {
        None | Some(Value::Null) => vec![],
        Some(v) => serde_json::from_value(v.clone())
            .map_err(|e| invalid(format!("invalid HostConfig.Mounts: {e}")))?,
    };
    let mut req = Requested::default();
    for spec in strings(hc, "VolumesFrom")? {
        if spec.is_empty() {
            return Err(invalid(
                "volumes-from specification cannot be an empty string",
            ));
        }
        let (id, mode) = spec.split_once(':').unwrap_or((&spec, ""));
        let bad = !valid_mode(mode)
            || mode
                .split(',')
                .any(|w| PROPAGATIONS.contains(&w) || w == "nocopy");
        if bad {
            return Err(invalid(format!("invalid mode: {mode}")));
        }
        req.volumes_from
            .push((id.to_string(), !mode.split(',').any(|w| w == "ro")));
    }
    let tmpfs_dests: Vec<String> = tmpfs.keys().map(|d| clean_path(d)).collect();
    let mut taken: Vec<String> = vec![];
    for raw in strings(hc, "Binds")? {
        let w = parse_bind(&raw, &driver)?;
        let d = w.mount.point.destination.clone();
        if taken.contains(&d) || tmpfs_dests.contains(&d) {
            return Err(invalid(format!("Duplicate mount point: {d}")));
        }
        taken.push(d);
        req.explicit.push(w);
    }
    for m in &mounts {
        let w = parse_mount(m, &driver)?;
        let d = w.mount.point.destination.clone();
        if taken.contains(&d) || tmpfs_dests.contains(&d) {
            return Err(invalid(format!("Duplicate mount point: {}", m.target)));
        }
        taken.push(d);
        req.explicit.push(w);
    }
    for (dest, opts) in &tmpfs {
        check_target(dest).map_err(invalid)?;
        let words: Vec<String> = opts.split(',').map(String::from).collect();
        let mut mount = tmpfs_mount(dest, &words)
            .map_err(|e| invalid(format!("invalid tmpfs options for {dest}: {e}")))?;
        mount.hidden = true;
        req.explicit.push(Wanted {
            mount,
            ..Default::default()
        });
    }
    for raw in config_volumes {
        check_target(raw).map_err(|e| {
            invalid(format!(
                "invalid volume specification: '{raw}': invalid mount config for type \"volume\": {e}"
            ))
        })?;
        let d = clean_path(raw);
        if !req.anonymous.contains(&d) {
            req.anonymous.push(d);
        }
    }
    check_driver(&driver)?;
    Ok(req)
}

/// Path depth, to mount parents before children (dockerd sorts the same).
fn depth(dest: &str) -> usize {
    dest.split('/').filter(|s| !s.is_empty()).count()
}

impl ContainerService {
    /// The stored mounts of a container.
    pub async fn stored_mounts(&self, id: &str) -> EngineResult<Vec<StoredMount>> {
        let i = id.to_string();
        let specs = self
            .store
            .call(move |conn| rows::of_container(conn, &i))
            .await?;
        Ok(specs
            .iter()
            .filter_map(|s| serde_json::from_str(s).ok())
            .collect())
    }

    /// `Mounts` of inspect.
    pub async fn mount_points(&self, id: &str) -> EngineResult<Vec<MountPoint>> {
        Ok(self
            .stored_mounts(id)
            .await?
            .into_iter()
            .filter(|m| !m.hidden)
            .map(|m| m.point)
            .collect())
    }

    /// `Mounts` of every container, for `docker ps`.
    pub async fn all_mount_points(&self) -> EngineResult<HashMap<String, Vec<MountPoint>>> {
        let all = self.store.call(|conn| rows::all(conn)).await?;
        let mut out: HashMap<String, Vec<MountPoint>> = HashMap::new();
        for (id, spec) in all {
            if let Ok(m) = serde_json::from_str::<StoredMount>(&spec) {
                if !m.hidden {
                    out.entry(id).or_default().push(m.point);
                }
            }
        }
        Ok(out)
    }

    /// Resolves a create request's mounts: volumes-from, then binds,
    /// mounts and tmpfs (which win over volumes-from), then anonymous
    /// volumes where nothing else is mounted. Creates the volumes needed
    /// and fills new ones from the image (`layers`, top first). On error,
    /// volumes created here are removed again.
    pub(crate) async fn plan_mounts(
        &self,
        hc: &Map<String, Value>,
        config_volumes: &[String],
        layers: Vec<PathBuf>,
    ) -> EngineResult<MountPlan> {
        let req = parse(hc, config_volumes)?;
        let mut wanted: BTreeMap<String, Wanted> = BTreeMap::new();
        for (name, rw) in &req.volumes_from {
            let other = self.get(name).await?;
            for mut m in self.stored_mounts(other.id()).await? {
                if m.hidden {
                    continue;
                }
                m.point.rw &= rw;
                m.point.mode = String::new();
                m.create_source = false;
                wanted.insert(
                    m.point.destination.clone(),
                    Wanted {
                        mount: m,
                        ..Default::default()
                    },
                );
            }
        }
        for w in req.explicit {
            wanted.insert(w.mount.point.destination.clone(), w);
        }
        for d in req.anonymous {
            wanted.entry(d.clone()).or_insert_with(|| Wanted {
                mount: StoredMount {
                    point: MountPoint {
                        kind: MountType::Volume,
                        destination: d,
                        driver: LOCAL_DRIVER.into(),
                        rw: true,
                        ..Default::default()
                    },
                    ..Default::default()
                },
                copy: true,
                ..Default::default()
            });
        }
        let mut plan = MountPlan::default();
        let result = self.make_volumes(wanted, &layers, &mut plan).await;
        if let Err(e) = result {
            self.volumes.remove_if_unused(&plan.created).await;
            return Err(e);
        }
        Ok(plan)
    }

    async fn make_volumes(
        &self,
        wanted: BTreeMap<String, Wanted>,
        layers: &[PathBuf],
        plan: &mut MountPlan,
    ) -> EngineResult<()> {
        for (_, mut w) in wanted {
            let p = &mut w.mount.point;
            // Volumes from another container exist already.
            if p.kind == MountType::Volume && p.source.is_empty() {
                let (v, created) = self
                    .volumes
                    .create(CreateOptions {
                        name: p.name.clone(),
                        driver: LOCAL_DRIVER.into(),
                        labels: w.labels.clone(),
                        options: w.driver_opts.clone(),
                    })
                    .await?;
                if created {
                    plan.created.push(v.name().to_string());
                }
                p.name = v.name().to_string();
                p.source = v.mountpoint.display().to_string();
                if w.copy && v.backing()? == Backing::Dir {
                    let (layers, dest, dir) =
                        (layers.to_vec(), p.destination.clone(), v.mountpoint.clone());
                    tokio::task::spawn_blocking(move || {
                        volume::copy::copy_image_path(&layers, &dest, &dir)
                    })
                    .await
                    .map_err(EngineError::internal)?
                    .map_err(|e| {
                        EngineError::Internal(format!(
                            "copying the image's content into volume {}: {e}",
                            v.name()
                        ))
                    })?;
                }
            }
            plan.mounts.push(w.mount);
        }
        Ok(())
    }

    /// The runtime mounts of a container, parents first; makes missing
    /// bind sources of `Binds` and mounts tmpfs volumes on the host.
    pub(crate) async fn mount_specs(&self, c: &Container) -> EngineResult<Vec<MountSpec>> {
        let mut specs = vec![];
        for m in self.stored_mounts(c.id()).await? {
            let p = &m.point;
            let propagation = if p.propagation.is_empty() {
                "rprivate".to_string()
            } else {
                p.propagation.clone()
            };
            let source = match p.kind {
                MountType::Tmpfs => {
                    specs.push(MountSpec {
                        source: PathBuf::new(),
                        destination: p.destination.clone(),
                        kind: MountKind::Tmpfs,
                        options: m.tmpfs_options.clone(),
                        readonly: !p.rw,
                    });
                    continue;
                }
                MountType::Bind => {
                    let src = PathBuf::from(&p.source);
                    if m.create_source && !src.exists() {
                        std::fs::create_dir_all(&src)?;
                    }
                    src
                }
                MountType::Volume => {
                    let v = self.volumes.get(&p.name).await?;
                    match v.backing()? {
                        Backing::Dir => v.mountpoint.clone(),
                        Backing::Bind { device } => device,
                        Backing::Tmpfs { options } => {
                            let dir = v.mountpoint.clone();
                            tokio::task::spawn_blocking(move || {
                                volume::local::mount_tmpfs(&dir, &options)
                            })
                            .await
                            .map_err(EngineError::internal)?
                            .map_err(|e| {
                                EngineError::Internal(format!(
                                    "failed to mount local volume {}: {e}",
                                    v.name()
                                ))
                            })?;
                            v.mountpoint.clone()
                        }
                    }
                }
            };
            if !source.exists() {
                return Err(EngineError::InvalidParameter(format!(
                    "invalid mount config for type \"bind\": bind source path does not exist: {}",
                    source.display()
                )));
            }
            specs.push(MountSpec {
                source,
                destination: p.destination.clone(),
                kind: MountKind::Bind,
                options: vec![propagation],
                readonly: !p.rw,
            });
        }
        specs.sort_by_key(|s| depth(&s.destination));
        Ok(specs)
    }

    /// Volume `mount` events once a container started.
    pub(crate) async fn emit_volume_mounts(&self, c: &Container) {
        for m in self.stored_mounts(c.id()).await.unwrap_or_default() {
            let p = &m.point;
            if p.kind == MountType::Volume {
                self.volumes.emit_use(
                    "mount",
                    &p.name,
                    &[
                        ("container", c.id().to_string()),
                        ("destination", p.destination.clone()),
                        ("driver", p.driver.clone()),
                        ("propagation", p.propagation.clone()),
                        ("read/write", p.rw.to_string()),
                    ],
                );
            }
        }
    }

    /// After a container stopped (or failed to start): tmpfs volumes that
    /// no running container uses any more are unmounted; `events` sends
    /// the volume `unmount` events of a container that ran.
    pub(crate) async fn release_volumes(&self, c: &Container, events: bool) {
        for m in self.stored_mounts(c.id()).await.unwrap_or_default() {
            let p = &m.point;
            if p.kind != MountType::Volume {
                continue;
            }
            if events {
                self.volumes.emit_use(
                    "unmount",
                    &p.name,
                    &[
                        ("container", c.id().to_string()),
                        ("driver", p.driver.clone()),
                    ],
                );
            }
            let Ok(v) = self.volumes.get(&p.name).await else {
                continue;
            };
            if !matches!(v.backing(), Ok(Backing::Tmpfs { .. })) {
                continue;
            }
            let mut still_used = false;
            for id in self.volumes.users(v.name()).await.unwrap_or_default() {
                if id != c.id() && self.get(&id).await.is_ok_and(|o| o.state.running()) {
                    still_used = true;
                }
            }
            if !still_used {
                let dir = v.mountpoint.clone();
                let _ =
                    tokio::task::spawn_blocking(move || volume::local::unmount_tmpfs(&dir)).await;
            }
        }
    }

    /// Names of the anonymous volumes a container mounts (`docker rm -v`).
    pub async fn anonymous_volumes(&self, id: &str) -> EngineResult<Vec<String>> {
        let mut out = vec![];
        for m in self.stored_mounts(id).await? {
            if m.point.kind != MountType::Volume {
                continue;
            }
            if let Ok(v) = self.volumes.get(&m.point.name).await {
                if v.is_anonymous() {
                    out.push(m.point.name.clone());
                }
            }
        }
        Ok(out)
    }

    /// Removes the given anonymous volumes once their container is gone;
    /// one still used by another container stays (dockerd logs it too).
    /// For `docker rm -v` and `--rm`: take the names with
    /// [`Self::anonymous_volumes`] before removing the container.
    pub async fn remove_anonymous_volumes(&self, names: &[String]) {
        self.volumes.remove_if_unused(names).await;
    }
}

/// The `volume` filter of `GET /containers/json`: a volume name (or bind
/// source) or a destination.
pub fn mounts_match(points: &[MountPoint], value: &str) -> bool {
    points.iter().any(|m| {
        m.destination == value
            || (!m.name.is_empty() && m.name == value)
            || (m.name.is_empty() && m.source == value)
    })
}

/// Stores a plan's mounts for a new container, inside its transaction.
pub(crate) fn insert_rows(
    conn: &rusqlite::Connection,
    id: &str,
    plan: &MountPlan,
) -> EngineResult<()> {
    for m in &plan.mounts {
        let volume = (m.point.kind == MountType::Volume).then_some(m.point.name.as_str());
        rows::insert(
            conn,
            id,
            &m.point.destination,
            volume,
            &serde_json::to_string(m)?,
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hc(j: &str) -> Map<String, Value> {
        match serde_json::from_str(j).expect("json") {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    fn err(j: &str) -> String {
        parse(&hc(j), &[]).unwrap_err().to_string()
    }

    #[test]
    fn paths_clean_like_go() {
        assert_eq!(clean_path("/a/b/../c/"), "/a/c");
        assert_eq!(clean_path("/../x"), "/x");
        assert_eq!(clean_path("//"), "/");
        assert_eq!(clean_path("a/./b"), "a/b");
    }

    #[test]
    fn binds_parse_with_dockerd_rules() {
        let w = parse_bind("/host/dir/:/data:ro,rshared", "").unwrap();
        let p = &w.mount.point;
        assert_eq!(p.kind, MountType::Bind);
        assert_eq!(
            (p.source.as_str(), p.destination.as_str()),
            ("/host/dir", "/data")
        );
        assert!(!p.rw);
        assert_eq!(p.propagation, "rshared");
        assert_eq!(p.mode, "ro,rshared");
        assert!(w.mount.create_source);

        let w = parse_bind("/h:/x", "").unwrap();
        assert_eq!(w.mount.point.propagation, "rprivate");
        assert!(w.mount.point.rw);

        let w = parse_bind("cache:/var/cache:nocopy", "").unwrap();
        let p = &w.mount.point;
        assert_eq!(
            (p.kind, p.name.as_str(), p.driver.as_str()),
            (MountType::Volume, "cache", "local")
        );
        assert_eq!(p.mode, "nocopy");
        assert!(!w.copy);
        let w = parse_bind("cache:/c", "").unwrap();
        assert_eq!(
            w.mount.point.mode, "z",
            "dockerd's default mode for local volumes"
        );
        assert!(w.copy);
        assert!(parse_bind("v:/z:Z", "").is_ok());

        for (raw, want) in [
            ("", "invalid volume specification: ''"),
            (":/x", "invalid volume specification: ':/x'"),
            ("/x:rw", "invalid volume specification: '/x:rw'"),
            ("a:b:c:d", "invalid volume specification: 'a:b:c:d'"),
            ("/a:/b:bogus", "invalid mode: bogus"),
            ("/a:/b:ro,rw", "invalid mode: ro,rw"),
            (
                "/a:rel",
                "invalid volume specification: '/a:rel': invalid mount config for type \"bind\": invalid mount path: 'rel' mount path must be absolute",
            ),
            (
                "/a:/",
                "invalid volume specification: '/a:/': invalid mount config for type \"bind\": invalid specification: destination can't be '/'",
            ),
            (
                "v:/x:rshared",
                "invalid volume specification: 'v:/x:rshared': invalid mount config for type \"volume\": field BindOptions must not be specified",
            ),
        ] {
            let e = parse_bind(raw, "").unwrap_err();
            assert!(matches!(e, EngineError::InvalidParameter(_)), "{raw}");
            assert_eq!(e.to_string(), want, "{raw}");
        }
        assert!(matches!(
            parse_bind("v:/x", "flocker").unwrap_err(),
            EngineError::NotFound(_)
        ));
    }

    #[test]
    fn mounts_parse_and_check() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().display().to_string();
        let r = parse(
            &hc(&format!(
                r#"{{"Mounts":[
                {{"Type":"bind","Source":"{src}","Target":"/b","ReadOnly":true,"BindOptions":{{"Propagation":"slave"}}}},
                {{"Type":"volume","Source":"v1","Target":"/v","VolumeOptions":{{"NoCopy":true,"Labels":{{"a":"b"}}}}}},
                {{"Type":"volume","Target":"/anon"}},
                {{"Type":"tmpfs","Target":"/t","TmpfsOptions":{{"SizeBytes":1048576,"Mode":1777,"Options":[["exec"]]}}}}
            ]}}"#
            )),
            &[],
        )
        .expect("parses");
        let pts: Vec<&MountPoint> = r.explicit.iter().map(|w| &w.mount.point).collect();
        assert_eq!(pts[0].propagation, "slave");
        assert!(!pts[0].rw && !r.explicit[0].mount.create_source);
        assert_eq!(pts[1].name, "v1");
        assert!(!r.explicit[1].copy);
        assert_eq!(r.explicit[1].labels.as_ref().unwrap()["a"], "b");
        assert_eq!(pts[2].name, "");
        assert!(r.explicit[2].copy);
        assert_eq!(pts[3].kind, MountType::Tmpfs);
        assert_eq!(
            r.explicit[3].mount.tmpfs_options,
            [
                "nosuid",
                "nodev",
                "rprivate",
                "mode=3361",
                "size=1m",
                "exec"
            ]
        );

        let missing =
            err(r#"{"Mounts":[{"Type":"bind","Source":"/no/such/dir/x","Target":"/b"}]}"#);
        assert_eq!(
            missing,
            "invalid mount config for type \"bind\": bind source path does not exist: /no/such/dir/x"
        );
        for (j, want) in [
            (
                r#"{"Mounts":[{"Type":"bind","Target":"/b"}]}"#,
                "field Source must not be empty",
            ),
            (
                r#"{"Mounts":[{"Type":"tmpfs","Source":"x","Target":"/b"}]}"#,
                "field Source must not be specified",
            ),
            (
                r#"{"Mounts":[{"Type":"volume","Target":"/b","ReadOnly":true}]}"#,
                "must not set ReadOnly mode when using anonymous volumes",
            ),
            (
                r#"{"Mounts":[{"Type":"volume","Target":"/b","BindOptions":{}}]}"#,
                "field BindOptions must not be specified",
            ),
            (
                r#"{"Mounts":[{"Type":"npipe","Target":"/b"}]}"#,
                "invalid mount config for type \"npipe\": mount type unknown",
            ),
            (
                r#"{"Mounts":[{"Type":"volume","Target":"b"}]}"#,
                "invalid mount path: 'b' mount path must be absolute",
            ),
            (
                r#"{"Mounts":[{"Type":"tmpfs","Target":"/t","TmpfsOptions":{"Options":[["uid","1"]]}}]}"#,
                "invalid option: uid",
            ),
            (
                r#"{"Binds":["/a:/x"],"Mounts":[{"Type":"tmpfs","Target":"/x/"}]}"#,
                "Duplicate mount point: /x/",
            ),
            (r#"{"Binds":["/a:/x","v:/x"]}"#, "Duplicate mount point: /x"),
            (
                r#"{"Binds":["/a:/x"],"Tmpfs":{"/x":""}}"#,
                "Duplicate mount point: /x",
            ),
            (
                r#"{"Tmpfs":{"rel":""}}"#,
                "invalid mount path: 'rel' mount path must be absolute",
            ),
            (
                r#"{"Tmpfs":{"/t":"bogus"}}"#,
                "invalid tmpfs options for /t",
            ),
            (r#"{"VolumesFrom":["c:rshared"]}"#, "invalid mode: rshared"),
            (
                r#"{"VolumesFrom":[""]}"#,
                "volumes-from specification cannot be an empty string",
            ),
            (r#"{"Binds":"nope"}"#, "invalid HostConfig.Binds"),
        ] {
            let e = err(j);
            assert!(e.contains(want), "{j}: {e}");
        }
    }

    #[test]
    fn tmpfs_map_and_anonymous_volumes() {
        let r = parse(
            &hc(r#"{"Tmpfs":{"/run":"rw,size=64m,exec"},"VolumesFrom":["other:ro","x"]}"#),
            &["/data/".into(), "/data".into()],
        )
        .unwrap();
        let t = &r.explicit[0].mount;
        assert!(t.hidden && t.point.rw);
        assert_eq!(
            t.tmpfs_options,
            ["nosuid", "nodev", "rprivate", "rw", "size=64m", "exec"]
        );
        assert_eq!(r.anonymous, ["/data"]);
        assert_eq!(
            r.volumes_from,
            [("other".to_string(), false), ("x".to_string(), true)]
        );
        let e = parse(&hc("{}"), &["data".into()]).unwrap_err().to_string();
        assert!(
            e.contains("invalid mount path: 'data' mount path must be absolute"),
            "{e}"
        );
    }

    #[test]
    fn inspect_shape_and_volume_filter() {
        let p = MountPoint {
            kind: MountType::Volume,
            name: "v".into(),
            source: "/var/lib/mydocker/volumes/v/_data".into(),
            destination: "/data".into(),
            driver: "local".into(),
            mode: "z".into(),
            rw: true,
            propagation: String::new(),
        };
        let j = serde_json::to_value(&p).unwrap();
        assert_eq!(
            j,
            serde_json::json!({"Type":"volume","Name":"v","Source":"/var/lib/mydocker/volumes/v/_data",
                "Destination":"/data","Driver":"local","Mode":"z","RW":true,"Propagation":""})
        );
        let b = MountPoint {
            source: "/h".into(),
            destination: "/x".into(),
            ..Default::default()
        };
        let j = serde_json::to_value(&b).unwrap();
        assert!(j.get("Name").is_none() && j.get("Driver").is_none(), "{j}");
        let pts = [p, b];
        assert!(mounts_match(&pts, "v"));
        assert!(mounts_match(&pts, "/data"));
        assert!(mounts_match(&pts, "/h"));
        assert!(!mounts_match(&pts, "/var/lib/mydocker/volumes/v/_data"));
    }
}
