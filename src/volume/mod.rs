//! The volume engine and its one driver, `local`: volumes live in
//! `<data-root>/volumes/<name>/_data`, their rows in the `volumes` table.
//! A volume is in use while a container's mount row names it (see
//! `store::mounts`), which is what `remove` and `prune` respect. Nothing
//! here knows HTTP or containers beyond those rows.

pub mod copy;
pub mod local;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::{EngineError, EngineResult};
use crate::events::{Event, EventBus};
use crate::filters::Filters;
use crate::store::volumes::{self as rows, VolumeRow};
use crate::store::Store;
pub use local::Backing;

/// dockerd marks anonymous volumes with this label; prune relies on it.
pub const ANONYMOUS_LABEL: &str = "com.docker.volume.anonymous";
pub const LOCAL_DRIVER: &str = "local";

/// A volume as the engine hands it out.
#[derive(Clone, Debug, PartialEq)]
pub struct Volume {
    pub row: VolumeRow,
    pub mountpoint: PathBuf,
}

impl Volume {
    pub fn name(&self) -> &str {
        &self.row.name
    }

    pub fn is_anonymous(&self) -> bool {
        self.row
            .labels
            .as_ref()
            .is_some_and(|l| l.contains_key(ANONYMOUS_LABEL))
    }

    /// What holds the data (options were validated at create).
    pub fn backing(&self) -> EngineResult<Backing> {
        local::parse_options(&self.row.options.clone().unwrap_or_default())
    }

    /// `CreatedAt` as dockerd prints it (RFC 3339, seconds).
    pub fn created_at_rfc3339(&self) -> String {
        chrono::DateTime::from_timestamp_nanos(self.row.created_at)
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    }
}

/// `POST /volumes/create` in engine terms.
#[derive(Clone, Debug, Default)]
pub struct CreateOptions {
    /// Empty: an anonymous volume with a random 64-hex name.
    pub name: String,
    pub driver: String,
    pub labels: Option<BTreeMap<String, String>>,
    pub options: Option<BTreeMap<String, String>>,
}

pub struct PruneReport {
    pub deleted: Vec<String>,
    pub space_reclaimed: u64,
}

pub struct VolumeService {
    store: Store,
    events: EventBus,
    root: PathBuf,
    /// Serialises create and remove, so "exists?" and the change agree.
    lock: tokio::sync::Mutex<()>,
}

fn no_such_volume(op: &str, name: &str) -> EngineError {
    EngineError::NotFound(format!("{op} {name}: no such volume"))
}

impl VolumeService {
    pub fn new(store: Store, events: EventBus, data_root: &Path) -> VolumeService {
        VolumeService {
            store,
            events,
            root: data_root.join("volumes"),
            lock: tokio::sync::Mutex::new(()),
        }
    }

    /// `<root>/<name>`; `name` was validated, so it is one plain component.
    fn volume_dir(&self, name: &str) -> EngineResult<PathBuf> {
        let dir = self.root.join(name);
        if local::validate_name(name).is_err() || dir.parent() != Some(self.root.as_path()) {
            return Err(EngineError::InvalidParameter(format!(
                "invalid volume name {name:?}"
            )));
        }
        Ok(dir)
    }

    fn volume(&self, row: VolumeRow) -> Volume {
        let mountpoint = self.root.join(&row.name).join("_data");
        Volume { row, mountpoint }
    }

    fn emit(&self, action: &str, name: &str, attrs: &[(&str, String)]) {
        let attrs = attrs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        self.events
            .publish(Event::new("volume", action, name, attrs));
    }

    /// Volume `mount`/`unmount` events, sent by the container engine.
    pub fn emit_use(&self, action: &str, name: &str, attrs: &[(&str, String)]) {
        self.emit(action, name, attrs);
    }

