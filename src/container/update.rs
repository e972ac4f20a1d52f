//! `docker update`: resources and the restart policy of a container,
//! applied to its live cgroup when it runs.

use serde_json::Value;

use super::restart_policy::RestartPolicy;
use super::ContainerService;
use crate::error::{EngineError, EngineResult};
use crate::runtime::cgroups::{self, Resources};
use crate::store::containers as rows;

impl ContainerService {
    /// Returns dockerd's warnings.
    pub async fn update(&self, name: &str, body: &Value) -> EngineResult<Vec<String>> {
        let Value::Object(_) = body else {
            return Err(EngineError::InvalidParameter(
                "invalid JSON: the body must be an object".into(),
            ));
        };
        let mut update: Resources = serde_json::from_value(body.clone())
            .map_err(|e| EngineError::InvalidParameter(format!("invalid update: {e}")))?;
        let policy = match body.get("RestartPolicy") {
            Some(p)
                if p.get("Name")
                    .and_then(Value::as_str)
                    .is_some_and(|n| !n.is_empty()) =>
            {
                Some((RestartPolicy::parse(Some(p))?, p.clone()))
            }
            _ => None,
        };
        let c = self.get(name).await?;
        let lock = self.op_lock(c.id());
        let _g = lock.lock().await;
        let c = self.get(c.id()).await?;
        if c.state.status == super::Status::Removing || c.state.status == super::Status::Dead {
            return Err(EngineError::Conflict(format!(
                "Container {} is marked for removal and cannot be \"update\"",
                c.id()
            )));
        }
        if let Some((p, _)) = &policy {
            let auto_remove =
                c.host_config.get("AutoRemove").and_then(Value::as_bool) == Some(true);
            if auto_remove && !p.is_none() {
                return Err(EngineError::Conflict(
                    "Restart policy cannot be updated because AutoRemove is enabled for the container"
                        .into(),
                ));
            }
        }
        let mut warnings = update.validate_and_adjust(&self.host, true)?;
        let current: Resources =
            serde_json::from_value(c.host_config.clone()).map_err(EngineError::internal)?;
        let mut merged = current.merged_with(&update)?;
        merged.allow_all_devices =
            c.host_config.get("Privileged").and_then(Value::as_bool) == Some(true);
        if c.state.running() {
            let root = self.cgroup_root.clone();
            let path = Self::cgroup_path(c.id());
            let m = merged.clone();
            let notes =
                tokio::task::spawn_blocking(move || cgroups::manager_for(&root, &path)?.update(&m))
                    .await
                    .map_err(EngineError::internal)?
                    .map_err(|e| {
                        EngineError::Internal(format!("Cannot update container {}: {e}", c.id()))
                    })?;
            warnings.extend(notes);
        }
        let mut hc = c.host_config.clone();
        if let (Value::Object(m), Ok(Value::Object(r))) = (&mut hc, serde_json::to_value(&merged)) {
            m.extend(r);
            if let Some((_, p)) = policy {
                m.insert("RestartPolicy".into(), p);
            }
        }
        let (id, text) = (c.id().to_string(), serde_json::to_string(&hc)?);
        self.store
            .call(move |conn| rows::set_host_config(conn, &id, &text))
            .await?;
        self.emit(&c, "update", &[]);
        Ok(warnings)
    }
}
