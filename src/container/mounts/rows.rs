//! The stored mounts of containers: rows of `container_mounts`, and what
//! inspect and `docker ps` show of them.

use std::collections::HashMap;

use super::{MountPlan, MountPoint, MountType, StoredMount};
use crate::container::ContainerService;
use crate::error::EngineResult;
use crate::store::mounts as rows;

impl ContainerService {
    /// The stored mounts of a container.
    pub async fn stored_mounts(&self, id: &str) -> EngineResult<Vec<StoredMount>> {
        let i = id.to_string();
        let specs = self
            .store
            .call(move |conn| rows::of_container(conn, &i))
            .await?;
        Ok(specs
            .iter()
            .filter_map(|s| serde_json::from_str(s).ok())
            .collect())
    }

    /// `Mounts` of inspect.
    pub async fn mount_points(&self, id: &str) -> EngineResult<Vec<MountPoint>> {
        Ok(self
            .stored_mounts(id)
            .await?
            .into_iter()
            .filter(|m| !m.hidden)
            .map(|m| m.point)
            .collect())
    }

    /// `Mounts` of every container, for `docker ps`.
    pub async fn all_mount_points(&self) -> EngineResult<HashMap<String, Vec<MountPoint>>> {
        let all = self.store.call(|conn| rows::all(conn)).await?;
        let mut out: HashMap<String, Vec<MountPoint>> = HashMap::new();
        for (id, spec) in all {
            if let Ok(m) = serde_json::from_str::<StoredMount>(&spec) {
                if !m.hidden {
                    out.entry(id).or_default().push(m.point);
                }
            }
        }
        Ok(out)
    }
}

/// The `volume` filter of `GET /containers/json`: a volume name (or bind
/// source) or a destination.
pub fn mounts_match(points: &[MountPoint], value: &str) -> bool {
    points.iter().any(|m| {
        m.destination == value
            || (!m.name.is_empty() && m.name == value)
            || (m.name.is_empty() && m.source == value)
    })
}

/// Stores a plan's mounts for a new container, inside its transaction.
pub(crate) fn insert_rows(
    conn: &rusqlite::Connection,
    id: &str,
    plan: &MountPlan,
) -> EngineResult<()> {
    for m in &plan.mounts {
        let volume = (m.point.kind == MountType::Volume).then_some(m.point.name.as_str());
        rows::insert(
            conn,
            id,
            &m.point.destination,
            volume,
            &serde_json::to_string(m)?,
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inspect_shape_and_volume_filter() {
        let p = MountPoint {
            kind: MountType::Volume,
            name: "v".into(),
            source: "/var/lib/mydocker/volumes/v/_data".into(),
            destination: "/data".into(),
            driver: "local".into(),
            mode: "z".into(),
            rw: true,
            propagation: String::new(),
        };
        let j = serde_json::to_value(&p).unwrap();
        assert_eq!(
            j,
            serde_json::json!({"Type":"volume","Name":"v","Source":"/var/lib/mydocker/volumes/v/_data",
                "Destination":"/data","Driver":"local","Mode":"z","RW":true,"Propagation":""})
        );
        let b = MountPoint {
            source: "/h".into(),
            destination: "/x".into(),
            ..Default::default()
        };
        let j = serde_json::to_value(&b).unwrap();
        assert!(j.get("Name").is_none() && j.get("Driver").is_none(), "{j}");
        let pts = [p, b];
        assert!(mounts_match(&pts, "v"));
        assert!(mounts_match(&pts, "/data"));
        assert!(mounts_match(&pts, "/h"));
        assert!(!mounts_match(&pts, "/var/lib/mydocker/volumes/v/_data"));
    }
}
