//! `docker save`, `docker load` and `docker import`: images to and from tar
//! archives.
//!
//! - **save** writes the layout dockerd 25+ writes, which is a docker-archive
//!   and an OCI image layout at once: `blobs/sha256/<hex>` holds every config,
//!   every layer as an *uncompressed* tar (named by its diff ID) and one OCI
//!   manifest per image; `index.json` + `oci-layout` make it an OCI layout,
//!   `manifest.json` + `repositories` make it a docker-archive. Layers are
//!   decompressed from our blob store twice (once to learn the size the tar
//!   header needs, once to stream), both times checked against the diff ID,
//!   so nothing is buffered and nothing is written to disk.
//! - **load** accepts docker-archives of any docker version (`manifest.json`,
//!   including the pre-25 `<id>/layer.tar` layout with symlinked duplicate
//!   layers) and plain OCI layouts (`index.json`), compressed or not. The
//!   archive is hostile: it is extracted into a private tmp dir taking only
//!   regular files and directories, symlinks and hard links become in-archive
//!   aliases, and every config, blob and diff ID is verified *before*
//!   anything is committed, so a bad archive changes nothing.
//! - **import** turns one (possibly compressed) filesystem tar into a
//!   single-layer image whose config is built from Dockerfile-style
//!   `changes`, like `docker import --change`.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::config::{
    chain_ids, digest_hex, is_sha256_digest, sha256_digest, HistoryEntry, ImageConfig, RootFs,
    RunConfig,
};
use super::layout::Layout;
use super::pull::{host_platform, TmpGuard};
use super::reference::{self, Reference};
use super::unpack::{decompressed, unpack_layer};
use super::{ImageInfo, ImageService, NewLayer};
use crate::error::{EngineError, EngineResult};
use crate::events::Event;
use crate::store::images as rows;
use crate::store::Store;

const OCI_LAYOUT: &str = "oci-layout";
/// Byte for byte what dockerd writes.
const OCI_LAYOUT_CONTENT: &str = r#"{"imageLayoutVersion": "1.0.0"}"#;
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
const ANNOTATION_IMAGE_NAME: &str = "io.containerd.image.name";
const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";

/// Layer media types a loaded OCI manifest may use (compression is sniffed).
const LOADABLE_LAYER_TYPES: &[&str] = &[
    OCI_LAYER_TAR,
    OCI_LAYER_GZIP,
    OCI_LAYER_ZSTD,
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
    "application/vnd.docker.image.rootfs.diff.tar",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
];

/// Cap on the JSON documents (manifests, configs, indexes) read into memory
/// from an archive.
const MAX_JSON: u64 = 32 << 20;

fn invalid(msg: impl Into<String>) -> EngineError {
    EngineError::InvalidParameter(msg.into())
}

// ---------------------------------------------------------------------------
// docker save
// ---------------------------------------------------------------------------

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

/// Hashes (sha256) and counts what is read through it.
struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
}

impl<R> HashingReader<R> {
    fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }

    fn digest(&self) -> String {
        format!("sha256:{}", hex::encode(self.hasher.clone().finalize()))
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

// ---------------------------------------------------------------------------
// docker load
// ---------------------------------------------------------------------------

#[derive(Deserialize)]
struct InManifestItem {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers", default)]
    layers: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct InDescriptor {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    #[serde(default)]
    digest: String,
    #[serde(default)]
    annotations: Option<BTreeMap<String, String>>,
    #[serde(default)]
    platform: Option<InPlatform>,
}

#[derive(Deserialize)]
struct InPlatform {
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    os: String,
    #[serde(default)]
    variant: Option<String>,
}

/// An OCI index or manifest (or their Docker equivalents).
#[derive(Deserialize)]
struct InDocument {
    #[serde(rename = "mediaType", default)]
    media_type: Option<String>,
    #[serde(default)]
    config: Option<InDescriptor>,
    #[serde(default)]
    layers: Option<Vec<InDescriptor>>,
    #[serde(default)]
    manifests: Option<Vec<InDescriptor>>,
}

/// An image found in an archive, fully validated except for its layers.
struct LoadImage {
    id: String,
    config_raw: Vec<u8>,
    diff_ids: Vec<String>,
    chains: Vec<String>,
    layers: Vec<LoadLayer>,
    /// Tag references (with tag, no digest).
    tags: Vec<Reference>,
    /// Digest references (OCI layouts named `repo@sha256:...`).
    digests: Vec<Reference>,
}

struct LoadLayer {
    path: PathBuf,
    /// Known for OCI layouts (the descriptor's digest), checked on unpack.
    blob_digest: Option<String>,
    media_type: Option<String>,
}

/// An extracted archive: what it holds, and the guard of its tmp dir.
struct LoadArchive {
    _guard: TmpGuard,
    images: Vec<LoadImage>,
    /// Loaded from an OCI layout (containerd's naming and output rules)
    /// rather than a docker-archive.
    oci: bool,
}

impl ImageService {
    /// `POST /images/load`: returns the lines dockerd prints.
    pub async fn load(&self, r: Box<dyn Read + Send>) -> EngineResult<Vec<String>> {
        let layout = self.layout.clone();
        let archive = tokio::task::spawn_blocking(move || read_load_archive(&layout, r))
            .await
            .map_err(EngineError::internal)??;
        let chains: Vec<String> = archive
            .images
            .iter()
            .flat_map(|i| i.chains.clone())
            .collect();
        // Layers found present must stay so, and new ones must survive until
        // their image row names them.
        let pins = self.pin_layers(&chains);
        let (store, layout) = (self.store.clone(), self.layout.clone());
        let (images, oci, mut prepared) = tokio::task::spawn_blocking(move || {
            let prepared = prepare_layers(&store, &layout, &archive.images)?;
            // Every layer file we need was linked into its own work dir.
            let LoadArchive {
                _guard,
                images,
                oci,
            } = archive;
            drop(_guard);
            Ok::<_, EngineError>((images, oci, prepared))
        })
        .await
        .map_err(EngineError::internal)??;

        let result = self.commit_loaded(&images, oci, &mut prepared).await;
        drop(prepared);
        drop(pins);
        if result.is_err() {
            let _ = self.release_unused_layers().await;
        }
        result
    }

    async fn commit_loaded(
        &self,
        images: &[LoadImage],
        oci: bool,
        prepared: &mut HashMap<String, NewLayer>,
    ) -> EngineResult<Vec<String>> {
        let mut lines = vec![];
        let mut id_lines = vec![];
        let mut last_ref_count = 0;
        for img in images {
            for c in &img.chains {
                if let Some(l) = prepared.remove(c) {
                    self.commit_layer(l).await?;
                }
            }
            self.commit_image(&img.id, &img.config_raw, &img.chains, None, None)
                .await?;
            let tags: Vec<String> = img.tags.iter().map(|t| t.full()).collect();
            let digests: Vec<String> = img.digests.iter().map(|d| d.full()).collect();
            let id = img.id.clone();
            let previous = self
                .store
                .call(move |conn| {
                    let tx = conn.transaction()?;
                    let mut previous = vec![];
                    for t in &tags {
                        previous.push(rows::set_tag(&tx, t, &id)?);
                    }
                    for d in &digests {
                        rows::add_repo_digest(&tx, d, &id)?;
                    }
                    tx.commit()?;
                    Ok(previous)
                })
                .await?;
            if oci {
                // containerd's rules: one line per name, or the ID if none.
                if img.tags.is_empty() && img.digests.is_empty() {
                    lines.push(format!("Loaded image ID: {}", img.id));
                }
                for r in img.tags.iter().chain(&img.digests) {
                    lines.push(format!("Loaded image: {}", r.familiar()));
                }
            } else {
                // dockerd's tarexporter: tags as they are set; the IDs only
                // when the last image had no tag.
                for (t, old) in img.tags.iter().zip(previous) {
                    if let Some(old) = old.filter(|o| *o != img.id) {
                        lines.push(format!(
                            "The image {} already exists, renaming the old one with ID {old} to empty string",
                            t.familiar()
                        ));
                    }
                    lines.push(format!("Loaded image: {}", t.familiar()));
                }
                id_lines.push(format!("Loaded image ID: {}", img.id));
                last_ref_count = img.tags.len();
            }
            self.emit("load", &img.id, &img.id, &img.id).await;
        }
        if !oci && last_ref_count == 0 {
            lines.extend(id_lines);
        }
        Ok(lines)
    }
}

/// Extracts the archive and finds its images. Runs on a blocking thread.
fn read_load_archive(layout: &Layout, r: Box<dyn Read + Send>) -> EngineResult<LoadArchive> {
    let root = layout.tmp_path("load");
    std::fs::create_dir_all(&root)?;
    let guard = TmpGuard(Some(root.clone()));
    let stream = decompressed(BufReader::with_capacity(1 << 16, r))
        .map_err(|e| invalid(format!("invalid archive: {e}")))?;
    let nodes = extract_archive(stream, &root)?;
    let files = ArchiveFiles { root, nodes };
    let (images, oci) = if files.has("manifest.json") {
        (docker_archive_images(&files)?, false)
    } else if files.has("index.json") {
        (oci_layout_images(&files)?, true)
    } else {
        return Err(invalid(
            "invalid archive: it has neither manifest.json (docker save) nor index.json (OCI layout)",
        ));
    };
    Ok(LoadArchive {
        _guard: guard,
        images,
        oci,
    })
}

/// What an archive path is, after extraction.
enum Node {
    File,
    Dir,
    /// A symlink or hard link, resolved to an archive path.
    Alias(String),
}

struct ArchiveFiles {
    root: PathBuf,
    nodes: HashMap<String, Node>,
}

impl ArchiveFiles {
    fn has(&self, rel: &str) -> bool {
        self.lookup(rel).is_ok()
    }

    /// The extracted file an archive path names, following aliases.
    fn lookup(&self, rel: &str) -> EngineResult<PathBuf> {
        let mut cur = normalize_rel(rel)
            .ok_or_else(|| invalid(format!("invalid archive: bad path {rel:?}")))?;
        for _ in 0..40 {
            match self.nodes.get(&cur) {
                Some(Node::File) => return Ok(self.root.join(&cur)),
                Some(Node::Alias(t)) => cur = t.clone(),
                Some(Node::Dir) | None => break,
            }
        }
        Err(invalid(format!("invalid archive: {rel} is missing")))
    }

    fn read(&self, rel: &str, limit: u64) -> EngineResult<Vec<u8>> {
        let path = self.lookup(rel)?;
        let f = File::open(&path)?;
        let mut data = vec![];
        f.take(limit + 1).read_to_end(&mut data)?;
        if data.len() as u64 > limit {
            return Err(invalid(format!("invalid archive: {rel} is too large")));
        }
        Ok(data)
    }

    /// A JSON blob of an OCI layout, verified against its digest.
    fn read_blob(&self, digest: &str) -> EngineResult<Vec<u8>> {
        let data = self.read(&blob_rel(digest)?, MAX_JSON)?;
        let got = sha256_digest(&data);
        if got != digest {
            return Err(invalid(format!(
                "invalid archive: blob {digest} does not match its content ({got})"
            )));
        }
        Ok(data)
    }
}

fn blob_rel(digest: &str) -> EngineResult<String> {
    if !is_sha256_digest(digest) {
        return Err(invalid(format!(
            "invalid archive: unsupported digest {digest:?}"
        )));
    }
    Ok(format!("blobs/sha256/{}", digest_hex(digest)))
}

/// An archive path in canonical form (`a/b`), or None if it is the root or
/// would leave the archive.
fn normalize_rel(p: &str) -> Option<String> {
    if p.starts_with('/') {
        return None;
    }
    let mut parts: Vec<&str> = vec![];
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            c => parts.push(c),
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

/// Where a symlink at `link` pointing at `target` leads, if inside.
fn resolve_link(link: &str, target: &str) -> Option<String> {
    if target.starts_with('/') {
        return None;
    }
    let mut parts: Vec<&str> = link.split('/').collect();
    parts.pop();
    for c in target.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            c => parts.push(c),
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

/// Extracts regular files and directories of a hostile tar under `root`.
/// Paths with `..` or a leading `/` refuse the whole archive; links are
/// recorded as aliases (never created), and everything else is skipped.
fn extract_archive<R: Read>(r: R, root: &Path) -> EngineResult<HashMap<String, Node>> {
    let bad = |e: std::io::Error| invalid(format!("invalid archive: {e}"));
    let mut nodes = HashMap::new();
    let mut archive = tar::Archive::new(r);
    for entry in archive.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        let raw_path = entry.path_bytes().into_owned();
        let path = String::from_utf8(raw_path)
            .map_err(|_| invalid("invalid archive: a path is not UTF-8"))?;
        let is_root = path.split('/').all(|c| c.is_empty() || c == ".") && !path.starts_with('/');
        if is_root {
            continue;
        }
        let rel = match normalize_rel(&path) {
            Some(r) if !path.split('/').any(|c| c == "..") => r,
            _ => {
                return Err(invalid(format!(
                    "invalid archive: path {path:?} points outside the archive"
                )))
            }
        };
        let kind = entry.header().entry_type();
        match kind {
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let dest = root.join(&rel);
                if let Some(parent) = dest.parent() {
                    std::fs::create_dir_all(parent)
                        .map_err(|e| invalid(format!("invalid archive: {rel}: {e}")))?;
                }
                let mut f = File::create(&dest)
                    .map_err(|e| invalid(format!("invalid archive: {rel}: {e}")))?;
                let want = entry.size();
                let got = copy_entry(&mut entry, &mut f)?;
                if got != want {
                    return Err(invalid(format!(
                        "invalid archive: unexpected EOF in {rel} ({got} of {want} bytes)"
                    )));
                }
                nodes.insert(rel, Node::File);
            }
            tar::EntryType::Directory => {
                std::fs::create_dir_all(root.join(&rel))
                    .map_err(|e| invalid(format!("invalid archive: {rel}: {e}")))?;
                nodes.insert(rel, Node::Dir);
            }
            tar::EntryType::Symlink | tar::EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .unwrap_or_default();
                // Symlinks are relative to their directory, hard links to
                // the archive root; either must stay inside.
                let resolved = if kind == tar::EntryType::Symlink {
                    resolve_link(&rel, &target)
                } else {
                    normalize_rel(&target)
                };
                match resolved {
                    Some(t) if t != rel => {
                        nodes.insert(rel, Node::Alias(t));
                    }
                    _ => {
                        nodes.remove(&rel);
                    }
                }
            }
            _ => {}
        }
    }
    Ok(nodes)
}

/// Copies an entry's data; read errors are the archive's (400), write errors
/// ours (500).
fn copy_entry<R: Read>(entry: &mut R, out: &mut File) -> EngineResult<u64> {
    let mut buf = vec![0u8; 1 << 16];
    let mut total = 0u64;
    loop {
        let n = match entry.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(invalid(format!("invalid archive: {e}"))),
        };
        out.write_all(&buf[..n])?;
        total += n as u64;
    }
}

