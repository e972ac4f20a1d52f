//! `docker import`: one (possibly compressed) filesystem tar stored as the
//! single layer of a new image, whose config is built from `changes` the way
//! dockerd builds it.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::sync::{Arc, Mutex};

use serde::Serialize;

use super::{invalid, sniff_media_type, Changes, HashingReader};
use crate::error::{EngineError, EngineResult};
use crate::image::config::{sha256_digest, HistoryEntry, RootFs, RunConfig};
use crate::image::layout::Layout;
use crate::image::manifest::host_platform;
use crate::image::pull::TmpGuard;
use crate::image::reference::Reference;
use crate::image::unpack::{decompressed, unpack_layer};
use crate::image::{ImageService, NewLayer};

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
pub(super) fn go_time(t: chrono::DateTime<chrono::Utc>) -> String {
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
    inner: HashingReader<Box<dyn Read + Send>>,
    file: BufWriter<File>,
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
        inner: HashingReader::new(r),
        file: BufWriter::with_capacity(1 << 20, File::create(&blob_tmp)?),
        head: vec![],
        write_error: None,
    }));
    let diff_dir = work.join("diff");
    let unpacked = (|| -> Result<(u64, String), String> {
        let reader = BufReader::with_capacity(1 << 16, ImportTeeReader(tee.clone()));
        let stream = decompressed(reader).map_err(|e| e.to_string())?;
        // Reads the stream to EOF: the diff ID covers the tar's padding.
        let stats = unpack_layer(stream, &diff_dir).map_err(|e| e.to_string())?;
        // Compressor trailers and padding still belong to the blob.
        std::io::copy(&mut ImportTeeReader(tee.clone()), &mut std::io::sink())
            .map_err(|e| e.to_string())?;
        Ok((stats.size, stats.diff_id))
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
    let blob_digest = t.inner.digest();
    Ok(NewLayer {
        work: guard,
        blob_tmp,
        chain_id: diff_id.clone(),
        diff_id,
        parent: None,
        size: size.min(i64::MAX as u64) as i64,
        blob_digest,
        blob_size: t.inner.count.min(i64::MAX as u64) as i64,
        media_type: sniff_media_type(&t.head).to_string(),
    })
}
