//! Volume rows. Labels and driver options are JSON objects (NULL when the
//! client sent none, which inspect shows as `null`).

use std::collections::BTreeMap;

use rusqlite::{params, Connection, OptionalExtension};

use super::query_all;
use crate::error::EngineResult;

#[derive(Debug, Clone, PartialEq, Default)]
pub struct VolumeRow {
    pub name: String,
    pub driver: String,
    pub labels: Option<BTreeMap<String, String>>,
    pub options: Option<BTreeMap<String, String>>,
    pub created_at: i64,
}

const COLUMNS: &str = "name, driver, labels, options, created_at";

fn map_column(raw: Option<String>) -> Option<BTreeMap<String, String>> {
    raw.and_then(|s| serde_json::from_str(&s).ok())
}

fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<VolumeRow> {
    Ok(VolumeRow {
        name: r.get(0)?,
        driver: r.get(1)?,
        labels: map_column(r.get(2)?),
        options: map_column(r.get(3)?),
        created_at: r.get(4)?,
    })
}

fn to_column(m: &Option<BTreeMap<String, String>>) -> EngineResult<Option<String>> {
    Ok(match m {
        Some(m) => Some(serde_json::to_string(m)?),
        None => None,
    })
}

/// Inserts a volume; false when one of that name exists (it is kept).
pub fn insert(conn: &Connection, v: &VolumeRow) -> EngineResult<bool> {
    let n = conn.execute(
        &format!("INSERT OR IGNORE INTO volumes ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5)"),
        params![
            v.name,
            v.driver,
            to_column(&v.labels)?,
            to_column(&v.options)?,
            v.created_at
        ],
    )?;
    Ok(n > 0)
}

pub fn get(conn: &Connection, name: &str) -> EngineResult<Option<VolumeRow>> {
    let sql = format!("SELECT {COLUMNS} FROM volumes WHERE name = ?1");
    Ok(conn.query_row(&sql, [name], from_row).optional()?)
}

/// Every volume, by name.
pub fn list(conn: &Connection) -> EngineResult<Vec<VolumeRow>> {
    let sql = format!("SELECT {COLUMNS} FROM volumes ORDER BY name");
    query_all(conn, &sql, [], from_row)
}

/// IDs of the containers that mount `name`, oldest first.
pub fn users(conn: &Connection, name: &str) -> EngineResult<Vec<String>> {
    query_all(
        conn,
        "SELECT DISTINCT m.container_id FROM container_mounts m
         JOIN containers c ON c.id = m.container_id
         WHERE m.volume = ?1 ORDER BY c.created_at, c.id",
        [name],
        |r| r.get(0),
    )
}

/// How many containers mount each volume that is in use.
pub fn use_counts(conn: &Connection) -> EngineResult<BTreeMap<String, i64>> {
    query_all(
        conn,
        "SELECT volume, COUNT(DISTINCT container_id) FROM container_mounts
         WHERE volume IS NOT NULL GROUP BY volume",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
}

/// Deletes a volume row that no container mounts; false when it was
/// missing or is in use.
pub fn delete_unused(conn: &Connection, name: &str) -> EngineResult<bool> {
    let n = conn.execute(
        "DELETE FROM volumes WHERE name = ?1
         AND NOT EXISTS (SELECT 1 FROM container_mounts WHERE volume = ?1)",
        [name],
    )?;
    Ok(n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    #[test]
    fn rows_round_trip_and_count_users() {
        let store = Store::open_in_memory().expect("store");
        store
            .call_blocking(|conn| {
                let v = VolumeRow {
                    name: "data".into(),
                    driver: "local".into(),
                    labels: Some([("a".to_string(), "b".to_string())].into()),
                    options: None,
                    created_at: 7,
                };
                assert!(insert(conn, &v)?);
                assert!(!insert(conn, &v)?, "second insert keeps the first");
                assert_eq!(get(conn, "data")?, Some(v.clone()));
                assert_eq!(get(conn, "nope")?, None);
                conn.execute(
                    "INSERT INTO images (id, config, size, created_at) VALUES ('sha256:i', x'7b7d', 0, 0)",
                    [],
                )?;
                conn.execute(
                    "INSERT INTO containers (id, name, image_id, image, config, host_config, state, created_at)
                     VALUES ('c1', 'one', 'sha256:i', 'b', '{}', '{}', '{}', 1)",
                    [],
                )?;
                crate::store::mounts::insert(conn, "c1", "/d", Some("data"), "{}")?;
                assert_eq!(users(conn, "data")?, vec!["c1".to_string()]);
                assert_eq!(use_counts(conn)?.get("data"), Some(&1));
                assert!(!delete_unused(conn, "data")?, "in use");
                conn.execute("DELETE FROM containers WHERE id = 'c1'", [])?;
                assert!(users(conn, "data")?.is_empty(), "mounts cascade");
                assert!(delete_unused(conn, "data")?);
                assert!(list(conn)?.is_empty());
                Ok(())
            })
            .expect("rows");
    }
}