/// Parses and checks an image config from an archive.
fn parse_loaded_config(raw: &[u8]) -> EngineResult<ImageConfig> {
    let config = ImageConfig::parse(raw)?;
    config.validate()?;
    if !config.os.is_empty() && config.os != "linux" {
        return Err(invalid(format!("cannot load {} image on linux", config.os)));
    }
    Ok(config)
}

/// The 64-hex digest a docker-archive path is named after, if any
/// (`blobs/sha256/<hex>`, `<hex>.json`).
fn digest_in_name(path: &str) -> Option<&str> {
    let base = path.rsplit('/').next().unwrap_or(path);
    let base = base.strip_suffix(".json").unwrap_or(base);
    (base.len() == 64
        && base
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
    .then_some(base)
}

/// Adds an image, merging the names of one already found.
fn merge_image(images: &mut Vec<LoadImage>, img: LoadImage) {
    if let Some(existing) = images.iter_mut().find(|i| i.id == img.id) {
        for t in img.tags {
            if !existing.tags.contains(&t) {
                existing.tags.push(t);
            }
        }
        for d in img.digests {
            if !existing.digests.contains(&d) {
                existing.digests.push(d);
            }
        }
    } else {
        images.push(img);
    }
}

/// Images of a docker-archive (`manifest.json`), any docker version.
fn docker_archive_images(files: &ArchiveFiles) -> EngineResult<Vec<LoadImage>> {
    let raw = files.read("manifest.json", MAX_JSON)?;
    let items: Option<Vec<InManifestItem>> = serde_json::from_slice(&raw)
        .map_err(|e| invalid(format!("invalid archive: manifest.json: {e}")))?;
    let items = items
        .ok_or_else(|| invalid("invalid manifest, manifest cannot be null (but can be [])"))?;
    let mut images = vec![];
    for item in items {
        let config_raw = files.read(&item.config, MAX_JSON)?;
        let id = sha256_digest(&config_raw);
        if let Some(named) = digest_in_name(&item.config) {
            if named != digest_hex(&id) {
                return Err(invalid(format!(
                    "invalid archive: config {} does not match its digest ({id})",
                    item.config
                )));
            }
        }
        let config = parse_loaded_config(&config_raw)?;
        let layer_paths = item.layers.unwrap_or_default();
        let diff_ids = config.rootfs.diff_ids.clone();
        if layer_paths.len() != diff_ids.len() {
            return Err(invalid(format!(
                "invalid manifest, layers length mismatch: expected {}, got {}",
                layer_paths.len(),
                diff_ids.len()
            )));
        }
        let layers = layer_paths
            .iter()
            .map(|l| {
                Ok(LoadLayer {
                    path: files.lookup(l)?,
                    blob_digest: None,
                    media_type: None,
                })
            })
            .collect::<EngineResult<Vec<_>>>()?;
        let mut tags = vec![];
        for t in item.repo_tags.unwrap_or_default() {
            let r = Reference::parse_normalized(&t)
                .map_err(|e| invalid(format!("invalid tag {t:?}: {e}")))?;
            if r.tag.is_none() || r.digest.is_some() {
                return Err(invalid(format!("invalid tag {t:?}")));
            }
            if !tags.contains(&r) {
                tags.push(r);
            }
        }
        merge_image(
            &mut images,
            LoadImage {
                id,
                config_raw,
                chains: chain_ids(&diff_ids),
                diff_ids,
                layers,
                tags,
                digests: vec![],
            },
        );
    }
    Ok(images)
}

/// The name containerd gives an `index.json` entry: the full name
/// annotation, else the OCI ref name as written (dockerd then normalizes
/// it, so a bare `latest` becomes `docker.io/library/latest:latest`).
fn oci_entry_name(annotations: Option<&BTreeMap<String, String>>) -> Option<Reference> {
    let a = annotations?;
    let name = a
        .get(ANNOTATION_IMAGE_NAME)
        .filter(|n| !n.is_empty())
        .or_else(|| a.get(ANNOTATION_REF_NAME).filter(|n| !n.is_empty()))?;
    let r = Reference::parse_normalized(name).ok()?;
    Some(if r.tag.is_some() {
        Reference { digest: None, ..r }
    } else {
        r.with_default_tag()
    })
}

/// Images of an OCI layout (`index.json`, no `manifest.json`).
fn oci_layout_images(files: &ArchiveFiles) -> EngineResult<Vec<LoadImage>> {
    let raw = files.read("index.json", MAX_JSON)?;
    let index: InDocument = serde_json::from_slice(&raw)
        .map_err(|e| invalid(format!("invalid archive: index.json: {e}")))?;
    let mut images = vec![];
    for desc in index.manifests.unwrap_or_default() {
        let Some(mut img) = oci_image(files, &desc, 0)? else {
            continue;
        };
        if let Some(name) = oci_entry_name(desc.annotations.as_ref()) {
            if name.tag.is_some() {
                img.tags.push(name);
            } else {
                img.digests.push(name);
            }
        }
        merge_image(&mut images, img);
    }
    Ok(images)
}

/// The host platform's entry of an index, preferring the exact variant.
fn pick_platform(manifests: &[InDescriptor]) -> Option<&InDescriptor> {
    let (arch, variant) = host_platform();
    let candidates: Vec<&InDescriptor> = manifests
        .iter()
        .filter(|m| {
            m.platform
                .as_ref()
                .is_some_and(|p| p.os == "linux" && p.architecture == arch)
        })
        .collect();
    candidates
        .iter()
        .find(|m| m.platform.as_ref().and_then(|p| p.variant.as_deref()) == variant)
        .or_else(|| {
            candidates
                .iter()
                .find(|m| m.platform.as_ref().is_some_and(|p| p.variant.is_none()))
        })
        .or(candidates.first())
        .copied()
}

/// Follows an OCI descriptor to an image; None for things that are not
/// images (attestations, artifacts).
fn oci_image(
    files: &ArchiveFiles,
    desc: &InDescriptor,
    depth: u32,
) -> EngineResult<Option<LoadImage>> {
    let is_index = matches!(desc.media_type.as_str(), OCI_INDEX | DOCKER_LIST);
    let is_manifest = matches!(
        desc.media_type.as_str(),
        OCI_MANIFEST | DOCKER_MANIFEST | ""
    );
    if !is_index && !is_manifest {
        return Ok(None);
    }
    let raw = files.read_blob(&desc.digest)?;
    let doc: InDocument = serde_json::from_slice(&raw)
        .map_err(|e| invalid(format!("invalid archive: {}: {e}", desc.digest)))?;
    let doc_is_index = is_index
        || matches!(
            doc.media_type.as_deref(),
            Some(OCI_INDEX) | Some(DOCKER_LIST)
        )
        || (doc.config.is_none() && doc.manifests.is_some());
    if doc_is_index {
        if depth >= 2 {
            return Err(invalid("invalid archive: indexes nested too deeply"));
        }
        let manifests = doc.manifests.unwrap_or_default();
        let Some(chosen) = pick_platform(&manifests) else {
            let (arch, _) = host_platform();
            return Err(invalid(format!(
                "invalid archive: {} has no manifest for linux/{arch}",
                desc.digest
            )));
        };
        return oci_image(files, chosen, depth + 1);
    }
    let Some(config_desc) = doc.config else {
        return Err(invalid(format!(
            "invalid archive: manifest {} has no config",
            desc.digest
        )));
    };
    if !matches!(
        config_desc.media_type.as_str(),
        OCI_CONFIG | DOCKER_CONFIG | ""
    ) {
        return Ok(None);
    }
    let config_raw = files.read_blob(&config_desc.digest)?;
    let config = parse_loaded_config(&config_raw)?;
    let descs = doc.layers.unwrap_or_default();
    let diff_ids = config.rootfs.diff_ids.clone();
    if descs.len() != diff_ids.len() {
        return Err(invalid(format!(
            "invalid archive: manifest {} lists {} layers but its config {} diff IDs",
            desc.digest,
            descs.len(),
            diff_ids.len()
        )));
    }
    let mut layers = vec![];
    for l in descs {
        if !LOADABLE_LAYER_TYPES.contains(&l.media_type.as_str()) {
            return Err(invalid(format!(
                "invalid archive: unsupported layer media type {:?}",
                l.media_type
            )));
        }
        layers.push(LoadLayer {
            path: files.lookup(&blob_rel(&l.digest)?)?,
            blob_digest: Some(l.digest),
            media_type: Some(l.media_type),
        });
    }
    Ok(Some(LoadImage {
        id: config_desc.digest,
        config_raw,
        chains: chain_ids(&diff_ids),
        diff_ids,
        layers,
        tags: vec![],
        digests: vec![],
    }))
}

/// Unpacks (and verifies) every layer not yet in the store, each once.
/// Runs on a blocking thread; nothing is committed.
fn prepare_layers(
    store: &Store,
    layout: &Layout,
    images: &[LoadImage],
) -> EngineResult<HashMap<String, NewLayer>> {
    let mut out: HashMap<String, NewLayer> = HashMap::new();
    for img in images {
        let mut parent: Option<String> = None;
        for (i, ((layer, diff_id), chain)) in img
            .layers
            .iter()
            .zip(&img.diff_ids)
            .zip(&img.chains)
            .enumerate()
        {
            let this_parent = parent.replace(chain.clone());
            if out.contains_key(chain) || store.call_blocking(|c| rows::layer_exists(c, chain))? {
                continue;
            }
            let l = unpack_file_layer(layout, layer, diff_id, chain, this_parent, i)?;
            out.insert(chain.clone(), l);
        }
    }
    Ok(out)
}

/// The media type of a layer blob, from its first bytes.
fn sniff_media_type(head: &[u8]) -> &'static str {
    if head.starts_with(&[0x1f, 0x8b]) {
        OCI_LAYER_GZIP
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        OCI_LAYER_ZSTD
    } else {
        OCI_LAYER_TAR
    }
}

