//! `docker rename`.

use super::create::valid_name;
use super::ContainerService;
use crate::error::{EngineError, EngineResult};
use crate::store::containers as rows;

impl ContainerService {
    pub async fn rename(&self, name: &str, new_name: &str) -> EngineResult<()> {
        let new_name = new_name.strip_prefix('/').unwrap_or(new_name).to_string();
        if name.is_empty() || new_name.is_empty() {
            return Err(EngineError::InvalidParameter(
                "Neither old nor new names may be empty".into(),
            ));
        }
        if !valid_name(&new_name) {
            return Err(EngineError::InvalidParameter(format!(
                "Invalid container name ({new_name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
            )));
        }
        let c = self.get(name).await?;
        if c.row.name == new_name {
            return Err(EngineError::InvalidParameter(
                "Renaming a container with the same name as its current name".into(),
            ));
        }
        let (id, n) = (c.id().to_string(), new_name.clone());
        let owner = self
            .store
            .call(move |conn| {
                if let Some(other) = rows::by_name(conn, &n)? {
                    return Ok(Some(other.id));
                }
                rows::set_name(conn, &id, &n)?;
                Ok(None)
            })
            .await?;
        if let Some(owner) = owner {
            return Err(EngineError::Conflict(format!(
                "Conflict. The container name \"/{new_name}\" is already in use by container \"{owner}\". You have to remove (or rename) that container to be able to reuse that name."
            )));
        }
        let mut renamed = c.clone();
        renamed.row.name = new_name;
        self.emit(&renamed, "rename", &[("oldName", c.slash_name())]);
        Ok(())
    }
}
