//! Container sizes for `docker ps -s` and `inspect --size`: the writable
//! layer (`SizeRw`) and that plus the image (`SizeRootFs`).

use super::{Container, ContainerService};
use crate::disk_usage::dir_size;
use crate::error::{EngineError, EngineResult};

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