/// sha256, size and first bytes of a file.
fn hash_file(path: &Path) -> EngineResult<(String, u64, Vec<u8>)> {
    let mut r = HashingReader::new(File::open(path)?);
    let mut head = vec![0u8; 4];
    let mut got = 0;
    while got < head.len() {
        match r.read(&mut head[got..])? {
            0 => break,
            n => got += n,
        }
    }
    head.truncate(got);
    std::io::copy(&mut r, &mut std::io::sink())?;
    Ok((r.digest(), r.count, head))
}

fn unpack_file_layer(
    layout: &Layout,
    src: &LoadLayer,
    diff_id: &str,
    chain: &str,
    parent: Option<String>,
    index: usize,
) -> EngineResult<NewLayer> {
    let work = layout.tmp_path("layer");
    std::fs::create_dir_all(work.join("diff"))?;
    let guard = TmpGuard(Some(work.clone()));
    let (blob_digest, blob_size, head) = hash_file(&src.path)?;
    if let Some(want) = &src.blob_digest {
        if *want != blob_digest {
            return Err(invalid(format!(
                "invalid archive: layer blob {want} does not match its content ({blob_digest})"
            )));
        }
    }
    let file = File::open(&src.path)?;
    let stream = decompressed(BufReader::with_capacity(1 << 16, file))
        .map_err(|e| invalid(format!("layer {index} ({diff_id}): {e}")))?;
    let mut hashed = HashingReader::new(stream);
    let stats = unpack_layer(&mut hashed, &work.join("diff"))
        .map_err(|e| invalid(format!("layer {index} ({diff_id}): {e}")))?;
    // Whatever follows the end-of-archive marker is part of the diff ID.
    std::io::copy(&mut hashed, &mut std::io::sink())
        .map_err(|e| invalid(format!("layer {index} ({diff_id}): {e}")))?;
    let got = hashed.digest();
    if got != diff_id {
        return Err(invalid(format!(
            "invalid diffID for layer {index}: expected {diff_id:?}, got {got:?}"
        )));
    }
    let blob_tmp = work.join("blob");
    if std::fs::hard_link(&src.path, &blob_tmp).is_err() {
        std::fs::copy(&src.path, &blob_tmp)?;
    }
    Ok(NewLayer {
        work: guard,
        blob_tmp,
        chain_id: chain.to_string(),
        diff_id: diff_id.to_string(),
        parent,
        size: stats.size.min(i64::MAX as u64) as i64,
        blob_digest,
        blob_size: blob_size.min(i64::MAX as u64) as i64,
        media_type: src
            .media_type
            .clone()
            .unwrap_or_else(|| sniff_media_type(&head).to_string()),
    })
}

// ---------------------------------------------------------------------------
// docker import
// ---------------------------------------------------------------------------

/// The config dockerd writes for an imported image, field for field in its
/// order.
#[derive(Serialize)]
struct ImportConfig<'a> {
    comment: &'a str,
    created: &'a str,
    docker_version: &'a str,
    config: &'a RunConfig,
    architecture: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    variant: Option<&'a str>,
    os: &'a str,
    rootfs: RootFs,
    history: Vec<HistoryEntry>,
}

/// Go's RFC 3339 with nanoseconds, trailing zeros trimmed.
fn go_time(t: chrono::DateTime<chrono::Utc>) -> String {
    let base = t.format("%Y-%m-%dT%H:%M:%S").to_string();
    let nanos = t.timestamp_subsec_nanos().min(999_999_999);
    if nanos == 0 {
        return format!("{base}Z");
    }
    let frac = format!("{nanos:09}");
    format!("{base}.{}Z", frac.trim_end_matches('0'))
}

