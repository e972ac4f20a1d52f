//! The mount points of containers. `spec` is opaque here (the container
//! engine owns its shape); `volume` names the volume a mount uses, which
//! is what makes a volume "in use".

use rusqlite::{params, Connection};

use super::query_all;
use crate::error::EngineResult;

pub fn insert(
    conn: &Connection,
    container_id: &str,
    destination: &str,
    volume: Option<&str>,
    spec: &str,
) -> EngineResult<()> {
    conn.execute(
        "INSERT INTO container_mounts (container_id, destination, volume, spec)
         VALUES (?1, ?2, ?3, ?4)",
        params![container_id, destination, volume, spec],
    )?;
    Ok(())
}

/// The `spec` of each mount of a container, by destination.
pub fn of_container(conn: &Connection, container_id: &str) -> EngineResult<Vec<String>> {
    query_all(
        conn,
        "SELECT spec FROM container_mounts WHERE container_id = ?1 ORDER BY destination",
        [container_id],
        |r| r.get(0),
    )
}

/// `(container_id, spec)` of every mount.
pub fn all(conn: &Connection) -> EngineResult<Vec<(String, String)>> {
    query_all(
        conn,
        "SELECT container_id, spec FROM container_mounts ORDER BY container_id, destination",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
}