    /// Creates a volume; an existing one of that name is returned as is,
    /// like dockerd. The bool says whether it was created now.
    pub async fn create(&self, opts: CreateOptions) -> EngineResult<(Volume, bool)> {
        let driver = if opts.driver.is_empty() {
            LOCAL_DRIVER.to_string()
        } else {
            opts.driver.clone()
        };
        if driver != LOCAL_DRIVER {
            return Err(EngineError::NotFound(format!(
                "error looking up volume plugin {driver}: plugin \"{driver}\" not found"
            )));
        }
        let mut labels = opts.labels.clone();
        let name = if opts.name.is_empty() {
            labels
                .get_or_insert_with(BTreeMap::new)
                .insert(ANONYMOUS_LABEL.to_string(), String::new());
            hex::encode(rand::random::<[u8; 32]>())
        } else {
            opts.name.clone()
        };
        local::validate_name(&name)
            .map_err(|e| EngineError::InvalidParameter(format!("create {name}: {e}")))?;
        let options = opts.options.clone().filter(|o| !o.is_empty());
        local::parse_options(&options.clone().unwrap_or_default())?;
        let dir = self.volume_dir(&name)?;

        let _g = self.lock.lock().await;
        if let Ok(v) = self.get(&name).await {
            return Ok((v, false));
        }
        let row = VolumeRow {
            name: name.clone(),
            driver,
            labels,
            options,
            created_at: crate::store::images::now_nanos(),
        };
        // Folder first: a row never names a missing folder.
        {
            let dir = dir.clone();
            tokio::task::spawn_blocking(move || {
                use std::os::unix::fs::DirBuilderExt;
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o701)
                    .create(&dir)?;
                std::fs::DirBuilder::new()
                    .mode(0o755)
                    .create(dir.join("_data"))
            })
            .await
            .map_err(EngineError::internal)??;
        }
        let r = row.clone();
        if let Err(e) = self.store.call(move |conn| rows::insert(conn, &r)).await {
            let _ = tokio::fs::remove_dir_all(&dir).await;
            return Err(e);
        }
        self.emit("create", &name, &[("driver", row.driver.clone())]);
        Ok((self.volume(row), true))
    }

    pub async fn get(&self, name: &str) -> EngineResult<Volume> {
        let n = name.to_string();
        match self.store.call(move |conn| rows::get(conn, &n)).await? {
            Some(row) => Ok(self.volume(row)),
            None => Err(no_such_volume("get", name)),
        }
    }

    /// Volumes selected by dockerd's filters `name` (substring), `driver`,
    /// `label`, `label!` and `dangling`.
    pub async fn list(&self, f: &Filters) -> EngineResult<Vec<Volume>> {
        f.accept_only(&["name", "driver", "label", "label!", "dangling"])?;
        let dangling = f.bool_value("dangling")?;
        let (all, used) = self
            .store
            .call(|conn| Ok((rows::list(conn)?, rows::use_counts(conn)?)))
            .await?;
        Ok(all
            .into_iter()
            .filter(|v| {
                let labels = v.labels.clone().unwrap_or_default();
                f.any_or_absent("name", |p| v.name.contains(p))
                    && f.any_or_absent("driver", |d| v.driver == d)
                    && f.labels_match("label", &labels)
                    && !label_excluded(f, &labels)
                    && dangling.is_none_or(|d| d != used.contains_key(&v.name))
            })
            .map(|row| self.volume(row))
            .collect())
    }

    /// IDs of the containers that mount a volume.
    pub async fn users(&self, name: &str) -> EngineResult<Vec<String>> {
        let n = name.to_string();
        self.store.call(move |conn| rows::users(conn, &n)).await
    }

    /// `DELETE /volumes/{name}`: 409 while a container uses it; `force`
    /// only makes a missing volume a success, as in dockerd.
    pub async fn remove(&self, name: &str, force: bool) -> EngineResult<()> {
        let _g = self.lock.lock().await;
        let v = match self.get(name).await {
            Ok(v) => v,
            Err(EngineError::NotFound(_)) if force => return Ok(()),
            Err(EngineError::NotFound(_)) => return Err(no_such_volume("remove", name)),
            Err(e) => return Err(e),
        };
        self.destroy(&v).await.map(|_| ())
    }

    /// Removes a volume no container uses; Conflict (dockerd's message)
    /// otherwise. Returns the bytes its data took.
    async fn destroy(&self, v: &Volume) -> EngineResult<u64> {
        let n = v.name().to_string();
        let (deleted, users) = self
            .store
            .call(move |conn| {
                let users = rows::users(conn, &n)?;
                let deleted = users.is_empty() && rows::delete_unused(conn, &n)?;
                Ok((deleted, users))
            })
            .await?;
        if !deleted {
            if users.is_empty() {
                return Err(no_such_volume("remove", v.name()));
            }
            return Err(EngineError::Conflict(format!(
                "remove {}: volume is in use - [{}]",
                v.name(),
                users.join(", ")
            )));
        }
        // Row first, then files: a crash in between leaves an unowned
        // folder, which start-up removes.
        let dir = self.volume_dir(v.name())?;
        let data = v.mountpoint.clone();
        let size = tokio::task::spawn_blocking(move || {
            let _ = local::unmount_tmpfs(&data);
            let size = crate::disk_usage::dir_size(&data);
            if let Err(e) = std::fs::remove_dir_all(&dir) {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot remove volume data");
            }
            size
        })
        .await
        .map_err(EngineError::internal)?;
        self.emit("destroy", v.name(), &[("driver", v.row.driver.clone())]);
        Ok(size)
    }

    /// Removes each named volume that nothing uses any more (`docker rm
    /// -v`, a failed create); a volume still in use is kept, as dockerd
    /// does, with a log line.
    pub async fn remove_if_unused(&self, names: &[String]) {
        let _g = self.lock.lock().await;
        for name in names {
            let Ok(v) = self.get(name).await else {
                continue;
            };
            if let Err(e) = self.destroy(&v).await {
                tracing::info!(volume = %name, error = %e, "volume kept");
            }
        }
    }

    /// `POST /volumes/prune`: unused volumes, only anonymous ones unless
    /// `all` (API 1.42+), filtered by `label` / `label!`.
    pub async fn prune(&self, f: &Filters) -> EngineResult<PruneReport> {
        f.accept_only(&["label", "label!", "all"])?;
        let all = f.bool_value("all")?.unwrap_or(false);
        let _g = self.lock.lock().await;
        let (vols, used) = self
            .store
            .call(|conn| Ok((rows::list(conn)?, rows::use_counts(conn)?)))
            .await?;
        let mut report = PruneReport {
            deleted: vec![],
            space_reclaimed: 0,
        };
        for row in vols {
            let v = self.volume(row);
            let labels = v.row.labels.clone().unwrap_or_default();
            if used.contains_key(v.name())
                || (!all && !v.is_anonymous())
                || !f.labels_match("label", &labels)
                || label_excluded(f, &labels)
            {
                continue;
            }
            // A container may have started using it meanwhile: skip then.
            if let Ok(size) = self.destroy(&v).await {
                report.space_reclaimed += size;
                report.deleted.push(v.name().to_string());
            }
        }
        self.emit(
            "prune",
            "",
            &[("reclaimed", report.space_reclaimed.to_string())],
        );
        Ok(report)
    }

    /// At daemon start: volume folders without a row are leftovers of a
    /// crash between the two, and go.
    pub async fn reconcile_dirs(&self) -> EngineResult<()> {
        let names: Vec<String> = self
            .store
            .call(|conn| Ok(rows::list(conn)?.into_iter().map(|r| r.name).collect()))
            .await?;
        let root = self.root.clone();
        tokio::task::spawn_blocking(move || {
            let Ok(rd) = std::fs::read_dir(&root) else {
                return;
            };
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if !names.contains(&name) {
                    tracing::info!(path = %e.path().display(), "removing leftover volume folder");
                    let _ = local::unmount_tmpfs(&e.path().join("_data"));
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        })
        .await
        .map_err(EngineError::internal)
    }
}