impl ImageService {
    /// `POST /images/create?fromSrc=-`: one layer from `r`, a config from
    /// `changes`; returns the new image ID.
    pub async fn import(
        &self,
        r: Box<dyn Read + Send>,
        target: Option<Reference>,
        changes: Changes,
        message: String,
    ) -> EngineResult<String> {
        let mut run = RunConfig::default();
        changes.apply(&mut run)?;
        let layout = self.layout.clone();
        let layer = tokio::task::spawn_blocking(move || import_layer(&layout, r))
            .await
            .map_err(EngineError::internal)??;
        let chain = layer.chain_id.clone();
        let diff_id = layer.diff_id.clone();
        let pins = self.pin_layers(std::slice::from_ref(&chain));

        let (arch, variant) = host_platform();
        let created = go_time(chrono::Utc::now());
        let comment = if message.is_empty() {
            "Imported from -".to_string()
        } else {
            message
        };
        let config = ImportConfig {
            comment: &comment,
            created: &created,
            docker_version: env!("CARGO_PKG_VERSION"),
            config: &run,
            architecture: arch,
            variant,
            os: "linux",
            rootfs: RootFs {
                kind: "layers".into(),
                diff_ids: vec![diff_id],
            },
            history: vec![HistoryEntry {
                created: Some(created.clone()),
                comment: Some(comment.clone()),
                ..Default::default()
            }],
        };
        let raw = serde_json::to_vec(&config)?;
        let id = sha256_digest(&raw);
        let target = target.map(|t| t.with_default_tag());
        let tag = target.as_ref().map(|t| t.full());
        let committed = async {
            self.commit_layer(layer).await?;
            self.commit_image(
                &id,
                &raw,
                std::slice::from_ref(&chain),
                tag.as_deref(),
                None,
            )
            .await
        }
        .await;
        drop(pins);
        if let Err(e) = committed {
            let _ = self.release_unused_layers().await;
            return Err(e);
        }
        if let Some(t) = &target {
            self.emit("tag", &id, &t.familiar(), &id).await;
        }
        self.emit("import", &id, &id, &id).await;
        Ok(id)
    }
}

/// The raw input of an import as it is read: copied to the blob file and
/// hashed on its way to the decompressor.
struct ImportTee {
    inner: Box<dyn Read + Send>,
    file: BufWriter<File>,
    hasher: Sha256,
    size: u64,
    head: Vec<u8>,
    write_error: Option<String>,
}

#[derive(Clone)]
struct ImportTeeReader(Arc<Mutex<ImportTee>>);

impl Read for ImportTeeReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let mut t = self
            .0
            .lock()
            .map_err(|_| std::io::Error::other("poisoned"))?;
        let n = t.inner.read(buf)?;
        if let Err(e) = t.file.write_all(&buf[..n]) {
            t.write_error = Some(e.to_string());
            return Err(e);
        }
        t.hasher.update(&buf[..n]);
        t.size += n as u64;
        if t.head.len() < 4 {
            let take = (4 - t.head.len()).min(n);
            t.head.extend_from_slice(&buf[..take]);
        }
        Ok(n)
    }
}

/// Reads, stores and unpacks the single layer of an import. Runs on a
/// blocking thread.
fn import_layer(layout: &Layout, r: Box<dyn Read + Send>) -> EngineResult<NewLayer> {
    let work = layout.tmp_path("import");
    std::fs::create_dir_all(work.join("diff"))?;
    let guard = TmpGuard(Some(work.clone()));
    let blob_tmp = work.join("blob");
    let tee = Arc::new(Mutex::new(ImportTee {
        inner: r,
        file: BufWriter::with_capacity(1 << 20, File::create(&blob_tmp)?),
        hasher: Sha256::new(),
        size: 0,
        head: vec![],
        write_error: None,
    }));
    let diff_dir = work.join("diff");
    let unpacked = (|| -> Result<(u64, String), String> {
        let reader = BufReader::with_capacity(1 << 16, ImportTeeReader(tee.clone()));
        let stream = decompressed(reader).map_err(|e| e.to_string())?;
        let mut hashed = HashingReader::new(stream);
        let stats = unpack_layer(&mut hashed, &diff_dir).map_err(|e| e.to_string())?;
        std::io::copy(&mut hashed, &mut std::io::sink()).map_err(|e| e.to_string())?;
        // Compressor trailers and padding still belong to the blob.
        std::io::copy(&mut ImportTeeReader(tee.clone()), &mut std::io::sink())
            .map_err(|e| e.to_string())?;
        Ok((stats.size, hashed.digest()))
    })();
    let mut t = tee
        .lock()
        .map_err(|_| EngineError::Internal("import state poisoned".into()))?;
    if let Some(e) = t.write_error.take() {
        return Err(EngineError::Internal(format!(
            "writing the layer blob: {e}"
        )));
    }
    let (size, diff_id) = unpacked.map_err(|e| invalid(format!("invalid tar archive: {e}")))?;
    t.file.flush()?;
    t.file.get_ref().sync_all()?;
    let blob_digest = format!("sha256:{}", hex::encode(t.hasher.clone().finalize()));
    Ok(NewLayer {
        work: guard,
        blob_tmp,
        chain_id: diff_id.clone(),
        diff_id,
        parent: None,
        size: size.min(i64::MAX as u64) as i64,
        blob_digest,
        blob_size: t.size.min(i64::MAX as u64) as i64,
        media_type: sniff_media_type(&t.head).to_string(),
    })
}

// ---------------------------------------------------------------------------
// --change instructions
// ---------------------------------------------------------------------------

/// The Dockerfile instructions `docker import` and `docker commit` accept
/// (dockerd's `validCommitCommands`).
const VALID_CHANGES: &[&str] = &[
    "cmd",
    "entrypoint",
    "env",
    "expose",
    "healthcheck",
    "label",
    "onbuild",
    "stopsignal",
    "user",
    "volume",
    "workdir",
];

/// Parsed `changes`: Dockerfile instructions applied to an image config.
#[derive(Debug, Clone, Default)]
pub struct Changes {
    instructions: Vec<Instruction>,
}

#[derive(Debug, Clone)]
struct Instruction {
    /// Lowercase, as dockerd's parser reports it.
    keyword: String,
    /// Leading `--name[=value]` words, without the dashes.
    flags: Vec<String>,
    args: String,
}

/// Parses `changes` (one instruction per element, or several separated by
/// newlines) the way dockerd's `BuildFromConfig` does, and checks that they
/// apply.
pub fn parse_changes(c: &[String]) -> EngineResult<Changes> {
    let text = c.join("\n");
    let mut instructions = vec![];
    for line in logical_lines(&text) {
        let (word, rest) = split_first_word(&line);
        let keyword = word.to_ascii_lowercase();
        if !VALID_CHANGES.contains(&keyword.as_str()) {
            return Err(invalid(format!("{keyword} is not a valid change command")));
        }
        let (flags, args) = take_flags(rest);
        instructions.push(Instruction {
            keyword,
            flags,
            args: args.to_string(),
        });
    }
    let changes = Changes { instructions };
    // Fail now (400 before anything streams) rather than mid-import.
    changes.apply(&mut RunConfig::default())?;
    Ok(changes)
}

/// Dockerfile lines: continuations joined, comments and blank lines dropped.
fn logical_lines(text: &str) -> Vec<String> {
    let mut out = vec![];
    let mut cur = String::new();
    for raw in text.lines() {
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        match raw.trim_end().strip_suffix('\\') {
            Some(body) => cur.push_str(body),
            None => {
                cur.push_str(raw);
                out.push(cur.trim().to_string());
                cur.clear();
            }
        }
    }
    if !cur.trim().is_empty() {
        out.push(cur.trim().to_string());
    }
    out
}

fn split_first_word(s: &str) -> (&str, &str) {
    let s = s.trim_start();
    match s.find(char::is_whitespace) {
        Some(i) => (&s[..i], s[i..].trim_start()),
        None => (s, ""),
    }
}

/// Splits leading `--flag` words off an instruction's arguments.
fn take_flags(mut rest: &str) -> (Vec<String>, &str) {
    let mut flags = vec![];
    while rest.starts_with("--") {
        let (word, after) = split_first_word(rest);
        rest = after;
        if word == "--" {
            break;
        }
        flags.push(word[2..].to_string());
    }
    (flags, rest)
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.instructions.is_empty()
    }

    /// Applies the instructions to `config` in order.
    pub fn apply(&self, config: &mut RunConfig) -> EngineResult<()> {
        let mut cmd_set = false;
        for ins in &self.instructions {
            let upper = ins.keyword.to_ascii_uppercase();
            if ins.keyword != "healthcheck" {
                if let Some(f) = ins.flags.first() {
                    return Err(invalid(format!("unknown flag: {}", flag_name(f))));
                }
            }
            let env = config.env.clone().unwrap_or_default();
            let args = ins.args.trim();
            match ins.keyword.as_str() {
                "cmd" => {
                    config.cmd = Some(command_line(args, config, &upper)?);
                    cmd_set = true;
                }
                "entrypoint" => {
                    config.entrypoint = Some(command_line(args, config, &upper)?);
                    // An ENTRYPOINT resets a CMD that these changes did not set.
                    if !cmd_set {
                        config.cmd = None;
                    }
                }
                "env" => {
                    for (k, v) in name_values(args, &upper, &env)? {
                        set_env(config, &k, &v);
                    }
                }
                "label" => {
                    let labels = config.labels.get_or_insert_with(BTreeMap::new);
                    for (k, v) in name_values(args, &upper, &env)? {
                        labels.insert(k, v);
                    }
                }
                "expose" => {
                    let words = split_words(args);
                    if words.is_empty() {
                        return Err(at_least_one(&upper));
                    }
                    let ports = config.exposed_ports.get_or_insert_with(BTreeMap::new);
                    for w in words {
                        for p in expose_ports(&expand(&w, &env))? {
                            ports.insert(p, serde_json::json!({}));
                        }
                    }
                }
                "user" => {
                    let user = expand(args, &env);
                    if user.is_empty() {
                        return Err(exactly_one(&upper));
                    }
                    config.user = Some(user);
                }
                "workdir" => {
                    let dir = expand(args, &env);
                    if dir.is_empty() {
                        return Err(exactly_one(&upper));
                    }
                    let joined = if dir.starts_with('/') {
                        dir
                    } else {
                        let base = config.working_dir.clone().unwrap_or_default();
                        format!("/{base}/{dir}")
                    };
                    config.working_dir = Some(clean_abs_path(&joined));
                }
                "volume" => {
                    let list = match json_array(args) {
                        Some(v) => v,
                        None => split_words(args).iter().map(|w| expand(w, &env)).collect(),
                    };
                    if list.is_empty() {
                        return Err(at_least_one(&upper));
                    }
                    let volumes = config.volumes.get_or_insert_with(BTreeMap::new);
                    for v in list {
                        let v = v.trim().to_string();
                        if v.is_empty() {
                            return Err(invalid("VOLUME specified can not be an empty string"));
                        }
                        volumes.insert(v, serde_json::json!({}));
                    }
                }
                "onbuild" => {
                    if args.is_empty() {
                        return Err(at_least_one(&upper));
                    }
                    let (trigger, _) = split_first_word(args);
                    match trigger.to_ascii_uppercase().as_str() {
                        "ONBUILD" => {
                            return Err(invalid(
                                "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed",
                            ))
                        }
                        t @ ("FROM" | "MAINTAINER") => {
                            return Err(invalid(format!("{t} isn't allowed as an ONBUILD trigger")))
                        }
                        _ => {}
                    }
                    config
                        .on_build
                        .get_or_insert_with(Vec::new)
                        .push(args.to_string());
                }
                "stopsignal" => {
                    let sig = expand(args, &env);
                    if sig.is_empty() {
                        return Err(exactly_one(&upper));
                    }
                    if !is_valid_signal(&sig) {
                        return Err(invalid(format!("Invalid signal: {sig}")));
                    }
                    config.stop_signal = Some(sig);
                }
                "healthcheck" => {
                    config.healthcheck = Some(healthcheck(&ins.flags, args)?);
                }
                other => return Err(invalid(format!("{other} is not a valid change command"))),
            }
        }
        Ok(())
    }
}

