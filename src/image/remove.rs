//! `docker rmi` and `docker image prune`, following dockerd's rules for
//! what a name removes: a tag untags (and deletes once nothing references
//! the image), an ID deletes (refusing, unless forced, when the image is
//! referenced from several repositories). Layers no image uses any more go
//! with it, reported as `Deleted: <chain ID>` like dockerd.

use serde::Serialize;

use super::reference::Reference;
use super::{familiar, ImageInfo, ImageService};
use crate::error::{EngineError, EngineResult};
use crate::filters::Filters;
use crate::store::images as rows;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub enum DeleteItem {
    Untagged(String),
    Deleted(String),
}

impl DeleteItem {
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            DeleteItem::Untagged(s) => serde_json::json!({ "Untagged": s }),
            DeleteItem::Deleted(s) => serde_json::json!({ "Deleted": s }),
        }
    }
}

/// A container that uses an image, as the container engine reports it
/// through the hook the daemon installs ([`ImageService::set_users_hook`]);
/// the image engine itself knows nothing of containers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageUser {
    pub container_id: String,
    pub running: bool,
}

/// Answers "which container (a running one first) uses this image ID?".
pub type UsersHook = std::sync::Arc<
    dyn Fn(String) -> futures::future::BoxFuture<'static, EngineResult<Option<ImageUser>>>
        + Send
        + Sync,
>;

/// dockerd's imageDeleteConflict message.
fn use_conflict(image_id: &str, user: &ImageUser) -> EngineError {
    let (forced, state) = if user.running {
        ("cannot be forced", "running")
    } else {
        ("must be forced", "stopped")
    };
    EngineError::Conflict(format!(
        "conflict: unable to delete {} ({forced}) - image is being used by {state} container {}",
        short_id(image_id),
        &user.container_id[..user.container_id.len().min(12)]
    ))
}

pub struct PruneReport {
    pub deleted: Vec<DeleteItem>,
    pub space_reclaimed: u64,
}

fn short_id(id: &str) -> &str {
    let h = id.strip_prefix("sha256:").unwrap_or(id);
    &h[..h.len().min(12)]
}

fn repo_of(full: &str) -> String {
    Reference::parse_normalized(full)
        .map(|r| r.repository())
        .unwrap_or_default()
}

fn is_digest_ref(full: &str) -> bool {
    full.contains('@')
}

impl ImageService {
    /// `DELETE /images/{name}`.
    pub async fn remove(
        &self,
        name: &str,
        force: bool,
        _noprune: bool,
    ) -> EngineResult<Vec<DeleteItem>> {
        let info = self.resolve(name).await?;
        let id = info.row.id.clone();
        let mut records = vec![];
        let mut refs: Vec<String> = info
            .row
            .tags
            .iter()
            .chain(&info.row.digests)
            .cloned()
            .collect();
        let by_id = is_id_like(name, &id);
        let user = self.image_user(&id).await?;
        if !by_id {
            // dockerd refuses to leave a used image dangling unless forced.
            if let Some(u) = user
                .as_ref()
                .filter(|_| !force && is_single_reference(&refs))
            {
                return Err(EngineError::Conflict(format!(
                    "conflict: unable to remove repository reference \"{name}\" (must force) - container {} is using its referenced image {}",
                    &u.container_id[..u.container_id.len().min(12)],
                    short_id(&id)
                )));
            }
            // A reference was named: it goes first.
            let parsed = Reference::parse_normalized(name)
                .map_err(|e| EngineError::InvalidParameter(e.to_string()))?;
            let full = if parsed.digest.is_some() {
                parsed.full()
            } else {
                parsed.clone().with_default_tag().full()
            };
            self.drop_reference(&full).await?;
            records.push(DeleteItem::Untagged(familiar(&full)));
            self.emit("untag", &id, &id, &id).await;
            refs.retain(|r| *r != full);
            // Untagging the last tag of a repository also drops that
            // repository's digest references, so they do not pin the image.
            if parsed.digest.is_none() {
                let repo = parsed.repository();
                let tag_left = refs.iter().any(|r| !is_digest_ref(r) && repo_of(r) == repo);
                if !tag_left {
                    let (same, other): (Vec<String>, Vec<String>) = refs
                        .into_iter()
                        .partition(|r| is_digest_ref(r) && repo_of(r) == repo);
                    for r in same {
                        self.drop_reference(&r).await?;
                        records.push(DeleteItem::Untagged(familiar(&r)));
                    }
                    refs = other;
                }
            }
            if !refs.is_empty() {
                return Ok(records);
            }
            // The reference is gone; a conflict now only keeps the image.
            if user.is_some() {
                return Ok(records);
            }
        } else if is_single_reference(&refs) {
            if let Some(u) = user.as_ref().filter(|u| u.running || !force) {
                return Err(use_conflict(&id, u));
            }
            for r in &refs {
                self.drop_reference(r).await?;
                records.push(DeleteItem::Untagged(familiar(r)));
                self.emit("untag", &id, &id, &id).await;
            }
            refs.clear();
        }
        if refs.len() > 1 && !force {
            return Err(EngineError::Conflict(format!(
                "conflict: unable to delete {} (must be forced) - image is referenced in multiple repositories",
                short_id(&id)
            )));
        }
        if let Some(u) = user.as_ref().filter(|u| u.running || !force) {
            return Err(use_conflict(&id, u));
        }
        if force {
            for r in &refs {
                self.drop_reference(r).await?;
                records.push(DeleteItem::Untagged(familiar(r)));
                self.emit("untag", &id, &id, &id).await;
            }
        }
        if user.is_some() {
            // Forced with a stopped container using it: dockerd would delete
            // the image anyway; we keep it (untagged) while the container
            // exists, as the container's row refers to it.
            return Ok(records);
        }
        records.extend(self.delete_image(&info).await?);
        Ok(records)
    }