/// dockerd's `label!`: any `key` or `key=value` given excludes.
fn label_excluded(f: &Filters, labels: &BTreeMap<String, String>) -> bool {
    f.get("label!").iter().any(|l| match l.split_once('=') {
        Some((k, v)) => labels.get(k).is_some_and(|x| x == v),
        None => labels.contains_key(l.as_str()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service() -> (VolumeService, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open_in_memory().expect("store");
        (VolumeService::new(store, EventBus::new(), dir.path()), dir)
    }

    #[tokio::test]
    async fn create_get_list_remove() {
        let (s, dir) = service();
        let (v, created) = s
            .create(CreateOptions {
                name: "data".into(),
                labels: Some([("team".to_string(), "a".to_string())].into()),
                ..Default::default()
            })
            .await
            .expect("create");
        assert!(created);
        assert_eq!(v.mountpoint, dir.path().join("volumes/data/_data"));
        assert!(v.mountpoint.is_dir());
        let (again, created) = s
            .create(CreateOptions {
                name: "data".into(),
                ..Default::default()
            })
            .await
            .expect("existing");
        assert!(!created);
        assert_eq!(again, v, "an existing volume comes back unchanged");
        let (anon, _) = s.create(CreateOptions::default()).await.expect("anon");
        assert_eq!(anon.name().len(), 64);
        assert!(anon.is_anonymous() && !v.is_anonymous());

        let f = |j: &str| Filters::parse(j).unwrap();
        assert_eq!(s.list(&f("")).await.unwrap().len(), 2);
        let named = s.list(&f(r#"{"label":["team=a"]}"#)).await.unwrap();
        assert_eq!(named.len(), 1);
        assert_eq!(s.list(&f(r#"{"name":["at"]}"#)).await.unwrap().len(), 1);
        assert_eq!(
            s.list(&f(r#"{"dangling":["true"]}"#)).await.unwrap().len(),
            2
        );
        assert!(s.list(&f(r#"{"bogus":["x"]}"#)).await.is_err());

        for bad in ["../../etc", "a/b", "x"] {
            let e = s
                .create(CreateOptions {
                    name: bad.into(),
                    ..Default::default()
                })
                .await
                .unwrap_err();
            assert!(
                matches!(&e, EngineError::InvalidParameter(m) if m.starts_with(&format!("create {bad}: "))),
                "{bad}: {e}"
            );
        }
        let e = s
            .create(CreateOptions {
                name: "x2".into(),
                driver: "nfs".into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert!(matches!(e, EngineError::NotFound(_)), "{e}");

        let e = s.get("nope").await.unwrap_err();
        assert_eq!(e.to_string(), "get nope: no such volume");
        assert!(s.remove("nope", false).await.is_err());
        s.remove("nope", true).await.expect("force ignores missing");

        std::fs::write(v.mountpoint.join("f"), b"12345").unwrap();
        let report = s.prune(&f("")).await.expect("prune");
        assert_eq!(report.deleted, vec![anon.name().to_string()]);
        let report = s.prune(&f(r#"{"all":["true"]}"#)).await.expect("prune all");
        assert_eq!(report.deleted, vec!["data".to_string()]);
        assert_eq!(report.space_reclaimed, 5);
        assert!(!dir.path().join("volumes/data").exists());
    }
}
