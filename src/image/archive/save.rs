//! `docker save`: resolving the names given into a [`SavePlan`] and
//! streaming the archive, a docker-archive and an OCI image layout at once,
//! as dockerd 25+ writes it.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::{
    invalid, HashingReader, ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME, OCI_CONFIG, OCI_INDEX,
    OCI_LAYER_TAR, OCI_LAYOUT, OCI_LAYOUT_CONTENT, OCI_MANIFEST,
};
use crate::error::{EngineError, EngineResult};
use crate::events::Event;
use crate::image::config::{digest_hex, sha256_digest};
use crate::image::reference::{self, Reference};
use crate::image::unpack::decompressed;
use crate::image::{ImageInfo, ImageService};
use crate::store::images as rows;

/// What `docker save` will write: images in the order first named, each with
/// the tags to record for it.
pub struct SavePlan {
    images: Vec<SaveImage>,
}

struct SaveImage {
    id: String,
    config: Vec<u8>,
    /// Unix seconds; dockerd stamps configs and layers with the image's
    /// creation time.
    created: u64,
    labels: BTreeMap<String, String>,
    diff_ids: Vec<String>,
    chains: Vec<String>,
    tags: Vec<Reference>,
}

impl SavePlan {
    /// The IDs of the images the archive will hold.
    pub fn image_ids(&self) -> Vec<String> {
        self.images.iter().map(|i| i.id.clone()).collect()
    }

    fn add(&mut self, info: ImageInfo, tag: Option<Reference>) -> EngineResult<()> {
        let idx = match self.images.iter().position(|i| i.id == info.row.id) {
            Some(i) => i,
            None => {
                let diff_ids = info.config.rootfs.diff_ids.clone();
                if diff_ids.is_empty() {
                    // dockerd's wording for an image without layers.
                    return Err(EngineError::Internal(
                        "empty export - not implemented".into(),
                    ));
                }
                if diff_ids.len() != info.row.layers.len() {
                    return Err(EngineError::Internal(format!(
                        "image {} has {} diff IDs but {} layers",
                        info.row.id,
                        diff_ids.len(),
                        info.row.layers.len()
                    )));
                }
                self.images.push(SaveImage {
                    id: info.row.id.clone(),
                    config: info.row.config.clone(),
                    created: info.config.created_unix().max(0) as u64,
                    labels: info.config.labels(),
                    diff_ids,
                    chains: info.row.layers.clone(),
                    tags: vec![],
                });
                self.images.len() - 1
            }
        };
        if let Some(t) = tag {
            let t = t.with_default_tag();
            let tags = &mut self.images[idx].tags;
            if !tags.contains(&t) {
                tags.push(t);
            }
        }
        Ok(())
    }
}

#[derive(Serialize)]
struct OutDescriptor {
    #[serde(rename = "mediaType")]
    media_type: &'static str,
    digest: String,
    size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    annotations: Option<BTreeMap<&'static str, String>>,
}

#[derive(Serialize)]
struct OutManifest {
    #[serde(rename = "schemaVersion")]
    schema_version: u32,
    #[serde(rename = "mediaType")]
    media_type: &'static str,
    config: OutDescriptor,
    layers: Vec<OutDescriptor>,
}

#[derive(Serialize)]
struct OutIndex {
    #[serde(rename = "schemaVersion")]
    schema_version: u32,
    #[serde(rename = "mediaType")]
    media_type: &'static str,
    manifests: Vec<OutDescriptor>,
}

/// One `manifest.json` entry; `RepoTags` is `null` for untagged images, as
/// Go marshals a nil slice.
#[derive(Serialize)]
struct OutManifestItem {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags")]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers")]
    layers: Vec<String>,
}

impl ImageService {
    /// Resolves the names given to `docker save` the way dockerd does: a tag
    /// records that tag, an ID or digest reference records none, and a bare
    /// repository name (`busybox`) means every image of that repository with
    /// its tags.
    pub async fn save_plan(&self, names: &[String]) -> EngineResult<SavePlan> {
        let mut plan = SavePlan { images: vec![] };
        for name in names {
            if reference::is_full_id(name) || name.starts_with("sha256:") {
                plan.add(self.resolve(name).await?, None)?;
                continue;
            }
            let parsed = match Reference::parse_normalized(name) {
                Ok(r) => r,
                Err(e) => {
                    if reference::is_id_prefix(name) {
                        plan.add(self.resolve(name).await?, None)?;
                        continue;
                    }
                    return Err(invalid(e.to_string()));
                }
            };
            if parsed.digest.is_some() {
                plan.add(self.resolve(name).await?, None)?;
            } else if parsed.tag.is_some() {
                plan.add(self.resolve(name).await?, Some(parsed))?;
            } else if !self.add_repository(&mut plan, &parsed).await? {
                // No reference in that repository: maybe an ID prefix.
                plan.add(self.resolve(name).await?, None)?;
            }
        }
        Ok(plan)
    }

