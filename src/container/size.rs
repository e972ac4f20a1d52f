//! Container sizes for `docker ps -s` and `inspect --size`: the writable
//! layer (`SizeRw`) and that plus the image (`SizeRootFs`).

use super::{Container, ContainerService};
use crate::error::{EngineError, EngineResult};

/// Bytes of regular files under `dir` (symlinks and folders not counted,
/// as dockerd's directory size walk).
pub(super) fn dir_size(dir: &std::path::Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(e.path()),
                Ok(t) if t.is_file() => total += e.metadata().map(|m| m.len()).unwrap_or(0),
                _ => {}
            }
        }
    }
    total
}

impl ContainerService {
    /// (`SizeRw`, `SizeRootFs`).
    pub async fn sizes(&self, c: &Container) -> EngineResult<(u64, u64)> {
        let upper = self.container_dir(c.id()).join("upper");
        let rw = tokio::task::spawn_blocking(move || dir_size(&upper))
            .await
            .map_err(EngineError::internal)?;
        let image = match self.images.resolve(&c.row.image_id).await {
            Ok(img) => u64::try_from(img.row.size).unwrap_or(0),
            Err(_) => 0,
        };
        Ok((rw, rw + image))
    }
}
