//! The image engine: everything about images except HTTP.
//!
//! - `reference.rs`: Docker reference grammar and normalisation;
//! - `registry.rs` + `pull.rs`: fetching from v2/OCI registries;
//! - `unpack.rs`: hostile-input-safe layer unpacking to overlay2 format;
//! - `manifest.rs`: manifests, indexes and the host platform's choice;
//! - `layout.rs`: where blobs and layers live on disk;
//! - `archive/`: `docker save` / `docker load` / `docker import` and import `changes`;
//! - `remove.rs`: untag/delete/prune with dockerd's rules;
//! - `gc.rs`: start-up reconciliation of disk and database.
//!
//! [`ImageService`] is the one handle the API layer holds.

pub mod archive;
pub mod config;
pub mod gc;
pub mod layout;
pub mod manifest;
pub mod progress;
pub mod pull;
pub mod reference;
pub mod registry;
pub mod remove;
pub mod unpack;

use std::collections::BTreeMap;
use std::path::PathBuf;

use tokio::sync::Mutex;

use crate::error::{EngineError, EngineResult};
use crate::events::{Event, EventBus};
use crate::store::images::{self as rows, ImageRow, LayerRow};
use crate::store::Store;
use config::ImageConfig;
use layout::Layout;
use pull::TmpGuard;
use reference::Reference;
use registry::RegistrySettings;

pub struct ImageService {
    pub store: Store,
    pub layout: Layout,
    pub events: EventBus,
    pub registry: RegistrySettings,
    /// Serialises moving finished layers into place with their rows, so two
    /// pulls sharing a layer cannot both commit it.
    commit_lock: Mutex<()>,
    /// Layers an unfinished pull/load/import will reference: committed
    /// before their image row, they must not be freed as unused meanwhile.
    pins: std::sync::Mutex<std::collections::HashMap<String, usize>>,
    /// Who uses an image (containers); see [`remove::UsersHook`].
    users_hook: std::sync::RwLock<Option<remove::UsersHook>>,
}

/// Keeps layers pinned until dropped (see [`ImageService::pin_layers`]).
pub struct LayerPins<'a> {
    service: &'a ImageService,
    chains: Vec<String>,
}

impl Drop for LayerPins<'_> {
    fn drop(&mut self) {
        let mut pins = self.service.pins.lock().unwrap_or_else(|p| p.into_inner());
        for c in &self.chains {
            if let Some(n) = pins.get_mut(c) {
                *n -= 1;
                if *n == 0 {
                    pins.remove(c);
                }
            }
        }
    }
}

/// A layer fully fetched and verified, still in its tmp dir.
pub struct NewLayer {
    pub work: TmpGuard,
    pub blob_tmp: PathBuf,
    pub chain_id: String,
    pub diff_id: String,
    pub parent: Option<String>,
    pub size: i64,
    pub blob_digest: String,
    pub blob_size: i64,
    pub media_type: String,
}

/// An image as the API shows it: its rows plus its parsed config.
#[derive(Debug, Clone)]
pub struct ImageInfo {
    pub row: ImageRow,
    pub config: ImageConfig,
}

impl ImageInfo {
    pub fn familiar_tags(&self) -> Vec<String> {
        self.row.tags.iter().map(|t| familiar(t)).collect()
    }

    pub fn familiar_digests(&self) -> Vec<String> {
        self.row.digests.iter().map(|t| familiar(t)).collect()
    }
}

/// The familiar form of a stored full reference.
pub fn familiar(full: &str) -> String {
    Reference::parse_normalized(full)
        .map(|r| r.familiar())
        .unwrap_or_else(|_| full.to_string())
}

impl ImageService {
    pub fn new(
        store: Store,
        layout: Layout,
        events: EventBus,
        registry: RegistrySettings,
    ) -> ImageService {
        ImageService {
            store,
            layout,
            events,
            registry,
            commit_lock: Mutex::new(()),
            pins: Default::default(),
            users_hook: Default::default(),
        }
    }