    /// Adds every image referenced in `repo`'s repository; false if none is.
    async fn add_repository(&self, plan: &mut SavePlan, repo: &Reference) -> EngineResult<bool> {
        let wanted = repo.repository();
        let in_repo = |full: &String| {
            Reference::parse_normalized(full)
                .ok()
                .filter(|r| r.repository() == wanted)
        };
        let mut found: Vec<(String, ImageInfo, Vec<Reference>)> = vec![];
        for info in self.list().await? {
            let tags: Vec<Reference> = info.row.tags.iter().filter_map(in_repo).collect();
            let digests = info.row.digests.iter().filter_map(in_repo).count();
            if tags.is_empty() && digests == 0 {
                continue;
            }
            // Deterministic order: by first tag, then ID.
            let key = tags
                .first()
                .map(|t| t.full())
                .unwrap_or_else(|| format!("~{}", info.row.id));
            found.push((key, info, tags));
        }
        found.sort_by(|a, b| a.0.cmp(&b.0));
        let any = !found.is_empty();
        for (_, info, tags) in found {
            if tags.is_empty() {
                plan.add(info, None)?;
            } else {
                for t in tags {
                    plan.add(info.clone(), Some(t))?;
                }
            }
        }
        Ok(any)
    }

    /// Streams the archive for `plan` into `w`. Runs on a blocking thread.
    pub fn write_save(&self, plan: &SavePlan, w: &mut dyn Write) -> EngineResult<()> {
        let chains: Vec<String> = plan.images.iter().flat_map(|i| i.chains.clone()).collect();
        // Keep the layers from being freed by a concurrent rmi while we read.
        let _pins = self.pin_layers(&chains);
        let mut blobs: HashMap<String, PathBuf> = HashMap::new();
        for c in &chains {
            if blobs.contains_key(c) {
                continue;
            }
            let chain = c.clone();
            let row = self
                .store
                .call_blocking(|conn| rows::get_layer(conn, &chain))?
                .ok_or_else(|| EngineError::Internal(format!("layer {c} is missing")))?;
            blobs.insert(c.clone(), self.layout.blob_path(&row.blob_digest));
        }

        let mut tar = tar::Builder::new(Gate {
            inner: w,
            open: true,
        });
        let result = self.write_save_entries(plan, &blobs, &mut tar);
        match result {
            Ok(()) => {
                tar.into_inner().map_err(EngineError::from)?;
            }
            Err(e) => {
                // The builder finishes the archive when dropped; a failed save
                // must not end in a well-formed (but incomplete) tar.
                tar.get_mut().open = false;
                return Err(e);
            }
        }
        for img in &plan.images {
            self.publish_sync("save", &img.id, &img.labels);
        }
        Ok(())
    }

