//! Pulling an image from a registry, in two steps so that errors a user
//! should see as an HTTP status (unknown tag, bad auth, registry down) come
//! before any progress is streamed:
//! 1. [`ImageService::resolve_pull`] fetches the manifest (resolving a
//!    manifest list or OCI index to the host platform) and the config, and
//!    verifies both digests;
//! 2. [`ImageService::fetch`] downloads the missing layers (three at a time,
//!    each unpacked while it streams in), verifies every blob digest and
//!    diff ID, and commits the image.

use std::io::Read;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use oci_client::secrets::RegistryAuth;
use oci_client::Client;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use super::config::{chain_ids, digest_hex, is_sha256_digest, sha256_digest, ImageConfig};
use super::manifest::{
    host_platform, pick_platform, Document, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX,
    OCI_MANIFEST,
};
use super::progress::{Message, Progress};
use super::reference::Reference;
use super::registry::{map_error, Endpoint};
use super::unpack::{decompressed, unpack_layer};
use super::{ImageService, NewLayer};
use crate::error::{EngineError, EngineResult};

const ACCEPTED: &[&str] = &[
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    OCI_MANIFEST,
    OCI_INDEX,
];

/// Layer media types we can unpack (compression is sniffed from the bytes).
const LAYER_TYPES: &[&str] = &[
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.diff.tar",
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd",
];

/// dockerd downloads this many layers at once by default.
const PARALLEL_DOWNLOADS: usize = 3;

/// Parses a manifest from a registry, refusing schema 1 as dockerd does.
fn parse_manifest(raw: &[u8]) -> EngineResult<Document> {
    let doc: Document = serde_json::from_slice(raw)
        .map_err(|e| EngineError::Internal(format!("invalid manifest from registry: {e}")))?;
    if doc.is_schema1() {
        return Err(EngineError::InvalidParameter(
            "Docker Image Format v1 and Docker Image manifest version 2, schema 1 support has been removed".into(),
        ));
    }
    Ok(doc)
}

#[derive(Debug, Clone)]
pub struct LayerToFetch {
    pub digest: String,
    pub size: u64,
    pub media_type: String,
    pub diff_id: String,
    pub chain_id: String,
    pub parent: Option<String>,
}

/// Everything known about an image before its layers are fetched.
pub struct PullPlan {
    client: Client,
    remote: oci_client::Reference,
    /// The local name being pulled (tag or digest).
    pub reference: Reference,
    /// The digest a user can pull by: the index's when there is one.
    pub manifest_digest: String,
    pub image_id: String,
    pub config_raw: Vec<u8>,
    pub layers: Vec<LayerToFetch>,
}

impl ImageService {
    /// Step 1: manifest and config, verified. Mirrors are tried in order; a
    /// "not found" from one is reported if every later endpoint fails too.
    pub async fn resolve_pull(
        &self,
        reference: &Reference,
        auth: &RegistryAuth,
    ) -> EngineResult<PullPlan> {
        let mut first_not_found = None;
        let mut last_err = None;
        for ep in self.registry.endpoints(reference) {
            match self.resolve_at(&ep, reference, auth).await {
                Ok(plan) => return Ok(plan),
                Err(e) => {
                    tracing::debug!(host = %ep.host, error = %e, "pull endpoint failed");
                    if matches!(e, EngineError::NotFound(_)) && first_not_found.is_none() {
                        first_not_found = Some(e);
                    } else {
                        last_err = Some(e);
                    }
                }
            }
        }
        Err(first_not_found
            .or(last_err)
            .unwrap_or_else(|| EngineError::Internal("no registry endpoint".into())))
    }