    /// A container using `image_id`, through the daemon's hook.
    async fn image_user(&self, image_id: &str) -> EngineResult<Option<ImageUser>> {
        let hook = self
            .users_hook
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        match hook {
            Some(h) => h(image_id.to_string()).await,
            None => Ok(None),
        }
    }

    /// Installs the hook that tells rmi and prune about containers.
    pub fn set_users_hook(&self, hook: UsersHook) {
        *self.users_hook.write().unwrap_or_else(|p| p.into_inner()) = Some(hook);
    }

    async fn drop_reference(&self, full: &str) -> EngineResult<()> {
        let f = full.to_string();
        self.store
            .call(move |conn| {
                if is_digest_ref(&f) {
                    rows::delete_repo_digest(conn, &f)?;
                } else {
                    rows::delete_tag(conn, &f)?;
                }
                Ok(())
            })
            .await
    }

    /// Deletes the image row, then every layer nothing uses any more.
    async fn delete_image(&self, info: &ImageInfo) -> EngineResult<Vec<DeleteItem>> {
        let id = info.row.id.clone();
        let id2 = id.clone();
        self.store
            .call(move |conn| {
                let tx = conn.transaction()?;
                rows::delete_image(&tx, &id2)?;
                tx.commit()?;
                Ok(())
            })
            .await?;
        self.emit_deleted(&id).await;
        let mut records = vec![DeleteItem::Deleted(id)];
        for chain in self.release_unused_layers().await? {
            records.push(DeleteItem::Deleted(chain));
        }
        Ok(records)
    }

    async fn emit_deleted(&self, id: &str) {
        let mut attrs = std::collections::BTreeMap::new();
        attrs.insert("name".to_string(), id.to_string());
        self.events
            .publish(crate::events::Event::new("image", "delete", id, attrs));
    }

    /// Removes layers no image uses: rows first, then files (a crash in
    /// between leaves unowned files, which start-up removes).
    pub async fn release_unused_layers(&self) -> EngineResult<Vec<String>> {
        let _g = self.commit_lock.lock().await;
        let mut removed = vec![];
        loop {
            let pinned: std::collections::HashSet<String> = {
                let pins = self.pins.lock().unwrap_or_else(|p| p.into_inner());
                pins.keys().cloned().collect()
            };
            let freed = self
                .store
                .call(move |conn| {
                    let tx = conn.transaction()?;
                    let mut layers = rows::unreferenced_layers(&tx)?;
                    layers.retain(|l| !pinned.contains(&l.chain_id));
                    let mut blobs = vec![];
                    for l in &layers {
                        rows::delete_layer(&tx, &l.chain_id)?;
                    }
                    for l in &layers {
                        if !rows::blob_in_use(&tx, &l.blob_digest)? {
                            blobs.push(l.blob_digest.clone());
                        }
                    }
                    tx.commit()?;
                    Ok((layers, blobs))
                })
                .await?;
            let (layers, blobs) = freed;
            if layers.is_empty() {
                break;
            }
            let layout = self.layout.clone();
            let dirs: Vec<_> = layers
                .iter()
                .map(|l| layout.layer_dir(&l.chain_id))
                .collect();
            let blob_paths: Vec<_> = blobs.iter().map(|b| layout.blob_path(b)).collect();
            tokio::task::spawn_blocking(move || {
                for d in dirs {
                    let _ = std::fs::remove_dir_all(d);
                }
                for b in blob_paths {
                    let _ = std::fs::remove_file(b);
                }
            })
            .await
            .map_err(EngineError::internal)?;
            removed.extend(layers.into_iter().map(|l| l.chain_id));
        }
        Ok(removed)
    }