    fn write_save_entries(
        &self,
        plan: &SavePlan,
        blobs: &HashMap<String, PathBuf>,
        tar: &mut tar::Builder<Gate<'_>>,
    ) -> EngineResult<()> {
        append_dir(tar, "blobs/", 0)?;
        append_dir(tar, "blobs/sha256/", 0)?;
        // diff ID -> uncompressed size, for layers already in the archive.
        let mut written: HashMap<String, u64> = HashMap::new();
        let mut written_manifests: Vec<String> = vec![];
        let mut index = vec![];
        let mut items = vec![];
        let mut repositories: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        for img in &plan.images {
            if sha256_digest(&img.config) != img.id {
                return Err(EngineError::Internal(format!(
                    "stored config of {} does not match its ID",
                    img.id
                )));
            }
            let mut layer_descs = vec![];
            let mut layer_paths = vec![];
            for (diff_id, chain) in img.diff_ids.iter().zip(&img.chains) {
                let size = match written.get(diff_id) {
                    Some(s) => *s,
                    None => {
                        let blob = blobs.get(chain).ok_or_else(|| {
                            EngineError::Internal(format!("layer {chain} is missing"))
                        })?;
                        let s = append_layer(tar, blob, diff_id, img.created)?;
                        written.insert(diff_id.clone(), s);
                        s
                    }
                };
                let path = format!("blobs/sha256/{}", digest_hex(diff_id));
                layer_paths.push(path);
                layer_descs.push(OutDescriptor {
                    media_type: OCI_LAYER_TAR,
                    digest: diff_id.clone(),
                    size,
                    annotations: None,
                });
            }
            let config_path = format!("blobs/sha256/{}", digest_hex(&img.id));
            append_bytes(tar, &config_path, &img.config, img.created)?;

            let manifest = OutManifest {
                schema_version: 2,
                media_type: OCI_MANIFEST,
                config: OutDescriptor {
                    media_type: OCI_CONFIG,
                    digest: img.id.clone(),
                    size: img.config.len() as u64,
                    annotations: None,
                },
                layers: layer_descs,
            };
            let manifest_raw = serde_json::to_vec(&manifest)?;
            let manifest_digest = sha256_digest(&manifest_raw);
            if !written_manifests.contains(&manifest_digest) {
                let p = format!("blobs/sha256/{}", digest_hex(&manifest_digest));
                append_bytes(tar, &p, &manifest_raw, 0)?;
                written_manifests.push(manifest_digest.clone());
            }

            let top = img
                .diff_ids
                .last()
                .map(|d| digest_hex(d).to_string())
                .unwrap_or_default();
            let mut repo_tags = vec![];
            for t in &img.tags {
                let tag = t.tag.clone().unwrap_or_else(|| "latest".into());
                repositories
                    .entry(t.familiar_repository())
                    .or_default()
                    .insert(tag.clone(), top.clone());
                repo_tags.push(t.familiar());
                let mut ann = BTreeMap::new();
                ann.insert(ANNOTATION_IMAGE_NAME, t.full());
                ann.insert(ANNOTATION_REF_NAME, tag);
                index.push(OutDescriptor {
                    media_type: OCI_MANIFEST,
                    digest: manifest_digest.clone(),
                    size: manifest_raw.len() as u64,
                    annotations: Some(ann),
                });
            }
            if img.tags.is_empty() {
                index.push(OutDescriptor {
                    media_type: OCI_MANIFEST,
                    digest: manifest_digest.clone(),
                    size: manifest_raw.len() as u64,
                    annotations: None,
                });
            }
            items.push(OutManifestItem {
                config: config_path,
                repo_tags: (!repo_tags.is_empty()).then_some(repo_tags),
                layers: layer_paths,
            });
        }
        // The top-level files in the order dockerd's directory walk emits them.
        let index_raw = serde_json::to_vec(&OutIndex {
            schema_version: 2,
            media_type: OCI_INDEX,
            manifests: index,
        })?;
        append_bytes(tar, "index.json", &index_raw, 0)?;
        // json.Encoder output: compact plus a newline.
        let mut manifest_json = serde_json::to_vec(&items)?;
        manifest_json.push(b'\n');
        append_bytes(tar, "manifest.json", &manifest_json, 0)?;
        append_bytes(tar, OCI_LAYOUT, OCI_LAYOUT_CONTENT.as_bytes(), 0)?;
        if !repositories.is_empty() {
            let mut raw = serde_json::to_vec(&repositories)?;
            raw.push(b'\n');
            append_bytes(tar, "repositories", &raw, 0)?;
        }
        Ok(())
    }

    /// Publishes an image event from a blocking thread; `emit` is async.
    fn publish_sync(&self, action: &str, id: &str, labels: &BTreeMap<String, String>) {
        let mut attrs = labels.clone();
        attrs.insert("name".to_string(), id.to_string());
        self.events.publish(Event::new("image", action, id, attrs));
    }
}

/// The save output. Once closed (after an error), writes fail so the tar
/// builder cannot append its end-of-archive marker.
struct Gate<'a> {
    inner: &'a mut dyn Write,
    open: bool,
}

impl Write for Gate<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if !self.open {
            return Err(std::io::Error::other("save aborted"));
        }
        self.inner.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if !self.open {
            return Ok(());
        }
        self.inner.flush()
    }
}

fn header(
    path: &str,
    kind: tar::EntryType,
    mode: u32,
    size: u64,
    mtime: u64,
) -> EngineResult<tar::Header> {
    let mut h = tar::Header::new_ustar();
    h.set_path(path)
        .map_err(|e| EngineError::Internal(format!("tar path {path}: {e}")))?;
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_size(size);
    h.set_mtime(mtime);
    h.set_cksum();
    Ok(h)
}

fn append_dir(tar: &mut tar::Builder<Gate<'_>>, path: &str, mtime: u64) -> EngineResult<()> {
    let h = header(path, tar::EntryType::Directory, 0o755, 0, mtime)?;
    tar.append(&h, std::io::empty())?;
    Ok(())
}