    async fn resolve_at(
        &self,
        ep: &Endpoint,
        reference: &Reference,
        auth: &RegistryAuth,
    ) -> EngineResult<PullPlan> {
        let client = self.registry.client(ep)?;
        let what = reference.familiar();
        let repo = reference.familiar_repository();
        let anonymous = matches!(auth, RegistryAuth::Anonymous);
        let err = |e| map_error(e, &what, &repo, anonymous);
        let mut remote = match (&reference.digest, &reference.tag) {
            (Some(d), _) => oci_client::Reference::with_digest(
                ep.host.clone(),
                ep.repository.clone(),
                d.clone(),
            ),
            (None, tag) => oci_client::Reference::with_tag(
                ep.host.clone(),
                ep.repository.clone(),
                tag.clone().unwrap_or_else(|| "latest".into()),
            ),
        };
        let (raw, top_digest) = client
            .pull_manifest_raw(&remote, auth, ACCEPTED)
            .await
            .map_err(err)?;
        check_digest(&raw, &top_digest, "manifest")?;
        if let Some(d) = &reference.digest {
            if *d != top_digest {
                return Err(EngineError::InvalidParameter(format!(
                    "manifest digest mismatch: asked for {d}, got {top_digest}"
                )));
            }
        }
        let mut doc = parse_manifest(&raw)?;
        if doc.is_index() {
            let entries = doc.manifests.as_deref().unwrap_or_default();
            let chosen = pick_platform(entries).ok_or_else(|| {
                let (arch, _) = host_platform();
                EngineError::NotFound(format!(
                    "no matching manifest for linux/{arch} in the manifest list entries"
                ))
            })?;
            remote = oci_client::Reference::with_digest(
                ep.host.clone(),
                ep.repository.clone(),
                chosen.digest.clone(),
            );
            let (child_raw, child_digest) = client
                .pull_manifest_raw(&remote, auth, ACCEPTED)
                .await
                .map_err(err)?;
            check_digest(&child_raw, &chosen.digest, "manifest")?;
            if child_digest != chosen.digest {
                return Err(EngineError::InvalidParameter(format!(
                    "manifest digest mismatch: expected {}, got {child_digest}",
                    chosen.digest
                )));
            }
            doc = parse_manifest(&child_raw)?;
            if doc.is_index() {
                return Err(EngineError::InvalidParameter(
                    "nested manifest lists are not supported".into(),
                ));
            }
        }
        let config_desc = doc
            .config
            .as_ref()
            .ok_or_else(|| EngineError::Internal("manifest has no config".into()))?;
        if !is_sha256_digest(&config_desc.digest) {
            return Err(EngineError::InvalidParameter(format!(
                "unsupported config digest {}",
                config_desc.digest
            )));
        }
        let mut config_raw = Vec::with_capacity(config_desc.size.clamp(0, 1 << 20) as usize);
        client
            .pull_blob(&remote, config_desc.digest.as_str(), &mut config_raw)
            .await
            .map_err(err)?;
        check_digest(&config_raw, &config_desc.digest, "image config")?;
        let config = ImageConfig::parse(&config_raw)?;
        config.validate()?;
        let descs = doc.layers.unwrap_or_default();
        if descs.len() != config.rootfs.diff_ids.len() {
            return Err(EngineError::InvalidParameter(format!(
                "image config has {} diff IDs but the manifest lists {} layers",
                config.rootfs.diff_ids.len(),
                descs.len()
            )));
        }
        let chains = chain_ids(&config.rootfs.diff_ids);
        let mut layers = Vec::with_capacity(descs.len());
        for (i, d) in descs.into_iter().enumerate() {
            if !LAYER_TYPES.contains(&d.media_type.as_str()) {
                return Err(EngineError::InvalidParameter(format!(
                    "unsupported layer media type {}",
                    d.media_type
                )));
            }
            if !is_sha256_digest(&d.digest) || d.size < 0 {
                return Err(EngineError::InvalidParameter(format!(
                    "invalid layer descriptor {}",
                    d.digest
                )));
            }
            layers.push(LayerToFetch {
                digest: d.digest,
                size: d.size as u64,
                media_type: d.media_type,
                diff_id: config.rootfs.diff_ids[i].clone(),
                chain_id: chains[i].clone(),
                parent: i.checked_sub(1).map(|p| chains[p].clone()),
            });
        }
        Ok(PullPlan {
            client,
            remote,
            reference: reference.clone(),
            manifest_digest: top_digest,
            image_id: config_desc.digest.clone(),
            config_raw,
            layers,
        })
    }