    /// Protects `chains` from [`ImageService::release_unused_layers`] until
    /// the returned guard is dropped.
    pub fn pin_layers(&self, chains: &[String]) -> LayerPins<'_> {
        let mut pins = self.pins.lock().unwrap_or_else(|p| p.into_inner());
        for c in chains {
            *pins.entry(c.clone()).or_default() += 1;
        }
        LayerPins {
            service: self,
            chains: chains.to_vec(),
        }
    }

    pub async fn layer_exists(&self, chain_id: &str) -> EngineResult<bool> {
        let c = chain_id.to_string();
        self.store
            .call(move |conn| rows::layer_exists(conn, &c))
            .await
    }

    /// Moves a verified layer into the store and records it. A layer that
    /// another operation committed meanwhile is dropped (its tmp dir goes).
    pub async fn commit_layer(&self, l: NewLayer) -> EngineResult<()> {
        let _g = self.commit_lock.lock().await;
        if self.layer_exists(&l.chain_id).await? {
            return Ok(());
        }
        let layout = self.layout.clone();
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || -> EngineResult<()> {
            let blob = layout.blob_path(&l.blob_digest);
            if blob.exists() {
                std::fs::remove_file(&l.blob_tmp)?;
            } else {
                std::fs::rename(&l.blob_tmp, &blob)?;
            }
            let dest = layout.layer_dir(&l.chain_id);
            if dest.exists() {
                // Left by a crash before its row was written: unowned.
                std::fs::remove_dir_all(&dest)?;
            }
            std::fs::rename(l.work.path(), &dest)?;
            let mut work = l.work;
            work.0 = None;
            let row = LayerRow {
                chain_id: l.chain_id,
                diff_id: l.diff_id,
                parent: l.parent,
                size: l.size,
                blob_digest: l.blob_digest,
                blob_size: l.blob_size,
                media_type: l.media_type,
                created_at: rows::now_nanos(),
            };
            store.call_blocking(|c| rows::insert_layer(c, &row))
        })
        .await
        .map_err(EngineError::internal)?
    }

    /// Records an image whose layers are all committed, and points `tag`
    /// and `repo_digest` at it. Returns whether anything changed.
    pub async fn commit_image(
        &self,
        id: &str,
        config: &[u8],
        chains: &[String],
        tag: Option<&str>,
        repo_digest: Option<&str>,
    ) -> EngineResult<bool> {
        let (id, config, chains) = (id.to_string(), config.to_vec(), chains.to_vec());
        let (tag, repo_digest) = (tag.map(String::from), repo_digest.map(String::from));
        let result = self
            .store
            .call(move |conn| {
                let tx = conn.transaction()?;
                let mut size = 0;
                for c in &chains {
                    size += rows::get_layer(&tx, c)?
                        .ok_or_else(|| EngineError::Internal(format!("layer {c} missing")))?
                        .size;
                }
                let mut changed = rows::insert_image(&tx, &id, &config, size, &chains)?;
                let mut retagged_from = None;
                if let Some(t) = &tag {
                    let old = rows::set_tag(&tx, t, &id)?;
                    if old.as_deref() != Some(id.as_str()) {
                        changed = true;
                        retagged_from = old;
                    }
                }
                if let Some(d) = &repo_digest {
                    rows::add_repo_digest(&tx, d, &id)?;
                }
                tx.commit()?;
                Ok((changed, retagged_from))
            })
            .await?;
        Ok(result.0)
    }

    /// Finds an image the way dockerd does: full ID, then reference (tag or
    /// digest), then a unique ID prefix.
    pub async fn resolve(&self, name: &str) -> EngineResult<ImageInfo> {
        let n = name.to_string();
        let row = self
            .store
            .call(move |conn| resolve_row(conn, &n))
            .await?
            .ok_or_else(|| EngineError::NotFound(format!("No such image: {name}")))?;
        let config = ImageConfig::parse(&row.config)?;
        Ok(ImageInfo { row, config })
    }

    pub async fn list(&self) -> EngineResult<Vec<ImageInfo>> {
        let rows = self.store.call(|conn| rows::list_images(conn)).await?;
        rows.into_iter()
            .map(|row| {
                let config = ImageConfig::parse(&row.config)?;
                Ok(ImageInfo { row, config })
            })
            .collect()
    }

    pub async fn count(&self) -> EngineResult<i64> {
        self.store.call(|conn| rows::count_images(conn)).await
    }

    /// `docker tag SOURCE TARGET`.
    pub async fn tag(&self, source: &str, target: Reference) -> EngineResult<()> {
        let img = self.resolve(source).await?;
        let target = target.with_default_tag();
        let full = target.full();
        let id = img.row.id.clone();
        self.store
            .call(move |conn| {
                let tx = conn.transaction()?;
                rows::set_tag(&tx, &full, &id)?;
                tx.commit()?;
                Ok(())
            })
            .await?;
        self.emit("tag", &img.row.id, &target.familiar(), &img.row.id)
            .await;
        Ok(())
    }

    /// Publishes an image event with dockerd's attributes: `name` plus the
    /// image's labels.
    pub async fn emit(&self, action: &str, actor_id: &str, name: &str, image_id: &str) {
        let mut attrs = BTreeMap::new();
        if let Ok(info) = self.resolve(image_id).await {
            attrs.extend(info.config.labels());
        }
        attrs.insert("name".to_string(), name.to_string());
        self.events
            .publish(Event::new("image", action, actor_id, attrs));
    }

    /// Paths of an image's layers, top first (overlay lowerdir order).
    pub fn layer_paths(&self, info: &ImageInfo) -> Vec<PathBuf> {
        info.row
            .layers
            .iter()
            .rev()
            .map(|c| self.layout.layer_diff(c))
            .collect()
    }
}

fn resolve_row(conn: &rusqlite::Connection, name: &str) -> EngineResult<Option<ImageRow>> {
    if name.is_empty() {
        return Ok(None);
    }
    let as_id = if name.starts_with("sha256:") {
        name.to_string()
    } else {
        format!("sha256:{name}")
    };
    if reference::is_full_id(name) {
        return rows::get_image(conn, &as_id);
    }
    if let Ok(r) = Reference::parse_normalized(name) {
        let target = if r.digest.is_some() {
            rows::repo_digest_target(conn, &r.full())?
        } else {
            rows::tag_target(conn, &r.clone().with_default_tag().full())?
        };
        if let Some(id) = target {
            return rows::get_image(conn, &id);
        }
    }
    if reference::is_id_prefix(name) {
        let ids = rows::ids_with_prefix(conn, &as_id)?;
        if ids.len() == 1 {
            return rows::get_image(conn, &ids[0]);
        }
    }
    Ok(None)
}

impl ImageService {
    /// Unpacked size of each of the image's layers, bottom first.
    pub async fn layer_sizes(&self, info: &ImageInfo) -> EngineResult<Vec<i64>> {
        let chains = info.row.layers.clone();
        self.store
            .call(move |conn| {
                chains
                    .iter()
                    .map(|c| Ok(rows::get_layer(conn, c)?.map(|l| l.size).unwrap_or(0)))
                    .collect()
            })
            .await
    }
}
