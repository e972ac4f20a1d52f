//! Container rows. The JSON columns are opaque here: the container engine
//! owns their shape.

use rusqlite::{params, Connection, OptionalExtension};

use super::query_all;
use crate::error::EngineResult;

#[derive(Debug, Clone, PartialEq)]
pub struct ContainerRow {
    pub id: String,
    /// Without the leading `/`.
    pub name: String,
    pub image_id: String,
    /// `Config.Image` as the client gave it.
    pub image: String,
    pub config: String,
    pub host_config: String,
    pub state: String,
    pub created_at: i64,
}

const COLUMNS: &str = "id, name, image_id, image, config, host_config, state, created_at";

fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ContainerRow> {
    Ok(ContainerRow {
        id: r.get(0)?,
        name: r.get(1)?,
        image_id: r.get(2)?,
        image: r.get(3)?,
        config: r.get(4)?,
        host_config: r.get(5)?,
        state: r.get(6)?,
        created_at: r.get(7)?,
    })
}

pub fn insert(conn: &Connection, c: &ContainerRow) -> EngineResult<()> {
    conn.execute(
        &format!("INSERT INTO containers ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"),
        params![
            c.id,
            c.name,
            c.image_id,
            c.image,
            c.config,
            c.host_config,
            c.state,
            c.created_at
        ],
    )?;
    Ok(())
}

pub fn get(conn: &Connection, id: &str) -> EngineResult<Option<ContainerRow>> {
    let sql = format!("SELECT {COLUMNS} FROM containers WHERE id = ?1");
    Ok(conn.query_row(&sql, [id], from_row).optional()?)
}

pub fn by_name(conn: &Connection, name: &str) -> EngineResult<Option<ContainerRow>> {
    let sql = format!("SELECT {COLUMNS} FROM containers WHERE name = ?1");
    Ok(conn.query_row(&sql, [name], from_row).optional()?)
}

/// IDs starting with `prefix` (hex only, checked by the caller).
pub fn ids_with_prefix(conn: &Connection, prefix: &str) -> EngineResult<Vec<String>> {
    query_all(
        conn,
        "SELECT id FROM containers WHERE substr(id, 1, ?2) = ?1",
        params![prefix, prefix.len() as i64],
        |r| r.get(0),
    )
}

/// Every container, newest first.
pub fn list(conn: &Connection) -> EngineResult<Vec<ContainerRow>> {
    let sql = format!("SELECT {COLUMNS} FROM containers ORDER BY created_at DESC, id");
    query_all(conn, &sql, [], from_row)
}

/// Containers made from `image_id`.
pub fn using_image(conn: &Connection, image_id: &str) -> EngineResult<Vec<ContainerRow>> {
    let sql = format!("SELECT {COLUMNS} FROM containers WHERE image_id = ?1 ORDER BY created_at");
    query_all(conn, &sql, [image_id], from_row)
}

pub fn set_state(conn: &Connection, id: &str, state: &str) -> EngineResult<()> {
    conn.execute(
        "UPDATE containers SET state = ?2 WHERE id = ?1",
        params![id, state],
    )?;
    Ok(())
}

pub fn set_name(conn: &Connection, id: &str, name: &str) -> EngineResult<()> {
    conn.execute(
        "UPDATE containers SET name = ?2 WHERE id = ?1",
        params![id, name],
    )?;
    Ok(())
}

pub fn set_host_config(conn: &Connection, id: &str, host_config: &str) -> EngineResult<()> {
    conn.execute(
        "UPDATE containers SET host_config = ?2 WHERE id = ?1",
        params![id, host_config],
    )?;
    Ok(())
}

pub fn delete(conn: &Connection, id: &str) -> EngineResult<bool> {
    Ok(conn.execute("DELETE FROM containers WHERE id = ?1", [id])? > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    fn row(id: &str, name: &str) -> ContainerRow {
        ContainerRow {
            id: id.into(),
            name: name.into(),
            image_id: "sha256:img".into(),
            image: "busybox".into(),
            config: "{}".into(),
            host_config: "{}".into(),
            state: "{}".into(),
            created_at: 1,
        }
    }

    #[test]
    fn rows_round_trip_and_keep_their_image() {
        let store = Store::open_in_memory().expect("store");
        store
            .call_blocking(|conn| {
                // No image row yet: the foreign key refuses the container.
                assert!(insert(conn, &row("abc1", "one")).is_err());
                conn.execute(
                    "INSERT INTO images (id, config, size, created_at) VALUES ('sha256:img', x'7b7d', 0, 0)",
                    [],
                )?;
                insert(conn, &row("abc1", "one"))?;
                insert(conn, &row("abd2", "two"))?;
                assert!(insert(conn, &row("ffff", "one")).is_err(), "name is unique");
                assert_eq!(ids_with_prefix(conn, "ab")?.len(), 2);
                assert_eq!(ids_with_prefix(conn, "abc")?, vec!["abc1".to_string()]);
                assert_eq!(by_name(conn, "two")?.map(|r| r.id), Some("abd2".into()));
                assert_eq!(using_image(conn, "sha256:img")?.len(), 2);
                set_state(conn, "abc1", r#"{"status":"running"}"#)?;
                assert_eq!(get(conn, "abc1")?.map(|r| r.state), Some(r#"{"status":"running"}"#.into()));
                // The image cannot go while containers use it.
                assert!(conn
                    .execute("DELETE FROM images WHERE id = 'sha256:img'", [])
                    .is_err());
                assert!(delete(conn, "abc1")?);
                assert!(!delete(conn, "abc1")?);
                assert_eq!(list(conn)?.len(), 1);
                Ok(())
            })
            .expect("rows");
    }
}