    /// Step 2: layers, then the image and its references, with progress.
    /// A failed pull keeps nothing: layers it committed that no image uses
    /// are released again.
    pub async fn fetch(&self, plan: PullPlan, progress: &Progress) -> EngineResult<()> {
        let result = self.fetch_inner(plan, progress).await;
        if result.is_err() {
            if let Err(e) = self.release_unused_layers().await {
                tracing::warn!(error = %e, "releasing layers of a failed pull");
            }
        }
        result
    }

    async fn fetch_inner(&self, plan: PullPlan, progress: &Progress) -> EngineResult<()> {
        let r = &plan.reference;
        let label = r
            .digest
            .clone()
            .or_else(|| r.tag.clone())
            .unwrap_or_else(|| "latest".into());
        progress
            .send(Message {
                status: Some(format!("Pulling from {}", familiar_path(r))),
                id: Some(label),
                ..Default::default()
            })
            .await?;
        let chains: Vec<String> = plan.layers.iter().map(|l| l.chain_id.clone()).collect();
        let _pins = self.pin_layers(&chains);
        let mut present = Vec::with_capacity(plan.layers.len());
        for l in &plan.layers {
            let exists = self.layer_exists(&l.chain_id).await?;
            let msg = if exists {
                "Already exists"
            } else {
                "Pulling fs layer"
            };
            progress.send(Message::layer(short(&l.digest), msg)).await?;
            present.push(exists);
        }
        let client = &plan.client;
        let remote = &plan.remote;
        // Downloads run three at a time; results are committed in layer
        // order because each layer row names its parent.
        // Boxed futures keep the stream's type simple enough for the
        // compiler to see it is Send across the spawned pull task.
        let jobs: Vec<futures::future::BoxFuture<'_, EngineResult<Option<NewLayer>>>> = plan
            .layers
            .iter()
            .zip(present)
            .map(|(l, exists)| {
                let fut: futures::future::BoxFuture<'_, _> = Box::pin(async move {
                    if exists {
                        return Ok(None);
                    }
                    self.fetch_layer(client, remote, l, progress)
                        .await
                        .map(Some)
                });
                fut
            })
            .collect();
        let mut results = futures::stream::iter(jobs).buffered(PARALLEL_DOWNLOADS);
        let mut i = 0;
        while let Some(res) = results.try_next().await? {
            let l = &plan.layers[i];
            i += 1;
            if let Some(fetched) = res {
                self.commit_layer(fetched).await?;
                progress
                    .send(Message::layer(short(&l.digest), "Pull complete"))
                    .await?;
            }
        }
        let repo_digest = format!("{}@{}", r.repository(), plan.manifest_digest);
        let tag = r.digest.is_none().then(|| r.full());
        let changed = self
            .commit_image(
                &plan.image_id,
                &plan.config_raw,
                &chains,
                tag.as_deref(),
                Some(&repo_digest),
            )
            .await?;
        progress
            .send(Message::status(format!("Digest: {}", plan.manifest_digest)))
            .await?;
        let status = if changed {
            format!("Status: Downloaded newer image for {}", r.familiar())
        } else {
            format!("Status: Image is up to date for {}", r.familiar())
        };
        progress.send(Message::status(status)).await?;
        self.emit(
            "pull",
            &r.familiar(),
            &r.familiar_repository(),
            &plan.image_id,
        )
        .await;
        Ok(())
    }

    /// Downloads one layer blob into the blob store while unpacking it into
    /// a private tmp dir; both digests are checked before it is returned.
    async fn fetch_layer(
        &self,
        client: &Client,
        remote: &oci_client::Reference,
        l: &LayerToFetch,
        progress: &Progress,
    ) -> EngineResult<NewLayer> {
        let id = short(&l.digest).to_string();
        let sized = client
            .pull_blob_stream(remote, l.digest.as_str())
            .await
            .map_err(|e| map_error(e, &l.digest, remote.repository(), false))?;
        let total = sized.content_length.unwrap_or(l.size);
        let mut stream = sized.stream;
        let work = self.layout.tmp_path("layer");
        std::fs::create_dir_all(work.join("diff"))?;
        let guard = TmpGuard(Some(work.clone()));
        let blob_tmp = work.join("blob");
        let (tx, rx) = mpsc::channel::<Result<Bytes, String>>(32);
        let unpack_dir = work.join("diff");
        let blob_for_thread = blob_tmp.clone();
        let unpacker = tokio::task::spawn_blocking(move || {
            unpack_streaming(rx, &blob_for_thread, &unpack_dir)
        });

        let mut current: u64 = 0;
        let mut last_report = std::time::Instant::now();
        let mut send_failed = false;
        loop {
            let next = stream.next().await;
            let chunk = match next {
                None => break,
                Some(Ok(c)) => c,
                Some(Err(e)) => {
                    let _ = tx.send(Err(e.to_string())).await;
                    send_failed = true;
                    break;
                }
            };
            current += chunk.len() as u64;
            if current > l.size.max(total) {
                let _ = tx
                    .send(Err("blob is larger than its descriptor".into()))
                    .await;
                send_failed = true;
                break;
            }
            if tx.send(Ok(chunk)).await.is_err() {
                // The unpacker stopped early; its error says why.
                send_failed = true;
                break;
            }
            if last_report.elapsed() >= std::time::Duration::from_millis(100) {
                last_report = std::time::Instant::now();
                progress
                    .send(Message::bar(&id, "Downloading", current, total))
                    .await?;
            }
        }
        drop(tx);
        let outcome = unpacker.await.map_err(EngineError::internal)?;
        let (blob_digest, blob_size, stats) = match outcome {
            Ok(v) => v,
            Err(e) => {
                return Err(EngineError::InvalidParameter(format!(
                    "layer {}: {e}",
                    l.digest
                )))
            }
        };
        if send_failed {
            return Err(EngineError::Internal(format!(
                "layer {}: download interrupted",
                l.digest
            )));
        }
        progress
            .send(Message::bar(&id, "Downloading", current, total))
            .await?;
        progress
            .send(Message::layer(&id, "Verifying Checksum"))
            .await?;
        if blob_digest != l.digest || (l.size != 0 && blob_size != l.size) {
            return Err(EngineError::InvalidParameter(format!(
                "filesystem layer verification failed for digest {}",
                l.digest
            )));
        }
        if stats.diff_id != l.diff_id {
            return Err(EngineError::InvalidParameter(format!(
                "layer {} has diff ID {} but the image config says {}",
                l.digest, stats.diff_id, l.diff_id
            )));
        }
        progress
            .send(Message::layer(&id, "Download complete"))
            .await?;
        progress
            .send(Message::bar(&id, "Extracting", blob_size, blob_size))
            .await?;
        Ok(NewLayer {
            work: guard,
            blob_tmp,
            chain_id: l.chain_id.clone(),
            diff_id: l.diff_id.clone(),
            parent: l.parent.clone(),
            size: stats.size as i64,
            blob_digest,
            blob_size: blob_size as i64,
            media_type: l.media_type.clone(),
        })
    }
}

