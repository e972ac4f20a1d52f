//! Exec rows. The JSON columns are opaque here: the container engine owns
//! their shape.

use rusqlite::{params, Connection, OptionalExtension};

use crate::error::EngineResult;

#[derive(Debug, Clone, PartialEq)]
pub struct ExecRow {
    pub id: String,
    pub container_id: String,
    pub config: String,
    pub state: String,
    pub created_at: i64,
}

const COLUMNS: &str = "id, container_id, config, state, created_at";

fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ExecRow> {
    Ok(ExecRow {
        id: r.get(0)?,
        container_id: r.get(1)?,
        config: r.get(2)?,
        state: r.get(3)?,
        created_at: r.get(4)?,
    })
}

pub fn insert(conn: &Connection, e: &ExecRow) -> EngineResult<()> {
    conn.execute(
        &format!("INSERT INTO execs ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5)"),
        params![e.id, e.container_id, e.config, e.state, e.created_at],
    )?;
    Ok(())
}

pub fn get(conn: &Connection, id: &str) -> EngineResult<Option<ExecRow>> {
    let sql = format!("SELECT {COLUMNS} FROM execs WHERE id = ?1");
    Ok(conn.query_row(&sql, [id], from_row).optional()?)
}

/// The execs of one container, oldest first.
pub fn of_container(conn: &Connection, container_id: &str) -> EngineResult<Vec<ExecRow>> {
    let sql =
        format!("SELECT {COLUMNS} FROM execs WHERE container_id = ?1 ORDER BY created_at, id");
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map([container_id], from_row)?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// Every exec, oldest first.
pub fn list(conn: &Connection) -> EngineResult<Vec<ExecRow>> {
    let sql = format!("SELECT {COLUMNS} FROM execs ORDER BY created_at, id");
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map([], from_row)?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

pub fn set_state(conn: &Connection, id: &str, state: &str) -> EngineResult<()> {
    conn.execute(
        "UPDATE execs SET state = ?2 WHERE id = ?1",
        params![id, state],
    )?;
    Ok(())
}

pub fn delete(conn: &Connection, id: &str) -> EngineResult<()> {
    conn.execute("DELETE FROM execs WHERE id = ?1", [id])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::containers::{self, ContainerRow};
    use crate::store::Store;

    #[test]
    fn rows_round_trip_and_go_with_their_container() {
        let store = Store::open_in_memory().expect("store");
        store
            .call_blocking(|conn| {
                let exec = |id: &str, at: i64| ExecRow {
                    id: id.into(),
                    container_id: "c1".into(),
                    config: "{}".into(),
                    state: "{}".into(),
                    created_at: at,
                };
                // No container yet: the foreign key refuses the exec.
                assert!(insert(conn, &exec("e1", 1)).is_err());
                conn.execute(
                    "INSERT INTO images (id, config, size, created_at) VALUES ('sha256:img', x'7b7d', 0, 0)",
                    [],
                )?;
                containers::insert(
                    conn,
                    &ContainerRow {
                        id: "c1".into(),
                        name: "one".into(),
                        image_id: "sha256:img".into(),
                        image: "busybox".into(),
                        config: "{}".into(),
                        host_config: "{}".into(),
                        state: "{}".into(),
                        created_at: 1,
                    },
                )?;
                insert(conn, &exec("e2", 2))?;
                insert(conn, &exec("e1", 1))?;
                let ids: Vec<String> = of_container(conn, "c1")?.into_iter().map(|e| e.id).collect();
                assert_eq!(ids, vec!["e1".to_string(), "e2".into()]);
                set_state(conn, "e1", r#"{"running":true}"#)?;
                assert_eq!(get(conn, "e1")?.map(|e| e.state), Some(r#"{"running":true}"#.into()));
                assert_eq!(list(conn)?.len(), 2);
                containers::delete(conn, "c1")?;
                assert!(list(conn)?.is_empty(), "execs go with their container");
                Ok(())
            })
            .expect("rows");
    }
}