fn at_least_one(instr: &str) -> EngineError {
    invalid(format!("{instr} requires at least one argument"))
}

fn exactly_one(instr: &str) -> EngineError {
    invalid(format!("{instr} requires exactly one argument"))
}

fn flag_name(f: &str) -> &str {
    f.split('=').next().unwrap_or(f)
}

/// A JSON array of strings, if `s` is one (Dockerfile "exec form").
fn json_array(s: &str) -> Option<Vec<String>> {
    if !s.starts_with('[') {
        return None;
    }
    serde_json::from_str::<Vec<String>>(s).ok()
}

/// CMD/ENTRYPOINT: exec form as is, shell form through the image's shell.
fn command_line(args: &str, config: &RunConfig, instr: &str) -> EngineResult<Vec<String>> {
    if let Some(v) = json_array(args) {
        return Ok(v);
    }
    if args.is_empty() {
        return Err(at_least_one(instr));
    }
    let mut cmd = match &config.shell {
        Some(s) if !s.is_empty() => s.clone(),
        _ => vec!["/bin/sh".to_string(), "-c".to_string()],
    };
    cmd.push(args.to_string());
    Ok(cmd)
}

fn set_env(config: &mut RunConfig, key: &str, value: &str) {
    let env = config.env.get_or_insert_with(Vec::new);
    let entry = format!("{key}={value}");
    match env
        .iter_mut()
        .find(|e| e.split_once('=').map(|(k, _)| k).unwrap_or(e) == key)
    {
        Some(e) => *e = entry,
        None => env.push(entry),
    }
}

/// ENV/LABEL arguments: `k=v k2="v 2"`, or the legacy `k value with spaces`.
fn name_values(args: &str, instr: &str, env: &[String]) -> EngineResult<Vec<(String, String)>> {
    let words = split_words(args);
    let Some(first) = words.first() else {
        return Err(at_least_one(instr));
    };
    let mut pairs = vec![];
    if !first.contains('=') {
        let (name, value) = split_first_word(args);
        if value.is_empty() {
            return Err(invalid(format!("{instr} must have two arguments")));
        }
        pairs.push((expand(name, env), expand(value, env)));
    } else {
        for w in &words {
            let Some((k, v)) = w.split_once('=') else {
                return Err(invalid(format!(
                    "Syntax error - can't find = in {w:?}. Must be of the form: name=value"
                )));
            };
            pairs.push((expand(k, env), expand(v, env)));
        }
    }
    if pairs.iter().any(|(k, _)| k.is_empty()) {
        return Err(invalid(format!("{instr} names can not be blank")));
    }
    Ok(pairs)
}

/// Splits on unquoted whitespace, keeping quotes and escapes for [`expand`].
fn split_words(s: &str) -> Vec<String> {
    let mut words = vec![];
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match quote {
            Some(q) => {
                cur.push(c);
                if c == '\\' && q == '"' {
                    if let Some(n) = chars.next() {
                        cur.push(n);
                    }
                } else if c == q {
                    quote = None;
                }
            }
            None if c.is_whitespace() => {
                if !cur.is_empty() {
                    words.push(std::mem::take(&mut cur));
                }
            }
            None => {
                cur.push(c);
                if c == '\\' {
                    if let Some(n) = chars.next() {
                        cur.push(n);
                    }
                } else if c == '"' || c == '\'' {
                    quote = Some(c);
                }
            }
        }
    }
    if !cur.is_empty() {
        words.push(cur);
    }
    words
}

fn env_lookup<'a>(env: &'a [String], name: &str) -> Option<&'a str> {
    env.iter().rev().find_map(|e| {
        e.split_once('=')
            .filter(|(k, _)| *k == name)
            .map(|(_, v)| v)
    })
}

/// The Dockerfile shell-word rules: quotes removed, `\` escapes, and
/// `$VAR`, `${VAR}`, `${VAR:-x}`, `${VAR:+x}` from `env`.
fn expand(word: &str, env: &[String]) -> String {
    let chars: Vec<char> = word.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '\'' => {
                i += 1;
                while i < chars.len() && chars[i] != '\'' {
                    out.push(chars[i]);
                    i += 1;
                }
                i += 1;
            }
            '"' => {
                i += 1;
                while i < chars.len() && chars[i] != '"' {
                    match chars[i] {
                        '\\' if matches!(chars.get(i + 1), Some('"' | '\\' | '$')) => {
                            out.push(chars[i + 1]);
                            i += 2;
                        }
                        '$' => i = expand_var(&chars, i, env, &mut out),
                        c => {
                            out.push(c);
                            i += 1;
                        }
                    }
                }
                i += 1;
            }
            '\\' => {
                match chars.get(i + 1) {
                    Some(&n) => out.push(n),
                    None => out.push('\\'),
                }
                i += 2;
            }
            '$' => i = expand_var(&chars, i, env, &mut out),
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

/// Expands the variable at `chars[i] == '$'`; returns the index after it.
fn expand_var(chars: &[char], i: usize, env: &[String], out: &mut String) -> usize {
    let is_name = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let j = i + 1;
    match chars.get(j) {
        Some('{') => {
            let Some(close) = chars[j..].iter().position(|&c| c == '}').map(|p| p + j) else {
                out.extend(&chars[i..]);
                return chars.len();
            };
            let inner: String = chars[j + 1..close].iter().collect();
            let name_end = inner.find(|c: char| !is_name(c)).unwrap_or(inner.len());
            let (name, modifier) = inner.split_at(name_end);
            let value = env_lookup(env, name);
            let result = if let Some(w) = modifier.strip_prefix(":-") {
                match value {
                    Some(v) if !v.is_empty() => v.to_string(),
                    _ => expand(w, env),
                }
            } else if let Some(w) = modifier.strip_prefix(":+") {
                match value {
                    Some(v) if !v.is_empty() => expand(w, env),
                    _ => String::new(),
                }
            } else if let Some(w) = modifier.strip_prefix('-') {
                value.map(String::from).unwrap_or_else(|| expand(w, env))
            } else if let Some(w) = modifier.strip_prefix('+') {
                value.map(|_| expand(w, env)).unwrap_or_default()
            } else {
                value.unwrap_or_default().to_string()
            };
            out.push_str(&result);
            close + 1
        }
        Some(&c) if c.is_ascii_alphabetic() || c == '_' => {
            let end = chars[j..]
                .iter()
                .position(|&c| !is_name(c))
                .map(|p| p + j)
                .unwrap_or(chars.len());
            let name: String = chars[j..end].iter().collect();
            out.push_str(env_lookup(env, &name).unwrap_or_default());
            end
        }
        _ => {
            out.push('$');
            j
        }
    }
}

/// `EXPOSE` specs (`80`, `53/udp`, `8000-8002/tcp`) as `port/proto` keys.
fn expose_ports(spec: &str) -> EngineResult<Vec<String>> {
    // `ip:host:container` forms expose only the container part.
    let spec = spec.rsplit(':').next().unwrap_or(spec);
    let (ports, proto) = match spec.split_once('/') {
        Some((p, proto)) => (p, proto.to_ascii_lowercase()),
        None => (spec, "tcp".to_string()),
    };
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(invalid(format!("invalid proto: {proto}")));
    }
    let bad = || invalid(format!("invalid containerPort: {ports}"));
    let parse = |s: &str| s.parse::<u16>().map_err(|_| bad());
    let (start, end) = match ports.split_once('-') {
        Some((a, b)) => (parse(a)?, parse(b)?),
        None => {
            let p = parse(ports)?;
            (p, p)
        }
    };
    if end < start {
        return Err(bad());
    }
    Ok((start..=end).map(|p| format!("{p}/{proto}")).collect())
}