/// Removes a tmp dir unless disarmed (it was renamed into place).
pub struct TmpGuard(pub Option<std::path::PathBuf>);

impl TmpGuard {
    pub fn path(&self) -> &std::path::Path {
        self.0.as_deref().expect("tmp guard already disarmed")
    }
}

impl Drop for TmpGuard {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_dir_all(p);
        }
    }
}

fn check_digest(data: &[u8], expected: &str, what: &str) -> EngineResult<()> {
    let got = sha256_digest(data);
    if got != expected {
        return Err(EngineError::InvalidParameter(format!(
            "{what} verification failed: expected {expected}, got {got}"
        )));
    }
    Ok(())
}

/// The 12-hex short form progress lines use.
pub fn short(digest: &str) -> &str {
    let h = digest_hex(digest);
    &h[..h.len().min(12)]
}

/// "Pulling from library/busybox" names the path without the registry for
/// Docker Hub, and with it otherwise.
fn familiar_path(r: &Reference) -> String {
    if r.is_docker_hub() {
        r.path.clone()
    } else {
        r.familiar_repository()
    }
}

/// The bytes of a blob as they arrive, copied to the blob file and hashed on
/// the way to the decompressor.
struct Tee {
    rx: mpsc::Receiver<Result<Bytes, String>>,
    pending: Bytes,
    file: std::io::BufWriter<std::fs::File>,
    hasher: Sha256,
    size: u64,
}