    /// `POST /images/prune`: dangling images (no tag), or with
    /// `dangling=false` every image; `label`, `label!` and `until` narrow it.
    pub async fn prune(&self, filters: &Filters) -> EngineResult<PruneReport> {
        filters.accept_only(&["dangling", "label", "label!", "until"])?;
        let dangling_only = filters.bool_value("dangling")?.unwrap_or(true);
        let until = match filters.get("until").first() {
            Some(u) => Some(parse_until(u)?),
            None => None,
        };
        let mut deleted = vec![];
        let mut space = 0u64;
        for info in self.list().await? {
            if dangling_only && !info.row.tags.is_empty() {
                continue;
            }
            let labels = info.config.labels();
            if !filters.labels_match("label", &labels) {
                continue;
            }
            if filters.contains("label!")
                && filters
                    .get("label!")
                    .iter()
                    .any(|l| match l.split_once('=') {
                        Some((k, v)) => labels.get(k).is_some_and(|x| x == v),
                        None => labels.contains_key(l.as_str()),
                    })
            {
                continue;
            }
            if let Some(u) = until {
                if info.config.created_unix() >= u {
                    continue;
                }
            }
            if self.image_user(&info.row.id).await?.is_some() {
                continue;
            }
            let before = self.layer_bytes_in_use().await?;
            let mut refs: Vec<String> = info.row.tags.clone();
            refs.extend(info.row.digests.clone());
            for r in &refs {
                self.drop_reference(r).await?;
                deleted.push(DeleteItem::Untagged(familiar(r)));
            }
            deleted.extend(self.delete_image(&info).await?);
            let after = self.layer_bytes_in_use().await?;
            space += before.saturating_sub(after);
        }
        if !deleted.is_empty() {
            self.events.publish(crate::events::Event::new(
                "image",
                "prune",
                "",
                [("reclaimed".to_string(), space.to_string())].into(),
            ));
        }
        Ok(PruneReport {
            deleted,
            space_reclaimed: space,
        })
    }

    async fn layer_bytes_in_use(&self) -> EngineResult<u64> {
        let layers = self.store.call(|c| rows::all_layers(c)).await?;
        Ok(layers.iter().map(|l| l.size.max(0) as u64).sum())
    }
}

/// dockerd's isImageIDPrefix: the name is (a prefix of) the image ID.
fn is_id_like(name: &str, id: &str) -> bool {
    !name.is_empty() && (id.starts_with(name) || id.starts_with(&format!("sha256:{name}")))
}

/// dockerd's isSingleReference: at most one tag, and any digest references
/// in that tag's repository only.
fn is_single_reference(refs: &[String]) -> bool {
    if refs.len() <= 1 {
        return refs.len() == 1;
    }
    let tags: Vec<&String> = refs.iter().filter(|r| !is_digest_ref(r)).collect();
    if tags.len() > 1 {
        return false;
    }
    let digest_repos: std::collections::BTreeSet<String> = refs
        .iter()
        .filter(|r| is_digest_ref(r))
        .map(|r| repo_of(r))
        .collect();
    let single = tags
        .first()
        .map(|t| repo_of(t))
        .unwrap_or_else(|| repo_of(&refs[0]));
    digest_repos.len() == 1 && digest_repos.contains(&single)
}

/// `until` accepts Unix seconds (fractional too) or RFC 3339.
pub fn parse_until(s: &str) -> EngineResult<i64> {
    if let Ok(f) = s.parse::<f64>() {
        return Ok(f as i64);
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.timestamp());
    }
    // A Go duration counts back from now (`until=24h`).
    if let Ok(nanos) = crate::duration::parse_go_duration(s) {
        return Ok(chrono::Utc::now().timestamp() - nanos / 1_000_000_000);
    }
    Err(EngineError::InvalidParameter(format!(
        "failed to parse value as time or duration: \"{s}\""
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_reference_rules() {
        let tag = "docker.io/library/busybox:latest".to_string();
        let dig = format!("docker.io/library/busybox@sha256:{}", "a".repeat(64));
        let other = "docker.io/library/other:latest".to_string();
        assert!(is_single_reference(std::slice::from_ref(&tag)));
        assert!(is_single_reference(&[tag.clone(), dig.clone()]));
        assert!(!is_single_reference(&[tag.clone(), other]));
        assert!(!is_single_reference(&[]));
    }

    #[test]
    fn until_parsing() {
        assert_eq!(parse_until("100").unwrap(), 100);
        assert_eq!(parse_until("100.5").unwrap(), 100);
        let day_ago = chrono::Utc::now().timestamp() - 86_400;
        assert!((parse_until("24h").unwrap() - day_ago).abs() <= 1);
        assert!(parse_until("yesterday").is_err());
        assert_eq!(parse_until("1970-01-01T00:01:40Z").unwrap(), 100);
        assert!(parse_until("soon").is_err());
    }
}
