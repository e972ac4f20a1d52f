//! Where image data lives under the data root:
//! - `image/blobs/sha256/<hex>`: content-addressed blobs (layer archives as
//!   fetched, so `docker save` can hand them out again);
//! - `image/layers/<chain-hex>/diff`: each layer unpacked once, overlay2-ready,
//!   shared by every image that has it;
//! - `tmp/`: work in progress, renamed into place when complete and wiped at
//!   start-up.

use std::path::{Path, PathBuf};

use super::config::digest_hex;

#[derive(Debug, Clone)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    pub fn new(data_root: &Path) -> Layout {
        Layout {
            root: data_root.to_path_buf(),
        }
    }

    pub fn create_dirs(&self) -> std::io::Result<()> {
        for d in [self.blobs_dir(), self.layers_dir(), self.tmp_dir()] {
            std::fs::create_dir_all(d)?;
        }
        Ok(())
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn blobs_dir(&self) -> PathBuf {
        self.root.join("image/blobs/sha256")
    }

    pub fn blob_path(&self, digest: &str) -> PathBuf {
        self.blobs_dir().join(digest_hex(digest))
    }

    pub fn layers_dir(&self) -> PathBuf {
        self.root.join("image/layers")
    }

    pub fn layer_dir(&self, chain_id: &str) -> PathBuf {
        self.layers_dir().join(digest_hex(chain_id))
    }

    /// The unpacked tree of a layer: an overlay lowerdir.
    pub fn layer_diff(&self, chain_id: &str) -> PathBuf {
        self.layer_dir(chain_id).join("diff")
    }

    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// A fresh private path under tmp/ (not created).
    pub fn tmp_path(&self, what: &str) -> PathBuf {
        let n: u64 = rand::random();
        self.tmp_dir().join(format!("{what}-{n:016x}"))
    }
}