fn append_bytes(
    tar: &mut tar::Builder<Gate<'_>>,
    path: &str,
    data: &[u8],
    mtime: u64,
) -> EngineResult<()> {
    let h = header(
        path,
        tar::EntryType::Regular,
        0o644,
        data.len() as u64,
        mtime,
    )?;
    tar.append(&h, data)?;
    Ok(())
}

/// The uncompressed tar of a stored layer blob.
fn layer_stream(blob: &Path) -> EngineResult<Box<dyn Read + Send>> {
    let f = File::open(blob)
        .map_err(|e| EngineError::Internal(format!("layer blob {}: {e}", blob.display())))?;
    decompressed(BufReader::with_capacity(1 << 16, f))
        .map_err(|e| EngineError::Internal(format!("layer blob {}: {e}", blob.display())))
}

/// Writes `blobs/sha256/<diff hex>` from a stored blob, verifying the diff
/// ID on both passes; returns the uncompressed size.
fn append_layer(
    tar: &mut tar::Builder<Gate<'_>>,
    blob: &Path,
    diff_id: &str,
    mtime: u64,
) -> EngineResult<u64> {
    let corrupt = || {
        EngineError::Internal(format!(
            "layer {diff_id}: the stored blob {} does not match its diff ID",
            blob.display()
        ))
    };
    // Pass 1: the size the tar header needs.
    let mut counting = HashingReader::new(layer_stream(blob)?);
    std::io::copy(&mut counting, &mut std::io::sink())
        .map_err(|e| EngineError::Internal(format!("layer {diff_id}: {e}")))?;
    if counting.digest() != diff_id {
        return Err(corrupt());
    }
    let size = counting.count;
    // Pass 2: exactly those bytes into the archive.
    let h = header(
        &format!("blobs/sha256/{}", digest_hex(diff_id)),
        tar::EntryType::Regular,
        0o644,
        size,
        mtime,
    )?;
    let mut streaming = HashingReader::new(layer_stream(blob)?);
    tar.append(
        &h,
        ExactReader {
            inner: &mut streaming,
            remaining: size,
        },
    )?;
    if streaming.digest() != diff_id {
        return Err(corrupt());
    }
    Ok(size)
}

/// Yields exactly `remaining` bytes of `inner`, failing if it ends sooner,
/// so a tar entry can never disagree with its header.
struct ExactReader<'a, R: Read> {
    inner: &'a mut R,
    remaining: u64,
}

impl<R: Read> Read for ExactReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.remaining == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = buf
            .len()
            .min(self.remaining.min(usize::MAX as u64) as usize);
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "layer shorter than on the first pass",
            ));
        }
        self.remaining -= n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::super::test_support::{layer_tar, reader, save_to_vec, service, strings};
    use crate::image::archive::Changes;
    use crate::image::config::{digest_hex, sha256_digest};
    use crate::image::reference::Reference;
    use crate::store::images as rows;

    #[tokio::test]
    async fn shared_layers_are_saved_once() {
        let (svc, _dir) = service();
        let layer = layer_tar(&[("shared", b"data")]);
        let diff = sha256_digest(&layer);
        let mut ids = vec![];
        for (name, msg) in [("one:1", "first"), ("two:2", "second")] {
            let target = Reference::parse_normalized(name).unwrap();
            let id = svc
                .import(
                    reader(layer.clone()),
                    Some(target),
                    Changes::default(),
                    msg.into(),
                )
                .await
                .unwrap();
            ids.push(id);
        }
        assert_ne!(ids[0], ids[1]);
        let plan = svc.save_plan(&strings(&["one:1", "two:2"])).await.unwrap();
        let saved = save_to_vec(&svc, &plan);
        let layer_path = format!("blobs/sha256/{}", digest_hex(&diff));
        let mut a = tar::Archive::new(Cursor::new(&saved));
        let count = a
            .entries()
            .unwrap()
            .filter(|e| e.as_ref().unwrap().path().unwrap().to_string_lossy() == layer_path)
            .count();
        assert_eq!(count, 1);
        let (svc2, _dir2) = service();
        let lines = svc2.load(reader(saved)).await.unwrap();
        assert_eq!(
            lines,
            strings(&["Loaded image: one:1", "Loaded image: two:2"])
        );
        assert_eq!(svc2.count().await.unwrap(), 2);
        let layers = svc2.store.call(|c| rows::all_layers(c)).await.unwrap();
        assert_eq!(layers.len(), 1);
    }
}
