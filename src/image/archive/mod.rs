//! `docker save`, `docker load` and `docker import`: images to and from tar
//! archives.
//!
//! - **save** (`save.rs`) writes the layout dockerd 25+ writes, which is a
//!   docker-archive and an OCI image layout at once: `blobs/sha256/<hex>`
//!   holds every config, every layer as an *uncompressed* tar (named by its
//!   diff ID) and one OCI manifest per image; `index.json` + `oci-layout`
//!   make it an OCI layout, `manifest.json` + `repositories` make it a
//!   docker-archive. Layers are decompressed from our blob store twice (once
//!   to learn the size the tar header needs, once to stream), both times
//!   checked against the diff ID, so nothing is buffered and nothing is
//!   written to disk.
//! - **load** (`load.rs`) accepts docker-archives of any docker version
//!   (`manifest.json`, including the pre-25 `<id>/layer.tar` layout with
//!   symlinked duplicate layers) and plain OCI layouts (`index.json`),
//!   compressed or not. The archive is hostile: it is extracted into a
//!   private tmp dir taking only regular files and directories, symlinks and
//!   hard links become in-archive aliases, and every config, blob and diff ID
//!   is verified *before* anything is committed, so a bad archive changes
//!   nothing.
//! - **import** (`import.rs`) turns one (possibly compressed) filesystem tar
//!   into a single-layer image whose config is built from Dockerfile-style
//!   `changes` (`changes.rs`), like `docker import --change`.
//!
//! This file holds what they share: media types, the error helper and
//! `HashingReader`.

use std::io::Read;

use sha2::{Digest, Sha256};

use crate::error::EngineError;

mod changes;
mod import;
mod load;
mod save;

pub use changes::{parse_changes, Changes};
pub use save::SavePlan;

const OCI_LAYOUT: &str = "oci-layout";
/// Byte for byte what dockerd writes.
const OCI_LAYOUT_CONTENT: &str = r#"{"imageLayoutVersion": "1.0.0"}"#;
use crate::image::manifest::{OCI_CONFIG, OCI_INDEX, OCI_MANIFEST};
const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
const ANNOTATION_IMAGE_NAME: &str = "io.containerd.image.name";
const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";

fn invalid(msg: impl Into<String>) -> EngineError {
    EngineError::InvalidParameter(msg.into())
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

#[cfg(test)]
mod test_support {
    //! Fixtures shared by the tests of every concept.

    use std::io::{Cursor, Read, Write};

    use super::SavePlan;
    use crate::events::EventBus;
    use crate::image::layout::Layout;
    use crate::image::registry::RegistrySettings;
    use crate::image::ImageService;
    use crate::store::images as rows;
    use crate::store::Store;

    pub(super) fn service() -> (ImageService, tempfile::TempDir) {
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
    pub(super) use crate::test_tar::tar_of as layer_tar;

    pub(super) fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    pub(super) fn reader(data: Vec<u8>) -> Box<dyn Read + Send> {
        Box::new(Cursor::new(data))
    }

    pub(super) fn tmp_is_empty(svc: &ImageService) -> bool {
        std::fs::read_dir(svc.layout.tmp_dir())
            .unwrap()
            .next()
            .is_none()
    }

    pub(super) async fn nothing_stored(svc: &ImageService) -> bool {
        svc.count().await.unwrap() == 0
            && svc
                .store
                .call(|c| rows::all_layers(c))
                .await
                .unwrap()
                .is_empty()
    }

    pub(super) fn save_to_vec(svc: &ImageService, plan: &SavePlan) -> Vec<u8> {
        let mut out = Vec::new();
        svc.write_save(plan, &mut out).unwrap();
        out
    }

    pub(super) fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }
}

/// Tests spanning several concepts: import → save → load round trips, and
/// the small helpers of every file.
#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::io::{Cursor, Read};

    use super::changes::clean_abs_path;
    use super::import::go_time;
    use super::load::{digest_in_name, normalize_rel, resolve_link};
    use super::test_support::{
        gzip, layer_tar, nothing_stored, reader, save_to_vec, service, strings, tmp_is_empty,
    };
    use super::*;
    use crate::error::EngineError;
    use crate::image::config::{digest_hex, is_sha256_digest, sha256_digest};
    use crate::image::manifest::host_platform;
    use crate::image::reference::Reference;

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

    #[test]
    fn helpers() {
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
