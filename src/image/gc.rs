//! Start-up reconciliation between the database and the disk. Rows are the
//! truth: tmp/ is wiped, layer dirs and blobs that no row owns are removed,
//! and a row whose files vanished (someone deleted them by hand) is dropped
//! together with the images that needed it, so rows never point at missing
//! files.

use std::collections::HashSet;

use super::config::digest_hex;
use super::layout::Layout;
use crate::error::EngineResult;
use crate::store::images as rows;
use crate::store::Store;

#[derive(Debug, Default, PartialEq)]
pub struct GcReport {
    pub tmp_removed: usize,
    pub layer_dirs_removed: usize,
    pub blobs_removed: usize,
    pub broken_images_removed: usize,
}

/// Runs on a blocking thread before the API is served.
pub fn reconcile(store: &Store, layout: &Layout) -> EngineResult<GcReport> {
    let mut report = GcReport::default();
    layout.create_dirs()?;
    for e in std::fs::read_dir(layout.tmp_dir())? {
        let p = e?.path();
        let _ = if p.is_dir() {
            std::fs::remove_dir_all(&p)
        } else {
            std::fs::remove_file(&p)
        };
        report.tmp_removed += 1;
    }
    store.call_blocking(|conn| {
        // Rows whose files are gone take their images with them.
        let mut tx = conn.transaction()?;
        let layers = rows::all_layers(&tx)?;
        let broken: Vec<String> = layers
            .iter()
            .filter(|l| {
                !layout.layer_diff(&l.chain_id).is_dir()
                    || !layout.blob_path(&l.blob_digest).is_file()
            })
            .map(|l| l.chain_id.clone())
            .collect();
        if !broken.is_empty() {
            for img in rows::list_images(&tx)? {
                if img.layers.iter().any(|c| broken.contains(c)) {
                    tracing::warn!(image = %img.id, "image lost layer files; removing it");
                    // A container's row may still refer to it (foreign
                    // key): then it stays, and that container's start fails
                    // on the missing files instead of the daemon's start-up.
                    let sp = tx.savepoint()?;
                    match rows::delete_image(&sp, &img.id) {
                        Ok(()) => {
                            sp.commit()?;
                            report.broken_images_removed += 1;
                        }
                        Err(e) => {
                            tracing::warn!(image = %img.id, error = %e, "broken image kept")
                        }
                    }
                }
            }
        }
        // Unused layers (a pull interrupted after some layers) are freed too.
        loop {
            let free = rows::unreferenced_layers(&tx)?;
            if free.is_empty() {
                break;
            }
            for l in free {
                rows::delete_layer(&tx, &l.chain_id)?;
            }
        }
        tx.commit()?;
        Ok(())
    })?;
    let (chains, blobs): (HashSet<String>, HashSet<String>) = store.call_blocking(|conn| {
        let layers = rows::all_layers(conn)?;
        Ok((
            layers
                .iter()
                .map(|l| digest_hex(&l.chain_id).to_string())
                .collect(),
            layers
                .iter()
                .map(|l| digest_hex(&l.blob_digest).to_string())
                .collect(),
        ))
    })?;
    for e in std::fs::read_dir(layout.layers_dir())? {
        let e = e?;
        let name = e.file_name().to_string_lossy().to_string();
        if !chains.contains(&name) {
            let _ = std::fs::remove_dir_all(e.path());
            report.layer_dirs_removed += 1;
        }
    }
    for e in std::fs::read_dir(layout.blobs_dir())? {
        let e = e?;
        let name = e.file_name().to_string_lossy().to_string();
        if !blobs.contains(&name) {
            let _ = std::fs::remove_file(e.path());
            report.blobs_removed += 1;
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::images::{insert_image, insert_layer, LayerRow};

    #[test]
    fn removes_unowned_files_and_rows_with_missing_files() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        layout.create_dirs().unwrap();
        let store = Store::open_in_memory().unwrap();
        let chain = format!("sha256:{}", "a".repeat(64));
        let blob = format!("sha256:{}", "b".repeat(64));
        std::fs::create_dir_all(layout.layer_diff(&chain)).unwrap();
        std::fs::write(layout.blob_path(&blob), b"x").unwrap();
        std::fs::create_dir_all(layout.layer_diff(&format!("sha256:{}", "c".repeat(64)))).unwrap();
        std::fs::write(
            layout.blob_path(&format!("sha256:{}", "d".repeat(64))),
            b"x",
        )
        .unwrap();
        std::fs::create_dir_all(layout.tmp_path("layer")).unwrap();
        store
            .call_blocking(|c| {
                insert_layer(
                    c,
                    &LayerRow {
                        chain_id: chain.clone(),
                        diff_id: chain.clone(),
                        parent: None,
                        size: 1,
                        blob_digest: blob.clone(),
                        blob_size: 1,
                        media_type: "x".into(),
                        created_at: 0,
                    },
                )?;
                insert_image(c, "sha256:img", b"{}", 1, std::slice::from_ref(&chain))?;
                Ok(())
            })
            .unwrap();
        let r = reconcile(&store, &layout).unwrap();
        assert_eq!(r.tmp_removed, 1);
        assert_eq!(r.layer_dirs_removed, 1);
        assert_eq!(r.blobs_removed, 1);
        assert!(layout.layer_diff(&chain).is_dir());
        // Now lose the layer's files: the image goes with them.
        std::fs::remove_dir_all(layout.layer_dir(&chain)).unwrap();
        let r = reconcile(&store, &layout).unwrap();
        assert_eq!(r.broken_images_removed, 1);
        assert!(store
            .call_blocking(|c| rows::all_layers(c))
            .unwrap()
            .is_empty());
        assert!(!layout.blob_path(&blob).exists());
    }
}
