//! `docker load`: extracting a hostile archive (docker-archive of any docker
//! version, or OCI layout) into a private tmp dir, finding and verifying its
//! images and layers, and only then committing them.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{
    invalid, sniff_media_type, HashingReader, ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME,
    OCI_CONFIG, OCI_INDEX, OCI_LAYER_GZIP, OCI_LAYER_TAR, OCI_LAYER_ZSTD, OCI_MANIFEST,
};
use crate::error::{EngineError, EngineResult};
use crate::image::config::{chain_ids, digest_hex, is_sha256_digest, sha256_digest, ImageConfig};
use crate::image::layout::Layout;
use crate::image::manifest::{
    host_platform, pick_platform, Descriptor, Document, DOCKER_CONFIG, DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
};
use crate::image::pull::TmpGuard;
use crate::image::reference::Reference;
use crate::image::unpack::{decompressed, unpack_layer};
use crate::image::{ImageService, NewLayer};
use crate::store::images as rows;
use crate::store::Store;

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

#[derive(Deserialize)]
struct InManifestItem {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers", default)]
    layers: Option<Vec<String>>,
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
pub(super) fn normalize_rel(p: &str) -> Option<String> {
    if p.starts_with('/') {
        return None;
    }
    join_rel(vec![], p)
}

/// Where a symlink at `link` pointing at `target` leads, if inside.
pub(super) fn resolve_link(link: &str, target: &str) -> Option<String> {
    if target.starts_with('/') {
        return None;
    }
    let mut parts: Vec<&str> = link.split('/').collect();
    parts.pop();
    join_rel(parts, target)
}

/// `parts` (an archive path's components) followed by the relative `path`,
/// lexically cleaned; None if it is the root or `..` leaves the archive.
fn join_rel<'a>(mut parts: Vec<&'a str>, path: &'a str) -> Option<String> {
    for c in path.split('/') {
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
pub(super) fn digest_in_name(path: &str) -> Option<&str> {
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
    let index: Document = serde_json::from_slice(&raw)
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

/// Follows an OCI descriptor to an image; None for things that are not
/// images (attestations, artifacts).
fn oci_image(
    files: &ArchiveFiles,
    desc: &Descriptor,
    depth: u32,
) -> EngineResult<Option<LoadImage>> {
    let is_index = matches!(desc.media_type.as_str(), OCI_INDEX | DOCKER_MANIFEST_LIST);
    let is_manifest = matches!(
        desc.media_type.as_str(),
        OCI_MANIFEST | DOCKER_MANIFEST | ""
    );
    if !is_index && !is_manifest {
        return Ok(None);
    }
    let raw = files.read_blob(&desc.digest)?;
    let doc: Document = serde_json::from_slice(&raw)
        .map_err(|e| invalid(format!("invalid archive: {}: {e}", desc.digest)))?;
    let doc_is_index = is_index
        || matches!(
            doc.media_type.as_deref(),
            Some(OCI_INDEX) | Some(DOCKER_MANIFEST_LIST)
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
    // The diff ID covers the whole stream, including whatever follows the
    // end-of-archive marker; `unpack_layer` reads it to EOF.
    let stats = unpack_layer(stream, &work.join("diff"))
        .map_err(|e| invalid(format!("layer {index} ({diff_id}): {e}")))?;
    let got = stats.diff_id;
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

#[cfg(test)]
mod tests {
    use super::super::test_support::{
        gzip, layer_tar, nothing_stored, reader, service, strings, tmp_is_empty,
    };
    use super::super::{
        ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME, OCI_CONFIG, OCI_LAYER_GZIP, OCI_LAYOUT,
        OCI_LAYOUT_CONTENT, OCI_MANIFEST,
    };
    use crate::error::EngineError;
    use crate::image::config::{chain_ids, digest_hex, sha256_digest};
    use crate::image::manifest::host_platform;
    use crate::test_tar::{tar_of, Tar};

    #[tokio::test]
    async fn escaping_paths_are_refused() {
        let (svc, _dir) = service();
        let evil = tar_of(&[("manifest.json", b"[]"), ("../evil", b"pwned")]);
        let err = svc.load(reader(evil)).await.err().unwrap();
        assert!(matches!(err, EngineError::InvalidParameter(_)), "{err:?}");
        assert!(!svc.layout.tmp_dir().join("evil").exists());
        assert!(!svc.layout.root().join("evil").exists());
        assert!(tmp_is_empty(&svc));

        let abs = tar_of(&[("/etc/evil", b"x")]);
        assert!(matches!(
            svc.load(reader(abs)).await,
            Err(EngineError::InvalidParameter(_))
        ));

        // A symlink leaving the archive is no alias: the layer is missing.
        let config = br#"{"os":"linux","rootfs":{"type":"layers","diff_ids":["sha256:0000000000000000000000000000000000000000000000000000000000000000"]}}"#;
        let b = Tar::new()
            .file(b"c.json", config)
            .symlink(b"l/layer.tar", b"../../../etc/passwd")
            .file(
                b"manifest.json",
                br#"[{"Config":"c.json","RepoTags":null,"Layers":["l/layer.tar"]}]"#,
            )
            .bytes();
        let err = svc.load(reader(b)).await.err().unwrap();
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
        let manifest = format!(
            r#"[{{"Config":"{}.json","RepoTags":["legacy:v1","legacy:v2"],"Layers":["aaa/layer.tar","bbb/layer.tar"]}}]"#,
            digest_hex(&id)
        );
        let b = Tar::new()
            .file(
                format!("{}.json", digest_hex(&id)).as_bytes(),
                config.as_bytes(),
            )
            .file(b"aaa/layer.tar", &layer)
            .symlink(b"bbb/layer.tar", b"../aaa/layer.tar")
            .file(b"manifest.json", manifest.as_bytes())
            .file(b"repositories", br#"{"legacy":{"v1":"aaa"}}"#)
            .bytes();
        let lines = svc.load(reader(b)).await.unwrap();
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
        let b = Tar::new()
            .file(b"config.json", config.as_bytes())
            .file(b"l.tar", &layer)
            .file(
                b"manifest.json",
                br#"[{"Config":"config.json","RepoTags":["bad:1"],"Layers":["l.tar"]}]"#,
            )
            .bytes();
        let err = svc.load(reader(b)).await.err().unwrap();
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
            Tar::new()
                .file(OCI_LAYOUT.as_bytes(), OCI_LAYOUT_CONTENT.as_bytes())
                .file(b"index.json", index.as_bytes())
                .file(
                    format!("blobs/sha256/{}", digest_hex(&config_digest)).as_bytes(),
                    config.as_bytes(),
                )
                .file(
                    format!("blobs/sha256/{}", digest_hex(&manifest_digest)).as_bytes(),
                    manifest.as_bytes(),
                )
                .file(
                    format!("blobs/sha256/{}", digest_hex(&sha256_digest(&blob))).as_bytes(),
                    &blob,
                )
                .bytes()
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
}