impl Tee {
    fn read_some(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.pending.is_empty() {
            match self.rx.blocking_recv() {
                None => return Ok(0),
                Some(Err(e)) => return Err(std::io::Error::other(e)),
                Some(Ok(b)) => {
                    use std::io::Write;
                    self.file.write_all(&b)?;
                    self.hasher.update(&b);
                    self.size += b.len() as u64;
                    self.pending = b;
                }
            }
        }
        let n = buf.len().min(self.pending.len());
        buf[..n].copy_from_slice(&self.pending[..n]);
        let _ = self.pending.split_to(n);
        Ok(n)
    }
}

#[derive(Clone)]
struct TeeReader(Arc<Mutex<Tee>>);

impl Read for TeeReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .map_err(|_| std::io::Error::other("poisoned"))?
            .read_some(buf)
    }
}

/// Runs on a blocking thread: writes the blob, unpacks it, and returns the
/// blob's digest and size with the unpack stats.
fn unpack_streaming(
    rx: mpsc::Receiver<Result<Bytes, String>>,
    blob_path: &std::path::Path,
    dest: &std::path::Path,
) -> Result<(String, u64, super::unpack::UnpackStats), String> {
    let file = std::fs::File::create(blob_path).map_err(|e| e.to_string())?;
    let tee = Arc::new(Mutex::new(Tee {
        rx,
        pending: Bytes::new(),
        file: std::io::BufWriter::with_capacity(1 << 20, file),
        hasher: Sha256::new(),
        size: 0,
    }));
    let reader = std::io::BufReader::with_capacity(1 << 18, TeeReader(tee.clone()));
    let stats = decompressed(reader)
        .map_err(|e| e.to_string())
        .and_then(|r| unpack_layer(r, dest).map_err(|e| e.to_string()))?;
    // Whatever follows the archive (compressor trailers, padding) still
    // belongs to the blob and its digest.
    let mut rest = TeeReader(tee.clone());
    std::io::copy(&mut rest, &mut std::io::sink()).map_err(|e| e.to_string())?;
    let mut t = tee.lock().map_err(|_| "poisoned".to_string())?;
    use std::io::Write;
    t.file.flush().map_err(|e| e.to_string())?;
    t.file.get_ref().sync_all().map_err(|e| e.to_string())?;
    let digest = format!("sha256:{}", hex::encode(t.hasher.clone().finalize()));
    Ok((digest, t.size, stats))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema1_is_refused() {
        assert!(parse_manifest(br#"{"schemaVersion":1}"#).is_err());
        assert!(parse_manifest(b"{").is_err());
        assert_eq!(short("sha256:0123456789abcdef"), "0123456789ab");
    }
}