/// A lexically cleaned absolute path (Go's `path.Clean` of `/...`).
fn clean_abs_path(p: &str) -> String {
    let mut parts: Vec<&str> = vec![];
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    format!("/{}", parts.join("/"))
}

const SIGNALS: &[&str] = &[
    "ABRT", "ALRM", "BUS", "CHLD", "CLD", "CONT", "FPE", "HUP", "ILL", "INT", "IO", "IOT", "KILL",
    "PIPE", "POLL", "PROF", "PWR", "QUIT", "SEGV", "STKFLT", "STOP", "SYS", "TERM", "TRAP", "TSTP",
    "TTIN", "TTOU", "URG", "USR1", "USR2", "VTALRM", "WINCH", "XCPU", "XFSZ", "RTMIN", "RTMAX",
];

/// dockerd's `signal.ParseSignal`: a non-zero number or a known name, with
/// or without `SIG`.
fn is_valid_signal(s: &str) -> bool {
    if let Ok(n) = s.parse::<u32>() {
        return n != 0;
    }
    let upper = s.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    if SIGNALS.contains(&name) {
        return true;
    }
    let offset = |rest: &str| rest.parse::<u8>().is_ok_and(|n| (1..=15).contains(&n));
    name.strip_prefix("RTMIN+").is_some_and(offset)
        || name.strip_prefix("RTMAX-").is_some_and(offset)
}

/// Go's `time.ParseDuration`, in nanoseconds.
fn parse_go_duration(s: &str) -> Option<i64> {
    let (neg, mut rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if rest == "0" {
        return Some(0);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total: i128 = 0;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (num, after) = rest.split_at(num_end);
        if num.is_empty() || num == "." {
            return None;
        }
        let unit_end = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_end);
        let scale: i128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return None,
        };
        let (int, frac) = num.split_once('.').unwrap_or((num, ""));
        let int: i128 = if int.is_empty() { 0 } else { int.parse().ok()? };
        let mut value = int.checked_mul(scale)?;
        if !frac.is_empty() {
            let digits = frac.len().min(18) as u32;
            let f: i128 = frac[..digits as usize].parse().ok()?;
            value += f * scale / 10i128.pow(digits);
        }
        total = total.checked_add(value)?;
        rest = after;
    }
    let total = if neg { -total } else { total };
    i64::try_from(total).ok()
}

/// `HEALTHCHECK NONE` or `HEALTHCHECK [--flags] CMD ...` as the config's
/// `Healthcheck` object.
fn healthcheck(flags: &[String], args: &str) -> EngineResult<serde_json::Value> {
    let (kind, rest) = split_first_word(args);
    let mut hc = serde_json::Map::new();
    match kind.to_ascii_uppercase().as_str() {
        "NONE" => {
            if !rest.is_empty() || !flags.is_empty() {
                return Err(invalid("HEALTHCHECK NONE takes no arguments"));
            }
            hc.insert("Test".into(), serde_json::json!(["NONE"]));
            return Ok(serde_json::Value::Object(hc));
        }
        "CMD" => {
            let test = match json_array(rest) {
                Some(v) => std::iter::once("CMD".to_string())
                    .chain(v)
                    .collect::<Vec<_>>(),
                None if rest.is_empty() => {
                    return Err(invalid("Missing command after HEALTHCHECK CMD"))
                }
                None => vec!["CMD-SHELL".to_string(), rest.to_string()],
            };
            hc.insert("Test".into(), serde_json::json!(test));
        }
        "" => return Err(at_least_one("HEALTHCHECK")),
        other => {
            return Err(invalid(format!(
                "Unknown type {other:?} in HEALTHCHECK (try CMD)"
            )))
        }
    }
    for f in flags {
        let (name, value) = f.split_once('=').unwrap_or((f.as_str(), ""));
        let field = match name {
            "interval" => "Interval",
            "timeout" => "Timeout",
            "start-period" => "StartPeriod",
            "start-interval" => "StartInterval",
            "retries" => {
                let n: i64 = value
                    .parse()
                    .map_err(|_| invalid(format!("invalid value {value:?} for --retries")))?;
                if n < 0 {
                    return Err(invalid(format!("--retries cannot be negative ({n})")));
                }
                if n > 0 {
                    hc.insert("Retries".into(), serde_json::json!(n));
                }
                continue;
            }
            other => return Err(invalid(format!("unknown flag: {other}"))),
        };
        let d = parse_go_duration(value)
            .ok_or_else(|| invalid(format!("time: invalid duration {value:?}")))?;
        if d != 0 && d < 1_000_000 {
            return Err(invalid(format!(
                "{field} {value:?} cannot be less than 1ms"
            )));
        }
        if d != 0 {
            hc.insert(field.into(), serde_json::json!(d));
        }
    }
    Ok(serde_json::Value::Object(hc))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::EventBus;
    use crate::image::registry::RegistrySettings;
    use std::io::Cursor;

    fn service() -> (ImageService, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        layout.create_dirs().unwrap();
        let svc = ImageService::new(
            Store::open_in_memory().unwrap(),
            layout,
            EventBus::new(),
            RegistrySettings::default(),
        );
        (svc, dir)
    }

    /// A filesystem tar holding `files`.
    fn layer_tar(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in files {
            let mut h = tar::Header::new_gnu();
            h.set_path(name).unwrap();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(1);
            h.set_cksum();
            b.append(&h, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    /// An outer archive from (path, data) pairs, paths written raw.
    fn archive(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in entries {
            let mut h = tar::Header::new_ustar();
            let raw = name.as_bytes();
            h.as_old_mut().name[..raw.len()].copy_from_slice(raw);
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(1);
            h.set_entry_type(tar::EntryType::Regular);
            h.set_cksum();
            b.append(&h, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn symlink_entry(b: &mut tar::Builder<Vec<u8>>, path: &str, target: &str) {
        let mut h = tar::Header::new_ustar();
        h.set_path(path).unwrap();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        h.set_mode(0o777);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1);
        h.as_old_mut().linkname[..target.len()].copy_from_slice(target.as_bytes());
        h.set_cksum();
        b.append(&h, std::io::empty()).unwrap();
    }

    fn file_entry(b: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8]) {
        let mut h = tar::Header::new_ustar();
        h.set_path(path).unwrap();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1);
        h.set_cksum();
        b.append(&h, data).unwrap();
    }

    fn reader(data: Vec<u8>) -> Box<dyn Read + Send> {
        Box::new(Cursor::new(data))
    }

    fn tmp_is_empty(svc: &ImageService) -> bool {
        std::fs::read_dir(svc.layout.tmp_dir())
            .unwrap()
            .next()
            .is_none()
    }

    async fn nothing_stored(svc: &ImageService) -> bool {
        svc.count().await.unwrap() == 0
            && svc
                .store
                .call(|c| rows::all_layers(c))
                .await
                .unwrap()
                .is_empty()
    }

    fn save_to_vec(svc: &ImageService, plan: &SavePlan) -> Vec<u8> {
        let mut out = Vec::new();
        svc.write_save(plan, &mut out).unwrap();
        out
    }

    fn entries_of(tar_bytes: &[u8]) -> BTreeMap<String, Vec<u8>> {
        let mut a = tar::Archive::new(Cursor::new(tar_bytes));
        let mut out = BTreeMap::new();
        for e in a.entries().unwrap() {
            let mut e = e.unwrap();
            let p = e.path().unwrap().to_string_lossy().into_owned();
            let mut data = vec![];
            e.read_to_end(&mut data).unwrap();
            out.insert(p, data);
        }
        out
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[tokio::test]
    async fn import_save_load_round_trip() {
        let (svc, _dir) = service();
        let (events, _rx) = svc.events.subscribe();
        assert!(events.is_empty());
        let layer = layer_tar(&[("hello.txt", b"hello world\n")]);
        let diff_id = sha256_digest(&layer);
        let changes = parse_changes(&strings(&[
            "CMD [\"/bin/sh\"]",
            "ENV A=1 B=\"two words\"",
            "LABEL x=y",
            "EXPOSE 80/udp 443",
            "WORKDIR app",
            "USER nobody",
        ]))
        .unwrap();
        let target = Reference::parse_normalized("example/imp:1").unwrap();
        let id = svc
            .import(reader(gzip(&layer)), Some(target), changes, String::new())
            .await
            .unwrap();
        assert!(is_sha256_digest(&id));
        let info = svc.resolve("example/imp:1").await.unwrap();
        assert_eq!(info.row.id, id);
        let rc = info.config.config.clone().unwrap();
        assert_eq!(rc.cmd, Some(strings(&["/bin/sh"])));
        assert_eq!(rc.env, Some(strings(&["A=1", "B=two words"])));
        assert_eq!(info.config.labels().get("x").map(String::as_str), Some("y"));
        let ports: Vec<String> = rc.exposed_ports.unwrap().keys().cloned().collect();
        assert_eq!(ports, strings(&["443/tcp", "80/udp"]));
        assert_eq!(rc.working_dir.as_deref(), Some("/app"));
        assert_eq!(rc.user.as_deref(), Some("nobody"));
        assert_eq!(info.config.os, "linux");
        assert_eq!(info.config.architecture, host_platform().0);
        assert_eq!(info.config.rootfs.diff_ids, vec![diff_id.clone()]);
        assert_eq!(info.config.history.len(), 1);
        assert_eq!(
            info.config.history[0].comment.as_deref(),
            Some("Imported from -")
        );
        assert_eq!(info.config.comment.as_deref(), Some("Imported from -"));
        assert!(svc.layout.layer_diff(&diff_id).join("hello.txt").exists());
        assert!(tmp_is_empty(&svc));
        let (events, _rx) = svc.events.subscribe();
        let actions: Vec<&str> = events.iter().map(|e| e.action.as_str()).collect();
        assert_eq!(actions, vec!["tag", "import"]);

        // Save by tag: the dockerd 25+ layout.
        let plan = svc.save_plan(&strings(&["example/imp:1"])).await.unwrap();
        let saved = save_to_vec(&svc, &plan);
        let entries = entries_of(&saved);
        let layer_path = format!("blobs/sha256/{}", digest_hex(&diff_id));
        assert_eq!(entries.get(&layer_path), Some(&layer));
        let config_path = format!("blobs/sha256/{}", digest_hex(&id));
        assert_eq!(entries.get(&config_path), Some(&info.row.config));
        assert_eq!(entries["oci-layout"], OCI_LAYOUT_CONTENT.as_bytes());
        let manifest: serde_json::Value =
            serde_json::from_slice(&entries["manifest.json"]).unwrap();
        assert_eq!(
            manifest,
            serde_json::json!([{
                "Config": config_path,
                "RepoTags": ["example/imp:1"],
                "Layers": [layer_path],
            }])
        );
        let repos: serde_json::Value = serde_json::from_slice(&entries["repositories"]).unwrap();
        assert_eq!(
            repos,
            serde_json::json!({"example/imp": {"1": digest_hex(&diff_id)}})
        );
        let index: serde_json::Value = serde_json::from_slice(&entries["index.json"]).unwrap();
        let desc = &index["manifests"][0];
        assert_eq!(
            desc["annotations"][ANNOTATION_IMAGE_NAME],
            "docker.io/example/imp:1"
        );
        assert_eq!(desc["annotations"][ANNOTATION_REF_NAME], "1");
        let m_path = format!(
            "blobs/sha256/{}",
            digest_hex(desc["digest"].as_str().unwrap())
        );
        let m: serde_json::Value = serde_json::from_slice(&entries[&m_path]).unwrap();
        assert_eq!(m["layers"][0]["mediaType"], OCI_LAYER_TAR);
        assert_eq!(m["layers"][0]["size"], layer.len());
        assert_eq!(m["config"]["digest"], id.as_str());

        // Load into a fresh daemon.
        let (svc2, _dir2) = service();
        let lines = svc2.load(reader(saved.clone())).await.unwrap();
        assert_eq!(lines, strings(&["Loaded image: example/imp:1"]));
        let info2 = svc2.resolve("example/imp:1").await.unwrap();
        assert_eq!(info2.row.id, id);
        assert_eq!(info2.familiar_tags(), strings(&["example/imp:1"]));
        assert_eq!(info2.config.rootfs.diff_ids, vec![diff_id.clone()]);
        assert!(svc2.layout.layer_diff(&diff_id).join("hello.txt").exists());
        assert!(tmp_is_empty(&svc2));
        let (events, _rx) = svc2.events.subscribe();
        assert_eq!(events.last().map(|e| e.action.as_str()), Some("load"));

        // Loading again retags nothing and reuses the layer.
        let lines = svc2.load(reader(saved)).await.unwrap();
        assert_eq!(lines, strings(&["Loaded image: example/imp:1"]));

        // Saving by ID records no tag.
        let plan = svc.save_plan(std::slice::from_ref(&id)).await.unwrap();
        let entries = entries_of(&save_to_vec(&svc, &plan));
        let manifest: serde_json::Value =
            serde_json::from_slice(&entries["manifest.json"]).unwrap();
        assert_eq!(manifest[0]["RepoTags"], serde_json::Value::Null);
        assert!(!entries.contains_key("repositories"));
        let (svc3, _dir3) = service();
        let lines = svc3.load(reader(save_to_vec(&svc, &plan))).await.unwrap();
        assert_eq!(lines, vec![format!("Loaded image ID: {id}")]);

        // A bare repository name saves all of its tags.
        svc.tag(&id, Reference::parse_normalized("example/imp:2").unwrap())
            .await
            .unwrap();
        let plan = svc.save_plan(&strings(&["example/imp"])).await.unwrap();
        assert_eq!(plan.image_ids(), vec![id.clone()]);
        let entries = entries_of(&save_to_vec(&svc, &plan));
        let manifest: serde_json::Value =
            serde_json::from_slice(&entries["manifest.json"]).unwrap();
        assert_eq!(
            manifest[0]["RepoTags"],
            serde_json::json!(["example/imp:1", "example/imp:2"])
        );

        let err = svc.save_plan(&strings(&["nope:1"])).await.err().unwrap();
        assert!(matches!(err, EngineError::NotFound(m) if m == "No such image: nope:1"));
    }

    #[tokio::test]
    async fn truncated_archive_changes_nothing() {
        let (svc, _dir) = service();
        let layer = layer_tar(&[("big.bin", &vec![7u8; 50_000])]);
        let changes = parse_changes(&[]).unwrap();
        let target = Reference::parse_normalized("trunc:latest").unwrap();
        let id = svc
            .import(reader(layer), Some(target), changes, "m".into())
            .await
            .unwrap();
        let info = svc.resolve(&id).await.unwrap();
        assert_eq!(info.config.comment.as_deref(), Some("m"));
        let plan = svc.save_plan(&strings(&["trunc"])).await.unwrap();
        let saved = save_to_vec(&svc, &plan);

        let (svc2, _dir2) = service();
        let cut = saved[..saved.len() / 2].to_vec();
        let err = svc2.load(reader(cut)).await.err().unwrap();
        assert!(matches!(err, EngineError::InvalidParameter(_)), "{err:?}");
        assert!(nothing_stored(&svc2).await);
        assert!(tmp_is_empty(&svc2));

        // A truncated import stores nothing either.
        let full = layer_tar(&[("big.bin", &vec![7u8; 50_000])]);
        let err = svc2
            .import(
                reader(full[..20_000].to_vec()),
                None,
                Changes::default(),
                String::new(),
            )
            .await
            .err()
            .unwrap();
        assert!(matches!(err, EngineError::InvalidParameter(_)), "{err:?}");
        assert!(nothing_stored(&svc2).await);
        assert!(tmp_is_empty(&svc2));
    }

    #[tokio::test]
    async fn escaping_paths_are_refused() {
        let (svc, _dir) = service();
        let evil = archive(&[("manifest.json", b"[]"), ("../evil", b"pwned")]);
        let err = svc.load(reader(evil)).await.err().unwrap();
        assert!(matches!(err, EngineError::InvalidParameter(_)), "{err:?}");
        assert!(!svc.layout.tmp_dir().join("evil").exists());
        assert!(!svc.layout.root().join("evil").exists());
        assert!(tmp_is_empty(&svc));

        let abs = archive(&[("/etc/evil", b"x")]);
        assert!(matches!(
            svc.load(reader(abs)).await,
            Err(EngineError::InvalidParameter(_))
        ));

        // A symlink leaving the archive is no alias: the layer is missing.
        let mut b = tar::Builder::new(Vec::new());
        let config = br#"{"os":"linux","rootfs":{"type":"layers","diff_ids":["sha256:0000000000000000000000000000000000000000000000000000000000000000"]}}"#;
        file_entry(&mut b, "c.json", config);
        symlink_entry(&mut b, "l/layer.tar", "../../../etc/passwd");
        file_entry(
            &mut b,
            "manifest.json",
            br#"[{"Config":"c.json","RepoTags":null,"Layers":["l/layer.tar"]}]"#,
        );
        let err = svc
            .load(reader(b.into_inner().unwrap()))
            .await
            .err()
            .unwrap();
        assert!(
            matches!(&err, EngineError::InvalidParameter(m) if m.contains("missing")),
            "{err:?}"
        );
        assert!(nothing_stored(&svc).await);
        assert!(tmp_is_empty(&svc));
    }

    #[tokio::test]
    async fn legacy_archive_with_symlinked_layers_loads() {
        let (svc, _dir) = service();
        let layer = layer_tar(&[("a", b"same")]);
        let diff = sha256_digest(&layer);
        let config = format!(
            r#"{{"architecture":"amd64","os":"linux","config":{{"Cmd":["sh"]}},"rootfs":{{"type":"layers","diff_ids":["{diff}","{diff}"]}},"history":[{{}},{{}}]}}"#
        );
        let id = sha256_digest(config.as_bytes());
        let mut b = tar::Builder::new(Vec::new());
        file_entry(
            &mut b,
            &format!("{}.json", digest_hex(&id)),
            config.as_bytes(),
        );
        file_entry(&mut b, "aaa/layer.tar", &layer);
        symlink_entry(&mut b, "bbb/layer.tar", "../aaa/layer.tar");
        let manifest = format!(
            r#"[{{"Config":"{}.json","RepoTags":["legacy:v1","legacy:v2"],"Layers":["aaa/layer.tar","bbb/layer.tar"]}}]"#,
            digest_hex(&id)
        );
        file_entry(&mut b, "manifest.json", manifest.as_bytes());
        file_entry(&mut b, "repositories", br#"{"legacy":{"v1":"aaa"}}"#);
        let lines = svc.load(reader(b.into_inner().unwrap())).await.unwrap();
        assert_eq!(
            lines,
            strings(&["Loaded image: legacy:v1", "Loaded image: legacy:v2"])
        );
        let info = svc.resolve("legacy:v2").await.unwrap();
        assert_eq!(info.row.id, id);
        assert_eq!(info.row.layers, chain_ids(&[diff.clone(), diff.clone()]));
        assert!(tmp_is_empty(&svc));
    }

    #[tokio::test]
    async fn diff_id_mismatch_is_refused() {
        let (svc, _dir) = service();
        let layer = layer_tar(&[("a", b"x")]);
        let wrong = sha256_digest(b"not the layer");
        let config =
            format!(r#"{{"os":"linux","rootfs":{{"type":"layers","diff_ids":["{wrong}"]}}}}"#);
        let mut b = tar::Builder::new(Vec::new());
        file_entry(&mut b, "config.json", config.as_bytes());
        file_entry(&mut b, "l.tar", &layer);
        file_entry(
            &mut b,
            "manifest.json",
            br#"[{"Config":"config.json","RepoTags":["bad:1"],"Layers":["l.tar"]}]"#,
        );
        let err = svc
            .load(reader(b.into_inner().unwrap()))
            .await
            .err()
            .unwrap();
        assert!(
            matches!(&err, EngineError::InvalidParameter(m) if m.contains("invalid diffID")),
            "{err:?}"
        );
        assert!(nothing_stored(&svc).await);
        assert!(tmp_is_empty(&svc));
    }

    #[tokio::test]
    async fn oci_layout_loads() {
        let (svc, _dir) = service();
        let layer = layer_tar(&[("etc/os-release", b"ID=test\n")]);
        let blob = gzip(&layer);
        let diff = sha256_digest(&layer);
        let config = format!(
            r#"{{"architecture":"{}","os":"linux","rootfs":{{"type":"layers","diff_ids":["{diff}"]}}}}"#,
            host_platform().0
        );
        let config_digest = sha256_digest(config.as_bytes());
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": config.len()},
            "layers": [{"mediaType": OCI_LAYER_GZIP, "digest": sha256_digest(&blob), "size": blob.len()}],
        })
        .to_string();
        let manifest_digest = sha256_digest(manifest.as_bytes());
        let named = serde_json::json!({
            "schemaVersion": 2,
            "manifests": [
                {"mediaType": OCI_MANIFEST, "digest": manifest_digest, "size": manifest.len(),
                 "annotations": {ANNOTATION_IMAGE_NAME: "docker.io/library/ocitest:v1", ANNOTATION_REF_NAME: "v1"}},
            ],
        })
        .to_string();
        let build = |index: &str| {
            let mut b = tar::Builder::new(Vec::new());
            file_entry(&mut b, OCI_LAYOUT, OCI_LAYOUT_CONTENT.as_bytes());
            file_entry(&mut b, "index.json", index.as_bytes());
            file_entry(
                &mut b,
                &format!("blobs/sha256/{}", digest_hex(&config_digest)),
                config.as_bytes(),
            );
            file_entry(
                &mut b,
                &format!("blobs/sha256/{}", digest_hex(&manifest_digest)),
                manifest.as_bytes(),
            );
            file_entry(
                &mut b,
                &format!("blobs/sha256/{}", digest_hex(&sha256_digest(&blob))),
                &blob,
            );
            b.into_inner().unwrap()
        };
        let lines = svc.load(reader(build(&named))).await.unwrap();
        assert_eq!(lines, strings(&["Loaded image: ocitest:v1"]));
        let info = svc.resolve("ocitest:v1").await.unwrap();
        assert_eq!(info.row.id, config_digest);
        assert!(svc.layout.layer_diff(&diff).join("etc/os-release").exists());

        // Unnamed: loaded untagged, reported by ID.
        let (svc2, _dir2) = service();
        let unnamed = serde_json::json!({
            "schemaVersion": 2,
            "manifests": [{"mediaType": OCI_MANIFEST, "digest": manifest_digest, "size": manifest.len()}],
        })
        .to_string();
        let lines = svc2.load(reader(gzip(&build(&unnamed)))).await.unwrap();
        assert_eq!(lines, vec![format!("Loaded image ID: {config_digest}")]);
        assert!(svc2
            .resolve(&config_digest)
            .await
            .unwrap()
            .row
            .tags
            .is_empty());
        assert!(tmp_is_empty(&svc2));
    }

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

    #[test]
    fn changes_parse_like_dockerd() {
        let apply = |c: &[&str]| {
            let mut rc = RunConfig::default();
            parse_changes(&strings(c))?.apply(&mut rc)?;
            Ok::<_, EngineError>(rc)
        };
        let rc = apply(&["CMD echo hi", "ENTRYPOINT [\"/e\"]"]).unwrap();
        assert_eq!(rc.cmd, Some(strings(&["/bin/sh", "-c", "echo hi"])));
        assert_eq!(rc.entrypoint, Some(strings(&["/e"])));
        let rc = apply(&["ENTRYPOINT /run.sh"]).unwrap();
        assert_eq!(rc.entrypoint, Some(strings(&["/bin/sh", "-c", "/run.sh"])));
        assert_eq!(rc.cmd, None);

        let rc = apply(&[
            "ENV PATH /usr/bin:/bin",
            "ENV A=$PATH B=${NOPE:-dflt} C='$lit'",
            "ENV A=2",
        ])
        .unwrap();
        assert_eq!(
            rc.env,
            Some(strings(&["PATH=/usr/bin:/bin", "A=2", "B=dflt", "C=$lit"]))
        );
        let rc = apply(&["LABEL a=b \"c d\"=\"e f\"", "LABEL legacy value here"]).unwrap();
        let labels = rc.labels.unwrap();
        assert_eq!(labels["a"], "b");
        assert_eq!(labels["c d"], "e f");
        assert_eq!(labels["legacy"], "value here");

        let rc = apply(&[
            "EXPOSE 8000-8001/udp 22",
            "VOLUME [\"/data\", \"/logs\"]",
            "VOLUME /a /b",
        ])
        .unwrap();
        let ports: Vec<String> = rc.exposed_ports.unwrap().keys().cloned().collect();
        assert_eq!(ports, strings(&["22/tcp", "8000/udp", "8001/udp"]));
        let vols: Vec<String> = rc.volumes.unwrap().keys().cloned().collect();
        assert_eq!(vols, strings(&["/a", "/b", "/data", "/logs"]));

        let rc = apply(&[
            "WORKDIR /srv",
            "WORKDIR app/../web",
            "USER 1000:1000",
            "STOPSIGNAL SIGQUIT",
            "ONBUILD RUN make",
        ])
        .unwrap();
        assert_eq!(rc.working_dir.as_deref(), Some("/srv/web"));
        assert_eq!(rc.user.as_deref(), Some("1000:1000"));
        assert_eq!(rc.stop_signal.as_deref(), Some("SIGQUIT"));
        assert_eq!(rc.on_build, Some(strings(&["RUN make"])));

        let rc = apply(&["HEALTHCHECK --interval=30s --retries=3 CMD curl -f http://x/"]).unwrap();
        assert_eq!(
            rc.healthcheck,
            Some(
                serde_json::json!({"Test": ["CMD-SHELL", "curl -f http://x/"], "Interval": 30_000_000_000i64, "Retries": 3})
            )
        );
        let rc = apply(&["HEALTHCHECK NONE"]).unwrap();
        assert_eq!(rc.healthcheck, Some(serde_json::json!({"Test": ["NONE"]})));

        // Several instructions in one element, continuations and comments.
        let rc = apply(&["# note\nUSER a\nCMD echo \\\n  more"]).unwrap();
        assert_eq!(rc.user.as_deref(), Some("a"));
        assert_eq!(rc.cmd, Some(strings(&["/bin/sh", "-c", "echo   more"])));

        let msg = |c: &[&str]| match apply(c) {
            Err(EngineError::InvalidParameter(m)) => m,
            other => panic!("expected InvalidParameter, got {other:?}"),
        };
        assert_eq!(msg(&["FROM busybox"]), "from is not a valid change command");
        assert_eq!(msg(&["RUN true"]), "run is not a valid change command");
        assert_eq!(
            msg(&["ENV a=b c"]),
            "Syntax error - can't find = in \"c\". Must be of the form: name=value"
        );
        assert_eq!(msg(&["ENV lonely"]), "ENV must have two arguments");
        assert_eq!(msg(&["EXPOSE 80/foo"]), "invalid proto: foo");
        assert_eq!(msg(&["EXPOSE abc"]), "invalid containerPort: abc");
        assert_eq!(msg(&["STOPSIGNAL SIGNOPE"]), "Invalid signal: SIGNOPE");
        assert_eq!(
            msg(&["ONBUILD FROM x"]),
            "FROM isn't allowed as an ONBUILD trigger"
        );
        assert_eq!(msg(&["CMD --foo=bar x"]), "unknown flag: foo");
        assert_eq!(
            msg(&["HEALTHCHECK --interval=1us CMD x"]),
            "Interval \"1us\" cannot be less than 1ms"
        );
        assert!(parse_changes(&[]).unwrap().is_empty());
    }

    #[test]
    fn helpers() {
        assert_eq!(parse_go_duration("1h30m"), Some(5_400_000_000_000));
        assert_eq!(parse_go_duration("1.5s"), Some(1_500_000_000));
        assert_eq!(parse_go_duration("0"), Some(0));
        assert_eq!(parse_go_duration("5"), None);
        assert_eq!(normalize_rel("./a//b/"), Some("a/b".into()));
        assert_eq!(normalize_rel("a/../.."), None);
        assert_eq!(
            resolve_link("x/layer.tar", "../y/layer.tar"),
            Some("y/layer.tar".into())
        );
        assert_eq!(resolve_link("x/layer.tar", "../../y"), None);
        assert_eq!(resolve_link("x/layer.tar", "/etc/passwd"), None);
        assert_eq!(
            digest_in_name(&format!("blobs/sha256/{}", "a".repeat(64))),
            Some("a".repeat(64).as_str())
        );
        assert_eq!(digest_in_name("config.json"), None);
        let t = chrono::DateTime::from_timestamp(1_700_000_000, 120_000_000).unwrap();
        assert_eq!(go_time(t), "2023-11-14T22:13:20.12Z");
        assert_eq!(sniff_media_type(&[0x1f, 0x8b, 8, 0]), OCI_LAYER_GZIP);
        assert_eq!(clean_abs_path("//a/./b/../c"), "/a/c");
    }
}
